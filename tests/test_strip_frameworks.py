"""Exponent stripping on torch tensors and jax arrays (issue 14, overflow): float32 networks whose
plain contraction is not finite give the float64 values and gradients, against torch autograd
at float64, finite differences of the log-value and jax's own autograd; the differentiable
log-value (``Einsum.log_value``) under torch autograd, ``jax.grad`` and ``jax.jit``; the
exact power-of-two scaling against numpy's ``ldexp``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from opt_einsum import contract, get_symbol

import einsgrad
from einsgrad import EinsumSpecError, Stripped, exponents
from devices import on_device
from oracles import torch_vjp
from strategies import EXACT_DTYPES, einsum_cases, random_array
from test_strip import assert_close, assert_log_gradient, chain_spec, matrices

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
from test_jax import x64  # noqa: E402,F401  (autouse: float64 in jax here, restored afterwards)

LIBRARIES = ["torch", "jax"]




def placed(library: str, arrays, device: str = "cpu") -> list:
    """numpy ``arrays`` as torch tensors (on ``device``) or jax arrays, dtypes kept."""
    if library == "torch":
        return on_device(arrays, device) if device != "cpu" else [torch.from_numpy(np.array(a)) for a in arrays]
    return [jnp.asarray(a) for a in arrays]


def host(x) -> np.ndarray:
    """A torch tensor (any device) or jax array as numpy."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def float64(s: Stripped) -> np.ndarray:
    """A stripped value of any library at float64 (or complex128), which the cases do not overflow."""
    m, e = host(s.mantissa), int(host(s.exponent)) if not isinstance(s.exponent, int) else s.exponent
    if np.iscomplexobj(m):
        return np.ldexp(m.real.astype(np.float64), e) + 1j * np.ldexp(m.imag.astype(np.float64), e)
    return np.ldexp(m.astype(np.float64), e)


def assert_library_stripped(s: Stripped, library: str, dtype: str) -> None:
    """The mantissa is an array of ``library`` in ``dtype`` and the exponent a 0-d integer one."""
    kind = torch.Tensor if library == "torch" else jax.Array
    assert isinstance(s.mantissa, kind) and isinstance(s.exponent, kind)
    assert str(s.mantissa.dtype).rpartition(".")[2] == dtype
    assert tuple(s.exponent.shape) == () and "int" in str(s.exponent.dtype)


def torch_log_gradients(spec: str, mats, complex_: bool = False):
    """log|y| and its gradients by torch autograd of the plain contraction at float64/complex128."""
    dtype = torch.complex128 if complex_ else torch.float64
    leaves = [torch.tensor(m, dtype=dtype, requires_grad=True) for m in mats]
    value = torch.log(torch.abs(torch.einsum(spec, *leaves)))
    value.backward()
    return value.item(), [leaf.grad.numpy() for leaf in leaves]


# -- float32 networks past float32's range ---------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_float32_chain_past_float32_range(library, device):
    n = 51
    spec, mats = chain_spec(n), matrices(n, 32, scale=2.0)
    ops = placed(library, mats, device)
    e = einsgrad.compile(spec)
    assert not np.isfinite(host(e(*ops))).all()
    s = e.stripped(*ops)
    assert_library_stripped(s, library, "float32")
    assert 0.5 <= float(np.max(np.abs(host(s.mantissa)))) < 1
    reference = contract(spec, *[m.astype(np.float64) for m in mats])
    assert np.max(np.abs(reference)) > 1e40
    assert_close(float64(s), reference, 1e-4, "value")
    assert_close(host(s.log10()), np.log10(np.abs(reference)), 1e-4, "log10")


