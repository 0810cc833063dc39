"""The analytic gradient against central differences of the log-likelihood."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlmiss
from conftest import CASES
from synthetic import random_case

FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")
SYMMETRIC = ("sigma_w", "sigma_b", "sigma_zz")


def free_directions(moments):
    """Unit perturbations of every free moment element (symmetric pairs move together;
    sigma_b and sigma_yz only for variables with a between part)."""
    between = set(moments.between_index.tolist())
    for name in FIELDS:
        shape = getattr(moments, name).shape
        for idx in np.ndindex(*shape):
            if name in SYMMETRIC and idx[0] > idx[1]:
                continue
            if name == "sigma_b" and not (idx[0] in between and idx[1] in between):
                continue
            if name == "sigma_yz" and idx[0] not in between:
                continue
            yield name, idx


def shifted(moments, direction, eps):
    """Moments moved by eps along a dict of arrays (same layout as the moments)."""
    return mlmiss.Moments(**{f: getattr(moments, f) + eps * direction[f] for f in FIELDS})


def unit(moments, name, idx):
    d = {f: np.zeros_like(getattr(moments, f)) for f in FIELDS}
    d[name][idx] = 1.0
    if name in SYMMETRIC:
        d[name][idx[::-1]] = 1.0
    return d


def directional(gradient, direction):
    """dL along a direction: sum_ij G_ij dS_ij over all entries (both triangles)."""
    return sum(float(np.sum(getattr(gradient, f) * direction[f])) for f in FIELDS)


def central_difference(data, moments, direction, eps):
    up = mlmiss.loglik(data, shifted(moments, direction, eps))
    down = mlmiss.loglik(data, shifted(moments, direction, -eps))
    return (up - down) / (2 * eps)


def assert_close(fd, an, scale, rtol):
    assert abs(fd - an) <= rtol * max(abs(fd), scale), (fd, an)


@pytest.mark.parametrize("point", ["start", "fit"])
@pytest.mark.parametrize("case", [c for c in CASES if c != "demo_twolevel_fixedx"])
def test_gradient_matches_central_differences_on_lavaan_cases(lavaan_case, case, point):
    ref, data = lavaan_case(case)
    moments = mlmiss.Moments.from_dict(ref[point]["moments"])
    value, gradient = mlmiss.loglik_and_gradient(data, moments)
    assert value == pytest.approx(mlmiss.loglik(data, moments), abs=1e-9)
    # at the optimum the gradient is ~0, so compare on the scale of the likelihood's
    # curvature: a difference quotient's own error is ~ |L| eps_machine / eps
    rng = np.random.default_rng(0)
    directions = list(free_directions(moments))
    picks = rng.choice(len(directions), size=min(25, len(directions)), replace=False)
    for i in picks:
        name, idx = directions[i]
        d = unit(moments, name, idx)
        fd = central_difference(data, moments, d, 1e-5)
        assert_close(fd, directional(gradient, d), scale=1.0, rtol=1e-5)
    for _ in range(5):
        d = {f: rng.normal(size=getattr(moments, f).shape) for f in FIELDS}
        for f in SYMMETRIC:
            d[f] = d[f] + d[f].T
        bmask = np.zeros(data.n_y, bool)
        bmask[moments.between_index] = True
        d["sigma_b"] *= np.outer(bmask, bmask)
        d["sigma_yz"] *= bmask[:, None]
        fd = central_difference(data, moments, d, 1e-6)
        assert_close(fd, directional(gradient, d), scale=10.0, rtol=1e-5)


def test_gradient_zero_outside_between_part():
    data, moments = random_case(4, n_y=4, n_z=2, n_between=2, n_clusters=10)
    gradient = mlmiss.loglik_gradient(data, moments)
    within_only = np.setdiff1d(np.arange(4), moments.between_index)
    assert np.all(gradient.sigma_b[within_only, :] == 0)
    assert np.all(gradient.sigma_b[:, within_only] == 0)
    assert np.all(gradient.sigma_yz[within_only, :] == 0)
    for f in SYMMETRIC:
        g = getattr(gradient, f)
        np.testing.assert_allclose(g, g.T, rtol=1e-12, atol=1e-12)


def test_gradient_of_inadmissible_moments():
    data, moments = random_case(4, n_y=3, n_z=1, n_between=2, n_clusters=5)
    bad = mlmiss.Moments(**dict(moments.as_dict(), sigma_w=moments.sigma_w - 50 * np.eye(3)))
    assert mlmiss.loglik_and_gradient(data, bad) == (-np.inf, None)
    with pytest.raises(mlmiss.InadmissibleMomentsError, match="not positive definite"):
        mlmiss.loglik_gradient(data, bad)


@st.composite
def cases(draw):
    n_y = draw(st.integers(1, 4))
    n_z = draw(st.integers(0, 3))
    n_between = draw(st.integers(0, n_y))
    rank = draw(st.one_of(st.none(), st.integers(1, max(n_between + n_z, 1))))
    return dict(seed=draw(st.integers(0, 2**32 - 1)), n_y=n_y, n_z=n_z, n_between=n_between,
                n_clusters=draw(st.integers(1, 8)), max_size=draw(st.sampled_from([1, 3, 12])),
                miss_y=draw(st.sampled_from([0.0, 0.25, 0.6])),
                miss_z=draw(st.sampled_from([0.0, 0.3, 1.0])),
                sigma_b_rank=rank, zero_rows=draw(st.integers(0, 1)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_gradient_property(case):
    """Random data: singular Sigma_b, empty rows, clusters without z, no z, singletons."""
    data, moments = random_case(**case)
    value, gradient = mlmiss.loglik_and_gradient(data, moments)
    assert value == pytest.approx(mlmiss.loglik(data, moments, "dense"), rel=1e-9, abs=1e-9)
    rng = np.random.default_rng(case["seed"] % 1000)
    directions = list(free_directions(moments))
    for i in rng.choice(len(directions), size=min(12, len(directions)), replace=False):
        name, idx = directions[i]
        d = unit(moments, name, idx)
        # finite differences are accurate here when step sizes two decades apart agree
        # (near a singular Sigma_b the likelihood's round-off, ~1e-10, can bend them)
        fds = [central_difference(data, moments, d, h) for h in (1e-4, 1e-5, 1e-6)]
        if not np.all(np.isfinite(fds)):
            continue  # a step left the admissible region
        if max(fds) - min(fds) > 3e-7 * max(1.0, abs(fds[1])):
            continue
        assert_close(fds[1], directional(gradient, d), scale=1.0, rtol=1e-6)
