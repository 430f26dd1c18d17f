"""Text and LaTeX side by side: the pieces every explanation is built from.

A :class:`Piece` holds one rendering for plain text (Unicode) and one for LaTeX (math mode); the
small functions here join pieces (products, equations, sums, derivatives, prose) so that both
renderings are built at once, from validated labels and names only. :class:`Rendered` gives an
explanation its ``str()``, ``latex()`` and Jupyter display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from .algebra import PRIME, Product
from .spec import ELLIPSIS, Labels

BATCH_SYMBOL = "β"
"""The batch multi-index that ``...`` is written as."""

FRESH_BATCH = "γ"
"""The batch multi-index of a derivative's fresh indices (``∂L/∂A_γp``)."""



@dataclass(frozen=True)
class Piece:
    """A piece of output: its plain-text (Unicode) and its LaTeX (math mode) rendering."""

    text: str
    latex: str


def latex_escape(text: str) -> str:
    """Text-mode LaTeX for prose made of fixed words, validated names and labels."""
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                          ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                          ("^", r"\^{}"), ("~", r"\~{}")):
        text = text.replace(char, escaped)
    return text


_SYMBOLS = {"β": r"{\beta}", "γ": r"{\gamma}", "′": "'", "⁽": "^{(", "⁾": ")}",
            **{sup: str(d) for d, sup in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")},
            "δ": r"\delta", "∂": r"\partial", "Σ": r"\Sigma", "ᵀ": r"^\top", "∘": r"\circ"}


def prose(text: str) -> Piece:
    """Words, with index symbols (β, i′) as math in LaTeX; leading spaces indent."""
    body = text.lstrip(" ")
    latex = [r"\quad "] if body != text else []
    for n, run in enumerate(re.split(r"([^\x00-\x7f]+)", body)):
        if n % 2:
            latex.append(symbol_latex(run))
        elif run:
            latex.append(r"\text{" + latex_escape(run) + "}")
    return Piece(text, "".join(latex))


def punct(m: Piece, mark: str) -> Piece:
    """``m`` followed by a punctuation mark, without a space."""
    return Piece(m.text + mark, m.latex + r"\text{" + mark + "}")


def quoted_code(spec: str) -> Piece:
    """An einsum spec, quoted."""
    return Piece(f'"{spec}"', r'\texttt{"' + latex_escape(spec) + '"}')


def spaced(*parts: Piece) -> Piece:
    """Pieces of one line, separated by spaces."""
    return Piece(" ".join(p.text for p in parts), r"\ ".join(p.latex for p in parts))


def juxt(parts: Sequence[Piece], empty: str = "1") -> Piece:
    """A product written by juxtaposition; the empty product is ``empty``."""
    if not parts:
        return Piece(empty, empty)
    return Piece(" ".join(p.text for p in parts), " ".join(p.latex for p in parts))


def equals(*sides: Piece) -> Piece:
    return Piece(" = ".join(s.text for s in sides), " = ".join(s.latex for s in sides))


def symbol_latex(symbol: str) -> str:
    return "".join(_SYMBOLS.get(c, c) for c in symbol)


def index_run(symbols: Sequence[str]) -> Piece:
    """Juxtaposed, or comma-separated when an index has more than one letter (``i1``)."""
    joint = "," if any(len(s.rstrip(PRIME)) > 1 for s in symbols) else ""
    return Piece(joint.join(symbols), joint.join(symbol_latex(s) for s in symbols))


def tensor_name(name: str) -> Piece:
    return Piece(name, name if len(name) == 1 else r"\mathit{" + latex_escape(name) + "}")


def indexed(name: str, index: Sequence[str]) -> Piece:
    base, sub = tensor_name(name), index_run(index)
    if not index:
        return base
    return Piece(f"{base.text}_{sub.text}", f"{base.latex}_{{{sub.latex}}}")


def kronecker(a: str, b: str) -> Piece:
    sub = index_run((a, b))
    return Piece(f"δ_{sub.text}", rf"\delta_{{{sub.latex}}}")


def partial_of(num: Piece, den: Piece) -> Piece:
    return Piece(f"∂{num.text}/∂{den.text}", rf"\frac{{\partial {num.latex}}}{{\partial {den.latex}}}")


def summation(over: Sequence[str], body: Piece) -> Piece:
    if not over:
        return body
    sub = index_run(over)
    return Piece(f"Σ_{sub.text} {body.text}", rf"\sum_{{{sub.latex}}} {body.latex}")


def listed(symbols: Sequence[str]) -> str:
    return ", ".join(symbols)


def product_piece(product: Product) -> Piece:
    """``Σ_over Π factors``, entries and deltas juxtaposed."""
    parts = [kronecker(f.p, f.q) if f.is_delta else indexed(f.name, f.indices) for f in product.factors]
    return summation(product.over, juxt(parts))


def label_symbol(label: str) -> str:
    return BATCH_SYMBOL if label == ELLIPSIS else label


def label_symbols(term: Labels) -> tuple[str, ...]:
    return tuple(label_symbol(label) for label in term)


ONES = Piece("1", r"\mathbf{1}")


def transpose_of(m: Piece) -> Piece:
    return Piece(m.text + "ᵀ", m.latex + r"^\top")


def differential_of(m: Piece) -> Piece:
    return Piece("d" + m.text, r"\mathrm{d}" + m.latex)


def parenthesized(m: Piece) -> Piece:
    if " " not in m.text:
        return m
    return Piece(f"({m.text})", rf"\left({m.latex}\right)")


def applied(function: str, m: Piece) -> Piece:
    return Piece(f"{function}({m.text})", rf"\operatorname{{{function}}}\left({m.latex}\right)")


class Rendered:
    """``str()``, :meth:`latex` and Jupyter's math display of ``self.lines``."""

    lines: tuple[Piece, ...]

    def __str__(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def _rows(self) -> str:
        return " \\\\\n".join("&" + line.latex for line in self.lines)

    def latex(self) -> str:
        """The derivation as a LaTeX ``align*`` environment (amsmath)."""
        return "\\begin{align*}\n" + self._rows() + "\n\\end{align*}"

    def _repr_latex_(self) -> str:
        return "$$\\begin{aligned}\n" + self._rows() + "\n\\end{aligned}$$"


_TEXT_COMMANDS = (r"\text{", r"\textbf{", r"\texttt{")


def _group_end(latex: str, start: int) -> int:
    """The index just past the ``}`` closing the group opened before ``start``."""
    depth, n = 1, start
    while depth:
        char = latex[n]
        if char == "\\":
            n += 2
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        n += 1
    return n


def paragraph(latex: str) -> str:
    """One line's math-mode LaTeX as a paragraph: prose as text, each formula in ``$...$``.

    Text mode wraps and inline math breaks after ``=``, so a long line lays out on the page
    where one ``align*`` row of ``\\text{}`` cannot. Each formula is also plain mathtext.
    """
    pieces, math, n = [], [], 0
    while n < len(latex):
        command = next((c for c in _TEXT_COMMANDS if latex.startswith(c, n)), None)
        if command is None:
            math.append(latex[n])
            n += 1
            continue
        end = _group_end(latex, n + len(command))
        pieces.append(_inline("".join(math)))
        math = []
        body = latex[n + len(command):end - 1]
        pieces.append(body if command == r"\text{" else latex[n:end])
        n = end
    pieces.append(_inline("".join(math)))
    return "".join(pieces)


def _inline(math: str) -> str:
    """A formula in ``$...$``; the spaces between pieces and an indent stay text."""
    indent = math.startswith(r"\quad")
    core = math.removeprefix(r"\quad").strip()
    core = core.removeprefix("\\ ").removesuffix("\\").strip()
    lead = r"\hspace*{1.5em}" if indent else ""
    if not core or core == "\\":
        return lead + (" " if math.strip() else "")
    space_before = " " if math.startswith("\\ ") else ""
    space_after = " " if math.endswith("\\ ") else ""
    return f"{lead}{space_before}${core}${space_after}"
