"""``einsgrad.explain`` on hard and misleading input (issue 10): bounded time, clear refusals,
true sentences, fresh names that clash with nothing, counts that match what is printed, and
LaTeX that lays out.

The oracles are independent of the explanation code: gradients by perturbing one entry at a
time (the forward is multilinear, so this is exact), regular expressions over the printed
text, matplotlib's mathtext parser, and pdflatex where it is installed.
"""

from __future__ import annotations

import re
import shutil
import string
import subprocess
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad

LETTERS = string.ascii_letters
HANG_GUARD_S = 5.0  # a hang guard, not a performance assertion (the target is well under 0.3 s)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    try:
        result = function(*args, **kwargs)
    except einsgrad.EinsumSpecError as error:
        result = error
    return result, time.perf_counter() - start


# -- nothing may hang ------------------------------------------------------------------------

HARD_SPECS = [
    pytest.param("abcdefghijklmnopqrst->a", id="20 labels"),
    pytest.param(LETTERS + "->a", id="52 labels"),
    pytest.param(string.ascii_lowercase + "ZX", id="28 labels implicit"),
    pytest.param("..." + LETTERS + ",..." + LETTERS[::-1] + "->...", id="52 labels, ellipses"),
    pytest.param("a" * 4000 + "->a", id="4000 repeats"),
    pytest.param("a" * 4000 + "->", id="4000 repeats summed"),
    pytest.param("ab" * 1000 + ",ba->ab", id="2000 repeats, two labels"),
    pytest.param("i->" + "i" * 300, id="300 repeats in the output"),
    pytest.param(",".join(LETTERS[i] + LETTERS[i + 1] for i in range(51)) + "->az", id="chain of 51"),
    pytest.param(",".join("ab" for _ in range(60)) + "->ab", id="60 operands"),
    pytest.param(",".join(LETTERS[i % 52] * 7 for i in range(40)) + "->", id="40 operands, repeats"),
    pytest.param("abcdefgh,abcdefhg->abcdef", id="8 batch-like labels"),
    pytest.param("abij,abjk,abkl,ablm,abmn,abno->abio", id="6 batched operands"),
]


@pytest.mark.parametrize("spec", HARD_SPECS)
@pytest.mark.parametrize("style", ["index", "differential"])
def test_hard_specs_explain_in_bounded_time(spec, style):
    """Every spec compile accepts explains (or is refused for its length, with a way out)."""
    einsgrad.compile(spec)  # compile accepts it
    result, seconds = _timed(einsgrad.explain, spec, style=style)
    assert seconds < HANG_GUARD_S, seconds
    if isinstance(result, einsgrad.EinsumSpecError):
        assert "give wrt= fewer operands" in str(result)
        result, seconds = _timed(einsgrad.explain, spec, style=style, wrt=0)
        assert seconds < HANG_GUARD_S, seconds
    assert str(result) and result.latex().isascii()


