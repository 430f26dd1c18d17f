"""Independent oracles for einsgrad: finite differences, a reference evaluator, torch autograd.

Nothing here imports einsgrad. Inner products are bilinear (no conjugation), matching the
JAX convention that einsgrad follows: for a holomorphic f, ``vjp(G) = Gᵀ f'(x)``, so
``<vjp(G), U> = d/dt <G, f(x + tU)>`` at t = 0 for every direction U; a real operand gets
the real part.
"""

from __future__ import annotations

import string

import numpy as np

from strategies import ELL, random_array

STEP = 0.25


def upcast(a) -> np.ndarray:
    """A float64 or complex128 copy of ``a``."""
    a = np.asarray(a)
    return np.array(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)


def inner(a, b) -> complex:
    """The bilinear inner product ``sum(a * b)`` in double precision (no conjugation)."""
    return complex(np.sum(upcast(a) * upcast(b)))


def _derivative(phi, h: float = STEP) -> complex:
    """``phi'(0)`` by the five-point central stencil: exact for polynomials of degree <= 4."""
    return (phi(-2 * h) - 8 * phi(-h) + 8 * phi(h) - phi(2 * h)) / (12 * h)


def directional(f, operands, G, directions) -> complex:
    """``d/dt <G, f(x + tU)>`` at t = 0 (f is multilinear, of degree <= 4 in t)."""
    def phi(t):
        return inner(G, f(*(x + t * u for x, u in zip(operands, directions))))
    return _derivative(phi)


def _magnitude(f, operands, G, directions) -> float:
    """The same derivative with every value replaced by its modulus: it bounds the sum of
    the absolute values of the terms, the scale of the rounding errors of both sides."""
    return directional(f, [np.abs(x) for x in operands], np.abs(G),
                       [np.abs(u) for u in directions]).real


def _close(got, expected, bound, rtol, what):
    err = abs(got - expected)
    assert err <= rtol * bound + 1e-300, (
        f"{what}: gradient gives {got!r}, finite differences give {expected!r} "
        f"(error {err:.3g}, allowed {rtol * bound:.3g})")


def numeric_vjp_check(f, operands, G, grads, *, rtol: float = 1e-9, seed: int = 0,
                      entrywise_limit: int = 48) -> None:
    """Asserts the adjoint identity ``sum_k <grads_k, U_k> = d/dt <G, f(x + tU)>``.

    Checked for a random direction of each operand alone, for all of them at once and,
    for operands of at most ``entrywise_limit`` entries, entry by entry (a finite-difference
    gradient). Everything is evaluated in float64/complex128.

    Args:
        f: the forward in double precision, ``f(*operands) -> array`` (numpy or reference).
        operands: the operands the gradients were computed at (any float/complex dtype).
        G: the cotangent.
        grads: one gradient per operand, as the code under test returned them, or a dict
            {operand index: gradient} for some of them.
        rtol: allowed error relative to the sum of the moduli of the terms.
        seed: seed of the random directions.
        entrywise_limit: largest operand checked entry by entry.
    """
    xs = [upcast(x) for x in operands]
    G = upcast(G)
    if not isinstance(grads, dict):
        assert len(grads) == len(xs), f"{len(grads)} gradients for {len(xs)} operands"
        grads = dict(enumerate(grads))
    rng = np.random.default_rng(seed)
    real = [not np.iscomplexobj(x) for x in operands]
    directions = [random_array(rng, x.shape, np.float64 if r else np.complex128)
                  for x, r in zip(xs, real)]
    zero = [np.zeros_like(u) for u in directions]

    for k, g in grads.items():
        assert np.shape(g) == xs[k].shape, f"operand {k}: gradient shape {np.shape(g)}"
        only = zero[:k] + [directions[k]] + zero[k + 1:]
        expected = directional(f, xs, G, only)
        if real[k]:
            expected = expected.real
        _close(inner(g, directions[k]), expected, _magnitude(f, xs, G, only), rtol,
               f"operand {k}, random direction")

    if len(grads) == len(xs):
        got = sum(inner(g, directions[k]) for k, g in grads.items())
        expected = directional(f, xs, G, directions)
        if any(real) and np.iscomplexobj(G):  # real operands only keep the real part
            got, expected = got.real, expected.real
        _close(got, expected, _magnitude(f, xs, G, directions), rtol, "all operands at once")

    for k, g in grads.items():
        if 0 < xs[k].size <= entrywise_limit:
            fd, bound = finite_difference_gradient(f, xs, G, k)
            if real[k]:
                fd = fd.real
            err = np.abs(upcast(g) - fd)
            bad = err > rtol * bound + 1e-300
            assert not bad.any(), (
                f"operand {k}: gradient differs from finite differences at "
                f"{np.argwhere(bad).tolist()}:\n got {np.asarray(g)!r}\n expected {fd!r}")


