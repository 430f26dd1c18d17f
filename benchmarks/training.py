"""Training steps of five small models with einsgrad's einsum against the framework's own.

Run: ``python -m benchmarks.training [--quick] [--repeats N] [--models a,b] [--dtypes ...]
[--frameworks torch,jax] [--preferred DTYPE] [--out DIR] [--default-malloc] [--thread-clock]``. Each model (see :mod:`benchmarks.training_models`) is
trained with ``einsgrad.torch.einsum`` and with ``torch.einsum``, and with
``einsgrad.jax.einsum`` and with ``jnp.einsum`` (the jax step jit-compiled for both), from the
same initial weights. A step is forward, loss, backward and an SGD update. The first step's
loss and gradients of the two are compared (``check``: the largest difference relative to
the largest value); then both steps, and a second copy of the framework's own built apart
(the A/A control: how far two identical programs land apart in the run), are timed in
rotating rounds in one process and each time is the median over the rounds. A case that raises is reported with its
error, one that einsgrad refuses (an ``EinsumSpecError``, as for bfloat16 today) as refused.
For the attention layer (torch, float32) it also reports the memory autograd holds and the
graphs ``torch.compile(dynamic=True)`` builds over ten sequence lengths
(:mod:`benchmarks.training_memory`). ``--out DIR`` writes ``training.json`` and
``training.txt`` there. The command runs under the glibc malloc settings of :data:`benchmarks.malloc.MALLOC`
(it re-executes itself to set them; ``--default-malloc`` keeps glibc's defaults).
``--hlo`` times nothing: it compares the compiled programs of the jax steps
(:mod:`benchmarks.training_hlo`). ``--preferred float32`` (jax alone) gives every einsum of both
jax steps ``preferred_element_type=float32``: bfloat16 operands accumulated in float32.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import numpy as np  # noqa: E402

import einsgrad  # noqa: E402
from benchmarks import limits  # noqa: E402
from benchmarks.report import duration, ratio_text  # noqa: E402
from benchmarks.runner import Cell, message  # noqa: E402
from benchmarks.systems import versions  # noqa: E402
from benchmarks import malloc  # noqa: E402
from benchmarks.timing import medians  # noqa: E402
from benchmarks.training_models import MODELS, Model, Ops  # noqa: E402

DTYPES = ("float32", "float64", "bfloat16")
FRAMEWORKS = ("torch", "jax")
OWN = {"torch": "torch.einsum", "jax": "jnp.einsum"}
TOLERANCE = {"float64": 1e-9, "float32": 1e-3, "bfloat16": 0.1}  # relative to the largest value
LEARNING_RATE = 1e-3
TARGETS = {"step": 1.0, "memory": 1.1, "graphs": 1}  # x own einsum; x torch.einsum; + torch's count
MEMORY_TARGETS = ("after backward, output kept", "checkpointed: after forward")


@dataclass(frozen=True)
class Pair:
    """One model, framework and dtype: einsgrad's training step against the framework's
    own einsum's.

    Attributes:
        einsgrad, own: ok with the median seconds per step, or refused, error or wrong (not
            timed) with a note.
        check: the largest difference between the two first steps' loss and gradients,
            relative to the largest value of each; None unless both ran.
        load: the share of the CPUs other processes used while the two were timed.
        again: a second, separately built copy of the framework's own step, timed in the
            same rounds: ``again / own`` (the A/A ratio) is how far two identical programs
            land apart in this run, the noise any ratio carries.
    """

    model: str
    framework: str
    dtype: str
    einsgrad: Cell
    own: Cell
    check: float | None
    load: float | None
    again: Cell | None = None

    @property
    def ratio(self) -> float | None:
        """einsgrad's step time over the framework's einsum's."""
        if self.einsgrad.seconds and self.own.seconds:
            return self.einsgrad.seconds / self.own.seconds
        return None

    @property
    def spread(self) -> float | None:
        """The A/A ratio: the own step's second copy over the first."""
        if self.again is not None and self.again.seconds and self.own.seconds:
            return self.again.seconds / self.own.seconds
        return None


