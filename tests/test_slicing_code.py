"""The code a sliced call runs is the code ``source()`` shows: the chunk's program and the loop
over the slices, for numpy, torch, jax and dask; exec'd, it gives the call's results, which
are checked against torch's autograd on curated networks, and against numpy's unsliced
einsum and its gradients taken with np.einsum alone on generated specs. Under ``torch.compile`` a sliced call traces with no
dynamo warning about a cached function, and gives torch.einsum's value and gradients."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import FLOAT64, LETTERS, einsum_cases, render

import einsgrad
from einsgrad import codegen, dialects, plan, slicing
from einsgrad.shapes import bind
from einsgrad.spec import parse

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.network_cases import grid  # noqa: E402

CASES = [  # (spec, shapes, memory_limit): each needs slices, a short last chunk among them
    pytest.param("ab,bc,cd,de->ae", [(5, 7), (7, 11), (11, 5), (5, 3)], 10, id="chain, output sliced"),
    pytest.param(grid(3, 3, 3).spec, grid(3, 3, 3).shapes, 20, id="grid 3x3 bond 3"),
    pytest.param("ii,ij->i", [(6, 6), (6, 5)], 4, id="a repeated label sliced"),
]


def _oracle(spec, ops, G):
    """torch.einsum's value and autograd's gradients: no einsgrad code."""
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    y = torch.einsum(spec, *tensors)
    return y.detach().numpy(), [g.numpy() for g in torch.autograd.grad(y, tensors, torch.tensor(G))]


def _inputs(spec, shapes, seed=0):
    rng = np.random.default_rng(seed)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal(np.einsum(spec, *ops).shape)
    return ops, G


def _loaded(monkeypatch) -> list[str]:
    """The texts codegen.load runs from now on."""
    loads: list[str] = []
    real = codegen.load
    monkeypatch.setattr(codegen, "load", lambda text, dialect=dialects.NUMPY: loads.append(text) or real(text, dialect))
    return loads


def _definitions(text: str) -> list[str]:
    """The top-level function definitions of generated text, each as written."""
    pieces = text.split("\ndef ")[1:]
    return ["def " + p.split("\n\n\n")[0].rstrip() for p in pieces]


LIBRARIES = {
    "numpy": (lambda a: a, lambda a: a),
    "torch": (lambda a: pytest.importorskip("torch").tensor(a), lambda a: a.numpy()),
    "jax": (lambda a: pytest.importorskip("jax.numpy").asarray(a), np.asarray),
    "dask": (lambda a: pytest.importorskip("dask.array").from_array(a, chunks=3), lambda a: a.compute()),
}


@pytest.mark.parametrize("library", list(LIBRARIES))
@pytest.mark.parametrize("spec, shapes, limit", CASES)
def test_the_shown_source_is_what_runs(spec, shapes, limit, library, monkeypatch):
    """Each function a sliced call loads is in ``source(backend=...)`` as written; the shown
    source, exec'd, gives the call's forward, vjp and forward_saving/pullback; and those are
    torch.einsum's and its autograd's."""
    if library == "jax":  # float64, as the oracle
        jax = pytest.importorskip("jax")
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            _check_shown_source(spec, shapes, limit, library, monkeypatch)
        finally:
            jax.config.update("jax_enable_x64", before)
    else:
        _check_shown_source(spec, shapes, limit, library, monkeypatch)


def _check_shown_source(spec, shapes, limit, library, monkeypatch):
    make, back = LIBRARIES[library]
    ops, G = _inputs(spec, shapes)
    y_ref, grads_ref = _oracle(spec, ops, G)
    lin = einsgrad.compile(spec, memory_limit=limit)
    assert lin.costs(*shapes).slices
    loads = _loaded(monkeypatch)
    arrays, g = [make(o) for o in ops], make(G)
    y = back(lin(*arrays))
    grads = [back(x) for x in lin.vjp(g, *arrays)]
    saved_y, pullback = lin.value_and_pullback(*arrays)
    pulled = [back(x) for x in pullback(g)]
    shown = lin.source(backend=library)
    assert "_chunk(" in shown and ("_sliced(" if library == "dask" else "itertools.product(") in shown
    assert loads
    for text in loads:
        for definition in _definitions(text):
            assert definition in shown, definition.splitlines()[0]
    namespace: dict = {}
    exec(compile(shown, "<shown>", "exec"), namespace)
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(back(namespace["forward"](*arrays)[0]), y, **close)
    for got, want in zip(namespace["vjp"](g, *arrays), grads):
        np.testing.assert_allclose(back(got), want, **close)
    y_saved, *saved = namespace["forward_saving"](*arrays)
    np.testing.assert_allclose(back(y_saved), y, **close)
    for got, want in zip(namespace["pullback"](g, *saved), pulled):
        np.testing.assert_allclose(back(got), want, **close)
    np.testing.assert_allclose(y, y_ref, **close)
    np.testing.assert_allclose(back(saved_y), y_ref, **close)
    for got, pulled_one, want in zip(grads, pulled, grads_ref):
        np.testing.assert_allclose(got, want, **close)
        np.testing.assert_allclose(pulled_one, want, **close)


def _einsum_gradients(case, ops, G) -> list[np.ndarray]:
    """Each operand's gradient ``<G, dy/dx_i>`` from np.einsum alone: the einsum with ``x_i``
    replaced by all its unit tensors at once (stacked along a new label), contracted with G.
    Exact for a multilinear map, size-1 broadcasting and repeated labels included."""
    free = next(label for label in LETTERS if label not in case.clean_spec)
    grads = []
    for i, x in enumerate(ops):
        units = np.eye(x.size).reshape((x.size, *x.shape))
        inputs = [(free, *t) if k == i else t for k, t in enumerate(case.inputs)]
        stacked = np.einsum(render(inputs, (free, *case.explicit_output)), *[units if k == i else o
                                                                              for k, o in enumerate(ops)])
        grads.append(np.tensordot(stacked, G, axes=G.ndim).reshape(x.shape))
    return grads


def sliced_case(case, draw):
    """A memory_limit drawn below the largest intermediate of the case's forward and backward
    on its unsliced greedy tree, and the einsum compiled under it, or None (the case keeps no
    intermediate above one element, or the tree the optimizer finds under the limit fits it,
    or the limit is refused as too small: the message is checked)."""
    bound = bind(parse(case.spec), case.shapes)
    largest = slicing.Model(bound, plan.forward_path(bound, "greedy")).measure({}).largest
    if largest <= 1:
        return None
    limit = draw(st.integers(1, largest - 1), label="memory_limit")
    lin = einsgrad.compile(case.spec, optimize="greedy", memory_limit=limit)
    try:
        cuts = lin.costs(*case.shapes).slices
    except einsgrad.EinsumSpecError as error:
        assert f"memory_limit={limit} is too small" in str(error)
        return None
    return lin if cuts else None


def _check_generated(case, data, library):
    """The shown sliced source for ``library``, exec'd on a generated case: its forward is
    np.einsum's unsliced value, and its vjp and pullback are the np.einsum gradients."""
    lin = sliced_case(case, data.draw)
    assume(lin is not None)  # only sliced calls are this test's business
    ops = case.operands()
    y_ref = np.einsum(case.clean_spec, *ops)
    G = case.cotangent(np.shape(y_ref))
    grads_ref = _einsum_gradients(case, ops, G)
    shown = lin.source(*case.shapes, backend=library)
    assert "_chunk(" in shown
    namespace: dict = {}
    exec(compile(shown, "<shown>", "exec"), namespace)
    make, back = LIBRARIES[library]
    arrays, g = [make(o) for o in ops], make(G)
    close = dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(back(namespace["forward"](*arrays)[0]), y_ref, **close)
    for got, want in zip(namespace["vjp"](g, *arrays), grads_ref, strict=True):
        np.testing.assert_allclose(back(got), want, **close)
    y_saved, *saved = namespace["forward_saving"](*arrays)
    np.testing.assert_allclose(back(y_saved), y_ref, **close)
    for got, want in zip(namespace["pullback"](g, *saved), grads_ref, strict=True):
        np.testing.assert_allclose(back(got), want, **close)


