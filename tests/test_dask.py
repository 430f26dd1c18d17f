"""einsgrad on dask arrays (skipped without dask): lazy results of the dask dialect's code,
checked against numpy, and a chunked contraction on a ``dask.distributed`` LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402  (after the skip)

import einsgrad  # noqa: E402

CURATED = [
    pytest.param("ik,jk->ij", [(8, 6), (10, 6)], None, id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(4, 6), (6, 4), (4, 6), (6, 4)], None, id="chain"),
    pytest.param("abc,cde,efa->bdf", [(4, 3, 4), (4, 3, 4), (4, 5, 4)], None, id="tensor network"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], None, id="attention"),
    pytest.param("ii->i", [(6, 6)], None, id="diagonal"),
    pytest.param("i->ii", [(6,)], {}, id="diagonal placement"),
    pytest.param("j->ij", [(6,)], {"i": 4}, id="bias broadcast"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 4, 6), (5, 6, 4)], None, id="broadcast batch"),
]


class CountingScheduler:
    """A synchronous dask scheduler that counts how often a graph is computed."""

    def __init__(self):
        self.runs = 0

    def __call__(self, graph, keys, **kwargs):
        self.runs += 1
        return dask.get(graph, keys, **kwargs)


def chunked(array: np.ndarray):
    """A dask array whose every axis longer than 1 is split into two or more chunks."""
    return da.from_array(array, chunks=tuple(max(1, -(-n // 2)) for n in array.shape))


@pytest.mark.parametrize("spec, shapes, sizes", CURATED)
def test_lazy_results_equal_numpy(spec, shapes, sizes):
    """Forward, vjp and pullback return dask arrays, compute nothing until asked, and agree
    with the numpy path."""
    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in shapes]
    lin = einsgrad.compile(spec, sizes=sizes)
    y = lin(*ops)
    G = rng.standard_normal(y.shape)
    expected = lin.vjp(G, *ops)
    lazy_ops, lazy_G = [chunked(x) for x in ops], chunked(G)
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        lazy_y = lin(*lazy_ops)
        grads = lin.vjp(lazy_G, *lazy_ops)
        saved_y, pullback = lin.value_and_pullback(*lazy_ops)
        pulled = pullback(lazy_G)
        assert counter.runs == 0
        for value in (lazy_y, saved_y, *grads, *pulled):
            assert isinstance(value, da.Array)
        np.testing.assert_allclose(lazy_y.compute(), y, rtol=1e-12, atol=1e-12)
        for got in (dask.compute(*grads), dask.compute(*pulled)):
            for g, e in zip(got, expected):
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    assert counter.runs == 3


def test_chunked_gradients_on_a_local_cluster():
    """The linear layer with 2x2 chunks per operand, computed by a two-worker cluster."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((8, 6)), rng.standard_normal((10, 6))
    G = rng.standard_normal((8, 10))
    lin = einsgrad.compile("ik,jk->ij")
    expected = lin.vjp(G, X, W)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ops = [da.from_array(X, chunks=(4, 3)), da.from_array(W, chunks=(5, 3))]
        assert all(a.numblocks == (2, 2) for a in ops)
        y, pullback = lin.value_and_pullback(*ops)
        dX, dW = client.compute(pullback(da.from_array(G, chunks=(4, 5))), sync=True)
        np.testing.assert_allclose(y.compute(), X @ W.T, rtol=1e-12)
    np.testing.assert_allclose(dX, expected[0], rtol=1e-12)
    np.testing.assert_allclose(dW, expected[1], rtol=1e-12)
