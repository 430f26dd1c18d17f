"""Every kind of bad input raises ``EinsumSpecError`` with a useful message, never anything else."""

from __future__ import annotations

import builtins
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einsgrad
from einsgrad import EinsumSpecError


def _caret_column(err: Exception, spec: str) -> int:
    """The column in ``spec`` that the caret line of ``str(err)`` points at.

    The message repeats the spec on one line and puts a lone '^' on the next, both with the
    same indentation; the column is the caret's offset past that indentation.
    """
    lines = str(err).split("\n")
    carets = [i for i, line in enumerate(lines) if line.strip() == "^"]
    assert carets, f"no caret line in {str(err)!r}"
    i = carets[-1]
    assert i >= 1, f"caret line has no spec line above it in {str(err)!r}"
    spec_line, caret_line = lines[i - 1], lines[i]
    assert spec_line.endswith(spec), f"spec line {spec_line!r} does not show {spec!r}"
    indent = len(spec_line) - len(spec)
    column = caret_line.index("^") - indent
    assert 0 <= column <= len(spec), f"caret column {column} outside {spec!r}"
    return column


def _ones(*shapes):
    return [np.ones(s) for s in shapes]


def test_error_is_a_value_error():
    """``EinsumSpecError`` can be caught as a ``ValueError``."""
    assert issubclass(EinsumSpecError, ValueError)
    with pytest.raises(ValueError, match="not allowed"):
        einsgrad.compile("ij->i$")


# --------------------------------------------------------------------------------------
# Problems in the spec text: message and caret column.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, column, match", [
    pytest.param("ij,jk->i$", 8, r"'\$' is not allowed", id="dollar"),
    pytest.param("ij,j1->i", 4, r"'1' is not allowed", id="digit"),
    pytest.param("ij,jk->i\u2003", 8, r"'\\u2003' is not allowed in a spec \(U\+2003 EM SPACE at position 8\)",
                 id="unicode_space"),
    pytest.param("ij,jk->i\x85", 8, r"U\+0085 at position 8", id="unicode_control"),
    pytest.param("ij,jk->ié", 8, r"output label 'é' appears in no input", id="unicode_label"),
    pytest.param("i_j->i", 1, r"'_' is not allowed", id="underscore"),
    pytest.param("ij-jk", 2, r"'-' must be followed by '>'", id="lone_dash_middle"),
    pytest.param("ij,jk-", 5, r"'-' must be followed by '>'", id="lone_dash_end"),
    pytest.param("ij>jk", 2, r"'>' must follow '-'", id="lone_gt_middle"),
    pytest.param(">ij", 0, r"'>' must follow '-'", id="lone_gt_start"),
    pytest.param("ij->j->i", 5, r"at most one '->'", id="two_arrows"),
    pytest.param("ij->->i", 4, r"at most one '->'", id="two_adjacent_arrows"),
    pytest.param("i.j->ij", 1, r"exactly three dots", id="single_dot"),
    pytest.param("..ij->ij", 0, r"exactly three dots", id="two_dots"),
    pytest.param("ij..->ij", 2, r"exactly three dots", id="two_dots_after"),
    pytest.param("ij->i.", 5, r"exactly three dots", id="dot_in_output"),
    pytest.param("...i...->i", 4, r"at most one ellipsis", id="repeated_ellipsis"),
    pytest.param("i,...j...->ij", 6, r"at most one ellipsis", id="repeated_ellipsis_second_term"),
    pytest.param("ij,jk->i,k", 8, r"cannot contain ','", id="comma_in_output"),
    pytest.param("ij->ik", 5, r"'k' appears in no input", id="output_label_in_no_input"),
    pytest.param("ij,jk->iz", 8, r"'z' appears in no input", id="output_typo_two_operands"),
])
def test_spec_text_error_points_at_column(spec, column, match):
    """The message names the problem and the caret sits under the offending character."""
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.compile(spec)
    assert isinstance(info.value, ValueError)
    assert _caret_column(info.value, spec) == column


