"""einsgrad.distributed: a sliced contraction's groups of slices as tasks of a dask.distributed
LocalCluster (in-process workers on loopback, results waited for with a timeout), against
numpy's einsum, the local unsliced gradients and Euler's identity (skipped without
dask.distributed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")

import einsgrad  # noqa: E402
from benchmarks.network_cases import grid, mps_norm  # noqa: E402
from einsgrad import distributed as ed  # noqa: E402
from einsgrad.shapes import BoundSpec  # noqa: E402
from einsgrad.spec import parse  # noqa: E402

TIMEOUT = 60  # seconds: a hung cluster fails the test instead of the run


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster, timeout=TIMEOUT) as c:
        yield c


def euler_error(operands, cotangent, y, grads) -> float:
    """For a multilinear function, ``<dL/dX_k, X_k> = <G, y>`` for every operand ``k``."""
    total = float(np.vdot(cotangent, y))
    return max(abs(float(np.vdot(g, x)) - total) / max(np.linalg.norm(g) * np.linalg.norm(x), 1e-300)
               for g, x in zip(grads, operands))


@pytest.mark.parametrize("network, limit", [pytest.param(grid(3, 3, 4), 64, id="3x3 grid"),
                                            pytest.param(mps_norm(5, 8), 32, id="mps norm")])
def test_sliced_network_on_a_local_cluster_equals_the_local_result(client, network, limit):
    operands = network.operands()
    result = ed.value_and_grads(network.spec, *operands, memory_limit=limit, client=client, timeout=TIMEOUT)
    y, grads = result.value, result.grads
    assert result.slices and result.tasks > 1  # it was sliced, and ran as several tasks
    assert result.largest <= limit
    np.testing.assert_allclose(y, np.einsum(network.spec, *operands, optimize="greedy"), rtol=1e-10)
    local = einsgrad.Einsum(network.spec).vjp(np.ones(()), *operands)
    for got, expected in zip(grads, local):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert euler_error(operands, np.ones(()), y, grads) < 1e-10


@pytest.mark.parametrize("tasks", [1, 3, 1000])
def test_an_output_along_a_sliced_label_is_placed_piece_by_piece(client, tasks):
    """A matrix chain whose output keeps a sliced label: the tasks' outputs are placed, their
    gradients summed, whatever the number of groups (one, a few, more than the slices)."""
    rng = np.random.default_rng(3)
    A, B, C = rng.standard_normal((12, 10)), rng.standard_normal((10, 9)), rng.standard_normal((9, 7))
    G = rng.standard_normal((12, 7))
    y, grads = ed.value_and_grads("ab,bc,cd->ad", A, B, C, memory_limit=40, client=client, cotangent=G,
                                  tasks=tasks, timeout=TIMEOUT)[:2]
    np.testing.assert_allclose(y, A @ B @ C, rtol=1e-12)
    np.testing.assert_allclose(grads[0], G @ (B @ C).T, rtol=1e-10)
    np.testing.assert_allclose(grads[1], A.T @ G @ C.T, rtol=1e-10)
    np.testing.assert_allclose(grads[2], (A @ B).T @ G, rtol=1e-10)


def test_a_contraction_that_fits_runs_as_one_task(client):
    A, B = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    result = ed.value_and_grads("ij,jk->ik", A, B, memory_limit=10**6, client=client, timeout=TIMEOUT)
    assert result.slices == () and result.tasks == 1
    np.testing.assert_allclose(result.value, A @ B)
    np.testing.assert_allclose(result.grads[0], np.ones((2, 4)) @ B.T)


@pytest.mark.parametrize("call, message", [
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)), memory_limit=None,
                                              client=c), r"needs memory_limit", id="no limit"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)), memory_limit=4,
                                              client=c, cotangent=np.ones((4, 2))),
                 r"the cotangent has shape \(4, 2\) but the output of 'ij,jk->ik' has shape \(2, 4\)", id="cotangent"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)), memory_limit=4,
                                              client=c, tasks=0), r"tasks must be a positive integer, got 0",
                 id="tasks"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)), memory_limit=4,
                                              client=c, tasks=True), r"tasks must be a positive integer, got True",
                 id="tasks bool"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.array([["a"] * 3] * 2), np.ones((3, 4)),
                                              memory_limit=4, client=c), r"not numeric", id="dtype"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)), memory_limit=4,
                                              client="tcp://localhost:8786"),
                 r"client must be a dask.distributed Client, got str", id="client"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), memory_limit=4, client=c),
                 r"2 operand", id="operand count"),
    pytest.param(lambda c: ed.value_and_grads("ij,jk->ik", np.ones((2, 3)), np.ones((4, 4)), memory_limit=4,
                                              client=c), r"operand 1", id="shapes"),
])
def test_bad_calls_are_refused(client, call, message):
    with pytest.raises(einsgrad.EinsumSpecError, match=message):
        call(client)


def test_other_libraries_arrays_are_refused(client):
    da = pytest.importorskip("dask.array")
    with pytest.raises(einsgrad.EinsumSpecError, match=r"takes numpy arrays, not dask arrays"):
        ed.value_and_grads("ij,jk->ik", da.ones((2, 3)), da.ones((3, 4)), memory_limit=4, client=client)


@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=0, max_size=3), st.integers(1, 50))
def test_groups_cover_every_slice_once(labels, count):
    """However many groups are asked for, each slice lies in exactly one group, groups are whole
    chunks, and there are at most as many groups as slices."""
    names = "abc"[:len(labels)]
    sizes = {n: size for n, (size, _) in zip(names, labels)}
    cuts = tuple((n, min(chunk, sizes[n])) for n, (_, chunk) in zip(names, labels))
    bound = BoundSpec(parse(names + "->"), tuple(sizes.items()))
    windows = ed.groups(bound, cuts, count)
    slices = list(itertools.product(*(range(0, sizes[n], c) for n, c in cuts)))
    assert len(windows) <= max(1, len(slices)) and len(windows) <= max(count, 1) * 2 ** len(cuts)
    seen = [s for s in slices for w in windows
            if all(start <= i < stop for i, (_, start, stop) in zip(s, w))]
    assert sorted(seen) == sorted(slices)
    for w in windows:
        for (n, c), (label, start, stop) in zip(cuts, w):
            assert label == n and start % c == 0 and (stop % c == 0 or stop == sizes[n])


def test_the_benchmark_column_measures_both_sides(client):
    """benchmarks.network_distributed's measure, on this in-process cluster: both sides timed,
    the slice count and the largest task within the limit it chose."""
    from benchmarks import network_cases, network_distributed
    from benchmarks.networks import Measured, distributed_lines

    network = network_cases.chain(6, 4)
    row = Measured(network.family, network.name, network.tensors)
    row.extra.update(network_distributed.measure_with(client, rounds=1)(network, row))
    assert row.extra["one_process"] > 0 and row.extra["cluster"] > 0
    assert row.extra["slices"] > 1 and 0 < row.extra["largest_task"] <= row.extra["memory_limit"]
    assert any(line.startswith("chain 6 ") for line in distributed_lines([row]))
