"""Backend dispatch: the library is inferred from the operands, numpy values join another
library, two other libraries in one call are refused, and none is imported until used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import einsgrad
from einsgrad import EinsumSpecError, backends


def test_importing_einsgrad_imports_no_framework():
    code = ("import sys, numpy as np, einsgrad; einsgrad.compile('ik,jk->ij').vjp(np.ones((2, 2)), "
            "np.ones((2, 3)), np.ones((2, 3))); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'dask'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_numpy_values_are_numpy():
    assert backends.infer([np.ones(2), 2.0, [1, 2], np.float32(1)]) == "numpy"


def test_source_in_each_dialect(monkeypatch):
    """Showing torch code needs no torch: importing it is blocked here."""
    monkeypatch.setitem(sys.modules, "torch", None)
    lin = einsgrad.compile("abc,cd->abd", shapes=[(2, 3, 4), (4, 5)])
    assert lin.source().startswith("import numpy as np")
    torch_source = lin.source(backend="torch")
    assert "import torch" in torch_source and "np." not in torch_source.replace("import numpy", "")
    with pytest.raises(EinsumSpecError, match="backend must be one of numpy, torch, jax, dask, cupy"):
        lin.source(backend="mxnet")


def test_cupy_source_needs_no_cupy(monkeypatch):
    """cupy code is numpy's spelled with ``cp`` (its own _place helper, cupy's sums): showing it
    imports nothing."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    lin = einsgrad.compile("iij,jk->ik", shapes=[(3, 3, 4), (4, 5)])
    source = lin.source(backend="cupy")
    assert source.startswith("import cupy as cp") and "def _place(" in source
    assert "np." not in source and "numpy" not in source
    assert "cp.einsum(" in source or " @ " in source


def test_torch_mixed_with_numpy_and_with_jax():
    torch = pytest.importorskip("torch")
    X = torch.ones((2, 3), dtype=torch.float64)
    y = einsgrad.compile("ik,jk->ij")(X, np.ones((4, 3)))
    assert isinstance(y, torch.Tensor) and tuple(y.shape) == (2, 4)
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(EinsumSpecError, match=r"two array libraries.*torch.*\(torch\) and .*\(jax\)"):
        einsgrad.einsum("ik,jk->ij", X, jnp.ones((4, 3)))


def test_cotangent_of_another_library_is_refused():
    torch = pytest.importorskip("torch")
    _, pullback = einsgrad.compile("ik,jk->ij").value_and_pullback(np.ones((2, 3)), np.ones((4, 3)))
    with pytest.raises(EinsumSpecError, match="the cotangent is a torch array but the forward ran on numpy"):
        pullback(torch.ones((2, 4), dtype=torch.float64))


def test_jacobian_takes_numpy_arrays():
    torch = pytest.importorskip("torch")
    with pytest.raises(EinsumSpecError, match="jacobian\\(\\) takes numpy arrays, not torch arrays"):
        einsgrad.compile("ij->i").jacobian(torch.ones((2, 3)), wrt=0)
