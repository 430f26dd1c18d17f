"""cupy arrays (skipped without cupy, which needs a GPU): they run the numpy dialect spelled with
``cp``. Forward values against ``numpy.einsum`` and gradients against finite differences, on the
same values copied to the host; results are cupy arrays of numpy's dtypes. ``benchmarks/gpu.py``
runs this file on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import einsgrad
from oracles import numeric_vjp_check, upcast
from strategies import ALL_DTYPES, EXACT_DTYPES, LOW_DTYPES, Case, einsum_cases, extended_cases

cp = pytest.importorskip("cupy")

EXACT_RTOL, LOW_RTOL = 1e-9, 2e-4

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], {}, id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)], {}, id="chain"),
    pytest.param("ii->", [(3, 3)], {}, id="trace"),
    pytest.param("iij->ji", [(3, 3, 2)], {}, id="repeated label"),
    pytest.param("i->ii", [(3,)], {}, id="diagonal placed"),
    pytest.param("j->ij", [(4,)], {"i": 3}, id="broadcast output"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], {}, id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], {}, id="size-1 broadcast"),
]


def host(values) -> list[np.ndarray]:
    """cupy results as numpy arrays, each checked to be a cupy array."""
    assert all(isinstance(v, cp.ndarray) for v in values), [type(v) for v in values]
    return [cp.asnumpy(v) for v in values]


def rtol_of(case: Case) -> float:
    return LOW_RTOL if any(d in LOW_DTYPES for d in case.dtypes) else EXACT_RTOL


@given(einsum_cases(dtypes=ALL_DTYPES))
def test_forward_and_vjp_match_numpy_and_finite_differences(case: Case):
    """The forward has numpy.einsum's shape, dtype and values; the vjp passes the adjoint
    check; both come back as cupy arrays."""
    ops = case.operands()
    expected = np.einsum(case.clean_spec, *ops)
    lin = einsgrad.compile(case.spec)
    (y,) = host([lin(*(cp.asarray(x) for x in ops))])
    assert y.shape == expected.shape and y.dtype == expected.dtype
    scale = max(1.0, float(np.max(np.abs(upcast(expected)), initial=0.0)))
    np.testing.assert_allclose(upcast(y), upcast(expected), rtol=rtol_of(case), atol=rtol_of(case) * scale)
    G = case.cotangent(expected.shape)
    grads = host(lin.vjp(cp.asarray(G), *(cp.asarray(x) for x in ops)))
    assert [g.dtype for g in grads] == [x.dtype for x in ops]
    numeric_vjp_check(lambda *xs: np.einsum(case.clean_spec, *xs), ops, G, grads,
                      rtol=rtol_of(case), seed=case.seed)


@given(extended_cases(dtypes=EXACT_DTYPES))
def test_pullback_of_extended_specs(case: Case):
    """Diagonals placed, broadcast output labels, summed batches: the pullback's gradients
    equal the one-shot vjp's and those of numpy arrays."""
    ops = case.operands()
    lin = einsgrad.compile(case.spec, sizes=case.sizes)
    y_host = lin(*ops)
    G = case.cotangent(y_host.shape)
    y, pullback = lin.value_and_pullback(*(cp.asarray(x) for x in ops))
    np.testing.assert_allclose(host([y])[0], y_host, rtol=EXACT_RTOL, atol=EXACT_RTOL)
    for mine, theirs in zip(host(pullback(cp.asarray(G))), lin.vjp(G, *ops)):
        scale = max(1.0, np.abs(theirs).max(initial=0))
        np.testing.assert_allclose(mine, theirs, rtol=EXACT_RTOL, atol=EXACT_RTOL * scale)


@pytest.mark.parametrize("spec, shapes, sizes", CURATED)
def test_curated_specs_with_numpy_values_joining(spec, shapes, sizes):
    """A numpy operand beside a cupy one is copied to the GPU; the results are cupy's and
    equal numpy's."""
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in shapes]
    lin = einsgrad.compile(spec, sizes=sizes)
    mixed = [cp.asarray(ops[0]), *ops[1:]]
    np.testing.assert_allclose(host([lin(*mixed)])[0], lin(*ops), rtol=EXACT_RTOL)
    G = rng.standard_normal(lin(*ops).shape)
    for mine, theirs in zip(host(lin.vjp(G, *mixed)), lin.vjp(G, *ops)):
        np.testing.assert_allclose(mine, theirs, rtol=EXACT_RTOL, atol=EXACT_RTOL)


def test_cupy_with_torch_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(einsgrad.EinsumSpecError, match=r"two array libraries.*\(cupy\) and .*\(torch\)"):
        einsgrad.einsum("ik,jk->ij", cp.ones((2, 3)), torch.ones((4, 3)))
