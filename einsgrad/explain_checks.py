"""The arguments of :func:`einsgrad.explain` checked, and the names a derivation writes.

Refusals say what is wrong and how to write it instead: a matrix expression where labels are
expected, names that clash with labels or with each other, a derivation too long to read.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Sequence

from .algebra import PRIME, Fresh
from .errors import EinsumSpecError
from .render import BATCH_SYMBOL, FRESH_BATCH
from .spec import ELLIPSIS, Spec

STYLES = ("index", "differential", "matrix")
# Each operand's section writes every factor of the forward a few times: n sections of a spec
# with n operands are quadratic in n, so the text explain writes is bounded.
MAX_WRITTEN = 20000  # sections times (operands + label occurrences)
RESERVED = ("L", "G")  # the loss and the cotangent G = ∂L/∂Y

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


_HINT = ("einsgrad wants one letter per index and a comma between operands, like 'ij,jk->ik' "
         "(names go in names=), or a program in index notation, like "
         "einsgrad.program(\"Y[i,k] = A[i,j] * B[j,k]\")")


def check_notation(spec: Spec) -> None:
    """Refuses a label that the derivation writes as notation, where it would read as that:
    the batch indices ``β`` and ``γ`` of a spec with ``...``, and the marks of primed indices
    (``p′``, ``p⁽⁴⁾``), which a spec of more than 52 labels needs."""
    notation = {PRIME, "⁽", "⁾", *"⁰¹²³⁴⁵⁶⁷⁸⁹"}
    if any(ELLIPSIS in term for term in (*spec.inputs, spec.output)):
        notation |= {BATCH_SYMBOL, FRESH_BATCH}
    for k, term in enumerate((*spec.inputs, spec.output)):
        for position, label in enumerate(term):
            if label in notation:
                raise spec.error(f"the label {label!r} is a symbol the explanation writes its "
                                 "own indices with, so it would read as that; rename it to explain "
                                 "this spec (compile and the rest take it)",
                                 k if k < len(spec.inputs) else None, position)


def check_readable(spec: Spec, names) -> None:
    """Refuses text that reads as a matrix expression rather than einsum labels.

    numpy takes ``"A X B"`` as one operand with labels A, X, B (implicit output ``ABX``), and
    ``compile`` follows numpy; explaining that would be nonsense. So: no space between two
    letters of one term, and in implicit mode with default names, no operand holding the
    letter that would have been its name (``"AB"``: operand A with a label A).
    """
    text = spec.text
    terms = [*zip(spec.inputs, spec.input_columns), (spec.output, spec.output_columns)]
    for n, (term, columns) in enumerate(terms):
        for label, col, after, nxt in zip(term, columns, columns[1:], term[1:]):
            gap = text.find(" ", col + 1, after)
            if ELLIPSIS not in (label, nxt) and gap >= 0:
                where = f"operand {n}" if n < len(spec.inputs) else "the output"
                raise EinsumSpecError(f"a space separates two labels of {where}, which numpy "
                                      f"reads as one term {''.join(term)!r}; {_HINT}", text, gap)
    if "->" in text or names is not None:
        return
    positional = [c for c in string.ascii_uppercase if c not in ("Y", *RESERVED)]
    for k, term in enumerate(spec.inputs[:len(positional)]):
        if positional[k] in term:
            raise spec.error(f"operand {k} holds {positional[k]!r}, the name an operand in its "
                             f"place gets, so this reads as a product of named matrices; "
                             f"{_HINT}", k, term.index(positional[k]))


@dataclass(frozen=True)
class Symbols:
    """Every name a derivation writes besides the labels; no two share a spelling.

    Attributes:
        names: the operands' names.
        out: the output's name.
        loss: the scalar loss, ``L`` unless that is a label.
        cotangent: ``∂L/∂out``, ``G`` unless that is a label.
        taken: every symbol in use (labels, the names above, ``I`` the identity): fresh
            indices avoid them all.
    """

    names: tuple[str, ...]
    out: str
    loss: str
    cotangent: str
    taken: frozenset


def check_names(names, spec: Spec, out) -> Symbols:
    """Validates names and out, and picks fresh ones for the rest.

    A given name may not be a label of the spec (``∂L/∂i_ij`` would use ``i`` twice); default
    names, the default output name, ``L`` and ``G`` avoid every label and every given name.
    """
    labels = set(spec.labels)
    if out is not None and (not isinstance(out, str) or not _NAME.match(out)):
        raise EinsumSpecError(f"out must be an identifier (a letter, then letters, digits or "
                              f"underscores), got {out!r}")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    elif isinstance(names, Sequence):
        names = list(names)
    elif names is not None:
        raise EinsumSpecError(f"names must be a string like 'X,W' or a sequence of strings, "
                              f"got {type(names).__name__}")
    count = len(spec.inputs)
    if names is not None and len(names) != count:
        raise EinsumSpecError(f"names gives {len(names)} name(s) for {count} operand(s)")
    for name in names or ():
        if not isinstance(name, str) or not _NAME.match(name):
            raise EinsumSpecError(f"the name {name!r} is not an identifier (a letter, then "
                                  f"letters, digits or underscores)")
    for name in (*(names or ()), *([out] if out else [])):
        if name in RESERVED:
            raise EinsumSpecError(f"the name {name!r} is reserved: L is the loss and "
                                  f"G = ∂L/∂{out or 'Y'} the cotangent")
        if name in labels:
            k = next(k for k, t in enumerate(spec.inputs) if name in t) if any(
                name in t for t in spec.inputs) else None
            term = spec.output if k is None else spec.inputs[k]
            raise spec.error(f"the name {name!r} is also a label of the spec, so {name} would "
                             f"mean two things: give names that are not labels; {_HINT}",
                             k, term.index(name))
    given = {*(names or ()), *([out] if out else [])}
    if names is not None and (len(set(names)) != len(names) or out in names):
        raise EinsumSpecError(f"names and out must be distinct: each is its own variable, got "
                              f"{', '.join(names)} and out={out}")
    letters = Fresh(labels | given | set(RESERVED) | {"I"}, string.ascii_uppercase)
    if out is None:
        out = Fresh(letters.taken, "YZ" + string.ascii_uppercase).take()
        letters.taken.add(out)
    if names is None:
        names = [letters.take() for _ in range(count)]
    loss, cotangent = (Fresh(labels | {out, *names}, first).take() for first in RESERVED)
    taken = frozenset(labels | {out, *names, loss, cotangent, "I"})
    return Symbols(tuple(names), out, loss, cotangent, taken)


def check_written(spec: Spec, chosen) -> None:
    """Refuses a derivation longer than :data:`MAX_WRITTEN` (it would take long and help no
    reader): each chosen operand's section repeats every label of the spec."""
    size = len(spec.inputs) + sum(map(len, spec.inputs)) + len(spec.output)
    if len(chosen) * size > MAX_WRITTEN:
        way_out = ("give wrt= fewer operands" if len(chosen) > 1 else
                   "no reader follows a derivation this long; grad_spec() gives the backward")
        raise EinsumSpecError(f"explaining {len(chosen)} operand(s) of a spec with {size} "
                              f"operands and labels writes {len(chosen) * size} of them, more "
                              f"than {MAX_WRITTEN}: {way_out}")


def check_style(style) -> str:
    if style not in STYLES:
        raise EinsumSpecError(f"style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    return style
