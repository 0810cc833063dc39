"""EM (issue 10, in progress): the E-step and the expected complete-data log-likelihood
Q are checked by Fisher's identity, grad Q(theta | theta) = grad logl(theta), against
the engine's analytic gradient; the EM iteration against the trust-region optimum."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import LAVAAN_DIR
from mlmiss.estimation.build import build_problem
from mlmiss.estimation.em.algorithm import fit_em
from mlmiss.estimation.em.complete import CompleteData
from mlmiss.estimation.em.estep import expected_statistics
from mlmiss.estimation.optimizers import optimize


def problem_of(name, clusters=None):
    ref = json.loads((LAVAAN_DIR / f"{name}.json").read_text())
    case = ref["case"]
    df = pd.read_csv(LAVAAN_DIR / case["data"])
    if clusters is not None:
        df = df[df[case["cluster"]].isin(sorted(df[case["cluster"]].unique())[:clusters])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_problem(case["model"], df, case["cluster"], case.get("fixed_x", False))


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "singular_between",
                                  "demo_twolevel_fixedx"])
def test_fisher_identity(name):
    """Away from the optimum, where the gradient is large: the gradient of Q at the
    point of its E-step is the observed-data gradient (observed: 1e-11 relative), also
    with Sigma_b singular (singular_between: four "both" variables with no between
    residual, so the complete data hold only the random level-2 nodes)."""
    problem = problem_of(name)
    complete = CompleteData(problem)
    rng = np.random.default_rng(7)
    theta = problem.start()
    theta = theta + 0.02 * rng.standard_normal(theta.size) * np.clip(np.abs(theta), 0.1, None)
    stats = expected_statistics(problem.data, complete.parts(theta), complete)
    _, g_q = complete.q_and_gradient(theta, stats)
    _, g = problem.loglik_and_gradient(theta, guard=False)
    assert np.max(np.abs(g)) > 10.0
    np.testing.assert_allclose(g_q, g, atol=1e-8 * np.max(np.abs(g)))
    if name == "singular_between":
        assert complete.random.sum() < len(complete.u_names)


def test_q_gradient_matches_finite_differences():
    problem = problem_of("demo_twolevel_missing")
    complete = CompleteData(problem)
    theta = problem.start()
    stats = expected_statistics(problem.data, complete.parts(theta), complete)
    other = theta * 1.01 + 0.01
    _, g = complete.q_and_gradient(other, stats)
    h = 1e-6
    fd = np.array([(complete.q_and_gradient(other + h * e, stats)[0]
                    - complete.q_and_gradient(other - h * e, stats)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(fd, g, atol=1e-6 * np.max(np.abs(g)))


def test_em_reaches_the_trust_region_maximum():
    """On 40 clusters of the missing-data Demo case (a few seconds): the log-likelihood
    to 1e-6 relative to N and the estimates to 1e-4, as the issue asks."""
    problem = problem_of("demo_twolevel_missing", clusters=40)
    theta0 = problem.start()
    reference = optimize(problem, theta0)
    assert reference.converged
    theta, logl, converged, iterations, e_steps, message, _ = fit_em(problem, theta0,
                                                                    max_seconds=120)
    assert converged, message
    assert abs(logl - reference.loglik) <= 1e-6 * problem.data.n_obs
    np.testing.assert_allclose(theta, reference.theta, atol=1e-4)
    assert e_steps >= iterations > 0


def test_sem_with_em_reports_it(lavaan_fit):
    import mlmiss

    ref, default = lavaan_fit("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster=ref["case"]["cluster"], optimizer="em")
    assert fit.converged and fit.estimate.optimizer == "em" and fit.estimate.e_steps > 0
    assert abs(fit.loglik - default.loglik) <= 1e-6 * fit.nobs
    np.testing.assert_allclose(fit.theta, default.theta, atol=1e-4)
    text = fit.summary(fit_measures=False)
    assert "Number of E-steps" in text and "EM" in text
    capped = mlmiss.sem(ref["case"]["model"], df, cluster=ref["case"]["cluster"],
                        optimizer="em", em_iter_max=2)
    assert not capped.converged and "em_iter_max = 2" in capped.estimate.message


def test_em_is_exact_with_a_singular_between_covariance():
    """singular_between (four between residual variances fixed at zero): started near
    the trust region's maximum (5% off), EM returns to it, the zeros staying zero (they
    are no parameters of the complete data). From the default start it does not yet
    get there (docs/em.md, Open)."""
    problem = problem_of("singular_between")
    reference = optimize(problem, problem.start())
    assert reference.converged
    rng = np.random.default_rng(3)
    start = reference.theta * (1 + 0.05 * rng.standard_normal(reference.theta.size))
    theta, logl, converged, *_ = fit_em(problem, start, em_dx_tol=1e-7, max_seconds=120)
    assert converged
    assert abs(logl - reference.loglik) <= 1e-6 * problem.data.n_obs
    np.testing.assert_allclose(theta, reference.theta, atol=1e-4)
    moments = problem.moments(theta)
    zero = [problem.data.y_names.index(v) for v in ("y1", "y2", "y3", "y4")]
    b = moments.sigma_b[np.ix_(zero, zero)]
    # no between residual: y1-y4's between covariance is rank one (the factor alone)
    assert np.linalg.matrix_rank(b, tol=1e-10 * np.abs(b).max()) == 1
