"""The derivative of an index expression by one tensor, as a value holding each step one writes.

For ``Y[O] = Σ_T c_T Σ_{L_T∖O} Π F`` and a tensor ``X``, the product rule gives one summand per
occurrence of ``X``: its term with that factor replaced by Kronecker deltas tying its indices to
the derivative's, ``∂X[l]/∂X[p] = Π_t δ(l_t, p_t)``. A gradient chains each summand with the
cotangent ``dY[O]`` and sums over ``O``; a Jacobian keeps ``O``. Contracting the deltas and naming
the result's indices gives the result, put in canonical form with like terms merged.

:class:`Derivation` keeps every one of those steps. :meth:`Program.grad
<einsgrad.programs.Program.grad>` and ``jacobian`` build their result from it, and both narrators
(:mod:`einsgrad.program_explanation` for programs, :mod:`einsgrad.explanation` for specs) render
it; neither derives again. Pure: no numpy, no compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

from .algebra import (FRESH_INDEX_LETTERS, Delta, Factor, Fresh, Indexed, Product, Term, fresh_name,
                      merge_like_terms, primed)


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of the tensor differentiated: factor ``position`` of term ``term``.

    Attributes:
        term: the term's place in the expression.
        position: the factor's place in the term.
        coefficient: the term's coefficient.
        over: the term's summed indices.
        before: the term's factors before the occurrence.
        factor: the occurrence, ``X[l]``.
        deltas: the occurrence's derivative, ``Π_t δ(l_t, p_t)``.
        after: the term's factors after it.
    """

    term: int
    position: int
    coefficient: Fraction
    over: tuple[str, ...]
    before: tuple[Indexed, ...]
    factor: Factor
    deltas: tuple[Delta, ...]
    after: tuple[Indexed, ...]

    @property
    def jacobian(self) -> Product:
        """The product rule's summand: the occurrence replaced in place by its deltas."""
        return Product(self.over, self.before + self.deltas + self.after)

    @property
    def others(self) -> tuple[Indexed, ...]:
        """The term's other factors, in order."""
        return self.before + self.after


@dataclass(frozen=True)
class Derivation:
    """``∂Y[O]/∂X[p]`` by the product rule over every occurrence of ``X`` (a Jacobian), or
    ``∂L/∂X[p] = Σ_O dY[O] ∂Y[O]/∂X[p]`` (a gradient, ``cotangent`` given; none for a scalar ``Y``).

    Attributes:
        name: ``X``.
        output: ``O``, the indices of ``Y``.
        indices: ``p``, fresh names for the axes of ``X`` (``p, q, ...``, then primed).
        loss: the name of the scalar loss the gradient is of (``L`` unless taken).
        cotangent: ``dY[O]``, or None.
        occurrences: every occurrence of ``X``, in order.
        kept: the result's leading indices: ``O`` for a Jacobian, none for a gradient.
        result_indices: ``kept`` and the result's names for ``p``; None when no result is named.
        merged: the result's terms in canonical form, like terms merged (a zero kept).
        groups: for each occurrence, the place in ``merged`` of the term it became.
    """

    name: str
    output: tuple[str, ...]
    indices: tuple[str, ...]
    loss: str
    cotangent: Factor | None
    occurrences: tuple[Occurrence, ...]
    kept: tuple[str, ...]
    result_indices: tuple[str, ...] | None
    merged: tuple[Term, ...]
    groups: tuple[int, ...]

    @property
    def chained(self) -> tuple[tuple[Fraction, Product], ...]:
        """Each summand times the cotangent, summed over ``O`` (the summands alone without one)."""
        if self.cotangent is None:
            return tuple((o.coefficient, o.jacobian) for o in self.occurrences)
        return tuple((o.coefficient, chain(self.cotangent, o.jacobian)) for o in self.occurrences)

    @property
    def contracted(self) -> tuple[tuple[Fraction, Product], ...]:
        """:attr:`chained` with the deltas summed away."""
        return tuple((c, product.contracted()) for c, product in self.chained)

    @property
    def terms(self) -> tuple[Term, ...]:
        """The result: :attr:`merged` without the terms that cancelled."""
        return tuple(t for t in self.merged if t.coefficient != 0)


