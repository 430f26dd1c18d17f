"""The path optimizer: opt_einsum's pairwise contraction order, asked through its public API.

The only importer of opt_einsum. A user's optimizer (a name, a ``PathOptimizer`` instance, a
function, cotengra's hyper-optimizers) or a contraction order given directly (a path list, a
cotengra ``ContractionTree``) is checked once, when an einsum is compiled, and every answer an
optimizer gives is validated, so that a bad optimizer or path is an error naming it, never a
wrong contraction. cotengra is never imported here: its objects are recognised by their module,
and asked through their public methods.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import opt_einsum

from .errors import EinsumSpecError

Path = tuple[tuple[int, ...], ...]  # opt_einsum's answer: operand positions contracted in turn


@dataclass(frozen=True)
class GivenPath:
    """A contraction order given directly (``optimize=`` a path list or a cotengra
    ``ContractionTree``): the forward tree, which no optimizer is asked for, and which every
    plan of the gradients follows.

    Attributes:
        steps: the path, as opt_einsum writes it (positions among the operands left).
        operands: how many operands it contracts.
    """

    steps: Path
    operands: int
    limit: int | None = None  # a sliced tree's largest intermediate: the memory limit it implies

    def __repr__(self) -> str:
        return f"GivenPath({list(self.steps)!r})"


class Tree(NamedTuple):
    """The forward tree of one shape signature, and the memory limit that its optimizer's
    slicing implies (None: none): a cotengra tree sliced by ``slicing_opts`` or given sliced
    bounds its intermediates by its largest sliced one, and einsgrad's own slicing
    (:mod:`einsgrad.slicing`) then honours that bound for the forward and every gradient."""

    path: Path
    limit: int | None = None


def check_optimizer(optimize, operands: int | None = None):
    """An opt_einsum path optimizer: a name it knows, a ``PathOptimizer`` instance (cotengra's
    ``HyperOptimizer`` and ``ReusableHyperOptimizer`` are), or a function taking ``(inputs,
    output, size_dict, memory_limit)``; bools mean auto / greedy. Or the order itself, as a
    :class:`GivenPath`: a path list (``[(0, 1), (0, 1)]``, numpy's ``["einsum_path", ...]``
    too) or a cotengra ``ContractionTree``, checked against ``operands`` (the spec's count).
    Anything else is refused here, not at the first path search."""
    if isinstance(optimize, bool):
        return "auto" if optimize else "greedy"
    if isinstance(optimize, str):
        try:
            opt_einsum.paths.get_path_fn(optimize)
        except KeyError:
            raise EinsumSpecError(
                f"optimize={optimize!r} is not an opt_einsum path optimizer; try 'auto', "
                "'greedy', 'optimal', 'dp' or 'branch-2', or give a path such as [(0, 1), (0, 1)]") from None
        return optimize
    if isinstance(optimize, GivenPath):  # an Einsum's, checked already (a batched copy's)
        return _given_path(optimize.steps, operands)
    if _is_tree(optimize):
        return _given_tree(optimize, operands)
    if isinstance(optimize, (list, tuple)):
        return _given_path(optimize, operands)
    if isinstance(optimize, opt_einsum.paths.PathOptimizer):
        return optimize
    if callable(optimize):
        try:
            inspect.signature(optimize).bind([], set(), {}, None)
        except (TypeError, ValueError):  # no signature, or one these arguments do not fit
            raise EinsumSpecError(
                f"optimize={optimize!r} is not a path optimizer: a function must take "
                "(inputs, output, size_dict, memory_limit) and return a path") from None
        return optimize
    raise EinsumSpecError(f"optimize must be an opt_einsum optimizer name or PathOptimizer, a path "
                          f"list or a cotengra ContractionTree, got {optimize!r}")


def _is_cotengra(value) -> bool:
    """Whether ``value`` is (a subclass of) one of cotengra's optimizers."""
    return any(kind.__module__.partition(".")[0] == "cotengra" for kind in type(value).__mro__)


def _is_tree(value) -> bool:
    """Whether ``value`` is a cotengra ``ContractionTree`` (cotengra imported by the user: a
    tree exists only then)."""
    cotengra = sys.modules.get("cotengra")
    return cotengra is not None and isinstance(value, cotengra.ContractionTree)


def may_slice(optimize) -> bool:
    """Whether the forward tree may come sliced, implying a memory limit (:class:`Tree`): a
    sliced cotengra tree given directly, or a cotengra optimizer that is not known to leave its
    trees unsliced (a ``HyperOptimizer`` without ``slicing_opts`` or ``slicing_reconf_opts``
    is; a ``ReusableHyperOptimizer`` keeps its options to itself)."""
    if isinstance(optimize, GivenPath):
        return optimize.limit is not None
    if not _is_cotengra(optimize):
        return False
    known = ("slicing_opts", "slicing_reconf_opts")
    return not all(hasattr(optimize, name) for name in known) or any(getattr(optimize, name) for name in known)


def _sliced_limit(tree) -> int | None:
    """The largest intermediate of a sliced cotengra tree (None where it is not sliced)."""
    return int(tree.max_size()) if tree.sliced_inds else None


def _given_tree(tree, operands: int | None) -> GivenPath:
    if operands is not None and tree.N != operands:
        raise EinsumSpecError(f"optimize= is a cotengra ContractionTree of {tree.N} inputs, "
                              f"but the spec has {operands} operands")
    return GivenPath(_checked(tree.get_path(), tree.N, given="optimize= (a ContractionTree)"), tree.N,
                     _sliced_limit(tree))


def _given_path(path, operands: int | None) -> GivenPath:
    """A path list, checked: numpy's ``einsum_path`` answer starts with that word."""
    steps = list(path)
    if steps and isinstance(steps[0], str) and steps[0] == "einsum_path":
        steps = steps[1:]
    if operands is None:  # the count that the path contracts to one
        operands = 1 + sum(len(step) - 1 for step in steps if isinstance(step, (list, tuple)))
    return GivenPath(_checked(steps, operands, given=f"optimize={list(path)!r}"), operands)


def auxiliary(optimize):
    """The optimizer for contractions other than the forward tree (one direct contraction per
    gradient, the per-operand baseline, the Jacobian): the user's when it is a name, else
    opt_einsum's ``"auto"``, so that an instance (often a costly search) is asked once per
    shape signature, for the forward tree alone."""
    return optimize if isinstance(optimize, str) else "auto"


def search(inputs: Sequence[Iterable], output: Iterable, size: dict, optimize, memory_limit=None) -> Path:
    """One path search: the pairwise order for ``inputs`` -> ``output`` (see :func:`tree`)."""
    return tree(inputs, output, size, optimize, memory_limit).path


def tree(inputs: Sequence[Iterable], output: Iterable, size: dict, optimize, memory_limit=None) -> Tree:
    """One path search: the pairwise order for ``inputs`` -> ``output`` (labels in order), and
    the memory limit its slicing implies.

    A :class:`GivenPath` is the answer itself, once its operand count is checked. cotengra's
    optimizers are asked for their tree (``search``) with the labels as ordered tuples, as
    they expect; a tree that they sliced (``slicing_opts``) gives its path and, as the limit,
    its largest sliced intermediate, which einsgrad's slicing then honours for the forward and
    every gradient: never run unsliced without a word. The others get opt_einsum's interface (sets). An opt_einsum optimizer instance is searched with
    a fresh deep copy, as stateful ones (``RandomGreedy``) refuse a second contraction; one
    that cannot be copied is called as it is; cotengra's are called as they are (a
    ``ReusableHyperOptimizer`` keeps what it found). The answer is validated.
    Under ``memory_limit`` opt_einsum's optimizers may give up and leave one many-operand
    contraction (no intermediates, but no BLAS either); then the unconstrained path is taken,
    and slicing (:func:`einsgrad.slicing.cuts`) bounds the memory of every call on every
    library (:meth:`einsgrad.Einsum.plan` shows the cuts and their cost). An empty dimension makes
    every path cost nothing, so the search sees it as size 1 (opt_einsum's ``dp`` finds no
    path through a size 0).
    """
    if isinstance(optimize, GivenPath):
        if optimize.operands != len(inputs):
            raise EinsumSpecError(f"optimize={list(optimize.steps)!r} is a path for {optimize.operands} "
                                  f"operands, but the contraction has {len(inputs)}")
        return Tree(optimize.steps, optimize.limit)
    if len(inputs) <= 2:
        return Tree((tuple(range(len(inputs))),))
    if 0 in size.values():
        size = {label: max(d, 1) for label, d in size.items()}
    if _is_cotengra(optimize) and hasattr(optimize, "search"):
        found = optimize.search([tuple(term) for term in inputs], tuple(output), size)
        return Tree(_checked(found.get_path(), len(inputs), optimize), _sliced_limit(found))
    inputs, output = [set(term) for term in inputs], set(output)
    if isinstance(optimize, str):
        find = opt_einsum.paths.get_path_fn(optimize)
    else:
        try:
            find = copy.deepcopy(optimize)
        except Exception:  # state that cannot be copied (locks, pools, modules): use it as is
            find = optimize
    if memory_limit is not None:
        try:
            path = _checked(find(inputs, output, size, memory_limit), len(inputs), optimize)
            if all(len(step) <= 2 for step in path):
                return Tree(path)
        except RuntimeError:  # opt_einsum's "no contraction found for memory_limit"
            pass
    try:
        path = find(inputs, output, size, None)
    except RuntimeError as error:  # an optimizer that gives up even without a memory limit
        raise EinsumSpecError(f"the path optimizer {optimize!r} found no contraction path: {error}") from None
    return Tree(_checked(path, len(inputs), optimize))


def _checked(path, count: int, optimize=None, given: str | None = None) -> Path:
    """``path`` as a tuple of steps, each of distinct positions among the operands left, that
    contracts ``count`` operands to one; anything else names the optimizer that gave it (or
    ``given``: the argument that held it)."""
    def refuse(reason: str) -> EinsumSpecError:
        source = given or f"the path optimizer {optimize!r} returned {path!r}"
        return EinsumSpecError(f"{source}, which is not a contraction path for {count} operands: {reason}")
    try:
        steps = tuple(tuple(step) for step in path)
    except TypeError:
        raise refuse("a path is a sequence of tuples of operand positions") from None
    left = count
    for step in steps:
        if not step or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                               and 0 <= i < left for i in step):
            raise refuse(f"the step {step!r} must name positions 0 to {left - 1}")
        if len(set(step)) != len(step):
            raise refuse(f"the step {step!r} names a position twice")
        left -= len(step) - 1
    if left != 1:
        raise refuse(f"it leaves {left} operands, not one")
    return tuple(tuple(int(i) for i in step) for step in steps)


