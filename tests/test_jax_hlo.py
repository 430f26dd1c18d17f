"""What ``jax.jit(jax.grad(...))`` of ``einsgrad.jax.einsum`` compiles to, against ``jnp.einsum``'s
(skipped without jax): no more dots, transposes or copies in the optimized HLO, for the training
benchmark's specs and for drawn pairs; the attention and MLP training steps are ``jnp.einsum``'s
program; and the comparison fails for the spelling before (so it can fail)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402  (after the skip)

import einsgrad.jax  # noqa: E402
from benchmarks.training_hlo import COUNTED, compiled, opcodes  # noqa: E402
from einsgrad import backends  # noqa: E402
from test_jax import x64  # noqa: E402,F401  (the float64 fixture, module-scoped)

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]

MODEL_SPECS = [
    pytest.param("bi,oi->bo", [(6, 10), (12, 10)], id="mlp layer"),
    pytest.param("bsi,hdi->bhsd", [(2, 6, 16), (2, 8, 16)], id="attention projection"),
    pytest.param("bhqd,bhkd->bhqk", [(2, 2, 6, 8), (2, 2, 6, 8)], id="attention scores"),
    pytest.param("bhqk,bhkd->bhqd", [(2, 2, 6, 6), (2, 2, 6, 8)], id="attention apply"),
    pytest.param("bhqd,ohd->bqo", [(2, 2, 6, 8), (16, 2, 8)], id="attention output"),
    pytest.param("bi,oij,bj->bo", [(8, 6), (4, 6, 5), (8, 5)], id="bilinear"),
    pytest.param("nabcd,aep,pbfq,qcgr,rdh->nefgh",
                 [(8, 2, 2, 2, 2), (2, 2, 4), (4, 2, 2, 4), (4, 2, 2, 4), (4, 2, 2)], id="tensor train"),
    pytest.param("...ij,...jk->...ik", [(2, 3, 4, 6), (3, 6, 5)], id="grouped"),
]


def operands(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes]


def gradient(einsum, spec: str, count: int):
    """The gradient of a nonlinear loss of the einsum in every operand."""
    return jax.grad(lambda *a: jnp.sum(jnp.sin(einsum(spec, *a))), tuple(range(count)))


def programs(spec: str, arrays) -> tuple[list[str], list[str]]:
    """The compiled HLO of the gradient with einsgrad's einsum and with jnp.einsum's."""
    return tuple(compiled(gradient(einsum, spec, len(arrays)), *arrays)
                 for einsum in (einsgrad.jax.einsum, jnp.einsum))


def assert_no_more_work(spec: str, arrays, slack: int = 0):
    """einsgrad's compiled gradient has no more dots than jnp.einsum's, no more transposes or
    copies than its plus ``slack``, and the same values."""
    mine, theirs = (opcodes(lines) for lines in programs(spec, arrays))
    allowed = {op: theirs[op] + (slack if op != "dot" else 0) for op in COUNTED}
    assert all(mine[op] <= allowed[op] for op in COUNTED), \
        (spec, {op: (mine[op], theirs[op]) for op in COUNTED})
    got = jax.jit(gradient(einsgrad.jax.einsum, spec, len(arrays)))(*arrays)
    want = gradient(jnp.einsum, spec, len(arrays))(*arrays)
    tolerance = 1e-4 if arrays[0].dtype == jnp.float32 else 1e-10
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec, shapes", MODEL_SPECS)
def test_gradient_compiles_to_no_more_work(spec, shapes, dtype):
    """The training benchmark's specs: jit(grad) compiles to no more dots, transposes and
    copies than jnp.einsum's does."""
    assert_no_more_work(spec, operands(shapes, dtype))


@st.composite
def pairs(draw):
    """Two-operand specs whose labels each play one role (batch, contracted, free in one
    operand), in any order in the operands and the output, sizes 2 to 4 (no size 1: jnp.einsum
    squeezes those away first)."""
    letters = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True))
    roles = {l: draw(st.sampled_from(("batch", "contracted", "a", "b"))) for l in letters}
    a = draw(st.permutations([l for l in letters if roles[l] != "b"]))
    b = draw(st.permutations([l for l in letters if roles[l] != "a"]))
    out = draw(st.permutations([l for l in letters if roles[l] != "contracted"]))
    size = {l: draw(st.integers(2, 4)) for l in letters}
    spec = f"{''.join(a)},{''.join(b)}->{''.join(out)}"
    return spec, [tuple(size[l] for l in a), tuple(size[l] for l in b)]


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10, deadline=None)  # two jit compilations an example
@given(case=pairs())
def test_drawn_pairs_compile_to_no_more_work(case, dtype):
    """Any pair of operands (batch, contracted and free labels in any order): no more dots than
    jnp.einsum's gradient compiles to, and at most one transpose and one copy more. Not none:
    a batch label that the output holds after a free one (``bc,abc->ab``) makes the dot's
    result (batch first) transposed in the forward and in one gradient, where jnp.einsum's
    transposes one operand once (3 transposes and 3 copies against 2 and 2)."""
    spec, shapes = case
    assert_no_more_work(spec, operands(shapes, dtype), slack=1)


def _step_programs(model_name: str, dtype):
    """The compiled training step of a benchmark model (quick sizes) with each einsum."""
    from benchmarks.training import LEARNING_RATE
    from benchmarks.training_models import MODELS, Ops

    model = next(m for m in MODELS if m.name == model_name)
    params, batch = model.make(model.sized(True))
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    batch = {k: jnp.asarray(v, dtype) for k, v in batch.items()}
    found = []
    for einsum in (einsgrad.jax.einsum, jnp.einsum):
        ops = Ops(einsum, jax.nn.relu, lambda x: jax.nn.softmax(x, axis=-1), lambda x: jax.nn.logsumexp(x, axis=-1))

        def update(params, ops=ops):
            loss, grads = jax.value_and_grad(lambda p: model.loss(ops, p, batch))(params)
            return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)

        found.append(compiled(update, params))
    return found


@pytest.mark.parametrize("dtype", DTYPES + [pytest.param(jnp.bfloat16, id="bfloat16")])
@pytest.mark.parametrize("model", ["mlp", "attention"])
def test_training_step_is_jnp_einsums_program(model, dtype):
    """The MLP's and the attention's jitted training steps (forward, loss, gradient, update)
    compile to jnp.einsum's program, instruction for instruction, names aside."""
    mine, theirs = _step_programs(model, dtype)
    assert mine == theirs


@pytest.fixture
def plan_order_spelling():
    """The jax dialect with the spelling before jnp.einsum's (the plan's operand order, its
    transposed copies kept), for the traces made while it is in use."""
    backend = backends.get("jax")
    before = backend.dialect
    object.__setattr__(backend, "dialect", dataclasses.replace(before, jnp_pairs=False))
    yield
    object.__setattr__(backend, "dialect", before)


def test_the_comparison_tells_the_spellings_apart(plan_order_spelling):
    """The checks above can fail: with the plan's operand order, the attention step compiles
    to another program than jnp.einsum's, with more transposes."""
    mine, theirs = _step_programs("attention", np.float32)
    assert mine != theirs
    assert opcodes(mine)["transpose"] > opcodes(theirs)["transpose"]
