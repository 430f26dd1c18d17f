"""Ranks, orientations and sizes of matrix expressions: where matrix text is refused.

Every name has a rank: declared (``x=1`` or an example shape ``X=(256, 512)``), or by
matrixcalculus.org's convention from its first letter (``a``-``g`` scalars, ``h``-``z`` vectors,
capitals matrices). Vectors are columns: ``x.T`` (``x'``) is a row. ``@`` is the matrix product
with that convention (``x.T @ A @ x`` is a scalar, ``x @ y.T`` the outer product) and, where the
convention has no product, numpy's rule for 1-d operands, which contracts a vector's one axis
(``x @ A`` is ``xᵀA``, a column as numpy's vectors are, ``A @ x.T`` is ``A x``, ``x @ y`` is
``xᵀy``). Elementwise operators
broadcast as numpy: a vector with a matrix goes along its last axis, added to each row.

Where the two readings of matrix text disagree the text is refused, never read one way
silently: ``*`` of a row vector with a matrix or a column (in matrix notation a product, in
numpy elementwise), a row and a column combined elementwise (numpy's 2-d arrays would make an
outer sum), and ``A^2`` of a matrix (a matrix power in matrix notation; ``A**2`` is elementwise).
"""

from __future__ import annotations

import operator
from typing import Mapping, NamedTuple

from .errors import EinsumSpecError
from .matrix_parser import (Applied, Assignment, Literal, Negated, Node, Operation, Raised, Symbol,
                            Transposed)

KINDS = ("scalar", "vector", "matrix")


class MatrixType(NamedTuple):
    """A rank (0, 1 or 2), whether a vector is a row, and the sizes known (None: unknown)."""

    rank: int
    row: bool = False
    sizes: tuple[int | None, ...] = ()

    @property
    def kind(self) -> str:
        return "row vector" if self.row else KINDS[self.rank]

    def shape_text(self) -> str:
        return "x".join("?" if s is None else str(s) for s in self.sizes)


def declared_types(declared: Mapping[str, object]) -> dict[str, MatrixType]:
    """``x=1`` (a rank) or ``X=(256, 512)`` (an example shape) as types; vectors are columns."""
    found = {}
    for name, value in declared.items():
        if isinstance(value, bool):
            raise EinsumSpecError(f"{name}={value!r}: declare a rank (0, 1 or 2) or an example shape")
        if isinstance(value, int) or _is_integer(value):
            rank = operator.index(value)
            if rank not in (0, 1, 2):
                raise EinsumSpecError(f"{name}={rank}: matrix notation has scalars, vectors and "
                                      "matrices, ranks 0, 1 and 2")
            found[name] = MatrixType(rank, False, (None,) * rank)
            continue
        if not isinstance(value, (tuple, list)) or not all(_is_integer(s) for s in value):
            raise EinsumSpecError(f"{name}={value!r}: declare a rank (0, 1 or 2) or an example shape, "
                                  "a tuple of sizes such as an array's .shape")
        sizes = tuple(operator.index(s) for s in value)
        if len(sizes) > 2 or any(s < 0 for s in sizes):
            raise EinsumSpecError(f"{name}={value!r}: a shape of at most two non-negative sizes "
                                  "(a scalar, a vector, a matrix)")
        found[name] = MatrixType(len(sizes), False, sizes)
    return found


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def conventional_rank(name: str) -> int | None:
    """matrixcalculus.org's rank for a name by its first letter (underscores aside), or None."""
    letter = name.lstrip("_")[:1]
    if not letter.isalpha():
        return None
    return 2 if letter.isupper() else 0 if letter <= "g" else 1


