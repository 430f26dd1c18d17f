"""Issue 10, the numeric side: one path search per shape signature, optimizers that are not
pure functions, arrays that cannot exist, odd input that must be an ``EinsumSpecError``, and
the per-signature cache doing what it documents."""

from __future__ import annotations

import itertools
import re
import string
import sys

import numpy as np
import opt_einsum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError, codegen, dialects, paths, plan, shapes
from oracles import numeric_vjp_check, reference_einsum
from strategies import ELL, EXACT_DTYPES, einsum_cases, extended_cases

RING = "ab,bc,cd,da->"


def ring_operands(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, n)) for _ in range(4)]


def ring_gradients(A, B, C, D):
    """The gradients of sum_abcd A_ab B_bc C_cd D_da, written by hand (G = 1)."""
    return (np.einsum("bc,cd,da->ab", B, C, D), np.einsum("ab,cd,da->bc", A, C, D),
            np.einsum("ab,bc,da->cd", A, B, D), np.einsum("ab,bc,cd->da", A, B, C))


def counting(paths):
    """A ``PathOptimizer`` class answering ``paths`` in turn, counting its calls on the class
    (einsgrad searches with a fresh copy of an instance, which shares the class)."""

    class Counting(opt_einsum.paths.PathOptimizer):
        calls: list = []

        def __call__(self, inputs, output, size_dict, memory_limit=None):
            Counting.calls.append(len(inputs))
            answer = paths[(len(Counting.calls) - 1) % len(paths)]
            return opt_einsum.paths.greedy(inputs, output, size_dict) if answer is None else answer

    return Counting


# -- one tree per shape signature -----------------------------------------------------------


def test_the_optimizer_is_asked_once_per_shape_signature():
    """forward, vjp, value_and_pullback and its pullback, costs, plan, source and module of
    two signatures: two path searches, whatever is called in between."""
    Counting = counting([None])
    lin = einsgrad.compile(RING, optimize=Counting())
    for n in (2, 3, 2, 3):
        ops = ring_operands(n)
        g = np.ones(())
        lin(*ops)
        lin.vjp(g, *ops)
        lin.vjp(g, *ops, wrt=2)
        _, pullback = lin.value_and_pullback(*ops)
        pullback(g)
        lin.costs(*(o.shape for o in ops))
        lin.plan(*(o.shape for o in ops))
        lin.source(*(o.shape for o in ops))
        lin.module(*(o.shape for o in ops))
        lin.jacobian(*ops, wrt=1)
    assert Counting.calls == [4, 4]


@pytest.mark.parametrize("pullback", [False, True], ids=["vjp", "value_and_pullback"])
def test_an_optimizer_answering_differently_gives_the_same_gradients(pullback):
    """The issue's optimizer, alternating between two valid trees on every call: each
    signature's programs share one tree, so the gradients are the hand-derived ones."""
    Counting = counting([[(0, 1), (0, 1), (0, 1)], [(2, 3), (0, 1), (0, 1)]])
    lin = einsgrad.compile(RING, optimize=Counting())
    for n in (2, 3, 4):
        ops = ring_operands(n, seed=n)
        if pullback:
            y, pull = lin.value_and_pullback(*ops)
            grads = pull(np.ones(()))
        else:
            y, grads = lin(*ops), lin.vjp(np.ones(()), *ops)
        np.testing.assert_allclose(y, np.einsum(RING, *ops), rtol=1e-12)
        for got, expected in zip(grads, ring_gradients(*ops)):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert len(Counting.calls) == 3


class Alternating(opt_einsum.paths.PathOptimizer):
    """The issue's optimizer, word for word: its count lives on the instance."""

    calls = 0

    def __call__(self, inputs, output, size_dict, memory_limit=None):
        self.calls += 1
        return [(0, 1), (0, 1), (0, 1)] if self.calls % 2 else [(2, 3), (0, 1), (0, 1)]


