"""Program text -> :class:`Parsed`: the output, its indices and the terms, checked.

The grammar of :func:`einsgrad.program`: ``OUT[i,...] = term (+|- term)*``, a term an optional
number times tensors joined by ``*``. Every error is an :class:`~einsgrad.errors.EinsumSpecError`
with a caret at the column of the text it is about. Indices come out canonical (the output
``i, j, ...``, each term's summed ones ``#s0, #s1, ...``); :mod:`einsgrad.programs` merges the
terms into a :class:`~einsgrad.programs.Program`.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Iterator, NamedTuple

from .algebra import DELTA, Delta, Factor, Term, delta_classes, fresh_indices, internal_summed
from .errors import EinsumSpecError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<punct>[\[\],*+\-=])")
MAX_PLACES = 300
"""A coefficient has at most this many digits after the decimal point and is below
``10**MAX_PLACES`` in magnitude, so that it prints exactly as a decimal, reads back as itself,
and is a normal float64 (between 1e-300 and 1e300) when a program runs. A number, a term's
product of numbers (checked as it grows, factor by factor) or a merged coefficient out of that
range is refused with an EinsumSpecError."""


class _Parser:
    """Recursive descent over the tokens; every error points at a column of the text."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = list(_tokens(text))
        self.at = 0
        self.ranks: dict[str, tuple[int, int]] = {}

    def error(self, reason, column) -> EinsumSpecError:
        return EinsumSpecError(reason, self.text, column)

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "", len(self.text))

    def take(self, kind, what) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] != kind and token[1] != kind:
            found = "the end of the program" if token[0] == "end" else repr(token[1])
            raise self.error(f"expected {what}, found {found}", token[2])
        self.at += 1
        return token

    def left_side(self) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
        """The output's name, its indices and their columns: the one rule for a left side
        (also for the names and indices given to derivations, see :func:`_left_side`)."""
        _, name, col = self.take("name", "the output tensor's name")
        if name == DELTA:
            raise self.error("the output cannot be named 'delta', the builtin Kronecker delta", col)
        out, out_cols = self.indices()
        for n, index in enumerate(out):
            if index in out[:n]:
                raise self.error(f"index {index!r} is repeated on the left: each output index "
                                 f"names one axis", out_cols[n])
        return name, out, out_cols

    def program(self) -> "Parsed":
        name, out, out_cols = self.left_side()
        self.take("=", "'=' after the output")
        terms, sign = [], Fraction(1)
        if self.peek()[1] in ("+", "-"):
            sign = Fraction(-1 if self.take("punct", "")[1] == "-" else 1)
        while True:
            terms.append(self.term(sign, name))
            kind, value, col = self.peek()
            if kind == "end":
                break
            if value not in ("+", "-"):
                raise self.error(f"expected '*', '+', '-' or the end, found {value!r}", col)
            self.at += 1
            sign = Fraction(-1 if value == "-" else 1)
        self.check_sizes_known(out, out_cols, terms)
        terms = [t for t, _ in terms]
        output = fresh_indices([None] * len(out), ())
        canonical = [internal_summed(t, set(out)).renamed(dict(zip(out, output))) for t in terms]
        return Parsed(name, output, tuple(canonical))

    def indices(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        if self.peek()[1] != "[":
            return (), ()
        _, _, open_col = self.take("[", "'['")
        if self.peek()[1] == "]":
            raise self.error("empty brackets: a scalar is written without them", open_col)
        names, cols = [], []
        while True:
            _, index, col = self.take("name", "an index name")
            names.append(index)
            cols.append(col)
            if self.peek()[1] == "]":
                self.at += 1
                return tuple(names), tuple(cols)
            self.take(",", "',' or ']'")

    def term(self, sign: Fraction, output: str) -> tuple[Term, int]:
        """A term and the column it starts at."""
        coefficient, factors, start = sign, [], self.peek()[2]
        while True:
            kind, value, col = self.peek()
            if kind == "number":
                self.at += 1
                whole, part = _digits(value)
                problem = _range_problem(len(whole), len(part))
                if problem:
                    raise self.error(f"this number {problem}", col)
                coefficient *= Fraction(int(whole + part or "0"), 10 ** len(part))
                problem = coefficient_problem(coefficient)
                if problem:  # checked as it grows, so that no product gets long
                    raise self.error(f"the coefficient of this term (the product of its numbers "
                                     f"up to here) {problem}", col)
            elif kind == "name":
                self.at += 1
                if value == output:
                    raise self.error(f"the output {value!r} is used on the right: a program "
                                     f"is not recursive", col)
                indices, _ = self.indices()
                self.check_rank(value, len(indices), col)
                factors.append(Delta(*indices) if value == DELTA else Factor(value, indices))
            else:
                found = "the end of the program" if kind == "end" else repr(value)
                raise self.error(f"expected a term (a number or a tensor), found {found}", col)
            if self.peek()[1] != "*":
                return Term(coefficient, tuple(factors)), start
            self.at += 1

    def check_rank(self, name, rank, col):
        if name == DELTA and rank != 2:
            raise self.error(f"the Kronecker delta takes two indices, delta[p,q], not {rank}", col)
        first = self.ranks.setdefault(name, (rank, col))
        if first[0] != rank:
            raise self.error(f"tensor {name!r} has {rank} index(es) here but {first[0]} at "
                             f"column {first[1]}: a tensor has one rank", col)

    def check_sizes_known(self, out, out_cols, terms):
        """Every index must get its size from a tensor: an output index from some term, a
        summed index from its own term (through deltas, possibly)."""
        missing = unsized(out, [t for t, _ in terms])
        for index, col in zip(out, out_cols):
            if index in missing:
                raise self.error(f"output index {index!r} appears in no tensor on the right, so "
                                 f"its size is unknown", col)
        for term, start in terms:
            sized = set(out) | term.tensor_indices()
            classes = delta_classes(term.factors)
            for index in term.indices():
                if not classes.get(index, {index}) & sized:
                    raise self.error(f"index {index!r} appears only in deltas and is summed, so "
                                     f"its size is unknown", start)


def check_left_side(name, indices, what: str, rank: int | None = None) -> tuple[str, ...]:
    """``indices`` after checking ``name[indices]`` as the parser checks a program's left
    side (a tensor name, distinct index names), and that there are ``rank`` of them."""
    if (not isinstance(name, str) or not isinstance(indices, (tuple, list))
            or not all(isinstance(i, str) for i in indices)):
        raise EinsumSpecError(f"{what}: expected a name and a tuple of index names (strings), "
                              f"got {name!r} and {indices!r}")
    indices = tuple(indices)
    text = name + (f"[{','.join(indices)}]" if indices else "")
    try:
        parser = _Parser(text)
        read = parser.left_side()[:2]
        parser.take("end", "the end of the left side")
    except EinsumSpecError as e:
        raise EinsumSpecError(f"{what} must be valid on a program's left side: {e.reason}",
                              text, e.column) from None
    starts = list(itertools.accumulate((len(i) + 1 for i in indices), initial=len(name) + 1))
    for given, start in zip((name, *indices), (0, *starts)):
        if not _IDENTIFIER.match(given):  # "p,q" or " p" read as other names
            raise EinsumSpecError(f"{what} must be valid on a program's left side: {given!r} is "
                                  f"not one identifier", text, start)
    assert read == (name, indices)
    if rank is not None and len(indices) != rank:
        raise EinsumSpecError(f"{what}: the tensor has {rank} axes, so the gradient takes {rank} "
                              f"index name(s), got {len(indices)}", text, len(name))
    return indices


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    col = 0
    while col < len(text):
        if text[col].isspace():
            col += 1
            continue
        match = _TOKEN.match(text, col)
        if match is None:
            raise EinsumSpecError(f"character {text[col]!r} is not allowed in a program: names are "
                                  f"identifiers, numbers are decimals, operators are * + - =",
                                  text, col)
        kind = match.lastgroup
        yield kind, match.group(), col
        col = match.end()


def _digits(literal: str) -> tuple[str, str]:
    """A decimal literal's digits before and after the point, without leading and trailing
    zeros: what :func:`_range_problem` bounds before any is converted to an int."""
    whole, _, part = literal.partition(".")
    return whole.lstrip("0"), part.rstrip("0")


def _range_problem(whole_digits: int, places: int) -> str | None:
    """Why a decimal with these many digits before and after the point is no coefficient
    (see :data:`MAX_PLACES`), or None."""
    if whole_digits > MAX_PLACES:
        return f"reaches 10^{MAX_PLACES}; a coefficient is below that, so that it is a float64"
    if places > MAX_PLACES:
        return (f"has {places} digits after the decimal point; a coefficient has at most "
                f"{MAX_PLACES}, so that it prints exactly and is a float64")
    return None


def coefficient_problem(value: Fraction) -> str | None:
    """Why ``value`` (a sum or product of coefficients) is no coefficient, or None; one
    comparison and one remainder, whatever its size."""
    bound = 10 ** MAX_PLACES
    if abs(value) >= bound:
        return _range_problem(MAX_PLACES + 1, 0)
    if bound % value.denominator:
        return (f"has more than {MAX_PLACES} digits after the decimal point; a coefficient has at "
                f"most {MAX_PLACES}, so that it prints exactly and is a float64")
    return None


class Parsed(NamedTuple):
    """A program as read: ``name[output] = Σ terms``, before like terms are merged."""

    name: str
    output: tuple[str, ...]
    terms: tuple[Term, ...]


def parse_program(text: str) -> Parsed:
    """Reads and checks one program (see :func:`einsgrad.program`)."""
    if not isinstance(text, str):
        raise EinsumSpecError(f"a program is a string, got {type(text).__name__}")
    return _Parser(text).program()


def unsized(output, terms) -> list[str]:
    """Output indices that no term gives a size: on no tensor of any term (through that
    term's deltas), nor tied by a delta to an output index that is sized."""
    sized = tied(sized_indices(output, terms), delta_ties(terms), set(output))
    return [o for o in output if o not in sized]


def sized_indices(output, terms) -> set[str]:
    """Output indices on a tensor of some term, through that term's deltas; each term's
    classes and tensors are found once, so this is linear in the terms' size."""
    sized = set()
    for t in terms:
        classes, held = delta_classes(t.factors), t.tensor_indices()
        sized.update(o for o in output if classes.get(o, {o}) & held)
    return sized


def delta_ties(terms) -> list[tuple[str, str]]:
    """The index pairs of every delta of ``terms``."""
    return [f.indices for t in terms for f in t.factors if f.is_delta]


def tied(sized: set, ties, output: set) -> set[str]:
    """``sized`` and the output indices deltas tie to them."""
    sized, grew = set(sized), True
    while grew:
        grew = False
        for p, q in ties:
            if (p in sized) != (q in sized) and p in output and q in output:
                sized |= {p, q}
                grew = True
    return sized
