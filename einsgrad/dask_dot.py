"""The dask dialect's ``_dot``: a pair of dask arrays contracted block by block.

Generated code for dask arrays spells every pairwise step as ``_dot(a, b, dimension_numbers)``
with ``lax.dot_general``'s dimension numbers over the operands as stored (the jax dialect's
spelling, :func:`einsgrad.codegen.expression`); this is its definition, part of the dialect's
helpers (source text, run before the generated functions and shown with them).

A pair is one blockwise product of blocks, never a reshape of a chunked axis, which rechunks: a
3x3 PEPS at bond 16 in chunks of 8 built 3,987 tasks for opt_einsum's dask backend's 537 and ran
9x longer (``python -m benchmarks.dask_networks``). Each task multiplies one block of each
operand, a GEMM over the blocks' own axes; contracted axes of several blocks stay in the
blockwise result, one size-1 axis per block, and are summed afterwards as a tree (as
``da.tensordot`` does, with batch axes too). A product's task reads one block of each operand
and makes one block of the result.
"""

HELPERS = '''import numpy as np
import dask.array as da
from dask.base import tokenize
from math import prod


def _dot(a, b, dimension_numbers):
    """lax.dot_general's product of the dask arrays a and b, block by block (see _block_dot)."""
    (ca, cb), (ba, bb) = dimension_numbers
    ia = list(range(a.ndim))
    ib = [None] * b.ndim
    for i, j in zip(ca + ba, cb + bb):
        ib[j] = ia[i]
    fb = [j for j in range(b.ndim) if ib[j] is None]
    for n, j in enumerate(fb, a.ndim):
        ib[j] = n
    split = [i for i, j in zip(ca, cb) if a.numblocks[i] > 1 or b.numblocks[j] > 1]
    out = list(ba) + [i for i in ia if i not in ca and i not in ba] + [ib[j] for j in fb] + split
    dtype = np.result_type(a.dtype, b.dtype)
    # named from the operands' names: tokenizing _block_dot itself (defined in generated code,
    # in no module) would cloudpickle it on every call
    name = "block_dot-" + tokenize(a.name, b.name, dimension_numbers, split)
    partial = da.blockwise(_block_dot, out, a, ia, b, ib, name=name, dtype=dtype,
                           meta=np.empty((0,) * len(out), dtype), adjust_chunks=dict.fromkeys(split, 1),
                           dimension_numbers=dimension_numbers, kept=len(split))
    if not split:
        return partial
    return partial.sum(axis=tuple(range(len(out) - len(split), len(out))))


def _block_dot(x, y, dimension_numbers, kept):
    """One block of _dot: dot_general of numpy blocks x and y as one (batched) GEMM, with
    `kept` size-1 axes after, one per contracted axis summed later. A contracted axis of one
    block comes as a list of that block (blockwise does not concatenate)."""
    while isinstance(x, list):
        x = x[0]
    while isinstance(y, list):
        y = y[0]
    (ca, cb), (ba, bb) = dimension_numbers
    fa = [i for i in range(x.ndim) if i not in ca and i not in ba]
    fb = [j for j in range(y.ndim) if j not in cb and j not in bb]
    batch = [x.shape[i] for i in ba]
    rows, cols = [x.shape[i] for i in fa], [y.shape[j] for j in fb]
    nb, m, n, k = prod(batch), prod(rows), prod(cols), prod(x.shape[i] for i in ca)
    lhs = x.transpose(list(ba) + fa + list(ca)).reshape(nb, m, k)
    rhs = y.transpose(list(bb) + list(cb) + fb).reshape(nb, k, n)
    if m == 1 and n == 1:
        z = np.einsum("ij,ij->i", lhs[:, 0, :], rhs[:, :, 0])
    elif k == 1:
        z = lhs * rhs
    else:
        z = np.matmul(lhs, rhs)
    return z.reshape(batch + rows + cols + [1] * kept)
'''
