"""Derived gradients simplified as a person simplifies them: inline, cancel, merge, fold back.

Reverse mode writes one cotangent per step, which is right but not what a person writes: for
``P[b,j] = E[b,j] / S[b]; L = -y[b,j] * log(P[b,j])`` it chains ``dP = -y / P``, ``dt = dP * E``,
``dS = -dt / S^2``, ``dE = dP * t + dS``, ``dz = dE * E``. Here each cotangent is expanded into
a sum of monomials, products of atoms with rational powers (:class:`Monomial`), the cotangents
it reads and the forward's products, quotients and powers of named values written in
(``P = E S⁻¹``); equal atoms cancel (``E⁻¹ E = 1``), like terms merge, and the forward's names
are folded back (``E S⁻¹ = P``): ``dz[b,j] = P[b,j] * y[b,k] - y[b,j]``. A sum the forward
computed (``t2 = 1 - s``) is an atom where the derivative rule writes it again, and written
out where that shortens the result (``dz = s - y`` for a sigmoid's binary cross-entropy).

A statement takes its simplified form only where that is smaller than it and the cotangents it
reads together (:func:`size`), so a chain that does not cancel, as through a tanh layer, stays
as reverse mode wrote it. ``x⁻¹ x = 1`` and ``x^a x^b = x^(a+b)`` hold wherever the chained form
is defined. A statement whose terms hold a delta, or that expands past :data:`MAX_MONOMIALS`,
is left as it was. Pure: no numpy.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Union

from .algebra import Delta, Factor, Term, like_key
from .expressions import (Call, Group, Power, Scoped, Statement, free, group, node_text, reads, rebuilt,
                          renamed, term_free)
from .program_steps import POWER, Contraction, Elementwise

MAX_MONOMIALS = 64
"""The most monomials one statement's expansion may reach; beyond, it is left as it was."""

MAX_SUMS = 4
"""The most forward sums whose every choice to write out is tried on one statement."""

Atom = Union[Factor, Group, Call, Scoped]
"""What a monomial is a product of powers of: a tensor, a sum that does not expand (the base of
a power), a function's value or a scoped sum."""


class _Unsimplified(Exception):
    """A statement this module leaves as it was (a delta, a lost sum, too many terms)."""


@dataclass(frozen=True)
class Monomial:
    """``coefficient * Π atom^exponent``; ``held``: every index its factors held before any
    cancelled, so that a sum left over an index that nothing holds any more (it would lose its
    count) is seen."""

    coefficient: Fraction
    powers: tuple[tuple[Atom, Fraction], ...]
    held: frozenset[str]

    def times(self, other: "Monomial") -> "Monomial":
        powers = dict(self.powers)
        for atom, e in other.powers:
            powers[atom] = powers.get(atom, Fraction(0)) + e
        return Monomial(self.coefficient * other.coefficient,
                        tuple((a, e) for a, e in powers.items() if e != 0), self.held | other.held)

    def renamed(self, mapping: Mapping[str, str]) -> "Monomial":
        return Monomial(self.coefficient, tuple((_renamed_atom(a, mapping), e) for a, e in self.powers),
                        frozenset(mapping.get(i, i) for i in self.held))

    def indices(self) -> set[str]:
        return {i for a, _ in self.powers for i in free(a)}


ONE = Monomial(Fraction(1), (), frozenset())


def _renamed_atom(atom: Atom, mapping) -> Atom:
    return renamed(Term(Fraction(1), (atom,)), mapping).factors[0]


def _atom(node: Atom, exponent: Fraction = Fraction(1)) -> Monomial:
    return Monomial(Fraction(1), ((node, exponent),), frozenset(free(node)))


def _over(m: Monomial, indices) -> Monomial:
    """``m`` as the value of a tensor over ``indices``, which it holds even where it is
    constant along some (a broadcast ``dS0[j] = q``): a sum over one still counts it."""
    return Monomial(m.coefficient, m.powers, m.held | frozenset(indices))


def _lost(monomials, output) -> bool:
    """Whether a monomial is left with a sum over an index that none of its atoms holds."""
    return any((m.held - m.indices()) - set(output) for m in monomials)


def _opposite(a: Monomial, b: Monomial) -> bool:
    """Whether some atom has powers of opposite signs in ``a`` and ``b`` (they cancel)."""
    powers = dict(a.powers)
    return any(powers.get(atom, 0) * e < 0 for atom, e in b.powers)


def _product(left: list[Monomial], right: list[Monomial]) -> list[Monomial]:
    result = [a.times(b) for a in left for b in right]
    if len(result) > MAX_MONOMIALS:
        raise _Unsimplified("too many terms")
    return result