@settings(max_examples=60, deadline=None)
@given(einsum_cases(dtypes=(FLOAT64,), min_operands=2), st.data())
def test_the_shown_sliced_numpy_source_on_generated_specs(case, data):
    """Generated specs and limits that slice them: the shown numpy loop, exec'd, gives the
    unsliced value and the np.einsum gradients (padded short chunks, sliced outputs, size-1
    broadcasting, repeated labels and empty dimensions among them)."""
    _check_generated(case, data, "numpy")


@settings(max_examples=15, deadline=None)
@given(einsum_cases(dtypes=(FLOAT64,), min_operands=2), st.sampled_from(["torch", "dask"]), st.data())
def test_the_shown_sliced_torch_and_dask_source_on_generated_specs(case, library, data):
    """The same for the torch loop and the dask graph (fewer examples: each builds a graph or
    runs torch)."""
    pytest.importorskip(library)
    _check_generated(case, data, library)


def test_the_gradient_oracle_is_numpys_einsum_derivative():
    """The np.einsum oracle above against a hand-written gradient: for ``ij,jk->ik``, dA = G Bᵀ
    and dB = Aᵀ G; for the trace ``ii->`` the gradient is G times the identity."""
    from strategies import Case

    rng = np.random.default_rng(3)
    A, B, G = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    case = Case("ij,jk->ik", (("i", "j"), ("j", "k")), ("i", "k"), ((2, 3), (3, 4)), (FLOAT64,) * 2, 0)
    dA, dB = _einsum_gradients(case, [A, B], G)
    np.testing.assert_allclose(dA, G @ B.T, rtol=1e-12)
    np.testing.assert_allclose(dB, A.T @ G, rtol=1e-12)
    trace = Case("ii->", (("i", "i"),), (), ((3, 3),), (FLOAT64,), 0)
    (dT,) = _einsum_gradients(trace, [rng.standard_normal((3, 3))], np.array(2.5))
    np.testing.assert_allclose(dT, 2.5 * np.eye(3), rtol=1e-12)


