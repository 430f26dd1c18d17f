"""Pairwise steps as one ``dot_general`` over the labels as stored (the jax and dask dialects).

A dot's dimension numbers read each operand as it is stored, so the GEMM blocks the plan lays
out for BLAS (reshapes, swaps, transposed copies) are not the library's concern: XLA lays out
a dot itself. What is spelled here is only the dot (which operand goes first, which labels
are its batch and which it contracts, in what order) and the transposition after it.

In the jax dialect a pair is spelled as ``jnp.einsum`` spells it (its ``_einsum``: the
operands in the plan's order where that makes the result's own order, else swapped; the
contracted labels in sorted order), so that ``jax.jit`` of a gradient, JAX's transpose of
einsgrad's jvp plan, compiles to the program of ``jnp.einsum``'s gradient. Measured
(``python -m benchmarks.training --hlo``, the training benchmark's models in float32, float64
and bfloat16, at its sizes): the MLP's and the attention's jitted training steps then hand XLA
``jnp.einsum``'s StableHLO byte for byte, so its optimized HLO too; the plan's order with a transposition after (the spelling
before, kept for dask) gave attention 13 transposes to ``jnp.einsum``'s 12. The bilinear,
tensor-train and grouped steps compile to the same program as with that spelling, by two
exceptions, each measured the other way:

* a pair with batch labels keeps the plan's order where neither order makes the result's: the
  grouped matmul (``...ij,...jk->...ik``) then compiles to 3 transposed copies against
  ``jnp.einsum``'s 4, and its step measured 0.71-0.93x ``jnp.einsum``'s;
* a contraction tree (a product reading another's result) keeps the plan's transposed copies
  (innermost axis kept innermost): XLA lays out the dots that read them better there (the
  tensor-train step in bfloat16 0.86x ``jnp.einsum``'s with them, 1.07x without). In the plan
  of one pair (a two-operand einsum's forward, jvp or vjp) the dot reads the operand itself,
  as ``jnp.einsum``'s does (:func:`read_through_copies`).
"""

from __future__ import annotations

from dataclasses import replace

from .steps import Copy, Einsum2, Matmul, Multiply, Plan, Step, tuple_text

PAIRS = (Matmul, Multiply, Einsum2)
"""The operations a ``dot_general`` dialect spells as one dot."""


def pair_by_dot(step: Step, args: tuple[str, ...], as_jnp: bool) -> tuple[str, tuple[int, ...] | None]:
    """A pairwise step (a GEMM, an outer or Hadamard product, a batched dot) as one ``_dot``
    over the labels its operands hold as stored (``step.inputs``), and the transposition that
    takes the dot's result into the step's labels (None: it is in them). Labels both operands
    hold and the result keeps are the batch, in the result's order; labels both hold and it
    drops are contracted; the others are free. The dot makes (batch, the first operand's free
    labels, the second's). ``as_jnp``: ``jnp.einsum``'s spelling (see the module), else the
    plan's order unless the swapped one needs no transposition. No size is spelled."""
    expr, perm = _dot_in_order(step, args, 0, 1, as_jnp)
    if perm is None:
        return expr, perm
    swapped, swapped_perm = _dot_in_order(step, args, 1, 0, as_jnp)
    if swapped_perm is None or (as_jnp and not _batched(step)):
        return swapped, swapped_perm
    return expr, perm


def _batched(step: Step) -> bool:
    """Whether both operands of a pair hold a label its result keeps (a batch label)."""
    a, b = step.inputs
    return any(l in b and l in step.labels for l in a)


def _dot_in_order(step: Step, args: tuple[str, ...], first: int, second: int,
                  sort: bool) -> tuple[str, tuple[int, ...] | None]:
    """``_dot`` of the step's operands ``first`` and ``second`` (the contracted labels sorted
    where ``sort``, else in the first's order), and the transposition after it."""
    out, a, b = step.labels, step.inputs[first], step.inputs[second]
    assert all(l in b or l in out for l in a) and all(l in a or l in out for l in b), step.spec
    batch = [l for l in out if l in a and l in b]
    summed = [l for l in a if l in b and l not in out]
    summed = sorted(summed) if sort else summed
    made = batch + [l for l in a if l not in b] + [l for l in b if l not in a]
    assert sorted(made) == sorted(out), (step.spec, out)
    dims = (f"(({tuple_text(a.index(l) for l in summed)}, {tuple_text(b.index(l) for l in summed)}), "
            f"({tuple_text(a.index(l) for l in batch)}, {tuple_text(b.index(l) for l in batch)}))")
    perm = tuple(made.index(l) for l in out)
    return f"_dot({args[first]}, {args[second]}, {dims})", (
        None if perm == tuple(range(len(perm))) else perm)


def label_order(step: Step) -> tuple[int, ...]:
    """The rank of each of the step's labels (its operands', then its result's) in sorted
    order: what ``jnp.einsum``'s spelling reads of the label names beyond their positions.
    Steps of one lowering pattern, relabelled, share a kernel only where it is equal."""
    labels = [l for term in step.inputs for l in term] + list(step.labels)
    rank = {l: k for k, l in enumerate(sorted(set(labels)))}
    return tuple(rank[l] for l in labels)


def read_through_copies(plan: Plan) -> Plan:
    """``plan`` with each dot reading the operand itself instead of its transposed copy, where
    the plan is one pair's (each product reads arguments or their copies, and nothing but
    products reads a copy, which is not returned): the copies' steps are dropped and the
    dimension numbers name the operand's own axes. Any other plan comes back as it is."""
    copies = {step.target: step for step in plan.steps if isinstance(step.operation, Copy)}
    readers = [step for step in plan.steps if any(a in copies for a in step.args)]
    one_pair = all(a in plan.args or a in copies for step in plan.steps if isinstance(step.operation, PAIRS)
                   for a in step.args)
    if not copies or not one_pair or any(not isinstance(step.operation, PAIRS) for step in readers) \
            or any(name in copies for name in plan.returns) \
            or any(step.args[0] not in plan.args for step in copies.values()):
        return plan
    steps = []
    for step in plan.steps:
        if step.target in copies:
            continue
        if any(a in copies for a in step.args):
            read = [(copies[a].args[0], copies[a].inputs[0]) if a in copies else (a, labels)
                    for a, labels in zip(step.args, step.inputs)]
            step = replace(step, args=tuple(a for a, _ in read), inputs=tuple(l for _, l in read))
        steps.append(step)
    return replace(plan, steps=tuple(steps))