def finite_difference_gradient(f, operands, G, k: int):
    """``d<G, f>/dx_k`` entry by entry (complex) and, per entry, the sum of the moduli of the
    terms. f is linear in each operand, so the central difference is exact up to rounding."""
    x = operands[k]
    fd = np.zeros(x.shape, dtype=np.complex128)
    bound = np.zeros(x.shape)
    moduli = [np.abs(y) for y in operands]
    for index in np.ndindex(*x.shape):
        e = np.zeros(x.shape)
        e[index] = STEP

        def phi(sign, xs=operands, g=G):
            moved = list(xs)
            moved[k] = xs[k] + sign * e
            return inner(g, f(*moved))

        fd[index] = (phi(1) - phi(-1)) / (2 * STEP)
        bound[index] = ((phi(1, moduli, np.abs(G)) - phi(-1, moduli, np.abs(G))) / (2 * STEP)).real
    return fd, bound


# -- a reference evaluator for the extended notation ---------------------------------------


def reference_einsum(inputs, output, operands, sizes=None) -> np.ndarray:
    """The forward of the extended notation, by numpy.einsum plus explicit placement.

    ``Y[y] = sum over all labels a of prod_t delta(y_t, a(output_t)) prod_m X_m[a(L_m)]``:
    the ellipsis is expanded into letters (right-aligned), numpy contracts to the distinct
    output labels that the inputs have, the result is broadcast along labels only the
    output has (sizes from ``sizes``) and written onto the diagonal of repeated labels.

    Args:
        inputs: label lists of the operands (``"..."`` for an ellipsis).
        output: label list of the output (explicit).
        operands: the arrays.
        sizes: sizes of labels only the output has, and under ``"..."`` the trailing batch
            dimensions when only the output has an ellipsis.
    """
    sizes = dict(sizes or {})
    used = {label for term in (*inputs, output) for label in term}
    spare = [c for c in string.ascii_letters if c not in used]
    ranks = [x.ndim - (len(term) - 1) if ELL in term else 0 for term, x in zip(inputs, operands)]
    out_batch = tuple(sizes.pop(ELL, ()))
    batch = spare[:max(ranks + [len(out_batch)])]
    sizes.update(zip(batch[len(batch) - len(out_batch):], out_batch))

    def expand(term, rank):
        out = []
        for label in term:
            out.extend(batch[len(batch) - rank:] if label == ELL else [label])
        return out

    terms = [expand(term, r) for term, r in zip(inputs, ranks)]
    out = expand(output, len(batch))
    size = dict(sizes)
    for term, x in zip(terms, operands):
        for label, d in zip(term, x.shape):
            if d != 1:  # numpy broadcasting: a size other than 1 wins
                size[label] = d
            else:
                size.setdefault(label, 1)
    distinct = list(dict.fromkeys(out))
    present = {label for term in terms for label in term}
    core = [label for label in distinct if label in present]
    contraction = ",".join("".join(t) for t in terms) + "->" + "".join(core)
    values = np.einsum(contraction, *operands)
    values = values.reshape([size[l] if l in present else 1 for l in distinct])
    values = np.broadcast_to(values, [size[l] for l in distinct])
    result = np.zeros([size[l] for l in out], dtype=values.dtype)
    grid = np.indices([size[l] for l in distinct], sparse=False)
    result[tuple(grid[distinct.index(l)] for l in out)] = values
    return result


# -- torch autograd -------------------------------------------------------------------------


def torch_vjp(spec: str, operands, G):
    """einsgrad's convention computed with torch autograd of ``torch.einsum``, or None when
    torch refuses the problem (or reads it differently: another output shape).

    torch returns ``conj(J)ᵀ g`` for a cotangent g; with ``g = conj(G)`` its conjugate is the
    plain contraction ``Jᵀ G`` that einsgrad returns (a real operand: the real part). All in
    float64/complex128; operands of different dtypes are cast inside the graph.
    """
    import torch

    xs = [upcast(x) for x in operands]
    G = upcast(G)
    common = torch.complex128 if any(np.iscomplexobj(x) for x in xs) else torch.float64
    leaves = [torch.tensor(x).requires_grad_(True) for x in xs]
    try:
        y = torch.einsum(spec, *(leaf.to(common) for leaf in leaves))
    except RuntimeError:
        return None
    if tuple(y.shape) != G.shape:
        return None
    grads = torch.autograd.grad(y, leaves, grad_outputs=torch.tensor(np.conj(G)).to(common),
                                allow_unused=True)
    return tuple(np.zeros_like(x) if g is None else np.conj(g.detach().numpy())
                 for x, g in zip(xs, grads))


def central_gradient(f, x, h=1e-6):
    """The gradient of a scalar function ``f`` at the array ``x``, by central differences, one
    entry at a time."""
    g = np.zeros_like(x)
    for e in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[e] = h
        g[e] = (f(x + step) - f(x - step)) / (2 * h)
    return g