@st.composite
def hard_specs(draw):
    """Many labels, many repeats, many operands, sometimes ellipses."""
    count = draw(st.integers(1, 12))
    pool = LETTERS[:draw(st.integers(1, 52))]
    terms = []
    for _ in range(count):
        labels = draw(st.lists(st.sampled_from(pool), max_size=60))
        repeat = draw(st.sampled_from([1, 1, 1, 5, 50]))
        term = "".join(label * repeat for label in labels)
        terms.append(("..." if draw(st.booleans()) and count < 4 else "") + term)
    used = sorted({c for t in terms for c in t if c != "."})
    output = "".join(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
    if any("..." in t for t in terms):
        output = "..." + output
    return ",".join(terms) + "->" + output


@settings(max_examples=40, deadline=None)
@given(hard_specs(), st.sampled_from(["index", "differential"]))
def test_generated_hard_specs_explain_in_bounded_time(spec, style):
    einsgrad.compile(spec)
    result, seconds = _timed(einsgrad.explain, spec, style=style, wrt=0)
    assert seconds < HANG_GUARD_S, (spec, seconds)
    assert not isinstance(result, einsgrad.EinsumSpecError) or "give wrt=" in str(result)


def test_a_derivation_too_long_to_read_is_refused_quickly():
    result, seconds = _timed(einsgrad.explain, "a" * 30000 + "->a")
    assert seconds < HANG_GUARD_S
    assert isinstance(result, einsgrad.EinsumSpecError) and "more than 20000" in str(result)


def test_elementwise_on_many_repeats_is_bounded():
    sizes = {"a": 1, "b": 2}
    result, seconds = _timed(einsgrad.explain, "a" * 2000 + "b->b", elementwise=True, sizes=sizes)
    assert seconds < HANG_GUARD_S and "(2 equations)" in str(result)


# -- misleading input is refused with a hint -------------------------------------------------


@pytest.mark.parametrize("spec, column", [
    pytest.param("A X B", 1, id="a matrix product"),
    pytest.param("X W", 1, id="two names"),
    pytest.param("x A x", 1, id="a quadratic form"),
    pytest.param("ij,j k->ik", 4, id="a space inside an operand"),
    pytest.param("ij,jk->i k", 8, id="a space inside the output"),
    pytest.param("AXB", 0, id="implicit, operand 0 holds A"),
    pytest.param("ij,BC", 3, id="implicit, operand 1 holds B"),
])
def test_matrix_expressions_are_refused_with_a_hint(spec, column):
    with pytest.raises(einsgrad.EinsumSpecError, match=r"ij,jk->ik.*einsgrad\.program") as info:
        einsgrad.explain(spec)
    assert info.value.column == column
    assert str(info.value).splitlines()[-1] == "    " + " " * column + "^"
    einsgrad.compile(spec)  # compile follows numpy and still takes it


@pytest.mark.parametrize("spec", ["ij, jk -> ik", " ...i , i ", "...ij,... jk->...ik", "XW", "ik,jk"])
def test_spaces_between_terms_are_fine(spec):
    assert einsgrad.explain(spec).gradients


def test_a_name_that_is_a_label_is_refused():
    with pytest.raises(einsgrad.EinsumSpecError, match="'i' is also a label") as info:
        einsgrad.explain("ij,jk->ik", names="i,B")
    assert info.value.column == 0
    with pytest.raises(einsgrad.EinsumSpecError, match="'k' is also a label"):
        einsgrad.explain("ij,jk->ik", out="k")


# -- true sentences --------------------------------------------------------------------------


def _gradient_by_entries(spec, ops, G, sizes):
    """∂<G, f(ops)>/∂ops[0], entry by entry: the forward is linear in each operand."""
    f = einsgrad.compile(spec, sizes=sizes)
    grad = np.zeros(ops[0].shape)
    for index in np.ndindex(ops[0].shape):
        unit = np.zeros(ops[0].shape)
        unit[index] = 1.0
        grad[index] = np.sum(G * f(unit, *ops[1:]))
    return grad


@st.composite
def phenomenon_cases(draw):
    """One operand with repeats and labels of its own, maybe another operand, any output."""
    first = draw(st.lists(st.sampled_from("ijk"), min_size=1, max_size=4))
    other = draw(st.lists(st.sampled_from("ijkl"), max_size=3))
    terms = ["".join(first)] + (["".join(other)] if other and draw(st.booleans()) else [])
    used = sorted({c for t in terms for c in t})
    output = "".join(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
    if draw(st.booleans()):
        output += draw(st.sampled_from("mn"))  # a label only the output has
    return ",".join(terms) + "->" + output


@settings(max_examples=60, deadline=None)
@given(phenomenon_cases())
def test_each_phenomenon_sentence_is_true(spec):
    """Each sentence about operand A holds for the gradient computed entry by entry."""
    terms, output = spec.split("->")
    terms = terms.split(",")
    size = {label: 2 + n % 2 for n, label in enumerate("ijklmn")}
    sizes = {label: size[label] for label in output if label in "mn"} or None
    text = str(einsgrad.explain(spec, wrt=0, sizes=sizes))
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal([size[c] for c in t]) for t in terms]
    G = rng.standard_normal([size[c] for c in output])
    grad = _gradient_by_entries(spec, ops, G, sizes)
    term = terms[0]
    diagonal_labels, constant_labels = set(), set()
    for label in set(term):
        axes = [n for n, c in enumerate(term) if c == label]
        repeated = re.search(rf"   {label} is repeated in A(?P<alone> and appears nowhere else)?", text)
        broadcast = re.search(rf"   {label} appears only in A: .* constant along it", text)
        assert not (repeated and broadcast), text  # one sentence per label, not two
        if repeated:
            diagonal_labels.add(label)
            for index in np.ndindex(grad.shape):
                if len({index[a] for a in axes}) > 1:
                    assert grad[index] == 0, (spec, index)
            if repeated["alone"]:
                constant_labels.add(label)
        if broadcast:
            constant_labels.add(label)
        assert bool(repeated) == (len(axes) > 1), text
        elsewhere = any(label in t for t in terms[1:]) or label in output
        assert bool(repeated and repeated["alone"] or broadcast) == (not elsewhere), text
    for label in constant_labels:
        axes = [n for n, c in enumerate(term) if c == label]
        for index in np.ndindex(grad.shape):
            if len({index[a] for a in axes}) == 1:  # on the diagonal: move along it
                moved = list(index)
                for a in axes:
                    moved[a] = (index[a] + 1) % grad.shape[a]
                assert np.isclose(grad[index], grad[tuple(moved)]), (spec, label, index)


def test_trace_says_one_true_sentence():
    text = str(einsgrad.explain("ii->", "A"))
    assert "zero off the diagonal p = q, and on it the same for every i" in text
    assert "constant along it" not in text and "∂L/∂A = G I" in text


# -- fresh names -----------------------------------------------------------------------------

_ENTRY = re.compile(r"(?<![\w′∂/])([A-Za-z][A-Za-z0-9]*)_((?:[A-Za-z][′]*|[βγ]|,)+)")


def _meanings(text):
    """Names written with a subscript, and the index letters used in subscripts."""
    names, indices = set(), set()
    for name, sub in _ENTRY.findall(text):
        names.add(name)
        indices.update(re.findall(r"[A-Za-z]", sub))
    return names, indices


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text("ijpqGLYAB", min_size=0, max_size=3), min_size=1, max_size=3),
       st.one_of(st.none(), st.lists(st.sampled_from(["p", "q", "A", "B", "X", "Y", "G", "W1", "i"]),
                                     min_size=1, max_size=3, unique=True)),
       st.sampled_from([None, "Y", "Z", "p"]))
