"""Spec -> :class:`Explanation`: the gradient of every operand derived as one writes it by hand.

For the linear layer ``Y = X Wᵀ`` (``"ik,jk->ij"``) the derivation of ``∂L/∂W`` reads::

    1. Forward: Y_ij = Σ_k X_ik W_jk
    2. Chain rule for one entry: ∂L/∂W_pq = Σ_ij G_ij ∂Y_ij/∂W_pq, with G = ∂L/∂Y
    3. ∂W_jk/∂W_pq = δ_jp δ_kq, so ∂Y_ij/∂W_pq = Σ_k X_ik δ_jp δ_kq = X_iq δ_jp
    4. ∂L/∂W_pq = Σ_ij G_ij X_iq δ_jp = Σ_i G_ip X_iq
    5. the backward einsum "ij,ik->jk", in matrix form ∂L/∂W = Gᵀ X

Everything is symbolic (no shapes, no arrays). The index algebra is a sum of products of
entries and Kronecker deltas (:class:`_Sum`); :func:`_contract` sums deltas away. Matrix forms
come from a small table of rules (:data:`_PLAIN_RULES`), each a function of the label tuples.
Every piece of output is a :class:`_M`, one string for plain text and one for LaTeX, built by
small functions from validated labels and validated names only.

The spec's ``...`` is written as one batch multi-index ``β`` (``γ`` for the differentiated
entry); size-1 broadcasting of a labelled dimension is a matter of shapes and is not shown.
"""

from __future__ import annotations

import itertools
import re
import string
from collections import Counter
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from . import derive
from .errors import EinsumSpecError
from .spec import ELLIPSIS, Labels, Spec, parse

STYLES = ("index", "differential")
MAX_EQUATIONS = 200
MAX_TERMS = 2000
# Each operand's section writes every factor of the forward a few times: n sections of a spec
# with n operands are quadratic in n, so the text explain writes is bounded.
MAX_WRITTEN = 20000  # sections times (operands + label occurrences)
# The matrix-form search budget: no rule covers more than four factors, and each batch label
# adds one letter to every operand, so larger specs have no matrix form and are not searched.
MAX_FORM_OPERANDS = 6  # operands, 0-d ones included
MAX_FORM_LABELS = 8  # distinct labels (and at most twice this many label occurrences)
MAX_FORM_CANDIDATES = 64  # sets of batch labels tried, fewest labels first
RESERVED = ("L", "G")  # the loss and the cotangent G = ∂L/∂Y

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_BATCH, _FRESH_BATCH = "β", "γ"
_PRIME = "′"
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_FRESH_POOL = "pqrstuvwxyzabcdefghijklmno" + string.ascii_uppercase


# -- text and LaTeX side by side -----------------------------------------------------------


@dataclass(frozen=True)
class _M:
    """A piece of output: its plain-text (Unicode) and its LaTeX (math mode) rendering."""

    text: str
    latex: str


def _escape(text: str) -> str:
    """Text-mode LaTeX for prose made of fixed words, validated names and labels."""
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                          ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