JOINT_DP = 14  # operands up to which opt_einsum's "dp" is among the joint choice's candidates
JOINT_OPTIMAL = 7  # ... and "optimal"


def candidates(inputs: Sequence[Iterable], output: Iterable, size: dict, optimize,
               memory_limit=None) -> tuple[tuple[str, Path], ...]:
    """The trees the joint choice (:mod:`einsgrad.trees`) judges, each named: first the
    optimizer's own answer (:func:`search`, the forward-only choice), then opt_einsum's
    ``greedy``, random-greedy trials minimising FLOPs and minimising size, ``dp`` up to
    :data:`JOINT_DP` operands and ``optimal`` up to :data:`JOINT_OPTIMAL`, and, under
    ``memory_limit``, the optimizer's unconstrained tree. Duplicates are dropped."""
    found = {search(inputs, output, size, optimize, memory_limit): "the optimizer"}
    if isinstance(optimize, GivenPath):
        return tuple((name, path) for path, name in found.items())
    others: list[tuple[str, object]] = [("greedy", "greedy"),
                                        ("random-greedy (flops)", opt_einsum.RandomGreedy(max_repeats=16)),
                                        ("random-greedy (size)", opt_einsum.RandomGreedy(max_repeats=16,
                                                                                         minimize="size"))]
    if len(inputs) <= JOINT_DP:
        others.append(("dp", "dp"))
    if len(inputs) <= JOINT_OPTIMAL:
        others.append(("optimal", "optimal"))
    if memory_limit is not None:
        others.append(("the optimizer, unconstrained", optimize))
    for name, other in others:
        try:
            path = search(inputs, output, size, other)
        except EinsumSpecError:  # an alternative that finds nothing is no candidate
            continue
        found.setdefault(path, name)
    return tuple((name, path) for path, name in found.items())


