"""Property-based tests of einsgrad against independent oracles.

Forward values come from ``numpy.einsum`` (or, for the extended notation, the reference
evaluator in ``oracles.py``); gradients are checked with finite differences. The only
comparisons of einsgrad with itself are metamorphic: the same problem written differently.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import einsgrad
from devices import on_device, to_numpy
from oracles import numeric_vjp_check, reference_einsum, upcast
from strategies import (ALL_DTYPES, ELL, EXACT_DTYPES, LETTERS, LOW_DTYPES, Case,
                        einsum_cases, extended_cases, implicit_output, label_sizes, render,
                        rename, tokenize)

EXACT_RTOL = 1e-9
LOW_RTOL = 2e-4


def rtol_of(case: Case) -> float:
    """Tolerance for a case: looser when an operand is single precision."""
    return LOW_RTOL if any(d in LOW_DTYPES for d in case.dtypes) else EXACT_RTOL


def numpy_forward(case: Case):
    """The forward in double precision, by numpy.einsum."""
    spec = case.clean_spec
    return lambda *xs: np.einsum(spec, *xs)


def output_shape(case: Case) -> tuple[int, ...]:
    """numpy's output shape."""
    return np.einsum(case.clean_spec, *(np.zeros(s) for s in case.shapes)).shape


def relayout(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout: C order, Fortran order, negative strides
    (or, for ``"list"``, as nested Python lists or a Python scalar)."""
    if layout == "fortran":
        return np.array(x, order="F")
    if layout == "reversed":
        return np.flip(np.flip(x).copy())
    if layout == "list":
        return x.tolist() if x.size else x  # an empty list would lose the shape
    return x


def aliased(ops, data) -> list[np.ndarray]:
    """``ops`` where some operands of equal shape and dtype are replaced by one object, as in
    ``lin(A, A)``."""
    ops = list(ops)
    for j in range(len(ops)):
        for i in range(j):
            if (ops[i].shape, ops[i].dtype) == (ops[j].shape, ops[j].dtype) and data.draw(
                    st.booleans(), label=f"operand {j} is operand {i}"):
                ops[j] = ops[i]
                break
    return ops


def assert_close(got, expected, rtol: float, what: str = "") -> None:
    """Same shape, and values within ``rtol`` of the larger of 1 and the largest |expected|."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(upcast(got), upcast(expected), rtol=rtol, atol=rtol * scale,
                               err_msg=what)


def assert_same_results(a, b, rtol: float, what: str) -> None:
    """Two tuples of arrays with equal dtypes and shapes and close values."""
    assert len(a) == len(b), f"{what}: {len(a)} != {len(b)} results"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype, f"{what} {i}: dtype {x.dtype} != {y.dtype}"
        assert_close(x, y, rtol, f"{what} {i}")


def forward_bound(case: Case, operands) -> np.ndarray:
    """The forward with every value replaced by its modulus: the scale of rounding errors."""
    return np.einsum(case.clean_spec, *(np.abs(upcast(x)) for x in operands))


exact_cases = einsum_cases(dtypes=EXACT_DTYPES)
any_cases = einsum_cases(dtypes=ALL_DTYPES)
low_cases = any_cases.filter(lambda c: any(d in LOW_DTYPES for d in c.dtypes))
layouts = st.sampled_from(["c", "fortran", "reversed"])
# The cotangent's dtype: the result's (None), or complex128 (a complex loss downstream of a
# real or single-precision result).
cotangent_dtypes = st.sampled_from([None, np.dtype(np.complex128)])


@given(any_cases, st.sampled_from(["c", "fortran", "reversed", "list"]))
def test_forward_matches_numpy(case, layout):
    """The forward has numpy.einsum's shape, dtype and values (also through einsgrad.einsum,
    compiled with ``shapes=``, and after the same object ran on double-precision copies)."""
    ops = [relayout(x, layout) for x in case.operands()]
    expected = np.einsum(case.clean_spec, *ops)
    exact = np.einsum(case.clean_spec, *(upcast(x) for x in ops))
    bound = forward_bound(case, ops)
    reused = einsgrad.compile(case.spec)
    doubled = reused(*(upcast(x) for x in ops))
    assert doubled.dtype == exact.dtype
    assert np.all(np.abs(doubled - exact) <= EXACT_RTOL * bound + 1e-300)
    for y in (einsgrad.compile(case.spec)(*ops), einsgrad.einsum(case.spec, *ops),
              einsgrad.compile(case.spec, shapes=case.shapes)(*ops), reused(*ops)):
        assert isinstance(y, np.ndarray)
        assert y.shape == expected.shape
        assert y.dtype == expected.dtype
        assert np.all(np.abs(upcast(y) - exact) <= rtol_of(case) * bound + 1e-300), (y, exact)


