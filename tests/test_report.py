"""The summary's layout against lavaan 0.7.2's printed ``summary()``.

``tests/data/lavaan_summary/*.txt`` are lavaan's own summaries of the Demo model
(``make.R`` there). Each line of ours must have lavaan's shape: the same words at the
same columns, numbers ending at the same column, the same length (lavaan pads its
tables with blanks). The numbers themselves are checked elsewhere (``test_measures``,
``test_sem``); here only where they stand. What lavaan prints and mlmiss does not compute
(the GFI and the level-specific fit measures) and the lines naming the program and its
optimizer are left out of the comparison.
"""

from __future__ import annotations

import math
import re
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmiss
from conftest import LAVAAN_DIR
from mlmiss.model.partable import parameter_table
from mlmiss.report import _abbreviate, _block, _names, level2_patterns, summary_text

SUMMARY_DIR = Path(__file__).parent / "data" / "lavaan_summary"

MODEL = """
level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"""

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$|^NA$")


def shape(line: str):
    """A line's layout: words with their columns, numbers by the column they end at, and
    the line's length."""
    out = []
    for match in re.finditer(r"\S+", line):
        token = match.group()
        if _NUMBER.match(token):
            out.append(("number", match.end()))
        else:
            out.append((token, match.start()))
    return out, len(line)


def lavaan_lines(name: str, drop_test: bool = False) -> list[str]:
    """lavaan's summary without what mlmiss does not print: its first line (the program),
    the optimizer's name, the level-specific block (and, for a summary without fit
    measures, lavaan's test block)."""
    lines = (SUMMARY_DIR / name).read_text().splitlines()[1:]
    out, skipping = [], False
    for line in lines:
        if line == "Level-specific Fit Measures (other level saturated):" \
                or (drop_test and line == "Model Test User Model:"):
            skipping = True
        elif skipping and line and not line.startswith(" ") and line.endswith(":"):
            skipping = False
        if not skipping:
            out.append(line)
    return out


def ours_lines(text: str) -> list[str]:
    return text.splitlines()[1:]


def assert_same_layout(theirs: list[str], ours: list[str]) -> None:
    ignore = ("  Optimization method",)
    theirs = [s for s in theirs if not s.startswith(ignore)]
    ours = [s for s in ours if not s.startswith(ignore)]
    while theirs and not theirs[-1].strip():
        theirs.pop()
    while ours and not ours[-1].strip():
        ours.pop()
    for i, (a, b) in enumerate(zip(theirs, ours)):
        assert shape(a) == shape(b), f"line {i + 2}:\nlavaan: {a!r}\nmlmiss: {b!r}"
    assert len(theirs) == len(ours), (theirs[len(ours):], ours[len(theirs):])


@pytest.fixture(scope="module")
def demo():
    return pd.read_csv(LAVAAN_DIR / "demo_twolevel_missing.csv")


