"""Spec text -> :class:`Spec`. The only module that reads what the user typed.

The notation is numpy's einsum notation (labels, ``,``, ``->``, ``...``, spaces) with three
extensions that make it closed under differentiation:

* an output label that no input has is a broadcast (``"i->ij"``, its size given by ``sizes=``);
* a label repeated in the output places values on that diagonal, zeros elsewhere (``"i->ii"``);
* an output that omits an ellipsis the inputs have sums over those dimensions (``"...i->i"``).

A label is one character (:func:`is_label`): an ASCII letter, or any non-ASCII character but
whitespace, control characters and surrogates, so that the symbols opt_einsum and cotengra write
for networks of thousands of indices (``opt_einsum.get_symbol(i)``) are labels. Labels are never
normalised: ``é`` and ``e`` followed by a combining accent are different labels. The interleaved
form of numpy and opt_einsum (:func:`interleaved`, :func:`sublist_text`) is read into the same text.
"""

from __future__ import annotations

import string
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .errors import EinsumSpecError

ELLIPSIS = "..."
LETTERS = frozenset(string.ascii_letters)
SYNTAX = frozenset(",->. ")

Labels = tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """A parsed einsum spec: one label tuple per input and one for the output.

    A label is a single character (:func:`is_label`), or :data:`ELLIPSIS` standing for the
    batch dimensions. The
    output is always explicit (implicit mode is resolved while parsing). ``text`` and the
    columns only serve error messages; they take no part in equality.
    """

    inputs: tuple[Labels, ...]
    output: Labels
    text: str = field(default="", compare=False, repr=False)
    input_columns: tuple[tuple[int, ...], ...] = field(default=(), compare=False, repr=False)
    output_columns: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, inputs, output) -> "Spec":
        """Builds a spec from label tuples, with its canonical text as ``text``."""
        inputs = tuple(tuple(term) for term in inputs)
        output = tuple(output)
        columns, col = [], 0
        for term in inputs:
            columns.append(_columns(term, col))
            col += sum(len(label) for label in term) + 1
        col += 1  # "->" takes two characters where "," took one
        spec = cls(inputs, output)
        return cls(inputs, output, str(spec), tuple(columns), _columns(output, col))

    def __str__(self) -> str:
        return canonical_text(self.inputs, self.output)

    @property
    def labels(self) -> Labels:
        """Distinct labels (not the ellipsis) in order of first appearance, inputs before output."""
        seen = dict.fromkeys(label for term in (*self.inputs, self.output) for label in term)
        seen.pop(ELLIPSIS, None)
        return tuple(seen)

    def error(self, reason: str, operand: int | None = None, position: int = 0) -> EinsumSpecError:
        """An error pointing at label ``position`` of input ``operand`` (None: the output)."""
        text = self.text or str(self)
        columns = self.output_columns if operand is None else self.input_columns[operand]
        if not columns:  # an empty term or an implicit output: point where it would be
            column = len(text) if operand is None else _term_start(text, operand)
        else:
            column = columns[min(position, len(columns) - 1)]
        return EinsumSpecError(reason, text, column)


def canonical_text(inputs, output) -> str:
    """The canonical text of a spec of these label tuples (``str`` of its :class:`Spec`),
    without making one: a planner writes one per step."""
    return ",".join(["".join(term) for term in inputs]) + "->" + "".join(output)


def _columns(term: Labels, start: int) -> tuple[int, ...]:
    columns, col = [], start
    for label in term:
        columns.append(col)
        col += len(label)
    return tuple(columns)


def _term_start(text: str, operand: int) -> int:
    col = 0
    for _ in range(operand):
        col = text.index(",", col) + 1
    return col