# -- the forward's definitions -------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """A forward step ``name[indices] = Σ monomials`` over atoms, nothing summed."""

    name: str
    indices: tuple[str, ...]
    monomials: tuple[Monomial, ...]


class _Forward:
    """The forward's steps as the expansion reads them: products, quotients and powers of
    named values (written in as monomials), elementwise sums (atoms, recognized where a rule
    writes them again), and the names the user gave."""

    def __init__(self, steps, named):
        self.products: dict[str, Definition] = {}
        self.sums: dict[str, Definition] = {}
        self.named = frozenset(named)
        for step in steps:
            definition = self._definition(step)
            if definition is None or not definition.monomials:
                continue
            target = self.products if len(definition.monomials) == 1 else self.sums
            target[step.name] = definition

    def _definition(self, step) -> Definition | None:
        try:
            if isinstance(step, Elementwise):
                if step.function != POWER:
                    return None
                base = group([Term(Fraction(1), (step.argument,))])
                monomials = _Expansion(self, {}).node(Power(base, step.exponent))
            elif isinstance(step, Contraction) and step.terms and not step.witnesses and all(
                    set(term_free(t)) <= set(step.indices) for t in step.terms):
                monomials = _Expansion(self, {}).terms(step.terms)
            else:
                return None
        except _Unsimplified:
            return None
        return Definition(step.name, step.indices, tuple(monomials))


# -- expansion -------------------------------------------------------------------------------


class _Expansion:
    """Terms as monomials over atoms, the cotangents already expanded (``cotangents``: name ->
    its indices and monomials) and the forward's products written in, sums recognized."""

    def __init__(self, forward: _Forward, cotangents: Mapping[str, tuple[tuple[str, ...], tuple[Monomial, ...]]]):
        self.forward = forward
        self.cotangents = cotangents
        self.counter = itertools.count()
        self.cancelled = False
        """Whether an atom met its inverse (``E⁻¹ E``) or like terms merged."""

    def statement(self, s: Statement) -> list[Monomial]:
        """The statement's terms as monomials, like terms merged; a sum that would be left over
        an index nothing holds any more is refused."""
        monomials = [m for t in s.terms for m in self.term(t)]
        merged = _merged(monomials, s.indices)
        self.cancelled |= len(merged) < len(monomials)
        if _lost(merged, s.indices):
            raise _Unsimplified("a sum over an index that nothing holds")
        return merged

    def terms(self, terms) -> list[Monomial]:
        monomials = [m for t in terms for m in self.term(t)]
        merged = _merged(monomials)
        self.cancelled |= len(merged) < len(monomials)
        return merged

    def term(self, term: Term) -> list[Monomial]:
        result = [Monomial(term.coefficient, (), frozenset())]
        for f in term.factors:
            factor = self.node(f)
            self.cancelled |= any(_opposite(a, b) for a in result for b in factor)
            result = _product(result, factor)
        return result

    def node(self, node) -> list[Monomial]:
        if isinstance(node, Delta):
            raise _Unsimplified("a delta")
        if isinstance(node, Factor):
            return self.tensor(node)
        if isinstance(node, Group):
            named = self.recognized(node)
            return [_atom(named)] if named is not None else self.terms(node.terms)
        if isinstance(node, Power):
            return self.power(node)
        return [_atom(node)]

    def tensor(self, f: Factor) -> list[Monomial]:
        known = self.cotangents.get(f.name)
        if known is not None:
            indices, monomials = known
            return [self.apart(m, indices, f.indices) for m in monomials]
        definition = self.forward.products.get(f.name)
        if definition is not None:
            mapping = dict(zip(definition.indices, f.indices))
            return [_over(m, definition.indices).renamed(mapping) for m in definition.monomials]
        return [_atom(f)]

    def apart(self, m: Monomial, indices, at) -> Monomial:
        """``m`` (over ``indices``) read at ``at``, its summed indices named apart (``#n``)."""
        mapping = dict(zip(indices, at))
        mapping.update((i, f"#{next(self.counter)}") for i in sorted(m.held) if i not in indices)
        return _over(m, indices).renamed(mapping)

    def power(self, node: Power) -> list[Monomial]:
        """``(c Π a^x)^e = c^e Π a^(x e)`` for an integer ``e``, ``a^e`` for one atom; any other
        power is an atom of its own, its base as written (or the forward's sum it is)."""
        base, e = self.node(node.base), node.exponent
        if len(base) == 1:
            (m,) = base
            if m.coefficient == 0:
                raise _Unsimplified("a power of zero")
            if e.denominator == 1:
                return [Monomial(m.coefficient ** int(e), tuple((a, x * e) for a, x in m.powers), m.held)]
            if m.coefficient == 1 and len(m.powers) == 1 and m.powers[0][1] == 1:
                return [_atom(m.powers[0][0], e)]
        named = self.recognized(node.base)
        return [_atom(named if named is not None else node.base, e)]

    def recognized(self, node: Group) -> Factor | None:
        """The forward's sum that ``node`` is, indexed as there (``(1 - s[i])`` is ``t2[i]``)."""
        if not self.forward.sums:
            return None
        flag = self.cancelled
        try:
            mine = _canonical(self.terms(node.terms))
        except _Unsimplified:
            return None
        finally:
            self.cancelled = flag
        indices = free(node)
        for d in self.forward.sums.values():
            if len(d.indices) != len(indices) or len(indices) > 4:
                continue
            for at in itertools.permutations(indices):
                mapping = dict(zip(d.indices, at))
                if _canonical([m.renamed(mapping) for m in d.monomials]) == mine:
                    return Factor(d.name, at)
        return None


