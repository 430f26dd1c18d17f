"""Program -> :class:`ProgramExplanation`: a program's gradients derived as one writes them by hand.

For ``f = x[i] * A[i,j] * x[j]`` and ``x`` the derivation reads::

    1. The program with its sums written out: f = Σ_ij x_i A_ij x_j
    2. f is a scalar: the gradient is ∂f/∂x_p directly.
    3. x occurs twice: ∂x_i/∂x_p = δ_ip, ∂x_j/∂x_p = δ_jp; by the product rule,
       ∂f/∂x_p = Σ_ij δ_ip A_ij x_j + Σ_ij x_i A_ij δ_jp
    4. Contracting the deltas: ∂f/∂x_p = Σ_j A_pj x_j + Σ_i x_i A_ip
    5. Renaming p to i: g[i] = A[i,j] * x[j] + x[j] * A[j,i]
       In matrix form: ∂f/∂x = (A + Aᵀ) x

The cotangent of an indexed output ``Y`` is written ``G = ∂L/∂Y`` in every formula, as the
einsum explanations write it (the program's input is named ``dY``), and ``d`` only marks a
differential.

Each step is read from the :class:`~einsgrad.derivation.Derivation` that ``Program.grad`` (or
``jacobian``) made and the result program keeps: nothing is derived here, only rendered, with
:mod:`einsgrad.render` and :mod:`einsgrad.matrix_forms`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .algebra import Delta, Factor, Product, Term, decimal, fresh_name
from .backprop import Local
from .derivation import loss_name
from .matrix_differentials import differential_section
from .program_steps import Contraction
from .errors import EinsumSpecError
from .expressions import Statement
from .kronecker import vec_form, vec_line
from .matrix_statements import statement_form
from .render import (Piece, Rendered, equals, indexed, juxt, kronecker, listed, partial_of,
                     product_piece, prose, punct, quoted_code, spaced, summation, tensor_name)
from .spec_terms import einsum_of

STYLES = ("index", "hessian", "matrix")
MAX_SHOWN_TERMS = 24
"""Steps 1, 3 and 4 write at most this many terms of a sum, step 5 this many merges and
einsums, then say how many more there are: the text of a large derivation (a Hessian of 30
occurrences has 870 terms) stays readable and is rendered in time linear in what is shown.
The result program is always printed whole."""


@dataclass(frozen=True)
class ProgramGradient:
    """What :meth:`Program.explain` found for one tensor.

    Attributes:
        name: the tensor.
        result: the gradient program as the derivation gives it (``str(prog.grad(name))``).
        einsums: one einsum spec per term of the result (None for a constant term); a label
            repeated in the output is a delta that survives, a label only in the output a
            broadcast.
        matrix_form: the gradient in matrix notation, e.g. ``"∂f/∂x = (A + Aᵀ) x"``, with
            the forward's named intermediates it reads defined after it, or None.
        vec_form: a Hessian by a matrix with no matrix form, as the matrix ``∂vec(g)/∂vec(X)ᵀ``
            (``"∂²f/∂X² = I ⊗ (A + Aᵀ)"``, see :mod:`einsgrad.kronecker`), or None.
    """

    name: str
    result: str
    einsums: tuple[str | None, ...]
    matrix_form: str | None
    vec_form: str | None = None


@dataclass(frozen=True)
class ProgramExplanation(Rendered):
    """The derivation of a program's gradients; ``str()`` is plain text, :meth:`latex` LaTeX,
    and Jupyter displays it as math.

    Attributes:
        program: the program, canonical.
        style: "index", "hessian" (each gradient followed by its Jacobian) or "matrix"
            (the differential derivation in matrix notation).
        gradients: one :class:`ProgramGradient` per explained tensor.
        lines: the rendered lines, each as its plain text and its LaTeX.
        hessians: with style "hessian", one per explained tensor (``result`` is
            ``str(prog.hessian(name))``).
    """

    program: str
    style: str
    gradients: tuple[ProgramGradient, ...]
    lines: tuple[Piece, ...]
    hessians: tuple[ProgramGradient, ...] = ()

    def __repr__(self) -> str:
        grads = "; ".join([f"∂/∂{g.name}: {g.matrix_form or g.result}" for g in self.gradients]
                          + [f"∂²/∂{h.name}²: {h.matrix_form or h.vec_form or h.result}" for h in self.hessians])
        return f"<ProgramExplanation of {self.program!r}: {grads}>"


def cotangent_symbol(used) -> str:
    """How formulas write the cotangent ``∂L/∂Y`` of an indexed output: ``G`` (as the einsum
    explanations do), or ``G1``, ``G2``... if a tensor has the name."""
    return fresh_name("G", used)


def gradient_lhs(loss: str, out: str, name: str, scalar: bool, order: int = 1) -> Piece:
    """``∂L/∂W`` (a loss chained through an indexed output), ``∂f/∂x`` (a scalar output) or,
    with ``order`` 2, ``∂²f/∂x²``."""
    top = out if scalar else loss
    if order == 1:
        return partial_of(tensor_name(top), tensor_name(name))
    t, x = tensor_name(top), tensor_name(name)
    return Piece(f"∂²{t.text}/∂{x.text}²", rf"\frac{{\partial^2 {t.latex}}}{{\partial {x.latex}^2}}")


def matrix_line(form, result_text: str) -> Piece:
    """``In matrix form: ...``, or the one line saying there is none, with the index form."""
    if form is not None:
        return spaced(prose("   In matrix form:"), form.piece)
    return spaced(prose("   No matrix form (an index has no place in a product of matrices); "
                        "in index form:"), quoted_code(result_text))


def check_style(style: str) -> None:
    """Refuses a ``style=`` that is none of :data:`STYLES`."""
    if style not in STYLES:
        raise EinsumSpecError(f"style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")


def explain_program(prog, style: str, names: tuple[str, ...], grads: tuple, hessians: tuple = ()
                    ) -> ProgramExplanation:
    """The narration that :meth:`Program.explain` returns: ``prog`` (a
    :class:`~einsgrad.programs.Program`, which imports this module: its narrator reads it and
    never imports it back), its gradients ``grads`` by ``names`` and, with style "hessian",
    their Jacobians ``hessians``, all derived by ``Program``: their derivations are rendered."""
    used = {f.name for t in prog.terms for f in t.factors} | {prog.output_name}
    loss, symbol = loss_name(used), cotangent_symbol(used)
    out, scalar = prog.output_name, not prog.output_indices
    lines = [spaced(prose("The program"), quoted_code(str(prog)), *(
        [prose(f"has a scalar output {out}.")] if scalar else
        [prose(f"with {loss} a scalar loss; the cotangent {symbol} ="),
         partial_of(tensor_name(loss), tensor_name(out)),
         prose(f"(the input {prog.cotangent}) has {out}'s indices.")]))]
    gradients, hessian_parts = [], []
    for n, g, h in itertools.zip_longest(names, grads, hessians):
        if style == "matrix":
            gradient, section = _differentials(prog, n, g, symbol, gradient_lhs(loss, out, n, scalar))
            gradients.append(gradient)
            lines += [Piece("", ""), *section]
            continue
        gradient, section = _derivative(prog, n, g, loss, symbol=symbol,
                                        lhs=gradient_lhs(loss, out, n, scalar))
        gradients.append(gradient)
        lines += [Piece("", ""), *section]
        if h is not None:
            hessian, section = _derivative(g, n, h, loss, jacobian=True,
                                           lhs=gradient_lhs(loss, out, n, True, order=2))
            hessian_parts.append(hessian)
            lines += [Piece("", ""), *section]
    return ProgramExplanation(str(prog), style, tuple(gradients), tuple(lines), tuple(hessian_parts))


def _differentials(prog, name: str, result, symbol: str, lhs: Piece):
    """Style "matrix": the gradient by differentials, the program one contraction."""
    step = Contraction(prog.output_name, prog.output_indices, prog.terms)
    shown_as = {prog.cotangent: tensor_name(symbol)} if prog.output_indices else {}
    form = None
    if result.terms:
        statement = Statement(result.output_name, result.output_indices, result.terms)
        form = statement_form((statement,), lhs, names=shown_as)
    title = f"Gradient with respect to {name}, by differentials in matrix notation:"
    locals_ = (Local(step, name),) if result.derivation.occurrences else ()
    lines = [Piece(title, r"\textbf{" + title.replace("_", r"\_") + "}"), *differential_section(
        (step,), locals_, {}, shown_as.get(prog.cotangent), shown_as, form, str(result))]
    einsums = tuple(term_einsum(t, result.output_indices) for t in result.terms)
    return ProgramGradient(name, str(result), einsums, None if form is None else form.piece.text), lines


def _shown(items: list) -> tuple[list, int]:
    """The first :data:`MAX_SHOWN_TERMS` items, and how many are left out."""
    return items[:MAX_SHOWN_TERMS], max(0, len(items) - MAX_SHOWN_TERMS)


def _more(count: int, what: str = "terms") -> Piece:
    return prose(f"... ({count} more {what})")


def _signed(parts, more: int = 0) -> Piece:
    """``c_1 m_1 ± c_2 m_2 ...`` from (coefficient, rendering or None for a constant), then
    ``+ ... (N more terms)`` when ``more`` were left out."""
    text, latex = [], []
    for n, (c, m) in enumerate(parts):
        magnitude = decimal(abs(c))
        if m is None:
            m = Piece(magnitude, magnitude)
        elif abs(c) != 1:
            m = juxt([Piece(magnitude, magnitude), m])
        sign = "-" if c < 0 else "+"
        text.append((sign if c < 0 else "") if n == 0 else f" {sign} ")
        latex.append(text[-1])
        text.append(m.text)
        latex.append(m.latex)
    if more:
        tail = _more(more)
        text.append(" + " + tail.text)
        latex.append(" + " + tail.latex)
    return Piece("".join(text) or "0", "".join(latex) or "0")


def _derivative(prog, name: str, result, loss: str, jacobian: bool = False, symbol: str = "G",
                lhs: Piece | None = None):
    """The gradient of a loss by ``name`` (``result`` is ``prog.grad(name)``), or with
    ``jacobian`` the derivative of every entry (``result`` a Hessian, ``prog`` a gradient);
    the cotangent is written ``symbol``, the matrix form's left side ``lhs``."""
    out, index = prog.output_name, prog.output_indices
    chain, what = bool(index) and not jacobian, "the Hessian" if jacobian else "the gradient"
    dy = symbol if chain else None
    derivation = result.derivation  # the steps of the product rule, rendered here
    shown_as = {prog.cotangent: symbol} if chain else {}
    p = derivation.indices
    shown, more = _shown(list(prog.terms))
    forward = [(t.coefficient, product_piece(Product(tuple(i for i in t.indices() if i not in index),
                                                     t.factors)) if t.factors else None)
               for t in shown]
    y, dx = indexed(out, index), indexed(name, p)
    title = (f"Hessian by {name}, the Jacobian of the gradient {out}:" if jacobian else
             f"Gradient with respect to {name}:")
    lines = [Piece(title, r"\textbf{" + title.replace("_", r"\_") + "}"),
             spaced(prose("1. The program with its sums written out:"), equals(y, _signed(forward, more)))]
    if jacobian:
        lines.append(spaced(prose("2. One entry of the Hessian is"),
                            equals(indexed(result.output_name, index + p), partial_of(y, dx))))
    elif chain:
        lines.append(spaced(prose("2. Chain rule for one entry:"), punct(equals(
            partial_of(tensor_name(loss), dx),
            summation(index, juxt([indexed(dy, index), partial_of(y, dx)]))), ","),
            prose("with"), equals(tensor_name(dy), partial_of(tensor_name(loss), tensor_name(out)))))
    else:
        lines.append(spaced(prose(f"2. {out} is a scalar: the gradient is"),
                            partial_of(tensor_name(out), dx), prose("directly.")))
    occurrences = derivation.occurrences
    if not occurrences:
        lines.append(prose(f"3. {name} appears in no term, so {what} is 0."))
        return _result(name, result, derivation, lines, lhs, shown_as, step=4, hessian=jacobian)
    own: dict[Piece, int] = {}  # each occurrence's derivative, listed once with its count
    for o in occurrences:
        m = equals(partial_of(indexed(name, o.factor.indices), dx),
                   juxt([kronecker(d.p, d.q) for d in o.deltas]))
        own[m] = own.get(m, 0) + 1
    own = [spaced(m, prose(f"({_times(count)})")) if count > 1 else m for m, count in own.items()]
    shown, more = _shown(list(occurrences))
    lines.append(spaced(prose(f"3. {name} occurs {_times(len(occurrences))}:"),
                        *[punct(m, ",") for m in own[:-1]],
                        punct(own[-1], ";"), prose("by the product rule,"), equals(partial_of(y, dx), _signed(
                           [(o.coefficient, product_piece(o.jacobian)) for o in shown], more))))
    chained = [(c, _written(s, shown_as)) for c, s in derivation.chained]
    contracted = [(c, _written(s, shown_as)) for c, s in derivation.contracted]
    steps = [_signed([(c, product_piece(s)) for c, s in _shown(chained)[0]], more)] if chain else []
    if contracted != chained or not steps:
        steps.append(_signed([(c, product_piece(s)) for c, s in _shown(contracted)[0]], more))
    lines.append(spaced(prose("4. Contracting the deltas:" if contracted != chained else
                              "4. No deltas to contract:"),
                        equals(partial_of(tensor_name(loss) if chain else y, dx), *steps)))
    notes = [m for o, (_, s) in zip(occurrences, contracted)
             for m in _occurrence_notes(prog.terms[o.term], o.position, s, index, out, dy, what)]
    notes, more = _shown(list(dict.fromkeys(notes)))  # two occurrences may note the same
    lines += notes + ([spaced(prose("  "), _more(more, "notes"))] if more else [])
    survivors: dict[frozenset, tuple[Delta, list[int]]] = {}
    for n, (_, s) in enumerate(contracted):
        for d in (d for d in s.factors if d.is_delta):
            terms = survivors.setdefault(frozenset(d.indices), (d, []))[1]
            terms += [] if n + 1 in terms else [n + 1]
    for d, terms in survivors.values():
        where = (f"{what} is zero off that diagonal" if len(terms) == len(contracted) else
                 f"term {terms[0]} of step 4 is zero off that diagonal" if len(terms) == 1 else
                 f"terms {_and(terms)} of step 4 are zero off that diagonal")
        lines.append(spaced(prose("  "), kronecker(d.p, d.q), prose(f"survives: {where}.")))
    return _result(name, result, derivation, lines, lhs, shown_as, hessian=jacobian)


