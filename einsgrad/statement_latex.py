"""A program's statements as LaTeX, for what has no derivation to render (a Hessian of statements).

``H[b,j] = X[b,k] * W[j,k] + c[j]`` becomes ``H_{bj} = \\sum_{k} X_{bk} W_{jk} + c_{j}``: the sum
of a term over the indices not on the left written out, a product by juxtaposition, a quotient as
``\\frac``, a function as an operator. Built with :mod:`einsgrad.render` from the statements'
values (validated names and indices), never from their text.
"""

from __future__ import annotations

from fractions import Fraction

from .algebra import Term, decimal
from .expressions import Call, Group, Power, Scoped, Statement, free, term_free
from .render import Piece, applied, indexed, juxt, kronecker, summation

_OPERATORS = frozenset({"exp", "log", "tanh", "sin", "cos"})  # LaTeX has \exp, \log, ...


def statements_latex(statements) -> str:
    """The statements as one ``align*`` environment, a statement a row."""
    rows = [_statement(s) for s in statements]
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"


def _statement(s: Statement) -> str:
    left = indexed(s.name, s.indices).latex
    kept = set(s.indices)
    return f"{left} &= {_sum(s.terms, kept, top=True)}"


def _sum(terms, kept, top: bool = False) -> str:
    parts = []
    for n, t in enumerate(terms):
        body = _term(Term(abs(t.coefficient), t.factors), kept, top)
        sign = "-" if t.coefficient < 0 else "+"
        parts.append((("-" if sign == "-" else "") + body) if n == 0 else f" {sign} {body}")
    return "".join(parts) or "0"


def _term(term: Term, kept, top: bool) -> str:
    """``c Σ_over numerator / denominator``: at a statement's top the indices not on the left
    are summed (the program's rule), inside a node nothing is."""
    over = [i for i in term_free(term) if i not in kept] if top else []
    numerator = [f for f in term.factors if not (isinstance(f, Power) and f.exponent < 0)]
    denominator = [Power(f.base, -f.exponent) for f in term.factors if f not in numerator]
    body = juxt([_latex(_node(f)) for f in numerator], empty="").latex
    if denominator:
        below = (_sum(denominator[0].base.terms, set(free(denominator[0].base)))
                 if len(denominator) == 1 and denominator[0].exponent == 1
                 else " ".join(_node(f) for f in denominator))
        body = rf"\frac{{{body or '1'}}}{{{below}}}"
    body = summation(over, _latex(body)).latex if over and body else body
    c = term.coefficient
    if c != 1 or not body:
        body = (_number(c) + " " + body).strip()
    return body


def _latex(latex: str) -> Piece:
    """A piece for :mod:`einsgrad.render`'s joins, of which only the LaTeX is read."""
    return Piece(latex, latex)


def _node(node) -> str:
    if isinstance(node, Group):
        return rf"\left({_sum(node.terms, set(free(node)))}\right)"
    if isinstance(node, Call):
        inner = _sum(node.argument.terms, set(free(node.argument)))
        if node.function in _OPERATORS:
            return rf"\{node.function}\left({inner}\right)"
        if node.function == "sqrt":
            return rf"\sqrt{{{inner}}}"
        if node.function == "abs":
            return rf"\left|{inner}\right|"
        return applied(node.function, _latex(inner)).latex
    if isinstance(node, Scoped):
        body = _sum(node.body.terms, set(free(node.body)))
        if len(node.body.terms) > 1 or node.body.terms[0].coefficient < 0:
            body = rf"\left({body}\right)"
        return summation(node.over, _latex(body)).latex
    if isinstance(node, Power):
        base = node.base.terms
        single = (len(base) == 1 and base[0].coefficient == 1 and len(base[0].factors) == 1
                  and not isinstance(base[0].factors[0], Power))
        atom = _node(base[0].factors[0]) if single else rf"\left({_sum(base, set(free(node.base)))}\right)"
        return atom if node.exponent == 1 else f"{atom}^{{{_number(node.exponent)}}}"
    if node.is_delta:
        return kronecker(*node.indices).latex
    return indexed(node.name, node.indices).latex


def _number(value: Fraction) -> str:
    if value.denominator != 1 and "/" in decimal(value):
        return rf"\frac{{{value.numerator}}}{{{value.denominator}}}"
    return decimal(value)
