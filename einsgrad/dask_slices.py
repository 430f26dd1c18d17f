"""A sliced contraction of dask arrays as one graph: tasks of slices, sums as a tree.

Under ``memory_limit`` the slices of a contraction are independent runs of one program, the
chunk's (:mod:`einsgrad.slicing`). On dask arrays they are one graph: each operand is rechunked
once into the windows of the tasks (along its sliced labels; every other axis whole), each task
runs the chunk's numpy program over the slices of its window one after another, adding each
result into its window, and each result's block is the sum of the tasks that write it, added as
a tree of fan-in :data:`FAN_IN` inside the graph. A task takes several slices only while its
windows of every operand and result stay within the budget (the memory limit, or the largest
block of an operand as given) and more than :data:`TASKS` tasks remain; a chunk's
intermediates are within ``memory_limit``. Building the graph costs a few dictionary entries
per task, where running the dask dialect's code slice by slice built a graph of every step of
every slice (4,096 slices of a 3x3 grid: minutes). Each task costs dask's own scheduling too
(about a millisecond on a loaded 2-core machine), which grouping slices into tasks amortizes.

Memory: dask keeps each task's results until every sum that reads them has run, so a graph's
peak can pass numpy's sliced loop's, which adds each slice into the totals in place.

This is source text (the helpers of the code :meth:`einsgrad.Einsum.source` shows for dask
under slicing, run after numpy's helpers and with the chunk's numpy program).
"""

FAN_IN = 16  # slices (or partial sums) added by one task of the tree
TASKS = 64  # tasks a sliced graph keeps at least, where it groups slices (a few per core)

