"""einsgrad.gemm_sides: a tall GEMM's small right side read from a transposed copy (NT) in the
torch dialect's float64 code. Values against torch's own autograd of ``torch.einsum``
(hypothesis-generated pairs and chains, every GEMM rewritten by lowering the thresholds), and
the layouts BLAS is handed, read from the strides of each ``mm``/``bmm`` that reaches torch's
dispatcher (skipped without torch). No timing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

from strategies import Case, einsum_cases

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import einsgrad.torch  # noqa: E402
from einsgrad import gemm_sides  # noqa: E402


class Gemms(TorchDispatchMode):
    """Records each ``mm``/``bmm`` as (layout, (rows, summed, columns)): ``N`` a side read as
    stored rows, ``T`` one read transposed (its last axis strided)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("mm", "bmm"):
            a, b = args[:2]
            layout = "".join("N" if t.stride(-1) == 1 and t.shape[-1] != 1 else "T" for t in (a, b))
            self.found.append((layout, (a.shape[-2], a.shape[-1], b.shape[-1])))
        return func(*args, **(kwargs or {}))


def _every_gemm_rewritten(monkeypatch):
    """Thresholds that let every GEMM of two sides read as stored be rewritten."""
    monkeypatch.setattr(gemm_sides, "ROWS", 1)
    monkeypatch.setattr(gemm_sides, "TALL", 0)


def _torch_gradients(spec, ops, g):
    leaves = [x.detach().clone().requires_grad_() for x in ops]
    y = torch.einsum(spec, *leaves)
    return y, torch.autograd.grad(y, leaves, g, allow_unused=True)


@given(einsum_cases(dtypes=(np.float64,), max_operands=3, mixed=False))
def test_rewritten_gradients_equal_torch_autograd(case: Case):
    """With every eligible GEMM rewritten, the forward, the vjp, the forward-saving pullback
    and the jvp of a fresh Einsum equal torch.einsum, its autograd and ``torch.func.jvp`` of
    it, in float64."""
    ops = [torch.tensor(x) for x in case.operands()]
    try:
        y = torch.einsum(case.clean_spec, *ops)
    except RuntimeError:
        assume(False)
    g = torch.randn_like(y)
    tangents = [torch.randn_like(x) for x in ops]
    expected, theirs = _torch_gradients(case.clean_spec, ops, g)
    _, expected_tangent = torch.func.jvp(lambda *xs: torch.einsum(case.clean_spec, *xs), tuple(ops), tuple(tangents))
    with pytest.MonkeyPatch.context() as patch:
        _every_gemm_rewritten(patch)
        e = einsgrad.compile(case.spec)
        forward, tangent = e(*ops), e.jvp(tangents, *ops)
        mine = e.vjp(g, *ops)
        value, pullback = e.value_and_pullback(*ops)
        pulled = pullback(g)
    for got in (forward, value):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(tangent, expected_tangent)
    for got, other, want in zip(mine, pulled, theirs):
        if want is None:
            continue
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(other, want)


def test_the_thresholds_let_the_small_cases_above_be_rewritten(monkeypatch):
    """The hypothesis test above does rewrite: a linear layer's input gradient ``G @ W`` is
    read NN as planned, NT with the thresholds lowered (the negative control of the test)."""
    x, w = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(5, 4, dtype=torch.float64)
    layouts = {}
    for lowered in (False, True):
        if lowered:
            _every_gemm_rewritten(monkeypatch)
        e, recorder = einsgrad.compile("ik,jk->ij"), Gemms()
        with recorder:
            dx = e.vjp(g, x, w, wrt=0)
        torch.testing.assert_close(dx, g @ w)
        layouts[lowered] = recorder.found
    assert layouts == {False: [("NN", (5, 4, 3))], True: [("NT", (5, 4, 3))]}


# attention's output projection at the training benchmark's sizes (B=32, S=128, d=256, h=8)
PROJECTION = "bhqd,ohd->bqo"
HEADS, WEIGHT = (32, 8, 128, 32), (256, 8, 32)


@pytest.mark.parametrize("dtype, layout", [(torch.float64, "NT"), (torch.float32, "NN"), (torch.bfloat16, "NN")])
def test_the_output_projection_s_input_gradient_reads_its_weight_transposed_in_float64(dtype, layout):
    """``G @ W`` (4096x256 by 256x256) reads W from a transposed copy, as torch.einsum's
    backward does, in float64 (MKL runs NT faster there), and as stored in float32 and
    bfloat16 (no faster either way: no copy). The weight gradient stays TN, as torch's. The
    gradients are torch's."""
    heads = torch.randn(HEADS, dtype=dtype, requires_grad=True)
    weight = torch.randn(WEIGHT, dtype=dtype, requires_grad=True)
    y = einsgrad.torch.einsum(PROJECTION, heads, weight)
    g = torch.randn_like(y)
    recorder = Gemms()
    with recorder:
        mine = torch.autograd.grad(y, (heads, weight), g)
    rows, width = 32 * 128, 256
    assert sorted(recorder.found) == sorted([(layout, (rows, width, width)), ("TN", (width, rows, width))])
    wide = [t.detach().double() for t in (heads, weight)]
    expected, theirs = _torch_gradients(PROJECTION, wide, g.double())
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    for got, want in zip((y, *mine), (expected, *theirs)):
        assert got.dtype == dtype and got.is_contiguous()
        assert (got.double() - want).abs().max() <= tolerance * want.abs().max()


@pytest.mark.parametrize("spec, shapes, found", [
    pytest.param("bi,oi->bo", [(4096, 256), (256, 256)], [("NT", (4096, 256, 256)), ("TN", (256, 4096, 256))],
                 id="a linear layer's input gradient"),
    pytest.param("bi,oi->bo", [(512, 256), (256, 256)], [("NN", (512, 256, 256)), ("TN", (256, 512, 256))],
                 id="too few rows"),
    pytest.param("bi,oi->bo", [(1024, 1024), (1024, 1024)], [("NN", (1024, 1024, 1024)), ("TN", (1024, 1024, 1024))],
                 id="a right side as large as the rows"),
])
def test_only_a_tall_product_s_small_right_side_is_copied(spec, shapes, found):
    """A linear layer's backward in float64: the input gradient ``G @ W`` reads W from a
    transposed copy where the batch is tall beside W (shape classes decide: 1,000 rows and
    more, W's sides an eighth of that at most), as stored otherwise; the weight gradient,
    whose left side is read transposed, stays TN (TT, which a copy would make, is slower than
    NN in every dtype)."""
    ops = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    y = einsgrad.torch.einsum(spec, *ops)
    recorder = Gemms()
    with recorder:
        mine = torch.autograd.grad(y, ops, torch.ones_like(y))
    assert sorted(recorder.found) == sorted(found)
    for got, want in zip(mine, _torch_gradients(spec, ops, torch.ones_like(y))[1]):
        torch.testing.assert_close(got, want)


def test_a_transposed_left_side_is_left_as_planned():
    """``A^T B`` (A stored summed x rows) stays TN in float64: no copy."""
    a = torch.randn(256, 4096, dtype=torch.float64)
    b = torch.randn(256, 256, dtype=torch.float64)
    recorder = Gemms()
    with recorder:
        y = einsgrad.torch.einsum("ki,kj->ij", a, b)
    assert recorder.found == [("TN", (4096, 256, 256))]
    torch.testing.assert_close(y, a.T @ b)
