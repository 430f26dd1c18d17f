"""einsgrad in torch: an einsum whose backward is einsgrad's derived plan, run in torch ops.

>>> import torch, einsgrad.torch
>>> X = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
>>> W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
>>> einsgrad.torch.einsum("ik,jk->ij", X, W).sum().backward()
>>> W.grad.shape
torch.Size([5, 3])

What works, as with ``torch.einsum``:

* Reverse mode: the forward runs the forward-saving plan and hands everything the backward
  reads to ``ctx.save_for_backward`` (so autograd frees it after ``backward()``,
  ``torch.utils.checkpoint`` drops and recomputes it, and saved-tensor hooks see it); the
  backward runs the pullback plan for the operands that need a gradient only (an operand
  that only its own gradient would read is not kept, as torch's matmul does). When the
  backward is itself recorded (``create_graph=True``, ``gradgradcheck``, ``torch.func``), it
  runs the one-shot vjp plan from the operands instead, differentiable like any torch code.
* Forward mode (``torch.autograd.forward_ad``, ``torch.func.jvp``, ``jacfwd``): the tangent
  is :meth:`einsgrad.Einsum.jvp`, the product rule's terms planned along the forward's tree.
* ``torch.func``: ``grad``, ``vjp``, ``jacrev``, ``jacfwd``, ``hessian``, ``functional_call``
  and ``vmap``. A vmapped einsum is an einsum with one more label, run as its own plan.
* Every dtype torch's matmul runs (``bfloat16`` and ``float16`` included), and autocast as
  ``torch.einsum`` meets it (:mod:`einsgrad.torch_autocast`): each of torch's pairwise steps
  that sums a label both operands hold (a ``bmm``) computes in the autocast dtype, its
  floating operands (float64 aside) cast to it, and any other product promotes; the result
  has the last step's dtype, and gradients come back in the operands' dtypes.
* The list form ``einsum("ij,jk->ik", [x, y])`` and the sublist form
  ``einsum(x, [0, 1], y, [1, 2], [0, 2])``; a fresh result is contiguous, so ``.view()`` works.
* ``torch.compile`` puts the call in its graph as it is (registered when ``torch._dynamo``
  is first imported, so that importing this module does not import it) and traces the
  generated torch code of forward and backward.
* Little Python a call: a call of spec text and tensors is worked out once per spec, shapes,
  dtypes, devices, operands needing a gradient and grad mode, into an autograd Function of
  its own (which operands it keeps, where each gradient goes: settled then), and a repeat
  call is a lookup and that Function, whose ``apply`` binds no arguments and calls no
  ``setup_context`` outside ``torch.func``'s transforms; with grad mode off, the plain
  forward runs without a node. In a training step, where caches are cold after each GEMM,
  that fixed Python is what einsgrad's call costs over ``torch.einsum``'s.

The generated code is shown by ``Einsum.source(backend="torch")``; it runs on the tensors'
device.
"""

from __future__ import annotations

import importlib.abc
import inspect
import itertools
import sys
import weakref
from typing import Callable, NamedTuple

import torch

from . import torch_autocast
from .torch_node import conjugated, signature_function, with_placeholders
from .calls import as_call, as_einsum, is_spec
from .compiled import Einsum
from .signature import SavingPair
from .spec import ELLIPSIS, LETTERS, Spec, unused_labels

__all__ = ["einsum"]


CALLS_LIMIT = 1024
"""How many call signatures :func:`einsum`'s fast path keeps; past it, the oldest goes."""


class _CallKey(NamedTuple):
    """What decides how a call of :func:`einsum` runs, all but the operands' strides (which
    :func:`_run` reads each call).

    Attributes:
        spec: the spec text (only text: a compiled :class:`einsgrad.Einsum` takes the general
            path, which notes the call for its ``source()``).
        recording: whether grad mode is on.
        operands: each operand's ``(type, shape, dtype, device, requires_grad)``. The type
            keeps apart the fake tensors that ``torch.compile`` and ``export`` trace with
            (they keep no calls: the general path runs while compiling).
    """

    spec: str
    recording: bool
    operands: tuple


