"""Objective 5 of the paper (global missing patterns) against the definition and lavaan."""

import numpy as np
import pytest

from conftest import CASES, load_case
from mlmiss.data.moments import Moments
from mlmiss.paper import dense, objective5
from synthetic import random_case

# lavaan's fit.loglik with fixed.x = TRUE is the conditional likelihood of y given x
CONDITIONAL = {("demo_twolevel_fixedx", "fit")}
POINTS = [(case, point) for case in CASES for point in ("start", "fit")]

_cache = {}


def _case(name):
    if name not in _cache:
        _cache[name] = load_case(name)
    return _cache[name]


def _moments(name, point="fit", **replace):
    ref, _ = _case(name)
    blocks = {k: np.array(v, dtype=float) for k, v in ref[point]["moments"].items()
              if k in ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")}
    blocks.update(replace)
    return Moments(**blocks)


def _with_between_eigenvalues(name, new):
    """The case's fit moments with the smallest eigenvalues of Sigma_b's between block
    replaced by ``new`` (negative values make Sigma_b indefinite)."""
    ref, _ = _case(name)
    sigma_b = np.array(ref["fit"]["moments"]["sigma_b"])
    between = np.flatnonzero(np.any(sigma_b != 0.0, axis=1))
    values, vectors = np.linalg.eigh(sigma_b[np.ix_(between, between)])
    values[:len(new)] = new
    sigma_b[np.ix_(between, between)] = (vectors * values) @ vectors.T
    return _moments(name, sigma_b=sigma_b)


def _negative_eigenvalues(data, moments):
    """Number of negative eigenvalues of each cluster's V_j (from the definition)."""
    return np.array([np.sum(np.linalg.eigvalsh(dense.cluster_mean_cov(data, moments, j)[2]) < 0)
                     for j in range(data.n_clusters)])


@pytest.mark.parametrize("case,point", POINTS)
def test_matches_dense_and_lavaan(case, point):
    ref, data = _case(case)
    moments = Moments.from_dict(ref[point]["moments"])
    value = objective5.loglik(data, moments)
    assert value == pytest.approx(dense.loglik(data, moments), rel=1e-8, abs=0)
    if (case, point) not in CONDITIONAL:
        assert value == pytest.approx(ref[point]["loglik"], abs=1e-7, rel=0)


def test_singular_sigma_b():
    ref, data = _case("singular_between")
    moments = Moments.from_dict(ref["fit"]["moments"])
    between = moments.between_index
    assert np.linalg.matrix_rank(moments.sigma_b[np.ix_(between, between)]) < between.size
    value = objective5.loglik(data, moments)
    assert value == pytest.approx(dense.loglik(data, moments), rel=1e-8, abs=0)
    assert value == pytest.approx(ref["fit"]["loglik"], abs=1e-7, rel=0)


def test_indefinite_sigma_b_with_positive_definite_v_j():
    _, data = _case("demo_twolevel_missing")
    moments = _with_between_eigenvalues("demo_twolevel_missing", [-0.01])
    assert np.linalg.eigvalsh(moments.sigma_b)[0] < 0.0
    assert np.all(_negative_eigenvalues(data, moments) == 0)
    expected = dense.loglik(data, moments)
    assert np.isfinite(expected)
    assert objective5.loglik(data, moments) == pytest.approx(expected, rel=1e-8, abs=0)


def test_one_v_j_not_positive_definite():
    _, data = _case("demo_twolevel_missing")
    moments = _with_between_eigenvalues("demo_twolevel_missing", [-0.05])
    assert np.sum(_negative_eigenvalues(data, moments) > 0) >= 1
    assert dense.loglik(data, moments) == -np.inf
    assert objective5.loglik(data, moments) == -np.inf


def test_v_j_with_positive_determinant_but_not_positive_definite():
    # two negative eigenvalues in every V_j: the determinant's sign cannot tell
    _, data = _case("demo_twolevel_missing")
    moments = _with_between_eigenvalues("demo_twolevel_missing", [-5.0, -5.0])
    assert np.all(_negative_eigenvalues(data, moments) == 2)
    assert dense.loglik(data, moments) == -np.inf
    assert objective5.loglik(data, moments) == -np.inf


@pytest.mark.parametrize("case", ["paper_like", "demo_twolevel_missing"])
def test_sigma_w_not_positive_definite(case):
    _, data = _case(case)
    sigma_w = np.array(_moments(case).sigma_w)
    values, vectors = np.linalg.eigh(sigma_w)
    values[0] = -0.1
    assert objective5.loglik(data, _moments(case, sigma_w=(vectors * values) @ vectors.T)) == -np.inf


def test_sigma_zz_not_positive_definite():
    _, data = _case("paper_like")
    sigma_zz = np.array(_moments("paper_like").sigma_zz)
    values, vectors = np.linalg.eigh(sigma_zz)
    values[0] = -0.1
    assert objective5.loglik(data, _moments("paper_like", sigma_zz=(vectors * values) @ vectors.T)) == -np.inf


@pytest.mark.parametrize("seed,kwargs", [
    (1, {}),
    (2, dict(miss_y=0.6, miss_z=0.5, max_size=3)),    # empty rows and cluster, no z
    (7, dict(miss_y=0.4, miss_z=0.5)),
    (3, dict(n_z=0)),
    (4, dict(sigma_b_rank=1, n_between=3, n_y=4)),    # singular Sigma_b
    (5, dict(sigma_b_rank=0)),                        # Sigma_b = 0
    (6, dict(zero_rows=1, n_between=3, n_y=5, max_size=3)),
])
def test_random_cases_match_dense(seed, kwargs):
    data, moments = random_case(seed, **kwargs)
    assert objective5.loglik(data, moments) == pytest.approx(dense.loglik(data, moments), rel=1e-8, abs=0)
