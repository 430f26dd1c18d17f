"""``einsgrad.jax.einsum`` against ``jax.vjp`` of ``jnp.einsum`` (skipped without jax): under
``jax.jit``, ``jax.vmap``, and differentiated twice. float64 needs ``jax_enable_x64``, set for
this module only."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings

from strategies import EXACT_DTYPES, Case, einsum_cases

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


@settings(max_examples=20)  # jax compiles every primitive per new shape: ~0.3 s an example
@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_vjp_equals_jax(case: Case):
    """Forward and ``jax.vjp`` equal jax's own of ``jnp.einsum`` (float64, complex128, mixed)."""
    ops = [jnp.asarray(x) for x in case.operands()]
    try:
        y, back = jax.vjp(lambda *a: jnp.einsum(case.clean_spec, *a), *ops)
    except (ValueError, TypeError):
        assume(False)
    G = jnp.asarray(case.cotangent(y.shape))
    got_y, got_back = jax.vjp(lambda *a: einsgrad.jax.einsum(case.spec, *a), *ops)
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
