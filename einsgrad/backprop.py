"""Reverse mode through a program's steps: each statement's gradient, by hand's rules.

For ``L`` the last step, the cotangent ``dS = ∂L/∂S`` of every step ``S`` on a path to the
tensor differentiated is one statement, computed once from the steps that read ``S``:

- a contraction ``T[O] = Σ c Π F`` adds, for each occurrence of ``S`` in it, the product rule's
  summand chained with ``dT`` (:func:`einsgrad.derivation.differentiate`: the occurrence
  replaced by Kronecker deltas, the deltas contracted, like terms merged);
- an elementwise step ``T = f(S)`` adds ``dT * f'(S)``, with ``f'`` the one-line rule of
  :data:`einsgrad.expressions.DERIVATIVES` (``tanh' = 1 - y^2``), ``S^e`` adding
  ``dT * e * S^(e-1)``.

The result is a program of statements: the forward steps the backward reads, then each
cotangent, then the gradient. Pure: no numpy.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from functools import lru_cache

from .algebra import (FRESH_INDEX_LETTERS, Delta, Factor, Fresh, Term, fresh_name, internal_summed, primed,
                      simplify)
from .derivation import differentiate
from .expressions import (DERIVATIVES, Group, Power, Statement, group, inlined, is_polynomial, reads,
                          renamed, substituted, term_free)
from .program_parser import parse_expression
from .program_steps import POWER, Contraction, Elementwise, as_statement


@lru_cache(maxsize=None)
def rule(function: str) -> tuple[Term, ...]:
    """``f'`` of ``y = f(u)`` as terms over the scalars ``u`` and ``y``."""
    return parse_expression(DERIVATIVES[function])


def backpropagate(steps, wrt: str, out: str, xs: tuple[str, ...], cotangent: str | None,
                  kept: tuple[str, ...] = ()) -> tuple[Statement, ...]:
    """The statements of ``out[xs] = ∂L/∂wrt``, ``L`` the last step chained with the input
    ``cotangent`` (None: the last step is the scalar loss itself).

    With ``kept`` (one name per index of the last step), the Jacobian ``out[kept, xs] =
    ∂Y[kept]/∂wrt[xs]`` instead: the seed is ``Π δ(o, k)`` for fresh ``k``, which every
    cotangent carries after its own indices, named ``kept`` in the result."""
    names = {s.name for s in steps} | {n for s in steps for n in s.reads()} | {out}
    if cotangent:
        names.add(cotangent)
    relevant = {wrt}
    for s in steps:
        if relevant.intersection(s.reads()):
            relevant.add(s.name)
    indices = {s.name: s.indices for s in steps}
    indices[wrt] = xs
    names_in_use = tuple(dict.fromkeys(i for s in steps for i in (*s.indices, *(j for f in _tensors(s)
                                                                                  for j in f.indices))))
    taken = set(names_in_use) | set(xs) | set(kept)
    fresh = Fresh(taken, FRESH_INDEX_LETTERS, primed)
    result_kept, kept = kept, tuple(fresh.take() for _ in kept)
    taken |= set(kept)
    sizes = (Factor(steps[-1].name, kept),) if kept else ()  # the kept indices are the output's
    contributions: dict[str, list[Term]] = {}
    backward = []
    last = steps[-1]
    for step in reversed(steps if last.name in relevant else ()):
        if step.name not in relevant:
            continue
        if step is last:
            dS = (Term(Fraction(1), tuple(Delta(o, k) for o, k in zip(step.indices, kept))) if kept else
                  Term(Fraction(1), (Factor(cotangent, step.indices),) if cotangent else ()))
        else:
            merged = _cotangent(None, step.indices + kept, contributions.pop(step.name, []), names_in_use,
                                Factor(step.name, step.indices), *sizes)
            number = _constant(merged)
            if number is not None and number.coefficient == 0:
                continue
            # a number only where nothing is broadcast: a cotangent constant along the step's
            # indices stays a tensor over them, so that a later sum over one keeps its count
            dS = _alias(merged) or (number if not (step.indices + kept) else None)
            if dS is None:
                name = fresh_name("d" + step.name, names)
                names.add(name)
                backward.append(Statement(name, merged.indices, merged.terms, merged.witnesses))
                dS = Term(Fraction(1), (Factor(name, merged.indices),))
        for name, terms in _pullback(step, dS, relevant, indices, names, taken):
            contributions.setdefault(name, []).extend(terms)
    to_result = dict(zip(kept, result_kept))
    backward.append(_cotangent(out, result_kept + xs, [renamed(t, to_result) for t in contributions.get(wrt, [])],
                               names_in_use, Factor(wrt, xs), *((Factor(last.name, result_kept),) if kept else ())))
    backward = _inlined(backward)
    return _needed(steps, backward) + tuple(backward)


def _tensors(step):
    return (step.argument,) if isinstance(step, Elementwise) else tuple(
        f for t in step.terms for f in t.factors)


