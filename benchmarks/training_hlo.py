"""The compiled programs of the training benchmark's jax steps: einsgrad's against ``jnp.einsum``'s.

Run: ``python -m benchmarks.training --hlo [--models a,b] [--dtypes ...]``. For each model and
dtype, the jit-compiled training step of :mod:`benchmarks.training` (forward, loss, gradient,
SGD update) is lowered and compiled with ``einsgrad.jax.einsum`` and with ``jnp.einsum``, and
the optimized HLO texts (``jax.jit(f).lower(...).compile().as_text()``) are compared once
instruction names and source locations are normalised away
(:func:`benchmarks.jax_spellings.normalised_hlo`): the line says whether they are the same
program and counts the instructions that cost time outside the arithmetic, the dots and the
transposes and copies (data moved), fused computations included. Nothing is timed.
"""

from __future__ import annotations

import re
from collections import Counter

from benchmarks.jax_spellings import normalised_hlo

COUNTED = {"dot": "dots", "transpose": "transposes", "copy": "copies"}  # opcode: its plural
_OPCODE = re.compile(r"%\S+ = .*? ([a-z][\w-]*)\(")  # the opcode after the result's shape


def opcodes(lines: list[str]) -> Counter:
    """How often each opcode occurs in normalised HLO lines (fused computations included)."""
    found = Counter()
    for line in lines:
        match = _OPCODE.match(line.removeprefix("ROOT "))
        if match:
            found[match.group(1)] += 1
    return found


def compiled(step, *args) -> list[str]:
    """The normalised optimized HLO of ``jax.jit(step)`` for these arguments."""
    import jax

    return normalised_hlo(jax.jit(step).lower(*args).compile().as_text())


def compare(model, dtype: str) -> dict:
    """Whether the model's training step compiles to the same program with both einsums, and
    the counts of :data:`COUNTED` in each."""
    import jax
    import jax.numpy as jnp

    import einsgrad.jax
    from benchmarks.training import LEARNING_RATE
    from benchmarks.training_models import Ops

    params, batch = model.make(model.sized(False))
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    batch = {k: jnp.asarray(v, dtype) for k, v in batch.items()}
    programs = {}
    for name, einsum in (("einsgrad", einsgrad.jax.einsum), ("own", jnp.einsum)):
        ops = Ops(einsum, jax.nn.relu, lambda x: jax.nn.softmax(x, axis=-1), lambda x: jax.nn.logsumexp(x, axis=-1))

        def update(params, batch, ops=ops):
            loss, grads = jax.value_and_grad(lambda p: model.loss(ops, p, batch))(params)
            return loss, grads, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

        programs[name] = compiled(update, params, batch)
    counts = {name: opcodes(lines) for name, lines in programs.items()}
    return {"model": model.name, "dtype": dtype, "same": programs["einsgrad"] == programs["own"],
            **{f"{op} (einsgrad, jnp)": (counts["einsgrad"][op], counts["own"][op]) for op in COUNTED}}


def table(models, dtypes) -> str:
    """One line per model and dtype: the same program or not, and the counts."""
    import jax

    jax.config.update("jax_enable_x64", True)
    lines = ["# compiled HLO of the jitted jax training step: einsgrad.jax.einsum's against jnp.einsum's"
             " (names and source locations aside); counts as einsgrad, jnp.einsum",
             f"{'model':<13} {'dtype':<9} {'program':<9} " + " ".join(f"{plural:>11}" for plural in COUNTED.values())]
    for model in models:
        for dtype in dtypes:
            found = compare(model, dtype)
            counts = " ".join(f"{'%d, %d' % found[f'{op} (einsgrad, jnp)']:>11}" for op in COUNTED)
            lines.append(f"{model.name:<13} {dtype:<9} {'same' if found['same'] else 'differs':<9} {counts}")
    return "\n".join(lines)
