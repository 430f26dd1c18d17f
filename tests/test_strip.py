"""Exponent-stripped contractions (issue 14, overflow): values and gradients as a mantissa and a
power of two, against float64, mpmath and torch autograd, and finite differences of the
log-value. Each overflowing case first shows that the plain float32 contraction fails."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from opt_einsum import contract, get_symbol

import einsgrad
from einsgrad import EinsumSpecError, Stripped
from oracles import torch_vjp, upcast
from strategies import EXACT_DTYPES, einsum_cases, random_array


def chain_spec(n: int, closed: bool = False) -> str:
    """``n`` matrices chained (``ab,bc,...->a?``), or their trace (``closed``)."""
    s = [get_symbol(i) for i in range(n + 1)]
    terms = [s[i] + s[i + 1] for i in range(n)]
    if closed:
        terms[-1] = s[n - 1] + s[0]
        return ",".join(terms) + "->"
    return ",".join(terms) + "->" + s[0] + s[n]


def as_float64(s: Stripped) -> np.ndarray:
    """A stripped value at float64 (which the cases below do not overflow)."""
    return np.ldexp(upcast(s.mantissa).real, s.exponent) if not np.iscomplexobj(s.mantissa) else (
        np.ldexp(s.mantissa.real.astype(np.float64), s.exponent)
        + 1j * np.ldexp(s.mantissa.imag.astype(np.float64), s.exponent))


def assert_close(got, expected, rtol, what=""):
    """Entrywise within ``rtol`` of the largest magnitude of ``expected``."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    scale = np.max(np.abs(expected)) if expected.size else 1.0
    err = np.max(np.abs(got - expected)) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: error {err:.3g} against scale {scale:.3g}"


def matrices(n, size, dtype=np.float32, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(scale * random_array(rng, (size, size), np.complex128 if np.dtype(dtype).kind == "c"
                                  else np.float64)).astype(dtype) for _ in range(n)]


# -- the overflowing cases of the issue, smaller --------------------------------------------


def test_float32_chain_past_float32_range():
    """51 unnormalised 64x64 float32 matrices: about 2^160, nan in float32; stripped, the
    float64 value."""
    n = 51
    spec, mats = chain_spec(n), matrices(n, 64)
    with np.errstate(all="ignore"):
        plain = einsgrad.einsum(spec, *mats)
    assert not np.isfinite(plain).all()
    s = einsgrad.compile(spec).stripped(*mats)
    assert s.mantissa.dtype == np.float32 and 0.5 <= np.max(np.abs(s.mantissa)) < 1
    reference = contract(spec, *[m.astype(np.float64) for m in mats])
    assert np.max(np.abs(reference)) > 1e40  # past float32 indeed
    assert_close(as_float64(s), reference, 1e-4, "value")
    assert_close(s.log10(), np.log10(np.abs(reference)), 1e-4, "log10")


def test_float32_chain_gradients_against_torch():
    """The stripped vjp of a 40-matrix float32 chain (gradients past float32), against torch autograd at float64."""
    n = 40
    spec, mats = chain_spec(n), matrices(n, 16, scale=3.0)
    g = random_array(np.random.default_rng(5), (16, 16), np.float32)
    grads = einsgrad.compile(spec).stripped_vjp(g, *mats)
    with np.errstate(all="ignore"):
        plain = einsgrad.vjp(spec, g, *mats)
    assert not all(np.isfinite(d).all() for d in plain)
    expected = torch_vjp(spec, mats, g)
    assert max(np.max(np.abs(d)) for d in expected) > 1e40
    for k, (d, e) in enumerate(zip(grads, expected)):
        assert isinstance(d, Stripped) and d.mantissa.dtype == np.float32
        assert_close(as_float64(d), e, 1e-4, f"gradient {k}")


def test_log_grad_of_a_trace_against_torch():
    """d log|tr(A_1...A_n)| / dA_k at float32, where trace and gradients overflow float32,
    against torch autograd of log|trace| at float64."""
    import torch

    n = 40
    spec, mats = chain_spec(n, closed=True), matrices(n, 24, seed=3, scale=3.0)
    with np.errstate(all="ignore"):
        assert not np.isfinite(einsgrad.einsum(spec, *mats))
    found = einsgrad.compile(spec).log_grad(*mats)
    leaves = [torch.tensor(m, dtype=torch.float64, requires_grad=True) for m in mats]
    y = torch.einsum(spec, *leaves)
    assert abs(y.item()) > 1e40
    torch.log(torch.abs(y)).backward()
    assert float(found.value.log()) == pytest.approx(math.log(abs(y.item())), rel=1e-5)
    for k, (d, leaf) in enumerate(zip(found.grads, leaves)):
        assert d.dtype == np.float32 and np.isfinite(d).all()
        assert_close(d, leaf.grad.numpy(), 1e-3, f"log-gradient {k}")


