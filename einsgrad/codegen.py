"""Plan -> Python source, in the dialect of one array library.

The source is built only from value names the planner made (``x0``, ``t3``, ``dx1``),
integers, and the bound spec of each step in a comment (non-ASCII labels escaped,
:func:`einsgrad.spec.ascii_text`); no user text reaches it. einsgrad runs
this very source, so the code a user reads is the code that runs.

One plan is spelled in the dialect of the library it runs on
(:class:`einsgrad.dialects.Dialect`: numpy by default, torch, jax, dask, cupy).

A plan is written with its reshape and broadcast sizes as integers (exact-shape code, for the
shapes it was planned for) or, shape-generic, as products of sizes read once from the
arguments' ``.shape`` at the top of the function (:class:`Sizes`): then one function serves
every shape of the plan's shape class (:func:`einsgrad.shapes.shape_class`).
"""

from __future__ import annotations

import functools
from dataclasses import replace

from . import dot_pairs, fused_copies, gathers, scalars
from .dialects import NUMPY, Dialect
from .spec import ascii_text
from .steps import Add, Copy, Dims, Einsum2, Layout, Matmul, Multiply, Plan, Regroup, Step, Unary, tuple_text


class Sizes:
    """How shape-generic code spells sizes: each label's size as a name (:func:`size_names`)
    read once from the first argument that holds the label, in argument order, else (a
    pullback, whose arguments may have lost a label the operands had) from the parameter
    ``shapes``, the operands' shapes; a label no operand holds (one only the output has, of a
    size fixed by ``sizes=``) as its integer.

    Rendering notes which names it used, so that :meth:`header` reads only those.
    """

    def __init__(self, plan: Plan, operands: tuple[tuple[str, ...], ...], shapes: bool):
        self.source: dict[str, tuple[str, int]] = {}  # label -> (a shape's expression, axis)
        known = {f"x{k}": term for k, term in enumerate(operands)}  # the planner's operand names
        for step in plan.steps:
            known.update((a, labels) for a, labels in zip(step.args, step.inputs) if a not in known)
        self.ranks: dict[str, int] = {}  # a shape's expression -> its length
        for arg in plan.args:
            self.ranks[f"{arg}.shape"] = len(known.get(arg, ()))
            for axis, label in enumerate(known.get(arg, ())):
                self.source.setdefault(label, (f"{arg}.shape", axis))
        held = {label for term in operands for label in term}
        for k, term in enumerate(operands):
            self.ranks[f"shapes[{k}]"] = len(term)
            for axis, label in enumerate(term):
                if label not in self.source and shapes:
                    self.source[label] = (f"shapes[{k}]", axis)
        self.names = {label: name for label, name in size_names(operands).items() if label in self.source}
        self.fixed = {l: n for step in plan.steps for l, n in zip(step.labels, step.shape) if l not in held}
        self.used: set[str] = set()

    def size(self, label: str) -> str:
        if label not in self.names:
            return str(int(self.fixed[label]))  # a KeyError: no operand's size was at hand
        self.used.add(label)
        return self.names[label]

    def shape(self, dims: Dims) -> str:
        """A tuple expression of the sizes of ``dims``."""
        parts = [" * ".join(self.size(l) for l in group) or "1" for group in dims]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"  # () for none

    def header(self) -> list[str]:
        """Lines reading the used sizes, one unpacking of each shape: ``n0, _, n2 = x0.shape``
        (torch makes a new ``torch.Size`` each time ``.shape`` is read: once is enough)."""
        lines: dict[str, list[str]] = {}
        for label, (arg, axis) in self.source.items():  # arg: x0.shape, or shapes[0]
            if label in self.used:
                lines.setdefault(arg, ["_"] * self.ranks[arg])[axis] = self.names[label]
        return [f"    {', '.join(names)}{',' * (len(names) == 1)} = {arg}" for arg, names in lines.items()]


def size_names(operands: tuple[tuple[str, ...], ...]) -> dict[str, str]:
    """The name of each operand label's size in shape-generic code: ``n0``, ``n1``... in order
    of first appearance, so that every function of a signature, and a module's docstring,
    call one size by one name."""
    return {label: f"n{i}" for i, label in enumerate(dict.fromkeys(l for term in operands for l in term))}


def _shape(shape, dims: Dims | None, sizes: Sizes | None) -> str:
    """A shape as integers, or (shape-generic code) as sizes read at run time."""
    if sizes is None:
        return tuple_text(shape)
    assert dims is not None and len(dims) == len(shape)
    return sizes.shape(dims)


