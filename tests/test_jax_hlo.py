"""What ``jax.jit(jax.grad(...))`` of ``einsgrad.jax.einsum`` compiles to, against ``jnp.einsum``'s
(skipped without jax): no more dots, transposes or copies in the optimized HLO, for the training
benchmark's specs and for drawn pairs; the attention and MLP training steps, at the benchmark's
sizes, are ``jnp.einsum``'s module and program, dispatched alike, in bfloat16 with
``preferred_element_type=float32`` too (no bfloat16 operand converted to float32 before its dot
where jnp.einsum's dot reads it as it is); and each comparison fails for the spelling before
(so it can fail)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402  (after the skip)

import einsgrad.jax  # noqa: E402
from benchmarks.training_hlo import COUNTED, compare, compiled, opcodes, step, widened  # noqa: E402
from benchmarks.training_models import MODELS  # noqa: E402
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


def _step(model_name: str, dtype: str) -> dict:
    """The benchmark's training step of a model (its sizes, the batch an argument) compared
    with each einsum (:func:`benchmarks.training_hlo.compare`)."""
    return compare(next(m for m in MODELS if m.name == model_name), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("model", ["mlp", "attention"])
def test_training_step_is_jnp_einsums_program(model, dtype):
    """The MLP's and the attention's jitted training steps (forward, loss, gradient, update),
    at the benchmark's sizes: XLA is handed jnp.einsum's module byte for byte, so it compiles
    jnp.einsum's program (checked too, names and layouts included) and assigns its buffers
    alike; and each call is dispatched by jax's C++ path alike, no Python function entered."""
    found = _step(model, dtype)
    assert found["same module"] and found["same program"] and found["same buffers"]
    assert found["python calls (einsgrad, jnp)"] == (0, 0)


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
    """The checks above can fail: with the plan's operand order, the attention step is another
    module and compiles to another program than jnp.einsum's, with more transposes."""
    found = _step("attention", "float32")
    assert not found["same module"] and not found["same program"]
    mine, theirs = found["transpose (einsgrad, jnp)"]
    assert mine > theirs


@pytest.mark.parametrize("model", ["mlp", "attention"])
def test_bfloat16_step_accumulating_in_float32_is_jnp_einsums_program(model):
    """Every einsum of the MLP's and the attention's steps with ``preferred_element_type=float32``
    on bfloat16 parameters and batch: jnp.einsum's module, program and buffers, and so its dots
    read the bfloat16 operands it reads (the converts left are those of a float32 value's
    product with a bfloat16 one, which jax's lowering of such a dot makes in both)."""
    found = compare(next(m for m in MODELS if m.name == model), "bfloat16", "float32")
    assert found["same module"] and found["same program"] and found["same buffers"]
    mine, theirs = found["widened (einsgrad, jnp)"]
    assert mine == theirs


def _lowered(f, *args) -> str:
    return jax.jit(f).lower(*args).as_text()


BENCHMARK_PAIRS = [  # the MLP's and the attention's einsums at the training benchmark's sizes
    pytest.param("bi,oi->bo", [(256, 512), (1024, 512)], id="mlp layer"),
    pytest.param("bi,oi->bo", [(256, 512), (10, 512)], id="mlp last layer"),
    pytest.param("bsi,hdi->bhsd", [(32, 128, 256), (8, 32, 256)], id="attention projection"),
    pytest.param("bhqd,bhkd->bhqk", [(32, 8, 128, 32), (32, 8, 128, 32)], id="attention scores"),
    pytest.param("bhqk,bhkd->bhqd", [(32, 8, 128, 128), (32, 8, 128, 32)], id="attention apply"),
    pytest.param("bhqd,ohd->bqo", [(32, 8, 128, 32), (256, 8, 32)], id="attention output"),
]


@pytest.mark.parametrize("spec, shapes", BENCHMARK_PAIRS)
def test_bfloat16_pairs_accumulating_in_float32_lower_as_jnp_einsum(spec, shapes):
    """The MLP's and the attention's einsums in bfloat16 accumulated in float32, at the
    benchmark's sizes (lowered, not run): the forward is jnp.einsum's module, its dot reading
    both bfloat16 operands as they are (none widened), and jit(grad) of a nonlinear loss in
    each operand is jnp.einsum's module too (in both at once, the projection's two gradients
    are emitted in another order, as in float32)."""
    arrays = [jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in shapes]
    mine, theirs = ((lambda *a, f=f: f(spec, *a, preferred_element_type=jnp.float32))
                    for f in (einsgrad.jax.einsum, jnp.einsum))
    forward = _lowered(mine, *arrays)
    assert forward == _lowered(theirs, *arrays)
    assert widened(forward) == 0 and "stablehlo.dot_general" in forward
    for k in range(len(arrays)):
        grads = [_lowered(jax.grad(lambda *a, f=f: jnp.sum(jnp.sin(f(*a))), k), *arrays) for f in (mine, theirs)]
        assert grads[0] == grads[1], k


def _cast_first(spec, *operands, preferred_element_type):
    """einsgrad's spelling before: every operand cast to the preferred type, then the einsum."""
    return einsgrad.jax.einsum(spec, *[x.astype(preferred_element_type) for x in operands])


def test_the_comparison_tells_a_float32_copy_apart():
    """The checks above can fail: with the operands cast to float32 first, the attention step
    is another module, whose dots read more widened operands than jnp.einsum's, and so is a
    pair's forward."""
    attention = next(m for m in MODELS if m.name == "attention")
    found = {}
    for einsum in (_cast_first, jnp.einsum):
        update, params, batch = step(attention, "bfloat16", einsum, "float32")
        found[einsum] = update.lower(params, batch).as_text()
    assert found[_cast_first] != found[jnp.einsum]
    assert widened(found[_cast_first]) > widened(found[jnp.einsum])
    X, W = (jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in [(256, 512), (1024, 512)])
    forward = _lowered(lambda x, w: _cast_first("bi,oi->bo", x, w, preferred_element_type=jnp.float32), X, W)
    assert widened(forward) == 2
