"""What makes compiling a large network cheap, checked for what it must not change: the
garbage collector paused while planning (einsgrad.signature.collector_paused) and every
cache that the lowering and the step tables keep per signature, which must never hand one
network's plan or kernel to another.
"""

from __future__ import annotations

import gc
import sysconfig
import weakref

import numpy as np
import opt_einsum
import pytest

import einsgrad
from benchmarks import network_cases as nc
from einsgrad import plan
from einsgrad.shapes import bind
from einsgrad.signature import collector_paused
from einsgrad.spec import parse
from test_lowering_patterns import lowered_afresh


@pytest.fixture
def collecting():
    """The collector on for the test, as it was after."""
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.skipif(bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                    reason="free-threaded Python: the block leaves the generations as they are")
def test_the_collector_is_back_on_after_a_paused_block_and_what_it_made_is_old(collecting):
    with collector_paused():
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]
    assert gc.isenabled()
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert not young.intersection(map(id, kept)), "what the block kept is not in the young generation"
    assert all(gc.is_tracked(o) for o in kept[:10]), "still tracked: full collections see them"


def test_a_paused_block_inside_another_leaves_the_collector_to_the_outer_one(collecting):
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_paused_block_leaves_a_collector_that_was_off_off(collecting):
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_a_paused_block_keeps_what_the_process_froze_frozen(collecting):
    frozen = [[1], [2]]
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        assert count > 0
        with collector_paused():
            made = [[3]]
        assert gc.get_freeze_count() == count, "the process's frozen objects stay frozen"
        assert made and frozen
    finally:
        gc.unfreeze()


def test_a_cycle_made_while_paused_is_collected_by_a_full_collection(collecting):
    class Node:
        pass

    with collector_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("first, second", [
    (nc.tree(30), nc.tree(30, bond=3)),  # one network at other sizes: other patterns
    (nc.chain(150, 3), nc.chain(150, 4)),
    (nc.tree(62), nc.mps_norm(47, 3)),  # tables both (past TABLE_STEPS steps)
])
def test_two_networks_compiled_in_one_process_each_get_their_own_plan(first, second):
    """Each network's forward and vjp, compiled right after the other's in the same process,
    against opt_einsum's contraction (an independent oracle): the gradients by the adjoint
    identity <g, J d> = <J^T g, d>, exact here because the network is linear in each operand."""
    for network, other in ((first, second), (second, first)):
        einsgrad.Einsum(other.spec, optimize="greedy").source(*other.shapes)
        operands = network.operands()
        e = einsgrad.Einsum(network.spec, optimize="greedy")
        y = e(*operands)
        expected = opt_einsum.contract(network.spec, *operands)
        np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
        g = np.random.default_rng(2).standard_normal(np.shape(y))
        grads = e.vjp(g, *operands)
        for k in (0, len(operands) // 2, len(operands) - 1):
            # <dY, G> for a step in operand k's direction: the directional derivative
            d = np.random.default_rng(k).standard_normal(operands[k].shape)
            moved = [*operands]
            moved[k] = operands[k] + d
            along = opt_einsum.contract(network.spec, *moved) - expected  # linear in each operand
            np.testing.assert_allclose(np.vdot(grads[k], d), np.vdot(g, along), rtol=1e-8, atol=1e-10)


def _mixed_chain(n: int) -> nc.Network:
    """A chain whose bonds alternate between sizes 3 and 4 at every position but one: steps
    whose labels sit in the same places, of other sizes (one pattern key must not serve both)."""
    base = nc.chain(n, 3)
    sizes = tuple((label, 3 + (i % 2 and i != n // 2)) for i, (label, _) in enumerate(base.sizes))
    return nc.Network(base.family, f"mixed {base.name}", base.terms, base.output, sizes)


@pytest.mark.parametrize("network", [_mixed_chain(40), nc.tree(40, bond=3), nc.grid(3, 4)], ids=lambda n: n.name)
def test_replayed_steps_are_the_steps_lowered_afresh_when_sizes_differ_by_position(network):
    """Every step of the sweep, replayed or not, equals lowering it afresh (the pattern key
    holds the labels' sizes, and the pickers a pattern relabels by are made for its key)."""
    bound = bind(parse(network.spec), network.shapes, {})
    path = plan.forward_path(bound, "greedy")
    every = tuple(range(len(network.shapes)))
    replayed = plan.sweep(bound, path, every)
    with lowered_afresh():
        fresh = plan.sweep(bound, path, every)
    assert replayed.steps == fresh.steps
    assert [s.target for s in replayed.steps] == [s.target for s in fresh.steps]
    assert [s.shape for s in replayed.steps] == [s.shape for s in fresh.steps]
