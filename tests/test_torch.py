"""``einsgrad.torch.einsum`` against torch's own autograd of ``torch.einsum`` (skipped without
torch): hypothesis-generated specs, gradcheck and gradgradcheck, a subset of operands,
the device (CUDA where one is at hand) and ``torch.compile``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

from strategies import EXACT_DTYPES, Case, einsum_cases

torch = pytest.importorskip("torch")
import einsgrad.torch  # noqa: E402  (after the skip)

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)], id="chain"),
    pytest.param("abc,cde,efa->bdf", [(2, 3, 2), (2, 3, 2), (2, 2, 2)], id="tensor network"),
    pytest.param("ii->", [(3, 3)], id="trace"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
    pytest.param("ij->i", [(3, 4)], id="row sum"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], id="size-1 broadcast"),
    pytest.param(",i->i", [(), (3,)], id="scalar"),
]


def tensors(shapes, dtype=torch.float64, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=generator).to(device).requires_grad_()
            for s in shapes]


def torch_autograd(spec: str, ops, G):
    """torch's gradients of ``torch.einsum``, or None when torch refuses the problem."""
    leaves = [torch.tensor(x).requires_grad_() for x in ops]
    common = torch.complex128 if any(np.iscomplexobj(x) for x in ops) else torch.float64
    try:
        y = torch.einsum(spec, *(leaf.to(common) for leaf in leaves))
    except RuntimeError:
        return None
    if tuple(y.shape) != G.shape:
        return None
    return torch.autograd.grad(y, leaves, torch.tensor(G), allow_unused=True)


