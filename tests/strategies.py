"""Hypothesis strategies for random einsum problems, independent of einsgrad's parser.

Specs are built from label lists, so the tests know each operand's labels without
parsing; ``numpy.einsum`` is the arbiter of what a valid (non-extended) problem is.
The helpers at the bottom (tokenizing, rendering, renaming, making an implicit output
explicit) are a second, deliberately tiny implementation of the notation, used for
metamorphic tests.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

ELL = "..."
LETTERS = string.ascii_lowercase + string.ascii_uppercase
FLOAT64 = np.dtype(np.float64)
COMPLEX128 = np.dtype(np.complex128)
FLOAT32 = np.dtype(np.float32)
COMPLEX64 = np.dtype(np.complex64)
EXACT_DTYPES = (FLOAT64, COMPLEX128)
ALL_DTYPES = (FLOAT64, COMPLEX128, FLOAT32, COMPLEX64)
LOW_DTYPES = (FLOAT32, COMPLEX64)

Term = tuple[str, ...]


@dataclass(frozen=True)
class Case:
    """One einsum problem: the spec as typed, its label lists, shapes, dtypes and data seed.

    Attributes:
        spec: the text handed to einsgrad (may hold spaces, may be implicit).
        inputs: labels of each operand; ``"..."`` stands for an ellipsis.
        output: output labels, or None for implicit mode.
        shapes: one shape per operand.
        dtypes: one dtype per operand.
        seed: seed of the operand and cotangent values.
        sizes: ``sizes=`` for einsgrad (labels only the output has), extended cases only.
    """

    spec: str
    inputs: tuple[Term, ...]
    output: Term | None
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    seed: int
    sizes: dict = field(default_factory=dict, compare=False)

    @property
    def clean_spec(self) -> str:
        """The spec without spaces."""
        return self.spec.replace(" ", "")

    @property
    def explicit_output(self) -> Term:
        """The output labels, implicit mode resolved by numpy's rule."""
        return self.output if self.output is not None else implicit_output(self.inputs)

    @property
    def explicit_spec(self) -> str:
        """The spec with an explicit output and no spaces."""
        return render(self.inputs, self.explicit_output)

    @property
    def result_dtype(self) -> np.dtype:
        """The dtype numpy gives the result (and the cotangent we draw)."""
        return np.result_type(*self.dtypes) if self.dtypes else FLOAT64

    def operands(self) -> list[np.ndarray]:
        """Fresh operand arrays (same values on every call)."""
        rng = np.random.default_rng(self.seed)
        return [random_array(rng, shape, dtype) for shape, dtype in zip(self.shapes, self.dtypes)]

    def cotangent(self, shape, dtype=None) -> np.ndarray:
        """A random cotangent of ``shape``, by default of the result dtype (fresh on every
        call); a complex ``dtype`` for a real result is a complex loss downstream."""
        rng = np.random.default_rng(self.seed + 1)
        return random_array(rng, tuple(shape), self.result_dtype if dtype is None else dtype)


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal values (real and imaginary parts for complex dtypes)."""
    dtype = np.dtype(dtype)
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return np.asarray(values, dtype=dtype)


# -- the notation, re-implemented minimally ----------------------------------------------


def render(inputs, output, spaces=None) -> str:
    """Spec text from label lists; ``output=None`` gives implicit mode.

    ``spaces`` is an iterator of booleans, one per gap between tokens: True puts a space.
    """
    def gap() -> str:
        return " " if spaces is not None and next(spaces, False) else ""

    def join(term) -> str:
        return "".join(label + (gap() if j < len(term) - 1 else "") for j, label in enumerate(term))

    parts = []
    for i, term in enumerate(inputs):
        if i:
            parts.append(gap() + "," + gap())
        parts.append(join(term))
    if output is not None:
        parts.append(gap() + "->" + gap() + join(output))
    return gap() + "".join(parts) + gap()


def tokenize(spec: str) -> tuple[tuple[Term, ...], Term | None]:
    """Label lists of a spec; the output is None in implicit mode."""
    spec = spec.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")

    def term(text: str) -> Term:
        head, dots, tail = text.partition(ELL)
        return tuple(head) + ((ELL,) if dots else ()) + tuple(tail)

    return tuple(term(t) for t in lhs.split(",")), (term(rhs) if arrow else None)


def implicit_output(inputs) -> Term:
    """numpy's implicit output: labels seen exactly once, in ASCII order, batch first."""
    letters = [label for term in inputs for label in term if label != ELL]
    once = sorted(label for label in set(letters) if letters.count(label) == 1)
    has_ellipsis = any(ELL in term for term in inputs)
    return ((ELL,) if has_ellipsis else ()) + tuple(once)


