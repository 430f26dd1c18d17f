"""Exact identities between elementwise functions of one argument, applied to monomials.

A derived gradient holds the derivative rules' functions next to the forward's values: the
derivative of ``|t|^2`` is ``2 |t| sign(t)``, which a person writes ``2 t``; the derivative of
``1 / sqrt(exp(x))`` is ``-0.5 exp(x) / sqrt(exp(x))^3``, which a person writes ``-0.5 exp(-0.5 x)``.
Here a monomial (:mod:`einsgrad.monomials`) is rewritten by identities that hold at every real
argument, and bit for bit where they are products of ``±1``, ``0`` and ``u``:

- ``sign(u) |u| = u`` and ``sign(u) u = |u|`` (both 0 at ``u = 0``), ``sign(u)^n = sign(u)^(n-2)``
  for ``n >= 3``; ``sign(u)^2`` stays, being 0 at 0, not 1;
- ``step(u) relu(u) = relu(u)``, ``step(u) u = relu(u)`` (``step`` is 0 at 0) and ``step(u)^n =
  step(u)`` for ``n >= 1`` (its values are 0 and 1);
- ``exp(a u)^p exp(b u)^q = exp((a p + b q) u)`` and ``sqrt(exp(a u)) = exp(a u / 2)``, exact for
  real arguments: a power of an exponential that is no integer is one exponential
  (``exp(x)^-0.5`` is ``exp(-0.5 * x)``), and a product of several of one argument is the one the
  forward computed where it is that or its reciprocal (``exp(x) / sqrt(exp(x))`` is the forward's
  ``sqrt(exp(x))``); other integer powers of the forward's values stay (``exp(x)^2``).

``exp(log(u))`` is ``u`` only for ``u > 0`` (it is nan below) and is never rewritten;
``log(exp(u)) = u`` needs no rule here (the chain rule's ``exp(u) / exp(u)`` cancels). The caller
says what an atom is a function of (:class:`Value`) and which atom is a function's value (a step
the forward computed, else a call). Pure: no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping, Optional

from .algebra import Factor, Term
from .expressions import Call, group
from .monomials import Atom, Monomial
from .program_steps import Elementwise


@dataclass(frozen=True)
class Value:
    """An atom as ``function(coefficient * argument)``: ``argument`` a tensor, ``monomial``
    the argument's value (the coefficient in it) as the expansion reads that tensor."""

    function: str
    argument: Factor
    coefficient: Fraction
    monomial: Monomial

    @property
    def key(self) -> frozenset:
        """Equal for atoms of the same argument up to its coefficient."""
        return frozenset(self.monomial.powers)


ValueOf = Callable[[Atom], Optional[Value]]
"""What an atom is a function of, or None."""

AtomOf = Callable[[str, Factor, Fraction], Atom]
"""The atom of ``function(coefficient * argument)``: the forward's step where it has one."""


def function_of(atom: Atom, functions: Mapping[str, Elementwise]) -> str | None:
    """The function whose value ``atom`` is (a call's, or a step's of ``functions``), or None:
    what is asked before the argument is expanded."""
    if isinstance(atom, Call):
        return atom.function
    if isinstance(atom, Factor) and atom.name in functions:
        return functions[atom.name].function
    return None


def value(atom: Atom, functions: Mapping[str, Elementwise],
          expanded: Callable[[Factor], Optional[list]]) -> Value | None:
    """What function of what tensor ``atom`` is: a call of one tensor times a number, or a step
    of ``functions`` (the forward's, by name); None otherwise, or where ``expanded`` (a tensor
    as the monomials it is) gives the argument as no single monomial."""
    if isinstance(atom, Call):
        terms = atom.argument.terms
        if len(terms) != 1 or len(terms[0].factors) != 1 or not isinstance(terms[0].factors[0], Factor):
            return None
        function, argument, c = atom.function, terms[0].factors[0], terms[0].coefficient
    elif isinstance(atom, Factor) and atom.name in functions:
        step = functions[atom.name]
        function, c = step.function, Fraction(1)
        argument = step.argument.renamed(dict(zip(step.indices, atom.indices)))
    else:
        return None
    monomials = expanded(argument)
    if c == 0 or monomials is None or len(monomials) != 1:
        return None
    (u,) = monomials
    return Value(function, argument, c, Monomial(c * u.coefficient, u.powers, frozenset()))


def step_of(functions: Mapping[str, Elementwise], function: str, argument: Factor,
            coefficient: Fraction) -> Factor | None:
    """The step of ``functions`` that computes ``function(coefficient * argument)``, indexed as
    ``argument``, or None."""
    for name, step in functions.items() if coefficient == 1 else ():
        if step.function != function or step.argument.name != argument.name \
                or len(step.argument.indices) != len(argument.indices):
            continue
        mapping: dict[str, str] = {}
        if all(mapping.setdefault(i, j) == j for i, j in zip(step.argument.indices, argument.indices)):
            return Factor(name, tuple(mapping[i] for i in step.indices))
    return None


