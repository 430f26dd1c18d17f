"""The joint tree choice: among the trees the optimizer tries, the one whose forward and
every gradient together cost least, under the memory limit.

Every path optimizer picks the tree for the forward alone; the gradients then follow it
backward. einsgrad knows, for any tree, the FLOPs of its forward and reverse sweep, what the
forward-saving forward keeps, and (under ``memory_limit``) what slicing that tree costs. So
it can judge each candidate by what a training step runs: forward plus all gradients.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import paths, plan, slicing
from .errors import EinsumSpecError
from .paths import Path
from .shapes import BoundSpec


class Judged(NamedTuple):
    """One candidate tree and what it costs, forward and all gradients together.

    Attributes:
        name: where it came from (``"the optimizer"``, ``"greedy"``, ``"dp"``...).
        path: the tree.
        flops: FLOPs of the forward and every gradient (sliced, under ``memory_limit``).
        forward_flops: FLOPs of the forward alone, unsliced: what the optimizer minimised.
        saved: elements the forward-saving forward keeps for the pullback (its intermediates).
        slices: chunks under ``memory_limit`` (1 without).
    """

    name: str
    path: Path
    flops: float
    forward_flops: int
    saved: int
    slices: int


class TreeChoice(NamedTuple):
    """The joint choice, the forward-only choice it replaced (the optimizer's own answer), and
    the candidate of the cheapest forward (what a forward-only judge of the same candidates
    would take)."""

    joint: Judged
    forward_only: Judged
    cheapest_forward: Judged
    tried: int

    def describe(self) -> str:
        """One line for :meth:`einsgrad.Einsum.plan`: what the joint choice saved."""
        j, f = self.joint, self.forward_only
        if j.path == f.path:
            return (f"tree: the optimizer's (forward + all gradients {j.flops:,.0f} flops) is the cheapest "
                    f"of {self.tried} tried for both directions")
        return (f"tree: {j.name}, chosen for forward + all gradients among {self.tried} tried: "
                f"{j.flops:,.0f} flops against {f.flops:,.0f} for the optimizer's forward-only choice "
                f"(saved {1 - j.flops / f.flops:.1%}); kept for the pullback {j.saved:,} elements against "
                f"{f.saved:,}; forward alone {j.forward_flops:,} against {f.forward_flops:,} flops"
                + ("" if self.cheapest_forward.path == j.path else
                   f"; the cheapest forward tried ({self.cheapest_forward.name}) costs "
                   f"{self.cheapest_forward.flops:,.0f} flops for both directions"))


def judge(bound: BoundSpec, name: str, path: Path, memory_limit: int | None) -> Judged:
    """What ``path`` costs the forward and every gradient (sliced under ``memory_limit``)."""
    every = tuple(range(len(bound.spec.inputs)))
    swept = plan.sweep(bound, path, every)
    forward = sum(s.flops for s in swept.steps[:swept.forward_count])
    pair = swept.pair()
    made = {s.target: s for s in pair.saving.steps}
    saved = sum(math.prod(made[n].shape) for n in pair.saving.returns[1:] if n in made)
    if memory_limit is None:
        return Judged(name, path, float(sum(s.flops for s in swept.steps)), forward, saved, 1)
    sliced = slicing.greedy(slicing.Model(bound, path), memory_limit)
    return Judged(name, path, sliced.flops, forward, saved, sliced.slices)


def choose(bound: BoundSpec, optimize, memory_limit: int | None) -> TreeChoice:
    """The candidate tree (:func:`einsgrad.paths.candidates`) of fewest forward + gradient
    FLOPs, then least kept memory; the optimizer's own answer wins ties."""
    terms, core = plan.forward_terms(bound)
    if len(terms) == 1:
        only = judge(bound, "the optimizer", (), memory_limit)
        return TreeChoice(only, only, only, 1)
    found = paths.candidates(terms, core, bound.size_of, optimize, memory_limit)
    judged = [judge(bound, *found[0], memory_limit)]  # the optimizer's: its errors are the call's
    for name, path in found[1:]:
        try:
            judged.append(judge(bound, name, path, memory_limit))
        except EinsumSpecError:  # a tree no slicing fits under the limit: not a candidate
            pass
    best = min(judged, key=lambda j: (j.flops, j.saved))
    fastest = min(judged, key=lambda j: (j.forward_flops, j.flops))
    return TreeChoice(best, judged[0], fastest, len(judged))