@given(exact_cases, layouts, st.data())
def test_vjp_matches_finite_differences(device, case, layout, data):
    """Every gradient passes the finite-difference adjoint check (float64, complex128; the
    same array passed as several operands; a complex cotangent of a real result); on
    ``--device`` the operands and the cotangent are tensors there."""
    ops = aliased([relayout(x, layout) for x in case.operands()], data)
    dtype = data.draw(cotangent_dtypes, label="cotangent dtype")
    G = relayout(case.cotangent(output_shape(case), dtype), layout)
    grads = einsgrad.compile(case.spec).vjp(*on_device([G, *ops], device))
    numeric_vjp_check(numpy_forward(case), ops, G, [to_numpy(g) for g in grads], rtol=EXACT_RTOL,
                      seed=case.seed)


@given(exact_cases, layouts)
def test_forward_on_the_device_matches_numpy(device, case, layout):
    """On ``--device`` (the tensors' library computes there): numpy.einsum's shape and values,
    in the operands' device and dtype (float64, complex128); on cpu the numpy forward's test
    above covers it."""
    ops = [relayout(x, layout) for x in case.operands()]
    exact = np.einsum(case.clean_spec, *(upcast(x) for x in ops))
    placed = on_device(ops, device)
    y = einsgrad.compile(case.spec)(*placed)
    if device != "cpu":
        assert y.device == placed[0].device
    y = to_numpy(y)
    assert y.shape == exact.shape and y.dtype == case.result_dtype
    assert np.all(np.abs(upcast(y) - exact) <= EXACT_RTOL * forward_bound(case, ops) + 1e-300)


OPTIMIZERS = ["auto", "greedy", "optimal", "dp", "branch-2", "random-greedy", True, False]


@given(exact_cases, st.sampled_from(OPTIMIZERS), st.sampled_from([None, 1, 4, 1000]))
def test_optimizer_options_keep_values(case, optimize, memory_limit):
    """Any path optimizer and memory limit gives numpy's forward and correct gradients; a
    limit that no contraction order meets may instead be refused with EinsumSpecError."""
    ops = case.operands()
    lin = einsgrad.compile(case.spec, optimize=optimize, memory_limit=memory_limit)
    try:
        y = lin(*ops)
    except einsgrad.EinsumSpecError as error:
        assert memory_limit is not None and "memory" in str(error), error
        return
    assert y.dtype == case.result_dtype
    assert np.all(np.abs(y - np.einsum(case.clean_spec, *ops))
                  <= EXACT_RTOL * forward_bound(case, ops) + 1e-300)
    G = case.cotangent(y.shape)
    numeric_vjp_check(numpy_forward(case), ops, G, lin.vjp(G, *ops), rtol=EXACT_RTOL,
                      seed=case.seed)
    _, pullback = lin.value_and_pullback(*ops)
    numeric_vjp_check(numpy_forward(case), ops, G, pullback(G), rtol=EXACT_RTOL,
                      seed=case.seed)


@given(low_cases)
def test_vjp_single_precision_against_double(case):
    """float32/complex64 (and mixed) gradients match a double-precision finite difference."""
    ops = case.operands()
    G = case.cotangent(output_shape(case))
    grads = einsgrad.vjp(case.spec, G, *ops)
    numeric_vjp_check(numpy_forward(case), ops, G, grads, rtol=LOW_RTOL, seed=case.seed)


