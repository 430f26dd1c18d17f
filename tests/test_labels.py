"""Labels beyond the 52 letters: opt_einsum's unicode symbols and the interleaved form.

Oracles: numpy.einsum on the same problem written in ASCII letters, opt_einsum.contract on
the unicode spec itself, finite differences (the adjoint identity) and torch autograd.
"""

from __future__ import annotations

import re

import numpy as np
import opt_einsum
import pytest
from hypothesis import given

import einsgrad
from einsgrad import EinsumSpecError
from oracles import numeric_vjp_check, upcast
from strategies import EXACT_DTYPES, einsum_cases, relabelled_cases

S = opt_einsum.get_symbol
FIRST_WHITESPACE = 5620  # opt_einsum.get_symbol(5620) is U+1680 OGHAM SPACE MARK


def ring(n: int, closed: bool = True) -> str:
    """A ring (or chain) of n matrices in opt_einsum's symbols: a trace of a product."""
    terms = [S(i) + S((i + 1) % n if closed else i + 1) for i in range(n)]
    return ",".join(terms) + "->" + ("" if closed else S(0) + S(n))


# -- which characters are labels ------------------------------------------------------------


def test_every_opt_einsum_symbol_before_the_first_whitespace_is_a_label():
    """get_symbol(0 .. 5619), each once, as 5620 operands of one spec; the 5620th symbol is
    whitespace, which is syntax, and refused by name."""
    spec = ",".join(S(i) for i in range(FIRST_WHITESPACE)) + "->" + S(7) + S(FIRST_WHITESPACE - 1)
    parsed = einsgrad.compile(spec).spec
    assert len(parsed.labels) == FIRST_WHITESPACE
    assert einsgrad.jvp_spec(spec, 0).startswith(S(0) + ",")
    assert S(FIRST_WHITESPACE).isspace()
    with pytest.raises(EinsumSpecError, match=r"U\+1680 OGHAM SPACE MARK at position 3"):
        einsgrad.compile("ij," + S(FIRST_WHITESPACE) + "->i")


@pytest.mark.parametrize("char, name", [
    pytest.param("\u2000", "U+2000 EN QUAD", id="unicode space"),
    pytest.param("\u3000", "U+3000 IDEOGRAPHIC SPACE", id="ideographic space"),
    pytest.param("\u2028", "U+2028 LINE SEPARATOR", id="line separator"),
    pytest.param("\x85", "U+0085", id="C1 control"),
    pytest.param("\x00", "U+0000", id="NUL"),
    pytest.param("\t", "U+0009", id="tab"),
    pytest.param("\ud800", "U+D800", id="surrogate"),
    pytest.param("7", "U+0037 DIGIT SEVEN", id="ASCII digit"),
    pytest.param("'", "U+0027 APOSTROPHE", id="quote"),
])
def test_characters_that_are_not_labels_are_named_with_their_position(char, name):
    spec = "ab,b" + char + "->a"
    with pytest.raises(EinsumSpecError, match=rf"is not allowed in a spec \({re.escape(name)}.* at position 4\)") as info:
        einsgrad.compile(spec)
    assert info.value.column == 4


def test_non_ascii_letters_symbols_and_marks_are_labels():
    """Greek, CJK, a mathematical symbol, a combining mark (its own label): the result is
    numpy's on the same problem in ASCII letters."""
    x, y = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    for i, j, k in [("α", "β", "γ"), ("京", "都", "市"), ("×", "÷", "∂"), ("e", "\u0301", "é")]:
        np.testing.assert_allclose(einsgrad.einsum(f"{i}{j},{j}{k}->{k}{i}", x, y), (x @ y).T)


# -- error carets in long specs -------------------------------------------------------------


def test_caret_under_a_bad_character_deep_in_a_100_label_spec():
    spec = ring(100)
    column = spec.index(S(80) + S(81)) + 1  # the second label of operand 80
    bad = spec[:column] + "$" + spec[column + 1:]
    with pytest.raises(EinsumSpecError, match=rf"'\$' is not allowed .* at position {column}\)") as info:
        einsgrad.compile(bad)
    assert info.value.column == column
    spec_line, caret_line = str(info.value).splitlines()[-2:]
    assert spec_line.strip() == bad and caret_line.index("^") - 4 == column
    assert spec_line[caret_line.index("^")] == "$"