@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_gradients_equal_torch_autograd(device, case: Case):
    """Forward and every gradient equal autograd of ``torch.einsum`` (float64, complex128,
    mixed), in torch's convention for complex values; einsgrad's run on ``--device``, torch's
    on the CPU."""
    ops = case.operands()
    y = np.einsum(case.clean_spec, *ops)
    G = case.cotangent(y.shape)
    expected = torch_autograd(case.clean_spec, ops, G)
    if expected is None:
        expected = torch_autograd(case.explicit_spec, ops, G)
    assume(expected is not None)
    leaves = [torch.tensor(x, device=device).requires_grad_() for x in ops]
    out = einsgrad.torch.einsum(case.spec, *leaves)
    assert out.device == leaves[0].device
    np.testing.assert_allclose(out.detach().cpu().numpy(), y, rtol=1e-9, atol=1e-9)
    got = torch.autograd.grad(out, leaves, torch.tensor(G, device=device))
    for k, (g, t, x) in enumerate(zip(got, expected, leaves)):
        assert g.dtype == x.dtype and g.shape == x.shape and g.device == x.device, k
        t = torch.zeros(x.shape, dtype=x.dtype) if t is None else t
        scale = max(1.0, float(t.abs().max())) if t.numel() else 1.0
        np.testing.assert_allclose(g.cpu().numpy(), t.numpy(), rtol=1e-9, atol=1e-9 * scale,
                                   err_msg=f"operand {k}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_gradcheck_and_gradgradcheck(spec, shapes, dtype, device):
    """First and second derivatives against torch's finite differences."""
    ops = tensors(shapes, dtype, device)

    def f(*xs):
        return einsgrad.torch.einsum(spec, *xs)

    assert torch.autograd.gradcheck(f, ops)
    assert torch.autograd.gradgradcheck(f, ops)


@pytest.mark.parametrize("device", DEVICES)
def test_only_needed_gradients_and_device(device):
    """An operand without ``requires_grad`` gets none; results stay on the device."""
    X, W = tensors([(4, 3), (5, 3)], device=device)
    X = X.detach()
    y = einsgrad.torch.einsum("ik,jk->ij", X, W)
    assert y.device == W.device
    y.square().sum().backward()
    assert X.grad is None
    W2 = W.detach().clone().requires_grad_()
    torch.einsum("ik,jk->ij", X, W2).square().sum().backward()
    torch.testing.assert_close(W.grad, W2.grad)


def test_mixed_dtypes_and_compiled_objects():
    """float32 with float64 operands (torch's matmul does not mix them), and an Einsum with
    ``sizes=`` passed in place of the spec."""
    X = torch.randn(4, 3, dtype=torch.float32, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = einsgrad.torch.einsum("ik,jk->ij", X, W)
    assert y.dtype == torch.float64
    dX, dW = torch.autograd.grad(y.sum(), [X, W])
    assert dX.dtype == torch.float32 and dW.dtype == torch.float64
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    bias = einsgrad.compile("j->ij", sizes={"i": 4})
    (db,) = torch.autograd.grad(einsgrad.torch.einsum(bias, b).sum(), [b])
    torch.testing.assert_close(db, torch.full((5,), 4.0, dtype=torch.float64))


def test_torch_compile(device):
    """``torch.compile`` (one graph, no break) of a function using it gives the same values
    and gradients; a second shape (symbolic sizes, by default) too; on ``--device``."""
    if not hasattr(torch, "compile"):
        pytest.skip("no torch.compile")

    def f(X, W):
        return einsgrad.torch.einsum("ik,jk->ij", X, W).tanh().sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    for n in (4, 6):
        X, W = tensors([(n, 3), (5, 3)], device=device)
        value = compiled(X, W)
        grads = torch.autograd.grad(value, [X, W])
        X2, W2 = (t.detach().clone().requires_grad_() for t in (X, W))
        expected = torch.einsum("ik,jk->ij", X2, W2).tanh().sum()
        torch.testing.assert_close(value, expected)
        for got, want in zip(grads, torch.autograd.grad(expected, [X2, W2])):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bi,oi->bo", [(256, 512), (1024, 512)], id="linear transposed"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 3, 8, 4), (2, 3, 6, 4)], id="attention scores"),
    pytest.param("ij,jk->ki", [(3, 4), (4, 5)], id="transposed output"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], id="chain"),
])
def test_results_are_contiguous_where_torch_einsum_is(spec, shapes):
    """The layout torch.einsum returns: contiguous where it is, so that .view() works; the
    gradients too (where torch's gradient is a transposed view, as in ``ij,jk->ki``, einsgrad's
    may be one too)."""
    ops = tensors(shapes, torch.float32)
    y = einsgrad.torch.einsum(spec, *ops)
    expected = torch.einsum(spec, *ops)
    if expected.is_contiguous():
        assert y.is_contiguous()
        assert y.view(-1).shape == (y.numel(),)
    theirs = torch.autograd.grad(expected, ops, torch.ones_like(expected))
    for mine, want in zip(torch.autograd.grad(y, ops, torch.ones_like(y)), theirs):
        assert mine.is_contiguous() or not want.is_contiguous()
        torch.testing.assert_close(mine, want)


def contiguous_where_torch_einsum_is(case: Case):
    ops = [torch.tensor(x) for x in case.operands()]
    try:
        expected = torch.einsum(case.clean_spec, *ops)
    except RuntimeError:
        assume(False)
    assume(expected.is_contiguous())
    assert einsgrad.torch.einsum(case.spec, *ops).is_contiguous()


@given(einsum_cases(dtypes=(np.float64,), max_operands=2))
def test_pair_gradients_are_contiguous_where_torch_einsum_s_are(case: Case):
    """Two operands, where einsgrad may return a gradient as a transposed view (as torch does:
    einsgrad.torch_layout.strided_gradient): never where torch.einsum's gradient is
    contiguous, and the values are torch's."""
    ops = [torch.tensor(x).requires_grad_() for x in case.operands()]
    try:
        expected = torch.einsum(case.clean_spec, *ops)
    except RuntimeError:
        assume(False)
    g = torch.randn_like(expected)
    theirs = torch.autograd.grad(expected, ops, g, allow_unused=True)
    mine = torch.autograd.grad(einsgrad.torch.einsum(case.spec, *ops), ops, g, allow_unused=True)
    for a, b in zip(mine, theirs):
        if b is None or a is None:
            continue
        torch.testing.assert_close(a, b)
        if b.is_contiguous():
            assert a.is_contiguous()


