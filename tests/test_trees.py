"""Contraction trees given directly (path lists, cotengra trees) and cotengra's optimizers.

What is checked: the forward (and the forward that keeps values for the pullback, and the
vjp's recomputed forward) contracts exactly the subsets of operands the given tree does;
values and gradients against numpy and torch autograd; bad paths are refused by name.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

import einsgrad
from einsgrad import EinsumSpecError
from oracles import numeric_vjp_check

pytestmark = pytest.mark.filterwarnings("ignore:Couldn't import `kahypar`")

SPEC = "ab,bc,cd,de,ea->"  # a ring of five matrices: every label in two operands
SIZES = {"a": 2, "b": 3, "c": 4, "d": 5, "e": 6}
TERMS = SPEC.split("->")[0].split(",")
SHAPES = [tuple(SIZES[l] for l in term) for term in TERMS]


def operands(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def tree_of_path(path, count: int) -> list[frozenset]:
    """The operand subsets a linear (opt_einsum) path makes, in order."""
    held = [frozenset([k]) for k in range(count)]
    made = []
    for step in path:
        merged = frozenset().union(*(held[i] for i in step))
        for i in sorted(step, reverse=True):
            del held[i]
        held.append(merged)
        made.append(merged)
    return made


def tree_of_steps(steps, count: int) -> list[frozenset]:
    """The operand subsets that a plan's steps contract pairwise, from the values they read
    (operands ``x0``..., intermediates): only steps reading forward values alone."""
    value = {f"x{k}": frozenset([k]) for k in range(count)}
    made = []
    for step in steps:
        if not all(a in value for a in step.args):
            continue  # a gradient step (reads the cotangent)
        merged = frozenset().union(*(value[a] for a in step.args))
        if len(step.args) > 1:
            made.append(merged)
        value[step.target] = merged
    return made


def follows(report, path, count: int) -> None:
    """The forward and the forward that keeps values make the tree's subsets; the vjp
    recomputes them all but the root (it needs no output)."""
    tree = set(tree_of_path(path, count))
    for direction in (report.forward, report.forward_saving):
        assert set(tree_of_steps(direction.steps, count)) == tree, direction.name
    assert set(tree_of_steps(report.vjp.steps, count)) == tree - {frozenset(range(count))}


def check_values_and_gradients(lin, ops) -> None:
    """numpy's value; each gradient against finite differences, one operand at a time (the
    five-point stencil is exact in each operand, not along all five at once)."""
    np.testing.assert_allclose(lin(*ops), np.einsum(SPEC, *ops))
    G = np.float64(0.7)
    _, pullback = lin.value_and_pullback(*ops)
    for grads in (lin.vjp(G, *ops), pullback(G)):
        for k, grad in enumerate(grads):
            numeric_vjp_check(lambda *xs: np.einsum(SPEC, *xs), ops, G, {k: grad})


# -- path lists --------------------------------------------------------------------------------


def all_paths(count: int):
    """Every linear pairwise path for ``count`` operands."""
    if count == 1:
        yield []
        return
    for pair in itertools.combinations(range(count), 2):
        for rest in all_paths(count - 1):
            yield [pair] + rest


@pytest.mark.parametrize("path", list(all_paths(5))[::37])
def test_a_given_path_is_the_tree_of_forward_and_backward(path):
    lin = einsgrad.compile(SPEC, optimize=path)
    follows(lin.plan(*SHAPES), path, 5)
    check_values_and_gradients(lin, operands())


def test_path_forms_numpy_and_opt_einsum_take():
    ops = operands()
    numpy_path, _ = np.einsum_path(SPEC, *ops, optimize="greedy")
    assert numpy_path[0] == "einsum_path"
    for given in (numpy_path, tuple(numpy_path[1:]), [list(step) for step in numpy_path[1:]],
                  [tuple(np.int64(i) for i in step) for step in numpy_path[1:]]):
        lin = einsgrad.compile(SPEC, optimize=given)
        follows(lin.plan(*SHAPES), numpy_path[1:], 5)
        np.testing.assert_allclose(lin(*ops), np.einsum(SPEC, *ops))


def test_a_many_operand_step_and_a_single_operand():
    lin = einsgrad.compile(SPEC, optimize=[(0, 1, 2), (0, 1, 2)])
    check_values_and_gradients(lin, operands())
    x = operands()[0]
    for path in ([(0,)], []):
        np.testing.assert_allclose(einsgrad.compile("ab->a", optimize=path)(x), x.sum(1))


@pytest.mark.parametrize("path, message", [
    pytest.param([(0, 1)], r"optimize=\[\(0, 1\)\], which is not a contraction path for 5 operands: it leaves 4",
                 id="too short"),
    pytest.param([(0, 1)] * 5, r"the step \(0, 1\) must name positions 0 to 0", id="too long"),
    pytest.param([(0, 5), (0, 1), (0, 1), (0, 1)], r"the step \(0, 5\) must name positions 0 to 4", id="out of range"),
    pytest.param([(0, -1), (0, 1), (0, 1), (0, 1)], r"the step \(0, -1\) must name", id="negative"),
    pytest.param([(1, 1), (0, 1), (0, 1), (0, 1)], r"the step \(1, 1\) names a position twice", id="repeated"),
    pytest.param([(), (0, 1), (0, 1), (0, 1), (0, 1)], r"the step \(\) must name", id="empty step"),
    pytest.param([(True, 0), (0, 1), (0, 1), (0, 1)], r"the step \(True, 0\) must name", id="bool"),
    pytest.param([(0.0, 1), (0, 1), (0, 1), (0, 1)], r"the step \(0\.0, 1\) must name", id="float"),
    pytest.param([0, 1], r"a path is a sequence of tuples of operand positions", id="flat"),
    pytest.param(["greedy"], r"optimize=\['greedy'\], which is not a contraction path", id="a name in a list"),
    pytest.param(["einsum_path"], r"it leaves 5 operands, not one", id="numpy's word alone"),
])
def test_malformed_paths_are_refused_at_compile(path, message):
    with pytest.raises(EinsumSpecError, match=message):
        einsgrad.compile(SPEC, optimize=path)


def test_a_path_for_two_operands_is_checked_too():
    with pytest.raises(EinsumSpecError, match=r"must name positions 0 to 1"):
        einsgrad.compile("ab,bc->ac", optimize=[(0, 2)])
    with pytest.raises(EinsumSpecError, match=r"it leaves 2 operands"):
        einsgrad.compile("ab,bc->ac", optimize=[(0,)])


def test_a_given_path_serves_the_torch_einsum_and_vmap():
    torch = pytest.importorskip("torch")
    import einsgrad.torch

    path = [(3, 4), (0, 1), (0, 1), (0, 1)]
    lin = einsgrad.compile(SPEC, optimize=path)
    leaves = [torch.tensor(x, requires_grad=True) for x in operands()]
    twins = [t.detach().clone().requires_grad_(True) for t in leaves]
    y = einsgrad.torch.einsum(lin, *leaves)
    want = torch.einsum(SPEC, *twins)
    torch.testing.assert_close(y, want)
    for got, expected in zip(torch.autograd.grad(y, leaves), torch.autograd.grad(want, twins)):
        torch.testing.assert_close(got, expected)
    batch = torch.randn(3, *SHAPES[0], dtype=torch.float64)
    rest = [t.detach() for t in leaves[1:]]
    torch.testing.assert_close(torch.func.vmap(lambda x: einsgrad.torch.einsum(lin, x, *rest))(batch),
                               torch.einsum("zab,bc,cd,de,ea->z", batch, *rest))


# -- cotengra ----------------------------------------------------------------------------------


@pytest.fixture
def ctg():
    return pytest.importorskip("cotengra")


def no_unordered_warning(run):
    """Runs ``run`` and asserts cotengra did not warn that it was given sets."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    assert not [w for w in caught if "not ordered" in str(w.message)], [str(w.message) for w in caught]
    return result


