"""Programs under bad and odd input (issue 10): a clear EinsumSpecError or the right answer, fast.

Oracles are independent of einsgrad: coefficients are computed exactly with the standard
``decimal`` module, the rule for a left side is restated here, gradients are checked by finite
differences of numpy formulas, and explanations are read back as text.
"""

from __future__ import annotations

import decimal
import itertools
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError
from einsgrad.program_explanation import MAX_SHOWN_TERMS
from test_program import check_gradient, programs, render

BOUND = 300  # einsgrad.programs.MAX_PLACES, restated: digits after the point, and 10^BOUND
EXACT = decimal.Context(prec=5000, Emax=10**6, Emin=-10**6, traps=[decimal.Inexact])


# -- coefficients -----------------------------------------------------------------------


def _fits(value: decimal.Decimal) -> bool:
    """A coefficient einsgrad must accept: below 10^BOUND, at most BOUND places."""
    if value == 0:
        return True
    places = max(0, -value.normalize(EXACT).as_tuple().exponent)
    return abs(value) < decimal.Decimal(10) ** BOUND and places <= BOUND


def _exact_text(numerator: int, twos: int, fives: int) -> str:
    """``numerator / (2^twos 5^fives)`` as a plain decimal string, exactly."""
    value = EXACT.divide(decimal.Decimal(numerator), EXACT.multiply(EXACT.power(2, twos), EXACT.power(5, fives)))
    return format(value, "f")


literals = st.one_of(
    st.builds(_exact_text, st.integers(1, 10**40) | st.integers(1, 10**320),
              st.integers(0, 340), st.integers(0, 340)),
    st.builds(lambda whole, part: f"{whole}.{part}", st.text("0123456789", min_size=1, max_size=330),
              st.text("0123456789", max_size=330)),
    st.sampled_from(["0.5", "0.1", "2", "1", "0", "10", ".25", "7."]),
)


@settings(max_examples=150)
@given(st.lists(literals, min_size=1, max_size=70), st.lists(literals, min_size=1, max_size=3),
       st.booleans())
def test_random_coefficients_print_exactly_and_evaluate(first, second, negative):
    text = ("Y[i] = " + ("-" if negative else "") + " * ".join(first) + " * X[i] + "
            + " * ".join(second) + " * X[i]")
    numbers = [decimal.Decimal(x) for x in first + second]
    running = [list(itertools.accumulate(map(decimal.Decimal, factors), EXACT.multiply))
               for factors in (first, second)]  # each product is checked as it grows
    products = [EXACT.minus(running[0][-1]) if negative else running[0][-1], running[1][-1]]
    total = EXACT.add(*products)
    if not all(map(_fits, numbers + running[0] + running[1] + [total])):
        with pytest.raises(EinsumSpecError, match=r"(number|coefficient).*(10\^300|after the decimal point)"):
            einsgrad.program(text)
        return
    prog = einsgrad.program(text)
    assert einsgrad.program(str(prog)) == prog and str(einsgrad.program(str(prog))) == str(prog)
    x = np.array([1.0, -2.0, 0.5])
    c = float(total)
    assert np.isfinite(c) and (c != 0 or total == 0)  # a coefficient is a normal float64
    np.testing.assert_allclose(prog(X=x), c * x, rtol=1e-14)
    G = np.array([0.25, 1.0, -3.0])
    np.testing.assert_allclose(prog.grad("X")(dY=G, X=x), c * G, rtol=1e-14)
    assert f'"{prog.grad("X")}"' in str(prog.explain("X"))


@pytest.mark.parametrize("text, match, column", [
    ("Y[i] = " + "9" * 5000 + " * X[i]", r"this number reaches 10\^300", 7),
    ("Y[i] = 0." + "0" * 300 + "1 * X[i]", r"this number has 301 digits after the decimal point", 7),
    ("Y[i] = x[i] * " + "0.1 * " * 301 + "y[i]", r"the coefficient of this term .* has more than 300 digits",
     14 + 6 * 300),
    ("Y[i] = " + "1" + "0" * 200 + " * 1" + "0" * 200 + " * 0." + "0" * 299 + "1 * x[i]",
     r"the coefficient of this term .* reaches 10\^300", 7 + 201 + 3),
    ("Y[i] = " + "1" + "0" * 299 + " * x[i] + " + "9" + "0" * 299 + " * x[i]",
     r"like terms merge into a coefficient that reaches 10\^300", None),
], ids=["huge", "tiny", "product", "running_product", "merged"])
def test_coefficients_out_of_range_are_refused(text, match, column):
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.program(text)
    assert info.value.spec == text and info.value.column == column