def fit_quietly(model, df, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmiss.sem(model, df, cluster="cluster", **options)


# ----------------------------------------------------------------------------- lavaan's layout

def test_standardized_and_rsquare_as_lavaan(demo):
    fit = fit_quietly(MODEL, demo, fixed_x=False)
    text = fit.summary(standardized=True, rsquare=True)
    assert_same_layout(lavaan_lines("ml_std_r2.txt"), ours_lines(text))
    # the fixed-zero intercepts lavaan adds and hides are not shown
    level1 = text.split("Level 2 [cluster]:")[0].split("Intercepts:")[1].split("Variances:")[0]
    assert ".y1" not in level1 and "fw" not in level1 and "x1" in level1
    assert "R-Square:" in text and "Std.lv  Std.all" in text


def test_fixed_x_used_and_total_as_lavaan(demo):
    fit = fit_quietly(MODEL, demo, fixed_x=True)
    text = fit.summary()
    assert_same_layout(lavaan_lines("fixedx.txt"), ours_lines(text))
    assert re.search(r"^  Number of observations\s+1516\s+2500$", text, flags=re.M)
    assert re.search(r"^  Number of missing patterns -- level 2\s+1\s+$", text, flags=re.M)


def test_labels_equalities_and_empty_rows_as_lavaan(demo):
    df = demo.copy()
    df.loc[0:2, ["y1", "y2", "y3", "x1", "x2", "x3"]] = np.nan
    df.loc[df["cluster"] == 5, ["w1", "w2"]] = np.nan
    model = MODEL.replace("fw =~ y1 + y2 + y3", "fw =~ y1 + a*y2 + a*y3")
    fit = fit_quietly(model, df, fixed_x=False)
    text = fit.summary(fit_measures=False)
    assert_same_layout(lavaan_lines("labels_empty.txt", drop_test=True), ours_lines(text))
    assert re.search(r"^  Number of equality constraints\s+1$", text, flags=re.M)
    assert re.search(r"^    y2         \(a\)    0\.7", text, flags=re.M)
    # four level-2 patterns in the data, one of them empty: lavaan counts three
    assert fit.data.level2.n_patterns == 4 and level2_patterns(fit.data) == 3
    assert re.search(r"^  Number of observations\s+2497\s+2500$", text, flags=re.M)


def test_mlr_as_lavaan(demo):
    fit = fit_quietly(MODEL, demo, fixed_x=False, estimator="MLR")
    text = fit.summary()
    assert_same_layout(lavaan_lines("mlr.txt"), ours_lines(text))
    for line in ("Standard errors                             Sandwich",
                 "Information bread                           Observed",
                 "  Yuan-Bentler correction (Mplus variant)",
                 "Robust Comparative Fit Index (CFI)", "Robust RMSEA"):
        assert line in text, line
    m = fit.fit_measures()
    row = next(s for s in text.splitlines() if s.startswith("  Test Statistic"))
    assert [float(v) for v in row.split()[-2:]] == pytest.approx(
        [m["chisq"], m["chisq_scaled"]], abs=1e-3)


# ----------------------------------------------------------------------------- the parts

def test_block_widens_like_r():
    assert _block([("a", "1"), ("bb", "22")], (5, 4)) == ["  a        1", "  bb      22"]
    # a cell wider than its column widens the whole column, as R's format() does
    assert _block([("a", "12345"), ("b", "1")], (3, 4)) == ["  a   12345", "  b       1"]
    # keep_edge: the label column gives the room instead
    assert _block([("a", "12345"), ("b", "1")], (3, 4), keep_edge=True) == \
        ["  a  12345", "  b      1"]


def test_abbreviate_like_r():
    # R: abbreviate(c("lambda", "b12345", "load_y2"), 4) and
    # abbreviate("VeryLongVariableName", 14, strict = TRUE)
    assert _abbreviate("lambda", 4, strict=False) == "lmbd"
    assert _abbreviate("b12345", 4, strict=False) == "b123"
    assert _abbreviate("load_y2", 4, strict=False) == "ld_2"
    assert _abbreviate("VeryLongVariableName", 14, strict=True) == "VeryLongVrblNm"
    assert _abbreviate("x1", 14, strict=True) == "x1"


def test_names_column():
    assert _names(["y1", "y2"]) == ["   y1            ", "   y2            "]
    assert _names(["y1", "y2"], ["", "a"], ["  .", ""]) == ["  .y1            ",
                                                           "   y2         (a)"]


def _stub(measures: dict, se: str = "robust"):
    """A stand-in fit of the Demo model with the given fit measures."""
    partable = parameter_table(MODEL, fixed_x=False)
    table = partable.table

    def parameter_estimates():
        out = table[["lhs", "op", "rhs", "level", "label"]].copy()
        out["est"] = np.where(table["free"] > 0, 0.5, table["value"].fillna(0.0))
        out["se"] = np.where(table["free"] > 0, 0.1, 0.0)
        return out

    return types.SimpleNamespace(
        npar=int(partable.npar), nobs=100, nclusters=10, converged=True, iterations=5,
        optimizer="em", partable=partable, cluster="school", se=se,
        options={"estimator": "MLR"}, parameter_estimates=parameter_estimates,
        fit_measures=lambda: measures, h1=lambda: types.SimpleNamespace(converged=True),
        baseline=lambda: types.SimpleNamespace(converged=True))


STANDARD = {"chisq": 9.735, "df": 10, "pvalue": 0.464, "baseline_chisq": 2003.424,
            "baseline_df": 21, "baseline_pvalue": 0.0, "cfi": 1.0, "tli": 1.0,
            "logl": -21068.921, "unrestricted_logl": -21064.054, "aic": 42205.843,
            "bic": 42403.86, "sabic": 42295.834, "rmsea": 0.0, "rmsea_ci_lower": 0.0,
            "rmsea_ci_upper": 0.021, "rmsea_ci_level": 0.9, "rmsea_pvalue": 1.0,
            "rmsea_close_h0": 0.05, "rmsea_notclose_pvalue": 0.0, "rmsea_notclose_h0": 0.08,
            "srmr_within": 0.004, "srmr_between": 0.04}
SCALED = {"chisq_scaled": 10.092, "df_scaled": 10, "pvalue_scaled": 0.432,
          "chisq_scaling_factor": 0.965, "baseline_chisq_scaled": 1933.975,
          "baseline_df_scaled": 21, "baseline_pvalue_scaled": 0.0,
          "baseline_chisq_scaling_factor": 1.036, "cfi_scaled": 1.0, "tli_scaled": 1.0,
          "cfi_robust": 1.0, "tli_robust": 1.0, "rmsea_scaled": 0.002, "rmsea_robust": 0.002}


def test_scaled_test_layout_from_the_measures_alone():
    """With the scaled keys (MLR) the two-column layout, whatever else the fit has; the
    measures a fit does not give leave their cells blank."""
    text = summary_text(_stub({**STANDARD, **SCALED}))
    lines = text.splitlines()
    assert "                                              Standard      Scaled" in lines
    assert "  Test Statistic                                 9.735      10.092" in lines
    assert "  Scaling correction factor                                  0.965" in lines
    assert "  Robust Comparative Fit Index (CFI)                         1.000" in lines
    assert "  Robust RMSEA                                               0.002" in lines
    assert "  Loglikelihood user model (H0)             -21068.921  -21068.921" in lines
    assert "  Standard errors                             Sandwich" in lines
    assert "Level 2 [school]:" in lines and "  Number of clusters [school]" in text
    plain = summary_text(_stub(STANDARD, se="standard"))
    assert "Scaled" not in plain and "Robust" not in plain
    assert "  Test statistic                                 9.735" in plain.splitlines()
    assert "  Information                                 Observed" in plain.splitlines()


def test_no_between_only_variables_no_level2_pattern_line(demo):
    model = "level: 1\n  fw =~ y1 + y2 + y3\nlevel: 2\n  fb =~ y1 + y2 + y3\n"
    fit = fit_quietly(model, demo, fixed_x=False)
    assert level2_patterns(fit.data) is None
    text = fit.summary(fit_measures=False)
    assert "-- level 1" in text and "-- level 2" not in text
    assert math.isfinite(fit.loglik)