def called(function: str, argument: Factor, coefficient: Fraction = Fraction(1)) -> Call:
    """``function(coefficient * argument)`` as a call."""
    return Call(function, group([Term(coefficient, (argument,))]))


def identified(m: Monomial, value_of: ValueOf, atom_of: AtomOf) -> Monomial | None:
    """``m`` rewritten by the identities of ``sign`` and ``step`` (see the module) until none
    applies; None where none did."""
    changed = False
    while True:
        found = _rewritten(m, value_of, atom_of)
        if found is None:
            return m if changed else None
        m, changed = found, True


def _rewritten(m: Monomial, value_of: ValueOf, atom_of: AtomOf) -> Monomial | None:
    values = {a: value_of(a) for a, _ in m.powers}
    powers = dict(m.powers)
    for a, e in m.powers:
        v = values[a]
        if v is None or v.function not in ("sign", "step") or e.denominator != 1 or e < 1:
            continue
        if v.function == "step" and e >= 2:
            return _times(m, {a: 1 - e})
        partner = "abs" if v.function == "sign" else "relu"
        mine = _canonical(v.monomial)
        held = [b for b, x in m.powers if values[b] is not None and values[b].function == partner
                and _canonical(values[b].monomial) == mine and x.denominator == 1 and x >= 1]
        if held and v.function == "sign":  # sign(u) |u| = u
            return _times(m, {a: -1, held[0]: -1}).times(_plain(v.monomial))
        if held:  # step(u) relu(u) = relu(u)
            return _times(m, {a: -1})
        if _divides(v.monomial, powers):  # sign(u) u = |u|, step(u) u = relu(u)
            made = atom_of(partner, v.argument, v.coefficient)
            return _times(m, {a: -1, made: 1}).times(_inverse(v.monomial))
        if v.function == "sign" and e >= 3:
            return _times(m, {a: -2})
    return None


def exponentials_joined(m: Monomial, value_of: ValueOf, atom_of: AtomOf,
                        named: Callable[[Atom], bool]) -> Monomial | None:
    """``m`` with the powers of exponentials of one argument joined (see the module): where
    one is held to a power that is no integer, or several are, they are one atom: one that is
    ``named`` (a value the forward computed) where their product is it or its reciprocal, or an
    integer power of a named exponential, else ``exp(c * u)``. None where nothing is joined."""
    families: dict[frozenset, list[tuple[Atom, Fraction, Fraction, bool, Value]]] = {}
    for a, e in m.powers:
        found = _exponential(a, value_of)
        if found is not None:
            scale, rooted, v = found
            families.setdefault(v.key, []).append((a, e, scale, rooted, v))
    changed = None
    for members in families.values():
        if len(members) == 1 and members[0][1].denominator == 1:
            continue
        total = sum(e * scale for _, e, scale, _, _ in members)  # the exponent, in units of the argument
        change = {a: -e for a, e, _, _, _ in members}
        chosen = [(a, total / scale) for a, _, scale, rooted, _ in members if named(a)
                  and (abs(total / scale) == 1 or not rooted and (total / scale).denominator == 1)]
        if chosen:
            atom, power = chosen[0]
        elif total != 0:
            base = members[0][4]
            atom, power = atom_of("exp", base.argument, total / base.monomial.coefficient * base.coefficient), 1
        else:
            atom, power = None, 0
        if atom is not None:
            change[atom] = change.get(atom, Fraction(0)) + power
        changed = _times(changed or m, change)
    return changed


def _exponential(atom: Atom, value_of: ValueOf) -> tuple[Fraction, bool, Value] | None:
    """``atom`` as ``exp(scale * u)`` for the argument ``u`` of the :class:`Value` returned (its
    coefficient in ``u``), and whether through a square root (half of an exponential's scale).
    None otherwise."""
    v = value_of(atom)
    if v is None:
        return None
    if v.function == "exp":
        return v.monomial.coefficient, False, v
    if v.function == "sqrt" and v.monomial.coefficient == 1 and len(v.monomial.powers) == 1:
        (inner, e), = v.monomial.powers
        found = _exponential(inner, value_of) if e == 1 else None
        if found is not None:
            return found[0] / 2, True, found[2]
    return None


def _canonical(m: Monomial) -> tuple:
    return m.coefficient, frozenset(m.powers)


def _times(m: Monomial, change: dict) -> Monomial:
    """``m`` times each atom of ``change`` to its power there."""
    return m.times(Monomial(Fraction(1), tuple(change.items()), frozenset()))


def _plain(u: Monomial) -> Monomial:
    return Monomial(u.coefficient, u.powers, frozenset())


def _inverse(u: Monomial) -> Monomial:
    return Monomial(1 / u.coefficient, tuple((a, -e) for a, e in u.powers), frozenset())


def _divides(u: Monomial, powers: dict) -> bool:
    """Whether each atom of ``u`` is in ``powers`` to a power at least its own, of its sign."""
    return (bool(u.powers) and u.coefficient != 0
            and all(a in powers and powers[a] / e >= 1 for a, e in u.powers))
