"""The benchmark suite: named einsum specs with their operand shapes, and their operands."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Case(NamedTuple):
    """One contraction of the suite.

    Attributes:
        name: short name for tables.
        spec: the forward einsum spec.
        shapes: one shape per operand.
        overhead: tiny operands: the row measures per-call overhead, it has no limit.
        copies: ``(i, j)`` pairs: operand ``i`` holds a copy of operand ``j``'s values.
    """

    name: str
    spec: str
    shapes: tuple[tuple[int, ...], ...]
    overhead: bool = False
    copies: tuple[tuple[int, int], ...] = ()


# A 4-site periodic MPS (bonds a-d, physical p-s) contracted with a copy of itself: <psi|psi>.
_MPS = "apb,bqc,crd,dsa,epf,fqg,grh,hse->"
_COPIES = {"mps norm": ((4, 0), (5, 1), (6, 2), (7, 3))}

# name, spec, full shapes, quick shapes. Full sizes: 1-2 GFLOP forwards (5-50 ms in float64 on the
# 2-core development machine), but the linear layer keeps 4096 x 1024 -> 1024 (8.6 GFLOP) and the
# memory-bound cases 4096 x 4096; quick memory-bound sizes still exceed a 32 MiB L3 in float64.
_TABLE = [
    ("matmul", "ik,kj->ij", [(1024, 1024)] * 2, [(256, 256)] * 2),
    ("linear", "ik,jk->ij", [(4096, 1024), (1024, 1024)], [(512, 256), (256, 256)]),
    ("attn scores", "bhqd,bhkd->bhqk", [(4, 8, 512, 64)] * 2, [(2, 4, 128, 32)] * 2),
    ("attn apply", "bhqk,bhkd->bhqd", [(4, 8, 512, 512), (4, 8, 512, 64)],
     [(2, 4, 128, 128), (2, 4, 128, 32)]),
    ("bilinear", "bi,ij,bj->b", [(1024, 1024)] * 3, [(256, 256)] * 3),
    ("scaled linear", "bi,hi,h->bh", [(1024, 1024), (1024, 1024), (1024,)],
     [(256, 256), (256, 256), (256,)]),
    ("chain", "ab,bc,cd,de->ae", [(1024, 256), (256, 1024)] * 2, [(256, 64), (64, 256)] * 2),
    ("tucker", "ijk,ia,jb,kc->abc", [(192, 192, 192), (192, 64), (192, 64), (192, 64)],
     [(48, 48, 48), (48, 16), (48, 16), (48, 16)]),
    ("mps norm", _MPS, [(192, 4, 192)] * 8, [(48, 4, 48)] * 8),
    ("network", "abc,cde,efa->bdf", [(40, 40, 40)] * 3, [(20, 20, 20)] * 3),
    ("trace", "ii->", [(4096, 4096)], [(2048, 2048)]),
    ("row sum", "ij->i", [(4096, 4096)], [(2048, 2048)]),
    ("diag scale", "ii,i->i", [(4096, 4096), (4096,)], [(2048, 2048), (2048,)]),
    ("batched bcast", "...ij,...jk->...ik", [(8, 1, 256, 128), (1, 16, 128, 256)],
     [(4, 1, 64, 32), (1, 8, 32, 64)]),
    ("tiny linear", "ik,jk->ij", [(3, 3)] * 2, [(3, 3)] * 2),
    ("tiny chain", "ab,bc,cd,de->ae", [(3, 3)] * 4, [(3, 3)] * 4),
]


def suite(quick: bool = False) -> list[Case]:
    """The cases of the benchmark, with the quick run's smaller shapes if ``quick``."""
    cases = []
    for name, spec, full, small in _TABLE:
        cases.append(Case(name, spec, tuple(map(tuple, small if quick else full)),
                          overhead=name.startswith("tiny"), copies=_COPIES.get(name, ())))
    return cases


def operands(case: Case, dtype, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Standard normal operands of ``case`` in ``dtype``, with the copies it asks for."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(rng.standard_normal(shape), dtype=dtype) for shape in case.shapes]
    for i, j in case.copies:
        arrays[i] = arrays[j].copy()
    return tuple(arrays)