class _Call(NamedTuple):
    """How one :class:`_CallKey` runs, worked out by the general path once.

    Attributes:
        compiled: the einsum.
        wrt: the operands autograd wants gradients of (none where grad mode is off).
        pair: their :class:`einsgrad.signature.SavingPair`, or None (no gradient wanted).
        regrouped: the operands to make dense first where strided (see :func:`_dense`).
        autocast: the device type, where autocast is available there (checked each call: the
            fast path stands aside while it is on), else None.
        forward: where grad mode is off, the plain forward (``(*operands) -> (y,)``), run
            without an autograd node; else None.
        placeholders: the operands not kept for a backward (see :func:`_placeholders`).
        node: the call's own autograd Function
            (:func:`einsgrad.torch_node.signature_function`), run where no ``torch.func``
            transform is active; None under ``torch.compile`` (which runs
            :class:`_EinsumFunction`) and where no node is made.
        run: where there is a node, what a repeat call calls, ``(*operands) -> y``
            (:func:`_runner`); else None.
    """

    compiled: Einsum
    wrt: tuple
    pair: SavingPair | None
    regrouped: frozenset
    autocast: str | None
    forward: Callable | None
    placeholders: dict | None
    node: type | None
    run: Callable | None = None


_CALLS: dict[_CallKey, _Call] = {}

# Read on every call: bound once here, each a C function (one global lookup, not two).
_grad_enabled = torch.is_grad_enabled
_autocast_enabled = torch.is_autocast_enabled


def einsum(*args) -> torch.Tensor:
    """``torch.einsum`` with einsgrad's derived backward.

    Args:
        *args: an einsum spec (compiled once and cached) or an :class:`einsgrad.Einsum` (for
            ``sizes=``, ``optimize=``, ``memory_limit=``), then the operands (on one device;
            numpy arrays and Python numbers are converted) or one list of them; or, as
            ``torch.einsum`` takes them, the sublist form ``x, [0, 1], y, [1, 2], [0, 2]``
            (each operand followed by its labels, ``...`` for the ellipsis, and the output's
            labels last, optional; labels are any hashable values, as opt_einsum takes them,
            not only torch's integers in ``[0, 52)``).

    Gradients follow torch's convention (for complex values, ``conj`` of einsgrad's
    non-conjugating vjp of ``conj(G)``), so they equal autograd of ``torch.einsum``.

    A call of spec text and tensors is worked out once per :class:`_CallKey` (spec, shapes,
    dtypes, devices, which operands need a gradient, grad mode): a repeat call is one lookup,
    then the autograd node (none where grad mode is off: the plain forward runs, and forward
    mode and ``vmap`` see its torch operations). Under ``torch.compile`` and ``export`` (fake
    tensors), and while autocast is on, every call takes the general path.
    """
    try:  # a plain tuple: it hashes and compares equal to the _CallKey the entry was kept under
        if len(args) == 3:  # two operands, one operand: spelled out (no comprehension's frame)
            a, b = args[1], args[2]
            call = _CALLS.get((args[0], _grad_enabled(), ((a.__class__, a.shape, a.dtype, a.device, a.requires_grad),
                                                          (b.__class__, b.shape, b.dtype, b.device, b.requires_grad))))
        elif len(args) == 2:
            a = args[1]
            call = _CALLS.get((args[0], _grad_enabled(), ((a.__class__, a.shape, a.dtype, a.device, a.requires_grad),)))
        else:
            call = _CALLS.get((args[0], _grad_enabled(),
                               tuple([(t.__class__, t.shape, t.dtype, t.device, t.requires_grad) for t in args[1:]])))
    except (AttributeError, TypeError, IndexError):  # other forms, symbolic sizes: no key
        return _general(args, None)
    if call is None or call.autocast is not None and _autocast_enabled(call.autocast):
        return _general(args, _key(args))
    if call.forward is not None:
        return call.forward(*args[1:])[0]
    if call.run is not None:
        try:
            return call.run(*args[1:])
        except RuntimeError as e:  # a torch.func transform is active, or the call failed
            return _transformed(call, args[1:], e)
    return _run(call, args[1:])


