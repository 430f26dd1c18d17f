"""Matrix text -> a tree of matrix expressions: the one reader of :func:`einsgrad.matrix`'s text.

The grammar, statements one a line or separated by ``;``, the last one the output (it may be a
bare expression)::

    statement  := [name =] expression
    expression := [+|-] product ((+|-) product)*
    product    := unary ((* | / | @) unary)*         (* and / elementwise, @ the matrix product)
    unary      := (+|-) unary | power
    power      := postfix [(^ | **) exponent]        (an exponent: 2, -1, 0.5 or (1/2))
    postfix    := atom (.T | ' | ᵀ)*                (each a transpose)
    atom       := number | name | function(expression) | (expression)

As in Python, ``-x^2`` is ``-(x^2)`` and ``@`` binds as ``*`` does. Every error is an
:class:`~einsgrad.errors.EinsumSpecError` with a caret at its column. Ranks and shapes are
:mod:`einsgrad.matrix`'s business: this module reads text and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, NamedTuple, Union

from .algebra import DELTA
from .errors import EinsumSpecError
from .expressions import FUNCTIONS, SUM
from .program_parser import MAX_DEPTH, coefficient_problem

ELEMENTWISE = ("exp", "log", "tanh", "sigmoid", "relu", "sin", "cos", "sqrt", "abs", "softplus")
"""The elementwise functions matrix text may call (those of programs, their derivatives aside)."""

REDUCTIONS = ("sum", "tr", "norm", "diag")
"""``sum`` of every entry, the trace, the Frobenius (or 2-) norm, and numpy's ``diag``."""

MAX_HEIGHT = 200
"""The most operators, functions and transposes on one path from a statement's top to a name:
a longer chain (``A1 @ A2 @ ... @ A300``) is refused, to be split into statements."""

CALLABLE = ELEMENTWISE + REDUCTIONS
RESERVED = frozenset(CALLABLE) | FUNCTIONS | {DELTA, SUM}
"""Names no tensor may have: a function's, or the index program's Kronecker delta."""

_TOKEN = re.compile(r"(?P<transpose>\.T(?![A-Za-z0-9_])|'|ᵀ)"
                    r"|(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<newline>\n)"
                    r"|(?P<punct>\*\*|[@*/+\-^=();])")


class Token(NamedTuple):
    kind: str
    text: str
    column: int


@dataclass(frozen=True)
class Literal:
    """A number, exactly."""

    value: Fraction
    column: int


@dataclass(frozen=True)
class Symbol:
    """A tensor, or an earlier statement's result."""

    name: str
    column: int


@dataclass(frozen=True)
class Negated:
    operand: "Node"
    column: int


@dataclass(frozen=True)
class Operation:
    """``left op right``: ``op`` one of ``+ - * / @``; ``column`` is the operator's."""

    op: str
    left: "Node"
    right: "Node"
    column: int


@dataclass(frozen=True)
class Raised:
    """``base ^ exponent`` (``**`` too), elementwise; ``op`` the operator as written."""

    base: "Node"
    exponent: Fraction
    op: str
    column: int


@dataclass(frozen=True)
class Transposed:
    operand: "Node"
    column: int


@dataclass(frozen=True)
class Applied:
    """``function(argument)``: one of :data:`CALLABLE`."""

    function: str
    argument: "Node"
    column: int


Node = Union[Literal, Symbol, Negated, Operation, Raised, Transposed, Applied]


@dataclass(frozen=True)
class Assignment:
    """``name = expression``; ``name`` is None for a bare last expression."""

    name: str | None
    expression: Node
    column: int


def parse_matrix(text: str) -> tuple[Assignment, ...]:
    """The statements of ``text``, read and checked for syntax (see the module docstring)."""
    if not isinstance(text, str):
        raise EinsumSpecError(f"matrix text is a string, got {type(text).__name__}")
    return _Parser(text).statements()


