"""Derived gradients simplified as a person simplifies them: inline, cancel, merge, fold back.

Reverse mode writes one cotangent per step, which is right but not what a person writes: for
``P[b,j] = E[b,j] / S[b]; L = -y[b,j] * log(P[b,j])`` it chains ``dP = -y / P``, ``dt = dP * E``,
``dS = -dt / S^2``, ``dE = dP * t + dS``, ``dz = dE * E``. Here each cotangent is expanded into
a sum of monomials, products of atoms with rational powers (:class:`Monomial`), the cotangents
it reads and the forward's products, quotients and powers of named values written in
(``P = E S⁻¹``); equal atoms cancel (``E⁻¹ E = 1``), like terms merge, and the forward's names
are folded back (``E S⁻¹ = P``): ``dz[b,j] = P[b,j] * sum[k](y[b,k]) - y[b,j]``. A sum the forward
computed (``t2 = 1 - s``) is an atom where the derivative rule writes it again, and written
out where that shortens the result (``dz = s - y`` for a sigmoid's binary cross-entropy). The
exact identities of sign, step and exp rewrite the monomials too (:mod:`einsgrad.function_identities`:
``2 |t| sign(t)`` is ``2 t``, ``exp(x)^-0.5`` is ``exp(-0.5 * x)``).

A statement takes its simplified form only where that is smaller than it and the cotangents it
reads together (:func:`size`) and something cancelled or nothing factored is lost (see
:func:`cancelled`), so a chain that does not cancel, as through a tanh layer, stays as reverse
mode wrote it. ``x⁻¹ x = 1`` and ``x^a x^b = x^(a+b)`` hold wherever the chained form
is defined. A statement that expands past :data:`MAX_MONOMIALS` is left as it was.

A Hessian (the Jacobian of a gradient program, its cotangents carrying deltas) is simplified
the same way: each delta is contracted or ties two output indices, read as one elsewhere
(:func:`monomials.contracted`: ``δ(j,i) t[j]^-1.5 t[j]`` is ``δ(i,j) t[i]^-0.5``), and the
products over the same deltas are written as their common factor times a sum
(:func:`common_factors.common_factored`), so that ``q[i] * tanh(x[i])^3`` has the one diagonal ``6 q t (1 -
t²) (1 - 2 t²) δ``, not two. Pure: no numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

from .algebra import Delta, Factor, Term
from .common_factors import common_factored
from .expressions import Call, Group, Power, Scoped, Statement, free, group, reads, term_free
from .function_identities import (Value, called, exponentials_joined, function_of, identified, step_of,
                                 value)
from .monomials import Atom, Monomial, contracted, lost, merged, opposite, over, raised, written
from .program_steps import POWER, Contraction, Elementwise

MAX_MONOMIALS = 64
"""The most monomials one statement's expansion may reach; beyond, it is left as it was."""

MAX_SUMS = 4
"""The most forward sums whose every choice to write out is tried on one statement."""


class _Unsimplified(Exception):
    """A statement this module leaves as it was (a delta, a lost sum, too many terms)."""


