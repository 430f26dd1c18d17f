"""A :class:`~einsgrad.spec.Spec` as a one-term sum of the index algebra, and back.

An einsum spec is a one-term program ``Y[O] = Σ_{L∖O} Π_m X_m[L_m]``: a label repeated in the
output is a Kronecker delta between two output indices, a label only in the output a broadcast
(an output index no factor holds), ``...`` one batch index (named ``...``). This module holds
the two conversions and the algebra's own derivation of such a term (the vjp and the Jacobian of
one operand position), which a property test keeps equal to the fast path :mod:`einsgrad.derive`.
Pure: no numpy, no compiler.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple, Sequence

from .algebra import (Delta, Factor, Fresh, Indexed, Term, canonical_summed, contract_deltas,
                      fresh_indices, fresh_name, without_deltas)
from .spec import ELLIPSIS, Spec, is_label, unused_labels


class OneTerm(NamedTuple):
    """``Y[output] = Σ term``: distinct output indices, every other index of the term summed."""

    output: tuple[str, ...]
    term: Term


def term_of_spec(spec: Spec, names: Sequence[str] | None = None) -> OneTerm:
    """``Y[O] = Σ Π_m X_m[L_m] Π δ(o, o′)``: one factor per operand position, named by
    ``names`` (default ``X0, X1, ...``; two positions may share a name), and a delta tying each
    repeat of an output label to its first occurrence (``"i->ii"`` is ``Y[i,j] = X0[i] δ(i,j)``)."""
    names = tuple(f"X{m}" for m in range(len(spec.inputs))) if names is None else tuple(names)
    assert len(names) == len(spec.inputs), "one name per operand"
    fresh = Fresh(set(spec.labels) | {ELLIPSIS})
    output, deltas = [], []
    for label in spec.output:
        if label in output:
            output.append(fresh.take())
            deltas.append(Delta(label, output[-1]))
        else:
            output.append(label)
    factors = tuple(Factor(name, labels) for name, labels in zip(names, spec.inputs))
    return OneTerm(tuple(output), Term(Fraction(1), factors + tuple(deltas)))


class TermEinsum(NamedTuple):
    """A term's product of tensors as one einsum (its coefficient aside).

    Attributes:
        tensors: the term's tensors, in order: the einsum's operands.
        spec: the einsum, over letters.
        indices: the index each letter of ``spec``'s output stands for.
        output: the term's output with the indices deltas tie written as one (a repeat).
    """

    tensors: tuple[Factor, ...]
    spec: Spec
    indices: tuple[str, ...]
    output: tuple[str, ...]


def einsum_of(output: Sequence[str], term: Term, *, canonical: bool = False) -> TermEinsum | None:
    """``Y[output] = Σ term`` as one einsum: the one mapping of a term to an einsum.

    Deltas are contracted first; one left between two output indices is that label repeated in
    the output. Labels are the indices' own where each is one label (or ``...``), else
    ``a, b, c, ...`` (then :func:`einsgrad.spec.symbol`'s) in order of first use. ``canonical``: always letters in order of first use,
    and the output only the distinct kept letters, in that order, so that products equal up to
    index names have one spec (the caller transposes, broadcasts and places the result).
    None where the notation has no spelling: a summed ``δ(p,p)``
    (``Σ_p δ(p,p) = dim(p)``, a number the einsum cannot write).
    """
    output = tuple(output)
    factors = contract_deltas(term.factors, output)
    if any(f.is_delta and f.p == f.q and f.p not in output for f in factors):
        return None
    tensors, tied = without_deltas(Term(term.coefficient, factors), output)
    used = list(dict.fromkeys(i for f in tensors for i in f.indices))
    if canonical:
        kept = tuple(i for i in used if i in set(tied))
    else:
        used = list(dict.fromkeys([*used, *tied]))
        kept = tied
    own = not canonical and all(i == ELLIPSIS or (len(i) == 1 and is_label(i)) for i in used)
    letter = {i: i for i in used} if own else dict(zip(used, unused_labels(())))
    inputs = tuple(tuple(letter[i] for i in f.indices) for f in tensors) or ((),)
    return TermEinsum(tensors, Spec.of(inputs, tuple(letter[i] for i in kept)), kept, tied)


def spec_of_term(output: Sequence[str], term: Term) -> Spec:
    """The einsum of ``Y[output] = Σ term`` (:func:`einsum_of`), its operands the term's tensors
    in order (none: the scalar 1 as the one operand).

    Refused (an assert): a coefficient other than 1, a summed index that no tensor holds
    (``Σ_p δ(p,p) = dim(p)``), a delta on the batch index ``...``.
    """
    output = tuple(output)
    assert len(set(output)) == len(output), "distinct output indices (a repeat is a delta)"
    assert term.coefficient == 1, "an einsum has no coefficient"
    for f in contract_deltas(term.factors, output):
        if f.is_delta:
            assert f.p != f.q and f.p in output and f.q in output, \
                f"no notation for {f}: a sum over a dimension"
            assert ELLIPSIS not in f.indices, f"no notation for {f}: '...' is one batch index"
    found = einsum_of(output, term)
    assert found is not None, "a summed delta has no notation"
    return found.spec


def _named(coefficient: Fraction, factors: tuple[Indexed, ...], kept: tuple[str, ...],
           xs: tuple[str, ...], preferred: tuple[str, ...]) -> OneTerm:
    """The result ``Y[kept + xs]`` with ``xs`` renamed to ``preferred`` (a repeat, or a name
    ``kept`` has, gets a fresh one) and the summed indices named canonically (``...`` stays)."""
    free = set(kept) | set(xs)
    summed = dict.fromkeys(i for f in factors for i in f.indices if i not in free and i != ELLIPSIS)
    factors = tuple(f.renamed({i: f"#s{n}" for n, i in enumerate(summed)}) for f in factors)
    names = fresh_indices(preferred, set(kept))
    assert not (ELLIPSIS in names and any(ELLIPSIS in f.indices for f in factors)), "one batch index"
    factors = tuple(f.renamed(dict(zip(xs, names))) for f in factors)
    output = kept + names
    return OneTerm(output, Term(coefficient, canonical_summed(factors, output + (ELLIPSIS,))))


def _occurrence(output: tuple[str, ...], term: Term, k: int):
    """The factors of ``term`` but operand position ``k``, ``X_k``'s derivative as deltas
    ``Π_t δ(L_k,t, x_t)``, the fresh ``x`` and ``X_k``."""
    position = [n for n, f in enumerate(term.factors) if not f.is_delta][k]
    factor = term.factors[position]
    fresh = Fresh(set(output) | set(term.indices()) | {ELLIPSIS})
    xs = tuple(fresh.take() for _ in factor.indices)
    others = term.factors[:position] + term.factors[position + 1:]
    return others, tuple(Delta(l, x) for l, x in zip(factor.indices, xs)), xs, factor


def vjp_term(output: Sequence[str], term: Term, k: int) -> OneTerm:
    """``dX_k[x] = Σ G[O] Π_{m≠k} X_m[L_m] Π_t δ(L_k,t, x_t)``, the deltas contracted and ``x``
    named by ``L_k``: the product rule over operand position ``k`` alone (another position with
    the same name is a factor like any other), chained with the cotangent ``G[O]`` (named ``G``
    unless a tensor is). Its operands: ``G``, then the other positions in order."""
    output = tuple(output)
    others, deltas, xs, factor = _occurrence(output, term, k)
    g = Factor(fresh_name("G", {f.name for f in term.factors}), output)
    return _named(term.coefficient, contract_deltas((g,) + others + deltas, xs), (), xs, factor.indices)


def jacobian_term(output: Sequence[str], term: Term, k: int) -> OneTerm:
    """``J[O, x] = ∂Y[O]/∂X_k[x] = Σ Π_{m≠k} X_m[L_m] Π_t δ(L_k,t, x_t)``, the deltas contracted
    and ``x`` named by ``L_k`` where ``O`` does not hold the name (a delta then ties the two)."""
    output = tuple(output)
    others, deltas, xs, factor = _occurrence(output, term, k)
    return _named(term.coefficient, contract_deltas(others + deltas, output + xs), output, xs, factor.indices)
