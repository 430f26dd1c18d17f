"""``explain(..., elementwise=True)``: every scalar equation of a gradient, for small sizes.

Each entry of the gradient is written as the sum of its products of entries (1-based), then
regrouped as the matrix form, laid out as a matrix when it is one.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from . import derive
from .errors import EinsumSpecError
from .explain_checks import Symbols
from .matrix_forms import Form, form_body, form_equation
from .render import (Piece, equals, juxt, listed, label_symbols, partial_of, prose, punct, spaced,
                     tensor_name)
from .spec import ELLIPSIS, Labels, Spec

MAX_EQUATIONS = 200
MAX_TERMS = 2000


def _expand(term: Labels, batch_rank: int) -> tuple:
    """Labels with ``...`` expanded into one key per batch dimension."""
    keys = []
    for label in term:
        keys.extend(((ELLIPSIS, d) for d in range(batch_rank)) if label == ELLIPSIS else (label,))
    return tuple(keys)


def elementwise_sizes(spec: Spec, sizes, chosen, sym: Symbols) -> dict:
    """Every label's size, ``...`` expanded; refuses missing sizes and too many equations."""
    sizes = dict(sizes or {})
    has_batch = any(ELLIPSIS in t for t in (*spec.inputs, spec.output))
    missing = [l for l in spec.labels if l not in sizes] + (
        [ELLIPSIS] if has_batch and ELLIPSIS not in sizes else [])
    if missing:
        raise EinsumSpecError(f"elementwise=True needs every label's size: give sizes= for "
                              f"{', '.join(map(repr, missing))}" + (
                                  " (the batch shape as a tuple for '...')"
                                  if ELLIPSIS in missing else ""))
    lower = [n.lower() for n in (*sym.names, sym.out)]
    if len(set(lower)) != len(lower):
        raise EinsumSpecError(f"elementwise=True writes entries in lowercase, so names and out "
                              f"must differ in more than case, got {', '.join(sym.names)} and "
                              f"out={sym.out}")
    batch = tuple(sizes.pop(ELLIPSIS, ()))
    size = {**sizes, **{(ELLIPSIS, d): n for d, n in enumerate(batch)}}
    equations = terms = 0
    for k in chosen:
        backward = derive.backward(spec, k)
        own = set(_expand(spec.inputs[k], len(batch)))
        rest = {key for t in backward.inputs for key in _expand(t, len(batch))} - own
        count = _equations(size, _expand(spec.inputs[k], len(batch)))
        equations += count
        terms += count * _volume(size, rest)
    if equations > MAX_EQUATIONS or terms > MAX_TERMS:
        raise EinsumSpecError(f"elementwise=True would write {equations} equations with up to "
                              f"{terms} terms; at most {MAX_EQUATIONS} equations and {MAX_TERMS} "
                              f"terms: give smaller sizes")
    return {"size": size, "rank": len(batch)}


def _equations(size, keys) -> int:
    """One equation per entry of the operand, a repeated label counted each time
    (``"ii"`` of size 2 has 4 entries, 2 of them on the diagonal)."""
    count = 1
    for key in keys:
        count *= size[key]
    return count


def _volume(size, keys) -> int:
    volume = 1
    for key in dict.fromkeys(keys):
        volume *= size[key]
    return volume


def _subscript(values, wide: bool) -> str:
    return ("," if wide else "").join(str(v + 1) for v in values)


def _scalar_entry(name: str, values, wide: bool) -> Piece:
    base, sub = tensor_name(name.lower()), _subscript(values, wide)
    if not values:
        return base
    return Piece(f"{base.text}_{sub}", f"{base.latex}_{{{sub}}}")


def elementwise_lines(spec: Spec, sym: Symbols, k: int, entries: dict, grad_spec: str,
                      form: Form | None, form_eq: Piece | None):
    names, out = sym.names, sym.out
    size, rank = entries["size"], entries["rank"]
    wide = any(n > 9 for n in size.values())
    own = _expand(spec.inputs[k], rank)
    out_keys = _expand(spec.output, rank)
    others = [(n, _expand(t, rank)) for m, (n, t) in enumerate(zip(names, spec.inputs)) if m != k]
    free = tuple(dict.fromkeys(key for keys in (out_keys, *(t for _, t in others))
                               for key in keys if key not in own))
    L = tensor_name(sym.loss)

    def cotangent(values):
        return partial_of(L, _scalar_entry(out, values, wide))

    count = _equations(size, own)
    lines = [prose(f"6. Entry by entry ({count} equation{'' if count == 1 else 's'}), with {out.lower()}, "
                    f"{', '.join(n.lower() for n in names)} the entries of {out}, "
                    f"{', '.join(names)} (1-based):")]
    cells = {}
    for values in itertools.product(*(range(size[key]) for key in own)):
        fixed = {}
        consistent = all(fixed.setdefault(key, v) == v for key, v in zip(own, values))
        terms = []
        for rest in itertools.product(*(range(size[key]) for key in free)) if consistent else ():
            at = {**fixed, **dict(zip(free, rest))}
            terms.append(juxt([cotangent([at[key] for key in out_keys])]
                               + [_scalar_entry(n, [at[key] for key in t], wide) for n, t in others]))
        lhs = partial_of(L, _scalar_entry(names[k], values, wide))
        rhs = Piece(" + ".join(t.text for t in terms) or "0", " + ".join(t.latex for t in terms) or "0")
        cells[values] = lhs
        lines.append(spaced(Piece("  ", r"\quad"), equals(lhs, rhs)))
    if form_eq is None:
        lines.append(prose(f"   These are the entries of the backward einsum "
                            f"\"{grad_spec}\" (no matrix form)."))
        return lines
    if form.batch:
        each = listed(label_symbols(form.batch))
        plain = form_equation(partial_of(L, tensor_name(names[k])), replace(form, batch=()),
                               [tensor_name(n) for n in (sym.cotangent, *(n for n, _ in others))])
        lines.append(spaced(prose(f"   Regrouped, for each {each} these are the entries of"),
                            punct(plain, ".")))
        return lines
    lines.append(spaced(prose("   Regrouped, these are the entries of"), punct(form_eq, ":")))
    if 1 <= len(own) <= 2 and len(out_keys) <= 2 and count:
        g_cells = {values: cotangent(values)
                   for values in itertools.product(*(range(size[key]) for key in out_keys))}
        g = _grid(g_cells, [size[key] for key in out_keys]) if out_keys else cotangent(())
        grid = _grid(cells, [size[key] for key in own])
        body = form_body(form, [tensor_name(n) for n in (sym.cotangent, *(n for n, _ in others))])
        lines.append(spaced(Piece("  ", r"\quad"),
                            punct(equals(partial_of(L, tensor_name(names[k])), grid, body), ","),
                            prose("with"), equals(tensor_name(sym.cotangent), g)))
    return lines


def _grid(cells, shape) -> Piece:
    """Entries as a matrix (a column for a vector): ``[[a, b], [c, d]]``, LaTeX ``pmatrix``."""
    rows = ([[cells[(r,)]] for r in range(shape[0])] if len(shape) == 1 else
            [[cells[(r, c)] for c in range(shape[1])] for r in range(shape[0])])
    text = "[" + ", ".join("[" + ", ".join(c.text for c in row) + "]" for row in rows) + "]"
    latex = (r"\begin{pmatrix}" + r" \\ ".join(" & ".join(c.latex for c in row) for row in rows)
             + r"\end{pmatrix}")
    return Piece(text, latex)
