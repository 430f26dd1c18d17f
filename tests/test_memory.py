"""memory_limit (sliced execution) and recompute mode: same values, bounded intermediates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsgrad
from einsgrad import plan
from einsgrad.shapes import BoundSpec, bind
from einsgrad.spec import parse
from oracles import numeric_vjp_check
from strategies import EXACT_DTYPES, einsum_cases

cases = einsum_cases(dtypes=EXACT_DTYPES)
limits = st.sampled_from([1, 2, 5, 17, 64])


def _forward(case):
    return lambda *xs: np.einsum(case.clean_spec, *xs)


@given(cases, limits)
def test_sliced_forward_matches_numpy(case, limit):
    """A contraction run in slices gives numpy's values."""
    ops = case.operands()
    y = einsgrad.compile(case.spec, memory_limit=limit)(*ops)
    np.testing.assert_allclose(y, np.einsum(case.clean_spec, *ops), rtol=1e-10, atol=1e-10)


@given(cases, limits, st.booleans())
def test_sliced_gradients_match_finite_differences(case, limit, through_pullback):
    """Gradients run in slices (vjp, or the recomputing pullback) pass the adjoint check."""
    ops = case.operands()
    lin = einsgrad.compile(case.spec, memory_limit=limit)
    y = np.einsum(case.clean_spec, *ops)
    G = case.cotangent(y.shape)
    if through_pullback:
        grads = lin.value_and_pullback(*ops)[1](G)
    else:
        grads = lin.vjp(G, *ops)
    for grad, op in zip(grads, ops):
        assert grad.shape == op.shape and grad.dtype == op.dtype
    numeric_vjp_check(_forward(case), ops, G, grads, rtol=1e-9, seed=case.seed)


@given(cases)
def test_recompute_pullback_passes_the_adjoint_check(case):
    """``recompute=True`` keeps only the operands and gives correct gradients, all of them or
    the last one alone."""
    ops = case.operands()
    y = np.einsum(case.clean_spec, *ops)
    G = case.cotangent(y.shape)
    lin = einsgrad.compile(case.spec)
    value, pullback = lin.value_and_pullback(*ops, recompute=True)
    np.testing.assert_allclose(value, y, rtol=1e-10, atol=1e-10)
    grads = pullback(G)
    numeric_vjp_check(_forward(case), ops, G, grads, rtol=1e-9, seed=case.seed)
    last = lin.value_and_pullback(*ops, wrt=len(ops) - 1, recompute=True)[1](G)
    np.testing.assert_allclose(last, grads[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec, shapes, limit", [
    pytest.param("ab,bc,cd,de->ae", [(64, 32), (32, 64), (64, 32), (32, 64)], 500, id="chain"),
    pytest.param("abc,cde,efa->bdf", [(8, 8, 8)] * 3, 300, id="network"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], 1, id="every-label-sliced"),
])
def test_every_chunk_respects_the_limit(spec, shapes, limit):
    """With the chosen slices, no intermediate of the forward or backward exceeds the limit."""
    bound = bind(parse(spec), shapes)
    slices = einsgrad.compile(spec, memory_limit=limit).costs(*shapes).slices
    assert slices, "the limit is below the unsliced largest intermediate, so slicing is needed"
    sizes = dict(bound.sizes) | dict(slices)
    chunk = BoundSpec(bound.spec, tuple(sizes.items()))
    tree = plan.forward_path(bound, "auto", limit)  # each chunk runs along the signature's tree
    every = tuple(range(len(shapes)))
    step = plan.vjp_plan(chunk, every, plan.sweep(chunk, tree, every), "auto", limit).largest_intermediate()
    assert step is None or math.prod(step.shape) <= limit
    unsliced_tree = plan.sweep(bound, plan.forward_path(bound), every)
    unsliced = plan.vjp_plan(bound, every, unsliced_tree).largest_intermediate()
    assert math.prod(unsliced.shape) > limit


def test_memory_limit_too_small_for_any_slicing():
    """A limit no slicing can meet is an EinsumSpecError naming the step."""
    # The intermediate "ab,bc->ac" keeps a and c; both appear in inputs, so slicing reaches
    # size 1 for them, and a limit of 0 elements can never be met.
    with pytest.raises(einsgrad.EinsumSpecError, match="memory_limit=0|positive integer"):
        einsgrad.compile("ab,bc,cd->ad", memory_limit=0)
