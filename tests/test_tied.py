"""Tied and conjugated operands (issue 14): one gradient per tensor, against torch autograd of
``torch.einsum`` with ``x.conj()`` in the expression (complex128), finite differences, and the
stripped contraction of an overflowing float32 MPS norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opt_einsum import contract, get_symbol

import einsgrad
from einsgrad import EinsumSpecError, Tied
from oracles import inner, numeric_vjp_check
from strategies import random_array

torch = pytest.importorskip("torch")


def mps_norm(n: int):
    """``<psi|psi>`` of an open MPS of ``n`` sites: the kets are operands 0..n-1 (left bond,
    physical, right bond; the ends without their outer bond), the bras n..2n-1 their conjugates."""
    sym = iter(get_symbol(i) for i in range(10 * n))
    ket_bonds = [next(sym) for _ in range(n - 1)]
    bra_bonds = [next(sym) for _ in range(n - 1)]
    phys = [next(sym) for _ in range(n)]

    def site(bonds, i):
        left = bonds[i - 1] if i > 0 else ""
        right = bonds[i] if i < n - 1 else ""
        return left + phys[i] + right

    terms = [site(ket_bonds, i) for i in range(n)] + [site(bra_bonds, i) for i in range(n)]
    return ",".join(terms) + "->", {n + i: i for i in range(n)}, set(range(n, 2 * n))


def mps_tensors(n, bond, phys=2, dtype=np.complex128, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = [((phys, bond) if i == 0 else (bond, phys) if i == n - 1 else (bond, phys, bond))
              for i in range(n)]
    return [(scale * random_array(rng, s, dtype)).astype(dtype) for s in shapes]


def torch_grads(spec, tensors, sources, conjugated, loss):
    """torch autograd of ``loss(torch.einsum(spec, operands))``, the operands built from the
    leaves with ``.conj()`` where asked; returns (the leaves' grads, dL/dy as torch hands it)."""
    leaves = [torch.tensor(t, requires_grad=True) for t in tensors]
    operands = [leaves[s].conj() if k in conjugated else leaves[s] for k, s in enumerate(sources)]
    y = torch.einsum(spec, *operands)
    y.retain_grad()
    loss(y).backward()
    return [leaf.grad.resolve_conj().numpy() for leaf in leaves], y.grad.resolve_conj().numpy()


# -- against torch autograd -------------------------------------------------------------------


def test_mps_norm_complex128_against_torch():
    """<psi|psi> of 6 sites: torch's x.grad of the real norm is conj(vjp(1)) (module doc)."""
    n = 6
    spec, tied, conjugate = mps_norm(n)
    kets = mps_tensors(n, 3)
    norm = einsgrad.compile(spec, tied=tied, conjugate=conjugate)
    assert isinstance(norm, Tied) and norm.tensors == n
    y = norm(*kets)
    assert abs(y.imag) < 1e-12 * abs(y) and y.real > 0
    grads = norm.vjp(np.ones((), complex), *kets)
    expected, _ = torch_grads(spec, kets, norm.sources, conjugate, lambda y: y.real)
    for k, (g, e) in enumerate(zip(grads, expected)):
        np.testing.assert_allclose(np.conj(g), e, rtol=1e-10, atol=1e-12, err_msg=f"site {k}")


@pytest.mark.parametrize("loss", ["real", "abs2", "mixed"])
def test_a_complex_expectation_against_torch(loss):
    """<x| H |x> with H not Hermitian (a complex value) and several real losses of it:
    x.grad = conj(vjp(conj(dL/dy))) with dL/dy as torch hands it to y."""
    rng = np.random.default_rng(3)
    x = random_array(rng, (3, 4), np.complex128)
    h = random_array(rng, (4, 4), np.complex128)
    spec = "ab,bc,ac->"
    t = Tied(spec, tied={2: 0}, conjugate={2})
    losses = {"real": lambda y: y.real, "abs2": lambda y: (y * y.conj()).real,
              "mixed": lambda y: 2 * y.real - 3 * y.imag}
    expected, dy = torch_grads(spec, [x, h], t.sources, {2}, losses[loss])
    grads = t.vjp(np.conj(dy), x, h)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(np.conj(g), e, rtol=1e-10, atol=1e-12)


def test_conjugate_without_a_tie():
    """An untied operand read conjugated: its gradient is the conjugate of its occurrence's."""
    rng = np.random.default_rng(4)
    a, b = random_array(rng, (3, 4), np.complex128), random_array(rng, (4, 2), np.complex128)
    t = Tied("ij,jk->ik", conjugate={1})
    np.testing.assert_allclose(t(a, b), a @ np.conj(b))
    g = random_array(rng, (3, 2), np.complex128)
    expected, dy = torch_grads("ij,jk->ik", [a, b], t.sources, {1}, lambda y: (y * torch.tensor(g)).real.sum())
    for got, e in zip(t.vjp(np.conj(dy), a, b), expected):
        np.testing.assert_allclose(np.conj(got), e, rtol=1e-12)


def test_one_tensor_three_times():
    """x used three times (plain, plain, conjugated): the three terms summed."""
    rng = np.random.default_rng(5)
    x = random_array(rng, (3, 3), np.complex128)
    spec = "ab,bc,ca->"
    t = Tied(spec, tied={1: 0, 2: 0}, conjugate={2})
    assert t.tensors == 1 and t.sources == (0, 0, 0)
    expected, dy = torch_grads(spec, [x], t.sources, {2}, lambda y: y.real + y.imag)
    np.testing.assert_allclose(np.conj(t.vjp(np.conj(dy), x, wrt=0)), expected[0], rtol=1e-12)


# -- finite differences ---------------------------------------------------------------------------


def test_real_tensors_against_finite_differences():
    """Real tensors (conjugation a no-op): the adjoint identity over the tensors."""
    rng = np.random.default_rng(6)
    a, b = random_array(rng, (3, 4), np.float64), random_array(rng, (4, 4), np.float64)
    t = Tied("ab,bc,ac,cd->bd", tied={2: 0, 3: 1}, conjugate={2})
    g = random_array(rng, (4, 4), np.float64)

    def forward(a, b):
        return contract("ab,bc,ac,cd->bd", a, b, a, b)

    numeric_vjp_check(forward, [a, b], g, t.vjp(g, a, b), rtol=1e-8)


@settings(max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(), (2,), (1, 2)]))
def test_complex_directional_derivatives(seed, conjugate):
    """The convention's identity for real losses ``L = Re<G, y>``: along any complex direction
    ``U``, ``dL = Re<vjp(G), U>`` (bilinear products), by finite differences."""
    rng = np.random.default_rng(seed)
    spec = "ab,bc,ac->b"
    x, h = random_array(rng, (2, 3), np.complex128), random_array(rng, (3, 3), np.complex128)
    t = Tied(spec, tied={2: 0}, conjugate=set(conjugate))
    g = random_array(rng, (3,), np.complex128)
    grads = t.vjp(g, x, h)
    us = [random_array(rng, a.shape, np.complex128) for a in (x, h)]

    def loss(step):
        return inner(g, t(x + step * us[0], h + step * us[1])).real

    step = 0.25  # the five-point stencil is exact for the loss, a polynomial of degree 3 in t
    expected = (loss(-2 * step) - 8 * loss(-step) + 8 * loss(step) - loss(2 * step)) / (12 * step)
    got = sum(inner(d, u).real for d, u in zip(grads, us))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-10)


