"""``einsgrad.torch.einsum``'s fast path (skipped without torch): a repeat call of spec text and
tensors is one lookup, then the autograd node, or the plain forward where grad mode is off.

Every call here is checked against ``torch.einsum`` and its autograd (values, dtype, layout,
gradients), the first call of a key and the repeats alike, across changes of what decides
the key (requires_grad, grad mode, dtype, shape), strided operands, ``torch.func`` transforms,
forward mode, ``torch.compile`` (where, with autocast, the general path runs) and a bounded
cache. A spy on the general path shows which calls took the fast path. No timing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import EXACT_DTYPES, Case, einsum_cases

torch = pytest.importorskip("torch")
import einsgrad  # noqa: E402
import einsgrad.torch  # noqa: E402  (after the skip)
from torch.func import grad, jacrev, vmap  # noqa: E402

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("bi,oi->bo", [(6, 8), (7, 8)], id="linear transposed"),
    pytest.param("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)], id="grouped"),
    pytest.param("bsi,hdi->bhsd", [(2, 5, 6), (3, 4, 6)], id="heads projection (strided result)"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], id="chain"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], id="size-1 broadcast"),
    pytest.param(",i->i", [(), (3,)], id="scalar"),
]


@pytest.fixture
def general(monkeypatch):
    """Counts the calls that take the general path (the others took the fast one)."""
    calls = []
    real = einsgrad.torch._general

    def spy(args, key):
        calls.append(args[:1])
        return real(args, key)

    monkeypatch.setattr(einsgrad.torch, "_general", spy)
    monkeypatch.setattr(einsgrad.torch, "_CALLS", {})
    return calls


def operands(shapes, dtype=torch.float64, grads=None, seed=0):
    """Operands of these shapes; ``grads``: which require a gradient (default all)."""
    generator = torch.Generator().manual_seed(seed)
    made = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    return [t.requires_grad_(grads is None or k in grads) for k, t in enumerate(made)]


def twins(tensors):
    """Copies of the operands, each requiring a gradient as its original does."""
    return [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]


def assert_like_torch(spec, tensors, cotangent_seed=1):
    """einsgrad's call equals torch.einsum's on copies: values, dtype, contiguous where torch's
    is, and the gradients of the operands that require one. Returns einsgrad's result."""
    theirs = twins(tensors)
    y, expected = einsgrad.torch.einsum(spec, *tensors), torch.einsum(spec, *theirs)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert y.requires_grad == expected.requires_grad
    if expected.is_contiguous():
        assert y.is_contiguous()
    torch.testing.assert_close(y.detach(), expected.detach())
    wanted = [k for k, t in enumerate(tensors) if t.requires_grad]
    if not expected.requires_grad:
        return y
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(cotangent_seed)).to(expected.dtype)
    got = torch.autograd.grad(y, [tensors[k] for k in wanted], g)
    want = torch.autograd.grad(expected, [theirs[k] for k in wanted], g)
    for k, a, b in zip(wanted, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, k
        torch.testing.assert_close(a, b, msg=f"operand {k}")
    return y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_repeat_calls_take_the_fast_path_and_equal_torch_einsum(general, spec, shapes, dtype):
    """The first call of a key takes the general path, the repeats the fast one; each equals
    torch.einsum and its autograd, whichever operands need a gradient, and has the first
    call's layout."""
    n = len(shapes)
    patterns = [None, (n - 1,), (0,), ()]
    for grads in patterns:
        strides = {assert_like_torch(spec, operands(shapes, dtype, grads, seed)).stride() for seed in (0, 1, 2)}
        assert len(strides) == 1
    assert len(general) == len(set(patterns)) if n > 1 else len(general) == 2


def test_hits_after_changes_of_requires_grad_grad_mode_and_dtype(general):
    """Alternating what decides the key (requires_grad, grad mode, inference mode, dtype) never
    reuses another key's call: every call equals torch.einsum's."""
    spec, shapes = "...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)]
    for _ in range(2):
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            for grads in ((1,), (0, 1), (), (0,)):
                assert_like_torch(spec, operands(shapes, dtype, grads))
                with torch.no_grad():
                    y = assert_like_torch(spec, operands(shapes, dtype, grads))
                    assert y.grad_fn is None
                with torch.inference_mode():
                    assert_like_torch(spec, operands(shapes, dtype, grads))
    assert len(general) == 3 * (4 + 4)  # per dtype: 4 patterns recorded, 4 not (inference mode alike)


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_plain_forward_without_grad_mode_equals_the_recorded_one(general, spec, shapes):
    """Where grad mode is off the forward runs without an autograd node: the same values and
    layout (strides) as the recorded forward's, no grad_fn; under torch.no_grad and
    torch.inference_mode."""
    ops = operands(shapes)
    recorded = einsgrad.torch.einsum(spec, *ops)
    for mode in (torch.no_grad, torch.inference_mode, torch.no_grad):
        with mode():
            y = einsgrad.torch.einsum(spec, *ops)
        assert y.grad_fn is None and not y.requires_grad
        assert y.stride() == recorded.stride() and y.dtype == recorded.dtype
        torch.testing.assert_close(y, recorded.detach())


def test_strided_operands_on_a_hit(general):
    """A hit reads the operands' strides each call: after contiguous operands, a permuted
    (strided) one and a transposed one of the same key; the gradients reach their leaves as
    torch.einsum's do."""
    spec = "...ij,...jk->...ik"
    x, w = operands([(2, 3, 4, 5), (3, 5, 6)])
    base_x = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    base_w = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    leaves = [x, w, base_x, base_w]
    for a, b in ((x, w), (base_x.permute(1, 0, 2, 3), w), (x, base_w.transpose(-1, -2)), (x, w)):
        y, expected = einsgrad.torch.einsum(spec, a, b), torch.einsum(spec, a, b)
        torch.testing.assert_close(y, expected)
        assert y.stride() == expected.stride()
        g = torch.randn_like(expected)
        got = torch.autograd.grad(y, leaves, g, allow_unused=True)
        want = torch.autograd.grad(expected, leaves, g, allow_unused=True)
        for k, (mine, theirs) in enumerate(zip(got, want)):
            assert (mine is None) == (theirs is None), k
            if theirs is not None:
                torch.testing.assert_close(mine, theirs)
    assert len(general) == 1


def test_transforms_between_hits(general):
    """torch.func's grad, jacrev and vmap of a function whose calls were hits before (and a
    weight that requires a gradient closed over inside grad: plain tensors while a transform
    is active), then plain calls again: torch.einsum's values and gradients throughout."""
    spec = "ik,jk->ij"
    x, w = operands([(4, 3), (5, 3)], grads=(1,))
    for _ in range(2):
        assert_like_torch(spec, [x, w])

    def loss(use):
        return lambda v: use(spec, x, v).sin().sum()

    def closed(use):
        return lambda a: (use(spec, a, w) * a.sum()).sum()

    for transform in (grad, jacrev):
        for f in (loss, closed):
            got = transform(f(einsgrad.torch.einsum))(w.detach() if f is loss else x.detach())
            want = transform(f(torch.einsum))(w.detach() if f is loss else x.detach())
            torch.testing.assert_close(got, want)
    stacked = torch.stack([x.detach() * (i + 1) for i in range(3)])
    torch.testing.assert_close(vmap(lambda a: einsgrad.torch.einsum(spec, a, w))(stacked),
                               vmap(lambda a: torch.einsum(spec, a, w))(stacked))
    for _ in range(2):
        assert_like_torch(spec, [x, w])
    assert len(general) == 2  # the weight's key, and the key of both operands (in "closed")


def test_no_grad_forward_mode_and_vmap_equal_torch_einsum(general):
    """Without grad mode the plain forward's torch operations carry forward mode's tangents
    and vmap's batch: torch.einsum's, for a diagonal written into the output too."""
    import torch.autograd.forward_ad as fwAD

    for spec, shapes in (("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]), ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
                         ("ij,ij->ij", [(3, 1), (3, 4)])):
        ops, tangents = operands(shapes, grads=()), operands(shapes, grads=(), seed=5)
        results = []
        for use in (einsgrad.torch.einsum, torch.einsum, einsgrad.torch.einsum):
            with torch.no_grad(), fwAD.dual_level():
                out = use(spec, *[fwAD.make_dual(a, t) for a, t in zip(ops, tangents)])
                results.append(fwAD.unpack_dual(out))
        for (y, dy) in (results[0], results[2]):
            torch.testing.assert_close(y, results[1][0])
            torch.testing.assert_close(dy, results[1][1])
        stacked = [torch.stack([a * (i + 1) for i in range(3)]) for a in ops]
        for mode in (torch.no_grad, torch.inference_mode):
            with mode():
                got = vmap(lambda *xs: einsgrad.torch.einsum(spec, *xs))(*stacked)
                want = vmap(lambda *xs: torch.einsum(spec, *xs))(*stacked)
            torch.testing.assert_close(got, want)
    placed = einsgrad.compile("i->ii")
    (v,) = operands([(4, 3)], grads=())
    with torch.no_grad():
        got = vmap(lambda a: einsgrad.torch.einsum(placed, a))(v)
    torch.testing.assert_close(got, torch.stack([torch.diag(row) for row in v]))


def test_forward_mode_and_backward_of_a_hit():
    """Dual numbers through operands that require a gradient (the autograd node's jvp), on a
    hit, then a backward through the same call: torch.einsum's tangent and gradients."""
    import torch.autograd.forward_ad as fwAD

    spec = "...ij,...jk->...ik"
    for _ in range(2):
        ops, tangents = operands([(2, 3, 4), (4, 5)]), operands([(2, 3, 4), (4, 5)], grads=(), seed=3)
        results = []
        for use in (einsgrad.torch.einsum, torch.einsum):
            leaves = twins(ops)
            with fwAD.dual_level():
                out = use(spec, *[fwAD.make_dual(a, t) for a, t in zip(leaves, tangents)])
                y, dy = fwAD.unpack_dual(out)
                grads = torch.autograd.grad(y.sum(), leaves)
            results.append((y.detach(), dy, grads))
        for mine, theirs in zip(results[0][:2], results[1][:2]):
            torch.testing.assert_close(mine, theirs)
        for a, b in zip(results[0][2], results[1][2]):
            torch.testing.assert_close(a, b)


def test_autocast_between_hits(general):
    """A key made outside autocast is not run inside it: under CPU autocast the call takes the
    general path and has torch.einsum's dtype (bfloat16) and gradients; outside it again, a
    hit of float32, as torch.einsum's."""
    spec, shapes = "...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)]
    for _ in range(2):
        assert_like_torch(spec, operands(shapes, torch.float32))
    assert len(general) == 1
    for _ in range(2):
        ops = operands(shapes, torch.float32, seed=4)
        theirs = twins(ops)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, expected = einsgrad.torch.einsum(spec, *ops), torch.einsum(spec, *theirs)
        assert y.dtype == expected.dtype == torch.bfloat16
        torch.testing.assert_close(y, expected)
        for a, b in zip(torch.autograd.grad(y.float().sum(), ops), torch.autograd.grad(expected.float().sum(), theirs)):
            assert a.dtype == b.dtype == torch.float32
            torch.testing.assert_close(a, b)
    assert len(general) == 3
    assert assert_like_torch(spec, operands(shapes, torch.float32)).dtype == torch.float32
    assert len(general) == 3


def test_dead_wrappers_on_a_hit(general):
    """An operand that escaped a ``torch.func`` transform (a dead wrapper, kept by the function
    transformed) on a hit (the node's ``apply`` unwraps it; torch 2.13 would run this call alike
    without): values and gradients are torch.einsum's of the plain operand."""
    spec = "...ij,...jk->...ik"
    x, w = operands([(2, 3, 4, 5), (3, 5, 6)], grads=())
    escaped = []

    def keep(a):
        escaped.append(a * 1)
        return a.square().sum()

    grad(keep)(x)
    (dead,) = escaped
    for _ in range(3):
        mine, theirs = w.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        y, expected = einsgrad.torch.einsum(spec, dead, mine), torch.einsum(spec, x, theirs)
        torch.testing.assert_close(y, expected)
        g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2), dtype=expected.dtype)
        torch.testing.assert_close(torch.autograd.grad(y, mine, g)[0], torch.autograd.grad(expected, theirs, g)[0])
    assert len(general) == 1


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_after_and_before_hits(general, dynamic):
    """torch.compile of a function whose call signature is a key already (the general path
    runs while compiling), then eager hits again: torch.einsum's values and gradients."""
    import torch._dynamo

    spec = "...ij,...jk->...ik"
    for n in (3, 3):
        assert_like_torch(spec, operands([(2, 3, n, 5), (3, 5, 6)], torch.float32))
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: einsgrad.torch.einsum(spec, a, b).tanh().sum(), backend="aot_eager",
                             dynamic=dynamic)
    for n in (3, 5, 7):
        ops = operands([(2, 3, n, 5), (3, 5, 6)], torch.float32, seed=n)
        theirs = twins(ops)
        value, expected = compiled(*ops), torch.einsum(spec, *theirs).tanh().sum()
        torch.testing.assert_close(value, expected)
        for a, b in zip(torch.autograd.grad(value, ops), torch.autograd.grad(expected, theirs)):
            torch.testing.assert_close(a, b)
    traced = len(general)
    for n in (3, 3):
        assert_like_torch(spec, operands([(2, 3, n, 5), (3, 5, 6)], torch.float32))
    assert len(general) == traced  # the eager key was kept through the compiles
    assert traced > 1  # tracing ran the general path, and kept no call of its fake tensors:
    assert {op[0] for key in einsgrad.torch._CALLS for op in key.operands} == {torch.Tensor}
    torch._dynamo.reset()