HELPERS = '''

import functools
import itertools

import dask.array as da
from dask.highlevelgraph import HighLevelGraph

_FAN_IN = %d
_TASKS = %d  # a task runs several slices only while more tasks than this remain


def _sliced(function, token, arrays, axes, outs, grid, budget):
    """One dask array per result of `function` (one slice's numpy program) over every slice.

    `axes`: for each argument, the sliced label (its index in `grid`) of each axis, or -1;
    `outs`: (shape, axes) of each result; `grid`: (size, chunk) of each sliced label; `budget`:
    the elements a task may take or return (the memory limit, or the largest block given).
    """
    chunk_shapes = [tuple(grid[c][1] if c >= 0 else n for n, c in zip(a.shape, ax)) for a, ax in zip(arrays, axes)]
    given = max([max(_elements(b) for b in itertools.product(*a.chunks)) for a in arrays if a.size] + [budget])
    spans = _grouped(arrays, axes, outs, grid, given)  # (size, slices' chunks a task takes) by label
    # the sliced axes cut first, then the others merged whole: no rechunk task holds more than
    # a block of the operand as given or a task's window of it
    blocks = [a.rechunk({i: spans[c][1] for i, c in enumerate(ax) if c >= 0}).rechunk(
        {i: n for i, (n, c) in enumerate(zip(a.shape, ax)) if c < 0}) for a, ax in zip(arrays, axes)]
    dtypes = _result_dtypes(function, chunk_shapes, [a.dtype for a in arrays])
    name = "slice-" + token + "-" + "-".join(b.name for b in blocks)
    layer, windows = {}, list(itertools.product(*[range(-(-size // span)) for size, span in spans]))
    for k, w in enumerate(windows):
        extent = [min(span, size - i * span) for i, (size, span) in zip(w, spans)]
        task = functools.partial(_group, function, chunk_shapes, axes, outs, grid, tuple(extent))
        layer[(name, k)] = (task, *[(b.name, *[w[c] if c >= 0 else 0 for c in ax]) for b, ax in zip(blocks, axes)])
    layers, dependencies = {name: layer}, {name: {b.name for b in blocks}}
    for b in blocks:
        layers.update(b.dask.layers)
        dependencies.update(b.dask.dependencies)
    results = []
    for j, ((shape, ax), dtype) in enumerate(zip(outs, dtypes)):
        out = "sliced-" + str(j) + "-" + name
        sums, written = {}, {}
        for k, w in enumerate(windows):
            written.setdefault(tuple(w[c] if c >= 0 else 0 for c in ax), []).append((name, k))
        chunks = tuple(_sizes(spans[c]) if c >= 0 else (n,) for n, c in zip(shape, ax))
        for index in itertools.product(*[range(len(c)) for c in chunks]):
            parts = written.get(index)
            if parts is None:  # a block off the diagonal of a label the result repeats
                block = tuple(c[i] for c, i in zip(chunks, index))
                sums[(out, *index)] = (functools.partial(np.zeros, block, dtype),)
                continue
            pick, level = functools.partial(_summed, j), 0
            while len(parts) > _FAN_IN:
                groups = [parts[i:i + _FAN_IN] for i in range(0, len(parts), _FAN_IN)]
                keys = [(out + "-part", *index, level, g) for g in range(len(groups))]
                sums.update((key, (pick, *group)) for key, group in zip(keys, groups))
                parts, pick, level = keys, functools.partial(_summed, None), level + 1
            sums[(out, *index)] = (pick, *parts)
        graph = HighLevelGraph({**layers, out: sums}, {**dependencies, out: {name}})
        results.append(da.Array(graph, out, chunks, meta=np.empty((0,) * len(shape), dtype)))
    return tuple(results)


def _elements(shape):
    count = 1
    for n in shape:
        count *= n
    return count


def _grouped(arrays, axes, outs, grid, budget):
    """How many of its chunks each sliced label's window of one task spans, as (size, window):
    windows doubled, the label whose task windows stay smallest first, while every operand's
    and result's window stays within `budget` elements and at least _TASKS tasks remain."""
    held = [(a.shape, ax) for a, ax in zip(arrays, axes)] + list(outs)
    counts = [-(-size // chunk) for size, chunk in grid]
    spans = [1] * len(grid)

    def largest(spans):
        return max(_elements([min(n, spans[c] * grid[c][1]) if c >= 0 else n for n, c in zip(shape, ax)])
                   for shape, ax in held)

    def tasks(spans):
        return _elements([-(-n // s) for n, s in zip(counts, spans)])

    while True:
        options = []
        for i, n in enumerate(counts):
            if spans[i] < n:
                wider = spans[:i] + [min(n, 2 * spans[i])] + spans[i + 1:]
                if largest(wider) <= budget and tasks(wider) >= min(_TASKS, tasks(spans)):
                    options.append((largest(wider), i, wider))
        if not options or tasks(spans) <= _TASKS:
            return tuple((size, s * chunk) for (size, chunk), s in zip(grid, spans))
        spans = min(options)[2]


def _group(function, shapes, axes, outs, grid, extent, *blocks):
    """One task: the slices of its window (`extent` of each sliced label) one after another,
    each block sliced and padded to the chunk's `shapes`, each result cut back and added into
    the task's window of it."""
    totals = [None] * len(outs)
    for w in itertools.product(*[range(0, e, chunk) for e, (_, chunk) in zip(extent, grid)]):
        stop = [min(lo + chunk, e) for lo, e, (_, chunk) in zip(w, extent, grid)]
        parts = []
        for b, ax, shape in zip(blocks, axes, shapes):
            while isinstance(b, list):  # (a block of one chunk, as blockwise may hand it)
                b = b[0]
            p = b[tuple(slice(w[c], stop[c]) if c >= 0 else slice(None) for c in ax)]
            parts.append(p if p.shape == shape else _slice_fit(p, shape))
        for j, (r, (shape, ax)) in enumerate(zip(function(*parts), outs)):
            if totals[j] is None:
                totals[j] = np.zeros(tuple(extent[c] if c >= 0 else n for n, c in zip(shape, ax)), r.dtype)
            cut = tuple(slice(0, stop[c] - w[c]) if c >= 0 else slice(None) for c in ax)
            totals[j][tuple(slice(w[c], stop[c]) if c >= 0 else slice(None) for c in ax)] += r[cut]
    return tuple(totals)


def _sizes(cut):
    size, chunk = cut
    return tuple(min(chunk, size - i) for i in range(0, size, chunk))


def _result_dtypes(function, shapes, dtypes):
    """The dtypes of `function`'s results, from one run on zeros (once per function)."""
    found = getattr(function, "result_dtypes", None)
    if found is None:
        found = function.result_dtypes = tuple(
            np.asarray(r).dtype for r in function(*[np.zeros(s, d) for s, d in zip(shapes, dtypes)]))
    return found


def _slice_fit(part, shape):
    """A block padded with zeros to `shape` (a short last chunk)."""
    full = np.zeros(shape, part.dtype)
    full[tuple(slice(0, d) for d in part.shape)] = part
    return full


def _summed(j, *parts):
    """The sum of a node of the tree: of the slices' `j`-th results (None: of partial sums)."""
    total = parts[0] if j is None else parts[0][j]
    for p in parts[1:]:
        total = total + (p if j is None else p[j])
    return total
''' % (FAN_IN, TASKS)
