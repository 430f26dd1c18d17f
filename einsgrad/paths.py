"""The path optimizer: opt_einsum's pairwise contraction order, asked through its public API.

The only importer of opt_einsum. A user's optimizer (a name, a ``PathOptimizer`` instance, a
function) is checked once, when an einsum is compiled, and every answer it gives is validated,
so that a bad optimizer is an error naming it, never a wrong contraction.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import opt_einsum

from .errors import EinsumSpecError

Path = tuple[tuple[int, ...], ...]  # opt_einsum's answer: operand positions contracted in turn


def check_optimizer(optimize):
    """An opt_einsum path optimizer: a name it knows, a ``PathOptimizer`` instance (cotengra's
    are), or a function taking ``(inputs, output, size_dict, memory_limit)``; bools mean auto
    / greedy. Anything else is refused here, not at the first path search."""
    if isinstance(optimize, bool):
        return "auto" if optimize else "greedy"
    if isinstance(optimize, str):
        try:
            opt_einsum.paths.get_path_fn(optimize)
        except KeyError:
            raise EinsumSpecError(
                f"optimize={optimize!r} is not an opt_einsum path optimizer; try 'auto', "
                "'greedy', 'optimal', 'dp' or 'branch-2'") from None
        return optimize
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
    raise EinsumSpecError(f"optimize must be an opt_einsum optimizer name or PathOptimizer, got {optimize!r}")


def auxiliary(optimize):
    """The optimizer for contractions other than the forward tree (one direct contraction per
    gradient, the per-operand baseline, the Jacobian): the user's when it is a name, else
    opt_einsum's ``"auto"``, so that an instance (often a costly search) is asked once per
    shape signature, for the forward tree alone."""
    return optimize if isinstance(optimize, str) else "auto"


def search(inputs: list[set], output: set, size: dict, optimize, memory_limit=None) -> Path:
    """One path search: opt_einsum's pairwise order for ``inputs`` -> ``output``.

    An optimizer instance is searched with a fresh deep copy, as stateful ones
    (``RandomGreedy``) refuse a second contraction; one that cannot be copied (cotengra's
    ``HyperOptimizer`` holds a process pool) is called as it is. The answer is validated.
    Under ``memory_limit`` opt_einsum's optimizers may give up and leave one many-operand
    contraction (no intermediates, but no BLAS either); then the unconstrained path is taken,
    and slicing (:func:`einsgrad.slicing.cuts`) bounds the memory. An empty dimension makes
    every path cost nothing, so the search sees it as size 1 (opt_einsum's ``dp`` finds no
    path through a size 0).
    """
    if len(inputs) <= 2:
        return (tuple(range(len(inputs))),)
    if 0 in size.values():
        size = {label: max(d, 1) for label, d in size.items()}
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
                return path
        except RuntimeError:  # opt_einsum's "no contraction found for memory_limit"
            pass
    try:
        path = find(inputs, output, size, None)
    except RuntimeError as error:  # an optimizer that gives up even without a memory limit
        raise EinsumSpecError(f"the path optimizer {optimize!r} found no contraction path: {error}") from None
    return _checked(path, len(inputs), optimize)


def _checked(path, count: int, optimize) -> Path:
    """``path`` as a tuple of steps, each of distinct positions among the operands left, that
    contracts ``count`` operands to one; anything else names the optimizer that gave it."""
    def refuse(reason: str) -> EinsumSpecError:
        return EinsumSpecError(f"the path optimizer {optimize!r} returned {path!r}, which is not "
                               f"a contraction path for {count} operands: {reason}")
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


def contract_path(equation: str, shapes, optimize: str) -> Path:
    """``opt_einsum.contract_path``'s path for ``equation`` on operands of ``shapes``, as a
    caller that hands it the equation and the operands gets it (``torch.einsum`` does: see
    :mod:`einsgrad.torch_autocast`)."""
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    path, _ = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=optimize)
    return tuple(tuple(int(i) for i in step) for step in path)
