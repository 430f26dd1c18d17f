"""``einsgrad.jax.einsum`` against ``jax.vjp``, ``jax.jvp``, ``jax.jacfwd`` and ``jax.hessian``
of ``jnp.einsum`` (skipped without jax): under ``jax.jit``, ``jax.vmap``, differentiated twice;
only the gradients asked for computed; ``precision=``, ``preferred_element_type=`` and bfloat16.
float64 needs ``jax_enable_x64``, set for this module only."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings

from strategies import EXACT_DTYPES, Case, einsum_cases, random_array

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402  (after the skip)

import einsgrad.jax  # noqa: E402

CURATED = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)], id="chain"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
    pytest.param("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], id="broadcast batch"),
    pytest.param("ij,ij->ij", [(3, 1), (3, 4)], id="size-1 broadcast"),
]


@pytest.fixture(autouse=True, scope="module")
def x64():
    """float64 in jax for these tests; the global flag is restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def operands(shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes]


def assert_close(got, expected):
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9,
                                   err_msg=f"operand {k}")


def _vjps_of_both(case: Case):
    """A case's operands, ``jax.vjp`` of ``jnp.einsum`` and of einsgrad's, and a cotangent
    (cases jnp.einsum refuses are skipped)."""
    ops = [jnp.asarray(x) for x in case.operands()]
    try:
        want = jax.vjp(lambda *a: jnp.einsum(case.clean_spec, *a), *ops)
    except (ValueError, TypeError):
        assume(False)
    G = jnp.asarray(case.cotangent(want[0].shape))
    return ops, want, G, jax.vjp(lambda *a: einsgrad.jax.einsum(case.spec, *a), *ops)


@settings(max_examples=20)  # jax compiles every primitive per new shape: ~0.3 s an example
@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_vjp_equals_jax(case: Case):
    """Forward and ``jax.vjp`` equal jax's own of ``jnp.einsum`` (float64, complex128, mixed)."""
    ops, (y, back), G, (got_y, got_back) = _vjps_of_both(case)
    assert_close([got_y], [y])
    assert_close(got_back(G), back(G))


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_jit_vmap_and_second_order(spec, shapes):
    """Under ``jax.jit``; ``jax.vmap`` over a leading batch of the first operand; the
    gradient of a gradient (the backward is jnp code, differentiable again)."""
    ops = operands(shapes)

    def loss(f):
        return lambda *a: jnp.sum(jnp.sin(f(spec, *a)))

    every = tuple(range(len(ops)))
    expected = jax.grad(loss(jnp.einsum), every)(*ops)
    assert_close(jax.jit(jax.grad(loss(einsgrad.jax.einsum), every))(*ops), expected)

    batch = operands([(3,) + shapes[0]], seed=1)[0]
    mapped = [jax.vmap(jax.grad(loss(f), every), in_axes=(0,) + (None,) * (len(ops) - 1))(batch, *ops[1:])
              for f in (einsgrad.jax.einsum, jnp.einsum)]
    assert_close(*mapped)

    def second(f):
        return jax.grad(lambda *a: jnp.sum(jax.grad(loss(f))(*a) ** 2), every)(*ops)

    assert_close(second(einsgrad.jax.einsum), second(jnp.einsum))


# -- forward mode, and reverse mode as its transpose -----------------------------------------


@settings(max_examples=20)
@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_jvp_equals_jax(case: Case):
    """``jax.jvp`` equals jax's own of ``jnp.einsum``: the primal and the tangent."""
    ops = [jnp.asarray(x) for x in case.operands()]
    rng = np.random.default_rng(case.seed + 2)
    tangents = [jnp.asarray(random_array(rng, x.shape, x.dtype)) for x in ops]
    try:
        expected = jax.jvp(lambda *a: jnp.einsum(case.spec, *a), tuple(ops), tuple(tangents))
    except (ValueError, TypeError):
        assume(False)
    assert_close(jax.jvp(lambda *a: einsgrad.jax.einsum(case.spec, *a), tuple(ops), tuple(tangents)), expected)


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_jacfwd_hessian_and_vmapped_jvp(spec, shapes):
    """``jax.jacfwd``, ``jax.jacrev`` and ``jax.hessian`` (forward over reverse) of a loss,
    under ``jax.jit``, and ``jax.jvp`` under ``jax.vmap``, against the same of ``jnp.einsum``."""
    ops = operands(shapes)

    def loss(f):
        return lambda *a: jnp.sum(jnp.sin(f(spec, *a)))

    every = tuple(range(len(ops)))
    for transform in (jax.jacfwd, jax.jacrev, jax.hessian):
        got = jax.jit(transform(loss(einsgrad.jax.einsum), every))(*ops)
        expected = transform(loss(jnp.einsum), every)(*ops)
        assert_close(jax.tree.leaves(got), jax.tree.leaves(expected))

    batch = operands([(3,) + shapes[0]], seed=1)[0]
    tangents = tuple(operands(shapes, seed=2))
    mapped = [jax.vmap(lambda x, f=f: jax.jvp(lambda *a: f(spec, *a), (x, *ops[1:]), tangents)[1])(batch)
              for f in (einsgrad.jax.einsum, jnp.einsum)]
    assert_close(*mapped)