@pytest.mark.parametrize("kind", ["HyperOptimizer", "ReusableHyperOptimizer"])
def test_cotengra_optimizers_get_ordered_labels_and_their_tree_is_followed(ctg, kind):
    opt = getattr(ctg, kind)(max_repeats=8, progbar=False, methods=["greedy"])
    lin = einsgrad.compile(SPEC, optimize=opt)
    ops = operands()
    report = no_unordered_warning(lambda: lin.plan(*SHAPES))
    found = opt.search([tuple(t) for t in TERMS], (), SIZES)  # a reusable one answers from its cache
    if kind == "HyperOptimizer":
        found = opt.tree  # the tree of einsgrad's own search (a new search may find another)
    follows(report, found.get_path(), 5)
    no_unordered_warning(lambda: check_values_and_gradients(lin, ops))


def test_an_optimizer_is_asked_once_per_shape_signature(ctg):
    """One search per shape signature, whatever the modes asked (a plain HyperOptimizer
    would search again on every question; subclasses are recognised as cotengra's)."""
    asked = []

    class Counting(ctg.HyperOptimizer):
        def search(self, inputs, output, size_dict):
            asked.append(tuple(inputs))
            assert all(isinstance(term, tuple) for term in inputs) and isinstance(output, tuple)
            return super().search(inputs, output, size_dict)

    lin = einsgrad.compile(SPEC, optimize=Counting(max_repeats=4, progbar=False, methods=["greedy"]))
    ops = operands()
    for _ in range(3):
        lin(*ops)
        lin.vjp(np.float64(1.0), *ops)
        lin.value_and_pullback(*ops)
    lin.plan(*SHAPES)
    assert asked == [tuple(tuple(t) for t in TERMS)]


