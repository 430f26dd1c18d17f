"""``einsgrad.jax.einsum``'s dtypes against ``jnp.einsum``'s (skipped without jax).

``preferred_element_type`` reaches each ``dot_general`` of the forward, of the jvp and of the
gradients (JAX's transposes of the jvp's dots), on half-precision operands as they are: no
float32 copy of an operand, as in ``jnp.einsum``. The dtypes of the result, the cotangent, the
gradients, the jvp and ``jax.jacfwd`` equal ``jnp.einsum``'s for half, mixed, narrower and
integer cases, with values within the rounding of the narrowest type involved of a float32
(or exact integer) reference. The programs themselves: ``tests/test_jax_hlo.py``."""

from __future__ import annotations

import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402  (after the skip)

import einsgrad  # noqa: E402
import einsgrad.jax  # noqa: E402

UNIT = {"bfloat16": 2 ** -8, "float16": 2 ** -11, "float32": 2 ** -24}  # half a unit in the last place

SPECS = [
    pytest.param("ik,jk->ij", [(4, 3), (5, 3)], id="linear"),
    pytest.param("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)], id="chain"),
    pytest.param("bi,oi->b", [(4, 3), (5, 3)], id="a label summed alone"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)], id="attention scores"),
    pytest.param("iij->ji", [(3, 3, 2)], id="repeated label"),
]

# (the operands' dtypes, cycled over the operands; preferred_element_type)
DTYPE_CASES = [
    pytest.param(("bfloat16",), "float32", id="bfloat16 to float32"),
    pytest.param(("float16",), "float32", id="float16 to float32"),
    pytest.param(("bfloat16",), None, id="bfloat16"),
    pytest.param(("float16",), None, id="float16"),
    pytest.param(("bfloat16", "float32"), None, id="bfloat16 and float32"),
    pytest.param(("bfloat16", "float32"), "float32", id="bfloat16 and float32 to float32"),
    pytest.param(("float16", "bfloat16"), None, id="float16 and bfloat16"),
    pytest.param(("float16", "bfloat16"), "float32", id="float16 and bfloat16 to float32"),
    pytest.param(("float32",), "bfloat16", id="float32 to bfloat16"),
    pytest.param(("bfloat16",), "float16", id="bfloat16 to float16"),
    pytest.param(("int8", "bfloat16"), "float32", id="int8 and bfloat16 to float32"),
]


def _operands(shapes, dtypes, seed=0):
    """Small integers (exact in every dtype here) as arrays of ``dtypes``, cycled."""
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.integers(-4, 5, s) * (0.25 if "int" not in dtypes[k % len(dtypes)] else 1))
            .astype(dtypes[k % len(dtypes)]) for k, s in enumerate(shapes)]


def _unit(*dtypes) -> float:
    """The rounding of the narrowest floating dtype of ``dtypes``."""
    return max(UNIT.get(jnp.dtype(d).name, 0.0) for d in dtypes)


def _assert_near(got, reference, scale, unit: float):
    err = np.abs(np.asarray(got, np.float32) - np.asarray(reference, np.float32))
    assert (err <= 8 * unit * np.asarray(scale, np.float32) + 1e-6).all(), err.max()


def _floating(ops) -> list[int]:
    return [k for k, a in enumerate(ops) if jnp.issubdtype(a.dtype, jnp.inexact)]


