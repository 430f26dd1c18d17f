"""Index-notation programs: sums of products of named tensors, differentiated to any order.

A program may also be several statements, with elementwise functions, powers, quotients and
scoped sums (:mod:`einsgrad.expressions`); :meth:`Program.grad` then backpropagates through
them (:mod:`einsgrad.backprop`), and the other derivatives are for polynomial programs.

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

from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property

from .algebra import DELTA, Factor, Fresh, Term, decimal, fresh_indices, fresh_name, simplify
from .derivation import Derivation, differentiate
from .errors import EinsumSpecError
from .backprop import Backprop, Target, backpropagate, forward_value
from .backprop_explanation import explain_statements
from .expressions import Statement
from .program_evaluation import Evaluation, StepsEvaluation
from .program_steps import Elementwise, Step, lower
from .program_explanation import ProgramExplanation, check_style, explain_program
from .program_parser import (MAX_PLACES, Parsed, check_left_side, coefficient_problem, delta_ties, parse_program,
                             sized_indices, tied, unsized)

__all__ = ["MAX_PLACES", "Program", "program"]

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
    statements: tuple[Statement, ...] = ()
    backprop: Backprop | None = field(default=None, compare=False, repr=False)
    outputs: tuple[str, ...] = ()
    """The statements whose values a call returns, as a tuple, when they are several (the
    gradients by several tensors, :meth:`grad` of a list); empty: the last statement's value."""

    def __str__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        """The program as it prints, worked out once (every call's error context reads it)."""
        if self.statements:
            return "\n".join(map(str, self.statements))
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
        if self.statements:
            made = {s.name for s in self.steps}
            return tuple(dict.fromkeys(n for s in self.steps for n in s.reads() if n not in made))
        return tuple(dict.fromkeys(f.name for t in self.terms for f in t.factors if not f.is_delta))

    @cached_property
    def steps(self) -> tuple[Step, ...]:
        """A program of statements as its steps: contractions and elementwise functions
        (see :mod:`einsgrad.program_steps`); empty for a polynomial program."""
        return lower(self.statements) if self.statements else ()

    # -- derivation ----------------------------------------------------------------------

    def grad(self, name: str | list[str] | tuple[str, ...], *, out=None, indices=None) -> "Program":
        """The gradient of a scalar loss by tensor ``name``, as a program.

        ``dX[x] = Σ_T Σ_{p: F_p = X} c_T dY[O] Π_{q≠p} F_q Π_t δ(x_t, L_{p,t})``: the sum over
        every occurrence of ``X`` of the other factors times the cotangent ``dY``. For a scalar
        output the cotangent is 1 and the result is named ``g``; otherwise the cotangent is an
        input named ``d`` + the output's name and the result is ``d`` + ``name``; a default
        name a tensor already has is made fresh (``g1``, ``g2``, ...). The result's indices are
        those of the first occurrence of ``name``. ``out=`` and ``indices=`` (a tuple of index
        names) are checked as a program's left side is: a new tensor name and one distinct index
        name per axis of ``name``.

        ``name`` a list or tuple of tensors gives all their gradients by one reverse sweep, each
        cotangent computed once and shared (``out=`` then one name per tensor, default ``d`` +
        its name): a program of several outputs, whose call returns their values as a tuple in
        that order.

        >>> p = program("H[b,j] = X[b,k] * W[j,k] + c[j]; L = 0.5 * H[b,j]^2")
        >>> print(p.grad(["W", "c"]))
        H[b,j] = X[b,k] * W[j,k] + c[j]
        dW[j,k] = H[b,j] * X[b,k]
        dc[j] = H[b,j]
        """
        self._require_one_output("grad")
        if isinstance(name, (list, tuple)):
            return self._gradients(tuple(name), out, indices)
        rank = self._rank(name)
        out = self._new_name(out, "d" + name if self.cotangent or self.statements else "g", "the result",
                             ([self.cotangent] if self.cotangent else []) + [s.name for s in self.steps])
        if self.statements:
            first = self._first(name)
            xs = (fresh_indices(first.indices if first else [None] * rank, ()) if indices is None else
                  check_left_side(out, indices, "the gradient's name and indices", rank))
            backprop = backpropagate(self.steps, (Target(name, out, xs),), self.cotangent, named=self._named)
            new = (Factor(self.cotangent, self.output_indices),) if self.cotangent else ()
            return Program(out, xs, (), accepts=self._accepting(new), statements=backprop.statements,
                           backprop=backprop)
        xs = (self._wrt_indices(name, ()) if indices is None else
              check_left_side(out, indices, "the gradient's name and indices", rank))
        return self._gradient(name, out, xs)

    def _gradients(self, names: tuple[str, ...], outs, indices) -> "Program":
        """:meth:`grad` by several tensors: one reverse sweep over the statements (a polynomial
        program is one statement here), a result per tensor."""
        if not names:
            raise EinsumSpecError("grad of a list needs at least one tensor name", str(self))
        for name in names:
            self._rank(name)
        if len(set(names)) < len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise EinsumSpecError(f"grad of a list names {repeated!r} twice", str(self))
        if indices is not None:
            raise EinsumSpecError("indices= is for the gradient by one tensor; a list of tensors "
                                  "takes the first occurrence's indices of each", str(self))
        if outs is not None and (isinstance(outs, str) or len(outs) != len(names)):
            raise EinsumSpecError(f"out= for a list of {len(names)} tensors is a list of "
                                  f"{len(names)} names, got {outs!r}", str(self))
        source = self if self.statements else replace(
            _of_statements((Statement(self.output_name, self.output_indices, self.terms, self.witnesses),)),
            accepts=self.accepts)
        taken = ([self.cotangent] if self.cotangent else []) + [s.name for s in source.steps]
        targets = []
        for n, name in enumerate(names):
            out = self._new_name(None if outs is None else outs[n], "d" + name, "the result",
                                 taken + [t.out for t in targets])
            first = source._first(name)
            xs = fresh_indices(first.indices if first else [None] * self._rank(name), ())
            targets.append(Target(name, out, xs))
        backprop = backpropagate(source.steps, tuple(targets), self.cotangent, named=source._named)
        new = (Factor(self.cotangent, self.output_indices),) if self.cotangent else ()
        first = targets[0]
        return Program(first.out, first.xs, (), accepts=self._accepting(new), statements=backprop.statements,
                       backprop=backprop, outputs=tuple(t.out for t in targets))

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
        self._require_one_output("jacobian")
        rank = self._rank(name)
        if self.statements:
            out = self._new_name(out, "J", "the Jacobian", [s.name for s in self.steps])
            return self._reverse_jacobian(name, out, self._named)
        out = self._new_name(out, "J", "the Jacobian")
        xs = self._wrt_indices(name, self.output_indices)
        derivation = differentiate(self.terms, self.output_indices, name, cotangent=None, jacobian=True,
                            result_indices=self.output_indices + xs, names={self.output_name})
        return _derived(out, derivation, _witnesses(self.output_indices, self.terms, self.witnesses)
                        + (Factor(name, xs),), self.accepts, source=self)

    def _reverse_jacobian(self, name: str, out: str, named, simplified: bool | None = None,
                          sized_by: str | None = None) -> "Program":
        """:meth:`jacobian` of a program of statements: reverse mode seeded with ``Π δ(o, o′)``,
        the output's indices kept; the rest as :func:`backpropagate` takes them."""
        first = self._first(name)
        names = fresh_indices([*self.output_indices, *(first.indices if first else [None] * self._rank(name))], ())
        kept, xs = names[:len(self.output_indices)], names[len(self.output_indices):]
        backprop = backpropagate(self.steps, (Target(name, out, xs),), None, kept=kept, named=named,
                                 simplified=simplified, sized_by=sized_by)
        return Program(out, names, (), accepts=self.accepts, statements=backprop.statements, backprop=backprop)

    def hessian(self, name: str, other: str | None = None, *, out: str | None = None) -> "Program":
        """``H[x, z] = ∂²f/∂X[x]∂Z[z]`` of a scalar program (``Z`` is ``other``, default ``X``).

        The Jacobian of :meth:`grad`, named ``out`` (default ``H``, made fresh if a tensor has
        it): ``q = program("f = x[i] * A[i,j] * x[j]")`` gives ``q.hessian("x")`` =
        ``H[i,j] = A[i,j] + A[j,i]``. A program of statements has its Hessian simplified as its
        gradient is (:mod:`einsgrad.cancellation`), reading the forward's names and, where the
        gradient ``g`` is a value of the forward's alone (log-sum-exp's softmax), ``g``:
        ``H[j,i] = g[j] * delta[j,i] - g[i] * g[j]``.
        """
        self._require_scalar("hessian")
        self._rank(name)
        if self.statements:
            steps = {s.name for s in self.steps}
            out = self._new_name(out, "H", "the Hessian", steps)
            g = self.grad(name, out=fresh_name("g", {*dict(self.accepts), *steps, out}))
            g._rank(other or name)
            named = self._named | ({g.output_name} if forward_value(g.statements[-1], self.steps) else set())
            return g._reverse_jacobian(other or name, out, named, simplified=True, sized_by=name)
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
        steps = {s.name for s in self.steps}
        v = self._new_name(v, "v", "the vector", steps)
        out = self._new_name(out, "Hv", "the result", {v} | steps)
        if self.statements:  # the gradient of g[x] v[x], backpropagated through g's statements
            g = self.grad(name, out=fresh_name("g", {*dict(self.accepts), *steps, v, out}))
            vector = Factor(v, g.output_indices)
            taken = {*dict(self.accepts), *(s.name for s in g.steps), v, out}
            dot = Statement(fresh_name("h", taken), (), (Term(Fraction(1), (Factor(g.output_name, g.output_indices),
                                                                              vector)),))
            directional = replace(_of_statements(g.statements + (dot,)), accepts=self._accepting((vector,)))
            return directional.grad(name, out=out, indices=g.output_indices)
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
        the same way, as the Jacobian of the gradient; ``style="matrix"`` adds the differential
        derivation in matrix notation (``G : (X dWᵀ) = (Xᵀ G) : dWᵀ = (Gᵀ X) : dW``). Returns a
        :class:`~einsgrad.program_explanation.ProgramExplanation`: ``str()`` is plain text,
        ``.latex()`` LaTeX, and Jupyter shows it as math.

        >>> print(program("f = x[i] * A[i,j] * x[j]").explain("x").gradients[0].matrix_form)
        ∂f/∂x = (A + Aᵀ) x
        """
        check_style(style)
        self._require_one_output("explain")
        if style == "hessian":
            self._require_scalar("style='hessian'")
        names = self.inputs if name is None else (name,)
        if self.statements:
            hessians = tuple(self.hessian(n) for n in names) if style == "hessian" else ()
            return explain_statements(self, names, tuple(self.grad(n) for n in names), hessians, style)
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
    def _plan(self) -> Evaluation | StepsEvaluation:
        return StepsEvaluation.of(self) if self.statements else Evaluation.of(self)

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
        check_left_side(name, (), f"{what}'s name")
        self._check_new_name(name, what, taken)
        return name

    def _check_new_name(self, name, what, taken):
        if name in taken:
            raise EinsumSpecError(f"{what} would be named {name!r}, which the program already uses; "
                                  f"rename that tensor or choose another name", str(self))

    @property
    def _named(self) -> frozenset[str]:
        """The statements' own names (a step named otherwise is a temporary of the lowering)."""
        return frozenset(s.name for s in self.statements)

    def _first(self, name) -> Factor | None:
        """The first occurrence of tensor ``name`` in a program's steps."""
        return next((f for s in self.steps for f in _factors(s) if f.name == name), None)

    def _require_one_output(self, what):
        if self.outputs:
            raise EinsumSpecError(f"{what} needs a program of one output, but this one has "
                                  f"{len(self.outputs)} ({', '.join(self.outputs)}); derive from the "
                                  f"program they came from", str(self))

    def _require_scalar(self, what):
        self._require_one_output(what)
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
    parsed = parse_program(text)
    if not isinstance(parsed, Parsed):
        return _of_statements(parsed)
    return _build(parsed.name, parsed.output, parsed.terms, (), source=text)