def _layout(expr: str, layout: Layout, ndim: int, dialect: Dialect, sizes: Sizes | None = None,
            labels: tuple[str, ...] = (), gathering: gathers.Gathers | None = None) -> str:
    """``expr`` (a value of ``labels``) read as ``layout`` says; by a gather where ``gathering``
    makes one (a small transposed copy: :mod:`einsgrad.gathers`)."""
    if gathering is not None and layout.perm is not None and layout.shape is not None:
        gathered = gathering.read(expr, labels, layout.perm, layout.shape, layout.swap)
        if gathered is not None:
            return gathered
    if layout.perm is not None:
        expr += _transpose(layout.perm, dialect)
    if layout.shape is not None:
        expr += f".reshape({_shape(layout.shape, layout.dims, sizes)})"
        ndim = len(layout.shape)
    if layout.swap:
        expr = expr + ".T" if ndim == 2 else dialect.swap.format(x=expr)
    return expr


def _product(a: tuple[str, Layout], b: tuple[str, Layout], ndims: dict[str, int], dialect: Dialect,
             sizes: Sizes | None, inputs: tuple = ((), ()), gathering: gathers.Gathers | None = None) -> str:
    """The GEMM of two sides, each (value, how it is read; ``inputs``: their labels):
    ``dialect.gemm`` where both are read as matrices or both as batches of them (of one batch
    size: see :class:`Dialect`), else ``@``."""
    ranks = {len(layout.shape) if layout.shape is not None else ndims[name] for name, layout in (a, b)}
    left, right = (_layout(name, layout, ndims[name], dialect, sizes, labels, gathering)
                   for (name, layout), labels in zip((a, b), inputs))
    gemm = dialect.gemm[ranks.pop() - 2] if dialect.gemm is not None and len(ranks) == 1 and ranks <= {2, 3} else None
    return f"({left} @ {right})" if gemm is None else gemm.format(a=left, b=right)


def _transposes_product(step: Step, op: Matmul, ndims: dict[str, int], args: tuple[str, ...]) -> bool:
    """Whether the step is ``(a @ b)``, perhaps its batch axis split by a reshape, then its
    last two axes swapped, both sides matrices or batches of them: then it equals
    ``b^T @ a^T`` (reshaped alike), computed in the step's order with no transposed copy."""
    n = len(op.shape) if op.shape is not None else len(step.perm or ())
    if n < 2 or step.perm != tuple(range(n - 2)) + (n - 1, n - 2):
        return False
    if not all(len(layout.shape) >= 2 if layout.shape is not None else ndims[name] >= 2
               for name, layout in zip(args, (op.a, op.b))):
        return False
    if op.shape is None:
        return True
    # the reshape may split the batch only: the product's rows and columns are its last two axes
    return op.dims is not None and op.dims[-2:] == (_side(op.a, step.inputs[0], rows=True),
                                                    _side(op.b, step.inputs[1], rows=False))


def _side(layout: Layout, labels: tuple[str, ...], rows: bool) -> tuple[str, ...] | None:
    """The labels of a GEMM operand's rows (``rows``) or columns, as it is read; None where
    its layout does not say (transposed, not reshaped)."""
    if layout.shape is None:
        if layout.perm is not None:
            return None
        dims = tuple((l,) for l in labels)  # read as stored
    elif layout.dims is None:
        return None
    else:
        dims = layout.dims
    return dims[-1] if rows == layout.swap else dims[-2]  # a swapped side is stored (cols, rows)


def _dot_by_sum(subscripts: str, a: str, b: str, dialect: Dialect) -> str:
    """A batched dot product (both operands hold the same labels) as a product and a sum:
    torch runs ``einsum("ab,ab->b")`` as a batch of 1 x n x 1 matrix products, 100x slower."""
    inputs, out = subscripts.split("->")
    sa, sb = inputs.split(",")
    perm = tuple(sb.index(c) for c in sa)
    if perm != tuple(range(len(sb))):
        b += _transpose(perm, dialect)
    summed = tuple(i for i, c in enumerate(sa) if c not in out)
    expr = dialect.sum.format(x=f"{dialect.xp}.multiply({a}, {b})", axis=dialect.axis, axes=tuple_text(summed))
    kept = [c for c in sa if c in out]
    order = tuple(kept.index(c) for c in out)
    return expr + (_transpose(order, dialect) if order != tuple(range(len(out))) else "")


def _transpose(perm, dialect: Dialect) -> str:
    return ".T" if tuple(perm) == (1, 0) else f".{dialect.permute}({tuple_text(perm)})"


