"""The five models of the training benchmark, each written once over the einsum it is given.

A model's loss takes an :class:`Ops` (the einsum and the few non-einsum functions it needs),
its parameters and a batch. Handing it ``einsgrad.torch.einsum`` or ``torch.einsum`` (and
likewise in jax) gives the two versions the benchmark compares, with the same spec strings by
construction. Parameters and batch are made once, seeded, in float64 numpy, so that both
versions start from the same weights in every dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np


class Ops(NamedTuple):
    """What a loss may call: ``einsum(spec, *operands)``, and relu, softmax and logsumexp over
    the last axis, from one framework."""

    einsum: Callable
    relu: Callable
    softmax: Callable
    logsumexp: Callable


@dataclass(frozen=True)
class Model:
    """One model of the benchmark.

    Attributes:
        name: short name for tables.
        specs: the einsum specs its loss calls.
        sizes: the full run's sizes, by name (what the tables print).
        quick_sizes: the quick run's.
        make: ``sizes -> (params, batch)``, float64 numpy arrays by name.
        loss: ``(ops, params, batch) -> scalar``.
    """

    name: str
    specs: tuple[str, ...]
    sizes: dict
    quick_sizes: dict
    make: Callable[[dict], tuple[dict, dict]]
    loss: Callable

    def sized(self, quick: bool) -> dict:
        """The sizes of the quick or the full run."""
        return self.quick_sizes if quick else self.sizes

    def describe(self, quick: bool) -> str:
        """The sizes as ``name=value`` text."""
        return ", ".join(f"{k}={v}" for k, v in self.sized(quick).items())


def _normal(rng, shape, fan_in: int) -> np.ndarray:
    """Standard normal values over the square root of ``fan_in``."""
    return rng.standard_normal(shape) / math.sqrt(fan_in)


def _mse(y, target):
    return ((y - target) ** 2).mean()


# -- MLP 512-1024-512-10: ``bi,oi->bo`` layers with bias and relu, cross-entropy ------------

def _mlp_make(s: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    dims, params = s["dims"], {}
    for k, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
        params[f"w{k}"] = _normal(rng, (fan_out, fan_in), fan_in)
        params[f"b{k}"] = np.zeros(fan_out)
    labels = rng.integers(0, dims[-1], s["B"])
    return params, {"x": rng.standard_normal((s["B"], dims[0])), "y": np.eye(dims[-1])[labels]}


def _mlp_loss(ops: Ops, p: dict, batch: dict):
    h, layers = batch["x"], len(p) // 2
    for k in range(layers):
        h = ops.einsum("bi,oi->bo", h, p[f"w{k}"]) + p[f"b{k}"]
        if k < layers - 1:
            h = ops.relu(h)
    return (ops.logsumexp(h) - (h * batch["y"]).sum(-1)).mean()


# -- multi-head attention: projections, scores, softmax, apply, output projection ----------

def _attention_make(s: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(1)
    d, h = s["d"], s["h"]
    params = {n: _normal(rng, (h, d // h, d), d) for n in ("wq", "wk", "wv")}
    params["wo"] = _normal(rng, (d, h, d // h), d)
    shape = (s["B"], s["S"], d)
    return params, {"x": rng.standard_normal(shape), "target": rng.standard_normal(shape)}


def attention(ops: Ops, p: dict, x):
    """Multi-head self-attention of ``x`` (batch, sequence, model), heads split by the
    projections' weights (heads, head size, model)."""
    q, k, v = (ops.einsum("bsi,hdi->bhsd", x, p[n]) for n in ("wq", "wk", "wv"))
    scores = ops.einsum("bhqd,bhkd->bhqk", q, k) * (1.0 / math.sqrt(q.shape[-1]))
    heads = ops.einsum("bhqk,bhkd->bhqd", ops.softmax(scores), v)
    return ops.einsum("bhqd,ohd->bqo", heads, p["wo"])


