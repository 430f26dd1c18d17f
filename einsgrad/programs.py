"""Index-notation programs: sums of products of named tensors, differentiated to any order.

A program is one assignment in Einstein notation::

    Y[i,j] = X[i,k] * W[j,k] + b[j]

Indices on the left are kept, every other index of a term is summed over that term, and a term
that lacks a left index is broadcast along it (``b[j]`` above). A term is an optional numeric
coefficient times a product of named tensors; the builtin ``delta[p,q]`` is the Kronecker delta.
Written as one formula, with ``O`` the output indices and ``L_T`` the indices of term ``T``::

    Y[O] = Σ_T  c_T  Σ_{L_T \\ O}  Π_{F ∈ T}  F[L_F]

Everything here is symbolic and frozen: :class:`Program` is a value over the terms of
:mod:`einsgrad.algebra`, derivation returns new programs, and evaluation
(:mod:`einsgrad.program_evaluation`) maps each product to one einsum compiled by
:func:`einsgrad.compile`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from typing import Iterator

from .algebra import (DELTA, Delta, Factor, Fresh, Term, decimal, delta_classes, fresh_indices, fresh_name,
                      internal_summed, simplify)
from .derivation import Derivation, differentiate
from .errors import EinsumSpecError
from .program_evaluation import Evaluation
from .program_explanation import ProgramExplanation, check_style, explain_program

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<punct>[\[\],*+\-=])")
MAX_PLACES = 300
"""A coefficient has at most this many digits after the decimal point and is below
``10**MAX_PLACES`` in magnitude, so that it prints exactly as a decimal, reads back as itself,
and is a normal float64 (between 1e-300 and 1e300) when a program runs. A number, a term's
product of numbers (checked as it grows, factor by factor) or a merged coefficient out of that
range is refused with an EinsumSpecError."""


@dataclass(frozen=True)
class Program:
    """``output_name[output_indices] = Σ terms``, in canonical form (see :func:`program`).

    ``witnesses`` are factors that print nowhere: tensors whose axes give the sizes of output
    indices that no term has (the gradient of ``f = x[i] * y[j]`` by ``x`` is ``g[i] = y[j]``,
    and ``i`` has the size of ``x``). ``accepts`` lists every tensor the program may be given
    with its rank: its own and those of the program it was derived from, so that derivatives
    by a tensor that has dropped out are zero rather than an error. Neither takes part in
    equality. :attr:`cotangent` names the tensor ``∂L/∂Y`` that the gradients of an indexed
    output ``Y`` take. A derived program keeps its :class:`~einsgrad.derivation.Derivation`
    (every step of the product rule), which :meth:`explain` renders.
    """

    output_name: str
    output_indices: tuple[str, ...]
    terms: tuple[Term, ...]
    witnesses: tuple[Factor, ...] = field(default=(), compare=False, repr=False)
    accepts: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)
    derivation: Derivation | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        left = str(Factor(self.output_name, self.output_indices))
        zero = _zero_text(self.output_indices, self.terms, self.witnesses)
        if not self.terms:
            return f"{left} = {zero}"
        parts = []
        for n, term in enumerate(self.terms):
            negative = term.coefficient < 0
            body = _term_text(abs(term.coefficient), term.factors)
            if n == 0:
                parts.append(("-" if negative else "") + body)
            else:
                parts.append((" - " if negative else " + ") + body)
        if zero != "0":
            parts.append(" + " + zero)
        return f"{left} = {''.join(parts)}"

    def __repr__(self) -> str:
        return f"einsgrad.program({str(self)!r})"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The tensors the program reads, in order of first appearance (``delta`` excluded)."""
        return tuple(dict.fromkeys(f.name for t in self.terms for f in t.factors if not f.is_delta))

    # -- derivation ----------------------------------------------------------------------

    def grad(self, name: str, *, out: str | None = None, indices=None) -> "Program":
        """The gradient of a scalar loss by tensor ``name``, as a program.

        ``dX[x] = Σ_T Σ_{p: F_p = X} c_T dY[O] Π_{q≠p} F_q Π_t δ(x_t, L_{p,t})``: the sum over
        every occurrence of ``X`` of the other factors times the cotangent ``dY``. For a scalar
        output the cotangent is 1 and the result is named ``g``; otherwise the cotangent is an
        input named ``d`` + the output's name and the result is ``d`` + ``name``; a default
        name a tensor already has is made fresh (``g1``, ``g2``, ...). The result's indices are
        those of the first occurrence of ``name``. ``out=`` and ``indices=`` (a tuple of index
        names) are checked as a program's left side is: a new tensor name and one distinct index
        name per axis of ``name``.
        """
        rank = self._rank(name)
        out = self._new_name(out, "d" + name if self.cotangent else "g", "the result",
                             [self.cotangent] if self.cotangent else [])
        xs = (self._wrt_indices(name, ()) if indices is None else
              _left_side(out, indices, "the gradient's name and indices", rank))
        return self._gradient(name, out, xs)

    @property
    def cotangent(self) -> str | None:
        """The name of the cotangent ``∂L/∂Y`` that the gradients of a program with indexed
        output ``Y`` take: ``d`` + ``Y``, made fresh if a tensor has it; None for a scalar.

        >>> program("Y[i,j] = X[i,k] * W[j,k]").cotangent
        'dY'
        """
        if not self.output_indices:
            return None
        return fresh_name("d" + self.output_name, set(dict(self.accepts)))

    def jacobian(self, name: str, *, out: str | None = None) -> "Program":
        """``J[O, x] = ∂Y[O]/∂X[x]``: the output's indices, then fresh ones for ``name``.

        Each occurrence of ``X`` is replaced by Kronecker deltas tying it to ``x``; deltas on a
        summed index are contracted, the others stay (``∂X[i]/∂X[j] = delta[i,j]``). The result
        is named ``out``, by default ``J`` (made fresh if a tensor has it).
        """
        self._rank(name)
        out = self._new_name(out, "J", "the Jacobian")
        xs = self._wrt_indices(name, self.output_indices)
        derivation = differentiate(self.terms, self.output_indices, name, cotangent=None, jacobian=True,
                            result_indices=self.output_indices + xs, names={self.output_name})
        return _derived(out, derivation, _witnesses(self.output_indices, self.terms, self.witnesses)
                        + (Factor(name, xs),), self.accepts, source=self)

    def hessian(self, name: str, other: str | None = None, *, out: str | None = None) -> "Program":
        """``H[x, z] = ∂²f/∂X[x]∂Z[z]`` of a scalar program (``Z`` is ``other``, default ``X``).

        The Jacobian of :meth:`grad`, named ``out`` (default ``H``, made fresh if a tensor has
        it): ``q = program("f = x[i] * A[i,j] * x[j]")`` gives ``q.hessian("x")`` =
        ``H[i,j] = A[i,j] + A[j,i]``.
        """
        self._require_scalar("hessian")
        self._rank(name)
        out = self._new_name(out, "H", "the Hessian")
        return self._gradient(name, "#g", self._wrt_indices(name, ())).jacobian(other or name, out=out)

    def hvp(self, name: str, v: str | None = None, *, out: str | None = None) -> "Program":
        """The Hessian-vector product ``Hv[x] = Σ_z H[x,z] v[z]`` without forming ``H``.

        It is the gradient of the scalar ``Σ_x g[x] v[x]`` (``g`` the gradient by ``name``),
        so each term is a product of the inputs with ``v``, contracted along an optimized path.
        ``v`` (default ``v``) is a new input with the shape of ``name``; the result is named
        ``out`` (default ``Hv``); defaults a tensor already has are made fresh.
        """
        self._require_scalar("hvp")
        self._rank(name)
        v = self._new_name(v, "v", "the vector")
        out = self._new_name(out, "Hv", "the result", {v})
        g = self._gradient(name, "#g", self._wrt_indices(name, ()))
        vector = Factor(v, g.output_indices)
        directional = _build("#s", (), [Term(t.coefficient, t.factors + (vector,)) for t in g.terms],
                             (), g._accepting((vector,)), source=self)
        return directional._gradient(name, out, g.output_indices)

    def explain(self, name: str | None = None, *, style: str = "index") -> ProgramExplanation:
        """The gradient by ``name`` (every input when None) derived step by step: the sums
        written out, the chain rule, the product rule over each occurrence as Kronecker
        deltas, the deltas contracted, and the result with its einsums and matrix form.

        ``style="hessian"`` (scalar programs) follows each gradient with the Hessian derived
        the same way, as the Jacobian of the gradient. Returns a
        :class:`~einsgrad.program_explanation.ProgramExplanation`: ``str()`` is plain text,
        ``.latex()`` LaTeX, and Jupyter shows it as math.

        >>> print(program("f = x[i] * A[i,j] * x[j]").explain("x").gradients[0].matrix_form)
        g = A x + Aᵀ x
        """
        check_style(style)
        if style == "hessian":
            self._require_scalar("style='hessian'")
        names = self.inputs if name is None else (name,)
        grads = tuple(self.grad(n) for n in names)  # refuses unknown names
        hessians = tuple(g.jacobian(n, out=self._new_name(None, "H", "the Hessian"))  # as hessian(n)
                         for n, g in zip(names, grads)) if style == "hessian" else ()
        return explain_program(self, style, names, grads, hessians)

    # -- evaluation ----------------------------------------------------------------------

    def __call__(self, /, *args, **arrays):
        """Evaluates the program: ``prog(X=..., W=..., b=...)``.

        Tensors are given by keyword only (a derived program's inputs are in no order a
        reader could guess); a keyword must name a tensor the program accepts (its own, or those
        of the program it was derived from), so that a typo is an error, not ignored. Each
        distinct product is one einsum compiled by :func:`einsgrad.compile` (products equal up
        to index renaming run once). A scalar output is returned as a numpy scalar.
        """
        accepts = dict(self.accepts)
        unknown = [k for k in arrays if k not in accepts]
        if args or unknown:
            takes = ", ".join(f"{n}=" for n in accepts) or "nothing"
            raise EinsumSpecError(
                (f"a program takes its tensors by keyword, got {len(args)} positional "
                 f"argument(s)" if args else
                 f"{', '.join(map(repr, unknown))}: not a tensor of the program") +
                f"; it takes {takes}", str(self))
        return self._plan.run(self, arrays)

    @cached_property
    def _plan(self) -> Evaluation:
        return Evaluation.of(self)

    # -- checks --------------------------------------------------------------------------

    def _gradient(self, name: str, out: str, xs: tuple[str, ...]) -> "Program":
        """:meth:`grad` with checked (or internal) names."""
        derivation = differentiate(self.terms, self.output_indices, name, cotangent=self.cotangent,
                            result_indices=xs, names={self.output_name})
        new = (Factor(self.cotangent, self.output_indices),) if self.cotangent else ()
        return _derived(out, derivation, (Factor(name, xs),), self._accepting(new), source=self)

    def _accepting(self, new=()) -> tuple[tuple[str, int], ...]:
        """What a program derived from this one accepts: this one's inputs and ``new``."""
        return tuple(dict([*self.accepts, *((f.name, len(f.indices)) for f in new)]).items())

    def _rank(self, name) -> int:
        """The rank of tensor ``name``, which a derivative may be taken by."""
        ranks = dict(self.accepts)
        if not isinstance(name, str) or name == DELTA or name not in ranks:
            raise EinsumSpecError(
                f"cannot differentiate by {name!r}: it is not a tensor of the program; its "
                f"tensors are {', '.join(ranks) or 'none'}", str(self))
        return ranks[name]

    def _wrt_indices(self, name, taken) -> tuple[str, ...]:
        """Indices for a derivative by ``name``: those of its first occurrence (renamed where
        taken or repeated); a tensor that dropped out gets canonical ones."""
        first = next((f for t in self.terms for f in t.factors if f.name == name), None)
        if first is None:
            return fresh_indices([None] * self._rank(name), taken)
        return fresh_indices(first.indices, taken)

    def _new_name(self, name, default: str, what: str, also=()) -> str:
        """A checked name for a new tensor: ``name``, or ``default`` made fresh."""
        taken = {*dict(self.accepts), *also}
        if name is None:
            return fresh_name(default, taken)
        _left_side(name, (), f"{what}'s name")
        self._check_new_name(name, what, taken)
        return name

    def _check_new_name(self, name, what, taken):
        if name in taken:
            raise EinsumSpecError(f"{what} would be named {name!r}, which the program already uses; "
                                  f"rename that tensor or choose another name", str(self))

    def _require_scalar(self, what):
        if self.output_indices:
            raise EinsumSpecError(f"{what} needs a scalar program, but the output "
                                  f"{self.output_name} has indices", str(self))


