"""``einsgrad.explain``: derivations checked against matrix calculus written by hand.

Each matrix form below is the classic result as one writes it from matrix calculus; the
numbers check the hand formula (plain numpy, written here) against ``einsgrad.vjp`` and, for
specs numpy can run, against central finite differences. The text tests look for the steps
of the derivation that a careful person writes, never for whole copied outputs.
"""

from __future__ import annotations

import dataclasses
import re
import string

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsgrad
from oracles import numeric_vjp_check
from strategies import einsum_cases, extended_cases

T = np.swapaxes


def _ops(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


# -- matrix forms: the classic results -----------------------------------------------------
# spec, names, sizes, operand shapes, wrt, the matrix form by hand, the formula by hand.

MATRIX_FORMS = [
    ("ik,jk->ij", "X,W", None, [(3, 4), (5, 4)], 0, "∂L/∂X = G W", lambda G, X, W: G @ W),
    ("ik,jk->ij", "X,W", None, [(3, 4), (5, 4)], 1, "∂L/∂W = Gᵀ X", lambda G, X, W: G.T @ X),
    ("ik,kj->ij", "X,W", None, [(3, 4), (4, 5)], 0, "∂L/∂X = G Wᵀ", lambda G, X, W: G @ W.T),
    ("ik,kj->ij", "X,W", None, [(3, 4), (4, 5)], 1, "∂L/∂W = Xᵀ G", lambda G, X, W: X.T @ G),
    ("ki,kj->ij", "X,W", None, [(4, 3), (4, 5)], 0, "∂L/∂X = W Gᵀ", lambda G, X, W: W @ G.T),
    ("ki,kj->ij", "X,W", None, [(4, 3), (4, 5)], 1, "∂L/∂W = X G", lambda G, X, W: X @ G),
    ("ij,jk,kl->il", "A,X,B", None, [(2, 3), (3, 4), (4, 5)], 0, "∂L/∂A = G Bᵀ Xᵀ",
     lambda G, A, X, B: G @ B.T @ X.T),
    ("ij,jk,kl->il", "A,X,B", None, [(2, 3), (3, 4), (4, 5)], 1, "∂L/∂X = Aᵀ G Bᵀ",
     lambda G, A, X, B: A.T @ G @ B.T),
    ("ij,jk,kl->il", "A,X,B", None, [(2, 3), (3, 4), (4, 5)], 2, "∂L/∂B = Xᵀ Aᵀ G",
     lambda G, A, X, B: X.T @ A.T @ G),
    ("i,ij,j->", "x,A,y", None, [(3,), (3, 4), (4,)], 0, "∂L/∂x = G A y",
     lambda G, x, A, y: G * (A @ y)),
    ("i,ij,j->", "x,A,y", None, [(3,), (3, 4), (4,)], 1, "∂L/∂A = G x yᵀ",
     lambda G, x, A, y: G * np.outer(x, y)),
    ("i,ij,j->", "x,A,y", None, [(3,), (3, 4), (4,)], 2, "∂L/∂y = G Aᵀ x",
     lambda G, x, A, y: G * (A.T @ x)),
    ("ij,ji->", "A,B", None, [(3, 4), (4, 3)], 0, "∂L/∂A = G Bᵀ", lambda G, A, B: G * B.T),
    ("ij,ji->", "A,B", None, [(3, 4), (4, 3)], 1, "∂L/∂B = G Aᵀ", lambda G, A, B: G * A.T),
    ("i,j->ij", "x,y", None, [(3,), (4,)], 0, "∂L/∂x = G y", lambda G, x, y: G @ y),
    ("i,j->ij", "x,y", None, [(3,), (4,)], 1, "∂L/∂y = Gᵀ x", lambda G, x, y: G.T @ x),
    ("i,i->", "x,y", None, [(4,), (4,)], 0, "∂L/∂x = G y", lambda G, x, y: G * y),
    ("ij,j->i", "A,x", None, [(3, 4), (4,)], 0, "∂L/∂A = G xᵀ", lambda G, A, x: np.outer(G, x)),
    ("ij,j->i", "A,x", None, [(3, 4), (4,)], 1, "∂L/∂x = Aᵀ G", lambda G, A, x: A.T @ G),
    ("ij,ij->ij", "A,B", None, [(3, 4), (3, 4)], 0, "∂L/∂A = G ∘ B", lambda G, A, B: G * B),
    ("ij,ji->ij", "A,B", None, [(3, 4), (4, 3)], 1, "∂L/∂B = Gᵀ ∘ Aᵀ",
     lambda G, A, B: (G * A).T),
    ("bij,bjk->bik", "A,B", None, [(2, 3, 4), (2, 4, 5)], 0, "for each b: ∂L/∂A = G Bᵀ",
     lambda G, A, B: G @ T(B, -1, -2)),
    ("bij,bjk->bik", "A,B", None, [(2, 3, 4), (2, 4, 5)], 1, "for each b: ∂L/∂B = Aᵀ G",
     lambda G, A, B: T(A, -1, -2) @ G),
    ("...ij,jk->...ik", "X,W", None, [(2, 3, 4), (4, 5)], 0, "for each β: ∂L/∂X = G Wᵀ",
     lambda G, X, W: G @ W.T),
    ("...ij,jk->...ik", "X,W", None, [(2, 3, 4), (4, 5)], 1, "∂L/∂W = Σ_β Xᵀ G",
     lambda G, X, W: (T(X, -1, -2) @ G).sum(axis=0)),
    ("ii->", "A", None, [(4, 4)], 0, "∂L/∂A = G I", lambda G, A: G * np.eye(4)),
    ("ii->i", "A", None, [(4, 4)], 0, "∂L/∂A = Diag(G)", lambda G, A: np.diag(G)),
    ("ij->i", "A", None, [(3, 4)], 0, "∂L/∂A = G 1ᵀ", lambda G, A: np.outer(G, np.ones(4))),
    ("j->ij", "b", {"i": 3}, [(4,)], 0, "∂L/∂b = Gᵀ 1", lambda G, b: G.T @ np.ones(3)),
    ("ij->", "A", None, [(3, 4)], 0, "∂L/∂A = G 1 1ᵀ", lambda G, A: G * np.ones((3, 4))),
    (",ij->ij", "c,M", None, [(), (3, 4)], 1, "∂L/∂M = c G", lambda G, c, M: c * G),
    (",ij->ij", "c,M", None, [(), (3, 4)], 0, "∂L/∂c = tr(G Mᵀ)",
     lambda G, c, M: np.trace(G @ M.T)),
    # rows and columns scaled by a vector, and the batched / broadcast classes
    ("i,ij->ij", "d,X", None, [(3,), (3, 4)], 0, "∂L/∂d = (G ∘ X) 1",
     lambda G, d, X: (G * X) @ np.ones(4)),
    ("i,ij->ij", "d,X", None, [(3,), (3, 4)], 1, "∂L/∂X = Diag(d) G", lambda G, d, X: np.diag(d) @ G),
    ("ij,j->ij", "X,d", None, [(3, 4), (4,)], 1, "∂L/∂d = (G ∘ X)ᵀ 1",
     lambda G, X, d: (G * X).T @ np.ones(3)),
    ("ij,j->ij", "X,d", None, [(3, 4), (4,)], 0, "∂L/∂X = G Diag(d)", lambda G, X, d: G @ np.diag(d)),
    ("i,ij,j->ij", "a,X,b", None, [(3,), (3, 4), (4,)], 1, "∂L/∂X = Diag(a) G Diag(b)",
     lambda G, a, X, b: np.diag(a) @ G @ np.diag(b)),
    ("i,ji->ij", "d,X", None, [(3,), (4, 3)], 1, "∂L/∂X = Gᵀ Diag(d)",
     lambda G, d, X: G.T @ np.diag(d)),
    ("ij,ij->i", "A,B", None, [(3, 4), (3, 4)], 0, "∂L/∂A = Diag(G) B", lambda G, A, B: np.diag(G) @ B),
    ("bi,bij->bj", "x,A", None, [(2, 3), (2, 3, 4)], 1,
     "for each b (slices as column vectors): ∂L/∂A = x Gᵀ",
     lambda G, x, A: x[:, :, None] * G[:, None, :]),
    ("bij,bj->bi", "A,x", None, [(2, 3, 4), (2, 4)], 1,
     "for each b (slices as column vectors): ∂L/∂x = Aᵀ G",
     lambda G, A, x: np.einsum("bij,bi->bj", A, G)),
    ("...i,...i->...", "x,y", None, [(2, 3), (2, 3)], 0,
     "for each β (slices as column vectors): ∂L/∂x = G y", lambda G, x, y: G[:, None] * y),
]


def _matrix_form_id(row) -> str:
    return f"{row[0]}:{row[5]}"


@pytest.mark.parametrize("spec, names, sizes, shapes, wrt, form, formula", MATRIX_FORMS,
                         ids=[_matrix_form_id(r) for r in MATRIX_FORMS])
def test_matrix_form_is_the_classic_result(spec, names, sizes, shapes, wrt, form, formula):
    """The matrix form is the hand result, and the hand formula is the gradient."""
    gradient = einsgrad.explain(spec, names, wrt=wrt, sizes=sizes).gradients[0]
    assert gradient.matrix_form == form
    assert form in str(einsgrad.explain(spec, names, sizes=sizes))
    ops = _ops(shapes)
    G = np.random.default_rng(1).standard_normal(einsgrad.compile(spec, sizes=sizes)(*ops).shape)
    expected = einsgrad.compile(spec, sizes=sizes).vjp(G, *ops, wrt=wrt)
    np.testing.assert_allclose(formula(G, *ops), expected, rtol=1e-12, atol=1e-12)
    if sizes is None:  # numpy runs the forward: finite differences check the hand formula too
        numeric_vjp_check(lambda *xs: np.einsum(spec, *xs), ops, G, {wrt: formula(G, *ops)})


@pytest.mark.parametrize("spec, names, form", [
    ("ik,jk->ij", "X,W", "Y = X Wᵀ"),
    ("ik,kj->ij", "X,W", "Y = X W"),
    ("ki,kj->ij", "X,W", "Y = Xᵀ W"),
    ("ij,jk,kl->il", "A,X,B", "Y = A X B"),
    ("i,ij,j->", "x,A,y", "Y = xᵀ A y"),
    ("ij,ji->", "A,B", "Y = tr(A B)"),
    ("i,j->ij", "x,y", "Y = x yᵀ"),
    ("i,i->", "x,y", "Y = xᵀ y"),
    ("ij,ij->ij", "A,B", "Y = A ∘ B"),
    ("ii->", "A", "Y = tr(A)"),
    ("ii->i", "A", "Y = diag(A)"),
    ("i,ij->ij", "d,X", "Y = Diag(d) X"),
    ("ij,ij->i", "A,B", "Y = (A ∘ B) 1"),
    ("ij,ij->j", "A,B", "Y = (A ∘ B)ᵀ 1"),
    ("bi,bij->bj", "x,A", "for each b (slices as column vectors): Y = Aᵀ x"),
    ("i,ij,j->ij", "a,X,b", "Y = Diag(a) X Diag(b)"),
    ("bij,bjk->bik", "A,B", "for each b: Y = A B"),
    ("ijk,jk->i", "A,B", None),
])
def test_forward_matrix_form(spec, names, form):
    """The forward's matrix form (None: there is none, and nothing is claimed)."""
    assert einsgrad.explain(spec, names).forward_form == form


# -- the index derivation --------------------------------------------------------------------


def test_linear_layer_derivation_has_every_step():
    """``Y = X Wᵀ``, wrt W: the steps written by hand, in order."""
    text = str(einsgrad.explain("ik,jk->ij", names="X,W", out="Y", wrt=1))
    steps = [
        "Y_ij = Σ_k X_ik W_jk",                       # the forward
        "∂L/∂W_pq = Σ_ij G_ij ∂Y_ij/∂W_pq, with G = ∂L/∂Y",  # the chain rule for one entry
        "∂W_jk/∂W_pq = δ_jp δ_kq",                    # each factor's derivative
        "∂Y_ij/∂W_pq = Σ_k X_ik δ_jp δ_kq = X_iq δ_jp",  # the Jacobian
        "tensor of order 4",
        '"ik->ijjk"',                                 # the Jacobian spec
        "contracted with G",
        "= Σ_i G_ip X_iq",                            # the deltas contracted
        '"ij,ik->jk"',                                # the backward einsum
        "In matrix form: ∂L/∂W = Gᵀ X",               # the matrix form
    ]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions) if p < 0]
    assert positions == sorted(positions)
    assert einsgrad.explain("ik,jk->ij", "X,W", wrt=1).gradients[0].jacobian_spec == \
        einsgrad.jacobian_spec("ik,jk->ij", 1)