def _product(left: list[Monomial], right: list[Monomial]) -> list[Monomial]:
    if len(left) * len(right) > MAX_MONOMIALS:  # refused before it is multiplied out
        raise _Unsimplified("too many terms")
    return [a.times(b) for a in left for b in right]


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
        self.functions: dict[str, Elementwise] = {}
        self.named = frozenset(named)
        for step in steps:
            if isinstance(step, Elementwise) and step.function != POWER:
                self.functions[step.name] = step
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
            elif isinstance(step, Contraction) and step.terms and all(
                    set(term_free(t)) <= set(step.indices) and not any(f.is_delta for f in t.factors)
                    and (not step.witnesses or set(term_free(t)) == set(step.indices)) for t in step.terms):
                monomials = _Expansion(self, {}).terms(step.terms)
            else:
                return None
        except _Unsimplified:
            return None
        return Definition(step.name, step.indices, tuple(monomials))

    def atom_of(self, function: str, argument: Factor, coefficient: Fraction) -> Atom:
        """``function(coefficient * argument)``: the forward's step where it has one, else a call."""
        return step_of(self.functions, function, argument, coefficient) or called(function, argument, coefficient)


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
        monomials = [m for t in s.terms for m in self.term(t, s.indices)]
        result = merged(monomials, s.indices)
        self.cancelled |= len(result) < len(monomials)
        if lost(result, s.indices):
            raise _Unsimplified("a sum over an index that nothing holds")
        return result

    def terms(self, terms) -> list[Monomial]:
        monomials = [m for t in terms for m in self.term(t)]
        result = merged(monomials)
        self.cancelled |= len(result) < len(monomials)
        return result

    def term(self, term: Term, output=None) -> list[Monomial]:
        """A term as monomials, its deltas contracted over ``output`` (None: in a group, where
        nothing is summed)."""
        result = [Monomial(term.coefficient, (), frozenset())]
        for f in term.factors:
            factor = self.node(f)
            self.cancelled |= any(opposite(a, b) for a in result for b in factor)
            result = _product(result, factor)
        if any(isinstance(a, Delta) for m in result for a, _ in m.powers):
            result = [contracted(m, output) for m in result]
            if any(m is None for m in result):
                raise _Unsimplified("a delta to a power")
        return [self.identities(m) for m in result]

    def identities(self, m: Monomial) -> Monomial:
        """``m`` rewritten by the exact identities of sign and step
        (:func:`function_identities.identified`: ``sign(u) |u| = u``)."""
        if not any(function_of(a, self.forward.functions) in ("sign", "step") for a, _ in m.powers):
            return m
        found = identified(m, self.value, self.forward.atom_of)
        if found is None:
            return m
        self.cancelled = True
        return found

    def value(self, atom) -> Value | None:
        """What function of what tensor ``atom`` is (:func:`function_identities.value`)."""
        def expanded(argument: Factor):
            try:
                return self.tensor(argument)
            except _Unsimplified:
                return None
        return value(atom, self.forward.functions, expanded)

    def node(self, node) -> list[Monomial]:
        if isinstance(node, Factor):
            return self.tensor(node)
        if isinstance(node, Group):
            named = self.recognized(node)
            return [raised(named)] if named is not None else self.terms(node.terms)
        if isinstance(node, Power):
            return self.power(node)
        if isinstance(node, Call):  # the forward's value where it computed this call
            v = self.value(node)
            return [raised(v and step_of(self.forward.functions, v.function, v.argument, v.coefficient) or node)]
        return [raised(node)]

    def tensor(self, f: Factor) -> list[Monomial]:
        known = self.cotangents.get(f.name)
        if known is not None:
            indices, monomials = known
            return [self.apart(m, indices, f.indices) for m in monomials]
        definition = self.forward.products.get(f.name)
        if definition is not None:
            mapping = dict(zip(definition.indices, f.indices))
            return [over(m, definition.indices).renamed(mapping) for m in definition.monomials]
        return [raised(f)]

    def apart(self, m: Monomial, indices, at) -> Monomial:
        """``m`` (over ``indices``) read at ``at``, its summed indices named apart (``#n``)."""
        mapping = dict(zip(indices, at))
        mapping.update((i, f"#{next(self.counter)}") for i in sorted(m.held) if i not in indices)
        return over(m, indices).renamed(mapping)

    def power(self, node: Power) -> list[Monomial]:
        """``(c Π a^x)^e = c^e Π a^(x e)`` for an integer ``e``, ``a^e`` for one atom; any other
        power is an atom of its own, its base as written."""
        base, e = self.node(node.base), node.exponent
        if len(base) == 1:
            (m,) = base
            if m.coefficient == 0:
                raise _Unsimplified("a power of zero")
            if e.denominator == 1:
                return [Monomial(m.coefficient ** int(e), tuple((a, x * e) for a, x in m.powers), m.held)]
            if m.coefficient == 1 and len(m.powers) == 1 and m.powers[0][1] == 1:
                return [raised(m.powers[0][0], e)]
        return [raised(node.base, e)]  # a sum the forward has is one atom already

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


# -- statements ------------------------------------------------------------------------------


def cancelled(statements, steps, named, results: int, of_temporaries=frozenset(),
              factored: bool = False) -> tuple[Statement, ...]:
    """The backward ``statements`` (cotangents, then the ``results`` results), each in its
    simplified form where that is smaller than it with the cotangents it reads, and either
    something cancelled, or it has no more terms than before and sums over no index of a
    cotangent of a step the user named (but one that is a single tensor, ``dM[b] = y[b,j]``),
    so that a named cotangent such as ``dH = (A - T) * (1 - A^2)`` stays the factor of
    ``dW = dH[b,j] * X[b,k]`` it is; the cotangents no statement reads any more dropped.
    ``named``: the forward steps the user named, which products fold back into (None: all);
    ``of_temporaries``: the cotangents of the other steps. A product or power of a temporary
    that the result reads anyway folds back too (``t2 = t1^-0.5`` read by ``sign(t2)``: the
    result's ``t1^-0.5`` is ``t2``), so that no power is computed twice; but a reciprocal
    (``a / n`` reads better than ``a * t1`` and costs the same). ``factored``: a statement of
    several products over the same deltas is written as their common factor times a sum
    (:func:`common_factors.common_factored`; a Hessian's two diagonals are one)."""
    named = frozenset(s.name for s in steps) if named is None else frozenset(named)
    forward = _Forward(steps, named)
    first = _simplified(statements, forward, results, of_temporaries, factored)
    held = {n for n in _kept(first, steps) & set(forward.products) - named
            if not _reciprocal(forward.products[n])}
    if not held:
        return first
    return _simplified(statements, _Forward(steps, named | held), results, of_temporaries, factored)


def _reciprocal(definition: Definition) -> bool:
    (m,) = definition.monomials
    return m.coefficient == 1 and len(m.powers) == 1 and m.powers[0][1] == -1


