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
cotangent, then the gradient, with the forward's temporaries that it reads once written where
they are read (``dH[b,j] = (A[b,j] - T[b,j]) * (1 - A[b,j]^2)``). :class:`Backprop` keeps it
with each step's local derivative and each cotangent as summed, which
:mod:`einsgrad.backprop_explanation` renders without deriving again. Pure: no numpy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from .algebra import (FRESH_INDEX_LETTERS, Delta, Factor, Fresh, Term, fresh_name, internal_summed, primed,
                      simplify)
from .cancellation import cancelled
from .derivation import Derivation, differentiate
from .expressions import (DERIVATIVES, Call, Group, Power, Scoped, Statement, ambiguous_index, every_index, free,
                          group, group_inside, inlined, is_polynomial, reads, rebuilt, renamed, substituted,
                          term_free)
from .program_parser import parse_expression
from .program_steps import POWER, Contraction, Elementwise, Step, as_statement

POWER_RULE = "e * u^(e - 1)"
"""The local derivative of ``y = u^e``, as :class:`Local` shows it."""


@dataclass(frozen=True)
class Local:
    """One step's local derivative by a tensor it reads, as the backward pass chained it.

    Attributes:
        step: the step, ``T[O] = ...``.
        name: the tensor read, ``N``.
        derivation: a contraction's ``∂T[O]/∂N[p]`` by the product rule (deltas, contracted).
        rule: an elementwise step's ``f'`` in the program language (``1 - y^2``).
        local: that rule with ``u`` and ``y`` written in, over the step's indices.
    """

    step: Step
    name: str
    derivation: Derivation | None = None
    rule: str | None = None
    local: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Backprop:
    """A gradient (or Jacobian) by reverse mode, with the steps that made it.

    Attributes:
        statements: the result program's statements.
        locals: each step's local derivative by each tensor it reads on the path, last step first.
        cotangents: each cotangent ``dS = ∂L/∂S`` as the sum of its steps' shares (like terms
            merged), then the result, before any is written where it is read.
        simplified: whether some statement was simplified (:mod:`einsgrad.cancellation`).
    """

    statements: tuple[Statement, ...]
    locals: tuple[Local, ...]
    cotangents: tuple[Statement, ...]
    simplified: bool = False


@lru_cache(maxsize=None)
def rule(function: str) -> tuple[Term, ...]:
    """``f'`` of ``y = f(u)`` as terms over the scalars ``u`` and ``y``."""
    return parse_expression(DERIVATIVES[function])


@dataclass(frozen=True)
class Target:
    """One gradient a reverse sweep gives: ``out[xs] = ∂L/∂wrt``."""

    wrt: str
    out: str
    xs: tuple[str, ...]


MAX_DELTA_TERMS = 4
"""A Jacobian's cotangent of at most this many delta-bearing products is chained as its terms."""


