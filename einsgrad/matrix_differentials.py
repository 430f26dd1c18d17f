"""``explain(style="matrix")``: a gradient by differentials in matrix notation, one rule a step.

Each step ``S`` of the program, the last first, passes ``G_S : dS`` (``G_S = ∂L/∂S``, ``M : N =
Σ M_ij N_ij``) back to what it reads, moved into the form ``M : dX`` by the identities of the
Frobenius product, so that "why is G transposed" is visible. For ``H = X Wᵀ + 1 cᵀ``::

    "H[b,j] = X[b,k] * W[j,k] + c[j]": dH = X dWᵀ, so G_H : (X dWᵀ) = (Xᵀ G_H) : dWᵀ = (G_Hᵀ X) : dW
       by M : (N P) = (Nᵀ M) : P, then M : Nᵀ = Mᵀ : N

Each ``G_S`` is then the backprop's own cotangent statement (the shares summed, like terms
merged) in matrix form: the rules show where each share comes from, and the cotangents are
read from the :class:`~einsgrad.backprop.Backprop` that ``Program.grad`` made, never derived
here. Pure: no numpy.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from .algebra import Factor, Term
from .matrix_statements import Link, Rendering, StatementForm, Writer, statement_form
from .program_steps import Contraction, as_statement
from .render import (Piece, applied, differential_of, equals, juxt, prose, punct, quoted_code, spaced,
                     tensor_name, transpose_of)

LEFT = "M : (N P) = (Nᵀ M) : P"
RIGHT = "M : (P N) = (M Nᵀ) : P"
TRANSPOSE = "M : Nᵀ = Mᵀ : N"
HADAMARD = "M : (N ∘ P) = (M ∘ N) : P"
CYCLIC = "tr(N P) = tr(P N)"
TRACE = "tr(Mᵀ N) = M : N"
TRACE_T = "tr(M Nᵀ) = M : N"
SCALAR = "a scalar is its trace"
DIAG = "M : Diag(N) = diag(M) : N"
DIAGONAL = "m : diag(N) = Diag(m) : N"

_VARIED = "#d"  # the occurrence being varied, written dX


def cotangent_symbol(step: str) -> Piece:
    """``G_S``, the cotangent ``∂L/∂S`` of a step in these formulas."""
    return Piece(f"G_{step}", f"G_{{{tensor_name(step).latex}}}")


def differential_section(steps, locals_, cotangents: dict, seed: Piece | None, names: dict[str, Piece],
                         result: StatementForm | None, result_text: str) -> list[Piece]:
    """The lines of the derivation of one gradient.

    Args:
        steps: the program's steps, in order (a polynomial program: its one contraction).
        locals_: the backward pass's :class:`~einsgrad.backprop.Local` values (step, tensor
            read, an elementwise step's derivative), the last step first.
        cotangents: each step's cotangent statement, by step name (the last step has none).
        seed: the last step's cotangent (the output's ``G``), None for a scalar loss.
        names: renderings of some tensors (the cotangent input as ``G``).
        result: the gradient in matrix form, or None; ``result_text`` its index form.
    """
    shown = {**names, **{c.name: cotangent_symbol(s) for s, c in cotangents.items()}}
    lines = [spaced(prose("1. The steps in matrix notation:"), *_steps(steps, names))]
    lines.append(prose("2. With M : N = Σ M_ij N_ij (the Frobenius product) and G_S = ∂L/∂S, each step S "
                       "passes G_S : dS back to what it reads, the last step first:"))
    last, seen = steps[-1].name, set()
    for local in locals_:
        step = local.step
        if step.name != last and step.name not in seen:
            seen.add(step.name)
            lines.append(_cotangent_line(step.name, cotangents.get(step.name), shown))
        lines += _local(local, seed if step.name == last else cotangent_symbol(step.name), names)
    tail = (spaced(prose("3. Summing the shares:"), result.piece) if result is not None else
            spaced(prose("3. Summing the shares, in index form (no matrix form):"), quoted_code(result_text)))
    return lines + [tail]


def _steps(steps, names) -> list[Piece]:
    pieces = []
    for s in steps:
        statement = as_statement(s)
        form = statement_form((statement,), tensor_name(s.name), names=names)
        pieces.append(form.equation if form is not None else quoted_code(str(statement)))
    return [punct(p, ";") for p in pieces[:-1]] + pieces[-1:]


def _cotangent_line(step: str, statement, shown) -> Piece:
    symbol = cotangent_symbol(step)
    if statement is None:
        return spaced(prose("  "), equals(symbol, Piece("0", "0")))
    form = statement_form((replace(statement, name=step),), symbol, names=shown)
    if form is None:
        return spaced(prose("  "), symbol, prose("(no matrix form):"), quoted_code(str(statement)))
    return spaced(prose("  "), form.equation)


def _rules(rules) -> Piece:
    return prose("       by " + ", then ".join(rules))


def _local(local, cotangent: Piece | None, names) -> list[Piece]:
    """``"S = ...": dS = ..., so G_S : dS = ... = M : dX`` and the rules used, per share."""
    step, read = local.step, local.name
    head = spaced(prose("  "), punct(quoted_code(str(as_statement(step))), ":"))
    d_step, d_read = differential_of(tensor_name(step.name)), differential_of(tensor_name(read))
    writer = Writer({}, frozenset(), {**names, _VARIED: d_read})
    if not isinstance(step, Contraction):
        derivative = writer.sum(local.local, step.indices) if local.local else None
        return _elementwise(head, step, derivative, cotangent, d_step, d_read)
    found = moved_shares(step, read, cotangent, names)
    if found is None:
        return [spaced(head, prose(f"no one-line matrix rule for d{step.name} by {read} here; its share "
                                   f"is in the index derivation (style='index')."))]
    total, moved = found
    if len(moved) == 1:
        chain, rules = moved[0]
        if not rules:  # dS = dX: the cotangent passes as it is
            return [spaced(head, punct(equals(d_step, total), ","), prose("so"),
                           equals(_frob(cotangent, d_step), *chain))]
        return [spaced(head, punct(equals(d_step, total), ","), prose("so"), equals(*chain)), _rules(rules)]
    lines = [spaced(head, punct(equals(d_step, total), ","), prose("each share moved:"))]
    for chain, rules in moved:
        lines += [spaced(prose("     "), equals(*chain))] + ([_rules(rules)] if rules else [])
    return lines


def moved_shares(step: Contraction, read: str, cotangent: Piece | None, names: dict[str, Piece]):
    """``dS`` by ``read`` (one share per occurrence, summed) and each share ``G_S : share``
    moved into ``M : dX`` as (the chain of equal expressions, the rules used); None where a
    share has no one-line rule. ``explain(spec, style="matrix")`` reads the shares too."""
    d_read = differential_of(tensor_name(read))
    writer = Writer({}, frozenset(), {**names, _VARIED: d_read})
    shares = []
    for term in step.terms:
        for n, f in enumerate(term.factors):
            if isinstance(f, Factor) and f.name == read:
                varied = term.factors[:n] + (Factor(_VARIED, f.indices),) + term.factors[n + 1:]
                found = writer.term(Term(term.coefficient, varied), step.indices)
                shares.append(None if found is False else found)
    moved = [(None, []) if s is None else _moved(*s, cotangent, d_read, not step.indices) for s in shares]
    if not shares or any(chain is None for chain, _ in moved):
        return None
    return _signed_sum([(c, r.body) for c, r in shares]), moved


def _elementwise(head, step, derivative: Rendering | None, cotangent: Piece | None, d_step, d_read) -> list[Piece]:
    """``"A = tanh(H)": dA = (1 - A∘A) ∘ dH, so G_A : dA = (G_A ∘ (1 - A∘A)) : dH``."""
    if derivative is None:
        return [spaced(head, prose(f"no matrix form of d{step.name} here (style='index' has it)."))]
    flipped = len(step.indices) == 2 and step.argument.indices != step.indices
    du = transpose_of(d_read) if flipped else d_read
    f = _operand(derivative.whole)
    g = cotangent or Piece("1", "1")
    if not step.indices:
        dy = juxt([f, du])
        if cotangent is None:
            return [spaced(head, equals(d_step, dy))]
        return [spaced(head, punct(equals(d_step, dy), ","), prose("so"),
                       equals(juxt([g, d_step]), juxt([_operand(juxt([g, f])), du])))]
    dy = Piece(f"{f.text} ∘ {du.text}", rf"{f.latex} \circ {du.latex}")
    m = Piece(f"({g.text} ∘ {f.text})", rf"\left({g.latex} \circ {f.latex}\right)")
    chain, rules = [_frob(g, _operand(dy)), _frob(m, du)], [HADAMARD]
    if flipped:
        chain.append(_frob(transpose_of(m), d_read))
        rules.append(TRANSPOSE)
    return [spaced(head, punct(equals(d_step, dy), ","), prose("so"), equals(*chain)), _rules(rules)]


def _moved(c: Fraction, r: Rendering, cotangent: Piece | None, d_read: Piece, scalar: bool):
    """The share ``G : (c R)`` moved into ``M : dX``, and the rules used in order; (None, [])
    where ``R`` is no product, trace or Hadamard product holding ``dX`` once."""
    term = _scaled(c, r.body)
    g = Link(cotangent) if cotangent is not None else None
    if r.kind == "hadamard":
        place = [n for n, p in enumerate(r.parts) if p.text.removesuffix("ᵀ") == d_read.text]
        if len(place) != 1:
            return None, []
        others = [p for n, p in enumerate(r.parts) if n != place[0]]
        transposed = r.parts[place[0]].text.endswith("ᵀ")
        gp = cotangent or Piece("1", "1")
        inner = " ∘ ".join([gp.text] + [p.text for p in others])
        m = _scaled(c, Piece(f"({inner})", r"\left(" + r" \circ ".join([gp.latex] + [p.latex for p in others]) + r"\right)"))
        chain = [_frob(gp, _operand(term)), _frob(m, r.parts[place[0]])]
        rules = [HADAMARD]
        if transposed:
            chain.append(_frob(transpose_of(m if c == 1 else _operand(m)), d_read))
            rules.append(TRANSPOSE)
        return chain, rules
    if r.body.text == f"diag({d_read.text})" and cotangent is not None:  # g : diag(dX) = Diag(g) : dX
        return [_frob(cotangent, _operand(term)), _frob(_operand(_scaled(c, applied("Diag", cotangent))), d_read)], [DIAGONAL]
    if r.kind not in ("product", "trace") or r.chain is None:
        return None, []
    links = list(r.chain)
    scaling = f"Diag({d_read.text})"
    place = [n for n, x in enumerate(links) if x.base.text in (d_read.text, scaling)]
    if len(place) != 1:
        return None, []
    m = place[0]
    left, dx, right = links[:m], links[m], links[m + 1:]
    diagonal = dx.base.text == scaling
    if r.kind == "trace" or scalar:
        return (None, []) if diagonal else _traced(c, r, left, dx, right, g, d_read)
    start = _frob(cotangent, _operand(term))
    chain, rules, moved = [start], [], [g]
    if left:
        moved = [x.flipped() for x in reversed(left)] + moved
        chain.append(_frob(_matrix(c, moved), juxt([x.piece for x in [dx, *right]])))
        rules.append(LEFT)
    if right:
        moved = moved + [x.flipped() for x in reversed(right)]
        chain.append(_frob(_matrix(c, moved), dx.piece))
        rules.append(RIGHT)
    if dx.transposed:
        moved = [x.flipped() for x in reversed(moved)]
        chain.append(_frob(_matrix(c, moved), d_read))
        rules.append(TRANSPOSE)
    if diagonal:  # G : (M Diag(dd)) = (Mᵀ G) : Diag(dd) = diag(Mᵀ G) : dd
        inner = _scaled(c, juxt([x.piece for x in moved if x is not None]))
        chain.append(_frob(applied("diag", inner), d_read))
        rules.append(DIAG)
    return chain, rules


def _traced(c, r, left, dx, right, g, d_read):
    """A scalar share: ``tr(P dX Q) = tr(Q P dX) = (Pᵀ Qᵀ) : dX``, a scalar cotangent in front."""
    front = [g] if g is not None else []
    body = juxt([x.piece for x in [*left, dx, *right]])
    start = _scaled(c, juxt([x.base for x in front] + [r.body]))
    chain, rules = [start], []
    if r.kind != "trace":
        chain.append(_scaled(c, juxt([x.base for x in front] + [Piece(f"tr({body.text})", rf"\operatorname{{tr}}\left({body.latex}\right)")])))
        rules.append(SCALAR)
    outer = right + left
    if right:
        inside = juxt([x.piece for x in [*outer, dx]])
        chain.append(_scaled(c, juxt([x.base for x in front] + [Piece(f"tr({inside.text})",
                                                                        rf"\operatorname{{tr}}\left({inside.latex}\right)")])))
        rules.append(CYCLIC)
    moved = front + (outer if dx.transposed else [x.flipped() for x in reversed(outer)])
    if not outer and r.kind == "trace":  # tr(dX) = tr(Iᵀ dX) = I : dX
        moved.append(Link(Piece("I", "I"), symmetric=True, identity=True))
    chain.append(_frob(_matrix(c, moved), d_read))
    rules.append(TRACE_T if dx.transposed else TRACE)
    return chain, rules


def _matrix(c: Fraction, links) -> Piece:
    """``(c M)``: the moved factors as one operand of ``:``."""
    links = [x for x in links if x is not None]
    body = _scaled(c, juxt([x.piece for x in links], empty="1"))
    return body if len(links) == 1 and c == 1 and " " not in body.text else Piece(f"({body.text})", rf"\left({body.latex}\right)")


def _frob(a: Piece | None, b: Piece) -> Piece:
    if a is None:
        return b
    return Piece(f"{a.text} : {b.text}", f"{a.latex} : {b.latex}")


def _operand(m: Piece) -> Piece:
    return m if " " not in m.text else Piece(f"({m.text})", rf"\left({m.latex}\right)")


def _scaled(c: Fraction, body: Piece) -> Piece:
    return Rendering(c, body, True).whole


def _signed_sum(parts) -> Piece:
    text, latex = [], []
    for n, (c, body) in enumerate(parts):
        m = _scaled(abs(c), body)
        lead = ("-" if c < 0 else "") if n == 0 else (" - " if c < 0 else " + ")
        text += [lead, m.text]
        latex += [lead, m.latex]
    return Piece("".join(text), "".join(latex))
