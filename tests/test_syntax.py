"""The lavaan model-syntax parser: statements, modifiers, layout and errors."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from conftest import CASES, LAVAAN_DIR
from mlmiss.model.partable import parameter_table
from mlmiss.errors import ModelSyntaxError
from mlmiss.model.syntax import Modifiers, Statement, parse

LEVEL2 = "level: 2\n  fb =~ y1 + y2 + y3\n"


def one_level(body: str) -> str:
    """A level-1 body plus a fixed level-2 block (starting at line len(body lines) + 2)."""
    return "level: 1\n" + body.rstrip("\n") + "\n" + LEVEL2


def triples(statements, level=None):
    return [(s.lhs, s.op, s.rhs) for s in statements if level is None or s.level == level]


def by_rhs(statements, lhs=None):
    return {s.rhs: s.modifiers for s in statements if lhs is None or s.lhs == lhs}


# ----------------------------------------------------------------- statements

def test_demo_model():
    out = parse("level: 1\n  fw =~ y1 + y2 + y3\n  fw ~ x1 + x2 + x3\n"
                "level: 2\n  fb =~ y1 + y2 + y3\n  fb ~ w1 + w2\n")
    assert triples(out, 1) == [("fw", "=~", "y1"), ("fw", "=~", "y2"), ("fw", "=~", "y3"),
                               ("fw", "~", "x1"), ("fw", "~", "x2"), ("fw", "~", "x3")]
    assert triples(out, 2) == [("fb", "=~", "y1"), ("fb", "=~", "y2"), ("fb", "=~", "y3"),
                               ("fb", "~", "w1"), ("fb", "~", "w2")]
    assert [s.line for s in out] == [2, 2, 2, 3, 3, 3, 5, 5, 5, 6, 6]
    assert all(s.modifiers == Modifiers() and s.modifiers.empty for s in out)


@pytest.mark.parametrize("name", CASES)
def test_reference_models_parse(name):
    model = json.loads((LAVAAN_DIR / f"{name}.json").read_text())["case"]["model"]
    out = parse(model)
    assert {s.level for s in out} == {1, 2}
    assert all(isinstance(s, Statement) for s in out)


def test_several_names_on_each_side_expand_to_all_pairs():
    out = parse(one_level("  y7 + y8 ~ x1 + x2 + x3"))
    assert triples(out, 1) == [(y, "~", x) for y in ("y7", "y8") for x in ("x1", "x2", "x3")]


def test_operators():
    out = parse(one_level("  f =~ y1 + y2\n  y3 ~ f\n  y1 ~~ y2\n  y3 ~ 1\n  y4 ~ 1 + x"))
    assert triples(out, 1) == [("f", "=~", "y1"), ("f", "=~", "y2"), ("y3", "~", "f"),
                               ("y1", "~~", "y2"), ("y3", "~1", ""), ("y4", "~1", ""), ("y4", "~", "x")]


def test_intercept_fixed_at_zero():
    out = parse(one_level("  y1 ~ 0\n  y2 ~ 0*1\n  y3 ~ 0.5*1\n  y4 ~ a*1"))
    mods = {s.lhs: s.modifiers for s in out if s.op == "~1"}
    assert mods["y1"].fixed == 0 and mods["y2"].fixed == 0 and mods["y3"].fixed == 0.5
    assert mods["y4"].label == "a"


def test_level_names_within_between():
    out = parse("level: within\n  fw =~ y1 + y2\nLevel: Between\n  fb =~ y1 + y2\n")
    assert [s.level for s in out] == [1, 1, 2, 2]


def test_level_block_may_return():
    out = parse("level: 1\n f =~ y1 + y2\nlevel: 2\n g =~ y1 + y2\nlevel: 1\n y1 ~~ y2\n")
    assert [(s.lhs, s.op, s.rhs, s.level) for s in out if s.op == "~~"] == [("y1", "~~", "y2", 1)]


# ----------------------------------------------------------------- modifiers

def test_fixed_values():
    mods = by_rhs(parse(one_level("  f =~ 1*y1 + 0*y2 + -0.5*y3 + 2.5e-1*y4 + .5*y5 + +2*y6")), "f")
    assert [mods[f"y{i}"].fixed for i in range(1, 7)] == [1.0, 0.0, -0.5, 0.25, 0.5, 2.0]
    assert not any(m.free for m in mods.values())


def test_labels():
    mods = by_rhs(parse(one_level('  f =~ y1 + a*y2 + "b.2"*y3 + label("c")*y4 + equal("a")*y5 + lab_1*y6')), "f")
    assert [mods[f"y{i}"].label for i in range(1, 7)] == [None, "a", "b.2", "c", "a", "lab_1"]


def test_NA_frees_and_fixed_NA():
    mods = by_rhs(parse(one_level("  f =~ NA*y1 + fixed(NA)*y2 + y3")), "f")
    assert mods["y1"].free and mods["y1"].fixed is None and mods["y2"].free
    assert not mods["y3"].free


def test_start_values():
    mods = by_rhs(parse(one_level("  f =~ y1 + start(0.5)*y2 + 0.7?y3 + start(-1)*y4")), "f")
    assert (mods["y2"].start, mods["y3"].start, mods["y4"].start) == (0.5, 0.7, -1.0)
    assert mods["y2"].fixed is None and not mods["y2"].free
    assert mods["y2"].label is None


def test_fixed_modifier_function():
    mods = by_rhs(parse(one_level("  f =~ y1 + fixed(0.3)*y2")), "f")
    assert mods["y2"].fixed == 0.3


def test_chained_modifiers_in_either_order():
    mods = by_rhs(parse(one_level("  f =~ y1 + a*start(1)*y2 + start(1)*a*y3 + NA*b*y4 + 0.5*c*y5")), "f")
    assert mods["y2"] == Modifiers(start=1.0, label="a") == mods["y3"]
    assert mods["y4"] == Modifiers(free=True, label="b")
    assert mods["y5"] == Modifiers(fixed=0.5, label="c")


def test_repeated_name_adds_modifiers_to_one_parameter():
    out = parse(one_level("  f1 =~ x1 + x2 + 4*x3 + x3.loading*x3\n  f1 =~ start(2)*x2"))
    assert triples(out, 1) == [("f1", "=~", "x1"), ("f1", "=~", "x2"), ("f1", "=~", "x3")]
    mods = by_rhs(out, "f1")
    assert mods["x3"] == Modifiers(fixed=4.0, label="x3.loading")
    assert mods["x2"].start == 2.0
    assert out[1].line == 2


def test_same_modifier_twice_keeps_last_with_warning():
    with pytest.warns(UserWarning, match="line 2: the fixed value"):
        out = parse(one_level("  f =~ y1 + 1*y2 + 2*y2"))
    assert by_rhs(out, "f")["y2"].fixed == 2.0
    with pytest.warns(UserWarning, match="label"):
        out = parse(one_level("  f =~ y1 + a*b*y2"))
    assert by_rhs(out, "f")["y2"].label == "b"


def test_equal_labels_share_a_free_index():
    pt = parameter_table(one_level("  f =~ y1 + a*y2 + a*y3 + y4"))
    t = pt.table
    shared = t.loc[t["label"] == "a", "free"]
    assert len(shared) == 2 and shared.nunique() == 1 and shared.iloc[0] > 0
    assert pt.npar == parameter_table(one_level("  f =~ y1 + y2 + y3 + y4")).npar - 1


def test_NA_frees_first_loading_in_table():
    t = parameter_table(one_level("  f =~ NA*y1 + y2 + y3\n  f ~~ 1*f")).table
    row = t[(t["lhs"] == "f") & (t["op"] == "=~") & (t["rhs"] == "y1")].iloc[0]
    assert row.free > 0 and math.isnan(row.value)
    var = t[(t["lhs"] == "f") & (t["op"] == "~~") & (t["rhs"] == "f")].iloc[0]
    assert var.free == 0 and var.value == 1


def test_start_in_table():
    t = parameter_table(one_level("  f =~ y1 + start(0.5)*y2 + y3")).table
    row = t[(t["lhs"] == "f") & (t["rhs"] == "y2")].iloc[0]
    assert row.free > 0 and row.value == 0.5


def test_statement_str_round_trip():
    text = one_level("  f =~ NA*y1 + start(0.5)*a*y2 + 0.5*y3\n  y1 ~ 1")
    out = parse(text)
    again = parse("level: 1\n" + "\n".join(str(s) for s in out if s.level == 1) + "\n" + LEVEL2)
    assert [(s.lhs, s.op, s.rhs, s.modifiers) for s in again] == [(s.lhs, s.op, s.rhs, s.modifiers) for s in out]


# ----------------------------------------------------------------- layout

def test_comments():
    out = parse("# a two-level model\nlevel: 1   # within\n  f =~ y1 + y2  ! lavaan's other comment\n"
                "  # f =~ y9\n" + LEVEL2 + "! done\n")
    assert triples(out, 1) == [("f", "=~", "y1"), ("f", "=~", "y2")]


def test_comment_character_inside_a_quoted_label():
    mods = by_rhs(parse(one_level('  f =~ y1 + "a#1"*y2')), "f")
    assert mods["y2"].label == "a#1"


def test_semicolons_separate_statements():
    out = parse("level: 1; f =~ y1 + y2; y3 ~ f\nlevel: 2; fb =~ y1 + y2")
    assert triples(out) == [("f", "=~", "y1"), ("f", "=~", "y2"), ("y3", "~", "f"),
                            ("fb", "=~", "y1"), ("fb", "=~", "y2")]
    assert [s.line for s in out] == [1, 1, 1, 2, 2]


def test_formula_continues_after_trailing_operator_or_plus():
    out = parse("level: 1\n  f =~ y1 +\n        y2 +\n\n        y3\n  g =~\n    y4 + y5\n"
                "  h =~ y6\n     + y7\n  k =~ a*\n    y8\n" + LEVEL2)
    assert triples(out, 1) == [("f", "=~", "y1"), ("f", "=~", "y2"), ("f", "=~", "y3"),
                               ("g", "=~", "y4"), ("g", "=~", "y5"), ("h", "=~", "y6"),
                               ("h", "=~", "y7"), ("k", "=~", "y8")]
    assert [s.line for s in out if s.level == 1] == [2, 2, 2, 6, 6, 8, 8, 10]
    assert by_rhs(out, "k")["y8"].label == "a"


def test_whitespace_and_tabs():
    out = parse("level:1\n\tf=~y1+y2+0.5*y3\nlevel :  2\n   fb   =~   y1+y2")
    assert triples(out, 1) == [("f", "=~", "y1"), ("f", "=~", "y2"), ("f", "=~", "y3")]


def test_statement_validation():
    with pytest.raises(ValueError):
        Statement("y", "~1", "x")
    with pytest.raises(ValueError):
        Statement("y", "=~", "x", level=3)
    with pytest.raises(ValueError):
        Statement("y", "<~", "x")
    with pytest.raises(ValueError):
        Modifiers(fixed=1.0, free=True)
    with pytest.raises(TypeError):
        parse(None)


# ----------------------------------------------------------------- errors (with line numbers)

def expect_error(model: str, line: int, *fragments: str):
    with pytest.raises(ModelSyntaxError) as err:
        parse(model)
    msg = str(err.value)
    assert msg.startswith(f"line {line}: "), msg
    assert err.value.line == line
    for fragment in fragments:
        assert fragment in msg, msg
    assert isinstance(err.value, ValueError)
    return msg


def test_error_level_with_colon_after_the_number():
    expect_error("level 1:\n  f =~ y1 + y2\nlevel: 2\n  fb =~ y1 + y2", 1, "level: 1")
    expect_error("level: 1\n  f =~ y1 + y2\nlevel 2:\n  fb =~ y1 + y2", 3, "colon")


def test_error_level_without_colon():
    expect_error("level 1\n  f =~ y1 + y2\nlevel: 2\n  fb =~ y1 + y2", 1, "level: 1")


def test_error_missing_level_2_suggests_saturated_block():
    msg = expect_error("level: 1\n  fw =~ y1 + y2 + y3\n  fw ~ x1 + x2 + x3\n", 3,
                       "no level: 2 block", "model for each level", "saturated")
    # the tutorial's saturated level 2: the endogenous variables, not the covariates
    assert "y1 ~~ y1 + y2 + y3\n  y2 ~~ y2 + y3\n  y3 ~~ y3" in msg
    assert "x1" not in msg.split("saturated")[1]


def test_error_missing_level_1():
    expect_error("level: 2\n  fb =~ y1 + y2\n", 1, "level: 2 block comes before the level: 1 block")
    expect_error("level: 1\nlevel: 2\n  fb =~ y1 + y2\n", 1, "level: 1 block is empty", "model for each level")


def test_error_no_level_blocks():
    expect_error("\n  f =~ y1 + y2\n  f ~ x", 2, "no 'level: 1' and 'level: 2' blocks", "model for each level")


def test_error_empty_level_block():
    expect_error("level: 1\n  f =~ y1 + y2\nlevel: 2\n# nothing here\n", 3, "level: 2 block is empty")


def test_error_statement_before_first_level():
    expect_error("f =~ y1 + y2\nlevel: 1\n  f =~ y1 + y2\n" + LEVEL2, 1, "before any level header")


def test_error_unknown_level():
    expect_error("level: 1\n  f =~ y1\nlevel: 3\n  g =~ y1", 3, "unknown level '3'")
    expect_error("level: one\n  f =~ y1\n" + LEVEL2, 1, "unknown level 'one'")


def test_error_other_blocks():
    expect_error("group: 1\nlevel: 1\n  f =~ y1\n" + LEVEL2, 1, "'group:' blocks are not supported")
    expect_error("levels: 1\n  f =~ y1\n" + LEVEL2, 1, "unknown block identifier 'levels'")
    expect_error("level:\n  f =~ y1\n" + LEVEL2, 1, "level header")


@pytest.mark.parametrize("bad, fragment", [
    ("f = y1 + y2", "unknown operator '=' (did you mean '=~'?)"),
    ("y1 -> y2", "unknown operator '->'"),
    ("y1 <- y2", "unknown operator '<-'"),
    ("f => y1", "unknown operator '=>'"),
    ("y1 @ y2", "unexpected character '@'"),
    ("y1 ~ x - z", "minus sign"),
    ("f <~ y1 + y2", "'<~' (composites) is not supported"),
    ("a == b", "'==' (equality constraints"),
    ("y1 | t1", "thresholds"),
    ("d := a*b", "defined parameters"),
    ("f1 f2", "no operator"),
    ("y ~ x ~ z", "more than one operator"),
])
def test_error_operators(bad, fragment):
    expect_error(one_level("  f =~ y1 + y2\n  " + bad), 3, fragment)


@pytest.mark.parametrize("bad, fragment", [
    ("f =~ y1 + *y2", "empty modifier"),
    ("f =~ y1 + a**y2", "empty modifier"),
    ("f =~ y1 + 1a*y2", "malformed modifier"),
    ("f =~ y1 + (a+b)*y2", "malformed modifier"),
    ("f =~ y1 + start(a)*y2", "start() needs a number"),
    ("f =~ y1 + start(1, 2)*y2", "exactly one value"),
    ("f =~ y1 + fixed(a)*y2", "fixed() needs a number"),
    ("f =~ y1 + label(1)*y2", "needs a label"),
    ('f =~ y1 + ""*y2', "empty label"),
    ("f =~ y1 + lower(0)*y2", "lower() is not supported"),
    ("f =~ y1 + upper(1)*y2", "upper() is not supported"),
    ("f =~ y1 + c(1, 2)*y2", "c(...) gives one modifier per group"),
    ("f =~ y1 + in*y2", "reserved word"),
    ("f =~ y1 + a?y2", "'?' needs a number"),
    ("f =~ y1 + 2 y2", "cannot read the term"),
    ("a*f =~ y1 + y2", "not on the left"),
    ("f =~ y1 + \"y2", "unterminated quoted string"),
])
def test_error_malformed_modifiers(bad, fragment):
    expect_error(one_level("  y9 ~ x\n  " + bad), 3, fragment)


@pytest.mark.parametrize("bad, fragment", [
    ("y ~ y", "regressed on itself"),
    ("f =~ f + y1", "measured by itself"),
    ("y ~ 2", "an intercept is written '~ 1'"),
    ("y ~~ 1", "must be variable names"),
    ("f =~ 0", "must be variable names"),
    ("y ~ NA", "not a valid variable name"),
    ("y ~ _x", "not a valid variable name"),
    ("y ~", "missing right-hand side"),
    ("y1 + ~ x", "empty term"),
    ("y ~ x + + z", "empty term"),
])
def test_error_formulas(bad, fragment):
    expect_error(one_level("  f =~ y1 + y2\n  " + bad), 3, fragment)


def test_error_missing_left_hand_side():
    # a line that starts with an operator continues the formula above it (lavaan's rule),
    # so a missing left-hand side shows after a header
    expect_error("level: 1\n  ~ x\n" + LEVEL2, 2, "missing left-hand side of '~'")
    expect_error(one_level("  f =~ y1 + y2\n  ~ x"), 2, "more than one operator")


def test_error_covariance_written_twice():
    expect_error(one_level("  f =~ y1 + y2\n  y1 ~~ y2\n\n  y2 ~~ 0*y1"), 5,
                 "'y2 ~~ y1' is the covariance 'y1 ~~ y2' of line 3 again")


def test_error_empty_model():
    expect_error("", 1, "empty")
    expect_error("  # nothing\n\n", 1, "empty")


def test_error_line_numbers_count_blank_and_comment_lines():
    expect_error("# header\n\nlevel: 1\n\n  # a comment\n  f =~ y1 +\n    y2 + lower(1)*y3\n" + LEVEL2,
                 6, "lower()")


def test_no_warnings_for_plain_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in CASES:
            parse(json.loads((LAVAAN_DIR / f"{name}.json").read_text())["case"]["model"])
