"""Property tests: every method equals the dense reference on random two-level data."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlmiss
from synthetic import between_observed, random_case, with_smallest_between_eigenvalue

FAST_METHODS = [m for m in mlmiss.METHODS if m not in ("dense", "dutoit")]


@st.composite
def cases(draw):
    n_y = draw(st.integers(1, 4))
    n_z = draw(st.integers(0, 3))
    n_between = draw(st.integers(0, n_y))
    m = n_between + n_z
    rank = draw(st.one_of(st.none(), st.integers(0, max(m, 1))))
    return dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        n_y=n_y, n_z=n_z, n_between=n_between,
        n_clusters=draw(st.integers(1, 8)),
        max_size=draw(st.sampled_from([1, 3, 30])),
        miss_y=draw(st.sampled_from([0.0, 0.2, 0.6])),
        miss_z=draw(st.sampled_from([0.0, 0.3, 0.6])),
        sigma_b_rank=rank,
        zero_rows=draw(st.integers(0, 1)),
        ids=draw(st.sampled_from(["int", "str"])),
    )


def _between_singular(moments):
    b = moments.between_index
    if b.size == 0:
        return True
    return np.linalg.matrix_rank(moments.sigma_b[np.ix_(b, b)], tol=1e-9) < b.size


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_all_methods_agree_with_dense(case):
    data, moments = random_case(**case)
    reference = mlmiss.loglik(data, moments, "dense")
    assert np.isfinite(reference)
    for method in FAST_METHODS:
        value = mlmiss.loglik(data, moments, method)
        assert value == pytest.approx(reference, rel=1e-8, abs=1e-8), method
    if _between_singular(moments):
        with pytest.raises(mlmiss.SingularMatrixError, match="singular"):
            mlmiss.loglik(data, moments, "dutoit")
    else:
        # du Toit inverts Sigma_b: accurate to round-off times its condition number
        b = moments.between_index
        cond = np.linalg.cond(moments.sigma_b[np.ix_(b, b)])
        assert mlmiss.loglik(data, moments, "dutoit") == pytest.approx(
            reference, rel=max(1e-8, 1e-14 * cond), abs=1e-8)


@pytest.mark.parametrize("rank,zero_rows", [(1, 0), (0, 0), (None, 1), (1, 1)])
def test_singular_sigma_b(rank, zero_rows):
    data, moments = random_case(7, n_y=4, n_z=2, n_between=3, n_clusters=12,
                                sigma_b_rank=rank, zero_rows=zero_rows)
    # three variables were given a between part; rank 0 leaves all of them zero rows
    assert np.linalg.matrix_rank(moments.sigma_b, tol=1e-9) < 3
    reference = mlmiss.loglik(data, moments, "dense")
    for method in FAST_METHODS:
        assert mlmiss.loglik(data, moments, method) == pytest.approx(reference, rel=1e-9)


def test_no_between_only_variables():
    data, moments = random_case(3, n_y=3, n_z=0, n_between=2)
    assert data.n_z == 0
    reference = mlmiss.loglik(data, moments, "dense")
    for method in mlmiss.METHODS:
        assert mlmiss.loglik(data, moments, method) == pytest.approx(reference, rel=1e-10)


@pytest.mark.parametrize("method", mlmiss.METHODS)
def test_not_positive_definite_gives_minus_inf(method):
    data, moments = random_case(11, n_y=3, n_z=2, n_between=2, n_clusters=5)
    fields = moments.as_dict()
    bad_w = dict(fields, sigma_w=fields["sigma_w"] - 10 * np.eye(3))
    bad_z = dict(fields, sigma_zz=fields["sigma_zz"] - 10 * np.eye(2))
    for bad in (bad_w, bad_z):
        assert mlmiss.loglik(data, mlmiss.Moments.from_dict(bad), method) == -np.inf


@pytest.mark.parametrize("miss", [0.0, 0.3])
@pytest.mark.parametrize("method", mlmiss.METHODS)
def test_indefinite_between_matrix(method, miss):
    """An indefinite Sigma_b can still give positive definite V_j (a finite value that
    every method must reproduce), or not (-inf)."""
    data, moments = random_case(5, n_y=3, n_z=1, n_between=3, n_clusters=6, max_size=5,
                                miss_y=miss, miss_z=miss)
    # mild: one eigenvalue of Sigma_b at -0.2, small next to Sigma_w: with clusters of at
    # most 5 rows every V_j stays positive definite (dense is finite)
    mild = with_smallest_between_eigenvalue(moments, -0.2)
    assert np.linalg.eigvalsh(mild.sigma_b).min() < -0.05
    reference = mlmiss.loglik(data, mild, "dense")
    assert np.isfinite(reference)
    if miss:
        # some cluster observes some, not all, between variables: a singular A_j
        seen = between_observed(data, mild)
        assert np.any(seen.any(axis=1) & ~seen.all(axis=1))
    # observed: every method within 1.3e-15 (relative) of dense, both data sets
    assert mlmiss.loglik(data, mild, method) == pytest.approx(reference, rel=1e-13, abs=0)
    # strong: Sigma_b - 50 I makes some V_j indefinite
    f = moments.as_dict()
    strong = mlmiss.Moments.from_dict(dict(f, sigma_b=f["sigma_b"] - 50.0 * np.eye(3)))
    assert mlmiss.loglik(data, strong, "dense") == -np.inf
    assert mlmiss.loglik(data, strong, method) == -np.inf


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from([None, 0.05, -0.2]))
def test_cluster_logliks_match_the_dense_reference_cluster_by_cluster(case, smallest):
    """McDonald's lanes and the kernels of the other forms (singular or indefinite
    Sigma_j(b.z), often mixed within one data set when z is missing) each write their
    clusters' terms: every cluster's log-likelihood is that of the cluster alone, by
    the dense reference."""
    data, moments = random_case(**case)
    if smallest is not None and moments.between_index.size:
        moments = with_smallest_between_eigenvalue(moments, smallest)
    each = mlmiss.likelihood.cluster_logliks(data, moments)
    total = mlmiss.loglik(data, moments)
    if not np.isfinite(total):
        assert each is None
        return
    assert each.sum() == pytest.approx(total, rel=1e-10, abs=1e-9)
    for j in range(data.n_clusters):
        rows = data.row_cluster == j
        if not rows.any() or np.isnan(data.y[rows]).all(axis=0).any() or np.isnan(data.z[j]).any():
            continue   # a variable without a value: not a data set on its own
        frame = pd.DataFrame(data.y[rows], columns=list(data.y_names))
        frame["cl"] = 0
        for k, name in enumerate(data.z_names):
            frame[name] = data.z[j, k]
        one = mlmiss.TwoLevelData.from_frame(frame, "cl", y=list(data.y_names),
                                             z=list(data.z_names))
        assert each[j] == pytest.approx(mlmiss.loglik(one, moments, "dense"), rel=1e-8, abs=1e-8)
