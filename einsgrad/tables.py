"""Large plan -> a compact Python function: a loop over a table of steps.

Straight-line code (:func:`einsgrad.codegen.render`) writes one line per step, and Python
compiles about 10 µs of source per line: a network of a thousand tensors has some 7,000 steps
over its forward, vjp, forward-saving and pullback functions, whose source would take longer
to compile than the path search takes to find the tree. Past :data:`TABLE_STEPS` steps, a
function is written instead as:

* its kernels: one ``lambda`` per distinct step expression, each step's own code
  (:func:`einsgrad.codegen.expression`) reading its operands' slots in the list of values
  ``v`` and its integers from the row's parameters ``p``, so a chain of a thousand GEMMs has
  a handful of kernels;
* its step table, one row per step as JSON in one string (fast to compile and to read):
  ``[kernel, result slot, slots freed after it, [argument slots..., integers...]]``;
* a loop that runs the rows over a list of values ``v`` (the arguments first, named in a
  comment: a thousand named parameters take longer to compile than the table), freeing each
  intermediate after its last use as the straight-line code's ``del`` does.

Every number in the table comes from the plan; no user text reaches the source. The source is
what runs: :func:`einsgrad.codegen.load` compiles this text.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from . import codegen, dialects, dot_pairs, fused_copies
from .dialects import Dialect
from .steps import Copy, Plan, Step

TABLE_STEPS = 512
"""More steps than this: a loop over a step table (see the module). A row costs about 0.2 µs
more to run than a line of straight-line code (the kernel call, its integers read from the
row), a line about 10 µs more to compile than a row, so a function of a few hundred steps,
called a few hundred times, runs faster as lines: a 3-regular graph of 60 tensors' vjp (363
steps) 0.80x the table's time, a 51-matrix chain's (149) 0.70x, compiled in the same time
(grid 10x10 1.2x: its forward, forward-saving and pullback become lines). Networks of
a thousand tensors have 1,000-7,000 steps per function: tables."""


def tabled(plan: Plan, dialect: Dialect) -> bool:
    """Whether ``plan`` is written as a step table: its straight-line code would have more than
    :data:`TABLE_STEPS` lines (in a dialect that folds small copies into their reads, counted
    after folding: :mod:`einsgrad.fused_copies`; a fold removes at most two copies a step)."""
    count = len(plan.steps)
    if count <= TABLE_STEPS or not dialect.folds_copies or count > 3 * TABLE_STEPS:
        return count > TABLE_STEPS
    if count - sum([type(step.operation) is Copy for step in plan.steps]) > TABLE_STEPS:
        return True  # folds remove copies alone: more steps than that stay, whatever is folded
    return count - sum(map(len, fused_copies.folds(plan).values())) > TABLE_STEPS


_COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)  # a step table's rows: ints, no spaces
_INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.])")  # an integer literal, not part of a name
_SLOTS = ("a", "b")  # a kernel's parameters: the slots of its operands in the values ``v``
_OPERANDS = tuple(f"v[{s}]" for s in _SLOTS)  # how a kernel reads its operands


class Kernels:
    """Each step's kernel template and integers, made once per operation, dialect and ranks
    of the values it reads: the functions of one signature share their steps (the forward's
    are in the forward, the vjp and the forward-saving; the forward-saving and the pullback
    rename some steps' arguments, keeping their operations), and steps of one lowering
    pattern share operations, so rendering them all costs each operation once. Steps of one
    expression (a chain's thousand GEMMs are a handful) share its template, split off its
    integers once."""

    def __init__(self):
        self.steps: dict[str, dict[int, tuple]] = {}  # dialect -> id of a step -> (step, (kernel, integers))
        self.found: dict[tuple, tuple] = {}  # (id of an operation, perm, ranks, dialect) -> (it, (kernel, integers))
        self.templates: dict[str, tuple[str, list[int]]] = {}  # expression text -> (kernel, integers)

    def of(self, step: Step, ndims: dict[str, int], dialect: Dialect) -> tuple[str, list[int]]:
        """The kernel (a ``lambda`` text) and the integers it is called with for ``step``;
        ``ndims`` has the rank of every value it reads."""
        return self.every((step,), ndims, dialect)[0]

    def every(self, steps, ndims: dict[str, int], dialect: Dialect) -> list[tuple[str, list[int]]]:
        """:meth:`of` of each of ``steps``, in one loop (a table renders thousands)."""
        seen = self.steps.get(dialect.name)
        if seen is None:
            seen = self.steps[dialect.name] = {}
        found, known = [], seen.get
        for step in steps:
            entry = known(id(step))
            if entry is None or entry[0] is not step:  # else a step of the forward, in its third function
                entry = seen[id(step)] = (step, self._made(step, ndims, dialect))
            found.append(entry[1])
        return found

    def _made(self, step: Step, ndims: dict[str, int], dialect: Dialect) -> tuple[str, list[int]]:
        """:meth:`of` for a step not seen in ``dialect`` before."""
        op, args = step.kernel or step.operation, step.args
        ranks = tuple(map(ndims.__getitem__, args))
        # The steps holding (or naming as their kernel) one operation are one step with its
        # arguments renamed, or steps of one lowering pattern (einsgrad.lowering.Pattern),
        # relabelled: their expressions are one text (an expression reads labels by position
        # only; jnp.einsum's spelling reads their sorted order too). The operation is kept
        # alive with its entry, so that its id is no other's.
        key = (id(op), step.perm, ranks, dialect.name,
               dot_pairs.label_order(step) if dialect.jnp_pairs and len(step.inputs) == 2 else None)
        found = self.found.get(key)
        if found is None or found[0] is not op:
            operands = _OPERANDS[:len(args)]
            text = codegen.expression(step, dict(zip(operands, ranks)), dialect, args=operands)
            kernel = self.templates.get(text)
            if kernel is None:
                kernel = self.templates[text] = _templated(text, len(operands))
            found = self.found[key] = (op, kernel)
        return found[1]


def _templated(text: str, count: int) -> tuple[str, list[int]]:
    """An expression reading ``count`` slots as a ``lambda`` of the values ``v`` and one tuple
    ``p`` (the slots, then the expression's integers), and those integers. One tuple, not
    a parameter each: a call spreading a row's dozen parameters (``f(v, *row)``) costs
    CPython a new interpreter frame and an argument tuple, a call of two it runs inline."""
    integers = [int(n) for n in _INTEGER.findall(text)]
    numbered = iter(range(count, count + len(integers)))
    template = _INTEGER.sub(lambda _: f"p[{next(numbered)}]", text)
    for k, operand in enumerate(_OPERANDS[:count]):
        template = template.replace(operand, f"v[p[{k}]]")
    return f"lambda v, p: {template}", integers


class Slotted(NamedTuple):
    """A plan laid out as a step table: each value's slot (arguments first, then each step's
    result), each value's rank, and the slots no later step reads, freed after each step."""

    slots: dict[str, int]
    ndims: dict[str, int]
    freed: tuple[tuple[int, ...], ...]


def slotted(plan: Plan) -> Slotted:
    """``plan``'s :class:`Slotted` layout (the arguments and returns are never freed). One
    pass over the steps: each value's slot and rank, and the step that reads it last, which
    frees it (after the others it frees, in the order the step reads them)."""
    args, steps = plan.args, plan.steps
    targets = [step.target for step in steps]
    slots = dict(zip(dict.fromkeys([*args, *targets]), range(len(args) + len(targets))))  # made twice: its first
    ndims = dict(zip(args, plan.arg_ranks))
    ndims.update(zip(targets, [len(step.shape) for step in steps]))
    last_use = {arg: i for i, step in enumerate(steps) for arg in step.args}  # each value's last reader
    kept = set(args).union(plan.returns)
    freed: list[tuple[int, ...]] = [()] * len(steps)
    several = []  # the steps that free more than one value
    for arg, i in last_use.items():
        if arg not in kept:
            if freed[i]:
                several.append(i)
            freed[i] += (slots[arg],)
    for i in several:  # found in order of first use: put them in the step's order
        slots_freed = freed[i]
        freed[i] = tuple(slots[a] for a in dict.fromkeys(steps[i].args) if slots[a] in slots_freed)
    return Slotted(slots, ndims, tuple(freed))


def render(plan: Plan, name: str, finish: dict | None = None, dialect: Dialect = dialects.NUMPY,
           casts: dict | None = None, kernels_of: Kernels | None = None) -> str:
    """One Python function for ``plan`` as a loop over its step table, with the arguments of
    :func:`einsgrad.codegen.render` (exact-shape code only); ``kernels_of`` keeps the steps'
    kernels for the other functions of the signature."""
    finish = finish or {}
    kernels_of = kernels_of or Kernels()
    slots, ndims, freed = slotted(plan)
    kernels: dict[str, int] = {}
    rows = []
    slot, index = slots.__getitem__, kernels.get
    for step, gone, (template, integers) in zip(plan.steps, freed, kernels_of.every(plan.steps, ndims, dialect)):
        kernel = index(template)
        if kernel is None:
            kernel = kernels[template] = len(kernels)
        rows.append([kernel, slot(step.target), list(gone), [*map(slot, step.args), *integers]])
    returns = []
    for value in plan.returns:
        expr = codegen.finished("v[a]", value, finish, dialect)
        returns.append([slots[value], -1 if expr == "v[a]" else kernels.setdefault(f"lambda v, a: {expr}", len(kernels))])
    kernels_name, steps_name, returns_name = f"_kernels_{name}", f"_steps_{name}", f"_returns_{name}"
    lines = ["import json", "", f"{kernels_name} = ("]
    lines += [f"    {kernel}," for kernel in kernels]
    lines += [")", "# a step: [kernel, result slot, slots freed after it, [argument slots..., integers...]]",
              f'{steps_name} = json.loads("""[']
    # Compact JSON, made in one call and a row a line: "]],[" ends a row and nothing else (a
    # row's last list closes it; its freed list is followed by ",[").
    lines.append(_COMPACT.encode(rows)[1:-1].replace("]],[", "]],\n["))
    lines += [']""")', f"{returns_name} = json.loads({json.dumps(json.dumps(returns, separators=(',', ':')))})",
              "", "", f"def {name}(*arguments):",
              f"    # {', '.join(plan.args)}",  # a comment: compiling 1000 named parameters takes 15 ms
              f"    if len(arguments) != {len(plan.args)}:",
              f"        raise TypeError(f'{name}() takes {len(plan.args)} arguments, got {{len(arguments)}}')",
              f"    v = [*arguments] + [None] * {len(slots) - len(plan.args)}"]
    lines += [codegen.cast_line(f"v[{slots[arg]}]", dtype, dialect) for arg, dtype in (casts or {}).items()]
    lines += [f"    for kernel, out, freed, parameters in {steps_name}:",
              f"        v[out] = {kernels_name}[kernel](v, parameters)",
              "        for f in freed:",
              "            v[f] = None",
              f"    return tuple([v[s] if k < 0 else {kernels_name}[k](v, s) for s, k in {returns_name}])"]
    return "\n".join(lines) + "\n"