def _of_statements(statements) -> Program:
    """A program of statements (several, or with functions, powers, scoped sums): its output
    the last one's; it accepts the tensors its statements read and do not define."""
    last = statements[-1]
    prog = Program(last.name, last.indices, (), statements=tuple(statements))
    ranks = {f.name: len(f.indices) for s in prog.steps for f in _factors(s)}
    return replace(prog, accepts=tuple((n, ranks[n]) for n in prog.inputs))


def _factors(step):
    """The tensors a step reads, each as it is indexed there."""
    if isinstance(step, Elementwise):
        return (step.argument,)
    return tuple(f for t in step.terms for f in t.factors if not f.is_delta)


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
        problem = coefficient_problem(term.coefficient)
        if problem:
            raise EinsumSpecError(f"like terms merge into a coefficient that {problem}",
                                  None if source is None else str(source))
    return Program(name, output, simplified, witnesses, tuple(ranks.items()))


def _zero_text(output, terms, witnesses) -> str:
    """``0``, times the tensors that give their sizes to the output indices no term sizes
    (blank indices named afresh), so that the printed program reads back as itself:
    ``Y[i] = x[i] - x[i]`` prints ``Y[i] = 0 * x[i]``, ``Y[i] = x[i] - x[i] + s`` prints
    ``Y[i] = s + 0 * x[i]``."""
    kept = set(output)
    fresh = Fresh(kept)
    sized, ties = sized_indices(output, terms), delta_ties(terms)
    holder = {}
    for w in reversed(witnesses):  # the first witness that holds each index
        holder.update(dict.fromkeys(w.indices, w))
    chosen: list[Factor] = []
    for index in unsized(output, terms):
        if ties and index in tied(sized, ties, kept):
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