@given(any_cases, st.data())
def test_gradients_are_fresh_arrays_of_the_operand_type(case, data):
    """Gradients have their operand's dtype and shape, are writeable (or read-only broadcast
    views) and share no memory
    (also for a complex cotangent of a real result, and an operand passed twice)."""
    ops = aliased(case.operands(), data)
    G = case.cotangent(output_shape(case), data.draw(cotangent_dtypes, label="cotangent dtype"))
    lin = einsgrad.compile(case.spec)
    _, pullback = lin.value_and_pullback(*ops)
    for how, grads in (("vjp", lin.vjp(G, *ops)), ("pullback", pullback(G))):
        assert isinstance(grads, tuple) and len(grads) == len(ops), how
        for k, (g, x) in enumerate(zip(grads, ops)):
            assert type(g) is np.ndarray, (how, k, type(g))
            assert g.dtype == x.dtype, (how, k, g.dtype, x.dtype)
            assert g.shape == x.shape, (how, k, g.shape, x.shape)
            # writeable, or a pure broadcast returned as a read-only view (a zero stride)
            assert g.flags.writeable or 0 in g.strides, (how, k)
            for other in [*ops, G, *(h for j, h in enumerate(grads) if j != k)]:
                assert not np.shares_memory(g, other), (how, k)


def wrt_lists(n: int):
    """Distinct operand indices (negative ones count from the end), in any order."""
    return st.lists(st.integers(0, n - 1), min_size=1, unique=True).flatmap(
        lambda ks: st.tuples(*(st.sampled_from([k, k - n]) for k in ks))).map(list)


@given(any_cases, st.data())
def test_vjp_wrt_subset_matches_full(case, data):
    """``vjp(wrt=[...])`` gives the matching gradients of the full vjp, in the order asked;
    ``wrt=k`` gives that one array."""
    ops = case.operands()
    G = case.cotangent(output_shape(case))
    n = len(ops)
    lin = einsgrad.compile(case.spec)
    full = lin.vjp(G, *ops)
    wrt = data.draw(wrt_lists(n), label="wrt")
    subset = lin.vjp(G, *ops, wrt=wrt)
    assert isinstance(subset, tuple)
    assert_same_results(subset, tuple(full[k % n] for k in wrt), rtol_of(case), "wrt subset")
    k = data.draw(st.integers(-n, n - 1), label="single wrt")
    single = lin.vjp(G, *ops, wrt=k)
    assert isinstance(single, np.ndarray)
    assert_same_results((single,), (full[k % n],), rtol_of(case), "single wrt")


@given(any_cases)
def test_vjp_with_empty_wrt_returns_empty_tuple(case):
    """``wrt=[]`` asks for no gradient: vjp and pullback return an empty tuple."""
    ops = case.operands()
    G = case.cotangent(output_shape(case))
    lin = einsgrad.compile(case.spec)
    assert lin.vjp(G, *ops, wrt=[]) == ()
    _, pullback = lin.value_and_pullback(*ops, wrt=())
    assert pullback(G) == ()


@given(any_cases, st.data())
def test_value_and_pullback_matches_call_and_vjp(case, data):
    """``value_and_pullback`` gives the forward and the vjp's gradients, for any ``wrt``, and
    its pullback can be called again with another cotangent."""
    ops = case.operands()
    n = len(ops)
    wrt = data.draw(st.one_of(st.none(), wrt_lists(n), st.integers(-n, n - 1)), label="wrt")
    lin = einsgrad.compile(case.spec)
    y, pullback = lin.value_and_pullback(*ops, wrt=wrt)
    assert_same_results((y,), (lin(*ops),), rtol_of(case), "forward")
    for G in (case.cotangent(y.shape), 2.5 * case.cotangent(y.shape) - 1):
        got, expected = pullback(G), lin.vjp(G, *ops, wrt=wrt)
        if isinstance(wrt, int):
            assert isinstance(got, np.ndarray)
            got, expected = (got,), (expected,)
        assert_same_results(got, expected, rtol_of(case), "pullback")


def broadcast_sizes(case: Case, k: int) -> dict:
    """Sizes of the labels only operand ``k`` has (the broadcasts of its backward spec)."""
    size, _ = label_sizes(case)
    elsewhere = {l for j, t in enumerate(case.inputs) if j != k for l in t} | set(
        case.explicit_output)
    return {l: size[l] for l in case.inputs[k] if l != ELL and l not in elsewhere}


@given(any_cases, st.data())
def test_grad_spec_of_grad_spec_is_the_forward(case, data):
    """``grad_spec(S, k)`` is (output, other operands) -> operand k, and the backward of that
    with respect to the cotangent is S with operand k moved to the front."""
    k = data.draw(st.integers(0, len(case.inputs) - 1), label="k")
    others = case.inputs[:k] + case.inputs[k + 1:]
    back = einsgrad.grad_spec(case.spec, k)
    assert tokenize(back) == (((case.explicit_output,) + others), case.inputs[k]), back
    again = einsgrad.grad_spec(back, 0, sizes=broadcast_sizes(case, k))
    assert tokenize(again) == (((case.inputs[k],) + others), case.explicit_output), again