def test_linear_layer_input_gradient():
    text = str(einsgrad.explain("ik,jk->ij", "X,W", wrt=0))
    assert "∂X_ik/∂X_pq = δ_ip δ_kq" in text
    assert "= Σ_j G_pj W_jq" in text
    assert '"ij,jk->ik"' in text and "∂L/∂X = G W" in text


def test_fresh_indices_avoid_the_spec_labels():
    """Labels p and q are taken: the differentiated entry gets other letters."""
    text = str(einsgrad.explain("pq,qr->pr", "A,B", wrt=1))
    assert "∂L/∂B_st = Σ_pr G_pr ∂Y_pr/∂B_st" in text
    assert "∂B_qr/∂B_st = δ_qs δ_rt" in text


@pytest.mark.parametrize("spec, sizes, wrt, pieces", [
    pytest.param("ii->i", None, 0, ["Y_i = A_ii", "= G_p δ_pq", "δ_pq survives", "zero off",
                                    '"i->ii"'], id="diagonal: a delta survives"),
    pytest.param("ii->", None, 0, ["Y = Σ_i A_ii", "∂L/∂A_pq = G δ_pq", "∂L/∂A = G I"],
                 id="trace: g on the diagonal"),
    pytest.param("ij->i", None, 0, ["j appears only in A: the forward summed it, so the gradient "
                                    "is constant along it (a broadcast", "∂L/∂A_ij = G_i"],
                 id="row sum: a broadcast"),
    pytest.param("j->ij", {"i": 3}, 0, ["i appears only in Y", "A lacks i", "sums G over i",
                                        "= Σ_i G_ip", '"ij->j"'], id="bias: G summed"),
    pytest.param("i->ii", None, 0, ["i is repeated in Y", "Y_ii′ = A_i δ_ii′",
                                    "∂L/∂A_i = G_ii"],
                 id="diagonal matrix: a delta in the forward"),
    pytest.param("...ij,...jk->...ik", None, 1, [
        "β stands for the batch indices", "Y_βik = Σ_j A_βij B_βjk", "∂L/∂B_γpq",
        "δ_βγ", '"...ik,...ij->...jk"', "for each β: ∂L/∂B = Aᵀ G"], id="ellipsis"),
    pytest.param("...ij->ij", None, 0, ["the batch indices β appear only in A"],
                 id="ellipsis summed: a broadcast"),
    pytest.param("ij,jk", None, 0, ["Implicit mode", '"ij,jk->ik"', "Y_ik = Σ_j A_ij B_jk"],
                 id="implicit"),
    pytest.param(",ij->ij", None, 0, ["Y_ij = A B_ij", "∂A/∂A = 1", "∂L/∂A = Σ_ij G_ij B_ij"],
                 id="scalar operand"),
    pytest.param("i,i->", None, 0, ["Y = Σ_i A_i B_i", "∂L/∂A_p = G ∂Y/∂A_p",
                                    "∂L/∂A_p = G B_p"],
                 id="scalar output"),
    pytest.param("->", None, 0, ["Y = A", "∂L/∂A = G"], id="scalar to scalar"),
    pytest.param("ijk,jk->i", None, 0, ["No matrix form", '"i,jk->ijk"'], id="no matrix form"),
])
def test_phenomena_are_named(spec, sizes, wrt, pieces):
    text = str(einsgrad.explain(spec, wrt=wrt, sizes=sizes))
    missing = [piece for piece in pieces if piece not in text]
    assert not missing, text