def expression(step: Step, ndims: dict[str, int], dialect: Dialect = NUMPY, sizes: Sizes | None = None,
               args: tuple[str, ...] | None = None, strided: bool = False,
               gathering: gathers.Gathers | None = None) -> str:
    """The right-hand side of one step; ``ndims`` gives the rank of every value it reads;
    ``sizes`` (shape-generic code) spells the sizes it reshapes and broadcasts to; ``args``
    names the values it reads in the text, in place of the step's own names (a step table's
    kernel reads them from slots); ``strided``: the result is returned as it is, a view in
    any layout (no product is reordered to make it contiguous); ``gathering``: small
    transposed copies are made by gathers it names (:mod:`einsgrad.gathers`)."""
    op, xp = step.operation, dialect.xp
    args = step.args if args is None else args
    if isinstance(op, Unary):
        expr = args[0]
        for axis1, axis2 in op.diagonal or ():
            expr = dialect.diagonal.format(x=expr, a=int(axis1), b=int(axis2))
        if op.sum_axes:
            expr = dialect.sum.format(x=expr, axis=dialect.axis, axes=tuple_text(op.sum_axes))
        if op.perm is not None:
            expr += _transpose(op.perm, dialect)
        if op.reshape is not None:
            expr = f"{xp}.reshape({expr}, {_shape(op.reshape, op.reshape_dims, sizes)})"
        if op.own and dialect.copy is not None:
            expr = dialect.copy.format(x=expr)
        if op.broadcast is not None:
            expr = dialect.broadcast.format(x=expr, xp=xp, shape=_shape(op.broadcast, op.broadcast_dims, sizes))
        if op.place is not None:
            labels = tuple((l,) for l in step.labels)
            expr = f"_place({expr}, {_shape(op.shape, labels, sizes)}, {op.place!r})"
    elif dialect.dot_general and isinstance(op, dot_pairs.PAIRS):
        expr, perm = dot_pairs.pair_by_dot(step, args, dialect.jnp_pairs)
        return expr if perm is None else expr + _transpose(perm, dialect)
    elif isinstance(op, Regroup):  # a dot_general reads the operand as stored: no reshape
        x = args[0]
        expr = x if dialect.dot_general else f"{x}.reshape({_shape(op.shape, op.dims, sizes)}).reshape({x}.shape)"
    elif isinstance(op, Copy):
        gathered = None if gathering is None else gathering.read(args[0], step.inputs[0], op.perm, op.shape)
        expr = f"{args[0]}.{dialect.permute}({tuple_text(op.perm)})"
        if gathered is not None:
            expr = gathered
        elif op.shape is None:
            expr = dialect.contiguous.format(x=expr)
        else:  # numpy's reshape of a transposed array is one C-ordered copy
            expr += f".reshape({_shape(op.shape, op.dims, sizes)})"
    elif isinstance(op, Matmul):
        a, b = args
        if dialect.products_in_order and not strided and _transposes_product(step, op, ndims, args):
            expr = _product((b, replace(op.b, swap=not op.b.swap)), (a, replace(op.a, swap=not op.a.swap)),
                            ndims, dialect, sizes)
            if op.shape is None:
                return expr
            shape = op.shape[:-2] + (op.shape[-1], op.shape[-2])
            return expr + f".reshape({_shape(shape, op.dims[:-2] + (op.dims[-1], op.dims[-2]), sizes)})"
        expr = _product((a, op.a), (b, op.b), ndims, dialect, sizes, step.inputs or ((), ()), gathering)
        if op.shape is not None:
            expr += f".reshape({_shape(op.shape, op.dims, sizes)})"
    elif isinstance(op, Multiply):
        a, b = args
        left, right = (_layout(name, layout, ndims[name], dialect, sizes, labels, gathering)
                       for name, layout, labels in zip((a, b), (op.a, op.b), step.inputs or ((), ())))
        expr = f"{xp}.multiply({left}, {right})"
    elif isinstance(op, Add):
        expr = f"({args[0]} + {args[1]})"
    else:
        assert isinstance(op, Einsum2) and op.subscripts.replace(",", "").replace("->", "").isalpha()
        if dialect.dot_by_sum:
            expr = _dot_by_sum(op.subscripts, *args, dialect)
        else:
            expr = f"{xp}.einsum({op.subscripts!r}, {args[0]}, {args[1]})"
    if step.perm is not None:
        expr += _transpose(step.perm, dialect)
    return expr