def test_the_issues_alternating_optimizer():
    ops = ring_operands(3, seed=7)
    y, pullback = einsgrad.compile(RING, optimize=Alternating()).value_and_pullback(*ops)
    for got, expected in zip(pullback(np.ones(())), ring_gradients(*ops)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_auxiliary_contractions_of_an_instance_use_auto(monkeypatch):
    """One direct contraction per gradient (here ``wrt=0`` of a chain) is planned with
    opt_einsum's "auto", not with the user's instance; a name is used for both."""
    seen = []
    tree = paths.tree  # every search goes through it, the forward tree's and the others'
    monkeypatch.setattr(paths, "tree", lambda *a: seen.append(a[3]) or tree(*a))
    Counting = counting([None])
    instance = Counting()
    ops = [np.ones((2, 3)), np.ones((3, 4)), np.ones((4, 5)), np.ones((5, 2))]
    einsgrad.compile("ab,bc,cd,de->ae", optimize=instance).vjp(np.ones((2, 2)), *ops, wrt=0)
    assert seen[0] is instance and set(seen[1:]) == {"auto"}
    seen.clear()
    einsgrad.compile("ab,bc,cd,de->ae", optimize="greedy").vjp(np.ones((2, 2)), *ops, wrt=0)
    assert set(seen) == {"greedy"}


# -- optimizers: stateful, third-party, invalid ---------------------------------------------


def random_graph(seed: int, nodes: int = 6, degree: int = 3):
    """A random tensor network: ``nodes`` tensors, each pair joined by an edge with some
    probability, a few edges left open (the output); returns spec and operands."""
    rng = np.random.default_rng(seed)
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    terms = [[] for _ in range(nodes)]
    for i, j in itertools.combinations(range(nodes), 2):
        if rng.random() < degree / nodes:
            label = next(letters)
            terms[i].append(label)
            terms[j].append(label)
    output = []
    for term in terms:
        if not term or rng.random() < 0.3:
            label = next(letters)
            term.append(label)
            output.append(label)
    spec = ",".join("".join(t) for t in terms) + "->" + "".join(output)
    sizes = {}
    ops = [rng.standard_normal([sizes.setdefault(l, int(rng.integers(1, 4))) for l in t]) for t in terms]
    return spec, ops


def check_against_numpy(lin, spec, ops):
    """numpy's forward; each gradient (vjp and pullback) against finite differences, one
    operand at a time (moving all of many operands at once is past the stencil's degree)."""
    y = lin(*ops)
    np.testing.assert_allclose(y, np.einsum(spec, *ops), rtol=1e-10, atol=1e-10)
    G = np.random.default_rng(1).standard_normal(y.shape)
    forward = lambda *xs: np.einsum(spec, *xs)  # noqa: E731
    _, pullback = lin.value_and_pullback(*ops)
    for grads in (lin.vjp(G, *ops), pullback(G)):
        for k, grad in enumerate(grads):
            numeric_vjp_check(forward, ops, G, {k: grad}, rtol=1e-8)


def test_random_greedy_instance_over_many_signatures():
    """A stateful ``RandomGreedy`` instance refuses a second contraction; each search gets a
    fresh copy, so one instance serves every signature and call."""
    lin = einsgrad.compile(RING, optimize=opt_einsum.RandomGreedy(max_repeats=4))
    for n in (2, 3, 4, 2):
        ops = ring_operands(n, seed=n)
        check_against_numpy(lin, RING, ops)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reusable", [False, True], ids=["HyperOptimizer", "ReusableHyperOptimizer"])
def test_cotengra_optimizers_on_random_graphs(seed, reusable):
    ctg = pytest.importorskip("cotengra")
    kind = ctg.ReusableHyperOptimizer if reusable else ctg.HyperOptimizer
    optimizer = kind(max_repeats=8, parallel=False, progbar=False, methods=["greedy"])
    spec, ops = random_graph(seed)
    check_against_numpy(einsgrad.compile(spec, optimize=optimizer), spec, ops)


@pytest.mark.parametrize("path, reason", [
    pytest.param([(0, 5), (0, 1), (0, 1)], "positions 0 to 3", id="out-of-range"),
    pytest.param([(1, 1), (0, 1), (0, 1)], "names a position twice", id="repeated"),
    pytest.param([(0, 1)], "leaves 3 operands", id="unfinished"),
    pytest.param([(), (0, 1), (0, 1), (0, 1)], "positions 0 to 3", id="empty-step"),
    pytest.param([(0.5, 1), (0, 1), (0, 1)], "positions 0 to 3", id="float"),
    pytest.param(7, "a sequence of tuples", id="not-a-path"),
])
def test_an_invalid_path_names_the_optimizer(path, reason):
    bad = lambda inputs, output, size_dict, memory_limit=None: path  # noqa: E731
    lin = einsgrad.compile(RING, optimize=bad)
    with pytest.raises(EinsumSpecError, match=rf"path optimizer <function .*lambda.* returned "
                                              rf"{re.escape(repr(path))}.*{re.escape(reason)}"):
        lin(*ring_operands(2))


@pytest.mark.parametrize("optimize", [
    pytest.param(len, id="len"),
    pytest.param(lambda x: x, id="one-argument"),
    pytest.param(3, id="int"),
    pytest.param(object(), id="object"),
])
def test_what_is_not_an_optimizer_is_refused_at_compile(optimize):
    with pytest.raises(EinsumSpecError, match=r"optimize"):
        einsgrad.compile(RING, optimize=optimize)


@pytest.mark.parametrize("optimize", [
    pytest.param("greedy", id="name"),
    pytest.param(False, id="bool"),
    pytest.param(opt_einsum.paths.DynamicProgramming(), id="instance"),
    pytest.param(lambda inputs, output, size_dict, memory_limit: opt_einsum.paths.greedy(
        inputs, output, size_dict), id="function"),
])
def test_optimizers_accepted(optimize):
    check_against_numpy(einsgrad.compile(RING, optimize=optimize), RING, ring_operands(3))


# -- arrays that cannot exist ---------------------------------------------------------------


def test_an_output_larger_than_memory_is_refused_before_allocating():
    lin = einsgrad.compile("i->ii")
    with pytest.raises(EinsumSpecError, match=r"the output in the forward of 'i->ii' would hold "
                                              r"1,000,000,000,000 elements .*8,000,000,000,000 bytes"):
        lin(np.ones(10**6))
    with pytest.raises(EinsumSpecError, match=r"the output .* 12,000,000,000,000 elements"):
        einsgrad.compile("j->ij", sizes={"i": 4 * 10**12})(np.ones(3))
    with pytest.raises(EinsumSpecError, match=r"27,670,116,110,564,327,424 elements .* bytes"):
        einsgrad.compile("j->ij", sizes={"i": 2**62})(np.ones(6))


def test_an_intermediate_larger_than_memory_is_refused():
    """An outer product forced by the path; the big operand is a broadcast view (no memory)."""
    outer_first = lambda inputs, output, size_dict, memory_limit=None: [(0, 1), (0, 1)]  # noqa: E731
    n = 2**20
    ops = np.ones(n), np.ones(n), np.broadcast_to(np.ones(1), (n, n))
    lin = einsgrad.compile("a,b,ab->", optimize=outer_first)
    with pytest.raises(EinsumSpecError, match=r"the step a,b->ab .* in the forward of 'a,b,ab->' "
                                              r"would hold 1,099,511,627,776 elements"):
        lin(*ops)
    with pytest.raises(EinsumSpecError, match=r"the step .* in the vjp of 'a,b,ab->' would hold "
                                              r"1,099,511,627,776 elements"):
        lin.vjp(np.ones(()), *ops, wrt=2)  # the gradient of the view is dense


@pytest.mark.parametrize("sizes, match", [
    pytest.param({"j": 2**63}, r"sizes\['j'\] = 9223372036854775808 is too large", id="letter"),
    pytest.param({"j": np.uint64(2**63)}, r"sizes\['j'\] .* is too large", id="numpy"),
    pytest.param({"...": (2, 2**64)}, r"sizes\['...'\] = .* is too large", id="ellipsis"),
])
def test_sizes_past_int64_are_refused_at_parse(sizes, match):
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.compile("i->i..." if "..." in sizes else "i->ij", sizes=sizes)


# -- other bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 1])
def test_ragged_lists_name_the_operand(where):
    ops = [[1.0, 2.0], [3.0, 4.0]]
    ops[where] = [1.0, [2.0, 3.0]]
    with pytest.raises(EinsumSpecError, match=rf"operand {where} cannot be read as an array"):
        einsgrad.einsum("i,i->", *ops)
    with pytest.raises(EinsumSpecError, match="the cotangent cannot be read as an array"):
        einsgrad.vjp("i,i->i", [1.0, [2.0]], np.ones(2), np.ones(2))


def test_ragged_list_with_a_tensor():
    torch = pytest.importorskip("torch")
    with pytest.raises(EinsumSpecError, match="operand 1 cannot be read as an array"):
        einsgrad.einsum("i,i->", torch.ones(2), [1.0, [2.0]])


def test_ragged_list_in_jax():
    jnp = pytest.importorskip("jax.numpy")
    import einsgrad.jax

    with pytest.raises(EinsumSpecError, match="operand 1 cannot be read as an array"):
        einsgrad.jax.einsum("i,i->", jnp.ones(2), [1.0, [2.0]])


@pytest.mark.parametrize("cache_size", [np.int64(3), 2**63, 10**30])
def test_cache_size_of_any_integer_type_and_size(cache_size):
    lin = einsgrad.compile("ij,jk->ik", cache_size=cache_size)
    X, W = np.ones((2, 3)), np.ones((3, 4))
    np.testing.assert_array_equal(lin(X, W), X @ W)
    assert lin._records.cache_info().maxsize == min(int(cache_size), sys.maxsize)


def test_fresh_labels_never_include_surrogates():
    """Labels made past the 52 letters skip the surrogates, which no encoding writes."""
    fresh = shapes._fresh_labels(set())
    made = [fresh.take() for _ in range(0xE100)]
    assert len(set(made)) == len(made)
    assert not any(0xD800 <= ord(label) < 0xE000 for label in made)
    "".join(made).encode("utf-8")


def test_fresh_labels_end_at_the_last_code_point_with_an_error():
    """The last label is U+10FFFF; one more is an EinsumSpecError, not a crash."""
    rounds, last = divmod(shapes._FRESH - 1, len(string.ascii_letters))
    assert shapes._beyond_latin1(string.ascii_letters[last], rounds + 1) == chr(sys.maxunicode)
    rounds, after = divmod(shapes._FRESH, len(string.ascii_letters))
    with pytest.raises(EinsumSpecError, match="more than 1,111,808 labels for batch and broadcast"):
        shapes._beyond_latin1(string.ascii_letters[after], rounds + 1)


def test_about_a_thousand_operands_give_encodable_source():
    """880 operands with 63 broadcast batch dimensions each need 55,440 fresh labels, past
    the surrogates: the source encodes, and the value is the product of the sums."""
    n, rank = 880, 64
    rng = np.random.default_rng(0)
    ops = []
    for i in range(n):
        shape = [1] * rank
        shape[i % rank] = 2
        ops.append(rng.uniform(0.9, 1.1, shape))
    lin = einsgrad.compile(",".join(["..."] * n) + "->")
    lin.source(*(o.shape for o in ops)).encode("utf-8")
    expected = np.prod([np.prod([o.ravel() for i, o in enumerate(ops) if i % rank == d], axis=0).sum()
                        for d in range(rank)])
    np.testing.assert_allclose(lin(*ops), expected, rtol=1e-9)


def test_sliced_run_of_a_sized_label_equals_the_unsliced():
    """The issue's example: each chunk keeps the bound labels, nothing is bound again."""
    A, B = np.arange(25.0).reshape(5, 5), np.ones((3, 5))
    sliced = einsgrad.compile("bb,ab->", sizes={"b": 5}, memory_limit=1)
    np.testing.assert_allclose(sliced(A, B), np.einsum("bb,ab->", A, B))
    for got, expected in zip(sliced.vjp(np.ones(()), A, B), einsgrad.compile("bb,ab->").vjp(np.ones(()), A, B)):
        np.testing.assert_allclose(got, expected)


@settings(max_examples=60)
@given(st.one_of(extended_cases(), einsum_cases(dtypes=EXACT_DTYPES, max_operands=3)),
       st.sampled_from([1, 2, 4, 8]))
def test_sliced_runs_equal_unsliced(case, limit):
    """Under any ``memory_limit`` the forward is numpy's (the extended notation's reference)
    and the gradients are those of the unsliced compile; only a limit no slicing meets may
    be refused."""
    ops = case.operands()
    sizes = case.sizes or None
    try:
        lin = einsgrad.compile(case.spec, sizes=sizes, memory_limit=limit)
        y = lin(*ops)
    except EinsumSpecError as error:
        assert "is too small" in str(error), error
        return
    output = case.explicit_output
    expected = reference_einsum(case.inputs, output, ops, case.sizes)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
    G = case.cotangent(y.shape)
    whole = einsgrad.compile(case.spec, sizes=sizes)
    for got, want in zip(lin.vjp(G, *ops), whole.vjp(G, *ops)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# -- the per-signature cache ----------------------------------------------------------------


def counted(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or original(*a, **k))
    return calls


def test_cache_size_counts_shape_signatures_for_every_mode(monkeypatch):
    """4 signatures, ``cache_size=8``: a training loop generates code in its first round only."""
    renders = counted(monkeypatch, codegen, "render")
    lin = einsgrad.compile("bi,ij->bj", cache_size=8)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(3):
        for b in (1, 2, 3, 4):
            X, W = rng.standard_normal((b, 3)), rng.standard_normal((3, 2))
            G = rng.standard_normal((b, 2))
            lin(X, W)
            lin.vjp(G, X, W)
            lin.vjp(G, X, W, wrt=1)
            y, pullback = lin.value_and_pullback(X, W)
            dX, dW = pullback(G)
            np.testing.assert_allclose(dW, X.T @ G, rtol=1e-12)
            lin.jacobian(X, W, wrt=0)
        counts.append(len(renders))
    assert counts[0] == 4 * 6 and counts[1] == counts[2] == counts[0]


def test_cache_size_counts_signatures_across_dialects(monkeypatch):
    """The numpy code of each signature and the torch code of each shape class (batch 1, and
    batch 2 and 3 together) are entries of one cache: one that holds the five renders each once."""
    torch = pytest.importorskip("torch")
    renders = counted(monkeypatch, codegen, "render")
    lin = einsgrad.compile("bi,ij->bj", cache_size=5)
    counts = []
    for _ in range(3):
        for b in (1, 2, 3):
            X, W, G = np.ones((b, 3)), np.ones((3, 2)), np.ones((b, 2))
            lin.vjp(G, X, W)
            dX, dW = lin.vjp(torch.from_numpy(G), torch.from_numpy(X), torch.from_numpy(W))
            np.testing.assert_allclose(dW.numpy(), X.T @ G)
        counts.append(len(renders))
    assert counts[0] == 3 + 2 and counts[1] == counts[2] == counts[0]


def test_source_shows_the_last_call():
    lin = einsgrad.compile("ik,kj->ij")
    for n in (2, 3, 2):
        lin(np.ones((n, 4), dtype=np.float32), np.ones((4, 5), dtype=np.float32))
    source = lin.source()
    assert "shapes (2, 4), (4, 5)" in source
    assert "-> (2, 5)" in source and "-> (3, 5)" not in source


@pytest.mark.parametrize("backend", ["torch", "jax", "dask"])
def test_source_needs_no_backend_library(monkeypatch, backend):
    for name in ("torch", "jax", "jax.numpy", "dask", "dask.array"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails
    source = einsgrad.compile("abc,cd->abd", shapes=[(2, 3, 4), (4, 5)]).source(backend=backend)
    assert dialects.DIALECTS[backend].helpers in source and "def pullback(" in source


def test_plans_are_built_once_per_signature(monkeypatch):
    """One tree search and one sweep (forward and reverse, lowered) per signature and set of
    operands; plan() and costs() read the record's plans, and every tree plan is a projection:
    value_and_pullback builds the sweep of its operands once, and the forward comes from the
    sweep of every operand that vjp() and plan() use."""
    builds = {name: [] for name in ("sweep", "vjp_plan", "forward_tree")}
    for name, calls in builds.items():
        original = getattr(plan, name)
        monkeypatch.setattr(plan, name, lambda *a, _f=original, _c=calls: _c.append(a) or _f(*a))
    lin = einsgrad.compile("ab,bc,cd->ad")
    shapes_ = ((2, 3), (3, 4), (4, 5))
    lin.plan(*shapes_)
    first = {name: len(calls) for name, calls in builds.items()}
    # every operand, and each alone for the per-operand baseline of the report
    assert first == {"sweep": 4, "vjp_plan": 4, "forward_tree": 1}
    assert sorted(call[2] for call in builds["sweep"]) == [(0,), (0, 1, 2), (1,), (2,)]
    lin.plan(*shapes_)
    lin.costs(*shapes_)
    ops = [np.ones(s) for s in shapes_]
    for _ in range(3):
        lin(*ops)
        lin.vjp(np.ones((2, 5)), *ops)
        _, pullback = lin.value_and_pullback(*ops, wrt=[0, 2])
        pullback(np.ones((2, 5)))
    again = {name: len(calls) for name, calls in builds.items()}
    assert again == first | {"sweep": 5}
    assert builds["sweep"][-1][2] == (0, 2)


def test_ellipsis_only_in_the_output_still_binds():
    """sizes['...'] with the ellipsis only in the output: the record binds it once."""
    lin = einsgrad.compile("i->...i", sizes={ELL: (2,)})
    np.testing.assert_array_equal(lin(np.arange(3.0)), np.broadcast_to(np.arange(3.0), (2, 3)))


def test_loaded_functions_never_outlive_the_cache():
    """The calls' index of loaded functions holds only the cached signatures' code."""
    lin = einsgrad.compile("ik,kj->ij", cache_size=2)
    for n in range(1, 9):
        X, W = np.ones((n, 3)), np.ones((3, 2))
        lin.vjp(np.ones((n, 2)), X, W)
        _, pullback = lin.value_and_pullback(X, W)
        pullback(np.ones((n, 2)))
        np.testing.assert_array_equal(lin(X, W), X @ W)
        cached = {loaded.record for loaded in lin._loaded.values()}
        assert len(cached) <= 2 and len(lin._loaded) <= 2 * 4


def test_forward_saving_and_pullback_are_the_two_halves():
    """The public pair the jax glue uses: numpy's value and the hand-derived gradients."""
    ops = ring_operands(3, seed=2)
    lin = einsgrad.compile(RING)
    y, saved = lin.forward_saving(*ops)
    np.testing.assert_allclose(y, np.einsum(RING, *ops), rtol=1e-12)
    for got, expected in zip(lin.pullback(np.ones(()), ops, saved), ring_gradients(*ops)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    y, saved = lin.forward_saving(*ops, wrt=2)
    np.testing.assert_allclose(lin.pullback(np.ones(()), ops, saved, wrt=2), ring_gradients(*ops)[2], rtol=1e-12)
    with pytest.raises(EinsumSpecError, match=r"the cotangent has shape \(2,\) but the output has \(\)"):
        lin.pullback(np.ones(2), ops, saved, wrt=2)


# -- mixed dtypes compute in the common one ----------------------------------------------------


@settings(max_examples=60)
@given(einsum_cases(dtypes=(np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)), max_operands=3))
def test_mixed_dtypes_compute_in_the_common_dtype(case):
    """A float16 trace beside a float64 operand is summed in float64, as numpy.einsum does, so
    the result is as exact as the common dtype allows (summed alone it rounded to float16)."""
    operands = case.operands()
    expected = np.einsum(case.spec, *operands)
    common = np.result_type(*case.dtypes)
    rtol = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2}[common]
    scale = np.abs(expected).max(initial=1.0)
    lin = einsgrad.compile(case.spec)
    assert lin(*operands).dtype == expected.dtype
    np.testing.assert_allclose(lin(*operands), expected, rtol=rtol, atol=rtol * scale)
    g = case.cotangent(expected.shape, common)
    y, pullback = lin.value_and_pullback(*operands)
    for mine, again in zip(lin.vjp(g, *operands), pullback(g)):
        np.testing.assert_array_equal(mine, again)


def test_a_float16_trace_beside_float64_is_exact():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 40, 3)).astype(np.float16)
    b = rng.standard_normal((1, 3))
    expected = np.einsum("ZZH,xH", a.astype(np.float64), b)
    np.testing.assert_allclose(einsgrad.einsum("ZZH,xH", a, b), expected, rtol=1e-13)


@pytest.mark.parametrize("optimize", ["dp", "optimal", "branch-2", "greedy"])
def test_an_empty_dimension_is_planned_by_every_optimizer(optimize):
    """opt_einsum's dp found no path through a size-0 label (found by the fuzzer)."""
    ops = [np.ones(s) for s in ((1, 3), (0,), (3, 1), (0,))]
    for memory_limit in (None, 8):
        lin = einsgrad.compile("Ll,G,lL,G", optimize=optimize, memory_limit=memory_limit)
        np.testing.assert_array_equal(lin(*ops), np.einsum("Ll,G,lL,G", *ops))
        assert [g.shape for g in lin.vjp(np.ones(lin(*ops).shape), *ops)] == [(1, 3), (0,), (3, 1), (0,)]


def test_an_optimizer_that_finds_no_path_is_named():
    def giving_up(inputs, output, size_dict, memory_limit=None):
        raise RuntimeError("nothing fits")

    with pytest.raises(EinsumSpecError, match="found no contraction path: nothing fits"):
        einsgrad.compile("ab,bc,cd->ad", optimize=giving_up)(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)))