_SYMBOLS = {"β": r"{\beta}", "γ": r"{\gamma}", "′": "'", "⁽": "^{(", "⁾": ")}",
            **{sup: str(d) for d, sup in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")},
            "δ": r"\delta", "∂": r"\partial", "Σ": r"\Sigma", "ᵀ": r"^\top", "∘": r"\circ"}


def _prose(text: str) -> _M:
    """Words, with index symbols (β, i′) as math in LaTeX; leading spaces indent."""
    body = text.lstrip(" ")
    latex = [r"\quad "] if body != text else []
    for n, run in enumerate(re.split(r"([^\x00-\x7f]+)", body)):
        if n % 2:
            latex.append("".join(_SYMBOLS[char] for char in run))
        elif run:
            latex.append(r"\text{" + _escape(run) + "}")
    return _M(text, "".join(latex))


def _punct(m: _M, mark: str) -> _M:
    """``m`` followed by a punctuation mark, without a space."""
    return _M(m.text + mark, m.latex + r"\text{" + mark + "}")


def _code(spec: str) -> _M:
    """An einsum spec, quoted."""
    return _M(f'"{spec}"', r'\texttt{"' + _escape(spec) + '"}')


def _line(*parts: _M) -> _M:
    """Pieces of one line, separated by spaces."""
    return _M(" ".join(p.text for p in parts), r"\ ".join(p.latex for p in parts))


def _juxt(parts: Sequence[_M], empty: str = "1") -> _M:
    """A product written by juxtaposition; the empty product is ``empty``."""
    if not parts:
        return _M(empty, empty)
    return _M(" ".join(p.text for p in parts), " ".join(p.latex for p in parts))


def _eq(*sides: _M) -> _M:
    return _M(" = ".join(s.text for s in sides), " = ".join(s.latex for s in sides))


def _symbol_latex(symbol: str) -> str:
    return "".join(_SYMBOLS.get(c, c) for c in symbol)


def _indices(symbols: Sequence[str]) -> _M:
    """Juxtaposed, or comma-separated when an index has more than one letter (``i1``)."""
    joint = "," if any(len(s.rstrip(_PRIME)) > 1 for s in symbols) else ""
    return _M(joint.join(symbols), joint.join(_symbol_latex(s) for s in symbols))


def _name(name: str) -> _M:
    return _M(name, name if len(name) == 1 else r"\mathit{" + _escape(name) + "}")


def _entry(name: str, index: Sequence[str]) -> _M:
    base, sub = _name(name), _indices(index)
    if not index:
        return base
    return _M(f"{base.text}_{sub.text}", f"{base.latex}_{{{sub.latex}}}")


def _delta(a: str, b: str) -> _M:
    sub = _indices((a, b))
    return _M(f"δ_{sub.text}", rf"\delta_{{{sub.latex}}}")


def _partial(num: _M, den: _M) -> _M:
    return _M(f"∂{num.text}/∂{den.text}", rf"\frac{{\partial {num.latex}}}{{\partial {den.latex}}}")


def _summation(over: Sequence[str], body: _M) -> _M:
    if not over:
        return body
    sub = _indices(over)
    return _M(f"Σ_{sub.text} {body.text}", rf"\sum_{{{sub.latex}}} {body.latex}")


def _words(symbols: Sequence[str]) -> str:
    return ", ".join(symbols)


# -- the index algebra: sums of products of entries and deltas -----------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    index: tuple[str, ...]


@dataclass(frozen=True)
class _Delta:
    a: str
    b: str


@dataclass(frozen=True)
class _Sum:
    """``Σ_over Π factors``; a factor is an :class:`_Entry` or a :class:`_Delta`."""

    over: tuple[str, ...]
    factors: tuple


def _contract(term: _Sum) -> _Sum:
    """Sums deltas away, ``Σ_a δ_ab f(a) = f(b)``, and drops ``δ_bb = 1`` for a free ``b``.

    A delta between two free indices survives: the result is zero off that diagonal. One pass
    over the deltas in order with a union-find of the renamings (linear, not quadratic, in the
    number of deltas: ``"a"*4000`` has 4000 of them); a summed index is renamed to the other
    side of its delta, as one does by hand.
    """
    over = dict.fromkeys(term.over)
    renamed: dict[str, str] = {}

    def find(symbol: str) -> str:
        root = symbol
        while root in renamed:
            root = renamed[root]
        while symbol != root:
            parent = renamed[symbol]
            renamed[symbol] = root
            symbol = parent
        return root

    dropped = set()
    for n, f in enumerate(term.factors):
        if not isinstance(f, _Delta):
            continue
        a, b = find(f.a), find(f.b)
        if a != b and (a in over or b in over):
            old, new = (a, b) if a in over else (b, a)
            del over[old]
            renamed[old] = new
            dropped.add(n)
    factors = []
    for n, f in enumerate(term.factors):
        if n in dropped:
            continue
        if isinstance(f, _Delta):
            f = _Delta(find(f.a), find(f.b))
            if f.a == f.b and f.a not in over:
                continue
        else:
            f = _Entry(f.name, tuple(find(s) for s in f.index))
        factors.append(f)
    return _Sum(tuple(over), tuple(factors))


def _renamed(term: _Sum, mapping: Mapping[str, str]) -> _Sum:
    """``term`` with its free indices renamed at once (one pass, whatever the count)."""
    def one(symbol):
        return mapping.get(symbol, symbol)
    return _Sum(term.over, tuple(_Delta(one(f.a), one(f.b)) if isinstance(f, _Delta) else
                                 _Entry(f.name, tuple(map(one, f.index))) for f in term.factors))


def _render(term: _Sum) -> _M:
    parts = [_delta(f.a, f.b) if isinstance(f, _Delta) else _entry(f.name, f.index)
             for f in term.factors]
    return _summation(term.over, _juxt(parts))


def _symbol(label: str) -> str:
    return _BATCH if label == ELLIPSIS else label


def _symbols(term: Labels) -> tuple[str, ...]:
    return tuple(_symbol(label) for label in term)


def _primed(symbol: str, n: int) -> str:
    """``symbol`` with ``n`` primes: ``i′``, ``i′′``, ``i′′′``, then ``i⁽⁴⁾`` (text stays short
    for thousands of repeats)."""
    if n <= 3:
        return symbol + _PRIME * n
    return symbol + "⁽" + str(n).translate(_SUPERSCRIPT) + "⁾"


def _candidates(letters: str, suffix):
    """``letters``, then each letter with ``suffix(1)``, ``suffix(2)``, ...: endless."""
    yield from letters
    for n in itertools.count(1):
        for c in letters:
            yield suffix(c, n)


class _Fresh:
    """Symbols that clash with nothing in use: the one generator of new names.

    ``taken`` holds every symbol already used (labels, names, reserved ones); each
    :meth:`take` returns the next candidate not taken and takes it. Index letters by default
    (p, q, r, ..., then primed); ``letters`` and ``suffix`` give other pools (operand names).
    """

    def __init__(self, taken, letters: str = _FRESH_POOL, suffix=_primed):
        self.taken = set(taken)
        self._pool = _candidates(letters, suffix)

    def take(self, label: str | None = None) -> str:
        """A fresh symbol (``γ`` for the batch indices of ``...``)."""
        if label == ELLIPSIS:
            return _FRESH_BATCH
        symbol = next(s for s in self._pool if s not in self.taken)
        self.taken.add(symbol)
        return symbol


def _forward(spec: Spec, names: Sequence[str]) -> tuple[tuple[str, ...], _Sum]:
    """``Y`` indices and the forward sum. A label repeated in the output gets a primed index
    tied to the first by a delta (``"i->ii"``: ``Y_ii′ = A_i δ_ii′``)."""
    index, deltas, seen = [], [], Counter()
    for symbol in _symbols(spec.output):
        seen[symbol] += 1
        if seen[symbol] == 1:
            index.append(symbol)
        else:
            index.append(_primed(symbol, seen[symbol] - 1))
            deltas.append(_Delta(symbol, index[-1]))
    summed = tuple(dict.fromkeys(_symbol(l) for t in spec.inputs for l in t if l not in spec.output))
    entries = tuple(_Entry(n, _symbols(t)) for n, t in zip(names, spec.inputs))
    return tuple(index), _Sum(summed, entries + tuple(deltas))


# -- matrix forms: a table of small rules over label tuples --------------------------------


@dataclass(frozen=True)
class _Form:
    """A matrix formula over the operands of a spec.

    Attributes:
        kind: "product", "trace", "hadamard", "diag", "identity", "rowsum" (an entrywise
            product summed along its rows, ``(A ∘ B) 1``) or "colsum" (``(A ∘ B)ᵀ 1``).
        factors: (operand position, or None for a ones vector; transposed) in order.
        scalars: positions of 0-d operands, written in front.
        batch: labels every operand and the output share: "for each b: ...".
        summed: labels the operands share and the output lacks: "Σ_b ...".
        scaled: positions in ``factors`` of vectors written as diagonal matrices ``Diag(d)``.
        columns: a batched form holds vector slices, read as column vectors.
    """

    kind: str
    factors: tuple[tuple[int | None, bool], ...] = ()
    scalars: tuple[int, ...] = ()
    batch: tuple[str, ...] = ()
    summed: tuple[str, ...] = ()
    scaled: tuple[int, ...] = ()
    columns: bool = False


def _identity_form(inputs, output, tensors):
    """``"->ii"``: the scalars times the identity ``I`` (the backward of the trace)."""
    if not tensors and len(output) == 2 and output[0] == output[1]:
        return _Form("identity")
    return None


def _diag_form(inputs, output, tensors):
    """``"ii->i"`` takes the diagonal, ``"i->ii"`` makes a diagonal matrix: both ``diag(·)``."""
    if len(tensors) != 1:
        return None
    term = inputs[tensors[0]]
    if (len(term) == 2 and term[0] == term[1] and output == term[:1]
            or len(term) == 1 and output == term * 2):
        return _Form("diag", ((tensors[0], False),))
    return None


def _hadamard_form(inputs, output, tensors):
    """Entrywise product ``A ∘ B``: every operand has exactly the output's labels."""
    if len(tensors) < 2 or not 1 <= len(output) <= 2 or len(set(output)) != len(output):
        return None
    if any(len(inputs[k]) != len(output) or set(inputs[k]) != set(output) for k in tensors):
        return None
    return _Form("hadamard", tuple((k, inputs[k] != output) for k in tensors))


def _scaling_form(inputs, output, tensors):
    """Rows and columns scaled by vectors: ``"i,ij->ij"`` is ``Diag(d) X``, ``"ij,j->ij"`` is
    ``X Diag(d)``, ``"i,ij,j->ij"`` is ``Diag(a) X Diag(b)`` (the textbook forms of batched
    scalings)."""
    if len(output) != 2 or output[0] == output[1]:
        return None
    matrices = [k for k in tensors if len(inputs[k]) == 2]
    vectors = [k for k in tensors if len(inputs[k]) == 1]
    if len(matrices) != 1 or not vectors or len(matrices) + len(vectors) != len(tensors):
        return None
    (m,), term = matrices, inputs[matrices[0]]
    if set(term) != set(output) or any(inputs[k][0] not in output for k in vectors):
        return None
    left = [(k, False) for k in vectors if inputs[k][0] == output[0]]
    right = [(k, False) for k in vectors if inputs[k][0] == output[1]]
    factors = (*left, (m, term != output), *right)
    return _Form("product", factors, scaled=tuple(n for n, (k, _) in enumerate(factors) if k != m))


def _rowsum_form(inputs, output, tensors):
    """An entrywise product summed over one axis: ``"ij,ij->i"`` is ``(A ∘ B) 1``, and
    ``"ij,ij->j"`` is ``(A ∘ B)ᵀ 1`` (the gradient of a row scaling)."""
    if len(tensors) < 2 or len(output) != 1:
        return None
    first = inputs[tensors[0]]
    if len(first) != 2 or first[0] == first[1] or output[0] not in first:
        return None
    if any(set(inputs[k]) != set(first) or len(inputs[k]) != 2 for k in tensors):
        return None
    return _Form("rowsum" if output[0] == first[0] else "colsum",
                 tuple((k, inputs[k] != first) for k in tensors))


def _orientations(term):
    """(rows, cols, transposed) of a vector (a column) or a matrix, as stored or transposed."""
    if len(term) == 1:
        return ((term[0], None, False), (None, term[0], True))
    if term[0] == term[1]:
        return ((term[0], term[1], False),)
    return ((term[0], term[1], False), (term[1], term[0], True))


def _chain_kind(chain, output, count):
    """"product" or "trace" if the oriented ``chain`` multiplies out to ``output``, else None.

    Adjacent factors share their inner label (or are an outer product, both None), an inner
    label occurs nowhere else, the outer labels are the output (a vector is a column)."""
    for (_, cols), (rows, _) in zip(chain, chain[1:]):
        if cols != rows or cols is not None and (count[cols] != 2 or cols in output):
            return None
    first, last = chain[0][0], chain[-1][1]
    if not output:
        if first is None and last is None:
            return "product"
        return "trace" if first == last and count[first] == 2 else None
    if len(output) == 1 and (first, last) != (output[0], None):
        return None
    ends = tuple(label for label in (first, last) if label is not None)
    return "product" if ends == output and all(count[l] == 1 for l in ends) else None


def _chain_form(inputs, output, tensors):
    """Products of up to four matrices and vectors with transposes, traces of them, and sums
    and broadcasts as products with a ones vector ``1`` (``"ij->i"`` is ``A 1``)."""
    if len(tensors) > 3 or any(len(inputs[k]) > 2 for k in tensors):
        return None
    if len(output) > 2 or len(set(output)) != len(output):
        return None
    count = Counter(label for k in tensors for label in inputs[k])
    ones = [l for l, c in count.items() if c == 1 and l not in output]
    ones += [l for l in output if l not in count]
    items = [(k, inputs[k]) for k in tensors] + [(None, (l,)) for l in ones]
    if not items:
        return _Form("product") if not output else None
    if len(items) > 4:
        return None
    count.update(ones)
    best = None  # fewest transposes, then a product before a trace (xᵀ y, not tr(x yᵀ))
    for order in itertools.permutations(items):
        for oriented in itertools.product(*(_orientations(term) for _, term in order)):
            flips = sum(t for _, _, t in oriented)
            if best is not None and flips > best[0][0]:
                continue
            kind = _chain_kind([(r, c) for r, c, _ in oriented], output, count)
            if kind is not None and (best is None or (flips, kind == "trace") < best[0]):
                factors = tuple((k, t) for (k, _), (_, _, t) in zip(order, oriented))
                best = ((flips, kind == "trace"), _Form(kind, factors))
    return None if best is None else best[1]


_PLAIN_RULES = (_identity_form, _diag_form, _hadamard_form, _scaling_form, _rowsum_form,
                _chain_form)


def _plain_form(inputs, output) -> _Form | None:
    if ELLIPSIS in output or any(ELLIPSIS in t for t in inputs):
        return None
    tensors = tuple(k for k, t in enumerate(inputs) if t)
    scalars = tuple(k for k, t in enumerate(inputs) if not t)
    for rule in _PLAIN_RULES:
        form = rule(inputs, output, tensors)
        if form is not None:
            return replace(form, scalars=scalars)
    return None


def _leading(strip, term) -> bool:
    """The stripped labels of ``term`` are its first axes (batch axes lead, as in "bij")."""
    held = sum(label in strip for label in term)
    return all(label in strip for label in term[:held])


def _batched_form(inputs, output) -> _Form | None:
    """A plain form for each value of batch labels, fewest first: leading labels every operand
    holds once (``...`` may be missing from some: they are the same for every batch). In the
    output they read "for each b" (batched matmul); not in it, a sum over b. At most
    :data:`MAX_FORM_CANDIDATES` sets of batch labels are tried.
    """
    tensors = [t for t in inputs if t]
    candidates = [l for l in dict.fromkeys(l for t in tensors for l in t) if output.count(l) <= 1
                  and (l == ELLIPSIS or all(t.count(l) == 1 for t in tensors))]
    subsets = itertools.chain.from_iterable(
        itertools.combinations(candidates, size) for size in range(1, len(candidates) + 1))
    for strip in itertools.islice(subsets, MAX_FORM_CANDIDATES):
        rest = tuple(tuple(l for l in t if l not in strip) for t in inputs)
        if not any(rest) or not all(_leading(strip, t) for t in (*inputs, output)):
            continue
        kept = tuple(l for l in output if l not in strip)
        form = _plain_form(rest, kept)
        columns = any(len(t) == 1 for t in (*rest, kept))
        if form is not None and (columns and not any(l in output for l in strip)):
            continue  # "Σ_i a (G ∘ X)" of row slices: no reader would take it as meant
        if form is not None:
            return replace(form, batch=tuple(l for l in strip if l in output),
                           summed=tuple(l for l in strip if l not in output),
                           columns=columns)
    return None


def _matrix_form(spec: Spec) -> _Form | None:
    """The spec in matrix notation, or None; None at once for specs beyond the search budget
    (more than :data:`MAX_FORM_OPERANDS` operands or :data:`MAX_FORM_LABELS` labels)."""
    if len(spec.inputs) > MAX_FORM_OPERANDS or sum(map(len, spec.inputs)) + len(
            spec.output) > 2 * MAX_FORM_LABELS or len(spec.labels) > MAX_FORM_LABELS:
        return None
    return _plain_form(spec.inputs, spec.output) or _batched_form(spec.inputs, spec.output)


_ONE = _M("1", r"\mathbf{1}")


def _transpose(m: _M) -> _M:
    return _M(m.text + "ᵀ", m.latex + r"^\top")


def _differential(m: _M) -> _M:
    return _M("d" + m.text, r"\mathrm{d}" + m.latex)


def _paren(m: _M) -> _M:
    if " " not in m.text:
        return m
    return _M(f"({m.text})", rf"\left({m.latex}\right)")


def _call(function: str, m: _M) -> _M:
    return _M(f"{function}({m.text})", rf"\operatorname{{{function}}}\left({m.latex}\right)")


def _form_body(form: _Form, names: Sequence[_M], vary: int | None = None) -> _M:
    """The formula, ``vary`` (an operand position) written as a differential ``dX``."""
    def leaf(position, transposed):
        m = _ONE if position is None else names[position]
        m = _differential(m) if position is not None and position == vary else m
        return _transpose(m) if transposed else m

    parts = [_call("Diag", leaf(k, t)) if n in form.scaled else leaf(k, t)
             for n, (k, t) in enumerate(form.factors)]
    if form.kind in ("hadamard", "rowsum", "colsum"):
        body = _M(" ∘ ".join(p.text for p in parts), r" \circ ".join(p.latex for p in parts))
        if form.kind != "hadamard":
            body = _paren(body)
            body = _juxt([_transpose(body) if form.kind == "colsum" else body, _ONE])
    elif form.kind == "trace":
        body = _call("tr", _juxt(parts))
    elif form.kind == "diag":
        body = _call("diag", parts[0])
    elif form.kind == "identity":
        body = _M("I", "I")
    else:
        body = _juxt(parts, empty="")
    scalars = [leaf(k, False) for k in form.scalars]
    if scalars:
        body = _juxt(scalars + ([_paren(body) if form.kind == "hadamard" else body]
                                if body.text else []))
    if form.summed:
        body = _summation(_symbols(form.summed), body)
    return body


def _form_equation(lhs: _M, form: _Form, names: Sequence[_M]) -> _M:
    """``lhs = formula``, after "for each b:" when the form is batched (saying that vector
    slices are columns, as the formula reads them: ``"bi,bi->b"`` is ``xᵀ y`` per row b)."""
    equation = _eq(lhs, _form_body(form, names))
    if not form.batch:
        return equation
    columns = " (slices as column vectors)" if form.columns else ""
    each = _M(f"for each {_words(_symbols(form.batch))}{columns}:",
              r"\text{for each }" + ", ".join(_symbol_latex(s) for s in _symbols(form.batch))
              + r"\text{" + columns + ":}")
    return _line(each, equation)


# -- the public object ---------------------------------------------------------------------


@dataclass(frozen=True)
class Gradient:
    """What :func:`explain` found for one operand.

    Attributes:
        wrt: the operand's position.
        name: the operand's name.
        grad_spec: the backward einsum (as :func:`einsgrad.grad_spec` gives it).
        jacobian_spec: the full Jacobian as an einsum, or None when ``...`` is in both the
            operand and the output (its batch dimensions then need shapes to be named).
        matrix_form: the gradient in matrix notation, e.g. ``"∂L/∂W = Gᵀ X"``, or None.
    """

    wrt: int
    name: str
    grad_spec: str
    jacobian_spec: str | None
    matrix_form: str | None


class _Rendered:
    """``str()``, :meth:`latex` and Jupyter's math display of ``self.lines``."""

    lines: tuple[_M, ...]

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


def _paragraph(latex: str) -> str:
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


@dataclass(frozen=True)
class Explanation(_Rendered):
    """The derivation of einsum gradients, by hand; ``str()`` is plain text, :meth:`latex`
    LaTeX, and Jupyter displays it as math.

    Attributes:
        spec: the spec with its output explicit.
        names: the operands' names.
        out: the output's name.
        style: "index" or "differential".
        forward_form: the forward in matrix notation (``"Y = X Wᵀ"``), or None.
        gradients: one :class:`Gradient` per explained operand.
        lines: the rendered lines, each as its plain text and its LaTeX.
    """

    spec: str
    names: tuple[str, ...]
    out: str
    style: str
    forward_form: str | None
    gradients: tuple[Gradient, ...]
    lines: tuple[_M, ...]

    def latex(self) -> str:
        """The derivation as LaTeX paragraphs for an ordinary document (prose as text, each
        formula inline, so that long lines wrap, ``\\sloppy`` for the quoted specs, which do
        not break); it needs amsmath (``\\operatorname``)."""
        return "\n".join([r"\begingroup\sloppy", *(
            r"\noindent " + _paragraph(line.latex) + r"\par" if line.text else r"\medskip"
            for line in self.lines), r"\endgroup"])

    def __repr__(self) -> str:
        grads = "; ".join(g.matrix_form or f"∂L/∂{g.name}: {g.grad_spec!r}" for g in self.gradients)
        return f"<Explanation of {self.spec!r} ({', '.join(self.names)} -> {self.out}): {grads}>"


# -- validation ----------------------------------------------------------------------------


_HINT = ("einsgrad wants one letter per index and a comma between operands, like 'ij,jk->ik' "
         "(names go in names=), or a program in index notation, like "
         "einsgrad.program(\"Y[i,k] = A[i,j] * B[j,k]\")")


def _check_readable(spec: Spec, names) -> None:
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
class _Symbols:
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


def _digit(letter: str, n: int) -> str:
    return f"{letter}{n}"


def _check_names(names, spec: Spec, out) -> _Symbols:
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
    letters = _Fresh(labels | given | set(RESERVED) | {"I"}, string.ascii_uppercase, _digit)
    if out is None:
        out = _Fresh(letters.taken, "YZ" + string.ascii_uppercase, _digit).take()
        letters.taken.add(out)
    if names is None:
        names = [letters.take() for _ in range(count)]
    loss, cotangent = (_Fresh(labels | {out, *names}, first, _digit).take() for first in RESERVED)
    taken = frozenset(labels | {out, *names, loss, cotangent, "I"})
    return _Symbols(tuple(names), out, loss, cotangent, taken)


def _check_written(spec: Spec, chosen) -> None:
    """Refuses a derivation longer than :data:`MAX_WRITTEN` (it would take long and help no
    reader): each chosen operand's section repeats every label of the spec."""
    size = len(spec.inputs) + sum(map(len, spec.inputs)) + len(spec.output)
    if len(chosen) * size > MAX_WRITTEN:
        way_out = ("give wrt= fewer operands" if len(chosen) > 1 else
                   "no reader follows a derivation this long; grad_spec() gives the backward")
        raise EinsumSpecError(f"explaining {len(chosen)} operand(s) of a spec with {size} "
                              f"operands and labels writes {len(chosen) * size} of them, more "
                              f"than {MAX_WRITTEN}: {way_out}")


def _check_style(style) -> str:
    if style not in STYLES:
        raise EinsumSpecError(f"style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    return style


# -- the derivation ------------------------------------------------------------------------


def explain(spec, names=None, out: str | None = None, *, wrt=None,
            sizes: Mapping | None = None, style: str = "index", elementwise: bool = False):
    """Derives the gradient of each operand of ``spec`` by hand, step by step.

    Args:
        spec: an einsum spec, as :func:`einsgrad.compile` takes it, or a
            :class:`~einsgrad.Program`: then ``wrt`` is a tensor's name (default every input),
            the result is :meth:`Program.explain`'s, and ``names``, ``out``, ``sizes`` and
            ``elementwise`` do not apply. Unlike ``compile``, a space between two labels of
            one operand (``"A X B"``) is refused: it is a matrix expression, not labels.
        names: the operands' names, ``"X,W"`` or ``["X", "W"]``, none of them a label;
            default ``A, B, C, ...``, skipping the labels.
        out: the output's name; default ``Y`` (``Z``, ... when ``Y`` is a label).
        wrt: an operand index or a list of them; default every operand.
        sizes: label sizes: those only the output has (as for ``compile``), and with
            ``elementwise=True`` every label's (``"..."``: a tuple, the batch shape).
        style: "index" (Kronecker deltas) or "differential" (``dL = G : dY``, for specs
            with a matrix form; the others fall back to the index derivation).
        elementwise: also write every scalar equation of each gradient (small sizes).

    >>> print(explain("ik,jk->ij", "X,W", wrt=1).gradients[0].matrix_form)
    ∂L/∂W = Gᵀ X
    """
    from .programs import Program  # here, not at the top: specs need no execution machinery

    if isinstance(spec, Program):
        given = {"names": names is not None, "out": out not in (None, "Y"),
                 "sizes": sizes is not None, "elementwise": bool(elementwise)}
        if any(given.values()):
            raise EinsumSpecError(f"{', '.join(k for k, v in given.items() if v)}: not for a "
                                  f"program, whose text names its tensors; give wrt= and style= only")
        return spec.explain(wrt, style=style)
    parsed = parse(spec, sizes)
    _check_readable(parsed, names)
    sym = _check_names(names, parsed, out)
    chosen = derive.check_wrts(parsed, wrt)[0]
    style = _check_style(style)
    _check_written(parsed, chosen)
    entries = _elementwise_sizes(parsed, sizes, chosen, sym) if elementwise else None
    forward = _matrix_form(parsed)
    lhs = _name(sym.out)
    forward_eq = None if forward is None else _form_equation(
        lhs, forward, [_name(n) for n in sym.names])
    lines = list(_header(parsed, sym, forward_eq))
    gradients = []
    for k in chosen:
        gradient, section, form, form_eq = _gradient(parsed, sym, k, style, forward)
        gradients.append(gradient)
        lines.append(_M("", ""))
        lines.extend(section)
        if entries is not None:
            lines.extend(_elementwise(parsed, sym, k, entries, gradient, form, form_eq))
    return Explanation(str(parsed), sym.names, sym.out, style,
                       None if forward_eq is None else forward_eq.text, tuple(gradients),
                       tuple(lines))


def _header(spec: Spec, sym: _Symbols, forward_eq: _M | None) -> list[_M]:
    names, out, L, G = sym.names, sym.out, sym.loss, sym.cotangent
    index, term = _forward(spec, names)
    lines = [_line(_prose("The einsum"), _code(str(spec)), _prose(
        f"with operands {', '.join(names)} and output {out}; {L} is a scalar loss; the "
        f"cotangent"), _eq(_name(G), _partial(_name(L), _name(out))),
        _prose(f"has {out}'s indices."))]
    if "->" not in (spec.text or "->"):
        lines.append(_prose("Implicit mode: the output is the labels that appear once, in "
                            "alphabetical order (after the batch indices of '...')."))
    lines.append(_line(_prose("Forward:"), *(
        [_punct(_eq(_entry(out, index), _render(term)), ";"), _prose("in matrix form,"), forward_eq]
        if forward_eq else [_eq(_entry(out, index), _render(term))])))
    if any(ELLIPSIS in t for t in (*spec.inputs, spec.output)):
        lines.append(_prose(f"{_BATCH} stands for the batch indices of '...' (aligned from the "
                            f"right; where an operand has fewer or size-1 batch dimensions, numpy "
                            f"broadcasts it, and its gradient also sums over them)."))
    in_inputs = {l for t in spec.inputs for l in t}
    counts = Counter(spec.output)
    for label in counts:
        if label not in in_inputs:
            what = ("the batch indices β appear only in {out}: the forward broadcasts along "
                    "them (new axes, their sizes given by sizes=)." if label == ELLIPSIS else
                    "{label} appears only in {out}: the forward broadcasts along it (a new axis, "
                    "its size given by sizes=).")
            lines.append(_prose(what.format(label=label, out=out)))
        if counts[label] > 1:
            lines.append(_prose(f"{label} is repeated in {out}: {out} holds the values on that "
                                f"diagonal and zeros elsewhere, a delta in the forward."))
    return lines


def _gradient(spec: Spec, sym: _Symbols, k: int, style: str, forward: _Form | None):
    name = sym.names[k]
    backward = derive.backward(spec, k)
    others = [n for m, n in enumerate(sym.names) if m != k]
    form = _matrix_form(backward)
    form_eq = None
    if form is not None:
        form_eq = _form_equation(_partial(_name(sym.loss), _name(name)), form,
                                 [_name(n) for n in (sym.cotangent, *others)])
    try:
        jacobian = str(derive.jacobian(spec, k))
    except EinsumSpecError:
        jacobian = None
    gradient = Gradient(k, name, str(backward), jacobian, None if form_eq is None else form_eq.text)
    lines = [_M(f"Gradient with respect to {name} (operand {k}):",
                r"\textbf{" + _escape(f"Gradient with respect to {name} (operand {k}):") + "}")]
    if style == "differential":
        lines.extend(_differential_steps(spec, sym, k, forward, form, form_eq, gradient))
    else:
        lines.extend(_index_steps(spec, sym, k, form_eq, gradient))
    return gradient, lines, form, form_eq


def _index_steps(spec: Spec, sym: _Symbols, k: int, form_eq: _M | None, gradient: Gradient):
    name, labels = sym.names[k], spec.inputs[k]
    index, forward = _forward(spec, sym.names)
    fresh = _Fresh(sym.taken | set(index) | set(forward.over))
    p = tuple(fresh.take(label) for label in labels)
    L, G, Y = _name(sym.loss), sym.cotangent, sym.out
    dx = _entry(name, p)
    lines = [_line(_prose("1. Forward:"), _eq(_entry(Y, index), _render(forward)))]

    lines.append(_line(_prose("2. Chain rule for one entry:"), _punct(_eq(_partial(L, dx), _summation(
        index, _juxt([_entry(G, index), _partial(_entry(Y, index), dx)]))), ","),
        _prose("with"), _eq(_name(G), _partial(L, _name(Y)))))

    own = tuple(_Delta(a, b) for a, b in zip(_symbols(labels), p))
    others = tuple(f for m, f in enumerate(forward.factors) if m != k)
    raw = _Sum(forward.over, others + own)
    jac = _contract(raw)
    step3 = [_render(raw)] + ([_render(jac)] if jac != raw else [])
    lines.append(_line(_prose(f"3. Each entry of {name} is its own variable:"),
                       _punct(_eq(_partial(_entry(name, _symbols(labels)), dx),
                                  _juxt([_delta(a, b) for a, b in zip(_symbols(labels), p)])), ","),
                       _prose("so"), _eq(_partial(_entry(Y, index), dx), *step3)))
    lines.extend(_jacobian_words(spec, sym, k, index, p, jac, gradient, form_eq))

    chained = _Sum(index + jac.over, (_Entry(G, index),) + jac.factors)
    final = _contract(chained)
    step4 = [_render(chained)] + ([_render(final)] if final != chained else [])
    lines.append(_line(_prose(f"4. Contract with {G}, summing the deltas away:"),
                       _eq(_partial(L, dx), *step4)))
    lines.extend(_phenomena(spec, sym, k, p))

    if p and not derive.surviving_deltas(spec, k):
        back = _renamed(final, dict(zip(p, _symbols(labels))))
        lines.append(_line(_prose(f"5. Renaming {_words(p)} to {_words(_symbols(labels))}:"),
                           _punct(_eq(_partial(L, _entry(name, _symbols(labels))), _render(back)), ","),
                           _prose("the backward einsum"), _code(gradient.grad_spec)))
    else:
        lines.append(_line(_prose("5. The backward einsum is"), *(
            [_code(gradient.grad_spec), _prose("(a label repeated in its output is the delta "
                                               "that survives).")] if p else
            [_punct(_code(gradient.grad_spec), ".")])))
    lines.append(_line(_prose("   In matrix form:"), form_eq) if form_eq is not None else
                 _prose("   No matrix form: the einsum above is the formula."))
    return lines


def _order_words(n: int, batch: bool) -> str:
    if batch:
        return f"a tensor of order {n} plus the batch dimensions"
    return {0: "a scalar", 1: "a vector", 2: "a matrix"}.get(n, f"a tensor of order {n}")


def _jacobian_words(spec: Spec, sym: _Symbols, k: int, index, p, jac: _Sum, gradient: Gradient,
                    form_eq: _M | None):
    name, Y, G = sym.names[k], sym.out, sym.cotangent
    letters = [s for s in (*index, *p) if s not in (_BATCH, _FRESH_BATCH)]
    batch = _BATCH in index or _FRESH_BATCH in p
    where = "; ".join(f"{_words(s)} of {n}" for s, n in ((index, Y), (p, name)) if s)
    labels = Counter(spec.output + spec.inputs[gradient.wrt])  # the Jacobian spec's output
    repeated = gradient.jacobian_spec and any(c > 1 for l, c in labels.items() if l != ELLIPSIS)
    lines = [_line(_prose(f"   This is the full Jacobian, {_order_words(len(letters), batch)}"
                          + (f" (indices {where})" if where else "")
                          + (", not a matrix;" if len(letters) > 2 else ";")),
                   *([_prose("as an einsum:"),
                      _punct(_code(gradient.jacobian_spec), "" if repeated else "."),
                      *([_prose("(a label repeated in the output is a delta).")] if repeated else [])]
                     if gradient.jacobian_spec else
                     [_prose("as an einsum it needs the batch dimensions named (give shapes= to "
                             "jacobian_spec).")]))]
    own, out_index = set(p), set(index)
    moved = [d for d in jac.factors if isinstance(d, _Delta) and d.a in out_index and d.b in own]
    words = (f"{Y}'s index {d.a} to {name}'s position {d.b}" for d in moved)
    lines.append(_prose(f"   The gradient is this Jacobian contracted with {G} over {Y}'s "
                        f"indices, so {G} is part of it" + (
                            f": the delta{'s' if len(moved) > 1 else ''} "
                            f"move{'' if len(moved) > 1 else 's'} " + "; ".join(words)
                            if moved else "") + "."))
    if form_eq is not None and len(spec.inputs) > 1:
        lines.append(_line(_prose("   That is why"), form_eq, _prose(
            f"holds {G}, and is not a rearrangement of the other operands alone.")))
    return lines


def _phenomena(spec: Spec, sym: _Symbols, k: int, p) -> list[_M]:
    """Named in words, one true sentence per label: a delta that survives (zero off the
    diagonal), a broadcast (constant along the label), both at once (constant along the
    diagonal, zero off it), and sums of G over labels only the output has."""
    name, Y, G = sym.names[k], sym.out, sym.cotangent
    labels, lines = spec.inputs[k], []
    at: dict[str, list[str]] = {}
    for label, symbol in zip(labels, p):
        at.setdefault(label, []).append(symbol)
    broadcast = derive.broadcast_labels(spec, k)
    for label in derive.surviving_deltas(spec, k):
        first, *rest = at[label]
        diagonal = " = ".join(at[label])
        if label in broadcast:
            lines.append(_line(_prose(f"   {label} is repeated in {name} and appears nowhere "
                                      f"else, so"), _juxt([_delta(first, s) for s in rest]),
                               _prose(f"survives: the gradient is zero off the diagonal "
                                      f"{diagonal}, and on it the same for every {label} (the "
                                      f"forward summed that diagonal).")))
        else:
            lines.append(_line(_prose(f"   {label} is repeated in {name}, so"),
                               _juxt([_delta(first, s) for s in rest]),
                               _prose(f"survives: the gradient is zero off the diagonal "
                                      f"{diagonal}.")))
    for label in broadcast:
        if len(at[label]) > 1:
            continue
        what, verb, it = (("the batch indices β", "appear", "them") if label == ELLIPSIS else
                          (label, "appears", "it"))
        lines.append(_prose(f"   {what} {verb} only in {name}: the forward summed {it}, so the "
                            f"gradient is constant along {it} (a broadcast along "
                            f"{_words(at[label])})."))
    inputs = {l for t in spec.inputs for l in t}
    for label in derive.summed_cotangent_labels(spec, k):
        if label not in inputs:
            what, it = ("the batch indices β", "them") if label == ELLIPSIS else (label, "it")
            lines.append(_prose(f"   {name} lacks {what}, which only {Y} has: the forward "
                                f"broadcast {name} along {it}, so its gradient sums {G} over "
                                f"{it}."))
    return lines


def _rules(M: str, N: str, P: str) -> _M:
    """The Frobenius-product identities the differential derivation uses, written with the
    placeholder matrices ``M, N, P`` (fresh letters when an operand has one of those names)."""
    def m(text: str) -> _M:
        return _M(text.format(M=M, N=N, P=P), text.format(
            M=_name(M).latex, N=_name(N).latex, P=_name(P).latex).replace("ᵀ", r"^\top")
            .replace("∘", r"\circ").replace(", ", r",\ "))
    return m("{M} : ({N} {P}) = ({N}ᵀ {M}) : {P} = ({M} {P}ᵀ) : {N}, {M} : {N}ᵀ = {M}ᵀ : {N}, "
             "{M} : ({N} ∘ {P}) = ({M} ∘ {N}) : {P}.")


def _differential_steps(spec, sym: _Symbols, k, forward, form, form_eq, gradient):
    names, name = sym.names, sym.names[k]
    usable = (forward is not None and form is not None
              and not (forward.batch or forward.summed or form.batch or form.summed))
    if not usable:
        return [_prose(f"This spec has no matrix form for the differential derivation "
                       f"(d{sym.loss} = {sym.cotangent} : d{sym.out}); here is the index "
                       f"derivation.")] + _index_steps(spec, sym, k, form_eq, gradient)
    Y, X, G = _name(sym.out), _name(name), _name(sym.cotangent)
    frob = _M(" : ", r" : ")
    d = _differential
    dy = _form_body(forward, [_name(n) for n in names], vary=k)
    grad = _form_body(form, [_name(n) for n in (sym.cotangent,
                                                *[n for m, n in enumerate(names) if m != k])])
    lhs = _differential(_name(sym.loss))

    def product(a, b):
        return _M(a.text + frob.text + b.text, a.latex + frob.latex + b.latex)

    placeholders = _Fresh(sym.taken, "MNPQRSTUVW", _digit)
    M, N, P = (placeholders.take() for _ in range(3))

    return [
        _line(_prose("1. Forward:"), _eq(Y, _form_body(forward, [_name(n) for n in names]))),
        _line(_prose(f"2. The differential of {sym.loss}:"), _punct(_eq(lhs, product(G, d(Y))), ","),
              _prose("with"), _eq(G, _partial(_name(sym.loss), Y)),
              _prose(f"and {M} : {N} the sum of the entrywise products (the Frobenius "
                     f"product).")),
        _line(_prose(f"3. Only {name} varies:"), _punct(_eq(d(Y), dy), ","), _prose("so"),
              _eq(lhs, product(G, d(Y)), product(G, _paren(dy)), product(_paren(grad), d(X)))),
        _line(_prose("   using"), _rules(M, N, P)),
        _line(_prose("4. Read off the gradient:"), _punct(form_eq, ","), _prose("the backward einsum"),
              _code(gradient.grad_spec)),
    ]


# -- entry by entry ------------------------------------------------------------------------


def _expand(term: Labels, batch_rank: int) -> tuple:
    """Labels with ``...`` expanded into one key per batch dimension."""
    keys = []
    for label in term:
        keys.extend(((ELLIPSIS, d) for d in range(batch_rank)) if label == ELLIPSIS else (label,))
    return tuple(keys)


def _elementwise_sizes(spec: Spec, sizes, chosen, sym: _Symbols) -> dict:
    """Every label's size, ``...`` expanded; refuses missing sizes and too many equations."""
    sizes = dict(sizes or {})
    has_batch = any(ELLIPSIS in t for t in (*spec.inputs, spec.output))
    missing = [l for l in spec.labels if l not in sizes] + (
        [ELLIPSIS] if has_batch and ELLIPSIS not in sizes else [])
    if missing:
        raise EinsumSpecError(f"elementwise=True needs every label's size: give sizes= for "
                              f"{', '.join(map(repr, missing))}" + (
                                  " (the batch shape as a tuple for '...')"
                                  if ELLIPSIS in missing else ""))
    lower = [n.lower() for n in (*sym.names, sym.out)]
    if len(set(lower)) != len(lower):
        raise EinsumSpecError(f"elementwise=True writes entries in lowercase, so names and out "
                              f"must differ in more than case, got {', '.join(sym.names)} and "
                              f"out={sym.out}")
    batch = tuple(sizes.pop(ELLIPSIS, ()))
    size = {**sizes, **{(ELLIPSIS, d): n for d, n in enumerate(batch)}}
    equations = terms = 0
    for k in chosen:
        backward = derive.backward(spec, k)
        own = set(_expand(spec.inputs[k], len(batch)))
        rest = {key for t in backward.inputs for key in _expand(t, len(batch))} - own
        count = _equations(size, _expand(spec.inputs[k], len(batch)))
        equations += count
        terms += count * _volume(size, rest)
    if equations > MAX_EQUATIONS or terms > MAX_TERMS:
        raise EinsumSpecError(f"elementwise=True would write {equations} equations with up to "
                              f"{terms} terms; at most {MAX_EQUATIONS} equations and {MAX_TERMS} "
                              f"terms: give smaller sizes")
    return {"size": size, "rank": len(batch)}


def _equations(size, keys) -> int:
    """One equation per entry of the operand, a repeated label counted each time
    (``"ii"`` of size 2 has 4 entries, 2 of them on the diagonal)."""
    count = 1
    for key in keys:
        count *= size[key]
    return count


def _volume(size, keys) -> int:
    volume = 1
    for key in dict.fromkeys(keys):
        volume *= size[key]
    return volume


def _subscript(values, wide: bool) -> str:
    return ("," if wide else "").join(str(v + 1) for v in values)


def _scalar_entry(name: str, values, wide: bool) -> _M:
    base, sub = _name(name.lower()), _subscript(values, wide)
    if not values:
        return base
    return _M(f"{base.text}_{sub}", f"{base.latex}_{{{sub}}}")


def _elementwise(spec: Spec, sym: _Symbols, k: int, entries: dict, gradient: Gradient,
                 form: _Form | None, form_eq: _M | None):
    names, out = sym.names, sym.out
    size, rank = entries["size"], entries["rank"]
    wide = any(n > 9 for n in size.values())
    own = _expand(spec.inputs[k], rank)
    out_keys = _expand(spec.output, rank)
    others = [(n, _expand(t, rank)) for m, (n, t) in enumerate(zip(names, spec.inputs)) if m != k]
    free = tuple(dict.fromkeys(key for keys in (out_keys, *(t for _, t in others))
                               for key in keys if key not in own))
    L = _name(sym.loss)

    def cotangent(values):
        return _partial(L, _scalar_entry(out, values, wide))

    count = _equations(size, own)
    lines = [_prose(f"6. Entry by entry ({count} equation{'' if count == 1 else 's'}), with {out.lower()}, "
                    f"{', '.join(n.lower() for n in names)} the entries of {out}, "
                    f"{', '.join(names)} (1-based):")]
    cells = {}
    for values in itertools.product(*(range(size[key]) for key in own)):
        fixed = {}
        consistent = all(fixed.setdefault(key, v) == v for key, v in zip(own, values))
        terms = []
        for rest in itertools.product(*(range(size[key]) for key in free)) if consistent else ():
            at = {**fixed, **dict(zip(free, rest))}
            terms.append(_juxt([cotangent([at[key] for key in out_keys])]
                               + [_scalar_entry(n, [at[key] for key in t], wide) for n, t in others]))
        lhs = _partial(L, _scalar_entry(names[k], values, wide))
        rhs = _M(" + ".join(t.text for t in terms) or "0", " + ".join(t.latex for t in terms) or "0")
        cells[values] = lhs
        lines.append(_line(_M("  ", r"\quad"), _eq(lhs, rhs)))
    if form_eq is None:
        lines.append(_prose(f"   These are the entries of the backward einsum "
                            f"\"{gradient.grad_spec}\" (no matrix form)."))
        return lines
    if form.batch:
        each = _words(_symbols(form.batch))
        plain = _form_equation(_partial(L, _name(names[k])), replace(form, batch=()),
                               [_name(n) for n in (sym.cotangent, *(n for n, _ in others))])
        lines.append(_line(_prose(f"   Regrouped, for each {each} these are the entries of"),
                           _punct(plain, ".")))
        return lines
    lines.append(_line(_prose("   Regrouped, these are the entries of"), _punct(form_eq, ":")))
    if 1 <= len(own) <= 2 and len(out_keys) <= 2 and count:
        g_cells = {values: cotangent(values)
                   for values in itertools.product(*(range(size[key]) for key in out_keys))}
        g = _grid(g_cells, [size[key] for key in out_keys]) if out_keys else cotangent(())
        grid = _grid(cells, [size[key] for key in own])
        body = _form_body(form, [_name(n) for n in (sym.cotangent, *(n for n, _ in others))])
        lines.append(_line(_M("  ", r"\quad"),
                           _punct(_eq(_partial(L, _name(names[k])), grid, body), ","),
                           _prose("with"), _eq(_name(sym.cotangent), g)))
    return lines


def _grid(cells, shape) -> _M:
    """Entries as a matrix (a column for a vector): ``[[a, b], [c, d]]``, LaTeX ``pmatrix``."""
    rows = ([[cells[(r,)]] for r in range(shape[0])] if len(shape) == 1 else
            [[cells[(r, c)] for c in range(shape[1])] for r in range(shape[0])])
    text = "[" + ", ".join("[" + ", ".join(c.text for c in row) + "]" for row in rows) + "]"
    latex = (r"\begin{pmatrix}" + r" \\ ".join(" & ".join(c.latex for c in row) for row in rows)
             + r"\end{pmatrix}")
    return _M(text, latex)
