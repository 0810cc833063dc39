"""The h1 (saturated) fit's default path: a few EM cycles, then the Krylov trust region
on the moments in the metric of each level's expected information
(:mod:`mlmiss.likelihood.expected`, :class:`mlmiss.estimation.saturated.SaturatedMoments`)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmiss
from mlmiss.estimation.optimizers import optimize
from mlmiss.estimation.saturated import SaturatedMoments, SaturatedProblem, fit_saturated
from mlmiss.likelihood import Directions, expected, loglik_hessian
from mlmiss.likelihood.expected import covariance_information

from conftest import LAVAAN_DIR, case_problem

CASES = ["demo_twolevel_missing", "paper_like", "singular_between"]

#: a CFA with small between variances (ICC about 0.05-0.1) on 150 clusters, where EM
#: and L-BFGS on the Cholesky factors crawl (the "unseen" case of bench/)
LOW_ICC = """
level: 1
  f1 =~ 1*u1 + 0.8*u2 + 0.7*u3 + 0.9*u4
  f1 ~~ 1.0*f1
  u1 ~~ 0.5*u1
  u2 ~~ 0.6*u2
  u3 ~~ 0.4*u3
  u4 ~~ 0.5*u4
level: 2
  fb =~ 1*u1 + 0.9*u2 + 0.8*u3 + 1.0*u4
  fb ~ 0.4*v
  fb ~~ 0.1*fb
  v ~~ 1*v
  u1 ~~ 0.05*u1
  u2 ~~ 0.05*u2
  u3 ~~ 0.05*u3
  u4 ~~ 0.05*u4
"""
LOW_ICC_MODEL = """
level: 1
  f1 =~ u1 + u2 + u3 + u4
level: 2
  fb =~ u1 + u2 + u3 + u4
  fb ~ v
