"""einsgrad: derive, read and run the gradients of einsum contractions.

>>> import einsgrad
>>> einsgrad.grad_spec("ik,jk->ij", wrt=1)   # dW of Y = X Wᵀ is Gᵀ X
'ij,ik->jk'
"""

from __future__ import annotations

from typing import Mapping

from . import derive
from .calls import as_call, as_einsum, is_spec
from .compiled import Einsum
from .errors import EinsumSpecError
from .explanation import Explanation, explain
from .matrix_notation import matrix
from .program_explanation import ProgramExplanation
from .programs import Program, program
from .shapes import bind, check_shapes
from .spec import looks_interleaved, normalize_sizes, parse
from .stripped import LogGrad, Stripped
from .tied import Tied

__all__ = ["Einsum", "EinsumSpecError", "Explanation", "LogGrad", "Program", "ProgramExplanation",
           "Stripped", "Tied", "compile", "einsum", "explain", "grad_spec", "jacobian_spec", "jvp_spec",
           "matrix", "program", "vjp"]
__version__ = "0.1.0"


def grad_spec(spec: str, wrt: int, sizes: Mapping[str, int] | None = None) -> str:
    """The backward spec of operand ``wrt``: the cotangent first, then the other operands.

    Deterministic, in the extended notation (see README): ``"ij->i"`` gives ``"i->ij"``
    (a broadcast) and ``"ii->i"`` gives ``"i->ii"`` (values on the diagonal).
    """
    return str(derive.backward(parse(spec, sizes), wrt))


def jvp_spec(spec: str, wrt=None, sizes: Mapping[str, int] | None = None):
    """The terms of forward mode: ``dY = Σ_k einsum(jvp_spec(spec, k), dX_k, *other operands)``.

    Each term is the forward spec with operand ``k``'s tangent moved first, the others in
    order, so it reads as :func:`grad_spec` does (the cotangent first) and shows that the two
    are transposes: swap the first operand and the output of one and you have the other.
    ``wrt`` as in :func:`vjp`: one index gives one spec, None (every operand) or a sequence a
    tuple of them, the terms of the sum.

    >>> jvp_spec("ik,jk->ij")                  # dY = dX Wᵀ + X dWᵀ
    ('ik,jk->ij', 'jk,ik->ij')
    >>> grad_spec("ik,jk->ij", wrt=1)          # its transpose: dW = Gᵀ X
    'ij,ik->jk'
    """
    parsed = parse(spec, sizes)
    indices, single = derive.check_wrts(parsed, wrt)
    terms = tuple(str(derive.tangent(parsed, k)) for k in indices)
    return terms[0] if single else terms


def jacobian_spec(spec: str, wrt: int, shapes=None, sizes: Mapping[str, int] | None = None) -> str:
    """The full Jacobian ``∂Y/∂X_wrt`` in the extended notation: the other operands, and the
    output's labels followed by operand ``wrt``'s (a label in both is a Kronecker delta).

    >>> jacobian_spec("ik,jk->ij", wrt=1)      # ∂Y_ij/∂W_pq = X_iq δ_jp
    'ik->ijjk'

    With ``shapes``, the spec is bound first: batch dimensions of ``...`` and size-1
    broadcasts get labels of their own (needed when both the output and the operand hold ``...``).
    """
    parsed = parse(spec, sizes)
    if shapes is not None:
        parsed = bind(parsed, check_shapes(shapes, len(parsed.inputs)), dict(normalize_sizes(parsed, sizes))).spec
    return str(derive.jacobian(parsed, wrt))


def compile(spec: str, shapes=None, *, sizes=None, optimize="auto", memory_limit=None,
            cache_size: int = 128, tied=None, conjugate=None, joint: bool = False) -> Einsum | Tied:
    """Parses ``spec`` once and returns an :class:`Einsum` (forward, vjp, pullback, source);
    with ``tied`` or ``conjugate``, a :class:`Tied` over it (operands that read another's
    tensor, or read it conjugated: one gradient per tensor)."""
    compiled = Einsum(spec, shapes=shapes, sizes=sizes, optimize=optimize,
                      memory_limit=memory_limit, cache_size=cache_size, joint=joint)
    if tied is None and conjugate is None:
        return compiled
    return Tied(compiled, tied=tied, conjugate=() if conjugate is None else conjugate)


def einsum(*args):
    """``numpy.einsum`` through einsgrad's planner (compiled objects cached per spec): a spec
    then the operands, or the interleaved form ``einsum(x0, [0, 1], x1, [1, 2], [0, 2])``."""
    compiled, operands = as_call(args)
    return compiled(*operands)


def vjp(spec, cotangent, *operands, wrt=None):
    """One-shot gradients of ``spec``; see :meth:`Einsum.vjp`. In the interleaved form the
    cotangent comes first: ``vjp(g, x0, [0, 1], x1, [1, 2], [0, 2])``."""
    if is_spec(spec) or not looks_interleaved((cotangent, *operands)):
        return as_einsum(spec).vjp(cotangent, *operands, wrt=wrt)
    compiled, operands = as_call((cotangent, *operands))
    return compiled.vjp(spec, *operands, wrt=wrt)