@pytest.mark.parametrize("library", LIBRARIES)
def test_float32_stripped_vjp_against_torch_autograd(library, device):
    n = 40
    spec, mats = chain_spec(n), matrices(n, 16, scale=3.0)
    g = random_array(np.random.default_rng(5), (16, 16), np.float32)
    ops = placed(library, mats, device)
    e = einsgrad.compile(spec)
    assert not all(np.isfinite(host(d)).all() for d in e.vjp(placed(library, [g], device)[0], *ops))
    grads = e.stripped_vjp(placed(library, [g], device)[0], *ops)
    expected = torch_vjp(spec, mats, g)
    assert max(np.max(np.abs(d)) for d in expected) > 1e40
    for k, (d, r) in enumerate(zip(grads, expected)):
        assert_library_stripped(d, library, "float32")
        assert_close(float64(d), r, 1e-4, f"gradient {k}")


@pytest.mark.parametrize("library", LIBRARIES)
def test_log_grad_of_an_overflowing_trace_against_torch_autograd(library, device):
    n = 40
    spec, mats = chain_spec(n, closed=True), matrices(n, 24, seed=3, scale=3.0)
    ops = placed(library, mats, device)
    e = einsgrad.compile(spec)
    assert not np.isfinite(host(e(*ops)))
    value, grads = e.log_grad(*ops)
    expected_value, expected = torch_log_gradients(spec, mats)
    assert expected_value > 40 * math.log(10)
    assert float(host(value.log())) == pytest.approx(expected_value, rel=1e-5)
    for k, (d, r) in enumerate(zip(grads, expected)):
        assert str(d.dtype).endswith("float32") and np.isfinite(host(d)).all()
        assert_close(host(d), r, 1e-3, f"log-gradient {k}")


# -- the differentiable log-value --------------------------------------------------------------


def overflowing_trace(n=12, size=8, seed=1, scale=3000.0):
    """tr(A_1...A_n) of float32 matrices, about 4e46: past float32's range."""
    spec, mats = chain_spec(n, closed=True), matrices(n, size, seed=seed, scale=scale)
    with np.errstate(all="ignore"):
        assert not np.isfinite(einsgrad.einsum(spec, *mats))
    return spec, mats


def test_torch_log_value_backward_against_autograd_at_float64(device):
    """log|tr(A_1...A_n)| of float32 tensors, where torch's own float32 log|einsum| is not finite:
    the value and the gradients of backward() equal autograd of the float64 contraction."""
    spec, mats = overflowing_trace()
    leaves = [t.requires_grad_(True) for t in placed("torch", mats, device)]
    assert not torch.isfinite(torch.log(torch.abs(torch.einsum(spec, *leaves))))
    value = einsgrad.compile(spec).log_value(*leaves)
    assert value.dtype == torch.float32 and value.requires_grad
    value.backward()
    expected_value, expected = torch_log_gradients(spec, mats)
    assert value.item() == pytest.approx(expected_value, rel=1e-5)
    for k, (leaf, r) in enumerate(zip(leaves, expected)):
        assert leaf.grad.dtype == torch.float32
        assert_close(host(leaf.grad), r, 1e-3, f"gradient {k}")


@pytest.mark.parametrize("library", LIBRARIES)
def test_log_value_gradient_against_finite_differences(library):
    """<grad log|y|, U> against the central difference of log|y(x + tU)| in float64 (opt_einsum),
    y an overflowing float32 trace, every operand moved at once."""
    spec, mats = overflowing_trace()
    e = einsgrad.compile(spec)
    if library == "torch":
        leaves = [t.requires_grad_(True) for t in placed("torch", mats)]
        e.log_value(*leaves).backward()
        grads = [host(leaf.grad) for leaf in leaves]
    else:
        grads = [host(d) for d in jax.grad(e.log_value, argnums=tuple(range(len(mats))))(*placed("jax", mats))]
    assert_log_gradient(spec, mats, grads)


@pytest.mark.parametrize("spec, shapes", [("ij,jk,ki->", [(3, 4), (4, 2), (2, 3)]),
                                          ("ab,bc,ca->", [(2, 2), (2, 2), (2, 2)]),
                                          ("i,ij,j->", [(3,), (3, 4), (4,)]),
                                          ("ii->", [(3, 3)])])
