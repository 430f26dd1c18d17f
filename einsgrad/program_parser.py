"""Program text -> statements, checked: the one reader of a program's text.

The grammar of :func:`einsgrad.program`, statements one a line or separated by ``;``::

    statement  := name[indices] = expression
    expression := [+|-] term ((+|-) term)*
    term       := power ((*|/) power)*
    power      := atom [^ number]            (a number: 2, -1, 0.5 or (1/2))
    atom       := number | tensor[indices] | delta[p,q] | function(expression)
                | sum[indices](expression) | (expression)

A later statement reads earlier ones; the last is the output. Every error is an
:class:`~einsgrad.errors.EinsumSpecError` with a caret at the column it is about (with its line,
in a text of several). One polynomial statement comes out as :class:`Parsed`, which
:mod:`einsgrad.programs` merges into a :class:`~einsgrad.programs.Program`; anything else as
:class:`~einsgrad.expressions.Statement` values.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Iterator, NamedTuple

from .algebra import (DELTA, Delta, Factor, Term, decimal, delta_classes, fresh_indices, internal_summed,
                      terminating)
from .errors import EinsumSpecError
from .expressions import (FUNCTIONS, SUM, Call, Group, Power, Scoped, Statement, ambiguous_index, free, group,
                          readings, term_free)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER_OR_NAME = (r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                   r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_TOKEN = re.compile(_NUMBER_OR_NAME + r"|(?P<newline>\n)|(?P<punct>[\[\],*+\-=()/^;])")
_STRICT_TOKEN = re.compile(_NUMBER_OR_NAME + r"|(?P<punct>[\[\],*+\-=])")  # a left side given alone
MAX_PLACES = 300
"""A coefficient has at most this many digits after the decimal point and is below
``10**MAX_PLACES`` in magnitude, so that it prints exactly as a decimal, reads back as itself,
and is a normal float64 (between 1e-300 and 1e300) when a program runs. A number, a term's
product of numbers (checked as it grows, factor by factor) or a merged coefficient out of that
range is refused with an EinsumSpecError."""

MAX_DEPTH = 64
"""The deepest nesting of parentheses and function calls a program may have."""


class _Parser:
    """Recursive descent over the tokens; every error points at a column of the text."""

    def __init__(self, text: str, strict: bool = False):
        self.text = text
        self.tokens = list(_tokens(text, strict))
        self.at = 0
        self.depth = 0  # inside parentheses a newline is a space
        self.ranks: dict[str, tuple[int, int]] = {}
        self.index_columns: list[tuple[str, int]] = []
        self.output = None
        self.read: dict[str, int] = {}

    def error(self, reason, column) -> EinsumSpecError:
        return EinsumSpecError(reason, self.text, column)

    def peek(self) -> tuple[str, str, int]:
        while self.depth and self.at < len(self.tokens) and self.tokens[self.at][0] == "newline":
            self.at += 1
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "", len(self.text))

    def take(self, kind, what) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] != kind and token[1] != kind:
            raise self.error(f"expected {what}, found {_found(token)}", token[2])
        self.at += 1
        return token

    def left_side(self) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
        """The output's name, its indices and their columns: the one rule for a left side
        (also for the names and indices given to derivations, see :func:`check_left_side`)."""
        _, name, col = self.take("name", "the output tensor's name")
        self.name_column = col
        if name == DELTA:
            raise self.error("the output cannot be named 'delta', the builtin Kronecker delta", col)
        out, out_cols = self.indices()
        for n, index in enumerate(out):
            if index in out[:n]:
                raise self.error(f"index {index!r} is repeated on the left: each output index "
                                 f"names one axis", out_cols[n])
        return name, out, out_cols

    def program(self) -> tuple[Statement, ...]:
        statements, defined, self.read = [], {}, {}
        while True:
            while self.peek()[0] == "newline" or self.peek()[1] == ";":
                self.at += 1
            if self.peek()[0] == "end" and statements:
                return tuple(statements)
            statements.append(self.statement(defined))
            kind, value, col = self.peek()
            if kind not in ("end", "newline") and value != ";":
                raise self.error(f"expected '*', '+', '-' or the end, found {value!r}", col)

    def statement(self, defined) -> Statement:
        name, out, out_cols = self.left_side()
        col = self.name_column
        if name in defined:
            raise self.error(f"{name!r} is defined twice, first at column {defined[name]}: each "
                             f"statement names a new tensor", col)
        if name in self.read:
            raise self.error(f"{name!r} is read at column {self.read[name]} before this statement "
                             f"defines it: a statement reads only earlier ones", col)
        self.take("=", "'=' after the output")
        self.output, self.index_columns = name, []
        terms = self.expression()
        self.check_sizes_known(out, out_cols, terms)
        for term, start, end in terms:
            found = ambiguous_index(term, set(out))
            if found is not None:
                index, node = found
                inside, outside = readings(term, index, node)
                raise self.error(f"index {index!r} occurs only inside a function, a power or a "
                                 f"parenthesis here, so its sum could go inside or outside it: "
                                 f"write {inside} or {outside}", self.index_column(index, start, end))
        defined[name] = col
        self.ranks.setdefault(name, (len(out), col))
        self.output = None
        return Statement(name, out, tuple(t for t, _, _ in terms))

    def index_column(self, index, start, end) -> int:
        return next(c for i, c in self.index_columns if i == index and start <= c < end)

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
            self.index_columns.append((index, col))
            if self.peek()[1] == "]":
                self.at += 1
                return tuple(names), tuple(cols)
            self.take(",", "',' or ']'")

    def expression(self) -> list[tuple[Term, int, int]]:
        """``[+|-] term ((+|-) term)*``: each term with the columns it spans."""
        sign = Fraction(1)
        if self.peek()[1] in ("+", "-"):
            sign = Fraction(-1 if self.take("punct", "")[1] == "-" else 1)
        terms = []
        while True:
            start = self.peek()[2]
            term = self.term(sign)
            terms.append((term, start, self.peek()[2]))
            if self.peek()[1] not in ("+", "-"):
                return terms
            sign = Fraction(-1 if self.take("punct", "")[1] == "-" else 1)

    def term(self, sign: Fraction) -> Term:
        """Powers joined by ``*`` and ``/``; numbers multiply into the coefficient, checked
        as it grows, so that no product gets long."""
        coefficient, factors, divide = sign, [], False
        while True:
            col = self.peek()[2]
            c, fs = self.power()
            if divide and not fs:
                if c == 0:
                    raise self.error("division by zero", col)
                c = 1 / c
            elif divide:
                fs, c = [Power(fs[0].base, -fs[0].exponent) if c == 1 and len(fs) == 1
                         and isinstance(fs[0], Power) else Power(_base(c, fs), Fraction(-1))], Fraction(1)
            if c != 1:
                coefficient *= c
                problem = coefficient_problem(coefficient)
                if problem:
                    raise self.error(f"the coefficient of this term (the product of its numbers "
                                     f"up to here) {problem}", col)
            factors.extend(fs)
            if self.peek()[1] not in ("*", "/"):
                return Term(coefficient, tuple(factors))
            divide = self.take("punct", "")[1] == "/"

    def power(self) -> tuple[Fraction, list]:
        col = self.peek()[2]
        c, fs = self.atom()
        if self.peek()[1] != "^":
            return c, fs
        self.at += 1
        exponent = self.exponent()
        if not fs:
            if exponent.denominator != 1 or (c == 0 and exponent < 0):
                raise self.error(f"{decimal(c)}^{decimal(exponent)} is not a rational number", col)
            value = c ** int(exponent)
            problem = coefficient_problem(value)
            if problem:
                raise self.error(f"this power {problem}", col)
            return value, []
        if exponent == 1:
            return c, fs
        return Fraction(1), [Power(_base(c, fs), exponent)]

    def exponent(self) -> Fraction:
        """``^`` takes a number: ``2``, ``-1``, ``0.5``, or ``(1/2)``."""
        parenthesized = self.peek()[1] == "("
        if parenthesized:
            self.at += 1
        sign = -1 if self.peek()[1] == "-" and self.take("punct", "") else 1
        value = sign * self.number(self.take("number", "a number after '^'"))
        if parenthesized and self.peek()[1] == "/":
            self.at += 1
            token = self.take("number", "a number after '/'")
            denominator = self.number(token)
            if denominator == 0:
                raise self.error("division by zero", token[2])
            value /= denominator
        if parenthesized:
            self.take(")", "')'")
        return value

    def number(self, token) -> Fraction:
        """A decimal literal, ``1e-3`` too, exactly; its range checked before any big int is
        made (see :data:`MAX_PLACES`)."""
        mantissa, _, exponent = token[1].lower().partition("e")
        whole, part = _digits(mantissa)
        if len(exponent.lstrip("+-").lstrip("0")) > 6:
            raise self.error(f"this number's exponent is out of range; a coefficient is between "
                             f"10^-{MAX_PLACES} and 10^{MAX_PLACES}", token[2])
        digits = (whole + part).lstrip("0")
        significant = digits.rstrip("0")
        scale = int(exponent or "0") - len(part) + len(digits) - len(significant)
        problem = _range_problem(max(0, len(significant) + scale) if significant else 0, max(0, -scale))
        if problem:
            raise self.error(f"this number {problem}", token[2])
        return Fraction(int(significant or "0")) * Fraction(10) ** scale

    def atom(self) -> tuple[Fraction, list]:
        kind, value, col = self.peek()
        if kind == "number":
            self.at += 1
            return self.number((kind, value, col)), []
        if value == "(":
            return self.parenthesized(lambda terms: (
                (terms[0].coefficient, list(terms[0].factors)) if len(terms) == 1
                else (Fraction(1), [group(terms)])))
        if kind != "name":
            raise self.error(f"expected a term (a number, a tensor, a function or '('), found "
                             f"{_found((kind, value, col))}", col)
        self.at += 1
        if self.peek()[1] == "(":
            if value not in FUNCTIONS:
                raise self.error(f"unknown function {value!r}; the functions are "
                                 f"{', '.join(sorted(FUNCTIONS))}", col)
            return self.parenthesized(lambda terms: (Fraction(1), [Call(value, group(terms))]))
        if value == self.output:
            raise self.error(f"the output {value!r} is used on the right: a program "
                             f"is not recursive", col)
        indices, index_cols = self.indices()
        if value == SUM and indices and self.peek()[1] == "(":
            return self.scoped(indices, index_cols)
        self.check_rank(value, len(indices), col)
        if value != DELTA:
            self.read.setdefault(value, col)
        return Fraction(1), [Delta(*indices) if value == DELTA else Factor(value, indices)]

    def parenthesized(self, make):
        """``( expression )``, handed to ``make`` as its terms."""
        _, _, col = self.take("(", "'('")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"parentheses and functions nest deeper than {MAX_DEPTH} here", col)
        terms = [t for t, _, _ in self.expression()]
        self.take(")", "')' or an operator")
        self.depth -= 1
        return make(terms)

    def scoped(self, over, cols):
        """``sum[k,...](body)``: each index must occur in every term of the body, which the sum
        runs over (a term without it would be counted dim(k) times)."""
        for n, index in enumerate(over):
            if index in over[:n]:
                raise self.error(f"index {index!r} is repeated in sum[...]", cols[n])
        body = self.parenthesized(lambda terms: terms)
        for index, col in zip(over, cols):
            if any(index not in term_free(t) for t in body):
                raise self.error(f"index {index!r} of this sum is missing from a term of its "
                                 f"body, which would count that term dim({index}) times", col)
        return Fraction(1), [Scoped(tuple(over), group(body))]

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
        missing = unsized(out, [t for t, _, _ in terms])
        for index, col in zip(out, out_cols):
            if index in missing:
                raise self.error(f"output index {index!r} appears in no tensor on the right, so "
                                 f"its size is unknown", col)
        for term, start, _ in terms:
            sized = set(out) | held(term)
            classes = delta_classes(term.factors)
            for index in term_free(term):
                if not classes.get(index, {index}) & sized:
                    raise self.error(f"index {index!r} appears only in deltas and is summed, so "
                                     f"its size is unknown", start)


def _base(coefficient, factors) -> Group:
    """A power's base: a parenthesized sum as it stands, anything else a group of one term."""
    if coefficient == 1 and len(factors) == 1 and isinstance(factors[0], Group):
        return factors[0]
    return group([Term(coefficient, tuple(factors))])


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
        parser = _Parser(text, strict=True)
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


