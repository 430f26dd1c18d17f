"""einsgrad on dask arrays (skipped without dask): lazy results of the dask dialect's code,
checked against numpy; chunked networks lowered block by block (no rechunk, about the tasks
of opt_einsum's dask backend, no larger task); ``value_and_pullback`` running the forward once;
and a chunked contraction on a ``dask.distributed`` LocalCluster."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
import dask  # noqa: E402  (after the skip)
import opt_einsum  # noqa: E402
from dask.callbacks import Callback  # noqa: E402
from strategies import EXACT_DTYPES, FLOAT64, einsum_cases  # noqa: E402
from test_slicing_code import sliced_case  # noqa: E402

import einsgrad  # noqa: E402
from benchmarks.dask_networks import largest_task  # noqa: E402
from benchmarks.network_cases import grid, mps_norm  # noqa: E402

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
        assert counter.runs == 0
        saved_y, pullback = lin.value_and_pullback(*lazy_ops)  # persists what the pullback reads
        assert counter.runs == 1
        pulled = pullback(lazy_G)
        assert counter.runs == 1
        for value in (lazy_y, saved_y, *grads, *pulled):
            assert isinstance(value, da.Array)
        np.testing.assert_allclose(lazy_y.compute(), y, rtol=1e-12, atol=1e-12)
        for got in (dask.compute(*grads), dask.compute(*pulled)):
            for g, e in zip(got, expected):
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    assert counter.runs == 4


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


def executed(function) -> list:
    """The keys of the tasks that ``function()`` runs on the synchronous scheduler, in order."""
    keys: list = []
    with Callback(pretask=lambda key, dsk, state: keys.append(key)), dask.config.set(scheduler="sync"):
        function()
    return keys


def layers(*values) -> set[str]:
    """The kinds of the graph layers of ``values`` (``rechunk-merge``, ``block_dot``...)."""
    return {name.rsplit("-", 1)[0] for v in values for name in v.__dask_graph__().layers}


NETWORKS = [pytest.param(mps_norm(4, 8), 4, id="mps norm"), pytest.param(grid(3, 3, 4), 2, id="3x3 grid")]


@pytest.mark.parametrize("network, chunk", NETWORKS)
def test_chunked_networks_are_lowered_block_by_block(network, chunk):
    """Every operand chunked along every bond: the forward and all gradients equal numpy's,
    no step rechunks (a reshape merging chunked axes did), and the forward has about the tasks
    of opt_einsum's dask backend on the same path, none returning more than its largest."""
    operands = network.operands()
    lazy = [da.from_array(x, chunks=chunk) for x in operands]
    path, _ = opt_einsum.contract_path(network.spec, *operands, optimize="greedy")
    e = einsgrad.Einsum(network.spec, optimize=path)
    y = e(*lazy)
    theirs = opt_einsum.contract(network.spec, *lazy, optimize=path, backend="dask")
    np.testing.assert_allclose(y.compute(), np.einsum(network.spec, *operands, optimize="greedy"), rtol=1e-10)
    grads = e.vjp(np.ones(()), *lazy)
    for got, expected in zip(dask.compute(*grads), e.vjp(np.ones(()), *operands)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert not {kind for kind in layers(y, *grads) if kind.startswith("rechunk")}
    ours, peer = len(y.__dask_graph__()), len(theirs.__dask_graph__())
    assert ours <= 1.25 * peer, (ours, peer)
    assert largest_task(y) <= largest_task(theirs)


@settings(max_examples=30, deadline=None)  # each example builds and runs six dask graphs
@given(einsum_cases(dtypes=EXACT_DTYPES, max_operands=3), st.data())
def test_randomly_chunked_operands_give_numpy_results(case, data):
    """Any spec, each operand split into chunks of its own sizes (operands disagreeing on a
    shared label's chunks too): the forward is numpy's einsum, the gradients the numpy path's."""
    operands = case.operands()
    lazy = [da.from_array(x, chunks=tuple(data.draw(st.integers(1, max(n, 1))) for n in x.shape))
            for x in operands]
    e = einsgrad.compile(case.spec)
    expected_y = np.einsum(case.spec, *operands)
    np.testing.assert_allclose(e(*lazy).compute(), expected_y, rtol=1e-10, atol=1e-10)
    G = case.cotangent(np.shape(expected_y))
    expected = e.vjp(G, *operands)
    y, pullback = e.value_and_pullback(*lazy)
    np.testing.assert_allclose(y.compute(), expected_y, rtol=1e-10, atol=1e-10)
    for got in (dask.compute(*e.vjp(da.from_array(G), *lazy)), dask.compute(*pullback(da.from_array(G)))):
        for g, want in zip(got, expected):
            np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-10)