def test_caret_under_an_output_label_in_no_input_in_a_100_label_spec():
    inputs = ring(100).split("->")[0]
    spec = inputs + "->" + S(3) + S(500) + S(7)
    with pytest.raises(EinsumSpecError, match=rf"output label '{S(500)}' appears in no input") as info:
        einsgrad.compile(spec)
    assert spec[info.value.column] == S(500)
    spec_line, caret_line = str(info.value).splitlines()[-2:]
    assert spec_line[caret_line.index("^")] == S(500)


def test_caret_under_a_shape_mismatch_names_the_unicode_label():
    spec = ring(60, closed=False)
    shapes = [(2, 2)] * 60
    shapes[45] = (2, 3)
    with pytest.raises(EinsumSpecError, match=re.escape(S(46))):
        einsgrad.einsum(spec, *(np.ones(s) for s in shapes))


# -- values: hypothesis, relabelled --------------------------------------------------------


@given(relabelled_cases(einsum_cases(dtypes=EXACT_DTYPES, max_labels=6, broadcast=True)))
def test_relabelled_problems_match_numpy_and_opt_einsum_with_correct_gradients(problem):
    """A numpy problem with its letters renamed to get_symbol(i), 52 <= i < 50000: einsgrad's
    forward is numpy's on the ASCII spec and opt_einsum's on the unicode one, and its
    gradients satisfy the adjoint identity against finite differences of numpy's forward."""
    ops = problem.case.operands()
    expected = np.einsum(problem.ascii_spec, *ops)
    y = einsgrad.einsum(problem.spec, *ops)
    bound = np.einsum(problem.ascii_spec, *(np.abs(upcast(x)) for x in ops)) * 1e-9 + 1e-300
    assert y.shape == expected.shape
    assert np.all(np.abs(y - expected) <= bound)
    assert np.all(np.abs(opt_einsum.contract(problem.spec.replace(" ", ""), *ops) - expected) <= bound)
    G = problem.case.cotangent(expected.shape)
    grads = einsgrad.vjp(problem.spec, G, *ops)
    numeric_vjp_check(lambda *xs: np.einsum(problem.ascii_spec, *xs), ops, G, grads, seed=problem.case.seed)


# -- a network of more than 52 indices, end to end -------------------------------------------


def mps_network(sites: int):
    """⟨ψ|O|ψ⟩-like: a ket chain and a bra chain of ``sites`` tensors (bonds a, b; physical p),
    with the physical indices of the first two sites left open: 3 * sites labels."""
    n = iter(range(10**6))
    ket = [S(next(n)) for _ in range(sites - 1)]
    bra = [S(next(n)) for _ in range(sites - 1)]
    phys = [S(next(n)) for _ in range(sites)]
    open_ = [S(next(n)) for _ in range(2)]
    terms, out = [], ""
    for s in range(sites):
        left = (ket[s - 1],) if s else ()
        right = (ket[s],) if s < sites - 1 else ()
        terms.append("".join(left + (phys[s],) + right))
        p = open_[s] if s < 2 else phys[s]
        bleft = (bra[s - 1],) if s else ()
        bright = (bra[s],) if s < sites - 1 else ()
        terms.append("".join(bleft + (p,) + bright))
    out = phys[0] + phys[1] + open_[0] + open_[1]
    return ",".join(terms) + "->" + out


