"""Large plans as a loop over a step table (einsgrad.tables): the same values as the
straight-line code, checked against torch autograd and finite differences, in every dialect.

Plans past ``tables.TABLE_STEPS`` steps are tables; the property tests set the threshold to 0
for the duration of one example, so that every plan, however small, runs as a table.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytest
from hypothesis import given, settings

import einsgrad
from einsgrad import tables
from oracles import numeric_vjp_check, reference_einsum, torch_vjp, upcast
from strategies import EXACT_DTYPES, einsum_cases, extended_cases

RTOL = 1e-9


@contextlib.contextmanager
def every_plan_a_table():
    """Within the block, every plan (of an Einsum compiled there) is rendered as a table."""
    before = tables.TABLE_STEPS
    tables.TABLE_STEPS = 0
    try:
        yield
    finally:
        tables.TABLE_STEPS = before


def assert_close(got, expected, what: str) -> None:
    expected = upcast(expected)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(upcast(got), expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def assert_network_agrees(spec: str, ops, G, got: tuple, other: tuple, other_name: str) -> None:
    """``got`` and ``other``, each (forward, vjp gradients, pullback gradients) of ``spec``,
    against numpy's forward and torch autograd's gradients, and against each other."""
    y, grads, pulled = got
    y0, grads0, pulled0 = other
    expected = torch_vjp(spec, ops, G)
    assert expected is not None
    assert_close(y, np.einsum(spec, *ops, optimize=True), "forward")
    assert_close(y, y0, f"forward, {other_name}")
    for k, (g, p, g0, p0, t) in enumerate(zip(grads, pulled, grads0, pulled0, expected)):
        assert_close(g, t, f"vjp, operand {k}")
        assert_close(p, t, f"pullback, operand {k}")
        assert_close(g, g0, f"vjp, operand {k}, {other_name}")
        assert_close(p, p0, f"pullback, operand {k}, {other_name}")


def _assert_rounding_apart(got, expected, what: str) -> None:
    """Equal, or for inexact dtypes a few roundings apart. Straight-line numpy code reads a
    small transposed copy inside its GEMM (:mod:`einsgrad.fused_copies`), where a step table
    copies it first, and numpy's matmul sums a strided side in another order than a contiguous
    one: ``abc,abdc,ad->`` at shapes (1,2,1), (1,2,3,1), (1,3) gives gradients 1 ulp apart."""
    if not np.issubdtype(np.asarray(got).dtype, np.inexact):
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    eps = np.finfo(np.asarray(got).dtype).eps
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=16 * eps, atol=16 * eps * scale, err_msg=what)


@settings(deadline=None, max_examples=60)
@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_table_code_matches_numpy_and_torch_autograd(case):
    """Forward, vjp and pullback of table code: numpy's forward and torch's gradients, each
    gradient of its operand's dtype and shape, sharing no memory with the operands, and the
    straight-line code's values within rounding (:func:`_assert_rounding_apart`)."""
    pytest.importorskip("torch")
    ops = case.operands()
    with every_plan_a_table():
        e = einsgrad.compile(case.spec)
        assert "json.loads" in e.source(*[x.shape for x in ops])
        y = e(*ops)
        G = case.cotangent(np.shape(y))
        grads = e.vjp(G, *ops)
        _, pullback = e.value_and_pullback(*ops)
        pulled = pullback(G)
    assert_close(y, np.einsum(case.clean_spec, *ops), "forward")
    expected = torch_vjp(case.clean_spec, ops, G) or torch_vjp(case.explicit_spec, ops, G)
    if expected is None:  # torch refuses the spec: finite differences instead
        numeric_vjp_check(lambda *xs: np.einsum(case.clean_spec, *xs), ops, G, grads)
        expected = grads
    lines = einsgrad.Einsum(case.spec).vjp(G, *ops)  # small: straight-line code
    for k, (g, p, t, x, s) in enumerate(zip(grads, pulled, expected, ops, lines)):
        assert g.dtype == x.dtype and g.shape == x.shape, k
        assert g.flags.writeable == s.flags.writeable, k  # a broadcast is a read-only view in both
        assert not any(np.shares_memory(g, o) for o in ops), k
        _assert_rounding_apart(g, s, f"table against straight-line code, operand {k}")
        assert_close(g, t, f"vjp, operand {k}")
        assert_close(p, t, f"pullback, operand {k}")


