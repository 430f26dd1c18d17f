"""Index-notation programs: parsing, canonical form, evaluation, derivatives of any order.

Expected values are matrix calculus written with numpy, or finite differences of an
independent numpy evaluation (``reference`` below: one ``numpy.einsum`` per term, ``numpy.eye``
for deltas, broadcasting by reshape); printed results are written by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError
from oracles import directional, inner

RNG_SEED = 7


def _arrays(shapes: dict, seed: int = RNG_SEED) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def _taken(prog, arrays: dict) -> dict:
    """The arrays that ``prog`` accepts (a program refuses keywords it does not know)."""
    return {name: value for name, value in arrays.items() if name in dict(prog.accepts)}


# -- an independent evaluator -----------------------------------------------------------


def reference(output, terms, arrays, sizes) -> np.ndarray:
    """``Σ_T c_T Σ Π F`` by numpy: terms as (coefficient, [(name, indices), ...]).

    ``sizes`` gives every index's size (deltas and broadcast output indices need them).
    """
    result = np.zeros([sizes[o] for o in output])
    for coefficient, factors in terms:
        names = sorted({i for _, idx in factors for i in idx} | set(output))
        letter = {name: chr(ord("a") + n) for n, name in enumerate(names)}
        present = [o for o in output if any(o in idx for _, idx in factors)]
        ops = [np.eye(sizes[idx[0]]) if name == "delta" else arrays[name] for name, idx in factors]
        spec = ",".join("".join(letter[i] for i in idx) for _, idx in factors)
        value = np.einsum(spec + "->" + "".join(letter[o] for o in present), *ops) if ops else 1.0
        shape = [sizes[o] if o in present else 1 for o in output]
        result = result + float(coefficient) * np.reshape(value, shape)
    return result


def reference_of(prog, arrays, sizes) -> np.ndarray:
    """:func:`reference` of a parsed or derived program, read through its public fields."""
    terms = [(t.coefficient, [(f.name, f.indices) for f in t.factors]) for t in prog.terms]
    return reference(prog.output_indices, terms, arrays, sizes)


def _sizes_from(prog, arrays) -> dict:
    sizes = {}
    for t in prog.terms:
        for f in t.factors:
            if f.name != "delta":
                sizes.update(zip(f.indices, np.shape(arrays[f.name])))
    return sizes


def check_gradient(forward, grad_value, x, tol=1e-9, entrywise=True):
    """``<grad, U> == d/dt <1, forward(x + tU)>`` for a random U and, entry by entry, for the
    basis: the five-point stencil is exact for polynomials of degree <= 4 (every test
    program has at most four factors in a term)."""
    rng = np.random.default_rng(1)
    directions = [rng.standard_normal(x.shape)]
    if entrywise and x.size <= 30:
        directions += [np.eye(x.size)[n].reshape(x.shape) for n in range(x.size)]
    G = np.ones(np.shape(forward(x)))
    for u in directions:
        expected = directional(forward, [x], G, [u]).real
        magnitude = directional(lambda y: np.abs(forward(y)), [np.abs(x)], G, [np.abs(u)]).real
        got = inner(grad_value, u).real
        assert abs(got - expected) <= tol * (1 + abs(magnitude)), (got, expected)


# -- the issue's examples ---------------------------------------------------------------


LINEAR = "Y[i,j] = X[i,k] * W[j,k] + b[j]"
QUADRATIC = "f = x[i] * A[i,j] * x[j]"


def test_issue_linear_layer_prints():
    prog = einsgrad.program(LINEAR)
    assert str(prog) == LINEAR
    assert repr(prog) == f"einsgrad.program({LINEAR!r})"
    assert str(prog.grad("W")) == "dW[j,k] = dY[i,j] * X[i,k]"
    assert str(prog.grad("b")) == "db[j] = dY[i,j]"
    assert str(prog.grad("X")) == "dX[i,k] = dY[i,j] * W[j,k]"


def test_issue_quadratic_form_prints():
    q = einsgrad.program(QUADRATIC)
    assert str(q.grad("x")) == "g[i] = A[i,j] * x[j] + x[j] * A[j,i]"
    assert str(q.hessian("x")) == "H[i,j] = A[i,j] + A[j,i]"
    assert q.hessian("x") == einsgrad.program("H[i,j] = A[i,j] + A[j,i]")
    assert str(q.hvp("x")) == "Hv[i] = A[j,i] * v[j] + A[i,j] * v[j]"


def test_linear_layer_values_and_gradients():
    prog = einsgrad.program(LINEAR)
    a = _arrays({"X": (3, 4), "W": (5, 4), "b": (5,), "dY": (3, 5)})
    X, W, b, G = a["X"], a["W"], a["b"], a["dY"]
    np.testing.assert_allclose(prog(X=X, W=W, b=b), X @ W.T + b, rtol=1e-12)
    # a derived program takes every input of its source
    np.testing.assert_allclose(prog.grad("W")(**a), G.T @ X, rtol=1e-12)
    np.testing.assert_allclose(prog.grad("X")(**a), G @ W, rtol=1e-12)
    np.testing.assert_allclose(prog.grad("b")(**a), G.sum(axis=0), rtol=1e-12)


# -- canonical form ---------------------------------------------------------------------


def test_long_index_names_are_canonical():
    prog = einsgrad.program("Y[batch,out] = X[batch,feat] * W[out,feat] + bias[out]")
    assert str(prog) == "Y[i,j] = X[i,k] * W[j,k] + bias[j]"


@pytest.mark.parametrize("a, b", [
    ("f = x[i] * A[i,j] * x[j]", "f = x[q] * A[q,p] * x[p]"),
    ("Y[i,j] = X[i,k] * W[j,k] + b[j]", "Y[r,c] = X[r,z] * W[c,z] + b[c]"),
    ("Y[i] = A[i,j] * x[j] - 2 * B[j,i] * y[j]", "Y[k] = A[k,i] * x[i] - 2 * B[i,k] * y[i]"),
    ("f = X[i,k]*W[k,j]*X[i,l]*W[l,j]", "f = X[a,b]*W[b,c]*X[a,d]*W[d,c]"),
], ids=["quadratic", "linear", "two_terms", "frobenius"])
def test_renamed_indices_print_the_same(a, b):
    assert einsgrad.program(a) == einsgrad.program(b)
    assert str(einsgrad.program(a)) == str(einsgrad.program(b))


@pytest.mark.parametrize("text, printed", [
    ("g[i] = A[i,j]*x[j] + A[i,j]*x[j]", "g[i] = 2 * A[i,j] * x[j]"),
    ("g[i] = A[i,j]*x[j] + x[k]*A[i,k]", "g[i] = 2 * A[i,j] * x[j]"),
    ("g[i] = A[i,j]*x[j] - A[i,k]*x[k]", "g[i] = 0 * A[i,j]"),  # reads back: A sizes i
    ("Y[i] = 0.5*x[i] + 0.25*x[i] - y[i]", "Y[i] = 0.75 * x[i] - y[i]"),
    ("Y[i] = -x[i] + 3 * 2 * x[i] * s", "Y[i] = -x[i] + 6 * x[i] * s"),
    ("f = x[i]*y[i] + y[j]*x[j] + 1 + 2", "f = 2 * x[i] * y[i] + 3"),
    ("f = A[i,j] * A[j,i] + A[j,i] * A[i,j]", "f = 2 * A[i,j] * A[j,i]"),
    ("f = A[i,j] * A[i,j] + A[i,j] * A[j,i]", "f = A[i,j] * A[i,j] + A[i,j] * A[j,i]"),
    ("f = delta[i,j] * A[i,j]", "f = A[i,i]"),
    ("Y[i,j] = A[i,k] * delta[k,j]", "Y[i,j] = A[i,j]"),
    ("Y[i,j] = delta[j,i] * x[i]", "Y[i,j] = delta[i,j] * x[i]"),
])
def test_simplification(text, printed):
    assert str(einsgrad.program(text)) == printed


# -- evaluation -------------------------------------------------------------------------


@pytest.mark.parametrize("text, shapes, expected", [
    ("f = x[i] * A[i,j] * x[j]", {"x": (3,), "A": (3, 3)}, lambda x, A: x @ A @ x),
    ("Y[i,j] = A[j,i]", {"A": (2, 3)}, lambda A: A.T),
    ("Y[i,j] = A[i,j] + A[j,i]", {"A": (3, 3)}, lambda A: A + A.T),
    ("Y[i,j] = x[i] + y[j]", {"x": (2,), "y": (3,)}, lambda x, y: x[:, None] + y[None, :]),
    ("Y[i,j] = delta[i,j] * s", {"s": ()}, None),
    ("Y[i,j] = delta[i,j] * s + x[i] * x[j]", {"s": (), "x": (3,)},
     lambda s, x: s * np.eye(3) + np.outer(x, x)),
    ("f = A[i,i]", {"A": (4, 4)}, lambda A: np.trace(A)),
    ("Y[i] = A[i,i] - 0.5 * x[i]", {"A": (3, 3), "x": (3,)}, lambda A, x: np.diag(A) - 0.5 * x),
    ("f = 2.5", {}, lambda: 2.5),
    ("Y[i] = s * x[i] + 1", {"s": (), "x": (3,)}, lambda s, x: s * x + 1),
], ids=["quadratic", "transpose", "symmetrize", "outer_sum", "delta_no_size", "delta_plus",
        "trace", "diagonal", "constant", "scalar_and_constant"])
def test_evaluation(text, shapes, expected):
    prog = einsgrad.program(text) if expected is not None else None
    if expected is None:
        with pytest.raises(EinsumSpecError, match="appears in no tensor"):
            einsgrad.program(text)
        return
    a = _arrays(shapes)
    got = prog(**a)
    np.testing.assert_allclose(got, expected(*a.values()), rtol=1e-12)


def test_shared_products_evaluate_once():
    prog = einsgrad.program("Y[i,j] = A[i,j] + A[j,i] - 2 * A[j,i] * s")
    assert len(prog._plan.products) == 2
    a = _arrays({"A": (3, 3), "s": ()})
    np.testing.assert_allclose(prog(**a), a["A"] + a["A"].T - 2 * a["A"].T * a["s"], rtol=1e-12)


def test_integer_inputs_keep_integer_results():
    prog = einsgrad.program("Y[i] = A[i,j] * x[j] + 2 * x[i]")
    A, x = np.arange(9).reshape(3, 3), np.arange(3)
    got = prog(A=A, x=x)
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, A @ x + 2 * x)


# -- the classic matrix-calculus table --------------------------------------------------

FROBENIUS = ("f = X[i,k]*W[k,j]*X[i,l]*W[l,j] - 2*X[i,k]*W[k,j]*Y[i,j] + Y[i,j]*Y[i,j]")

TABLE = [
    pytest.param(QUADRATIC, "grad", "x", {"x": (4,), "A": (4, 4)},
                 lambda x, A: (A + A.T) @ x, id="grad_xAx"),
    pytest.param(QUADRATIC, "hessian", "x", {"x": (4,), "A": (4, 4)},
                 lambda x, A: A + A.T, id="hessian_xAx"),
    pytest.param(FROBENIUS, "grad", "W", {"X": (5, 3), "W": (3, 2), "Y": (5, 2)},
                 lambda X, W, Y: 2 * X.T @ (X @ W - Y), id="grad_frobenius_W"),
    pytest.param(FROBENIUS, "grad", "X", {"X": (5, 3), "W": (3, 2), "Y": (5, 2)},
                 lambda X, W, Y: 2 * (X @ W - Y) @ W.T, id="grad_frobenius_X"),
    pytest.param(FROBENIUS, "hessian", "W", {"X": (5, 3), "W": (3, 2), "Y": (5, 2)},
                 lambda X, W, Y: 2 * np.einsum("ik,jl->ijkl", X.T @ X, np.eye(2)),
                 id="hessian_frobenius_W"),
    pytest.param("f = A[i,j] * X[j,k] * B[k,i]", "grad", "X", {"A": (2, 3), "X": (3, 4), "B": (4, 2)},
                 lambda A, X, B: A.T @ B.T, id="grad_trace_AXB"),
    pytest.param("f = a[i] * X[i,j] * b[j]", "grad", "X", {"a": (3,), "X": (3, 4), "b": (4,)},
                 lambda a, X, b: np.outer(a, b), id="grad_aXb"),
    pytest.param("f = X[i,j] * w[j] * X[i,k] * w[k]", "hessian", "w", {"X": (5, 3), "w": (3,)},
                 lambda X, w: 2 * X.T @ X, id="hessian_norm_Xw"),
    pytest.param("f = X[i,j] * w[j] * X[i,k] * w[k]", "grad", "w", {"X": (5, 3), "w": (3,)},
                 lambda X, w: 2 * X.T @ X @ w, id="grad_norm_Xw"),
    pytest.param("f = x[i] * A[i,j] * y[j] + c[i] * x[i]", "grad", "y",
                 {"x": (3,), "A": (3, 4), "y": (4,), "c": (3,)},
                 lambda x, A, y, c: A.T @ x, id="grad_bilinear_plus_linear_y"),
    pytest.param("f = x[i] * A[i,j] * y[j] + c[i] * x[i]", "grad", "x",
                 {"x": (3,), "A": (3, 4), "y": (4,), "c": (3,)},
                 lambda x, A, y, c: A @ y + c, id="grad_bilinear_plus_linear_x"),
    pytest.param("f = x[i] * A[i,j] * y[j]", "mixed", ("x", "y"), {"x": (3,), "A": (3, 4), "y": (4,)},
                 lambda x, A, y: A, id="mixed_hessian_bilinear"),
    pytest.param("f = X[i,i]", "grad", "X", {"X": (3, 3)}, lambda X: np.eye(3), id="grad_trace"),
    pytest.param("f = X[i,j] * X[j,k] * X[k,i]", "grad", "X", {"X": (3, 3)},
                 lambda X: 3 * (X @ X).T, id="grad_trace_cube"),
]


@pytest.mark.parametrize("text, kind, wrt, shapes, formula", TABLE)
def test_matrix_calculus(text, kind, wrt, shapes, formula):
    prog = einsgrad.program(text)
    a = _arrays(shapes)
    if kind == "grad":
        derived = prog.grad(wrt)
    elif kind == "hessian":
        derived = prog.hessian(wrt)
    else:
        derived = prog.hessian(*wrt)
    np.testing.assert_allclose(derived(**a), formula(*a.values()), rtol=1e-10, atol=1e-12)


def test_frobenius_value_and_printed_gradient():
    prog = einsgrad.program(FROBENIUS)
    a = _arrays({"X": (5, 3), "W": (3, 2), "Y": (5, 2)})
    np.testing.assert_allclose(prog(**a), np.sum((a["X"] @ a["W"] - a["Y"]) ** 2), rtol=1e-12)
    assert str(prog.grad("W")) == "g[j,k] = 2 * X[i,j] * X[i,l] * W[l,k] - 2 * X[i,j] * Y[i,k]"


# -- higher derivatives -----------------------------------------------------------------


def test_hvp_equals_hessian_times_v_and_never_forms_it():
    prog = einsgrad.program("f = X[i,j] * w[j] * X[i,k] * w[k]")
    a = _arrays({"X": (6, 4), "w": (4,), "v": (4,)})
    hvp = prog.hvp("w")
    np.testing.assert_allclose(hvp(**a), 2 * a["X"].T @ a["X"] @ a["v"], rtol=1e-12)
    assert all("v" in [f.name for f in t.factors] for t in hvp.terms)
    assert all(len(p.spec.split("->")[1]) <= 1 for p in hvp._plan.products)


def test_grad_twice_is_a_hessian_vector_product():
    q = einsgrad.program(QUADRATIC)
    twice = q.grad("x").grad("x")
    assert str(twice) == "dx[j] = dg[i] * A[i,j] + dg[i] * A[j,i]"
    a = _arrays({"x": (4,), "A": (4, 4), "dg": (4,)})
    np.testing.assert_allclose(twice(**a), (a["A"] + a["A"].T) @ a["dg"], rtol=1e-12)


def test_backward_of_backward_by_the_cotangent_gives_the_forward():
    prog = einsgrad.program(LINEAR)
    twice = prog.grad("W").grad("dY")
    assert str(twice) == "ddY[i,j] = ddW[j,k] * X[i,k]"
    a = _arrays({"X": (3, 4), "W": (5, 4), "b": (5,)})
    np.testing.assert_allclose(twice(**a, ddW=a["W"]), a["X"] @ a["W"].T, rtol=1e-12)


def test_jacobian_of_linear_layer():
    prog = einsgrad.program(LINEAR)
    a = _arrays({"X": (2, 3), "W": (4, 3), "b": (4,)})
    J = prog.jacobian("W")
    assert str(J) == "J[i,j,l,k] = X[i,k] * delta[j,l] + 0 * W[j,m]"  # W sizes j, and l by the delta
    np.testing.assert_allclose(J(**a), np.einsum("iq,jp->ijpq", a["X"], np.eye(4)), rtol=1e-12)
    Jb = prog.jacobian("b")
    np.testing.assert_allclose(Jb(**a), np.broadcast_to(np.eye(4), (2, 4, 4)), rtol=1e-12)


def test_sizes_survive_when_the_tensor_is_gone():
    prog = einsgrad.program("f = x[i] * y[j]")
    a = _arrays({"x": (3,), "y": (5,)})
    assert str(prog.grad("x")) == "g[i] = y[j] + 0 * x[i]"  # i takes the size of x
    np.testing.assert_allclose(prog.grad("x")(**a), np.full(3, a["y"].sum()), rtol=1e-12)
    cancelled = einsgrad.program("Y[i] = x[i] * s - s * x[i]")
    assert str(cancelled) == "Y[i] = 0 * x[i]"
    np.testing.assert_allclose(cancelled(x=a["x"], s=2.0), np.zeros(3))
    assert str(einsgrad.program("f = 2 * x[i] * y[i]").hessian("x")) == "H[i,j] = 0 * x[i] * x[j]"
    np.testing.assert_allclose(einsgrad.program("f = 2 * x[i] * y[i]").hessian("x")(x=a["x"], y=a["x"]),
                               np.zeros((3, 3)))


# -- gradients of curated programs by finite differences ---------------------------------

CURATED = [
    ("Y[i,j] = X[i,k] * W[j,k] + b[j]", {"X": (3, 4), "W": (2, 4), "b": (2,)}),
    ("f = x[i] * A[i,j] * x[j] - 0.5 * x[i] * x[i] * s", {"x": (3,), "A": (3, 3), "s": ()}),
    ("Y[i] = A[i,i] * x[i] + A[i,j] * A[j,i]", {"A": (3, 3), "x": (3,)}),
    ("Y[i,j] = delta[i,j] * s * x[i] + A[i,j] * A[j,i] - 3", {"A": (3, 3), "x": (3,), "s": ()}),
    ("Y[i,j] = x[i] * x[j] * x[k] * x[k]", {"x": (3,)}),
]


@pytest.mark.parametrize("text, shapes", CURATED, ids=[c[0] for c in CURATED])
def test_curated_gradients_by_finite_differences(text, shapes):
    prog = einsgrad.program(text)
    a = _arrays(shapes)
    sizes = _sizes_from(prog, a)
    np.testing.assert_allclose(prog(**a), reference_of(prog, a, sizes), rtol=1e-12, atol=1e-12)
    G = np.random.default_rng(3).standard_normal([sizes[o] for o in prog.output_indices])
    G = G if prog.output_indices else 1.0  # a scalar program's gradient has no cotangent
    for name in prog.inputs:
        grad = prog.grad(name)
        value = grad(**a, **({"d" + prog.output_name: G} if prog.output_indices else {}))

        def forward(x, name=name):
            return np.sum(G * reference_of(prog, {**a, name: x}, sizes))
        check_gradient(forward, value, a[name])


# -- random programs --------------------------------------------------------------------

TENSORS = {"A": 2, "B": 2, "x": 1, "y": 1, "s": 0}
SIZE = 3


def render(output, terms, rename=None) -> str:
    """Program text from (output indices, terms), index names passed through ``rename``."""
    rename = rename or {}

    def factor(name, idx):
        return name + (f"[{','.join(rename.get(i, i) for i in idx)}]" if idx else "")

    text = (f"Y[{','.join(rename.get(i, i) for i in output)}]" if output else "f") + " = "
    for n, (c, fs) in enumerate(terms):
        body = " * ".join(factor(name, idx) for name, idx in fs)
        magnitude = c.lstrip("-")
        body = body if magnitude == "1" else f"{magnitude}*{body}"
        negative = c.startswith("-")
        text += (("-" if negative else "") + body) if n == 0 else f" {'-' if negative else '+'} {body}"
    return text


@st.composite
def programs(draw, scalar=False):
    """(output indices, terms): 1-3 terms of 1-3 factors (plus a coefficient), with repeated
    tensors, repeated indices, and terms that broadcast along output indices."""
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        coefficient = draw(st.sampled_from(["1", "-1", "2", "0.5", "-3"]))
        factors = []
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(sorted(TENSORS)))
            factors.append((name, tuple(draw(st.sampled_from("ijkl")) for _ in range(TENSORS[name]))))
        terms.append((coefficient, factors))
    used = sorted({i for _, fs in terms for _, idx in fs for i in idx})
    count = 0 if scalar else draw(st.integers(0, min(2, len(used))))
    output = tuple(draw(st.permutations(used))[:count])
    return output, terms


def _numeric(terms):
    return [(float(c), fs) for c, fs in terms]


@given(programs(), st.integers(0, 2**16))
def test_random_program_gradients(case, seed):
    output, terms = case
    prog = einsgrad.program(render(output, terms))
    a = _arrays({name: (SIZE,) * rank for name, rank in TENSORS.items()}, seed)
    sizes = {i: SIZE for i in "ijklmnopqrstuvwxyz"}
    expected = reference(output, _numeric(terms), a, sizes)
    np.testing.assert_allclose(prog(**_taken(prog, a)), expected, rtol=1e-9, atol=1e-9)
    G = np.random.default_rng(seed + 1).standard_normal((SIZE,) * len(output)) if output else 1.0
    for name in prog.inputs:
        grad = prog.grad(name)
        value = grad(**_taken(grad, {**a, "dY": G}))

        def forward(x, name=name):
            return np.sum(G * reference(output, _numeric(terms), {**a, name: x}, sizes))
        check_gradient(forward, value, a[name], entrywise=False)


@given(programs(), st.permutations(["row", "col", "k2", "batch_feat"]))
def test_random_programs_are_stable_under_renaming(case, names):
    output, terms = case
    renamed = einsgrad.program(render(output, terms, dict(zip("ijkl", names))))
    prog = einsgrad.program(render(output, terms))
    assert renamed == prog and str(renamed) == str(prog)
    assert einsgrad.program(str(prog)) == prog  # the printed form reads back as itself


@given(programs(scalar=True), st.integers(0, 2**16))
def test_random_program_hessians(case, seed):
    output, terms = case
    prog = einsgrad.program(render(output, terms))
    a = _arrays({name: (SIZE,) * rank for name, rank in TENSORS.items()}, seed)
    sizes = {i: SIZE for i in "ijklmnopqrstuvwxyz"}
    u = np.random.default_rng(seed + 2).standard_normal
    for name in prog.inputs:
        H = prog.hessian(name)(**_taken(prog, a))
        g = prog.grad(name)
        v = u(a[name].shape)
        # H v = d/dt g(x + t v), with g evaluated by numpy from the gradient program
        expected = np.array([directional(lambda x: reference_of(g, {**a, name: x}, sizes)[e],
                                         [a[name]], 1.0, [v]).real
                             for e in np.ndindex(a[name].shape)]).reshape(a[name].shape)
        rank = a[name].ndim
        Hv = np.tensordot(H, v, axes=rank) if rank else H * v
        np.testing.assert_allclose(Hv, expected, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(prog.hvp(name)(**_taken(prog, a), v=v), expected, rtol=1e-8,
                                   atol=1e-8)


# -- errors -----------------------------------------------------------------------------

PARSE_ERRORS = [
    ("Y[i] = x[i] % 2", r"character '%' is not allowed", 12),
    ("Y[i,i] = A[i,i]", r"index 'i' is repeated on the left", 4),
    ("Y[i,q] = x[i]", r"output index 'q' appears in no tensor", 4),
    ("f = x[i] * x[i,j]", r"tensor 'x' has 2 index\(es\) here but 1", 11),
    ("Y[i] = Y[i] + x[i]", r"the output 'Y' is used on the right", 7),
    ("Y[i] = x[i] +", r"expected a term .* found the end", 13),
    ("Y[i] = x[i] + - y[i]", r"expected a term .* found '-'", 14),
    ("f =", r"expected a term", 3),
    ("Y[i] = x[]", r"empty brackets", 8),
    ("Y[i] x[i]", r"expected '=' after the output", 5),
    ("Y[i] = x[i] y[i]", r"expected '\*', '\+', '-' or the end, found 'y'", 12),
    ("Y[i = x[i]", r"expected ',' or '\]'", 4),
    ("2 = x[i]", r"expected the output tensor's name", 0),
    ("f = delta[i] * x[i]", r"the Kronecker delta takes two indices", 4),
    ("delta[i,j] = x[i] * y[j]", r"cannot be named 'delta'", 0),
    ("f = x[i] + delta[i,j]", r"index 'i' appears only in deltas", 11),
    ("f = x[i] * y[i] *", r"expected a term", 17),
]


@pytest.mark.parametrize("text, match, column", PARSE_ERRORS, ids=[e[0] for e in PARSE_ERRORS])
def test_parse_errors(text, match, column):
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.program(text)
    assert info.value.spec == text
    if column is not None:
        assert info.value.column == column


def test_not_a_string():
    with pytest.raises(EinsumSpecError, match="a program is a string"):
        einsgrad.program(3)


@pytest.mark.parametrize("action, match", [
    (lambda: einsgrad.program(LINEAR).grad("Z"), r"cannot differentiate by 'Z'.*X, W, b"),
    (lambda: einsgrad.program(LINEAR).grad("delta"), r"cannot differentiate by 'delta'"),
    (lambda: einsgrad.program("Y[i] = x[i] * dY[i]").grad("x", out="dY"), r"the result would be named 'dY'"),
    (lambda: einsgrad.program("f = g * x[i] * x[i]").grad("x", out="g"), r"the result would be named 'g'"),
    (lambda: einsgrad.program(LINEAR).hessian("W"), r"hessian needs a scalar program"),
    (lambda: einsgrad.program(LINEAR).hvp("W"), r"hvp needs a scalar program"),
    (lambda: einsgrad.program(QUADRATIC).hvp("x", v="A"), r"the vector would be named 'A'"),
    (lambda: einsgrad.program(QUADRATIC).hvp("x", v="1v"), r"the vector's name must be valid on a program's left side"),
], ids=["unknown", "delta", "cotangent_clash", "result_clash", "hessian_not_scalar",
        "hvp_not_scalar", "vector_clash", "vector_name"])
def test_derivation_errors(action, match):
    with pytest.raises(EinsumSpecError, match=match):
        action()


def test_evaluation_errors():
    prog = einsgrad.program(LINEAR)
    a = _arrays({"X": (3, 4), "W": (5, 4), "b": (5,)})
    with pytest.raises(EinsumSpecError, match=r"missing input 'W': the program reads X, W, b"):
        prog(X=a["X"], b=a["b"])
    with pytest.raises(EinsumSpecError, match=r"tensor 'b' has 2 dimension\(s\) but the program gives it 1"):
        prog(**{**a, "b": np.ones((5, 1))})
    with pytest.raises(EinsumSpecError, match=r"index 'k' has size 3 in 'W' \(axis 1\) but 4 in 'X'"):
        prog(**{**a, "W": np.ones((5, 3))})
    with pytest.raises(EinsumSpecError, match=r"index 'j' has size 6 in 'b' \(axis 0\) but 5 in 'W'"):
        prog(**{**a, "b": np.ones(6)})
    with pytest.raises(EinsumSpecError, match=r"missing input 'x': the size of output index 'i'"):
        einsgrad.program("f = x[i] * y[j]").grad("x")(y=np.ones(3))
    with pytest.raises(EinsumSpecError, match=r"delta\[i,j\] ties indices of sizes 2 and 3"):
        einsgrad.program("Y[i,j] = delta[i,j] * x[i] * y[j]")(x=np.ones(2), y=np.ones(3))


def test_terms_of_more_than_52_indices():
    """A term past the 52 letters runs as one einsum over labels beyond them: 60 summed
    indices give (Σx)^60, and 60 output indices (size 1 each) an outer product."""
    x = np.array([0.5, 0.75])
    wide = einsgrad.program("f = " + " * ".join(f"x[a{n}]" for n in range(60)))
    np.testing.assert_allclose(wide(x=x), x.sum() ** 60)
    names = [f"a{n}" for n in range(60)]
    outer = einsgrad.program(f"Y[{','.join(names)}] = " + " * ".join(f"x[{i}]" for i in names))
    np.testing.assert_allclose(outer(x=np.full(1, 1.01)), np.full((1,) * 60, 1.01 ** 60))


def test_cotangent_names_the_input_a_gradient_reads():
    """Program.cotangent: the cotangent a derived program takes as an input (None for a scalar)."""
    linear = einsgrad.program("Y[i,j] = X[i,k] * W[j,k]")
    assert linear.cotangent == "dY" and "dY" in linear.grad("W").inputs
    assert einsgrad.program("f = x[i] * x[i]").cotangent is None
    clash = einsgrad.program("Y[i] = dY[i] * x[i]")  # a tensor already named dY: a fresh name
    assert clash.cotangent not in ("dY", "x", "Y") and clash.cotangent in clash.grad("x").inputs
