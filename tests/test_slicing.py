"""Slicing under ``memory_limit``: the tree stays fixed, chunks are equal (one compiled function
per mode serves every slice), and sliced runs equal the unsliced contraction, forward and every
gradient, in numpy, torch, jax and dask, checked against torch's and jax's own autograd."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import codegen, plan, slicing
from einsgrad.shapes import bind
from einsgrad.spec import parse
from strategies import FLOAT64, einsum_cases

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
from benchmarks.network_cases import grid, mps_norm, random_regular  # noqa: E402

torch = pytest.importorskip("torch")

NETWORKS = [  # (network, memory_limit): each needs slicing, some labels not powers of two
    pytest.param(grid(3, 3, 3), 20, id="grid 3x3 bond 3"),
    pytest.param(grid(4, 4, 4), 200, id="grid 4x4 bond 4"),
    pytest.param(mps_norm(5, 5, 3), 30, id="mps bond 5"),
    pytest.param(random_regular(10, 3, 3), 40, id="3-regular 10 bond 3"),
]
CHAIN = ("ab,bc,cd,de->ae", [(5, 7), (7, 11), (11, 5), (5, 3)], 10)  # an output label sliced, c padded


def _fresh_intermediates(swept: plan.Sweep):
    """The values a chunk's forward and reverse sweep allocate and keep to themselves."""
    kept = set(swept.returns) | {"y"}
    return [s for s in swept.steps if s.fresh and s.target not in kept]


def _pairs(swept: plan.Sweep) -> list:
    """Each pairwise step's label sets, in and out, in order."""
    return [(frozenset(map(frozenset, s.inputs)), frozenset(s.labels)) for s in swept.steps if len(s.args) == 2]


@pytest.mark.parametrize("network, limit", NETWORKS)
def test_the_tree_stays_fixed_and_every_chunk_fits(network, limit):
    """Each chunk runs the unsliced sweep's pairwise steps (the same tree, forward and backward;
    the lowering may order a step's labels otherwise) with the sliced labels smaller, and no intermediate of its forward or backward exceeds the limit, where the
    unsliced sweep's largest does."""
    bound = bind(parse(network.spec), network.shapes)
    tree = plan.forward_path(bound, "greedy")
    every = tuple(range(network.tensors))
    cuts = slicing.cuts(bound, limit, tree)
    assert cuts, "the limit is below the unsliced largest intermediate"
    whole = plan.sweep(bound, tree, every)
    chunk = plan.sweep(bound.resized(cuts), tree, every)
    assert _pairs(chunk) == _pairs(whole)
    assert max(math.prod(s.shape) for s in _fresh_intermediates(whole)) > limit
    assert max(math.prod(s.shape) for s in _fresh_intermediates(chunk)) <= limit


