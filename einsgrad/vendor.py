"""Generated functions -> a standalone module for one framework: a layer to vendor.

:meth:`einsgrad.Einsum.module` writes one Python file that needs only numpy, torch or jax:
its docstring says which argument is which operand and what shapes fit, a check refuses
operands that do not fit with a clear ``ValueError`` (never a wrong shape), the four rendered
functions (``_forward``, ``_vjp``, ``_forward_saving``, ``_pullback``) follow, and around them
the framework's own form of a differentiable function: plain functions for numpy, a
``torch.autograd.Function`` for torch, a ``jax.custom_vjp`` for jax.

Exact-shape modules take the shapes they were generated for. Shape-generic ones (planned for a
:class:`~einsgrad.shapes.ShapeClass`) take any sizes with the same labels equal and the same
dimensions 1: they read sizes from their arguments. The text is made only of the canonical
spec, integers, planner-made names (``x0``, ``t3``, ``n1``) and dtype names.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import numpy as np

from .codegen import size_names
from .shapes import BoundSpec
from .spec import Spec, ascii_text

BACKENDS = ("numpy", "torch", "jax")


class Fit(NamedTuple):
    """What a module's operands must look like, as text for its docstring and its check.

    Attributes:
        shapes: each operand's shape, each size an integer or a name (``n0``) read at run time.
        output: the output's shape, in the same terms.
        refused: the check's condition on ``s0, s1, ...`` (the operands' shapes) for refusing them.
        returned: the output's shape as the check computes it from ``s0, s1, ...``.
    """

    shapes: tuple[str, ...]
    output: str
    refused: str
    returned: str


def fit(bound: BoundSpec, generic: bool) -> Fit:
    """The shapes a module takes: exactly ``bound``'s, or (``generic``) any with the same
    labels equal and the same dimensions 1 (a size-1 dimension broadcast against a larger one
    is a label of its own there, of size 1)."""
    size = bound.size_of
    terms = bound.spec.inputs
    if not generic:
        shapes = tuple(_text(tuple(str(size[l]) for l in term)) for term in terms)
        wanted = _text(shapes)
        operands = _text(tuple(f"s{k}" for k in range(len(terms))))
        output = _text(tuple(str(size[l]) for l in bound.spec.output))
        return Fit(shapes, output, f"{operands} != {wanted}", output)
    first: dict[str, tuple[int, int]] = {}
    names = {label: name for label, name in size_names(terms).items() if size[label] != 1}
    conditions = [f"len(s{k}) == {len(term)}" for k, term in enumerate(terms)]
    for k, term in enumerate(terms):
        for axis, label in enumerate(term):
            if size[label] == 1:
                conditions.append(f"s{k}[{axis}] == 1")
            elif label in first:
                conditions.append(f"s{k}[{axis}] == s{first[label][0]}[{first[label][1]}]")
            else:
                first[label] = (k, axis)

    def spelled(label: str) -> str:
        return names.get(label, str(size[label]))

    def read(label: str) -> str:
        return f"s{first[label][0]}[{first[label][1]}]" if label in first else str(size[label])

    shapes = tuple(_text(tuple(spelled(l) for l in term)) for term in terms)
    return Fit(shapes, _text(tuple(spelled(l) for l in bound.spec.output)), f"not ({' and '.join(conditions)})",
               _text(tuple(read(l) for l in bound.spec.output)))


def _text(parts: tuple[str, ...]) -> str:
    """A tuple's text from its parts' texts: ``()``, ``(n0,)``, ``(n0, 3)``."""
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


_CHECK = '''

def _check({xs}):
    """The output's shape, after refusing operands whose shapes this module does not take."""
    {ss} = {reads}
    if {refused}:
        raise ValueError("einsum '{spec}' takes operands of shapes {shapes}; got "
                         + ", ".join(str(s) for s in ({ss_tuple})))
    return {returned}
'''

_NUMPY_API = '''

def forward({xs}):
    """The contraction: the same values as numpy.einsum."""
    _check({xs})
    return _forward({xs})[0]