def test_torch_log_value_gradcheck(spec, shapes):
    """Finite differences of the stripped forward against the stripped backward, float64."""
    rng = np.random.default_rng(4)
    xs = [torch.tensor(1.0 + rng.random(s), requires_grad=True) for s in shapes]
    e = einsgrad.compile(spec)
    assert torch.autograd.gradcheck(e.log_value, xs)


@pytest.mark.parametrize("spec, shapes", [("ij,jk,ki->", [(3, 4), (4, 2), (2, 3)]),
                                          ("i,ij,j->", [(3,), (3, 4), (4,)])])
def test_jax_log_value_against_jax_autograd_and_finite_differences(spec, shapes):
    from jax.test_util import check_grads

    rng = np.random.default_rng(6)
    xs = [jnp.asarray(1.0 + rng.random(s)) for s in shapes]
    e = einsgrad.compile(spec)
    argnums = tuple(range(len(xs)))
    check_grads(jax.jit(e.log_value), xs, order=1, modes=("fwd", "rev"))
    got = jax.jit(jax.grad(e.log_value, argnums=argnums))(*xs)
    expected = jax.grad(lambda *a: jnp.log(jnp.abs(jnp.einsum(spec, *a))), argnums=argnums)(*xs)
    for d, r in zip(got, expected):
        assert_close(np.asarray(d), np.asarray(r), 1e-12, "gradient")


def test_jax_log_value_under_jit_and_value_and_grad():
    """jit(value_and_grad) of an overflowing float32 trace: jax's float32 log|einsum| is not
    finite, einsgrad's value and gradients are torch autograd's at float64, and equal the
    eager ones."""
    spec, mats = overflowing_trace()
    ops = placed("jax", mats)
    assert not np.isfinite(float(jnp.log(jnp.abs(jnp.einsum(spec, *ops)))))
    e = einsgrad.compile(spec)
    argnums = tuple(range(len(ops)))
    value, grads = jax.jit(jax.value_and_grad(e.log_value, argnums=argnums))(*ops)
    eager_value, eager = jax.value_and_grad(e.log_value, argnums=argnums)(*ops)
    expected_value, expected = torch_log_gradients(spec, mats)
    assert value.dtype == jnp.float32
    assert float(value) == pytest.approx(expected_value, rel=1e-5)
    assert float(value) == pytest.approx(float(eager_value), rel=1e-6)
    for k, (d, eager_d, r) in enumerate(zip(grads, eager, expected)):
        assert_close(np.asarray(d), r, 1e-3, f"gradient {k}")
        assert_close(np.asarray(d), np.asarray(eager_d), 1e-5, f"jit gradient {k}")


def test_jax_log_value_only_some_operands():
    """argnums=1: one operand differentiated (the others have symbolic zero tangents)."""
    spec, mats = overflowing_trace()
    got = jax.grad(einsgrad.compile(spec).log_value, argnums=1)(*placed("jax", mats))
    _, expected = torch_log_gradients(spec, mats)
    assert_close(np.asarray(got), expected[1], 1e-3)