def backpropagate(steps, targets: tuple[Target, ...], cotangent: str | None,
                  kept: tuple[str, ...] = (), named=None, simplified: bool | None = None,
                  sized_by: str | None = None) -> Backprop:
    """``out[xs] = ∂L/∂wrt`` for each target by one reverse sweep, ``L`` the last step chained
    with the input ``cotangent`` (None: the last step is the scalar loss itself); the targets
    share every cotangent, each computed once, and their results come last, in order.

    With ``kept`` (one name per index of the last step), the Jacobian ``out[kept, xs] =
    ∂Y[kept]/∂wrt[xs]`` instead: the seed is ``Π δ(o, k)`` for fresh ``k``, which every
    cotangent carries after its own indices, named ``kept`` in the result. Such a cotangent
    is as large as its step times the output, so one that is a few products holding deltas
    (``dR[i,j,p,q] = -2 * V[j,q] * delta[i,p]``) is chained as those products, its deltas
    contracted or left as a diagonal of the result rather than stored dense. ``named``: the
    steps the user named (the others, temporaries, may be written where they are read); None:
    all of them. A gradient's statements are then simplified as a person simplifies them
    (:mod:`einsgrad.cancellation`: ``dz = P * Σy - y`` for softmax cross-entropy), and a
    Jacobian's where ``simplified`` (a Hessian's: ``6 q t (1 - t²) (1 - 2 t²) δ`` for ``q t³``,
    ``t = tanh(x)``). ``sized_by``: an input with the last step's shape, which sizes the kept
    indices where nothing else does (the gradient by it, for a Hessian), so that the result
    need not compute the last step for its shape alone."""
    wrts = {t.wrt for t in targets}
    names = {s.name for s in steps} | {n for s in steps for n in s.reads()} | {t.out for t in targets}
    if cotangent:
        names.add(cotangent)
    relevant = set(wrts)
    for s in steps:
        if relevant.intersection(s.reads()):
            relevant.add(s.name)
    indices = {s.name: s.indices for s in steps}
    indices.update((t.wrt, t.xs) for t in targets)
    names_in_use = tuple(dict.fromkeys(i for s in steps for i in (*s.indices, *(j for f in _tensors(s)
                                                                                  for j in f.indices))))
    taken = set(names_in_use) | {i for t in targets for i in t.xs} | set(kept)
    fresh = Fresh(taken, FRESH_INDEX_LETTERS, primed)
    result_kept, kept = kept, tuple(fresh.take() for _ in kept)
    taken |= set(kept)
    sizes = (Factor(steps[-1].name, kept),) if kept else ()  # the kept indices are the output's
    contributions: dict[str, list[Term]] = {}
    of_temporaries: set[str] = set()  # the cotangents of steps the user did not name
    backward, locals_, summed = [], [], []
    last = steps[-1]
    for step in reversed(steps if last.name in relevant else ()):
        if step.name not in relevant:
            continue
        if step is last:
            dS = ((Term(Fraction(1), tuple(Delta(o, k) for o, k in zip(step.indices, kept))),) if kept else
                  (Term(Fraction(1), (Factor(cotangent, step.indices),) if cotangent else ()),))
        else:
            merged = _cotangent(None, step.indices + kept, contributions.pop(step.name, []), names_in_use,
                                Factor(step.name, step.indices), *sizes)
            number = _constant(merged)
            if number is not None and number.coefficient == 0:
                continue
            # a number only where nothing is broadcast: a cotangent constant along the step's
            # indices stays a tensor over them, so that a later sum over one keeps its count
            one = _alias(merged) or (number if not (step.indices + kept) else None)
            dS = (one,) if one is not None else _deltas(merged) if kept else None
            name = fresh_name("d" + step.name, names)
            summed.append(Statement(name, merged.indices, merged.terms))
            if dS is None:
                names.add(name)
                backward.append(Statement(name, merged.indices, merged.terms, merged.witnesses))
                if named is not None and step.name not in named:
                    of_temporaries.add(name)
                dS = (Term(Fraction(1), (Factor(name, merged.indices),)),)
        for name, terms, local in _pullback(step, dS, relevant, indices, names, taken):
            contributions.setdefault(name, []).extend(terms)
            locals_.append(local)
    to_result = dict(zip(kept, result_kept))
    results = []
    for t in targets:
        results.append(_cotangent(t.out, result_kept + t.xs,
                                  [renamed(term, to_result) for term in contributions.get(t.wrt, [])],
                                  names_in_use, Factor(t.wrt, t.xs),
                                  *((Factor(sized_by or last.name, result_kept),) if kept else ())))
    summed.extend(results)
    backward = _inlined(backward + results, len(results))
    chained = tuple(backward)
    if not kept if simplified is None else simplified:
        backward = list(cancelled(chained, steps, named, len(results), of_temporaries, factored=bool(kept)))
    forward = _needed(steps, backward)
    temporaries = {s.name for s in steps} - (set(named) if named is not None else {s.name for s in steps})
    statements = _factored(forward + tuple(backward), temporaries, len(results))
    return Backprop(statements, tuple(locals_), tuple(summed), tuple(backward) != chained)


def forward_value(statement: Statement, steps) -> bool:
    """Whether ``statement`` (a gradient) is a product of ``steps`` alone, a value of the
    forward's (log-sum-exp's gradient ``t[j] / t1`` is the softmax), which a Hessian then reads
    by its name (``Diag(g) - g gᵀ``) rather than as a scaled copy of other inputs."""
    names = {s.name for s in steps}
    read = reads(statement.terms)
    return (len(statement.terms) == 1 and statement.terms[0].coefficient == 1 and bool(read)
            and all(n in names for n in read))


def _deltas(merged: Statement) -> tuple[Term, ...] | None:
    """A Jacobian's cotangent as the products it sums, when it is a few products with a delta
    in each (a dense tensor that is mostly zeros), each over exactly the cotangent's indices
    (nothing summed, nothing broadcast: a sum the chain runs over an index would otherwise lose
    its count); None otherwise."""
    terms = merged.terms
    if not terms or len(terms) > MAX_DELTA_TERMS:
        return None
    if all(any(f.is_delta for f in t.factors) and set(term_free(t)) == set(merged.indices) for t in terms):
        return terms
    return None