def vjp(g, {xs}):
    """Every operand's gradient, given g = dL/dy, in one shot."""
    _check_cotangent(g, _check({xs}))
    return _vjp(g, {xs})


def forward_saving({xs}):
    """The contraction and what pullback reads: returns (y, saved)."""
    _check({xs})
    y, *saved = _forward_saving({xs})
    return y, tuple(saved){keep_shapes}


def pullback(g, *saved):
    """Every operand's gradient from g and the values forward_saving kept."""
    return {pullback_saved}
'''

_TORCH_API = '''

class EinsumFunction(torch.autograd.Function):
    """The einsum '{spec}' with einsgrad's derived backward: the forward saves what the
    pullback reads; a recorded backward (double backward) runs the vjp from the operands."""

    @staticmethod
    def forward(ctx, {xs}):
        _check({xs})
        y, *saved = _forward_saving({xs})
        ctx.save_for_backward({xs}, *saved)
        return y

    @staticmethod
    def backward(ctx, g):
        {xs}, *saved = ctx.saved_tensors{conjugate_g}
        if torch.is_grad_enabled():
            grads = _vjp(g, {xs})
        else:
            grads = {pullback_saved}
        return tuple(grads){conjugate_grads}


def einsum({xs}):
    """The contraction, differentiable: the same values and gradients as torch.einsum."""
    return EinsumFunction.apply({xs})


def vjp(g, {xs}):
    """Every operand's gradient, given g = dL/dy, in one shot (no conjugation)."""
    _check_cotangent(g, _check({xs}))
    return _vjp(g, {xs})
'''

_JAX_API = '''

@jax.custom_vjp
def einsum({xs}):
    """The contraction, differentiable: the same values and gradients as jnp.einsum."""
    _check({xs})
    return _forward({xs})[0]


def _einsum_forward({xs}):
    _check({xs})
    y, *saved = _forward_saving({xs})
    return y, {residuals}


def _einsum_backward(residuals, g):
    {unpack}
    return tuple({pullback_saved})


einsum.defvjp(_einsum_forward, _einsum_backward)


def vjp(g, {xs}):
    """Every operand's gradient, given g = dL/dy, in one shot."""
    _check_cotangent(g, _check({xs}))
    return _vjp(g, {xs})
'''

_CHECK_COTANGENT = '''

def _check_cotangent(g, shape):
    if tuple(g.shape) != shape:
        raise ValueError("the cotangent g has shape " + str(tuple(g.shape)) + " but the output has "
                         + str(shape))