@settings(deadline=None, max_examples=40)
@given(extended_cases())
def test_table_code_of_extended_specs_matches_finite_differences(case):
    """Diagonal placement, broadcasts and sums of the extended notation, as tables."""
    inputs, output, ops, sizes = case.inputs, case.output, case.operands(), case.sizes
    with every_plan_a_table():
        e = einsgrad.compile(case.spec, sizes=sizes)
        y = e(*ops)
        G = case.cotangent(np.shape(y))
        grads = e.vjp(G, *ops)
    f = functools.partial(reference_einsum, inputs, output, sizes=sizes)
    assert_close(y, f(ops), "forward")
    numeric_vjp_check(lambda *xs: f(list(xs)), ops, G, grads)


def chain(n: int, size: int = 3, seed: int = 0):
    from opt_einsum import get_symbol  # a-z, A-Z, then unicode

    letters = [get_symbol(i) for i in range(n + 1)]
    spec = ",".join(letters[i] + letters[i + 1] for i in range(n)) + f"->{letters[0]}{letters[n]}"
    rng = np.random.default_rng(seed)
    return spec, [rng.standard_normal((size, size)) / np.sqrt(size) for _ in range(n)]


def test_a_long_chain_is_a_compact_table_that_runs_as_shown():
    """A 180-matrix chain's vjp has more steps than TABLE_STEPS: its source is a few kernels
    and a table, less than half the straight-line code; exec'd as shown, it gives what the
    Einsum gives, bit for bit, and both are numpy's product and torch's gradients."""
    torch = pytest.importorskip("torch")
    spec, ops = chain(180)
    e = einsgrad.compile(spec)
    shapes = [x.shape for x in ops]
    source = e.source(*shapes)
    assert "_steps_vjp = json.loads" in source and "_steps_forward " not in source  # 536 and 179 steps
    before, tables.TABLE_STEPS = tables.TABLE_STEPS, 10**9
    try:
        straight = einsgrad.Einsum(spec).source(*shapes)
    finally:
        tables.TABLE_STEPS = before
    vjp, straight_vjp = (text[text.index("\n\n\n", text.index("def forward(")):text.index("def forward_saving")]
                         for text in (source, straight))  # the table and kernels come before its def
    assert "json" not in straight and len(vjp) < len(straight_vjp) / 2  # a row per step, no comments or dels
    namespace: dict = {}
    exec(compile(source, "<shown>", "exec"), namespace)
    y = e(*ops)
    G = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(y, np.linalg.multi_dot(ops), rtol=1e-10)
    np.testing.assert_allclose(namespace["forward"](*ops)[0], y, rtol=0, atol=0)
    tensors = [torch.tensor(x, requires_grad=True) for x in ops]
    product = functools.reduce(torch.matmul, tensors)
    product.backward(torch.tensor(G))
    shown = namespace["vjp"](G, *ops)
    y2, saved = namespace["forward_saving"](*ops)[0], namespace["forward_saving"](*ops)[1:]
    pulled = namespace["pullback"](G, *saved)
    for k, (g, t) in enumerate(zip(e.vjp(G, *ops), tensors)):
        assert_close(g, t.grad.numpy(), f"vjp, operand {k}")
        np.testing.assert_array_equal(shown[k], g)
        np.testing.assert_array_equal(pulled[k], g)
    np.testing.assert_array_equal(y2, y)


def test_table_code_with_mixed_dtypes_casts_and_keeps_each_gradients_dtype():
    a, b = np.ones((3, 4), np.float32), np.arange(20.0).reshape(4, 5)
    with every_plan_a_table():
        e = einsgrad.compile("ij,jk->ik")
        y = e(a, b)
        da, db = e.vjp(np.ones((3, 5)), a, b)
    np.testing.assert_allclose(y, a.astype(np.float64) @ b)
    assert y.dtype == np.float64 and da.dtype == np.float32 and db.dtype == np.float64
    np.testing.assert_allclose(da, np.ones((3, 5)) @ b.T, rtol=1e-6)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ii,i->i", [(3, 3), (3,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("i,j->ij", [(3,), (4,)]),
])
def test_table_code_in_torch_matches_torch_autograd(spec, shapes):
    torch = pytest.importorskip("torch")
    import einsgrad.torch as et

    rng = np.random.default_rng(0)
    mine = [torch.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    theirs = [t.detach().clone().requires_grad_(True) for t in mine]
    with every_plan_a_table():
        y = et.einsum(einsgrad.compile(spec), *mine)
        y.backward(torch.ones_like(y))
    torch.einsum(spec, *theirs).backward(torch.ones_like(y))
    torch.testing.assert_close(y, torch.einsum(spec, *theirs))
    for k, (m, t) in enumerate(zip(mine, theirs)):
        torch.testing.assert_close(m.grad, t.grad, msg=f"operand {k}")


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
])
def test_table_code_in_jax_matches_jax_autodiff(spec, shapes):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import einsgrad.jax as ej

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(0)
        ops = [jnp.asarray(rng.standard_normal(s)) for s in shapes]
        every = tuple(range(len(ops)))
        with every_plan_a_table():
            e = einsgrad.compile(spec)
            mine = jax.grad(lambda *xs: ej.einsum(e, *xs).sum(), argnums=every)(*ops)
        theirs = jax.grad(lambda *xs: jnp.einsum(spec, *xs).sum(), argnums=every)(*ops)
    finally:
        jax.config.update("jax_enable_x64", before)
    for k, (m, t) in enumerate(zip(mine, theirs)):
        np.testing.assert_allclose(np.asarray(m), np.asarray(t), rtol=1e-10, err_msg=f"operand {k}")


