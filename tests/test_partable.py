"""Parameter tables with lavaan's sem() defaults, checked against lavaan's own tables.

The oracle is tests/data/lavaan/*.json (lavaan 0.7.2): ``fit.estimates`` is lavaan's full
parameter table, in lavaan's row order, with ``se == 0`` on fixed rows. A few smaller
models further down were checked row by row against ``parTable()`` of lavaan 0.6.14
(``sem(..., cluster=, do.fit = FALSE)``); their expected tables are written out here.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import CASES, LAVAAN_DIR
from mlmiss.model.partable import COLUMNS, ModelDataError, ParTable, check_variables, parameter_table
from mlmiss.errors import ModelSyntaxError
from mlmiss.model.syntax import Modifiers, Statement, parse


def _reference(name):
    ref = json.loads((LAVAAN_DIR / f"{name}.json").read_text())
    fixed_x = ref["case"]["options"].get("fixed.x", True)   # lavaan's default is TRUE
    return ref, fixed_x


@pytest.fixture(scope="module", params=CASES)
def case(request):
    ref, fixed_x = _reference(request.param)
    return ref, fixed_x, parameter_table(ref["case"]["model"], fixed_x=fixed_x)


# ----------------------------------------------------------------- lavaan 0.7.2 references

def test_same_rows_in_lavaans_order(case):
    ref, _, pt = case
    est = ref["fit"]["estimates"]
    ours = list(zip(pt.table["lhs"], pt.table["op"], pt.table["rhs"], pt.table["level"]))
    theirs = [(e["lhs"], e["op"], e["rhs"], e["level"]) for e in est]
    assert ours == theirs


def test_same_free_and_fixed(case):
    ref, _, pt = case
    lavaan_free = [e["se"] > 0 for e in ref["fit"]["estimates"]]
    assert list(pt.table["free"] > 0) == lavaan_free


def test_same_fixed_values(case):
    ref, fixed_x, pt = case
    for (_, row), e in zip(pt.table.iterrows(), ref["fit"]["estimates"]):
        if row.free:
            continue
        if fixed_x and row.exo:
            # fixed.x rows: lavaan fills in the sample moments; ours wait for the data
            assert math.isnan(row.value)
        else:
            assert row.value == e["est"], (row.lhs, row.op, row.rhs, row.level)


def test_same_labels(case):
    ref, _, pt = case
    assert list(pt.table["label"]) == [e.get("label") or "" for e in ref["fit"]["estimates"]]


def test_same_variables_as_lavaan(case):
    ref, _, pt = case
    assert pt.y_names == ref["start"]["moments"]["y_names"]
    assert pt.z_names == ref["start"]["moments"]["z_names"]


def test_same_number_of_parameters(case):
    ref, _, pt = case
    assert pt.npar == ref["fit"]["fit_measures"]["npar"]
    assert sorted(set(pt.table["free"]) - {0}) == list(range(1, pt.npar + 1))


def test_fixed_x_rows_are_the_covariates():
    ref, fixed_x = _reference("demo_twolevel_fixedx")
    assert fixed_x
    pt = parameter_table(ref["case"]["model"], fixed_x=True)
    exo = pt.table[pt.table["exo"] == 1]
    assert set(zip(exo["lhs"], exo["rhs"], exo["level"])) == {
        ("x1", "x1", 1), ("x1", "x2", 1), ("x1", "x3", 1), ("x2", "x2", 1), ("x2", "x3", 1),
        ("x3", "x3", 1), ("x1", "", 1), ("x2", "", 1), ("x3", "", 1),
        ("w1", "w1", 2), ("w1", "w2", 2), ("w2", "w2", 2), ("w1", "", 2), ("w2", "", 2)}
    assert (exo["free"] == 0).all() and exo["value"].isna().all()
    # the same rows are exo (and free) with fixed_x=False
    free = parameter_table(ref["case"]["model"]).table
    assert list(free["exo"]) == list(pt.table["exo"])
    assert (free.loc[free["exo"] == 1, "free"] > 0).all()


def test_paper_like_names_and_levels():
    ref, _ = _reference("paper_like")
    pt = parameter_table(ref["case"]["model"])
    assert pt.both_names == ["y1", "y2", "y3", "y4", "y5", "y6"]
    assert pt.within_names == ["y7", "y8", "y9", "y10", "x1", "x2", "x3"]
    assert pt.between_names == pt.z_names == ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]
    assert pt.latent_names == {1: ["fw"], 2: ["fb", "fz", "fwb"]}
    assert pt.observed_names == pt.y_names + pt.z_names


# ----------------------------------------------------------------- the table itself

def test_columns_and_types():
    pt = parameter_table(_reference("demo_twolevel")[0]["case"]["model"])
    t = pt.table
    assert list(t.columns) == COLUMNS
    assert list(t["id"]) == list(range(1, len(t) + 1))
    for col in ("id", "level", "user", "free", "exo"):
        assert t[col].dtype == np.int64
    assert t["value"].dtype == float
    assert set(t["op"]) <= {"=~", "~", "~~", "~1"}
    assert (t.loc[t["op"] == "~1", "rhs"] == "").all()
    assert isinstance(pt, ParTable) and len(pt) == len(t)
    assert "ParTable(41 rows, 34 free parameters" in repr(pt)


def test_free_numbered_in_row_order():
    t = parameter_table(_reference("paper_like")[0]["case"]["model"]).table
    free = t.loc[t["free"] > 0, "free"]
    assert list(free) == list(range(1, len(free) + 1))


def test_user_rows_come_first_in_each_level():
    t = parameter_table(_reference("paper_like")[0]["case"]["model"]).table
    for level in (1, 2):
        user = list(t.loc[t["level"] == level, "user"])
        assert user == sorted(user, reverse=True)
    assert list(t["level"]) == sorted(t["level"])


def _expected(rows: str):
    """'lhs op rhs level value' lines; rhs '.' is empty; value '*' is free, 'NA' fixed NaN."""
    out = []
    for line in rows.strip().splitlines():
        lhs, op, rhs, level, value = line.split()
        out.append((lhs, op, "" if rhs == "." else rhs, int(level), value))
    return out


def _as_expected(pt: ParTable):
    out = []
    for _, r in pt.table.iterrows():
        value = "*" if r.free else ("NA" if math.isnan(r.value) else f"{r.value:g}")
        out.append((r.lhs, r.op, r.rhs, r.level, value))
    return out


# tables from lavaan 0.6.14: parTable(sem(model, data, cluster = "cluster", do.fit = FALSE))
LAVAAN_TABLES = {
    # variable order: indicators, dependents, predictors, then (co)variance/intercept-only
    # variables, which is not the order of first appearance; a reversed covariance
    # (v ~~ u) is written in variable order; y and z names from lavaan's Lp
    "order": (False, """
        level: 1
          y ~ x
          f =~ a + b + c
          u ~~ v
        level: 2
          q ~ 1
          fb =~ a + b + c
          y ~ z
          v ~~ u
        """, """
        y ~ x 1 *
        f =~ a 1 1
        f =~ b 1 *
        f =~ c 1 *
        u ~~ v 1 *
        a ~~ a 1 *
        b ~~ b 1 *
        c ~~ c 1 *
        y ~~ y 1 *
        u ~~ u 1 *
        v ~~ v 1 *
        f ~~ f 1 *
        x ~~ x 1 *
        a ~1 . 1 0
        b ~1 . 1 0
        c ~1 . 1 0
        y ~1 . 1 0
        x ~1 . 1 *
        u ~1 . 1 0
        v ~1 . 1 0
        f ~1 . 1 0
        q ~1 . 2 *
        fb =~ a 2 1
        fb =~ b 2 *
        fb =~ c 2 *
        y ~ z 2 *
        u ~~ v 2 *
        a ~~ a 2 *
        b ~~ b 2 *
        c ~~ c 2 *
        y ~~ y 2 *
        u ~~ u 2 *
        v ~~ v 2 *
        q ~~ q 2 *
        fb ~~ fb 2 *
        z ~~ z 2 *
        a ~1 . 2 *
        b ~1 . 2 *
        c ~1 . 2 *
        y ~1 . 2 *
        z ~1 . 2 *
        u ~1 . 2 *
        v ~1 . 2 *
        fb ~1 . 2 0
        """, ["a", "b", "c", "y", "x", "u", "v"], ["z", "q"]),
    # a single indicator's residual variance is fixed at 0; exogenous latents covary
    "single_indicator": (False, """
        level: 1
          f =~ y1 + y2 + y3
          s =~ y4
        level: 2
          g =~ y1 + y2 + y3
          h =~ y4
          g ~~ h
        """, """
        f =~ y1 1 1
        f =~ y2 1 *
        f =~ y3 1 *
        s =~ y4 1 1
        y1 ~~ y1 1 *
        y2 ~~ y2 1 *
        y3 ~~ y3 1 *
        y4 ~~ y4 1 0
        f ~~ f 1 *
        s ~~ s 1 *
        f ~~ s 1 *
        y1 ~1 . 1 0
        y2 ~1 . 1 0
        y3 ~1 . 1 0
        y4 ~1 . 1 0
        f ~1 . 1 0
        s ~1 . 1 0
        g =~ y1 2 1
        g =~ y2 2 *
        g =~ y3 2 *
        h =~ y4 2 1
        g ~~ h 2 *
        y1 ~~ y1 2 *
        y2 ~~ y2 2 *
        y3 ~~ y3 2 *
        y4 ~~ y4 2 0
        g ~~ g 2 *
        h ~~ h 2 *
        y1 ~1 . 2 *
        y2 ~1 . 2 *
        y3 ~1 . 2 *
        y4 ~1 . 2 *
        g ~1 . 2 0
        h ~1 . 2 0
        """, ["y1", "y2", "y3", "y4"], []),
    # a mediator is not a 'pure' dependent: no default residual covariance y ~~ m
    "mediation": (False, """
        level: 1
          y ~ m
          m ~ x
        level: 2
          y ~~ y + m
          m ~~ m
        """, """
        y ~ m 1 *
        m ~ x 1 *
        y ~~ y 1 *
        m ~~ m 1 *
        x ~~ x 1 *
        y ~1 . 1 0
        m ~1 . 1 0
        x ~1 . 1 *
        y ~~ y 2 *
        y ~~ m 2 *
        m ~~ m 2 *
        y ~1 . 2 *
        m ~1 . 2 *
        """, ["y", "m", "x"], []),
    # fixed.x = TRUE: a level-2 predictor that is a level-1 dependent (m) is fixed at level
    # 2 in lavaan's table too (its warning says otherwise)
    "split_x_fixed": (True, """
        level: 1
          m ~ x
        level: 2
          y2 ~ m + w
        """, """
        m ~ x 1 *
        m ~~ m 1 *
        x ~~ x 1 NA
        m ~1 . 1 0
        x ~1 . 1 NA
        y2 ~ m 2 *
        y2 ~ w 2 *
        y2 ~~ y2 2 *
        m ~~ m 2 NA
        m ~~ w 2 NA
        w ~~ w 2 NA
        y2 ~1 . 2 *
        m ~1 . 2 NA
        w ~1 . 2 NA
        """, ["m", "x"], ["y2", "w"]),
}


@pytest.mark.parametrize("name", sorted(LAVAAN_TABLES))
def test_small_models_match_lavaan(name):
    fixed_x, model, rows, y_names, z_names = LAVAAN_TABLES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pt = parameter_table(model, fixed_x=fixed_x)
    assert _as_expected(pt) == _expected(rows)
    assert pt.y_names == y_names and pt.z_names == z_names


def test_split_x_with_fixed_x_warns():
    with pytest.warns(UserWarning, match="m: exogenous at level 2 but a dependent variable at level 1"):
        parameter_table(LAVAAN_TABLES["split_x_fixed"][1], fixed_x=True)


# ----------------------------------------------------------------- the defaults one by one

def _row(pt, lhs, op, rhs, level):
    t = pt.table
    hit = t[(t["lhs"] == lhs) & (t["op"] == op) & (t["rhs"] == rhs) & (t["level"] == level)]
    assert len(hit) == 1, (lhs, op, rhs, level)
    return hit.iloc[0]


TWO_REGRESSIONS = """
level: 1
  f =~ y1 + y2 + y3
  y4 ~ f + x1
  y5 ~ x1 + x2
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w
"""


def test_auto_cov_y_residual_covariance_of_regressed_variables():
    pt = parameter_table(TWO_REGRESSIONS)
    r = _row(pt, "y4", "~~", "y5", 1)
    assert r.user == 0 and r.free > 0
    # the latent f is a predictor, not a pure dependent: no f ~~ y4
    t = pt.table
    assert not ((t["op"] == "~~") & (t["lhs"] == "f") & (t["rhs"] != "f")).any()


def test_exogenous_covariates_random_by_default():
    pt = parameter_table(TWO_REGRESSIONS)
    for lhs, rhs in [("x1", "x1"), ("x1", "x2"), ("x2", "x2")]:
        r = _row(pt, lhs, "~~", rhs, 1)
        assert r.free > 0 and r.exo == 1 and r.user == 0
    assert _row(pt, "x1", "~1", "", 1).free > 0
    assert _row(pt, "w", "~~", "w", 2).free > 0
    fixed = parameter_table(TWO_REGRESSIONS, fixed_x=True)
    for lhs, op, rhs, level in [("x1", "~~", "x2", 1), ("x2", "~1", "", 1), ("w", "~~", "w", 2),
                                ("w", "~1", "", 2)]:
        r = _row(fixed, lhs, op, rhs, level)
        assert r.free == 0 and r.exo == 1 and math.isnan(r.value)
    assert fixed.npar == parameter_table(TWO_REGRESSIONS).npar - 7


def test_covariate_named_in_syntax_is_not_exogenous():
    model = "level: 1\n y ~ x1 + x2\n x1 ~~ x1\nlevel: 2\n y ~~ y"
    with pytest.warns(UserWarning, match="predictor"):
        pt = parameter_table(model, fixed_x=True)
    assert _row(pt, "x1", "~~", "x1", 1).free > 0 and _row(pt, "x1", "~~", "x1", 1).exo == 0
    assert _row(pt, "x2", "~~", "x2", 1).free == 0 and _row(pt, "x2", "~~", "x2", 1).exo == 1
    t = pt.table
    assert not ((t["lhs"] == "x1") & (t["rhs"] == "x2")).any()


def test_intercepts_by_level():
    pt = parameter_table(TWO_REGRESSIONS)
    for v in ("y1", "y2", "y3"):                       # "both": mean lives at level 2
        assert _row(pt, v, "~1", "", 1).free == 0 and _row(pt, v, "~1", "", 1).value == 0
        assert _row(pt, v, "~1", "", 2).free > 0
    for v in ("y4", "y5", "x1", "x2"):                 # within-only
        assert _row(pt, v, "~1", "", 1).free > 0
    assert _row(pt, "w", "~1", "", 2).free > 0         # between-only
    for lv, level in (("f", 1), ("fb", 2)):            # latent means
        assert _row(pt, lv, "~1", "", level).free == 0 and _row(pt, lv, "~1", "", level).value == 0
    assert pt.within_names == ["y4", "y5", "x1", "x2"]
    assert pt.both_names == ["y1", "y2", "y3"] and pt.z_names == ["w"]


def test_user_latent_mean_and_intercept():
    model = "level: 1\n f =~ y1 + y2 + y3\n y1 ~ 1\nlevel: 2\n fb =~ y1 + y2 + y3\n fb ~ 1"
    pt = parameter_table(model)
    # lavaan's two-level rule wins over the user's level-1 intercept of a 'both' variable
    r = _row(pt, "y1", "~1", "", 1)
    assert r.user == 1 and r.free == 0 and r.value == 0
    assert _row(pt, "fb", "~1", "", 2).free > 0


def test_marker_loading_and_NA():
    pt = parameter_table("level: 1\n f =~ y1 + y2\n f =~ y3\nlevel: 2\n g =~ NA*y1 + y2 + y3\n g ~~ 1*g")
    assert _row(pt, "f", "=~", "y1", 1).free == 0 and _row(pt, "f", "=~", "y1", 1).value == 1
    assert _row(pt, "f", "=~", "y3", 1).free > 0
    g1 = _row(pt, "g", "=~", "y1", 2)
    assert g1.free > 0 and math.isnan(g1.value)
    assert _row(pt, "g", "=~", "y2", 2).free > 0       # NA frees y1; y2 is not made the marker
    assert _row(pt, "g", "~~", "g", 2).free == 0 and _row(pt, "g", "~~", "g", 2).value == 1


def test_exogenous_latent_covariances():
    model = ("level: 1\n f =~ y1 + y2 + y3\nlevel: 2\n a =~ y1 + y2\n b =~ y3 + z1\n"
             " c =~ z2 + z3\n a ~~ 0*c")
    pt = parameter_table(model)
    assert _row(pt, "a", "~~", "b", 2).free > 0 and _row(pt, "b", "~~", "c", 2).free > 0
    r = _row(pt, "a", "~~", "c", 2)
    assert r.user == 1 and r.free == 0 and r.value == 0


def test_start_values_fill_value_of_free_rows():
    pt = parameter_table("level: 1\n f =~ y1 + start(0.5)*y2 + 0.8?y3\nlevel: 2\n g =~ y1 + y2 + y3")
    r = _row(pt, "f", "=~", "y2", 1)
    assert r.free > 0 and r.value == 0.5
    assert _row(pt, "f", "=~", "y3", 1).value == 0.8
    assert math.isnan(_row(pt, "g", "=~", "y2", 2).value)


def test_start_on_a_marker_moves_its_fixed_value():
    # lavaan: "if a starting value is provided, the parameter is not automatically
    # considered to be free"; a start() on the marker loading changes the value it is fixed
    # at (lavaan 0.6.14's table: free 0, ustart 0.8)
    pt = parameter_table("level: 1\n f =~ start(0.8)*y1 + y2 + y3\nlevel: 2\n g =~ y1 + y2 + y3")
    r = _row(pt, "f", "=~", "y1", 1)
    assert r.free == 0 and r.value == 0.8


def test_equal_labels_share_one_index_across_levels():
    model = ("level: 1\n fw =~ y1 + a*y2 + b*y3\n y1 ~~ v*y1\nlevel: 2\n"
             " fb =~ y1 + a*y2 + b*y3\n y1 ~~ v*y1")
    pt = parameter_table(model)
    for label in ("a", "b", "v"):
        rows = pt.table[pt.table["label"] == label]
        assert len(rows) == 2 and rows["free"].nunique() == 1 and rows["free"].iloc[0] > 0
    free = pt.table.loc[pt.table["free"] > 0, "free"]
    assert pt.npar == free.nunique() == free.max()
    unlabelled = parameter_table(model.replace("a*", "").replace("b*", "").replace("v*", ""))
    assert pt.npar == unlabelled.npar - 3


def test_label_shared_with_a_fixed_parameter_fixes_all():
    pt = parameter_table("level: 1\n f =~ a*y1 + a*y2 + y3\nlevel: 2\n g =~ y1 + y2 + 2*y3 + c*y3\n"
                         " g ~~ c*g")
    assert _row(pt, "f", "=~", "y2", 1).free == 0 and _row(pt, "f", "=~", "y2", 1).value == 1
    assert _row(pt, "g", "~~", "g", 2).free == 0 and _row(pt, "g", "~~", "g", 2).value == 2


def test_covariance_written_in_variable_order():
    pt = parameter_table("level: 1\n f =~ y1 + y2 + y3\n y3 ~~ y1\nlevel: 2\n g =~ y1 + y2 + y3")
    r = _row(pt, "y1", "~~", "y3", 1)
    assert r.user == 1


def test_statements_as_input():
    model = _reference("demo_twolevel")[0]["case"]["model"]
    a = parameter_table(model).table
    b = parameter_table(parse(model)).table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ModelSyntaxError, match="level 2"):
        parameter_table([Statement("f", "=~", "y1", Modifiers(), 1)])
    with pytest.raises(TypeError):
        parameter_table(["f =~ y1"])
    twice = [Statement("f", "=~", "y1", level=1, line=1), Statement("f", "=~", "y1", level=1, line=2),
             Statement("g", "=~", "y1", level=2, line=4)]
    with pytest.raises(ModelSyntaxError, match="given twice"):
        parameter_table(twice)


# ----------------------------------------------------------------- check_variables

def test_check_variables():
    ref, _ = _reference("paper_like")
    pt = parameter_table(ref["case"]["model"])
    columns = pd.read_csv(LAVAAN_DIR / ref["case"]["data"], nrows=2)
    check_variables(pt, columns)                        # a DataFrame
    check_variables(pt, list(columns.columns))          # or names
    with pytest.raises(ModelDataError, match=r"y10, w3 are not column\(s\) of the data") as err:
        check_variables(pt, [c for c in columns.columns if c not in ("y10", "w3")])
    assert isinstance(err.value, ValueError)
    assert "fb" in str(err.value)                       # latent names are listed as not needed
    with pytest.raises(ModelDataError, match="z1 is not"):
        check_variables(ref["case"]["model"], [c for c in columns.columns if c != "z1"])
