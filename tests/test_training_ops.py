"""benchmarks.training_ops: the ops a torch training step runs with each einsum (skipped without
torch). The step of the GEMM-shaped models with einsgrad's einsum runs the GEMMs of
torch.einsum's step (as many, as many FLOPs) and copies no more; the op summary itself is
checked on ops whose layouts are known. No timing."""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")
from benchmarks import training_ops  # noqa: E402
from benchmarks.training_models import MODELS  # noqa: E402

MODEL = {m.name: m for m in MODELS}


def _op(func, *tensors):
    """The :class:`training_ops.Op` that the recorder makes for ``func`` on these tensors."""
    recorder = training_ops.Recorder()
    with recorder:
        func(*tensors)
    (found,) = recorder.ops["forward"]
    return found


@pytest.mark.parametrize("a_t, b_t, layout", [(False, False, "NN"), (False, True, "NT"),
                                              (True, False, "TN"), (True, True, "TT")])
def test_a_gemm_s_layout_says_which_operand_blas_reads_transposed(a_t, b_t, layout):
    a = torch.randn(5, 3).t() if a_t else torch.randn(3, 5)  # (3, 5) either way
    b = torch.randn(4, 5).t() if b_t else torch.randn(5, 4)  # (5, 4)
    found = _op(torch.mm, a, b)
    assert found.kind == "gemm"
    assert found.gemm() == (layout, 2 * 3 * 5 * 4, (1, 3, 5, 4))


def test_an_addmm_is_a_gemm_of_its_two_matrices():
    found = _op(torch.addmm, torch.randn(4), torch.randn(3, 5), torch.randn(4, 5).t())
    assert found.gemm() == ("NT", 2 * 3 * 5 * 4, (1, 3, 5, 4))


def test_the_summary_counts_gemms_copies_and_other_ops_and_leaves_views_out():
    x = torch.randn(2, 3, 4)
    recorder = training_ops.Recorder()
    with recorder:
        y = torch.bmm(x.permute(0, 2, 1).contiguous(), torch.randn(2, 3, 5))  # a copy, a view, a GEMM
        (y * 2).sum()
    summary = training_ops.Summary.of(recorder.ops["forward"])
    assert summary.gemms == {("NN", (2, 4, 3, 5)): 1}
    assert summary.flops == 2 * 2 * 4 * 3 * 5
    assert (summary.copies, summary.copied) == (1, 24)
    assert summary.others == {"randn": 1, "mul": 1, "sum": 1}


@pytest.mark.parametrize("name, quick", [("attention", True), ("grouped", True), ("mlp", True),
                                         ("attention", False), ("grouped", False)])
def test_einsgrad_s_step_runs_torch_einsum_s_gemms_and_copies_no_more(name, quick):
    found = training_ops.compare(MODEL[name], torch.float32, quick=quick)
    mine, theirs = found["einsgrad.torch"], found["torch.einsum"]
    for phase in training_ops.PHASES:
        assert sum(mine[phase].gemms.values()) == sum(theirs[phase].gemms.values()), phase
        assert mine[phase].flops == theirs[phase].flops > 0, phase
        assert mine[phase].copied <= theirs[phase].copied, phase
    text = training_ops.table(MODEL[name], "float32", found)
    assert "einsgrad.torch" in text and "torch.einsum" in text and "backward:" in text


def test_the_command_prints_the_comparison(capsys):
    assert training_ops.main(["--models", "grouped", "--dtypes", "float32", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "## grouped float32" in out and "1x NN 2x8x8x8" in out


def test_an_unknown_model_is_refused(capsys):
    with pytest.raises(SystemExit):
        training_ops.main(["--models", "nope"])
    assert "unknown model(s) nope" in capsys.readouterr().err


def _shapes(summary) -> Counter:
    """The GEMMs of a phase by (batch, m, k, n): which way round each product is computed."""
    found = Counter()
    for (_, dims), count in summary.gemms.items():
        found[dims] += count
    return found


@pytest.mark.parametrize("quick", [True, False])
def test_einsgrad_s_attention_computes_torch_einsum_s_products_the_same_way_round(quick):
    """Each GEMM of the attention step has torch.einsum's (batch, m, k, n) in the forward and
    the backward: the key gradient (bhqd,bhqk->bhkd) is torch's transposed view of Q^T G
    (d x k per head, read TN as torch reads it), not G^T Q (k x d), which MKL runs 1.3x slower
    in float64 on one thread."""
    found = training_ops.compare(MODEL["attention"], torch.float64, quick=quick)
    mine, theirs = found["einsgrad.torch"], found["torch.einsum"]
    for phase in training_ops.PHASES:
        assert _shapes(mine[phase]) == _shapes(theirs[phase]), phase
    sizes = MODEL["attention"].sized(quick)
    head = sizes["d"] // sizes["h"]
    key = ("TN", (sizes["B"] * sizes["h"], head, sizes["S"], sizes["S"]))
    assert mine["backward"].gemms[key] == theirs["backward"].gemms[key] == 1


def test_torch_calls_reports_each_part_against_torch_einsum(capsys):
    """``benchmarks.torch_calls`` times a call and its backward per cache state and dtype, with
    the A/A control (figures are the machine's: only the table's shape is checked)."""
    from benchmarks import torch_calls

    assert torch_calls.main(["--calls", "3", "--evict", "0,1", "--dtypes", "float32,bfloat16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line for line in lines if line.startswith("## ")]
    assert heads == [f"## {torch_calls.SPEC} {d}, {c}" for d in ("float32", "bfloat16")
                     for c in ("warm", "after 1 MiB streamed")]
    parts = [line.split()[0] for line in lines if not line.startswith("## ")]
    assert parts == list(torch_calls.PARTS) * 4
    assert all(" A/A " in line and " over " in line for line in lines if not line.startswith("## "))
