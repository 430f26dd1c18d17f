"""``einsgrad codegen --backend {numpy,torch,jax}``: standalone modules from the command line,
shape-generic without ``--shapes``; user errors exit 2 with one line and no traceback."""

from __future__ import annotations

import re

import numpy as np
import pytest

from einsgrad.cli import main
from test_cli import import_file, run


def test_torch_module_without_shapes_takes_every_batch_size(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "layer.py"
    code, out, err = run(capsys, "codegen", "bij,bjk->bik", "--backend", "torch", "-o", str(path))
    assert (code, err) == (0, "")
    assert out == f"wrote {path}: einsum, vjp for bij,bjk->bik\n"
    layer = import_file(path)
    gen = torch.Generator().manual_seed(0)
    for b in (2, 5):
        x = torch.randn(b, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        w = torch.randn(b, 4, 6, dtype=torch.float64, generator=gen, requires_grad=True)
        torch.testing.assert_close(layer.einsum(x, w), torch.einsum("bij,bjk->bik", x, w))
        assert torch.autograd.gradcheck(layer.einsum, (x, w))


def test_jax_module_of_exact_shapes_refuses_others(capsys, tmp_path):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    path = tmp_path / "layer.py"
    assert main(["codegen", "ik,jk->ij", "--shapes", "4x3,5x3", "--backend", "jax", "--dtype", "float32",
                 "-o", str(path)]) == 0
    layer = import_file(path)
    x, w = jnp.ones((4, 3)), jnp.arange(15.0).reshape(5, 3)
    np.testing.assert_allclose(layer.einsum(x, w), jnp.einsum("ik,jk->ij", x, w))
    dx = jax.grad(lambda a: layer.einsum(a, w).sum())(x)
    np.testing.assert_allclose(dx, jax.grad(lambda a: jnp.einsum("ik,jk->ij", a, w).sum())(x))
    with pytest.raises(ValueError, match=r"takes operands of shapes \(4, 3\), \(5, 3\); got \(2, 3\), \(5, 3\)"):
        layer.einsum(jnp.ones((2, 3)), w)


def test_numpy_generic_module_to_stdout(capsys):
    code, out, err = run(capsys, "codegen", "...ij,jk->...ik", "--shapes", "2x4x3,3x5", "--generic")
    assert (code, err) == (0, "")
    assert "shape (n0, n1, n2)" in out and "def _check(x0, x1):" in out
    namespace: dict = {}
    exec(compile(out, "<cli>", "exec"), namespace)  # noqa: S102 (einsgrad's generated text)
    x, w = np.arange(42.0).reshape(7, 2, 3), np.arange(15.0).reshape(3, 5)
    np.testing.assert_allclose(namespace["forward"](x, w), np.einsum("...ij,jk->...ik", x, w))


@pytest.mark.parametrize("argv, message", [
    pytest.param(["codegen", "ik,jk->ij", "--backend", "dask"], r"argument --backend: invalid choice: 'dask'",
                 id="unknown backend"),
    pytest.param(["codegen", "...ij->...i"], r"module\(\) needs shapes for the batch rank of '\.\.\.'",
                 id="batch rank unknown"),
    pytest.param(["codegen", "ik,jk->ij", "--shapes", "0x3,4x3", "--generic"],
                 r"shape-generic code is planned for sizes of at least 1", id="empty dimension"),
])
def test_codegen_user_errors_exit_2_without_a_traceback(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("einsgrad: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