@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_fresh_results_are_contiguous(case: Case):
    """Hypothesis-generated specs: a result torch.einsum returns contiguous is contiguous."""
    contiguous_where_torch_einsum_is(case)


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bsi,hdi->bhsd", [(2, 5, 6), (3, 4, 6)], id="heads projection"),
    pytest.param("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)], id="grouped"),
])
def test_results_torch_einsum_returns_strided_are_not_copied(spec, shapes):
    """Where torch.einsum returns a permuted view of its product, einsgrad returns its own
    (no copy that torch does not make); these lay the product out as torch does, so the
    strides are torch's. Values and gradients stay torch's."""
    ops = [t.requires_grad_() for t in tensors(shapes, torch.float64)]
    expected = torch.einsum(spec, *ops)
    assert not expected.is_contiguous()
    y = einsgrad.torch.einsum(spec, *ops)
    assert y.stride() == expected.stride()
    torch.testing.assert_close(y, expected)
    g = torch.randn_like(expected)
    for mine, theirs in zip(torch.autograd.grad(y, ops, g), torch.autograd.grad(expected, ops, g)):
        torch.testing.assert_close(mine, theirs)
        assert mine.is_contiguous()


@given(einsum_cases(dtypes=EXACT_DTYPES, max_operands=2))
def test_pair_results_are_contiguous_where_torch_einsum_is(case: Case):
    """Two operands, where einsgrad may leave a result as computed: never where torch.einsum's
    is contiguous (the rule of einsgrad.torch_layout against torch itself)."""
    contiguous_where_torch_einsum_is(case)


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bhqd,bhkd->bhqk", [(2, 3, 16, 4), (2, 3, 16, 4)], id="attention scores"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 3, 16, 16), (2, 3, 16, 4)], id="attention apply"),
])
def test_products_transposed_after_a_batch_split_are_computed_in_order(spec, shapes, generic):
    """A gradient that is a batched GEMM, its batch split, then transposed (dx1 = (X^T G)^T)
    is no transposed copy: computed as G^T X, contiguous, where torch.einsum's gradient is
    contiguous (attention apply); where torch's is that transposed view (the scores' key
    gradient), computed as torch computes it, X^T G, and returned as the view, with torch's
    strides. Its values are torch's."""
    source = einsgrad.compile(spec).source(*shapes, backend="torch", generic=generic)
    pullback = source[source.index("def pullback"):]
    assert ".contiguous()" not in pullback.split("return")[0]
    ops = tensors(shapes)
    g = torch.randn_like(torch.einsum(spec, *ops))
    mine = torch.autograd.grad(einsgrad.torch.einsum(spec, *ops), ops, g)
    theirs = torch.autograd.grad(torch.einsum(spec, *ops), ops, g)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)
        assert a.stride() == b.stride()


def test_strided_operands_the_backward_reads_are_saved_dense():
    """Heads stored (b, s, h, d) and read as bhsd (as a projection that torch.einsum leaves
    strided makes them): the operands the forward saves as its reshape reads them (the
    plan's Regroups) are copied dense once, before the forward, and that copy is all
    autograd saves, on every call (the forward's and the pullback's reshapes then read it as
    a view). Values and gradients are torch's."""
    spec = "bhqd,bhkd->bhqk"
    stored = tensors([(2, 16, 3, 4), (2, 16, 3, 4)])
    for _ in range(2):
        q, k = (t.permute(0, 2, 1, 3) for t in stored)
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
            y = einsgrad.torch.einsum(spec, q, k)
        assert [t.shape for t in packed] == [(2, 3, 16, 4)] * 2
        assert all(t.is_contiguous() for t in packed)
        g = torch.randn_like(y)
        mine = torch.autograd.grad(y, stored, g)
        expected = torch.einsum(spec, q, k)
        torch.testing.assert_close(y, expected)
        for a, b in zip(mine, torch.autograd.grad(expected, stored, g)):
            torch.testing.assert_close(a, b)
    assert [t.shape for t in packed] == [(2, 3, 16, 4)] * 2
    assert all(t.is_contiguous() for t in packed)


