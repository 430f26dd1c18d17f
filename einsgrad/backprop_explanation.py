"""A gradient by reverse mode over statements, narrated: a :class:`~einsgrad.backprop.Backprop` rendered.

For the tanh layer ``H[b,j] = X[b,k] * W[j,k] + c[j]; A[b,j] = tanh(H[b,j]); L = 0.5 * (A[b,j]
- T[b,j])^2`` and ``W`` it reads (abridged)::

    1. The steps, last first, each with its local derivative:
       "L = 0.5 * t[b,j] * t[b,j]": t occurs twice; by the product rule ∂L/∂t_pq = ... = t_pq
       "A[b,j] = tanh(H[b,j])": tanh' = 1 - y^2, so ∂A_bj/∂H_bj = "1 - A[b,j]^2"
       "H[b,j] = X[b,k] * W[j,k] + c[j]": ∂H_bj/∂W_pq = Σ_k X_bk δ_jp δ_kq = X_bq δ_jp
    3. The cotangents ∂L/∂S (the statements dS), each the sum of what the steps reading S pass back:
       "dH[b,j] = dA[b,j] * (1 - A[b,j]^2)", "dW[j,k] = dH[b,j] * X[b,k]"
    4. The result: ...
       In matrix form: ∂L/∂W = ((A - T) ∘ (1 - A∘A))ᵀ X, with A = tanh(H), H = X Wᵀ + 1 cᵀ

With style "hessian" each gradient is followed by its Hessian, the Jacobian of the gradient
program by reverse mode over its statements, rendered the same way.

Every line is read from the :class:`~einsgrad.backprop.Backprop` that ``Program.grad`` made and
its result keeps (each contraction's :class:`~einsgrad.derivation.Derivation`, each function's
one-line rule, each cotangent as summed): nothing is derived here.
"""

from __future__ import annotations

from .algebra import Product, Term
from .expressions import sum_text
from .matrix_differentials import differential_section
from .kronecker import vec_form, vec_line
from .matrix_statements import statement_form
from .program_explanation import (ProgramExplanation, ProgramGradient, cotangent_symbol, gradient_lhs,
                                  matrix_line, term_einsum)
from .program_steps import Contraction, as_statement
from .render import (Piece, equals, indexed, juxt, latex_escape, partial_of, product_piece, prose, punct,
                     quoted_code, spaced, tensor_name)


def explain_statements(prog, names: tuple[str, ...], grads: tuple, hessians: tuple = (),
                       style: str = "index") -> ProgramExplanation:
    """The narration of ``prog``'s gradients ``grads`` by ``names`` (each ``prog.grad(name)``,
    whose ``backprop`` holds the steps) and, with style "hessian", their Hessians ``hessians``
    (each ``prog.hessian(name)``, the Jacobian of a gradient, with its own ``backprop``)."""
    out = prog.output_name
    used = set(prog.inputs) | {s.name for s in prog.steps}
    symbol = cotangent_symbol(used)
    head = (prose(f"has a scalar output {out}.") if not prog.output_indices else
            spaced(prose(f"with L a scalar loss; the cotangent {symbol} ="),
                   partial_of(tensor_name("L"), tensor_name(out)),
                   prose(f"(the input {prog.cotangent}) has {out}'s indices.")))
    lines = [spaced(prose("The program"), quoted_code(_one_line(prog.statements)), head)]
    named = frozenset(s.name for s in prog.statements)
    temporaries = frozenset(s.name for s in prog.steps) - named
    shown_as = {prog.cotangent: tensor_name(symbol)} if prog.cotangent else {}
    gradients, hessian_parts = [], []
    for n, (name, g) in enumerate(zip(names, grads)):
        form = _form(g, gradient_lhs("L", out, name, not prog.output_indices), named, shown_as, temporaries)
        if style == "matrix":
            title = f"Gradient with respect to {name}, by differentials in matrix notation:"
            lines += [Piece("", ""), Piece(title, r"\textbf{" + latex_escape(title) + "}"), *differential_section(
                prog.steps, g.backprop.locals, _step_cotangents(g.backprop), shown_as.get(prog.cotangent),
                shown_as, form, str(g.statements[-1]))]
        else:
            lines += [Piece("", ""), *_gradient(prog, name, g)]
            lines.append(matrix_line(form, str(g.statements[-1])))
        gradients.append(ProgramGradient(name, str(g), _einsums(g.statements[-1]),
                                         None if form is None else form.piece.text))
        if n < len(hessians):
            h = hessians[n]
            lines += [Piece("", ""), *_gradient(prog, name, h, hessian=True)]
            lhs = gradient_lhs("L", out, name, True, order=2)
            named_h = named | _gradient_read(h)
            form = _form(h, lhs, named_h, shown_as, temporaries)
            vec = None if form is not None else vec_form(h.statements, name, lhs, named_h, shown_as, temporaries)
            lines.append(matrix_line(form, str(h.statements[-1])) if vec is None else vec_line(vec, name))
            hessian_parts.append(ProgramGradient(name, str(h), _einsums(h.statements[-1]),
                                                 None if form is None else form.piece.text,
                                                 None if vec is None else vec.piece.text))
    return ProgramExplanation(_one_line(prog.statements), style, tuple(gradients), tuple(lines),
                              tuple(hessian_parts))