def parse(text, sizes: Mapping | None = None) -> Spec:
    """Reads spec text; raises :class:`EinsumSpecError` pointing at the first problem.

    Args:
        text: the spec, e.g. ``"ik,jk->ij"`` or ``"...ij,...jk"`` (implicit output), or a
            pair of sublists (:func:`spec_text`).
        sizes: sizes of labels that appear only in the output (broadcasts), and optionally of
            ``"..."`` as a tuple when only the output has an ellipsis.
    """
    text = spec_text(text)
    for col, char in enumerate(text):
        if char not in SYNTAX and not is_label(char):
            raise EinsumSpecError(f"character {char!r} is not allowed in a spec ({describe(char)} at "
                                  f"position {col}): {_LABEL_RULE}", text, col)
        if char == "-" and text[col + 1:col + 2] != ">":
            raise EinsumSpecError("'-' must be followed by '>' to form '->'", text, col)
        if char == ">" and text[col - 1:col] != "-" or char == ">" and col == 0:
            raise EinsumSpecError("'>' must follow '-' to form '->'", text, col)
    arrow = text.find("->")
    if arrow >= 0 and text.find("->", arrow + 1) >= 0:
        raise EinsumSpecError("a spec has at most one '->'", text, text.find("->", arrow + 1))

    end = arrow if arrow >= 0 else len(text)
    inputs, input_columns, start = [], [], 0
    while True:
        comma = text.find(",", start, end)
        stop = end if comma < 0 else comma
        labels, columns = _read_term(text, start, stop)
        inputs.append(labels)
        input_columns.append(columns)
        if comma < 0:
            break
        start = comma + 1

    if arrow < 0:
        counts = Counter(label for term in inputs for label in term if label != ELLIPSIS)
        output = tuple(sorted(label for label, count in counts.items() if count == 1))
        if any(ELLIPSIS in term for term in inputs):
            output = (ELLIPSIS,) + output
        output_columns = ()
    else:
        comma = text.find(",", arrow + 2)
        if comma >= 0:
            raise EinsumSpecError(
                "the output is a single term and cannot contain ','; "
                "list the operands' subscripts before '->'", text, comma)
        output, output_columns = _read_term(text, arrow + 2, len(text))

    spec = Spec(tuple(inputs), output, text, tuple(input_columns), output_columns)
    _check_output_labels(spec, _check_sizes(spec, sizes))
    return spec


_LABEL_RULE = ("a label is an ASCII letter or a non-ASCII character other than whitespace, "
               "control characters and surrogates; ',' '->' '...' and spaces are the syntax")


def is_label(char: str) -> bool:
    """Whether one character is a label: an ASCII letter, or a non-ASCII character that is not
    whitespace (a separator), a control character or a surrogate (which no encoding writes).
    Every ``opt_einsum.get_symbol(i)`` passes up to ``i = 5619`` (the first whitespace), as
    does every symbol of :func:`symbol` that is a label at all."""
    if char.isascii():
        return char in LETTERS
    return not char.isspace() and unicodedata.category(char) not in ("Cc", "Cs")


def ascii_text(text: str) -> str:
    """Spec text as generated source writes it: each non-ASCII label as a Python escape
    (``\\xe0``, ``\\u0100``), so that no label of the user's reaches the source (an escape in a
    string literal reads back as the label). ASCII text is unchanged."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def describe(char: str) -> str:
    """A character's code point and Unicode name, for an error naming it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{' ' + name if name else ''}"


def symbol(i: int) -> str:
    """The ``i``-th symbol as opt_einsum and cotengra number them: ``a``-``z``, ``A``-``Z``, then
    code points from U+00C0 on, surrogates skipped (cotengra's ``get_symbol``; opt_einsum's
    agrees below ``i = 55156``). Not every symbol is a label (:func:`is_label`)."""
    if i < len(string.ascii_letters):
        return string.ascii_letters[i]
    code = i + 140
    return chr(code if code < 0xD800 else code + 0x800)


def unused_labels(taken):
    """Symbols that are labels and not in ``taken``, in order."""
    i = 0
    while True:
        char = symbol(i)
        if char not in taken and is_label(char):
            yield char
        i += 1


def spec_text(spec) -> str:
    """The text of a spec given as text, or as a pair ``(sublists, output)`` of the sublist form
    (:func:`sublist_text`; ``output`` None for the implicit output), e.g.
    ``([[0, 1], [1, 2]], [0, 2])`` for ``"ab,bc->ac"``."""
    if isinstance(spec, str):
        return spec
    if is_sublist_pair(spec):
        return sublist_text(spec[0], spec[1])
    raise EinsumSpecError(f"a spec is a pair (sublists, output sublist) or a string, got {type(spec).__name__}")


