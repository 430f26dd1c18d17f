"""``einsgrad.torch.einsum`` under ``torch.func`` and forward mode, against the same transforms
of ``torch.einsum`` (skipped without torch): grad, jacrev, jacfwd, hessian, functional_call,
vmap (its own batched plan, and per-sample gradients), dual numbers, ``is_grads_batched``, and
torch's finite-difference checks of forward mode and batched gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings

from strategies import EXACT_DTYPES, Case, einsum_cases

torch = pytest.importorskip("torch")
import einsgrad.torch  # noqa: E402  (after the skip)
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, vmap  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 2)], id="chain"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)], id="attention scores"),
    pytest.param("ii->", [(3, 3)], id="trace"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], id="size-1 broadcast"),
    pytest.param(",i->i", [(), (3,)], id="scalar"),
]


def tensors(shapes, dtype=torch.float64, seed=0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=generator).requires_grad_(grad) for s in shapes]


def assert_trees_close(got, expected):
    got, expected = tree_leaves(got), tree_leaves(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def losses(spec):
    """The same scalar function of the operands, through einsgrad and through torch.einsum."""
    def ours(*xs):
        return einsgrad.torch.einsum(spec, *xs).sin().sum()

    def theirs(*xs):
        return torch.einsum(spec, *xs).sin().sum()

    return ours, theirs


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_func_transforms_equal_torch_einsum(spec, shapes):
    """grad, jacrev, jacfwd (forward mode) and hessian (forward over reverse) of a loss."""
    ops = tensors(shapes)
    argnums = tuple(range(len(ops)))
    ours, theirs = losses(spec)
    for transform in (grad, jacrev, jacfwd, hessian):
        assert_trees_close(transform(ours, argnums=argnums)(*ops), transform(theirs, argnums=argnums)(*ops))


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_jacobians_of_the_einsum_itself(spec, shapes):
    """jacrev and jacfwd of the einsum (not of a scalar): vmap over cotangents and tangents."""
    ops = tensors(shapes)
    argnums = tuple(range(len(ops)))
    for transform in (jacrev, jacfwd):
        got = transform(lambda *xs: einsgrad.torch.einsum(spec, *xs), argnums=argnums)(*ops)
        assert_trees_close(got, transform(lambda *xs: torch.einsum(spec, *xs), argnums=argnums)(*ops))


def test_functional_call_of_a_module():
    """functional_call with parameters swapped in, and its gradient."""
    class Bilinear(torch.nn.Module):
        def __init__(self, use):
            super().__init__()
            self.use = use
            self.weight = torch.nn.Parameter(torch.randn(3, 4, 5, dtype=torch.float64))

        def forward(self, x, z):
            return self.use("bi,oij,bj->bo", x, self.weight, z)

    x, z, w = tensors([(2, 4), (2, 5), (3, 4, 5)], seed=1)
    results = []
    for use in (einsgrad.torch.einsum, torch.einsum):
        module = Bilinear(use)
        value = functional_call(module, {"weight": w}, (x, z))
        dw = grad(lambda p: functional_call(module, {"weight": p}, (x, z)).square().sum())(w)
        results.append((value, dw))
    assert_trees_close(*results)


@pytest.mark.parametrize("in_dims", [(0, None), (None, 0), (0, 0), (1, 2), (-1, None)])
def test_vmap_runs_a_batched_einsum(in_dims):
    """vmap over either operand, both, or an inner axis: torch.einsum's values."""
    x, w = tensors([(4, 3), (5, 3)])
    batched = []
    for t, d in zip((x, w), in_dims):
        if d is None:
            batched.append(t)
        else:
            stacked = torch.stack([t * (i + 1) for i in range(6)])
            batched.append(stacked.movedim(0, d))
    got = vmap(lambda a, b: einsgrad.torch.einsum("ik,jk->ij", a, b), in_dims=in_dims)(*batched)
    expected = vmap(lambda a, b: torch.einsum("ik,jk->ij", a, b), in_dims=in_dims)(*batched)
    assert got.shape == expected.shape == (6, 4, 5)
    assert_trees_close(got, expected)


def test_vmap_when_every_letter_is_taken():
    """A spec with all 52 letters has none left for the batch: one call per sample."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    spec = f"{letters}->{letters[::-1]}"
    (x,) = tensors([(3,) + (1,) * 51])
    stacked = torch.stack([x, 2 * x])
    got = vmap(lambda a: einsgrad.torch.einsum(spec, a))(stacked)
    assert_trees_close(got, torch.stack([torch.einsum(spec, x), torch.einsum(spec, 2 * x)]))


def test_per_sample_gradients():
    """vmap(grad(loss)) over a batch of examples, the model's weights shared: per-sample
    gradients of a two-layer model, as with torch.einsum."""
    w1, w2 = tensors([(8, 5), (3, 8)], seed=2)
    xs, ys = tensors([(7, 5), (7, 3)], seed=3)

    def loss(use):
        def per_example(w1, w2, x, y):
            h = use("i,oi->o", x, w1).tanh()
            return (use("h,oh->o", h, w2) - y).square().sum()
        return per_example

    got = vmap(grad(loss(einsgrad.torch.einsum), argnums=(0, 1)), in_dims=(None, None, 0, 0))(w1, w2, xs, ys)
    expected = vmap(grad(loss(torch.einsum), argnums=(0, 1)), in_dims=(None, None, 0, 0))(w1, w2, xs, ys)
    assert got[0].shape == (7, 8, 5)
    assert_trees_close(got, expected)


def batched_operands(case: Case, batch: int):
    """Each operand of ``case`` stacked ``batch`` times, scaled differently, along axis 0, in
    the case's common dtype (torch.einsum does not promote mixed dtypes)."""
    common = torch.complex128 if any(np.iscomplexobj(x) for x in case.operands()) else torch.float64
    ops = [torch.tensor(x).to(common) for x in case.operands()]
    scales = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    return [torch.stack([x * s for s in scales]) for x in ops]


