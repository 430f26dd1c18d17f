"""The generated code of a sliced call: one chunk's program and the loop over the slices.

Under ``memory_limit`` a call runs one compiled program (the chunk's: every chunk has the same
sizes) once per slice of the operands (:mod:`einsgrad.slicing`). That loop is generated code
too, shown by :meth:`einsgrad.Einsum.source` and run as shown: a ``for`` over the slices' start
offsets, each operand sliced (and a short last chunk padded with zeros), the chunk's program
called, and each result added into its window of the total (cut back where it was padded).

Three ways to add the results, one per kind of library:

* in place (numpy, torch, cupy): ``_slice_add`` adds into the window of a total of zeros;
* functional (jax): the same with ``.at[window].add``, which ``jit`` traces;
* a graph (dask): no loop in Python but one dask graph over every slice (``_sliced``, from
  :mod:`einsgrad.dask_slices`): tasks of the chunk's numpy program over windows of slices,
  in one chain per thread, each adding into its chain's running sums in place.

Generated code names its values itself (``a0``, ``s0``...), never by the user's labels: only
integers of the bound spec reach the text.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from . import dask_slices, dialects
from .slicing import Cuts

_IN_PLACE = '''

import itertools


def _slice_fit(part, shape):
    """A slice of an operand padded with zeros to the chunk's `shape` (a short last chunk)."""
    if tuple(part.shape) == shape:
        return part
    full = {zeros_part}
    full[tuple(slice(0, d) for d in part.shape)] = part
    return full


def _slice_add(total, shape, window, value):
    """`value` added into `total[window]`; `total` made first, zeros of `shape`."""
    if total is None:
        total = {zeros_value}
    total[window] += value
    return total
'''

_FUNCTIONAL = '''

import itertools


def _slice_fit(part, shape):
    """A slice of an operand padded with zeros to the chunk's `shape` (a short last chunk)."""
    if tuple(part.shape) == shape:
        return part
    return jnp.zeros(shape, part.dtype).at[tuple(slice(0, d) for d in part.shape)].set(part)


def _slice_add(total, shape, window, value):
    """`value` added into `total[window]`; `total` made first, zeros of `shape`."""
    if total is None:
        total = jnp.zeros(shape, value.dtype)
    return total.at[window].add(value)
