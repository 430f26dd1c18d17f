"""Spec text -> :class:`Spec`. The only module that reads what the user typed.

The notation is numpy's einsum notation (letters, ``,``, ``->``, ``...``, spaces) with three
extensions that make it closed under differentiation:

* an output label that no input has is a broadcast (``"i->ij"``, its size given by ``sizes=``);
* a label repeated in the output places values on that diagonal, zeros elsewhere (``"i->ii"``);
* an output that omits an ellipsis the inputs have sums over those dimensions (``"...i->i"``).
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from .errors import EinsumSpecError

ELLIPSIS = "..."
LETTERS = frozenset(string.ascii_letters)
_ALLOWED = LETTERS | frozenset(",->. ")

Labels = tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """A parsed einsum spec: one label tuple per input and one for the output.

    A label is a single letter, or :data:`ELLIPSIS` standing for the batch dimensions. The
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
        return ",".join("".join(term) for term in self.inputs) + "->" + "".join(self.output)

    @property
    def labels(self) -> Labels:
        """Distinct letter labels in order of first appearance, inputs before output."""
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


def parse(text: str, sizes: Mapping | None = None) -> Spec:
    """Reads spec text; raises :class:`EinsumSpecError` pointing at the first problem.

    Args:
        text: the spec, e.g. ``"ik,jk->ij"`` or ``"...ij,...jk"`` (implicit output).
        sizes: sizes of labels that appear only in the output (broadcasts), and optionally of
            ``"..."`` as a tuple when only the output has an ellipsis.
    """
    if not isinstance(text, str):
        raise EinsumSpecError(f"a spec is a string, got {type(text).__name__}")
    for col, char in enumerate(text):
        if char not in _ALLOWED:
            raise EinsumSpecError(
                f"character {char!r} is not allowed in a spec: labels are the letters a-z and A-Z",
                text, col)
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