def _written(product: Product, names: dict[str, str]) -> Product:
    """``product`` with tensors renamed for display (the cotangent ``dY`` as ``G``)."""
    if not names:
        return product
    return Product(product.over, tuple(Factor(names[f.name], f.indices) if not f.is_delta and f.name in names
                                       else f for f in product.factors))


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _and(numbers) -> str:
    """``1, 2 and 3``."""
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def _occurrence_notes(term: Term, k: int, part: Product, index, out: str, dy: str | None,
                      what: str) -> list[Piece]:
    """Broadcasts: the forward broadcast the tensor ``f`` (factor ``k`` of ``term``) along an
    output index its term lacks (its gradient ``part`` sums the cotangent ``dy``), or summed an
    index only ``f`` has."""
    f = term.factors[k]
    name, notes = f.name, []
    entry = indexed(f.name, f.indices)
    present = set(term.indices())
    for i in (i for i in index if dy and i not in present):
        notes.append(spaced(prose("  "), entry, prose(
            f"lacks {out}'s index {i}: the forward broadcast {name} along {i}, so the gradient "
            f"sums {dy} over {i}:"), punct(product_piece(part), ".")))
    others = {i for n, g in enumerate(term.factors) if n != k for i in g.indices}
    for i in dict.fromkeys(f.indices):
        if i not in index and i not in others and f.indices.count(i) == 1:
            notes.append(spaced(prose("  "), entry, prose(
                f"alone holds {i}, which the forward sums: {what} is constant along {i} "
                f"(a broadcast).")))
    return notes


