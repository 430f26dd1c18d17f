"""The compiled einsum: parse once, then per shape signature bind, plan, generate and cache."""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np

from . import codegen, derive, plan
from .errors import EinsumSpecError
from .shapes import bind
from .spec import Spec, normalize_sizes, parse

_OPTIMIZERS = {True: "auto", False: "greedy"}


class Einsum:
    """An einsum with its derived backward, compiled per shape signature.

    Args:
        spec: the forward, e.g. ``"ik,jk->ij"``; numpy's notation plus the extensions
            documented in :mod:`einsgrad.spec`.
        shapes: optional operand shapes, to validate and plan ahead of the first call.
        sizes: sizes of labels that only the output has (broadcasts).
        optimize: an opt_einsum path optimizer name (``"auto"``, ``"greedy"``, ``"optimal"``,
            ``"dp"``, ...) or a ``PathOptimizer`` instance.
        memory_limit: the largest intermediate, in elements, the path may create.
        cache_size: how many shape signatures to keep compiled code for.

    Example:
        >>> lin = Einsum("ik,jk->ij")
        >>> lin.grad_specs
        ('ij,jk->ik', 'ij,ik->jk')
    """

    def __init__(self, spec: str, *, shapes: Sequence[Sequence[int]] | None = None,
                 sizes: Mapping[str, int] | None = None, optimize="auto",
                 memory_limit: int | None = None, cache_size: int = 128):
        self.spec: Spec = parse(spec, sizes)
        self.sizes = normalize_sizes(self.spec, sizes)
        self.optimize = _OPTIMIZERS.get(optimize, optimize) if isinstance(optimize, bool) else optimize
        if not (isinstance(self.optimize, str) or callable(self.optimize)):
            raise EinsumSpecError(
                f"optimize must be an opt_einsum optimizer name or PathOptimizer, got {optimize!r}")
        if memory_limit is not None and (not hasattr(memory_limit, "__index__") or memory_limit < 1):
            raise EinsumSpecError(f"memory_limit must be a positive integer, got {memory_limit!r}")
        self.memory_limit = memory_limit
        self._program = functools.lru_cache(maxsize=cache_size)(self._build)
        self._bound = functools.lru_cache(maxsize=cache_size)(self._bind)
        self.shapes = None
        self._latest = None  # the shapes most recently compiled, for source()
        if shapes is not None:
            self.shapes = tuple(tuple(int(d) for d in s) for s in shapes)
            self._bound(self.shapes)

    def __repr__(self) -> str:
        return f"einsgrad.Einsum({str(self.spec)!r})"

    @property
    def grad_specs(self) -> tuple[str, ...]:
        """The backward spec of each operand: cotangent first, then the other operands."""
        return tuple(str(derive.backward(self.spec, k)) for k in range(len(self.spec.inputs)))

    # -- calling -------------------------------------------------------------------------

    def __call__(self, *operands):
        """The forward: the same values as ``numpy.einsum``."""
        arrays = _arrays(operands)
        return self._run("forward", arrays, None)(*arrays)[0]

    def vjp(self, cotangent, *operands, wrt=None):
        """Gradients of a scalar loss with respect to the operands, given ``G = dL/dY``.

        Args:
            cotangent: ``G``, with the output's shape.
            *operands: the forward's operands.
            wrt: an operand index (returns one array), or a sequence of them (returns a tuple
                in that order); None means every operand. Only what is asked for is computed.

        For complex values the result is the plain contraction of ``G`` with the other
        operands, without conjugation (JAX's convention); a real operand gets the real part.
        """
        arrays = _arrays(operands)
        g = _cotangent(cotangent)
        indices, single = self._wrt(wrt)
        results = self._run("vjp", (g,) + arrays, indices)(g, *arrays)
        return results[0] if single else results

    def value_and_pullback(self, *operands, wrt=None):
        """The forward value and a function ``pullback(G)`` returning the gradients.

        The forward keeps only what the backward reads (intermediates and operands), so that
        the pullback costs twice the forward's FLOPs. Do not modify the operands in between.
        """
        arrays = _arrays(operands)
        indices, single = self._wrt(wrt)
        forward, backward = self._run("pullback", arrays, indices)
        y, *saved = forward(*arrays)
        shape, dtypes = y.shape, tuple(a.dtype for a in arrays)

        def pullback(cotangent):
            g = _cotangent(cotangent)
            if g.shape != shape:
                raise EinsumSpecError(f"the cotangent has shape {g.shape} but the output has {shape}")
            results = backward(g, *saved)
            results = tuple(_cast(r, dt) for r, dt in zip(results, (dtypes[k] for k in indices)))
            return results[0] if single else results

        return y, pullback

    # -- inspection ----------------------------------------------------------------------

    def source(self, *shapes) -> str:
        """The generated Python of the forward and of the backward of every operand.

        Shapes come from the arguments, else from ``compile(..., shapes=)``, else from the
        last call.
        """
        shapes = tuple(tuple(s) for s in shapes) or self.shapes or self._latest
        if shapes is None:
            raise EinsumSpecError("source() needs shapes: pass them, compile with shapes=, or call once")
        bound = self._bound(shapes)
        every = tuple(range(len(self.spec.inputs)))
        header = f"# einsgrad: {self.spec}  shapes {', '.join(map(str, shapes))}\n"
        return "\n\n".join([
            codegen.HELPERS.rstrip() + "\n\n\n" + header + codegen.render(
                plan.forward_plan(bound, self.optimize, self.memory_limit), "forward"),
            codegen.render(plan.vjp_plan(bound, every, self.optimize, self.memory_limit), "vjp"),
        ])

    # -- internals -----------------------------------------------------------------------

    def _wrt(self, wrt):
        n = len(self.spec.inputs)
        if wrt is None:
            return tuple(range(n)), False
        if hasattr(wrt, "__index__") and not isinstance(wrt, bool):
            return (derive.check_wrt(self.spec, wrt),), True
        try:
            indices = tuple(derive.check_wrt(self.spec, k) for k in wrt)
        except TypeError:
            raise EinsumSpecError(f"wrt must be an operand index or a sequence of them, got {wrt!r}") from None
        if len(set(indices)) != len(indices):
            raise EinsumSpecError(f"wrt names an operand twice: {list(wrt)!r}")
        return indices, False

    def _bind(self, shapes):
        bound = bind(self.spec, shapes, dict(self.sizes))
        self._latest = shapes
        return bound

    def _run(self, mode, arrays, wrt):
        key = (mode, tuple(a.shape for a in arrays), tuple(a.dtype for a in arrays), wrt)
        return self._program(key)

    def _build(self, key):
        mode, shapes, dtypes, wrt = key
        if mode == "vjp":
            g_shape, shapes = shapes[0], shapes[1:]
        bound = self._bound(shapes)
        if mode == "forward":
            forward = plan.forward_plan(bound, self.optimize, self.memory_limit)
            out = np.result_type(*dtypes)
            finish = {"y": (_needs_copy(forward, "y", bound.output_shape),
                            None if out.kind in "fc" else out)}
            return _load(forward, "forward", finish)
        if mode == "vjp":
            if g_shape != bound.output_shape:
                raise EinsumSpecError(
                    f"the cotangent has shape {g_shape} but the output of {str(self.spec)!r} has "
                    f"shape {bound.output_shape}")
            vjp = plan.vjp_plan(bound, wrt, self.optimize, self.memory_limit)
            computed = np.result_type(*dtypes)
            finish = {}
            for k, name in zip(wrt, vjp.returns):
                shape = bound.input_shapes[k]
                target = dtypes[1 + k]
                cast = target if target.kind in "fc" and target != computed else None
                finish[name] = (_needs_copy(vjp, name, shape), cast)
            return _load(vjp, "vjp", finish)
        forward, backward = plan.pullback_plans(bound, wrt, self.optimize, self.memory_limit)
        finish_y = {"y": (_needs_copy(forward, "y", bound.output_shape), None)}
        finish = {name: (_needs_copy(backward, name, bound.input_shapes[k]), None)
                  for k, name in zip(wrt, backward.returns)}
        return _load(forward, "forward", finish_y), _load(backward, "pullback", finish)


def _needs_copy(program: plan.Plan, name: str, shape) -> bool:
    return not program.fresh(name) or shape == ()


def _load(program: plan.Plan, name: str, finish):
    return codegen.load(codegen.render(program, name, finish))[name]


def _arrays(operands) -> tuple[np.ndarray, ...]:
    arrays = tuple(a if type(a) is np.ndarray else np.asarray(a) for a in operands)
    for i, a in enumerate(arrays):
        if a.dtype.kind not in "biufc":
            raise EinsumSpecError(f"operand {i} has dtype {a.dtype}, which is not numeric")
    return arrays


def _cotangent(g) -> np.ndarray:
    g = g if type(g) is np.ndarray else np.asarray(g)
    if g.dtype.kind not in "biufc":
        raise EinsumSpecError(f"the cotangent has dtype {g.dtype}, which is not numeric")
    return g


def _cast(result, dtype):
    if dtype.kind not in "fc" or result.dtype == dtype:
        return result
    return np.asarray(result.real if dtype.kind != "c" else result, dtype=dtype)
