"""The systems compared: how each computes the forward and the gradients of an einsum.

A system's ``prepare`` does all set-up outside the timer (compiling, converting operands) and
returns zero-argument kernels for the timer.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning idle
                                                     # threads would halve numpy's GEMM
import functools
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from benchmarks.limits import naive_flops, numpy_path_loops


class Problem(NamedTuple):
    """A forward spec, its operands and a cotangent of its output (numpy arrays)."""

    spec: str
    operands: tuple[np.ndarray, ...]
    cotangent: np.ndarray


class Kernels(NamedTuple):
    """Zero-argument callables: the forward value, all gradients in one shot (a tape system
    runs its forward inside), and all gradients from a stored forward (None without a tape)."""

    forward: Callable[[], object]
    oneshot: Callable[[], Sequence]
    pullback: Callable[[], Sequence] | None = None


@dataclass(frozen=True)
class System:
    """A named way to compute an einsum and its gradients.

    Attributes:
        name: column name.
        prepare: ``Problem -> Kernels``.
        requires: modules that must be importable, else the system is skipped.
        loops: ``(spec, shapes) -> FLOPs`` the system runs in numpy's unoptimized einsum
            loops, which can take hours on a network; None if it runs none.
    """

    name: str
    prepare: Callable[[Problem], Kernels]
    requires: tuple[str, ...] = ()
    loops: Callable[[str, list], int] | None = None

    def installed(self) -> bool:
        """Whether every required module can be imported."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


# -- per-operand gradients with numpy-compatible contractions ------------------------------

def grad_spec(spec: str, k: int) -> str:
    """The backward spec of operand ``k``: ``"O,L_m (m != k)->L_k"`` in the extended notation."""
    inputs, output = spec.replace(" ", "").split("->")
    terms = inputs.split(",")
    return ",".join([output] + terms[:k] + terms[k + 1:]) + "->" + terms[k]


def _tokens(term: str) -> list[str]:
    return re.findall(r"\.\.\.|\w", term)


def _split(spec: str) -> tuple[str, list[str]]:
    """The inputs, and the output's tokens with the inputs' ellipsis (to sum when it lacks it)."""
    inputs, output = spec.replace(" ", "").split("->")
    outs = _tokens(output)
    return inputs, ["..."] + outs if "..." in inputs and "..." not in outs else outs


def core(spec: str) -> str:
    """The numpy-compatible core of an extended spec: output labels deduplicated, those no
    input has dropped, the inputs' ellipsis kept."""
    inputs, outs = _split(spec)
    return f"{inputs}->{''.join(dict.fromkeys(t for t in outs if t == '...' or t in inputs))}"


def lowered(spec: str, shapes, target: tuple[int, ...], make) -> Callable[..., np.ndarray]:
    """A function of the operands computing an extended-notation spec with ``target`` shape.

    ``make(core_spec, shapes)`` returns a contraction of the :func:`core`. Its result is
    summed over the batch dimensions the target lacks or has as 1, then broadcast along the
    dropped labels and placed on the diagonal of repeated labels (zeros elsewhere). Labelled
    size-1 dimensions that broadcast are not supported.
    """
    inputs, outs = _split(spec)
    batch = len(target) - len(outs) + ("..." in outs)
    dims = [d for t in outs for d in ([f".{i}" for i in range(batch)] if t == "..." else [t])]
    unique = list(dict.fromkeys(dims))
    kept = [d for d in unique if d[0] == "." or d in inputs]
    tokens = _tokens(core(spec).split("->")[1])
    contract = make(core(spec), shapes)
    batch_shape = tuple(n for n, d in zip(target, dims) if d[0] == ".")
    view_shape = tuple(target[dims.index(d)] for d in unique)

    def run(*operands):
        z = contract(*operands)
        if "..." in tokens:
            z = _unbroadcast(z, tokens.index("..."), z.ndim - len(tokens) + 1, batch_shape)
        if kept == dims and z.shape == target:
            return z
        out = (np.zeros if len(unique) < len(dims) else np.empty)(target, z.dtype)
        strides = tuple(sum(s for s, e in zip(out.strides, dims) if e == d) for d in unique)
        sizes = iter(z.shape)
        as_strided(out, view_shape, strides)[...] = z.reshape(
            tuple(next(sizes) if d in kept else 1 for d in unique))
        return out

    return run


def _unbroadcast(z: np.ndarray, at: int, ndim: int, batch: tuple[int, ...]) -> np.ndarray:
    """``z`` with its ``ndim`` batch axes from ``at`` summed to broadcast to ``batch``."""
    lead = ndim - len(batch)
    if lead < 0:
        z, lead = z.reshape(z.shape[:at] + (1,) * -lead + z.shape[at:]), 0
    kept = z.shape[at + lead:at + lead + len(batch)]
    axes = tuple(range(at, at + lead)) + tuple(
        at + lead + i for i, (n, t) in enumerate(zip(kept, batch)) if t == 1 != n)
    if axes:
        z = z.sum(axis=axes, keepdims=True)
    return z.reshape(z.shape[:at] + z.shape[at + lead:])


def _per_operand(p: Problem, make) -> Kernels:
    """The forward and one contraction per operand gradient, each from ``make``."""
    ops, g = p.operands, p.cotangent
    shapes = [o.shape for o in ops]
    forward = make(p.spec, shapes)
    others = [ops[:k] + ops[k + 1:] for k in range(len(ops))]
    grads = [lowered(grad_spec(p.spec, k), [g.shape] + [o.shape for o in rest], ops[k].shape, make)
             for k, rest in enumerate(others)]
    return Kernels(lambda: forward(*ops), lambda: [f(g, *rest) for f, rest in zip(grads, others)])