@given(exact_cases, st.data())
def test_grad_spec_of_grad_spec_computes_the_forward(case, data):
    """Compiling ``grad_spec(grad_spec(S, k), 0)`` reproduces S's forward values."""
    k = data.draw(st.integers(0, len(case.inputs) - 1), label="k")
    back = einsgrad.grad_spec(case.spec, k)
    again = einsgrad.grad_spec(back, 0, sizes=broadcast_sizes(case, k))
    ops = case.operands()
    y = einsgrad.compile(again)(ops[k], *ops[:k], *ops[k + 1:])
    expected = np.einsum(case.clean_spec, *ops)
    assert y.dtype == expected.dtype
    assert np.all(np.abs(y - expected) <= EXACT_RTOL * forward_bound(case, ops) + 1e-300)


def unbroadcast(case: Case, k: int) -> bool:
    """Whether no operand broadcasts a dimension of size 1 (labels and batch dimensions alike)
    and operand ``k`` has every batch dimension."""
    size, batch = label_sizes(case)
    for j, (term, shape) in enumerate(zip(case.inputs, case.shapes)):
        rank = len(shape) - len(term) + 1 if ELL in term else 0
        if j == k and ELL in term and rank != len(batch):
            return False
        own = batch[len(batch) - rank:]
        if tuple(d for l in term for d in (own if l == ELL else (size[l],))) != shape:
            return False
    return True


@given(exact_cases, st.data())
def test_grad_spec_computes_the_gradient(case, data):
    """Compiling ``grad_spec(S, k)`` (with ``sizes=`` for its broadcasts) and applying it to
    (G, other operands) gives the gradient of operand k, where nothing is broadcast."""
    k = data.draw(st.integers(0, len(case.inputs) - 1), label="k")
    assume(unbroadcast(case, k))
    ops = case.operands()
    G = case.cotangent(output_shape(case))
    sizes = broadcast_sizes(case, k)
    grad = einsgrad.compile(einsgrad.grad_spec(case.spec, k), sizes=sizes)(
        G, *ops[:k], *ops[k + 1:])
    if not np.iscomplexobj(ops[k]):
        grad = grad.real  # the raw contraction; a real operand's gradient is its real part
    numeric_vjp_check(numpy_forward(case), ops, G, {k: grad}, rtol=EXACT_RTOL, seed=case.seed)


def renamings(case: Case):
    """A bijection of the case's letters onto letters: a random one, or swapping case."""
    used = sorted({l for t in case.inputs for l in t if l != ELL})
    swap = st.just({l: l.swapcase() for l in used})
    scrambled = st.permutations(LETTERS).map(lambda p: dict(zip(used, p)))
    return st.one_of(swap, scrambled)


def results(spec: str, case: Case, ops):
    """einsgrad's forward, then its gradients for a cotangent drawn for the case."""
    lin = einsgrad.compile(spec)
    y = lin(*ops)
    return y, lin.vjp(case.cotangent(y.shape), *ops)


@given(exact_cases, st.data())
def test_renaming_labels_changes_nothing(case, data):
    """Renaming the letters consistently gives the same forward and gradients."""
    mapping = data.draw(renamings(case), label="renaming")
    renamed = render([rename(t, mapping) for t in case.inputs],
                     rename(case.explicit_output, mapping))
    ops = case.operands()
    y0, g0 = results(case.spec, case, ops)
    y1, g1 = results(renamed, case, ops)
    assert_same_results((y1,), (y0,), EXACT_RTOL, f"forward of {renamed!r}")
    assert_same_results(g1, g0, EXACT_RTOL, f"gradients of {renamed!r}")


@given(exact_cases)
def test_implicit_output_equals_its_explicit_form(case):
    """An implicit spec and the same spec with numpy's implicit output written out agree."""
    implicit = render(case.inputs, None)
    explicit = render(case.inputs, implicit_output(case.inputs))
    ops = case.operands()
    y0, g0 = results(implicit, case, ops)
    y1, g1 = results(explicit, case, ops)
    assert y0.shape == np.einsum(implicit, *ops).shape
    assert_same_results((y1,), (y0,), EXACT_RTOL, f"forward of {explicit!r}")
    assert_same_results(g1, g0, EXACT_RTOL, f"gradients of {explicit!r}")


