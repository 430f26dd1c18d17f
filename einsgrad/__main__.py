"""``python -m einsgrad [SPEC]``: einsgrad at work on one spec (the linear layer by default).

Prints the backward spec of each operand, checks the gradients of random operands against
central finite differences, and shows the generated Python.
"""

from __future__ import annotations

import sys

import numpy as np

import einsgrad


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = argv[0] if argv else "ik,jk->ij"
    shapes = [tuple(int(d) for d in s.split("x")) for s in argv[1:]] or [(4, 3), (5, 3)]
    try:
        lin = einsgrad.compile(text, shapes=shapes)
    except einsgrad.EinsumSpecError as error:
        print(f"einsgrad: {error}", file=sys.stderr)
        return 2
    print(f"forward   {lin.spec}   shapes {', '.join(map(str, shapes))}")
    for k, spec in enumerate(lin.grad_specs):
        print(f"d/d x{k}    {spec}")
    rng = np.random.default_rng(0)
    operands = [rng.standard_normal(s) for s in shapes]
    y, pullback = lin.value_and_pullback(*operands)
    g = rng.standard_normal(np.shape(y))
    loss = lambda *ops: float(np.sum(g * lin(*ops)))  # noqa: E731
    worst = 0.0
    for k, grad in enumerate(pullback(g)):
        u, eps = rng.standard_normal(shapes[k]), 1e-4
        plus, minus = list(operands), list(operands)
        plus[k], minus[k] = operands[k] + eps * u, operands[k] - eps * u
        numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
        worst = max(worst, abs(numeric - float(np.sum(grad * u))) / max(1.0, abs(numeric)))
    print(f"gradients agree with central finite differences: relative error {worst:.1e}")
    print()
    print(lin.source())
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
