"""Peak memory of a network's forward and of its forward + all gradients, a fresh process each.

:func:`peaks` is one of :data:`benchmarks.networks.MEASURES`. Each figure is taken by
:func:`benchmarks.memory.peak_above_baseline` in its own process
(``python -m benchmarks.network_memory SYSTEM NETWORK``): the operands (and the cotangent)
are made first, the call runs once to compile, and the figure is the peak resident memory of
the next call above what the process held before it, in MiB, its results included (the
gradients are the operands' size). All systems follow one tree, opt_einsum's path for the
row's optimizer, under glibc's default malloc settings (a user's process's, not the timings'
:data:`benchmarks.malloc.MALLOC`):

* ``forward``: einsgrad's forward; ``vjp``: einsgrad's one-shot vjp (forward and every
  gradient);
* ``torch forward``: ``opt_einsum.contract(..., backend="torch")`` along the path on tensors
  that require gradients (the graph autograd keeps for the backward is part of it);
  ``torch vjp``: that forward and ``torch.autograd.grad`` of every operand. Networks of at most
  :data:`TORCH_LIMIT` tensors, where torch is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

from benchmarks.malloc import MALLOC
from benchmarks.memory import in_fresh_process, peak_above_baseline
from benchmarks.network_cases import Network

SYSTEMS = ("forward", "vjp", "torch forward", "torch vjp")
TORCH_LIMIT = 200  # tensors: the brief's bound for torch autograd's figures


def operand_mib(network: Network, itemsize: int = 8) -> float:
    """The operands' MiB (float64): the baseline the peaks are above, and the gradients' size."""
    size = dict(network.sizes)
    return sum(math.prod(size[l] for l in term) for term in network.terms) * itemsize / 2**20


def peaks(network: Network, row) -> dict:
    """``peak <system>`` (MiB, or the error's last line) for each of :data:`SYSTEMS` that
    applies, and ``operands`` (MiB); nothing for rows without timings (``--compile-only``,
    or a network whose gradients failed their check)."""
    if row.forward is None:
        return {}
    systems = [s for s in SYSTEMS if not s.startswith("torch")
               or (network.tensors <= TORCH_LIMIT and importlib.util.find_spec("torch") is not None)]
    arguments = json.dumps({"family": network.family, "name": network.name, "terms": network.terms,
                            "output": network.output, "sizes": network.sizes, "optimize": row.optimize})
    figures = {f"peak {s}": in_fresh_process(["-m", "benchmarks.network_memory", s, arguments], timeout=600,
                                             unset=MALLOC) for s in systems}
    return {"operands": operand_mib(network), **figures}


def _call(system: str, network: Network, optimize: str):
    """The call whose peak ``system`` measures, its operands and cotangent made already."""
    import numpy as np
    import opt_einsum

    path, _ = opt_einsum.contract_path(network.spec, *network.shapes, shapes=True, optimize=optimize)
    operands = network.operands()
    size = dict(network.sizes)
    cotangent = np.random.default_rng(1).standard_normal(tuple(size[l] for l in network.output))
    if system.startswith("torch"):
        import torch

        xs = [torch.from_numpy(x).requires_grad_() for x in operands]
        g = torch.from_numpy(cotangent)

        def forward():
            return opt_einsum.contract(network.spec, *xs, optimize=list(path), backend="torch")

        return forward if system == "torch forward" else lambda: torch.autograd.grad(forward(), xs, g)
    import einsgrad

    e = einsgrad.Einsum(network.spec, optimize=list(path))
    return (lambda: e(*operands)) if system == "forward" else lambda: e.vjp(cotangent, *operands)


def _child(system: str, arguments: str) -> float:
    given = json.loads(arguments)
    network = Network(given["family"], given["name"], tuple(map(tuple, given["terms"])), tuple(given["output"]),
                      tuple((label, int(n)) for label, n in given["sizes"]))
    return peak_above_baseline(_call(system, network, given["optimize"]))


if __name__ == "__main__":
    assert len(sys.argv) == 3 and sys.argv[1] in SYSTEMS, "usage: network_memory SYSTEM NETWORK-JSON"
    print(json.dumps(_child(sys.argv[1], sys.argv[2])))