def test_value_and_pullback_runs_the_forward_once():
    """``y`` and then the gradients: every task runs once (the forward's results persisted), and
    fewer run than when the pullback recomputes the forward (``recompute=True``)."""
    rng = np.random.default_rng(2)
    ops = [da.from_array(rng.standard_normal(s), chunks=2) for s in [(8, 6), (6, 4), (4, 6)]]
    e = einsgrad.compile("ab,bc,cd->ad")

    def run(recompute):
        y, pullback = e.value_and_pullback(*ops, recompute=recompute)
        forward = executed(y.compute)
        backward = executed(lambda: dask.compute(*pullback(da.ones_like(y))))
        return y, forward, backward

    y, forward, backward = run(False)
    before = executed(lambda: e.value_and_pullback(*ops))  # the persisting forward itself
    assert len(forward) <= y.npartitions  # y's blocks are in memory: at most one task each
    assert not set(backward) & set(before)
    every = before + forward + backward
    assert len(every) == len(set(every))
    _, again_forward, again_backward = run(True)
    assert len(set(again_forward) & set(again_backward)) > 0  # recomputing: the forward runs twice
    assert len(every) < len(again_forward) + len(again_backward)


@pytest.mark.parametrize("chunk", [2, 3])
def test_a_sliced_contraction_is_one_graph_of_its_slices(chunk, monkeypatch):
    """Under a memory_limit of 256 slices or more (the 3x3 grid at bond 4, chunked every way):
    the forward and all gradients equal numpy's unsliced ones; computing the forward's graph
    runs the chunk's program once per slice, in at most one task per slice and at least
    dask_slices.TASKS (slices grouped into a task while its windows stay small); the rest is
    the chains' sums added together, each block of the result read from their total, and the
    operands rechunked into the tasks' windows; and no task returns an array (alone or among
    a chain's running sums) larger than the largest of an input's dask chunk, the memory limit,
    an operand's slice and a result's window, each sized here from the cuts (the operands' own
    tasks aside)."""
    from einsgrad import codegen, dialects
    from einsgrad.dask_slices import TASKS

    calls = [0]
    real = codegen.load

    def counting(function):
        def counted(*args):
            calls[0] += 1
            return function(*args)

        return counted

    def load(text, dialect=dialects.NUMPY):
        namespace = real(text, dialect)
        for name in [n for n in namespace if n.endswith("_chunk")]:  # read by the loop at call time
            namespace[name] = counting(namespace[name])
        return namespace

    monkeypatch.setattr(codegen, "load", load)
    network = grid(3, 3, 4)
    operands = network.operands()
    lazy = [da.from_array(x, chunks=chunk) for x in operands]
    limit = 16
    e = einsgrad.Einsum(network.spec, optimize="greedy", memory_limit=limit)
    cuts = dict(e.plan(*network.shapes).slices)
    size = dict(network.sizes)
    slices = int(np.prod([-(-size[l] // c) for l, c in cuts.items()]))
    assert slices >= 256
    y = e(*lazy)
    before = calls[0]
    keys = executed(y.compute)
    assert calls[0] - before == slices
    reference = einsgrad.Einsum(network.spec, optimize="greedy")
    np.testing.assert_allclose(y.compute(), reference(*operands), rtol=1e-10)
    grads = e.vjp(np.ones(()), *lazy)
    for got, want in zip(dask.compute(*grads), reference.vjp(np.ones(()), *operands)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    groups = [k for k in keys if isinstance(k, tuple) and str(k[0]).startswith("slice-")]
    assert len(groups) == len(set(groups)) and min(TASKS, slices) <= len(groups) <= slices
    graph = y.__dask_graph__()
    picks = sum(1 for k in graph if isinstance(k, tuple) and str(k[0]).startswith("sliced-"))
    assert picks == y.npartitions  # each block of the result read from the chains' total
    blocks = sum(x.npartitions + int(np.prod([-(-size[l] // cuts[l]) for l in t if l in cuts]))
                 for x, t in zip(lazy, network.terms))  # each operand's dask chunks, then its slices
    rest = len(graph) - len(groups) - picks  # the operands' own tasks, and their rechunking
    assert rest <= 4 * blocks, (len(graph), len(groups), picks, blocks)  # two rechunks: a split and a merge a block
    piece = lambda labels: int(np.prod([cuts.get(l, size[l]) for l in labels]))  # noqa: E731
    bound = max([chunk ** len(t) for t in network.terms] + [piece(t) for t in network.terms]
                + [piece(network.output), limit]) * operands[0].itemsize
    assert largest_task(y, *grads, given=lazy) <= bound


@settings(max_examples=30, deadline=None)
@given(einsum_cases(dtypes=(FLOAT64,), max_operands=3, min_operands=2), st.sampled_from([1, 2, 3, 5]), st.data())
def test_sliced_dask_on_generated_specs_equals_unsliced_numpy(case, threads, data):
    """Generated specs at limits that slice them, each operand in chunks of any size (whole
    ones let a task take many slices, short last chunks among them), the graph built for 1 to
    5 threads (as many chains): the sliced graph's value, vjp and pullback are the unsliced
    numpy path's."""
    e = sliced_case(case, data.draw)
    assume(e is not None)
    operands = case.operands()
    lazy = [da.from_array(x, chunks=tuple(data.draw(st.integers(1, max(n, 1))) for n in x.shape))
            for x in operands]
    whole = einsgrad.compile(case.spec)
    expected_y = whole(*operands)
    G = case.cotangent(np.shape(expected_y))
    expected = whole.vjp(G, *operands)
    with dask.config.set(scheduler="threads", num_workers=threads):
        y, grads = e(*lazy), e.vjp(da.from_array(G), *lazy)
        saved_y, pullback = e.value_and_pullback(*lazy)
        pulled = pullback(da.from_array(G))
        got_y, got_saved, *got = dask.compute(y, saved_y, *grads, *pulled)
    np.testing.assert_allclose(got_y, expected_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_saved, expected_y, rtol=1e-10, atol=1e-10)
    for got_one, want in zip(got, [*expected, *expected], strict=True):
        np.testing.assert_allclose(got_one, want, rtol=1e-10, atol=1e-10)


def _nbytes(value) -> int:
    """Bytes of the arrays in a task's value (inside tuples, lists and dicts)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


class LiveBytes(Callback):
    """The most bytes of task values dask holds at once (its cache, after each task)."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.peak = max(self.peak, sum(_nbytes(v) for v in state["cache"].values()))


@pytest.mark.parametrize("scheduler, threads", [("sync", 1), ("threads", 3)])
@pytest.mark.parametrize("chunk", [None, 2])
def test_sliced_dask_holds_a_copy_of_the_results_per_chain(chunk, scheduler, threads):
    """The gradients of the 3x3 grid at bond 4 in 256 slices or more, operands whole or in
    chunks of 2: the values dask holds at once never pass one copy of the gradients per chain
    (a chain per thread, one under the synchronous scheduler) plus the operands twice (as
    given and cut into the tasks' windows), as numpy's loop holds its totals and the operands.
    Independent tasks summed as a tree held 18 (whole) and 52 (chunks of 2) times the
    gradients' bytes here."""
    network = grid(3, 3, 4)
    operands = network.operands()
    lazy = [da.from_array(x, chunks=chunk or x.shape) for x in operands]
    e = einsgrad.Einsum(network.spec, optimize="greedy", memory_limit=16)
    assert math.prod(-(-dict(network.sizes)[l] // c) for l, c in e.plan(*network.shapes).slices) >= 256
    with dask.config.set(scheduler=scheduler, num_workers=threads):
        grads = e.vjp(np.ones(()), *lazy)
        live = LiveBytes()
        with live:
            got = dask.compute(*grads)
    for g, want in zip(got, einsgrad.Einsum(network.spec, optimize="greedy").vjp(np.ones(()), *operands)):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)
    results = sum(g.nbytes for g in got)
    given = sum(x.nbytes for x in operands)
    assert live.peak <= threads * results + 2 * given, (live.peak, results)


def test_the_dask_benchmark_runs_quick(capsys):
    from benchmarks import dask_networks

    assert dask_networks.main(["--quick", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["mps", "grid"]
    assert dask_networks.main(["--quick", "--rounds", "1", "--sliced"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:2] == ["grid", "2x3"]