def _canonical(monomials) -> frozenset:
    return frozenset((m.coefficient, frozenset(m.powers)) for m in monomials)


def _key(m: Monomial, output) -> tuple:
    """Equal for monomials equal up to the order of atoms and the names of summed indices."""
    pseudo = []
    for atom, e in m.powers:
        indices = free(atom)
        if isinstance(atom, Factor):
            name, indices = atom.name, atom.indices
        else:
            name = node_text(_renamed_atom(atom, {i: f"#{n}" for n, i in enumerate(indices)}))
        pseudo.append(Factor(f"{name}^{e}", indices))
    return like_key(tuple(pseudo), tuple(output))


def _merged(monomials, output=()) -> list[Monomial]:
    """Like terms merged (the first one's spelling kept), zeros dropped. Within a group every
    index is free, so the key needs no output there; a statement's names its own."""
    merged: dict[tuple, Monomial] = {}
    for m in monomials:
        k = _key(m, output or tuple(sorted(m.indices() | m.held)))
        if k in merged:
            old = merged[k]
            merged[k] = Monomial(old.coefficient + m.coefficient, old.powers, old.held | m.held)
        else:
            merged[k] = m
    return [m for m in merged.values() if m.coefficient != 0]


# -- statements ------------------------------------------------------------------------------


def cancelled(statements, steps, named, results: int, of_temporaries=frozenset()) -> tuple[Statement, ...]:
    """The backward ``statements`` (cotangents, then the ``results`` results), each in its
    simplified form where that is smaller than it with the cotangents it reads, and either
    something cancelled, or it has no more terms than before and sums over no index of a
    cotangent of a step the user named (but one that is a single tensor, ``dM[b] = y[b,j]``),
    so that a named cotangent such as ``dH = (A - T) * (1 - A^2)`` stays the factor of
    ``dW = dH[b,j] * X[b,k]`` it is; the cotangents no statement reads any more dropped. ``named``: the forward steps the user named, which products fold
    back into (None: all); ``of_temporaries``: the cotangents of the other steps."""
    forward = _Forward(steps, {s.name for s in steps} if named is None else named)
    expansions: dict[str, tuple[tuple[str, ...], tuple[Monomial, ...]]] = {}
    sizes: dict[str, int] = {}
    depends: dict[str, set[str]] = {}
    written = []
    by_name = {s.name: s for s in statements}
    for s in statements:
        sizes[s.name] = size(s.terms)
        read = {n for n in reads(s.terms) if n in expansions}
        depends[s.name] = read.union(*(depends[n] for n in read))
        expansion = _Expansion(forward, expansions)
        try:
            monomials = expansion.statement(s)
        except _Unsimplified:
            written.append(s)
            continue
        shortened = _shortened(monomials, forward, s.indices)
        expansions[s.name] = (s.indices, tuple(shortened))  # its readers see it as it is written
        terms = _terms([_folded(m, forward) for m in shortened], s.indices, s)
        before = sizes[s.name] + sum(sizes[n] for n in depends[s.name])
        kept = {n for n in depends[s.name] if n not in of_temporaries and not _single(expansions[n][1])}
        plain = not any(_summed_over(statement, kept) for statement in (s, *(by_name[n] for n in depends[s.name])))
        if (terms is not None and size(terms) < before
                and (expansion.cancelled or shortened is not monomials or len(terms) <= len(s.terms) and plain)):
            s = Statement(s.name, s.indices, terms, s.witnesses)
        written.append(s)
    return _read_only(written, results)


