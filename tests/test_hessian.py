"""The analytic second derivatives (mlmiss.likelihood.hessian and Problem.loglik_hessian)
against central differences of the analytic gradient (itself checked against the
log-likelihood in test_gradient.py)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import CASES, LAVAAN_DIR
from hypothesis import HealthCheck, given, settings
from synthetic import random_case, with_smallest_between_eigenvalue
from test_gradient import FIELDS, INDEFINITE_CASES, cases, random_direction, shifted

import mlmiss
from mlmiss.estimation.constraints import Reparametrized
from mlmiss.inference.vcov import differenced_information
from mlmiss.likelihood.hessian import Directions, loglik_hessian
from mlmiss.likelihood.information import hessian_from_gradient

FITTED = [c for c in CASES if c != "demo_twolevel_fixedx"]


def stacked(directions):
    return Directions(*(np.stack([d[f] for d in directions]) for f in FIELDS))


def differenced(data, moments, directions, eps):
    """d_a' H d_b from central differences of the gradient along each d_b."""
    out = np.empty((len(directions), len(directions)))
    for b, db in enumerate(directions):
        up = mlmiss.loglik_gradient(data, shifted(moments, db, eps))
        down = mlmiss.loglik_gradient(data, shifted(moments, db, -eps))
        for a, da in enumerate(directions):
            out[a, b] = sum(float(np.sum((getattr(up, f) - getattr(down, f)) * da[f]))
                            for f in FIELDS) / (2 * eps)
    return 0.5 * (out + out.T)


def relative_error(analytic, reference):
    return float(np.max(np.abs(analytic - reference)) / np.max(np.abs(reference)))


@pytest.mark.parametrize("point", ["start", "fit"])
@pytest.mark.parametrize("case", FITTED)
def test_moment_hessian_on_lavaan_cases(lavaan_case, case, point):
    ref, data = lavaan_case(case)
    moments = mlmiss.Moments.from_dict(ref[point]["moments"])
    rng = np.random.default_rng(3)
    directions = [random_direction(rng, moments) for _ in range(6)]
    directions[1]["sigma_w"][:] = 0.0        # directions without a within part,
    directions[2]["sigma_b"][:] = 0.0        # without a between part,
    for f in ("sigma_w", "sigma_b", "sigma_zz", "sigma_yz"):
        directions[3][f][:] = 0.0            # and of the means only
    analytic = loglik_hessian(data, moments, stacked(directions))
    np.testing.assert_array_equal(analytic, analytic.T)
    # the differences' error falls as the step squared (observed at steps 1e-5, 1e-6,
    # 1e-7: up to 8.1e-7, 8.1e-9, then 4.7e-11 - 2.6e-10 where round-off takes over)
    assert relative_error(analytic, differenced(data, moments, directions, 1e-7)) < 1e-9


@pytest.mark.parametrize("name", sorted(INDEFINITE_CASES))
def test_moment_hessian_with_indefinite_between_part(name):
    """Sigma_j(b.z) indefinite (V_j positive definite): F_j from a factor of A_j."""
    data, moments = random_case(**INDEFINITE_CASES[name])
    moments = with_smallest_between_eigenvalue(moments, -0.2)
    rng = np.random.default_rng(1)
    directions = [random_direction(rng, moments) for _ in range(5)]
    analytic = loglik_hessian(data, moments, stacked(directions))
    assert relative_error(analytic, differenced(data, moments, directions, 1e-7)) < 1e-8


def test_moment_hessian_of_inadmissible_moments():
    data, moments = random_case(4, n_y=3, n_z=1, n_between=2, n_clusters=5)
    bad = mlmiss.Moments(**dict(moments.as_dict(), sigma_w=moments.sigma_w - 50 * np.eye(3)))
    rng = np.random.default_rng(0)
    assert loglik_hessian(data, bad, stacked([random_direction(rng, bad)])) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_moment_hessian_property(case):
    """Random data and moments: singular Sigma_b, empty rows, clusters without z, no z."""
    data, moments = random_case(**case)
    rng = np.random.default_rng(case["seed"] % 1000)
    directions = [random_direction(rng, moments) for _ in range(4)]
    analytic = loglik_hessian(data, moments, stacked(directions))
    assert analytic is not None
    # near a singular Sigma_j(b.z) the gradient's differences are noisy at some steps
    # (the engine's rank decisions): observed over 1000 examples, the best of these
    # steps is within 1.3e-7, where single steps were off by up to 2.8e-4
    errors = []
    for eps in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        try:
            errors.append(relative_error(analytic, differenced(data, moments, directions, eps)))
        except mlmiss.InadmissibleMomentsError:   # a step past the edge of V_j > 0
            continue
    if errors:
        assert min(errors) < 1e-6, errors


@pytest.fixture(scope="module")
def fits():
    out = {}
    for case in FITTED:
        ref = json.loads((LAVAAN_DIR / f"{case}.json").read_text())
        df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
        for fixed_x in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[case, fixed_x] = mlmiss.sem(ref["case"]["model"], df,
                                                cluster=ref["case"]["cluster"], fixed_x=fixed_x)
    return out


@pytest.mark.parametrize("fixed_x", [False, True])
@pytest.mark.parametrize("case", FITTED)
def test_theta_hessian_at_the_estimates(fits, case, fixed_x):
    fit = fits[case, fixed_x]
    analytic = fit.problem.loglik_hessian(fit.theta)
    reference = -differenced_information(fit.problem, fit.theta)
    # observed: 2.1e-10 - 4.9e-10 relative; the SEs agree to 4.5e-9
    assert relative_error(analytic, reference) < 2e-9
    se = np.sqrt(np.diag(np.linalg.inv(-analytic)))
    np.testing.assert_allclose(se, np.sqrt(np.diag(np.linalg.inv(-reference))), rtol=2e-8)
    # the fit's information is the analytic one
    np.testing.assert_allclose(fit.information(), -analytic, rtol=1e-12,
                               atol=1e-12 * np.abs(analytic).max())


def test_theta_hessian_away_from_the_estimates(fits):
    """Where the gradient is not zero the moments' curvature term counts."""
    fit = fits["paper_like", False]
    theta = fit.theta * (1.0 + 0.05 * np.random.default_rng(0).normal(size=fit.theta.size))
    analytic = fit.problem.loglik_hessian(theta)
    assert relative_error(analytic, -differenced_information(fit.problem, theta)) < 2e-9


def test_theta_hessian_under_linear_equalities(fits):
    fit = fits["demo_twolevel", False]
    labels = fit.problem.partable.table
    loads = labels[(labels["op"] == "=~") & (labels["free"] > 0)]
    first, second = int(loads["free"].iloc[0]), int(loads["free"].iloc[1])

    class Equal:   # theta_first == theta_second, what a ConstraintSet gives Reparametrized
        def jacobians(self, theta):
            row = np.zeros((1, theta.size))
            row[0, first - 1], row[0, second - 1] = 1.0, -1.0
            return (row,)

        def values(self, theta):
            return (np.array([theta[first - 1] - theta[second - 1]]),)

    restricted = Reparametrized(fit.problem, Equal(), fit.theta)
    z = restricted.z(fit.theta)
    analytic = restricted.loglik_hessian(z)
    assert analytic.shape == (fit.theta.size - 1,) * 2
    reference = hessian_from_gradient(restricted.gradient, z)
    assert relative_error(analytic, reference) < 2e-8