def test_list_and_sublist_forms():
    """torch.einsum's other call forms: the operands as one list, and sublists of integer
    labels (with ... for an ellipsis), the output's optional."""
    x, y = tensors([(2, 3, 4), (4, 5)])
    expected = torch.einsum("bij,jk->bik", x, y)
    torch.testing.assert_close(einsgrad.torch.einsum("bij,jk->bik", [x, y]), expected)
    torch.testing.assert_close(einsgrad.torch.einsum("bij,jk->bik", (x, y)), expected)
    torch.testing.assert_close(einsgrad.torch.einsum(x, [0, 1, 2], y, [2, 3], [0, 1, 3]), expected)
    torch.testing.assert_close(einsgrad.torch.einsum(x, [0, 1, 2], y, [2, 3]),
                               torch.einsum(x, [0, 1, 2], y, [2, 3]))
    torch.testing.assert_close(einsgrad.torch.einsum(x, [..., 2], y, [2, 51], [..., 51]),
                               torch.einsum(x, [..., 2], y, [2, 51], [..., 51]))
    dx, dy = torch.autograd.grad(einsgrad.torch.einsum(x, [0, 1, 2], y, [2, 3]).sum(), [x, y])
    assert dx.shape == x.shape and dy.shape == y.shape


@pytest.mark.parametrize("args, message", [
    pytest.param(lambda x: (x, [0, [1]]), r"operand 0's sublist holds \[1\]: a label is a hashable value", id="unhashable"),
    pytest.param(lambda x: (x, [True, 0]), r"holds True", id="bool"),
    pytest.param(lambda x: (x, [0, "j"]), r"cannot be sorted into an implicit output .* give the output sublist",
                 id="mixed types, implicit output"),
    pytest.param(lambda x: (x, [0, 1], x), r"the output sublist must be a list of labels, got Tensor", id="no sublist"),
    pytest.param(lambda x: (x, x), r"spec must be a string or an einsgrad.Einsum .*got Tensor", id="no spec"),
    pytest.param(lambda x: (x, [0, 1], [0, 2]), r"output label 'c' appears in no input", id="output label in no input"),
    pytest.param(lambda x: (), r"einsum\(\) needs a spec and its operands", id="nothing"),
])
def test_bad_sublists(args, message):
    x = tensors([(2, 3)])[0]
    with pytest.raises(einsgrad.EinsumSpecError, match=message):
        einsgrad.torch.einsum(*args(x))


def test_compiled_einsum_pickles():
    """A compiled Einsum (sizes, optimize, cache size kept) pickles before and after calls,
    with numpy and torch operands, and computes the same afterwards."""
    import pickle

    bias = einsgrad.compile("j,ij->ij", sizes={}, cache_size=3, optimize="greedy")
    fresh = pickle.loads(pickle.dumps(bias))
    b, X = tensors([(5,), (4, 5)])
    y = einsgrad.torch.einsum(bias, b, X)
    bias(np.ones(5), np.ones((4, 5)))
    again = pickle.loads(pickle.dumps(bias))
    for copy in (fresh, again):
        assert repr(copy) == repr(bias) and copy.optimize == "greedy"
        torch.testing.assert_close(einsgrad.torch.einsum(copy, b, X), y)
        np.testing.assert_array_equal(copy.vjp(np.ones((4, 5)), np.ones(5), np.ones((4, 5)))[0], np.full(5, 4.0))
    twice = pickle.loads(pickle.dumps(again))
    torch.testing.assert_close(torch.autograd.grad(einsgrad.torch.einsum(twice, b, X).sum(), [b])[0],
                               torch.autograd.grad(y.sum(), [b])[0])