def _summed_over(statement: Statement, names) -> bool:
    """Whether ``statement`` sums over an index of a tensor of ``names`` (``dW = dH[b,j] *
    X[b,k]``: the gradient is a product with ``dH``, which stays its factor)."""
    return any(isinstance(f, Factor) and f.name in names and set(f.indices) - set(statement.indices)
               for t in statement.terms for f in t.factors)


def _single(monomials) -> bool:
    """Whether a cotangent is one tensor (summed, perhaps), times a number."""
    return len(monomials) == 1 and len(monomials[0].powers) == 1 and monomials[0].powers[0][1] == 1


def size(terms) -> int:
    """How much there is to read: a term and each tensor in it count one, a function one more
    than its argument."""
    return sum(1 + sum(_node_size(f) for f in t.factors) for t in terms)


def _node_size(node) -> int:
    if isinstance(node, (Factor, Delta)):
        return 1
    if isinstance(node, (Call, Scoped)):
        return 1 + size((node.argument if isinstance(node, Call) else node.body).terms)
    return size((node.base if isinstance(node, Power) else node).terms)


def _read_only(statements, results: int) -> tuple[Statement, ...]:
    """The statements, less the cotangents that no later one reads (the results stay)."""
    kept, needed = [], set()
    for n, s in enumerate(reversed(statements)):
        if n < results or s.name in needed:
            kept.append(s)
            needed.update(reads(s.terms))
            needed.update(w.name for w in s.witnesses)
    return tuple(reversed(kept))


def _shortened(monomials, forward: _Forward, output) -> list[Monomial]:
    """The monomials with forward sums written out (``t2 = 1 - s``) where that leaves fewer of
    them to read, the shortest choice of which (each subset of up to :data:`MAX_SUMS` sums;
    beyond, each alone or all); the same list where none is shorter."""
    names = tuple(dict.fromkeys(a.name for m in monomials for a, e in m.powers if isinstance(a, Factor)
                                and a.name in forward.sums and e.denominator == 1 and e > 0))
    if len(names) <= MAX_SUMS:
        choices = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    else:
        choices = [(n,) for n in names] + [names]
    best = monomials
    for choice in choices:
        trial = monomials
        try:
            for name in choice:
                trial = _merged([x for m in trial for x in _written_out(m, forward.sums[name])], output)
        except _Unsimplified:
            continue
        if _length(trial) < _length(best) and not _lost(trial, output):
            best = trial
    return best


def _length(monomials) -> int:
    return sum(1 + len(m.powers) for m in monomials)


def _written_out(m: Monomial, definition: Definition) -> list[Monomial]:
    """``m`` with each positive integer power of the sum ``definition`` written out."""
    result = [Monomial(m.coefficient, (), m.held)]
    for atom, e in m.powers:
        if isinstance(atom, Factor) and atom.name == definition.name and e.denominator == 1 and e > 0:
            mapping = dict(zip(definition.indices, atom.indices))
            for _ in range(int(e)):
                result = _product(result, [_over(d, definition.indices).renamed(mapping)
                                           for d in definition.monomials])
        else:
            result = _product(result, [Monomial(Fraction(1), ((atom, e),), frozenset())])
    return result


def _folded(m: Monomial, forward: _Forward) -> Monomial:
    """``m`` with the forward's named products written as their names (``E S⁻¹ = P``), the
    largest first, each as often as it divides ``m`` (negative powers too: ``E⁻¹ S = P⁻¹``)."""
    definitions = sorted((d for name, d in forward.products.items() if name in forward.named),
                         key=lambda d: -len(d.monomials[0].powers))
    for d in definitions:
        while True:
            found = _divided(m, d)
            if found is None:
                break
            m = found
    return m


def _divided(m: Monomial, d: Definition) -> Monomial | None:
    """``m`` as ``d[K]^n`` times the rest, for the first match ``K`` and the largest ``|n|``."""
    (dm,) = d.monomials
    if (not dm.powers or not all(isinstance(a, Factor) for a, _ in dm.powers)
            or not set(d.indices) <= {i for a, _ in dm.powers for i in a.indices} or dm.coefficient == 0):
        return None
    exponents = dict(m.powers)
    for mapping in _matches(dm.powers, m.powers, {}):
        ratios = [exponents[a.renamed(mapping)] / e for a, e in dm.powers]
        if not all(r > 0 for r in ratios) and not all(r < 0 for r in ratios):
            continue
        n = min(int(abs(r)) for r in ratios) * (1 if ratios[0] > 0 else -1)
        if n == 0:
            continue
        name = Factor(d.name, tuple(mapping[i] for i in d.indices))
        rest = Monomial(Fraction(1) / dm.coefficient ** n,
                        tuple((a.renamed(mapping), -e * n) for a, e in dm.powers), frozenset())
        return Monomial(Fraction(1), ((name, Fraction(n)),), frozenset()).times(m.times(rest))
    return None