def test_the_shown_loop_names_no_user_label():
    """The loop's text holds integers and its own names: a unicode label does not reach it."""
    spec = "αβ,βγ,γδ->αδ"
    lin = einsgrad.compile(spec, memory_limit=10)
    shown = lin.source((5, 7), (7, 11), (11, 5))
    assert lin.costs((5, 7), (7, 11), (11, 5)).slices
    body = shown.split("# einsgrad:", 1)[1].split("\n", 1)[1]  # past the header, which prints the spec
    assert not any(c in body for c in "αβγδ")


def test_sliced_torch_compile_has_no_cached_function_warning(monkeypatch):
    """torch.compile of a sliced einsgrad.torch.einsum, with and without grad mode: dynamo
    warns of no functools-cached function on the traced path, and the value and gradients
    are torch.einsum's. Dynamo warns once per message and process: its record is emptied first,
    and the compiled frames reset, so that this trace is a first one."""
    torch = pytest.importorskip("torch")
    import torch._dynamo
    import torch._dynamo.utils

    import einsgrad.torch

    spec, shapes, limit = CASES[0].values
    ops, G = _inputs(spec, shapes, seed=1)
    y_ref, grads_ref = _oracle(spec, ops, G)
    lin = einsgrad.compile(spec, memory_limit=limit)
    monkeypatch.setattr(torch._dynamo.utils, "warn_once_cache", set())
    torch._dynamo.reset()
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    f = torch.compile(lambda *xs: einsgrad.torch.einsum(lin, *xs), backend="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = f(*tensors)
        out.backward(torch.tensor(G))
        with torch.no_grad():
            plain = f(*[t.detach() for t in tensors])
    cached = [str(w.message).splitlines()[0] for w in caught if "lru_cache" in str(w.message)]
    assert not cached
    np.testing.assert_allclose(out.detach().numpy(), y_ref, rtol=1e-10)
    np.testing.assert_allclose(plain.numpy(), y_ref, rtol=1e-10)
    for t, want in zip(tensors, grads_ref):
        np.testing.assert_allclose(t.grad.numpy(), want, rtol=1e-10, atol=1e-12)


def test_a_sliced_module_runs_the_loop_standalone():
    """module() of a sliced einsum is the shown loop and chunk programs with their helpers:
    its numpy functions and its torch einsum (an autograd.Function) give torch's value and
    autograd's gradients, with einsgrad out of the picture."""
    torch = pytest.importorskip("torch")
    spec, shapes, limit = CASES[0].values
    ops, G = _inputs(spec, shapes, seed=2)
    y_ref, grads_ref = _oracle(spec, ops, G)
    lin = einsgrad.compile(spec, memory_limit=limit)
    close = dict(rtol=1e-10, atol=1e-12)
    numpy_module: dict = {}
    exec(compile(lin.module(*shapes), "<numpy module>", "exec"), numpy_module)
    assert "_forward_chunk" in numpy_module
    np.testing.assert_allclose(numpy_module["forward"](*ops), y_ref, **close)
    for got, want in zip(numpy_module["vjp"](G, *ops), grads_ref):
        np.testing.assert_allclose(got, want, **close)
    torch_module: dict = {}
    exec(compile(lin.module(*shapes, backend="torch"), "<torch module>", "exec"), torch_module)
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    out = torch_module["einsum"](*tensors)
    out.backward(torch.tensor(G))
    np.testing.assert_allclose(out.detach().numpy(), y_ref, **close)
    for t, want in zip(tensors, grads_ref):
        np.testing.assert_allclose(t.grad.numpy(), want, **close)


def test_shape_generic_code_is_refused_under_a_memory_limit():
    """Under a memory_limit calls run exact-shape code (sliced where needed): generic code,
    which no call would run, is refused, saying why."""
    spec, shapes, limit = CASES[0].values
    lin = einsgrad.compile(spec, memory_limit=limit)
    with pytest.raises(einsgrad.EinsumSpecError, match=r"source\(generic=True\): under a memory_limit"):
        lin.source(*shapes, generic=True)
    with pytest.raises(einsgrad.EinsumSpecError, match=r"module\(generic=True\): under a memory_limit"):
        lin.module(*shapes, generic=True)