def test_four_dots_caret_on_the_dots():
    """Four dots are refused, with the caret inside the run of dots."""
    spec = "....ij->ij"
    with pytest.raises(EinsumSpecError, match="exactly three dots") as info:
        einsgrad.compile(spec)
    assert spec[_caret_column(info.value, spec)] == "."


@pytest.mark.parametrize("spec", [
    pytest.param("ij->i$", id="compile"),
    pytest.param("ij->ik", id="unknown_output_label"),
])
def test_grad_spec_and_one_shot_functions_refuse_bad_specs(spec):
    """``grad_spec``, ``einsum`` and ``vjp`` validate the spec like ``compile``."""
    x = np.ones((2, 3))
    with pytest.raises(EinsumSpecError, match=r"not allowed|appears in no input"):
        einsgrad.grad_spec(spec, 0)
    with pytest.raises(EinsumSpecError, match=r"not allowed|appears in no input"):
        einsgrad.einsum(spec, x)
    with pytest.raises(EinsumSpecError, match=r"not allowed|appears in no input"):
        einsgrad.vjp(spec, np.ones(2), x)


def test_output_label_in_no_input_suggests_typo_and_broadcast():
    """The message offers both readings: a typo, or a broadcast needing ``sizes=``."""
    with pytest.raises(EinsumSpecError, match=r"typo") as info:
        einsgrad.compile("ij->ik")
    message = str(info.value)
    assert "sizes=" in message
    assert "'k'" in message
    assert "broadcast" in message


# --------------------------------------------------------------------------------------
# sizes=
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, match", [
    pytest.param({"z": 3}, r"'z'.*not a label", id="unknown_label"),
    pytest.param({"j": -1}, r"non-negative integer.*-1", id="negative"),
    pytest.param({"j": 2.5}, r"non-negative integer.*2\.5", id="float"),
    pytest.param({"j": "3"}, r"non-negative integer.*'3'", id="string"),
    pytest.param({"j": True}, r"non-negative integer.*True", id="bool"),
    pytest.param({"j": None}, r"non-negative integer.*None", id="none"),
    pytest.param([("j", 3)], r"mapping", id="not_a_mapping"),
])
def test_bad_sizes(sizes, match):
    """``sizes=`` must map labels of the spec to non-negative integers."""
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.compile("i->ij", sizes=sizes)


@pytest.mark.parametrize("batch", [
    pytest.param(3, id="int"),
    pytest.param((2, -1), id="negative"),
    pytest.param((2.0,), id="float"),
])
def test_bad_output_ellipsis_sizes(batch):
    """``sizes['...']`` must be a tuple of non-negative integers."""
    with pytest.raises(EinsumSpecError, match=r"sizes\['\.\.\.'\] must be a tuple"):
        einsgrad.compile("i->...i", sizes={"...": batch})


def test_sizes_conflicting_with_operand():
    """A ``sizes=`` entry that contradicts an operand's dimension is refused at call time."""
    lin = einsgrad.compile("ij->ijk", sizes={"k": 2, "j": 5})
    with pytest.raises(EinsumSpecError, match=r"sizes\['j'\]"):
        lin(np.ones((2, 3)))


# --------------------------------------------------------------------------------------
# Operands against the spec.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", [
    pytest.param([(2, 3)], id="too_few"),
    pytest.param([(2, 3), (3, 4), (4,)], id="too_many"),
    pytest.param([], id="none"),
])
def test_wrong_number_of_operands(shapes):
    """The message says how many operands the spec names and how many came."""
    lin = einsgrad.compile("ij,jk->ik")
    with pytest.raises(EinsumSpecError, match=rf"names 2 operand.*{len(shapes)} were given"):
        lin(*_ones(*shapes))