def _tensors(step):
    return (step.argument,) if isinstance(step, Elementwise) else tuple(
        f for t in step.terms for f in t.factors)


def _pullback(step, dS: tuple[Term, ...], relevant, indices, names, taken):
    """``(name, terms)`` for each tensor ``step`` reads on a path to the tensor differentiated:
    its share of that tensor's cotangent, over ``indices[name]`` (and the kept indices).
    ``dS`` is the step's cotangent as a sum of terms over the step's indices (and the kept
    ones): a tensor, a number (the loss itself: 1), the deltas of a Jacobian's seed, or
    products holding deltas."""
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
                terms.extend(renamed(Term(s.coefficient * t.coefficient, s.factors + t.factors), rename)
                             for s in dS)
            yield name, terms, Local(step, name, derivation=d)
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
    shown = Local(step, u.name, rule=POWER_RULE if step.function == POWER else DERIVATIVES[step.function],
                  local=local)
    if not local:
        yield u.name, [], shown
        return
    if len(local) == 1:
        chained = tuple(Term(s.coefficient * local[0].coefficient, s.factors + local[0].factors) for s in dS)
    else:
        chained = tuple(Term(s.coefficient, s.factors + (Group(local),)) for s in dS)
    rename = dict(zip(u.indices, indices[u.name]))
    yield u.name, [renamed(t, rename) for t in chained], shown


def _cotangent(name, indices, terms, preferred, *witnesses) -> Statement:
    """``name[indices] = Σ terms``, the polynomial terms merged as like terms and their summed
    indices named by the first of ``preferred`` (the program's own index names) that the term
    leaves free; ``witnesses`` size the indices no term may hold."""
    polynomial = simplify(tuple(indices), [t for t in terms if is_polynomial(t)])
    others = tuple(_named(_contracted(t, indices), indices, preferred) for t in terms if not is_polynomial(t))
    return Statement(name, tuple(indices), tuple(_named(t, indices, preferred) for t in polynomial) + others,
                     witnesses)


def _contracted(term: Term, output) -> Term:
    """``term`` (with nodes) with each delta that ties a summed index contracted: ``Σ_s δ(s,j)
    f(s) = f(j)``, the index renamed everywhere in the term, inside nodes too; only where
    ``j`` is kept or held by another factor, so that no sum loses its count."""
    while True:
        found = None
        for n, f in enumerate(term.factors):
            if isinstance(f, Delta) and f.p != f.q:
                rest = term.factors[:n] + term.factors[n + 1:]
                held = set(term_free(Term(term.coefficient, rest)))
                for gone, kept in ((f.p, f.q), (f.q, f.p)):
                    if found is None and gone not in output and (kept in output or kept in held):
                        found = rest, gone, kept
        if found is None:
            return term
        rest, gone, kept = found
        term = renamed(Term(term.coefficient, rest), {gone: kept})


def _named(term: Term, output, preferred) -> Term:
    summed = [i for i in term_free(term) if i not in output]
    every = every_index(term)
    pool = (p for p in preferred if p not in output and p not in every or p in summed)
    chosen = {}
    for index in summed:
        chosen[index] = next((p for p in pool if p not in chosen.values()), index)
    if len(set(chosen.values())) < len(chosen):
        return term
    return renamed(term, chosen)


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


def _inlined(backward: list[Statement], results: int) -> list[Statement]:
    """The cotangents that are one factor or a number (nothing summed) written where they are
    read: a number or a tensor renamed or broadcast (``dt1[j] = dt``) everywhere, a node
    (``1 / t``) where it is read once, so that no value is computed twice. A broadcast is written in only where no
    sum would then run over an index that nothing holds (it would lose the count). The last
    ``results`` statements are the results, which stay."""
    statements = list(backward)
    n = 0
    while n < len(statements) - results:
        s = statements[n]
        terms = s.terms
        only = terms[0] if len(terms) == 1 and len(terms[0].factors) <= 1 else None
        uses = Counter(reads(t for later in statements[n + 1:] for t in later.terms))
        if (only is None or not set(term_free(only)) <= set(s.indices)
                or not (not only.factors or isinstance(only.factors[0], Factor) or uses[s.name] == 1)):
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