def test_other_forms_and_a_bounded_cache(general, monkeypatch):
    """The list and sublist forms, numpy operands and a compiled Einsum run the general path
    each time (only spec text and tensors are keys); past CALLS_LIMIT keys the oldest go."""
    x, w = operands([(4, 3), (5, 3)])
    expected = torch.einsum("ik,jk->ij", x, w)
    lin = einsgrad.compile("ik,jk->ij")
    for _ in range(2):
        for args in (("ik,jk->ij", [x, w]), (x, [0, 1], w, [2, 1], [0, 2]), (lin, x, w),
                     ("ik,jk->ij", x.detach().numpy(), w)):
            torch.testing.assert_close(einsgrad.torch.einsum(*args), expected)
    assert len(general) == 8 and not einsgrad.torch._CALLS
    monkeypatch.setattr(einsgrad.torch, "CALLS_LIMIT", 3)
    for n in range(2, 8):
        for _ in range(2):
            assert_like_torch("ik,jk->ij", operands([(n, 3), (5, 3)]))
        assert len(einsgrad.torch._CALLS) <= 3
    assert len(general) == 8 + 6
    with pytest.raises(einsgrad.EinsumSpecError, match="einsum\\(\\) needs a spec"):
        einsgrad.torch.einsum()


@given(einsum_cases(dtypes=EXACT_DTYPES), st.data())
def test_hypothesis_specs_twice(case: Case, data):
    """Hypothesis-generated specs, a drawn subset of the operands requiring a gradient (so the
    node keeps some operands, not others, and hands the pullback operands and intermediates in
    its order), called twice (the second a hit): values and gradients equal torch.einsum's,
    by the pullback and by a recorded backward (``create_graph``, the vjp from the kept
    operands and placeholders), where torch takes the spec."""
    arrays = case.operands()
    wanted = data.draw(st.sets(st.sampled_from(range(len(arrays))), min_size=1), label="wanted")
    ops = [torch.tensor(x).requires_grad_(k in wanted) for k, x in enumerate(arrays)]
    theirs = twins(ops)
    try:
        expected = torch.einsum(case.clean_spec, *theirs)
    except RuntimeError:
        expected = None
    first = einsgrad.torch.einsum(case.spec, *ops)
    second = einsgrad.torch.einsum(case.spec, *ops)
    assert second.stride() == first.stride() and second.dtype == first.dtype
    torch.testing.assert_close(second, first)
    g = torch.tensor(np.asarray(case.cotangent(tuple(first.shape)))).to(first.dtype)
    leaves = [ops[k] for k in sorted(wanted)]
    by_pullback = torch.autograd.grad(second, leaves, g, retain_graph=True)
    recorded = torch.autograd.grad(second, leaves, g, create_graph=True)
    want = None
    if expected is not None and expected.shape == first.shape and expected.dtype == first.dtype:
        torch.testing.assert_close(first.detach(), expected.detach())
        try:
            want = torch.autograd.grad(expected, [theirs[k] for k in sorted(wanted)], g)
        except RuntimeError:  # torch's own backward refuses: a real operand of a complex einsum
            pass              # with an empty one (aab,,aa,c at sizes 0 of c, found by hypothesis)
    if want is None:  # torch refuses the spec or promotes otherwise: numpy's vjp in torch's convention
        vjp = einsgrad.compile(case.spec).vjp(np.conj(g.numpy()), *arrays, wrt=tuple(sorted(wanted)))
        want = [torch.tensor(np.conj(v)) for v in vjp]
    for k, a, b, c in zip(sorted(wanted), by_pullback, recorded, want):
        torch.testing.assert_close(a, c.to(a.dtype), msg=f"operand {k}, pullback")
        torch.testing.assert_close(b.detach(), c.to(b.dtype), msg=f"operand {k}, recorded")
