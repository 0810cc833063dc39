"""The likelihood-ratio test of nested models (mlmiss.lrt, Fit.lrt) against lavaan 0.7.2's
lavTestLRT() (tests/data/lavaan_extra/lrt.json, made by lrt.R there)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss.inference.lrt import COLUMNS, satorra_bentler_2001

from conftest import LAVAAN_DIR

LRT_JSON = Path(__file__).parent / "data" / "lavaan_extra" / "lrt.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(LRT_JSON.read_text())


@pytest.fixture(scope="module")
def frame(reference):
    return pd.read_csv(LAVAAN_DIR / reference["data"])


@pytest.fixture(scope="module")
def fits(reference, frame):
    """{estimator: {model name: fit}} for lavaan's three models, ML and MLR."""
    out = {}
    for estimator in ("ML", "MLR"):
        out[estimator] = {}
        for name, model in reference["models"].items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = mlmiss.sem(model, frame, cluster=reference["cluster"], fixed_x=False,
                                 estimator=estimator)
                fit.fit_measures()
            out[estimator][name] = fit
    return out


def _lavaan_table(ref: dict) -> pd.DataFrame:
    """A lavTestLRT() table from the JSON as a DataFrame with our column names."""
    table = pd.DataFrame({k: [np.nan if v is None else v for v in ref[k]] for k in COLUMNS},
                         index=ref["models"])
    if "scale" in ref:
        table["scaling_factor"] = [np.nan if v is None else v for v in ref["scale"]]
    return table


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame, diff_rel: float):
    assert list(ours.index) == list(theirs.index)
    assert list(ours.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert ours["df"].tolist() == theirs["df"].tolist()
    assert np.isnan(ours["df_diff"].iloc[0]) and np.isnan(ours["chisq_diff"].iloc[0])
    assert ours["df_diff"].iloc[1:].tolist() == theirs["df_diff"].iloc[1:].tolist()
    np.testing.assert_allclose(ours["chisq"], theirs["chisq"], rtol=1e-3)
    np.testing.assert_allclose(ours["aic"], theirs["aic"], rtol=1e-7)
    np.testing.assert_allclose(ours["bic"], theirs["bic"], rtol=1e-7)
    np.testing.assert_allclose(ours["chisq_diff"].iloc[1:], theirs["chisq_diff"].iloc[1:],
                               rtol=diff_rel)
    np.testing.assert_allclose(ours["pvalue"].iloc[1:], theirs["pvalue"].iloc[1:], atol=1e-3)


@pytest.mark.parametrize("which", ["lrt_m1_m2", "lrt_all"])
def test_ml_table_matches_lavaan(which, fits, reference):
    theirs = _lavaan_table(reference["estimators"]["ML"][which])
    f = fits["ML"]
    if which == "lrt_m1_m2":
        ours = mlmiss.lrt(f["m1"], f["m2"], names=["m1", "m2"])
    else:  # lavaan was given m3, m1, m2 and sorted them by df
        ours = mlmiss.lrt(f["m3"], f["m1"], f["m2"], names=["m3", "m1", "m2"])
    _compare(ours, theirs, diff_rel=1e-3)
    assert "scaling_factor" not in ours.columns
    assert ours.attrs["method"] == "standard"
    assert ours.attrs["heading"] in theirs_heading(reference, "ML", which)
    # the plain difference of the statistics, and the log-likelihoods' difference
    np.testing.assert_allclose(ours["chisq_diff"].iloc[1:], np.diff(ours["chisq"]), atol=1e-9)
    logl = [f[name].loglik for name in ours.index]
    np.testing.assert_allclose(ours["chisq_diff"].iloc[1:], -2 * np.diff(logl), atol=1e-6)


def theirs_heading(reference, estimator, which) -> str:
    """lavaan's heading with straight quotes (R's dQuote gives curly ones)."""
    heading = reference["estimators"][estimator][which]["heading"]
    return heading.replace("\u201c", '"').replace("\u201d", '"')


@pytest.mark.parametrize("which", ["lrt_m1_m2", "lrt_all"])
def test_mlr_table_matches_lavaan(which, fits, reference):
    """The Satorra-Bentler (2001) scaled difference. lavaan's cluster scores leave out a
    path on this data set (see test_robust.py), so its scaling factors are not exactly
    ours; the scaled differences still agree within 1%."""
    theirs = _lavaan_table(reference["estimators"]["MLR"][which])
    f = fits["MLR"]
    if which == "lrt_m1_m2":
        ours = f["m1"].lrt(f["m2"], names=["m1", "m2"])
    else:
        ours = f["m3"].lrt(f["m1"], f["m2"], names=["m3", "m1", "m2"])
    _compare(ours, theirs, diff_rel=0.01)
    np.testing.assert_allclose(ours["scaling_factor"].iloc[1:], theirs["scaling_factor"].iloc[1:],
                               rtol=0.01)
    assert math.isnan(ours["scaling_factor"].iloc[0])
    assert ours.attrs["method"] == "satorra.bentler.2001"
    assert ours.attrs["heading"] in theirs_heading(reference, "MLR", which)
    # the "chisq" column holds the standard statistics, as the ML table's
    ml = mlmiss.lrt(*(fits["ML"][n] for n in ours.index), names=list(ours.index))
    np.testing.assert_allclose(ours["chisq"], ml["chisq"], rtol=1e-9)


class FakeFit(SimpleNamespace):
    """A fit-like object with given fit measures (what lrt reads)."""

    def fit_measures(self):
        return self.measures


def _fake(measures: dict, data, test="standard", converged=True):
    return FakeFit(measures=measures, data=data, test=test,
                   options={"estimator": "MLR" if test != "standard" else "ML"},
                   nobs=data.n_obs, nclusters=data.n_clusters,
                   estimate=SimpleNamespace(converged=converged))


@pytest.mark.parametrize("estimator", ["ML", "MLR"])
def test_lavaans_own_numbers_give_its_table(estimator, fits, reference):
    """Fed lavaan's own chisq, df, AIC, BIC and scaling factors, lrt reproduces its table
    to rounding: the arithmetic (ordering, differences, the 2001 scaled difference, the
    p-values) is lavaan's."""
    ref = reference["estimators"][estimator]
    test = "yuan.bentler.mplus" if estimator == "MLR" else "standard"
    data = fits["ML"]["m1"].data
    fakes = {}
    for name, m in ref["measures"].items():
        measures = {"chisq": m["chisq"], "df": m["df"], "aic": m["aic"], "bic": m["bic"]}
        if estimator == "MLR":
            measures["chisq_scaling_factor"] = m["chisq.scaling.factor"]
        fakes[name] = _fake(measures, data, test)
    ours = mlmiss.lrt(fakes["m3"], fakes["m1"], fakes["m2"], names=["m3", "m1", "m2"])
    theirs = _lavaan_table(ref["lrt_all"])
    for column in theirs.columns:
        np.testing.assert_allclose(ours[column].to_numpy(float), theirs[column].to_numpy(float),
                                   rtol=1e-9, atol=1e-12, err_msg=column)


def test_satorra_bentler_2001_special_cases():
    # cd = (df0 c0 - df1 c1) / (df0 - df1)
    t, cd = satorra_bentler_2001(20.0, 12, 1.2, 10.0, 10, 1.1)
    assert cd == pytest.approx((12 * 1.2 - 10 * 1.1) / 2)
    assert t == pytest.approx(10.0 / cd)
    # a saturated less restricted model counts with c1 = 1 (it is multiplied by df1 = 0)
    t, cd = satorra_bentler_2001(20.0, 5, 1.3, 0.0, 0, float("nan"))
    assert cd == pytest.approx(1.3) and t == pytest.approx(20.0 / 1.3)
    # a perfectly fitting less restricted model counts with c1 = 0
    t, cd = satorra_bentler_2001(20.0, 5, 1.3, 1e-10, 3, 1.7)
    assert cd == pytest.approx(5 * 1.3 / 2)
    # a negative cd: lavaan warns and leaves the difference missing
    with pytest.warns(UserWarning, match="negative"):
        t, cd = satorra_bentler_2001(20.0, 11, 0.5, 10.0, 10, 1.0)
    assert math.isnan(t) and math.isnan(cd)


def test_fit_lrt_is_mlmiss_lrt(fits):
    f = fits["ML"]
    pd.testing.assert_frame_equal(f["m2"].lrt(f["m1"]), mlmiss.lrt(f["m2"], f["m1"]))
    # default names by position, rows sorted by df
    assert list(mlmiss.lrt(f["m2"], f["m1"]).index) == ["model2", "model1"]
    # a list of fits works too
    pd.testing.assert_frame_equal(mlmiss.lrt([f["m1"], f["m2"]]), mlmiss.lrt(f["m1"], f["m2"]))


def test_checks_are_errors(fits, reference, frame):
    ml, mlr = fits["ML"], fits["MLR"]
    with pytest.raises(ValueError, match="at least two fits"):
        mlmiss.lrt(ml["m1"])
    with pytest.raises(ValueError, match="mix estimators"):
        mlmiss.lrt(ml["m1"], mlr["m2"])
    with pytest.raises(ValueError, match="same degrees of freedom"):
        mlmiss.lrt(ml["m1"], ml["m2"], ml["m1"])
    with pytest.raises(ValueError, match="names"):
        mlmiss.lrt(ml["m1"], ml["m2"], names=["a"])
    model = reference["models"]["m2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # other rows: the last cluster left out
        fewer = mlmiss.sem(model, frame[frame["cluster"] != frame["cluster"].iloc[-1]],
                           cluster="cluster", fixed_x=False)
        # the same shape, one value changed
        changed = frame.copy()
        changed.loc[changed["y1"].first_valid_index(), "y1"] += 1.0
        other = mlmiss.sem(model, changed, cluster="cluster", fixed_x=False,
                           start=ml["m2"].theta)
        # other variables: w2 left out of the model
        no_w2 = mlmiss.sem(reference["models"]["m1"].replace("fb ~ w1 + w2", "fb ~ w1"), frame,
                           cluster="cluster", fixed_x=False)
    with pytest.raises(ValueError, match="different data"):
        mlmiss.lrt(ml["m1"], fewer)
    with pytest.raises(ValueError, match="values of 'y1' differ"):
        mlmiss.lrt(ml["m1"], other)
    with pytest.raises(ValueError, match="different between-only observed variables"):
        mlmiss.lrt(ml["m1"], no_w2)


def test_warnings_as_lavaan(fits):
    data = fits["ML"]["m1"].data
    # the more restricted model fits better: lavaan's warning, the difference is negative
    free = _fake({"chisq": 12.0, "df": 10, "aic": 1.0, "bic": 1.0}, data)
    restricted = _fake({"chisq": 11.0, "df": 11, "aic": 1.0, "bic": 1.0}, data)
    with pytest.warns(UserWarning, match="restricted models fit better"):
        table = mlmiss.lrt(free, restricted)
    assert table["chisq_diff"].iloc[1] == pytest.approx(-1.0)
    # a tiny negative difference (below eps^(1/3)) is no warning
    restricted.measures = {**restricted.measures, "chisq": 12.0 - 1e-7}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mlmiss.lrt(free, restricted)
    # not converged
    stuck = _fake({"chisq": 15.0, "df": 11, "aic": 1.0, "bic": 1.0}, data, converged=False)
    with pytest.warns(UserWarning, match="not all models converged"):
        mlmiss.lrt(free, stuck)
    # MLR with a negative scaling factor of the difference: missing, unscaled heading
    a = _fake({"chisq": 12.0, "df": 10, "aic": 1.0, "bic": 1.0, "chisq_scaling_factor": 1.5},
              data, test="yuan.bentler.mplus")
    b = _fake({"chisq": 14.0, "df": 11, "aic": 1.0, "bic": 1.0, "chisq_scaling_factor": 1.0},
              data, test="yuan.bentler.mplus")
    with pytest.warns(UserWarning, match="negative"):
        table = mlmiss.lrt(a, b)
    assert math.isnan(table["chisq_diff"].iloc[1]) and math.isnan(table["pvalue"].iloc[1])
    assert table.attrs["heading"] == "Chi-Squared Difference Test"
