"""Two spellings of the jax dialect's pairwise products, timed in the training benchmark's models.

Run: ``python -m benchmarks.jax_spellings [--models mlp,...] [--dtypes float64,...] [--repeats 21]
[--runs 3] [--hlo]``. For each model and dtype, four jit-compiled training steps are timed
interleaved in one process (:func:`benchmarks.timing.medians`), ``--runs`` times over:

* ``label``: einsgrad's jax dialect as it is, one ``lax.dot_general`` per pair over the labels as
  stored (:func:`einsgrad.codegen.expression`);
* ``gemm``: the same plans spelled as the numpy dialect spells them, GEMM-shaped reshapes and
  swaps around ``@`` (the dialect with ``dot_general=False``, swapped in for this measurement);
* ``own`` and ``own2``: ``jnp.einsum``, jit-compiled twice, so that ``own2/own`` shows the spread
  of two identical programs on this machine.

Each line printed is one run: the ratios of the medians, and the first step's largest
difference from ``jnp.einsum``'s. ``--hlo`` prints, instead, whether the compiled HLO of
einsgrad's step (``jax.jit(f).lower(...).compile().as_text()``) equals ``jnp.einsum``'s once
instruction names and source locations are normalised away.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import re

import numpy as np

from benchmarks.timing import medians
from benchmarks.training_models import MODELS, Ops

SPELLINGS = ("label", "gemm", "own", "own2")
LEARNING_RATE = 1e-3


@contextlib.contextmanager
def _spelled(spelling: str):
    """The jax backend's dialect for ``spelling`` while a step is traced (the dialect is part of
    every generated function's cache key, so each spelling traces code of its own)."""
    from einsgrad import backends

    backend = backends.get("jax")
    old = backend.dialect
    if spelling == "gemm":
        object.__setattr__(backend, "dialect", dataclasses.replace(old, dot_general=False))
    try:
        yield
    finally:
        object.__setattr__(backend, "dialect", old)


def _update(model, dtype: str, spelling: str):
    """The model's jit-compiled training step for ``spelling``, and its arguments."""
    import jax
    import jax.numpy as jnp

    import einsgrad.jax

    einsum = jnp.einsum if spelling.startswith("own") else einsgrad.jax.einsum
    ops = Ops(einsum, jax.nn.relu, functools.partial(jax.nn.softmax, axis=-1),
              functools.partial(jax.nn.logsumexp, axis=-1))
    params, batch = model.make(model.sized(False))
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    batch = {k: jnp.asarray(v, dtype) for k, v in batch.items()}

    def update(params, batch):
        loss, grads = jax.value_and_grad(lambda p: model.loss(ops, p, batch))(params)
        return loss, grads, jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

    return jax.jit(update), params, batch


def _step(model, dtype: str, spelling: str):
    """The first step's loss and gradients (float64 numpy), and a function running one step."""
    import jax
    import jax.numpy as jnp

    with _spelled(spelling):
        update, params, batch = _update(model, dtype, spelling)
        loss, grads, _ = jax.block_until_ready(update(params, batch))
    state = [params]

    def step():
        state[0] = jax.block_until_ready(update(state[0], batch))[2]

    first = [np.asarray(x.astype(jnp.float64)) for x in (loss, *(grads[k] for k in sorted(grads)))]
    return first, step


def _difference(mine, theirs) -> float:
    return max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in zip(mine, theirs))


def normalised_hlo(text: str) -> list[str]:
    """Compiled HLO text without what differs between equal programs: the source-location
    tables, metadata, and the names of instructions and computations (numbered in order)."""
    blocks = [b for b in text.split("\n\n") if b.strip().split("\n")[0] not in
              ("FileNames", "FunctionNames", "FileLocations", "StackFrames")]
    text = re.sub(r", metadata=\{[^}]*\}", "", "\n\n".join(blocks))
    text = re.sub(r"HloModule \S+", "HloModule m", text)
    names: dict[str, str] = {}
    text = re.sub(r"%[\w.\-]+", lambda m: names.setdefault(m.group(0), f"%v{len(names)}"), text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def same_hlo(model, dtype: str) -> bool:
    """Whether einsgrad's compiled training step equals ``jnp.einsum``'s, names aside."""
    texts = []
    for spelling in ("label", "own"):
        with _spelled(spelling):
            update, params, batch = _update(model, dtype, spelling)
            texts.append(normalised_hlo(update.lower(params, batch).compile().as_text()))
    return texts[0] == texts[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--dtypes", default="float64,float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hlo", action="store_true", help="compare compiled HLO instead of timing")
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    models = {m.name: m for m in MODELS}
    for name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            if args.hlo:
                print(json.dumps({"model": name, "dtype": dtype, "same_hlo": same_hlo(models[name], dtype)}))
                continue
            firsts, steps = {}, {}
            for spelling in SPELLINGS:
                firsts[spelling], steps[spelling] = _step(models[name], dtype, spelling)
            off = {s: float(f"{_difference(firsts[s], firsts['own']):.2g}") for s in SPELLINGS if s != "own"}
            for run in range(args.runs):
                t = medians(steps, args.repeats, warmup=2)
                ratios = {f"{s}/own": round(t[s] / t["own"], 3) for s in SPELLINGS if s != "own"}
                print(json.dumps({"model": name, "dtype": dtype, "run": run, **ratios,
                                  "gemm/label": round(t["gemm"] / t["label"], 3),
                                  "own_ms": round(t["own"] * 1e3, 2), "off": off}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
