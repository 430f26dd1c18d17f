"""The benchmark runner's structure on a tiny suite (no timings are asserted)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import einsgrad

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import report, runner  # noqa: E402
from benchmarks.cases import Case, suite  # noqa: E402
from benchmarks.limits import Peaks  # noqa: E402
from benchmarks.systems import SYSTEMS, Kernels, Problem, System, numpy_gradients  # noqa: E402

PEAKS = Peaks({"float64": 1e10, "float32": 2e10}, 1e10, (1e9, 1e8), 64, 1 << 20)
CASES = [Case("small linear", "ik,jk->ij", ((3, 4), (5, 4))),
         Case("small diag", "ii,i->i", ((4, 4), (4,))),
         Case("tiny overhead", "ab,bc->ac", ((2, 2), (2, 2)), overhead=True)]


def _raises(problem):
    raise RuntimeError("boom")


def _wrong(problem):
    right = numpy_gradients(problem)
    return Kernels(right.forward, lambda: [2 * g for g in right.oneshot()])


FAKES = [System("ghost", _raises, requires=("no_such_module_for_einsgrad_tests",)),
         System("boom", _raises), System("liar", _wrong)]
BUILTIN = [s for s in SYSTEMS if s.name in ("einsgrad", "numpy", "numpy-opt", "opt_einsum")]


@pytest.fixture(scope="module")
def results():
    return runner.run(CASES, ["float64", "float32"], BUILTIN + FAKES, PEAKS,
                      runner.Settings(repeats=2, round_seconds=0.001, max_load=1.0))


def test_every_row_has_every_installed_system_and_mode(results):
    assert len(results.rows) == len(CASES) * 2
    for row in results.rows:
        assert set(row.cells) == {"einsgrad", "numpy", "numpy-opt", "opt_einsum", "boom", "liar"}
        assert all(set(modes) == set(runner.MODES) for modes in row.cells.values())
        einsgrad = row.cells["einsgrad"]["oneshot"]
        assert einsgrad.status == "ok" and einsgrad.seconds > 0
        assert row.cells["numpy"]["pullback"].status == "n/a"
        assert (row.limit is None) == row.case.overhead
        assert len(row.loads) == 1 and row.load == row.loads[0]


def test_a_missing_system_is_skipped(results):
    assert results.skipped == {"ghost": "not installed"}
    assert "ghost (not installed)" in report.table(results)


def test_a_raising_system_shows_its_error_and_the_run_goes_on(results):
    for row in results.rows:
        assert {c.status for c in row.cells["boom"].values()} == {"error"}
        assert "RuntimeError: boom" in row.cells["boom"]["forward"].note
    assert "ERROR" in report.table(results)


def test_wrong_gradients_are_flagged_and_not_timed(results):
    for row in results.rows:
        liar = row.cells["liar"]
        assert liar["oneshot"].status == "wrong" and liar["oneshot"].seconds is None
        assert liar["forward"].status == "ok" and liar["forward"].seconds > 0


def test_json_has_the_machine_versions_peaks_and_cells(results, tmp_path):
    path = tmp_path / "results.json"
    report.write_json(str(path), results, {"cpu": "test"}, {"numpy": np.__version__})
    doc = json.loads(path.read_text())
    assert {"machine", "versions", "peaks", "settings", "systems", "skipped", "rows"} <= set(doc)
    assert doc["settings"]["repeats"] == 2
    assert doc["peaks"]["gemm_flops_per_s"] == {"float64": 1e10, "float32": 2e10}
    row = doc["rows"][0]
    assert {"case", "spec", "shapes", "dtype", "load", "loads", "modes"} <= set(row)
    mode = row["modes"]["oneshot"]
    assert {"flops", "bytes", "limit_seconds", "bound", "cells"} <= set(mode)
    assert set(mode["cells"]["einsgrad"]) == {"status", "seconds", "note", "vs_einsgrad", "vs_limit"}
    assert mode["cells"]["einsgrad"]["vs_einsgrad"] == 1.0


def test_machine_description_names_the_tuning_variables():
    from benchmarks.limits import machine

    described = machine()
    assert {"cpu", "cores", "blas", "env"} <= set(described)
    assert "OMP_WAIT_POLICY" in described["env"] and "OPENBLAS_CORETYPE" in described["env"]


def test_traffic_reads_diagonals_and_writes_dense_gradients():
    from benchmarks.limits import traffic

    assert traffic("ii->", [(4, 4)], (), 8) == (8 * (4 + 1), 8 * (1 + 16))
    assert traffic("ij,jk->ik", [(2, 3), (3, 4)], (2, 4), 4) == (4 * (6 + 12 + 8), 4 * (8 + 18 + 18))


def test_a_loaded_row_is_run_again():
    settings = runner.Settings(repeats=1, round_seconds=0.0, max_load=-1.0)
    row = runner.run(CASES[:1], ["float64"], BUILTIN[:1], PEAKS, settings).rows[0]
    if row.load is not None:  # /proc/stat is there
        assert len(row.loads) == 3 and row.load == min(row.loads)


def test_plot_is_written(results, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    report.plot(str(path), results)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("spec, shapes", [
    ("ii->", [(4, 4)]), ("ij->i", [(3, 4)]), ("ii,i->i", [(3, 3), (3,)]), ("iij,j->i", [(3, 3, 2), (2,)]),
    ("...ij,...jk->...ik", [(3, 1, 2, 4), (1, 2, 4, 5)]), ("...ij,jk->...ik", [(2, 3, 4), (4, 5)]),
])
def test_reference_gradients_match_einsgrad_in_the_extended_notation(spec, shapes):
    rng = np.random.default_rng(0)
    ops = tuple(rng.standard_normal(s) for s in shapes)
    g = np.asarray(rng.standard_normal(np.einsum(spec, *ops).shape))
    for optimize in (False, True):
        got = numpy_gradients(Problem(spec, ops, g), optimize).oneshot()
        for mine, theirs in zip(got, einsgrad.compile(spec).vjp(g, *ops)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_suite_has_every_case_in_both_sizes():
    full, quick = suite(), suite(quick=True)
    assert [c.spec for c in full] == [c.spec for c in quick] and len(full) == 16
    assert sum(c.overhead for c in full) == 2


def test_quick_cli_on_one_tiny_case(tmp_path, capsys):
    path = tmp_path / "cli.json"
    assert cli.main(["--quick", "--cases", "tiny linear", "--dtypes", "float64",
                     "--systems", "numpy-opt,opt_einsum", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tiny linear" in out and "opt_einsum" in out
    doc = json.loads(path.read_text())
    assert [r["case"] for r in doc["rows"]] == ["tiny linear"]
    assert set(doc["rows"][0]["modes"]["forward"]["cells"]) == {"einsgrad", "numpy-opt", "opt_einsum"}


def _row(case, spec, cells, limit=0.010, bound="flops", flops=(100, 250, 200), overhead=False):
    """A results-document row whose three modes share ``limit``; ``cells`` maps a system to
    its (forward, oneshot, pullback) seconds."""
    modes = {}
    for i, mode in enumerate(("forward", "oneshot", "pullback")):
        modes[mode] = {"flops": flops[i], "bytes": 0, "limit_seconds": limit, "bound": bound,
                       "cells": {n: {"status": "ok", "seconds": t[i]} for n, t in cells.items()}}
    return {"case": case, "spec": spec, "dtype": "float64", "overhead": overhead, "modes": modes}


def test_targets_are_judged_from_one_runs_figures():
    from benchmarks import targets

    doc = {"rows": [
        # one-shot 0.030 s against a peer's 0.020 s: 1.5x the peer, 3x the limit: missed.
        _row("chain", "ab,bc->ac", {"einsgrad": (0.010, 0.030, 0.021), "jax": (0.1, 0.020, 0.1),
                                   "opt_einsum": (0.1, 0.090, 0.1)}),
        # slower than a peer, but within 1.1x of the limit: met by the alternative.
        _row("matmul", "ab,bc->ac", {"einsgrad": (0.006, 0.0105, 0.011), "jax": (0.1, 0.010, 0.1)}),
        _row("tiny linear", "ik,jk->ij", {"einsgrad": (1e-6, 8e-6, 7e-6), "jax": (1, 2e-5, 1),
                                          "torch": (1, 5e-6, 1)}, limit=None, overhead=True),
    ]}
    found = {(v.target, v.where): v for v in targets.verdicts(doc)}
    chain = found[("one-shot x fastest (or x limit)", "chain float64")]
    assert chain.value == pytest.approx(1.5) and chain.met is False
    assert found[("pullback x own forward", "chain float64")].met is True          # 2.1x
    flop_ratio = found[("one-shot/forward over FLOP ratio", "chain float64")]
    assert flop_ratio.value == pytest.approx(3.0 / 2.5) and flop_ratio.met is False
    lead = found[("lead over per-operand", "chain float64")]
    assert lead.value == pytest.approx(3.0) and lead.met is True
    assert found[("one-shot x fastest (or x limit)", "matmul float64")].met is True
    assert found[("3x3 vjp, microseconds", "tiny linear float64")].value == pytest.approx(8.0)
    assert found[("3x3 vjp x jax", "tiny linear float64")].met is True
    assert found[("3x3 vjp x torch", "tiny linear float64")].met is False
    text = targets.report(doc)
    assert "MISSED" in text and text.splitlines()[0] == f"# targets: {sum(v.met is True for v in found.values())} of {len(found)} met"


# -- the training-step benchmark (benchmarks/training.py) --------------------------------

def _variants(einsgrad_variant, own_variant):
    return lambda model, quick, dtype: {"einsgrad": einsgrad_variant, "own": own_variant}


def _fine(value=1.0):
    return lambda: ([np.array([value, 2.0])], lambda: None)


def _refusing():
    raise einsgrad.EinsumSpecError("no such dtype here")


def _crashing():
    raise RuntimeError("boom")


@pytest.mark.parametrize("mine, status, shown, note", [
    (_refusing, "refused", "refused", "EinsumSpecError: no such dtype here"),
    (_crashing, "error", "ERROR", "RuntimeError: boom"),
    (_fine(1.5), "wrong", "WRONG", "first step off by 0.25"),
])
def test_a_training_pair_that_fails_is_reported_and_the_other_side_still_timed(monkeypatch, mine, status, shown,
                                                                               note):
    from benchmarks import training

    monkeypatch.setitem(training.VARIANTS, "fake", _variants(mine, _fine()))
    monkeypatch.setitem(training.OWN, "fake", "fake.einsum")
    result = training.pair(training.MODELS[0], "fake", "float32", quick=True, repeats=2)
    assert result.einsgrad.status == status and result.einsgrad.seconds is None
    assert result.einsgrad.note.startswith(note)
    assert result.own.status == "ok" and result.own.seconds > 0 and result.ratio is None
    assert (result.check is None) == (status != "wrong")
    text = training.table([result], {}, {}, repeats=2, quick=True)
    assert f"einsgrad.fake {shown}: {result.einsgrad.note} [mlp float32]" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("mlp "))
    assert row[:2] == ["mlp", "float32"] and shown in row
    assert "step x fake.einsum: 0 of 1 met; missed: mlp fake float32" in text


def test_a_framework_that_cannot_start_fails_both_cells(monkeypatch):
    from benchmarks import training

    def missing(model, quick, dtype):
        raise ImportError("No module named 'fakeframework'")

    monkeypatch.setitem(training.VARIANTS, "fake", missing)
    result = training.pair(training.MODELS[0], "fake", "float32", quick=True, repeats=2)
    assert result.einsgrad == result.own and result.own.status == "error"
    assert "ImportError: No module named 'fakeframework'" in result.own.note


def test_a_matching_training_pair_is_timed_with_its_ratio(monkeypatch):
    from benchmarks import training

    monkeypatch.setitem(training.VARIANTS, "fake", _variants(_fine(), _fine()))
    monkeypatch.setitem(training.OWN, "fake", "fake.einsum")
    result = training.pair(training.MODELS[0], "fake", "float64", quick=True, repeats=2)
    assert result.check == 0.0 and result.ratio == result.einsgrad.seconds / result.own.seconds


def test_storage_accounting_counts_what_ops_make_and_keep_once():
    torch = pytest.importorskip("torch")
    from benchmarks.training_memory import _Storages

    before = torch.ones(1000)
    storages = _Storages()
    with storages:
        kept = torch.zeros(256, dtype=torch.float64)        # 2048 bytes, kept
        views = [kept[::2], kept.view(16, 16), before[:10]]  # no new storage
        dropped = torch.ones(4096)
        del dropped
        kept.add_(1.0)                                       # in place: nothing new
    assert storages.held() == 2048
    assert storages.held(excluding={kept.untyped_storage().data_ptr()}) == 0
    del kept, views
    assert storages.held() == 0


@pytest.mark.parametrize("module", ["benchmarks.training", "benchmarks.networks"])
def test_timing_commands_reexecute_under_the_malloc_settings(monkeypatch, module):
    """The command line re-executes itself with glibc's malloc settings (read at process start)
    unless they are set already or --default-malloc keeps the defaults."""
    from benchmarks import malloc

    calls = []
    monkeypatch.setattr(malloc.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    for name in malloc.MALLOC:
        monkeypatch.delenv(name, raising=False)
    malloc.reexecute_under(module, ["--quick"])
    malloc.reexecute_under(module, ["--default-malloc"])
    (argv, env), = calls
    assert argv[1:] == ["-m", module, "--quick"]
    assert all(env[name] == value for name, value in malloc.MALLOC.items())
    assert malloc.settings_text() == "glibc's defaults"
    for name, value in malloc.MALLOC.items():
        monkeypatch.setenv(name, value)
    malloc.reexecute_under(module, ["--quick"])
    assert len(calls) == 1
    assert malloc.settings_text() == " ".join(f"{k}={v}" for k, v in malloc.MALLOC.items())
    source = open(os.path.join(os.path.dirname(malloc.__file__), module.split(".")[1] + ".py")).read()
    assert f'malloc.reexecute_under("{module}", sys.argv[1:])' in source  # what its __main__ runs


def test_training_quick_cli_writes_its_table_and_json(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import training, training_memory

    assert training.main(["--quick", "--models", "attention,grouped", "--dtypes", "float32,bfloat16",
                          "--out", str(tmp_path)]) == 0
    text = (tmp_path / "training.txt").read_text()
    assert capsys.readouterr().out == text
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("model "))
    assert head.split() == ["model", "dtype", "torch.einsum", "einsgrad.torch", "ratio", "A/A", "check",
                            "jnp.einsum", "einsgrad.jax", "ratio", "A/A", "check", "load"]
    rows = [line.split()[:2] for line in lines[lines.index(head) + 1:] if line.split()[:1] in (["attention"], ["grouped"])]
    assert rows == [[m, d] for m in ("attention", "grouped") for d in ("float32", "bfloat16")]
    for measure in training_memory.MEASURES:
        assert any(line.startswith(measure + " ") for line in lines)
    assert any(line.startswith("# torch.compile(dynamic=True) graphs") for line in lines)
    assert any(line.startswith("# targets: ") for line in lines)

    doc = json.loads((tmp_path / "training.json").read_text())
    assert {"machine", "versions", "settings", "models", "steps", "memory_bytes", "graphs", "targets"} <= set(doc)
    assert len(doc["steps"]) == 8 and doc["settings"]["quick"] is True
    for step in doc["steps"]:
        assert step["again"]["status"] == step["own"]["status"]  # the same step, built twice
        assert (step["spread"] is not None) == (step["own"]["status"] == "ok")
        for side in ("einsgrad", "own", "again"):
            cell = step[side]
            assert (cell["status"] == "ok") == (cell["seconds"] is not None and cell["seconds"] > 0)
            assert cell["status"] == "ok" or cell["note"]
        if step["dtype"] == "float32":
            assert step["own"]["status"] == "ok"
        if step["check"] is not None and step["einsgrad"]["status"] != "wrong":
            assert step["check"] <= training.TOLERANCE[step["dtype"]]
    assert set(doc["memory_bytes"]) == set(doc["graphs"]) == {"einsgrad.torch", "torch.einsum"}
    torch_figures = doc["memory_bytes"]["torch.einsum"]
    assert set(torch_figures) == set(training_memory.MEASURES)
    # the output and the four weight gradients (float32) are held after backward, at least
    sizes = doc["models"]["attention"]["sizes"]
    least = 4 * sizes["B"] * sizes["S"] * sizes["d"] + 4 * 4 * sizes["d"] ** 2
    assert torch_figures["after backward, output kept"] >= least
    assert doc["graphs"]["torch.einsum"]["graphs"] >= 1
    assert len(doc["graphs"]["torch.einsum"]["lengths"]) == len(training_memory.QUICK_LENGTHS)


# -- the tensor-network benchmark (benchmarks/networks.py) --------------------------------


def test_networks_quick_cli_reports_every_network_checked_and_timed(tmp_path, capsys):
    from benchmarks import network_cases, networks

    assert networks.main(["--quick", "--json", str(tmp_path / "networks.json")]) == 0
    text = capsys.readouterr().out
    quick = network_cases.suite(quick=True)
    for network in quick:
        assert any(line.startswith(network.name + " ") for line in text.splitlines()), network.name
    assert "# not measured yet" not in text and networks.LATER == {}
    header = next(line for line in text.splitlines() if line.startswith("network "))
    assert all(column in header for column, _ in networks.PEAK_COLUMNS)
    doc = json.loads((tmp_path / "networks.json").read_text())
    assert [row["name"] for row in doc["rows"]] == [n.name for n in quick]
    assert {row["family"] for row in doc["rows"]} == {"chain", "mps", "grid", "regular", "tree", "circuit"}
    for row, network in zip(doc["rows"], quick):
        assert row["note"] == "" and row["tensors"] == len(network.terms)
        assert row["check"] <= 1e-8
        for figure in ("path", "compile", "forward", "vjp", "pullback"):
            assert row[figure] is not None and row[figure] >= 0, (row["name"], figure)
        assert row["ratio"] == (row["compile"] / row["path"] if row["compile"] else None)
        peaks = {k: v for k, v in row["extra"].items() if k.startswith("peak ")}
        assert set(peaks) == {"peak forward", "peak vjp", "peak torch forward", "peak torch vjp"}, row["name"]
        assert all(isinstance(v, float) and v >= 0 for v in peaks.values()), (row["name"], peaks)


def test_networks_wrong_gradients_are_flagged_and_not_timed(monkeypatch):
    from benchmarks import network_cases, networks

    class Liar:
        def __init__(self, e):
            self.e = e

        def __call__(self, *xs):
            return self.e(*xs)

        def vjp(self, g, *xs):
            return [2 * d for d in self.e.vjp(g, *xs)]

        def value_and_pullback(self, *xs):
            return self.e.value_and_pullback(*xs)

    real = networks.einsum_of
    monkeypatch.setattr(networks, "einsum_of", lambda network, optimize: Liar(real(network, optimize)))
    row = networks.measure(network_cases.chain(5, 3), rounds=1, repeats=1)
    assert row.note.startswith("WRONG") and row.compile is None and row.forward is None


def test_networks_peer_columns_time_jax_and_torch_on_the_path_checked(monkeypatch):
    """peer_vjps: jax and torch autograd timed beside einsgrad's vjp where their gradients
    match; a peer whose gradients differ is named in the note and not timed."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import network_cases, networks

    network = network_cases.mps_norm(4, 3)
    row = networks.measure(network, rounds=1, repeats=1)
    timings = {k: v for k, v in row.extra.items() if "vjp" in k and not k.startswith("peak")}
    assert set(timings) == {"vjp with peers", "jax vjp", "torch vjp"} and row.note == ""
    assert all(seconds > 0 for seconds in timings.values())
    line = next(l for l in networks.table([row], "greedy").splitlines() if l.startswith(network.name))
    assert line.count("x") >= 4  # ratio, vjp/fwd, pb/fwd, and both peers' ratios

    real = networks._torch_vjp

    def wrong(*args):
        run, grads = real(*args)
        return run, [2 * g for g in grads]

    monkeypatch.setattr(networks, "_torch_vjp", wrong)
    timed = networks.Measured(network.family, network.name, network.tensors, forward=1.0)
    figures = networks.peer_vjps(network, timed)
    assert "torch vjp" not in figures and "jax vjp" in figures
    assert "torch's gradients off by" in timed.note
    assert networks.peer_vjps(network_cases.chain(networks.PEER_LIMIT + 1, 2), timed) == {}


