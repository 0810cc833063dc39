"""Robust (MLR) inference: cluster log-likelihoods and scores, the sandwich standard
errors and the Yuan-Bentler scaled test, against lavaan 0.7.2's MLR."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss.likelihood import cluster_logliks, loglik
from mlmiss.inference.robust import cluster_gradients

from conftest import CASES, LAVAAN_DIR, load_case

MLR_JSON = Path(__file__).parent / "data" / "lavaan_extra" / "mlr.json"


@pytest.mark.parametrize("case", CASES)
def test_cluster_logliks_sum_to_the_loglik(case, lavaan_case):
    ref, data = lavaan_case(case)
    moments = mlmiss.Moments.from_dict(ref["start"]["moments"])
    each = cluster_logliks(data, moments)
    assert each.shape == (data.n_clusters,)
    total = loglik(data, moments)
    assert abs(each.sum() - total) <= 1e-11 * abs(total)


def test_a_cluster_loglik_is_that_cluster_alone(lavaan_case):
    """Each cluster's term is the log-likelihood of a data set holding only that
    cluster (an independent evaluation: other patterns, other bookkeeping)."""
    ref, data = lavaan_case("demo_twolevel_missing")
    moments = mlmiss.Moments.from_dict(ref["start"]["moments"])
    each = cluster_logliks(data, moments)
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    cluster = ref["case"]["cluster"]
    checked = 0
    for j in range(data.n_clusters):
        alone = df[df[cluster] == data.cluster_ids[j]]
        if alone[list(data.y_names) + list(data.z_names)].isna().all().any():
            continue   # a variable with no value in the cluster: not a data set alone
        one = mlmiss.TwoLevelData.from_frame(alone, cluster, y=list(data.y_names),
                                             z=list(data.z_names))
        assert each[j] == pytest.approx(loglik(one, moments), rel=1e-12, abs=1e-9)
        checked += 1
    assert checked >= 20


def test_cluster_logliks_are_none_where_the_likelihood_is_not_defined(lavaan_case):
    ref, data = lavaan_case("paper_like")
    moments = mlmiss.Moments.from_dict(ref["start"]["moments"])
    bad = moments.sigma_w.copy()
    bad[0, 0] = -1.0
    broken = mlmiss.Moments(moments.mu_y, moments.mu_z, bad, moments.sigma_b, moments.sigma_zz,
                            moments.sigma_yz, between=moments.between_mask)
    assert cluster_logliks(data, broken) is None
    assert loglik(data, broken) == -np.inf


@pytest.mark.parametrize("case", ["demo_twolevel_missing", "paper_like"])
def test_cluster_scores_sum_to_the_gradient(case, lavaan_fit):
    _, fit = lavaan_fit(case)
    scores = cluster_gradients(fit.problem, fit.theta)
    gradient = fit.problem.gradient(fit.theta)
    scale = np.abs(scores).sum(axis=0)
    # at the estimates the gradient is ~0: compare with the scores' own size
    assert np.max(np.abs(scores.sum(axis=0) - gradient) / scale) < 1e-7


# ------------------------------------------------------------------ against lavaan's MLR
def mlr_reference():
    return json.loads(MLR_JSON.read_text())["cases"]


@pytest.fixture(scope="module")
def mlr_fit():
    cache = {}

    def get(case):
        if case not in cache:
            ref = json.loads((LAVAAN_DIR / f"{case}.json").read_text())
            df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = mlmiss.sem(ref["case"]["model"], df, cluster=ref["case"]["cluster"],
                                 fixed_x=ref["case"]["options"].get("fixed.x", True),
                                 estimator="MLR")
                fit.fit_measures()
            cache[case] = fit
        return cache[case]

    return get


def lavaan_se(fit, lav):
    rows = pd.DataFrame(lav["estimates"])
    return fit.model.theta_from_estimates(rows.assign(est=rows["se"]))


#: where lavaan's cluster scores are exact (no level-1 regression on random covariates
#: moves the within means of "both" variables); observed agreement: SEs 2.2e-4 relative,
#: scaling factors 1.1e-4, robust indices 1e-6
EXACT_CASES = ["paper_like", "demo_twolevel_fixedx"]


@pytest.mark.parametrize("case", EXACT_CASES)
def test_robust_standard_errors_match_lavaan(case, mlr_fit):
    fit, lav = mlr_fit(case), mlr_reference()[case]
    assert fit.se == "robust" and fit.test == "yuan.bentler.mplus"
    ours = np.sqrt(np.diag(fit.vcov()))
    theirs = lavaan_se(fit, lav)
    assert np.max(np.abs(ours / theirs - 1.0)) < 1e-3
    # and they are not the standard ones
    assert np.max(np.abs(np.sqrt(np.diag(fit.standard_vcov())) / theirs - 1.0)) > 0.02


@pytest.mark.parametrize("case", EXACT_CASES)
def test_scaled_test_matches_lavaan(case, mlr_fit):
    m, lav = mlr_fit(case).fit_measures(), mlr_reference()[case]["measures"]
    for key in ("chisq_scaling_factor", "chisq_scaled", "baseline_chisq_scaling_factor",
                "baseline_chisq_scaled", "scaling_factor_h1", "scaling_factor_h0"):
        assert m[key] == pytest.approx(lav[key.replace("_", ".")], rel=5e-4), key
    for key in ("cfi_robust", "tli_robust", "rmsea_robust", "cfi_scaled", "tli_scaled",
                "rmsea_scaled", "rmsea_ci_upper_robust", "rmsea_ci_upper_scaled",
                "rmsea_pvalue_robust", "rmsea_pvalue_scaled"):
        assert m[key] == pytest.approx(lav[key.replace("_", ".")], abs=1e-4), key
    assert m["df_scaled"] == lav["df.scaled"]


def test_where_lavaan_leaves_out_a_path_of_the_scores(mlr_fit):
    """demo_twolevel_missing with random covariates: fw ~ x1 + x2 + x3 at level 1 gives
    y1-y3 ("both" variables) a within mean that moves with the x means. lavaan's cluster
    scores leave that path out (its h1 scores of the within means of "both" variables are
    zero), so its first-order information, robust SEs of the x means and h0 trace differ
    from the exact ones; everything that does not pass through that path agrees."""
    case = "demo_twolevel_missing"
    fit, lav = mlr_fit(case), mlr_reference()[case]
    m = fit.fit_measures()
    for key in ("scaling_factor_h1", "baseline_chisq_scaling_factor"):
        assert m[key] == pytest.approx(lav["measures"][key.replace("_", ".")], rel=1e-4), key
    ours = np.sqrt(np.diag(fit.vcov()))
    theirs = lavaan_se(fit, lav)
    table = fit.partable.table
    x_means = [int(table[(table.lhs == x) & (table.op == "~1") & (table.level == 1)].free.iloc[0]) - 1
               for x in ("x1", "x2", "x3")]
    others = np.setdiff1d(np.arange(fit.npar), x_means)
    assert np.max(np.abs(ours[others] / theirs[others] - 1.0)) < 0.01
    assert np.max(np.abs(ours[x_means] / theirs[x_means] - 1.0)) > 0.005
    # lavaan's first-order information of the x means is reproduced exactly by scores
    # that hold the "both" variables' means fixed while an x mean moves
    _, data = load_case(case)
    imp = lav["implied"]
    mu_w, mu_b = np.ravel(imp["within"]["mean"]), np.ravel(imp["cluster"]["mean"])
    sw, sb = np.array(imp["within"]["cov"]), np.array(imp["cluster"]["cov"])
    assert list(data.y_names) == ["y1", "y2", "y3", "x1", "x2", "x3"]
    mu_y = mu_w.copy()
    mu_y[:3] += mu_b[:3]
    sigma_b = np.zeros((6, 6))
    sigma_b[:3, :3] = sb[:3, :3]
    sigma_yz = np.zeros((6, 2))
    sigma_yz[:3] = sb[:3, 3:]
    between = np.array([True] * 3 + [False] * 3)
    for k, index in zip((3, 4, 5), x_means):
        h = 1e-5
        shifted = []
        for sign in (1.0, -1.0):
            mu = mu_y.copy()
            mu[k] += sign * h
            shifted.append(cluster_logliks(data, mlmiss.Moments(
                mu, mu_b[3:], sw, sigma_b, sb[3:, 3:], sigma_yz, between=between)))
        score = (shifted[0] - shifted[1]) / (2 * h)
        assert (score ** 2).mean() == pytest.approx(lav["first_order_diag"][index], rel=1e-6)


def test_robust_standard_errors_alone(mlr_fit):
    """se="robust" with the standard test: the MLR standard errors, no scaled measures."""
    mlr = mlr_fit("paper_like")
    ref = json.loads((LAVAAN_DIR / "paper_like.json").read_text())
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False, se="robust",
                         start=mlr.theta)
    assert fit.se == "robust" and fit.test == "standard"
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov())), np.sqrt(np.diag(mlr.vcov())),
                               rtol=1e-6)
    assert "chisq_scaled" not in fit.fit_measures(scaled=False)
    none = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False, se="none",
                      start=mlr.theta)
    assert "se" not in none.parameter_estimates().columns


def test_a_just_identified_model_keeps_its_measures_under_mlr(lavaan_case):
    """df = 0: no scaling factor (NaN, as lavaan), every other measure still there."""
    df = pd.read_csv(LAVAAN_DIR / "demo_twolevel_missing.csv")
    model = """
level: 1
  y1 ~~ y2 + y3
  y2 ~~ y3
level: 2
  y1 ~~ y2 + y3
  y2 ~~ y3
"""
    fit = mlmiss.sem(model, df, cluster="cluster", fixed_x=False, estimator="MLR")
    m = fit.fit_measures()
    assert m["df"] == 0 and np.isnan(m["chisq_scaling_factor"]) and np.isnan(m["chisq_scaled"])
    assert np.isfinite(m["logl"]) and np.isfinite(m["baseline_chisq_scaled"])
    assert "not available" not in fit.summary()


def test_no_test_and_no_standard_errors(lavaan_case):
    df = pd.read_csv(LAVAAN_DIR / "demo_twolevel_missing.csv")
    ref = json.loads((LAVAAN_DIR / "demo_twolevel_missing.json").read_text())
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False, se="none",
                     test="none")
    with pytest.raises(ValueError, match="test='none'"):
        fit.fit_measures()
    assert "Model Test User Model" not in fit.summary()
    with pytest.raises(ValueError, match="se='none'"):
        fit.inspect("se")
    assert fit.inspect("est")["within"]["A"].loc["fw", "x1"] != 0.0