def render(plan: Plan, name: str, finish: dict[str, tuple[bool, object]] | None = None,
           dialect: Dialect = NUMPY, casts: dict | None = None,
           operands: tuple[tuple[str, ...], ...] | None = None, shapes: bool = False,
           size_of: dict[str, int] | None = None) -> str:
    """One Python function for ``plan`` in ``dialect``; ``finish`` maps a returned value to
    (copy, dtype): copy it (it may alias an argument), cast it (its operand has a narrower
    dtype). A real dtype takes the real part first. ``casts`` maps an argument to the dtype
    it is cast to before the first step (mixed dtypes compute in the common one).
    Given ``operands`` (the bound operands' labels) the code is shape-generic: sizes are read
    from the arguments at run time (:class:`Sizes`), and each line's comment shows its
    result's shape in those sizes instead of its FLOPs. ``shapes``: the function takes the
    operands' shapes as the keyword ``shapes``, for sizes its other arguments lack (a
    generic pullback's). ``size_of``, the size of every label of exact-shape code, lets a
    dialect that gathers make small transposed copies so (:mod:`einsgrad.gathers`)."""
    finish = finish or {}
    if dialect.jnp_pairs:
        plan = dot_pairs.read_through_copies(plan)
    if dialect.folds_copies:
        plan = fused_copies.shaped(fused_copies.fused(plan))
    ndims = dict(zip(plan.args, plan.arg_ranks))
    ndims.update((step.target, len(step.shape)) for step in plan.steps)
    sizes = None if operands is None else Sizes(plan, operands, shapes)
    strided = set(plan.returns) - set(finish) if dialect.result is not None else set()  # returned as they are
    gathering = None
    if dialect.gathers and sizes is None and size_of is not None:
        gathering = gathers.Gathers(name, size_of, gathers.contiguous(plan))
        plan = gathers.unreshaped(plan, gathering)
    codes = [f"    {step.target} = "
             f"{expression(step, ndims, dialect, sizes, strided=step.target in strided, gathering=gathering)}"
             for step in plan.steps]
    width = max(map(len, codes), default=0)
    last_use = {name: i for i, step in enumerate(plan.steps) for name in step.args}
    lines = [f"def {name}({', '.join(plan.args + ('*', 'shapes') * shapes)}):"]
    lines += [cast_line(arg, dtype, dialect) for arg, dtype in (casts or {}).items()]
    if sizes is not None:
        lines += sizes.header()  # before the comments: the names they show need not be read
        comments = [f"# {ascii_text(step.spec):<14} -> {sizes.shape(tuple((l,) for l in step.labels))}"
                    for step in plan.steps]
    else:
        comments = [f"# {ascii_text(step.spec):<14} {step.flops:>12,} flops  -> {step.shape}"
                    for step in plan.steps]
    kept = set(plan.args) | set(plan.returns)
    for i, (step, code, comment) in enumerate(zip(plan.steps, codes, comments)):
        lines.append(f"{code:<{width}}  {comment}")
        done = [a for a in dict.fromkeys(step.args) if last_use[a] == i and a not in kept]
        if done:  # free intermediates as soon as nothing reads them: the peak memory drops
            lines.append(f"    del {', '.join(done)}")
    results = [finished(value, value, finish, dialect) for value in plan.returns]
    lines.append(f"    return ({''.join(r + ', ' for r in results).rstrip()})")
    if gathering is not None and gathering.names:
        lines = gathering.lines() + ["", ""] + lines
    return "\n".join(lines) + "\n"


def cast_line(arg: str, dtype, dialect: Dialect) -> str:
    """The line casting the argument ``arg`` to ``dtype`` on entry."""
    return f"    {arg} = {dialect.cast.format(x=arg, xp=dialect.xp, dtype=_dtype_name(dtype))}"


def finished(expr: str, value: str, finish: dict[str, tuple[bool, object]], dialect: Dialect) -> str:
    """``expr`` (the returned value ``value``) as it is returned: cast, copied or made as the
    library returns its results, as ``finish`` says (see :func:`render`)."""
    copy, dtype = finish.get(value, (False, None))
    if dtype is not None:
        kind = scalars.kind(dtype)
        assert kind in "biufc"
        expr = f"{expr}.real" if kind != "c" else expr
        return dialect.cast.format(x=expr, xp=dialect.xp, dtype=_dtype_name(dtype))  # numpy: a copy
    if copy and dialect.copy is not None:
        return dialect.copy.format(x=expr)
    if value in finish and dialect.result is not None:
        return dialect.result.format(x=expr)
    return expr


def _dtype_name(dtype) -> str:
    text = scalars.name(dtype)
    assert text.isidentifier(), text  # a scalar type's own name, never user text
    return text


def load(source: str, dialect: Dialect = NUMPY) -> dict:
    """Executes generated source after the dialect's helpers and returns its namespace (the
    helpers, run once per dialect, then ``source`` in a copy of their namespace: the same
    as running both, as :meth:`einsgrad.Einsum.source` shows them, without compiling the
    helpers for every function)."""
    namespace = dict(_helpers(dialect.helpers))
    exec(compile(source, "<einsgrad>", "exec"), namespace)
    return namespace


def helper(dialect: Dialect, name: str):
    """The object the dialect's helpers call ``name``: the one every function loaded in it
    reads (the jax dialect's ``accumulation``, which :mod:`einsgrad.jax` sets)."""
    return _helpers(dialect.helpers)[name]


@functools.cache
def _helpers(helpers: str) -> dict:
    """The namespace of a dialect's helpers, once per text (never mutated: copied), so that
    dialects that share their helpers share their objects."""
    namespace: dict = {}
    exec(compile(helpers, "<einsgrad helpers>", "exec"), namespace)
    return namespace