def program(text: str) -> Program:
    """Parses ``OUT[i,...] = term (+|- term)*`` into a canonical :class:`Program`.

    A term is an optional number (``2*``, ``0.5*``, a leading ``-``) and tensors joined by
    ``*``; names and indices are identifiers, a scalar has no brackets. Like terms are merged and
    indices renamed canonically (output ``i, j, k, ...`` in order, then summed indices by first
    appearance), so programs differing only by index names are equal and print the same.

    >>> print(program("Y[b,o] = X[b,f] * W[o,f] + bias[o]"))
    Y[i,j] = X[i,k] * W[j,k] + bias[j]
    """
    if not isinstance(text, str):
        raise EinsumSpecError(f"a program is a string, got {type(text).__name__}")
    return _Parser(text).program()


# -- the parser --------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens; every error points at a column of the text."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = list(_tokens(text))
        self.at = 0
        self.ranks: dict[str, tuple[int, int]] = {}

    def error(self, reason, column) -> EinsumSpecError:
        return EinsumSpecError(reason, self.text, column)

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "", len(self.text))

    def take(self, kind, what) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] != kind and token[1] != kind:
            found = "the end of the program" if token[0] == "end" else repr(token[1])
            raise self.error(f"expected {what}, found {found}", token[2])
        self.at += 1
        return token

    def left_side(self) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
        """The output's name, its indices and their columns: the one rule for a left side
        (also for the names and indices given to derivations, see :func:`_left_side`)."""
        _, name, col = self.take("name", "the output tensor's name")
        if name == DELTA:
            raise self.error("the output cannot be named 'delta', the builtin Kronecker delta", col)
        out, out_cols = self.indices()
        for n, index in enumerate(out):
            if index in out[:n]:
                raise self.error(f"index {index!r} is repeated on the left: each output index "
                                 f"names one axis", out_cols[n])
        return name, out, out_cols

    def program(self) -> Program:
        name, out, out_cols = self.left_side()
        self.take("=", "'=' after the output")
        terms, sign = [], Fraction(1)
        if self.peek()[1] in ("+", "-"):
            sign = Fraction(-1 if self.take("punct", "")[1] == "-" else 1)
        while True:
            terms.append(self.term(sign, name))
            kind, value, col = self.peek()
            if kind == "end":
                break
            if value not in ("+", "-"):
                raise self.error(f"expected '*', '+', '-' or the end, found {value!r}", col)
            self.at += 1
            sign = Fraction(-1 if value == "-" else 1)
        self.check_sizes_known(out, out_cols, terms)
        terms = [t for t, _ in terms]
        output = fresh_indices([None] * len(out), ())
        canonical = [internal_summed(t, set(out)).renamed(dict(zip(out, output))) for t in terms]
        return _build(name, output, canonical, (), source=self.text)

    def indices(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        if self.peek()[1] != "[":
            return (), ()
        _, _, open_col = self.take("[", "'['")
        if self.peek()[1] == "]":
            raise self.error("empty brackets: a scalar is written without them", open_col)
        names, cols = [], []
        while True:
            _, index, col = self.take("name", "an index name")
            names.append(index)
            cols.append(col)
            if self.peek()[1] == "]":
                self.at += 1
                return tuple(names), tuple(cols)
            self.take(",", "',' or ']'")

    def term(self, sign: Fraction, output: str) -> tuple[Term, int]:
        """A term and the column it starts at."""
        coefficient, factors, start = sign, [], self.peek()[2]
        while True:
            kind, value, col = self.peek()
            if kind == "number":
                self.at += 1
                whole, part = _digits(value)
                problem = _range_problem(len(whole), len(part))
                if problem:
                    raise self.error(f"this number {problem}", col)
                coefficient *= Fraction(int(whole + part or "0"), 10 ** len(part))
                problem = _coefficient_problem(coefficient)
                if problem:  # checked as it grows, so that no product gets long
                    raise self.error(f"the coefficient of this term (the product of its numbers "
                                     f"up to here) {problem}", col)
            elif kind == "name":
                self.at += 1
                if value == output:
                    raise self.error(f"the output {value!r} is used on the right: a program "
                                     f"is not recursive", col)
                indices, _ = self.indices()
                self.check_rank(value, len(indices), col)
                factors.append(Delta(*indices) if value == DELTA else Factor(value, indices))
            else:
                found = "the end of the program" if kind == "end" else repr(value)
                raise self.error(f"expected a term (a number or a tensor), found {found}", col)
            if self.peek()[1] != "*":
                return Term(coefficient, tuple(factors)), start
            self.at += 1

    def check_rank(self, name, rank, col):
        if name == DELTA and rank != 2:
            raise self.error(f"the Kronecker delta takes two indices, delta[p,q], not {rank}", col)
        first = self.ranks.setdefault(name, (rank, col))
        if first[0] != rank:
            raise self.error(f"tensor {name!r} has {rank} index(es) here but {first[0]} at "
                             f"column {first[1]}: a tensor has one rank", col)

    def check_sizes_known(self, out, out_cols, terms):
        """Every index must get its size from a tensor: an output index from some term, a
        summed index from its own term (through deltas, possibly)."""
        unsized = _unsized(out, [t for t, _ in terms])
        for index, col in zip(out, out_cols):
            if index in unsized:
                raise self.error(f"output index {index!r} appears in no tensor on the right, so "
                                 f"its size is unknown", col)
        for term, start in terms:
            sized = set(out) | term.tensor_indices()
            classes = delta_classes(term.factors)
            for index in term.indices():
                if not classes.get(index, {index}) & sized:
                    raise self.error(f"index {index!r} appears only in deltas and is summed, so "
                                     f"its size is unknown", start)


def _left_side(name, indices, what: str, rank: int | None = None) -> tuple[str, ...]:
    """``indices`` after checking ``name[indices]`` as the parser checks a program's left
    side (a tensor name, distinct index names), and that there are ``rank`` of them."""
    if (not isinstance(name, str) or not isinstance(indices, (tuple, list))
            or not all(isinstance(i, str) for i in indices)):
        raise EinsumSpecError(f"{what}: expected a name and a tuple of index names (strings), "
                              f"got {name!r} and {indices!r}")
    indices = tuple(indices)
    text = name + (f"[{','.join(indices)}]" if indices else "")
    try:
        parser = _Parser(text)
        read = parser.left_side()[:2]
        parser.take("end", "the end of the left side")
    except EinsumSpecError as e:
        raise EinsumSpecError(f"{what} must be valid on a program's left side: {e.reason}",
                              text, e.column) from None
    starts = list(itertools.accumulate((len(i) + 1 for i in indices), initial=len(name) + 1))
    for given, start in zip((name, *indices), (0, *starts)):
        if not _IDENTIFIER.match(given):  # "p,q" or " p" read as other names
            raise EinsumSpecError(f"{what} must be valid on a program's left side: {given!r} is "
                                  f"not one identifier", text, start)
    assert read == (name, indices)
    if rank is not None and len(indices) != rank:
        raise EinsumSpecError(f"{what}: the tensor has {rank} axes, so the gradient takes {rank} "
                              f"index name(s), got {len(indices)}", text, len(name))
    return indices


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    col = 0
    while col < len(text):
        if text[col].isspace():
            col += 1
            continue
        match = _TOKEN.match(text, col)
        if match is None:
            raise EinsumSpecError(f"character {text[col]!r} is not allowed in a program: names are "
                                  f"identifiers, numbers are decimals, operators are * + - =",
                                  text, col)
        kind = match.lastgroup
        yield kind, match.group(), col
        col = match.end()


def _digits(literal: str) -> tuple[str, str]:
    """A decimal literal's digits before and after the point, without leading and trailing
    zeros: what :func:`_range_problem` bounds before any is converted to an int."""
    whole, _, part = literal.partition(".")
    return whole.lstrip("0"), part.rstrip("0")


def _range_problem(whole_digits: int, places: int) -> str | None:
    """Why a decimal with these many digits before and after the point is no coefficient
    (see :data:`MAX_PLACES`), or None."""
    if whole_digits > MAX_PLACES:
        return f"reaches 10^{MAX_PLACES}; a coefficient is below that, so that it is a float64"
    if places > MAX_PLACES:
        return (f"has {places} digits after the decimal point; a coefficient has at most "
                f"{MAX_PLACES}, so that it prints exactly and is a float64")
    return None


def _coefficient_problem(value: Fraction) -> str | None:
    """Why ``value`` (a sum or product of coefficients) is no coefficient, or None; one
    comparison and one remainder, whatever its size."""
    bound = 10 ** MAX_PLACES
    if abs(value) >= bound:
        return _range_problem(MAX_PLACES + 1, 0)
    if bound % value.denominator:
        return (f"has more than {MAX_PLACES} digits after the decimal point; a coefficient has at "
                f"most {MAX_PLACES}, so that it prints exactly and is a float64")
    return None


# -- canonical form ----------------------------------------------------------------------


def _witnesses(output, terms, known=()) -> tuple[Factor, ...]:
    found = list(known)
    candidates = [f for t in terms for f in t.factors if not f.is_delta] + list(known)
    for index in output:
        f = next((f for f in candidates if index in f.indices), None)
        if f is not None and not any(index in w.indices for w in found):
            found.append(Factor(f.name, tuple(i if i == index else "" for i in f.indices)))
    return tuple(found)


def _build(name, output, terms, witnesses, accepts=(), source=None) -> Program:
    """The canonical program; the witnesses keep the sizes of output indices that the
    simplified terms may no longer have (cancelled terms, contracted tensors). ``source``
    (a text or the program derived from) is shown when merged terms leave the coefficients'
    range."""
    output = tuple(output)
    return _canonical(name, output, terms, simplify(output, terms), _witnesses(output, terms, witnesses),
                      accepts, source)


def _derived(name, derivation: Derivation, witnesses, accepts, source) -> Program:
    """The program of a derivation's result, which keeps it."""
    output = derivation.result_indices
    program = _canonical(name, output, derivation.merged, derivation.terms,
                         _witnesses(output, derivation.merged, witnesses), accepts, source)
    return replace(program, derivation=derivation)


def _canonical(name, output, terms, simplified, witnesses, accepts, source) -> Program:
    """``simplified`` (the canonical form of ``terms``) as a program that accepts ``accepts`` and
    every tensor of ``terms``, cancelled or not, its coefficients checked."""
    ranks = dict(accepts)
    ranks.update((f.name, len(f.indices)) for t in terms for f in t.factors if not f.is_delta)
    for term in simplified:
        problem = _coefficient_problem(term.coefficient)
        if problem:
            raise EinsumSpecError(f"like terms merge into a coefficient that {problem}",
                                  None if source is None else str(source))
    return Program(name, output, simplified, witnesses, tuple(ranks.items()))


def _unsized(output, terms) -> list[str]:
    """Output indices that no term gives a size: on no tensor of any term (through that
    term's deltas), nor tied by a delta to an output index that is sized."""
    sized = _tied(_sized(output, terms), _ties(terms), set(output))
    return [o for o in output if o not in sized]


def _sized(output, terms) -> set[str]:
    """Output indices on a tensor of some term, through that term's deltas; each term's
    classes and tensors are found once, so this is linear in the terms' size."""
    sized = set()
    for t in terms:
        classes, held = delta_classes(t.factors), t.tensor_indices()
        sized.update(o for o in output if classes.get(o, {o}) & held)
    return sized


def _ties(terms) -> list[tuple[str, str]]:
    return [f.indices for t in terms for f in t.factors if f.is_delta]


def _tied(sized: set, ties, output: set) -> set[str]:
    """``sized`` and the output indices deltas tie to them."""
    sized, grew = set(sized), True
    while grew:
        grew = False
        for p, q in ties:
            if (p in sized) != (q in sized) and p in output and q in output:
                sized |= {p, q}
                grew = True
    return sized


def _zero_text(output, terms, witnesses) -> str:
    """``0``, times the tensors that give their sizes to the output indices no term sizes
    (blank indices named afresh), so that the printed program reads back as itself:
    ``Y[i] = x[i] - x[i]`` prints ``Y[i] = 0 * x[i]``, ``Y[i] = x[i] - x[i] + s`` prints
    ``Y[i] = s + 0 * x[i]``."""
    kept = set(output)
    fresh = Fresh(kept)
    sized, ties = _sized(output, terms), _ties(terms)
    holder = {}
    for w in reversed(witnesses):  # the first witness that holds each index
        holder.update(dict.fromkeys(w.indices, w))
    chosen: list[Factor] = []
    for index in _unsized(output, terms):
        if ties and index in _tied(sized, ties, kept):
            continue  # a delta ties it to an index a chosen tensor sizes
        w = holder.get(index)
        if w is not None:
            chosen.append(Factor(w.name, tuple(i if i == index else fresh.take() for i in w.indices)))
            sized.add(index)
    return "0 * " + " * ".join(map(str, chosen)) if chosen else "0"


def _term_text(magnitude: Fraction, factors) -> str:
    body = " * ".join(map(str, factors))
    if not factors:
        return decimal(magnitude)
    return body if magnitude == 1 else f"{decimal(magnitude)} * {body}"