def _attention_loss(ops: Ops, p: dict, batch: dict):
    return _mse(attention(ops, p, batch["x"]), batch["target"])


# -- bilinear layer ``bi,oij,bj->bo`` ------------------------------------------------------

def _bilinear_make(s: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(2)
    b, i, j, o = s["B"], s["i"], s["j"], s["o"]
    params = {"w": _normal(rng, (o, i, j), i * j), "b": np.zeros(o)}
    return params, {"x1": rng.standard_normal((b, i)), "x2": rng.standard_normal((b, j)),
                    "target": rng.standard_normal((b, o))}


def _bilinear_loss(ops: Ops, p: dict, batch: dict):
    return _mse(ops.einsum("bi,oij,bj->bo", batch["x1"], p["w"], batch["x2"]) + p["b"], batch["target"])


# -- tensor-train layer: the input's four modes contracted with four cores at once -----------

_TT_SPEC = "nabcd,aep,pbfq,qcgr,rdh->nefgh"


def _tt_make(s: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(3)
    (m1, m2, m3, m4), r = s["modes"], s["rank"]
    params = {"g1": _normal(rng, (m1, m1, r), m1), "g2": _normal(rng, (r, m2, m2, r), r * m2),
              "g3": _normal(rng, (r, m3, m3, r), r * m3), "g4": _normal(rng, (r, m4, m4), r * m4),
              "b": np.zeros(m1 * m2 * m3 * m4)}
    features = m1 * m2 * m3 * m4
    return params, {"x": rng.standard_normal((s["B"], features)),
                    "target": rng.standard_normal((s["B"], features))}


def _tt_loss(ops: Ops, p: dict, batch: dict):
    x = batch["x"]
    modes = (p["g1"].shape[0], p["g2"].shape[1], p["g3"].shape[1], p["g4"].shape[1])
    y = ops.einsum(_TT_SPEC, x.reshape(x.shape[0], *modes), p["g1"], p["g2"], p["g3"], p["g4"])
    return _mse(y.reshape(x.shape[0], -1) + p["b"], batch["target"])


# -- grouped batched matmul: one weight per group, broadcast over the batch ---------------

def _grouped_make(s: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(4)
    b, g, n, i, o = s["B"], s["G"], s["n"], s["i"], s["o"]
    return {"w": _normal(rng, (g, i, o), i)}, {"x": rng.standard_normal((b, g, n, i)),
                                                "target": rng.standard_normal((b, g, n, o))}


def _grouped_loss(ops: Ops, p: dict, batch: dict):
    return _mse(ops.einsum("...ij,...jk->...ik", batch["x"], p["w"]), batch["target"])


MODELS = (
    Model("mlp", ("bi,oi->bo",), {"dims": (512, 1024, 512, 10), "B": 256},
          {"dims": (32, 64, 32, 10), "B": 16}, _mlp_make, _mlp_loss),
    Model("attention", ("bsi,hdi->bhsd", "bhqd,bhkd->bhqk", "bhqk,bhkd->bhqd", "bhqd,ohd->bqo"),
          {"B": 32, "S": 128, "d": 256, "h": 8}, {"B": 2, "S": 16, "d": 32, "h": 4},
          _attention_make, _attention_loss),
    Model("bilinear", ("bi,oij,bj->bo",), {"B": 256, "i": 128, "j": 128, "o": 64},
          {"B": 8, "i": 8, "j": 8, "o": 4}, _bilinear_make, _bilinear_loss),
    Model("tensor-train", (_TT_SPEC,), {"B": 256, "modes": (4, 8, 8, 4), "rank": 16},
          {"B": 8, "modes": (2, 2, 2, 2), "rank": 4}, _tt_make, _tt_loss),
    Model("grouped", ("...ij,...jk->...ik",), {"B": 16, "G": 8, "n": 64, "i": 128, "o": 128},
          {"B": 2, "G": 2, "n": 4, "i": 8, "o": 8}, _grouped_make, _grouped_loss),
)
