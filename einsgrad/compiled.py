"""The compiled einsum: parse once, then per shape signature bind, plan, generate and cache."""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from . import backends, codegen, derive, plan
from .errors import EinsumSpecError
from .report import Costs, PlanReport, Plans
from .shapes import BoundSpec, bind
from .spec import Spec, normalize_sizes, parse


class Program(NamedTuple):
    """Generated code for one mode and signature, and the function it defines."""

    source: str
    function: Callable


JACOBIAN_LIMIT = 2**24  # elements: Einsum.jacobian is for small cases


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
        """The forward: the same values as ``numpy.einsum``.

        The operands may be numpy, torch, jax or dask arrays (see :mod:`einsgrad.backends`);
        the result is an array of their library, computed by code generated in its dialect.
        """
        arrays, backend = _arrays(operands)
        if backend is not None:
            return self._run_in(backend, "forward", arrays, None)(*arrays)[0]
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
        torch, jax and dask arrays give arrays of their library; ``memory_limit`` then bounds
        the path's intermediates but does not slice.
        """
        arrays, backend = _arrays((cotangent, *operands))
        g, arrays = arrays[0], arrays[1:]
        indices, single = self._wrt(wrt)
        if backend is not None:
            results = self._run_in(backend, "vjp", (g,) + arrays, indices)(g, *arrays)
        elif self.memory_limit is not None and self._cuts(arrays):
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
        arrays, backend = _arrays(operands)
        indices, single = self._wrt(wrt)
        if recompute or backend is None and self.memory_limit is not None and self._cuts(arrays):
            y = self(*arrays)

            def pullback(cotangent):
                return self.vjp(cotangent, *arrays, wrt=indices[0] if single else indices)

            return y, pullback
        y, saved = self._save(arrays, indices, backend)
        shape = tuple(y.shape)

        def pullback(cotangent):
            results = self._pull(cotangent, arrays, saved, indices, backend, shape)
            return results[0] if single else results

        return y, pullback

    def jacobian(self, *operands, wrt: int) -> np.ndarray:
        """The full Jacobian ``∂Y/∂X_wrt`` as an array of shape ``Y.shape + X_wrt.shape``.

        It is the Jacobian spec (:func:`einsgrad.jacobian_spec`, bound to these shapes)
        compiled and run by einsgrad: a label in both the output and the operand is a Kronecker
        delta. No conjugation (the contraction is holomorphic), so that
        ``vjp(G, ..., wrt=k) == tensordot(G, J, axes=Y.ndim)``. Its dtype is the vjp's for that
        operand, except that a real operand of a complex contraction gets the complex dtype
        of its precision (its Jacobian has complex entries; the vjp keeps their real part).
        For small cases: more than ``2**24`` elements is refused.

        >>> J = Einsum("ik,jk->ij").jacobian(np.ones((2, 3)), np.ones((4, 3)), wrt=1)
        >>> J.shape
        (2, 4, 4, 3)
        """
        arrays, backend = _arrays(operands)
        if backend is not None:
            raise EinsumSpecError(f"jacobian() takes numpy arrays, not {backend.name} arrays")
        k = derive.check_wrt(self.spec, wrt)
        shapes = tuple(a.shape for a in arrays)
        bound = self._bound(shapes)
        count = math.prod(bound.output_shape) * math.prod(shapes[k])
        if count > JACOBIAN_LIMIT:
            raise EinsumSpecError(
                f"the Jacobian of {str(self.spec)!r} with respect to operand {k} would hold "
                f"{count:,} elements (output {bound.output_shape} x operand {shapes[k]}), more "
                f"than the {JACOBIAN_LIMIT:,} that jacobian() materializes; use vjp (the "
                f"Jacobian times a cotangent) or jacobian_spec (its symbolic form)")
        others = arrays[:k] + arrays[k + 1:]
        if not others:  # the Jacobian spec of a one-operand forward reads the scalar 1
            others = (np.ones((), dtype=arrays[0].dtype),)
        function = self._program(("jacobian", shapes, tuple(a.dtype for a in arrays), (k,))).function
        result = function(*others)[0]
        return result if result.flags.writeable else np.array(result)

    # -- inspection ----------------------------------------------------------------------

    def source(self, *shapes, backend: str = "numpy") -> str:
        """The generated Python: the code that runs, one line per step with a comment (the
        step's spec over the bound labels, its FLOPs, its result's shape).

        Four functions: ``forward`` and the all-operands ``vjp`` (one shot, from the cotangent
        and the operands), then the pair ``value_and_pullback`` runs: ``forward_saving``, which
        returns the output and what the backward reads, and ``pullback(g, *saved)``.
        Shapes come from the arguments, else from ``compile(..., shapes=)``, else from the
        last call (whose dtypes are used too; float64 otherwise). ``backend`` names the dialect:
        ``"numpy"``, ``"torch"``, ``"jax"`` or ``"dask"`` (the code those arrays run).
        """
        if backend not in codegen.DIALECTS:
            raise EinsumSpecError(f"backend must be one of {', '.join(codegen.DIALECTS)}, got {backend!r}")
        dialect = codegen.DIALECTS[backend]
        shapes, dtypes = self._signature(shapes, None, "source")
        header = f"# einsgrad: {self.spec}  shapes {', '.join(map(str, shapes))}\n"
        keys = self._keys(shapes, dtypes)
        if dialect is not codegen.NUMPY:
            keys = tuple((dialect, key) for key in keys)
        sources = [program.source for program in map(self._program, keys)]
        return f"{dialect.helpers}\n\n{header}" + "\n\n".join(sources)

    def module(self, *shapes, dtypes=None) -> str:
        """A standalone Python module for these shapes that needs numpy alone.

        It defines ``forward(x0, ...)``, ``vjp(g, x0, ...)``, ``forward_saving(x0, ...)`` and
        ``pullback(g, *saved)``, documented in its docstring. Its text is made only of the
        canonical spec, integers, planner-made names and dtype names, never of user text.

        Args:
            *shapes: operand shapes (else those of ``compile(..., shapes=)`` or the last call).
            dtypes: one dtype for every operand, or one per operand; default float64 (or the
                dtypes of the last call, for its shapes).
        """
        shapes, dtypes = self._signature(shapes, dtypes, "module")
        functions = []
        for key in self._keys(shapes, dtypes):
            program, name, finish = self._compose(key)
            functions.append(codegen.render(program, "_" + name, finish))
        bound = self._bound(shapes)
        return codegen.module(str(self.spec), shapes, dtypes, bound.output_shape, functions)

    def costs(self, *shapes) -> Costs:
        """FLOPs and memory of forward and backward for these shapes (see :class:`Costs`)."""
        shapes = self._shapes(shapes, "costs")
        return Costs.of(self._plans(shapes), self._slices(shapes))

    def plan(self, *shapes) -> PlanReport:
        """The contraction path and costs of the forward, the one-shot vjp, and the
        forward/pullback pair, against recomputing each gradient (see :class:`PlanReport`).

        >>> print(Einsum("ik,kj->ij").plan((2, 3), (3, 4)))  # doctest: +ELLIPSIS
        einsgrad plan: ik,kj->ij  shapes (2, 3), (3, 4)
        ...
        """
        shapes = self._shapes(shapes, "plan")
        bound = self._bound(shapes)
        return PlanReport.of(str(self.spec), shapes, str(bound.spec), self._plans(shapes),
                             self._slices(shapes))

    # -- internals -----------------------------------------------------------------------

    def _wrt(self, wrt) -> tuple[tuple[int, ...], bool]:
        """``wrt`` as operand indices, and whether one array (not a tuple) is returned."""
        if wrt is None:  # the common case, on every call
            return self._every, False
        return derive.check_wrts(self.spec, wrt)

    def _shapes(self, shapes, caller: str) -> tuple[tuple[int, ...], ...]:
        """Shapes from the arguments, else from ``compile(..., shapes=)``."""
        shapes = _check_shapes(shapes, len(self.spec.inputs)) if shapes else self.shapes
        if shapes is None:
            raise EinsumSpecError(f"{caller}() needs shapes: pass them or compile with shapes=")
        return shapes

    def _signature(self, shapes, dtypes, caller: str):
        """Shapes and dtypes to show code for: given, else compile-time, else the last call's."""
        if shapes:
            shapes = _check_shapes(shapes, len(self.spec.inputs))
        else:
            shapes = self.shapes or (self._latest[0] if self._latest else None)
        if shapes is None:
            raise EinsumSpecError(f"{caller}() needs shapes: pass them, compile with shapes=, or call once")
        if dtypes is not None:
            dtypes = _check_dtype_list(dtypes, len(shapes))
        elif self._latest and self._latest[0] == shapes:
            dtypes = self._latest[1]
        else:
            dtypes = (np.dtype(np.float64),) * len(shapes)
        return shapes, dtypes

    def _keys(self, shapes, dtypes) -> tuple[tuple, ...]:
        """Program keys of forward, vjp, forward_saving and pullback, every operand wanted."""
        out = np.result_type(*dtypes)
        return (("forward", shapes, dtypes, None),
                ("vjp", (self._bound(shapes).output_shape,) + shapes, (out,) + dtypes, self._every),
                ("forward-saving", shapes, dtypes, self._every),
                ("pullback", shapes, dtypes, self._every, out))

    def _plans(self, shapes) -> Plans:
        bound = self._bound(shapes)
        every, opts = self._every, (self.optimize, self.memory_limit)
        saving, pullback = plan.pullback_plans(bound, every, *opts)
        separate = sum(plan.vjp_plan(bound, (k,), *opts).flops for k in every)
        return Plans(plan.forward_plan(bound, *opts), plan.vjp_plan(bound, every, *opts),
                     saving, pullback, separate)

    def _slices(self, shapes) -> tuple[tuple[str, int], ...]:
        return () if self.memory_limit is None else self._slicing(shapes)

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

    def _run_in(self, backend: backends.Backend | None, mode, arrays, wrt, cotangent=None):
        """``_run`` for another library's arrays (None: numpy): its dialect's code, cached under
        a key of numpy dtypes. Where the library does not promote mixed dtypes, arguments are
        cast to the common one first (the results are then cast back to their operands' dtypes)."""
        if backend is None:
            return self._run(mode, arrays, wrt, cotangent)
        dtypes = tuple([backend.dtype(a) for a in arrays])
        # int(): torch.compile's symbolic sizes become concrete ones (a guard); plans are per shape
        key = (mode, tuple([tuple(map(int, a.shape)) for a in arrays]), dtypes, wrt)
        if cotangent is not None:
            key += (backend.dtype(cotangent),)
        function = self._program((backend.dialect, key)).function
        if backend.cast is None or len(set(dtypes + key[4:])) == 1:
            return function
        common, cast = np.result_type(*dtypes, *key[4:]), backend.cast
        return lambda *args: function(*[cast(a, common) for a in args])

    def _save(self, arrays, wrt, backend=None) -> tuple[object, tuple]:
        """The forward value and what the pullback of the operands ``wrt`` reads."""
        y, *saved = self._run_in(backend, "forward-saving", arrays, wrt)(*arrays)
        return y, tuple(saved)

    def _pull(self, cotangent, arrays, saved, wrt, backend, shape) -> tuple:
        """The gradients of the operands ``wrt`` from the cotangent and what ``_save`` kept;
        ``shape`` is the output's."""
        if backend is None and type(cotangent) is np.ndarray:
            g = cotangent
        else:
            values, found = _arrays((cotangent, *arrays))
            if found is not backend:
                raise EinsumSpecError(f"the cotangent is a {_library(found)} array but the forward "
                                      f"ran on {_library(backend)} arrays")
            g = values[0]
        if g.shape != shape and tuple(g.shape) != shape:
            raise EinsumSpecError(f"the cotangent has shape {tuple(g.shape)} but the output has {shape}")
        return self._run_in(backend, "pullback", arrays, wrt, g)(g, *saved)

    def _build(self, key) -> Program:
        dialect = codegen.NUMPY
        if type(key[0]) is codegen.Dialect:  # another library's arrays: (dialect, key)
            dialect, key = key
        mode, shapes, dtypes = key[:3]
        program, name, finish = self._compose(key)
        self._latest = (shapes[1:], dtypes[1:]) if mode == "vjp" else (shapes, dtypes)
        source = codegen.render(program, name, finish, dialect)
        return Program(source, codegen.load(source, dialect)[name])

    def _compose(self, key) -> tuple[plan.Plan, str, dict]:
        """The plan of a program key, the name of its function, and how it finishes results."""
        mode, shapes, dtypes, wrt = key[:4]
        _check_dtypes(mode, dtypes + key[4:])
        operand_dtypes = dtypes[1:] if mode == "vjp" else dtypes
        bound = self._bound(shapes[1:] if mode == "vjp" else shapes)
        opts = (self.optimize, self.memory_limit)
        if mode == "forward":
            program = plan.forward_plan(bound, *opts)
            out = np.result_type(*dtypes)
            return program, "forward", {"y": (_needs_copy(program, "y", bound.output_shape),
                                              None if out.kind in "fc" else out)}
        if mode == "forward-saving":
            program = plan.pullback_plans(bound, wrt, *opts)[0]
            return program, "forward_saving", {"y": (_needs_copy(program, "y", bound.output_shape), None)}
        if mode == "jacobian":
            return _jacobian_program(bound, wrt[0], dtypes, self.optimize)
        if mode == "vjp":
            if shapes[0] != bound.output_shape:
                raise EinsumSpecError(
                    f"the cotangent has shape {shapes[0]} but the output of {str(self.spec)!r} has "
                    f"shape {bound.output_shape}")
            program, cotangent_dtype = plan.vjp_plan(bound, wrt, *opts), dtypes[0]
        else:
            program, cotangent_dtype = plan.pullback_plans(bound, wrt, *opts)[1], key[4]
        return program, mode, _finish(program, bound, wrt, cotangent_dtype, operand_dtypes)