@settings(deadline=None, max_examples=40)
@given(einsum_cases(dtypes=EXACT_DTYPES, max_operands=3))
def test_vmap_and_vmap_of_vjp_equal_torch_einsum(case: Case):
    """Hypothesis-generated specs: vmap of the einsum, and vmap of its vjp (per-sample
    gradients with per-sample cotangents), equal the same transforms of torch.einsum."""
    ops = batched_operands(case, 3)
    try:
        expected = vmap(lambda *xs: torch.einsum(case.clean_spec, *xs))(*ops)
    except RuntimeError:
        assume(False)
    got = vmap(lambda *xs: einsgrad.torch.einsum(case.spec, *xs))(*ops)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    cotangents = torch.ones_like(expected) + 0.5 * expected.detach()

    def vjp_of(use, spec):
        def one(g, *xs):
            return torch.func.vjp(lambda *a: use(spec, *a), *xs)[1](g)
        return one

    got = vmap(vjp_of(einsgrad.torch.einsum, case.spec))(cotangents, *ops)
    want = vmap(vjp_of(torch.einsum, case.clean_spec))(cotangents, *ops)
    for a, b in zip(got, want):
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_dual_numbers_equal_torch_einsum(spec, shapes, dtype):
    """torch.autograd.forward_ad: the tangent of every operand at once, with and without
    requires_grad (the saving forward, then a backward through it too)."""
    import torch.autograd.forward_ad as fwAD

    for needs_grad in (False, True):
        ops, tangents = tensors(shapes, dtype, grad=needs_grad), tensors(shapes, dtype, seed=5)
        results = []
        for use in (einsgrad.torch.einsum, torch.einsum):
            with fwAD.dual_level():
                out = use(spec, *[fwAD.make_dual(x, t) for x, t in zip(ops, tangents)])
                results.append(fwAD.unpack_dual(out))
        (y, dy), (y_ref, dy_ref) = results
        assert_trees_close((y.detach(), dy), (y_ref.detach(), dy_ref))


def test_func_jvp_with_some_tangents():
    """torch.func.jvp of a function of two operands with respect to one of them."""
    x, w = tensors([(4, 3), (5, 3)])
    t = torch.ones_like(x)
    got = torch.func.jvp(lambda a: einsgrad.torch.einsum("ik,jk->ij", a, w), (x,), (t,))
    assert_trees_close(got, torch.func.jvp(lambda a: torch.einsum("ik,jk->ij", a, w), (x,), (t,)))


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_is_grads_batched(spec, shapes):
    """autograd.grad with a batch of cotangents (torch's own vmap of the backward)."""
    ops = tensors(shapes, grad=True)
    y = einsgrad.torch.einsum(spec, *ops)
    cotangents = torch.randn((3, *y.shape), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    got = torch.autograd.grad(y, ops, cotangents, is_grads_batched=True)
    expected = torch.autograd.grad(torch.einsum(spec, *ops), ops, cotangents, is_grads_batched=True)
    assert_trees_close(got, expected)


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_forward_ad_and_batched_gradients_by_finite_differences(spec, shapes):
    """torch's gradcheck of forward mode and of batched gradients, and gradgradcheck of
    forward over reverse: finite differences, an oracle independent of torch.einsum."""
    ops = tensors(shapes, grad=True)

    def f(*xs):
        return einsgrad.torch.einsum(spec, *xs)

    assert torch.autograd.gradcheck(f, ops, check_forward_ad=True, check_batched_grad=True,
                                    check_batched_forward_grad=True)
    assert torch.autograd.gradgradcheck(f, ops, check_fwd_over_rev=True, check_batched_grad=True)


def test_no_numpy_leaks_into_transforms():
    """A numpy operand beside tensors under grad is converted, as outside transforms."""
    w = tensors([(5, 3)])[0]
    x = np.ones((4, 3))
    got = grad(lambda w: einsgrad.torch.einsum("ik,jk->ij", x, w).sum())(w)
    torch.testing.assert_close(got, torch.full((5, 3), 4.0, dtype=torch.float64))


def test_nested_vmap_and_a_broadcast_label():
    """vmap of vmap (a batched plan of the batched plan), and an Einsum with ``sizes=`` (a
    label only the output has) under vmap of grad."""
    x, w = tensors([(2, 3, 4, 5), (6, 5)])

    def nested(use):
        return vmap(vmap(lambda a, b: use("ik,jk->ij", a, b), in_dims=(0, None)), in_dims=(0, None))(x, w)

    assert_trees_close(nested(einsgrad.torch.einsum), nested(torch.einsum))
    spread = einsgrad.compile("j->ij", sizes={"i": 3})
    (v,) = tensors([(4, 5)])
    got = vmap(grad(lambda t: einsgrad.torch.einsum(spread, t).square().sum()))(v)
    expected = vmap(grad(lambda t: t.expand(3, 5).square().sum()))(v)
    assert_trees_close(got, expected)