def test_a_contraction_tree_is_followed(ctg):
    path = [(1, 2), (2, 3), (0, 1), (0, 1)]
    tree = ctg.ContractionTree.from_path([tuple(t) for t in TERMS], (), SIZES, path=path)
    lin = no_unordered_warning(lambda: einsgrad.compile(SPEC, optimize=tree))
    follows(lin.plan(*SHAPES), tree.get_path(), 5)
    assert set(tree_of_path(tree.get_path(), 5)) == set(tree_of_path(path, 5))
    check_values_and_gradients(lin, operands())


def test_a_tree_for_another_operand_count_is_refused(ctg):
    tree = ctg.ContractionTree.from_path([("a", "b"), ("b", "c")], ("a", "c"), {"a": 2, "b": 3, "c": 4},
                                         path=[(0, 1)])
    with pytest.raises(EinsumSpecError, match=r"ContractionTree of 2 inputs, but the spec has 5 operands"):
        einsgrad.compile(SPEC, optimize=tree)


def path_of_report(report, count: int) -> tuple:
    """The opt_einsum path that a plan report's forward steps follow (positions among the
    values left, each result appended), read from the values each step reads."""
    held, path = [f"x{k}" for k in range(count)], []
    for step in report.forward.steps:
        if not all(a in held for a in step.args):
            continue
        picked = tuple(sorted(held.index(a) for a in step.args))
        for i in reversed(picked):
            del held[i]
        held.append(step.target)
        path.append(picked)
    return tuple(path)


def _chunk_largest(lin, path=None) -> int:
    """The largest intermediate that one chunk of ``lin``'s slices allocates, forward and every
    gradient, along the tree ``path`` (default: the one its plan report follows): planned
    here from the cuts ``lin`` reports."""
    from einsgrad import plan
    from einsgrad.shapes import bind

    path = path_of_report(lin.plan(*SHAPES), len(SHAPES)) if path is None else path
    bound = bind(lin.spec, SHAPES)
    cuts = lin.costs(*SHAPES).slices
    assert cuts, "the contraction is not sliced"
    swept = plan.sweep(bound.resized(cuts), tuple(map(tuple, path)), tuple(range(len(SHAPES))))
    kept = set(swept.returns) | {"y"}
    return max(math.prod(s.shape) for s in swept.steps if s.fresh and s.target not in kept)


