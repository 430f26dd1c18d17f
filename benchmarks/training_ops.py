"""What a torch training step runs with einsgrad's einsum and with ``torch.einsum``, op by op.

Run: ``python -m benchmarks.training_ops [--models attention,grouped] [--dtypes float32,...]
[--quick] [--time ROUNDS] [--default-malloc]``. For each model
(:mod:`benchmarks.training_models`) and dtype, one step (forward, loss, backward, gradients set to None as the training benchmark does) is run
under a ``TorchDispatchMode`` with each einsum, after two warm-up steps. Every ATen op that
reaches the dispatcher is recorded with its operands' shapes and strides, in the forward and in
the backward; views (permute, reshape, transpose, ...) cost nothing and are left out of the
summary. The summary counts, per phase, the GEMMs (``mm``, ``bmm``, ...) with their FLOPs and
layouts (``NN``: both operands read as stored rows, ``T``: one read transposed, as BLAS takes
it), the elements copied (``clone``, ``copy_``), and every other op. Where the two systems run
the same GEMMs in the same layouts and copy as much, what is left between their step times is
the Python around the ops (einsgrad's call, its autograd Function) and noise.

``--time ROUNDS`` also times the step in situ, split into the einsum calls themselves, the rest
of the forward (loss included) and the backward: einsgrad, torch.einsum and a second torch.einsum
copy (the A/A control), in random order each round, one torch thread, by this thread's CPU time;
each figure is the median over the rounds. Timed runs re-execute under the training benchmark's
glibc malloc settings (:data:`benchmarks.malloc.MALLOC`; ``--default-malloc`` keeps glibc's),
so that the split is of the process that benchmark times.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks import malloc
from benchmarks.training_memory import ops, systems
from benchmarks.training_models import MODELS, Model

GEMMS = {"mm": 0, "bmm": 0, "addmm": 1, "baddbmm": 1}  # each GEMM by the position of its first matrix
COPIES = frozenset({"clone", "copy_", "_to_copy", "contiguous"})
VIEWS = frozenset({"view", "_unsafe_view", "reshape", "_reshape_alias", "permute", "transpose", "t",
                   "unsqueeze", "squeeze", "expand", "as_strided", "detach", "alias", "select", "slice",
                   "diagonal", "unfold", "split", "unbind", "view_as", "lift_fresh"})
PHASES = ("forward", "backward")


@dataclass(frozen=True)
class Op:
    """One ATen op as it reached the dispatcher.

    Attributes:
        name: the op's name without its overload (``bmm``, ``clone``).
        shapes: each tensor argument's shape, in order (lists of tensors flattened).
        strides: each tensor argument's strides.
    """

    name: str
    shapes: tuple
    strides: tuple

    @property
    def kind(self) -> str:
        """``gemm``, ``copy``, ``view`` or ``other``."""
        if self.name in GEMMS:
            return "gemm"
        if self.name in COPIES:
            return "copy"
        return "view" if self.name in VIEWS else "other"

    def gemm(self) -> tuple[str, int, tuple] | None:
        """A 2-d or batched GEMM's layout (``NN``, ``NT``, ``TN``, ``TT``), FLOPs and
        ``(batch, m, k, n)``; None for any other op."""
        first = GEMMS.get(self.name)
        if first is None or len(self.shapes) < first + 2:
            return None
        (a, b), (sa, sb) = self.shapes[first:first + 2], self.strides[first:first + 2]
        batch = a[0] if len(a) == 3 else 1
        m, k, n = a[-2], a[-1], b[-1]
        layout = "".join("N" if s[-1] == 1 and shape[-1] != 1 else "T" for s, shape in ((sa, a), (sb, b)))
        return layout, 2 * batch * m * k * n, (batch, m, k, n)

    def copied(self) -> int:
        """Elements a copy op writes (its first tensor's), else 0."""
        if self.kind != "copy" or not self.shapes:
            return 0
        count = 1
        for size in self.shapes[0]:
            count *= size
        return count


class Recorder(TorchDispatchMode):
    """Records every op as an :class:`Op` into ``self.phase``'s list."""

    def __init__(self):
        super().__init__()
        self.ops = {phase: [] for phase in PHASES}
        self.phase = PHASES[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [a for a in _flat(args) if isinstance(a, torch.Tensor)]
        self.ops[self.phase].append(Op(func.overloadpacket.__name__, tuple(tuple(t.shape) for t in tensors),
                                       tuple(tuple(t.stride()) for t in tensors)))
        return func(*args, **(kwargs or {}))


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _params(model: Model, params0: dict, dtype) -> dict:
    return {k: torch.from_numpy(v).to(dtype).requires_grad_() for k, v in params0.items()}


def _data(model: Model, quick: bool, dtype) -> tuple[dict, dict]:
    params0, batch = model.make(model.sized(quick))
    return params0, {k: torch.from_numpy(v).to(dtype) for k, v in batch.items()}


def trace(model: Model, dtype, einsum, quick: bool = False) -> dict[str, list[Op]]:
    """The ops of one training step of ``model`` with ``einsum``, by phase, after two warm-up
    steps (caches and plans made, gradients None as in the training benchmark)."""
    params0, batch = _data(model, quick, dtype)
    params = _params(model, params0, dtype)
    for _ in range(2):
        model.loss(ops(einsum), params, batch).backward()
        for p in params.values():
            p.grad = None
    recorder = Recorder()
    with recorder:
        loss = model.loss(ops(einsum), params, batch)
        recorder.phase = PHASES[1]
        loss.backward()
    return recorder.ops


@dataclass(frozen=True)
class Summary:
    """What one phase of a step computes.

    Attributes:
        gemms: each GEMM's ``(layout, (batch, m, k, n))``, counted.
        flops: the GEMMs' FLOPs.
        copied: elements written by copies.
        copies: how many copy ops.
        others: every op neither a GEMM, a copy nor a view, by name, counted.
    """

    gemms: Counter
    flops: int
    copied: int
    copies: int
    others: Counter

    @classmethod
    def of(cls, found: list[Op]) -> "Summary":
        gemms = [g for g in (op.gemm() for op in found) if g is not None]
        copies = [op for op in found if op.kind == "copy"]
        return cls(Counter((layout, dims) for layout, _, dims in gemms), sum(f for _, f, _ in gemms),
                   sum(op.copied() for op in copies), len(copies),
                   Counter(op.name for op in found if op.kind == "other"))


def compare(model: Model, dtype, quick: bool = False) -> dict[str, dict[str, Summary]]:
    """Per system (``einsgrad.torch``, ``torch.einsum``), per phase, the :class:`Summary`."""
    return {name: {phase: Summary.of(found) for phase, found in trace(model, dtype, einsum, quick).items()}
            for name, einsum in systems().items()}


def table(model: Model, dtype: str, found: dict[str, dict[str, Summary]]) -> str:
    """The comparison as text: per phase, the two systems' GEMMs, copies and other ops."""
    lines = [f"## {model.name} {dtype}"]
    names = list(found)
    for phase in PHASES:
        lines.append(f"{phase}:")
        for name in names:
            s = found[name][phase]
            layouts = ", ".join(f"{n}x {layout} {'x'.join(map(str, dims))}"
                                for (layout, dims), n in sorted(s.gemms.items()))
            others = ", ".join(f"{op} {n}" for op, n in sorted(s.others.items()))
            lines.append(f"  {name:<15} {sum(s.gemms.values())} GEMMs {s.flops / 1e9:.3f} GFLOP; {s.copies} copies "
                         f"{s.copied:,} elements; others: {others}")
            lines.append(f"  {'':<15} GEMMs: {layouts}")
    return "\n".join(lines)


def split_times(model: Model, dtype, rounds: int, quick: bool = False) -> dict[str, list[float]]:
    """Median seconds of the einsum calls, the rest of the forward, the backward and the whole
    step, per system and an A/A copy of ``torch.einsum``, timed in situ (see the module)."""
    params0, batch = _data(model, quick, dtype)
    clock = time.thread_time

    def variant(einsum):
        params, spent = _params(model, params0, dtype), [0.0]

        def timed(*args):
            start = clock()
            y = einsum(*args)
            spent[0] += clock() - start
            return y

        def step():
            spent[0] = 0.0
            start = clock()
            loss = model.loss(ops(timed), params, batch)
            middle = clock()
            loss.backward()
            end = clock()
            with torch.no_grad():
                for p in params.values():
                    p.sub_(p.grad, alpha=1e-3)
                    p.grad = None
            return spent[0], middle - start - spent[0], end - middle, clock() - start

        return step

    einsums = systems()
    steps = {"einsgrad.torch": variant(einsums["einsgrad.torch"]), "torch.einsum": variant(einsums["torch.einsum"]),
             "again": variant(einsums["torch.einsum"])}
    for step in steps.values():
        for _ in range(3):
            step()
    samples = {name: [] for name in steps}
    order = list(steps.items())
    for _ in range(rounds):
        random.shuffle(order)
        for name, step in order:
            samples[name].append(step())
    return {name: [statistics.median(s[i] for s in found) for i in range(4)] for name, found in samples.items()}


def times_table(model: Model, dtype: str, medians: dict[str, list[float]], rounds: int) -> str:
    mine, theirs, again = medians["einsgrad.torch"], medians["torch.einsum"], medians["again"]
    lines = [f"  in situ, median of {rounds} rounds (thread CPU time, one torch thread):"]
    for i, part in enumerate(("einsum calls", "rest of forward", "backward", "step")):
        lines.append(f"  {part:<16} torch.einsum {theirs[i] * 1e3:8.3f} ms  einsgrad.torch {mine[i] * 1e3:8.3f} ms"
                     f"  ratio {mine[i] / theirs[i]:.3f}  A/A {again[i] / theirs[i]:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_ops", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="attention,grouped")
    parser.add_argument("--dtypes", default="float32,float64,bfloat16")
    parser.add_argument("--quick", action="store_true", help="the models' quick sizes")
    parser.add_argument("--time", type=int, default=0, metavar="ROUNDS", help="also time the step in situ")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc settings (else a timed run runs under MALLOC's)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MODELS}
    chosen = [t.strip() for t in args.models.split(",") if t.strip()]
    if unknown := [n for n in chosen if n not in known]:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.time:
        torch.set_num_threads(1)
        print(f"# malloc: {malloc.settings_text()}", flush=True)
    for name in chosen:
        for dtype in [t.strip() for t in args.dtypes.split(",") if t.strip()]:
            model, torch_dtype = known[name], getattr(torch, dtype)
            print(table(model, dtype, compare(model, torch_dtype, args.quick)), flush=True)
            if args.time:
                print(times_table(model, dtype, split_times(model, torch_dtype, args.time, args.quick), args.time),
                      flush=True)
    return 0


if __name__ == "__main__":
    if "--time" in sys.argv[1:] or any(a.startswith("--time=") for a in sys.argv[1:]):
        malloc.reexecute_under("benchmarks.training_ops", sys.argv[1:])
    sys.exit(main())