# -- with exponent stripping ------------------------------------------------------------------------


def test_float32_mps_norm_overflows_plainly_and_not_stripped():
    """A 17-site float32 <psi|psi> past float32's range (the issue's case, at bond 8): nan or
    inf plainly; stripped, its log and the gradients of log<psi|psi> match torch at float64."""
    n = 17
    spec, tied, conjugate = mps_norm(n)
    kets = mps_tensors(n, 8, dtype=np.float32, seed=2, scale=8.0)  # about 4e49
    norm = Tied(spec, tied=tied, conjugate=conjugate)
    with np.errstate(all="ignore"):
        assert not np.isfinite(norm(*kets))
        assert not any(np.isfinite(g).all() for g in norm.vjp(np.ones((), np.float32), *kets))
    found = norm.log_grad(*kets)
    leaves = [torch.tensor(k, dtype=torch.float64, requires_grad=True) for k in kets]
    y = torch.einsum(spec, *(leaves + leaves))
    assert y.item() > 1e40
    torch.log(y).backward()
    assert float(found.value.log()) == pytest.approx(math.log(y.item()), rel=1e-5)
    for k, (g, leaf) in enumerate(zip(found.grads, leaves)):
        assert g.dtype == np.float32 and np.isfinite(g).all()
        e = leaf.grad.numpy()
        assert np.max(np.abs(g - e)) <= 1e-3 * np.max(np.abs(e)), f"site {k}"


def test_complex_stripped_vjp_equals_the_plain_one():
    """complex128 MPS norm: the stripped tied gradients (terms at one exponent, summed) equal
    the plain tied ones, and log_grad is vjp(1/y) term by term."""
    n = 5
    spec, tied, conjugate = mps_norm(n)
    kets = mps_tensors(n, 3, seed=8)
    norm = Tied(spec, tied=tied, conjugate=conjugate)
    plain = norm.vjp(np.ones((), complex), *kets)
    for s, p in zip(norm.stripped_vjp(np.ones((), complex), *kets), plain):
        np.testing.assert_allclose(np.ldexp(s.mantissa.real, s.exponent) + 1j * np.ldexp(s.mantissa.imag, s.exponent),
                                   p, rtol=1e-12, atol=1e-14)
    y = norm(*kets)
    value, grads = norm.log_grad(*kets)
    np.testing.assert_allclose(value.value(), y, rtol=1e-12)
    for g, p in zip(grads, plain):
        np.testing.assert_allclose(g, p / y, rtol=1e-10, atol=1e-14)


