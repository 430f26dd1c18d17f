"""A sliced contraction of dask arrays as one graph: every slice a task, sums as a tree.

Under ``memory_limit`` the slices of a contraction are independent runs of one program, the
chunk's (:mod:`einsgrad.slicing`). On dask arrays they are one graph: each operand is rechunked
once so that its blocks are its slices (a sliced label in chunks of the chunk size, every other
axis whole), each slice is one task that runs the chunk's numpy program on its operands'
blocks, and each result's block (a window along its sliced labels) is the sum of the slices
that write it, added as a tree of fan-in :data:`FAN_IN` inside the graph. A task returns at
most one slice of an operand or one window of a result; its intermediates are the chunk's,
within ``memory_limit``. Building the graph costs a few dictionary entries per slice, where
running the dask dialect's code slice by slice built a graph of every step of every slice
(4,096 slices of a 3x3 grid: minutes). Each task still costs dask's own scheduling (about a
millisecond on a loaded 2-core machine), so slices of microseconds run slower than numpy's
loop over them; slices worth slicing for (a large ``memory_limit``) take far longer than that.

This is source text (the helpers of the code :meth:`einsgrad.Einsum.source` shows for dask
under slicing, run after numpy's helpers and with the chunk's numpy program).
"""

FAN_IN = 16  # slices (or partial sums) added by one task of the tree

HELPERS = '''

import functools
import itertools

import dask.array as da
from dask.highlevelgraph import HighLevelGraph

_FAN_IN = %d


def _sliced(function, token, arrays, axes, outs, grid):
    """One dask array per result of `function` (one slice's numpy program) over every slice.

    `axes`: for each argument, the sliced label (its index in `grid`) of each axis, or -1;
    `outs`: (shape, axes) of each result; `grid`: (size, chunk) of each sliced label.
    """
    counts = [-(-size // chunk) for size, chunk in grid]
    chunk_shapes = [tuple(grid[c][1] if c >= 0 else n for n, c in zip(a.shape, ax)) for a, ax in zip(arrays, axes)]
    # the sliced axes cut first, then the others merged whole: no rechunk task holds more than
    # a block of the operand as given or one of its slices
    blocks = [a.rechunk({i: grid[c][1] for i, c in enumerate(ax) if c >= 0}).rechunk(
        {i: n for i, (n, c) in enumerate(zip(a.shape, ax)) if c < 0}) for a, ax in zip(arrays, axes)]
    dtypes = _result_dtypes(function, chunk_shapes, [a.dtype for a in arrays])
    name = "slice-" + token + "-" + "-".join(b.name for b in blocks)
    layer, windows = {}, list(itertools.product(*[range(n) for n in counts]))
    for k, w in enumerate(windows):
        extent = [min(chunk, size - i * chunk) for i, (size, chunk) in zip(w, grid)]
        crops = tuple(tuple(extent[c] if c >= 0 else n for n, c in zip(shape, ax)) for shape, ax in outs)
        task = functools.partial(_slice, function, chunk_shapes, crops)
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
        chunks = tuple(_sizes(grid[c]) if c >= 0 else (n,) for n, c in zip(shape, ax))
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


def _slice(function, shapes, crops, *parts):
    """One slice: its operands' blocks padded to the chunk's shapes, the program run, each
    result cut back to the slice's window."""
    parts = [p if p.shape == s else _slice_fit(p, s) for p, s in zip(parts, shapes)]
    return tuple(r[tuple(slice(0, d) for d in crop)] for r, crop in zip(function(*parts), crops))


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
''' % FAN_IN
