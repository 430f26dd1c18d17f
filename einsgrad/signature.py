"""One shape signature's record: its cache keys, its plans, and its generated functions.

An :class:`einsgrad.Einsum` keeps one :class:`SignatureRecord` per shape signature. The record
binds the spec once, asks the path optimizer once for the forward tree, and makes every plan,
source and function of the signature from them, each when first needed, under named keys
(:class:`PlanKey`, :class:`FunctionKey`).
"""

from __future__ import annotations

import contextlib
import enum
import gc
import sysconfig
import threading
from collections import Counter
from typing import Callable, NamedTuple

import numpy as np

from . import codegen, derive, dialects, gemm_sides, host, paths, plan, scalars, sliced_code, slicing, tables, trees
from .errors import EinsumSpecError
from .report import Plans
from .shapes import BoundSpec
from .spec import Spec
from .steps import Matmul, Plan, Regroup


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector paused for a block that plans or generates code.

    Planning a network of a thousand tensors makes some million small objects (tuples, steps,
    strings), none in a cycle, all freed by reference counting; the collector's passes over
    them, triggered by the allocations alone, cost 1.4-1.8x the planning itself (measured on
    1000-tensor chains, trees and circuits). A collector already off stays off.

    What the block made and keeps (plans, steps, kernels: a signature's cache) would then be
    traversed by the first collection after it, and again by the next older one: 13% of the
    compile of a 750-tensor tree. So the block ends by counting every object as old
    (``gc.freeze`` then ``gc.unfreeze``, which puts them all in the oldest generation), as
    the collector would after two passes; only full collections traverse them, as they do
    every long-lived object. Skipped where the process froze objects of its own (a server
    that forks), whose frozen set this would undo, and on a free-threaded Python, whose
    ``gc.freeze`` visits every object instead of moving two lists."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if _FREEZE_MOVES_LISTS and not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()


_FREEZE_MOVES_LISTS = not sysconfig.get_config_var("Py_GIL_DISABLED")
"""Whether ``gc.freeze`` costs the same whatever the number of objects (see collector_paused)."""


class Mode(enum.Enum):
    """The generated functions of a shape signature."""

    FORWARD = "forward"
    VJP = "vjp"
    SAVING = "forward_saving"
    PULLBACK = "pullback"
    JACOBIAN = "jacobian"
    JVP = "jvp"
    VALUE_AND_JVP = "value_and_jvp"

    __hash__ = object.__hash__  # members are singletons; a key is hashed on every call


class FunctionKey(NamedTuple):
    """What one generated function is compiled for.

    Attributes:
        mode: which function.
        shapes: the operands' shapes (the shape signature that caches it), or their
            :class:`~einsgrad.shapes.ShapeClass` for shape-generic code.
        dtypes: the operands' dtypes (the jvp's: then its tangents', in ``wrt`` order); numpy's,
            or the backend's own (see :mod:`einsgrad.scalars`).
        wrt: the operands differentiated (the Jacobian's one operand; the jvp's operands with
            a tangent); None for the forward.
        cotangent: the cotangent's dtype (vjp and pullback), else None.
        dialect: the array library the code is written for.
        chunk: sizes of the sliced labels, for one chunk of a sliced run (``memory_limit``).
    """

    mode: Mode
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple
    wrt: tuple[int, ...] | None
    cotangent: object
    dialect: dialects.Dialect
    chunk: slicing.Cuts = ()


class PlanKey(NamedTuple):
    """One plan of a shape signature: the mode, the operands differentiated, the chunk."""

    mode: Mode
    wrt: tuple[int, ...] | None
    chunk: slicing.Cuts = ()


class SavingPair(NamedTuple):
    """A call's forward-saving and pullback functions, found once per shapes, dtypes and
    ``wrt``: what framework glue (an ``autograd.Function``) runs, checking a call once, at its
    forward, and handing the pair to its backward (see :meth:`einsgrad.Einsum.saving_pair`).

    Attributes:
        saving: ``(*operands) -> (y, *saved)``.
        pullback: ``(g, *saved) -> gradients`` of ``wrt``, in order; ``g`` as autograd hands it
            (the output's shape and dtype), unchecked. A generic one has its sizes bound.
        read: for each saved value, the operand whose values in its shape it is (its index),
            or None (an intermediate): the operand itself, cast to the common dtype where
            dtypes are mixed, or its :class:`~einsgrad.steps.Regroup`; the operand may stand in.
        regrouped: the operands saved as the forward's reshape reads them (a Regroup: a copy
            where that reshape copies). A caller that keeps the operands anyway (for a
            recorded backward) passes those dense where they are strided and hands them to
            the pullback in the Regroup's place: one copy is kept, which both passes read.
        kept: the operands a backward may read: those saved, and those the one-shot vjp of
            ``wrt`` reads (a recorded backward, ``create_graph=True``, runs it).
        key: the forward-saving function's key (the last call's, for :meth:`Einsum.source`).
    """

    saving: Callable
    pullback: Callable
    read: tuple[int | None, ...]
    regrouped: frozenset
    kept: frozenset
    key: FunctionKey


class Source(NamedTuple):
    """A generated function's text and its name."""

    text: str
    name: str


class SignatureRecord:
    """Everything one shape signature compiles, each part made once, when first needed.

    The bound spec and the forward tree (the one question asked of the path optimizer) are
    made at once; the plans (every mode, each ``wrt``, each chunk of a sliced run), the
    slices, and the generated source and function of each :class:`FunctionKey` are made from
    them lazily and kept. Holding one record, a forward and its pullback cannot disagree
    about the tree, whatever the optimizer answers another time.

    A ``generic`` record is planned for a :class:`~einsgrad.shapes.ShapeClass`'s
    representative shapes and writes shape-generic code, which reads its sizes from its
    arguments: its plans' sizes and :attr:`output_shape` are the representative's. Its
    pullback takes the operands' shapes too (``pullback(g, *saved, shapes=...)``).
    """

    def __init__(self, spec: Spec, bound: BoundSpec, optimize, memory_limit, generic: bool = False,
                 joint: bool = False):
        self.spec, self.bound, self.generic = spec, bound, generic
        self.output_shape = bound.output_shape
        self.choice: trees.TreeChoice | None = None  # the joint tree choice, where asked for
        with collector_paused():
            if joint:
                self.choice = trees.choose(bound, optimize, memory_limit)
                self.tree = self.choice.joint.path
            else:
                self.tree, implied = plan.forward_tree(bound, optimize, memory_limit)
                if implied is not None:  # a sliced cotengra tree: its bound, or the tighter one given
                    memory_limit = implied if memory_limit is None else min(memory_limit, implied)
        self.optimize = paths.auxiliary(optimize)
        self.memory_limit = memory_limit
        self.every = tuple(range(len(bound.spec.inputs)))
        self.sweeps: dict[tuple, plan.Sweep] = {}
        self.plans: dict[PlanKey, Plan] = {}
        self.sources: dict[FunctionKey, Source] = {}
        self.functions: dict[FunctionKey, Callable] = {}
        self.loops: dict[tuple, Callable] = {}  # the sliced loops, by key and window (see sliced)
        self.kernels = tables.Kernels()  # the step tables' kernels, shared by the functions
        self.lock = threading.RLock()
        self._slicing: slicing.Slicing | None = None

    def plan(self, key: PlanKey) -> Plan:
        """The plan of ``key``, made on first use: a projection of the sweep of its operands
        (the forward's is every operand's), or for the vjp of some operands the direct
        contractions when they cost less, the Jacobian's own contraction, or the jvp's tangents
        pushed along the tree (:func:`einsgrad.plan.jvp_plan`)."""
        found = self.plans.get(key)
        if found is not None:
            return found
        with self.lock, collector_paused():
            if key not in self.plans:
                bound = self.bound.resized(key.chunk)
                if key.mode in (Mode.JVP, Mode.VALUE_AND_JVP):
                    self.plans[key] = plan.jvp_plan(bound, key.wrt, self.tree,
                                                    value=key.mode is Mode.VALUE_AND_JVP)
                elif key.mode is Mode.JACOBIAN:
                    jacobian = BoundSpec(derive.jacobian(bound.spec, key.wrt[0]), bound.sizes)
                    self.plans[key] = plan.sweep(jacobian, plan.forward_path(jacobian, self.optimize),
                                                 ()).forward()
                elif key.mode is Mode.FORWARD:
                    self.plans[key] = self.sweep(self.every, key.chunk).forward()
                elif key.mode is Mode.VJP:
                    self.plans[key] = plan.vjp_plan(bound, key.wrt, self.sweep(key.wrt, key.chunk),
                                                    self.optimize, self.memory_limit)
                else:
                    pair = self.sweep(key.wrt, key.chunk).pair()
                    self.plans[key._replace(mode=Mode.SAVING)] = pair.saving
                    self.plans[key._replace(mode=Mode.PULLBACK)] = pair.pullback
            return self.plans[key]

    def sweep(self, wrt: tuple[int, ...], chunk: slicing.Cuts = ()) -> plan.Sweep:
        """The forward tree and its reverse sweep for the operands ``wrt`` (one chunk's sizes),
        lowered once: the plans of the tree are its projections."""
        found = self.sweeps.get((wrt, chunk))
        if found is None:
            with self.lock, collector_paused():
                found = self.sweeps.get((wrt, chunk))
                if found is None:
                    found = self.sweeps[wrt, chunk] = plan.sweep(self.bound.resized(chunk), self.tree, wrt)
        return found

    def saved_operands(self, wrt: tuple[int, ...]) -> tuple[tuple[int | None, ...], frozenset]:
        """For each value the forward-saving plan of ``wrt`` saves, the operand it is or
        regroups (its index, else None); and the operands it saves as a
        :class:`~einsgrad.steps.Regroup`."""
        if self.slices:  # the sliced forward saves the operands (see runner)
            return tuple(range(len(self.every))), frozenset()
        saving = self.plan(PlanKey(Mode.SAVING, wrt))
        operand = {name: k for k, name in enumerate(saving.args)}
        operand.update((step.target, operand[step.args[0]]) for step in saving.steps
                       if isinstance(step.operation, Regroup))
        regrouped = frozenset(operand[step.target] for step in saving.steps if isinstance(step.operation, Regroup))
        return tuple(operand.get(n) for n in saving.returns[1:]), regrouped

    def vjp_operands(self, wrt: tuple[int, ...]) -> frozenset:
        """The operands the one-shot vjp plan of ``wrt`` reads."""
        vjp = self.plan(PlanKey(Mode.VJP, wrt))
        read = {a for step in vjp.steps for a in step.args} | set(vjp.returns)
        return frozenset(k for k, name in enumerate(vjp.args[1:]) if name in read)

    @property
    def slicing(self) -> slicing.Slicing | None:
        """The cuts that honour ``memory_limit`` and what they cost (None without a limit)."""
        if self._slicing is None and self.memory_limit is not None:
            with self.lock, collector_paused():
                if self._slicing is None:
                    self._slicing = slicing.choose(self.bound, self.memory_limit, self.tree)
        return self._slicing

    @property
    def slices(self) -> slicing.Cuts:
        """Labels sliced, with their chunk sizes, to honour ``memory_limit`` (none without)."""
        return () if self.memory_limit is None else self.slicing.cuts

    def notes(self) -> tuple[str, ...]:
        """Lines for :meth:`einsgrad.Einsum.plan`: the slicing's cost, the joint tree choice."""
        found = []
        if self.slices:
            s = self.slicing
            found.append(f"slicing: {s.slices:,} chunks, {s.overhead:.3g}x the unsliced FLOPs of forward + all "
                         f"gradients, largest intermediate {s.largest:,} elements (cuts by {s.finder})")
        if self.choice is not None:
            found.append(self.choice.describe())
        return tuple(found)

    def runner(self, key: FunctionKey) -> Callable:
        """What a call of ``key`` runs: its generated function, or, where ``memory_limit``
        slices the signature, generated code that runs the chunk's program over every slice
        with the same arguments and results (:mod:`einsgrad.sliced_code`). The sliced
        forward-saving function then saves the operands alone, and the pullback runs the
        sliced vjp on them: a chunk's intermediates are never kept. Everything a call needs is
        compiled here, before it runs (``torch.compile`` traces the call alone)."""
        if key.chunk or key.mode is Mode.JACOBIAN or not self.slices:
            return self.function(key)
        return self.sliced(key)

    def sliced(self, key: FunctionKey, window: tuple[tuple[str, int], ...] = ()) -> Callable:
        """``key``'s loop over the slices, loaded on first use, for the signature's label sizes
        or a window of them (``window``: (label, size) of labels that are shorter there: a
        group of slices that one task of :mod:`einsgrad.distributed` runs)."""
        found = self.loops.get((key, window))
        if found is None:
            with self.lock, collector_paused():
                if (key, window) not in self.loops:
                    if key.mode is Mode.FORWARD and not window:  # the gradients have their operands' shapes
                        host.check_fits_shape(self.output_shape,
                                              scalars.itemsize(scalars.result_type(*key.dtypes)),
                                              f"the forward of {str(self.spec)!r}", "the output")
                    self._check_fits(self._sliced_parts(key)[0])
                    text = sliced_code.loop_helpers(key.dialect) + "\n\n" + "\n\n".join(
                        self.source_blocks(key, window=window))
                    self.loops[key, window] = codegen.load(text, sliced_code.chunk_dialect(key.dialect))[key.mode.value]
                found = self.loops[key, window]
        return found

    def helpers(self, dialect: dialects.Dialect) -> str:
        """The helpers the code of this signature reads in ``dialect`` (more under slicing)."""
        return sliced_code.helpers(dialect) if self.slices else dialect.helpers

    def source_blocks(self, key: FunctionKey, prefix: str = "", window: tuple = ()) -> tuple[str, ...]:
        """The generated text of ``key``'s function, by definitions: the function, or where
        the signature is sliced the chunk's program (numpy's for dask arrays: each slice is a
        task of numpy blocks) and the loop over the slices that calls it (over a ``window``
        of the labels' sizes: see :meth:`sliced`)."""
        if key.chunk or key.mode is Mode.JACOBIAN or not self.slices:
            return (self.source(key, prefix),)
        chunk, (args, outs) = self._sliced_parts(key)
        program = self._render(chunk, prefix) if prefix else self._rendered(chunk)
        loop = sliced_code.driver(prefix + key.mode.value, program.name, program.text, args, outs, self.slices,
                                  {**self.bound.size_of, **dict(window)}, graph=key.dialect is dialects.DASK,
                                  returns_arguments=key.mode is Mode.SAVING, budget=self.memory_limit)
        return program.text, loop

    def _sliced_parts(self, key: FunctionKey) -> tuple[FunctionKey, tuple]:
        """The key of the chunk's program that ``key``'s sliced loop calls (a forward-saving
        loop calls the forward's, a pullback's the vjp's), and the labels of the loop's
        arguments and results."""
        inputs, output = self.bound.spec.inputs, self.bound.spec.output
        mode = {Mode.SAVING: Mode.FORWARD, Mode.PULLBACK: Mode.VJP}.get(key.mode, key.mode)
        chunk = key._replace(mode=mode, chunk=self.slices, dialect=sliced_code.chunk_dialect(key.dialect),
                             wrt=None if mode is Mode.FORWARD else key.wrt)
        if mode is Mode.FORWARD:
            return chunk, (inputs, (output,))
        if mode is Mode.VJP:
            return chunk, ((output, *inputs), tuple(inputs[k] for k in key.wrt))
        tangents = (*inputs, *(inputs[k] for k in key.wrt))
        return chunk, (tangents, (output, output) if mode is Mode.VALUE_AND_JVP else (output,))

    def plans_of_every_operand(self) -> Plans:
        """The plans :meth:`Einsum.costs` and :meth:`Einsum.plan` report (every operand wanted)."""
        every = self.every
        separate = sum(self.plan(PlanKey(Mode.VJP, (k,))).flops for k in every)
        return Plans(self.plan(PlanKey(Mode.FORWARD, None)), self.plan(PlanKey(Mode.VJP, every)),
                     self.plan(PlanKey(Mode.SAVING, every)), self.plan(PlanKey(Mode.PULLBACK, every)),
                     separate)

    def source(self, key: FunctionKey, prefix: str = "") -> str:
        """The generated text of ``key``'s function (its name after ``prefix``); rendering only,
        so that showing code for a library never needs that library. Under slicing: the
        chunk's program and the loop over the slices (:meth:`source_blocks`)."""
        if self.slices and not key.chunk and key.mode is not Mode.JACOBIAN:
            return "\n\n\n".join(self.source_blocks(key, prefix))
        if prefix:
            return self._render(key, prefix).text
        return self._rendered(key).text

    def _rendered(self, key: FunctionKey) -> Source:
        """The source of ``key``'s function, rendered once."""
        found = self.sources.get(key)
        if found is None:
            with self.lock, collector_paused():
                found = self.sources.get(key)
                if found is None:
                    found = self.sources[key] = self._render(key)
        return found

    def _render(self, key: FunctionKey, prefix: str = "") -> Source:
        """The source of ``key``'s function, its name after ``prefix``."""
        composed = self.compose(key)
        name = prefix + composed.name + ("_chunk" if key.chunk else "")
        if not self.generic and tables.tabled(composed.plan, key.dialect):
            return Source(tables.render(composed.plan, name, composed.finish, key.dialect, composed.casts,
                                               self.kernels), name)
        operands = self.bound.spec.inputs if self.generic else None
        size_of = None if self.generic else self.bound.resized(key.chunk).size_of
        return Source(codegen.render(composed.plan, name, composed.finish, key.dialect, composed.casts,
                                     operands, self.generic and key.mode is Mode.PULLBACK, size_of), name)

    def function(self, key: FunctionKey) -> Callable:
        """The function ``key`` runs, loaded from its source on first use, after checking that
        every value it makes can exist on this host."""
        found = self.functions.get(key)
        if found is not None:
            return found
        with self.lock, collector_paused():
            if key not in self.functions:
                source = self._rendered(key)
                self._check_fits(key)
                self.functions[key] = codegen.load(source.text, key.dialect)[source.name]
            return self.functions[key]

    def _check_fits(self, key: FunctionKey) -> None:
        """Refuses ``key``'s function where a value it makes cannot exist on this host."""
        itemsize = scalars.itemsize(scalars.result_type(*key.dtypes, *[key.cotangent] * (key.cotangent is not None)))
        if not self.generic:  # a generic plan's sizes are its class's, not a call's
            host.check_fits(self.plan(PlanKey(key.mode, key.wrt, key.chunk)), itemsize,
                            f"the {key.mode.value} of {str(self.spec)!r}")

    def compose(self, key: FunctionKey) -> "Composed":
        """The plan of a function key, the name of its function, how it finishes results, and
        which arguments it first casts."""
        mode, dtypes, wrt = key.mode, key.dtypes, key.wrt
        check_dtypes(dtypes, key.cotangent, extension_floats=key.dialect.name == "jax")
        bound = self.bound.resized(key.chunk)
        program = gemm_sides.in_dtype(self.plan(PlanKey(mode, wrt, key.chunk)), bound.size_of,
                                      (*dtypes, key.cotangent), key.dialect.right_transposed)
        casts = _entry_casts(program, key)
        if mode is Mode.FORWARD:
            out = scalars.result_type(*dtypes)
            return Composed(program, "forward", _forward_finish(program, bound, key.dialect,
                                                                None if scalars.kind(out) in "fc" else out), casts)
        if mode is Mode.SAVING:
            return Composed(program, "forward_saving", _forward_finish(program, bound, key.dialect, None), casts)
        if mode in (Mode.JVP, Mode.VALUE_AND_JVP):  # dtypes: the operands', then the tangents'
            return Composed(program, mode.value, _jvp_finish(program, bound, dtypes), casts)
        if mode is Mode.JACOBIAN:
            shape = bound.output_shape + bound.input_shapes[wrt[0]]
            return Composed(program, "jacobian", _jacobian_finish(program, wrt[0], dtypes, shape), casts)
        return Composed(program, mode.value, _finish(program, bound, wrt, key.cotangent, dtypes, key.dialect), casts)


class Composed(NamedTuple):
    """What :func:`codegen.render` needs for one function key.

    Attributes:
        plan: the steps.
        name: the generated function's name.
        finish: for each returned value, (copy it, the dtype to cast it to or None).
        casts: arguments cast to the computation's dtype on entry, with that dtype.
    """

    plan: Plan
    name: str
    finish: dict
    casts: dict


def _entry_casts(program: Plan, key: FunctionKey) -> dict:
    """Arguments of mixed-dtype code cast to the common dtype first, as ``numpy.einsum`` does:
    a narrower operand summed alone (a trace of float16 values beside float64 ones) would
    otherwise be summed, and rounded, in its own dtype. Only for libraries whose operations
    promote; for the others :class:`einsgrad.Einsum` casts every argument before the call.
    The pullback's saved values come cast from ``forward_saving``."""
    if key.dialect not in dialects.PROMOTING or key.mode is Mode.PULLBACK:
        return {}
    dtypes = ((key.cotangent,) if key.mode is Mode.VJP else ()) + key.dtypes
    if key.mode is Mode.JACOBIAN:  # its arguments are the other operands
        k = key.wrt[0]
        dtypes = key.dtypes[:k] + key.dtypes[k + 1:]
    if len(set(dtypes)) < 2:
        return {}
    common = np.result_type(*dtypes)
    return {arg: common for arg, dtype in zip(program.args, dtypes) if dtype != common}


def _forward_finish(program: Plan, bound, dialect: dialects.Dialect, dtype) -> dict:
    """How the forward returns ``y``: copied where it may alias an argument, cast to ``dtype``
    (or not: None). A fresh result is left in the layout it was computed in where the
    library's own einsum returns a strided view (the dialect's ``strided``): no copy that the
    library does not make (the dialect finishes the others)."""
    copy, strided = _needs_copy(program, "y", bound.output_shape), dialect.strided
    if strided is not None and not copy and dtype is None and strided(bound):
        return {}
    return {"y": (copy, dtype)}


def _jvp_finish(program: Plan, bound, dtypes) -> dict:
    """How a jvp plan returns ``dy`` (of the operands' and tangents' dtype) and, if it does,
    ``y`` (of the operands' alone, as the forward: it computes in the dtype of all of them)."""
    shape, every = bound.output_shape, scalars.result_type(*dtypes)
    finish = {"dy": (_needs_copy(program, "dy", shape), None if scalars.kind(every) in "fc" else every)}
    if "y" in program.returns:
        out = scalars.result_type(*dtypes[:len(bound.spec.inputs)])
        finish["y"] = (_needs_copy(program, "y", shape), None if scalars.kind(out) in "fc" and out == every else out)
    return finish


def _jacobian_finish(program: Plan, k: int, dtypes, shape) -> dict:
    """How the Jacobian of operand ``k`` is returned: copied where it may alias an argument,
    cast to :func:`_jacobian_dtype`. Its operands are the others (or a scalar 1 of operand
    ``k``'s dtype), of shape ``shape``; its labels are the bound ones, so a size-1 label broadcast in operand ``k``
    is a label of size 1 that only the Jacobian's output has."""
    computed = np.result_type(*(dtypes[:k] + dtypes[k + 1:] or dtypes[k:k + 1]))
    target = _jacobian_dtype(dtypes, k)
    return {"y": (_needs_copy(program, "y", shape), None if target == computed else target)}


def _jacobian_dtype(dtypes, k: int) -> np.dtype:
    """The vjp's dtype for operand ``k``, but complex (of its precision) for a real operand of
    a complex contraction: the Jacobian's entries are complex where the vjp keeps the real part."""
    out, own = np.result_type(*dtypes), np.dtype(dtypes[k])
    if own.kind not in "fc":
        return out
    if own.kind == "f" and out.kind == "c":
        return np.result_type(own, np.complex64)
    return own


def _finish(program: Plan, bound, wrt, cotangent_dtype, dtypes, dialect: dialects.Dialect) -> dict:
    """What each returned gradient needs: a copy (it may alias an argument), a cast (to its
    operand's dtype, when G and the other operands make a different one). A gradient that is
    a product transposed after (:func:`_transposed_product`) is left that view where the
    library's own einsum returns a strided view too (the dialect's ``strided_gradient``): the
    product is then computed in the plan's orientation, with no copy.

    Promotion depends only on the set of dtypes promoted, so each gradient's computed dtype is
    that of the distinct dtypes of the others, which its own dtype decides: asked once per
    distinct dtype, linear in the operands."""
    finish, inputs, fresh, strided = {}, bound.spec.inputs, program.fresh_values(), dialect.strided_gradient
    counts = Counter(dtypes)
    casts: dict = {}  # operand dtype -> its gradient's cast (None: none)
    for k, name in zip(wrt, program.returns):
        target = dtypes[k]
        if target not in casts:
            others = frozenset(d for d, n in counts.items() if d != target or n > 1)
            computed = scalars.result_type(cotangent_dtype, *others)
            casts[target] = target if scalars.kind(target) in "fc" and target != computed else None
        finish[name] = (not fresh.get(name, False) or not inputs[k], casts[target])  # a scalar: copied
        if strided is not None and finish[name] == (False, None) and _transposed_product(program, name) \
                and strided(bound, k):
            del finish[name]
    return finish


def _transposed_product(program: Plan, name: str) -> bool:
    """Whether ``name`` is made by a GEMM whose result is then transposed (its last two axes
    swapped): a view either way round, which a dialect that multiplies products in order
    would otherwise reorder to compute contiguous. Any other layout stays finished contiguous:
    leaving a permuted view only moves its copy to the reads of the next pullback, which may
    read it twice."""
    step = next((step for step in program.steps if step.target == name), None)
    if step is None or not isinstance(step.operation, Matmul):
        return False
    n = len(step.labels)
    return n >= 2 and step.perm == tuple(range(n - 2)) + (n - 1, n - 2)


def _needs_copy(program: Plan, name: str, shape) -> bool:
    return not program.fresh(name) or shape == ()


def check_dtypes(dtypes, cotangent=None, extension_floats: bool = False) -> None:
    """Refuses, naming it, an operand dtype or the cotangent's (if any) that is not numeric:
    code is generated for numbers only. ml_dtypes' floats (``bfloat16``) are numbers where
    ``extension_floats`` (jax computes in them; numpy's own operations do not)."""
    distinct = dict.fromkeys(dtypes if cotangent is None else (cotangent, *dtypes))
    if all(_computable(dtype, extension_floats) for dtype in distinct):  # a thousand operands, one dtype
        return
    named = [("the cotangent", cotangent)] * (cotangent is not None)
    for name, dtype in named + [(f"operand {i}", d) for i, d in enumerate(dtypes)]:
        kind = scalars.kind(dtype)
        if kind not in "biufc":
            raise EinsumSpecError(f"{name} has dtype {dtype}, which is not numeric")
        if isinstance(dtype, np.dtype) and kind != dtype.kind and not extension_floats:
            raise EinsumSpecError(f"{name} has dtype {dtype}, which numpy does not compute in "
                                  "(jax arrays of it run, through einsgrad.jax)")


def _computable(dtype, extension_floats: bool) -> bool:
    """Whether :func:`check_dtypes` lets ``dtype`` through."""
    kind = scalars.kind(dtype)
    return kind in "biufc" and not (isinstance(dtype, np.dtype) and kind != dtype.kind and not extension_floats)