def _tokens(text: str, strict: bool = False) -> Iterator[tuple[str, str, int]]:
    col = 0
    pattern = _STRICT_TOKEN if strict else _TOKEN
    while col < len(text):
        if text[col].isspace() and (strict or text[col] != "\n"):
            col += 1
            continue
        match = pattern.match(text, col)
        if match is None:
            operators = "* + - =" if strict else "* / + - ^ = ( ) ;"
            raise EinsumSpecError(f"character {text[col]!r} is not allowed in a program: names are "
                                  f"identifiers, numbers are decimals, operators are {operators}",
                                  text, col)
        kind = match.lastgroup
        yield kind, match.group(), col
        col = match.end()


def _found(token) -> str:
    kind, value, _ = token
    return {"end": "the end of the program", "newline": "the end of the line"}.get(kind, repr(value))


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
    if not terminating(value):  # from a division, written p/q
        return (f"has a denominator of more than {MAX_PLACES} digits; a coefficient's is below "
                f"10^{MAX_PLACES}, so that it is a float64") if value.denominator >= bound else None
    if bound % value.denominator:
        return (f"has more than {MAX_PLACES} digits after the decimal point; a coefficient has at "
                f"most {MAX_PLACES}, so that it prints exactly and is a float64")
    return None


class Parsed(NamedTuple):
    """A program as read: ``name[output] = Σ terms``, before like terms are merged."""

    name: str
    output: tuple[str, ...]
    terms: tuple[Term, ...]


