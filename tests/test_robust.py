"""Robust (MLR) inference: cluster log-likelihoods and scores, the sandwich standard
errors and the Yuan-Bentler scaled test, against lavaan 0.7.2's MLR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss.likelihood import cluster_logliks, loglik
from mlmiss.inference.robust import cluster_scores

from conftest import CASES, LAVAAN_DIR

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
    scores = cluster_scores(fit.problem, fit.theta)
    gradient = fit.problem.gradient(fit.theta)
    scale = np.abs(scores).sum(axis=0)
    # at the estimates the gradient is ~0: compare with the scores' own size
    assert np.max(np.abs(scores.sum(axis=0) - gradient) / scale) < 1e-7
