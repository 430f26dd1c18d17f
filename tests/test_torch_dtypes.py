"""Low-precision dtypes and autocast in ``einsgrad.torch`` (skipped without torch): bfloat16
and float16 forward and gradients within their precision of a float32 reference, torch's own
dtype promotion, and ``torch.autocast`` followed as ``torch.einsum`` follows it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import einsgrad  # noqa: E402
import einsgrad.torch  # noqa: E402  (after the skip)
from strategies import FLOAT32, einsum_cases  # noqa: E402

CURATED = [
    pytest.param("ik,jk->ij", [(8, 16), (12, 16)], id="linear"),
    pytest.param("bi,oi->bo", [(16, 32), (24, 32)], id="linear transposed"),
    pytest.param("ab,bc,cd->ad", [(4, 8), (8, 16), (16, 4)], id="chain"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 2, 8, 16), (2, 2, 8, 16)], id="attention scores"),
    pytest.param("bi,oij,bj->bo", [(4, 8), (6, 8, 5), (4, 5)], id="bilinear"),
    pytest.param("ii->", [(8, 8)], id="trace"),
    pytest.param("iij->ji", [(4, 4, 3)], id="repeated label"),
    pytest.param("ij->i", [(6, 40)], id="row sum"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 4, 8), (3, 8, 4)], id="broadcast batch"),
    pytest.param("ij,ij->ij", [(5, 1), (5, 6)], id="size-1 broadcast"),
]

# bfloat16 keeps 8 bits of mantissa, float16 11: a few roundings of sums of ~40 terms
TOLERANCE = {torch.bfloat16: 4e-2, torch.float16: 5e-3}


def operands(shapes, dtype, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator).to(device, dtype).requires_grad_() for s in shapes]


def close(got, reference, dtype):
    """Within the dtype's precision of the float32 reference, relative to its largest value."""
    scale = max(1.0, float(reference.abs().max())) if reference.numel() else 1.0
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got.float(), reference, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_low_precision_forward_and_gradients(spec, shapes, dtype, device):
    """Outputs and gradients in the operands' dtype, close to torch.einsum's in float32 on the
    same (rounded) values, on ``--device``."""
    ops = operands(shapes, dtype, device=device)
    reference_ops = [x.detach().float().requires_grad_() for x in ops]
    y = einsgrad.torch.einsum(spec, *ops)
    reference = torch.einsum(spec, *reference_ops)
    assert y.dtype == dtype and y.shape == reference.shape
    close(y, reference.detach(), dtype)
    G = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device)
    grads = torch.autograd.grad(y, ops, G.to(dtype))
    expected = torch.autograd.grad(reference, reference_ops, G.to(dtype).float())
    for g, want, x in zip(grads, expected, ops):
        assert g.dtype == dtype and g.shape == x.shape
        close(g, want, dtype)


def test_mixed_dtypes_promote_as_torch_does():
    """bfloat16 with float16 computes in float32 (torch.promote_types), int64 with float32 in
    float32; each gradient comes back in its operand's dtype."""
    x = torch.randn(4, 3).to(torch.bfloat16).requires_grad_()
    w = torch.randn(5, 3).to(torch.float16).requires_grad_()
    y = einsgrad.torch.einsum("ik,jk->ij", x, w)
    assert y.dtype == torch.promote_types(torch.bfloat16, torch.float16) == torch.float32
    torch.testing.assert_close(y, torch.einsum("ik,jk->ij", x.float(), w.float()))
    dx, dw = torch.autograd.grad(y.sum(), [x, w])
    assert (dx.dtype, dw.dtype) == (torch.bfloat16, torch.float16)
    counts = torch.arange(12).reshape(4, 3)
    assert einsgrad.torch.einsum("ik,jk->ij", counts, w.detach().float()).dtype == torch.float32


def test_generated_code_names_torch_dtypes():
    """The torch code shown for a bfloat16 call casts to torch.bfloat16 where it casts."""
    lin = einsgrad.compile("ik,jk->ij")
    x, w = torch.ones(4, 3, dtype=torch.bfloat16), torch.ones(5, 3, dtype=torch.float32)
    lin.vjp(torch.ones(4, 5), x, w)
    assert "torch.bfloat16" in lin.source(backend="torch")


