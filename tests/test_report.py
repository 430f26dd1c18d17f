"""``Einsum.plan``: the path and cost report, against FLOP counts made independently here."""

from __future__ import annotations

import dataclasses

import pytest

import einsgrad
from einsgrad import EinsumSpecError


def matmul_flops(m: int, k: int, n: int) -> int:
    """An (m, k) by (k, n) product: m·n·k multiply-adds, 2 FLOPs each."""
    return 2 * m * n * k


def test_matmul_report():
    """Forward 2·m·n·k; both gradients 2·m·n·k each, in one shot or after the forward."""
    m, k, n = 5, 7, 3
    report = einsgrad.compile("ik,kj->ij").plan((m, k), (k, n))
    assert report.forward.flops == matmul_flops(m, k, n)
    assert report.vjp.flops == report.pullback.flops == 2 * matmul_flops(m, k, n)
    assert report.separate == 2 * matmul_flops(m, k, n)
    assert [s.spec for s in report.forward.steps] == ["ik,kj->ij"]
    assert report.forward.steps[0].shape == (m, n)
    assert report.forward.largest == 0  # the output is no intermediate
    assert report.saved == 0 and set(report.kept) == {"x0", "x1"}  # operands, by reference
    assert report.shapes == ((m, k), (k, n))


def test_chain_report():
    """``A B C`` with a small a and c: (A B) C is the cheaper order, its intermediate is a×c,
    and the pullback keeps it."""
    a, b, c, d = 2, 30, 3, 40
    ab_first = matmul_flops(a, b, c) + matmul_flops(a, c, d)
    bc_first = matmul_flops(b, c, d) + matmul_flops(a, b, d)
    report = einsgrad.compile("ab,bc,cd->ad").plan((a, b), (b, c), (c, d))
    assert report.forward.flops == min(ab_first, bc_first) == ab_first
    assert report.forward.largest == a * c
    assert len(report.forward.steps) == 2
    assert report.pullback.flops == 2 * report.forward.flops
    assert report.saved == a * c
    # each gradient alone, recomputing: dA = G (B C)ᵀ, dB = Aᵀ G Cᵀ, dC = (A B)ᵀ G, cheapest order
    separate = (min(matmul_flops(b, c, d) + matmul_flops(a, d, b), matmul_flops(a, d, c) + matmul_flops(a, c, b))
                + min(matmul_flops(b, a, d) + matmul_flops(b, d, c), matmul_flops(a, d, c) + matmul_flops(b, a, c))
                + min(matmul_flops(a, b, c) + matmul_flops(c, a, d), matmul_flops(b, a, d) + matmul_flops(c, b, d)))
    assert report.separate == separate


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(6, 2), (2, 7), (7, 3), (3, 5)], id="chain"),
    pytest.param("abc,cde,efa->bdf", [(2, 3, 4), (4, 3, 2), (2, 5, 2)], id="tensor network"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], id="attention"),
    pytest.param("ijk,ia,jb,kc->abc", [(4, 5, 6), (4, 2), (5, 3), (6, 2)], id="Tucker"),
])
def test_pullback_costs_twice_the_forward(spec, shapes):
    """Reverse mode over the contraction tree: the backward of a GEMM step (a free label on
    each side) is two GEMMs of the same size, so the pullback costs twice the forward."""
    report = einsgrad.compile(spec).plan(*shapes)
    assert report.forward.flops > 0
    assert report.pullback.flops == 2 * report.forward.flops
    assert report.forward_saving.flops == report.forward.flops


def test_pullback_of_a_dot_product_step():
    """``Y_b = Σ_ij X_bi M_ij Z_bj``: the forward is a GEMM (2·b·i·j) and a batched dot
    (b·i multiply-adds: 2·b·i); the dot's backward is two broadcast products of b·i
    multiplications each, so that step costs once, not twice, its forward."""
    b, i, j = 3, 4, 5
    report = einsgrad.compile("bi,ij,bj->b").plan((b, i), (i, j), (b, j))
    assert report.forward.flops == 2 * b * i * j + 2 * b * i
    assert report.pullback.flops == 2 * (2 * b * i * j) + 2 * (b * i)


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(6, 2), (2, 7), (7, 3), (3, 5)], id="chain"),
    pytest.param("ii,i->i", [(3, 3), (3,)], id="diagonal scale"),
])
def test_costs_and_plan_agree(spec, shapes):
    """``costs()`` and ``plan()`` read the same plans."""
    compiled = einsgrad.compile(spec)
    report, costs = compiled.plan(*shapes), compiled.costs(*shapes)
    assert (costs.forward, costs.pullback, costs.vjp, costs.separate, costs.saved) == (
        report.forward.flops, report.pullback.flops, report.vjp.flops, report.separate, report.saved)
    assert costs.path == tuple(s.spec for s in report.forward.steps)


def test_report_explains_itself():
    """A one-line repr; ``str()`` a table of the four functions, then their steps."""
    report = einsgrad.compile("ik,jk->ij").plan((4, 3), (5, 3))
    assert "\n" not in repr(report)
    assert repr(report).startswith("PlanReport('ik,jk->ij'") and "forward=120 flops" in repr(report)
    text = str(report)
    for name in ("forward ", "vjp ", "forward_saving ", "pullback ", "per-operand "):
        assert f"\n{name}" in text, name
    assert "ij,ik->jk" in text  # the weight gradient's step
    assert "dx1 = ij,ik->jk" in text


def test_report_is_immutable():
    report = einsgrad.compile("ik,jk->ij").plan((4, 3), (5, 3))
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        report.separate = 0


def test_report_shows_slices():
    """Under ``memory_limit`` the sliced labels are listed."""
    report = einsgrad.compile("ab,bc,cd->ad", memory_limit=8).plan((4, 16), (16, 16), (16, 4))
    assert report.slices
    assert "sliced:" in str(report)


def test_plan_without_shapes_is_an_error():
    with pytest.raises(EinsumSpecError, match=r"plan\(\) needs shapes"):
        einsgrad.compile("ik,jk->ij").plan()