@pytest.mark.parametrize("dtypes, preferred", DTYPE_CASES)
@pytest.mark.parametrize("spec, shapes", SPECS)
def test_dtypes_and_values_follow_jnp_einsum(spec, shapes, dtypes, preferred):
    """The result's dtype, the cotangent's (``jax.vjp`` takes one of the result's dtype), each
    gradient's, the jvp's and jacfwd's are ``jnp.einsum``'s; the values are within the rounding
    of the narrowest dtype involved (the result's or the gradient's, and what the products
    accumulate in) of ``jnp.einsum`` in float32 on the same values."""
    ops = _operands(shapes, dtypes)
    accumulate = jnp.dtype(preferred) if preferred is not None else jnp.result_type(*ops)
    ref = [a.astype(jnp.float32) for a in ops]
    moduli = [jnp.abs(a) for a in ref]
    wrt = _floating(ops)  # every operand but an integer one

    def call(f, values, at):
        full = list(ops)
        for k, v in zip(at, values):
            full[k] = v
        return f(spec, *full, preferred_element_type=preferred)

    y, want = (call(f, [], []) for f in (einsgrad.jax.einsum, jnp.einsum))
    assert y.dtype == want.dtype
    _assert_near(y, jnp.einsum(spec, *ref), jnp.einsum(spec, *moduli), _unit(y.dtype, accumulate))
    if not wrt:  # an integer operand alone: nothing to differentiate
        return

    G = _operands([y.shape], (y.dtype.name,), seed=3)[0]
    (_, pull), (_, theirs) = (jax.vjp(lambda *a, f=f: call(f, a, wrt), *[ops[k] for k in wrt])
                              for f in (einsgrad.jax.einsum, jnp.einsum))
    grads, expected = pull(G), theirs(G)
    G32 = G.astype(jnp.float32)
    exact = jax.vjp(lambda *a: jnp.einsum(spec, *[a[wrt.index(k)] if k in wrt else ref[k] for k in range(len(ops))]),
                    *[ref[k] for k in wrt])[1](G32)
    scales = jax.vjp(lambda *a: jnp.einsum(spec, *[a[wrt.index(k)] if k in wrt else moduli[k]
                                                   for k in range(len(ops))]),
                     *[moduli[k] for k in wrt])[1](jnp.abs(G32))
    for g, e, x, s in zip(grads, expected, exact, scales):
        assert g.dtype == e.dtype
        _assert_near(g, x, s, _unit(g.dtype, accumulate, G.dtype))

    primals = tuple(ops[k] for k in wrt)  # the jvp's and jacfwd's types, traced alone (jax.eval_shape)
    (_, dy), (_, dwant) = (jax.eval_shape(lambda *a, f=f: jax.jvp(lambda *b: call(f, b, wrt), a, a), *primals)
                           for f in (einsgrad.jax.einsum, jnp.einsum))
    assert dy.dtype == dwant.dtype == y.dtype
    first = wrt[0]
    jacobians = [jax.eval_shape(jax.jacfwd(lambda a, f=f: call(f, [a], [first])), ops[first])
                 for f in (einsgrad.jax.einsum, jnp.einsum)]
    assert jacobians[0].dtype == jacobians[1].dtype and jacobians[0].shape == jacobians[1].shape


def _dot_generals(jaxpr: str) -> int:
    return jaxpr.count("dot_general[")


def _assert_products_take(jaxpr: str, preferred: str):
    """Every dot_general of a printed jaxpr has ``preferred_element_type=preferred``, and
    nothing is converted to it (an operand copied to float32 first)."""
    assert _dot_generals(jaxpr) >= 1
    assert jaxpr.count(f"preferred_element_type={preferred}") == _dot_generals(jaxpr), jaxpr
    assert not re.search(rf"convert_element_type\[new_dtype={preferred}\b", jaxpr), jaxpr


def _three_ways(einsum, spec: str, count: int):
    """The forward, ``jax.grad`` of a nonlinear loss, and ``jax.jvp`` of ``einsum`` in float32
    accumulation."""
    def forward(*a):
        return einsum(spec, *a, preferred_element_type=jnp.float32)

    def loss(*a):
        return jnp.sum(jnp.sin(forward(*a)))

    every = tuple(range(count))
    return [forward, jax.grad(loss, every), lambda *a: jax.jvp(forward, a, a)[1]]