def test_complex_tied_norm_log_value_against_autograd():
    """log<psi|psi> of a complex64 MPS whose norm overflows complex64 (bra = conj(ket), one
    tensor per site): torch backward() and jax.grad against each library's own autograd of the
    plain complex128 contraction."""
    n, bond, phys = 8, 8, 2
    kets = [random_array(np.random.default_rng(k), (1 if k == 0 else bond, phys, 1 if k == n - 1 else bond),
                         np.complex64) * 128 for k in range(n)]
    letters = [get_symbol(i) for i in range(4 * n + 4)]
    ket = [letters[k] + letters[2 * n + 2 + k] + letters[k + 1] for k in range(n)]
    bra = [letters[n + 1 + k] + letters[2 * n + 2 + k] + letters[n + 2 + k] for k in range(n)]
    spec = ",".join(ket + bra) + "->"
    norm = einsgrad.compile(spec, tied={n + k: k for k in range(n)}, conjugate=set(range(n, 2 * n)))
    plain = [torch.tensor(x, dtype=torch.complex128, requires_grad=True) for x in kets]
    y = torch.einsum(spec, *plain, *[x.conj() for x in plain])
    assert abs(y.item()) > 1e40
    torch.log(torch.abs(y)).backward()
    leaves = [t.requires_grad_(True) for t in placed("torch", kets)]
    value = norm.log_value(*leaves)
    value.backward()
    assert value.item() == pytest.approx(math.log(abs(y.item())), rel=1e-5)
    for k, (leaf, r) in enumerate(zip(leaves, plain)):
        assert leaf.grad.dtype == torch.complex64
        assert_close(host(leaf.grad), r.grad.numpy(), 1e-3, f"torch gradient {k}")

    def plain_jax(*xs):
        return jnp.log(jnp.abs(jnp.einsum(spec, *xs, *[jnp.conj(x) for x in xs])))

    args = tuple(range(n))
    got = jax.jit(jax.grad(norm.log_value, argnums=args))(*placed("jax", kets))
    expected = jax.grad(plain_jax, argnums=args)(*[jnp.asarray(x, jnp.complex128) for x in kets])
    for k, (d, r) in enumerate(zip(got, expected)):
        assert d.dtype == jnp.complex64
        assert_close(np.asarray(d), np.asarray(r), 1e-3, f"jax gradient {k}")


# -- jit, generated problems, other dtypes ------------------------------------------------------


def test_jit_of_every_stripped_mode_equals_eager():
    """stripped, stripped_vjp and log_grad under jax.jit (Stripped and LogGrad are pytrees):
    the values of the eager runs, and of float64."""
    spec, mats = overflowing_trace()
    ops = placed("jax", mats)
    e = einsgrad.compile(spec)
    reference = contract(spec, *[m.astype(np.float64) for m in mats])
    assert abs(reference) > 1e40
    s = jax.jit(e.stripped)(*ops)
    assert_library_stripped(s, "jax", "float32")
    assert float64(s) == pytest.approx(reference, rel=1e-4)
    assert float64(s) == pytest.approx(float64(e.stripped(*ops)), rel=1e-6)
    g = jnp.asarray(np.float32(0.5))
    for d, eager in zip(jax.jit(e.stripped_vjp)(g, *ops), e.stripped_vjp(g, *ops)):
        assert_close(float64(d), float64(eager), 1e-6)
    found = jax.jit(lambda *xs: e.log_grad(*xs, wrt=(0, 5)))(*ops)
    _, expected = torch_log_gradients(spec, mats)
    for d, r in zip(found.grads, (expected[0], expected[5])):
        assert_close(np.asarray(d), r, 1e-3)


@pytest.mark.parametrize("library", LIBRARIES)
@settings(max_examples=15)
@given(case=einsum_cases(dtypes=EXACT_DTYPES, max_operands=3))
def test_generated_cases_equal_the_plain_ones(library, case):
    """Generated problems (repeated labels, broadcasting, diagonals, complex): the stripped
    forward and vjp on torch and jax against numpy and torch autograd."""
    xs = case.operands()
    e = einsgrad.compile(case.spec)
    y = np.einsum(case.spec, *xs)
    ops = placed(library, xs)
    assert_close(float64(e.stripped(*ops)), y, 1e-11, "value")
    g = case.cotangent(y.shape)
    expected = torch_vjp(case.clean_spec, xs, g)
    reference = e.vjp(g, *xs) if expected is None else expected
    for k, (d, r) in enumerate(zip(e.stripped_vjp(placed(library, [g])[0], *ops), reference)):
        assert str(d.mantissa.dtype).rpartition(".")[2] == xs[k].dtype.name
        assert_close(float64(d), r, 1e-10, f"gradient {k}")


@pytest.mark.parametrize("library, dtype", [("torch", "float16"), ("torch", "bfloat16"), ("jax", "float16"),
                                            ("jax", "bfloat16")])
