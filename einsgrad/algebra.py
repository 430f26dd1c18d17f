"""The index algebra: sums of products of indexed tensors and Kronecker deltas.

Every symbolic object einsgrad handles has the form::

    Y[O] = Σ_T  c_T  Σ_{L_T \\ O}  Π_{F ∈ T}  F[L_F]

with ``O`` the output (free) indices, ``L_T`` the indices of term ``T`` (those not in ``O`` are
summed over that term) and exact rational coefficients ``c_T``. A factor is a tensor
``name[indices]`` or the Kronecker delta ``delta[p,q]``. This module holds the values
(:class:`Factor`, :class:`Term`), the one generator of fresh names (:class:`Fresh`) and the
simplifications: delta contraction, canonical renaming of summed indices and like-term
merging. Pure: no numpy, no compiler.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Mapping

DELTA = "delta"
"""The name of the builtin Kronecker delta factor, ``delta[p,q]``."""

CANONICAL_LETTERS = "ijklmnopqrstuvwxyzabcdefgh"
"""Canonical index names, in order: output indices first, then summed ones."""

KEY_BUDGET = 20_000
"""The most factor spellings (arrangements of alike factors times factors) one like-term key
tries; it keeps parsing and deriving polynomial in the size of a program."""


@dataclass(frozen=True)
class Factor:
    """One tensor in a product: ``name[indices]`` (no indices: a scalar tensor); the name
    :data:`DELTA` is the Kronecker delta ``δ(p,q)``, 1 where ``p = q`` and 0 elsewhere."""

    name: str
    indices: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name + (f"[{','.join(self.indices)}]" if self.indices else "")

    @property
    def is_delta(self) -> bool:
        return self.name == DELTA

    def renamed(self, mapping: Mapping[str, str]) -> "Factor":
        indices = tuple(mapping.get(i, i) for i in self.indices)
        return self if indices == self.indices else Factor(self.name, indices)  # values: share


@dataclass(frozen=True)
class Term:
    """``coefficient * Π factors``; no factors is the constant ``coefficient``."""

    coefficient: Fraction
    factors: tuple[Factor, ...]

    def renamed(self, mapping: Mapping[str, str]) -> "Term":
        return Term(self.coefficient, tuple(f.renamed(mapping) for f in self.factors))

    def indices(self) -> tuple[str, ...]:
        """Distinct indices in order of first appearance."""
        return tuple(dict.fromkeys(i for f in self.factors for i in f.indices))

    def tensor_indices(self) -> set[str]:
        """Indices held by a tensor (deltas aside): those that give an index its size."""
        return {i for f in self.factors if not f.is_delta for i in f.indices}


# -- fresh names ---------------------------------------------------------------------------


def numbered(name: str, n: int) -> str:
    """``name`` followed by the number ``n``: ``i1``, ``g2``."""
    return f"{name}{n}"


class Fresh:
    """Names that clash with nothing in use: the one generator of new names.

    The candidates are ``letters``, then each letter with ``suffix(letter, 1)``, ``suffix(letter,
    2)``, ... (endless); :meth:`take` returns the first candidate not in ``taken`` and takes it.
    One pass over the candidates, so taking ``n`` names is linear in ``n``.
    """

    def __init__(self, taken: Iterable[str], letters: Iterable[str] = CANONICAL_LETTERS,
                 suffix: Callable[[str, int], str] = numbered):
        self.taken = set(taken)
        letters = tuple(letters)
        self._pool = itertools.chain(letters, (suffix(c, n) for n in itertools.count(1)
                                               for c in letters))

    def take(self) -> str:
        name = next(s for s in self._pool if s not in self.taken)
        self.taken.add(name)
        return name


def fresh_name(base: str, taken: Iterable[str]) -> str:
    """``base``, or the first of ``base1, base2, ...`` not in ``taken``: the default names of
    derived tensors (gradients, cotangents, Jacobians, vectors)."""
    return Fresh(taken, (base,)).take()


def fresh_indices(preferred: Iterable[str | None], taken: Iterable[str]) -> tuple[str, ...]:
    """Distinct names: each preferred name unless taken or already chosen, else (and for
    None) the first free canonical name (``i, j, ..., h``, then ``i1, j1, ...``)."""
    wanted, taken = list(preferred), set(taken)
    chosen: dict[str, None] = {}
    fresh = Fresh(taken | {p for p in wanted if p is not None})
    for name in wanted:
        if name is not None and name not in taken and name not in chosen:
            chosen[name] = None
        else:
            chosen[fresh.take()] = None
    return tuple(chosen)


def internal_summed(term: Term, free: set[str]) -> Term:
    """``term`` with its summed indices renamed ``#s0, #s1, ...``, names no user index has."""
    return term.renamed({i: f"#s{n}" for n, i in enumerate(x for x in term.indices() if x not in free)})


# -- deltas --------------------------------------------------------------------------------


def delta_classes(factors: Iterable[Factor]) -> dict[str, set[str]]:
    """Index -> the set of indices that deltas tie it to (itself included)."""
    classes: dict[str, set[str]] = {}
    for f in factors:
        if f.is_delta:
            p, q = f.indices
            merged = classes.get(p, {p}) | classes.get(q, {q})
            for index in merged:
                classes[index] = merged
    return classes