def _key(args: tuple) -> _CallKey | None:
    """The :class:`_CallKey` of a call of spec text and tensors, else None."""
    try:
        key = _CallKey(args[0], torch.is_grad_enabled(),
                       tuple([(t.__class__, t.shape, t.dtype, t.device, t.requires_grad) for t in args[1:]]))
        hash(key)
    except (AttributeError, TypeError, IndexError):
        return None
    return key


def _general(args: tuple, key: _CallKey | None) -> torch.Tensor:
    """A call read from any of its forms; one of spec text and tensors, outside autocast, is
    kept under ``key`` for the fast path."""
    compiled, tensors = _arguments(args)
    for t in tensors:
        if not isinstance(t, torch.Tensor):  # numpy arrays, numbers: converted (rarely)
            tensors, key = tuple(t if isinstance(t, torch.Tensor) else _as_tensor(t, tensors) for t in tensors), None
            break
    device = tensors[0].device.type if tensors else "cpu"
    autocast = torch.amp.is_autocast_available(device)
    if autocast and torch.is_autocast_enabled(device):
        return _autocast(compiled, tensors, device)
    call = _call(compiled, tensors, device if autocast else None)
    if key is not None and isinstance(key.spec, str) and not torch.compiler.is_compiling():
        if len(_CALLS) >= CALLS_LIMIT:
            _CALLS.pop(next(iter(_CALLS)), None)  # (another thread may have taken it)
        _CALLS[key] = call
    return _run(call, tensors)


def _autocast(compiled: Einsum, tensors: tuple, device: str) -> torch.Tensor:
    """The call under autocast, as ``torch.einsum`` meets it (:mod:`einsgrad.torch_autocast`):
    one plan in the dtype every pairwise step of torch's has, else torch's steps one by one."""
    options = torch.backends.opt_einsum
    strategy = options.strategy if options.enabled and options.is_available() else None
    road = torch_autocast.route(compiled.spec, [t.shape for t in tensors], [t.dtype for t in tensors],
                                torch.get_autocast_dtype(device), strategy)
    sizes = dict(compiled.sizes)
    with torch.autocast(device, enabled=False):
        if road.uniform or ELLIPSIS in sizes:  # (an output-only batch: no letters spell it)
            return _apply(compiled, tuple(t.to(road.result) if t.is_floating_point() and t.dtype != road.result
                                          else t for t in tensors))
        return torch_autocast.run_pairwise(road, tensors, sizes, _step)


def _step(text: str, *tensors, sizes: dict) -> torch.Tensor:
    """One step of :func:`torch_autocast.run_pairwise`: an einsgrad einsum, autocast off."""
    return _apply(Einsum(text, sizes=sizes) if sizes else as_einsum(text), tensors)


def _apply(compiled: Einsum, tensors: tuple) -> torch.Tensor:
    """``compiled`` of torch tensors, autocast aside."""
    device = tensors[0].device.type if tensors else "cpu"
    return _run(_call(compiled, tensors, device if torch.amp.is_autocast_available(device) else None), tensors)