def test_no_symbol_has_two_meanings(terms, names, out):
    labels = sorted({c for t in terms for c in t})
    spec = ",".join(terms) + "->" + "".join(labels[:2])
    if names is not None and len(names) != len(terms):
        names = None
    try:
        ex = einsgrad.explain(spec, names=names, out=out)
    except einsgrad.EinsumSpecError as error:  # only a given name that is a label, or reserved
        assert re.search(r"also a label|reserved|distinct", str(error)), str(error)
        return
    text = str(ex)
    entry_names, indices = _meanings(text)
    assert not entry_names & indices, (spec, text)
    loss, cotangent = re.search(r"; (\w+) is a scalar loss; the cotangent (\w+) =", text).groups()
    used = {*ex.names, ex.out, loss, cotangent}
    assert len(used) == len(ex.names) + 3 and not used & set(labels), (spec, used)


@pytest.mark.parametrize("spec, names, absent", [
    ("AB,BC->AC", None, "B_BC"),
    ("i,i->", "p,q", "∂L/∂p_p"),
    ("GL->G", None, "G_G"),
    ("Yi->i", None, "Y_Y"),
])
def test_clashes_of_the_issue_are_gone(spec, names, absent):
    assert absent not in str(einsgrad.explain(spec, names))


# -- elementwise counts ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text("ijb", min_size=1, max_size=3), min_size=1, max_size=2),
       st.integers(1, 2))
def test_elementwise_count_is_what_is_printed(terms, n):
    used = sorted({c for t in terms for c in t})
    spec = ",".join(terms) + "->" + "".join(used[:1])
    text = str(einsgrad.explain(spec, elementwise=True, sizes={c: n for c in used}))
    sections = text.split("6. Entry by entry (")[1:]
    assert len(sections) == len(terms)
    for section in sections:
        count = int(re.match(r"(\d+) equations?\)", section).group(1))
        body = section.split("\n\n")[0]
        assert len(re.findall(r"^   ∂\w+/∂\w+_[\d,]+ = ", body, re.MULTILINE)) == count
    assert not re.search(r"entries of\s*(for each|:|$)", text, re.MULTILINE)


# -- LaTeX -------------------------------------------------------------------------------------

CURATED = ["ik,jk->ij", "ik,kj->ij", "ij,jk,kl->il", "i,ij,j->", "ij,ji->", "i,j->ij", "ii->",
           "ii->i", "ij->i", "bij,bjk->bik", "...ij,jk->...ik", "i->ii", "i,ij->ij", "ij,ij->i",
           "ijk,jk->i", "...ij->ij", ",ij->ij", "a" * 40 + "->a", "i->iiiiii"]


