"""Spec, wrt -> the backward spec. Pure symbols: no shapes, no arrays.

Write the forward in the extended notation as one sum over every label ``a``:

    Y[y] = Σ_a  Π_t δ(y_t, a(O_t))  Π_m X_m[a(L_m)]

(``O`` the output labels, ``L_m`` the labels of operand ``m``). Differentiating by
``X_k[x]`` turns the factor ``X_k[a(L_k)]`` into ``Π_t δ(a(L_k,t), x_t)``, and contracting
with the cotangent ``G[y]`` removes the output deltas:

    dX_k[x] = Σ_a  G[a(O)]  Π_{m≠k} X_m[a(L_m)]  Π_t δ(a(L_k,t), x_t)

which is again an einsum in the same notation: operands ``O, L_m (m ≠ k)``, output ``L_k``.
So the rule is a permutation of terms, and three phenomena fall out of it by themselves; the
functions below name them, for explanations and tests.

Forward mode is the same sum differentiated along tangents ``T_k`` instead: the product rule
gives ``dY = Σ_k einsum(X_0, ..., T_k, ..., X_n)``, one term per operand, each the forward
spec itself with operand ``k``'s tangent in its place (:func:`tangent`).
"""

from __future__ import annotations

import numbers
from collections import Counter
from typing import NamedTuple

from .errors import EinsumSpecError
from .spec import ELLIPSIS, Labels, Spec


def check_wrt(spec: Spec, wrt) -> int:
    """``wrt`` as a valid operand index (negative counts from the end)."""
    n = len(spec.inputs)
    if not hasattr(wrt, "__index__") or isinstance(wrt, bool):
        raise EinsumSpecError(f"wrt must be an operand index, got {wrt!r}")
    k = wrt.__index__()
    if not -n <= k < n:
        raise EinsumSpecError(f"wrt={k} is out of range: the spec {str(spec)!r} has {n} operand(s)")
    return k % n


class Wrt(NamedTuple):
    """The operands differentiated, and whether one index named them (the caller then
    returns one array, not a tuple)."""

    indices: tuple[int, ...]
    single: bool


def check_wrts(spec: Spec, wrt) -> Wrt:
    """``wrt`` (an operand index, a sequence of them, or None: every operand) as a :class:`Wrt`."""
    if wrt is None:
        return Wrt(tuple(range(len(spec.inputs))), False)
    if isinstance(wrt, numbers.Integral) and not isinstance(wrt, bool):
        return Wrt((check_wrt(spec, wrt),), True)
    try:
        if isinstance(wrt, str):
            raise TypeError
        indices = tuple(check_wrt(spec, k) for k in wrt)
    except TypeError:
        raise EinsumSpecError(f"wrt must be an operand index or a sequence of them, got {wrt!r}") from None
    if len(set(indices)) != len(indices):
        raise EinsumSpecError(f"wrt names an operand twice: {list(wrt)!r}")
    return Wrt(indices, False)


def backward(spec: Spec, wrt: int) -> Spec:
    """The spec of ``dL/dX_wrt``: operands ``(G, X_m for m != wrt)``, output ``L_wrt``.

    Example: ``Y_ij = Σ_k X_ik W_jk`` ("ik,jk->ij") gives ``dW_jk = Σ_i G_ij X_ik``
    ("ij,ik->jk"), that is ``dW = Gᵀ X``.
    """
    k = check_wrt(spec, wrt)
    others = spec.inputs[:k] + spec.inputs[k + 1:]
    return Spec.of((spec.output,) + others, spec.inputs[k])


def tangent(spec: Spec, wrt: int) -> Spec:
    """The spec of the jvp's term of operand ``wrt``: operands ``(T_wrt, X_m for m != wrt)``,
    output ``O``; the forward with the tangent moved first, as :func:`backward` puts ``G`` first.

    The two are transposes: swapping the first operand and the output of one gives the other
    (``backward(tangent(s, k), 0) == backward(s, k)``), as the vjp is the transpose of the jvp.
    Example: ``"ik,jk->ij"``, wrt 1 gives ``"jk,ik->ij"``: ``dY = X dWᵀ``.
    """
    k = check_wrt(spec, wrt)
    return Spec.of((spec.inputs[k],) + spec.inputs[:k] + spec.inputs[k + 1:], spec.output)


def surviving_deltas(spec: Spec, wrt: int) -> Labels:
    """Labels repeated in operand ``wrt``: ``∂X_ii/∂X_pq = δ_ip δ_iq`` leaves a Kronecker delta
    that nothing contracts, so the gradient is zero off that diagonal ("ii->i" gives "i->ii")."""
    counts = Counter(spec.inputs[check_wrt(spec, wrt)])
    return tuple(label for label, count in counts.items() if count > 1 and label != ELLIPSIS)


def broadcast_labels(spec: Spec, wrt: int) -> Labels:
    """Labels only operand ``wrt`` has: the forward sums them away, so the gradient is constant
    along them, a broadcast of the rest ("ij->i" gives "i->ij")."""
    k = check_wrt(spec, wrt)
    elsewhere = {l for m, term in enumerate(spec.inputs) if m != k for l in term} | set(spec.output)
    return tuple(dict.fromkeys(l for l in spec.inputs[k] if l not in elsewhere))


def summed_cotangent_labels(spec: Spec, wrt: int) -> Labels:
    """Labels of the output that operand ``wrt`` lacks: the forward broadcast ``X_wrt`` (or
    contracted it against another operand) along them, so the gradient sums ``G`` over them
    ("j->ij" gives "ij->j", the bias gradient ``db_j = Σ_i G_ij``)."""
    own = set(spec.inputs[check_wrt(spec, wrt)])
    return tuple(dict.fromkeys(l for l in spec.output if l not in own))


def jacobian(spec: Spec, wrt: int) -> Spec:
    """The full Jacobian ``∂Y/∂X_wrt`` as a spec: the other operands, output ``O + L_wrt``.

    ``∂Y[y]/∂X_k[x]`` is the forward with the factor ``X_k[L_k]`` replaced by deltas that tie
    ``x`` to ``L_k``; writing ``x`` with the labels ``L_k`` themselves makes each such delta a
    label repeated in the output (or a broadcast, for a label only ``X_k`` has). Example:
    ``"ik,jk->ij"``, wrt 1 gives ``"ik->ijjk"``: ``∂Y_ij/∂W_pq = X_iq δ_jp``. A one-operand
    forward has no other operand: its Jacobian spec takes the scalar 1 as its one operand.
    The vjp is this Jacobian contracted with ``G`` over the output's labels.
    """
    k = check_wrt(spec, wrt)
    others = spec.inputs[:k] + spec.inputs[k + 1:]
    output = spec.output + spec.inputs[k]
    if output.count(ELLIPSIS) > 1:
        raise spec.error("the Jacobian of a spec whose output and operand both hold '...' needs "
                         "the batch dimensions named: give shapes=, or write them as letters",
                         k, spec.inputs[k].index(ELLIPSIS))
    return Spec.of(others or ((),), output)