def test_sixteen_bit_chains_past_their_range(library, dtype):
    """A chain of 16 8x8 matrices passes float16's 65504 (and, scaled, bfloat16's 3e38): stripped
    in the 16-bit dtype, the float64 value to the dtype's precision."""
    n, scale = (16, 2.0) if dtype == "float16" else (40, 40.0)
    spec, mats = chain_spec(n), matrices(n, 8, np.float64, seed=2, scale=scale)
    if library == "torch":
        ops = [torch.tensor(m).to(getattr(torch, dtype)) for m in mats]
        exact = [t.double().numpy() for t in ops]
    else:
        ops = [jnp.asarray(m, getattr(jnp, dtype)) for m in mats]
        exact = [np.asarray(a.astype(jnp.float64)) for a in ops]
    e = einsgrad.compile(spec)
    assert not np.isfinite(host(e(*ops).float() if library == "torch" else e(*ops).astype(jnp.float32))).all()
    s = e.stripped(*ops)
    assert_library_stripped(s, library, dtype)
    m = host(s.mantissa.float() if library == "torch" else s.mantissa.astype(jnp.float32))
    reference = contract(spec, *exact)
    value = np.ldexp(m.astype(np.float64), int(host(s.exponent)))
    assert_close(value, reference, 0.05 if dtype == "bfloat16" else 0.02, "value")


def test_tied_stripped_vjp_on_torch_equals_numpy():
    """Tied's one gather on torch: stripped occurrences conjugated, brought to one exponent
    and summed, as on numpy."""
    spec = "ab,bc,ac->"
    t = einsgrad.compile(spec, tied={2: 0}, conjugate={2})
    rng = np.random.default_rng(8)
    a, b = random_array(rng, (3, 4), np.complex128), random_array(rng, (4, 4), np.complex128)
    for d, r in zip(t.stripped_vjp(torch.ones((), dtype=torch.complex128), *placed("torch", [a, b])),
                    t.vjp(np.ones((), complex), a, b)):
        assert_close(float64(d), r, 1e-12)
    value, grads = t.log_grad(*placed("jax", [a, b]))
    for d, r in zip(grads, t.log_grad(a, b).grads):
        assert_close(np.asarray(d), r, 1e-12)


# -- exact power-of-two scaling ---------------------------------------------------------------


SHIFTS = st.integers(-700, 700) | st.sampled_from([-450, -300, -278, -277, -149, -128, -127, -126, 0,
                                                   126, 127, 128, 149, 254, 276, 277, 381, 382])


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "complex64"])
@settings(max_examples=40)
@given(shift=SHIFTS, seed=st.integers(0, 2**16))
def test_scaled_is_numpys_ldexp(library, dtype, shift, seed):
    """``x * 2**shift`` for torch and jax against numpy's exact ``ldexp``, on values spread over
    the dtype's whole range (subnormals aside, which XLA flushes to zero): equal bit for bit
    wherever ldexp's result is normal, infinite or zero."""
    rng = np.random.default_rng(seed)
    real = np.dtype(dtype).type(0).real.dtype
    info = np.finfo(real)
    powers = rng.integers(info.minexp + 1, info.maxexp + 1, 64)  # x normal: 2**minexp to 2**maxexp
    x = np.ldexp(rng.uniform(0.5, 1.0, 64), powers).astype(real) * rng.choice([-1, 1], 64)
    x = x.astype(real)
    if np.dtype(dtype).kind == "c":
        x = (x + 1j * x[::-1]).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        expected = exponents.get("numpy").scaled(x, shift)
    got = host(exponents.get(library).scaled(placed(library, [x])[0], shift))
    for part_got, part_expected in ([(got, expected)] if np.dtype(dtype).kind != "c" else
                                    [(got.real, expected.real), (got.imag, expected.imag)]):
        clean = (np.abs(part_expected) >= info.tiny) | (part_expected == 0)
        np.testing.assert_array_equal(part_got[clean], part_expected[clean])