def test_a_sliced_cotengra_tree_is_run_sliced_to_its_own_bound(ctg):
    """A ContractionTree given sliced is run along its path, and einsgrad slices it so that no
    intermediate of the forward or of any gradient passes the tree's largest sliced one."""
    tree = ctg.ContractionTree.from_path([tuple(t) for t in TERMS], (), SIZES,
                                         path=[(0, 1), (0, 1), (0, 1), (0, 1)])
    sliced = tree.slice(target_size=tree.max_size() // 4)
    assert sliced.sliced_inds and sliced.max_size() < tree.max_size()
    lin = einsgrad.compile(SPEC, optimize=sliced)
    check_values_and_gradients(lin, operands())
    follows(lin.plan(*SHAPES), sliced.get_path(), 5)
    assert set(tree_of_path(path_of_report(lin.plan(*SHAPES), 5), 5)) == set(tree_of_path(sliced.get_path(), 5))
    assert _chunk_largest(lin, sliced.get_path()) <= sliced.max_size()
    # the same as the tree unsliced under the memory limit it implies, and never looser than one given
    same = einsgrad.compile(SPEC, optimize=tree, memory_limit=int(sliced.max_size()))
    assert lin.costs(*SHAPES).slices == same.costs(*SHAPES).slices
    tighter = einsgrad.compile(SPEC, optimize=sliced, memory_limit=4)
    assert _chunk_largest(tighter, sliced.get_path()) <= 4


@pytest.mark.parametrize("kind", ["HyperOptimizer", "ReusableHyperOptimizer"])
def test_cotengra_slicing_opts_are_honoured_for_forward_and_gradients(ctg, kind):
    """slicing_opts are never dropped: the optimizer's sliced tree bounds every intermediate of
    the forward and of every gradient by its target, in numpy and torch (against autograd)."""
    target = 8
    optimizer = getattr(ctg, kind)(methods=["greedy"], max_repeats=4, parallel=False, progbar=False,
                                   slicing_opts={"target_size": target})
    lin = einsgrad.compile(SPEC, optimize=optimizer)
    check_values_and_gradients(lin, operands())
    assert lin.costs(*SHAPES).slices
    assert _chunk_largest(lin) <= target
    torch = pytest.importorskip("torch")
    xs = [torch.tensor(x, requires_grad=True) for x in operands(1)]
    ys = [torch.tensor(x, requires_grad=True) for x in operands(1)]
    (einsgrad.compile(SPEC, optimize=optimizer)(*xs) * 0.7).backward()
    (torch.einsum(SPEC, *ys) * 0.7).backward()
    for x, y in zip(xs, ys):
        torch.testing.assert_close(x.grad, y.grad)


def test_joint_choice_with_cotengra_slicing_is_refused(ctg):
    optimizer = ctg.HyperOptimizer(max_repeats=4, progbar=False, slicing_opts={"target_size": 8})
    with pytest.raises(EinsumSpecError, match=r"joint=True .* give memory_limit= instead"):
        einsgrad.compile(SPEC, optimize=optimizer, joint=True)


def test_an_unsliced_hyperoptimizer_keeps_shape_generic_code(ctg):
    """Only an optimizer that may slice makes calls run exact shapes: a HyperOptimizer without
    slicing options keeps torch's shape-generic code."""
    plain = einsgrad.compile(SPEC, optimize=ctg.HyperOptimizer(max_repeats=4, progbar=False))
    assert "shapes" in plain.source(*SHAPES, backend="torch", generic=True)
    sliced = einsgrad.compile(SPEC, optimize=ctg.HyperOptimizer(max_repeats=4, progbar=False,
                                                                slicing_opts={"target_size": 8}))
    with pytest.raises(EinsumSpecError, match=r"generic=True.*exact shapes"):
        sliced.source(*SHAPES, backend="torch", generic=True)


def test_cotengra_tree_on_a_unicode_network(ctg):
    """A 40-tensor ring in opt_einsum's symbols, planned by a reusable hyper-optimizer: the
    values and the gradient of every operand against torch autograd."""
    torch = pytest.importorskip("torch")
    import opt_einsum

    n = 60
    terms = [opt_einsum.get_symbol(i) + opt_einsum.get_symbol((i + 1) % n) for i in range(n)]
    spec = ",".join(terms) + "->"
    opt = ctg.ReusableHyperOptimizer(max_repeats=4, progbar=False, methods=["greedy"])
    lin = einsgrad.compile(spec, optimize=opt)
    rng = np.random.default_rng(5)
    ops = [rng.standard_normal((2, 2)) * 0.9 for _ in range(n)]
    leaves = [torch.tensor(x, requires_grad=True) for x in ops]
    y = opt_einsum.contract(spec, *leaves, backend="torch")
    grads = torch.autograd.grad(y, leaves)
    np.testing.assert_allclose(no_unordered_warning(lambda: lin(*ops)), y.item(), rtol=1e-10)
    for got, want in zip(lin.vjp(np.float64(1.0), *ops), grads):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-14)
    follows(lin.plan(*[(2, 2)] * n), opt.search([tuple(t) for t in terms], (), {l: 2 for t in terms for l in t}).get_path(), n)


# -- the command line --------------------------------------------------------------------------


def test_the_plan_command_takes_a_path(capsys):
    from einsgrad.cli import main

    shapes = ",".join("x".join(map(str, s)) for s in SHAPES)
    assert main(["plan", SPEC, "--shapes", shapes, "--optimize", "3,4 0,1 0,1 0,1"]) == 0
    out = capsys.readouterr().out
    forward = out[out.index("forward:"):]
    assert forward.index("de,ea->da") < forward.index("ab,bc->ac")  # operands 3 and 4 first
    assert main(["plan", SPEC, "--shapes", shapes, "--optimize", "0,1 0,9"]) == 2
    assert "the step (0, 9) must name positions 0 to 3" in capsys.readouterr().err
    assert main(["plan", SPEC, "--shapes", shapes, "--optimize", "0,,1"]) == 2
    assert "bad path '0,,1'" in capsys.readouterr().err
