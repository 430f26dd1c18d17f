"""Small transposed copies folded into the one GEMM that reads them (einsgrad.fused_copies).

The folded code must give what the code with its copy steps gives, and both what torch's
autograd and numpy's einsum give: on tensor networks (where most pairwise steps read a copy),
on hypothesis-generated specs, straight-line and as step tables. The pass's own rules (a copy
read twice, a large copy, a returned copy, a copy of a value made again are kept) are checked
on plans lowered by hand, run against numpy.einsum.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from hypothesis import given, settings

import einsgrad
from benchmarks import network_cases as nc
from einsgrad import codegen, fused_copies, gathers
from einsgrad.lowering import Lowering
from einsgrad.steps import Add, Copy, Layout, Multiply, Plan, Step
from oracles import numeric_vjp_check, torch_vjp
from strategies import EXACT_DTYPES, einsum_cases
from test_tables import assert_close, assert_network_agrees, every_plan_a_table

NETWORKS = [nc.random_regular(12), nc.grid(3, 4), nc.circuit(4, 6), nc.tree(15)]  # each copies operands


@contextlib.contextmanager
def nothing_folded():
    """Within the block, no copy is small enough to fold: the plan's steps as lowered."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused_copies, "SMALL", -1)
        yield


@contextlib.contextmanager
def nothing_gathered():
    """Within the block, every transposed copy is spelled as numpy's transpose and reshape, none
    as a gather (einsgrad.gathers): the text this file counts copies in."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gathers, "LIMIT", -1)
        yield


def gradients(spec: str, ops, G):
    e = einsgrad.Einsum(spec, optimize="greedy")
    y = e(*ops)
    _, pullback = e.value_and_pullback(*ops)
    return e, y, e.vjp(G, *ops), pullback(G)


def copies(source: str) -> int:
    return source.count(")).copy()")  # x.transpose(p).copy(): a copy step


def transposed_reads(source: str) -> int:
    """Operands transposed and reshaped where they are read (``x.transpose(p).reshape(s)``)."""
    return len(re.findall(r"\.transpose\([^()]*\([^()]*\)\)\.reshape\(", source))


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name)
def test_a_network_runs_its_small_copies_inside_its_gemms_and_matches_torch(network):
    """Forward, vjp and pullback of a network, folded, equal torch autograd's gradients and
    the unfolded code's values; the folded source holds fewer copy steps, and reads
    transposed operands inside its products (counted with no copy made by a gather)."""
    pytest.importorskip("torch")
    ops = network.operands()
    shapes = [x.shape for x in ops]
    G = np.random.default_rng(1).standard_normal(np.shape(np.einsum(network.spec, *ops, optimize=True)))
    with nothing_gathered():
        e, y, grads, pulled = gradients(network.spec, ops, G)
        with nothing_folded():
            plain, y0, grads0, pulled0 = gradients(network.spec, ops, G)
            unfolded = plain.source(*shapes)
        folded = e.source(*shapes)
    assert copies(folded) < copies(unfolded)
    assert transposed_reads(folded) > transposed_reads(unfolded)
    assert_network_agrees(network.spec, ops, G, (y, grads, pulled), (y0, grads0, pulled0), "unfolded")


@settings(deadline=None, max_examples=60)
@given(einsum_cases(dtypes=EXACT_DTYPES, min_operands=2, max_operands=5, max_rank=4))
def test_folded_code_of_generated_specs_matches_torch_and_the_unfolded_code(case):
    """Straight-line and table code, folded and not: numpy's forward, torch's (or finite
    differences') gradients, and the same values either way."""
    pytest.importorskip("torch")
    ops = case.operands()
    G = case.cotangent(np.shape(np.einsum(case.clean_spec, *ops)))
    results = []
    for table in (False, True):
        with every_plan_a_table() if table else contextlib.nullcontext():
            results.append(gradients(case.spec, ops, G)[1:])
            with nothing_folded():
                results.append(gradients(case.spec, ops, G)[1:])
    y, grads, pulled = results[0]
    assert_close(y, np.einsum(case.clean_spec, *ops), "forward")
    expected = torch_vjp(case.clean_spec, ops, G) or torch_vjp(case.explicit_spec, ops, G)
    if expected is None:  # torch refuses the spec: finite differences instead
        numeric_vjp_check(lambda *xs: np.einsum(case.clean_spec, *xs), ops, G, grads)
        expected = grads
    for other_y, other_grads, other_pulled in results:
        assert_close(other_y, y, "forward")
        for k, (g, p, t) in enumerate(zip(other_grads, other_pulled, expected)):
            assert g.dtype == ops[k].dtype and g.shape == ops[k].shape, k
            assert not any(np.shares_memory(g, o) for o in ops), k
            assert_close(g, t, f"vjp, operand {k}")
            assert_close(p, t, f"pullback, operand {k}")


SIZE = dict(a=2, b=3, c=2, d=2, e=3)


def lowered(size=SIZE, second=True):
    """x0 (abc) contracted over its middle label with x1 (bd), then (``second``) with x2 (be):
    both read one transposed copy of x0 (bac); then x1 with x2."""
    low = Lowering(size)
    for name, labels in (("x0", "abc"), ("x1", "bd"), ("x2", "be")):
        low.argument(name, tuple(labels))
    low.step("y0", ("x0", "x1"), tuple("acd"), True)
    if second:
        low.step("y1", ("x0", "x2"), tuple("ace"), True)
    low.step("y2", ("x1", "x2"), tuple("de"), True)
    returns = ("y0", "y1", "y2") if second else ("y0", "y2")
    return Plan(("x0", "x1", "x2"), (3, 2, 2), tuple(low.steps), returns)


def run(plan: Plan, ops):
    return codegen.load(codegen.render(plan, "f"))["f"](*ops)


def operands(size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(size[l] for l in labels)) for labels in ("abc", "bd", "be")]


