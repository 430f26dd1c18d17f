"""benchmarks.network_trees: greedy's tree against cotengra's, on the networks it names."""

import json

import numpy as np
import pytest

pytest.importorskip("cotengra")

from benchmarks import network_cases, network_trees  # noqa: E402


def test_quick_cli_reports_both_trees_of_every_network(tmp_path, capsys):
    assert network_trees.main(["--quick", "--json", str(tmp_path / "trees.json")]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "trees.json").read_text())
    names = [n.name for n in network_trees.networks(quick=True)]
    assert [r["name"] for r in doc["rows"]] == names
    for row, network in zip(doc["rows"], network_trees.networks(quick=True)):
        assert row["name"] in out
        for tree in (row["greedy"], row["cotengra"]):
            assert tree["vjp"] > 0 and tree["search"] > 0
            # the one-shot vjp's FLOPs hold the forward's and the pullback's (twice the forward's)
            assert 2 * tree["forward_flops"] < tree["all_flops"] <= 3 * tree["forward_flops"]
            # the largest intermediate fits the network: at most the product of all its sizes
            assert 1 <= tree["largest"] <= np.prod([s for _, s in network.sizes], dtype=float)
        assert row["speedup"] == pytest.approx(row["greedy"]["vjp"] / row["cotengra"]["vjp"])


def test_trees_whose_gradients_differ_are_refused(monkeypatch):
    real = network_trees.compiled

    def lying(network, optimize, operands, cotangent):
        e, tree, grads = real(network, optimize, operands, cotangent)
        if optimize != "greedy":
            grads = [g * 1.5 for g in grads]
        return e, tree, grads

    monkeypatch.setattr(network_trees, "compiled", lying)
    with pytest.raises(AssertionError, match="gradient differs between trees"):
        network_trees.measure(network_cases.random_regular(10), repeats=2, rounds=1)
