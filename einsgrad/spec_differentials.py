"""``explain(spec, style="matrix")``: one einsum's gradients by differentials in matrix notation.

The forward is differentiated once, one share per operand by the product rule, ``dL = G : dY``
is split into those shares, and each share is moved into the form ``M : dX`` one Frobenius rule
at a time, so that "why is G transposed" is visible. For ``Y = X Wᵀ`` (``"ik,jk->ij"``)::

    dY = dX Wᵀ + X dWᵀ, so dL = G : dY = G : (dX Wᵀ) + G : (X dWᵀ)
    ...
    G : (X dWᵀ) = (Xᵀ G) : dWᵀ = (Gᵀ X) : dW
       by M : (N P) = (Nᵀ M) : P, then M : Nᵀ = Mᵀ : N

The moves are :func:`einsgrad.matrix_differentials.moved_shares`, the ones programs print; a
batched form (``"bij,bjk->bik"``) is derived for each slice. Pure: no numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

from .algebra import Factor, Fresh, Term
from .matrix_differentials import moved_shares
from .matrix_forms import Form, form_body
from .program_steps import Contraction
from .render import (Piece, differential_of, equals, juxt, label_symbols, listed, prose, punct,
                     quoted_code, spaced, tensor_name)
from .spec import Spec
from .spec_terms import term_of_spec

SCALAR_OUT = "M : (a N) = (M : N) a"
SCALED = "M : (a N) = a (M : N)"
_PLACEHOLDER = re.compile(r"\b[MNP]\b")  # the matrices the rules are written with


class Share(NamedTuple):
    """One operand's share of ``dY`` (``X dWᵀ``) and, where one-line rules move it, the chain of
    equal expressions from ``G : share`` to ``M : dX`` and the rules used (else empty)."""

    share: Piece
    chain: tuple[Piece, ...] = ()
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecDifferential:
    """A spec's forward as the one step whose shares are moved.

    Attributes:
        step: the forward as a contraction over each slice (batch labels dropped).
        batch: the labels a batched form is written "for each" of.
        names: the operands' names.
        cotangent: ``G``, as the shares are written with it.
        shares: each operand's :class:`Share`.
    """

    step: Contraction
    batch: tuple[str, ...]
    names: tuple[str, ...]
    cotangent: Piece
    shares: tuple[Share, ...]

    @property
    def scalar(self) -> bool:
        return not self.step.indices


def spec_differential(spec: Spec, names: Sequence[str], cotangent: str,
                      forward: Form | None) -> SpecDifferential | None:
    """The shares of ``spec``'s differential, or None where the forward has no matrix form
    (or sums a batch label away: ``Σ_b X_b W_b`` has no gradient in matrix form)."""
    if forward is None or forward.summed:
        return None
    out, term = term_of_spec(spec, names)
    batch = set(forward.batch)
    sliced = Term(term.coefficient, tuple(f if f.is_delta else Factor(f.name, tuple(i for i in f.indices if i not in batch))
                                          for f in term.factors))
    step = Contraction("Y", tuple(i for i in out if i not in batch), (sliced,))
    g = tensor_name(cotangent)
    shares, pieces = [], [tensor_name(n) for n in names]
    scalar = [all(i in batch for i in t) for t in spec.inputs]  # 0-d in each slice: "kij,k,kl->kl"'s W
    for k, name in enumerate(names):
        found = None if scalar[k] else moved_shares(step, name, g, {})
        if found is None and not scalar[k]:  # the other 0-d operands factored out
            found = _with_scalars(step, scalar, names, k, g)
        share = form_body(forward, pieces, vary=k)
        if scalar[k]:
            shares.append(_scalar_moved(forward, pieces, k, g, share, not step.indices))
        elif found is None or len(found[1]) != 1:  # a name occurs once: one share each
            shares.append(Share(share))
        else:
            shares.append(Share(found[0], *map(tuple, found[1][0])))
    return SpecDifferential(step, forward.batch, tuple(names), g, tuple(shares))


def _with_scalars(step: Contraction, scalar: Sequence[bool], names, k: int, g: Piece):
    """The share of operand ``k`` moved with the 0-d operands but ``k`` factored out: for a
    scalar output they join the cotangent (``G a tr(dX)`` moves as ``tr(dX)`` with ``G a`` in
    front), else they scale every step (``G : (a R) = a (G : R) = ...``)."""
    scalars = [tensor_name(n) for m, n in enumerate(names) if m != k and scalar[m]]
    if not scalars:
        return None
    (term,) = step.terms
    kept = tuple(f for f in term.factors if f.is_delta or f.name not in {s.text for s in scalars})
    reduced = Contraction(step.name, step.indices, (Term(term.coefficient, kept),))
    found = moved_shares(reduced, names[k], juxt([g, *scalars]) if not step.indices else g, {})
    if found is None:
        return None
    share, ((chain, rules),) = juxt([*scalars, _operand(found[0])]), found[1]
    if not step.indices:
        return share, [(chain, rules)]  # as moved_shares gives it
    front = juxt(scalars)
    scaled = [juxt([front, _operand(e)]) for e in chain]
    start = Piece(f"{g.text} : {_operand(share).text}", f"{g.latex} : {_operand(share).latex}")
    return share, [([start, *scaled], [SCALED, *rules])]


def _scalar_moved(forward: Form, pieces, k: int, g: Piece, share: Piece, scalar: bool):
    """A 0-d operand's share: ``G : (da X) = (G : X) da``, the scalar factored out."""
    rest = form_body(replace(forward, scalars=tuple(m for m in forward.scalars if m != k)), pieces)
    rest = rest if rest.text else Piece("1", "1")
    inner = juxt([g, rest]) if scalar else Piece(f"{g.text} : {_operand(rest).text}",
                                                  f"{g.latex} : {_operand(rest).latex}")
    d = differential_of(pieces[k])
    start = juxt([g, share]) if scalar else Piece(f"{g.text} : {_operand(share).text}",
                                                   f"{g.latex} : {_operand(share).latex}")
    return Share(share, (start, juxt([_operand(inner), d])), ("scalars commute" if scalar else SCALAR_OUT,))