def kinds(plan: Plan) -> list[str]:
    return [type(step.operation).__name__ for step in plan.steps]


def test_a_small_copy_read_once_is_read_in_its_gemm():
    plan = lowered(second=False)
    assert kinds(plan) == ["Copy", "Matmul", "Matmul"]  # the premise: x0 is copied for y0
    folded = fused_copies.fused(plan)
    assert kinds(folded) == ["Matmul", "Matmul"]
    assert folded.steps[0].args == ("x0", "x1") and folded.steps[0].inputs[0] == tuple("abc")
    assert ".copy()" not in codegen.render(folded, "f")
    x0, x1, x2 = ops = operands()
    y0, y2 = run(folded, ops)
    np.testing.assert_allclose(y0, np.einsum("abc,bd->acd", x0, x1), rtol=1e-12)
    np.testing.assert_allclose(y2, np.einsum("bd,be->de", x1, x2), rtol=1e-12)
    assert fused_copies.fused(folded) is folded  # nothing left to fold


def test_a_copy_read_twice_a_large_copy_and_a_returned_copy_are_kept():
    twice = lowered()
    assert kinds(twice) == ["Copy", "Matmul", "Matmul", "Matmul"] and twice.steps[2].args[0] == "t0"
    assert fused_copies.fused(twice) is twice
    large = dict(SIZE, a=fused_copies.SMALL)  # the copy of x0 holds 3 * SMALL * 2 elements
    assert kinds(fused_copies.fused(lowered(large, second=False)))[0] == "Copy"
    plan = lowered(second=False)
    returned = Plan(plan.args, plan.arg_ranks, plan.steps, plan.returns + ("t0",))
    assert fused_copies.fused(returned) is returned
    x0, x1, x2 = ops = operands()
    y0, y1, y2 = run(twice, ops)
    np.testing.assert_allclose(y1, np.einsum("abc,be->ace", x0, x2), rtol=1e-12)


def test_a_copy_two_gemms_read_through_one_reshape_is_made_in_that_shape():
    """x0's copy (bac) is read by y0 and y1, each as a (b, ac) matrix: the copy is made as that
    matrix (one reshape of the transposed view, one copy) and both read it as it is."""
    twice = lowered()
    shaped = fused_copies.shaped(twice)
    copy, y0, y1 = shaped.steps[:3]
    assert copy.operation == Copy((1, 0, 2), (3, 4), (("b",), ("a", "c")))
    assert y0.operation.a.shape is None and y1.operation.a.shape is None
    source = codegen.render(shaped, "f")
    assert "t0 = x0.transpose((1, 0, 2)).reshape((3, 4))" in source and ".copy()" not in source
    assert "t0.reshape" not in source
    x0, x1, x2 = ops = operands()
    for got, expected in zip(run(shaped, ops), run(twice, ops)):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    returned = Plan(twice.args, twice.arg_ranks, twice.steps, twice.returns + ("t0",))
    assert fused_copies.shaped(returned) is returned  # a returned copy keeps its own shape


def test_a_copy_of_a_value_made_again_before_its_read_is_kept():
    """``t = copy(x); x = x + x; y = t * w``: reading x transposed at y would read the new x."""
    plain = Layout(None, None, False)
    steps = (Step("t", ("x",), "ab->ba", Copy((1, 0)), None, tuple("ba"), (3, 2), 0, True, (tuple("ab"),)),
             Step("x", ("x", "x"), "ab,ab->ab", Add(), None, tuple("ab"), (2, 3), 6, True, (tuple("ab"),) * 2),
             Step("y", ("t", "w"), "ba,ba->ba", Multiply(plain, plain), None, tuple("ba"), (3, 2), 6, True,
                  (tuple("ba"),) * 2))
    plan = Plan(("x", "w"), (2, 2), steps, ("y",))
    assert fused_copies.fused(plan) is plan
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(run(plan, [x, w])[0], x.T * w, rtol=1e-12)
    after = Plan(("x", "w"), (2, 2), (steps[0], steps[2]), ("y",))  # no value made again: folded
    assert kinds(fused_copies.fused(after)) == ["Multiply"]
    np.testing.assert_allclose(run(fused_copies.fused(after), [x, w])[0], x.T * w, rtol=1e-12)


def test_a_plan_whose_folded_lines_fit_is_straight_line_code():
    """A 10x10 grid's vjp has more steps than tables.TABLE_STEPS, but fewer once its copies
    are folded: it is straight-line code, whose gradients obey Euler's identity for
    multilinear maps (``<dL/dX_k, X_k> = <G, Y>``) and equal the step table's (unfolded)."""
    network = nc.grid(10, 10)
    ops = network.operands()
    shapes = [x.shape for x in ops]
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    source = e.source(*shapes)
    assert "_steps_vjp" not in source and "def vjp(g, x0," in source
    y = e(*ops)
    G = np.random.default_rng(1).standard_normal(np.shape(y))
    grads = e.vjp(G, *ops)
    with nothing_folded():
        tabled = einsgrad.Einsum(network.spec, optimize="greedy")
        assert "_steps_vjp = json.loads" in tabled.source(*shapes)
        expected = tabled.vjp(G, *ops)
    total = np.vdot(G, y)
    for k, (g, x, t) in enumerate(zip(grads, ops, expected)):
        assert abs(np.vdot(g, x) - total) <= 1e-10 * np.linalg.norm(g) * np.linalg.norm(x), k
        assert_close(g, t, f"vjp, operand {k}")