def test_import_leaves_dynamo_alone_and_compile_still_traces():
    """``import einsgrad.torch`` does not import torch._dynamo (seconds of import time);
    torch.compile then still puts the call in its graph (fullgraph: no break), in a fresh
    interpreter where nothing imported dynamo first."""
    import subprocess
    import sys

    code = """
import sys, torch, einsgrad.torch
assert 'torch._dynamo' not in sys.modules, 'dynamo imported'
f = torch.compile(lambda x, w: einsgrad.torch.einsum('ik,jk->ij', x, w).sum(), backend='aot_eager', fullgraph=True)
x, w = torch.ones(4, 3, requires_grad=True), torch.ones(5, 3)
f(x, w).backward()
assert x.grad.eq(5).all()
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("spec, shapes, wrt, dtypes", [
    pytest.param("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 2)], (1,), (torch.float64,) * 2, id="grouped, weight only"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 4, 5)], (0, 1), (torch.float64,) * 2, id="scores"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], (0, 2), (torch.float64,) * 3, id="chain, two of three"),
    pytest.param("ij,jk->ik", [(2, 3), (3, 4)], (0, 1), (torch.float32, torch.float64), id="mixed dtypes"),
])
def test_saving_pair_is_found_once_and_its_pullback_is_torch_autograd(spec, shapes, wrt, dtypes):
    """The lean path of the autograd.Function: one pair per shapes, dtypes and wrt (a second
    call finds the same one), whose forward is torch.einsum's value and whose pullback of
    the saved values gives torch's autograd of torch.einsum for the operands ``wrt``."""
    compiled = einsgrad.compile(spec)
    ops = [t.detach().to(d) for t, d in zip(tensors(shapes), dtypes)]
    pair = compiled.saving_pair(*ops, wrt=wrt)
    assert compiled.saving_pair(*[torch.randn_like(t) for t in ops], wrt=wrt) is pair
    assert compiled.saving_pair(*ops, wrt=(0,) if wrt != (0,) else (1,)) is not pair
    y, *saved = pair.saving(*ops)
    leaves = [t.clone().requires_grad_() for t in ops]
    expected = torch.einsum(spec, *[t.to(torch.float64) for t in leaves])  # every case holds one
    torch.testing.assert_close(y, expected.detach())
    for k, value in zip(pair.read, saved):  # an operand saved is the operand (cast, if mixed)
        assert k is None or value is ops[k] or torch.equal(value, ops[k].to(value.dtype))
    g = torch.randn_like(y)
    theirs = torch.autograd.grad(expected, [leaves[k] for k in wrt], g)
    for values in (saved, [value if k is None else ops[k] for k, value in zip(pair.read, saved)]):
        for k, mine, want in zip(wrt, pair.pullback(g, *values), theirs):
            assert mine.dtype == ops[k].dtype
            torch.testing.assert_close(mine, want.to(mine.dtype))


def test_numpy_pullback_reads_the_forwards_copy_of_a_strided_operand():
    """numpy: heads stored (b, s, h, d) read as bhsd are copied by the forward's reshape; the
    forward-saving plan saves that copy (a Regroup, C-contiguous, not the operand's memory)
    in the operand's place, and the pullback of it gives torch's autograd of torch.einsum."""
    spec = "bhqd,bhkd->bhqk"
    rng = np.random.default_rng(3)
    q, k = (rng.standard_normal((2, 16, 3, 4)).transpose(0, 2, 1, 3) for _ in range(2))
    compiled = einsgrad.compile(spec)
    y, saved = compiled.forward_saving(q, k)
    copies = [s for s in saved if s.shape == q.shape]
    assert len(copies) == 2
    assert all(s.flags.c_contiguous and not np.shares_memory(s, q) and not np.shares_memory(s, k) for s in copies)
    g = rng.standard_normal(y.shape)
    grads = compiled.pullback(g, (q, k), saved)
    leaves = [torch.tensor(x, requires_grad=True) for x in (q, k)]
    theirs = torch.autograd.grad(torch.einsum(spec, *leaves), leaves, torch.tensor(g))
    for mine, want in zip(grads, theirs):
        np.testing.assert_allclose(mine, want.numpy(), rtol=1e-12, atol=1e-12)


def test_saving_pair_refuses_arrays_of_two_libraries():
    """Its functions take the operands as they are: a numpy array beside a tensor (which a
    call would convert) is refused, naming the types."""
    with pytest.raises(einsgrad.EinsumSpecError, match=r"saving_pair\(\) takes arrays of one library, .*got ndarray, Tensor"):
        einsgrad.compile("ij,jk->ik").saving_pair(np.ones((2, 3)), torch.ones(3, 4))
