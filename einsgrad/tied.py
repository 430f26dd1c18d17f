"""Tied and conjugated operands: an einsum whose operands are drawn from fewer tensors.

Tensor-network norms and expectations use one tensor several times: ``<psi|psi>`` reads every
site tensor once as the ket and once, conjugated, as the bra. :class:`Tied` names which
operands are another's tensor (``tied={2: 0}``: operand 2 is operand 0's) and which are
conjugated (``conjugate={2}``); it is called with the tensors of the untied operands alone and
returns one gradient per tensor: the sum of its occurrences' gradients.

The convention is :meth:`einsgrad.Einsum.vjp`'s (JAX's): a vjp is the plain, non-conjugating
transpose of the derivative. An occurrence ``conj(x)`` passes its cotangent through ``conj``,
so ``vjp_x = Σ_plain G_k + Σ_conjugated conj(G_k)``, where ``G_k`` is occurrence ``k``'s vjp.
torch's autograd returns conjugate-Wirtinger gradients instead: for a real loss ``L`` of
complex tensors, ``x.grad = conj(vjp_x(conj(dL/dy)))``, which for a real ``y`` (a norm, an
expectation of a Hermitian operator) and ``dL/dy`` real is ``conj(vjp_x(dL/dy))``.
"""

from __future__ import annotations

import numbers
import types
from typing import Iterable, Mapping, NamedTuple

from . import derive, scalars
from .compiled import Einsum
from .errors import EinsumSpecError
from .stripped import LogGrad, Stripped, added


class _Wanted(NamedTuple):
    """The tensors a gradient is wanted of (indices among the tensors, and whether one array
    is returned), and the operands that read them, in operand order."""

    indices: tuple[int, ...]
    single: bool
    occurrences: tuple[int, ...]


class Tied:
    """An :class:`~einsgrad.Einsum` whose operands come from fewer tensors, some conjugated.

    Args:
        spec: the forward over every operand (tied ones included), or an ``Einsum``.
        tied: ``{operand: the operand whose tensor it reads}``; a tied operand is not passed.
        conjugate: operands read conjugated (tied or not); a real tensor's conjugate is itself.
        **options: :class:`~einsgrad.Einsum`'s options (``optimize``, ``memory_limit``...).

    Every method takes the tensors of the untied operands, in operand order, and ``wrt``
    counts among them.

    >>> norm = Tied("ab,ab->", tied={1: 0}, conjugate={1})   # <x|x> = Σ conj(x) x
    >>> x = np.array([[1 + 1j, 2]])
    >>> norm(x), norm.vjp(np.ones(()), x, wrt=0)  # conj(x) + conj(x): JAX's convention
    (array(6.+0.j), array([[2.-2.j, 4.+0.j]]))
    """

    def __init__(self, spec, *, tied: Mapping[int, int] | None = None,
                 conjugate: Iterable[int] = (), **options):
        if isinstance(spec, Einsum):
            if options:
                raise EinsumSpecError(f"options {sorted(options)} are an Einsum's own: give them when compiling it")
            self.einsum = spec
        else:
            self.einsum = Einsum(spec, **options)
        count = len(self.einsum.spec.inputs)
        tied = _checked_ties(tied, count)
        self.conjugated = _checked_conjugates(conjugate, count)
        untied = [k for k in range(count) if k not in tied]
        self.tensors = len(untied)
        position = {k: i for i, k in enumerate(untied)}
        self.ties = types.MappingProxyType(tied)  # read-only
        self.sources = tuple(position[tied.get(k, k)] for k in range(count))  # operand -> tensor

    def __repr__(self) -> str:
        return f"einsgrad.Tied({str(self.einsum.spec)!r}, tied={dict(self.ties)}, conjugate={sorted(self.conjugated)})"

    def operands(self, *tensors) -> tuple:
        """Every operand the einsum reads: each its tensor, conjugated where asked."""
        if len(tensors) != self.tensors:
            raise EinsumSpecError(f"{self!r} takes {self.tensors} tensors (one per untied operand), "
                                  f"got {len(tensors)}")
        return tuple(conjugated(tensors[s]) if k in self.conjugated else tensors[s]
                     for k, s in enumerate(self.sources))

    def __call__(self, *tensors):
        """The forward over the operands the tensors make."""
        return self.einsum(*self.operands(*tensors))

    def vjp(self, cotangent, *tensors, wrt=None):
        """One gradient per tensor in ``wrt`` (an index among the tensors: one array; a
        sequence or None, every tensor: a tuple): its occurrences' gradients summed, a
        conjugated occurrence's conjugated (see the module for torch's convention)."""
        wanted = self._wanted(wrt)
        grads = self.einsum.vjp(cotangent, *self.operands(*tensors), wrt=wanted.occurrences)
        return self._gathered(wanted, grads, conjugated, _summed)

    def stripped(self, *tensors) -> Stripped:
        """:meth:`einsgrad.Einsum.stripped` over the operands the tensors make."""
        return self.einsum.stripped(*self.operands(*tensors))

    def stripped_vjp(self, cotangent, *tensors, wrt=None):
        """:meth:`vjp`'s gradients as :class:`~einsgrad.stripped.Stripped` values, their
        occurrences' terms brought to one exponent and summed."""
        wanted = self._wanted(wrt)
        grads = self.einsum.stripped_vjp(cotangent, *self.operands(*tensors), wrt=wanted.occurrences)
        return self._gathered(wanted, grads, lambda d: Stripped(conjugated(d.mantissa), d.exponent), added)

    def log_grad(self, *tensors, wrt=None) -> LogGrad:
        """:meth:`einsgrad.Einsum.log_grad` with one gradient of ``log(y)`` per tensor: its
        occurrences' summed, a conjugated occurrence's conjugated."""
        wanted = self._wanted(wrt)
        value, grads = self.einsum.log_grad(*self.operands(*tensors), wrt=wanted.occurrences)
        return LogGrad(value, self._gathered(wanted, grads, conjugated, _summed))

    def log_value(self, *tensors):
        """:meth:`einsgrad.Einsum.log_value` over the operands the tensors make: in torch and
        jax, autograd sums the occurrences' gradients through the conjugation itself."""
        return self.einsum.log_value(*self.operands(*tensors))

    def _wanted(self, wrt) -> _Wanted:
        """``wrt`` among the tensors, and the operands that read them."""
        indices, single = self._wrt(wrt)
        chosen = set(indices)
        return _Wanted(indices, single, tuple(k for k, s in enumerate(self.sources) if s in chosen))

    def _gathered(self, wanted: _Wanted, grads, conjugate, combine):
        """The occurrences' gradients ``grads`` (one per ``wanted.occurrences``) gathered into
        one per wanted tensor: ``combine`` of its occurrences' in operand order, each passed
        through ``conjugate`` where the occurrence is conjugated. The one gather of every mode."""
        found = dict(zip(wanted.occurrences, grads))
        totals = tuple(combine([conjugate(found[k]) if k in self.conjugated else found[k]
                                for k, s in enumerate(self.sources) if s == t]) for t in wanted.indices)
        return totals[0] if wanted.single else totals

    def _wrt(self, wrt) -> derive.Wrt:
        """``wrt`` among the tensors, as indices, and whether one array is returned."""
        if wrt is None:
            return derive.Wrt(tuple(range(self.tensors)), False)
        if _is_index(wrt):
            return derive.Wrt((self._tensor(wrt),), True)
        if isinstance(wrt, (str, bytes)) or not isinstance(wrt, Iterable):
            raise EinsumSpecError(f"wrt must be a tensor index or a sequence of them, got {wrt!r}")
        indices = tuple(self._tensor(t) for t in wrt)
        if len(set(indices)) != len(indices):
            raise EinsumSpecError(f"wrt names a tensor twice: {list(wrt)!r}")
        return derive.Wrt(indices, False)

    def _tensor(self, t) -> int:
        if not _is_index(t) or not 0 <= t < self.tensors:
            raise EinsumSpecError(f"wrt {t!r} is not a tensor index: {self!r} takes {self.tensors} tensors")
        return int(t)