def test_default_names_skip_the_output_name():
    ex = einsgrad.explain("ij,jk,kl->il", out="B")
    assert ex.names == ("A", "C", "D") and ex.out == "B"


# -- the differential view -------------------------------------------------------------------


def test_differential_linear_layer():
    text = str(einsgrad.explain("ik,jk->ij", "X,W", style="differential"))
    assert "dL = G : dY = G : (X dWᵀ) = (Gᵀ X) : dW" in text
    assert "dL = G : dY = G : (dX Wᵀ) = (G W) : dX" in text
    assert "∂L/∂W = Gᵀ X" in text


@pytest.mark.parametrize("spec, names, line", [
    ("ik,kj->ij", "X,W", "G : (X dW) = (Xᵀ G) : dW"),
    ("ij,ij->ij", "A,B", "G : (dA ∘ B) = (G ∘ B) : dA"),
    ("i,ij,j->", "x,A,y", "G : (xᵀ dA y) = (G x yᵀ) : dA"),
    ("ii->", "A", "G : tr(dA) = (G I) : dA"),
])
def test_differential_forms(spec, names, line):
    assert line in str(einsgrad.explain(spec, names, style="differential"))


def test_differential_without_matrix_form_falls_back():
    text = str(einsgrad.explain("ijk,jk->i", style="differential", wrt=0))
    assert "no matrix form" in text
    assert "∂A_ijk/∂A_pqr = δ_ip δ_jq δ_kr" in text and '"i,jk->ijk"' in text