def _call(compiled: Einsum, tensors: tuple, autocast: str | None) -> _Call:
    """How a call of ``compiled`` on these tensors runs (see :class:`_Call`)."""
    if not torch.is_grad_enabled():
        # the plain forward; under a memory_limit the einsum's own call, which runs in slices
        forward = compiled.saving_pair(*tensors, wrt=()).saving if compiled.memory_limit is None else None
        return _Call(compiled, (), None, frozenset(), autocast, forward, None, None)
    wrt = tuple(k for k, t in enumerate(tensors) if t.requires_grad)
    if not wrt:
        return _Call(compiled, wrt, None, frozenset(), autocast, None, None, None)
    pair = compiled.saving_pair(*tensors, wrt=wrt)
    placeholders = _placeholders(pair, tensors)
    if torch.compiler.is_compiling():
        return _Call(compiled, wrt, pair, frozenset(), autocast, None, placeholders, None)
    node = signature_function(compiled, wrt, pair, placeholders, len(tensors), any(t.is_complex() for t in tensors))
    return _Call(compiled, wrt, pair, pair.regrouped, autocast, None, placeholders, node,
                 _runner(node, pair.regrouped))


def _run(call: _Call, tensors: tuple) -> torch.Tensor:
    """One call as ``call`` says (a node's through :func:`_runner`, which reads the operands'
    strides: :func:`_dense`)."""
    if call.forward is not None:
        return call.forward(*tensors)[0]
    if call.run is not None:
        try:
            return call.run(*tensors)
        except RuntimeError as e:
            return _transformed(call, tensors, e)
    return _EinsumFunction.apply(call.compiled, call.wrt, call.pair, *tensors)[0]


def _runner(node: type, regrouped: frozenset) -> Callable:
    """What a repeat call of a signature with a node calls: ``node``'s apply, the regrouped
    operands made dense first (:func:`_dense`). Outside ``torch.func``'s transforms it runs the
    node; under one, ``apply`` raises before running anything (:data:`_TRANSFORMS`), and the
    caller runs :func:`_transformed` instead."""
    apply = node.apply
    if not regrouped:
        return apply

    def run(*tensors):
        return apply(*[_dense(t) if k in regrouped else t for k, t in enumerate(tensors)])

    return run


def _transformed(call: _Call, tensors: tuple, error: RuntimeError) -> torch.Tensor:
    """A call of a node's signature under a ``torch.func`` transform: :class:`_EinsumFunction`,
    which ``torch.func`` runs (``error``, what ``apply`` raised, is raised again where it says
    something else)."""
    if _TRANSFORMS not in str(error):
        raise error
    if call.regrouped:
        tensors = tuple(_dense(t) if k in call.regrouped else t for k, t in enumerate(tensors))
    return _EinsumFunction.apply(call.compiled, call.wrt, call.pair, *tensors)[0]


_TRANSFORMS = "autograd.Function with functorch transforms"
"""What ``Function.apply`` says, before it runs anything, when a ``torch.func`` transform is
active and the Function has no ``setup_context`` (documented in torch's "Extending torch.func
with autograd.Function")."""


def _dense(t: torch.Tensor) -> torch.Tensor:
    """An operand that the forward saves as its reshape reads it (a Regroup), made dense
    first where it is strided (and not merely a transposed matrix, which reshapes of the
    leading labels keep a view): the Regroup is then a view of it, and the one copy is what
    autograd saves for the pullback and for a recorded backward alike, as torch.einsum's bmm
    saves its operands' copies. The copy is recorded: its backward passes the gradient on."""
    if t.is_contiguous() or t.dim() >= 2 and t.transpose(-1, -2).is_contiguous():
        return t
    return t.contiguous()


def _placeholders(pair: SavingPair, tensors: tuple) -> dict | None:
    """The operands that neither the pullback nor the vjp (a recorded backward) reads, by index,
    each as ``(shape, dtype, device)``: they are not kept (as torch's matmul keeps only the
    other side), and a recorded backward has a placeholder of that shape stand in. None where
    every operand is kept."""
    if len(pair.kept) == len(tensors):
        return None
    return {j: (t.shape, t.dtype, t.device) for j, t in enumerate(tensors) if j not in pair.kept}


