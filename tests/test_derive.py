"""The three phenomena the backward rule produces, named by einsgrad.derive (hand-derived)."""

from __future__ import annotations

import pytest

from einsgrad import derive
from einsgrad.spec import parse


@pytest.mark.parametrize("spec, wrt, deltas, broadcast, summed", [
    pytest.param("ik,jk->ij", 1, (), (), ("i",), id="linear-dW: sum over the batch i"),
    pytest.param("ii->i", 0, ("i",), (), (), id="diagonal: a delta survives"),
    pytest.param("ii->", 0, ("i",), ("i",), (), id="trace: g broadcast onto the diagonal"),
    pytest.param("ij->i", 0, (), ("j",), (), id="row sum: broadcast along j"),
    pytest.param("j->ij", 0, (), (), ("i",), id="bias: db sums G over i"),
    pytest.param("iij,jk->ik", 0, ("i",), (), ("k",), id="diagonal times matrix"),
    pytest.param("i,j->", 0, (), ("i",), (), id="summed alone: broadcast"),
])
def test_phenomena(spec, wrt, deltas, broadcast, summed):
    """Repeated labels leave deltas, lone labels broadcast, missing output labels sum G."""
    parsed = parse(spec, {"i": 3} if spec == "j->ij" else None)
    assert derive.surviving_deltas(parsed, wrt) == deltas
    assert derive.broadcast_labels(parsed, wrt) == broadcast
    assert derive.summed_cotangent_labels(parsed, wrt) == summed
