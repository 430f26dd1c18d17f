"""Transposed copies of GEMM operands (einsgrad.lowering): a pairwise step copies both of its
operands only where neither reads as a GEMM operand as it is stored (or from a copy made
before). Where one does, the other is copied to match it: one copy, not two. On bond-2
networks, where every step is memory-bound, the copies were half the pullback's time, and
the second copy of a saved forward value is what made a grid's pullback cost 2.7x its
forward while FLOPs say 2.0x. The readability test here is written from the labels alone,
not from the lowering's own helpers; the values are checked against np.einsum elsewhere
(tests/test_tables.py, tests/test_lowering_patterns.py) and below.
"""

from __future__ import annotations

import numpy as np
import opt_einsum
import pytest
from hypothesis import given, settings

import einsgrad
from benchmarks import network_cases as nc
from einsgrad import plan
from einsgrad.layout_hints import Hint
from einsgrad.lowering import Lowering
from einsgrad.shapes import bind
from einsgrad.spec import parse
from einsgrad.steps import Copy, Matmul, Multiply
from oracles import torch_vjp
from strategies import einsum_cases

NETWORKS = [nc.grid(4, 5), nc.grid(8, 8), nc.random_regular(16), nc.circuit(5, 12), nc.tree(30)]  # with copies


def reads_as_gemm_operand(order, batch, own, contracted) -> bool:
    """Whether labels stored in ``order`` read as (batch, own free, contracted) blocks, the last
    two either way round (BLAS reads the pair transposed), each block in any order."""
    nb = len(batch)
    if set(order[:nb]) != batch:
        return False
    rest = order[nb:]
    return set(rest[:len(own)]) == own or set(rest[:len(contracted)]) == contracted


def doubly_copied_steps(steps) -> list[str]:
    """GEMM steps that copy both operands although one of them (or a copy of it made before)
    reads as stored."""
    labels, copies, wrong = {}, {}, []
    fresh: dict[str, str] = {}  # copies made since the last other step: copy -> source
    for step in steps:
        for name, inputs in zip(step.args, step.inputs):
            labels.setdefault(name, inputs)
        if isinstance(step.operation, Copy):
            source = step.args[0]
            fresh[step.target] = source
            labels[step.target] = step.labels
            continue
        if isinstance(step.operation, Matmul) and len(step.args) == 2 and all(a in fresh for a in step.args):
            p, q = (fresh[a] for a in step.args)
            lp, lq, out = set(labels[p]), set(labels[q]), set(step.labels)
            batch, contracted = lp & lq & out, (lp & lq) - out
            readable = [name for source, own in ((p, lp - lq), (q, lq - lp))
                        for name in [source, *copies.get(source, ())]
                        if reads_as_gemm_operand(labels[name], batch, own, contracted)]
            if readable:
                wrong.append(f"{step.target} = {step.spec}: {readable[0]} reads as stored")
        for copy, source in fresh.items():
            copies.setdefault(source, []).append(copy)
        fresh = {}
        labels[step.target] = step.labels
    return wrong


def sweep_steps(spec: str, shapes):
    return sweep(spec, shapes).steps


def sweep(spec: str, shapes):
    bound = bind(parse(spec), tuple(shapes), {})
    return plan.sweep(bound, plan.forward_path(bound, "greedy"), tuple(range(len(shapes))))


def transposed_reads(steps, values: set) -> list[str]:
    """The steps among ``steps`` that copy one of ``values`` or read it transposed."""
    found = []
    for step in steps:
        op = step.operation
        if isinstance(op, Copy) and step.args[0] in values:
            found.append(f"{step.target} copies {step.args[0]}")
        if isinstance(op, (Matmul, Multiply)):
            found += [f"{step.target} reads {arg} transposed" for arg, layout in zip(step.args, (op.a, op.b))
                      if arg in values and layout.perm is not None]
    return found


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name)
def test_no_step_copies_both_operands_where_one_reads_as_stored(network):
    steps = sweep_steps(network.spec, network.shapes)
    assert any(isinstance(s.operation, Copy) for s in steps)  # the check has something to check
    assert doubly_copied_steps(steps) == []