def rename(term: Term, mapping: dict) -> Term:
    """``term`` with every letter replaced through ``mapping``."""
    return tuple(mapping.get(label, label) for label in term)


def batch_rank(term: Term, shape) -> int:
    """How many dimensions the ellipsis of ``term`` stands for (0 without one)."""
    return len(shape) - (len(term) - 1) if ELL in term else 0


def label_sizes(case: Case) -> tuple[dict, tuple[int, ...]]:
    """Each letter's size across the operands (a size other than 1 wins, as numpy
    broadcasts) and the broadcast shape of the batch dimensions."""
    size, batches = {}, []
    for term, shape in zip(case.inputs, case.shapes):
        rank, dims = batch_rank(term, shape), iter(shape)
        for label in term:
            if label == ELL:
                batches.append(tuple(next(dims) for _ in range(rank)))
                continue
            d = next(dims)
            if d != 1:
                size[label] = d
            else:
                size.setdefault(label, 1)
    return size, (np.broadcast_shapes(*batches) if batches else ())


# -- strategies --------------------------------------------------------------------------


def _validate(inputs, output, shapes) -> tuple[int, ...]:
    """The numpy output shape; rejects the example when numpy refuses the problem."""
    arrays = [np.zeros(shape) for shape in shapes]
    try:
        return np.einsum(render(inputs, output), *arrays).shape
    except ValueError:
        assume(False)
        raise  # unreachable


@st.composite
def _terms(draw, max_operands: int, max_labels: int, max_rank: int, min_operands: int = 1):
    """Operand label lists and label sizes (no ellipsis yet): mostly distinct letters per
    operand, sometimes one repeated (a diagonal or a trace)."""
    count = draw(st.integers(1, max_labels), label="distinct letters")
    pool = draw(st.lists(st.sampled_from(LETTERS), min_size=count, max_size=count, unique=True))
    size = {label: draw(st.integers(1, 3), label=f"size {label}") for label in pool}
    if draw(st.integers(0, 15)) == 0:  # occasionally an empty dimension
        size[draw(st.sampled_from(pool))] = 0
    inputs = []
    for _ in range(draw(st.integers(min_operands, max_operands), label="operands")):
        length = draw(st.integers(0, min(max_rank, len(pool))))
        term = list(draw(st.permutations(pool))[:length])
        if term and draw(st.integers(0, 3)) == 0:
            term.insert(draw(st.integers(0, len(term))), draw(st.sampled_from(term)))
        inputs.append(tuple(term))
    return inputs, size


