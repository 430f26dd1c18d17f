"""The joint tree choice (``joint=True``): the tree of fewest forward + gradient FLOPs among
those tried, right values and gradients (against torch's autograd), and what it saved in plan()."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import einsgrad

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.network_cases import grid, random_regular  # noqa: E402

torch = pytest.importorskip("torch")


def _total(lin, shapes) -> int:
    """FLOPs of the forward and all gradients (one-shot vjp), as costs() reports them."""
    costs = lin.costs(*shapes)
    return costs.forward + costs.vjp


@pytest.mark.parametrize("network, limit", [
    pytest.param(grid(4, 4, 4), None, id="grid 4x4"),
    pytest.param(random_regular(30, 3, 3), None, id="3-regular 30"),
    pytest.param(grid(4, 4, 4), 64, id="grid 4x4 sliced"),
])
def test_joint_tree_costs_no_more_and_computes_the_same(network, limit):
    """The joint choice's forward + all gradients cost no more FLOPs than the optimizer's
    tree, plan() says so, and its value and gradients are torch.einsum's and its autograd's."""
    plain = einsgrad.compile(network.spec, optimize="greedy", memory_limit=limit)
    joint = einsgrad.compile(network.spec, optimize="greedy", memory_limit=limit, joint=True)
    if limit is None:
        assert _total(joint, network.shapes) <= _total(plain, network.shapes)
    report = str(joint.plan(*network.shapes))
    assert "tree: " in report and "tried" in report
    ops = network.operands()
    tensors = [torch.tensor(o, requires_grad=True) for o in ops]
    y = torch.einsum(network.spec, *tensors)
    G = np.random.default_rng(2).standard_normal(tuple(y.shape))
    grads = torch.autograd.grad(y, tensors, torch.tensor(G))
    np.testing.assert_allclose(joint(*ops), y.detach().numpy(), rtol=1e-9)
    for got, want in zip(joint.vjp(G, *ops), grads):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-12)


def test_joint_must_be_a_bool():
    with pytest.raises(einsgrad.EinsumSpecError, match=r"joint must be True or False, got 'yes'"):
        einsgrad.compile("ij,jk->ik", joint="yes")