def _save(ctx, tensors: tuple, placeholders: dict | None, intermediates) -> None:
    """Hands autograd what a backward may read: the operands kept, then the intermediates."""
    if placeholders is None:
        ctx.save_for_backward(*tensors, *intermediates)
    else:
        ctx.save_for_backward(*[None if j in placeholders else t for j, t in enumerate(tensors)], *intermediates)
    ctx.save_for_forward(*tensors)


def _gradients(ctx, g, pair: SavingPair | None) -> tuple:
    """The gradients of ``ctx.wrt`` (in order) for the cotangent ``g``: the pair's pullback on
    the saved values, or, where the backward is recorded (or nothing was saved), the vjp from
    the operands. ``ctx`` holds ``compiled``, ``wrt``, ``count`` and ``placeholders``."""
    values, count = ctx.saved_tensors, ctx.count
    conjugate = g.is_complex()
    if conjugate:
        g = g.conj()
    if pair is None or torch.is_grad_enabled():  # recorded: run it from the operands
        grads = ctx.compiled.vjp(g, *with_placeholders(values[:count], ctx.placeholders), wrt=ctx.wrt)
    else:  # the saved values in the pullback's order: operands first, then intermediates
        intermediates = iter(values[count:])
        grads = pair.pullback(g, *[next(intermediates) if k is None else values[k] for k in pair.read])
    return conjugated(grads) if conjugate else grads


def _intermediates(pair: SavingPair, saved: list) -> list:
    """The values ``pair.saving`` saved that are no operand's (the rest are the operands)."""
    return [value for value, k in zip(saved, pair.read) if k is None]


class _EinsumFunction(torch.autograd.Function):
    """Forward: the forward-saving plan of ``pair``, the call's
    :class:`einsgrad.signature.SavingPair` (found by one lookup before the Function, the call
    checked there once), returning ``(y, pair, *intermediates)``; the backward runs the pair's
    pullback with no second lookup or check. None in place of the pair means nothing is
    saved (no gradient wanted, or a vmapped call): the backward then runs the vjp from the
    operands. Every tensor the backward reads goes through ``save_for_backward``. It is the
    Function ``torch.func``'s transforms and ``torch.compile`` run (the call signatures' own,
    :func:`einsgrad.torch_node.signature_function`, run the others)."""

    @staticmethod
    def forward(compiled: Einsum, wrt: tuple, pair, *tensors):
        if pair is None:
            return compiled(*tensors).detach(), None
        y, *saved = pair.saving(*tensors)
        # a result left strided (as torch.einsum leaves it) is a view of the product: detached,
        # it is a tensor of its own, whose tangent forward mode may lay out as it likes
        return y.detach(), pair, *_intermediates(pair, saved)

    @staticmethod
    def setup_context(ctx, inputs, output):
        compiled, wrt, pair, *tensors = inputs
        intermediates = output[2:]
        ctx.compiled, ctx.wrt, ctx.pair, ctx.count, ctx.intermediates = (
            compiled, wrt, pair, len(tensors), len(intermediates))
        if intermediates:
            ctx.mark_non_differentiable(*intermediates)
            # the intermediates have no gradient: autograd would otherwise fill zeros of each
            # one's shape (as large as an activation) for backward to ignore
            ctx.set_materialize_grads(False)
        ctx.placeholders = None if pair is None else _placeholders(pair, tensors)
        _save(ctx, tensors, ctx.placeholders, intermediates)

    @staticmethod
    def backward(ctx, g, *_):
        result = [None] * (ctx.count + 3)
        if g is None:  # the result took no part in what is differentiated
            return tuple(result)
        for k, grad in zip(ctx.wrt, _gradients(ctx, g, ctx.pair)):
            result[k + 3] = grad
        return tuple(result)

    @staticmethod
    def jvp(ctx, _compiled, _wrt, _pair, *tangents):
        operands = ctx.saved_tensors[:ctx.count]
        dy = ctx.compiled.jvp(list(tangents), *operands)
        # the layout and the intermediates (marked non-differentiable) have no tangent
        return (dy, None) + (None,) * ctx.intermediates

    @staticmethod
    def vmap(info, in_dims, compiled: Einsum, wrt: tuple, _pair, *tensors):
        dims = in_dims[3:]
        batched = _batched(compiled, dims)
        y = _apply(batched, tuple(t if d is None else t.movedim(d, 0) for t, d in zip(tensors, dims)))
        return (y, None), (0, None)