class Checker:
    """The types of one text's nodes, statement by statement; refuses what does not fit."""

    def __init__(self, text: str, declared: Mapping[str, MatrixType]):
        self.text = text
        self.declared = dict(declared)
        self.defined: dict[str, MatrixType] = {}
        self.inputs: dict[str, MatrixType] = {}
        self.types: dict[int, MatrixType] = {}  # id(node) -> its type; the nodes outlive the pass
        self.current: str | None = None

    def error(self, reason: str, column: int) -> EinsumSpecError:
        return EinsumSpecError(reason, self.text, column)

    def statement(self, assignment: Assignment) -> MatrixType:
        name = assignment.name
        if name is not None and name in self.defined:
            raise self.error(f"{name!r} is defined twice: each statement names a new result", assignment.column)
        if name is not None and name in self.inputs:
            raise self.error(f"{name!r} is read before this statement defines it: a statement reads "
                             "only earlier ones", assignment.column)
        self.current = name
        found = self.of(assignment.expression)
        self.current = None
        want = self.declared.get(name) if name is not None else None
        if want is not None:
            self.check_declared(name, want, found, assignment.column)
        if name is not None:
            self.defined[name] = found
        return found

    def check_declared(self, name, want: MatrixType, found: MatrixType, column: int) -> None:
        if want.rank != found.rank or any(w is not None and f is not None and w != f
                                          for w, f in zip(want.sizes, found.sizes)):
            raise self.error(f"{name!r} is declared a {KINDS[want.rank]} ({want.shape_text() or '()'}) "
                             f"but this statement makes a {found.kind} ({found.shape_text() or '()'})",
                             column)

    def of(self, node: Node) -> MatrixType:
        found = self.types.get(id(node))
        if found is None:
            found = self.types[id(node)] = self.compute(node)
        return found

    def compute(self, node: Node) -> MatrixType:
        if isinstance(node, Literal):
            return MatrixType(0)
        if isinstance(node, Symbol):
            return self.symbol(node)
        if isinstance(node, Negated):
            return self.of(node.operand)
        if isinstance(node, Transposed):
            t = self.of(node.operand)
            if t.rank == 0:
                raise self.error("the transpose of a scalar: '.T' and ' take a vector or a matrix", node.column)
            return MatrixType(t.rank, not t.row, t.sizes[::-1]) if t.rank == 1 else MatrixType(2, False, t.sizes[::-1])
        if isinstance(node, Raised):
            t = self.of(node.base)
            if t.rank == 2 and node.op == "^":
                raise self.error("'^' of a matrix: in matrix notation A^2 is A @ A; write A @ A for "
                                 "that, or A**2 for the elementwise power", node.column)
            return t
        if isinstance(node, Applied):
            return self.applied(node)
        if node.op == "@":
            return self.matmul(node)
        return self.elementwise(node)

    def symbol(self, node: Symbol) -> MatrixType:
        name = node.name
        if name == self.current:
            raise self.error(f"{name!r} is used in its own statement: a program is not recursive", node.column)
        if name in self.defined:
            return self.defined[name]
        found = self.inputs.get(name) or self.declared.get(name)
        if found is None:
            rank = conventional_rank(name)
            if rank is None:
                raise self.error(f"the rank of {name!r} is unknown: declare it (a scalar {name}=0, "
                                 f"a vector {name}=1, a matrix {name}=2, or an example shape)", node.column)
            found = MatrixType(rank, False, (None,) * rank)
        self.inputs[name] = found
        return found

    def applied(self, node: Applied) -> MatrixType:
        t, f = self.of(node.argument), node.function
        if f in ("sum", "norm"):
            return MatrixType(0)
        if f == "tr":
            if t.rank != 2:
                raise self.error(f"tr of a {t.kind}: the trace takes a square matrix", node.column)
            self.square(t, node.column, "tr")
            return MatrixType(0)
        if f == "diag":
            if t.rank == 0:
                raise self.error("diag of a scalar: diag takes a vector (giving a diagonal matrix) or "
                                 "a square matrix (giving its diagonal)", node.column)
            if t.rank == 1:
                return MatrixType(2, False, t.sizes * 2)
            return MatrixType(1, False, (self.square(t, node.column, "diag"),))
        return t

    def square(self, t: MatrixType, column: int, what: str) -> int | None:
        m, n = t.sizes
        if m is not None and n is not None and m != n:
            raise self.error(f"{what} of a {m}x{n} matrix: it takes a square one", column)
        return m if m is not None else n

    def matmul(self, node: Operation) -> MatrixType:
        a, b = self.of(node.left), self.of(node.right)
        if a.rank == 0 or b.rank == 0:
            raise self.error(f"'@' of a {a.kind} and a {b.kind}: '@' multiplies vectors and matrices; "
                             "a scalar multiplies with '*'", node.column)
        if a.rank == 1 and b.rank == 1 and not a.row and b.row:
            return MatrixType(2, False, (a.sizes[0], b.sizes[0]))  # the outer product x yᵀ
        left, right = a.sizes[-1], b.sizes[0]
        if left is not None and right is not None and left != right:
            raise self.error(f"the sizes do not fit: '@' of a {a.shape_text()} {a.kind} and a "
                             f"{b.shape_text()} {b.kind} contracts {left} with {right}", node.column)
        if a.rank == 2 and b.rank == 2:
            return MatrixType(2, False, (a.sizes[0], b.sizes[1]))
        if a.rank == 2:
            return MatrixType(1, False, (a.sizes[0],))
        if b.rank == 2:  # x.T @ A is a row; numpy's x @ A a vector as any other
            return MatrixType(1, a.row, (b.sizes[1],))
        return MatrixType(0)

    def elementwise(self, node: Operation) -> MatrixType:
        a, b = self.of(node.left), self.of(node.right)
        vectors = [t for t in (a, b) if t.rank == 1]
        if len(vectors) == 2 and a.row != b.row:
            raise self.error(f"{node.op!r} of a {a.kind} and a {b.kind}: matrix notation would make "
                             "them a matrix and numpy's 1-d arrays combine them entry by entry; "
                             "transpose one of them (for the products write x.T @ y or x @ y.T)", node.column)
        if node.op == "*" and any(t.row for t in vectors) and 2 in (a.rank, b.rank):
            raise self.error("'*' of a row vector and a matrix: '*' is elementwise, as in numpy; "
                             "the matrix product is '@' (x.T @ A)", node.column)
        rank = max(a.rank, b.rank)
        sizes = list((None,) * rank)
        for t in (a, b):
            for axis, size in zip(range(rank - t.rank, rank), t.sizes):
                if size is not None and sizes[axis] is not None and size != sizes[axis]:
                    raise self.error(f"the sizes do not fit: {node.op!r} of a {a.shape_text() or '()'} "
                                     f"{a.kind} and a {b.shape_text() or '()'} {b.kind} (a vector goes "
                                     "along a matrix's last axis)", node.column)
                sizes[axis] = size if size is not None else sizes[axis]
        row = bool(vectors) and rank == 1 and vectors[0].row
        return MatrixType(rank, row, tuple(sizes))