def _matches(wanted, powers, mapping):
    """Each renaming of the definition's indices under which its atoms are atoms of ``powers``."""
    if not wanted:
        yield mapping
        return
    (a, _), rest = wanted[0], wanted[1:]
    for b, _ in powers:
        if not isinstance(b, Factor) or b.name != a.name or len(b.indices) != len(a.indices):
            continue
        extended = dict(mapping)
        if all(extended.setdefault(i, j) == j for i, j in zip(a.indices, b.indices)):
            yield from _matches(rest, powers, extended)


def _terms(monomials, output, statement: Statement) -> tuple[Term, ...] | None:
    """The monomials as terms that print as a person writes them: the positive ones first, in
    each the factors over more of the output first and the divisors last, summed indices named
    by letters after the output's; None where an index of ``output`` is no longer sized."""
    held = {i for m in monomials for i in m.indices()} | {i for w in statement.witnesses for i in w.indices}
    if not set(output) <= held:
        return None
    ordered = [m for m in monomials if m.coefficient > 0] + [m for m in monomials if m.coefficient < 0]
    return tuple(_scoped(_named(_term(m, output), output), output) for m in ordered)


def _term(m: Monomial, output) -> Term:
    kept = set(output)
    order = sorted(range(len(m.powers)), key=lambda n: (m.powers[n][1] < 0, -len(kept & set(free(m.powers[n][0]))), n))
    factors = []
    for n in order:
        atom, e = m.powers[n]
        if e == 1:
            factors.append(atom)
        else:
            factors.append(Power(atom if isinstance(atom, Group) else group([Term(Fraction(1), (atom,))]), e))
    return Term(m.coefficient, tuple(factors))


def _scoped(term: Term, output) -> Term:
    """``term`` with each sum that only some of its factors hold written around those
    factors: ``P[b,j] * y[b,k]`` is ``P[b,j] * sum[k](y[b,k])``, the factor ``Σy`` a person
    writes. A sum over all the factors stays implicit, as in a contraction."""
    summed = [i for i in term_free(term) if i not in output]
    factors = list(term.factors)
    while summed:
        index = summed[0]
        holders, over = set(), {index}
        while True:  # the factors joined to those by the sums they share
            grown = {n for n, f in enumerate(factors) if over & set(free(f))}
            if grown == holders:
                break
            holders = grown
            over = {i for n in holders for i in free(factors[n]) if i in summed}
        summed = [i for i in summed if i not in over]
        if len(holders) == len(factors):
            continue
        inner = [factors[n] for n in sorted(holders)]
        node = Scoped(tuple(i for i in term_free(Term(Fraction(1), tuple(inner))) if i in over),
                      group([Term(Fraction(1), tuple(inner))]))
        first = min(holders)
        factors = [node if n == first else f for n, f in enumerate(factors) if n == first or n not in holders]
    return Term(term.coefficient, tuple(factors))


def _named(term: Term, output) -> Term:
    """``term`` with its summed indices named apart (``#n``) given letters: those after the
    last letter of the output, then the others, skipping every index the term holds."""
    apart = [i for i in term_free(term) if i.startswith("#")]
    if not apart:
        return term
    taken = _every_index(term) | set(output)
    letters = [i for i in output if len(i) == 1 and i in string.ascii_lowercase]
    start = string.ascii_lowercase.index(max(letters)) + 1 if letters else string.ascii_lowercase.index("i")
    pool = (c for c in string.ascii_lowercase[start:] + string.ascii_lowercase[:start] if c not in taken)
    mapping = {}
    for i in apart:
        mapping[i] = next(pool, None) or i.replace("#", "s")
    return renamed(term, mapping)


def _every_index(term: Term) -> set[str]:
    """Every index name in ``term``, the bound ones of scoped sums too."""
    found: set[str] = set()

    def visit(t: Term) -> Term:
        for f in t.factors:
            if isinstance(f, (Factor, Delta)):
                found.update(f.indices)
            else:
                found.update(getattr(f, "over", ()))
                rebuilt(f, visit)
        return t
    visit(term)
    return found
