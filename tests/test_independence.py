"""The baseline model's variable-by-variable estimates (mlmiss.estimation.independence)
against the general optimizer on the engine's likelihood, which they must match."""

import numpy as np
import pandas as pd
import pytest
from conftest import LAVAAN_DIR, load_case

import mlmiss
from mlmiss.estimation.baseline import baseline_syntax
from mlmiss.estimation.build import build_problem
from mlmiss.estimation.independence import (
    independence_theta,
    normal_fiml,
    random_intercepts,
)
from mlmiss.estimation.optimizers import optimize
from mlmiss.data.summaries import cluster_summaries


def _baseline(name, fixed_x):
    ref, data = load_case(name)
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=fixed_x)
    return build_problem(baseline_syntax(fit.problem.partable), fit.problem.data, checks=False)


@pytest.mark.parametrize("name, fixed_x", [("paper_like", False), ("demo_twolevel_missing", True),
                                           ("demo_twolevel_missing", False),
                                           ("demo_twolevel", True)])
def test_independence_estimates_are_the_baseline_maximum(name, fixed_x):
    base = _baseline(name, fixed_x)
    theta = independence_theta(base)
    general = optimize(base, base.start(), label="baseline")
    assert general.converged
    value, gradient = base.loglik_and_gradient(theta)
    n = base.data.n_obs
    # observed: logl within 2e-11, theta within 3e-8, scaled gradient 1e-10
    assert value == pytest.approx(general.loglik, abs=1e-8)
    assert np.max(np.abs(gradient * base.scales) / n) < 1e-8
    np.testing.assert_allclose(theta, general.theta, atol=2e-6)
    # started there, the optimizer stops at once
    again = optimize(base, theta, label="baseline")
    assert again.converged and again.iterations <= 1


def test_random_intercepts_against_direct_formula():
    """-2 logl of V_j = a I + b 1 1' summed densely over clusters is smallest at the
    one-way fit's (mu, a, b): every coordinate moved either way raises it."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 9, 60)
    cluster = np.repeat(np.arange(60), sizes)
    y = 2.0 + rng.normal(0, 0.7, 60)[cluster] + rng.normal(0, 1.3, cluster.size)
    y[rng.random(cluster.size) < 0.2] = np.nan
    counts, means, within = cluster_summaries(y[:, None], cluster, 60)
    mu, a, b = (v[0] for v in random_intercepts(counts, means, within))

    def minus2(mu, a, b):
        total = 0.0
        for j in range(60):
            v = y[cluster == j]
            v = v[~np.isnan(v)] - mu
            if v.size:
                cov = a * np.eye(v.size) + b
                total += np.linalg.slogdet(cov)[1] + v @ np.linalg.solve(cov, v)
        return total

    best = minus2(mu, a, b)
    for i in range(3):
        for h in (-1e-4, 1e-4):
            moved = np.array([mu, a, b])
            moved[i] += h
            assert minus2(*moved) > best
    assert 0 < b < 2 and 0.5 < a < 3


def test_random_intercepts_at_the_edge_leave_it_to_the_optimizer():
    """No between variance in the data and an ML estimate of b at 0: no estimate (NaN),
    and the baseline fit still finds the maximum."""
    rng = np.random.default_rng(3)
    cluster = np.repeat(np.arange(40), 5)
    # cluster means pulled together: the between variance's ML estimate is on the edge
    e = rng.normal(0, 1, cluster.size)
    e -= 0.9 * (np.bincount(cluster, e) / 5)[cluster]
    counts, means, within = cluster_summaries(e[:, None], cluster, 40)
    mu, a, b = random_intercepts(counts, means, within)
    assert np.isnan(b[0]) and np.isnan(a[0]) and np.isnan(mu[0])


def test_normal_fiml_complete_and_missing():
    rng = np.random.default_rng(11)
    cov = np.array([[1.0, 0.4, 0.2], [0.4, 2.0, -0.3], [0.2, -0.3, 0.5]])
    x = rng.multivariate_normal([1.0, -1.0, 0.0], cov, 400)
    mean, fitted = normal_fiml(x)
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(fitted, np.cov(x.T, bias=True), atol=1e-12)
    x[rng.random(x.shape) < 0.2] = np.nan
    mean, fitted = normal_fiml(x)
    # the ML estimate under missing data: the observed-data log-likelihood is
    # stationary there (its gradient in the mean is sum_i S_i^-1 (x_i - mu) over o_i)
    grad = np.zeros(3)
    for row in x:
        o = ~np.isnan(row)
        if o.any():
            grad[o] += np.linalg.solve(fitted[np.ix_(o, o)], row[o] - mean[o])
    assert np.max(np.abs(grad)) < 1e-8
    assert normal_fiml(np.full((5, 2), np.nan)) is None