def test_an_integer_operand_is_a_constant():
    """Mixed with an integer operand (whose tangent is jax's symbolic zero), the float one's
    gradient and jvp are jnp.einsum's."""
    counts = jnp.asarray(np.arange(12).reshape(3, 4), dtype=jnp.int32)
    W = operands([(4, 2)])[0]
    for f in (einsgrad.jax.einsum, jnp.einsum):
        assert f("ij,jk->ik", counts, W).dtype == jnp.float64
    grads = [jax.grad(lambda w, f=f: jnp.sum(f("ij,jk->ik", counts, w) ** 2))(W)
             for f in (einsgrad.jax.einsum, jnp.einsum)]
    assert_close(grads[:1], grads[1:])


class Recording(einsgrad.Einsum):
    """An Einsum that records which operands each jvp it runs (with its value, as the tangent
    rule asks) has a tangent for."""

    def __init__(self, spec):
        super().__init__(spec)
        self.tangents_given = []

    def value_and_jvp(self, tangents, *operands):
        self.tangents_given.append(tuple(k for k, t in enumerate(tangents) if t is not None))
        return super().value_and_jvp(tangents, *operands)


def _dot_generals(f, *args) -> int:
    return str(jax.make_jaxpr(f)(*args)).count("dot_general")


def test_grad_of_one_operand_computes_that_gradient_alone():
    """Eager ``jax.grad(f, argnums=1)`` runs the jvp term of operand 1 alone, and its
    transpose (the gradient) has no more matrix products than ``jnp.einsum``'s own; every
    operand costs more. Counted, not timed."""
    X, W = operands([(4, 3), (5, 3)])
    recording = Recording("ik,jk->ij")

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)))

    mine = loss(lambda x, w: einsgrad.jax.einsum(recording, x, w))
    theirs = loss(lambda x, w: jnp.einsum("ik,jk->ij", x, w))
    assert_close([jax.grad(mine, argnums=1)(X, W)], [jax.grad(theirs, argnums=1)(X, W)])
    assert recording.tangents_given == [(1,)]
    recording.tangents_given.clear()
    jax.grad(mine, argnums=(0, 1))(X, W)
    assert recording.tangents_given == [(0, 1)]

    one, both = (_dot_generals(jax.grad(mine, argnums=a), X, W) for a in (1, (0, 1)))
    assert one <= _dot_generals(jax.grad(theirs, argnums=1), X, W)
    assert both > one


def test_precision_reaches_every_product():
    """``precision=`` is on each ``dot_general`` of the forward, the jvp and the gradient (the
    transposed products keep it); a pair of unequal precisions, or a bad name, is refused."""
    X, W, V = operands([(4, 3), (3, 5), (5, 2)])

    def loss(x, w, v):
        return jnp.sum(jnp.sin(einsgrad.jax.einsum("ab,bc,cd->ad", x, w, v, precision="highest")))

    for f in (loss, jax.grad(loss, argnums=(0, 1, 2)),
              lambda x, w, v: jax.jvp(loss, (x, w, v), (x, w, v))[1]):
        jaxpr = str(jax.make_jaxpr(f)(X, W, V))
        assert jaxpr.count("dot_general") >= 2
        assert jaxpr.count("dot_general") == jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)")
    for p in (jax.lax.Precision.HIGH, ("high", "high"), jax.lax.Precision.DEFAULT):
        jaxpr = str(jax.make_jaxpr(lambda x, w: einsgrad.jax.einsum("ab,bc->ac", x, w, precision=p))(X, W))
        assert "Precision.HIGH" in jaxpr or "Precision.DEFAULT" in jaxpr
    with pytest.raises(einsgrad.EinsumSpecError, match="one precision for both operands"):
        einsgrad.jax.einsum("ab,bc->ac", X, W, precision=("high", "highest"))
    with pytest.raises(einsgrad.EinsumSpecError, match="precision='fast' is not"):
        einsgrad.jax.einsum("ab,bc->ac", X, W, precision="fast")


