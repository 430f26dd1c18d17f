"""Tensor networks of 10 to 1000 tensors, as label terms, sizes and operands.

Each generator returns a :class:`Network`: one label tuple per tensor, the output's labels, and
each label's size. Labels are opt_einsum's symbols (``get_symbol(i)``: ``a``-``z``, ``A``-``Z``,
then unicode), so the same network is one spec text for einsgrad, opt_einsum and cotengra.
Values are scaled so that contracting them neither overflows nor underflows: each tensor's
entries have variance one over the square root of the product of its bonds' sizes, which keeps
a chain of random matrices near norm one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from opt_einsum import get_symbol

Labels = tuple[str, ...]


@dataclass(frozen=True)
class Network:
    """A tensor network: ``name`` (family and size), one label tuple per tensor, the output's
    labels, and the size of every label."""

    family: str
    name: str
    terms: tuple[Labels, ...]
    output: Labels
    sizes: tuple[tuple[str, int], ...]

    @property
    def spec(self) -> str:
        return ",".join("".join(t) for t in self.terms) + "->" + "".join(self.output)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        size = dict(self.sizes)
        return tuple(tuple(size[l] for l in term) for term in self.terms)

    @property
    def tensors(self) -> int:
        return len(self.terms)

    def operands(self, dtype="float64", seed: int = 0) -> list[np.ndarray]:
        """Random operands whose contraction stays near magnitude one (see the module)."""
        rng = np.random.default_rng(seed)
        size = dict(self.sizes)
        counts: dict[str, int] = {}
        for term in self.terms:
            for label in term:
                counts[label] = counts.get(label, 0) + 1
        arrays = []
        for term, shape in zip(self.terms, self.shapes):
            bonds = math.prod(size[l] for l in term if counts[l] > 1 and l not in self.output)
            arrays.append((rng.standard_normal(shape) * bonds ** -0.25).astype(dtype))
        return arrays


class _Symbols:
    """Fresh labels in opt_einsum's order."""

    def __init__(self):
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return get_symbol(self.count - 1)


def _network(family, name, terms, output, size_of) -> Network:
    labels = dict.fromkeys(l for t in terms for l in t)
    return Network(family, name, tuple(map(tuple, terms)), tuple(output),
                   tuple((l, size_of(l)) for l in labels))


def chain(n: int, size: int = 8) -> Network:
    """A product of ``n`` square matrices: ``ab,bc,...->a?``."""
    new = _Symbols()
    bonds = [new() for _ in range(n + 1)]
    return _network("chain", f"chain {n}", [(bonds[i], bonds[i + 1]) for i in range(n)],
                    (bonds[0], bonds[-1]), lambda l: size)


def mps_norm(sites: int, bond: int = 8, physical: int = 2) -> Network:
    """⟨ψ|ψ⟩ of a matrix product state of ``sites`` sites (open boundaries): 2 x sites tensors."""
    new = _Symbols()
    ket = [new() for _ in range(sites - 1)]
    bra = [new() for _ in range(sites - 1)]
    phys = [new() for _ in range(sites)]
    terms = []
    for bonds in (ket, bra):
        for i in range(sites):
            left = (bonds[i - 1],) if i > 0 else ()
            right = (bonds[i],) if i < sites - 1 else ()
            terms.append(left + (phys[i],) + right)
    kind = {l: physical for l in phys}
    return _network("mps", f"mps norm {sites} sites", terms, (), lambda l: kind.get(l, bond))


def grid(rows: int, cols: int, bond: int = 2) -> Network:
    """A PEPS-like ``rows`` x ``cols`` lattice, one tensor per site, contracted to a scalar."""
    new = _Symbols()
    right = {(r, c): new() for r in range(rows) for c in range(cols - 1)}
    down = {(r, c): new() for r in range(rows - 1) for c in range(cols)}
    terms = []
    for r in range(rows):
        for c in range(cols):
            term = [right.get((r, c - 1)), right.get((r, c)), down.get((r - 1, c)), down.get((r, c))]
            terms.append(tuple(l for l in term if l is not None))
    return _network("grid", f"grid {rows}x{cols}", terms, (), lambda l: bond)


def random_regular(n: int, degree: int = 3, bond: int = 2, seed: int = 0) -> Network:
    """A random ``degree``-regular graph of ``n`` tensors, one bond per edge (no self-loops or
    double edges: the pairing is drawn again until it has none)."""
    assert n * degree % 2 == 0, "a regular graph needs n x degree even"
    rng = np.random.default_rng(seed)
    while True:
        stubs = rng.permutation(np.repeat(np.arange(n), degree)).reshape(-1, 2)
        edges = {tuple(sorted(map(int, e))) for e in stubs}
        if len(edges) == len(stubs) and all(a != b for a, b in edges):
            break
    new = _Symbols()
    terms: list[list[str]] = [[] for _ in range(n)]
    for a, b in sorted(edges):
        label = new()
        terms[a].append(label)
        terms[b].append(label)
    return _network("regular", f"random {degree}-regular {n}", terms, (), lambda l: bond)


def tree(n: int, bond: int = 4, physical: int = 2) -> Network:
    """A binary tree tensor network of ``n`` tensors: tensor ``i``'s parent is ``(i - 1) // 2``,
    and each leaf carries a physical label, contracted with a vector."""
    new = _Symbols()
    up = {i: new() for i in range(1, n)}
    terms: list[list[str]] = [[] for _ in range(n)]
    kind = {}
    for i in range(1, n):
        terms[i].append(up[i])
        terms[(i - 1) // 2].append(up[i])
    vectors = []
    for i in range(n):
        if len(terms[i]) == 1 and i > 0:  # a leaf
            p = new()
            kind[p] = physical
            terms[i].append(p)
            vectors.append([p])
    return _network("tree", f"tree {n + len(vectors)}", terms + vectors, (), lambda l: kind.get(l, bond))


def circuit(qubits: int, depth: int, seed: int = 0) -> Network:
    """A circuit-like network: ``qubits`` input vectors, ``depth`` layers of two-qubit gates
    (4-index tensors) on alternating neighbouring pairs, and output vectors: an amplitude."""
    new = _Symbols()
    wires = [new() for _ in range(qubits)]
    terms = [[w] for w in wires]
    for layer in range(depth):
        for q in range(layer % 2, qubits - 1, 2):
            a, b = new(), new()
            terms.append([wires[q], wires[q + 1], a, b])
            wires[q], wires[q + 1] = a, b
    terms += [[w] for w in wires]
    return _network("circuit", f"circuit {qubits}x{depth}", terms, (), lambda l: 2)


def suite(quick: bool = False) -> list[Network]:
    """The benchmark's networks, 10 to 1000 tensors (``quick``: small ones, for a test). Random
    regular graphs stop at 100 tensors and grids at 16 x 16: past that, their widest
    intermediates (2 to the treewidth) outgrow a machine, whatever the tree."""
    if quick:
        return [chain(10, 4), mps_norm(6, 4), grid(3, 3), random_regular(10), tree(7), circuit(4, 3)]
    return [chain(10), chain(51), chain(200), chain(1000),
            mps_norm(10), mps_norm(100), mps_norm(500),
            grid(4, 4), grid(10, 10), grid(16, 16),
            random_regular(20), random_regular(60), random_regular(100),
            tree(63), tree(500), tree(999),
            circuit(10, 8), circuit(10, 40), circuit(10, 200)]
