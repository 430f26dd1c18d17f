"""Every spec of at most two labels per operand and output prints its matrix form; more say so.

The forms are read back by the readers of ``test_explain_matrix`` (single specs in matrix style:
the forward's differential, each share and each gradient, against ``np.einsum`` oracles) and of
``test_matrix_statements`` (a program's gradient, against the program's own value, which the
program tests hold to torch autograd). The textbook forms below are written by hand.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from test_explain_matrix import _sections, _spec_parts, check_matrix_explanation, generated_examples
from test_matrix_statements import evaluate

# (spec, names, the gradient wrt operand 0 a textbook writes, or the forward's form)
TEXTBOOK = [
    pytest.param("ij,ij->i", "A,B", "Y = (A ∘ B) 1", id="row sums of a Hadamard product"),
    pytest.param("ij,ij->j", "A,B", "Y = (A ∘ B)ᵀ 1", id="column sums of a Hadamard product"),
    pytest.param("ij,i,ij->j", "A,c,B", "Y = (A ∘ B)ᵀ c", id="weighted column sums"),
    pytest.param("ij,jk,ki->i", "A,B,C", "Y = diag(A B C)", id="diagonal of a product"),
    pytest.param("ij,jk,ik->i", "A,B,C", "Y = diag(A B Cᵀ)", id="rows of a product times C"),
    pytest.param("i,ij->i", "x,W", "Y = x ∘ (W 1)", id="vector times row sums"),
    pytest.param("ii,jj->", "A,B", "Y = tr(A) tr(B)", id="product of traces"),
    pytest.param("ij,j,jk->ik", "A,d,B", "Y = A Diag(d) B", id="scaled product"),
    pytest.param("ij->ii", "A", "Y = Diag(A 1)", id="row sums on a diagonal"),
    pytest.param("ii->ii", "A", "Y = Diag(diag(A))", id="diagonal part"),
    pytest.param("ij,jk,ik->ik", "A,B,C", "Y = C ∘ (A B)", id="Hadamard with a product"),
    pytest.param("ij,jk,jk->ik", "A,B,C", "Y = A (B ∘ C)", id="product with a Hadamard"),
    pytest.param("i,ii->i", "x,A", "Y = x ∘ diag(A)", id="vector times diagonal"),
    pytest.param("ij,kk->ij", "A,B", "Y = tr(B) A", id="matrix times a trace"),
    pytest.param("bi,bj,b->ij", "X,W,d", "Y = Xᵀ Diag(d) W", id="a summed batch of rank-2 operands"),
]


@pytest.mark.parametrize("spec,names,form", TEXTBOOK)
def test_textbook_forms_of_rank2_specs(spec, names, form):
    explanation = einsgrad.explain(spec, names, style="matrix")
    assert explanation.forward_form == form
    assert "No matrix form" not in str(explanation)
    assert check_matrix_explanation(spec, names.split(",")) > 0


@pytest.mark.parametrize("spec,names,gradient", [
    ("ij,ij->i", "A,B", "∂L/∂A = Diag(G) B"),
    ("ij,i,ij->j", "A,c,B", "∂L/∂c = (A ∘ B) G"),
    ("ij,jk,ik->i", "A,B,C", "∂L/∂B = Aᵀ Diag(G) C"),
    ("ii,jj->", "A,B", "∂L/∂A = G tr(B) I"),
])
def test_textbook_gradients_of_rank2_specs(spec, names, gradient):
    grads = {g.name: g.matrix_form for g in einsgrad.explain(spec, names, style="matrix").gradients}
    assert gradient in grads.values(), grads


@st.composite
def rank2_specs(draw):
    """One to four operands, each of at most two labels from ``ijkl`` (repeats allowed,
    ``"ii"``, and 0-d ones), the output at most two distinct labels of the inputs', or one
    repeated (``"ii"``, a diagonal matrix)."""
    n = draw(st.integers(1, 4))
    terms = ["".join(draw(st.lists(st.sampled_from("ijkl"), max_size=2))) for _ in range(n)]
    present = sorted(set("".join(terms)))
    output = "".join(draw(st.lists(st.sampled_from(present), max_size=2, unique=True))) if present else ""
    if len(output) == 1 and draw(st.booleans()):
        output *= 2
    return ",".join(terms) + "->" + output


NAMES = ["X", "W", "V", "U"]


@settings(max_examples=generated_examples(80), deadline=None)
@given(rank2_specs(), st.integers(0, 3))
def test_every_rank2_spec_prints_a_form(spec, seed):
    names = NAMES[:len(_spec_parts(spec)[0])]
    explanation = einsgrad.explain(spec, names, style="matrix")
    assert explanation.forward_form is not None, spec
    assert all(g.matrix_form is not None for g in explanation.gradients), str(explanation)
    assert "No matrix form" not in str(explanation), str(explanation)
    check_matrix_explanation(spec, names, seed)


@st.composite
def wide_specs(draw):
    """One to three operands of up to four labels from ``ijkl``, at least one operand or the
    output with three or more."""
    n = draw(st.integers(1, 3))
    terms = ["".join(draw(st.lists(st.sampled_from("ijkl"), min_size=1, max_size=4, unique=True)))
             for _ in range(n)]
    present = sorted(set("".join(terms)))
    output = "".join(draw(st.lists(st.sampled_from(present), max_size=4, unique=True)))
    if max(len(t) for t in (*terms, output)) < 3:
        terms[0] = "".join(dict.fromkeys(terms[0] + "ijkl"))[:3]
    return ",".join(terms) + "->" + output


@settings(max_examples=generated_examples(60), deadline=None)
@given(wide_specs())
def test_a_wide_spec_with_no_form_says_so_in_one_line(spec):
    """Three labels or more: a form for each batch slice where there is one (read back), else
    one line saying why, with the index form (evaluated by np.einsum)."""
    names = NAMES[:len(_spec_parts(spec)[0])]
    check_matrix_explanation(spec, names)
    for k, section in _sections(str(einsgrad.explain(spec, names, style="matrix"))).items():
        if section[0].startswith("No matrix form"):
            assert len(section) == 1, section
            assert re.match(r"No matrix form \(\w+ has \d indices, more than a matrix's two|"
                            r"No matrix form \(an index has no place", section[0]), section[0]


def test_a_network_no_two_label_intermediate_contracts_has_none():
    """Every pair of K4's corners is an operand: any contraction order makes a tensor of three
    labels, so there is no matrix form (and no rule is tried past the budget)."""
    explanation = einsgrad.explain("ij,ik,il,jk,jl,kl->", style="matrix")
    assert explanation.forward_form is None
    assert all(g.matrix_form is None for g in explanation.gradients)


SIZES = {"i": 2, "j": 3, "k": 4, "l": 5}


@st.composite
def rank2_programs(draw):
    """``Y[..] = X[..] * W[..] * ...``: a rank-2 spec as a one-statement program (a repeated
    output index is no program's, so the output is distinct labels)."""
    n = draw(st.integers(1, 3))
    terms = ["".join(draw(st.lists(st.sampled_from("ijk"), max_size=2))) for _ in range(n)]
    present = sorted(set("".join(terms)))
    output = "".join(draw(st.lists(st.sampled_from(present), max_size=2, unique=True))) if present else ""
    factors = [f"{NAMES[m]}[{','.join(t)}]" if t else f"s{m}" for m, t in enumerate(terms)]
    text = f"Y{'[' + ','.join(output) + ']' if output else ''} = " + " * ".join(factors)
    shapes = {f.partition("[")[0]: tuple(SIZES[c] for c in t) for f, t in zip(factors, terms)}
    shapes["dY"] = tuple(SIZES[c] for c in output)
    return text, shapes


@settings(max_examples=generated_examples(60), deadline=None)
@given(rank2_programs(), st.integers(0, 2 ** 16))
def test_every_rank2_program_gradient_prints_a_true_form(case, seed):
    text, shapes = case
    p = einsgrad.program(text)
    rng = np.random.default_rng(seed)
    a = {n: rng.standard_normal(s) for n, s in shapes.items()}
    for name in p.inputs:
        form = p.explain(name).gradients[0].matrix_form
        assert form is not None, (text, name, str(p.explain(name)))
        gradient = p.grad(name)
        expected = np.asarray(gradient(**{n: v for n, v in a.items() if n in gradient.inputs or n in p.inputs}),
                              dtype=float)
        got = evaluate(form, {**a, "G": a["dY"]}, expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"{text}: {form}")


def test_a_gradient_that_is_zero_is_the_zero_matrix():
    """An input on no path to the output has the gradient 0, a matrix form of its own."""
    p = einsgrad.program("S0 = 0.5 * s\nS1[i] = 3 * x[i]\nL = S1[i] * q[i]")
    (g,) = p.explain("s").gradients
    assert g.matrix_form == "∂L/∂s = 0"
    (h,) = p.explain("s", style="hessian").hessians
    assert h.matrix_form == "∂²L/∂s² = 0"
    a = {"s": np.array(0.3), "x": np.arange(3.0), "q": np.ones(3)}
    assert evaluate(g.matrix_form, a, ()) == p.grad("s")(**a) == 0


@pytest.mark.parametrize("spec", ["kij,k,kl->kl", "bi,b,bj->bij", "kij,k->kij"])
def test_an_operand_0d_in_each_slice_moves_as_a_scalar(spec):
    """``W_k`` of ``"kij,k,kl->kl"`` is a scalar in each slice k: its share moves by
    ``M : (a N) = (M : N) a``, not by a matrix product's rule (read back against np.einsum)."""
    names = NAMES[:len(_spec_parts(spec)[0])]
    assert check_matrix_explanation(spec, names) > 0