def as_einsum(spec) -> Einsum:
    """``spec`` if it is an :class:`Einsum`, else the spec text compiled (cached per text),
    for the one-call functions (``einsgrad.einsum``, ``einsgrad.torch.einsum``, ...)."""
    if isinstance(spec, Einsum):
        return spec
    if not isinstance(spec, str):
        raise EinsumSpecError(f"spec must be a string or an einsgrad.Einsum, got {spec!r}")
    return _compiled(spec)


@functools.lru_cache(maxsize=256)
def _compiled(spec: str) -> Einsum:
    return Einsum(spec)


def _jacobian_program(bound: BoundSpec, k: int, dtypes, optimize) -> tuple[plan.Plan, str, dict]:
    """The forward plan of the bound Jacobian spec; its operands are the others (or a scalar 1
    of operand ``k``'s dtype). Its labels are the bound ones, so a size-1 label broadcast in
    operand ``k`` is a label of size 1 that only the Jacobian's output has."""
    jacobian = BoundSpec(derive.jacobian(bound.spec, k), bound.sizes)
    program = plan.forward_plan(jacobian, optimize)
    computed = np.result_type(*(dtypes[:k] + dtypes[k + 1:] or dtypes[k:k + 1]))
    target = _jacobian_dtype(dtypes, k)
    shape = jacobian.output_shape
    return program, "jacobian", {"y": (_needs_copy(program, "y", shape), None if target == computed else target)}