def test_wrt_picks_tensors():
    rng = np.random.default_rng(9)
    a, b = random_array(rng, (2, 3), np.float64), random_array(rng, (3, 3), np.float64)
    t = Tied("ab,bc,ac->", tied={2: 0})
    both = t.vjp(np.ones(()), a, b)
    np.testing.assert_allclose(t.vjp(np.ones(()), a, b, wrt=1), both[1])
    assert len(t.vjp(np.ones(()), a, b, wrt=[1, 0])) == 2
    np.testing.assert_allclose(t.vjp(np.ones(()), a, b, wrt=[1, 0])[1], both[0])
    np.testing.assert_allclose(t.log_grad(a, b, wrt=0).grads, both[0] / t(a, b))


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied, conjugate, message", [
    ({2: 2}, (), r"tied \{2: 2\}: an operand cannot be tied to itself"),
    ({2: 1, 1: 0}, (), r"tied \{2: 1\}: operand 1 is tied itself; tie operand 2 to operand 0 instead"),
    ({3: 0}, (), r"tied \{3: 0\}: 3 is not an operand index \(the spec has 3 operands\)"),
    ({True: 0}, (), r"True is not an operand index"),
    ([(2, 0)], (), r"tied must map an operand to the operand whose tensor it reads"),
    ({}, (5,), r"conjugate: 5 is not an operand index \(the spec has 3 operands\)"),
    ({}, "ab", r"conjugate must be a set of operand indices, got 'ab'"),
])
def test_bad_ties_are_refused(tied, conjugate, message):
    with pytest.raises(EinsumSpecError, match=message):
        Tied("ab,bc,ac->", tied=tied, conjugate=conjugate)


def test_bad_calls_are_refused():
    t = Tied("ab,bc,ac->", tied={2: 0}, conjugate={2})
    x, h = np.ones((2, 3)), np.ones((3, 3))
    with pytest.raises(EinsumSpecError, match=r"takes 2 tensors \(one per untied operand\), got 3"):
        t(x, h, x)
    with pytest.raises(EinsumSpecError, match=r"wrt 2 is not a tensor index"):
        t.vjp(np.ones(()), x, h, wrt=2)
    with pytest.raises(EinsumSpecError, match=r"wrt names a tensor twice"):
        t.vjp(np.ones(()), x, h, wrt=[0, 0])
    with pytest.raises(EinsumSpecError, match=r"options \['optimize'\] are an Einsum's own"):
        Tied(einsgrad.compile("ab,bc->ac"), optimize="greedy")


def test_compile_without_ties_is_an_einsum():
    assert isinstance(einsgrad.compile("ab,bc->ac"), einsgrad.Einsum)
    assert repr(einsgrad.compile("ab,bc,ac->", tied={2: 0}, conjugate={2})) == \
        "einsgrad.Tied('ab,bc,ac->', tied={2: 0}, conjugate=[2])"


def test_einsgrad_torch_einsum_takes_conjugate_views():
    """In torch no Tied is needed: einsgrad.torch.einsum reads x.conj() (a conjugate view) and
    autograd sums the occurrences, as for torch.einsum."""
    import einsgrad.torch

    rng = np.random.default_rng(11)
    x, h = random_array(rng, (2, 3), np.complex128), random_array(rng, (3, 3), np.complex128)
    grads = []
    for einsum in (einsgrad.torch.einsum, torch.einsum):
        xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
        (2 * einsum("ab,bc,ac->", xt, ht, xt.conj()).real).backward()
        grads.append((xt.grad.resolve_conj().numpy(), ht.grad.resolve_conj().numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_torch_tensors_work_tied():
    """The same Tied object on torch tensors (vjp in einsgrad's convention, as numpy's)."""
    rng = np.random.default_rng(10)
    x, h = random_array(rng, (2, 3), np.complex128), random_array(rng, (3, 3), np.complex128)
    t = Tied("ab,bc,ac->", tied={2: 0}, conjugate={2})
    on_numpy = t.vjp(np.ones((), complex), x, h)
    on_torch = t.vjp(torch.ones((), dtype=torch.complex128), torch.tensor(x), torch.tensor(h))
    for a, b in zip(on_numpy, on_torch):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12)
