"""inspect()'s lavaan names beyond the moments: est / se matrices, cov.lv, patterns and
coverage per level."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def fit(lavaan_fit):
    return lavaan_fit("demo_twolevel_missing")[1]


def test_est_and_se_matrices_hold_the_estimates(fit):
    est = fit.parameter_estimates()
    a = fit.inspect("est")
    se = fit.inspect("se")
    row = est[(est.lhs == "fw") & (est.op == "~") & (est.rhs == "x2")].iloc[0]
    assert a["within"]["A"].loc["fw", "x2"] == row.est
    assert se["within"]["A"].loc["fw", "x2"] == row.se > 0
    load = est[(est.lhs == "fb") & (est.op == "=~") & (est.rhs == "y1")].iloc[0]
    assert a["between"]["A"].loc["y1", "fb"] == load.est == 1.0
    assert se["between"]["A"].loc["y1", "fb"] == 0.0          # fixed: no standard error
    var = est[(est.lhs == "y2") & (est.op == "~~") & (est.rhs == "y2") & (est.level == 2)].iloc[0]
    assert a["between"]["S"].loc["y2", "y2"] == var.est


def test_latent_covariances_match_the_implied_moments(fit):
    lv = fit.inspect("cov.lv")
    names, b, psi, _ = fit.model.level_matrices(fit.theta, 1)
    est = fit.parameter_estimates()
    psi_fw = est[(est.lhs == "fw") & (est.op == "~~") & (est.level == 1)].est.iloc[0]
    gamma = np.array([est[(est.lhs == "fw") & (est.op == "~") & (est.rhs == x)].est.iloc[0]
                      for x in ("x1", "x2", "x3")])
    implied = fit.inspect("implied")["within"]["cov"].loc[["x1", "x2", "x3"], ["x1", "x2", "x3"]]
    # fw = gamma' x + zeta: Var(fw) = gamma' Sigma_xx gamma + psi
    assert lv["within"].loc["fw", "fw"] == pytest.approx(gamma @ implied.to_numpy() @ gamma + psi_fw,
                                                        rel=1e-10)
    assert list(lv["between"].index) == ["fb"]


def test_patterns_and_coverage(fit):
    data = fit.data
    pat = fit.inspect("patterns")
    assert pat["within"]["count"].sum() == data.n_obs
    assert pat["between"]["count"].sum() == data.n_clusters
    cov = fit.inspect("coverage")
    observed = ~np.isnan(data.y)
    assert np.allclose(np.diag(cov["within"]), observed.mean(axis=0))
    w1 = ~np.isnan(data.z[:, list(data.z_names).index("w1")])
    w2 = ~np.isnan(data.z[:, list(data.z_names).index("w2")])
    assert cov["between"].loc["w1", "w2"] == pytest.approx(np.mean(w1 & w2))


def test_unknown_inspect_name_lists_the_known_ones(fit):
    with pytest.raises(ValueError, match="'coverage'"):
        fit.inspect("nonsense")