@pytest.mark.parametrize("text, value", [
    ("Y[i] = 0." + "0" * 69 + "1 * X[i]", 1e-70),
    ("Y[i] = " + "0.5*" * 64 + "X[i]", 0.5 ** 64),
    ("Y[i] = 1." + "0" * 5000 + " * X[i]", 1.0),  # trailing zeros are no digits
    ("Y[i] = 0." + "0" * 299 + "1 * X[i]", 1e-300),
], ids=["issue_tiny", "issue_halves", "long_zeros", "smallest"])
def test_issue_coefficients(text, value):
    prog = einsgrad.program(text)
    assert einsgrad.program(str(prog)) == prog
    np.testing.assert_allclose(prog(X=np.ones(2)), [value, value], rtol=1e-15)
    np.testing.assert_allclose(prog.grad("X")(dY=np.ones(2)), [value, value], rtol=1e-15)
    assert "Gradient with respect to X" in str(prog.explain())


def test_integer_coefficients_beyond_int64_give_floats():
    prog = einsgrad.program("Y[i] = " + "1" + "0" * 30 + " * x[i]")
    got = prog(x=np.arange(3))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, 1e30 * np.arange(3), rtol=1e-15)


# -- names and indices given to derivations ---------------------------------------------

PROGRAM = "f = A[i,j] * B[j,k] * A[i,k]"  # B's gradient: Aᵀ A
NAMES = st.sampled_from(["p", "q", "r", "i", "k_2", "delta", "A", "p,q", " p", "", "1a", "p]", "é"])
OUTS = st.sampled_from([None, "g", "G2", "f", "A", "B", "delta", "g h; 1", "g[p]", "1x", "", "é"])


def _left_side_ok(out, indices) -> bool:
    """The rule, restated: a new tensor name, one distinct identifier per axis of B (rank 2)."""
    identifier = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
    if out is not None and (not identifier.match(out) or out in ("delta", "A", "B")):
        return False
    return indices is None or (len(indices) == 2 and len(set(indices)) == 2
                               and all(identifier.match(i) for i in indices))


@settings(max_examples=200)
@given(OUTS, st.none() | st.lists(NAMES, max_size=3))
def test_random_gradient_names_and_indices(out, indices):
    prog = einsgrad.program(PROGRAM)
    indices = None if indices is None else tuple(indices)
    if not _left_side_ok(out, indices):
        with pytest.raises(EinsumSpecError, match=r"the (result|gradient)('s)? .*(name|index|indices|axes)"):
            prog.grad("B", out=out, indices=indices)
        return
    g = prog.grad("B", out=out, indices=indices)
    assert g.output_name == (out or "g") and g.output_indices == (indices or ("j", "k"))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    check_gradient(lambda b: np.einsum("ij,jk,ik->", A, b, A), g(A=A, B=B), B)
    again = einsgrad.program(str(g))  # reads back, indices made canonical
    np.testing.assert_allclose(again(A=A), A.T @ A, rtol=1e-12)


@pytest.mark.parametrize("action, match", [
    (lambda p: p.grad("B", indices=("p", "p")), r"index 'p' is repeated on the left"),
    (lambda p: p.grad("B", indices=("p",)), r"the tensor has 2 axes, so the gradient takes 2"),
    (lambda p: p.grad("B", out="g h; 1"), r"character ';' is not allowed"),
    (lambda p: p.grad("B", indices="pq"), r"a tuple of index names"),
    (lambda p: p.grad("B", out="A"), r"the result would be named 'A'"),
    (lambda p: p.jacobian("B", out="A"), r"the Jacobian would be named 'A'"),
    (lambda p: p.jacobian("B", out="J[i]"), r"the Jacobian's name must be valid on a program's left side"),
    (lambda p: p.hessian("B", out="delta"), r"the Hessian's name .* cannot be named 'delta'"),
    (lambda p: p.hvp("B", v="w w"), r"the vector's name must be valid .* found 'w'"),
    (lambda p: p.hvp("B", v="w", out="w"), r"the result would be named 'w'"),
    (lambda p: einsgrad.program("Y[i] = x[i]").grad("x", out="dY"), r"the result would be named 'dY'"),
], ids=["repeated", "count", "bad_out", "string", "clash", "jacobian_clash", "jacobian_indices",
        "hessian_delta", "vector", "vector_result", "cotangent"])
def test_derivation_arguments_are_checked(action, match):
    with pytest.raises(EinsumSpecError, match=match):
        action(einsgrad.program(PROGRAM))