def _bf16(shapes, seed=0, dtype=jnp.bfloat16):
    return [x.astype(dtype) for x in operands(shapes, seed, np.float32)]


ULP = {jnp.bfloat16: 2 ** -8, jnp.float16: 2 ** -11}  # half a unit in the last place


def _assert_half_close(got, reference, scale, dtype):
    """Within a few roundings of ``dtype`` of a float32 reference, relative to the size of the
    terms (the same contraction over the moduli)."""
    assert got.dtype == dtype, got.dtype
    err = np.abs(np.asarray(got, np.float32) - np.asarray(reference, np.float32))
    assert (err <= 8 * ULP[dtype] * np.asarray(scale, np.float32) + 1e-6).all(), err.max()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("spec, shapes", CURATED)
def test_half_precision_against_a_float32_reference(spec, shapes, dtype):
    """bfloat16 and float16 operands: forward, gradient and jvp in that dtype, within its
    rounding of ``jnp.einsum`` in float32 on the same (representable) values."""
    ops = _bf16(shapes, dtype=dtype)
    ref = [x.astype(jnp.float32) for x in ops]
    moduli = [jnp.abs(x) for x in ref]
    y = einsgrad.jax.einsum(spec, *ops)
    _assert_half_close(y, jnp.einsum(spec, *ref), jnp.einsum(spec, *moduli), dtype)

    G = _bf16([y.shape], seed=3, dtype=dtype)[0]
    every = tuple(range(len(ops)))
    grads = jax.grad(lambda *a: jnp.vdot(einsgrad.jax.einsum(spec, *a), G), every)(*ops)
    expected = jax.grad(lambda *a: jnp.vdot(jnp.einsum(spec, *a), G.astype(jnp.float32)), every)(*ref)
    scales = jax.grad(lambda *a: jnp.vdot(jnp.einsum(spec, *a), jnp.abs(G.astype(jnp.float32))), every)(*moduli)
    for g, e, s in zip(grads, expected, scales):
        _assert_half_close(g, e, s, dtype)

    tangents = _bf16(shapes, seed=4, dtype=dtype)
    _, dy = jax.jvp(lambda *a: einsgrad.jax.einsum(spec, *a), tuple(ops), tuple(tangents))
    _, expected = jax.jvp(lambda *a: jnp.einsum(spec, *a), tuple(ref), tuple(t.astype(jnp.float32) for t in tangents))
    _, scale = jax.jvp(lambda *a: jnp.einsum(spec, *a), tuple(moduli),
                       tuple(jnp.abs(t.astype(jnp.float32)) for t in tangents))
    _assert_half_close(dy, expected, scale, dtype)


@pytest.mark.parametrize("spec, shapes", CURATED)
def test_preferred_element_type(spec, shapes):
    """bfloat16 operands accumulated in float32: a float32 result with ``jnp.einsum``'s values
    (products of bf16 values are exact in float32), bfloat16 gradients like jnp.einsum's."""
    ops = _bf16(shapes)
    for f in (einsgrad.jax.einsum, jnp.einsum):
        assert f(spec, *ops, preferred_element_type=jnp.float32).dtype == jnp.float32
    got, expected = (f(spec, *ops, preferred_element_type=jnp.float32) for f in (einsgrad.jax.einsum, jnp.einsum))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    every = tuple(range(len(ops)))
    grads = [jax.grad(lambda *a, f=f: jnp.sum(f(spec, *a, preferred_element_type=jnp.float32)), every)(*ops)
             for f in (einsgrad.jax.einsum, jnp.einsum)]
    for g, e in zip(*grads):
        assert g.dtype == e.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(e, np.float32), rtol=2e-2, atol=2e-2)
    with pytest.raises(einsgrad.EinsumSpecError, match="preferred_element_type must be a dtype"):
        einsgrad.jax.einsum(spec, *ops, preferred_element_type="fast")


def test_bfloat16_numpy_arrays_are_refused_by_name():
    """numpy's operations do not compute in ml_dtypes' bfloat16 (its matmul returns float32):
    numpy arrays of it are refused, naming the dtype, where jax arrays of it run."""
    x = np.ones((2, 3), dtype=jnp.bfloat16)
    with pytest.raises(einsgrad.EinsumSpecError, match="operand 0 has dtype bfloat16, which numpy does not compute in"):
        einsgrad.einsum("ij,jk->ik", x, x.T)
    assert einsgrad.einsum("ij,jk->ik", jnp.asarray(x), jnp.asarray(x.T)).dtype == jnp.bfloat16