def test_peak_above_baseline_sees_what_a_call_holds_even_after_a_warm_up_freed_it():
    """A call that returns 16 MiB peaks at 16 MiB above the baseline, though the warm-up call
    left a freed 16 MiB block in glibc's heap (the dynamic mmap threshold rises past it): the
    heap is trimmed before the measured call. A call that frees a 24 MiB temporary and returns
    nothing still counts it."""
    from benchmarks.memory import in_fresh_process

    child = ("import json, numpy as np; from benchmarks.memory import peak_above_baseline; "
             "print(json.dumps([peak_above_baseline(lambda: np.ones(2**21)), "
             "peak_above_baseline(lambda: float(np.ones(3 * 2**20).sum()))]))")
    kept, temporary = in_fresh_process(["-c", child])
    assert 15.9 <= kept <= 17.5
    assert 23.9 <= temporary <= 25.5


def test_network_peaks_hold_the_gradients_and_torch_is_measured_on_the_same_path():
    """On a chain of three 512x512 matrices (2 MiB each): the forward peaks at least at its
    output (2 MiB), every vjp (einsgrad's and torch's) at least at its gradients (6 MiB); a
    failing child is reported, not raised."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from benchmarks import network_cases, network_memory

    network = network_cases.chain(3, 512)
    figures = network_memory.peaks(network, SimpleNamespace(forward=1.0, optimize="greedy"))
    assert figures["operands"] == 6.0
    assert 2.0 <= figures["peak forward"] < 12 and 2.0 <= figures["peak torch forward"] < 12
    assert 6.0 <= figures["peak vjp"] < 24 and 6.0 <= figures["peak torch vjp"] < 24
    assert network_memory.peaks(network, SimpleNamespace(forward=None, optimize="greedy")) == {}
    broken = network_memory.peaks(network, SimpleNamespace(forward=1.0, optimize="no such optimizer"))
    assert all(isinstance(broken[f"peak {s}"], str) for s in network_memory.SYSTEMS)


def test_network_cases_have_the_shapes_and_tensors_they_say():
    import opt_einsum

    from benchmarks import network_cases

    for network in network_cases.suite(quick=True) + [network_cases.mps_norm(40, 3), network_cases.tree(100)]:
        counts = {}
        for term in network.terms:
            assert len(set(term)) == len(term), network.name  # no label twice in one tensor
            for label in term:
                counts[label] = counts.get(label, 0) + 1
        assert all(counts[l] == 2 for l in counts if l not in network.output), network.name  # bonds
        value = opt_einsum.contract(network.spec, *network.operands(), optimize="greedy")
        assert np.all(np.isfinite(value)) and np.max(np.abs(value)) > 0, network.name
    assert network_cases.mps_norm(500).tensors == network_cases.chain(1000).tensors == 1000
    assert network_cases.tree(999).tensors == 999 + 500  # a vector on each leaf
    assert min(n.tensors for n in network_cases.suite()) == 10


# -- benchmarks/gpu.py, run as on the device but on the CPU, small --------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gpu_script(out, *arguments) -> tuple[dict, str]:
    """``python -m benchmarks.gpu --device cpu --quick`` in a fresh process, as the device runs
    it (``PYTHONPATH=.``, no install); its gpu.json and gpu.txt."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--out", str(out),
                           *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / "gpu.txt").read_text()
    assert done.stdout == text
    return json.loads((out / "gpu.json").read_text()), text