def _factored(statements, temporaries, results: int = 1) -> tuple[Statement, ...]:
    """Each forward temporary (a step the user did not name) that is an elementwise sum of
    products (nothing summed, every index held) or a power of one tensor, and read once,
    written where it is read as a parenthesized sum: ``t[b,j] = A[b,j] - T[b,j]; dH[b,j] =
    t[b,j] * ...`` is ``dH[b,j] = (A[b,j] - T[b,j]) * ...``, ``t2 = 1 / t1; g[j] = t[j] * t2``
    is ``g[j] = t[j] / t1``. Only where the reader's term then reads as it did (no sum
    becomes ambiguous), and never the ``results`` last statements."""
    statements = list(statements)
    n = 0
    while n < len(statements) - results:
        s = statements[n]
        uses = Counter(reads(t for later in statements[n + 1:] for t in later.terms))
        sizes = any(w.name == s.name for later in statements[n + 1:] for w in later.witnesses)
        if not (s.name in temporaries and uses[s.name] == 1 and not sizes and not s.witnesses and s.terms
                and (all(is_polynomial(t) and set(term_free(t)) <= set(s.indices)
                         and not any(f.is_delta for f in t.factors) for t in s.terms) or _power_of_one(s))
                and set(free(group(s.terms))) == set(s.indices)):
            n += 1
            continue
        reader = next(k for k in range(n + 1, len(statements)) if s.name in reads(statements[k].terms))
        later = statements[reader]
        terms = tuple(_written_in(t, s) for t in later.terms)
        if any(ambiguous_index(t, later.indices) for t in terms):
            n += 1
            continue
        statements[reader] = Statement(later.name, later.indices, terms, later.witnesses)
        del statements[n]
    return tuple(statements)


def _power_of_one(statement: Statement) -> bool:
    """Whether ``statement`` is a power of one tensor (``t2 = 1 / t1``, an elementwise power step)."""
    (only, *rest) = statement.terms
    if rest or only.coefficient != 1 or len(only.factors) != 1 or not isinstance(only.factors[0], Power):
        return False
    base = only.factors[0].base.terms
    return len(base) == 1 and base[0].coefficient == 1 and len(base[0].factors) == 1 \
        and isinstance(base[0].factors[0], Factor)


def _written_in(term: Term, temporary: Statement) -> Term:
    """``term`` with the factor ``temporary[K]`` replaced by its sum over ``K``, parenthesized
    (or its one product as it stands), at any depth."""
    only = temporary.terms[0] if len(temporary.terms) == 1 else None
    factors, coefficient = [], term.coefficient
    for f in term.factors:
        if isinstance(f, Factor) and f.name == temporary.name:
            mapping = dict(zip(temporary.indices, f.indices))
            if only is not None:
                coefficient *= only.coefficient
                factors.extend(renamed(Term(Fraction(1), only.factors), mapping).factors)
            else:
                factors.append(group(renamed(t, mapping) for t in temporary.terms))
        else:
            factors.append(_unnested(rebuilt(f, lambda t: _written_in(t, temporary))))
    return Term(coefficient, tuple(factors))


def _unnested(node):
    """A power, call or scoped sum of ``((a + b))`` as of ``(a + b)``, as the parser reads it."""
    if isinstance(node, (Power, Call, Scoped)):
        (only, *rest) = group_inside(node).terms or (None,)
        if not rest and only is not None and only.coefficient == 1 and len(only.factors) == 1 \
                and isinstance(only.factors[0], Group):
            return _with_inside(node, only.factors[0])
    return node


def _with_inside(node, inside: Group):
    if isinstance(node, Power):
        return Power(inside, node.exponent)
    if isinstance(node, Call):
        return Call(node.function, inside)
    return Scoped(node.over, inside)


def _needed(steps, backward) -> tuple[Statement, ...]:
    """The forward steps that the backward statements read, as statements, in order (a
    witness only where it sizes an index no tensor of the statement holds)."""
    needed = {n for s in backward for n in reads(s.terms)}
    needed |= {w.name for s in backward for w in _sizing(s)}
    kept = []
    for step in reversed(steps):
        if step.name in needed:
            kept.append(step)
            needed.update(step.reads())
            if isinstance(step, Contraction):
                needed.update(w.name for w in step.witnesses)
    return tuple(as_statement(s) for s in reversed(kept))


def _sizing(statement: Statement) -> tuple[Factor, ...]:
    """The witnesses of ``statement`` that size one of its indices which no tensor of its
    terms holds (the gradient's sizes come from the output's tensor only when needed)."""
    held = {i for t in statement.terms for f in t.factors if isinstance(f, Factor) for i in f.indices}
    return tuple(w for w in statement.witnesses
                 if any(i and i in statement.indices and i not in held for i in w.indices))