@pytest.mark.parametrize("network, limit", NETWORKS)
def test_the_model_agrees_with_the_chunk_plan(network, limit):
    """The search's model of a chunk is what planning the chunk gives: its largest
    intermediate exactly, its FLOPs times the number of chunks within 2% (the lowering of a
    chunk may lay a step out otherwise: a copy more or less)."""
    bound = bind(parse(network.spec), network.shapes)
    tree = plan.forward_path(bound, "greedy")
    every = tuple(range(network.tensors))
    chosen = slicing.choose(bound, limit, tree)
    chunk = plan.sweep(bound.resized(chosen.cuts), tree, every)
    slices = math.prod(-(-bound.size_of[l] // c) for l, c in chosen.cuts)
    assert chosen.slices == slices
    assert chosen.largest == max(math.prod(s.shape) for s in _fresh_intermediates(chunk))
    assert chosen.flops == pytest.approx(slices * sum(s.flops for s in chunk.steps), rel=0.02)
    assert chosen.unsliced_flops == pytest.approx(sum(s.flops for s in plan.sweep(bound, tree, every).steps))


def test_one_compiled_function_per_mode_serves_every_slice(monkeypatch):
    """A size-11 label cut into chunks of 6 leaves a short last chunk; it is padded, so
    the forward and the vjp each compile one function, whatever the number of slices."""
    loads = []
    real = codegen.load
    monkeypatch.setattr(codegen, "load", lambda text, dialect: loads.append(text) or real(text, dialect))
    spec, shapes, limit = CHAIN
    lin = einsgrad.compile(spec, memory_limit=limit)
    cuts = lin.costs(*shapes).slices
    size = bind(parse(spec), shapes).size_of
    slices = math.prod(-(-size[l] // c) for l, c in cuts)
    assert slices > 2 and any(size[l] % c for l, c in cuts), "a short, padded last chunk"
    ops = [np.random.default_rng(i).standard_normal(s) for i, s in enumerate(shapes)]
    loads.clear()
    lin(*ops)
    lin.vjp(np.ones((5, 3)), *ops)
    lin(*ops)
    assert len(loads) == 2


def _torch_oracle(spec, ops, G):
    """torch.einsum's value and autograd gradients: no einsgrad code."""
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    y = torch.einsum(spec, *tensors)
    grads = torch.autograd.grad(y, tensors, torch.tensor(G))
    return y.detach().numpy(), [g.numpy() for g in grads]


def _cases():
    spec, shapes, limit = CHAIN
    yield pytest.param(spec, shapes, limit, id="chain")
    for param in NETWORKS:
        network, limit = param.values
        yield pytest.param(network.spec, network.shapes, limit, id=param.id)


@pytest.mark.parametrize("spec, shapes, limit", list(_cases()))
def test_sliced_numpy_and_torch_equal_torch_autograd(spec, shapes, limit):
    """The sliced forward and all gradients (vjp, value_and_pullback, einsgrad.torch.einsum's
    backward) equal torch.einsum and its autograd."""
    import einsgrad.torch

    rng = np.random.default_rng(3)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal(tuple(torch.einsum(spec, *map(torch.tensor, ops)).shape))
    y_ref, grads_ref = _torch_oracle(spec, ops, G)
    lin = einsgrad.compile(spec, memory_limit=limit)
    assert lin.costs(*shapes).slices
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin(*ops), y_ref, **close)
    for got, want in zip(lin.vjp(G, *ops), grads_ref):
        np.testing.assert_allclose(got, want, **close)
    y, pullback = lin.value_and_pullback(*ops)
    np.testing.assert_allclose(y, y_ref, **close)
    for got, want in zip(pullback(G), grads_ref):
        np.testing.assert_allclose(got, want, **close)
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    out = einsgrad.torch.einsum(lin, *tensors)
    out.backward(torch.tensor(G))
    np.testing.assert_allclose(out.detach().numpy(), y_ref, **close)
    for t, want in zip(tensors, grads_ref):
        np.testing.assert_allclose(t.grad.numpy(), want, **close)
    raw = lin.vjp(torch.tensor(G), *[torch.tensor(o) for o in ops])  # torch arrays, no autograd
    for got, want in zip(raw, grads_ref):
        np.testing.assert_allclose(got.numpy(), want, **close)


@settings(max_examples=40)
@given(einsum_cases(dtypes=(FLOAT64,)), st.sampled_from([1, 2, 5, 17]))
def test_sliced_torch_equals_torch_autograd_on_generated_specs(case, limit):
    """Generated specs at small limits: einsgrad.torch.einsum's value and gradients, sliced,
    are torch.einsum's and its autograd's (or the limit is refused, naming it)."""
    import einsgrad.torch

    ops = case.operands()
    try:
        lin = einsgrad.compile(case.spec, memory_limit=limit)
        lin.costs(*case.shapes)
    except einsgrad.EinsumSpecError as error:
        assert f"memory_limit={limit} is too small" in str(error)
        return
    y_ref = np.einsum(case.clean_spec, *ops)
    G = case.cotangent(y_ref.shape)
    _, grads_ref = _torch_oracle(case.explicit_spec, ops, G)
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    out = einsgrad.torch.einsum(lin, *tensors)
    np.testing.assert_allclose(out.detach().numpy(), y_ref, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(out, tensors, torch.tensor(G), allow_unused=True)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(np.zeros_like(want) if got is None else got.numpy(), want,
                                   rtol=1e-10, atol=1e-10)


def test_sliced_torch_passes_gradcheck_and_gradgradcheck():
    """torch's finite-difference checks of the sliced einsum, and of its recorded backward."""
    import einsgrad.torch

    spec, shapes, limit = CHAIN
    lin = einsgrad.compile(spec, memory_limit=limit)
    rng = np.random.default_rng(5)
    tensors = [torch.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    f = lambda *xs: einsgrad.torch.einsum(lin, *xs)  # noqa: E731
    assert torch.autograd.gradcheck(f, tensors)
    assert torch.autograd.gradgradcheck(f, tensors)


def test_sliced_jax_under_jit_and_grad_equals_jax_autograd():
    """einsgrad.jax.einsum sliced, jitted, differentiated forward (jvp) and backward (its
    transpose): jnp.einsum's value and jax.grad's gradients."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import einsgrad.jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        spec, shapes, limit = CHAIN
        lin = einsgrad.compile(spec, memory_limit=limit)
        rng = np.random.default_rng(7)
        ops = [jnp.asarray(rng.standard_normal(s)) for s in shapes]
        G = jnp.asarray(rng.standard_normal((5, 3)))
        ours = lambda *xs: (einsgrad.jax.einsum(lin, *xs) * G).sum()  # noqa: E731
        theirs = lambda *xs: (jnp.einsum(spec, *xs) * G).sum()  # noqa: E731
        every = tuple(range(len(ops)))
        np.testing.assert_allclose(jax.jit(ours)(*ops), theirs(*ops), rtol=1e-10)
        for got, want in zip(jax.jit(jax.grad(ours, every))(*ops), jax.grad(theirs, every)(*ops)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        tangents = [jnp.asarray(rng.standard_normal(s)) for s in shapes]
        _, dy = jax.jvp(ours, ops, tangents)
        np.testing.assert_allclose(dy, jax.jvp(theirs, ops, tangents)[1], rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", before)


def test_sliced_dask_equals_numpy():
    """dask arrays run sliced too: the value and the gradients are numpy's sliced ones, which
    the torch test above checks against autograd."""
    da = pytest.importorskip("dask.array")
    spec, shapes, limit = CHAIN
    lin = einsgrad.compile(spec, memory_limit=limit)
    rng = np.random.default_rng(8)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal((5, 3))
    y = lin(*[da.from_array(o, chunks=2) for o in ops])
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(y.compute(), np.einsum(spec, *ops), rtol=1e-10)
    grads = lin.vjp(da.from_array(G), *[da.from_array(o) for o in ops])
    _, grads_ref = _torch_oracle(spec, ops, G)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-12)


def test_jvp_runs_sliced():
    """numpy's jvp under a memory_limit runs in slices and equals the sum of its terms."""
    spec, shapes, limit = CHAIN
    lin = einsgrad.compile(spec, memory_limit=limit)
    rng = np.random.default_rng(9)
    ops = [rng.standard_normal(s) for s in shapes]
    tangents = [rng.standard_normal(s) for s in shapes]
    want = sum(np.einsum(spec, *ops[:k], t, *ops[k + 1:]) for k, t in enumerate(tangents))
    y, dy = lin.value_and_jvp(tangents, *ops)
    np.testing.assert_allclose(dy, want, rtol=1e-10)
    np.testing.assert_allclose(y, np.einsum(spec, *ops), rtol=1e-10)



def test_forward_saving_and_pullback_run_sliced_keeping_the_operands():
    """The two halves for frameworks that keep residuals: under slicing the forward saves the
    operands alone, and the pullback's gradients are autograd's."""
    spec, shapes, limit = CHAIN
    lin = einsgrad.compile(spec, memory_limit=limit)
    rng = np.random.default_rng(10)
    ops = [rng.standard_normal(s) for s in shapes]
    G = rng.standard_normal((5, 3))
    y, saved = lin.forward_saving(*ops)
    assert len(saved) == len(ops) and all(s is o for s, o in zip(saved, ops))
    y_ref, grads_ref = _torch_oracle(spec, ops, G)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10)
    for got, want in zip(lin.pullback(G, ops, saved), grads_ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_slicing_benchmark_reports_both_finders():
    """benchmarks.network_slicing's figures (no peaks) on a small grid: einsgrad's and the
    chosen cuts, SliceFinder's where cotengra is installed, every overhead at least 1."""
    from benchmarks import network_slicing

    rows = network_slicing.measure([(grid(3, 3, 3), 20)], peaks=False)
    text = network_slicing.table(rows)
    assert "grid 3x3" in text
    (row,) = rows
    assert row.einsgrad[0] > 1 and row.einsgrad[1] >= 1 and row.chosen[1] <= row.einsgrad[1]
    if row.cotengra is not None:
        assert row.chosen[1] <= row.cotengra[1] + 1e-12
