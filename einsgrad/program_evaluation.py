"""A :class:`~einsgrad.programs.Program` evaluated: each distinct product one compiled einsum.

A program of statements runs its steps (:mod:`einsgrad.program_steps`) in order: each
contraction as below, each elementwise function as a numpy ufunc (:class:`StepsEvaluation`).

The plan is built once per program (:meth:`Evaluation.of`) and run per call: every term's
product of tensors (its deltas named away by :func:`einsgrad.algebra.without_deltas`) is one
einsum, products equal up to index names run once, and each term adds its coefficient times
its product into the output, transposed, broadcast, or into a diagonal view where deltas tie
output indices. A product with nothing summed multiplies its factors smallest first
(:func:`smallest_first`: ``X[i,p] * t[i] * s[i]`` is ``X * (t * s)``), and the first term's
product, where it is the einsum's own new array, is the output itself, not copied. Sizes are
checked against the tensors given, naming both sides of a mismatch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .backends import as_numpy
from .spec import unused_labels
from .spec_terms import einsum_of
from .compiled import Einsum
from .errors import EinsumSpecError
from .program_steps import POWER, Contraction



@dataclass(frozen=True)
class _Product:
    """One einsum over the tensors ``names``, kept letters in alphabetical order; a single
    tensor only permuted (``ab->ba``) is no einsum but its ``axes``, a view."""

    names: tuple[str, ...]
    spec: str
    einsum: Einsum | None = field(compare=False)
    axes: tuple[int, ...] | None = None

    def value(self, arrays: dict, dtype) -> np.ndarray:
        if self.axes is not None:
            return np.transpose(arrays[self.names[0]], self.axes)
        if not self.names:
            return np.ones((), dtype=dtype)
        return self.einsum(*(arrays[n] for n in self.names))


def _einsum(spec: str) -> Einsum:
    """The einsum of one product; an elementwise one (nothing summed, no diagonal) multiplies
    its factors smallest first (:func:`smallest_first`)."""
    left, right = spec.split("->")
    inputs = left.split(",")
    elementwise = (len(inputs) > 2 and len(set(right)) == len(right)
                   and all(len(set(t)) == len(t) and set(t) <= set(right) for t in inputs))
    return Einsum(spec, optimize=smallest_first) if elementwise else Einsum(spec)


def smallest_first(inputs, output, size_dict, memory_limit=None) -> list[tuple[int, int]]:
    """The order of an elementwise product's pairwise products (an opt_einsum path): each time
    the two factors whose product has the fewest elements, so that the small ones are
    multiplied together before anything is broadcast against a large one (``X[i,p] * t[i] *
    s[i]`` is ``X * (t * s)``; a product's scalars first). ``memory_limit`` is not needed: no
    product is larger than the output."""
    factors = [frozenset(t) for t in inputs]
    path = []
    while len(factors) > 1:
        pairs = itertools.combinations(range(len(factors)), 2)
        a, b = min(pairs, key=lambda ab: (math.prod(size_dict[i] for i in factors[ab[0]] | factors[ab[1]]), ab))
        path.append((a, b))
        factors = [f for n, f in enumerate(factors) if n not in (a, b)] + [factors[a] | factors[b]]
    return path


def _permutation(names, spec: str) -> tuple[int, ...] | None:
    """The axes of a one-tensor spec that only permutes its distinct letters, else None."""
    left, right = spec.split("->")
    if len(names) != 1 or len(set(left)) != len(left) or sorted(left) != sorted(right):
        return None
    return tuple(left.index(c) for c in right)


@dataclass(frozen=True)
class _Placement:
    """How one term adds its product into the output.

    ``coefficient * P`` is transposed by ``order`` (axes of ``P``), given new axes where
    ``broadcast`` is set, and added to the view of the output whose axes are the distinct
    delta classes ``view`` (an einsum diagonal view when two output indices are tied).
    """

    coefficient: Fraction
    product: int
    order: tuple[int, ...]
    shape_of_view: tuple[bool, ...]
    view: str | None

    @property
    def number(self) -> int | float:
        """The coefficient as numpy multiplies it (see :func:`_as_number`)."""
        return _as_number(self.coefficient)


@dataclass(frozen=True)
class Evaluation:
    """The evaluation of a program: its distinct products and where each term adds them."""

    products: tuple[_Product, ...]
    placements: tuple[_Placement, ...]
    sized_by: tuple[tuple[str, str, int, int | None], ...]
    numbers: tuple[int | float, ...]
    """Each placement's coefficient as numpy multiplies it, worked out once."""
    owned: tuple[bool, ...]
    """Whether a placement's product, as it stands, may be the output itself: an einsum's
    result (no input's view) that no other term reads, the output's axes in order."""

    @classmethod
    def of(cls, prog) -> "Evaluation":
        products: dict[tuple, int] = {}
        placements, sized_by = [], []
        output = prog.output_indices
        for n, term in enumerate(prog.terms):
            found = einsum_of(output, term, canonical=True)
            assert found is not None, "a summed delta δ(p,p) has no einsum: the parser refuses it"
            classes = list(dict.fromkeys(found.output))
            kept = list(found.indices)
            spec, names = str(found.spec), tuple(f.name for f in found.tensors)
            key = (names, spec)
            if key not in products:
                products[key] = len(products)
            view = None
            if len(classes) < len(output):
                label = dict(zip(classes, unused_labels(())))
                view = "".join(label[c] for c in found.output) + "->" + "".join(label.values())
            order = tuple(kept.index(c) for c in classes if c in kept)
            placements.append(_Placement(term.coefficient, products[key], order,
                                         tuple(c not in kept for c in classes), view))
            for f in term.factors:
                if not f.is_delta:
                    sized_by.extend((f.name, i, axis, n) for axis, i in enumerate(f.indices))
        for f in prog.witnesses:
            sized_by.extend((f.name, i, axis, None) for axis, i in enumerate(f.indices)
                            if i in output)
        built = tuple(_Product(names, spec, None, axes) if (axes := _permutation(names, spec)) is not None
                      else _Product(names, spec, _einsum(spec) if names else None) for (names, spec) in products)
        uses = [p.product for p in placements]
        owned = tuple(uses.count(p.product) == 1 and built[p.product].einsum is not None
                      and p.order == tuple(range(len(p.order))) and not any(p.shape_of_view) and p.view is None
                      for p in placements)
        return cls(built, tuple(placements), tuple(sized_by), tuple(p.number for p in placements), owned)

    def run(self, prog, given: dict):
        arrays = _inputs(prog, given)
        shape = self.output_shape(prog, arrays, given)
        fractional = any(isinstance(n, float) for n in self.numbers)
        # a fraction is a Python float, as numpy weighs one: float32 stays, an integer becomes float64
        dtype = (np.result_type(*arrays.values(), *([0.0] if fractional else [])) if arrays else
                 np.dtype(np.float64))
        values: dict[int, np.ndarray] = {}

        def placed(place: _Placement) -> np.ndarray:
            if place.product not in values:
                values[place.product] = self.products[place.product].value(arrays, dtype)
            value = np.transpose(values[place.product], place.order)
            return value.reshape([1 if new else d for new, d in
                                  zip(place.shape_of_view, _fill(value.shape, place.shape_of_view))])

        # the terms over the whole output first: the first one (or two) written, not added into
        # zeros; a product is written into only where it is the einsum's own new array (see
        # _fresh), else never (one may be an input's view)
        order = sorted(range(len(self.placements)), key=lambda k: self.placements[k].view is not None)
        whole = [k for k in order if self.placements[k].view is None]
        result = np.zeros(shape, dtype=dtype) if not whole else None
        if whole:
            first = placed(self.placements[whole[0]])
            own = values[self.placements[whole[0]].product]
            result = own if self.owned[whole[0]] and _fresh(own, shape, dtype, arrays.values()) else \
                np.empty(shape, dtype=dtype)
            number = self.numbers[whole[0]]
            second = self.numbers[whole[1]] if len(whole) > 1 else None
            if number == 1 and second in (1, -1):
                (np.add if second == 1 else np.subtract)(first, placed(self.placements[whole[1]]), out=result)
                order = order[2:]
            else:
                if number == 1:
                    if result is not own:
                        np.copyto(result, first)
                else:
                    np.multiply(first, number, out=result)
                order = order[1:]
        for k in order:
            place, number = self.placements[k], self.numbers[k]
            value = placed(place)
            target = result if place.view is None else np.einsum(place.view, result)
            if number == 1:
                target += value
            elif number == -1:
                target -= value
            else:
                target += number * value
        return result[()] if not prog.output_indices else result

    def output_shape(self, prog, arrays, given) -> tuple[int, ...]:
        """Sizes of the output indices. Every tensor has one index per dimension, and every
        index's sizes agree (an output index across all terms, a summed one within its term);
        a mismatch names both tensors."""
        for term in prog.terms:
            for f in term.factors:
                if not f.is_delta and arrays[f.name].ndim != len(f.indices):
                    raise EinsumSpecError(f"tensor {f.name!r} has {arrays[f.name].ndim} "
                                          f"dimension(s) but the program gives it "
                                          f"{len(f.indices)} index(es)", str(prog))
        output = set(prog.output_indices)
        seen: dict[tuple, tuple[str, int]] = {}
        for name, index, axis, term in self.sized_by:
            key = (index, None if index in output else term)
            if term is None:  # a witness: only for sizes no term gives
                if key in seen:
                    continue
                if name not in given:
                    raise EinsumSpecError(f"missing input {name!r}: the size of output index "
                                          f"{index!r} comes from it", str(prog))
                shape = _array(prog, name, given[name]).shape
                if len(shape) <= axis:
                    raise EinsumSpecError(f"tensor {name!r} has {len(shape)} dimension(s), too "
                                          f"few to give the size of {index!r}", str(prog))
                size = shape[axis]
            else:
                size = arrays[name].shape[axis]
            if key in seen and seen[key][1] != size:
                raise EinsumSpecError(f"index {index!r} has size {size} in {name!r} (axis {axis}) "
                                      f"but {seen[key][1]} in {seen[key][0]!r}", str(prog))
            seen.setdefault(key, (name, size))
        ties = [f.indices for t in prog.terms for f in t.factors if f.is_delta]
        for _ in ties:  # an output index sized only through deltas takes its partner's size
            for p, q in ties:
                for a, b in ((p, q), (q, p)):
                    if (a, None) not in seen and (b, None) in seen:
                        seen[(a, None)] = seen[(b, None)]
        for n, term in enumerate(prog.terms):  # a summed index is sized within its own term
            for f in term.factors:
                if f.is_delta:
                    sizes = [seen[key][1] for i in f.indices
                             if (key := (i, None if i in output else n)) in seen]
                    if len(sizes) == 2 and sizes[0] != sizes[1]:
                        raise EinsumSpecError(f"{f} ties indices of sizes {sizes[0]} and {sizes[1]}",
                                              str(prog))
        return tuple(seen[(o, None)][1] for o in prog.output_indices)


def _inputs(prog, given: dict) -> dict:
    """Every input the program reads, as an array (a missing one named, with what it reads)."""
    arrays = {}
    for name in prog.inputs:
        if name not in given:
            raise EinsumSpecError(f"missing input {name!r}: the program reads "
                                  f"{', '.join(prog.inputs)}", str(prog))
        arrays[name] = _array(prog, name, given[name])
    return arrays


def _array(prog, name: str, value) -> np.ndarray:
    """``value`` as a numeric numpy array; anything else is refused naming the tensor."""
    array = as_numpy(value, f"tensor {name!r}", str(prog))
    if array.dtype.kind not in "biufc":
        raise EinsumSpecError(f"tensor {name!r} has dtype {array.dtype}, which is not numeric",
                              str(prog))
    return array


def _as_number(c: Fraction) -> int | float:
    """The coefficient as numpy multiplies it: an int when it is one that int64 holds (integer
    inputs keep integer results), else the nearest float64, a normal number by
    :data:`einsgrad.program_parser.MAX_PLACES`."""
    return int(c) if c.denominator == 1 and abs(c) < 2 ** 63 else float(c)


def _fresh(value: np.ndarray, shape, dtype, inputs) -> bool:
    """Whether ``value`` may be the output itself, written into in place: an array of the
    output's shape and dtype that owns its memory and is none of the inputs (an einsum that
    only passes one through)."""
    return (value.shape == tuple(shape) and value.dtype == dtype and value.flags.owndata
            and value.flags.writeable and not any(value is a for a in inputs))


def _fill(shape, new) -> tuple[int, ...]:
    """``shape`` spread over the axes of a view, 1 where ``new`` is set."""
    sizes = iter(shape)
    return tuple(1 if is_new else next(sizes) for is_new in new)


UFUNCS = {
    "exp": np.exp,
    "log": np.log,
    "tanh": np.tanh,
    "sigmoid": lambda u, **out: np.exp(np.negative(np.logaddexp(0, np.negative(u, **out), **out), **out), **out),
    "relu": lambda u, **out: np.maximum(u, 0, **out),
    "sin": np.sin,
    "cos": np.cos,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "softplus": lambda u, **out: np.logaddexp(0, u, **out),
    "step": lambda u, **out: np.heaviside(u, 0, **out),
    "sign": np.sign,
}
"""Each elementwise function of :data:`einsgrad.expressions.FUNCTIONS` as numpy computes it,
taking ``out=`` to work in place. ``sigmoid(u) = exp(-softplus(-u))`` never overflows and keeps
its relative precision where it is tiny (``(1 + tanh(u/2)) / 2`` lost it there: 1e-5 at u = -25,
all of it below -40, and a gradient through ``softplus' = sigmoid`` with it)."""


@dataclass(frozen=True)
class _View:
    """One contraction step as the program :class:`Evaluation` runs; prints as the program."""

    output_indices: tuple[str, ...]
    terms: tuple
    witnesses: tuple
    inputs: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class StepsEvaluation:
    """The evaluation of a program of statements: its steps in order, each contraction one
    :class:`Evaluation`, each elementwise step a ufunc (in place on a value no other step reads)."""

    steps: tuple
    plans: tuple
    in_place: tuple[bool, ...]
    witnesses: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, prog) -> "StepsEvaluation":
        steps, text = prog.steps, str(prog)
        outputs = prog.outputs or (steps[-1].name,)
        made = {s.name for s in steps}
        reads = [name for s in steps for name in s.reads()]
        plans, in_place = [], []
        for s in steps:
            if isinstance(s, Contraction):
                view = _View(s.indices, s.terms, s.witnesses, s.reads(), text)
                plans.append((view, Evaluation.of(view)))
                in_place.append(False)
            else:
                plans.append(None)
                arg = s.argument.name
                in_place.append(arg in made and reads.count(arg) == 1 and arg not in outputs)
        witnesses = tuple(dict.fromkeys(w.name for s in steps if isinstance(s, Contraction)
                                        for w in s.witnesses))
        return cls(steps, tuple(plans), tuple(in_place), witnesses, outputs)

    def run(self, prog, given: dict):
        values = _inputs(prog, given)
        for name in self.witnesses:  # a size no term gives, read from a tensor given
            if name in given and name not in values:
                values[name] = _array(prog, name, given[name])
        for step, plan, in_place in zip(self.steps, self.plans, self.in_place):
            if plan is not None:
                values[step.name] = np.asarray(plan[1].run(plan[0], values))
                continue
            arg = values[step.argument.name]
            if arg.ndim != len(step.argument.indices):
                raise EinsumSpecError(f"tensor {step.argument.name!r} has {arg.ndim} dimension(s) "
                                      f"but the program gives it {len(step.argument.indices)} "
                                      f"index(es)", str(prog))
            arg = np.transpose(arg, [step.argument.indices.index(i) for i in step.indices])
            values[step.name] = np.asarray(_apply(step, arg, in_place and arg.ndim > 0))
        results = tuple(values[name][()] if not values[name].ndim else values[name] for name in self.outputs)
        return results if prog.outputs else results[0]


def _apply(step, u: np.ndarray, in_place: bool) -> np.ndarray:
    """``function(u)``; into ``u`` itself when no other step reads it and the dtype holds it."""
    if step.function == POWER:
        e = step.exponent
        if e.denominator != 1 or e < 0:
            u = u.astype(np.result_type(u, 0.0), copy=False)  # integers to float64; float32 stays
        exponent = int(e) if e.denominator == 1 else float(e)
        return np.power(u, exponent, out=u) if in_place and u.dtype.kind in "fc" else np.power(u, exponent)
    function = UFUNCS[step.function]
    if in_place and u.dtype.kind in "fc" and step.function not in ("step", "sign"):
        return function(u, out=u)
    return function(u)