def _kept(statements, steps) -> set[str]:
    """The forward steps that ``statements`` read, themselves or through other steps."""
    needed = set(reads(t for s in statements for t in s.terms))
    for step in reversed(steps):
        if step.name in needed:
            needed.update(step.reads())
    return needed


def _simplified(statements, forward: "_Forward", results: int, of_temporaries, factored) -> tuple[Statement, ...]:
    """:func:`cancelled` with the forward's definitions read."""
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
        kept = {n for n in depends[s.name] if n not in of_temporaries and not _single(expansions[n][1])}
        plain = not any(_summed_over(r, kept) for r in (s, *(by_name[n] for n in depends[s.name])))
        folded = [_folded(m, forward) for m in shortened]
        joined = [_joined(m, forward) for m in folded]  # exp(x)^-0.5 is exp(-0.5 * x)
        textbook = joined != folded
        joined = merged(joined, s.indices) if textbook else folded
        chained = factored and not _multiplied_over_sum(s, depends[s.name])  # a Hessian's, read as one

        def written_as(monomials):
            common = common_factored(monomials, s.indices, lambda ms, out: _shortened(ms, forward, out)) \
                if chained else monomials
            return common is not monomials, _terms(common, s.indices, s)
        factored_out, terms = written_as(folded)
        if (expansion.cancelled or shortened is not monomials or factored_out or folded != shortened or textbook
                or len(shortened) <= len(s.terms) and plain
                or chained and any(_holds_delta(by_name[n]) for n in depends[s.name])):
            budget = sizes[s.name] + sum(sizes[n] for n in depends[s.name])
            small = terms is not None and size(terms) < budget
            if textbook:  # the exponentials joined where either form is small enough
                _, terms = written_as(joined)
                small = terms is not None and (small or size(terms) < budget)
            if small:
                s = Statement(s.name, s.indices, terms, s.witnesses)
        written.append(s)
    return _read_only(written, results)


def _holds_delta(statement: Statement) -> bool:
    """Whether a term of ``statement`` holds a delta (a Jacobian's cotangent, ``dt[j,p] = s *
    delta[j,p] / t1 - ...``: a dense diagonal, which the Hessian reading it need not store)."""
    return any(isinstance(f, Delta) for t in statement.terms for f in t.factors)


def _multiplied_over_sum(statement: Statement, names) -> bool:
    """Whether a term of ``statement`` multiplies a tensor of ``names`` with another over an
    index it sums (``H[k,i] = dz1[j,k] * X[j,i]``: a matrix product, ``dz1ᵀ X``, which a
    matrix form reads as a chain; factored into one product it would not)."""
    for t in statement.terms:
        for f in t.factors:
            if isinstance(f, Factor) and f.name in names:
                summed = set(f.indices) - set(statement.indices)
                if any(g is not f and summed & set(free(g)) for g in t.factors):
                    return True
    return False


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
                written = []
                for m in trial:
                    written += _written_out(m, forward.sums[name])
                    if len(written) > MAX_MONOMIALS:  # as one product past it: left as it was
                        raise _Unsimplified("too many terms")
                trial = merged(written, output)
        except _Unsimplified:
            continue
        if _length(trial) < _length(best) and not lost(trial, output):
            best = trial
    return best


def _length(monomials) -> int:
    return sum(1 + len(m.powers) for m in monomials)


def _written_out(m: Monomial, definition: Definition) -> list[Monomial]:
    """``m`` with each positive integer power of the sum ``definition`` written out."""
    result = [Monomial(m.coefficient, (), m.held)]
    for a, e in m.powers:
        if isinstance(a, Factor) and a.name == definition.name and e.denominator == 1 and e > 0:
            mapping = dict(zip(definition.indices, a.indices))
            for _ in range(int(e)):
                result = _product(result, [over(d, definition.indices).renamed(mapping)
                                           for d in definition.monomials])
        else:
            result = _product(result, [Monomial(Fraction(1), ((a, e),), frozenset())])
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


def _joined(m: Monomial, forward: _Forward) -> Monomial:
    """``m`` with the powers of exponentials of one argument joined, after the forward's names
    are folded back (:func:`function_identities.exponentials_joined`: ``exp(x)^-0.5`` is
    ``exp(-0.5 * x)``; ``exp(x) / sqrt(exp(x))`` the forward's ``sqrt(exp(x))``)."""
    if not any(function_of(a, forward.functions) in ("exp", "sqrt") for a, _ in m.powers):
        return m
    return exponentials_joined(m, _Expansion(forward, {}).value, forward.atom_of,
                               lambda a: isinstance(a, Factor)) or m


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
    """The monomials written as terms (:func:`monomials.written`); None where an index of
    ``output`` is no longer sized."""
    held = {i for m in monomials for i in m.indices()} | {i for w in statement.witnesses for i in w.indices}
    if not set(output) <= held:
        return None
    return written(monomials, output)
