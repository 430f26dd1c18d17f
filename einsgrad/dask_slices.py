"""A sliced contraction of dask arrays as one graph: chains of tasks of slices, running sums.

Under ``memory_limit`` the slices of a contraction are independent runs of one program, the
chunk's (:mod:`einsgrad.slicing`). On dask arrays they are one graph: each operand is rechunked
once into the windows of the tasks (along its sliced labels; every other axis whole), and each
task runs the chunk's numpy program over the slices of its window one after another, adding
each result into its window. A task takes several slices only while its windows of every
operand and result stay within the budget (the memory limit, or the largest block of an
operand as given) and more than :data:`TASKS` tasks remain; a chunk's intermediates are within
``memory_limit``. Building the graph costs a few dictionary entries per task, where running
the dask dialect's code slice by slice built a graph of every step of every slice (4,096
slices of a 3x3 grid: minutes).

Memory: the tasks form one chain per thread dask runs (counted when the graph is built: one
under the synchronous scheduler, else `num_workers` or the CPUs), each a run of consecutive
windows. A chain's task adds its window's totals into the running sums its predecessor
returns (each result's blocks, a block no larger than a task's window of it), so a chain
holds one copy of the results at most, however many slices it runs, like numpy's loop, which
adds each slice in place. The chains' sums are added into one another (fan-in
:data:`FAN_IN`), and each block of a result is read from the total. Independent tasks summed
as a tree held every task's results until the sums that read them ran: 37 MiB against
numpy's 3.7 MiB on a 4x4 grid at bond 16 in 1,024 slices; one chain (the synchronous
scheduler) holds 5.6 MiB.

This is source text (the helpers of the code :meth:`einsgrad.Einsum.source` shows for dask
under slicing, run after numpy's helpers and with the chunk's numpy program).
"""

FAN_IN = 16  # chains' sums added by one task
TASKS = 64  # tasks a sliced graph keeps at least, where it groups slices (a few per core)

HELPERS = '''

import functools
import itertools

import dask
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
    windows = list(itertools.product(*[range(-(-size // span)) for size, span in spans]))
    chains = min(_threads(), len(windows))
    name = "slice-" + token + "-" + str(chains) + "-" + "-".join(b.name for b in blocks)
    layer, ends = {}, []
    for chain in range(chains):  # each a run of consecutive windows: fewer blocks of each result
        previous = None
        for k in range(chain * len(windows) // chains, (chain + 1) * len(windows) // chains):
            w = windows[k]
            extent = tuple(min(span, size - i * span) for i, (size, span) in zip(w, spans))
            task = functools.partial(_group, function, chunk_shapes, axes, outs, grid, extent, w)
            layer[(name, k)] = (task, previous,
                                *[(b.name, *[w[c] if c >= 0 else 0 for c in ax]) for b, ax in zip(blocks, axes)])
            previous = (name, k)
        ends.append(previous)
    level = 0
    while len(ends) > 1:  # the chains' sums added into one another, fan-in _FAN_IN
        groups = [ends[i:i + _FAN_IN] for i in range(0, len(ends), _FAN_IN)]
        layer.update(((name + "-sum", level, g), (_merged, *group)) for g, group in enumerate(groups))
        ends, level = [(name + "-sum", level, g) for g in range(len(groups))], level + 1
    layers, dependencies = {name: layer}, {name: {b.name for b in blocks}}
    for b in blocks:
        layers.update(b.dask.layers)
        dependencies.update(b.dask.dependencies)
    results = []
    for j, ((shape, ax), dtype) in enumerate(zip(outs, dtypes)):
        out = "sliced-" + str(j) + "-" + name
        chunks = tuple(_sizes(spans[c]) if c >= 0 else (n,) for n, c in zip(shape, ax))
        picks = {(out, *index): (functools.partial(_pick, j, index, tuple(c[i] for c, i in zip(chunks, index)), dtype),
                                 ends[0])
                 for index in itertools.product(*[range(len(c)) for c in chunks])}
        graph = HighLevelGraph({**layers, out: picks}, {**dependencies, out: {name}})
        results.append(da.Array(graph, out, chunks, meta=np.empty((0,) * len(shape), dtype)))
    return tuple(results)


def _threads():
    """The chains a graph built now runs in parallel: one under the synchronous scheduler,
    else dask's `num_workers` setting, else the CPUs it may use."""
    from dask.system import CPU_COUNT

    if dask.config.get("scheduler", None) in ("sync", "synchronous", "single-threaded"):
        return 1
    return max(1, dask.config.get("num_workers", None) or CPU_COUNT)


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


def _group(function, shapes, axes, outs, grid, extent, window, sums, *blocks):
    """One task of a chain: the slices of its `window` (`extent` of each sliced label) one after
    another, each block sliced and padded to the chunk's `shapes`, each result cut back and
    added into the task's window of it; then those added into the chain's running `sums`
    (for each result, its blocks by index; None: the chain's first task), which it returns.

    No value another task returned is written: this task's own totals, fresh, take the
    chain's sums of their blocks in place, and it returns new dicts of blocks (a block its
    window does not cover is the predecessor's, shared). So a task run again (a retry, a
    second compute of a persisted predecessor) adds what it adds once, and the memory held
    is one copy of the results per chain.
    """
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
    sums = tuple({} for _ in outs) if sums is None else tuple(dict(blocks) for blocks in sums)
    for j, (total, (_, ax)) in enumerate(zip(totals, outs)):
        index = tuple(window[c] if c >= 0 else 0 for c in ax)
        if index in sums[j]:
            total += sums[j][index]  # this task's own array; the predecessor's block is only read
        sums[j][index] = total
    return sums


def _merged(*chains):
    """The chains' sums added, block by block, into new arrays (no chain's block written)."""
    sums = tuple(dict(blocks) for blocks in chains[0])
    for other in chains[1:]:
        for mine, theirs in zip(sums, other):
            for index, value in theirs.items():
                mine[index] = value if index not in mine else mine[index] + value
    return sums


def _pick(j, index, shape, dtype, sums):
    """Block `index` of the `j`-th result (zeros where no slice writes it: off the diagonal of
    a label the result repeats)."""
    block = sums[j].get(index)
    return np.zeros(shape, dtype) if block is None else block


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
''' % (FAN_IN, TASKS)