@pytest.mark.parametrize("library", LIBRARIES)
def test_huge_shifts_of_narrow_types_are_clamped_not_wrapped(library):
    """An exponent difference past the range of float16's 16-bit integers (a ratio of two
    stripped values far apart) scales to inf or 0, as numpy's ldexp does."""
    lib = exponents.get(library)
    x = placed(library, [np.array([0.75, -0.5], np.float16)])[0]
    for shift, expected in ((40000, [np.inf, -np.inf]), (-40000, [0.0, -0.0]), (70000, [np.inf, -np.inf])):
        assert host(lib.scaled(x, lib.integer(shift, x))).tolist() == expected


@pytest.mark.parametrize("library", LIBRARIES)
def test_strip_normalises_and_keeps_zeros_and_nonfinite(library):
    lib = exponents.get(library)
    m, e = lib.strip(placed(library, [np.array([3.0e38, -1.0], np.float32)])[0], 0)
    assert host(e) == 128 and host(m)[0] == pytest.approx(3.0e38 / 2**128)
    tiny = np.array([1e-30, 2e-30], np.float32)
    m, e = lib.strip(placed(library, [tiny])[0], 5)
    assert 0.5 <= np.max(np.abs(host(m))) < 1
    assert np.ldexp(host(m).astype(np.float64), int(host(e)) - 5).tolist() == tiny.astype(np.float64).tolist()
    for x in (np.zeros(3), np.array([np.inf, 1.0]), np.array([np.nan, 1.0]), np.zeros((0, 2))):
        m, e = lib.strip(placed(library, [x])[0], 7)
        assert host(e) == 7 and np.array_equal(host(m), x, equal_nan=True)


# -- errors ------------------------------------------------------------------------------------


def test_torch_errors_name_what_is_wrong():
    e = einsgrad.compile("ij,jk->ik")
    a = torch.ones(2, 2)
    with pytest.raises(EinsumSpecError, match="floating point or complex operands, got int64, int64"):
        e.stripped(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(EinsumSpecError, match=r"exponent is an integer \(a power of two\) or a 0-d integer torch array, got 2.5"):
        e.stripped_vjp(Stripped(torch.ones(2, 2), 2.5), a, a)
    with pytest.raises(EinsumSpecError, match="got tensor"):
        e.stripped_vjp(Stripped(torch.ones(2, 2), torch.tensor(1.5)), a, a)
    with pytest.raises(EinsumSpecError, match=r"two array libraries in one call: jaxlib.*\(jax\) and torch.Tensor \(torch\)"):
        e.stripped_vjp(jnp.ones((2, 2)), a, a)
    with pytest.raises(EinsumSpecError, match=r"the cotangent has shape \(3,\)"):
        e.stripped_vjp(torch.ones(3), a, a)
    with pytest.raises(EinsumSpecError, match=r"log_value needs a scalar output.*shape \(2, 2\)"):
        e.log_value(a, a)
    with pytest.raises(EinsumSpecError, match="does not run in slices"):
        einsgrad.compile("ab,bc,cd->ad", memory_limit=8).stripped(*[torch.ones(4, 4)] * 3)


def test_a_stripped_cotangent_with_an_array_exponent():
    """The exponent of a stripped torch or jax cotangent may be a 0-d integer array of it (the
    forward's own), or a Python int."""
    spec, mats = "ij,jk->ik", matrices(2, 5, seed=6)
    m = random_array(np.random.default_rng(3), (5, 5), np.float32)
    expected = torch_vjp(spec, mats, m)
    e = einsgrad.compile(spec)
    for library, exponent in (("torch", torch.tensor(200)), ("jax", jnp.asarray(200)), ("torch", 200)):
        grads = e.stripped_vjp(Stripped(placed(library, [m])[0], exponent), *placed(library, mats))
        for d, r in zip(grads, expected):
            assert_close(np.ldexp(host(d.mantissa).astype(np.float64), int(host(d.exponent)) - 200), r, 1e-5)


def test_numpy_log_value():
    spec, mats = overflowing_trace()
    expected_value, _ = torch_log_gradients(spec, mats)
    assert float(einsgrad.compile(spec).log_value(*mats)) == pytest.approx(expected_value, rel=1e-5)


def test_jax_log_value_second_derivatives_against_jax_autograd():
    """The tangent rule's log-gradients are jax code: jax.hessian differentiates them, and
    equals the Hessian of the plain float64 log|einsum|."""
    spec = "ij,jk,ki->"
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(1 + rng.random(s)) for s in [(3, 4), (4, 2), (2, 3)]]
    got = jax.hessian(einsgrad.compile(spec).log_value, argnums=(0, 1))(*xs)
    expected = jax.hessian(lambda *a: jnp.log(jnp.abs(jnp.einsum(spec, *a))), argnums=(0, 1))(*xs)
    for i in range(2):
        for j in range(2):
            assert_close(np.asarray(got[i][j]), np.asarray(expected[i][j]), 1e-12, f"d2/dx{i}dx{j}")


