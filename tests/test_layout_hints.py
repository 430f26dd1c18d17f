"""Where a layout copy goes, by cost (einsgrad.layout_hints, einsgrad.lowering.Lowering.weighed).

A step of a large network is lowered with its reader's hint only where that costs less than
lowering it without: the copies each way makes, and the copy its reader must then make, are
weighed by an estimate of numpy's transposing copy. The estimate is checked here against the
order that measurements gave (a kept innermost run copies at about memcpy speed, short runs
scattered over many axes several times slower), each weighed step against both lowerings
made afresh, and the gradients of networks whose layouts this changes against torch autograd.
"""

from __future__ import annotations

import math

import numpy as np
import opt_einsum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from benchmarks import network_cases as nc
from einsgrad.layout_hints import WEIGHED, Hint, arranged, copy_cost, reading_cost
from einsgrad.lowering import Lowering
from einsgrad.steps import Copy, Multiply
from oracles import torch_vjp

SHAPE = (2,) * 21  # the 3-regular graph of 100's largest values: 2**21 elements


def test_a_copy_that_keeps_a_long_run_is_estimated_near_a_plain_copy():
    """Moving outer axes while the last ten stay in place moves runs of 1024 elements."""
    plain = copy_cost(SHAPE, tuple(range(21)))
    kept = copy_cost(SHAPE, (3, 7, 1, 9, 0, 2, 10, 4, 8, 6, 5) + tuple(range(11, 21)))
    assert plain <= kept < 1.5 * plain


def test_short_runs_scattered_over_many_axes_are_estimated_slowest():
    """Runs of two elements over twenty axes (measured 9-25 ms for 16 MiB) against the same
    runs over three axes (2.5-5 ms) and against a kept run of 64 (0.8-1.4 ms)."""
    rng = np.random.default_rng(0)
    scattered = tuple(int(a) for a in rng.permutation(20)) + (20,)
    few = tuple(range(1, 20)) + (0, 20)
    run64 = tuple(int(a) for a in rng.permutation(15)) + tuple(range(15, 21))
    assert copy_cost(SHAPE, scattered) > 2 * copy_cost(SHAPE, few) > 2 * copy_cost(SHAPE, run64)


def test_a_strided_stream_is_estimated_cheaper_than_a_scattered_short_run():
    """Moving the innermost axis to the front reads one long block at stride 2 (measured
    1.1-1.3 ms); moving the outermost axis next to the innermost leaves runs of 2 (2.3-3 ms)."""
    assert copy_cost(SHAPE, (20,) + tuple(range(20))) < copy_cost(SHAPE, tuple(range(1, 20)) + (0, 20))


def test_size_one_axes_do_not_change_the_estimate():
    shape = (2, 1, 2, 2, 1, 2)
    squeezed = copy_cost((2, 2, 2, 2), (1, 0, 3, 2))
    assert copy_cost(shape, (2, 1, 0, 5, 4, 3)) == pytest.approx(squeezed)
    assert copy_cost((4, 1), (1, 0)) == pytest.approx(copy_cost((4,), (0,)))


def test_reading_costs_nothing_where_the_summed_labels_are_a_block_at_an_end():
    """Else the cheapest copy that makes them one: first or last, in the hint's order or as
    stored (where the reader copies its other operand to match)."""
    size = dict.fromkeys("abcdefgh", 4)
    hint = Hint(tuple("cb"))
    assert reading_cost(tuple("bcadefgh"), hint, size) == 0
    assert reading_cost(tuple("adefghcb"), hint, size) == 0
    rest = (0, 1, 4, 5, 6, 7)  # adbcefgh: b is at 2, c at 3
    expected = min(copy_cost((4,) * 8, perm) for block in ((3, 2), (2, 3)) for perm in (rest + block, block + rest))
    assert expected > 0
    assert reading_cost(tuple("adbcefgh"), hint, size) == pytest.approx(expected)


def test_a_partial_arrangement_groups_the_last_block_by_what_the_reader_sums():
    """The other operand's free labels are both summed by the reader (p) and not (q), so no
    order of ours puts the summed labels in one block at an end. Partially arranged, our free
    labels (the result's last block) are grouped, each group in stored order, the group of our
    innermost free label last: the reader's copy then keeps that group as one run."""
    free, theirs = {"d", "e", "f"}, {"p", "q"}
    hint = Hint(("p", "f"))
    assert arranged(tuple("dfeabc"), free, theirs, False, hint) == tuple("dfeabc")  # no full arrangement
    assert arranged(tuple("dfeabc"), free, theirs, False, hint, partial=True) == tuple("fdeabc")
    assert arranged(tuple("efdabc"), free, theirs, False, Hint(("p", "e", "d")), partial=True) == tuple("fedabc")
    assert arranged(tuple("dfeabc"), free, theirs, True, hint, partial=True) == tuple("dfeabc")  # not the last block