def test_wrong_number_of_operands_in_vjp():
    """``vjp`` checks the operand count too."""
    lin = einsgrad.compile("ij,jk->ik")
    with pytest.raises(EinsumSpecError, match=r"names 2 operand.*1 were given"):
        lin.vjp(np.ones((2, 4)), np.ones((2, 3)))


@pytest.mark.parametrize("spec, shapes, column, match", [
    pytest.param("ij,jk->ik", [(2, 3), (3, 4, 1)], 3, r"operand 1 has 3 dimension.*'jk' name 2",
                 id="too_many_dims"),
    pytest.param("ij,jk->ik", [(2, 3), (3,)], 3, r"operand 1 has 1 dimension.*'jk' name 2",
                 id="too_few_dims"),
    pytest.param("ij->i", [()], 0, r"operand 0 has 0 dimension.*'ij' name 2", id="scalar_for_matrix"),
    pytest.param(",ij->ij", [(2,), (2, 3)], 0, r"operand 0 has 1 dimension", id="matrix_for_scalar"),
    pytest.param("i...j,jk->ik", [(2,), (3, 4)], 0, r"operand 0 has 1 dimension.*at least 2",
                 id="ellipsis_too_few_dims"),
    pytest.param("ij,...jk->...ik", [(2, 3), (3,)], 3, r"operand 1 has 1 dimension.*at least 2",
                 id="ellipsis_second_operand"),
])
def test_rank_mismatch(spec, shapes, column, match):
    """A rank mismatch names the operand and points at its subscripts."""
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.compile(spec)(*_ones(*shapes))
    assert _caret_column(info.value, spec) == column


@pytest.mark.parametrize("shapes", [
    pytest.param([(-1, 2)], id="negative_dim"),
    pytest.param([("a", 2)], id="string_dim"),
    pytest.param([(2.5, 2)], id="float_dim"),
    pytest.param(5, id="not_a_sequence"),
    pytest.param([5], id="shape_not_a_sequence"),
])
def test_bad_compile_time_shapes(shapes):
    """``compile(..., shapes=)`` refuses shapes that are not sequences of non-negative ints."""
    with pytest.raises(EinsumSpecError, match=r"shape"):
        einsgrad.compile("ij->i", shapes=shapes)


def test_rank_mismatch_at_compile_time_shapes():
    """``compile(..., shapes=)`` validates the shapes immediately."""
    with pytest.raises(EinsumSpecError, match=r"operand 0 has 3 dimension"):
        einsgrad.compile("ij->i", shapes=[(2, 3, 4)])


@pytest.mark.parametrize("spec, shapes, column, match", [
    pytest.param("ij,jk->ik", [(2, 3), (4, 5)], 3, r"label 'j' has size 3 in operand 0 but 4 in operand 1",
                 id="contracted_label"),
    pytest.param("ij,kj->ik", [(2, 3), (4, 5)], 4, r"label 'j' has size 3 in operand 0 but 5 in operand 1",
                 id="second_position"),
    pytest.param("i,i,i->i", [(2,), (2,), (3,)], 4, r"label 'i' has size 2 in operand 0 but 3 in operand 2",
                 id="third_operand"),
    pytest.param("...i,...i->...i", [(2, 3), (4, 3)], 5, r"'\.\.\.' \(batch dimension 0\).*2.*4",
                 id="ellipsis_not_broadcastable"),
    pytest.param("...i,...i->i", [(5, 2, 3), (4, 3)], 5, r"batch dimension",
                 id="ellipsis_right_aligned"),
])
def test_inconsistent_sizes(spec, shapes, column, match):
    """Sizes of one index that neither agree nor broadcast are refused, caret on the term."""
    with pytest.raises(EinsumSpecError, match=match) as info:
        einsgrad.compile(spec)(*_ones(*shapes))
    assert _caret_column(info.value, spec) == column


