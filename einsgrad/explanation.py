"""Spec -> :class:`Explanation`: the gradient of every operand derived as one writes it by hand.

For the linear layer ``Y = X Wᵀ`` (``"ik,jk->ij"``) the derivation of ``∂L/∂W`` reads::

    1. Forward: Y_ij = Σ_k X_ik W_jk
    2. Chain rule for one entry: ∂L/∂W_pq = Σ_ij G_ij ∂Y_ij/∂W_pq, with G = ∂L/∂Y
    3. ∂W_jk/∂W_pq = δ_jp δ_kq, so ∂Y_ij/∂W_pq = Σ_k X_ik δ_jp δ_kq = X_iq δ_jp
    4. ∂L/∂W_pq = Σ_ij G_ij X_iq δ_jp = Σ_i G_ip X_iq
    5. the backward einsum "ij,ik->jk", in matrix form ∂L/∂W = Gᵀ X

Everything is symbolic (no shapes, no arrays). The index algebra is a sum of products of
entries and Kronecker deltas (:class:`~einsgrad.algebra.Product`), whose deltas
:meth:`~einsgrad.algebra.Product.contracted` sums away. Matrix forms come from
:mod:`einsgrad.matrix_forms`; every piece of output is a :class:`~einsgrad.render.Piece`, one
string for plain text and one for LaTeX. The arguments are checked by
:mod:`einsgrad.explain_checks`, and ``elementwise=True`` writes :mod:`einsgrad.elementwise`.

The spec's ``...`` is written as one batch multi-index ``β`` (``γ`` for the differentiated
entry); size-1 broadcasting of a labelled dimension is a matter of shapes and is not shown.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from dataclasses import dataclass
from typing import Mapping, Sequence

from . import derive
from .algebra import FRESH_INDEX_LETTERS, Delta, Factor, Fresh, Product, Term, primed
from .derivation import chain, differentiate
from .elementwise import elementwise_lines, elementwise_sizes
from .errors import EinsumSpecError
from .explain_checks import Symbols, check_names, check_notation, check_readable, check_style, check_written
from .form_search import matrix_form
from .matrix_forms import Form, form_body, form_equation
from .programs import Program
from .spec_differentials import SpecDifferential, operand_lines, spec_differential, whole_lines
from .render import (BATCH_SYMBOL, FRESH_BATCH, Piece, Rendered, differential_of, equals,
                     indexed, juxt, kronecker, label_symbol, label_symbols, latex_escape, listed,
                     paragraph, parenthesized, partial_of, product_piece, prose, punct,
                     quoted_code, spaced, summation, tensor_name)
from .spec import ELLIPSIS, Spec, parse


# -- the forward as a product --------------------------------------------------------------


def _forward(spec: Spec, names: Sequence[str]) -> tuple[tuple[str, ...], Product]:
    """``Y`` indices and the forward sum. A label repeated in the output gets a primed index
    tied to the first by a delta (``"i->ii"``: ``Y_ii′ = A_i δ_ii′``)."""
    index, deltas, seen = [], [], Counter()
    for symbol in label_symbols(spec.output):
        seen[symbol] += 1
        if seen[symbol] == 1:
            index.append(symbol)
        else:
            index.append(primed(symbol, seen[symbol] - 1))
            deltas.append(Delta(symbol, index[-1]))
    summed = tuple(dict.fromkeys(label_symbol(l) for t in spec.inputs for l in t if l not in spec.output))
    entries = tuple(Factor(n, label_symbols(t)) for n, t in zip(names, spec.inputs))
    return tuple(index), Product(summed, entries + tuple(deltas))


# -- the public object ---------------------------------------------------------------------


@dataclass(frozen=True)
class Gradient:
    """What :func:`explain` found for one operand.

    Attributes:
        wrt: the operand's position.
        name: the operand's name.
        grad_spec: the backward einsum (as :func:`einsgrad.grad_spec` gives it).
        jacobian_spec: the full Jacobian as an einsum, or None when ``...`` is in both the
            operand and the output (its batch dimensions then need shapes to be named).
        matrix_form: the gradient in matrix notation, e.g. ``"∂L/∂W = Gᵀ X"``, or None.
    """

    wrt: int
    name: str
    grad_spec: str
    jacobian_spec: str | None
    matrix_form: str | None


@dataclass(frozen=True)
class Explanation(Rendered):
    """The derivation of einsum gradients, by hand; ``str()`` is plain text, :meth:`latex`
    LaTeX, and Jupyter displays it as math.

    Attributes:
        spec: the spec with its output explicit.
        names: the operands' names.
        out: the output's name.
        style: "index", "differential" or "matrix".
        forward_form: the forward in matrix notation (``"Y = X Wᵀ"``), or None.
        gradients: one :class:`Gradient` per explained operand.
        lines: the rendered lines, each as its plain text and its LaTeX.
    """

    spec: str
    names: tuple[str, ...]
    out: str
    style: str
    forward_form: str | None
    gradients: tuple[Gradient, ...]
    lines: tuple[Piece, ...]

    def latex(self) -> str:
        """The derivation as LaTeX paragraphs for an ordinary document (prose as text, each
        formula inline, so that long lines wrap, ``\\sloppy`` for the quoted specs, which do
        not break); it needs amsmath (``\\operatorname``)."""
        return "\n".join([r"\begingroup\sloppy", *(
            r"\noindent " + paragraph(line.latex) + r"\par" if line.text else r"\medskip"
            for line in self.lines), r"\endgroup"])

    def __repr__(self) -> str:
        grads = "; ".join(g.matrix_form or f"∂L/∂{g.name}: {g.grad_spec!r}" for g in self.gradients)
        return f"<Explanation of {self.spec!r} ({', '.join(self.names)} -> {self.out}): {grads}>"


# -- the derivation ------------------------------------------------------------------------


def explain(spec, names=None, out: str | None = None, *, wrt=None,
            sizes: Mapping | None = None, style: str = "index", elementwise: bool = False):
    """Derives the gradient of each operand of ``spec`` by hand, step by step.

    Args:
        spec: an einsum spec, as :func:`einsgrad.compile` takes it, or a
            :class:`~einsgrad.Program`: then ``wrt`` is a tensor's name (default every input),
            the result is :meth:`Program.explain`'s, and ``names``, ``out``, ``sizes`` and
            ``elementwise`` do not apply. Unlike ``compile``, a space between two labels of
            one operand (``"A X B"``) is refused: it is a matrix expression, not labels.
        names: the operands' names, ``"X,W"`` or ``["X", "W"]``, none of them a label;
            default ``A, B, C, ...``, skipping the labels.
        out: the output's name; default ``Y`` (``Z``, ... when ``Y`` is a label).
        wrt: an operand index or a list of them; default every operand.
        sizes: label sizes: those only the output has (as for ``compile``), and with
            ``elementwise=True`` every label's (``"..."``: a tuple, the batch shape).
        style: "index" (Kronecker deltas), "differential" (``dL = G : dY``, for specs
            with a matrix form; the others fall back to the index derivation) or "matrix"
            (the whole forward's differential, each operand's share moved into ``M : dX``
            one Frobenius rule a line; a spec with no matrix form says so in one line and
            gives the index form).
        elementwise: also write every scalar equation of each gradient (small sizes).

    >>> print(explain("ik,jk->ij", "X,W", wrt=1).gradients[0].matrix_form)
    ∂L/∂W = Gᵀ X
    """
    if isinstance(spec, Program):
        given = {"names": names is not None, "out": out not in (None, "Y"),
                 "sizes": sizes is not None, "elementwise": bool(elementwise)}
        if any(given.values()):
            raise EinsumSpecError(f"{', '.join(k for k, v in given.items() if v)}: not for a "
                                  f"program, whose text names its tensors; give wrt= and style= only")
        return spec.explain(wrt, style=style)
    parsed = parse(spec, sizes)
    check_readable(parsed, names)
    check_notation(parsed)
    sym = check_names(names, parsed, out)
    chosen = derive.check_wrts(parsed, wrt)[0]
    style = check_style(style)
    check_written(parsed, chosen)
    entries = elementwise_sizes(parsed, sizes, chosen, sym) if elementwise else None
    forward = matrix_form(parsed)
    lhs = tensor_name(sym.out)
    forward_eq = None if forward is None else form_equation(
        lhs, forward, [tensor_name(n) for n in sym.names])
    lines = list(_header(parsed, sym, forward_eq))
    differential = None
    if style == "matrix":
        differential = spec_differential(parsed, sym.names, sym.cotangent, forward)
        if differential is not None:
            lines.extend(whole_lines(differential, sym.out, sym.loss))
    gradients = []
    for k in chosen:
        gradient, section, form, form_eq = _gradient(parsed, sym, k, style, forward, differential)
        gradients.append(gradient)
        lines.append(Piece("", ""))
        lines.extend(section)
        if entries is not None:
            lines.extend(elementwise_lines(parsed, sym, k, entries, gradient.grad_spec, form, form_eq))
    return Explanation(str(parsed), sym.names, sym.out, style,
                       None if forward_eq is None else forward_eq.text, tuple(gradients),
                       tuple(lines))


def _header(spec: Spec, sym: Symbols, forward_eq: Piece | None) -> list[Piece]:
    names, out, L, G = sym.names, sym.out, sym.loss, sym.cotangent
    index, term = _forward(spec, names)
    lines = [spaced(prose("The einsum"), quoted_code(str(spec)), prose(
        f"with operands {', '.join(names)} and output {out}; {L} is a scalar loss; the "
        f"cotangent"), equals(tensor_name(G), partial_of(tensor_name(L), tensor_name(out))),
        prose(f"has {out}'s indices."))]
    if "->" not in (spec.text or "->"):
        lines.append(prose("Implicit mode: the output is the labels that appear once, in "
                            "alphabetical order (after the batch indices of '...')."))
    lines.append(spaced(prose("Forward:"), *(
        [punct(equals(indexed(out, index), product_piece(term)), ";"), prose("in matrix form,"), forward_eq]
        if forward_eq else [equals(indexed(out, index), product_piece(term))])))
    if any(ELLIPSIS in t for t in (*spec.inputs, spec.output)):
        lines.append(prose(f"{BATCH_SYMBOL} stands for the batch indices of '...' (aligned from the "
                            f"right; where an operand has fewer or size-1 batch dimensions, numpy "
                            f"broadcasts it, and its gradient also sums over them)."))
    in_inputs = {l for t in spec.inputs for l in t}
    counts = Counter(spec.output)
    for label in counts:
        if label not in in_inputs:
            what = ("the batch indices β appear only in {out}: the forward broadcasts along "
                    "them (new axes, their sizes given by sizes=)." if label == ELLIPSIS else
                    "{label} appears only in {out}: the forward broadcasts along it (a new axis, "
                    "its size given by sizes=).")
            lines.append(prose(what.format(label=label, out=out)))
        if counts[label] > 1:
            lines.append(prose(f"{label} is repeated in {out}: {out} holds the values on that "
                                f"diagonal and zeros elsewhere, a delta in the forward."))
    return lines


def _gradient(spec: Spec, sym: Symbols, k: int, style: str, forward: Form | None,
              differential: SpecDifferential | None = None):
    name = sym.names[k]
    backward = derive.backward(spec, k)
    others = [n for m, n in enumerate(sym.names) if m != k]
    form = matrix_form(backward)
    form_eq = None
    if form is not None:
        form_eq = form_equation(partial_of(tensor_name(sym.loss), tensor_name(name)), form,
                                 [tensor_name(n) for n in (sym.cotangent, *others)])
    try:
        jacobian = str(derive.jacobian(spec, k))
    except EinsumSpecError:
        jacobian = None
    gradient = Gradient(k, name, str(backward), jacobian, None if form_eq is None else form_eq.text)
    lines = [Piece(f"Gradient with respect to {name} (operand {k}):",
                   r"\textbf{" + latex_escape(f"Gradient with respect to {name} (operand {k}):") + "}")]
    if style == "matrix":
        lines.extend(operand_lines(differential, k, sym.taken, form_eq, gradient.grad_spec)
                     if differential is not None and form_eq is not None else
                     [_no_matrix_form(spec, sym, k, gradient)])
    elif style == "differential":
        lines.extend(_differential_steps(spec, sym, k, forward, form, form_eq, gradient))
    else:
        lines.extend(_index_steps(spec, sym, k, form_eq, gradient))
    return gradient, lines, form, form_eq


def _index_steps(spec: Spec, sym: Symbols, k: int, form_eq: Piece | None, gradient: Gradient):
    name, labels = sym.names[k], spec.inputs[k]
    index, forward = _forward(spec, sym.names)
    fresh = Fresh(sym.taken | set(index) | set(forward.over), FRESH_INDEX_LETTERS, primed)
    p = tuple(FRESH_BATCH if label == ELLIPSIS else fresh.take() for label in labels)
    L, G, Y = tensor_name(sym.loss), sym.cotangent, sym.out
    dx = indexed(name, p)
    lines = [spaced(prose("1. Forward:"), equals(indexed(Y, index), product_piece(forward)))]

    lines.append(spaced(prose("2. Chain rule for one entry:"), punct(equals(partial_of(L, dx), summation(
        index, juxt([indexed(G, index), partial_of(indexed(Y, index), dx)]))), ","),
        prose("with"), equals(tensor_name(G), partial_of(L, tensor_name(Y)))))

    # the product rule over the operand's one occurrence (names are distinct), as programs use it
    jacobian = differentiate((Term(Fraction(1), forward.factors),), index, name, cotangent=None,
                             jacobian=True, indices=p).occurrences[0]
    raw = Product(forward.over, jacobian.others + jacobian.deltas)  # the deltas written last
    jac = raw.contracted()
    step3 = [product_piece(raw)] + ([product_piece(jac)] if jac != raw else [])
    lines.append(spaced(prose(f"3. Each entry of {name} is its own variable:"),
                        punct(equals(partial_of(indexed(name, label_symbols(labels)), dx),
                                     juxt([kronecker(d.p, d.q) for d in jacobian.deltas])), ","),
                        prose("so"), equals(partial_of(indexed(Y, index), dx), *step3)))
    lines.extend(_jacobian_words(spec, sym, k, index, p, jac, gradient, form_eq))

    chained = chain(Factor(G, index), jac)
    final = chained.contracted()
    step4 = [product_piece(chained)] + ([product_piece(final)] if final != chained else [])
    lines.append(spaced(prose(f"4. Contract with {G}, summing the deltas away:"),
                        equals(partial_of(L, dx), *step4)))
    lines.extend(_phenomena(spec, sym, k, p))

    if p and not derive.surviving_deltas(spec, k):
        back = final.renamed(dict(zip(p, label_symbols(labels))))
        labelled = label_symbols(labels)
        lines.append(spaced(prose(f"5. Renaming {listed(p)} to {listed(labelled)}:"),
                            punct(equals(partial_of(L, indexed(name, labelled)), product_piece(back)), ","),
                            prose("the backward einsum"), quoted_code(gradient.grad_spec)))
    else:
        lines.append(spaced(prose("5. The backward einsum is"), *(
            [quoted_code(gradient.grad_spec), prose("(a label repeated in its output is the delta "
                                                    "that survives).")] if p else
            [punct(quoted_code(gradient.grad_spec), ".")])))
    lines.append(spaced(prose("   In matrix form:"), form_eq) if form_eq is not None else
                 prose("   No matrix form: the einsum above is the formula."))
    return lines


def _no_matrix_form(spec: Spec, sym: Symbols, k: int, gradient: Gradient) -> Piece:
    """Style "matrix" where the spec has none: why, in one line, and the index form."""
    index, term = _forward(derive.backward(spec, k), (sym.cotangent, *(n for m, n in enumerate(sym.names) if m != k)))
    wide = [(n, t) for n, t in (*zip(sym.names, spec.inputs), (sym.out, spec.output))
            if len(set(t) - {ELLIPSIS}) > 2]
    why = (f"{wide[0][0]} has {len(set(wide[0][1]) - {ELLIPSIS})} indices, more than a matrix's two" if wide
           else "an index has no place in a product of matrices")
    return spaced(prose(f"No matrix form ({why}); in index form:"),
                  punct(equals(partial_of(tensor_name(sym.loss), indexed(sym.names[k], index)),
                               product_piece(term)), ","),
                  prose("the backward einsum"), quoted_code(gradient.grad_spec))


def _order_words(n: int, batch: bool) -> str:
    if batch:
        return f"a tensor of order {n} plus the batch dimensions"
    return {0: "a scalar", 1: "a vector", 2: "a matrix"}.get(n, f"a tensor of order {n}")


def _jacobian_words(spec: Spec, sym: Symbols, k: int, index, p, jac: Product, gradient: Gradient,
                    form_eq: Piece | None):
    name, Y, G = sym.names[k], sym.out, sym.cotangent
    letters = [s for s in (*index, *p) if s not in (BATCH_SYMBOL, FRESH_BATCH)]
    batch = BATCH_SYMBOL in index or FRESH_BATCH in p
    where = "; ".join(f"{listed(s)} of {n}" for s, n in ((index, Y), (p, name)) if s)
    labels = Counter(spec.output + spec.inputs[gradient.wrt])  # the Jacobian spec's output
    repeated = gradient.jacobian_spec and any(c > 1 for l, c in labels.items() if l != ELLIPSIS)
    lines = [spaced(prose(f"   This is the full Jacobian, {_order_words(len(letters), batch)}"
                          + (f" (indices {where})" if where else "")
                          + (", not a matrix;" if len(letters) > 2 else ";")),
                    *([prose("as an einsum:"),
                       punct(quoted_code(gradient.jacobian_spec), "" if repeated else "."),
                       *([prose("(a label repeated in the output is a delta).")] if repeated else [])]
                      if gradient.jacobian_spec else
                      [prose("as an einsum it needs the batch dimensions named (give shapes= to "
                             "jacobian_spec).")]))]
    own, out_index = set(p), set(index)
    moved = [d for d in jac.factors if d.is_delta and d.p in out_index and d.q in own]
    words = (f"{Y}'s index {d.p} to {name}'s position {d.q}" for d in moved)
    lines.append(prose(f"   The gradient is this Jacobian contracted with {G} over {Y}'s "
                        f"indices, so {G} is part of it" + (
                            f": the delta{'s' if len(moved) > 1 else ''} "
                            f"move{'' if len(moved) > 1 else 's'} " + "; ".join(words)
                            if moved else "") + "."))
    if form_eq is not None and len(spec.inputs) > 1:
        lines.append(spaced(prose("   That is why"), form_eq, prose(
            f"holds {G}, and is not a rearrangement of the other operands alone.")))
    return lines


def _phenomena(spec: Spec, sym: Symbols, k: int, p) -> list[Piece]:
    """Named in words, one true sentence per label: a delta that survives (zero off the
    diagonal), a broadcast (constant along the label), both at once (constant along the
    diagonal, zero off it), and sums of G over labels only the output has."""
    name, Y, G = sym.names[k], sym.out, sym.cotangent
    labels, lines = spec.inputs[k], []
    at: dict[str, list[str]] = {}
    for label, symbol in zip(labels, p):
        at.setdefault(label, []).append(symbol)
    broadcast = derive.broadcast_labels(spec, k)
    for label in derive.surviving_deltas(spec, k):
        first, *rest = at[label]
        diagonal = " = ".join(at[label])
        if label in broadcast:
            lines.append(spaced(prose(f"   {label} is repeated in {name} and appears nowhere "
                                      f"else, so"), juxt([kronecker(first, s) for s in rest]),
                                prose(f"survives: the gradient is zero off the diagonal "
                                      f"{diagonal}, and on it the same for every {label} (the "
                                      f"forward summed that diagonal).")))
        else:
            lines.append(spaced(prose(f"   {label} is repeated in {name}, so"),
                                juxt([kronecker(first, s) for s in rest]),
                                prose(f"survives: the gradient is zero off the diagonal "
                                      f"{diagonal}.")))
    for label in broadcast:
        if len(at[label]) > 1:
            continue
        what, verb, it = (("the batch indices β", "appear", "them") if label == ELLIPSIS else
                          (label, "appears", "it"))
        lines.append(prose(f"   {what} {verb} only in {name}: the forward summed {it}, so the "
                            f"gradient is constant along {it} (a broadcast along "
                            f"{listed(at[label])})."))
    inputs = {l for t in spec.inputs for l in t}
    for label in derive.summed_cotangent_labels(spec, k):
        if label not in inputs:
            what, it = ("the batch indices β", "them") if label == ELLIPSIS else (label, "it")
            lines.append(prose(f"   {name} lacks {what}, which only {Y} has: the forward "
                                f"broadcast {name} along {it}, so its gradient sums {G} over "
                                f"{it}."))
    return lines


def _rules(M: str, N: str, P: str) -> Piece:
    """The Frobenius-product identities the differential derivation uses, written with the
    placeholder matrices ``M, N, P`` (fresh letters when an operand has one of those names)."""
    def m(text: str) -> Piece:
        return Piece(text.format(M=M, N=N, P=P), text.format(
            M=tensor_name(M).latex, N=tensor_name(N).latex, P=tensor_name(P).latex).replace("ᵀ", r"^\top")
            .replace("∘", r"\circ").replace(", ", r",\ "))
    return m("{M} : ({N} {P}) = ({N}ᵀ {M}) : {P} = ({M} {P}ᵀ) : {N}, {M} : {N}ᵀ = {M}ᵀ : {N}, "
             "{M} : ({N} ∘ {P}) = ({M} ∘ {N}) : {P}.")


def _differential_steps(spec, sym: Symbols, k, forward, form, form_eq, gradient):
    names, name = sym.names, sym.names[k]
    usable = (forward is not None and form is not None
              and not (forward.batch or forward.summed or form.batch or form.summed))
    if not usable:
        return [prose(f"This spec has no matrix form for the differential derivation "
                       f"(d{sym.loss} = {sym.cotangent} : d{sym.out}); here is the index "
                       f"derivation.")] + _index_steps(spec, sym, k, form_eq, gradient)
    Y, X, G = tensor_name(sym.out), tensor_name(name), tensor_name(sym.cotangent)
    frob = Piece(" : ", r" : ")
    d = differential_of
    dy = form_body(forward, [tensor_name(n) for n in names], vary=k)
    grad = form_body(form, [tensor_name(n) for n in (sym.cotangent,
                                                     *[n for m, n in enumerate(names) if m != k])])
    lhs = differential_of(tensor_name(sym.loss))

    def product(a, b):
        return Piece(a.text + frob.text + b.text, a.latex + frob.latex + b.latex)

    placeholders = Fresh(sym.taken, "MNPQRSTUVW")
    M, N, P = (placeholders.take() for _ in range(3))

    return [
        spaced(prose("1. Forward:"), equals(Y, form_body(forward, [tensor_name(n) for n in names]))),
        spaced(prose(f"2. The differential of {sym.loss}:"), punct(equals(lhs, product(G, d(Y))), ","),
               prose("with"), equals(G, partial_of(tensor_name(sym.loss), Y)),
               prose(f"and {M} : {N} the sum of the entrywise products (the Frobenius "
                     f"product).")),
        spaced(prose(f"3. Only {name} varies:"), punct(equals(d(Y), dy), ","), prose("so"),
               equals(lhs, product(G, d(Y)), product(G, parenthesized(dy)),
                      product(parenthesized(grad), d(X)))),
        spaced(prose("   using"), _rules(M, N, P)),
        spaced(prose("4. Read off the gradient:"), punct(form_eq, ","), prose("the backward einsum"),
               quoted_code(gradient.grad_spec)),
    ]
