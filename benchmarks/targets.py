"""The speed targets einsgrad holds itself to, checked against one run's results.

Run: ``python -m benchmarks.targets RESULTS.json``; ``python -m benchmarks --json PATH`` prints
the same table after its own. Each line names a target, the case and dtype, the measured ratio,
the bound, and whether it is met. Every figure comes from the one run, side by side.

The ratios of the pullback and the one-shot vjp to einsgrad's own forward are checked on the
FLOP-bound rows: where the forward is bound by memory traffic (``"ii,i->i"`` reads a diagonal,
its gradient writes a dense matrix), FLOPs say nothing of the cost and the byte limit applies.
"""

from __future__ import annotations

import json
import sys
from typing import Iterator, NamedTuple

BASE = "einsgrad"
BATCHED = ("attn scores", "attn apply", "batched bcast")
NETWORKS = ("tensor network", "network", "tucker", "mps norm")
MEMORY_BOUND = ("trace", "row sum", "diag scale")
PER_OPERAND = {"mps norm": 2.0, "chain": 1.5}  # einsgrad's lead over per-operand recomputation
PEERS_3X3 = ("jax", "torch")


class Verdict(NamedTuple):
    """One target on one row: ``value`` against ``bound`` (met when ``value <= bound``, or
    ``>=`` for ``at_least``), or else ``alternative``'s (value, bound), when there is one."""

    target: str
    where: str
    value: float | None
    bound: float
    at_least: bool = False
    detail: str = ""
    alternative: tuple[float, float] | None = None

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        if self.alternative and self.alternative[0] <= self.alternative[1]:
            return True
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    def line(self) -> str:
        state = {True: "met", False: "MISSED", None: "n/a"}[self.met]
        value = "-" if self.value is None else f"{self.value:.2f}"
        sign = ">=" if self.at_least else "<="
        return f"{self.target:<34} {self.where:<22} {value:>7} {sign} {self.bound:<5g} {state:<7} {self.detail}"


def _seconds(mode: dict, name: str) -> float | None:
    cell = mode["cells"].get(name)
    return cell["seconds"] if cell and cell["status"] == "ok" else None


def _fastest_other(mode: dict) -> tuple[str, float] | None:
    """The fastest peer: einsgrad's own runs in other libraries (einsgrad-torch, ...) are
    not peers."""
    times = [(n, _seconds(mode, n)) for n in mode["cells"] if not n.startswith(BASE)]
    times = [(n, s) for n, s in times if s]
    return min(times, key=lambda t: t[1]) if times else None


def _operands(spec: str) -> int:
    return spec.split("->")[0].count(",") + 1


def verdicts(doc: dict) -> Iterator[Verdict]:
    """Every target of the suite, row by row, from a results document (``--json``)."""
    for row in doc["rows"]:
        name, modes = row["case"], row["modes"]
        where = f"{name} {row['dtype']}"
        one, fwd, pb = modes["oneshot"], modes["forward"], modes["pullback"]
        mine = _seconds(one, BASE)
        best = _fastest_other(one)
        if mine and best:
            peer, seconds = best
            limit = one["limit_seconds"]
            alternative = (mine / limit, 1.1) if limit else None
            yield Verdict("one-shot x fastest (or x limit)", where, mine / seconds, 1.0,
                          detail=f"{peer}" + (f"; {mine / limit:.2f}x limit <= 1.1" if limit else ""),
                          alternative=alternative)
            if name in BATCHED:
                yield Verdict("batched: one-shot x fastest peer", where, mine / seconds, 0.7,
                              detail=peer)
        if name in NETWORKS and mine and one["limit_seconds"]:
            yield Verdict("networks: one-shot x limit", where, mine / one["limit_seconds"], 2.5)
        forward, pullback = _seconds(fwd, BASE), _seconds(pb, BASE)
        if _operands(row["spec"]) >= 2 and forward and pullback and fwd["bound"] == "flops":
            yield Verdict("pullback x own forward", where, pullback / forward, 2.1)
            if mine:
                theory = one["flops"] / fwd["flops"]
                yield Verdict("one-shot/forward over FLOP ratio", where,
                              (mine / forward) / theory, 1.1, detail=f"FLOP ratio {theory:.2f}")
        if name in PER_OPERAND and mine and _seconds(one, "opt_einsum"):
            yield Verdict("lead over per-operand", where, _seconds(one, "opt_einsum") / mine,
                          PER_OPERAND[name], at_least=True)
        if name == "tiny linear" and mine:
            yield Verdict("3x3 vjp, microseconds", where, mine * 1e6, 10.0)
            for peer in PEERS_3X3:
                if _seconds(one, peer):
                    yield Verdict(f"3x3 vjp x {peer}", where, mine / _seconds(one, peer), 1.0)
        if name == "tiny chain" and mine and _seconds(one, "jax"):
            yield Verdict("size-3 chain vjp x jax", where, mine / _seconds(one, "jax"), 1.0)
        if name in MEMORY_BOUND:
            for mode_name in ("forward", "oneshot"):
                mode = modes[mode_name]
                seconds = _seconds(mode, BASE)
                if seconds and mode["bound"] == "bytes" and mode["limit_seconds"] > 1e-4:
                    yield Verdict("memory-bound x byte limit", f"{where} {mode_name}",
                                  seconds / mode["limit_seconds"], 1.3)


def report(doc: dict) -> str:
    """The verdicts as a table, with a count of those met."""
    found = list(verdicts(doc))
    met = sum(v.met is True for v in found)
    lines = [f"# targets: {met} of {len(found)} met",
             f"{'target':<34} {'case':<22} {'ratio':>7}    {'bound':<5} {'':<7} detail"]
    lines += [v.line() for v in found]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks.targets RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