@pytest.mark.parametrize("shape", [
    pytest.param((2, 3), id="2x3"),
    pytest.param((1, 3), id="1x3"),
    pytest.param((3, 1), id="3x1"),
])
def test_repeated_index_with_differing_sizes(shape):
    """``"ii"`` on a non-square operand is refused (a size 1 does not broadcast on a diagonal)."""
    spec = "ii->i"
    with pytest.raises(EinsumSpecError, match=r"label 'i' repeats in operand 0.*sizes") as info:
        einsgrad.compile(spec)(np.ones(shape))
    assert spec[_caret_column(info.value, spec)] == "i"


# --------------------------------------------------------------------------------------
# The cotangent and wrt=.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("g_shape", [
    pytest.param((4, 2), id="transposed"),
    pytest.param((2, 4, 1), id="extra_dim"),
    pytest.param((8,), id="flattened"),
    pytest.param((), id="scalar"),
])
def test_cotangent_of_wrong_shape_vjp(g_shape):
    """``vjp`` refuses a cotangent whose shape is not the output's."""
    lin = einsgrad.compile("ij,jk->ik")
    with pytest.raises(EinsumSpecError, match=r"cotangent has shape"):
        lin.vjp(np.ones(g_shape), np.ones((2, 3)), np.ones((3, 4)))


@pytest.mark.parametrize("g_shape", [
    pytest.param((4, 2), id="transposed"),
    pytest.param((2, 4, 1), id="extra_dim"),
    pytest.param((), id="scalar"),
])
def test_cotangent_of_wrong_shape_pullback(g_shape):
    """The pullback refuses a cotangent whose shape is not the output's."""
    _, pullback = einsgrad.compile("ij,jk->ik").value_and_pullback(np.ones((2, 3)), np.ones((3, 4)))
    with pytest.raises(EinsumSpecError, match=r"cotangent has shape"):
        pullback(np.ones(g_shape))


def test_cotangent_of_wrong_shape_one_shot_vjp():
    """``einsgrad.vjp`` refuses a mis-shaped cotangent too."""
    with pytest.raises(EinsumSpecError, match=r"cotangent has shape"):
        einsgrad.vjp("ij->i", np.ones(3), np.ones((2, 3)))


@pytest.mark.parametrize("wrt, match", [
    pytest.param(2, r"wrt=2 is out of range", id="int_too_large"),
    pytest.param(-3, r"wrt=-3 is out of range", id="int_too_negative"),
    pytest.param([0, 2], r"wrt=2 is out of range", id="list_out_of_range"),
    pytest.param([0, 0], r"twice", id="repeated"),
    pytest.param([1, -1], r"twice", id="repeated_negative_alias"),
    pytest.param(1.0, r"wrt must be an operand index", id="float"),
    pytest.param("0", r"wrt must be an operand index", id="string"),
    pytest.param(True, r"wrt must be an operand index", id="bool"),
    pytest.param([0.5], r"wrt must be an operand index", id="list_of_float"),
    pytest.param([None], r"wrt must be an operand index", id="list_of_none"),
    pytest.param(object(), r"wrt must be an operand index", id="object"),
])
def test_bad_wrt(wrt, match):
    """``wrt`` must name existing operands, each once, by integer index."""
    lin = einsgrad.compile("ij,jk->ik")
    X, W, G = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    with pytest.raises(EinsumSpecError, match=match):
        lin.vjp(G, X, W, wrt=wrt)
    with pytest.raises(EinsumSpecError, match=match):
        lin.value_and_pullback(X, W, wrt=wrt)


@pytest.mark.parametrize("wrt, match", [
    pytest.param(2, r"out of range", id="too_large"),
    pytest.param(-3, r"out of range", id="too_negative"),
    pytest.param(1.0, r"operand index", id="float"),
    pytest.param(None, r"operand index", id="none"),
])
def test_grad_spec_bad_wrt(wrt, match):
    """``grad_spec`` validates ``wrt`` the same way."""
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.grad_spec("ij,jk->ik", wrt)


