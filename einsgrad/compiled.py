"""The compiled einsum: parse once, then per shape signature bind, plan, generate and cache."""

from __future__ import annotations

import functools
import math
import sys
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from . import backends, code_request, derive, dialects, paths, saving_pairs, scalars, tangents, vendor
from . import stripped as stripping
from .errors import EinsumSpecError
from .report import Costs, PlanReport
from .shapes import Classified, ShapeClass, bind, check_shapes, classify, differ, is_count
from .signature import Mode, FunctionKey, SavingPair, SignatureRecord
from .spec import Spec, normalize_sizes, parse
from .stripped import LogGrad, Stripped

JACOBIAN_LIMIT = 2**24  # elements: Einsum.jacobian is for small cases

_NUMPY = backends.NUMPY_DIALECT
# Dialects whose calls run shape-generic code, one function per shape class: torch's sizes are
# symbolic under torch.compile and torch.export. jax traces per shape anyway; dask is lazy.
_GENERIC = (dialects.TORCH,)


class Loaded(NamedTuple):
    """A loaded function and the record it belongs to (its signature's bound spec, tree)."""

    record: SignatureRecord
    function: Callable


class Saving(NamedTuple):
    """What a saving forward gives: the output, what the backward reads, and the function
    ``finish(cotangent, arrays, saved)`` returning the gradients."""

    y: object
    saved: tuple
    finish: Callable