@functools.cache
def has_cotengra() -> bool:
    """Whether cotengra is installed (not imported: it costs 0.1 s)."""
    return importlib.util.find_spec("cotengra") is not None


def cotengra_slices(inputs: Sequence[Iterable], output: Iterable, size: dict, path: Path,
                    memory_limit: int) -> tuple[str, ...] | None:
    """The labels that cotengra's ``SliceFinder`` slices (whole, chunk 1) so that no
    intermediate of the forward tree ``path`` exceeds ``memory_limit`` elements, or None
    where it finds no such set. The tree is given, never searched again; the finder runs
    in this process (no worker pool). cotengra is imported here, and only here; where it
    fails, einsgrad's own search stands alone."""
    import cotengra

    terms = [tuple(term) for term in inputs]
    used = {l for term in terms for l in term}
    try:  # (an empty dimension as size 1, as for the path search)
        tree = cotengra.ContractionTree.from_path(
            terms, tuple(output), {l: max(d, 1) for l, d in size.items() if l in used},
            path=[tuple(step) for step in path])
        sliced, cost = cotengra.SliceFinder(tree, target_size=memory_limit, seed=0).search()
    except Exception:  # noqa: BLE001 (no set of labels reaches the target, or cotengra fails: einsgrad's own search stands)
        return None
    return tuple(sliced) if cost.size <= memory_limit else None


def contract_path(equation: str, shapes, optimize: str) -> Path:
    """``opt_einsum.contract_path``'s path for ``equation`` on operands of ``shapes``, as a
    caller that hands it the equation and the operands gets it (``torch.einsum`` does: see
    :mod:`einsgrad.torch_autocast`)."""
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    path, _ = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=optimize)
    return tuple(tuple(int(i) for i in step) for step in path)