# -- entry by entry --------------------------------------------------------------------------


def test_elementwise_linear_layer():
    """dW_jk = Σ_i G_ij X_ik, so dW_11 = G_11 X_11 + G_21 X_21 (sizes 2, 1-based)."""
    text = str(einsgrad.explain("ik,jk->ij", "X,W", elementwise=True,
                                sizes={"i": 2, "j": 2, "k": 2}))
    assert "∂L/∂w_11 = ∂L/∂y_11 x_11 + ∂L/∂y_21 x_21" in text
    assert "∂L/∂w_12 = ∂L/∂y_11 x_12 + ∂L/∂y_21 x_22" in text
    assert "∂L/∂x_21 = ∂L/∂y_21 w_11 + ∂L/∂y_22 w_21" in text  # dX_ik = Σ_j G_ij W_jk
    assert "Regrouped" in text and "∂L/∂W = Gᵀ X" in text


def test_elementwise_writes_one_equation_per_entry():
    text = str(einsgrad.explain("ik,jk->ij", "X,W", elementwise=True,
                                sizes={"i": 2, "j": 3, "k": 4}))
    for name, count, terms in (("x", 2 * 4, 3), ("w", 3 * 4, 2)):
        equations = re.findall(rf"^\s+∂L/∂{name}_\d+ = (.*)$", text, re.MULTILINE)
        assert len(equations) == count
        assert all(rhs.count("+") == terms - 1 for rhs in equations)


