"""The programs of the training benchmark's jax steps, einsgrad's against ``jnp.einsum``'s, and
what their executables alone time.

Run: ``python -m benchmarks.training --hlo [--models a,b] [--dtypes ...]`` (or
``python -m benchmarks.training_hlo``, which also takes ``--time [--repeats N]``; ``--preferred
float32`` gives every einsum of both steps ``preferred_element_type=float32``). For each model
and dtype, the jitted training step of :mod:`benchmarks.training` (forward, loss, gradient, SGD
update), at the benchmark's sizes and with the batch an argument as there, is built with
``einsgrad.jax.einsum`` and with ``jnp.einsum``. The line says whether the two hand XLA the same
module (the lowered StableHLO text, byte for byte), whether XLA makes the same program of them
(the optimized HLO, ``jax.jit(f).lower(...).compile().as_text()``, with only the metadata and
source-location tables taken out: instruction names and layouts kept) and assigns its buffers
alike (``memory_analysis()``'s serialized buffer assignment), how many Python calls
one jitted call of each makes (0: jax's C++ dispatch runs it, no Python wrapper in the way), and
counts the instructions that cost time outside the arithmetic: the dots and the transposes and
copies (data moved), fused computations included, and the dot operands the lowered module
converts from half precision to float32 first (``widened``: a bfloat16 operand with
``--preferred float32`` is read by its dot as it is, as ``jnp.einsum`` reads it).

``--time`` then times the two ``.compile()`` executables, called directly, as the benchmark
times its steps (:func:`benchmarks.timing.medians`: interleaved rotating rounds in one process,
medians), built in the order jnp, einsgrad, einsgrad, jnp so that what the order of building
does falls on both alike; each line gives both einsgrad/jnp ratios and both A/A ratios
(the second copy of each over the first).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

from benchmarks.jax_spellings import normalised_hlo

COUNTED = {"dot": "dots", "transpose": "transposes", "copy": "copies"}  # opcode: its plural
_OPCODE = re.compile(r"%\S+ = .*? ([a-z][\w-]*)\(")  # the opcode after the result's shape
_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")  # source-location tables


def opcodes(lines: list[str]) -> Counter:
    """How often each opcode occurs in normalised HLO lines (fused computations included)."""
    found = Counter()
    for line in lines:
        match = _OPCODE.match(line.removeprefix("ROOT "))
        if match:
            found[match.group(1)] += 1
    return found


_WIDENED = re.compile(r"(%[\w#.]+) = stablehlo\.convert %[\w#.]+ : \(tensor<[^>]*?x?(?:bf16|f16)>\) "
                      r"-> tensor<[^>]*?x?(?:f32|f64)>")
_DOT_OPERANDS = re.compile(r"stablehlo\.dot_general (%[\w#.]+), (%[\w#.]+),")


def widened(lowered: str) -> int:
    """How many operands of the dots in lowered StableHLO text are half-precision values
    converted to float32 or float64 first (a copy of twice the bytes, read by a wider dot)."""
    made = set(_WIDENED.findall(lowered))
    return sum(name in made for pair in _DOT_OPERANDS.findall(lowered) for name in pair)


def compiled(step, *args) -> list[str]:
    """The normalised optimized HLO of ``jax.jit(step)`` for these arguments."""
    import jax

    return normalised_hlo(jax.jit(step).lower(*args).compile().as_text())


def without_metadata(text: str) -> str:
    """Optimized HLO text without its metadata and source-location tables, which say where in
    Python an instruction was traced and nothing of what it does; names and layouts stay."""
    blocks = [b for b in text.split("\n\n") if b.strip().split("\n")[0] not in _TABLES]
    return re.sub(r", metadata=\{[^}]*\}", "", "\n\n".join(blocks))


def python_calls(fn, *args) -> int:
    """How many Python functions one call of ``fn(*args)`` enters (itself not counted)."""
    import jax

    seen = []
    sys.setprofile(lambda frame, event, arg: seen.append(frame.f_code) if event == "call" else None)
    try:
        out = fn(*args)
    finally:
        sys.setprofile(None)
    jax.block_until_ready(out)
    return len(seen)


def step(model, dtype: str, einsum, preferred: str | None = None):
    """The benchmark's jitted training step of ``model`` over ``einsum`` (as
    :func:`benchmarks.training._jax_variant` builds it), its initial parameters and the batch,
    at the benchmark's sizes, in ``dtype``; each einsum given ``preferred_element_type=preferred``
    where that is not None."""
    import functools

    import jax
    import jax.numpy as jnp

    from benchmarks.training import LEARNING_RATE
    from benchmarks.training_models import Ops

    params, batch = model.make(model.sized(False))
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    batch = {k: jnp.asarray(v, dtype) for k, v in batch.items()}
    if preferred is not None:
        einsum = functools.partial(einsum, preferred_element_type=jnp.dtype(preferred))
    ops = Ops(einsum, jax.nn.relu, lambda x: jax.nn.softmax(x, axis=-1), lambda x: jax.nn.logsumexp(x, axis=-1))

    def update(params, batch):
        loss, grads = jax.value_and_grad(lambda p: model.loss(ops, p, batch))(params)
        return loss, grads, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    return jax.jit(update), params, batch


def compare(model, dtype: str, preferred: str | None = None) -> dict:
    """Whether the model's training step hands XLA the same module and compiles to the same
    program, its buffers assigned alike (XLA's serialized buffer assignment), with both einsums
    (given ``preferred``, see :func:`step`); the Python calls of one jitted call of each after
    the first; the counts of :data:`COUNTED`; ``optimized``: each one's program."""
    import jax.numpy as jnp

    import einsgrad.jax

    found = {}
    for name, einsum in (("einsgrad", einsgrad.jax.einsum), ("own", jnp.einsum)):
        update, params, batch = step(model, dtype, einsum, preferred)
        lowered = update.lower(params, batch)
        executable = lowered.compile()
        text = executable.as_text()
        update(params, batch)  # traced and compiled: the next call is dispatch alone
        found[name] = {"lowered": lowered.as_text(), "optimized": without_metadata(text),
                       "buffers": executable.memory_analysis().serialized_buffer_assignment_proto,
                       "counts": opcodes(normalised_hlo(text)), "calls": python_calls(update, params, batch),
                       "widened": widened(lowered.as_text())}
    mine, theirs = found["einsgrad"], found["own"]
    return {"model": model.name, "dtype": dtype, "same module": mine["lowered"] == theirs["lowered"],
            "same program": mine["optimized"] == theirs["optimized"],
            "same buffers": mine["buffers"] == theirs["buffers"],
            "optimized (einsgrad, jnp)": (mine["optimized"], theirs["optimized"]),
            "widened (einsgrad, jnp)": (mine["widened"], theirs["widened"]),
            "python calls (einsgrad, jnp)": (mine["calls"], theirs["calls"]),
            **{f"{op} (einsgrad, jnp)": (mine["counts"][op], theirs["counts"][op]) for op in COUNTED}}


def table(models, dtypes, preferred: str | None = None) -> str:
    """One line per model and dtype: the same module, program and buffers or not, and the counts."""
    import jax

    jax.config.update("jax_enable_x64", True)
    lines = ["# the jitted jax training step at the benchmark's sizes, einsgrad.jax.einsum's against"
             " jnp.einsum's: module = the lowered StableHLO XLA is handed; program = the optimized HLO"
             " (metadata aside, names and layouts kept); buffers = XLA's buffer assignment; calls = Python"
             " calls in one jitted call; widened = dot operands converted from half precision first;"
             " counts as einsgrad, jnp.einsum"
             + ("" if preferred is None else f"; every einsum with preferred_element_type={preferred}"),
             f"{'model':<13} {'dtype':<9} {'module':<8} {'program':<8} {'buffers':<8} {'calls':>6} "
             + " ".join(f"{plural:>11}" for plural in (*COUNTED.values(), "widened"))]
    for model in models:
        for dtype in dtypes:
            found = compare(model, dtype, preferred)
            counts = " ".join(f"{'%d, %d' % found[f'{op} (einsgrad, jnp)']:>11}" for op in (*COUNTED, "widened"))
            lines.append(f"{model.name:<13} {dtype:<9} {'same' if found['same module'] else 'differs':<8} "
                         f"{'same' if found['same program'] else 'differs':<8} "
                         f"{'same' if found['same buffers'] else 'differs':<8} "
                         f"{'%d, %d' % found['python calls (einsgrad, jnp)']:>6} {counts}")
    return "\n".join(lines)


def executables(model, dtype: str, preferred: str | None = None) -> dict:
    """One step function per copy (``own``, ``einsgrad``, ``einsgrad again``, ``own again``,
    built in that order), each calling its ``.compile()`` executable directly on its own
    parameters, the output's parameters the next call's input."""
    import jax
    import jax.numpy as jnp

    import einsgrad.jax

    steps = {}
    for name, einsum in (("own", jnp.einsum), ("einsgrad", einsgrad.jax.einsum),
                         ("einsgrad again", einsgrad.jax.einsum), ("own again", jnp.einsum)):
        update, params, batch = step(model, dtype, einsum, preferred)
        executable = update.lower(params, batch).compile()

        def run(executable=executable, state=[params], batch=batch):
            state[0] = jax.block_until_ready(executable(state[0], batch))[2]

        steps[name] = run
    return steps


def timed(models, dtypes, repeats: int, preferred: str | None = None) -> str:
    """For each model and dtype, the medians of the four executables of :func:`executables`
    over ``repeats`` interleaved rounds, as ratios."""
    import jax

    from benchmarks.timing import medians

    jax.config.update("jax_enable_x64", True)
    lines = [f"# the .compile() executables of the jitted training steps, called directly; medians of {repeats}"
             " interleaved rounds; built in the order jnp, einsgrad, einsgrad again, jnp again"
             + ("" if preferred is None else f"; preferred_element_type={preferred}"),
             f"{'model':<13} {'dtype':<9} {'jnp':>9} {'einsgrad/jnp':>13} {'again/again':>12}"
             f" {'A/A jnp':>8} {'A/A einsgrad':>13}"]
    for model in models:
        for dtype in dtypes:
            t = medians(executables(model, dtype, preferred), repeats, warmup=2)
            lines.append(f"{model.name:<13} {dtype:<9} {t['own'] * 1e3:7.2f}ms {t['einsgrad'] / t['own']:13.3f}"
                         f" {t['einsgrad again'] / t['own again']:12.3f} {t['own again'] / t['own']:8.3f}"
                         f" {t['einsgrad again'] / t['einsgrad']:13.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.training_models import MODELS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_hlo", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,attention")
    parser.add_argument("--dtypes", default="float32,float64,bfloat16")
    parser.add_argument("--time", action="store_true", help="also time the compiled executables, called directly")
    parser.add_argument("--repeats", type=int, default=21, help="interleaved rounds with --time")
    parser.add_argument("--preferred", metavar="DTYPE",
                        help="every einsum of both steps given preferred_element_type=DTYPE (float32 for bfloat16)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MODELS}
    if unknown := [n for n in args.models.split(",") if n not in known]:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    models, dtypes = [known[n] for n in args.models.split(",")], args.dtypes.split(",")
    print(table(models, dtypes, args.preferred), flush=True)
    if args.time:
        print(timed(models, dtypes, args.repeats, args.preferred))
    return 0


if __name__ == "__main__":
    sys.exit(main())