def test_log_grad_against_finite_differences_of_the_log_value():
    """<d log|y|/dx, U> against the central difference of log|y(x + tU)| in float64, with y
    an overflowing float32 trace; every operand moved at once."""
    n = 24
    spec, mats = chain_spec(n, closed=True), matrices(n, 12, seed=11, scale=20.0)
    with np.errstate(all="ignore"):
        assert not np.isfinite(einsgrad.einsum(spec, *mats))
    assert_log_gradient(spec, mats, einsgrad.compile(spec).log_grad(*mats).grads)


def assert_log_gradient(spec: str, mats, grads) -> None:
    """``grads`` are the gradients of log|y| at ``mats``: their inner product with random
    directions equals float64 central differences of log|y| along them."""
    rng = np.random.default_rng(2)
    xs = [m.astype(np.float64) for m in mats]
    us = [rng.standard_normal(x.shape) for x in xs]

    def log_value(t):
        return math.log(abs(contract(spec, *[x + t * u for x, u in zip(xs, us)])))

    h = 1e-5
    expected = (log_value(h) - log_value(-h)) / (2 * h)
    got = sum(float(np.sum(np.asarray(d).astype(np.float64) * u)) for d, u in zip(grads, us))
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_float64_past_its_range_against_mpmath():
    """float64 matrices of 1e30 entries: the chain's trace passes 1e308. Value and
    log-gradients against mpmath's exact-enough products."""
    n = 12
    spec = chain_spec(n, closed=True)
    mats = matrices(n, 3, np.float64, seed=7, scale=1e30)
    with np.errstate(all="ignore"):
        assert not np.isfinite(einsgrad.einsum(spec, *mats))
    found = einsgrad.compile(spec).log_grad(*mats)
    mp = [mpmath.matrix(m.tolist()) for m in mats]

    def product(ms):
        out = mpmath.eye(3)
        for m in ms:
            out = out * m
        return out

    trace = sum(product(mp)[i, i] for i in range(3))
    assert float(found.value.log10()) == pytest.approx(float(mpmath.log10(abs(trace))), rel=1e-12)
    for k in (0, 5, n - 1):  # d tr(A_1..A_n)/dA_k = (A_{k+1}..A_n A_1..A_{k-1})^T
        rest = product(mp[k + 1:] + mp[:k])
        expected = np.array([[float(rest[j, i] / trace) for j in range(3)] for i in range(3)])
        assert_close(found.grads[k], expected, 1e-10, f"log-gradient {k}")


def test_underflow_is_stripped_too():
    """Tiny entries: the plain float32 product underflows to 0, the stripped one does not."""
    n = 20
    spec, mats = chain_spec(n), matrices(n, 8, seed=4, scale=1e-4)
    assert not np.any(einsgrad.einsum(spec, *mats))
    s = einsgrad.compile(spec).stripped(*mats)
    reference = contract(spec, *[m.astype(np.float64) for m in mats])
    assert_close(as_float64(s), reference, 1e-4, "value")


def test_complex64_chain_against_complex128():
    n = 51
    spec, mats = chain_spec(n), matrices(n, 32, np.complex64, seed=9)
    g = random_array(np.random.default_rng(1), (32, 32), np.complex64)
    e = einsgrad.compile(spec)
    s = e.stripped(*mats)
    assert s.mantissa.dtype == np.complex64
    reference = contract(spec, *[m.astype(np.complex128) for m in mats])
    assert np.max(np.abs(reference)) > 1e40
    assert_close(as_float64(s), reference, 1e-4, "value")
    expected = torch_vjp(spec, mats, g)
    for k in (0, 17, n - 1):
        assert_close(as_float64(e.stripped_vjp(g, *mats, wrt=k)), expected[k], 1e-4, f"gradient {k}")


def test_a_stripped_cotangent():
    """The cotangent may itself be stripped: G = 2^200 * M, past float32."""
    spec, mats = "ij,jk->ik", matrices(2, 5, seed=6)
    m = random_array(np.random.default_rng(3), (5, 5), np.float32)
    grads = einsgrad.compile(spec).stripped_vjp(Stripped(m, 200), *mats)
    expected = torch_vjp(spec, mats, m)
    for d, e in zip(grads, expected):
        assert_close(np.ldexp(d.mantissa.astype(np.float64), d.exponent - 200), e, 1e-5)


# -- everyday cases: the stripped values are the plain ones ------------------------------------


CURATED = ["ij,jk->ik", "ii->i", "ii->", "i->ii", "ij->", "i,j->ij", "i,i->", "ij,ij->ij",
           "...ij,...jk->...ik", "ab,bc,cd,da->", "abc,cd,db->a", "ij,jk,kl,lm->im", "i->ij"]


@pytest.mark.parametrize("spec", CURATED)
def test_curated_specs_equal_the_plain_values(spec):
    """Forward and gradients of everyday specs, float64, equal numpy's and torch's."""
    inputs, _, output = spec.partition("->")
    rng = np.random.default_rng(0)
    size = dict(zip("abcdijklm", (2, 3, 4, 3, 3, 4, 2, 3, 2)))
    shapes = [sum(((2,) if ch == "." else (size[ch],) for ch in term.replace("...", ".")), ())
              for term in inputs.split(",")]
    xs = [random_array(rng, s, np.float64) for s in shapes]
    sizes = {"j": 4} if spec == "i->ij" else None
    e = einsgrad.compile(spec, sizes=sizes)
    y = e(*xs)
    s = e.stripped(*xs)
    assert_close(as_float64(s), y, 1e-12, "value")
    g = random_array(rng, y.shape, np.float64)
    for d, plain in zip(e.stripped_vjp(g, *xs), e.vjp(g, *xs)):
        assert_close(as_float64(d), plain, 1e-12, "gradient")