class _Bound(NamedTuple):
    """Arguments bound to :class:`_Positional`: all positional, none with a default."""

    args: tuple
    kwargs: dict

    def apply_defaults(self) -> None:
        """Nothing to fill: no parameter has a default."""


class _Positional(inspect.Signature):
    """The signature ``(*args)``, whose binding is the arguments as given. Function.apply binds
    its arguments to forward's signature on every call, through ``inspect.signature`` (which
    takes a function's ``__signature__`` where it has one) and ``Signature.bind`` (Python that
    walks the parameters: ~10 us a call, as much as a small GEMM); forward takes only
    positional arguments, so binding them changes nothing."""

    def __init__(self):
        super().__init__([inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)])

    def bind(self, *args, **kwargs) -> _Bound:
        assert not kwargs, "forward takes positional arguments only"
        return _Bound(args, {})


_EinsumFunction.forward.__signature__ = _Positional()


_BATCHED: "weakref.WeakKeyDictionary[Einsum, dict]" = weakref.WeakKeyDictionary()


def _batched(compiled: Einsum, dims: tuple) -> Einsum:
    """``compiled`` with one more label, first in the operands that ``dims`` batches and in
    the output: the einsum that a vmapped call of ``compiled`` is. Kept per compiled einsum
    and batched operands."""
    pattern = tuple(d is not None for d in dims)
    per = _BATCHED.setdefault(compiled, {})
    if pattern not in per:
        spec = compiled.spec
        taken = set(spec.labels)
        new = next(itertools.chain((c for c in sorted(LETTERS) if c not in taken), unused_labels(taken)))
        inputs = [(new,) + term if b else term for term, b in zip(spec.inputs, pattern)]
        per[pattern] = Einsum(str(Spec.of(inputs, (new,) + spec.output)),
                              sizes=dict(compiled.sizes), optimize=compiled.optimize,
                              memory_limit=compiled.memory_limit, joint=compiled.joint)
    return per[pattern]


def _as_tensor(value, tensors) -> torch.Tensor:
    like = next((t for t in tensors if isinstance(t, torch.Tensor)), None)
    return torch.as_tensor(value, device=None if like is None else like.device)


def _arguments(args: tuple) -> tuple[Einsum, tuple]:
    """The compiled einsum and the operands, from the three forms ``torch.einsum`` takes: a
    spec then operands, a spec then one list of them, the interleaved form (which takes any
    hashable labels, as opt_einsum's does, not only integers in [0, 52))."""
    compiled, rest = as_call(args)
    if is_spec(args[0]) and len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = tuple(rest[0])
    return compiled, rest


class _DynamoWatch(importlib.abc.MetaPathFinder):
    """Registers :func:`einsum` with ``torch.compile`` when ``torch._dynamo`` is imported (it
    costs seconds to import, and only code that compiles needs it)."""

    def find_spec(self, name, path, target=None):
        if name != "torch._dynamo":
            return None
        sys.meta_path.remove(self)  # once: the other finders find it
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        run = getattr(spec.loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module):
            run(module)
            _register()

        spec.loader.exec_module = exec_module
        return spec


def _register() -> None:
    # torch.compile puts the call in its graph as it is, and traces the autograd.Function's
    # forward and backward (generated torch code) instead of einsgrad's Python that writes them.
    torch.compiler.allow_in_graph(einsum)


if "torch._dynamo" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _DynamoWatch())