def contract_deltas(factors: Iterable[Factor], output: tuple[str, ...]) -> tuple[Factor, ...]:
    """``Σ_q δ(p,q) F[..q..] = F[..p..]``: a delta on a summed index renames it away.

    ``δ(p,p)`` is 1 where ``p`` is free or another factor holds it, and is dropped; with
    ``p`` summed and held by no other factor it is ``Σ_p δ(p,p) = dim(p)`` and stays, so that
    the sum keeps its size (a delta between two such summed indices contracts to one). The
    deltas left tie two output indices, written in output order.
    """
    factors = list(factors)
    free = set(output)
    changed = True
    while changed:
        changed = False
        for n, f in enumerate(factors):
            if not f.is_delta:
                continue
            p, q = f.indices
            rest = factors[:n] + factors[n + 1:]
            held = any(p in g.indices for g in rest)
            if p == q:
                if p in free or held:
                    factors, changed = rest, True
                    break
                continue
            if q in free and p in free:
                continue
            old, new = (q, p) if q not in free else (p, q)
            factors = [g.renamed({old: new}) if old in g.indices else g for g in rest]
            if new not in free and not any(new in g.indices for g in factors):
                factors.append(Factor(DELTA, (new, new)))  # Σ_{p,q} δ(p,q) = Σ_p δ(p,p)
            changed = True
            break
    position = {o: n for n, o in enumerate(output)}
    return tuple(Factor(DELTA, tuple(sorted(f.indices, key=lambda i: position.get(i, -1))))
                 if f.is_delta else f for f in factors)


# -- canonical form ------------------------------------------------------------------------


def canonical_summed(factors: Iterable[Factor], output: tuple[str, ...]) -> tuple[Factor, ...]:
    """Summed indices named by first appearance with the first canonical names not kept."""
    factors = tuple(factors)
    fresh = Fresh(output)
    mapping = {i: fresh.take() for i in dict.fromkeys(i for f in factors for i in f.indices)
               if i not in output}
    return tuple(f.renamed(mapping) for f in factors)


def like_key(factors: tuple[Factor, ...], output: tuple[str, ...]) -> tuple:
    """A key equal for products equal up to the order of factors and the names of summed
    indices: the least spelling over the orders of factors that look alike (same name, same
    output indices at the same axes), the factors sorted by that look. Within
    :data:`KEY_BUDGET`; beyond it, alike factors keep their given order, so some like terms
    written in other orders stay apart (correct, less canonical)."""
    position = {o: n for n, o in enumerate(output)}

    looks = sorted(((f.name, tuple((0, position[i]) if i in position else (1, 0) for i in f.indices)), n)
                   for n, f in enumerate(factors))  # unchanged by renaming summed indices
    ties = [[factors[n] for _, n in g] for _, g in itertools.groupby(looks, key=lambda x: x[0])]
    spellings = len(factors)
    for group in ties:
        for n in range(2, len(group) + 1):
            spellings *= n
            if spellings > KEY_BUDGET:
                break
    if spellings > KEY_BUDGET:
        arrangements = [tuple(ties)]
    else:
        arrangements = itertools.product(*(itertools.permutations(g) for g in ties))
    best = None
    for arrangement in arrangements:
        seen: dict[str, int] = {}
        key = tuple((f.name, tuple((0, position[i]) if i in position else (1, seen.setdefault(i, len(seen)))
                                   for i in f.indices))
                    for group in arrangement for f in group)
        best = key if best is None or key < best else best
    return best


def merge_like_terms(output: tuple[str, ...], terms: Iterable[Term]) -> tuple[dict[tuple, Term], list[tuple]]:
    """Each term with its deltas contracted and summed indices renamed canonically, merged by
    :func:`like_key` (zeros kept), and the key of each given term (explanations say which
    terms merged): ``c₁ P + c₂ P = (c₁ + c₂) P``."""
    merged: dict[tuple, Term] = {}
    keys = []
    for term in terms:
        factors = canonical_summed(contract_deltas(term.factors, output), output)
        key = like_key(factors, output)
        if key in merged:
            merged[key] = Term(merged[key].coefficient + term.coefficient, merged[key].factors)
        else:
            merged[key] = Term(term.coefficient, factors)
        keys.append(key)
    return merged, keys


def simplify(output: tuple[str, ...], terms: Iterable[Term]) -> tuple[Term, ...]:
    """Deltas contracted, summed indices renamed canonically, like terms merged, zeros dropped."""
    return tuple(t for t in merge_like_terms(output, terms)[0].values() if t.coefficient != 0)


# -- coefficients --------------------------------------------------------------------------


def decimal(value: Fraction) -> str:
    """A terminating decimal, exactly (coefficients are sums and products of decimals)."""
    if value.denominator == 1:
        return str(value.numerator)
    digits = _places(value)
    scaled = abs(value.numerator) * 10 ** digits // value.denominator
    text = str(scaled).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + (text[:-digits] + "." + text[-digits:]).rstrip("0")


def _places(value: Fraction) -> int:
    """Digits after the decimal point of a terminating decimal (denominator ``2^a 5^b``)."""
    denominator = value.denominator
    twos = (denominator & -denominator).bit_length() - 1
    denominator >>= twos
    fives = 0
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    assert denominator == 1, "coefficients are sums and products of decimals"
    return max(twos, fives)