@st.composite
def einsum_cases(draw, dtypes=ALL_DTYPES, max_operands: int = 4, max_labels: int = 6,
                 max_rank: int = 4, ellipsis: bool = True, implicit: bool = True,
                 spaces: bool = True, broadcast: bool = True, mixed: bool = True,
                 require_ellipsis: bool = False, equal_batch_ranks: bool = False,
                 min_operands: int = 1):
    """Valid ``numpy.einsum`` problems, as :class:`Case`.

    Args:
        dtypes: dtypes to draw from.
        max_operands: at most this many operands.
        min_operands: at least this many operands (one by default).
        max_labels: at most this many distinct letters.
        max_rank: at most this many letters per operand (repeats allowed).
        ellipsis: sometimes give some operands an ellipsis.
        implicit: sometimes leave out ``->``.
        spaces: sometimes put spaces between tokens.
        broadcast: sometimes give a labelled dimension size 1 in one operand while another
            operand has the full size, and batch dimensions of size 1.
        mixed: sometimes give operands different dtypes.
        require_ellipsis: always give at least one operand an ellipsis.
        equal_batch_ranks: every ellipsis stands for the same number of dimensions.
    """
    inputs, size = draw(_terms(max_operands, max_labels, max_rank, min_operands))
    n = len(inputs)

    # Labelled size-1 broadcasting: (operand, label) pairs shrunk to 1 in that operand.
    shrunk = set()
    if broadcast and draw(st.booleans()):
        pairs = sorted({(i, label) for i, term in enumerate(inputs) for label in term})
        if pairs:
            shrunk = set(draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3)))

    # Ellipsis: a batch shape; each operand with an ellipsis takes a suffix of it, some of
    # its dimensions possibly 1.
    batch, batch_of = (), {}
    if require_ellipsis or ellipsis and draw(st.booleans()):
        batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        holders = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        common = draw(st.integers(0, len(batch)))
        for i in holders:
            rank = common if equal_batch_ranks else draw(st.integers(0, len(batch)))
            dims = list(batch[len(batch) - rank:])
            if broadcast:
                dims = [1 if draw(st.integers(0, 3)) == 0 else d for d in dims]
            position = draw(st.integers(0, len(inputs[i])))
            inputs[i] = inputs[i][:position] + (ELL,) + inputs[i][position:]
            batch_of[i] = tuple(dims)

    shapes = []
    for i, term in enumerate(inputs):
        shape = []
        for label in term:
            if label == ELL:
                shape.extend(batch_of[i])
            else:
                shape.append(1 if (i, label) in shrunk else size[label])
        shapes.append(tuple(shape))

    output = None
    if not (implicit and draw(st.booleans())):
        used = sorted({label for term in inputs for label in term if label != ELL})
        output = tuple(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
        all_empty = all(len(dims) == 0 for dims in batch_of.values())
        if batch_of and not (all_empty and draw(st.booleans())):  # numpy needs it unless empty
            output = list(output)
            output.insert(draw(st.integers(0, len(output))), ELL)
            output = tuple(output)
    _validate(inputs, output, shapes)

    if mixed and draw(st.booleans()):
        chosen = tuple(np.dtype(draw(st.sampled_from(dtypes))) for _ in range(n))
    else:
        chosen = (np.dtype(draw(st.sampled_from(dtypes))),) * n
    gaps = iter(draw(st.lists(st.booleans(), min_size=64, max_size=64))) if spaces and draw(
        st.booleans()) else None
    spec = render(inputs, output, gaps)
    seed = draw(st.integers(0, 2**32 - 1))
    return Case(spec, tuple(inputs), output, tuple(shapes), chosen, seed)


@st.composite
def extended_cases(draw, dtypes=EXACT_DTYPES, max_operands: int = 3):
    """Problems in einsgrad's extended notation, which numpy refuses or reads differently.

    Each has at least one of: an output label no input has (a broadcast, sized through
    ``sizes=``), a label repeated in the output (values on the diagonal), or an ellipsis the
    inputs have and the output omits (a sum over the batch dimensions), or an ellipsis only
    the output has (its dimensions given as ``sizes["..."]``). No size-1 label broadcasting:
    every operand gives a label its full size.
    """
    inputs, size = draw(_terms(max_operands, 5, 3))
    n = len(inputs)
    batch_of = {}
    if draw(st.booleans()):
        batch = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)):
            inputs[i] = inputs[i] + (ELL,) if draw(st.booleans()) else (ELL,) + inputs[i]
            batch_of[i] = batch[len(batch) - draw(st.integers(0, len(batch))):]
    shapes = tuple(
        tuple(d for label in term for d in (batch_of[i] if label == ELL else (size[label],)))
        for i, term in enumerate(inputs))

    used = sorted({label for term in inputs for label in term if label != ELL})
    fresh = [label for label in LETTERS if label not in size]
    new = draw(st.lists(st.sampled_from(fresh[:6]), max_size=2, unique=True))
    sizes = {label: draw(st.integers(1, 3)) for label in new}
    output = list(draw(st.lists(st.sampled_from(used + new), max_size=4)) if used + new else [])
    if batch_of and draw(st.booleans()):
        output.insert(draw(st.integers(0, len(output))), ELL)
    elif not batch_of and draw(st.integers(0, 3)) == 0:  # batch dimensions only the output has
        output.insert(draw(st.integers(0, len(output))), ELL)
        sizes[ELL] = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        new.append(ELL)
    letters = [label for label in output if label != ELL]
    extended = (set(letters) - set(used)) or len(set(letters)) != len(letters) or (
        batch_of and ELL not in output) or ELL in sizes
    if not extended:  # make it extended: repeat an output label, else broadcast a new one
        if letters:
            output.insert(draw(st.integers(0, len(output))), draw(st.sampled_from(letters)))
        else:
            new.append(fresh[0] if fresh[0] not in new else fresh[1])
            sizes[new[-1]] = draw(st.integers(1, 3))
            output.append(new[-1])
    output = tuple(output)

    chosen = tuple(np.dtype(draw(st.sampled_from(dtypes))) for _ in range(n))
    seed = draw(st.integers(0, 2**32 - 1))
    return Case(render(inputs, output), tuple(inputs), output, shapes, chosen, seed,
                {label: sizes[label] for label in new if label in output})