LAYERS = [
    pytest.param("bi,oi->bo", [(6, 10), (12, 10)], id="mlp layer"),
    pytest.param("bsi,hdi->bhsd", [(2, 6, 16), (2, 8, 16)], id="attention projection"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 2, 6, 6), (2, 2, 6, 8)], id="attention apply"),
    pytest.param("ab,bc,cd->ad", [(4, 3), (3, 5), (5, 2)], id="chain"),
    pytest.param(einsgrad.compile("ab,bc,cd->ad", memory_limit=12), [(4, 3), (3, 5), (5, 2)], id="sliced chain"),
]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("spec, shapes", LAYERS)
def test_products_read_half_precision_operands_as_they_are(spec, shapes, dtype):
    """With ``preferred_element_type=float32``, each dot of the forward, of the gradient and
    of the jvp (under a ``memory_limit`` too, one per slice) takes it and reads its operands
    as they are: no operand is converted to float32, as in ``jnp.einsum``'s jaxprs (the same
    check holds there). Casting the operands first, as einsgrad did before, fails it."""
    ops = _operands(shapes, (dtype,))
    text = str(spec.spec) if isinstance(spec, einsgrad.Einsum) else spec
    for mine, theirs in zip(_three_ways(einsgrad.jax.einsum, spec, len(ops)), _three_ways(jnp.einsum, text, len(ops))):
        _assert_products_take(str(jax.make_jaxpr(mine)(*ops)), "float32")
        _assert_products_take(str(jax.make_jaxpr(theirs)(*ops)), "float32")

    def cast_first(spec, *a, preferred_element_type):
        return einsgrad.jax.einsum(spec, *[x.astype(preferred_element_type) for x in a])

    with pytest.raises(AssertionError):
        _assert_products_take(str(jax.make_jaxpr(_three_ways(cast_first, spec, len(ops))[0])(*ops)), "float32")


def test_the_accumulation_is_the_calls_own():
    """An einsum with ``preferred_element_type`` leaves the next call without it as it was:
    a plain call on bfloat16 arrays (``Einsum.__call__``) then accumulates in bfloat16."""
    X, W = _operands([(4, 3), (5, 3)], ("bfloat16",))
    lin = einsgrad.compile("ik,jk->ij")
    assert einsgrad.jax.einsum(lin, X, W, preferred_element_type=jnp.float32).dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(lin)(X, W))
    assert "preferred_element_type=bfloat16" in jaxpr and lin(X, W).dtype == jnp.bfloat16


def test_integer_operands_accumulate_in_the_type_asked_for():
    """int8 products past int8's range: ``preferred_element_type=int32`` gives the exact sums,
    as ``jnp.einsum`` does; without it both wrap around in int8 alike; float32 asked for gives
    float32 values, the same exact ones."""
    rng = np.random.default_rng(0)
    x, w = rng.integers(-100, 100, (4, 6)), rng.integers(-100, 100, (5, 6))
    X, W = jnp.asarray(x, jnp.int8), jnp.asarray(w, jnp.int8)
    exact = x @ w.T
    assert np.abs(exact).max() > 127
    for preferred, dtype in ((jnp.int32, jnp.int32), (jnp.float32, jnp.float32)):
        got = einsgrad.jax.einsum("ik,jk->ij", X, W, preferred_element_type=preferred)
        want = jnp.einsum("ik,jk->ij", X, W, preferred_element_type=preferred)
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), exact)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    got, want = (f("ik,jk->ij", X, W) for f in (einsgrad.jax.einsum, jnp.einsum))
    assert got.dtype == want.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(got), exact.astype(np.int8))  # wrapped around


def test_jit_gives_the_eager_values_and_dtypes():
    """Under ``jax.jit`` the gradient with ``preferred_element_type`` is the eager one."""
    X, W = _operands([(4, 3), (5, 3)], ("bfloat16",))
    loss = _three_ways(einsgrad.jax.einsum, "ik,jk->ij", 2)[1]
    for eager, jitted in zip(loss(X, W), jax.jit(loss)(X, W)):
        assert eager.dtype == jitted.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(eager, np.float32), np.asarray(jitted, np.float32))
