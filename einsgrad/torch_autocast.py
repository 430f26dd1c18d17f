"""Autocast as ``torch.einsum`` meets it, pair by pair, so that ``einsgrad.torch`` can follow it.

``torch.einsum`` is on none of autocast's lists. It contracts its operands pairwise, along
opt_einsum's path (``torch.backends.opt_einsum``, three operands or more) or else left to right
(each result put first). Before a pair, each operand sums alone the labels that no other
remaining operand holds with a size other than 1 and the output lacks; then a pair that still
shares such a label is one ``bmm`` (on autocast's lower-precision list: its floating operands,
float64 aside, are cast to the autocast dtype, and the result has it, accumulated as that
``bmm`` accumulates), and any other pair is a ``mul``, which promotes its operands' dtypes.
So ``ij,jk,l->ikl`` under bfloat16 autocast computes ``ij,jk`` in bfloat16 and the product
with ``l`` in float32, and returns float32; a label of size 1 contracts nothing (``ij,jk->ik``
with ``j`` of size 1 is a ``mul``). A ``bmm`` in bfloat16 or float16 accumulates in float32
on CPU (4096 ones sum to 4096) and rounds once; einsgrad's matrix products are the same
``matmul``/``bmm`` calls, and a batched dot it writes as a product and a sum rounds each
product to the low dtype first (one rounding more per term, within the dtype's precision).

:func:`route` works out that sequence for the operands' shapes and dtypes; :func:`run_pairwise`
runs it, each step an einsgrad einsum of its own (gradients flow through autograd, each cast
giving its gradient back in the operand's dtype).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from . import paths
from .errors import EinsumSpecError
from .spec import ELLIPSIS, LETTERS, Spec

Labels = tuple[str, ...]


@dataclass(frozen=True)
class Pairing:
    """One pairwise step of ``torch.einsum``.

    Attributes:
        positions: the two values it takes, as positions among the values left (in order).
        inputs: their labels after each has taken its diagonals and summed alone what no
            other value needs.
        output: the labels the pair keeps.
        contracts: it sums a label both hold (size not 1): torch's ``bmm``, else a ``mul``.
    """

    positions: tuple[int, int]
    inputs: tuple[Labels, Labels]
    output: Labels
    contracts: bool


@dataclass(frozen=True)
class Route:
    """``torch.einsum``'s steps for one call, and the dtype each computes in.

    Attributes:
        terms: each operand's labels, its ellipsis spelled as free letters (right-aligned).
        output: the output's labels, spelled alike.
        pairings: the pairwise steps; each result joins the values left at the end, or, on
            torch's left-to-right order (no path), at the front.
        front: results join at the front.
        low: the autocast dtype.
        dtypes: the dtype of each step's result.
        summed: the dtype of each value that sums labels alone before its step.
        result: the dtype of the result (the operand's, for one operand).
    """

    terms: tuple[Labels, ...]
    output: Labels
    pairings: tuple[Pairing, ...]
    front: bool
    low: object
    dtypes: tuple
    summed: tuple
    result: object

    @property
    def uniform(self) -> bool:
        """Every step computes in the result's dtype, and every sum of labels one value holds
        alone is of a value of that dtype: then the operands cast to it first (as autocast
        casts a ``bmm``'s), one plan in that dtype computes what torch computes."""
        return all(d == self.result for d in self.dtypes + self.summed)


def eligible(dtype) -> bool:
    """Whether autocast casts a ``bmm`` operand of this dtype: floating point, not float64."""
    return dtype.is_floating_point and dtype != torch.float64


def route(spec: Spec, shapes, dtypes, low, strategy: str | None) -> Route:
    """``torch.einsum``'s steps under autocast to ``low``, worked out once per spec, shapes,
    dtypes, autocast dtype and strategy (each call under autocast asks; three operands or more
    ask opt_einsum for a path). Sizes that cannot be hashed (symbolic, under tracing) are
    worked out each time.

    Args:
        spec: the einsum.
        shapes: the operands' shapes.
        dtypes: the operands' dtypes.
        low: the autocast dtype.
        strategy: opt_einsum's strategy torch asks for its path, or None where torch takes
            its operands left to right (two operands or fewer, opt_einsum off or missing).
    """
    key = (spec, tuple(map(tuple, shapes)), tuple(dtypes), low, strategy)
    try:
        hash(key)
    except TypeError:
        return _route(*key)
    return _known_route(*key)


def _route(spec: Spec, shapes, dtypes, low, strategy: str | None) -> Route:
    terms, output = _spelled(spec, shapes)
    sizes = [dict(zip(term, shape)) for term, shape in zip(terms, shapes)]
    if strategy is None or len(terms) < 3:
        steps, front = [(0, 1)] * (len(terms) - 1), True
    else:
        steps, front = _path(spec, terms, output, shapes, strategy), False
    values = [(tuple(dict.fromkeys(t)), s, d) for t, s, d in zip(terms, sizes, dtypes)]
    pairings, kinds, summed = [], [], []
    for step in steps:
        i, j = sorted(step)
        (a, sa, da), (b, sb, db) = values[i], values[j]
        del values[j], values[i]
        later = set(output) | {l for _, s, _ in values for l, n in s.items() if n != 1}
        alone_a = tuple(l for l in a if l in later or sb.get(l, 1) != 1)
        alone_b = tuple(l for l in b if l in later or sa.get(l, 1) != 1)
        kept = tuple(l for l in dict.fromkeys(a + b) if l in later)
        summed += [d for d, term, alone in ((da, a, alone_a), (db, b, alone_b)) if term != alone]
        contracts = any(l not in later and sa.get(l, 1) != 1 and sb.get(l, 1) != 1 for l in a)
        if contracts:
            da, db = (low if eligible(da) else da), (low if eligible(db) else db)
        made = torch.promote_types(da, db)
        size = {l: sa[l] if sa.get(l, 1) != 1 else sb.get(l, 1) for l in kept}
        pairings.append(Pairing((i, j), (alone_a, alone_b), kept, contracts))
        kinds.append(made)
        values.insert(0 if front else len(values), (kept, size, made))
    result = kinds[-1] if kinds else dtypes[0]
    return Route(tuple(terms), output, tuple(pairings), front, low, tuple(kinds), tuple(summed), result)


_known_route = functools.lru_cache(maxsize=256)(_route)


def _spelled(spec: Spec, shapes) -> tuple[list[Labels], Labels]:
    """The terms and the output with the ellipsis as letters the spec does not use."""
    ranks = [len(shape) - len(term) + 1 for term, shape in zip(spec.inputs, shapes) if ELLIPSIS in term]
    rank = max(ranks, default=0)
    free = sorted(LETTERS - set(spec.labels))
    if rank > len(free):
        raise EinsumSpecError(f"under autocast, einsgrad follows torch.einsum pair by pair, naming the "
                              f"ellipsis' {rank} dimensions by letters; the spec leaves {len(free)} free")
    batch = tuple(free[:rank])

    def spelled(term, n):
        return tuple(l for label in term for l in (batch[rank - n:] if label == ELLIPSIS else (label,)))

    terms = [spelled(term, len(shape) - len(term) + 1) for term, shape in zip(spec.inputs, shapes)]
    return terms, spelled(spec.output, rank)


def _path(spec: Spec, terms, output, shapes, strategy: str) -> paths.Path:
    """The path torch asks opt_einsum for: its strategy, on the spec as the user wrote it and
    the operands' shapes (spelled with letters where opt_einsum cannot read einsgrad's
    extensions, an output label no input has)."""
    held = {l for term in terms for l in term}
    plain = "".join(dict.fromkeys(l for l in output if l in held))
    equation = spec.text if spec.text and plain == "".join(output) else ",".join(map("".join, terms)) + "->" + plain
    return paths.contract_path(equation, shapes, strategy)


def run_pairwise(road: Route, tensors, sizes: dict,
                 einsum: Callable[..., torch.Tensor]) -> torch.Tensor:
    """Runs ``road`` as torch does, step by step; ``einsum(text, *tensors, sizes=...)`` runs one
    einsgrad einsum with autocast off. Each operand first takes its diagonals and sums alone
    (in its own dtype), then a ``bmm`` step casts its eligible operands to the step's dtype
    and a ``mul`` step promotes; the last step makes the output."""
    values = [(t, term) for t, term in zip(tensors, road.terms)]
    if not road.pairings:
        return einsum(_text((road.terms[0],), road.output), tensors[0], sizes=sizes)
    last = len(road.pairings) - 1
    for n, pairing in enumerate(road.pairings):
        i, j = pairing.positions
        (a, ta), (b, tb) = values[i], values[j]
        del values[j], values[i]
        pair = []
        for x, term, alone in ((a, ta, pairing.inputs[0]), (b, tb, pairing.inputs[1])):
            if term != alone:
                x = einsum(_text((term,), alone), x, sizes={})
            if pairing.contracts and eligible(x.dtype) and x.dtype != road.low:
                x = x.to(road.low)
            pair.append(x)
        output = road.output if n == last else pairing.output
        made = einsum(_text(pairing.inputs, output), *pair, sizes=sizes if n == last else {})
        values.insert(0 if road.front else len(values), (made, output))
    return values[0][0]


def _text(inputs, output) -> str:
    return ",".join(map("".join, inputs)) + "->" + "".join(output)