def test_gpu_script_quick_on_cpu_runs_every_phase(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import gpu, gpu_checks, gpu_speed, gpu_training, training

    doc, text = _gpu_script(tmp_path, "--dtypes", "bfloat16,tf32,float64")
    assert {p: v["status"] for p, v in doc["phases"].items()} == {p: "done" for p in gpu.PHASES}

    checks = doc["correctness"]
    assert set(checks["files"]) == {c.path for c in gpu_checks.CHECKS}
    assert checks["status"] == "passed", checks
    assert all(f["passed"] + f["skipped"] >= 1 for f in checks["files"].values())
    log = (tmp_path / "gpu_tests.log").read_text()
    assert log.count("$ EINSGRAD_HYPOTHESIS_PROFILE=dev python -m pytest ") == len(gpu_checks.CHECKS)
    assert "--device=cpu" in log

    speed = doc["speed"]
    assert speed["skipped"] == []
    assert [(r["case"], r["dtype"]) for r in speed["rows"]] == [
        (c, d) for d in ("bfloat16", "tf32", "float64") for c in gpu.QUICK_CASES]
    assert set(doc["peaks"]["gemm"]) == {"bfloat16", "tf32", "float64"} and doc["peaks"]["copy"] > 0
    for row in speed["rows"]:
        assert set(row["cells"]) == set(gpu_speed.SYSTEMS)
        for system, modes in row["cells"].items():
            assert set(modes) == set(gpu_speed.MODES)
            for mode, cell in modes.items():
                assert cell["status"] == "ok" and cell["seconds"] > 0, (row["case"], row["dtype"], system, mode, cell)
                assert row["errors"][system][mode] <= gpu_speed.TOLERANCE[row["dtype"]]
        assert (row["limit"] is None) == row["case"].startswith("tiny")

    pairs = doc["training"]["pairs"]
    assert [(p["model"], p["framework"]) for p in pairs] == [
        (m.name, f) for m in training.MODELS for f in gpu_training.FRAMEWORKS]
    for p in pairs:
        assert p["dtype"] == "bfloat16" and p["check"] is not None and p["check"] <= training.TOLERANCE["bfloat16"]
        assert p["einsgrad"]["status"] == p["own"]["status"] == "ok"

    scale = doc["scale"]
    assert set(scale["systems"]) == {"torch.einsum", "einsgrad.torch", "einsgrad.torch memory_limit"}
    for entry in scale["systems"].values():
        assert "failure" not in entry and entry["error"] <= 1e-12 and entry["seconds"] > 0
        assert entry["peak_bytes"] is None  # no CUDA here: torch reports none

    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("case "))
    assert head.split() == ["case", "dtype", "mode", "einsgrad-torch", "torch", "ratio", "einsgrad-jax", "jax",
                            "ratio", "x", "lim"]
    assert any(line.startswith("# targets: ") for line in lines)
    assert {t["target"] for t in doc["targets"]} >= {"einsgrad-torch x torch", "einsgrad-jax x jax",
                                                     "einsgrad-torch x peak", "failures on the device"}