def _copies_cost(low: Lowering, start: int) -> float:
    """The estimated cost of the transposed copies (and a product's transposed reads) of the
    steps from ``start``, from each step's own input labels."""
    total = 0.0
    for step in low.steps[start:]:
        op = step.operation
        if isinstance(op, Copy):
            total += copy_cost(tuple(low.size[l] for l in step.inputs[0]), op.perm)
        elif isinstance(op, Multiply):
            total += sum(copy_cost(tuple(low.size[l] for l in labels), layout.perm)
                         for labels, layout in zip(step.inputs, (op.a, op.b)) if layout.perm is not None)
    return total


@st.composite
def large_steps(draw):
    """A pairwise step of size-2 labels whose result holds 2**16 elements or more (a batch
    label at most, two to four contracted), and a hint: one to four of its labels, which a
    reader would contract."""
    labels = draw(st.permutations([chr(ord("a") + i) for i in range(draw(st.integers(20, 22)))]))
    cut, k, batch = draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.integers(0, 1))
    contracted, small, big = labels[:cut], labels[cut:cut + k], labels[cut + k:]
    shared, big = big[:batch], big[batch:]
    a = tuple(draw(st.permutations(big + contracted + shared)))
    b = tuple(draw(st.permutations(small + contracted + shared)))
    out = tuple(l for l in dict.fromkeys(a + b) if l not in contracted)
    summed = draw(st.lists(st.sampled_from(out), min_size=1, max_size=4, unique=True))
    return a, b, out, Hint(tuple(summed))


@given(large_steps())
@settings(max_examples=60, deadline=None)
def test_a_weighed_step_is_the_cheaper_of_its_two_lowerings(case):
    """Lowered by ``binary`` with a hint, a large step's copies and its reader's copy cost no
    more than either lowering made afresh, with the hint or without; it is one of them."""
    a, b, out, hint = case
    size = dict.fromkeys(set(a) | set(b), 2)
    made = []
    for choice, lower in ((hint, "binary"), (hint, "fresh_binary"), (None, "fresh_binary")):
        low = Lowering(size)
        low.argument("x0", a)
        low.argument("x1", b)
        name = getattr(low, lower)("t", "x0", "x1", out, False, choice)
        made.append((_copies_cost(low, 0) + reading_cost(low.labels[name], hint, size),
                     [(s.spec, s.operation) for s in low.steps]))
    (chosen, steps), (hinted, with_hint), (plain, without) = made
    assert chosen <= min(hinted, plain) + 1e-9
    assert steps in (with_hint, without)


def test_a_large_copy_keeps_its_long_block_contiguous():
    """A 2**18-element operand stored (o, 16 free labels, c) whose contracted labels o and c
    sit at both ends is copied with o, c first (one block of the free labels read at stride
    2) rather than last (runs of c alone, the order it was copied in before): the cheaper
    block order by far; the value is right."""
    free = "abdefghijklmnpqr"
    spec = f"o{free}c,socu->{free}su"
    low = Lowering(dict.fromkeys(spec.replace(",", "").replace("->", ""), 2))
    low.argument("x0", tuple(f"o{free}c"))
    low.argument("x1", tuple("socu"))
    low.binary("t", "x0", "x1", tuple(f"{free}su"), False)
    (copy,) = [s for s in low.steps if isinstance(s.operation, Copy) and s.args == ("x0",)]
    stored = f"o{free}c"
    cost = {order: copy_cost((2,) * 18, tuple(stored.index(l) for l in order)) for order in ("oc" + free, free + "oc")}
    assert "".join(copy.labels) == "oc" + free
    assert cost["oc" + free] < cost[free + "oc"] / 2
    rng = np.random.default_rng(3)
    x0, x1 = rng.standard_normal((2,) * 18), rng.standard_normal((2,) * 4)
    np.testing.assert_allclose(einsgrad.einsum(spec, x0, x1), np.einsum(spec, x0, x1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("network", [nc.random_regular(30, bond=4), nc.random_regular(26, bond=5)],
                         ids=lambda n: n.name)
def test_weighed_layouts_give_torchs_gradients(network):
    """Networks with values of 2**16 elements and more, whose layouts the weighing changes,
    against torch autograd of torch.einsum: vjp and pullback."""
    pytest.importorskip("torch")
    ops = network.operands()
    assert max(math.prod(s) for s in network.shapes) < WEIGHED  # the large values are intermediates
    e = einsgrad.Einsum(network.spec, optimize="greedy")
    y = e(*ops)
    G = np.random.default_rng(5).standard_normal(np.shape(y))
    expected = torch_vjp(network.spec, ops, G)
    assert expected is not None
    np.testing.assert_allclose(y, opt_einsum.contract(network.spec, *ops, optimize="greedy"), rtol=1e-10)
    _, pullback = e.value_and_pullback(*ops)
    for k, (g, p, t) in enumerate(zip(e.vjp(G, *ops), pullback(G), expected)):
        np.testing.assert_allclose(g, t, rtol=1e-9, atol=1e-12, err_msg=f"vjp, operand {k}")
        np.testing.assert_allclose(p, t, rtol=1e-9, atol=1e-12, err_msg=f"pullback, operand {k}")
