"""A census of the matrix forms missing from generated programs' gradients and Hessians.

Draws programs from the generator of tests/test_program_statements.py (hypothesis, a fixed
seed), keeps those where no tensor has three or more indices, and for each gradient and each
Hessian that prints neither a matrix form nor a vec form, says why: the innermost reason the
writer of :mod:`einsgrad.matrix_statements` gave up, found by watching its methods from here
(a census, not a test: it patches nothing it does not restore, and reads the Kronecker
split of :mod:`einsgrad.kronecker` to tell a Hessian of four indices that has no vec form).
Each printed form is also read back and compared with the derived program's value, as
tests/test_matrix_statements.py does: "checked" or "wrong".

    PYTHONPATH=$PWD python tests/form_census.py [--seed 1] [--examples 300] [--show 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

import einsgrad  # noqa: E402
from einsgrad import matrix_statements as ms  # noqa: E402

SLOW = 20  # seconds for one program's explanations and checks: printed as it happens
WIDE = re.compile(r"\[[a-z],[a-z],[a-z]")


def classify_spec(spec) -> str:
    """Why a term's einsum has no form: wide (an operand or the output of three labels or
    more: no matrix holds it), or one the search does not reach."""
    if len(spec.output) > 2 or any(len(t) > 2 for t in spec.inputs):
        return "wide term (3+ labels)"
    return f"spec not composed: {spec}"


@contextmanager
def watching(reasons: list):
    """Record, innermost first, why Writer.term/node/statement returned no rendering."""
    term, node, statement = ms.Writer.term, ms.Writer.node, ms.Writer.statement
    matrix_form = ms.matrix_form
    last_spec = {}

    def watched_form(spec):
        f = matrix_form(spec)
        last_spec["spec"] = spec
        last_spec["form"] = f
        return f

    def watched_term(self, t, indices, top=False):
        before = len(reasons)
        last_spec.clear()
        found = term(self, t, indices, top)
        if found is False and len(reasons) == before:
            if "form" in last_spec and last_spec["form"] is None:
                reasons.append(classify_spec(last_spec["spec"]))
            elif "form" in last_spec and (last_spec["form"].batch or last_spec["form"].summed):
                reasons.append(f"batched form: {last_spec['spec']}")
            elif "form" in last_spec:
                reasons.append(f"rendering refused (a count): {last_spec['spec']}")
            else:
                reasons.append(f"term: {t}")
        return found

    def watched_node(self, n):
        before = len(reasons)
        found = node(self, n)
        if found is None and len(reasons) == before:
            reasons.append(f"node refused: {type(n).__name__} {n}")
        return found

    def watched_statement(self, s, top=False):
        before = len(reasons)
        found = statement(self, s, top)
        if found is None and len(reasons) == before and not top and s.name in self.done:
            reasons.append("written-in text too long")
        return found

    ms.Writer.term, ms.Writer.node, ms.Writer.statement, ms.matrix_form = (
        watched_term, watched_node, watched_statement, watched_form)
    try:
        yield
    finally:
        ms.Writer.term, ms.Writer.node, ms.Writer.statement = term, node, statement
        ms.matrix_form = matrix_form


def check(form: str, derived, arrays, rng) -> str:
    """"checked" where the printed form reads back (tests/test_matrix_statements.py's reader)
    as the derived program's value, as that test compares them; "wrong" where not; "unchecked"
    where the value overflows."""
    from test_matrix_statements import _rounding_noise, evaluate
    with np.errstate(all="ignore"):
        expected = np.asarray(derived(**arrays), dtype=float)
        if not np.all(np.isfinite(expected)) or np.abs(expected).max(initial=0) >= 1e6:
            return "unchecked"
        noise = _rounding_noise(derived, arrays, expected, rng)
        try:
            got = evaluate(form, arrays, expected.shape)
        except Exception as error:  # the reader could not read it: as wrong as a wrong value
            print(f"UNREADABLE {form}: {error!r}")
            return "wrong"
        ok = np.allclose(got, expected, rtol=1e-8, atol=1e-8 + 100 * noise)
    return "checked" if ok else "wrong"


def kronecker_reason(h) -> str:
    """Why a Hessian of four indices has no vec form: a term that is no product of a matrix
    over two of its indices and one over the other two (``M[p,q] δ[k,p] δ[i,q]``, the
    diagonal matrix Diag(vec(M))), or sides that have no matrix form."""
    from einsgrad import kronecker
    result = h.statements[-1]
    indices = tuple(result.indices)
    if len(indices) != 4:
        return f"wide term (3+ labels) in a Hessian of {len(indices)} indices"
    for term in result.terms:
        if term.coefficient != 0 and kronecker._split(term, indices) is None:
            return "4-index: a term no Kronecker product splits (Diag(vec M) or wider)"
    return "4-index: Kronecker sides without a form"


def short(reason: str) -> str:
    """The class of a reason: its words before the first colon (the 4-index ones whole)."""
    return reason if reason.startswith("4-index") else reason.split(":")[0]


def census(seed: int, examples: int, show: int, verbose: bool = False):
    from hypothesis import HealthCheck, given, settings, strategies as st
    from hypothesis import seed as fixed_seed
    from test_program_statements import generated_programs

    tally = Counter()
    classes = defaultdict(list)
    wrong = []

    @fixed_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(generated_programs(), st.integers(0, 2 ** 16))
    def one(case, value_seed):
        text, shapes, _ = case
        if WIDE.search(text):
            tally["programs with a 3-index tensor (skipped)"] += 1
            return
        started = time.perf_counter()
        p = einsgrad.program(text)
        tally["programs"] += 1
        rng = np.random.default_rng(value_seed)
        a = {n: np.asarray(rng.standard_normal(shapes[n]) * 0.7) for n in p.inputs}
        h_name = p.inputs[value_seed % len(p.inputs)]
        for n in p.inputs:
            kinds = [("gradient", None)] + ([("hessian", "hessian")] if n == h_name else [])
            for kind, style in kinds:
                reasons: list[str] = []
                with watching(reasons):
                    e = p.explain(n) if style is None else p.explain(n, style=style)
                part = e.gradients[0] if style is None else e.hessians[0]
                tally[f"{kind}s"] += 1
                printed = part.matrix_form or getattr(part, "vec_form", None)
                if part.matrix_form is not None:
                    derived = p.grad(n) if style is None else p.hessian(n)
                    verdict = check(part.matrix_form, derived, a, rng)
                    tally[f"{kind} forms {verdict}"] += 1
                    if verdict == "wrong":
                        wrong.append((text, n, kind, part.matrix_form))
                if printed is not None:
                    continue
                tally[f"{kind}s without a form"] += 1
                reason = reasons[0] if reasons else "no reason seen"
                if kind == "hessian" and short(reason) == "wide term (3+ labels)":
                    reason = kronecker_reason(p.hessian(n))
                classes[(kind, short(reason))].append((text, n, reason, part.result))
        if time.perf_counter() - started > SLOW:
            print(f"slow ({time.perf_counter() - started:.0f} s): " + text.replace("\n", "; "), flush=True)

    one()
    print(f"seed {seed}, {examples} examples")
    for k, v in sorted(tally.items()):
        print(f"  {k}: {v}")
    for text, n, kind, form in wrong:
        print("WRONG " + kind + " by " + n + ": " + text.replace("\n", "; ") + "\n      " + form)
    for (kind, reason), items in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"\n{kind}: {reason}: {len(items)}")
        for full, count in Counter(full for _, _, full, _ in items).most_common(12):
            print(f"   {count} x {full}")
        for text, n, full, result in items[:show]:
            print("   " + text.replace("\n", "; ") + f"   by {n}")
            print(f"      {full}")
            if verbose:
                print("      " + result.replace("\n", "\n      "))
    return tally, classes


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="print each result program too")
    args = parser.parse_args(argv)
    census(args.seed, args.examples, args.show, args.verbose)


if __name__ == "__main__":
    main()