@pytest.mark.parametrize("spec", CURATED)
@pytest.mark.parametrize("style", ["index", "differential"])
def test_every_formula_of_the_latex_is_mathtext(spec, style):
    """Each inline formula parses with matplotlib's mathtext; prose stays outside math."""
    mathtext = pytest.importorskip("matplotlib.mathtext")
    parser = mathtext.MathTextParser("path")
    latex = einsgrad.explain(spec, style=style).latex()
    formulas = re.findall(r"\$([^$]+)\$", latex)
    assert formulas and r"\text{" not in latex and r"\begin{align" not in latex
    for formula in formulas:
        parser.parse(f"${formula}$")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_readme_example_lays_out_on_a4(tmp_path):
    """No line of the README's example runs more than 3 pt past the margin of A4."""
    body = einsgrad.explain("ik,jk->ij", names="X,W").latex()
    (tmp_path / "doc.tex").write_text("\\documentclass[a4paper]{article}\n\\usepackage{amsmath}\n"
                                      "\\begin{document}\n" + body + "\n\\end{document}\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                   capture_output=True, timeout=120, check=True)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    overfull = [float(x) for x in re.findall(r"Overfull \\hbox \((\d+\.?\d*)pt too wide", log)]
    assert all(x <= 3 for x in overfull), overfull


# -- every printed matrix form, evaluated ------------------------------------------------------

_TOKEN = re.compile(r"tr\(|diag\(|Diag\(|[()ᵀ∘]|[A-Za-z][A-Za-z0-9_]*")


def _evaluate(formula: str, values: dict) -> np.ndarray:
    """A plain matrix formula as the text reads it (vectors are columns), by a tiny parser.

    Juxtaposition is the matrix product (or a scalar multiple, for a 1 x 1 side), ``ᵀ`` the
    transpose, ``∘`` the entrywise product, ``tr``, ``diag`` and ``Diag`` as in textbooks.
    """
    tokens = _TOKEN.findall(formula)
    assert "".join(tokens) == formula.replace(" ", ""), formula
    at = 0

    def peek():
        return tokens[at] if at < len(tokens) else None

    def take():
        nonlocal at
        at += 1
        return tokens[at - 1]

    def atom():
        token = take()
        if token in ("tr(", "diag(", "Diag(", "("):
            inner = hadamard()
            assert take() == ")"
            if token == "tr(":
                return np.array([[np.trace(inner)]])
            if token == "diag(":
                square = inner.shape[0] == inner.shape[1] and inner.shape[0] > 1
                return np.diag(inner)[:, None] if square else np.diag(inner.ravel())
            return np.diag(inner.ravel()) if token == "Diag(" else inner
        return values[token]

    def postfix():
        value = atom()
        while peek() == "ᵀ":
            take()
            value = value.T
        return value

    def product():
        value = postfix()
        while peek() not in (None, ")", "∘"):
            right = postfix()
            value = value * right if 1 in (value.size, right.size) else value @ right
        return value

    def hadamard():
        value = product()
        while peek() == "∘":
            take()
            value = value * product()
        return value

    result = hadamard()
    assert at == len(tokens), formula
    return result


def _as_matrix(array) -> np.ndarray:
    array = np.asarray(array, dtype=float)
    return array.reshape(1, 1) if array.ndim == 0 else array[:, None] if array.ndim == 1 else array


@st.composite
def small_matrix_specs(draw):
    """Up to three operands of rank at most 2 over i, j, k (distinct sizes show wrong shapes)."""
    term = st.lists(st.sampled_from("ijk"), max_size=2).map("".join)
    terms = draw(st.lists(term, min_size=1, max_size=3))
    used = sorted({c for t in terms for c in t})
    output = "".join(draw(st.permutations(used))[:draw(st.integers(0, min(2, len(used))))])
    return ",".join(terms) + "->" + output


@settings(max_examples=150, deadline=None)
@given(small_matrix_specs())
def test_every_plain_matrix_form_printed_is_the_gradient(spec):
    """Each printed plain form (no batch, no ones vector, no identity), evaluated as it
    reads, equals the vjp; and the forward form equals the forward."""
    ex = einsgrad.explain(spec)
    terms = spec.split("->")[0].split(",")
    size = {"i": 2, "j": 3, "k": 4}
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal([size[c] for c in t]) for t in terms]
    f = einsgrad.compile(spec)
    y = f(*ops)
    G = rng.standard_normal(y.shape)
    values = {name: _as_matrix(x) for name, x in zip(ex.names, ops)} | {"G": _as_matrix(G)}
    forms = [(ex.forward_form, y)] + [(g.matrix_form, f.vjp(G, *ops, wrt=g.wrt))
                                      for g in ex.gradients]
    for form, expected in forms:
        if form is None or re.search(r"for each|Σ|(?<![A-Za-z0-9])[1I](?![A-Za-z0-9_])", form):
            continue
        got = _evaluate(form.split(" = ", 1)[1], values)
        np.testing.assert_allclose(got, _as_matrix(expected), atol=1e-12, err_msg=f"{spec}: {form}")


def test_frobenius_placeholders_avoid_the_names():
    """The identities' placeholder matrices are not the operands: names M, N push them on."""
    text = str(einsgrad.explain("ik,jk->ij", "M,N", style="differential", wrt=1))
    rules = next(line for line in text.splitlines() if line.startswith("   using"))
    assert not re.search(r"\b[MN]\b", rules), rules