def is_sublist_pair(value) -> bool:
    """Whether ``value`` is a spec as a pair ``(sublists, output)``, not an operand."""
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (list, tuple))
            and all(_is_sublist(s) for s in value[0]) and (value[1] is None or _is_sublist(value[1])))


def _is_sublist(value) -> bool:
    """A list, tuple or range, or a 1-d array of integers (numpy takes one)."""
    if isinstance(value, (list, tuple, range)):
        return True
    dtype = getattr(value, "dtype", None)
    return hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1 and getattr(dtype, "kind", "") in ("i", "u")


def looks_interleaved(args: Sequence) -> bool:
    """Whether call arguments whose first is not a spec are in the interleaved form: an
    operand, then a sublist."""
    return len(args) >= 2 and _is_sublist(args[1])


def interleaved(args: Sequence) -> tuple[str, tuple]:
    """The spec text and operands of the interleaved form ``x0, [0, 1], x1, [1, 2], [0, 2]``:
    each operand followed by its sublist, then optionally the output's (as numpy's and
    opt_einsum's einsum take it)."""
    count = len(args) // 2
    operands, sublists = tuple(args[0:2 * count:2]), list(args[1:2 * count:2])
    for i, sublist in enumerate(sublists):
        if not _is_sublist(sublist):
            raise EinsumSpecError(
                f"einsum() takes a spec then operands, or the interleaved form (operand, [labels], "
                f"..., [output labels]); argument {2 * i + 1} is {type(sublist).__name__}, not a list of labels")
    output = None
    if len(args) % 2:
        output = args[-1]
        if not _is_sublist(output):
            raise EinsumSpecError(f"the output sublist must be a list of labels, got {type(output).__name__}")
    return sublist_text(sublists, output), operands


def sublist_text(sublists: Sequence, output=None) -> str:
    """Spec text for sublists of labels: any hashable values (not bools), ``...`` the ellipsis.

    A non-negative integer ``i`` is written :func:`symbol(i) <symbol>` (``0``-``25`` are
    ``a``-``z`` and ``26``-``51`` are ``A``-``Z``, as in numpy's and torch's sublists), any
    other label the next free label. Without ``output`` the output is, as in numpy, the
    labels seen once in sorted order (after the ellipsis, if any): they must be comparable.
    """
    if not sublists:
        raise EinsumSpecError("the sublist form needs at least one operand and its sublist")
    terms = [_sublist_labels(s, f"operand {i}'s sublist") for i, s in enumerate(sublists)]
    if output is None:
        counts = Counter(label for term in terms for label in term if label is not Ellipsis)
        try:
            once = sorted(label for label, n in counts.items() if n == 1)
        except TypeError:
            raise EinsumSpecError("the labels of the sublists cannot be sorted into an implicit output "
                                  "(they mix types); give the output sublist") from None
        out = [Ellipsis] * any(Ellipsis in term for term in terms) + once
    else:
        out = _sublist_labels(output, "the output sublist")
    labels = dict.fromkeys(label for term in (*terms, out) for label in term if label is not Ellipsis)
    named = {label: symbol(label) for label in labels if _is_index(label) and is_label(symbol(label))}
    free = unused_labels(set(named.values()))
    named.update((label, next(free)) for label in labels if label not in named)
    write = lambda term: "".join(ELLIPSIS if l is Ellipsis else named[l] for l in term)  # noqa: E731
    return ",".join(map(write, terms)) + "->" + write(out)


def _is_index(label) -> bool:
    """Whether an integer label has a :func:`symbol` of its own."""
    return isinstance(label, int) and 0 <= label <= _LAST_SYMBOL


_LAST_SYMBOL = sys.maxunicode - 0x800 - 140  # symbol(i) is chr(i + 140 + 0x800) past the surrogates