@pytest.mark.parametrize("spec, shapes", [("ij,jk,ki->", [(3, 4), (4, 2), (2, 3)]),
                                          ("ab,ab->", [(2, 3), (2, 3)]),
                                          ("ii->", [(3, 3)])])
def test_torch_log_value_gradgradcheck(spec, shapes):
    """A recorded backward (create_graph=True) is differentiated again: finite differences of
    the backward against its own backward, float64."""
    rng = np.random.default_rng(5)
    xs = [torch.tensor(1.0 + rng.random(s), requires_grad=True) for s in shapes]
    assert torch.autograd.gradgradcheck(einsgrad.compile(spec).log_value, xs)


def test_torch_gradient_penalty_against_autograd():
    """|d log|y| / dx|^2, differentiated (a gradient penalty): the Hessian-vector product of
    torch autograd of the plain contraction's log."""
    spec, rng = "ij,jk,ki->", np.random.default_rng(9)
    arrays = [1.0 + rng.random(s) for s in [(3, 4), (4, 2), (2, 3)]]

    def penalised(f):
        leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
        grads = torch.autograd.grad(f(*leaves), leaves, create_graph=True)
        sum(grad.pow(2).sum() for grad in grads).backward()
        return [leaf.grad.numpy() for leaf in leaves]

    got = penalised(einsgrad.compile(spec).log_value)
    expected = penalised(lambda *xs: torch.log(torch.abs(torch.einsum(spec, *xs))))
    for d, r in zip(got, expected):
        assert_close(d, r, 1e-12)


def test_torch_log_value_without_gradients():
    """No operand needs a gradient (or grad mode is off): the stripped forward alone."""
    spec, mats = overflowing_trace()
    expected_value, _ = torch_log_gradients(spec, mats)
    e = einsgrad.compile(spec)
    plain = e.log_value(*placed("torch", mats))
    with torch.no_grad():
        off = e.log_value(*[t.requires_grad_(True) for t in placed("torch", mats)])
    for value in (plain, off):
        assert not value.requires_grad and value.item() == pytest.approx(expected_value, rel=1e-5)


def test_the_stripping_benchmark_checks_its_rows(tmp_path):
    """``python -m benchmarks.stripping --quick``: every row timed, and log_grad's gradients
    equal to the plain ones over the plain value on the scalar networks."""
    import json

    from benchmarks import stripping

    out = tmp_path / "stripping.json"
    assert stripping.main(["--quick", "--rounds", "1", "--libraries", "numpy,torch,jax,jit", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["library"] for r in rows} == {"numpy", "torch", "jax", "jit"}
    assert all(r["forward"] > 0 and r["stripped"] > 0 for r in rows)
    scalar = [r for r in rows if r["log_grad"] is not None]
    assert len(scalar) == 4 and all(r["check"] < 1e-5 for r in scalar)
