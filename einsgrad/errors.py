"""The one exception einsgrad raises for bad input."""

from __future__ import annotations


class EinsumSpecError(ValueError):
    """A spec, an operand's shape or an argument is wrong.

    The message says what is wrong; when the problem sits in the spec text, the text is
    repeated under it with a caret at the offending column; of a text of several lines, the
    line the column falls in, named by its number.

    Attributes:
        reason: what is wrong, in one sentence.
        spec: the spec text the caret points into, or None.
        column: the column of the caret in ``spec``, or None.
    """

    def __init__(self, reason: str, spec: str | None = None, column: int | None = None):
        self.reason = reason
        self.spec = spec
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        if self.spec is None:
            return self.reason
        if "\n" in self.spec and self.column is not None:
            begin = self.spec.rfind("\n", 0, self.column) + 1
            end = self.spec.find("\n", self.column)
            line = self.spec[begin:None if end < 0 else end]
            number = self.spec.count("\n", 0, begin) + 1
            return (f"{self.reason}\n    line {number}: {line}\n    "
                    + " " * (len(f"line {number}: ") + self.column - begin) + "^")
        text = f"{self.reason}\n    {self.spec}"
        if self.column is not None:
            text += "\n    " + " " * self.column + "^"
        return text