# --------------------------------------------------------------------------------------
# Types of the arguments.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("operand, match", [
    pytest.param(np.array([["a", "b"]]), r"operand 0 has dtype <U1.*not numeric", id="unicode"),
    pytest.param(np.array([[None, 1]], dtype=object), r"operand 0 has dtype object", id="object"),
    pytest.param(np.array([[b"x"]]), r"operand 0 has dtype \|S1", id="bytes"),
    pytest.param(np.array([["2020-01-01"]], dtype="datetime64[D]"), r"datetime64", id="datetime"),
    pytest.param([["a", "b"]], r"not numeric", id="nested_list_of_str"),
])
def test_non_numeric_operand(operand, match):
    """Operands must be numeric (bool, int, float, complex)."""
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.compile("ij->i")(operand)


def test_non_numeric_operand_in_vjp_and_cotangent():
    """``vjp`` checks operand and cotangent dtypes."""
    lin = einsgrad.compile("ij->i")
    with pytest.raises(EinsumSpecError, match=r"operand 0 has dtype object"):
        lin.vjp(np.ones(1), np.array([[None, None]], dtype=object))
    with pytest.raises(EinsumSpecError, match=r"cotangent has dtype <U1"):
        lin.vjp(np.array(["a"]), np.ones((1, 2)))


@pytest.mark.parametrize("spec, match", [
    pytest.param(b"ij->i", r"string, got bytes", id="bytes"),
    pytest.param(None, r"string, got NoneType", id="none"),
    pytest.param(123, r"string, got int", id="int"),
    pytest.param(["ij", "i"], r"string, got list", id="list"),
])
def test_spec_not_a_string(spec, match):
    """The spec must be a ``str``."""
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.compile(spec)
    with pytest.raises(EinsumSpecError, match=match):
        einsgrad.grad_spec(spec, 0)


@pytest.mark.parametrize("optimize", [
    pytest.param(3, id="int"),
    pytest.param(None, id="none"),
    pytest.param(["greedy"], id="list"),
])
def test_bad_optimize_type(optimize):
    """``optimize`` must be an optimizer name, a bool or a PathOptimizer."""
    with pytest.raises(EinsumSpecError, match=r"optimize"):
        einsgrad.compile("ij,jk,kl->il", optimize=optimize)


def test_unknown_optimizer_name():
    """An unknown optimizer name is an ``EinsumSpecError`` (at compile time or first call)."""
    ops = _ones((2, 2), (2, 2), (2, 2))
    with pytest.raises(EinsumSpecError, match=r"no-such-optimizer"):
        einsgrad.compile("ij,jk,kl->il", optimize="no-such-optimizer")(*ops)


@pytest.mark.parametrize("memory_limit", [
    pytest.param(-1, id="negative"),
    pytest.param(0, id="zero"),
    pytest.param(2.5, id="float"),
    pytest.param("10", id="string"),
])
def test_bad_memory_limit(memory_limit):
    """``memory_limit`` must be a positive integer."""
    with pytest.raises(EinsumSpecError, match=r"memory_limit"):
        einsgrad.compile("ij,jk->ik", memory_limit=memory_limit)


@pytest.mark.parametrize("cache_size", [
    pytest.param("x", id="string"),
    pytest.param(2.5, id="float"),
])
def test_bad_cache_size(cache_size):
    """``cache_size`` must be an integer."""
    with pytest.raises(EinsumSpecError, match=r"cache_size"):
        einsgrad.compile("ij->i", cache_size=cache_size)


