"""The compiled einsum: parse once, then per shape signature bind, plan, generate and cache."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from . import codegen, derive, plan
from .errors import EinsumSpecError
from .shapes import bind
from .spec import Spec, normalize_sizes, parse


class Program(NamedTuple):
    """Generated code for one mode and signature, and the function it defines."""

    source: str
    function: Callable


@dataclass(frozen=True)
class Costs:
    """What a contraction and its gradients cost for one shape signature.

    FLOPs count 2 per multiply-add; sizes are in elements.

    Attributes:
        forward: FLOPs of the forward path.
        pullback: FLOPs of all gradients after a stored forward (reverse mode: 2x forward).
        vjp: FLOPs of all gradients in one shot (forward minus its last step, plus pullback).
        separate: FLOPs of all gradients as one contraction per operand.
        largest: the largest intermediate of the forward, in elements.
        saved: elements the forward keeps for the pullback, besides the operands.
        path: the forward's steps as einsum specs over the bound labels.
        slices: (label, chunk size) of each label sliced to honour ``memory_limit``.
    """

    forward: int
    pullback: int
    vjp: int
    separate: int
    largest: int
    saved: int
    path: tuple[str, ...]
    slices: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        rows = [("forward", self.forward), ("pullback", self.pullback), ("vjp (one shot)", self.vjp),
                ("per-operand", self.separate)]
        lines = [f"{name:<15} {flops:>16,} flops  {flops / max(self.forward, 1):5.2f}x forward"
                 for name, flops in rows]
        lines.append(f"largest intermediate {self.largest:,} elements; kept for the pullback "
                     f"{self.saved:,} elements; path {' | '.join(self.path)}")
        if self.slices:
            lines.append("sliced: " + ", ".join(f"{l} in chunks of {c}" for l, c in self.slices))
        return "\n".join(lines)


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
        cache_size: how many shape signatures to keep compiled code for (at least 1).

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
        self.optimize = plan.check_optimizer(optimize)
        if memory_limit is not None and not _is_count(memory_limit, 1):
            raise EinsumSpecError(f"memory_limit must be a positive integer, got {memory_limit!r}")
        self.memory_limit = memory_limit
        if not _is_count(cache_size, 1):
            raise EinsumSpecError(f"cache_size must be a positive integer, got {cache_size!r}")
        self._program = functools.lru_cache(maxsize=cache_size)(self._build)
        self._bound = functools.lru_cache(maxsize=cache_size)(self._bind)
        self._slicing = functools.lru_cache(maxsize=cache_size)(self._slice_plan)
        self._latest = None  # the signature last compiled, for source()
        self._every = tuple(range(len(self.spec.inputs)))
        self.shapes = None if shapes is None else _check_shapes(shapes, len(self.spec.inputs))
        if self.shapes is not None:
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
        if self.memory_limit is not None and self._cuts(arrays):
            return self._sliced(arrays, None, None)[0]
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
        if self.memory_limit is not None and self._cuts(arrays):
            results = self._sliced(arrays, g, indices)
        else:
            results = self._run("vjp", (g,) + arrays, indices)(g, *arrays)
        return results[0] if single else results

    def value_and_pullback(self, *operands, wrt=None, recompute: bool = False):
        """The forward value and a function ``pullback(G)`` returning the gradients.

        By default the forward keeps what the backward reads (intermediates and operands), so
        that the pullback costs twice the forward's FLOPs. With ``recompute=True`` (or when
        ``memory_limit`` makes the contraction run in slices) only the operands are kept and
        the pullback recomputes the intermediates: less memory, one more forward's FLOPs.
        Do not modify the operands before calling the pullback.
        """
        arrays = _arrays(operands)
        indices, single = self._wrt(wrt)
        if recompute or self.memory_limit is not None and self._cuts(arrays):
            y = self(*arrays)

            def pullback(cotangent):
                return self.vjp(cotangent, *arrays, wrt=indices[0] if single else indices)

            return y, pullback
        y, *saved = self._run("forward-saving", arrays, indices)(*arrays)

        def pullback(cotangent):
            g = _cotangent(cotangent)
            if g.shape != y.shape:
                raise EinsumSpecError(f"the cotangent has shape {g.shape} but the output has {y.shape}")
            results = self._run("pullback", arrays, indices, g)(g, *saved)
            return results[0] if single else results

        return y, pullback

    # -- inspection ----------------------------------------------------------------------

    def source(self, *shapes) -> str:
        """The generated Python of the forward and of the all-operands vjp: the code that runs.

        Shapes come from the arguments, else from ``compile(..., shapes=)``, else from the
        last call (whose dtypes are used too; float64 otherwise).
        """
        if shapes:
            shapes = _check_shapes(shapes, len(self.spec.inputs))
        else:
            shapes = self.shapes or (self._latest[0] if self._latest else None)
        if shapes is None:
            raise EinsumSpecError("source() needs shapes: pass them, compile with shapes=, or call once")
        if self._latest and self._latest[0] == shapes:
            dtypes = self._latest[1]
        else:
            dtypes = (np.dtype(np.float64),) * len(shapes)
        out = self._bound(shapes).output_shape
        every = tuple(range(len(shapes)))
        forward = self._program(("forward", shapes, dtypes, None))
        vjp = self._program(("vjp", (out,) + shapes, (np.result_type(*dtypes),) + dtypes, every))
        header = f"# einsgrad: {self.spec}  shapes {', '.join(map(str, shapes))}\n"
        return f"{codegen.HELPERS}\n\n{header}{forward.source}\n\n{vjp.source}"

    def costs(self, *shapes) -> Costs:
        """FLOPs and memory of forward and backward for these shapes (see :class:`Costs`)."""
        shapes = _check_shapes(shapes, len(self.spec.inputs)) if shapes else self.shapes
        if shapes is None:
            raise EinsumSpecError("costs() needs shapes: pass them or compile with shapes=")
        bound = self._bound(shapes)
        every = tuple(range(len(shapes)))
        opts = (self.optimize, self.memory_limit)
        forward = plan.forward_plan(bound, *opts)
        saving, pullback = plan.pullback_plans(bound, every, *opts)
        separate = sum(plan.vjp_plan(bound, (k,), *opts).flops for k in every)
        kept = {name for name in saving.returns[1:] if not name.startswith("x")}
        saved = sum(math.prod(s.shape) for s in saving.steps if s.target in kept)
        slices = () if self.memory_limit is None else self._slicing(shapes)
        return Costs(forward.flops, pullback.flops, plan.vjp_plan(bound, every, *opts).flops,
                     separate, forward.largest, saved, tuple(s.spec for s in forward.steps), slices)

    # -- internals -----------------------------------------------------------------------

    def _wrt(self, wrt) -> tuple[tuple[int, ...], bool]:
        """``wrt`` as operand indices, and whether one array (not a tuple) is returned."""
        if wrt is None:
            return self._every, False
        if isinstance(wrt, (int, np.integer)) and not isinstance(wrt, bool):
            return (derive.check_wrt(self.spec, wrt),), True
        if isinstance(wrt, np.ndarray) and wrt.ndim == 1:
            wrt = wrt.tolist()
        try:
            indices = tuple(derive.check_wrt(self.spec, k) for k in wrt)
        except TypeError:
            raise EinsumSpecError(f"wrt must be an operand index or a sequence of them, got {wrt!r}") from None
        if len(set(indices)) != len(indices):
            raise EinsumSpecError(f"wrt names an operand twice: {list(wrt)!r}")
        return indices, False

    def _cuts(self, arrays) -> tuple[tuple[str, int], ...]:
        return self._slicing(tuple(a.shape for a in arrays))

    def _slice_plan(self, shapes):
        return plan.slicing(self._bound(shapes), self.memory_limit, self.optimize)

    def _sliced(self, arrays, g, wrt) -> tuple:
        """The forward (``g`` None) or the vjp, chunk by chunk along the sliced labels.

        Each chunk is the same contraction on slices of the operands, so it runs the code
        compiled for the chunk's shapes; results along a sliced label are written by pieces,
        and sums over it accumulate.
        """
        bound = self._bound(tuple(a.shape for a in arrays))
        if g is not None and g.shape != bound.output_shape:
            raise EinsumSpecError(f"the cotangent has shape {g.shape} but the output of "
                                  f"{str(self.spec)!r} has shape {bound.output_shape}")
        cuts = self._cuts(arrays)
        size = bound.size_of
        totals: list = [None] * (1 if g is None else len(wrt))
        for starts in itertools.product(*(range(0, size[l], c) for l, c in cuts)):
            window = {l: slice(i, i + c) for (l, c), i in zip(cuts, starts)}
            take = lambda labels: tuple(window.get(l, slice(None)) for l in labels)  # noqa: E731
            parts = tuple(a[take(labels)] for a, labels in zip(arrays, bound.spec.inputs))
            if g is None:
                results = self._run("forward", parts, None)(*parts)
                where = [(bound.output_shape, bound.spec.output)]
            else:
                g_part = g[take(bound.spec.output)]
                results = self._run("vjp", (g_part,) + parts, wrt)(g_part, *parts)
                where = [(bound.input_shapes[k], bound.spec.inputs[k]) for k in wrt]
            for j, (result, (shape, labels)) in enumerate(zip(results, where)):
                if totals[j] is None:
                    totals[j] = np.zeros(shape, dtype=result.dtype)
                totals[j][take(labels)] += result
        return tuple(totals)

    def _bind(self, shapes):
        return bind(self.spec, shapes, dict(self.sizes))

    def _run(self, mode, arrays, wrt, cotangent=None):
        key = (mode, tuple([a.shape for a in arrays]), tuple([a.dtype for a in arrays]), wrt)
        if cotangent is not None:
            key += (cotangent.dtype,)
        return self._program(key).function

    def _build(self, key) -> Program:
        mode, shapes, dtypes, wrt = key[:4]
        _check_dtypes(mode, dtypes + key[4:])
        operand_dtypes = dtypes[1:] if mode == "vjp" else dtypes
        bound = self._bound(shapes[1:] if mode == "vjp" else shapes)
        self._latest = (bound.input_shapes, operand_dtypes)
        opts = (self.optimize, self.memory_limit)
        if mode == "forward":
            program = plan.forward_plan(bound, *opts)
            out = np.result_type(*dtypes)
            return _load(program, "forward", {"y": (_needs_copy(program, "y", bound.output_shape),
                                                    None if out.kind in "fc" else out)})
        if mode == "forward-saving":
            program = plan.pullback_plans(bound, wrt, *opts)[0]
            return _load(program, "forward", {"y": (_needs_copy(program, "y", bound.output_shape), None)})
        if mode == "vjp":
            if shapes[0] != bound.output_shape:
                raise EinsumSpecError(
                    f"the cotangent has shape {shapes[0]} but the output of {str(self.spec)!r} has "
                    f"shape {bound.output_shape}")
            program, cotangent_dtype = plan.vjp_plan(bound, wrt, *opts), dtypes[0]
        else:
            program, cotangent_dtype = plan.pullback_plans(bound, wrt, *opts)[1], key[4]
        return _load(program, mode, _finish(program, bound, wrt, cotangent_dtype, operand_dtypes))


def _finish(program: plan.Plan, bound, wrt, cotangent_dtype, dtypes) -> dict:
    """What each returned gradient needs: a copy (it may alias an argument), a cast (to its
    operand's dtype, when G and the other operands make a different one)."""
    finish = {}
    for k, name in zip(wrt, program.returns):
        target = dtypes[k]
        computed = np.result_type(cotangent_dtype, *dtypes[:k], *dtypes[k + 1:])
        cast = target if target.kind in "fc" and target != computed else None
        finish[name] = (_needs_copy(program, name, bound.input_shapes[k]), cast)
    return finish


def _needs_copy(program: plan.Plan, name: str, shape) -> bool:
    return not program.fresh(name) or shape == ()


def _load(program: plan.Plan, name: str, finish) -> Program:
    source = codegen.render(program, name, finish)
    return Program(source, codegen.load(source)[name])


def _is_count(value, least: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= least


def _check_shapes(shapes, count: int) -> tuple[tuple[int, ...], ...]:
    """``shapes=`` as a tuple of tuples of non-negative ints, one per operand."""
    try:
        checked = tuple(tuple(d for d in s) for s in shapes)
    except TypeError:
        raise EinsumSpecError(f"shapes must be one shape (a sequence of sizes) per operand, got {shapes!r}") from None
    for i, shape in enumerate(checked):
        if not all(_is_count(d, 0) for d in shape):
            raise EinsumSpecError(f"shape {i} must hold non-negative integers, got {shape!r}")
    if len(checked) != count:
        raise EinsumSpecError(f"the spec names {count} operand(s) but {len(checked)} shapes were given")
    return tuple(tuple(int(d) for d in s) for s in checked)


def _arrays(operands) -> tuple[np.ndarray, ...]:
    """Operands as arrays; their dtypes are checked once per signature, in ``_build``."""
    return tuple(a if type(a) is np.ndarray else np.asarray(a) for a in operands)


def _cotangent(g) -> np.ndarray:
    return g if type(g) is np.ndarray else np.asarray(g)


def _check_dtypes(mode: str, dtypes) -> None:
    names = [f"operand {i}" for i in range(len(dtypes))]
    if mode == "vjp":  # the cotangent comes first
        names = ["the cotangent"] + names[:-1]
    elif mode == "pullback":  # its dtype comes last
        names[-1] = "the cotangent"
    for name, dtype in zip(names, dtypes):
        if dtype.kind not in "biufc":
            raise EinsumSpecError(f"{name} has dtype {dtype}, which is not numeric")