'''

_ZEROS = {  # zeros of `shape` like the array `{like}` (its dtype, its device)
    "numpy": "np.zeros(shape, {like}.dtype)",
    "cupy": "cp.zeros(shape, {like}.dtype)",
    "torch": "torch.zeros(shape, dtype={like}.dtype, device={like}.device)",
}


def helpers(dialect: dialects.Dialect) -> str:
    """The helpers that sliced code in ``dialect`` reads: the dialect's and the loop's; for dask
    arrays numpy's (the chunk's program runs on numpy blocks) and the graph's."""
    return chunk_dialect(dialect).helpers + loop_helpers(dialect)


def loop_helpers(dialect: dialects.Dialect) -> str:
    """The loop's helpers alone: what sliced code reads beyond its chunk dialect's, loaded
    among those (:func:`einsgrad.codegen.load`), whose objects it shares (the jax dialect's
    ``accumulation``, which a second copy of them would hide)."""
    if dialect is dialects.DASK:
        return dask_slices.HELPERS
    if dialect is dialects.JAX:
        return _FUNCTIONAL
    zeros = _ZEROS[dialect.name]
    return _IN_PLACE.replace("{zeros_part}", zeros.format(like="part")).replace(
        "{zeros_value}", zeros.format(like="value"))


def chunk_dialect(dialect: dialects.Dialect) -> dialects.Dialect:
    """The dialect of a chunk's program: the call's, but numpy's for dask arrays, whose slices
    are tasks on numpy blocks (:mod:`einsgrad.dask_slices`)."""
    return dialects.NUMPY if dialect is dialects.DASK else dialect


def driver(name: str, chunk: str, chunk_text: str, terms: Sequence[tuple], outs: Sequence[tuple], cuts: Cuts,
           size: dict, graph: bool = False, returns_arguments: bool = False, budget: int = 0) -> str:
    """The function ``name`` that runs the chunk's program ``chunk`` over every slice.

    Args:
        name: the function's name.
        chunk: the chunk's program's name (its text is ``chunk_text``).
        terms: the labels of each argument.
        outs: the labels of each result.
        cuts: (label, chunk size) of each sliced label.
        size: each label's size.
        graph: a dask graph of the slices (else a loop).
        budget: the graph's: elements a task may take or return (the memory limit).
        returns_arguments: the results then the arguments (a sliced ``forward_saving`` keeps
            the operands alone).
    """
    args = [f"a{i}" for i in range(len(terms))]
    cut = {label: i for i, (label, _) in enumerate(cuts)}
    chunk_of = dict(cuts)
    plan = ", ".join(f"{label_note(cuts, i, size)}" for i in range(len(cuts)))
    lines = [f"def {name}({', '.join(args)}):",
             f'    """{chunk} over {_slices(cuts, size):,} slices: {plan}."""']
    kept = "".join(f", {a}" for a in args) if returns_arguments else ""
    if graph:
        axes = tuple(tuple(cut.get(l, -1) for l in labels) for labels in terms)
        results = tuple((tuple(size[l] for l in labels), tuple(cut.get(l, -1) for l in labels)) for labels in outs)
        grid = tuple((size[label], c) for label, c in cuts)
        token = hashlib.sha1(chunk_text.encode()).hexdigest()[:16]
        call = f"_sliced({chunk}, {token!r}, ({', '.join(args)},), {axes!r}, {results!r}, {grid!r}, {budget})"
        lines.append(f"    return (*{call}{kept},)" if kept else f"    return {call}")
        return "\n".join(lines)
    totals = [f"t{j}" for j in range(len(outs))]
    starts = ", ".join(f"s{i}" for i in range(len(cuts)))
    ranges = ", ".join(f"range(0, {size[label]}, {c})" for label, c in cuts)
    lines.append(f"    {' = '.join(totals)} = None")
    lines.append(f"    for {starts}, in itertools.product({ranges}):" if len(cuts) == 1 else
                 f"    for {starts} in itertools.product({ranges}):")
    ends = [f"min(s{i} + {c}, {size[label]})" if size[label] % c else f"s{i} + {c}" for i, (label, c) in enumerate(cuts)]
    lines.append(f"        {', '.join(f'e{i}' for i in range(len(cuts)))} = {', '.join(ends)}")
    parts = []
    for a, labels in zip(args, terms):
        if not any(l in cut for l in labels):
            parts.append(a)
            continue
        part = f"{a}[{', '.join(f's{cut[l]}:e{cut[l]}' if l in cut else ':' for l in labels)}]"
        if any(l in cut and size[l] % chunk_of[l] for l in labels):
            shape = tuple(chunk_of.get(l, size[l]) for l in labels)
            part = f"_slice_fit({part}, {shape!r})"
        parts.append(part)
    lines.append(f"        r = {chunk}({', '.join(parts)})")
    for j, labels in enumerate(outs):
        window = ", ".join(f"slice(s{cut[l]}, e{cut[l]})" if l in cut else "slice(None)" for l in labels)
        value = f"r[{j}]"
        if any(l in cut and size[l] % chunk_of[l] for l in labels):
            value += f"[{', '.join(f':e{cut[l]} - s{cut[l]}' if l in cut else ':' for l in labels)}]"
        shape = tuple(size[l] for l in labels)
        lines.append(f"        t{j} = _slice_add(t{j}, {shape!r}, ({window}{',' if len(labels) == 1 else ''}), {value})")
    lines.append(f"    return ({', '.join(totals)}{kept},)")
    return "\n".join(lines)


def _slices(cuts: Cuts, size: dict) -> int:
    count = 1
    for label, c in cuts:
        count *= -(-size[label] // c)
    return count


def label_note(cuts: Cuts, i: int, size: dict) -> str:
    """How the ``i``-th sliced label is cut, for the driver's docstring (by position: the text
    never holds the user's labels)."""
    label, c = cuts[i]
    n = size[label]
    note = f"s{i} steps {c} of {n}"
    return note + (f" (the last {n % c}, padded)" if n % c else "")