@settings(max_examples=60, deadline=None)
@given(einsum_cases(max_operands=5))
def test_no_step_copies_both_operands_on_generated_specs(case):
    shapes = [np.shape(x) for x in case.operands()]
    assert doubly_copied_steps(sweep_steps(case.spec, shapes)) == []


def test_a_grid_pullback_with_one_copy_per_step_still_gives_the_gradients():
    """The 8x8 grid's gradients (vjp and pullback) against opt_einsum's directional
    derivatives: <dL/dX_k, D> = <G, contraction with X_k replaced by D>, for random D (the
    network is multilinear; its labels pass ``Z``, which np.einsum does not take)."""
    network = nc.grid(8, 8)
    ops = network.operands()
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    g = np.float64(1.7)
    grads = e.vjp(g, *ops)
    _, pullback = e.value_and_pullback(*ops)
    pulled = pullback(g)
    rng = np.random.default_rng(3)
    for k in rng.choice(len(ops), 6, replace=False):
        d = rng.standard_normal(ops[k].shape)
        moved = [d if i == k else x for i, x in enumerate(ops)]
        expected = g * opt_einsum.contract(network.spec, *moved, optimize="greedy")
        for grad in (grads[k], pulled[k]):
            np.testing.assert_allclose(np.vdot(grad, d), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("network", [nc.tree(30), nc.tree(63)], ids=lambda n: n.name)
def test_a_tree_networks_intermediates_are_laid_out_for_the_steps_that_read_them(network):
    """Each forward step learns which labels the step reading its result contracts (and in
    which order that step's other operand holds them), and lays its result out so that they
    make one block at an end, copying an operand in that order where it copies one anyway:
    on a tree tensor network no forward intermediate is then copied or read transposed, and
    each cotangent comes in its value's order, so that no step of the backward reads a
    forward intermediate transposed either (16 and 40 such forward reads before, on these)."""
    swept = sweep(network.spec, network.shapes)
    forward, backward = swept.steps[:swept.forward_count], swept.steps[swept.forward_count:]
    intermediates = {step.target for step in forward}
    assert any(isinstance(s.operation, Copy) for s in forward)  # operands are copied: the premise
    assert transposed_reads(forward, intermediates) == []
    assert transposed_reads(backward, intermediates) == []


def test_a_hint_moves_the_labels_the_next_step_contracts_to_one_end():
    """abc,bd->acd copies its first operand (b, contracted, sits in the middle); without a
    hint the copy keeps a before c and the result is acd, with c in the middle; told that
    the next step contracts c, the copy puts c first and the result is cad."""
    size = dict(a=2, b=3, c=4, d=5)
    orders = []
    for hint in (None, Hint(("c",))):
        low = Lowering(size)
        low.argument("x0", tuple("abc"))
        low.argument("x1", tuple("bd"))
        orders.append("".join(low.labels[low.binary("t", "x0", "x1", tuple("acd"), False, hint)]))
        assert isinstance(low.steps[0].operation, Copy)
    assert orders == ["acd", "cad"]
    low = Lowering(size)  # an exact result ignores the hint
    low.argument("x0", tuple("abc"))
    low.argument("x1", tuple("bd"))
    assert low.labels[low.binary("t", "x0", "x1", tuple("acd"), True, Hint(("c",)))] == tuple("acd")


@pytest.mark.parametrize("network", [nc.tree(30), nc.random_regular(16), nc.circuit(5, 8)], ids=lambda n: n.name)
def test_hinted_layouts_give_torchs_gradients(network):
    """The vjp and pullback of networks whose layouts the hints changed, against torch
    autograd of torch.einsum (their specs use letters only)."""
    pytest.importorskip("torch")
    ops = network.operands()
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    y = e(*ops)
    G = np.random.default_rng(5).standard_normal(np.shape(y))
    expected = torch_vjp(network.spec, ops, G)
    assert expected is not None
    _, pullback = e.value_and_pullback(*ops)
    for k, (g, p, t) in enumerate(zip(e.vjp(G, *ops), pullback(G), expected)):
        np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-12, err_msg=f"vjp, operand {k}")
        np.testing.assert_allclose(p, t, rtol=1e-10, atol=1e-12, err_msg=f"pullback, operand {k}")