def test_default_names_are_fresh():
    x, y = np.array([1.0, 2.0, -1.0]), np.array([0.5, -1.0, 3.0])
    prog = einsgrad.program("f = g[i] * x[i]")
    assert str(prog.grad("x")) == "g1[i] = g[i]"
    np.testing.assert_allclose(prog.grad("x")(g=y, x=x), y)
    assert '"g1[i] = g[i]"' in str(prog.explain("x"))
    layer = einsgrad.program("Y[i] = dY[i] * x[i]")
    grad = layer.grad("x")
    assert str(grad) == "dx[i] = dY1[i] * dY[i]"
    np.testing.assert_allclose(grad(dY=y, x=x, dY1=x), x * y)
    assert "the cotangent G = ∂L/∂Y (the input dY1)" in str(layer.explain("x"))
    q = einsgrad.program("f = x[i] * H[i,j] * x[j] + v[i] * x[i]")
    H = np.arange(9.0).reshape(3, 3)
    assert q.hessian("x").output_name == "H1"
    np.testing.assert_allclose(q.hessian("x")(x=x, H=H, v=y), H + H.T)
    hvp = q.hvp("x")
    np.testing.assert_allclose(hvp(x=x, H=H, v=y, v1=x), (H + H.T) @ x)
    assert "One entry of the Hessian is H1_ip" in str(q.explain("x", style="hessian"))
    assert "∂f/∂p_q" in str(einsgrad.program("f = p[i] * x[i]").explain("p"))  # p is taken


# -- calling a program ------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda p: p(np.ones((2, 3)), np.ones((3, 4))), r"takes its tensors by keyword, got 2 .* A=, B="),
    (lambda p: p(A=np.ones((2, 3)), B=np.ones((3, 4)), C=1), r"'C': not a tensor of the program; it takes A=, B="),
    (lambda p: p(A=np.ones((2, 3))), r"missing input 'B'"),
    (lambda p: p(A=np.ones((2, 3)), B=np.ones(3)), r"tensor 'B' has 1 dimension\(s\) but the program gives it 2"),
    (lambda p: p(A=np.ones((2, 3)), B=np.ones((4, 4))), r"index 'k' has size 4 in 'B' \(axis 0\) but 3 in 'A'"),
    (lambda p: p(A=[[1, 2], [3]], B=np.ones((3, 4))), r"tensor 'A' cannot be read as an array"),
    (lambda p: p(A=np.ones((2, 3)), B=np.full((3, 4), "x")), r"tensor 'B' has dtype <U1, which is not numeric"),
    (lambda p: p(A=np.ones((2, 3)), B=None), r"tensor 'B' has dtype object"),
], ids=["positional", "unknown", "missing", "rank", "size", "ragged", "strings", "none"])
def test_calls_are_checked(call, match):
    with pytest.raises(EinsumSpecError, match=match):
        call(einsgrad.program("Y[i,k] = A[i,j] * B[j,k]"))


def test_a_tensor_named_self_can_be_given():
    np.testing.assert_allclose(einsgrad.program("f = self[i] * self[i]")(self=np.ones(3)), 3.0)


# -- explanation text -------------------------------------------------------------------

_COUNT = {"once": 1, "twice": 2}


def _count(word: str) -> int:
    return _COUNT.get(word) or int(word.split()[0])


def _check_counts(text: str):
    """Every "occurs N" lists N derivatives (with their "(k times)"), no line of a section is
    printed twice, and merged terms are numbered within step 4."""
    for section in text.split("\n\n"):
        lines = section.splitlines()
        assert len(lines) == len(set(lines)), section
        for line in lines:
            found = re.match(r"3\. (\w+) occurs (once|twice|\d+ times): (.*?); by the product rule", line)
            if found:
                listed = re.split(r", (?=∂)", found.group(3))
                counts = [_count(m.group(1)) if (m := re.search(r"\((twice|\d+ times)\)$", d)) else 1
                          for d in listed]
                assert sum(counts) == _count(found.group(2)), line
                assert all(re.match(f"∂{found.group(1)}[_/]", d) for d in listed), line
                occurrences = sum(counts)
            merged = re.match(r"\s+Terms ([\d, and]+) of step 4", line)
            if merged:
                assert max(map(int, re.findall(r"\d+", merged.group(1)))) <= occurrences, line


@st.composite
def repetitive_programs(draw):
    """Programs of :func:`test_program.programs` with factors repeated, and deltas."""
    output, terms = draw(programs(scalar=draw(st.booleans())))
    extra = draw(st.lists(st.sampled_from(["repeat", "delta"]), max_size=2))
    for kind in extra:
        c, factors = terms[0]
        if kind == "repeat":
            factors = factors + [factors[0]]
        elif len(factors[0][1]) == 2:
            factors = factors + [("delta", factors[0][1])]
        terms = [(c, factors)] + terms[1:]
    return output, terms


@settings(max_examples=80)
@given(repetitive_programs())
def test_explanation_counts_match_what_is_listed(case):
    output, terms = case
    try:
        prog = einsgrad.program(render(output, terms))
    except EinsumSpecError as e:
        assert "only in deltas" in str(e)  # a delta on a summed index no tensor sizes
        return
    _check_counts(str(prog.explain()))
    if not prog.output_indices:
        _check_counts(str(prog.explain(style="hessian")))