@settings(max_examples=60)
@given(einsum_cases(dtypes=EXACT_DTYPES, max_operands=4))
def test_generated_cases_against_torch(case):
    """Generated problems: the stripped forward and vjp against numpy and torch autograd."""
    xs = case.operands()
    e = einsgrad.compile(case.spec)
    y = np.einsum(case.spec, *xs)
    s = e.stripped(*xs)
    assert_close(as_float64(s), y, 1e-11, "value")
    g = case.cotangent(y.shape)
    expected = torch_vjp(case.clean_spec, xs, g)
    got = e.stripped_vjp(g, *xs)
    reference = e.vjp(g, *xs) if expected is None else expected
    for k, (d, r) in enumerate(zip(got, reference)):
        assert d.mantissa.dtype == xs[k].dtype
        assert_close(as_float64(d), r, 1e-10, f"gradient {k}")


def test_mixed_dtypes_give_each_operand_its_dtype():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 2), np.float64)
    grads = einsgrad.compile("ij,jk->ik").stripped_vjp(np.ones((3, 2)), a, b)
    assert [d.mantissa.dtype for d in grads] == [np.float32, np.float64]
    assert_close(as_float64(grads[0]), np.full((3, 4), 2.0), 0)


def test_stripped_value_helpers():
    s = Stripped(np.array([0.5, -0.75, 0.0]), 2000)
    assert np.isinf(s.value()[0]) and s.value()[2] == 0
    np.testing.assert_allclose(s.log()[:2], [math.log(0.5) + 2000 * math.log(2),
                                             math.log(0.75) + 2000 * math.log(2)])
    assert s.log10()[2] == -np.inf
    assert Stripped(np.array(0.75), -3).value() == 0.75 / 8


def test_zero_and_nonfinite_values_keep_their_exponent():
    z = einsgrad.compile("ij,jk->ik").stripped(np.zeros((2, 2)), np.ones((2, 2)))
    assert not z.mantissa.any() and not z.value().any()
    n = einsgrad.compile("i,i->").stripped(np.array([np.nan, 1.0]), np.ones(2))
    assert np.isnan(n.mantissa)


# -- errors --------------------------------------------------------------------------------------


def test_integer_operands_are_refused():
    with pytest.raises(EinsumSpecError, match="floating point or complex operands, got int64, int64"):
        einsgrad.compile("ij,jk->ik").stripped(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))


def test_log_grad_needs_a_scalar():
    with pytest.raises(EinsumSpecError, match=r"log_grad needs a scalar output.*shape \(2, 2\)"):
        einsgrad.compile("ij,jk->ik").log_grad(np.ones((2, 2)), np.ones((2, 2)))


def test_cotangent_shape_is_checked():
    with pytest.raises(EinsumSpecError, match=r"the cotangent has shape \(3,\) but the output"):
        einsgrad.compile("ij,jk->ik").stripped_vjp(np.ones(3), np.ones((2, 2)), np.ones((2, 2)))


def test_a_stripped_cotangent_needs_an_integer_exponent():
    with pytest.raises(EinsumSpecError, match=r"exponent is an integer \(a power of two\), got 2.5"):
        einsgrad.compile("i,i->").stripped_vjp(Stripped(np.ones(()), 2.5), np.ones(2), np.ones(2))


def test_other_libraries_are_refused():
    da = pytest.importorskip("dask.array")
    x = da.ones((2, 2))
    with pytest.raises(EinsumSpecError, match=r"stripped\(\) runs on numpy, torch and jax arrays, got dask arrays"):
        einsgrad.compile("ij,jk->ik").stripped(x, x)
    with pytest.raises(EinsumSpecError, match=r"log_value\(\) runs on numpy, torch and jax arrays, got dask"):
        einsgrad.compile("ij,ij->").log_value(x, x)


def test_a_memory_limit_that_needs_slices_is_refused():
    sliced = einsgrad.compile("ab,bc,cd->ad", memory_limit=8)
    xs = [np.ones((4, 4))] * 3
    with pytest.raises(EinsumSpecError, match=r"does not run in slices, and memory_limit=8 needs them \('a' in chunks"):
        sliced.stripped(*xs)
    with pytest.raises(EinsumSpecError, match="does not run in slices"):
        sliced.stripped_vjp(np.ones((4, 4)), *xs)
    bounded = einsgrad.compile("ab,bc,cd->ad", memory_limit=16)  # the path alone keeps to it
    assert_close(as_float64(bounded.stripped(*xs)), np.full((4, 4), 16.0), 0)


def test_operand_count_is_checked():
    with pytest.raises(EinsumSpecError, match="operand"):
        einsgrad.compile("ij,jk->ik").stripped(np.ones((2, 2)))