# --------------------------------------------------------------------------------------
# Nothing of a spec is ever executed.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    pytest.param("ij->i'); import os; os.system('x')#", id="quote_and_code"),
    pytest.param('ij->i"); import os; os.system("x")#', id="double_quote_and_code"),
    pytest.param("ij->i\nimport os\nos.system('x')", id="newlines"),
    pytest.param("ij->i)\n__import__('os').system('x')#", id="dunder_import"),
    pytest.param("ij->i;exec('x')", id="semicolon_exec"),
])
def test_code_in_spec_is_refused_and_not_run(spec, monkeypatch):
    """Specs carrying code are refused with ``EinsumSpecError``; ``os.system`` is never reached."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.compile(spec)
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.einsum(spec, np.ones((2, 3)))
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.grad_spec(spec, 0)
    assert calls == []


def test_code_in_spec_creates_no_sentinel_file(tmp_path):
    """A spec that would write a file if executed leaves the file system untouched."""
    sentinel = tmp_path / "pwned"
    payload = f"ij->i'); open({str(sentinel)!r}, 'w').close()#"
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.compile(payload)(np.ones((2, 3)))
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.vjp(payload, np.ones(2), np.ones((2, 3)))
    assert not sentinel.exists()
    assert list(tmp_path.iterdir()) == []


def test_code_in_sizes_key_is_refused(monkeypatch):
    """A ``sizes=`` key carrying code is refused and never reaches generated source."""
    calls = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    with pytest.raises(EinsumSpecError, match=r"not a label"):
        einsgrad.compile("i->ij", sizes={"j": 2, "k'); import os; os.system('x')#": 3})
    assert calls == []


def test_refused_spec_does_not_reach_exec(monkeypatch):
    """Neither ``exec`` nor ``compile`` builtins see a refused spec."""
    seen = []
    real_exec, real_compile = builtins.exec, builtins.compile

    def spy_exec(source, *args, **kwargs):
        seen.append(source)
        return real_exec(source, *args, **kwargs)

    def spy_compile(source, *args, **kwargs):
        seen.append(source)
        return real_compile(source, *args, **kwargs)

    monkeypatch.setattr(builtins, "exec", spy_exec)
    monkeypatch.setattr(builtins, "compile", spy_compile)
    with pytest.raises(EinsumSpecError, match=r"not allowed"):
        einsgrad.compile("ij->i'); import os; os.system('x')#")(np.ones((2, 3)))
    assert not any("os.system" in str(s) for s in seen)


# --------------------------------------------------------------------------------------
# Fuzz: any text and any small shapes either work or raise EinsumSpecError.
# --------------------------------------------------------------------------------------

_RICH = list(",->. ") * 4 + list("ijkabIJ") * 3 + list("019'\"\n\t\\()#;_$é∂λ…\x00\u200b")
_TOKENS = ["i", "j", "k", "a", "B", "...", " ", "i", "j"]


@st.composite
def _structured_spec(draw):
    """Near-valid specs: terms of labels and ellipses, an optional output, rare mutations."""
    terms = draw(st.lists(st.lists(st.sampled_from(_TOKENS), max_size=4), min_size=1, max_size=3))
    text = ",".join("".join(t) for t in terms)
    if draw(st.booleans()):
        out = draw(st.lists(st.sampled_from(_TOKENS), max_size=4))
        text += "->" + "".join(out)
    if draw(st.integers(0, 3)) == 0:
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.sampled_from(_RICH)) + text[pos:]
    return text


_SPEC_TEXT = st.one_of(st.text(alphabet=st.sampled_from(_RICH), max_size=14),
                       _structured_spec(), _structured_spec())


@st.composite
def _shapes_for(draw, text: str):
    """Shapes that often fit ``text`` (shared label sizes, shared batch dims), sometimes not."""
    left = text.split("->")[0]
    terms = left.split(",")
    n = len(terms) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    if draw(st.integers(0, 5)) == 0:  # shapes unrelated to the spec
        return draw(st.lists(st.lists(st.integers(0, 3), max_size=3).map(tuple),
                             min_size=max(n, 0), max_size=max(n, 0)))
    size = {c: draw(st.integers(1, 3)) for c in sorted(set(left)) if c.isalpha()}
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shapes = []
    for term in terms[:max(n, 0)]:
        shape = []
        rest = term
        while rest:
            if rest.startswith("..."):
                cut = draw(st.integers(0, len(batch)))
                shape.extend(1 if draw(st.integers(0, 4)) == 0 else d for d in batch[cut:])
                rest = rest[3:]
                continue
            c, rest = rest[0], rest[1:]
            if c.isalpha() and c in size:
                shape.append(1 if draw(st.integers(0, 5)) == 0 else size[c])
        shapes.append(tuple(shape))
    while len(shapes) < n:
        shapes.append(tuple(draw(st.lists(st.integers(1, 3), max_size=2))))
    return shapes


def _numpy_einsum(text, ops):
    """numpy's einsum, or None if numpy refuses the spec or the shapes."""
    try:
        return np.einsum(text, *ops)
    except Exception:  # numpy raises ValueError, TypeError, ... for bad specs
        return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_einsum_spec_errors_and_numpy_values(data):
    """Random specs and shapes: success or ``EinsumSpecError``; numpy-valid input gives numpy's
    values, and the gradient satisfies ``<dX_k, H> = <G, f(..., H, ...)>`` (f is linear in X_k)."""
    text = data.draw(_SPEC_TEXT, label="spec")
    try:
        lin = einsgrad.compile(text)
    except EinsumSpecError:
        return
    shapes = data.draw(_shapes_for(text), label="shapes")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    ops = [rng.standard_normal(s) for s in shapes]
    expected = _numpy_einsum(text, ops)
    try:
        y = lin(*ops)
    except EinsumSpecError:
        assert expected is None, f"numpy accepts {text!r} with {shapes} but einsgrad refuses"
        return
    assert isinstance(y, np.ndarray)
    if expected is not None:
        assert y.shape == np.shape(expected)
        np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)

    G = rng.standard_normal(y.shape)
    grads = lin.vjp(G, *ops)
    assert len(grads) == len(ops)
    for k, (g, x) in enumerate(zip(grads, ops)):
        assert g.shape == x.shape and g.dtype == x.dtype, f"operand {k}"
        if expected is None:
            continue
        H = rng.standard_normal(x.shape)
        perturbed = np.einsum(text, *ops[:k], H, *ops[k + 1:])
        np.testing.assert_allclose(np.sum(g * H), np.sum(G * perturbed), rtol=1e-8, atol=1e-8,
                                   err_msg=f"operand {k}")


