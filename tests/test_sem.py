"""FIML fits against lavaan 0.7.2's on the shared reference cases."""

import numpy as np
import pandas as pd
import pytest

import mlmiss
from conftest import CASES, LAVAAN_DIR, load_case

FIT_CASES = [c for c in CASES if c != "demo_twolevel_fixedx"]


@pytest.fixture(scope="module")
def fits(lavaan_fit):
    return lavaan_fit


@pytest.mark.parametrize("case", FIT_CASES)
def test_loglik_reaches_lavaan(fits, case):
    ref, fit = fits(case)
    assert fit.converged
    # the same maximum, or a higher one (lavaan's EM can stop a little short)
    assert fit.loglik >= ref["fit"]["loglik"] - 1e-3
    assert fit.loglik == pytest.approx(mlmiss.loglik(fit.data, fit.implied()["moments"]), abs=1e-8)


@pytest.mark.parametrize("case", FIT_CASES)
def test_estimates_match_lavaan(fits, case):
    ref, fit = fits(case)
    ours = fit.parameter_estimates()
    theirs = pd.DataFrame(ref["fit"]["estimates"])
    assert list(ours["lhs"]) == list(theirs["lhs"])
    assert list(ours["op"]) == list(theirs["op"])
    assert list(ours["rhs"]) == list(theirs["rhs"])
    assert list(ours["level"]) == list(theirs["level"])
    scale = np.maximum(1.0, np.abs(theirs["est"].to_numpy()))
    worst = np.max(np.abs(ours["est"].to_numpy() - theirs["est"].to_numpy()) / scale)
    assert worst <= 2e-3


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_counts(fits, case):
    ref, fit = fits(case)
    assert fit.npar == ref["fit"]["fit_measures"]["npar"]
    assert fit.nobs == ref["fit"]["nobs"]
    assert fit.nclusters == ref["fit"]["nclusters"]


def test_singular_between_keeps_its_zeros(fits):
    ref, fit = fits("singular_between")
    pe = fit.parameter_estimates()
    zeros = pe[(pe.level == 2) & (pe.op == "~~") & (pe.lhs == pe.rhs) & pe.lhs.isin(["y1", "y2", "y3", "y4"])]
    assert len(zeros) == 4 and np.all(zeros["est"] == 0.0)


def test_implied_per_level(fits):
    ref, fit = fits("demo_twolevel_missing")
    implied = fit.implied()
    m = implied["moments"]
    expected = mlmiss.Moments.from_dict(ref["fit"]["moments"])
    np.testing.assert_allclose(m.sigma_w, expected.sigma_w, atol=2e-3)
    within = implied["within"]
    assert list(within["cov"].columns) == list(fit.data.y_names)
    # "both" variables' within means are 0 (they live at the between level)
    assert within["mean"][["y1", "y2", "y3"]].eq(0).all()
    assert list(implied["between"]["mean"].index) == ["y1", "y2", "y3", "w1", "w2"]


def test_non_convergence_is_reported():
    ref, _ = load_case("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    with pytest.warns(mlmiss.ConvergenceWarning):
        fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", maxiter=2, fixed_x=False)
    assert not fit.converged and fit.iterations <= 2
    assert "NOT converged" in repr(fit)


def test_unknown_variable_is_named():
    ref, _ = load_case("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    model = ref["case"]["model"].replace("y3", "y9")
    with pytest.raises(ValueError, match="y9"):
        mlmiss.sem(model, df, cluster="cluster", fixed_x=False)


def test_fixed_x_true_matches_lavaan():
    """lavaan's default fixed.x = TRUE: covariates fixed, conditional log-likelihood."""
    ref, _ = load_case("demo_twolevel_fixedx")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=True)
    assert fit.converged
    assert fit.npar == ref["fit"]["fit_measures"]["npar"]
    assert fit.loglik >= ref["fit"]["loglik"] - 1e-3
    assert fit.loglik == pytest.approx(ref["fit"]["loglik"], abs=1e-3)
    theirs = pd.DataFrame(ref["fit"]["estimates"])
    ours = fit.parameter_estimates()
    scale = np.maximum(1.0, np.abs(theirs["est"].to_numpy()))
    assert np.max(np.abs(ours["est"].to_numpy() - theirs["est"].to_numpy()) / scale) <= 2e-3


def test_fixed_x_drops_rows_with_missing_covariates():
    ref, _ = load_case("demo_twolevel_fixedx")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    df.loc[[0, 5, 9], "x2"] = np.nan
    with pytest.warns(UserWarning, match="3 rows dropped"):
        fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=True)
    assert fit.nobs == len(df) - 3


def test_equal_labels_are_one_parameter():
    ref, _ = load_case("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    model = ref["case"]["model"].replace("fw =~ y1 + y2 + y3", "fw =~ y1 + a*y2 + a*y3")
    constrained = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
    free = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False)
    assert constrained.npar == free.npar - 1
    pe = constrained.parameter_estimates()
    loadings = pe[(pe.op == "=~") & (pe.level == 1) & pe.rhs.isin(["y2", "y3"])]["est"]
    assert loadings.iloc[0] == loadings.iloc[1]
    assert constrained.loglik < free.loglik