# -- labels beyond the 52 letters ------------------------------------------------------------


def opt_einsum_symbol(i: int) -> str:
    """``opt_einsum.get_symbol(i)``: the symbols opt_einsum and cotengra write networks with."""
    import opt_einsum

    return opt_einsum.get_symbol(i)


@dataclass(frozen=True)
class Relabelled:
    """A case whose letters are renamed to symbols far past the 52 letters.

    Attributes:
        case: the case in ASCII letters (numpy reads it).
        spec: the same problem in the new symbols, as typed (may be implicit, may hold spaces).
        ascii_spec: the explicit ASCII spec that means what ``spec`` means; with an implicit
            output, the output is ordered as the new symbols sort (numpy's rule, by code point).
        mapping: letter -> symbol.
    """

    case: Case
    spec: str
    ascii_spec: str
    mapping: dict


@st.composite
def relabelled_cases(draw, cases, first: int = 52, last: int = 50000):
    """``cases`` with their letters renamed to ``opt_einsum.get_symbol(i)`` for distinct ``i``
    drawn from ``[first, last)``, whitespace symbols skipped (whitespace is syntax)."""
    case = draw(cases)
    letters = sorted({label for term in case.inputs for label in term if label != ELL})
    codes = draw(st.lists(st.integers(first, last - 1).filter(lambda i: not opt_einsum_symbol(i).isspace()),
                          min_size=len(letters), max_size=len(letters), unique=True), label="symbols")
    mapping = {letter: opt_einsum_symbol(i) for letter, i in zip(letters, codes)}
    back = {symbol: letter for letter, symbol in mapping.items()}
    inputs = tuple(rename(term, mapping) for term in case.inputs)
    output = None if case.output is None else rename(case.output, mapping)
    spaces = iter(draw(st.lists(st.booleans(), min_size=64, max_size=64))) if draw(st.booleans()) else None
    spec = render(inputs, output, spaces)
    explicit = implicit_output(inputs) if output is None else output
    return Relabelled(case, spec, render(case.inputs, rename(explicit, back)), mapping)
