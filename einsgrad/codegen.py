"""Plan -> Python source that needs numpy alone.

The source is built only from value names the planner made (``x0``, ``t3``, ``dx1``),
integers, and the bound spec of each step in a comment; no user text reaches it. einsgrad runs
this very source, so the code a user reads is the code that runs.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .plan import Copy, Einsum2, Layout, Matmul, Multiply, Plan, Step, Unary

HELPERS = '''\
import numpy as np
from numpy.lib.stride_tricks import as_strided


def _place(z, shape, axes):
    """Zeros of `shape` with z written on the diagonal that `axes` describes."""
    out = np.zeros(shape, dtype=z.dtype)
    view = as_strided(out, shape=tuple(shape[g[0]] for g in axes),
                      strides=tuple(sum(out.strides[i] for i in g) for g in axes))
    view[...] = z
    return out
'''


def _layout(expr: str, layout: Layout, ndim: int) -> str:
    if layout.perm is not None:
        expr += _transpose(layout.perm)
    if layout.shape is not None:
        expr += f".reshape({_tuple(layout.shape)})"
        ndim = len(layout.shape)
    if layout.swap:
        expr += ".T" if ndim == 2 else ".swapaxes(-1, -2)"
    return expr


def _transpose(perm) -> str:
    return ".T" if tuple(perm) == (1, 0) else f".transpose({_tuple(perm)})"


def _tuple(values) -> str:
    values = tuple(int(v) for v in values)
    return repr(values)


def expression(step: Step, ndims: dict[str, int]) -> str:
    """The right-hand side of one step; ``ndims`` gives the rank of every value it reads."""
    op = step.operation
    if isinstance(op, Unary):
        expr = step.args[0]
        for axis1, axis2 in op.diagonal or ():
            expr += f".diagonal(0, {int(axis1)}, {int(axis2)})"
        if op.sum_axes:
            expr += f".sum(axis={_tuple(op.sum_axes)})"
        if op.perm is not None:
            expr += _transpose(op.perm)
        if op.reshape is not None:
            expr = f"np.reshape({expr}, {_tuple(op.reshape)})"
        if op.own:
            expr = f"np.array({expr})"
        if op.broadcast is not None:
            expr = f"np.broadcast_to({expr}, {_tuple(op.broadcast)})"
        if op.place is not None:
            expr = f"_place({expr}, {_tuple(op.shape)}, {op.place!r})"
    elif isinstance(op, Copy):
        expr = f"np.ascontiguousarray({step.args[0]}.transpose({_tuple(op.perm)}))"
    elif isinstance(op, Matmul):
        a, b = step.args
        expr = f"({_layout(a, op.a, ndims[a])} @ {_layout(b, op.b, ndims[b])})"
        if op.shape is not None:
            expr += f".reshape({_tuple(op.shape)})"
    elif isinstance(op, Multiply):
        a, b = step.args
        expr = f"np.multiply({_layout(a, op.a, ndims[a])}, {_layout(b, op.b, ndims[b])})"
    else:
        assert isinstance(op, Einsum2) and op.subscripts.replace(",", "").replace("->", "").isalpha()
        expr = f"np.einsum({op.subscripts!r}, {step.args[0]}, {step.args[1]})"
    if step.perm is not None:
        expr += _transpose(step.perm)
    return expr


def render(plan: Plan, name: str, finish: dict[str, tuple[bool, object]] | None = None) -> str:
    """One Python function for ``plan``; ``finish`` maps a returned value to (copy, dtype):
    copy it (it may alias an argument), cast it (its operand has a narrower dtype)."""
    finish = finish or {}
    ndims = dict(zip(plan.args, plan.arg_ranks))
    ndims.update((step.target, len(step.shape)) for step in plan.steps)
    codes = [f"    {step.target} = {expression(step, ndims)}" for step in plan.steps]
    width = max(map(len, codes), default=0)
    last_use = {name: i for i, step in enumerate(plan.steps) for name in step.args}
    lines = [f"def {name}({', '.join(plan.args)}):"]
    for i, (step, code) in enumerate(zip(plan.steps, codes)):
        comment = f"# {step.spec:<14} {step.flops:>12,} flops  -> {step.shape}"
        lines.append(f"{code:<{width}}  {comment}")
        done = [a for a in dict.fromkeys(step.args)
                if last_use[a] == i and a not in plan.args and a not in plan.returns]
        if done:  # free intermediates as soon as nothing reads them: the peak memory drops
            lines.append(f"    del {', '.join(done)}")
    results = []
    for value in plan.returns:
        copy, dtype = finish.get(value, (False, None))
        expr = value
        if dtype is not None:
            dtype = np.dtype(dtype)
            assert dtype.kind in "biufc"
            expr = f"{expr}.real" if dtype.kind != "c" else expr
            expr = f"np.array({expr}, dtype=np.{dtype.name})"  # a copy: .real is a view
        elif copy:
            expr = f"np.array({expr})"
        results.append(expr)
    lines.append(f"    return ({''.join(r + ', ' for r in results).rstrip()})")
    return "\n".join(lines) + "\n"


_MODULE_API = '''

def forward({xs}):
    """The contraction: the same values as numpy.einsum."""
    return _forward({xs})[0]


def vjp(g, {xs}):
    """Every operand's gradient, given g = dL/dy, in one shot."""
    return _vjp(g, {xs})