@settings(max_examples=100, deadline=None)
@given(text=_SPEC_TEXT, shapes=st.lists(st.lists(st.integers(0, 3), max_size=3).map(tuple), max_size=3))
def test_fuzz_random_shapes_pullback(text, shapes):
    """Random specs and unrelated shapes through ``value_and_pullback``: success or
    ``EinsumSpecError`` only, and gradients have their operand's shape."""
    try:
        lin = einsgrad.compile(text)
        ops = [np.ones(s) for s in shapes]
        y, pullback = lin.value_and_pullback(*ops)
    except EinsumSpecError:
        return
    grads = pullback(np.ones(y.shape))
    assert [g.shape for g in grads] == [x.shape for x in ops]


@pytest.mark.parametrize("spec", [["ij->i"], 3, None])
def test_one_call_functions_refuse_a_spec_that_is_not_text(spec):
    """einsgrad.einsum and einsgrad.vjp take spec text or an Einsum; anything else, hashable
    or not, is an EinsumSpecError (not a TypeError from the cache of compiled specs)."""
    x = np.ones((2, 2))
    with pytest.raises(einsgrad.EinsumSpecError, match="spec must be a string or an einsgrad.Einsum"):
        einsgrad.einsum(spec, x)
    with pytest.raises(einsgrad.EinsumSpecError, match="spec must be a string or an einsgrad.Einsum"):
        einsgrad.vjp(spec, np.ones(2), x)
