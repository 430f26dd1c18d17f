"""Small transposed copies made by one gather through a precomputed index (einsgrad.gathers).

The gathered code must give what the transposing code gives and what torch's autograd gives:
on tensor networks of bond-2 tensors (where most copies gather), on hypothesis-generated
specs, for strided operands (``take`` reads them in C order too), under slicing (a chunk's
program gathers at the chunk's sizes) and in a standalone module. The pass's own rules are
checked against numpy itself: whether ``x.transpose(p).reshape(s)`` copies, and what the
index helper makes.
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from benchmarks import network_cases as nc
from einsgrad import codegen, gathers
from oracles import torch_vjp
from strategies import EXACT_DTYPES, einsum_cases
from test_tables import assert_close, assert_network_agrees

NETWORKS = [nc.random_regular(12), nc.grid(3, 4), nc.circuit(4, 6), nc.grid(4, 4)]  # bond 2: they gather


READ = re.compile(r"\.(take\(|ravel\(\)\[)_vjp_take0\b")  # a gather of the vjp's first index, either spelling


@contextlib.contextmanager
def nothing_gathered():
    """Within the block, every transposed copy is numpy's transpose and reshape."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gathers, "LIMIT", -1)
        yield


def gradients(spec: str, ops, G, **options):
    e = einsgrad.Einsum(spec, optimize="greedy", **options)
    y = e(*ops)
    _, pullback = e.value_and_pullback(*ops)
    return e, y, e.vjp(G, *ops), pullback(G)


@st.composite
def transpositions(draw):
    """(shape, perm, out): an array's shape of up to six axes of sizes 1-4, a transposition,
    and a shape that groups the transposed axes, side by side, into fewer dimensions."""
    rank = draw(st.integers(1, 6))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    perm = tuple(draw(st.permutations(range(rank))))
    cuts = sorted(draw(st.sets(st.integers(1, rank - 1), max_size=rank - 1))) if rank > 1 else []
    bounds = [0, *cuts, rank]
    out = tuple(math.prod(shape[p] for p in perm[a:b]) for a, b in zip(bounds, bounds[1:]))
    return shape, perm, out


@settings(deadline=None, max_examples=300)
@given(transpositions())
def test_reshape_copies_as_numpy_does(case):
    """``reshape_copies`` says whether numpy's reshape of the transposed array copies."""
    shape, perm, out = case
    x = np.arange(math.prod(shape), dtype=float).reshape(shape)
    view = x.transpose(perm).reshape(out)
    assert gathers.reshape_copies(shape, perm, out) == (not np.shares_memory(view, x))


@settings(deadline=None, max_examples=200)
@given(transpositions(), st.booleans(), st.booleans())
def test_an_index_gathers_the_transposed_copy(case, swap, strided):
    """The helper's index makes ``x.transpose(perm).reshape(out)`` (``.T`` where ``swap``) with
    ``take``, contiguous, for a contiguous and for a strided ``x`` (every other element)."""
    shape, perm, out = case
    if swap and len(out) != 2:
        out = (out[0], math.prod(out[1:])) if len(out) > 2 else (1, out[0])
    index = codegen.load("")["_gather_index"](shape, perm, out, swap)
    x = np.random.default_rng(0).standard_normal(shape)
    if strided:
        x = np.random.default_rng(0).standard_normal((2,) + shape)[::2][0]
    expected = x.transpose(perm).reshape(out)
    expected = expected.T if swap else expected
    for got in (x.take(index), x.ravel()[index]):  # both spellings of a gather
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


def test_worth_refuses_views_large_copies_and_long_runs():
    """A reshape that is a view, a copy past LIMIT, and a long run past SHORT_LIMIT do not
    gather; a bond-2 transposition does, and so does a small copy with a long run."""
    assert not gathers.worth((2, 3), (0, 1), (6,))  # a view
    assert not gathers.worth((1, 4, 5), (1, 0, 2), (4, 5))  # a size-1 axis moved: a view
    assert gathers.worth((2,) * 8, (1, 0, 2, 3, 4, 5, 6, 7), (4, 64))
    assert gathers.worth((2,) * 8, (1, 0, 2, 3, 4, 5, 6, 7), None)  # copy() of the transposed view
    assert not gathers.worth((2,) * 15, (1, 0) + tuple(range(2, 15)), (4, 8192))  # past LIMIT
    assert gathers.worth((8, 8, 8), (1, 0, 2), (8, 64))  # a run of 8, 512 elements
    assert not gathers.worth((16, 16, 16), (1, 0, 2), (16, 256))  # a run of 16, 4096 elements
    assert gathers.inner_run((2, 3, 4, 5), (1, 0, 2, 3)) == 20
    assert gathers.inner_run((2, 3, 4, 5), (3, 2, 1, 0)) == 2


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name)
def test_a_network_gathers_its_copies_and_matches_torch(network):
    """Forward, vjp and pullback of a network gather its small copies (the source says so),
    and equal torch autograd's gradients and the transposing code's values."""
    pytest.importorskip("torch")
    ops = network.operands()
    shapes = [x.shape for x in ops]
    G = np.random.default_rng(1).standard_normal(np.shape(np.einsum(network.spec, *ops, optimize=True)))
    e, y, grads, pulled = gradients(network.spec, ops, G)
    source = e.source(*shapes)
    assert READ.search(source) and "\n_pullback_take0 = _gather_index(" in source
    with nothing_gathered():
        plain, y0, grads0, pulled0 = gradients(network.spec, ops, G)
        assert "_take0" not in plain.source(*shapes)
    assert_network_agrees(network.spec, ops, G, (y, grads, pulled), (y0, grads0, pulled0), "transposing")