def forward_saving({xs}):
    """The contraction and what pullback reads: returns (y, saved)."""
    y, *saved = _forward_saving({xs})
    return y, tuple(saved)


def pullback(g, *saved):
    """Every operand's gradient from g and the values forward_saving kept."""
    return _pullback(g, *saved)
'''


def module(spec: str, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype],
           output_shape: tuple[int, ...], functions: Sequence[str]) -> str:
    """A standalone module: a docstring naming the spec, shapes and functions, the helpers,
    the rendered ``_forward``, ``_vjp``, ``_forward_saving`` and ``_pullback``, and the
    public functions around them.

    Args:
        spec: the canonical spec text (letters, ``,``, ``->`` and ``...`` only).
        shapes: the operand shapes.
        dtypes: the operand dtypes.
        output_shape: the forward's output shape.
        functions: the four rendered functions, in that order.
    """
    assert re.fullmatch(r"[A-Za-z,.>-]*", spec), spec  # parse() let nothing else through
    names = [np.dtype(d).name for d in dtypes]
    assert all(name.isidentifier() for name in names), names
    xs = ", ".join(f"x{i}" for i in range(len(shapes)))
    dxs = ", ".join(f"dx{i}" for i in range(len(shapes))) + ("," if len(shapes) == 1 else "")
    usage = [(f"y = forward({xs})", ""),
             (f"{dxs} = vjp(g, {xs})", "g = dL/dy, with y's shape"),
             (f"y, saved = forward_saving({xs})", "keeps what the backward reads"),
             (f"{dxs} = pullback(g, *saved)", "twice forward's FLOPs, no recomputation")]
    width = max(len(code) for code, _ in usage)
    usage_text = "\n".join(f"    {code:<{width}}  # {note}" if note else f"    {code}"
                            for code, note in usage)
    doc = f'''"""Forward and gradients of the einsum '{spec}', generated by einsgrad.

Operand shapes {', '.join(_tuple(s) for s in shapes)}; dtypes {', '.join(names)}; output shape {_tuple(output_shape)}.
Needs numpy alone. Each function takes exactly these shapes:

{usage_text}

Each gradient has its operand's shape. Complex values: a gradient is the plain contraction
of g with the other operands, without conjugation (JAX's convention).
"""
'''
    return "\n".join([doc, HELPERS, "", "\n\n".join(functions), _MODULE_API.format(xs=xs).rstrip("\n") + "\n"])


def load(source: str) -> dict:
    """Executes generated source (helpers included) and returns its namespace."""
    namespace: dict = {}
    exec(compile(HELPERS + "\n\n" + source, "<einsgrad>", "exec"), namespace)
    return namespace