def test_products_read_their_operands_as_stored():
    """The jax dialect's pairwise products are ``lax.dot_general`` with dimension numbers:
    attention's gradients need no transposed view or copy, and the gradient of an outer
    product's operand is a dot (as jnp.einsum's), not a product and a sum."""
    source = einsgrad.compile("bhqk,bhkd->bhqd").source((2, 3, 4, 5), (2, 3, 5, 6), backend="jax")
    code = source.split("# einsgrad:", 1)[1]
    assert code.count("_dot(") == 6 and not any(t in code for t in (".T", "swapaxes", "transpose"))
    a, b = operands([(4, 3), (4, 5)])
    G = operands([(4, 3, 5)], seed=1)[0]

    def reductions(f):
        grad = jax.grad(lambda x, y: jnp.vdot(f("bi,bj->bij", x, y), G), (0, 1))
        return str(jax.make_jaxpr(grad)(a, b)).count("reduce_sum")

    assert reductions(einsgrad.jax.einsum) <= reductions(jnp.einsum)


def _primitives(f, *args) -> dict[str, int]:
    text = str(jax.make_jaxpr(f)(*args))
    return {p: text.count(f" {p}[") for p in ("dot_general", "transpose", "reshape")}


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bi,oi->bo", [(3, 5), (8, 5)], id="mlp layer"),
    pytest.param("bsi,hdi->bhsd", [(2, 3, 8), (2, 4, 8)], id="attention projection"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)], id="attention apply"),
    pytest.param("bhqd,ohd->bqo", [(2, 2, 3, 4), (6, 2, 4)], id="attention output"),
    pytest.param("bi,oij,bj->bo", [(5, 3), (4, 3, 6), (5, 6)], id="bilinear"),
    pytest.param("nabcd,aep,pbfq,qcgr,rdh->nefgh",
                 [(3, 2, 3, 2, 2), (2, 3, 4), (4, 3, 2, 3), (3, 2, 3, 2), (2, 2, 3)], id="tensor train"),
    pytest.param("bij,bji->b", [(3, 4, 5), (3, 5, 4)], id="batched dot"),
])
def test_gradient_has_the_products_of_jnp_einsum(spec, shapes):
    """The training benchmark's specs: the gradient (jax's transpose of einsgrad's jvp) has
    jnp.einsum's matrix products, one ``dot_general`` per product over the labels as stored:
    no reshape into GEMM blocks, and where jnp.einsum needs no transpose (a GEMM-shaped
    layer), none (not ``(W Xᵀ)ᵀ`` for ``X Wᵀ``). The values match."""
    arrays = operands(shapes)

    def grad(f):
        return jax.grad(lambda *a: jnp.sum(jnp.sin(f(spec, *a))), tuple(range(len(arrays))))

    mine, theirs = _primitives(grad(einsgrad.jax.einsum), *arrays), _primitives(grad(jnp.einsum), *arrays)
    assert mine["dot_general"] == theirs["dot_general"]
    assert mine["reshape"] == 0
    assert mine["transpose"] == 0 or theirs["transpose"] > 0
    source = einsgrad.compile(spec).source(*shapes, backend="jax").split("# einsgrad:", 1)[1]
    one_shot = source.split("def forward_saving", 1)[0]  # forward and vjp: nothing saved
    assert "reshape" not in one_shot, one_shot
    assert_close(jax.jit(grad(einsgrad.jax.einsum))(*arrays), grad(jnp.einsum)(*arrays))


@settings(max_examples=20)
@given(einsum_cases(dtypes=(np.dtype(np.float32),), mixed=False))
def test_float32_gradients_equal_jax(case: Case):
    """float32 (the dtype of XLA's CPU fast path): forward and ``jax.vjp`` equal jax's own of
    ``jnp.einsum`` to float32 rounding, relative to the sums of absolute products (the same
    einsum of ``|x|``, in float64)."""
    ops, (y, back), G, (got_y, got_back) = _vjps_of_both(case)
    scale = [jnp.abs(x).astype(jnp.float64) for x in ops]
    y_scale, back_scale = jax.vjp(lambda *a: jnp.einsum(case.clean_spec, *a), *scale)
    for got, want, bound in zip([got_y, *got_back(G)], [y, *back(G)],
                                [y_scale, *back_scale(jnp.abs(G).astype(jnp.float64))]):
        assert got.dtype == want.dtype == jnp.float32 and got.shape == want.shape
        assert np.all(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
                      <= 1e-5 * np.asarray(bound) + 1e-30)