def _pullback(step, dS: Term, relevant, indices, names, taken):
    """``(name, terms)`` for each tensor ``step`` reads on a path to the tensor differentiated:
    its share of that tensor's cotangent, over ``indices[name]`` (and the kept indices).
    ``dS`` is the step's cotangent as a term over the step's indices (and the kept ones): a
    tensor, a number (the loss itself: 1) or the deltas of a Jacobian's seed."""
    if isinstance(step, Contraction):
        O = step.indices
        fresh = Fresh(taken, FRESH_INDEX_LETTERS, primed)
        summed_o = tuple(fresh.take() for _ in O)  # O is summed in the chain: named apart
        for name in step.reads():
            if name not in relevant:
                continue
            p = tuple(fresh.take() for _ in indices[name])
            d = differentiate(step.terms, O, name, cotangent=None, jacobian=True,
                              result_indices=O + p, names=names)
            rename = {**dict(zip(O, summed_o)), **dict(zip(p, indices[name]))}
            terms = []
            for t in d.terms:
                t = internal_summed(t, set(O + p))  # ∂Y[O]/∂N[p], its own summed names apart
                terms.append(Term(dS.coefficient * t.coefficient, dS.factors + t.factors).renamed(rename))
            yield name, terms
        return
    u = step.argument
    if u.name not in relevant:
        return
    y = Factor(step.name, step.indices)
    if step.function == POWER:
        e = step.exponent
        local = ((Term(e, ()),) if e == 1 else (Term(e, (u,)),) if e == 2 else
                 (Term(e, (Power(group([Term(Fraction(1), (u,))]), e - 1),)),))
    else:
        local = tuple(substituted(t, {"u": u, "y": y}) for t in rule(step.function) if t.coefficient)
    if not local:
        return
    if len(local) == 1:
        chained = (Term(dS.coefficient * local[0].coefficient, dS.factors + local[0].factors),)
    else:
        chained = (Term(dS.coefficient, dS.factors + (Group(local),)),)
    rename = dict(zip(u.indices, indices[u.name]))
    yield u.name, [renamed(t, rename) for t in chained]


def _cotangent(name, indices, terms, preferred, *witnesses) -> Statement:
    """``name[indices] = Σ terms``, the polynomial terms merged as like terms and their summed
    indices named by the first of ``preferred`` (the program's own index names) that the term
    leaves free; ``witnesses`` size the indices no term may hold."""
    polynomial = simplify(tuple(indices), [t for t in terms if is_polynomial(t)])
    others = tuple(t for t in terms if not is_polynomial(t))
    return Statement(name, tuple(indices), tuple(_named(t, indices, preferred) for t in polynomial) + others,
                     witnesses)


def _named(term: Term, output, preferred) -> Term:
    summed = [i for i in term.indices() if i not in output]
    pool = (p for p in preferred if p not in output and p not in term.indices() or p in summed)
    chosen = {}
    for index in summed:
        chosen[index] = next((p for p in pool if p not in chosen.values()), index)
    if len(set(chosen.values())) < len(chosen):
        return term
    return term.renamed(chosen)


def _alias(statement: Statement) -> Term | None:
    """The tensor a cotangent is, when it is one already computed, as indexed (``dA = dt``)."""
    terms = statement.terms
    if (len(terms) == 1 and terms[0].coefficient == 1 and len(terms[0].factors) == 1
            and isinstance(terms[0].factors[0], Factor)
            and terms[0].factors[0].indices == statement.indices):
        return terms[0]
    return None


def _constant(statement: Statement) -> Term | None:
    """The number a cotangent is, when it is one (``dt = 0.5``; no terms: 0)."""
    if all(not t.factors for t in statement.terms):
        return Term(sum((t.coefficient for t in statement.terms), Fraction(0)), ())
    return None


def _inlined(backward: list[Statement]) -> list[Statement]:
    """The cotangents that are one factor (nothing summed) written where they are read: a
    tensor renamed or broadcast (``dt1[j] = dt``) everywhere, a node (``1 / t``) where it is
    read once, so that no value is computed twice. A broadcast is written in only where no
    sum would then run over an index that nothing holds (it would lose the count)."""
    statements = list(backward)
    n = 0
    while n < len(statements) - 1:
        s = statements[n]
        terms = s.terms
        only = terms[0] if len(terms) == 1 and len(terms[0].factors) == 1 else None
        uses = Counter(reads(t for later in statements[n + 1:] for t in later.terms))
        if (only is None or not set(term_free(only)) <= set(s.indices)
                or not (isinstance(only.factors[0], Factor) or uses[s.name] == 1)):
            n += 1
            continue
        definition = {s.name: (s.indices, only)}
        rewritten = [Statement(later.name, later.indices, tuple(inlined(t, definition) for t in later.terms),
                               later.witnesses) for later in statements[n + 1:]]
        if all(set(term_free(old)) <= set(term_free(new)) | set(later.indices)
               for before, later in zip(statements[n + 1:], rewritten)
               for old, new in zip(before.terms, later.terms)):
            statements[n:] = rewritten
        else:
            n += 1
    return statements


def _needed(steps, backward) -> tuple[Statement, ...]:
    """The forward steps that the backward statements read, as statements, in order."""
    needed = {n for s in backward for n in reads(s.terms)}
    needed |= {w.name for s in backward for w in s.witnesses}
    kept = []
    for step in reversed(steps):
        if step.name in needed:
            kept.append(step)
            needed.update(step.reads())
            if isinstance(step, Contraction):
                needed.update(w.name for w in step.witnesses)
    return tuple(as_statement(s) for s in reversed(kept))
