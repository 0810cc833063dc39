"""The first stage (:mod:`mlmiss.estimation.moment_start`): the model fitted to the
levels' sample moments, a start near the FIML maximum and a metric near its Hessian."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmiss
from mlmiss.estimation.build import build_problem
from mlmiss.estimation.checks import admissible_start
from mlmiss.estimation.moment_start import _Level, _level_terms, _levels, _phi, moment_start

from conftest import LAVAAN_DIR, case_problem


def problem_of(name):
    """(the case's lavaan answers, its problem, the simple start)."""
    problem = case_problem(name)
    return (json.loads((LAVAAN_DIR / f"{name}.json").read_text()), problem,
            admissible_start(problem, problem.start(), False))


def test_phi_gradient_matches_differences():
    _, problem, theta = problem_of("demo_twolevel_missing")
    between = problem.model.moments(theta).between_index
    level1, level2, harmonic = _levels(problem.data, between)
    levels = (level1, level2)
    value, grad, info = _phi(problem, theta, levels, harmonic)
    numeric = np.empty_like(grad)
    for t in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[t]))
        up, down = theta.copy(), theta.copy()
        up[t] += h
        down[t] -= h
        numeric[t] = (_phi(problem, up, levels, harmonic, False)[0]
                      - _phi(problem, down, levels, harmonic, False)[0]) / (2 * h)
    # observed: 2e-9 relative to the largest element
    np.testing.assert_allclose(grad, numeric, atol=1e-7 * np.max(np.abs(grad)))
    assert np.allclose(info, info.T) and np.linalg.eigvalsh(info)[0] > 0


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5), st.integers(1, 4), st.integers(0, 10_000))
def test_information_is_the_hessian_at_an_exact_fit(d, n_par, seed):
    """Sigma and mu linear in theta, sample moments equal to the implied ones: F's
    Hessian is exactly the Fisher information _level_terms returns."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    sigma0 = a @ a.T + d * np.eye(d)
    d_sigma = rng.normal(size=(n_par, d, d))
    d_sigma = 0.3 * (d_sigma + d_sigma.transpose(0, 2, 1))
    d_mu = rng.normal(size=(n_par, d))
    mu0 = rng.normal(size=d)
    means = np.arange(d) if seed % 2 else np.arange(d - 1)   # means of all or some
    level = _Level(1.0, sigma0, mu0[means], means, 1.0 + seed % 3)   # mean weight 1-3

    def terms(theta):
        return _level_terms(level, sigma0 + np.tensordot(theta, d_sigma, 1), d_sigma,
                            mu0 + theta @ d_mu, d_mu, True)

    zero = np.zeros(n_par)
    _, grad, info = terms(zero)
    assert np.max(np.abs(grad)) < 1e-10
    hessian = np.empty((n_par, n_par))
    for t in range(n_par):
        step = np.zeros(n_par)
        step[t] = 1e-6
        hessian[:, t] = (terms(step)[1] - terms(-step)[1]) / 2e-6
    np.testing.assert_allclose(hessian, info, atol=1e-6 * max(1.0, np.max(np.abs(info))))


@pytest.mark.parametrize("name,gap_bound", [("paper_like", 50.0), ("singular_between", 20.0),
                                            ("demo_twolevel_missing", 10.0)])
def test_start_near_the_maximum_and_metric_near_the_hessian(name, gap_bound):
    """Observed: the start is 16.1, 6.5 and 2.1 below lavaan's maximum (the simple start
    4497, 3371 and 955), and the eigenvalues of metric^-1 H lie in [0.27, 1.59]."""
    ref, problem, simple = problem_of(name)
    first = moment_start(problem, simple)
    assert first is not None
    maximum = ref["fit"]["loglik"]
    assert problem.loglik(simple) < problem.loglik(first.theta) <= maximum + 1e-6
    assert maximum - problem.loglik(first.theta) < gap_bound
    fit = mlmiss.sem(ref["case"]["model"], pd.read_csv(LAVAAN_DIR / ref["case"]["data"]),
                     cluster=ref["case"]["cluster"], fixed_x=False)
    assert fit.options["start"] == "moments" and fit.converged
    assert fit.loglik == pytest.approx(maximum, abs=1e-5)
    hessian = fit.information() / problem.data.n_obs
    ratios = np.linalg.eigvals(np.linalg.solve(first.metric, hessian)).real
    assert 0.1 < ratios.min() and ratios.max() < 4.0


def test_a_degenerate_first_stage_is_not_used():
    """demo_twolevel's first 12 clusters: Phi's scoring runs along a ridge and does not
    converge in 50 steps, so the fit starts where lavaan does (converged, 16 iterations,
    logl -746.2653)."""
    model = ("level: 1\n  fw =~ y1 + y2 + y3\nlevel: 2\n  fb =~ y1 + y2 + y3\n"
             "  fb ~ w1\n")
    df = pd.read_csv(LAVAAN_DIR / "demo_twolevel.csv")
    df = df[df["cluster"].isin(sorted(df["cluster"].unique())[:12])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = build_problem(model, df, "cluster", False)
        assert moment_start(problem, problem.start()) is None
        fit = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
    assert fit.options["start"] is None and fit.converged
    assert fit.loglik == pytest.approx(-746.2653, abs=1e-4)


def test_user_start_values_skip_the_first_stage():
    ref, problem, simple = problem_of("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", start=simple, fixed_x=False)
    assert fit.options["start"] == "user" and fit.converged
    em = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", optimizer="em", fixed_x=False)
    assert em.options["start"] is None


def test_a_first_stage_that_leads_nowhere_gives_way_to_the_simple_start(monkeypatch):
    """When the fit from the first stage does not converge (here: cut to one iteration),
    the fit starts again from lavaan's simple start and says so in ``options["start"]``."""
    import mlmiss.fitting

    real = mlmiss.fitting.optimize
    calls = []

    def cut_short(problem, theta0, *args, metric=None, **kwargs):
        calls.append(metric is not None)
        if metric is not None:
            return real(problem, theta0, "auto", 1, metric=metric)
        return real(problem, theta0, *args, **kwargs)

    monkeypatch.setattr(mlmiss.fitting, "optimize", cut_short)
    ref, problem, _ = problem_of("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False)
    assert calls == [True, False]
    assert fit.converged and fit.options["start"] is None
    assert fit.loglik == pytest.approx(ref["fit"]["loglik"], abs=1e-5)


def test_a_krylov_breakdown_at_round_off_keeps_the_converged_point(monkeypatch):
    """paper_example's 40 clusters: from the first stage, trust-krylov's Krylov solve
    asked for a product along a NaN direction once the gradient was at 1e-8 (the fit
    raised ValueError); the last accepted point is the maximum the simple start reaches."""
    import mlmiss.fitting

    df = mlmiss.datasets.paper_example(n_clusters_per_size=10)
    model = json.loads((LAVAAN_DIR / "paper_like.json").read_text())["case"]["model"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
        monkeypatch.setattr(mlmiss.fitting, "moment_start", lambda problem, theta0: None)
        simple = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
    assert fit.options["start"] == "moments" and fit.converged and simple.converged
    assert fit.loglik == pytest.approx(simple.loglik, abs=1e-7)
    np.testing.assert_allclose(fit.theta, simple.theta, atol=1e-5)