def _gradient_read(h) -> frozenset[str]:
    """The gradient, where a Hessian reads it by its name (log-sum-exp's: the softmax ``g``,
    ``Diag(g) - g gᵀ``): the last step of the gradient program, the first local derivative."""
    if not h.backprop.locals:
        return frozenset()
    gradient = h.backprop.locals[0].step.name
    return frozenset({gradient}) & {s.name for s in h.statements[:-1]}


def _step_cotangents(backprop) -> dict:
    """Each step's summed cotangent statement, by step name: the backward pass sums one for
    each step it passes through but the last, in the order of their local derivatives."""
    last = backprop.locals[0].step.name if backprop.locals else None
    steps = [n for n in dict.fromkeys(local.step.name for local in backprop.locals) if n != last]
    return dict(zip(steps, backprop.cotangents[:-1]))


def _form(result, lhs: Piece, named, shown_as, temporaries=()):
    """The result statement in matrix notation (the others written in, but those the user
    named and the ``temporaries`` of the forward read more than once), or None; a gradient
    that is 0 (an input on no path to the output) is the zero matrix, ``∂L/∂s = 0``."""
    return statement_form(result.statements, lhs, named, shown_as, nameable=frozenset(temporaries))


def _einsums(result) -> tuple[str | None, ...]:
    if not result.is_polynomial:
        return ()
    return tuple(term_einsum(t, result.indices) for t in result.terms)