class Einsum:
    """An einsum with its derived backward, compiled per shape signature.

    Args:
        spec: the forward, e.g. ``"ik,jk->ij"``; numpy's notation plus the extensions
            documented in :mod:`einsgrad.spec` (labels past the 52 letters among them), or a
            pair of sublists ``([[0, 1], [1, 2]], [0, 2])``.
        shapes: optional operand shapes, to validate and plan ahead of the first call.
        sizes: sizes of labels that only the output has (broadcasts).
        optimize: an opt_einsum path optimizer name (``"auto"``, ``"greedy"``, ``"optimal"``,
            ``"dp"``, ...), a ``PathOptimizer`` instance (cotengra's too) or a function
            ``(inputs, output, size_dict, memory_limit) -> path``. It is asked once per shape
            signature, for the forward tree that every mode is built from; an opt_einsum
            instance is deep-copied for that search. Or the tree itself: a path list
            (``[(0, 1), (0, 1)]``, as ``opt_einsum.contract`` takes it) or a cotengra
            ``ContractionTree``. Other contractions (one direct contraction per
            gradient, the per-operand baseline of :meth:`costs`, the Jacobian) use a name as
            given, and opt_einsum's ``"auto"`` in place of an instance or a tree.
        memory_limit: the largest intermediate, in elements, of the forward and of every
            gradient. Where the tree's are larger, its labels are sliced and every call
            (forward, vjp, jvp, the pullback; numpy, torch, jax, dask and cupy arrays) runs
            chunk by chunk along the same tree (:mod:`einsgrad.slicing`); a sliced pullback
            keeps the operands alone, and runs the sliced vjp.
        joint: choose the forward tree for forward and all gradients together: among the
            trees the optimizer and opt_einsum's other optimizers find (:mod:`einsgrad.trees`),
            the one of fewest forward + gradient FLOPs under ``memory_limit``; :meth:`plan`
            says what it saved against the optimizer's forward-only choice. Off by default.
        cache_size: how many shape signatures to keep compiled code for (at least 1), every
            mode, dtype and dialect of a signature included; sizes past ``sys.maxsize`` are
            clamped to it (unbounded in practice).

    Example:
        >>> lin = Einsum("ik,jk->ij")
        >>> lin.grad_specs
        ('ij,jk->ik', 'ij,ik->jk')
    """

    def __init__(self, spec: str, *, shapes: Sequence[Sequence[int]] | None = None,
                 sizes: Mapping[str, int] | None = None, optimize="auto",
                 memory_limit: int | None = None, cache_size: int = 128, joint: bool = False):
        self.spec: Spec = parse(spec, sizes)
        self.sizes = normalize_sizes(self.spec, sizes)
        self.optimize = paths.check_optimizer(optimize, len(self.spec.inputs))
        if memory_limit is not None and not is_count(memory_limit, 1):
            raise EinsumSpecError(f"memory_limit must be a positive integer, got {memory_limit!r}")
        self.memory_limit = memory_limit
        if not isinstance(joint, bool):
            raise EinsumSpecError(f"joint must be True or False, got {joint!r}")
        self.joint = joint
        # Calls run code of their exact shapes where the contraction may be sliced: under a
        # memory_limit, or along a cotengra tree that its optimizer may slice (slicing_opts).
        sliced_tree = paths.may_slice(self.optimize)
        self._exact = memory_limit is not None or sliced_tree
        if joint and sliced_tree:
            raise EinsumSpecError("joint=True judges trees by their own slicing under memory_limit=; "
                                  "give memory_limit= instead of a cotengra optimizer's slicing_opts "
                                  "or a sliced ContractionTree")
        if not is_count(cache_size, 1):
            raise EinsumSpecError(f"cache_size must be a positive integer, got {cache_size!r}")
        # One record per shape signature holds every mode's plans and code; a size beyond
        # what lru_cache counts (sys.maxsize) is as good as unbounded, so it is clamped.
        self._records = functools.lru_cache(maxsize=min(int(cache_size), sys.maxsize))(self._record)
        # The calls' index of the cached records' loaded functions: one lookup per call. It
        # starts afresh whenever a signature enters the cache (and may push one out).
        self._loaded: dict[FunctionKey, Loaded] = {}
        self._pairs = saving_pairs.PairIndex()  # saving_pair's index, kept alike
        self._last: tuple | None = None  # the last call's FunctionKey fields, for source()
        self._classes = functools.lru_cache(maxsize=1024)(self._classify)
        self._all = derive.Wrt(tuple(range(len(self.spec.inputs))), False)
        self._wrts: dict[tuple, derive.Wrt] = {}  # checked tuples of indices (at most 2^n)
        self.shapes = None if shapes is None else check_shapes(shapes, len(self.spec.inputs))
        if self.shapes is not None:
            self._signature_record(self.shapes)

    def __repr__(self) -> str:
        return f"einsgrad.Einsum({str(self.spec)!r})"

    def __getstate__(self) -> dict:
        """What a pickle keeps: the spec and the options; the compiled code is made again."""
        state = {name: value for name, value in self.__dict__.items()
                 if name not in ("_records", "_loaded", "_pairs", "_last", "_classes")}
        state["_records"] = self._records.cache_info().maxsize  # the cache's size, not its code
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._records = functools.lru_cache(maxsize=state["_records"])(self._record)
        self._classes = functools.lru_cache(maxsize=1024)(self._classify)
        self._loaded, self._pairs, self._last = {}, saving_pairs.PairIndex(), None

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
        arrays, backend = backends.intake(operands)
        if backend is not None:
            return self._run_in(backend, Mode.FORWARD, arrays, None)(*arrays)[0]
        call = self._call(Mode.FORWARD, arrays, None, None)
        loaded = self._loaded.get(call)
        if loaded is None:  # a first call
            key = FunctionKey._make(call)
            loaded = self._load(key, self._signature_record(key.shapes))
        return loaded.function(*arrays)[0]

    def vjp(self, cotangent, *operands, wrt=None):
        """Gradients of a scalar loss with respect to the operands, given ``G = dL/dY``.

        Args:
            cotangent: ``G``, with the output's shape.
            *operands: the forward's operands.
            wrt: an operand index (returns one array), or a sequence of them (returns a tuple
                in that order); None means every operand. Only what is asked for is computed.

        For complex values the result is the plain contraction of ``G`` with the other
        operands, without conjugation (JAX's convention); a real operand gets the real part.
        torch, jax and dask arrays give arrays of their library; all run in slices under a
        ``memory_limit`` that needs them.
        """
        arrays, backend = backends.intake((cotangent, *operands), cotangent=True)
        g, arrays = arrays[0], arrays[1:]
        indices, single = self._wrt(wrt)
        if backend is not None:
            results = self._run_in(backend, Mode.VJP, arrays, indices, g)(g, *arrays)
        else:
            call = self._call(Mode.VJP, arrays, indices, g)
            loaded = self._loaded.get(call)
            if loaded is not None:
                if g.shape != loaded.record.output_shape:
                    raise self._cotangent_error(g, loaded.record)
                results = loaded.function(g, *arrays)
            else:  # a first call
                key = FunctionKey._make(call)
                record = self._signature_record(key.shapes)
                if g.shape != record.output_shape:
                    raise self._cotangent_error(g, record)
                results = self._load(key, record).function(g, *arrays)
        return results[0] if single else results

    def jvp(self, tangents, *operands):
        """Forward mode: ``dY``, the output's change along the operands' tangents.

        Args:
            tangents: one per operand, each with its operand's shape, or None (a zero tangent).
            *operands: the forward's operands.

        ``dY = Σ_k einsum(spec, X_0, ..., T_k, ..., X_n)``, one term per tangent given (the
        specs are :func:`einsgrad.jvp_spec`'s). It is computed along the forward's contraction
        tree, each step's tangent being the step once per argument that carries one, with the
        primal intermediates shared (:func:`einsgrad.plan.jvp_plan`). Only the terms of the
        tangents given are computed; all None gives zeros. ``dY`` has the dtype of operands and
        tangents together (holomorphic: no conjugation). torch, jax and dask arrays give arrays
        of their library; all run in slices under a ``memory_limit`` that needs them.

        >>> lin = Einsum("ik,jk->ij")
        >>> X, W = np.ones((2, 3)), np.ones((4, 3))
        >>> lin.jvp([None, np.ones((4, 3))], X, W)[0]  # X dWᵀ
        array([3., 3., 3., 3.])
        """
        return self._jvp(Mode.JVP, tangents, operands)[0]

    def value_and_jvp(self, tangents, *operands):
        """The forward value and :meth:`jvp`'s ``dY``, from one plan that shares the forward's
        intermediates with the tangents' terms (what ``jax.jvp`` asks for)."""
        return self._jvp(Mode.VALUE_AND_JVP, tangents, operands)

    def value_and_pullback(self, *operands, wrt=None, recompute: bool = False):
        """The forward value and a function ``pullback(G)`` returning the gradients.

        By default the forward keeps what the backward reads (intermediates and operands), so
        that the pullback costs twice the forward's FLOPs. With ``recompute=True`` (or when
        ``memory_limit`` makes the contraction run in slices) only the operands are kept and
        the pullback recomputes the intermediates: less memory, one more forward's FLOPs.
        Do not modify the operands before calling the pullback. On dask arrays the output and
        what the pullback reads are persisted together (``dask.persist``: computed now, or in
        the background on a distributed scheduler), so that the forward runs once; with
        ``recompute=True`` everything stays lazy.
        """
        arrays, backend = backends.intake(operands)
        indices, single = self._wrt(wrt)
        if recompute:
            y = self(*arrays)

            def pullback(cotangent):
                return self.vjp(cotangent, *arrays, wrt=indices[0] if single else indices)

            return y, pullback
        y, saved, finish = self._forward_saving(arrays, indices, backend)

        def pullback(cotangent):
            results = finish(cotangent, arrays, saved)
            return results[0] if single else results

        return y, pullback

    def forward_saving(self, *operands, wrt=None) -> tuple[object, tuple]:
        """The forward value and what the pullback of the operands ``wrt`` reads, as arrays:
        the two halves of :meth:`value_and_pullback` for frameworks that keep residuals
        themselves (``jax.custom_vjp``). Hand both to :meth:`pullback`. Where ``memory_limit``
        slices the contraction, the forward runs in slices and saves nothing but the operands
        (``saved`` is them), and the pullback runs the sliced vjp.

        >>> lin = Einsum("ik,jk->ij")
        >>> X, W = np.ones((2, 3)), np.ones((4, 3))
        >>> y, saved = lin.forward_saving(X, W)
        >>> [g.shape for g in lin.pullback(np.ones((2, 4)), (X, W), saved)]
        [(2, 3), (4, 3)]
        """
        arrays, backend = backends.intake(operands)
        saving = self._forward_saving(arrays, self._wrt(wrt).indices, backend)
        return saving.y, saving.saved

    def pullback(self, cotangent, operands, saved, *, wrt=None):
        """The gradients of the operands ``wrt`` from the cotangent and what
        :meth:`forward_saving` kept for the same operands and ``wrt``; as :meth:`vjp`, an int
        ``wrt`` returns one array."""
        arrays, backend = backends.intake(tuple(operands))
        indices, single = self._wrt(wrt)
        if backend is None:
            classified = Classified(tuple([a.shape for a in arrays]), None)
        else:
            classified = self._backend_signature(backend, arrays)
        record = self._signature_record(classified.signature)
        shape = record.output_shape if classified.output_shape is None else classified.output_shape
        g = tangents.cotangent(cotangent, arrays, backend, shape)
        results = self._pullback(backend, arrays, indices, g, record, saved)
        return results[0] if single else results

    def saving_pair(self, *operands, wrt: tuple[int, ...] | None = None) -> SavingPair:
        """The forward-saving and pullback functions for operands of these shapes and dtypes
        and the operands ``wrt`` (a tuple of indices; None: every operand), checked and found
        once per shapes, dtypes and ``wrt``; later calls cost one lookup. It is the lean path
        of framework glue (``einsgrad.torch``'s ``autograd.Function``): the forward finds the
        pair, runs ``pair.saving``, and keeps the pair for its backward, which runs
        ``pair.pullback`` on the cotangent that autograd hands it (of the output's shape and
        dtype: it is not checked again) and the saved values. Its functions take arrays of
        the operands' library; where ``memory_limit`` slices the contraction, they run in
        slices, and the saved values are the operands (``read`` says so).

        >>> lin = Einsum("ik,jk->ij")
        >>> X, W = np.ones((2, 3)), np.ones((4, 3))
        >>> pair = lin.saving_pair(X, W)
        >>> y, *saved = pair.saving(X, W)
        >>> [g.shape for g in pair.pullback(np.ones((2, 4)), *saved)]
        [(2, 3), (4, 3)]
        """
        key = self._pairs.key(operands, wrt)
        found = self._pairs.get(key)
        if found is None:
            found = self._pair(operands, wrt)
            self._pairs.put(key, found)
        self._last = found.key
        return found

    def _pair(self, operands, wrt) -> SavingPair:
        """A new :class:`SavingPair` for these operands: the call checked, its functions found."""
        arrays, backend = backends.intake(tuple(operands))
        if any(a is not o for a, o in zip(arrays, operands)):  # its functions take them as they are
            raise EinsumSpecError(f"saving_pair() takes arrays of one library, as its functions will, "
                                  f"got {', '.join(type(o).__name__ for o in operands)}")
        if backend is None:
            signature = tuple([a.shape for a in arrays])
        else:
            signature = self._backend_signature(backend, arrays).signature
        record = self._signature_record(signature)
        return saving_pairs.pair(record, signature, arrays, backend, self._wrt(wrt).indices)

    def _pullback(self, backend, arrays, wrt, g, record: SignatureRecord, saved) -> tuple:
        """The pullback of ``record`` run; a generic one reads sizes from the operands' shapes."""
        function = self._run_in(backend, Mode.PULLBACK, arrays, wrt, g, record)
        if record.generic:
            return function(g, *saved, shapes=tuple([tuple(a.shape) for a in arrays]))
        return function(g, *saved)

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
        arrays, backend = backends.intake(operands)
        if backend is not None:
            raise EinsumSpecError(f"jacobian() takes numpy arrays, not {backend.name} arrays")
        k = derive.check_wrt(self.spec, wrt)
        key = FunctionKey._make(self._call(Mode.JACOBIAN, arrays, (k,), None))
        record, shapes = self._signature_record(key.shapes), key.shapes
        count = math.prod(record.output_shape) * math.prod(shapes[k])
        if count > JACOBIAN_LIMIT:
            raise EinsumSpecError(
                f"the Jacobian of {str(self.spec)!r} with respect to operand {k} would hold "
                f"{count:,} elements (output {record.output_shape} x operand {shapes[k]}), more "
                f"than the {JACOBIAN_LIMIT:,} that jacobian() materializes; use vjp (the "
                f"Jacobian times a cotangent) or jacobian_spec (its symbolic form)")
        others = arrays[:k] + arrays[k + 1:]
        if not others:  # the Jacobian spec of a one-operand forward reads the scalar 1
            others = (np.ones((), dtype=arrays[0].dtype),)
        result = self._load(key, record).function(*others)[0]
        return result if result.flags.writeable else np.array(result)

    # -- inspection ----------------------------------------------------------------------

    def source(self, *shapes, backend: str = "numpy", generic: bool | None = None) -> str:
        """The generated Python: the code that runs, one line per step with a comment (the
        step's spec over the bound labels, its FLOPs, its result's shape).

        Four functions: ``forward`` and the all-operands ``vjp`` (one shot, from the cotangent
        and the operands), then the pair ``value_and_pullback`` runs: ``forward_saving``, which
        returns the output and what the backward reads, and ``pullback(g, *saved)``. Where
        ``memory_limit`` slices the shapes, each is the loop over the slices, after the chunk's
        program it calls (``forward_chunk``, ``vjp_chunk``; for dask, one graph of the slices).
        Shapes come from the arguments, else from ``compile(..., shapes=)``, else from the
        last call (whose dtypes are used too; float64 otherwise). ``backend`` names the dialect:
        ``"numpy"``, ``"torch"``, ``"jax"`` or ``"dask"`` (the code those arrays run). Showing
        the code only writes text: it needs none of those libraries.

        ``generic=True`` shows the shape-generic code of the shapes' class
        (:func:`einsgrad.shapes.shape_class`), which reads its sizes from its arguments (torch
        calls run it; its pullback takes ``shapes=``, the operands' shapes); None shows the
        kind the last call ran when its shapes are used, exact-shape code otherwise.
        """
        dialect = code_request.dialect(backend, dialects.DIALECTS)
        signature, dtypes = self._request(shapes, None, "source", generic, False, numpy=dialect is not dialects.TORCH)
        record = self._signature_record(signature)
        keys = code_request.function_keys(signature, dtypes, dialect)
        sources = dict.fromkeys(block for key in keys for block in record.source_blocks(key))  # a chunk's once
        header = code_request.header(self.spec, signature)
        return f"{record.helpers(dialect)}\n\n{header}" + "\n\n".join(sources)

    def module(self, *shapes, dtypes=None, backend: str = "numpy", generic: bool | None = None) -> str:
        """A standalone Python module that needs only ``backend`` (see :mod:`einsgrad.vendor`):
        numpy's ``forward``, ``vjp``, ``forward_saving`` and ``pullback``; torch's ``einsum``
        (a ``torch.autograd.Function``) and ``vjp``; jax's ``einsum`` (a ``jax.custom_vjp``)
        and ``vjp``. Other shapes than it takes raise ``ValueError``.

        Args:
            *shapes: operand shapes (else those of ``compile(..., shapes=)`` or the last call).
            dtypes: one dtype for every operand, or one per operand; default float64 (or the
                dtypes of the last call, for its shapes). torch and jax take one dtype.
            backend: ``"numpy"``, ``"torch"`` or ``"jax"``.
            generic: shape-generic code, for every shape of the shapes' class; None: where no
                shapes are known (a spec with ``...`` needs some, for the batch rank), or the
                last call ran such code.
        """
        dialect = code_request.dialect(backend, vendor.BACKENDS)
        signature, dtypes = self._request(shapes, dtypes, "module", generic, True, numpy=True)
        if backend != "numpy" and len(set(dtypes)) > 1:
            raise EinsumSpecError(f"a {backend} module takes one dtype for every operand, got "
                                  f"{', '.join(d.name for d in dtypes)}")
        record = self._signature_record(signature)
        functions = [record.source(key, "_") for key in code_request.function_keys(signature, dtypes, dialect)]
        return vendor.module(self.spec, record.bound, dtypes, functions, backend, record.generic,
                             record.helpers(dialect))

    def stripped(self, *operands) -> Stripped:
        """The forward as ``mantissa * 2**exponent`` (:class:`einsgrad.stripped.Stripped`):
        every step rescaled by a power of two, so that a value past its dtype's range (a
        float32 norm of a long chain) is still exact (see :mod:`einsgrad.stripped`). numpy,
        torch and jax arrays (under ``jax.jit`` too).

        >>> s = Einsum("ij,jk,kl->il").stripped(*[np.full((2, 2), 1e15, np.float32)] * 3)
        >>> round(float(s.log10()[0, 0]), 3)  # 4e45: past float32's 3.4e38
        45.602
        """
        arrays, record, _ = self._stripping(operands, "stripped")
        return stripping.forward(record, arrays)

    def stripped_vjp(self, cotangent, *operands, wrt=None):
        """:meth:`vjp`'s gradients, each a :class:`einsgrad.stripped.Stripped`; the cotangent
        is an array or a ``Stripped`` (the forward's own, say)."""
        arrays, record, backend = self._stripping(operands, "stripped_vjp")
        indices, single = self._wrt(wrt)
        if isinstance(cotangent, Stripped):
            g = Stripped(tangents.cotangent(cotangent.mantissa, arrays, backend, record.output_shape),
                         cotangent.exponent)
        else:
            g = tangents.cotangent(cotangent, arrays, backend, record.output_shape)
        grads = stripping.vjp(record, g, arrays, indices)
        return grads[0] if single else grads

    def log_grad(self, *operands, wrt=None) -> LogGrad:
        """A scalar contraction's stripped value ``y`` and the gradients of ``log(y)`` (of
        ``log|y|`` for real values: ``(dy/dx) / y``, as :meth:`vjp` does without conjugation),
        exact and finite where ``y`` and ``dy/dx`` are past the dtype's range. One forward
        keeps what the pullback reads, as :meth:`value_and_pullback` does."""
        arrays, record, _ = self._stripping(operands, "log_grad")
        indices, single = self._wrt(wrt)
        y, grads = stripping.log_grad(record, arrays, indices)
        return LogGrad(y, grads[0] if single else grads)

    def log_value(self, *operands):
        """``log|y|`` of a scalar contraction, from its stripped value: finite where ``y`` is
        past the dtype's range. On torch tensors a torch autograd function, on jax arrays a
        ``jax.custom_jvp`` function (``jax.grad``, ``jax.jit``), whose gradient is
        :meth:`log_grad`'s, so that the log-norm of a network that overflows can be trained."""
        arrays, record, backend = self._stripping(operands, "log_value")
        stripping.check_scalar(record, "log_value")
        if backend is None:
            return stripping.forward(record, arrays).log()
        if backend.name == "torch":
            from . import stripped_torch

            return stripped_torch.log_value(self, *arrays)
        from . import stripped_jax

        return stripped_jax.log_value(self, *arrays)

    def costs(self, *shapes) -> Costs:
        """FLOPs and memory of forward and backward for these shapes (see :class:`Costs`)."""
        record = self._signature_record(self._shapes(shapes, "costs"))
        return Costs.of(record.plans_of_every_operand(), record.slices)

    def plan(self, *shapes) -> PlanReport:
        """The contraction path and costs of the forward, the one-shot vjp, and the
        forward/pullback pair, against recomputing each gradient (see :class:`PlanReport`).

        >>> print(Einsum("ik,kj->ij").plan((2, 3), (3, 4)))  # doctest: +ELLIPSIS
        einsgrad plan: ik,kj->ij  shapes (2, 3), (3, 4)
        ...
        """
        shapes = self._shapes(shapes, "plan")
        record = self._signature_record(shapes)
        return PlanReport.of(str(self.spec), shapes, str(record.bound.spec),
                             record.plans_of_every_operand(), record.slices, record.notes())

    # -- internals -----------------------------------------------------------------------

    def _record(self, shapes: tuple[tuple[int, ...], ...] | ShapeClass) -> SignatureRecord:
        """A new record for one shape signature or shape class (cached by ``_records``; no
        side effects): a class is planned for its representative, with shape-generic code."""
        if isinstance(shapes, ShapeClass):
            bound = bind(self.spec, shapes.representative, dict(self.sizes))
            return SignatureRecord(self.spec, bound, self.optimize, self.memory_limit, True, self.joint)
        bound = bind(self.spec, shapes, dict(self.sizes))
        return SignatureRecord(self.spec, bound, self.optimize, self.memory_limit, joint=self.joint)

    def _classify(self, shapes) -> Classified:
        """The record key of a call of a shape-generic dialect (cached by ``_classes`` where
        the sizes are ints): exact shapes under a ``memory_limit``, which bounds their own
        intermediates."""
        return classify(self.spec, shapes, self.sizes, exact=self._exact)

    def _backend_signature(self, backend: backends.Backend, arrays) -> Classified:
        """The record key and output shape of a call on another library's arrays."""
        shapes = tuple([tuple(a.shape) for a in arrays])
        if backend.dialect not in _GENERIC:  # int(): torch.compile's symbolic sizes, concrete
            exact = tuple([tuple(map(int, s)) for s in shapes])
            return Classified(exact, None)
        try:
            return self._classes(shapes)
        except TypeError:  # symbolic sizes do not hash: classified on every trace
            return self._classify(shapes)

    def _signature_record(self, shapes: tuple[tuple[int, ...], ...]) -> SignatureRecord:
        """The cached record of a shape signature. When it is new (and may have pushed an old
        one out), the index of loaded functions starts afresh: it never keeps an evicted
        signature's code alive."""
        misses = self._records.cache_info().misses
        record = self._records(shapes)
        if self._records.cache_info().misses != misses:
            self._loaded.clear()
            self._pairs.clear()
        return record

    def _call(self, mode: Mode, arrays, wrt, cotangent) -> tuple:
        """The fields of the :class:`FunctionKey` of ``mode``'s function for these numpy arrays,
        in order, remembered as the last call's (for :meth:`source`). A plain tuple hashes and
        compares equal to the FunctionKey it spells, so it finds the loaded function, and is
        cheaper to build on every call; ``FunctionKey._make`` names its fields where needed."""
        if len(arrays) <= 8:  # a few operands: cheaper than two lists made tuples (but quadratic)
            shapes = dtypes = ()
            for a in arrays:
                shapes += (a.shape,)
                dtypes += (a.dtype,)
        else:
            shapes, dtypes = tuple([a.shape for a in arrays]), tuple([a.dtype for a in arrays])
        self._last = call = (mode, shapes, dtypes, wrt, None if cotangent is None else cotangent.dtype,
                             _NUMPY, ())
        return call

    def _jvp(self, mode: Mode, tangent_values, operands) -> tuple:
        """The results of the jvp plan of ``mode`` for these tangents (None: zero) and operands."""
        count = len(self.spec.inputs)
        wrt, arrays, backend = tangents.intake(tangent_values, operands, count, str(self.spec))
        if backend is None:
            signature, output_shape = tuple([a.shape for a in arrays[:count]]), None
        else:  # a shape class where the dialect's code is shape-generic, as its other calls
            signature, output_shape = self._backend_signature(backend, arrays[:count])
        record = self._signature_record(signature)
        output_shape = record.output_shape if output_shape is None else output_shape
        tangents.check(wrt, arrays, count)
        dtype = (lambda a: a.dtype) if backend is None else backend.dtype
        dtypes = tuple([dtype(a) for a in arrays])
        if not wrt:
            zeros = tangents.zeros(output_shape, dtypes, backend, arrays[0])
            return (zeros,) if mode is Mode.JVP else (self(*arrays), zeros)
        key = FunctionKey(mode, signature, dtypes, wrt, None, _NUMPY if backend is None else backend.dialect)
        function = record.runner(key)
        if backend is not None and backend.cast is not None and len(set(dtypes)) > 1:
            common = scalars.result_type(*dtypes)
            arrays = [backend.cast(a, common) for a in arrays]
        return tuple(function(*arrays))

    def _stripping(self, operands, caller: str) -> tuple[tuple, SignatureRecord, backends.Backend | None]:
        """The operands as arrays of one library exponent stripping runs on, their signature's
        record, and their backend (None: numpy)."""
        arrays, shapes, backend = stripping.intake(operands, caller, len(self.spec.inputs))
        return arrays, self._signature_record(shapes), backend

    def _cotangent_error(self, g, record: SignatureRecord) -> EinsumSpecError:
        return EinsumSpecError(f"the cotangent has shape {g.shape} but the output of {str(self.spec)!r} "
                               f"has shape {record.output_shape}")

    def _load(self, key: FunctionKey, record: SignatureRecord) -> Loaded:
        """``key``'s function from ``record`` (made on first use), indexed for later calls."""
        loaded = self._loaded[key] = Loaded(record, record.runner(key))
        return loaded

    def _wrt(self, wrt) -> derive.Wrt:
        """``wrt`` as operand indices, and whether one array (not a tuple) is returned."""
        if wrt is None:  # the common case, on every call: made once
            return self._all
        if type(wrt) is tuple:  # a framework's backward, on every call: checked once
            try:
                return self._wrts[wrt]
            except KeyError:
                found = self._wrts[wrt] = derive.check_wrts(self.spec, wrt)
                return found
            except TypeError:  # an unhashable element: refused below
                pass
        return derive.check_wrts(self.spec, wrt)

    def _shapes(self, shapes, caller: str) -> tuple[tuple[int, ...], ...]:
        """Shapes from the arguments, else from ``compile(..., shapes=)``."""
        shapes = check_shapes(shapes, len(self.spec.inputs)) if shapes else self.shapes
        if shapes is None:
            raise EinsumSpecError(f"{caller}() needs shapes: pass them or compile with shapes=")
        return shapes

    def _request(self, shapes, dtypes, caller: str, generic, unshaped: bool,
                 numpy: bool) -> code_request.CodeRequest:
        """What :meth:`source` and :meth:`module` write code for (see :func:`code_request`);
        ``numpy``: the last call's dtypes as numpy's (a torch call's where numpy has them)."""
        if self._exact:  # calls run exact shapes, sliced where the limit asks
            if generic:
                raise EinsumSpecError(f"{caller}(generic=True): under a memory_limit (or a cotengra "
                                      f"optimizer's slicing) every call runs code of its exact shapes "
                                      f"(sliced where they need it); give shapes")
            generic = False
        last = None if self._last is None else FunctionKey._make(self._last)
        return code_request.code_request(self.spec, self.sizes, shapes, dtypes, caller, generic,
                                         unshaped, self.shapes, last, numpy)

    def _run_in(self, backend: backends.Backend | None, mode: Mode, arrays, wrt, cotangent=None,
                record: SignatureRecord | None = None):
        """The function of ``mode`` for these arrays (``backend`` None: numpy): its dialect's
        code, cached under a key of the backend's dtypes (:mod:`einsgrad.scalars`), in ``record`` (default: the arrays' shape
        signature's). Where the library does not promote mixed dtypes, arguments are cast to
        the common one first (the results are then cast back to their operands' dtypes)."""
        if backend is None:
            call = self._call(mode, arrays, wrt, cotangent)
            loaded = self._loaded.get(call)
            if loaded is not None and (record is None or loaded.record is record):
                return loaded.function
            key = FunctionKey._make(call)
            if record is None:
                return self._load(key, self._signature_record(key.shapes)).function
            return record.runner(key)  # a record pushed out of the cache since: not indexed
        shapes, output_shape = self._backend_signature(backend, arrays)
        dtypes = tuple([backend.dtype(a) for a in arrays])
        cotangent_dtype = None if cotangent is None else backend.dtype(cotangent)
        record = record or self._signature_record(shapes)
        output_shape = record.output_shape if output_shape is None else output_shape
        if mode is Mode.VJP and differ(tuple(cotangent.shape), output_shape):
            raise EinsumSpecError(
                f"the cotangent has shape {tuple(cotangent.shape)} but the output of "
                f"{str(self.spec)!r} has shape {tuple(output_shape)}")
        key = self._last = FunctionKey(mode, shapes, dtypes, wrt, cotangent_dtype, backend.dialect)
        function = record.runner(key)
        every = dtypes if cotangent_dtype is None else dtypes + (cotangent_dtype,)
        if backend.cast is None or len(set(every)) == 1:
            return function
        return backends.casting(function, scalars.result_type(*every), backend.cast)

    def _forward_saving(self, arrays, wrt, backend=None) -> Saving:
        """The forward of the saving plan for the pullback of the operands ``wrt``, and its
        ``finish``: both from one record, so that the pullback reads what this forward saved."""
        if backend is None:
            call = self._call(Mode.SAVING, arrays, wrt, None)
            loaded = self._loaded.get(call)
            if loaded is None:
                key = FunctionKey._make(call)
                loaded = self._load(key, self._signature_record(key.shapes))
            record, function = loaded.record, loaded.function
        else:
            record = self._signature_record(self._backend_signature(backend, arrays).signature)
            function = self._run_in(backend, Mode.SAVING, arrays, wrt, None, record)
        y, *saved = function(*arrays)
        if backend is not None and backend.keep is not None:  # dask: the forward runs once
            y, *saved = backend.keep(y, *saved)
        shape = tuple(y.shape)

        def finish(cotangent, arrays, saved):
            g = tangents.cotangent(cotangent, arrays, backend, shape)
            return self._pullback(backend, arrays, wrt, g, record, saved)

        return Saving(y, tuple(saved), finish)