def chain(cotangent: Factor, product: Product) -> Product:
    """The chain rule for one entry: ``Σ_O dY[O] · product``, with ``O`` the cotangent's indices."""
    return Product(cotangent.indices + product.over, (cotangent,) + product.factors)


def loss_name(names: Iterable[str]) -> str:
    """The scalar loss a gradient is of: ``L``, or ``L1``, ``L2``... if a tensor has the name."""
    return fresh_name("L", names)


def differentiate(terms: Sequence[Term], output: Sequence[str], name: str, *, cotangent: str | None,
           jacobian: bool = False, result_indices: Sequence[str] | None = None,
           names: Iterable[str] = (), indices: Sequence[str] | None = None) -> Derivation:
    """The derivation of ``Y[output] = Σ terms`` by the tensor ``name``.

    Args:
        terms: the expression (its summed indices are those not in ``output``).
        output: ``O``.
        name: the tensor differentiated.
        cotangent: the cotangent's name for a gradient of an indexed ``Y``, else None.
        jacobian: keep ``O`` in the result (a Jacobian) instead of chaining.
        result_indices: the result's indices (``O`` first for a Jacobian); None: only the
            steps, no result (a spec's narrator, whose result is its backward spec).
        names: other names in use (tensors, the output's) that fresh indices must not take.
        indices: ``p`` given (else fresh names clashing with no index or name in use).
    """
    output = tuple(output)
    terms = tuple(terms)
    used = {f.name for t in terms for f in t.factors} | set(names)
    loss = loss_name(used)
    used.add(name)
    occurrences = []
    for n, term in enumerate(terms):
        over = tuple(i for i in term.indices() if i not in output)
        for k, f in enumerate(term.factors):
            if f.name == name and not f.is_delta:
                occurrences.append((n, k, term, over))
    rank = None
    if indices is None:
        if result_indices is not None:
            rank = len(result_indices) - (len(output) if jacobian else 0)
        elif occurrences:
            rank = len(occurrences[0][2].factors[occurrences[0][1]].indices)
        else:
            rank = 0
        taken = ({i for t in terms for f in t.factors for i in f.indices} | set(output) | used | {loss}
                 | ({cotangent} if cotangent else set()))
        fresh = Fresh(taken, FRESH_INDEX_LETTERS, primed)
        indices = tuple(fresh.take() for _ in range(rank))
    indices = tuple(indices)
    found = tuple(Occurrence(n, k, term.coefficient, over, term.factors[:k], term.factors[k],
                             tuple(Delta(l, x) for l, x in zip(term.factors[k].indices, indices)),
                             term.factors[k + 1:])
                  for n, k, term, over in occurrences)
    dy = Factor(cotangent, output) if cotangent and not jacobian else None
    kept = output if jacobian else ()
    merged, groups = (), ()
    if result_indices is not None:
        merged, groups = _result(found, dy, kept, indices, tuple(result_indices))
    return Derivation(name, output, indices, loss, dy, found, kept,
                      None if result_indices is None else tuple(result_indices), merged, groups)


def _result(occurrences, cotangent, kept, indices, result_indices):
    """The chained summands, their summed indices named apart (``#s0, #s1``...: no user index
    has such a name), ``p`` renamed to the result's names, and like terms merged."""
    free = {*kept, *indices}
    head = (cotangent,) if cotangent is not None else ()
    rename = dict(zip(indices, result_indices[len(kept):]))
    inner = []
    for o in occurrences:
        term = Term(o.coefficient, head + o.others + o.deltas)
        summed = {i: f"#s{n}" for n, i in enumerate(term.indices()) if i not in free}
        inner.append(term.renamed(summed).renamed(rename))
    merged, keys = merge_like_terms(result_indices, inner)
    place = {key: n for n, key in enumerate(merged)}
    return tuple(merged.values()), tuple(place[key] for key in keys)