def test_a_72_label_network_forward_and_vjp_match_torch_autograd():
    """A 48-tensor chain network with 72 labels: forward and every gradient (one-shot vjp and
    value_and_pullback) against torch autograd through opt_einsum's torch backend."""
    torch = pytest.importorskip("torch")
    spec = mps_network(24)
    parsed = einsgrad.compile(spec).spec
    assert len(parsed.labels) == 72
    rng = np.random.default_rng(7)
    sizes = {label: 2 for label in parsed.labels}
    shapes = [tuple(sizes[l] for l in term) for term in parsed.inputs]
    ops = [rng.standard_normal(s) * 0.8 for s in shapes]
    leaves = [torch.tensor(x, requires_grad=True) for x in ops]
    y_torch = opt_einsum.contract(spec, *leaves, backend="torch")
    G = rng.standard_normal(tuple(y_torch.shape))
    expected = torch.autograd.grad(y_torch, leaves, grad_outputs=torch.tensor(G))
    lin = einsgrad.compile(spec)
    np.testing.assert_allclose(lin(*ops), y_torch.detach().numpy(), rtol=1e-10, atol=1e-12)
    y, pullback = lin.value_and_pullback(*ops)
    for grads in (lin.vjp(G, *ops), pullback(G)):
        assert len(grads) == len(ops)
        for got, want in zip(grads, expected):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def test_the_torch_einsum_takes_the_network_with_autograd():
    torch = pytest.importorskip("torch")
    import einsgrad.torch

    spec = mps_network(14)
    parsed = einsgrad.compile(spec).spec
    rng = np.random.default_rng(3)
    leaves = [torch.tensor(rng.standard_normal((2,) * len(t)), requires_grad=True) for t in parsed.inputs]
    twins = [t.detach().clone().requires_grad_(True) for t in leaves]
    y = einsgrad.torch.einsum(spec, *leaves)
    want = opt_einsum.contract(spec, *twins, backend="torch")
    torch.testing.assert_close(y, want)
    for got, expected in zip(torch.autograd.grad(y.sum(), leaves), torch.autograd.grad(want.sum(), twins)):
        torch.testing.assert_close(got, expected)


# -- generated source holds no label ---------------------------------------------------------


UNICODE_SPEC = "京α,α∂,∂é->京é"
UNICODE_SHAPES = ((2, 3), (3, 4), (4, 5))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_no_label_reaches_generated_source(backend):
    """The functions and a standalone module use einsgrad's own names; the labels appear only
    as ASCII escapes in comments, the docstring and the shape error's text."""
    if backend != "numpy":
        pytest.importorskip(backend)
    lin = einsgrad.compile(UNICODE_SPEC)
    labels = set(lin.spec.labels)
    for text in (lin.source(*UNICODE_SHAPES, backend=backend), lin.module(*UNICODE_SHAPES, backend=backend),
                 lin.source(*UNICODE_SHAPES, backend=backend, generic=True)):
        assert text.isascii() and not labels & set(text)
        assert "\\u4eac" in text  # 京, in the comments


def test_a_unicode_module_runs_and_its_messages_show_the_labels(tmp_path):
    import importlib.util

    text = einsgrad.compile(UNICODE_SPEC).module(*UNICODE_SHAPES)
    path = tmp_path / "unicode_einsum.py"
    path.write_text(text, encoding="ascii")
    spec = importlib.util.spec_from_file_location("unicode_einsum", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in UNICODE_SHAPES]
    np.testing.assert_allclose(module.forward(*ops), np.einsum("ab,bc,cd->ad", *ops))
    assert UNICODE_SPEC in module.__doc__
    with pytest.raises(ValueError, match=re.escape(UNICODE_SPEC)):
        module.forward(ops[0], ops[0], ops[2])


# -- explanations with many labels -------------------------------------------------------------


def test_explanations_of_a_100_label_spec_name_no_index_twice():
    """Every letter is a user label, so the derivation's fresh indices (∂L/∂A_pq) must be
    names no label has; the backward einsum it shows is grad_spec's."""
    spec = ring(100, closed=False)
    ex = einsgrad.explain(spec, wrt=40)
    (gradient,) = ex.gradients
    assert gradient.grad_spec == einsgrad.grad_spec(spec, wrt=40)
    text = str(ex)
    fresh = re.search(r"Renaming (\S+), (\S+) to", text).groups()
    assert fresh[0] != fresh[1] and not set(fresh) & set(einsgrad.compile(spec).spec.labels)
    assert ex.latex()