def _pullback_einsum(compiled: einsgrad.Einsum):
    """The einsum as a ``jax.custom_vjp`` on einsgrad's own forward-saving and pullback plans
    (reverse mode only): what JAX's transpose of the jvp plan is compared with."""
    @jax.custom_vjp
    def f(*arrays):
        return compiled(*arrays)

    def forward(*arrays):
        y, saved = compiled.forward_saving(*arrays)
        return y, (arrays, saved)

    def backward(residuals, g):
        arrays, saved = residuals
        return tuple(compiled.pullback(g, arrays, saved))

    f.defvjp(forward, backward)
    return f


def _products(f, *args) -> dict:
    """Each ``dot_general`` of ``f``'s jaxpr (nested ones too) by the element counts of its
    operands (sorted) and of its result: the products and their FLOPs, layouts aside."""
    from collections import Counter

    found = Counter()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                sizes = sorted(int(np.prod(v.aval.shape)) for v in eqn.invars)
                found[(tuple(sizes), int(np.prod(eqn.outvars[0].aval.shape)))] += 1
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else [param]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(f)(*args).jaxpr)
    return dict(found)


@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bi,oi->bo", [(3, 5), (8, 5)], id="mlp layer"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)], id="attention apply"),
    pytest.param("bsi,hdi->bhsd", [(2, 3, 8), (2, 4, 8)], id="attention projection"),
    pytest.param("bi,oij,bj->bo", [(5, 3), (4, 3, 6), (5, 6)], id="bilinear"),
    pytest.param("ij,jk,kl,lm->im", [(2, 9), (9, 3), (3, 8), (8, 4)], id="chain"),
    pytest.param("nabcd,aep,pbfq,qcgr,rdh->nefgh",
                 [(3, 2, 3, 2, 2), (2, 3, 4), (4, 3, 2, 3), (3, 2, 3, 2), (2, 2, 3)], id="tensor train"),
    pytest.param("ii,i->i", [(3, 3), (3,)], id="diagonal"),
])
def test_reverse_mode_is_the_pullback_plan(spec, shapes):
    """JAX's transpose of einsgrad's jvp plan (the custom_jvp) makes the products of einsgrad's
    own forward-saving plan and pullback (a custom_vjp on them), product for product: reverse
    mode stays on einsgrad's tree, with forward mode kept. Values agree."""
    compiled, arrays = einsgrad.compile(spec), operands(shapes)
    every = tuple(range(len(arrays)))

    def grad(f):
        return jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), every)

    ours = grad(lambda *a: einsgrad.jax.einsum(compiled, *a))
    pullback = grad(_pullback_einsum(compiled))
    assert _products(ours, *arrays) == _products(pullback, *arrays)
    assert_close(jax.jit(ours)(*arrays), pullback(*arrays))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spec, shapes", [
    pytest.param("bi,oi->bo", [(16, 32), (24, 32)], id="mlp layer"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 4, 16, 16), (2, 4, 16, 8)], id="attention apply"),
])
def test_jit_grad_compiles_to_jnp_einsums_program(spec, shapes, dtype):
    """jit(grad) of the GEMM-shaped layers compiles to jnp.einsum's program, instruction for
    instruction (names and source locations aside): no transposed product or copy."""
    from benchmarks.jax_spellings import normalised_hlo

    arrays = operands(shapes, dtype=dtype)
    texts = []
    for use in (einsgrad.jax.einsum, jnp.einsum):
        step = jax.jit(jax.grad(lambda *a, use=use: jnp.sum(jnp.sin(use(spec, *a))), (0, 1)))
        texts.append(normalised_hlo(step.lower(*arrays).compile().as_text()))
    assert texts[0] == texts[1]


def test_the_products_tell_two_trees_apart():
    """The comparison above can fail: a chain's gradient on one contraction tree does not have
    the products of the pullback on another, and has those of its own."""
    spec, arrays = "ij,jk,kl,lm->im", operands([(2, 9), (9, 3), (3, 8), (8, 4)])
    left, split = (einsgrad.compile(spec, optimize=path) for path in ([(0, 1), (0, 2), (0, 1)], [(2, 3), (0, 1), (0, 1)]))

    def products(f):
        return _products(jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), (0, 1, 2, 3)), *arrays)

    ours = products(lambda *a: einsgrad.jax.einsum(left, *a))
    assert ours == products(_pullback_einsum(left))
    assert ours != products(_pullback_einsum(split))
