"""einsgrad's gradients against torch autograd of ``torch.einsum`` (skipped without torch).

torch conjugates where einsgrad (JAX's convention) does not: einsgrad's ``vjp(G)`` is
``conj(torch backward with grad_output conj(G))``; ``oracles.torch_vjp`` applies that.
Problems torch refuses are skipped with ``assume``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

import einsgrad
from devices import on_device, to_numpy
from oracles import torch_vjp, upcast
from strategies import EXACT_DTYPES, Case, einsum_cases

pytest.importorskip("torch")

RTOL = 1e-9


def torch_gradients(case: Case, ops, G):
    """torch's gradients in einsgrad's convention; the example is skipped if torch refuses."""
    grads = torch_vjp(case.clean_spec, ops, G)
    if grads is None:  # torch may read implicit mode differently: give it the explicit spec
        grads = torch_vjp(case.explicit_spec, ops, G)
    assume(grads is not None)
    return grads


def assert_matches_torch(got, expected, ops) -> None:
    """One gradient per operand, of the operand's dtype and shape, close to torch's."""
    assert len(got) == len(expected) == len(ops)
    for k, (g, t, x) in enumerate(zip(got, expected, ops)):
        assert g.dtype == x.dtype and g.shape == x.shape, (k, g.dtype, g.shape)
        scale = max(1.0, float(np.max(np.abs(t), initial=0.0)))
        np.testing.assert_allclose(upcast(g), t, rtol=RTOL, atol=RTOL * scale,
                                   err_msg=f"operand {k}")


def cotangent(case: Case, ops) -> np.ndarray:
    """A random cotangent of numpy's output shape."""
    return case.cotangent(np.einsum(case.clean_spec, *ops).shape)


@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_vjp_matches_torch_autograd(device, case):
    """``vjp`` equals torch autograd (float64, complex128, mixed); on ``--device`` einsgrad
    gets tensors there, torch's autograd runs on the CPU."""
    ops = case.operands()
    G = cotangent(case, ops)
    expected = torch_gradients(case, ops, G)
    got = einsgrad.compile(case.spec).vjp(*on_device([G, *ops], device))
    assert_matches_torch([to_numpy(g) for g in got], expected, ops)


@given(einsum_cases(dtypes=EXACT_DTYPES))
def test_pullback_matches_torch_autograd(device, case):
    """``value_and_pullback`` gives torch's gradients (and numpy's forward), on ``--device``."""
    ops = case.operands()
    G = cotangent(case, ops)
    expected = torch_gradients(case, ops, G)
    G_there, *ops_there = on_device([G, *ops], device)
    y, pullback = einsgrad.compile(case.spec).value_and_pullback(*ops_there)
    y = to_numpy(y)
    reference = np.einsum(case.clean_spec, *ops)
    assert y.shape == reference.shape and y.dtype == reference.dtype
    np.testing.assert_allclose(upcast(y), upcast(reference), rtol=RTOL,
                               atol=RTOL * max(1.0, float(np.max(np.abs(reference), initial=0.0))))
    assert_matches_torch([to_numpy(g) for g in pullback(G_there)], expected, ops)