@pytest.mark.parametrize("spec, label", [
    pytest.param("...β,β->...", "β", id="the batch symbol, with an ellipsis"),
    pytest.param("ab,b...γ->a...", "γ", id="the fresh batch symbol, with an ellipsis"),
    pytest.param("i′,′->i", "′", id="the prime"),
    pytest.param("i⁽,⁽->i", "⁽", id="a superscript parenthesis"),
])
def test_explain_refuses_labels_it_writes_its_own_indices_with(spec, label):
    """Else '...β' would read as two batch indices (the derivation says Y_β = Σ_β A_ββ B_β)."""
    with pytest.raises(EinsumSpecError, match=rf"the label '{label}' is a symbol the explanation writes") as info:
        einsgrad.explain(spec)
    assert spec[info.value.column] == label
    assert einsgrad.grad_spec(spec, wrt=0)  # only the explanation refuses it


def test_explain_takes_greek_labels_without_an_ellipsis():
    ex = einsgrad.explain("iβ,βγ->iγ", names="A,B")
    assert "Y_iγ = Σ_β A_iβ B_βγ" in str(ex)


# -- the interleaved form and sublist pairs ------------------------------------------------------


def arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def test_interleaved_form_matches_numpy_and_opt_einsum():
    x, y, z = arrays((2, 3), (3, 4), (4, 2))
    np.testing.assert_allclose(einsgrad.einsum(x, [0, 1], y, [1, 2], [0, 2]), np.einsum(x, [0, 1], y, [1, 2], [0, 2]))
    np.testing.assert_allclose(einsgrad.einsum(x, [0, 1], y, [1, 2]), np.einsum(x, [0, 1], y, [1, 2]))
    np.testing.assert_allclose(einsgrad.einsum(x, (5, 30), y, (30, 2)), np.einsum(x, (5, 30), y, (30, 2)))
    np.testing.assert_allclose(einsgrad.einsum(x, np.array([0, 1]), y, np.array([1, 2])),
                               np.einsum(x, np.array([0, 1]), y, np.array([1, 2])))
    # beyond numpy's [0, 52): opt_einsum's reading, any hashable labels
    for labels in ([1000, 7, 2000], ["i", "k", "j"], [("a", 1), ("b", 2), ("c", 3)], [-5, 10**9, 0.5]):
        a, b, c = labels
        args = (x, [a, b], y, [b, c], z, [c, a], [a])
        np.testing.assert_allclose(einsgrad.einsum(*args), opt_einsum.contract(*args))
        implicit = (x, [a, b], y, [b, c])
        np.testing.assert_allclose(einsgrad.einsum(*implicit), opt_einsum.contract(*implicit))


def test_interleaved_ellipsis_and_implicit_output_order():
    x, y = arrays((5, 2, 3), (3, 4))
    np.testing.assert_allclose(einsgrad.einsum(x, [..., 40, 2], y, [2, 3]), np.einsum(x, [..., 40, 2], y, [2, 3]))
    np.testing.assert_allclose(einsgrad.einsum(x, [..., 0, 30], y, [30, 1], [1, ..., 0]),
                               np.einsum(x, [..., 0, 30], y, [30, 1], [1, ..., 0]))
    # numpy sorts integer labels by value: 0 before 30, as 'a' and 'E' are not sorted
    w, = arrays((2, 3))
    assert einsgrad.einsum(w, [0, 30]).shape == np.einsum(w, [0, 30]).shape == (2, 3)


def test_interleaved_vjp_equals_the_text_form_and_finite_differences():
    x, y, z = arrays((2, 3), (3, 4), (4, 5))
    G = arrays((5, 2), seed=1)[0]
    grads = einsgrad.vjp(G, x, [100, 200], y, [200, 300], z, [300, 400], [400, 100])
    text = einsgrad.vjp("ab,bc,cd->da", G, x, y, z)
    for got, want in zip(grads, text):
        np.testing.assert_allclose(got, want)
    numeric_vjp_check(lambda *xs: np.einsum("ab,bc,cd->da", *xs), [x, y, z], G, grads)