def test_a_vendored_module_of_a_long_chain_runs_its_table_standalone():
    spec, ops = chain(180)
    e = einsgrad.compile(spec)
    text = e.module(*[x.shape for x in ops])
    assert "_steps__vjp = json.loads" in text
    namespace: dict = {}
    exec(compile(text, "<module>", "exec"), namespace)
    G = np.random.default_rng(2).standard_normal((3, 3))
    for k, (mine, theirs) in enumerate(zip(namespace["vjp"](G, *ops), e.vjp(G, *ops))):
        np.testing.assert_array_equal(mine, theirs, err_msg=f"operand {k}")


def test_a_chain_of_unicode_labels_runs_as_a_table_with_no_label_in_its_code():
    """A 520-matrix chain (521 labels, most past Z): every function is a table, the user's
    labels appear nowhere but in the ASCII header comment, and the gradients obey
    ``<dL/dX_k, X_k> = <G, Y>`` for every operand (Euler's identity for multilinear maps)."""
    from opt_einsum import get_symbol

    n, rng = 520, np.random.default_rng(4)
    spec = ",".join(get_symbol(i) + get_symbol(i + 1) for i in range(n)) + f"->{get_symbol(0)}{get_symbol(n)}"
    ops = [rng.standard_normal((2, 2)) / np.sqrt(2) for _ in range(n)]
    e = einsgrad.compile(spec)
    source = e.source(*[x.shape for x in ops])
    assert source.count("json.loads(\"\"\"[") == 4 and source.isascii()
    y = e(*ops)
    np.testing.assert_allclose(y, np.linalg.multi_dot(ops), rtol=1e-10, atol=1e-12)
    G = rng.standard_normal(y.shape)
    total = np.vdot(G, y)
    for k, (g, x) in enumerate(zip(e.vjp(G, *ops), ops)):
        assert abs(np.vdot(g, x) - total) <= 1e-10 * np.linalg.norm(g) * np.linalg.norm(x), k


@pytest.mark.parametrize("network", ["tree", "grid"])
def test_whether_a_plan_is_a_table_counts_its_steps_after_folding_copies(network):
    """``tabled`` for numpy (which folds small copies into their readers) says whether the
    folded plan, as ``fused_copies.fused`` makes it, has more than ``TABLE_STEPS`` steps, at
    every threshold around that count: its shortcut (a plan with more steps than its copies can
    account for is a table) agrees with counting the folded plan's steps."""
    from benchmarks.network_cases import grid, tree

    from einsgrad import dialects, fused_copies, plan, shapes, spec

    net = tree(40) if network == "tree" else grid(5, 5)
    bound = shapes.bind(spec.parse(net.spec), net.shapes)
    sweep = plan.sweep(bound, plan.forward_path(bound, "greedy"), tuple(range(net.tensors)))
    plans = [sweep.forward(), sweep.vjp(), *sweep.pair()]
    assert any(len(fused_copies.fused(p).steps) < len(p.steps) for p in plans), "a network whose copies fold"
    before = tables.TABLE_STEPS
    try:
        for program in plans:
            count, folded = len(program.steps), len(fused_copies.fused(program).steps)
            copies = sum(type(s.operation).__name__ == "Copy" for s in program.steps)
            for threshold in sorted({count // 3, count - copies - 1, count - copies, folded - 1, folded, count - 1}):
                tables.TABLE_STEPS = threshold
                assert tables.tabled(program, dialects.NUMPY) == (folded > threshold), (threshold, count, folded)
    finally:
        tables.TABLE_STEPS = before
