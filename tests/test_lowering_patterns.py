"""Pairwise steps lowered by pattern (einsgrad.lowering.Pattern): a step whose operands, copies
and output have the labels and sizes of an earlier step's up to their names is that step
replayed, relabelled. Every plan and every generated source must be what lowering each step
afresh gives (``Lowering.fresh_binary`` in place of ``Lowering.binary``), in every dialect, on
tensor networks (where patterns repeat by the hundred) and on hypothesis-generated specs.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings

import einsgrad
from benchmarks import network_cases as nc
from einsgrad import plan
from einsgrad.lowering import Lowering
from einsgrad.shapes import bind
from einsgrad.spec import parse
from strategies import einsum_cases
from test_tables import every_plan_a_table

BACKENDS = ("numpy", "torch", "jax", "dask")
NETWORKS = [nc.chain(60, 3), nc.mps_norm(12, 3), nc.tree(30), nc.circuit(5, 12), nc.grid(4, 5),
            nc.random_regular(16)]


@contextlib.contextmanager
def lowered_afresh():
    """Within the block, every pairwise step is lowered afresh (no pattern replayed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Lowering, "binary", Lowering.fresh_binary)
        yield




def sources(spec: str, shapes, sizes=None) -> dict[str, str]:
    e = einsgrad.Einsum(spec, optimize="greedy", sizes=sizes)
    return {backend: e.source(*shapes, backend=backend) for backend in BACKENDS}


def plans(spec: str, shapes) -> tuple:
    bound = bind(parse(spec), tuple(shapes), {})
    path = plan.forward_path(bound, "greedy")
    every = tuple(range(len(shapes)))
    return (plan.sweep(bound, path, every), plan.jvp_plan(bound, every[:3], path, value=True),
            plan.vjp_plan(bound, (0,), plan.sweep(bound, path, (0,)), "greedy"))


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name)
def test_replayed_patterns_lower_every_network_as_afresh(network):
    """The sweep, the jvp and a one-operand vjp, step for step (operations, layouts, labels,
    names), and the generated source of the four functions in every dialect."""
    calls = {"binary": 0, "fresh_binary": 0}

    def counted(name):
        method = getattr(Lowering, name)

        def call(self, *args):
            calls[name] += 1
            return method(self, *args)
        return call

    with pytest.MonkeyPatch.context() as patch:
        for name in calls:
            patch.setattr(Lowering, name, counted(name))
        replayed = plans(network.spec, network.shapes)
    assert calls["fresh_binary"] < calls["binary"], "some pairwise steps are replayed"
    replayed_sources = sources(network.spec, network.shapes)
    with every_plan_a_table():
        replayed_tables = sources(network.spec, network.shapes)
    with lowered_afresh():
        fresh, fresh_sources = plans(network.spec, network.shapes), sources(network.spec, network.shapes)
        with every_plan_a_table():
            fresh_tables = sources(network.spec, network.shapes)
    for got, expected in zip(replayed, fresh):
        steps = got.steps
        assert steps == expected.steps
        assert [s.target for s in steps] == [s.target for s in expected.steps]
    for backend in BACKENDS:
        assert replayed_sources[backend] == fresh_sources[backend], backend
        assert "json.loads" in replayed_tables[backend]
        assert replayed_tables[backend] == fresh_tables[backend], backend


@settings(deadline=None, max_examples=40)
@given(einsum_cases(max_operands=6, max_labels=5, mixed=False))
def test_replayed_patterns_generate_the_sources_of_lowering_afresh(case):
    """Small specs of repeated operands (patterns within one plan), as straight-line code and
    as step tables (whose kernels steps of one pattern share)."""
    shapes = case.shapes
    replayed = sources(case.spec, shapes)
    with every_plan_a_table():
        replayed_tables = sources(case.spec, shapes)
    with lowered_afresh():
        fresh = sources(case.spec, shapes)
        with every_plan_a_table():
            fresh_tables = sources(case.spec, shapes)
    assert replayed == fresh
    assert replayed_tables == fresh_tables