def test_elementwise_off_diagonal_is_zero():
    text = str(einsgrad.explain("ii->i", elementwise=True, sizes={"i": 2}))
    assert "∂L/∂a_11 = ∂L/∂y_1" in text and "∂L/∂a_12 = 0" in text


# -- rendering -------------------------------------------------------------------------------


def test_latex_and_repr():
    ex = einsgrad.explain("ik,jk->ij", "X,W")
    latex = ex.latex()
    for piece in (r"\partial", r"\sum_{", r"\delta_{jp}", r"^\top", r"\noindent"):
        assert piece in latex
    assert latex.isascii()
    assert ex._repr_latex_().startswith("$$") and ex._repr_latex_().endswith("$$")
    assert r"\circ" in einsgrad.explain("ij,ij->ij").latex()
    assert "\n" not in repr(ex) and "Gᵀ X" in repr(ex)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        ex.spec = "ij->ji"


# -- any valid spec --------------------------------------------------------------------------


@given(st.one_of(einsum_cases(max_operands=3), extended_cases()),
       st.sampled_from(["index", "differential"]))
def test_explain_any_spec(case, style):
    """Text and LaTeX are non-empty; the backward specs are einsgrad's. Only a spec that reads
    as a matrix expression is refused: a space between two letters of one term ("A X B"), or
    in implicit mode an operand holding the default name of its place (A, B, C, D, ...)."""
    sizes = case.sizes or None
    positional = [c for c in string.ascii_uppercase if c not in "YGL"]
    if re.search(r"[A-Za-z] +[A-Za-z]", case.spec) or case.output is None and any(
            positional[k] in term for k, term in enumerate(case.inputs[:len(positional)])):
        with pytest.raises(einsgrad.EinsumSpecError, match="einsgrad wants one letter per index"):
            einsgrad.explain(case.spec, sizes=sizes, style=style)
        return
    ex = einsgrad.explain(case.spec, sizes=sizes, style=style)
    text, latex = str(ex), ex.latex()
    assert text and latex and latex.isascii()
    assert [g.wrt for g in ex.gradients] == list(range(len(case.inputs)))
    for g in ex.gradients:
        assert g.grad_spec == einsgrad.grad_spec(case.spec, g.wrt, sizes)
        assert f'"{g.grad_spec}"' in text


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"names": "X"}, "1 name"),
    ({"names": ["X", "W", "Z"]}, "3 name"),
    ({"names": "X,1W"}, "not an identifier"),
    ({"names": "X,W-1"}, "not an identifier"),
    ({"names": "X,"}, "not an identifier"),
    ({"names": "X,X"}, "distinct"),
    ({"names": "X,G"}, "reserved"),
    ({"names": "X,W", "out": "X"}, "distinct"),
    ({"names": 3}, "names must be"),
    ({"out": "Y Z"}, "out must be an identifier"),
    ({"style": "matrices"}, "style must be"),
    ({"wrt": 2}, "out of range"),
    ({"elementwise": True, "sizes": {"i": 2, "j": 2}}, "'k'"),
    ({"elementwise": True, "sizes": {"i": 20, "j": 20, "k": 20}}, "at most 200 equations"),
    ({"names": "X,y", "elementwise": True, "sizes": {"i": 2, "j": 2, "k": 2}}, "more than case"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(einsgrad.EinsumSpecError, match=match):
        einsgrad.explain("ik,jk->ij", **kwargs)


def test_elementwise_needs_the_batch_shape():
    with pytest.raises(einsgrad.EinsumSpecError, match=r"'\.\.\.'"):
        einsgrad.explain("...i->i", elementwise=True, sizes={"i": 2})
    text = str(einsgrad.explain("...i->i", elementwise=True, sizes={"i": 2, "...": (2,)}))
    assert "∂L/∂a_21 = ∂L/∂y_1" in text