class _Parser:
    """Recursive descent over the tokens; every error points at a column of the text."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = list(_tokens(text))
        self.at = 0
        self.depth = 0  # inside parentheses a newline is a space
        self.nesting = 0  # parentheses and signs, at most MAX_DEPTH
        self.heights: dict[int, int] = {}  # id(node) -> its height, at most MAX_HEIGHT

    def error(self, reason: str, column: int) -> EinsumSpecError:
        return EinsumSpecError(reason, self.text, column)

    def peek(self, ahead: int = 0) -> Token:
        while self.depth and self.at < len(self.tokens) and self.tokens[self.at].kind == "newline":
            self.at += 1
        at = self.at + ahead
        return self.tokens[at] if at < len(self.tokens) else Token("end", "", len(self.text))

    def take(self, text: str, what: str) -> Token:
        token = self.peek()
        if token.text != text:
            raise self.error(f"expected {what}, found {_found(token)}", token.column)
        self.at += 1
        return token

    def statements(self) -> tuple[Assignment, ...]:
        found = []
        while True:
            while self.peek().kind == "newline" or self.peek().text == ";":
                self.at += 1
            if self.peek().kind == "end":
                if not found:
                    raise self.error("the matrix text holds no expression", 0)
                return tuple(found)
            if found and found[-1].name is None:
                raise self.error("only the last statement may be a bare expression: name this one "
                                 "(A = ...)", found[-1].column)
            found.append(self.statement())
            token = self.peek()
            if token.kind not in ("end", "newline") and token.text != ";":
                raise self.error(f"expected an operator or the end, found {_found(token)}", token.column)

    def statement(self) -> Assignment:
        first = self.peek()
        if first.kind == "name" and self.peek(1).text == "=":
            if first.text in RESERVED:
                raise self.error(f"{first.text!r} is {_reserved(first.text)}: a statement needs "
                                 f"another name", first.column)
            self.at += 2
            return Assignment(first.text, self.expression(), first.column)
        return Assignment(None, self.expression(), first.column)

    def expression(self) -> Node:
        node = self.product()
        while self.peek().text in ("+", "-"):
            op = self.take(self.peek().text, "")
            node = self.made(Operation(op.text, node, self.product(), op.column))
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek().text in ("*", "/", "@"):
            op = self.take(self.peek().text, "")
            node = self.made(Operation(op.text, node, self.unary(), op.column))
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token.text in ("+", "-"):
            self.at += 1
            self.enter(token.column)
            operand = self.unary()
            self.nesting -= 1
            return operand if token.text == "+" else self.made(Negated(operand, token.column))
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        token = self.peek()
        if token.text not in ("^", "**"):
            return base
        self.at += 1
        exponent = self.exponent()
        if self.peek().text in ("^", "**"):
            raise self.error("a power of a power is written with parentheses: (x^2)^3",
                             self.peek().column)
        return self.made(Raised(base, exponent, token.text, token.column))

    def exponent(self) -> Fraction:
        """A number, signed, or ``(p/q)``."""
        parenthesized = self.peek().text == "("
        if parenthesized:
            self.at += 1
        sign = -1 if self.peek().text == "-" and self.take("-", "") else 1
        value = sign * self.number(self.take_kind("number", "a number after the power's operator"))
        if parenthesized and self.peek().text == "/":
            self.at += 1
            token = self.take_kind("number", "a number after '/'")
            denominator = self.number(token)
            if denominator == 0:
                raise self.error("division by zero", token.column)
            value /= denominator
        if parenthesized:
            self.take(")", "')'")
        return value

    def take_kind(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.error(f"expected {what}, found {_found(token)}", token.column)
        self.at += 1
        return token

    def postfix(self) -> Node:
        node = self.atom()
        while self.peek().kind == "transpose":
            node = self.made(Transposed(node, self.peek().column))
            self.at += 1
        return node

    def atom(self) -> Node:
        token = self.peek()
        if token.kind == "number":
            self.at += 1
            return Literal(self.number(token), token.column)
        if token.text == "(":
            return self.parenthesized()
        if token.kind != "name":
            raise self.error(f"expected a number, a name, a function or '(', found {_found(token)}",
                             token.column)
        self.at += 1
        if self.peek().text == "(":
            if token.text not in CALLABLE:
                raise self.error(f"unknown function {token.text!r}; the functions are "
                                 f"{', '.join(CALLABLE)}", token.column)
            return self.made(Applied(token.text, self.parenthesized(), token.column))
        if token.text in RESERVED:
            raise self.error(f"{token.text!r} is {_reserved(token.text)}, not a tensor"
                             + (f": write {token.text}(...)" if token.text in CALLABLE else ""), token.column)
        return Symbol(token.text, token.column)

    def parenthesized(self) -> Node:
        open_ = self.take("(", "'('")
        self.enter(open_.column)
        self.depth += 1
        node = self.expression()
        self.take(")", "')' or an operator")
        self.depth -= 1
        self.nesting -= 1
        return node

    def made(self, node: Node) -> Node:
        """``node``, its height checked against :data:`MAX_HEIGHT` (the passes over the tree
        recurse along it)."""
        children = ((node.left, node.right) if isinstance(node, Operation) else
                    (node.base,) if isinstance(node, Raised) else
                    (node.argument,) if isinstance(node, Applied) else (node.operand,))
        height = self.heights[id(node)] = 1 + max(self.heights.get(id(c), 0) for c in children)
        if height > MAX_HEIGHT:
            raise self.error(f"this expression is more than {MAX_HEIGHT} operations deep here; "
                             "name parts of it in statements (A = ...)", node.column)
        return node

    def enter(self, column: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"parentheses, functions and signs nest deeper than {MAX_DEPTH} here", column)

    def number(self, token: Token) -> Fraction:
        """A decimal literal, exactly; its range is a coefficient's (see
        :data:`einsgrad.program_parser.MAX_PLACES`), checked before any big number is made."""
        mantissa, _, exponent = token.text.lower().partition("e")
        if len(exponent.lstrip("+-").lstrip("0")) > 4 or len(mantissa) > 400:
            raise self.error("this number is out of range: a coefficient is between 10^-300 and 10^300",
                             token.column)
        value = Fraction(token.text)
        problem = coefficient_problem(value)
        if problem:
            raise self.error(f"this number {problem}", token.column)
        return value


def _reserved(name: str) -> str:
    if name == DELTA:
        return "the index program's Kronecker delta"
    return "a function"


def _tokens(text: str) -> Iterator[Token]:
    column = 0
    while column < len(text):
        if text[column].isspace() and text[column] != "\n":
            column += 1
            continue
        match = _TOKEN.match(text, column)
        if match is None:
            raise EinsumSpecError(f"character {text[column]!r} is not allowed in matrix text: names are "
                                  "identifiers, numbers decimals, operators @ * / + - ^ ** .T ' ᵀ = ( ) ;",
                                  text, column)
        yield Token(match.lastgroup, match.group(), column)
        column = match.end()


def _found(token: Token) -> str:
    return {"end": "the end of the text", "newline": "the end of the line"}.get(token.kind, repr(token.text))
