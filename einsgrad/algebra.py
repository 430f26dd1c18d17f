"""The index algebra: sums of products of indexed tensors and Kronecker deltas.

Every symbolic object einsgrad handles has the form::

    Y[O] = Σ_T  c_T  Σ_{L_T \\ O}  Π_{F ∈ T}  F[L_F]

with ``O`` the output (free) indices, ``L_T`` the indices of term ``T`` (those not in ``O`` are
summed over that term) and exact rational coefficients ``c_T``. A factor is a tensor
``name[indices]`` or the Kronecker delta ``delta[p,q]``. This module holds the values
(:class:`Factor`, :class:`Delta`, :class:`Product`, :class:`Term`), the one generator of fresh
names (:class:`Fresh`) and the simplifications: delta contraction, canonical renaming of summed
indices and like-term merging. Pure: no numpy, no compiler.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, ClassVar, Iterable, Mapping, NamedTuple, Union

DELTA = "delta"
"""The name of the builtin Kronecker delta factor, ``delta[p,q]``."""

CANONICAL_LETTERS = "ijklmnopqrstuvwxyzabcdefgh"
"""Canonical index names, in order: output indices first, then summed ones."""

FRESH_INDEX_LETTERS = "pqrstuvwxyzabcdefghijklmno" + string.ascii_uppercase
"""The letters of the indices a derivation introduces (``∂L/∂W_pq``), then primed."""

PRIME = "′"
"""The mark of an index derived from another (``i′``)."""

KEY_BUDGET = 20_000
"""The most factor spellings (arrangements of alike factors times factors) one like-term key
tries; it keeps parsing and deriving polynomial in the size of a program."""


@dataclass(frozen=True)
class Factor:
    """One tensor in a product: ``name[indices]`` (no indices: a scalar tensor)."""

    name: str
    indices: tuple[str, ...] = ()
    is_delta: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.name + (f"[{','.join(self.indices)}]" if self.indices else "")

    def renamed(self, mapping: Mapping[str, str]) -> "Factor":
        indices = tuple(mapping.get(i, i) for i in self.indices)
        return self if indices == self.indices else Factor(self.name, indices)  # values: share


@dataclass(frozen=True)
class Delta:
    """The Kronecker delta ``δ(p,q)``: 1 where ``p = q``, 0 elsewhere; written ``delta[p,q]``.

    A type of its own, so that no tensor is taken for a delta by its name (an einsum operand
    may be called ``delta``); ``name`` and ``indices`` read as a :class:`Factor`'s do.
    """

    p: str
    q: str
    name: ClassVar[str] = DELTA
    is_delta: ClassVar[bool] = True

    def __str__(self) -> str:
        return f"{DELTA}[{self.p},{self.q}]"

    @property
    def indices(self) -> tuple[str, str]:
        return (self.p, self.q)

    def renamed(self, mapping: Mapping[str, str]) -> "Delta":
        p, q = mapping.get(self.p, self.p), mapping.get(self.q, self.q)
        return self if (p, q) == (self.p, self.q) else Delta(p, q)


Indexed = Union[Factor, Delta]
"""A factor of a product: a tensor or a delta."""


@dataclass(frozen=True)
class Product:
    """``Σ_over Π factors``: one product with its summed indices explicit, as a derivation
    writes it (a :class:`Term` sums the indices that are not the output's)."""

    over: tuple[str, ...]
    factors: tuple[Indexed, ...]

    def renamed(self, mapping: Mapping[str, str]) -> "Product":
        """The product with its free indices renamed at once (one pass, whatever the count)."""
        return Product(self.over, tuple(f.renamed(mapping) for f in self.factors))

    def contracted(self) -> "Product":
        """Sums deltas away: ``Σ_q δ(p,q) F[..q..] = F[..p..]``, a summed index renamed to the
        other side of its delta, as one does by hand.

        ``δ(p,p)`` is 1, and dropped, where ``p`` is free or another factor holds it; with
        ``p`` summed and held by nothing else, ``Σ_p δ(p,p) = dim(p)`` and one stays. A delta
        between two free indices survives: the product is zero off that diagonal. One pass
        over the deltas with a union-find of the renamings, linear in their number.
        """
        over = dict.fromkeys(self.over)
        renamed: dict[str, str] = {}

        def find(index: str) -> str:
            root = index
            while root in renamed:
                root = renamed[root]
            while index != root:
                parent = renamed[index]
                renamed[index] = root
                index = parent
            return root

        kept = []
        for f in self.factors:
            if f.is_delta:
                p, q = find(f.p), find(f.q)
                if p != q and (p in over or q in over):
                    old, new = (p, q) if p in over else (q, p)
                    del over[old]
                    renamed[old] = new
                    continue
            kept.append(f)
        factors = [f.renamed({i: find(i) for i in f.indices}) for f in kept]
        held = {i for f in factors if not (f.is_delta and f.p == f.q) for i in f.indices}
        diagonals = set()
        result = []
        for f in factors:
            if f.is_delta and f.p == f.q:
                if f.p not in over or f.p in held or f.p in diagonals:
                    continue
                diagonals.add(f.p)
            result.append(f)
        return Product(tuple(over), tuple(result))


@dataclass(frozen=True)
class Term:
    """``coefficient * Π factors``; no factors is the constant ``coefficient``."""

    coefficient: Fraction
    factors: tuple[Indexed, ...]

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


def primed(symbol: str, n: int) -> str:
    """``symbol`` with ``n`` primes: ``i′``, ``i′′``, ``i′′′``, then ``i⁽⁴⁾`` (text stays short
    for thousands of repeats)."""
    if n <= 3:
        return symbol + PRIME * n
    return symbol + "⁽" + str(n).translate(_SUPERSCRIPT) + "⁾"


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


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


def delta_classes(factors: Iterable[Indexed]) -> dict[str, set[str]]:
    """Index -> the set of indices that deltas tie it to (itself included)."""
    classes: dict[str, set[str]] = {}
    for f in factors:
        if f.is_delta:
            p, q = f.indices
            merged = classes.get(p, {p}) | classes.get(q, {q})
            for index in merged:
                classes[index] = merged
    return classes


def contract_deltas(factors: Iterable[Indexed], output: tuple[str, ...]) -> tuple[Indexed, ...]:
    """The factors of a term (every index not in ``output`` summed) with their deltas
    contracted by :meth:`Product.contracted`; a summed index that no factor holds any more is
    ``δ(p,p)``, so that the term keeps its size (``Σ_{p,q} δ(p,q) = dim(p)``). The deltas
    left tie two output indices, written in output order."""
    factors = tuple(factors)
    free = set(output)
    summed = tuple(dict.fromkeys(i for f in factors for i in f.indices if i not in free))
    product = Product(summed, factors).contracted()
    held = {i for f in product.factors for i in f.indices}
    position = {o: n for n, o in enumerate(output)}
    return tuple(Delta(*sorted(f.indices, key=lambda i: position.get(i, -1))) if f.is_delta else f
                 for f in product.factors) + tuple(Delta(p, p) for p in product.over if p not in held)


class Tensors(NamedTuple):
    """A term as one einsum: its tensors, and its output with tied indices repeated."""

    tensors: tuple[Factor, ...]
    output: tuple[str, ...]


def without_deltas(term: Term, output: tuple[str, ...]) -> Tensors:
    """``Π F · Π δ`` as tensors alone: every index of a delta class renamed to one of the
    class (an output index where it has one), so that a delta left between two output indices
    is that index repeated in the output (``Y[i,j] = x[i] * delta[i,j]`` is ``i->ii``). The
    one mapping of a term to an einsum; its letters are the caller's."""
    position = {o: n for n, o in enumerate(output)}
    representative = {i: min(group, key=lambda j: position.get(j, len(output)))
                      for i, group in delta_classes(term.factors).items()}
    return Tensors(tuple(f.renamed(representative) for f in term.factors if not f.is_delta),
                   tuple(representative.get(o, o) for o in output))


# -- canonical form ------------------------------------------------------------------------


def canonical_summed(factors: Iterable[Indexed], output: tuple[str, ...]) -> tuple[Indexed, ...]:
    """Summed indices named by first appearance with the first canonical names not kept."""
    factors = tuple(factors)
    fresh = Fresh(output)
    mapping = {i: fresh.take() for i in dict.fromkeys(i for f in factors for i in f.indices)
               if i not in output}
    return tuple(f.renamed(mapping) for f in factors)


def like_key(factors: tuple[Indexed, ...], output: tuple[str, ...]) -> tuple:
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
    """A terminating decimal, exactly; a number with no such decimal (``1/3``, from a division
    in a program) as ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    if not terminating(value):
        return f"{value.numerator}/{value.denominator}"
    digits = _places(value)
    scaled = abs(value.numerator) * 10 ** digits // value.denominator
    text = str(scaled).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + (text[:-digits] + "." + text[-digits:]).rstrip("0")


def terminating(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal expansion (its denominator is ``2^a 5^b``)."""
    denominator = value.denominator
    denominator >>= (denominator & -denominator).bit_length() - 1
    while denominator % 5 == 0:
        denominator //= 5
    return denominator == 1


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