def _gradient(prog, name: str, g, hessian: bool = False) -> list[Piece]:
    backprop = g.backprop
    title = (f"Hessian by {name}, the Jacobian of the gradient, by reverse mode over its statements:" if hessian
             else f"Gradient with respect to {name}, by reverse mode over the statements:")
    lines = [Piece(title, r"\textbf{" + latex_escape(title) + "}")]
    if hessian:
        steps = tuple(dict.fromkeys(local.step for local in reversed(backprop.locals)))
        lines.append(spaced(prose(f"1. The gradient program's steps on the path from {name} (the last "
                                  "is the gradient):"),
                            *_listed([str(as_statement(s)) for s in steps])))
    else:
        named = {s.name for s in prog.statements}
        temporaries = [s.name for s in prog.steps if s.name not in named]
        lines.append(spaced(prose("1. The program as steps" + (
            f" ({', '.join(temporaries)} {'names' if len(temporaries) == 1 else 'name'} a function's "
            f"argument, a power's base, a sum or a quotient)"
            if temporaries else "") + ":"), *_listed([str(as_statement(s)) for s in prog.steps])))
    lines.append(prose("2. Each step's local derivative by what it reads on the path to "
                       f"{name}, the last step first:"))
    if not backprop.locals:
        lines.append(prose(f"   {name} is on no path to {prog.output_name}, so the "
                           f"{'Hessian' if hessian else 'gradient'} is 0."))
    for local in backprop.locals:
        lines.append(spaced(prose("  "), punct(quoted_code(str(as_statement(local.step))), ":"), _local(local)))
    if hessian:
        lines.append(prose("3. The cotangents, each with the gradient's entry index last (the seed is "
                           "a delta: one gradient entry at a time), like terms merged:"))
    else:
        lines.append(spaced(prose("3. The cotangents"), partial_of(tensor_name("L"), tensor_name("S")),
                            prose("(the statements dS), each the sum of what the steps reading S pass back "
                                  "(chain rule), like terms merged:")))
    for s in backprop.cotangents:
        lines.append(spaced(prose("  "), quoted_code(str(s))))
    simplified = (", then simplified: the forward's products and the cotangents written out, what "
                  "cancels cancelled, like terms merged" + (", common factors pulled out" if hessian else "")
                  + " and the forward's names folded back" if backprop.simplified else "")
    lines.append(spaced(prose("4. The result, with a cotangent that is a number or one tensor written "
                              f"where it is read, and a forward temporary read once written in{simplified}:"),
                        quoted_code(_one_line(g.statements))))
    return lines


def _local(local) -> Piece:
    """``∂T/∂N`` by the product rule (a contraction) or by the function's rule."""
    step = local.step
    if isinstance(step, Contraction):
        d = local.derivation
        dy = partial_of(indexed(step.name, step.indices), indexed(local.name, d.indices))
        if not d.occurrences:
            return equals(dy, Piece("0", "0"))
        count = {1: "once", 2: "twice"}.get(len(d.occurrences), f"{len(d.occurrences)} times")
        back = dict(zip(d.result_indices[len(d.kept):], d.indices))  # the result's p named as above
        free = set(d.kept) | set(d.indices)
        merged = _signed([(t.coefficient, Product(tuple(i for i in t.indices() if i not in free), t.factors))
                          for t in (t.renamed(back) for t in d.terms)])
        sides = [dy]
        for side in (_signed(d.chained), _signed(d.contracted), merged):  # as written, contracted, merged
            if side != sides[-1]:
                sides.append(side)
        return spaced(prose(f"{local.name} occurs {count}; by the product rule"), equals(*sides))
    dy = partial_of(indexed(step.name, step.indices), indexed(step.argument.name, step.argument.indices))
    function = "(u^e)'" if local.rule and local.rule.startswith("e *") else f"{step.function}'"
    exponent = f" with e = {sum_text([Term(step.exponent, ())])}" if step.exponent is not None else ""
    return spaced(prose(f"{function} = {local.rule}{exponent}, so"), equals(dy, quoted_code(sum_text(local.local))))


def _signed(parts) -> Piece:
    """``c_1 P_1 ± c_2 P_2 ...`` of (coefficient, product or rendering) pairs."""
    text, latex = [], []
    for n, (c, product) in enumerate(parts):
        m = product if isinstance(product, Piece) else product_piece(product) if product.factors else Piece("1", "1")
        if abs(c) != 1:
            magnitude = sum_text([Term(abs(c), ())])
            m = juxt([Piece(magnitude, magnitude), m])
        sign = "-" if c < 0 else "+"
        lead = ("-" if c < 0 else "") if n == 0 else f" {sign} "
        text += [lead, m.text]
        latex += [lead, m.latex]
    return Piece("".join(text) or "0", "".join(latex) or "0")


def _listed(texts) -> list[Piece]:
    pieces = [quoted_code(t) for t in texts]
    return [punct(p, ";") for p in pieces[:-1]] + pieces[-1:]


def _one_line(statements) -> str:
    return "; ".join(map(str, statements))