def _result(name: str, result, derivation, lines: list[Piece], lhs: Piece | None, shown_as: dict[str, str],
            step: int = 5, hessian: bool = False):
    """Step 5: the result (``p`` renamed, like terms merged), its einsums and its matrix form."""
    p, xs = derivation.indices, derivation.result_indices[len(derivation.kept):]
    renaming = (f"{step}. Renaming {listed(p)} to {listed(xs)}:" if p and derivation.occurrences else
                f"{step}. The result:")
    lines.append(spaced(prose(renaming), quoted_code(str(result))))
    groups: dict[int, list[int]] = {}
    for n, place in enumerate(derivation.groups):
        groups.setdefault(place, []).append(n + 1)
    merges, more = _shown([(place, members) for place, members in groups.items() if len(members) > 1])
    for place, members in merges:
        merged = derivation.merged[place]
        lines.append(prose(f"   Terms {_and(members)} of step 4 are equal up to renaming and " + (
            f"merge: {_text(result, [merged])}." if merged.coefficient else "cancel.")))
    if more:
        lines.append(spaced(prose("  "), _more(more, "merges")))
    einsums = tuple(term_einsum(t, result.output_indices) for t in result.terms)
    if any(einsums):
        spelled, more = _shown([(t, s) for t, s in zip(result.terms, einsums) if s])
        pieces = [spaced(quoted_code(_text(result, [t])), prose("is"), quoted_code(s)) for t, s in spelled]
        pieces += [_more(more, "einsums")] if more else []
        lines.append(spaced(prose("   As einsums:" if len(pieces) > 1 else "   As an einsum:"),
                            *[punct(m, ";") for m in pieces[:-1]], pieces[-1]))
    form = vec = None
    if result.terms:
        statement = Statement(result.output_name, result.output_indices, result.terms)
        form = statement_form((statement,), lhs or tensor_name(result.output_name),
                              names={k: tensor_name(v) for k, v in shown_as.items()})
        vec = vec_form((statement,), name, lhs) if hessian and form is None and lhs else None
        lines.append(matrix_line(form, str(result)) if vec is None else vec_line(vec, name))
    return ProgramGradient(name, str(result), einsums, None if form is None else form.piece.text,
                           None if vec is None else vec.piece.text), lines


def term_einsum(term: Term, output) -> str | None:
    """The term as one einsum (:func:`einsgrad.spec_terms.einsum_of`), or None for a term with
    too many indices for one or a constant."""
    found = einsum_of(output, term)
    if found is None or not found.tensors and len(set(found.output)) == len(found.output):
        return None
    return str(found.spec)


def _text(prog, terms) -> str:
    """Terms as the program prints them, without the left-hand side."""
    return str(replace(prog, terms=tuple(terms), witnesses=())).split(" = ", 1)[1]