'''


def module(spec: Spec, bound: BoundSpec, dtypes: Sequence[np.dtype], functions: Sequence[str],
           backend: str, generic: bool, helpers: str) -> str:
    """A standalone module for ``backend``: docstring, helpers, shape check, the four rendered
    functions, and the framework's differentiable function around them.

    Args:
        spec: the canonical spec (labels, ``,``, ``->`` and ``...`` only; non-ASCII labels are
            written as escapes, :func:`einsgrad.spec.ascii_text`).
        bound: the spec bound to the shapes the module takes (a class's representative ones).
        dtypes: the operand dtypes.
        functions: ``_forward``, ``_vjp``, ``_forward_saving`` and ``_pullback``, rendered in
            ``backend``'s dialect; a generic ``_pullback`` takes ``shapes=``.
        backend: ``numpy``, ``torch`` or ``jax``.
        generic: the functions read their sizes at run time.
        helpers: the dialect's helpers (its imports and ``_place``).
    """
    text = ascii_text(str(spec))
    assert re.fullmatch(r"[A-Za-z0-9,.>\\-]*", text), text  # parse() let nothing else through
    assert backend in BACKENDS
    names = [np.dtype(d).name for d in dtypes]
    assert all(name.isidentifier() for name in names), names
    count = len(spec.inputs)
    xs = ", ".join(f"x{i}" for i in range(count))
    ss = ", ".join(f"s{i}" for i in range(count)) + ("," if count == 1 else "")
    shapes = fit(bound, generic)
    check = _CHECK.format(
        xs=xs, ss=ss, ss_tuple=ss if count == 1 else ss + ",", spec=text, shapes=", ".join(shapes.shapes), returned=shapes.returned,
        reads=", ".join(f"tuple(x{i}.shape)" for i in range(count)) + ("," if count == 1 else ""),
        refused=shapes.refused)
    taken = f", shapes=({', '.join(f'x{i}.shape' for i in range(count))}{',' * (count == 1)})"
    complex_ = any(np.dtype(d).kind == "c" for d in dtypes)
    if backend == "numpy":
        api = _NUMPY_API.format(
            xs=xs, keep_shapes=" + (" + taken.partition("=")[2] + ",)" if generic else "",
            pullback_saved="_pullback(g, *saved[:-1], shapes=saved[-1])" if generic else "_pullback(g, *saved)")
    elif backend == "torch":
        api = _TORCH_API.format(
            xs=xs, spec=text, pullback_saved=f"_pullback(g, *saved{taken if generic else ''})",
            conjugate_g=("\n        conjugate = g.is_complex()\n        if conjugate:\n"
                         "            g = g.conj()") if complex_ else "",
            conjugate_grads=(" if not conjugate else tuple(d.conj().resolve_conj() if d.is_complex() "
                             "else d for d in grads)") if complex_ else "")
    else:
        api = _JAX_API.format(  # a generic pullback reads sizes from the operands: they are kept
            xs=xs, pullback_saved=f"_pullback(g, *saved{taken if generic else ''})",
            residuals=f"(({xs},), tuple(saved))" if generic else "tuple(saved)",
            unpack=f"({xs},), saved = residuals" if generic else "saved = residuals")
        helpers = "import jax\n" + helpers
    doc = _docstring(spec, shapes, names, backend, generic)
    sections = [doc, helpers, check, _CHECK_COTANGENT, *functions, api]
    return "\n\n\n".join(section.strip("\n") for section in sections) + "\n"


def _docstring(spec: Spec, shapes: Fit, names: list[str], backend: str, generic: bool) -> str:
    xs = ", ".join(f"x{i}" for i in range(len(spec.inputs)))
    dxs = ", ".join(f"dx{i}" for i in range(len(spec.inputs))) + ("," if len(spec.inputs) == 1 else "")
    if backend == "numpy":
        usage = [(f"y = forward({xs})", ""),
                 (f"{dxs} = vjp(g, {xs})", "g = dL/dy, with y's shape"),
                 (f"y, saved = forward_saving({xs})", "keeps what the backward reads"),
                 (f"{dxs} = pullback(g, *saved)", "twice forward's FLOPs, no recomputation")]
    else:
        usage = [(f"y = einsum({xs})", f"differentiable by {backend}'s autodiff"),
                 (f"{dxs} = vjp(g, {xs})", "g = dL/dy, with y's shape")]
    width = max(len(code) for code, _ in usage)
    usage_text = "\n".join(f"    {code:<{width}}  # {note}" if note else f"    {code}" for code, note in usage)
    arguments = "\n".join(f"    x{k}  operand {k}, subscripts '{ascii_text(''.join(term))}', shape {shape}"
                          for k, (term, shape) in enumerate(zip(spec.inputs, shapes.shapes)))
    if generic:
        takes = ("Sizes are read from the operands at run time: any sizes fit, equal where a name\n"
                 "repeats (and 1 where a size is written 1); other shapes raise ValueError.")
    else:
        takes = "Each function takes exactly these shapes; other shapes raise ValueError."
    convention = ("Complex values: a vjp is the plain contraction of g with the other operands,\n"
                  "without conjugation (JAX's convention)")
    if backend == "torch":
        convention += "; einsum's backward conjugates, as torch.einsum's does."
    else:
        convention += "."
    return f'''"""Forward and gradients of the einsum '{ascii_text(str(spec))}', generated by einsgrad.

Needs {backend} alone. Arguments, output shape {shapes.output}, dtypes {', '.join(names)}:
{arguments}
{takes}

{usage_text}

Each gradient has its operand's shape.
{convention}
"""
'''