def _operand(m: Piece) -> Piece:
    return m if " " not in m.text else Piece(f"({m.text})", rf"\left({m.latex}\right)")


def _each(diff: SpecDifferential, what: str) -> str:
    if not diff.batch:
        return what
    return f"For each {listed(label_symbols(diff.batch))}, {what[0].lower()}{what[1:]}"


def _frobenius(diff: SpecDifferential, share: Piece) -> Piece:
    """``G : (share)``, or ``G share`` where ``G`` is a scalar."""
    operand = _operand(share)
    if diff.scalar:
        return juxt([diff.cotangent, share])
    return Piece(f"{diff.cotangent.text} : {operand.text}", f"{diff.cotangent.latex} : {operand.latex}")


def whole_lines(diff: SpecDifferential, out: str, loss: str) -> list[Piece]:
    """``dY`` by the product rule, and ``dL = G : dY`` split into the operands' shares."""
    y, dl = tensor_name(out), differential_of(tensor_name(loss))
    dy = differential_of(y)
    total = _sum([s.share for s in diff.shares])
    lines = [prose(f"By differentials in matrix notation, with M : N = Σ M_ij N_ij (the Frobenius "
                   f"product) and {diff.cotangent.text} = ∂{loss}/∂{out}:")]
    rule = "The product rule, one share per operand:" if len(diff.shares) > 1 else "The differential:"
    g_dy = juxt([diff.cotangent, dy]) if diff.scalar else Piece(
        f"{diff.cotangent.text} : {dy.text}", f"{diff.cotangent.latex} : {dy.latex}")
    split = _sum([_frobenius(diff, s.share) for s in diff.shares])
    lines.append(spaced(prose("   " + _each(diff, rule)), punct(equals(dy, total), ","), prose("so"),
                        punct(equals(dl, g_dy, split), ".")))
    return lines


def operand_lines(diff: SpecDifferential, k: int, taken: frozenset, form_eq: Piece | None,
                  grad_spec: str) -> list[Piece]:
    """Operand ``k``'s share moved into ``M : dX``, the rules used, and the gradient read off."""
    share, chain, rules = diff.shares[k]
    name = diff.names[k]
    if not chain:
        lines = [spaced(prose("1. " + _each(diff, "Its share of dL is")), punct(_frobenius(diff, share), ";"),
                        prose(f"no one-line matrix rule moves it into M : d{name} (style='index' "
                              f"derives it)."))]
    else:
        lines = [spaced(prose("1. " + _each(diff, "Its share of dL, moved into M : d" + name + ":")),
                        equals(*chain))]
        if rules:
            lines.append(prose("   by " + ", then ".join(_placeholders(rules, taken))))
    lines.append(spaced(prose("2. Read off the gradient:"), punct(form_eq, ","), prose("the backward einsum"),
                        quoted_code(grad_spec))
                 if form_eq is not None else
                 prose(f"2. No matrix form of the gradient; the backward einsum is \"{grad_spec}\"."))
    return lines


def _placeholders(rules: Sequence[str], taken: frozenset) -> list[str]:
    """The rules with their placeholder matrices M, N, P renamed where an operand has one of
    those names (``M : (N P)`` for operands named M and N would read as about them)."""
    clash = taken & {"M", "N", "P"}
    if not clash:
        return list(rules)
    fresh = Fresh(set(taken) | {"M", "N", "P", "I", "K"}, "QRSTUVWABCDEFH")
    mapping = {p: fresh.take() for p in ("M", "N", "P")}
    return [_PLACEHOLDER.sub(lambda m: mapping[m.group(0)], rule) for rule in rules]


def _sum(parts: Sequence[Piece]) -> Piece:
    return Piece(" + ".join(p.text for p in parts), " + ".join(p.latex for p in parts))