# -- the two frameworks: a variant is (first loss and gradients, a timed step) -----------

def _torch_variants(model: Model, quick: bool, dtype: str) -> dict:
    import torch

    import einsgrad.torch
    from benchmarks.training_memory import ops

    torch_dtype = getattr(torch, dtype)
    params, batch = model.make(model.sized(quick))
    batch = {k: torch.from_numpy(v).to(torch_dtype) for k, v in batch.items()}
    return {name: functools.partial(_torch_variant, model, ops(einsum), params, batch, torch_dtype)
            for name, einsum in (("einsgrad", einsgrad.torch.einsum), ("own", torch.einsum),
                                 ("again", torch.einsum))}


def _torch_variant(model: Model, ops: Ops, params0: dict, batch: dict, dtype):
    import torch

    params = {k: torch.from_numpy(v).to(dtype).requires_grad_() for k, v in params0.items()}
    loss = model.loss(ops, params, batch)
    first = [loss, *torch.autograd.grad(loss, list(params.values()))]

    def step():
        model.loss(ops, params, batch).backward()
        with torch.no_grad():
            for p in params.values():
                p.sub_(p.grad, alpha=LEARNING_RATE)
                p.grad = None

    return [t.detach().to(torch.float64).numpy() for t in first], step


def _jax_variants(model: Model, quick: bool, dtype: str, preferred: str | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    import einsgrad.jax

    def einsum_of(einsum):
        return einsum if preferred is None else functools.partial(einsum, preferred_element_type=jnp.dtype(preferred))

    jax.config.update("jax_enable_x64", True)
    ops = functools.partial(Ops, relu=jax.nn.relu, softmax=functools.partial(jax.nn.softmax, axis=-1),
                            logsumexp=functools.partial(jax.nn.logsumexp, axis=-1))
    params, batch = model.make(model.sized(quick))
    batch = {k: jnp.asarray(v, dtype) for k, v in batch.items()}
    return {name: functools.partial(_jax_variant, model, ops(einsum_of(einsum)), params, batch, dtype)
            for name, einsum in (("einsgrad", einsgrad.jax.einsum), ("own", jnp.einsum),
                                 ("again", jnp.einsum))}  # (jit-compiled apart: its own executable)


def _jax_variant(model: Model, ops: Ops, params0: dict, batch: dict, dtype: str):
    import jax
    import jax.numpy as jnp

    def update(params, batch):
        loss, grads = jax.value_and_grad(lambda p: model.loss(ops, p, batch))(params)
        return loss, grads, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    update = jax.jit(update)
    state = [{k: jnp.asarray(v, dtype) for k, v in params0.items()}]
    loss, grads, _ = jax.block_until_ready(update(state[0], batch))

    def step():
        state[0] = jax.block_until_ready(update(state[0], batch))[2]

    return [np.asarray(x.astype(jnp.float64)) for x in (loss, *(grads[k] for k in params0))], step


VARIANTS = {"torch": _torch_variants, "jax": _jax_variants}


# -- one pair, the whole run ---------------------------------------------------------------

def _difference(mine: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in zip(mine, theirs))


def pair(model: Model, framework: str, dtype: str, quick: bool, repeats: int,
         clock=time.perf_counter, preferred: str | None = None) -> Pair:
    """Checks and times einsgrad's step against the framework's einsum's, by ``clock``;
    ``preferred``: jax's einsums given that ``preferred_element_type``."""
    cells, firsts, steps = {}, {}, {}
    try:
        variants = (VARIANTS[framework](model, quick, dtype) if preferred is None
                    else VARIANTS[framework](model, quick, dtype, preferred))
    except Exception as e:  # noqa: BLE001 - the framework is missing or cannot take the dtype
        failed = Cell("error", note=message(e))
        return Pair(model.name, framework, dtype, failed, failed, None, None)
    for name, variant in variants.items():
        try:
            firsts[name], steps[name] = variant()
        except Exception as e:  # noqa: BLE001 - a failing variant fails its own cell only
            status = "refused" if isinstance(e, einsgrad.EinsumSpecError) else "error"
            cells[name] = Cell(status, note=message(e))
    check = _difference(firsts["einsgrad"], firsts["own"]) if "einsgrad" in firsts and "own" in firsts else None
    if check is not None and not check <= TOLERANCE[dtype]:
        cells["einsgrad"] = Cell("wrong", note=f"first step off by {check:.2g} relative to the largest value")
        del steps["einsgrad"]
    load = None
    if steps:
        start = limits.cpu_clock()
        try:
            times = medians(steps, repeats, warmup=2, clock=clock)
        except Exception as e:  # noqa: BLE001
            cells.update({name: Cell("error", note=message(e)) for name in steps})
        else:
            cells.update({name: Cell("ok", seconds) for name, seconds in times.items()})
        load = limits.others_load(start, limits.cpu_clock())
    return Pair(model.name, framework, dtype, cells["einsgrad"], cells["own"], check, load, cells.get("again"))


def targets(pairs, memory: dict, graphs: dict) -> list[dict]:
    """Each target of the issue with its value here (None where einsgrad's is missing) and
    whether it is met."""
    found = []
    for p in pairs:
        if p.own.status == "ok":
            found.append({"target": f"step x {OWN[p.framework]}", "where": f"{p.model} {p.framework} {p.dtype}",
                          "value": p.ratio, "met": p.ratio is not None and p.ratio <= TARGETS["step"]})
    mine, theirs = memory.get("einsgrad.torch", {}), memory.get("torch.einsum", {})
    for measure in MEMORY_TARGETS if _complete(theirs) else ():
        value = mine[measure] / theirs[measure] if _complete(mine) and theirs[measure] else None
        found.append({"target": "memory x torch.einsum", "where": f"attention: {measure}",
                      "value": value, "met": value is not None and value <= TARGETS["memory"]})
    if "torch.einsum" in graphs and "einsgrad.torch" in graphs:
        value, limit = graphs["einsgrad.torch"]["graphs"], graphs["torch.einsum"]["graphs"] + TARGETS["graphs"]
        found.append({"target": f"graphs <= torch.einsum's + {TARGETS['graphs']}", "where": "attention",
                      "value": value, "met": graphs["einsgrad.torch"]["error"] is None and value <= limit})
    return found


def _complete(figures: dict) -> bool:
    """Whether a system's memory figures were all measured."""
    return bool(figures) and "error" not in figures


# -- presentation -----------------------------------------------------------------------

_SHOWN = {"refused": "refused", "error": "ERROR", "wrong": "WRONG"}


def _cell(cell: Cell) -> str:
    return duration(cell.seconds) if cell.status == "ok" else _SHOWN.get(cell.status, cell.status)


def table(pairs, memory: dict, graphs: dict, repeats: int, quick: bool, thread_clock: bool = False,
          preferred: str | None = None) -> str:
    """The step times, the attention memory and graph counts and the targets, as text."""
    frameworks = list(dict.fromkeys(p.framework for p in pairs))
    lines = [f"# training step = forward + loss + backward + SGD update; median of {repeats} "
             "interleaved rounds in one process; CPU only" + (" (quick sizes)" if quick else "")
             + ("; one torch thread, timed by its CPU time" if thread_clock else "")
             + ("" if preferred is None else f"; every jax einsum with preferred_element_type={preferred}"),
             "# ratio: einsgrad's step time over the framework's own einsum's; A/A: a second copy of"
             " the framework's own step over the first, timed in the same rounds (the run's noise);"
             " check: largest first-step loss/gradient difference relative to the largest value;"
             " load: other processes' CPU share while timed (the higher of the row's two)"]
    head = f"{'model':<13} {'dtype':<9}"
    for f in frameworks:
        head += f" {OWN[f]:>13} {'einsgrad.' + f:>15} {'ratio':>6} {'A/A':>6} {'check':>8}"
    lines.append(head + "   load")
    notes: dict = {}
    for model in dict.fromkeys(p.model for p in pairs):
        for dtype in dict.fromkeys(p.dtype for p in pairs):
            row = {p.framework: p for p in pairs if p.model == model and p.dtype == dtype}
            if not row:
                continue
            text = f"{model:<13} {dtype:<9}"
            for f in frameworks:
                p = row.get(f)
                if p is None:
                    text += f" {'':>13} {'':>15} {'':>6} {'':>6} {'':>8}"
                    continue
                check = f"{p.check:.1e}" if p.check is not None else ""
                spread = ratio_text(p.spread) if p.spread is not None else ""
                text += (f" {_cell(p.own):>13} {_cell(p.einsgrad):>15} {ratio_text(p.ratio):>6} {spread:>6}"
                         f" {check:>8}")
                for who, cell in ((f"einsgrad.{f}", p.einsgrad), (OWN[f], p.own)):
                    if cell.note:
                        notes.setdefault((who, _SHOWN.get(cell.status), cell.note), []).append(f"{model} {dtype}")
            loads = [p.load for p in row.values() if p.load is not None]
            lines.append(text + (f"  {max(loads):4.0%}" if loads else ""))
    for (who, status, note), where in notes.items():
        lines.append(f"{who} {status}: {note} [{', '.join(where)}]")
    if memory:
        lines += ["", "# attention, torch float32 (" + _sizes("attention", quick) + "): bytes of the tensor "
                  "storages made by the step and still alive (output and weight gradients included)",
                  f"{'':<46} {'torch.einsum':>14} {'einsgrad.torch':>15} {'ratio':>6}"]
        mine, theirs = memory.get("einsgrad.torch", {}), memory.get("torch.einsum", {})
        for measure in theirs if _complete(theirs) else mine if _complete(mine) else ():
            ratio = mine.get(measure, 0) / theirs[measure] if _complete(mine) and theirs.get(measure) else None
            lines.append(f"{measure:<46} {_bytes(theirs.get(measure)):>14} {_bytes(mine.get(measure)):>15}"
                         f" {ratio_text(ratio):>6}")
        lines += [f"{who} ERROR: {figures['error']}" for who, figures in memory.items() if "error" in figures]
    if graphs:
        lengths = next(iter(graphs.values()))["lengths"]
        lines += ["", f"# torch.compile(dynamic=True) graphs for an attention step over {len(lengths)} sequence"
                  f" lengths ({lengths[0]}..{lengths[-1]})",
                  "  ".join(f"{who}: {g['graphs']}" + (f" (then {g['error']})" if g["error"] else "")
                            for who, g in graphs.items())]
    verdicts = targets(pairs, memory, graphs)
    lines += ["", f"# targets: {sum(v['met'] for v in verdicts)} of {len(verdicts)} met "
              f"(step <= {TARGETS['step']:.2f}x, memory <= {TARGETS['memory']}x, graphs <= torch.einsum's"
              f" + {TARGETS['graphs']})"]
    for kind in dict.fromkeys(v["target"] for v in verdicts):
        group = [v for v in verdicts if v["target"] == kind]
        missed = [v["where"] for v in group if not v["met"]]
        lines.append(f"{kind}: {len(group) - len(missed)} of {len(group)} met"
                     + (f"; missed: {', '.join(missed)}" if missed else ""))
    return "\n".join(lines)


def _bytes(nbytes) -> str:
    if not isinstance(nbytes, (int, float)):
        return "-"
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _sizes(name: str, quick: bool) -> str:
    return next(m for m in MODELS if m.name == name).describe(quick)


def document(pairs, memory: dict, graphs: dict, settings: dict) -> dict:
    """Everything measured, JSON-ready, with the machine and the library versions."""
    steps = [{**asdict(p), "ratio": p.ratio, "spread": p.spread} for p in pairs]
    models = {m.name: {"specs": list(m.specs), "sizes": m.sized(settings["quick"])} for m in MODELS}
    return {"machine": limits.machine(), "versions": versions(), "settings": settings, "models": models,
            "steps": steps, "memory_bytes": memory, "graphs": graphs,
            "targets": targets(pairs, memory, graphs)}


# -- command line -----------------------------------------------------------------------

def _names(text: str, known, parser, what: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if unknown := [n for n in names if n not in known]:
        parser.error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 rounds, 3 sequence lengths")
    parser.add_argument("--repeats", type=int, help="interleaved rounds per pair (default 21, quick 3)")
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--out", metavar="DIR", help="write training.json and training.txt here")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc settings (else the command runs under MALLOC's)")
    parser.add_argument("--thread-clock", action="store_true",
                        help="torch on one thread, timed by this thread's CPU time (time.thread_time), "
                             "which other processes' load barely moves")
    parser.add_argument("--preferred", metavar="DTYPE",
                        help="jax alone: every einsum of both steps given preferred_element_type=DTYPE")
    parser.add_argument("--hlo", action="store_true",
                        help="compare the compiled HLO of einsgrad's and jnp.einsum's jax steps, timing nothing")
    args = parser.parse_args(argv)
    models = [m for m in MODELS if m.name in _names(args.models, [m.name for m in MODELS], parser, "model(s)")]
    dtypes = _names(args.dtypes, DTYPES, parser, "dtype(s)")
    frameworks = _names(args.frameworks, FRAMEWORKS, parser, "framework(s)")
    if args.preferred is not None and frameworks != ["jax"] and not args.hlo:
        parser.error("--preferred is jnp.einsum's preferred_element_type: add --frameworks jax")
    if args.hlo:
        from benchmarks import training_hlo

        print(training_hlo.table(models, dtypes, args.preferred))
        return 0
    repeats = args.repeats or (3 if args.quick else 21)
    clock = time.perf_counter
    if args.thread_clock:
        if frameworks != ["torch"]:
            parser.error("--thread-clock times torch alone (XLA computes on threads of its own): "
                         "add --frameworks torch")
        import torch

        torch.set_num_threads(1)
        clock = time.thread_time

    start = time.perf_counter()
    jobs = [(m, f, d) for m in models for d in dtypes for f in frameworks]
    pairs = []
    for done, (model, framework, dtype) in enumerate(jobs):
        print(f"[{done}/{len(jobs)}] {model.name} {framework} {dtype}", file=sys.stderr, flush=True)
        pairs.append(pair(model, framework, dtype, args.quick, repeats, clock, args.preferred))
    memory, graphs = {}, {}
    if "torch" in frameworks and any(m.name == "attention" for m in models):
        from benchmarks import training_memory

        print("attention memory and torch.compile graphs", file=sys.stderr, flush=True)
        memory, graphs = training_memory.memory(args.quick), training_memory.graphs(args.quick)
    text = table(pairs, memory, graphs, repeats, args.quick, args.thread_clock, args.preferred)
    wall = time.perf_counter() - start
    text += f"\n# wall time {wall:.0f} s; malloc: {malloc.settings_text()}"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        settings = {"quick": args.quick, "repeats": repeats, "thread_clock": args.thread_clock,
                    "preferred_element_type": args.preferred, "learning_rate": LEARNING_RATE,
                    "tolerance": TOLERANCE, "targets": TARGETS, "wall_seconds": wall,
                    "malloc": malloc.settings()}
        with open(os.path.join(args.out, "training.json"), "w") as f:
            json.dump(document(pairs, memory, graphs, settings), f, indent=1)
        with open(os.path.join(args.out, "training.txt"), "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    malloc.reexecute_under("benchmarks.training", sys.argv[1:])
    sys.exit(main())