AUTOCAST = [
    pytest.param("ij,jk->ik", [(8, 16), (16, 4)], id="matmul"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 2, 8, 16), (2, 2, 8, 16)], id="attention"),
    pytest.param("ab,bc,cd->ad", [(4, 8), (8, 16), (16, 4)], id="chain"),
    pytest.param("i,i->", [(16,), (16,)], id="dot"),
    pytest.param("i,i->i", [(16,), (16,)], id="elementwise"),
    pytest.param("i,j->ij", [(4,), (5,)], id="outer"),
    pytest.param("ij->i", [(4, 8)], id="row sum"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spec, shapes", AUTOCAST)
def test_autocast_like_torch_einsum(spec, shapes, dtype, device):
    """Under autocast (of ``--device``'s type): the output's dtype and the gradients' dtypes
    are torch.einsum's (a contraction runs in the low dtype, products and sums alone do not),
    values close."""
    results = []
    for use in (einsgrad.torch.einsum, torch.einsum):
        ops = operands(shapes, torch.float32, seed=2, device=device)
        with torch.autocast(torch.device(device).type, dtype=dtype):
            y = use(spec, *ops)
            loss = y.float().square().sum()
        results.append((y, torch.autograd.grad(loss, ops)))
    (y, grads), (y_ref, grads_ref) = results
    assert y.dtype == y_ref.dtype
    close(y.detach(), y_ref.detach().float(), dtype)
    for g, want in zip(grads, grads_ref):
        assert g.dtype == want.dtype == torch.float32
        close(g, want, dtype)


AUTOCAST_CHAINS = [
    pytest.param("ij,jk,l->ikl", [(4, 5), (5, 6), (3,)], torch.float32, id="contraction then product"),
    pytest.param("ij,ij,jk->ik", [(4, 5), (4, 5), (5, 6)], torch.bfloat16, id="product then contraction"),
    pytest.param("ij,jk,k->ijk", [(4, 5), (5, 6), (6,)], torch.float32, id="products only"),
    pytest.param("ij,jk->ik", [(4, 1), (1, 6)], torch.float32, id="size-1 contraction"),
    pytest.param("bi,oij,bj->bo", [(3, 4), (2, 4, 5), (3, 5)], torch.bfloat16, id="bilinear"),
]


@pytest.mark.parametrize("spec, shapes, expected", AUTOCAST_CHAINS)
def test_autocast_result_dtype_is_the_last_pairwise_steps(spec, shapes, expected):
    """Under bfloat16 autocast torch.einsum computes a pair that sums a shared label (size not
    1) in bfloat16 and any other pair in the promoted dtype, so the result's dtype is its last
    pair's (written out here by hand, and checked against torch.einsum too)."""
    ops = operands(shapes, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.einsum(spec, *ops).dtype == expected
        assert einsgrad.torch.einsum(spec, *ops).dtype == expected


EPSILON = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
ROUNDINGS = 16  # per product term: each operand's cast, each step's result, the cotangent's


def _within(got, want, bound, eps, what):
    """``|got - want| <= ROUNDINGS eps |bound|``: ``bound`` is the same einsum of absolute
    values, so each term's relative rounding error of at most ``ROUNDINGS eps`` stays below it."""
    error = (got.double() - want).abs()
    limit = ROUNDINGS * eps * bound + 1e-6
    assert bool((error <= limit).all()), f"{what}: off by {float((error - limit).max()):.3g} beyond the limit"


@given(einsum_cases(dtypes=(FLOAT32,), min_operands=3, max_operands=5, max_rank=3, mixed=False),
       st.sampled_from([torch.bfloat16, torch.float16]),
       st.lists(st.sampled_from([torch.float32, torch.bfloat16]), min_size=5, max_size=5))
def test_autocast_chains_like_torch_einsum(case, low, stored):
    """3 to 5 operands (products, contractions, size-1 and empty labels, diagonals, ellipses),
    float32 or bfloat16, under CPU autocast: the result's dtype and each gradient's are
    torch.einsum's, and values and gradients are within autocast's roundings of torch.einsum's
    and of float64 on the same values."""
    ops = [torch.from_numpy(a).to(d) for a, d in zip(case.operands(), stored)]
    exact = [x.double().requires_grad_() for x in ops]
    y64 = torch.einsum(case.spec, *exact)
    bounds = [x.detach().abs().requires_grad_() for x in exact]
    bound = torch.einsum(case.spec, *bounds)
    G = torch.from_numpy(case.cotangent(y64.shape).astype("float64"))
    found = {}
    for name, use in (("einsgrad", einsgrad.torch.einsum), ("torch", torch.einsum)):
        xs = [x.clone().requires_grad_() for x in ops]
        with torch.autocast("cpu", dtype=low):
            y = use(case.spec, *xs)
        grads = torch.autograd.grad(y, xs, G.to(y.dtype), allow_unused=True, materialize_grads=True)
        found[name] = y.detach(), grads
    (y, grads), (y_torch, grads_torch) = found["einsgrad"], found["torch"]
    assert y.dtype == y_torch.dtype and y.shape == y_torch.shape
    # the coarsest rounding on the way: autocast's dtype, or bfloat16 where a step of bfloat16
    # operands is not cast (fp16 autocast leaves a bfloat16 product in bfloat16)
    eps = max(EPSILON.get(d, 0.0) for d in (low, y.dtype, *stored))
    _within(y, y64.detach(), bound.detach(), eps, "value against float64")
    _within(y, y_torch.double(), 2 * bound.detach(), eps, "value against torch.einsum")
    Gr = G.to(y.dtype).double()
    expected = torch.autograd.grad(y64, exact, Gr, allow_unused=True, materialize_grads=True)
    limits = torch.autograd.grad(bound, bounds, Gr.abs(), allow_unused=True, materialize_grads=True)
    for k, (g, g_torch, want, limit) in enumerate(zip(grads, grads_torch, expected, limits)):
        assert g.dtype == g_torch.dtype == ops[k].dtype and g.shape == ops[k].shape
        _within(g, want, limit, eps, f"gradient {k} against float64")
        _within(g, g_torch.double(), 2 * limit, eps, f"gradient {k} against torch.einsum")


AUTOCAST_COMPILED = [
    pytest.param("bij,bjk->bik", lambda n: [(2, n, 8), (2, 8, 5)], id="batched matmul"),
    pytest.param("...ij,...jk->...ik", lambda n: [(3, n, 8), (8, 4)], id="broadcast batch"),
    pytest.param("ij,j->ij", lambda n: [(n, 6), (6,)], id="product"),
    pytest.param("ab,bc,cd->ad", lambda n: [(n, 6), (6, 7), (7, 5)], id="chain"),
    pytest.param("ij,jk,l->ikl", lambda n: [(n, 6), (6, 7), (3,)], id="contraction then product"),
]


@pytest.mark.parametrize("spec, shapes", AUTOCAST_COMPILED)
def test_autocast_under_torch_compile_dynamic(spec, shapes):
    """torch.compile(dynamic=True) (AOT autograd traces the call) of a step under CPU bfloat16
    autocast, over four sizes: the result's and the gradients' dtypes are those of
    torch.einsum under the same compile and autocast, values and gradients within bfloat16's
    precision of them, and at most one graph more than torch.einsum builds (three operands
    and more: torch's opt_einsum path, which both follow, reads each size)."""
    import torch._dynamo
    from torch._dynamo.backends.debugging import aot_eager

    found = {}
    for name, use in (("einsgrad", einsgrad.torch.einsum), ("torch", torch.einsum)):
        built = []

        def counting(graph, example_inputs, built=built):
            built.append(graph)
            return aot_eager(graph, example_inputs)

        def step(*xs, use=use):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = use(spec, *xs)
            return y, (y.float() ** 2).sum()

        torch._dynamo.reset()
        compiled = torch.compile(step, backend=counting, dynamic=True)
        results = []
        for n in (4, 6, 9, 13):
            xs = operands(shapes(n), torch.float32, seed=n)
            y, loss = compiled(*xs)
            results.append((y.detach(), torch.autograd.grad(loss, xs)))
        found[name] = len(built), results
    torch._dynamo.reset()
    (graphs, mine), (their_graphs, theirs) = found["einsgrad"], found["torch"]
    assert graphs <= their_graphs + 1
    for (y, grads), (y_ref, grads_ref) in zip(mine, theirs):
        assert y.dtype == y_ref.dtype
        close(y, y_ref.float(), torch.bfloat16)
        for g, want in zip(grads, grads_ref):
            assert g.dtype == want.dtype == torch.float32
            close(g, want, torch.bfloat16)


def test_autocast_leaves_float64_and_integers():
    """As autocast does, float64 operands are not cast down."""
    x, w = operands([(4, 3), (5, 3)], torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert einsgrad.torch.einsum("ik,jk->ij", x, w).dtype == torch.einsum("ik,jk->ij", x, w).dtype


def test_numpy_code_after_torch_calls():
    """module() and numpy source after torch calls: the calls' dtypes where numpy has them
    (float32), float64 where it has none (bfloat16); torch source keeps bfloat16."""
    lin = einsgrad.compile("ik,jk->ij")
    lin(torch.ones(2, 3), torch.ones(4, 3, dtype=torch.float64))
    assert "dtypes float32, float64" in lin.module()
    x = torch.ones(2, 3, dtype=torch.bfloat16)
    lin.vjp(torch.ones(2, 4), x, torch.ones(4, 3))
    assert "dtypes float64, float64" in lin.module()
    assert "bfloat16" not in lin.source(backend="numpy")
    assert "torch.bfloat16" in lin.source(backend="torch")
    namespace = {}
    exec(lin.module(), namespace)
    np = pytest.importorskip("numpy")
    assert namespace["forward"](np.ones((2, 3)), np.ones((4, 3))).shape == (2, 4)