def test_gpu_script_skips_what_its_budget_leaves_no_time_for(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import gpu_checks, gpu_scale

    doc, text = _gpu_script(tmp_path, "--budget", "0", "--phases", "checks,speed,scale", "--dtypes", "float64")
    assert list(doc["phases"]) == ["checks", "speed", "scale"]
    assert all(f["status"] == "skipped" for f in doc["correctness"]["files"].values())
    assert len(doc["correctness"]["files"]) == len(gpu_checks.CHECKS) and doc["correctness"]["status"] == "skipped"
    assert doc["speed"]["rows"] == [] and len(doc["speed"]["skipped"]) == 4
    assert doc["scale"]["skipped"] == list(gpu_scale.SYSTEMS) and doc["scale"]["systems"] == {}
    assert "# skipped (time budget): matmul float64, chain float64, trace float64, tiny linear float64" in text
    assert "training" not in doc


def test_gpu_script_refuses_a_cuda_device_it_lacks(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    from benchmarks import gpu

    with pytest.raises(SystemExit):
        gpu.main(["--device", "cuda", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        gpu.main(["--device", "cpu", "--phases", "speed,nothing", "--out", str(tmp_path)])


# -- the Hessian and layer benchmarks (benchmarks/hessians.py, benchmarks/layers.py) -----------

def test_hessians_quick_checks_every_system_and_times_the_ones_that_agree(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from benchmarks import hessians

    path = tmp_path / "hessians.json"
    assert hessians.main(["--quick", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(path.read_text())
    assert [r["case"] for r in doc] == [c.name for c in hessians.CASES]
    for r in doc:
        assert set(r["seconds"]) == {"einsgrad", "jax", "torch", "by hand"} and not r["notes"]
        assert all(d <= hessians.TOLERANCE for d in r["difference"].values())
        assert r["speedup"] > 0 and r["compile"] > 0
        assert r["case"] in text
    assert "H[i,j] = A[i,j] + A[j,i]" in text and "delta[i,j]" in text


def test_a_hessian_system_that_disagrees_is_reported_not_timed(monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from dataclasses import replace

    from benchmarks import hessians

    case = replace(hessians.CASES[0], by_hand=lambda x, A: A)  # not A + Aᵀ
    result = hessians.measure(case, quick=True, repeats=3)
    assert "by hand" not in result.seconds and "disagrees with einsgrad" in result.notes["by hand"]
    assert result.seconds["einsgrad"] > 0 and result.seconds["jax"] > 0
    assert "disagrees with einsgrad" in hessians.table([result], 3, True)


def test_layers_quick_checks_against_torch_and_times_both(tmp_path, capsys):
    pytest.importorskip("torch")
    from benchmarks import layers

    path = tmp_path / "layers.json"
    assert layers.main(["--quick", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(path.read_text())
    assert [r["dtype"] for r in doc] == list(layers.DTYPES)
    for r in doc:
        assert set(r["seconds"]) == {"forward", "all gradients", "W only", "torch forward",
                                     "torch all gradients", "torch W only", "numpy X @ W.T", "torch X @ W.T"}
        assert r["difference"] <= layers.TOLERANCE[r["dtype"]]
    assert "dH[b,j] = (A[b,j] - T[b,j]) * (1 - A[b,j]^2)" in text
    with pytest.raises(SystemExit):
        layers.main(["--quick", "--dtypes", "float16"])