@given(einsum_cases(dtypes=EXACT_DTYPES, require_ellipsis=True, equal_batch_ranks=True))
def test_ellipsis_equals_explicit_letters(case):
    """Where every ellipsis stands for the same dimensions, letters in its place agree."""
    ranks = {len(s) - len(t) + 1 for t, s in zip(case.inputs, case.shapes) if ELL in t}
    (rank,) = ranks
    used = {l for t in case.inputs for l in t}
    letters = tuple(l for l in LETTERS if l not in used)[:rank]

    def spell(term):
        return tuple(x for l in term for x in (letters if l == ELL else (l,)))

    lettered = render([spell(t) for t in case.inputs], spell(case.explicit_output))
    ops = case.operands()
    y0, g0 = results(case.spec, case, ops)
    y1, g1 = results(lettered, case, ops)
    assert_same_results((y1,), (y0,), EXACT_RTOL, f"forward of {lettered!r}")
    assert_same_results(g1, g0, EXACT_RTOL, f"gradients of {lettered!r}")


@given(any_cases, st.data())
def test_operands_are_never_modified(case, data):
    """Forward, vjp, value_and_pullback and the pullback leave operands and cotangent alone."""
    ops = aliased(case.operands(), data)
    copies = [x.copy() for x in ops]
    lin = einsgrad.compile(case.spec)
    y = lin(*ops)
    G = case.cotangent(y.shape, data.draw(cotangent_dtypes, label="cotangent dtype"))
    G_copy = G.copy()
    wrt = data.draw(st.one_of(st.none(), wrt_lists(len(ops))), label="wrt")
    lin.vjp(G, *ops, wrt=wrt)
    einsgrad.vjp(case.spec, G, *ops)
    _, pullback = lin.value_and_pullback(*ops, wrt=wrt)
    grads = pullback(G)
    for g in grads:  # writing into the gradients must not reach the operands either
        if g.flags.writeable:  # (a pure broadcast is a read-only view)
            g[...] = 7
    pullback(G)
    for x, c in zip(ops, copies):
        np.testing.assert_array_equal(x, c)
    np.testing.assert_array_equal(G, G_copy)


# -- the extended notation: the reference evaluator and finite differences -------------------


@given(exact_cases)
def test_reference_evaluator_agrees_with_numpy(case):
    """The oracle's extended evaluator reads numpy-valid problems as numpy does."""
    ops = case.operands()
    got = reference_einsum(case.inputs, case.explicit_output, ops)
    expected = np.einsum(case.clean_spec, *ops)
    assert got.dtype == expected.dtype
    assert_close(got, expected, EXACT_RTOL * 100)


@given(extended_cases())
def test_extended_forward_matches_reference(case):
    """Broadcast output labels, diagonal placement and summed batch dimensions: the forward
    equals the reference evaluator's."""
    ops = case.operands()
    expected = reference_einsum(case.inputs, case.output, ops, case.sizes)
    y = einsgrad.compile(case.spec, sizes=case.sizes)(*ops)
    assert y.dtype == expected.dtype
    bound = reference_einsum(case.inputs, case.output, [np.abs(x) for x in ops], case.sizes)
    assert y.shape == expected.shape
    assert np.all(np.abs(y - expected) <= EXACT_RTOL * bound + 1e-300), (y, expected)


@given(extended_cases())
def test_extended_vjp_matches_finite_differences(case):
    """Gradients of extended specs (vjp and pullback) pass the finite-difference check."""
    ops = case.operands()

    def forward(*xs):
        return reference_einsum(case.inputs, case.output, xs, case.sizes)

    G = case.cotangent(forward(*ops).shape)
    lin = einsgrad.compile(case.spec, sizes=case.sizes)
    numeric_vjp_check(forward, ops, G, lin.vjp(G, *ops), rtol=EXACT_RTOL, seed=case.seed)
    _, pullback = lin.value_and_pullback(*ops)
    numeric_vjp_check(forward, ops, G, pullback(G), rtol=EXACT_RTOL, seed=case.seed)