"""


def unrestricted_logl(name):
    ref = json.loads((LAVAAN_DIR / f"{name}.json").read_text())
    return ref["fit"]["fit_measures"]["unrestricted.logl"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_covariance_information_is_the_trace(m, seed):
    """1/2 tr(E C_a E C_b) over unit symmetric directions, from the Kronecker sums,
    against the trace itself (two clusters' E summed)."""
    rng = np.random.default_rng(seed)
    es = []
    for _ in range(2):
        a = rng.normal(size=(m, m))
        es.append(a @ a.T + 0.1 * np.eye(m))
    kron = sum(np.einsum("tu,vs->tuvs", e, e) for e in es)
    rows, cols = np.tril_indices(m)
    dirs = []
    for i, j in zip(rows, cols):
        c = np.zeros((m, m))
        c[i, j] = c[j, i] = 1.0
        dirs.append(c)
    want = np.array([[sum(0.5 * np.trace(e @ ca @ e @ cb) for e in es) for cb in dirs]
                     for ca in dirs])
    np.testing.assert_allclose(covariance_information(kron, rows, cols), want,
                               rtol=1e-12, atol=1e-12 * np.abs(want).max())


def saturated_maximum(problem):
    """(SaturatedMoments, its theta at the h1 maximum, from the direct fit)."""
    direct = fit_saturated(problem, "direct")
    assert direct.converged
    moments = SaturatedMoments(direct.problem)
    return moments, moments.from_factors(direct.estimate.theta)


def differenced_hessian(objective, theta, step=1e-6):
    """The Hessian of -logl / N by central differences of the analytic gradient."""
    n = float(objective.data.n_obs)
    cols = []
    for i in range(theta.size):
        h = step * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        cols.append((objective.loglik_and_gradient(down)[1]
                     - objective.loglik_and_gradient(up)[1]) / (2 * h * n))
    out = np.array(cols)
    return 0.5 * (out + out.T)


@pytest.mark.parametrize("name", CASES)
def test_the_metric_is_near_the_hessian(name):
    """At the h1 maximum the generalized eigenvalues of the Hessian of -logl/N against
    the block-diagonal expected information lie in [0.6, 1.25] on these cases
    (observed); a metric missing a level's Kronecker sums, or with E_j = A_j, is off by
    orders of magnitude."""
    moments, theta = saturated_maximum(case_problem(name))
    metric = moments.metric(theta)
    values = scipy.linalg.eigh(differenced_hessian(moments, theta), metric, eigvals_only=True)
    assert 0.45 < values[0] and values[-1] < 1.6, values[[0, -1]]


@pytest.mark.parametrize("name", CASES)
def test_a_sample_of_clusters_gives_a_metric_as_good(name, monkeypatch):
    """Beyond SAMPLE clusters the level-2 sums come from an evenly spaced sample,
    weighted up: with 50 of the 200-300 clusters the eigenvalues stay in [0.59, 1.17]
    (observed); without the weight they would fall by the sampling fraction."""
    moments, theta = saturated_maximum(case_problem(name))
    hessian = differenced_hessian(moments, theta)
    monkeypatch.setattr(expected, "SAMPLE", 50)
    values = scipy.linalg.eigh(hessian, moments.metric(theta), eigvals_only=True)
    assert 0.45 < values[0] and values[-1] < 1.6, values[[0, -1]]


@pytest.mark.parametrize("name", CASES)
def test_the_moments_problem_has_the_gradient_of_its_loglik(name):
    """SaturatedMoments' gradient (an off-diagonal element counts twice) against
    central differences of its log-likelihood, near the maximum."""
    moments, theta = saturated_maximum(case_problem(name))
    theta = theta * 1.001
    value, grad = moments.loglik_and_gradient(theta)
    for i in range(0, theta.size, max(1, theta.size // 25)):
        h = 1e-5 * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        diff = (moments.loglik_and_gradient(up)[0] - moments.loglik_and_gradient(down)[0]) / (2 * h)
        assert diff == pytest.approx(grad[i], abs=1e-4 * max(1.0, abs(grad[i])))


def test_the_moments_problem_refuses_indefinite_matrices():
    moments, theta = saturated_maximum(case_problem("singular_between"))
    a, b, c, _ = moments.factors.sizes
    bad = theta.copy()
    bad[a + b] = -1.0   # the first within variance
    assert moments.loglik_and_gradient(bad) == (-np.inf, None)


@pytest.mark.parametrize("name", CASES)
def test_the_default_h1_fit_takes_the_trust_region_and_reaches_lavaan(name):
    """Same maximum as L-BFGS on the Cholesky factors (observed: to 2e-10 logl) and at
    least lavaan's unrestricted log-likelihood."""
    problem = case_problem(name)
    auto, direct = fit_saturated(problem), fit_saturated(problem, "direct")
    assert auto.converged and auto.estimate.optimizer == "em + trust-krylov"
    assert isinstance(auto.problem, SaturatedMoments)
    assert abs(auto.loglik - direct.loglik) <= 1e-9 * problem.data.n_obs
    assert auto.loglik >= unrestricted_logl(name) - 1e-6
    for a, b in ((auto.moments.sigma_w, direct.moments.sigma_w),
                 (auto.moments.sigma_b, direct.moments.sigma_b),
                 (auto.moments.mu_y, direct.moments.mu_y)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_low_intraclass_correlation_needs_few_trust_region_steps():
    """Where EM crawls (small between variances), the trust region in the metric ends
    in a handful of iterations (observed 6 including 3 EM cycles, against 45
    L-BFGS iterations on the Cholesky factors) at the direct fit's maximum."""
    df = mlmiss.simulate(LOW_ICC, n_clusters=150, cluster_sizes=8, missing={"mcar": 0.1},
                         seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmiss.sem(LOW_ICC_MODEL, df, cluster="cluster", fixed_x=False)
    auto, direct = fit.h1(), fit.h1(method="direct")
    assert auto.estimate.optimizer == "em + trust-krylov"
    assert auto.estimate.iterations <= 25
    assert abs(auto.loglik - direct.loglik) <= 1e-9 * fit.nobs


def test_without_a_metric_h1_falls_back_to_lbfgs(monkeypatch):
    problem = case_problem("demo_twolevel_missing")
    monkeypatch.setattr(SaturatedMoments, "metric", lambda self, theta: None)
    fallback = fit_saturated(problem)
    assert fallback.converged and isinstance(fallback.problem, SaturatedProblem)
    assert fallback.loglik >= unrestricted_logl("demo_twolevel_missing") - 1e-6


def test_trust_krylov_alone_does_not_hand_over():
    """optimizer="trust-krylov" stops where the Krylov trust region stops; "auto" would
    go on with trust-exact."""
    problem = case_problem("demo_twolevel_missing")
    estimate = optimize(problem, problem.start(), "trust-krylov", maxiter=1)
    assert estimate.optimizer == "trust-krylov" and not estimate.converged


def test_hessian_along_between_directions_only():
    """loglik_hessian with no within directions (the between block of the saturated
    model's Hessian) equals that block of the full one."""
    moments, theta = saturated_maximum(case_problem("singular_between"))
    f = moments.factors
    at = moments.moments(theta)
    p, k, nb, m = f.p, f.data.n_z, f.both.size, f.m
    a, b, c, _ = f.sizes
    dirs = []
    for i in range(b):                     # between means
        d = {"mu_y": np.zeros(p), "mu_z": np.zeros(k)}
        if i < nb:
            d["mu_y"][f.both[i]] = 1.0
        else:
            d["mu_z"][i - nb] = 1.0
        dirs.append((d, np.zeros((m, m))))
    for i, j in zip(*f.tril_b):            # joint between covariance
        e = np.zeros((m, m))
        e[i, j] = e[j, i] = 1.0
        dirs.append(({"mu_y": np.zeros(p), "mu_z": np.zeros(k)}, e))

    def stack(with_within):
        mu_y, mu_z, sw, sb, szz, syz = [], [], [], [], [], []
        for d, e in dirs:
            mu_y.append(d["mu_y"])
            mu_z.append(d["mu_z"])
            sw.append(np.zeros((p, p)))
            full = np.zeros((p, p))
            full[np.ix_(f.both, f.both)] = e[:nb, :nb]
            sb.append(full)
            szz.append(e[nb:, nb:])
            cross = np.zeros((p, k))
            cross[f.both, :] = e[:nb, nb:]
            syz.append(cross)
        if with_within:                    # one within variance as an extra direction
            mu_y.append(np.zeros(p))
            mu_z.append(np.zeros(k))
            w = np.zeros((p, p))
            w[0, 0] = 1.0
            sw.append(w)
            sb.append(np.zeros((p, p)))
            szz.append(np.zeros((k, k)))
            syz.append(np.zeros((p, k)))
        return Directions(*(np.array(x) for x in (mu_y, mu_z, sw, sb, szz, syz)))

    between_only = loglik_hessian(f.data, at, stack(False))
    full = loglik_hessian(f.data, at, stack(True))
    np.testing.assert_allclose(between_only, full[:-1, :-1], rtol=1e-10,
                               atol=1e-10 * np.abs(full).max())


def test_h1_without_variables_at_both_levels():
    """Within-only level-1 variables and a between-only one: no "both" variable, so
    the level-2 information has no A_j part (this shape once made the metric fail)."""
    rng = np.random.default_rng(1)
    cluster = np.repeat(np.arange(60), 6)
    y = rng.normal(size=(360, 3))
    y[:, 1] += 0.5 * y[:, 0]
    df = pd.DataFrame(y, columns=["y1", "y2", "y3"])
    df["z"] = rng.normal(size=60)[cluster]
    df["cluster"] = cluster
    df.loc[rng.random(360) < 0.1, "y2"] = np.nan
    model = "level: 1\n f =~ y1 + y2 + y3\nlevel: 2\n z ~~ z\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
    auto, direct = fit.h1(), fit.h1(method="direct")
    assert auto.estimate.optimizer == "em + trust-krylov"
    assert abs(auto.loglik - direct.loglik) <= 1e-9 * fit.nobs


def test_an_inadmissible_start_is_not_a_maximum():
    """The trust region started where the moments are not positive definite stops at
    once with a zero gradient (the convention for such points): not converged."""
    moments, theta = saturated_maximum(case_problem("singular_between"))
    a, b, c, _ = moments.factors.sizes
    bad = theta.copy()
    bad[a + b + c] = 0.0   # the first between variance
    estimate = optimize(moments, bad, "trust-krylov")
    assert not estimate.converged