def test_products_read_only_by_gathers_and_reshapes_are_not_reshaped():
    """A product whose every reader gathers it or reshapes it is left in its GEMM's shape
    (no reshape to its labels' shape first), and the code still equals torch's."""
    network = nc.grid(3, 4)
    ops = network.operands()
    shapes = [x.shape for x in ops]
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gathers, "unreshaped", lambda plan, gathering: plan)
        reshaped = einsgrad.Einsum(network.spec, optimize="greedy").source(*shapes)
    source = e.source(*shapes)
    assert source.count(").reshape(") < reshaped.count(").reshape(")
    for g, t in zip(e.vjp(np.ones(()), *ops), torch_vjp(network.spec, ops, np.ones(()))):
        assert_close(g, t, "vjp")


def test_a_network_spells_small_gathers_by_indexing_and_larger_ones_by_take():
    """Copies of at most INDEXED elements index the raveled value; larger ones call take."""
    network = nc.random_regular(30)  # copies of 8 to 1024 elements
    source = einsgrad.Einsum(network.spec, optimize="greedy").source(*network.shapes)
    sizes = {name: math.prod(map(int, re.findall(r"\d+", shape)))
             for name, shape in re.findall(r"\n(_vjp_take\d+) = _gather_index\(\(([0-9, ]*)\)", source)}
    indexed = set(re.findall(r"\.ravel\(\)\[(_vjp_take\d+)\]", source))
    taken = set(re.findall(r"\.take\((_vjp_take\d+)\)", source))
    assert indexed and taken and indexed | taken == set(sizes)
    assert all(sizes[n] <= gathers.INDEXED for n in indexed) and all(sizes[n] > gathers.INDEXED for n in taken)


def test_strided_operands_gather_in_their_logical_order():
    """Operands passed as transposed and sliced views give the gradients of their copies."""
    network = nc.grid(3, 3)
    ops = network.operands()
    views = [np.ascontiguousarray(x.T).T if x.ndim > 1 else np.repeat(x, 2)[::2] for x in ops]
    assert not all(v.flags.c_contiguous for v in views)
    G = np.ones(())
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    assert READ.search(e.source(*[x.shape for x in ops]))
    expected = e.vjp(G, *ops)
    for g, t in zip(e.vjp(G, *views), torch_vjp(network.spec, ops, G)):
        assert_close(g, t, "vjp of views")
    for g, t in zip(e.vjp(G, *views), expected):
        np.testing.assert_array_equal(g, t)


def test_a_sliced_network_gathers_at_its_chunks_sizes():
    """Under memory_limit each chunk's program gathers at the chunk's sizes, and the sliced
    gradients equal the unsliced ones."""
    network = nc.grid(3, 4)
    ops = network.operands()
    G = np.ones(())
    e, y, grads, pulled = gradients(network.spec, ops, G)
    s, ys, grads_s, pulled_s = gradients(network.spec, ops, G, memory_limit=16)
    source = s.source(*[x.shape for x in ops])
    assert "def vjp_chunk(" in source and "_vjp_chunk_take0 = _gather_index(" in source
    assert_close(ys, y, "forward, sliced")
    for k, (g, p, t) in enumerate(zip(grads_s, pulled_s, grads)):
        assert_close(g, t, f"vjp, operand {k}, sliced")
        assert_close(p, t, f"pullback, operand {k}, sliced")


def test_a_standalone_module_gathers():
    """``Einsum.module()`` holds the helper and the indices, and its vjp is the Einsum's."""
    network = nc.grid(3, 3)
    ops = network.operands()
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    text = e.module(*[x.shape for x in ops])
    assert "def _gather_index(" in text and re.search(r"\.(take\(|ravel\(\)\[)__vjp_take0", text)
    namespace: dict = {}
    exec(compile(text, "<module>", "exec"), namespace)  # noqa: S102
    for g, t in zip(namespace["vjp"](np.ones(()), *ops), e.vjp(np.ones(()), *ops)):
        np.testing.assert_array_equal(g, t)


@settings(deadline=None, max_examples=60)
@given(einsum_cases(dtypes=EXACT_DTYPES, min_operands=2, max_operands=5, max_rank=4))
def test_gathered_code_of_generated_specs_matches_torch_and_the_transposing_code(case):
    """numpy's forward, torch's gradients, and the transposing code's values (to rounding: a
    GEMM may read a gathered side untransposed where it read a transposed view)."""
    pytest.importorskip("torch")
    ops = case.operands()
    G = case.cotangent(np.shape(np.einsum(case.clean_spec, *ops)))
    _, y, grads, pulled = gradients(case.spec, ops, G)
    with nothing_gathered():
        _, y0, grads0, pulled0 = gradients(case.spec, ops, G)
    assert_close(y, np.einsum(case.clean_spec, *ops), "forward")
    expected = torch_vjp(case.clean_spec, ops, G) or torch_vjp(case.explicit_spec, ops, G)
    assert_close(y, y0, "forward, transposing")
    for k, (g, p, g0, p0) in enumerate(zip(grads, pulled, grads0, pulled0)):
        assert g.dtype == ops[k].dtype and g.shape == ops[k].shape, k
        assert not any(np.shares_memory(g, o) for o in ops), k
        assert_close(g, g0, f"vjp, operand {k}, transposing")
        assert_close(p, p0, f"pullback, operand {k}, transposing")
        if expected is not None:
            assert_close(g, expected[k], f"vjp, operand {k}")