def test_sublist_pairs_everywhere_a_spec_is_taken():
    """(sublists, output) stands for the spec where no operands follow it: compile, the spec
    functions, explain, and (with operands) einsum and vjp."""
    pair = ([[0, 1], [1, 2]], [0, 2])
    text = "ab,bc->ac"
    x, y = arrays((2, 3), (3, 4))
    assert einsgrad.compile(pair).spec == einsgrad.compile(text).spec
    assert einsgrad.grad_spec(pair, wrt=1) == einsgrad.grad_spec(text, wrt=1)
    assert einsgrad.jvp_spec(pair) == einsgrad.jvp_spec(text)
    assert einsgrad.jacobian_spec(pair, wrt=0) == einsgrad.jacobian_spec(text, wrt=0)
    assert str(einsgrad.explain(pair)) == str(einsgrad.explain(text))
    np.testing.assert_allclose(einsgrad.einsum(pair, x, y), x @ y)
    np.testing.assert_allclose(einsgrad.vjp(pair, np.ones((2, 4)), x, y)[0], np.ones((2, 4)) @ y.T)
    assert einsgrad.compile(([[0, 1], [1, 2]], None)).spec == einsgrad.compile("ab,bc").spec
    big = ([[1000, 2000], [2000, 3000]], [3000, 1000])
    assert einsgrad.grad_spec(big, wrt=0) == f"{S(3000)}{S(1000)},{S(2000)}{S(3000)}->{S(1000)}{S(2000)}"


@pytest.mark.parametrize("call, message", [
    pytest.param(lambda x: einsgrad.einsum(x, [0, [1]]), r"operand 0's sublist holds \[1\]: a label is a hashable",
                 id="unhashable"),
    pytest.param(lambda x: einsgrad.einsum(x, [True, 0]), r"holds True", id="bool"),
    pytest.param(lambda x: einsgrad.einsum(x, [0, "j"]), r"cannot be sorted .* give the output sublist",
                 id="mixed types implicit"),
    pytest.param(lambda x: einsgrad.einsum(x, [0, 1], x), r"output sublist must be a list of labels, got ndarray",
                 id="output not a list"),
    pytest.param(lambda x: einsgrad.einsum(x, [0, 1], [0, 7]), r"output label 'h' appears in no input",
                 id="output label in no input"),
    pytest.param(lambda x: einsgrad.einsum(x, [0, 1, 2]), r"operand 0 has 2 dimension\(s\) but its subscripts",
                 id="too many labels"),
    pytest.param(lambda x: einsgrad.compile(([[0, 1]], "ab")), r"a spec is a pair .* or a string, got tuple",
                 id="pair with text output"),
    pytest.param(lambda x: einsgrad.einsum(3, x), r"spec must be a string or an einsgrad.Einsum", id="no spec"),
])
def test_bad_sublists_are_refused(call, message):
    with pytest.raises(EinsumSpecError, match=message):
        call(np.ones((2, 3)))


def test_interleaved_form_in_torch_and_jax():
    torch = pytest.importorskip("torch")
    import einsgrad.torch

    x, y = (torch.tensor(a, requires_grad=True) for a in arrays((2, 3), (3, 4)))
    got = einsgrad.torch.einsum(x, [100, 5000], y, [5000, 7], [7, 100])
    want = torch.einsum(x, [0, 1], y, [1, 2], [2, 0])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0])
    jax = pytest.importorskip("jax")
    import einsgrad.jax

    a, b = arrays((2, 3), (3, 4))
    f = lambda a, b: einsgrad.jax.einsum(a, ["i", "σ"], b, ["σ", 10**6], [10**6, "i"]).sum()  # noqa: E731
    g = lambda a, b: jax.numpy.einsum(a, [0, 1], b, [1, 2], [2, 0]).sum()  # noqa: E731
    np.testing.assert_allclose(f(a, b), g(a, b), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(f)(a, b), jax.grad(g)(a, b), rtol=1e-5)


def test_the_command_line_takes_unicode_specs(tmp_path, capsys):
    from einsgrad.cli import main

    assert main(["grad", "京α,α∂->京∂", "--wrt", "1"]) == 0
    assert "京∂,京α->α∂" in capsys.readouterr().out
    target = tmp_path / "m.py"
    assert main(["codegen", "京α,α∂->京∂", "--shapes", "2x3,3x4", "-o", str(target)]) == 0
    assert target.read_bytes().isascii()
    assert main(["grad", "京α,α\u2003->京"]) == 2
    assert "U+2003 EM SPACE at position 4" in capsys.readouterr().err