def parse_program(text: str) -> Parsed | tuple[Statement, ...]:
    """Reads and checks a program (see :func:`einsgrad.program`): one polynomial statement as
    :class:`Parsed`, its indices canonical (the output ``i, j, ...``, each term's summed ones
    ``#s0, #s1, ...``); anything else as its statements, in the user's names."""
    if not isinstance(text, str):
        raise EinsumSpecError(f"a program is a string, got {type(text).__name__}")
    statements = _Parser(text).program()
    if len(statements) > 1 or not statements[0].is_polynomial:
        return statements
    name, out, terms = statements[0].name, statements[0].indices, statements[0].terms
    output = fresh_indices([None] * len(out), ())
    canonical = [internal_summed(t, set(out)).renamed(dict(zip(out, output))) for t in terms]
    return Parsed(name, output, tuple(canonical))


def held(term: Term) -> set[str]:
    """Indices a term's tensors give a size: those of its tensors and nodes (deltas aside)."""
    return {i for f in term.factors if not f.is_delta for i in free(f)}


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
        classes, tensors = delta_classes(t.factors), held(t)
        sized.update(o for o in output if classes.get(o, {o}) & tensors)
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


def parse_expression(text: str) -> tuple[Term, ...]:
    """The terms of one expression (the rules of :data:`einsgrad.expressions.DERIVATIVES`)."""
    parser = _Parser(text)
    terms = parser.expression()
    parser.take("end", "the end of the expression")
    return tuple(t for t, _, _ in terms)