def numpy_gradients(p: Problem, optimize=True) -> Kernels:
    """One ``numpy.einsum(..., optimize=optimize)`` per gradient. ``optimize="opt_einsum"``
    runs numpy along opt_einsum's path, for the reference: numpy's own path can be the naive
    loop, as it keeps intermediates below the largest operand."""
    def make(spec, shapes):
        return functools.partial(np.einsum, spec, optimize=opt_einsum_path(spec, shapes)
                                 if optimize == "opt_einsum" else optimize)

    return _per_operand(p, make)


def opt_einsum_path(spec: str, shapes) -> list:
    """opt_einsum's path for ``spec`` as a ``numpy.einsum`` ``optimize`` argument."""
    import opt_einsum

    return ["einsum_path", *opt_einsum.contract_path(spec, *shapes, shapes=True)[0]]


# -- the systems ------------------------------------------------------------------------------

def _einsgrad(p: Problem) -> Kernels:
    import einsgrad

    lin, ops, g = einsgrad.compile(p.spec), p.operands, p.cotangent
    _, pullback = lin.value_and_pullback(*ops)
    return Kernels(lambda: lin(*ops), lambda: lin.vjp(g, *ops), lambda: pullback(g))


def _opt_einsum(p: Problem) -> Kernels:
    import opt_einsum

    return _per_operand(p, lambda spec, shapes: opt_einsum.contract_expression(spec, *shapes))


def _torch(p: Problem) -> Kernels:
    import torch

    return _taped(p, torch.einsum)


def _taped(p: Problem, einsum) -> Kernels:
    """``einsum(spec, *tensors)`` in torch: forward without a tape, one-shot
    ``torch.autograd.grad`` (forward included), and the backward of a stored forward."""
    import torch

    plain = [torch.from_numpy(o) for o in p.operands]
    xs = [torch.from_numpy(o).requires_grad_() for o in p.operands]
    g = torch.from_numpy(p.cotangent)

    def oneshot():
        return torch.autograd.grad(einsum(p.spec, *xs), xs, g)

    y = einsum(p.spec, *xs)
    return Kernels(lambda: einsum(p.spec, *plain), oneshot,
                   lambda: torch.autograd.grad(y, xs, g, retain_graph=True))


def _jax(p: Problem) -> Kernels:
    import jax.numpy as jnp

    return _jitted(p, jnp.einsum)


def _jitted(p: Problem, einsum) -> Kernels:
    """``einsum(spec, *arrays)`` in jax: forward, one-shot ``jax.vjp`` and the pullback of a
    stored ``jax.vjp``, each jit-compiled before timing (x64 on for float64)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    xs, g = [jnp.asarray(o) for o in p.operands], jnp.asarray(p.cotangent)

    def f(*a):
        return einsum(p.spec, *a)

    forward = jax.jit(f).lower(*xs).compile()
    oneshot = jax.jit(lambda g, *a: jax.vjp(f, *a)[1](g)).lower(g, *xs).compile()
    _, back = jax.vjp(f, *xs)
    pullback = jax.jit(lambda back, g: back(g)).lower(back, g).compile()
    return Kernels(lambda: forward(*xs).block_until_ready(),
                   lambda: jax.block_until_ready(oneshot(g, *xs)),
                   lambda: jax.block_until_ready(pullback(back, g)))


def _einsgrad_torch(p: Problem) -> Kernels:
    """``einsgrad.torch.einsum`` timed as the torch system is: its backward is einsgrad's
    pullback plan in torch ops."""
    import einsgrad.torch

    return _taped(p, einsgrad.torch.einsum)


def _einsgrad_jax(p: Problem) -> Kernels:
    """``einsgrad.jax.einsum`` (a custom_vjp) timed as the jax system is, jit-compiled."""
    import einsgrad.jax

    return _jitted(p, einsgrad.jax.einsum)


def _autograd(p: Problem) -> Kernels:
    import autograd
    import autograd.numpy as anp

    ops, g, every = p.operands, p.cotangent, tuple(range(len(p.operands)))

    def f(*a):
        return anp.einsum(p.spec, *a)

    def oneshot():
        return autograd.make_vjp(f, every)(*ops)[0](g)

    back = autograd.make_vjp(f, every)(*ops)[0]
    return Kernels(lambda: f(*ops), oneshot, lambda: back(g))


SYSTEMS = (
    System("einsgrad", _einsgrad, ("einsgrad",)),
    System("numpy", functools.partial(numpy_gradients, optimize=False), loops=naive_flops),
    System("numpy-opt", functools.partial(numpy_gradients, optimize=True), loops=numpy_path_loops),
    System("opt_einsum", _opt_einsum, ("opt_einsum",)),
    System("torch", _torch, ("torch",)),
    System("jax", _jax, ("jax", "jaxlib")),
    System("einsgrad-torch", _einsgrad_torch, ("einsgrad", "torch")),
    System("einsgrad-jax", _einsgrad_jax, ("einsgrad", "jax", "jaxlib")),
    System("autograd", _autograd, ("autograd",), loops=naive_flops),
)


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries the systems use (None where missing)."""
    found = {}
    for name in ("einsgrad", "numpy", "opt_einsum", "torch", "jax", "jaxlib", "autograd", "matplotlib"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