def test_long_sums_say_how_many_terms_are_left_out():
    shown = MAX_SHOWN_TERMS
    text = str(einsgrad.program("f = " + " * ".join(["x[i]"] * (shown + 6))).explain("x"))
    step3 = next(line for line in text.splitlines() if line.startswith("3. "))
    assert f"x occurs {shown + 6} times" in step3 and step3.endswith(" + ... (6 more terms)")
    assert step3.count("Σ_i") == shown  # the terms written out, each a sum over i
    assert '"g[i] = ' + str(shown + 6) + " * " + " * ".join(["x[i]"] * (shown + 5)) + '"' in text


def test_issue_explanation_text():
    e = str(einsgrad.program("f = x[i] * x[i] * x[j]").explain("x"))
    assert "x occurs 3 times: ∂x_i/∂x_p = δ_ip (twice), ∂x_j/∂x_p = δ_jp;" in e
    h = str(einsgrad.program("f = X[i,j] * X[j,k] * X[k,i]").explain(style="hessian"))
    assert h.count("δ_jp survives") == 1 and "δ_jp survives: term 1 of step 4 is zero off" in h
    t = str(einsgrad.program("f = X[i,i] * X[j,j]").explain(style="hessian"))
    assert t.count("δ_pq survives: the Hessian is zero off that diagonal") == 1  # H = 2 δ_ij δ_kl
    _check_counts(e), _check_counts(h), _check_counts(t)


# -- large programs: a coarse hang guard, not a timing ------------------------------------

LARGE = {
    "chain30": "f = " + " * ".join(f"A{n}[i{n},i{n + 1}]" for n in range(30)) + " * A30[i30,i0]",
    "same_chain30": "f = " + " * ".join(f"A[i{n},i{(n + 1) % 30}]" for n in range(30)),
    "same8_and_vector": "f = " + " * ".join(f"A[i{n},i{(n + 1) % 8}]" for n in range(8)) + " * "
                        + " * ".join(f"x[i{n}]" for n in range(8)),
    "wide30": "f = X[" + ",".join(f"a{n}" for n in range(30)) + "] * X["
              + ",".join(f"a{n}" for n in reversed(range(30))) + "]",
    "terms300": "Y[i] = " + " + ".join(f"{n + 1} * A{n}[i,j] * x[j] * B{n}[j,i]" for n in range(300)),
    "deltas40": "Y[i,j] = " + " * ".join(f"delta[k{n},k{n + 1}]" for n in range(40)) + " * A[i,k0] * B[k40,j]",
    "repeated60": "f = " + " * ".join(["x[i] * y[i]"] * 30),
    "rank200": "f = x[" + ",".join(f"a{n}" for n in range(200)) + "]",
    "output100": "Y[" + ",".join(f"o{n}" for n in range(100)) + "] = " + " * ".join(f"x[o{n}]" for n in range(100)),
    "terms3000": "Y[i] = " + " + ".join(f"A{n}[i]" for n in range(3000)),
    "hadamard100": "Y[i,j] = " + " * ".join(["A[i,j]"] * 100),
}


@pytest.mark.parametrize("text", LARGE.values(), ids=LARGE.keys())
def test_large_programs_do_not_hang(text):
    start = time.perf_counter()
    prog = einsgrad.program(text)
    assert einsgrad.program(str(prog)) == prog
    first = prog.inputs[0]
    prog.grad(first), prog.jacobian(first), str(prog.explain(first))
    if not prog.output_indices:
        prog.hessian(first), prog.hvp(first), str(prog.explain(first, style="hessian"))
    assert time.perf_counter() - start < 20, "hang guard"


# -- fuzz -------------------------------------------------------------------------------

PIECES = ["Y", "f", "x", "A", "delta", "i", "j", "k", "[", "]", ",", "*", "+", "-", "=", " ", "2",
          "0.5", ".", "1e3", "é", "∑", "\t", "\n", "(", ")", "/", "#", "\x00", "𝑥", "٣", "[i,j]", "[i]"]


@settings(max_examples=300)
@given(st.sampled_from(["", "f = ", "Y[i] = ", "Y[i,j] = "]),
       st.lists(st.sampled_from(PIECES), max_size=30) | st.text(max_size=40))
def test_fuzzed_program_texts(left, pieces):
    text = left + "".join(pieces)
    start = time.perf_counter()
    try:
        prog = einsgrad.program(text)
    except EinsumSpecError as e:
        assert e.spec == text or e.spec is None
        return
    assert einsgrad.program(str(prog)) == prog
    for name in prog.inputs[:2]:
        try:
            prog.grad(name), str(prog.explain(name))
        except EinsumSpecError as e:
            assert "only in deltas" not in str(e)
    assert time.perf_counter() - start < 10, "hang guard"