def _jacobian_dtype(dtypes, k: int) -> np.dtype:
    """The vjp's dtype for operand ``k``, but complex (of its precision) for a real operand of
    a complex contraction: the Jacobian's entries are complex where the vjp keeps the real part."""
    out, own = np.result_type(*dtypes), np.dtype(dtypes[k])
    if own.kind not in "fc":
        return out
    if own.kind == "f" and out.kind == "c":
        return np.result_type(own, np.complex64)
    return own


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


def _check_dtype_list(dtypes, count: int) -> tuple[np.dtype, ...]:
    """``dtypes=`` as one numeric dtype per operand (a single dtype applies to every one)."""
    try:
        if isinstance(dtypes, (str, type, np.dtype)):
            dtypes = (dtypes,) * count
        checked = tuple(np.dtype(d) for d in dtypes)
    except TypeError:
        raise EinsumSpecError(f"dtypes must be a dtype or one dtype per operand, got {dtypes!r}") from None
    if len(checked) != count:
        raise EinsumSpecError(f"the spec names {count} operand(s) but {len(checked)} dtypes were given")
    _check_dtypes("forward", checked)
    return checked


def _arrays(values: tuple) -> tuple[tuple, backends.Backend | None]:
    """Values as arrays of one library, and that library (None: numpy). Dtypes are checked
    once per signature, in ``_build``."""
    for a in values:
        if type(a) is not np.ndarray:
            break
    else:
        return values, None
    name = backends.infer(values)
    if name == "numpy":
        return tuple([a if type(a) is np.ndarray else np.asarray(a) for a in values]), None
    backend = backends.get(name)
    return backends.prepare(values, backend), backend


def _library(backend) -> str:
    return "numpy" if backend is None else backend.name


def _check_dtypes(mode: str, dtypes) -> None:
    names = [f"operand {i}" for i in range(len(dtypes))]
    if mode == "vjp":  # the cotangent comes first
        names = ["the cotangent"] + names[:-1]
    elif mode == "pullback":  # its dtype comes last
        names[-1] = "the cotangent"
    for name, dtype in zip(names, dtypes):
        if dtype.kind not in "biufc":
            raise EinsumSpecError(f"{name} has dtype {dtype}, which is not numeric")