def _sublist_labels(sublist, name: str) -> list:
    labels = sublist.tolist() if hasattr(sublist, "tolist") else list(sublist)
    for label in labels:
        is_bool = isinstance(label, bool) or getattr(getattr(label, "dtype", None), "kind", "") == "b"
        if is_bool or label is not Ellipsis and not _hashable(label):
            raise EinsumSpecError(f"{name} holds {label!r}: a label is a hashable value other than a "
                                  "bool (an integer, a string...), or ... for the ellipsis")
    return [int(l) if hasattr(l, "__index__") and not isinstance(l, int) else l for l in labels]


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _read_term(text: str, start: int, stop: int) -> tuple[Labels, tuple[int, ...]]:
    labels, columns, col = [], [], start
    while col < stop:
        char = text[col]
        if char == " ":
            col += 1
            continue
        if char == ".":
            if text[col:col + 3] != ELLIPSIS or col + 3 > stop or text[col + 3:col + 4] == ".":
                raise EinsumSpecError("'.' may only appear as an ellipsis of exactly three dots",
                                      text, col)
            if ELLIPSIS in labels:
                raise EinsumSpecError("a term may hold at most one ellipsis '...'", text, col)
            labels.append(ELLIPSIS)
            columns.append(col)
            col += 3
            continue
        labels.append(char)
        columns.append(col)
        col += 1
    return tuple(labels), tuple(columns)


def _check_sizes(spec: Spec, sizes: Mapping | None) -> dict:
    """Validates ``sizes=``: known labels only, non-negative integers below 2**63."""
    if sizes is None:
        return {}
    if not isinstance(sizes, Mapping):
        raise EinsumSpecError(f"sizes must be a mapping from label to size, got {type(sizes).__name__}")
    known = set(spec.labels) | {ELLIPSIS}
    checked = {}
    for label, size in sizes.items():
        if label not in known:
            raise EinsumSpecError(
                f"sizes names {label!r}, which is not a label of the spec", spec.text or str(spec))
        if label == ELLIPSIS:
            dims = tuple(size) if isinstance(size, (tuple, list)) else None
            if dims is None or not all(_is_size(d) for d in dims):
                raise EinsumSpecError(f"sizes['...'] must be a tuple of non-negative integers, got {size!r}")
            if any(d.__index__() >= SIZE_LIMIT for d in dims):
                raise EinsumSpecError(f"sizes['...'] = {size!r} is too large: {_TOO_LARGE}")
            checked[label] = tuple(int(d) for d in dims)
        elif not _is_size(size):
            raise EinsumSpecError(f"sizes[{label!r}] must be a non-negative integer, got {size!r}")
        elif size.__index__() >= SIZE_LIMIT:
            raise EinsumSpecError(f"sizes[{label!r}] = {size!r} is too large: {_TOO_LARGE}")
        else:
            checked[label] = int(size)
    return checked


SIZE_LIMIT = 2**63  # numpy counts a dimension's elements in an int64
_TOO_LARGE = "a dimension holds fewer than 2**63 elements"


def _is_size(value) -> bool:
    return hasattr(value, "__index__") and not isinstance(value, bool) and value.__index__() >= 0


def _check_output_labels(spec: Spec, sizes: Mapping) -> None:
    """An output label that no input has is a broadcast, so its size must be given."""
    in_inputs = {label for term in spec.inputs for label in term}
    for position, label in enumerate(spec.output):
        if label in in_inputs or label in sizes or label == ELLIPSIS:
            continue
        known = "".join(dict.fromkeys(l for t in spec.inputs for l in t if l != ELLIPSIS))
        raise spec.error(
            f"output label {label!r} appears in no input: if it is a typo, the inputs' labels are "
            f"{known!r}; if you mean a broadcast along a new axis, give its size with "
            f"sizes={{{label!r}: N}}", None, position)


def normalize_sizes(spec: Spec, sizes: Mapping | None) -> tuple[tuple[str, object], ...]:
    """``sizes=`` as a sorted, hashable tuple of pairs (validated again)."""
    return tuple(sorted(_check_sizes(spec, sizes).items()))