def conjugated(x):
    """``conj(x)`` of a numpy, torch, jax or dask array; a real array itself (no copy). A
    torch conjugate is resolved: einsgrad's generated code reads plain tensors."""
    if scalars.kind(x.dtype) != "c":
        return x
    result = x.conj()
    return result.resolve_conj() if hasattr(result, "resolve_conj") else result


def _summed(terms):
    """The sum of arrays of one library, in order (no zero to start from: a dtype kept)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _is_index(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _checked_ties(tied, count: int) -> dict[int, int]:
    """``tied`` as {operand: the untied operand it reads}, or an error naming the wrong entry."""
    if tied is None:
        return {}
    if not isinstance(tied, Mapping):
        raise EinsumSpecError(f"tied must map an operand to the operand whose tensor it reads "
                              f"(e.g. {{2: 0}}), got {tied!r}")
    checked = {}
    for k, source in tied.items():
        for value in (k, source):
            if not _is_index(value) or not 0 <= value < count:
                raise EinsumSpecError(f"tied {{{k!r}: {source!r}}}: {value!r} is not an operand index "
                                      f"(the spec has {count} operands)")
        if k == source:
            raise EinsumSpecError(f"tied {{{k}: {source}}}: an operand cannot be tied to itself")
        if source in tied:
            raise EinsumSpecError(f"tied {{{k}: {source}}}: operand {source} is tied itself; "
                                  f"tie operand {k} to operand {tied[source]} instead")
        checked[int(k)] = int(source)
    return checked


def _checked_conjugates(conjugate, count: int) -> frozenset[int]:
    if isinstance(conjugate, (str, bytes)) or not isinstance(conjugate, Iterable):
        raise EinsumSpecError(f"conjugate must be a set of operand indices, got {conjugate!r}")
    conjugate = tuple(conjugate)
    for k in conjugate:
        if not _is_index(k) or not 0 <= k < count:
            raise EinsumSpecError(f"conjugate: {k!r} is not an operand index (the spec has {count} operands)")
    return frozenset(int(k) for k in conjugate)
