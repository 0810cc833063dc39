"""Tests of the paper's example model and data generator (mlmiss.datasets)."""

import numpy as np
import pandas as pd
import pytest

import mlmiss.datasets as datasets
from mlmiss.data.moments import Moments

Y_NAMES = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z_NAMES = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]
FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")


@pytest.fixture(scope="module")
def moments():
    return datasets.paper_model_moments()


@pytest.fixture(scope="module")
def example():
    return datasets.paper_example(seed=1234)


# --------------------------------------------------------------------------- moments


def test_moments_shapes(moments):
    assert isinstance(moments, Moments)
    assert moments.mu_y.shape == (13,)
    assert moments.mu_z.shape == (7,)
    assert moments.sigma_w.shape == (13, 13)
    assert moments.sigma_b.shape == (13, 13)
    assert moments.sigma_zz.shape == (7, 7)
    assert moments.sigma_yz.shape == (13, 7)


def test_moments_symmetric_and_definite(moments):
    for mat in (moments.sigma_w, moments.sigma_b, moments.sigma_zz):
        np.testing.assert_allclose(mat, mat.T, atol=1e-14)
    assert np.linalg.eigvalsh(moments.sigma_w).min() > 1e-3
    assert np.linalg.eigvalsh(moments.sigma_zz).min() > 1e-3
    assert np.linalg.eigvalsh(moments.sigma_b).min() > -1e-12


def test_sigma_b_rank_and_zero_rows(moments):
    sb = moments.sigma_b
    assert np.linalg.matrix_rank(sb) == 6
    np.testing.assert_array_equal(sb[6:, :], 0.0)
    np.testing.assert_array_equal(sb[:, 6:], 0.0)
    assert np.all(np.diag(sb)[:6] > 0)
    np.testing.assert_array_equal(moments.sigma_yz[6:, :], 0.0)
    assert np.all(moments.sigma_yz[:6, :] != 0.0)
    np.testing.assert_array_equal(moments.between_index, np.arange(6))


def test_joint_between_covariance_positive_definite(moments):
    joint = np.block([
        [moments.sigma_b[:6, :6], moments.sigma_yz[:6, :]],
        [moments.sigma_yz[:6, :].T, moments.sigma_zz],
    ])
    assert np.linalg.eigvalsh(joint).min() > 1e-3


def test_moments_structure(moments):
    # the 0* constraints: residuals of y7..y10 are uncorrelated, so their
    # covariances come only from the x's: Cov(y7, y8) = b7' Var(x) b8
    bx = np.array([[0.40, 0.20, 0.10], [0.30, 0.10, 0.30], [0.10, 0.50, 0.20], [0.20, 0.15, 0.20]])
    phi = moments.sigma_w[10:, 10:]
    implied = bx @ phi @ bx.T
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(moments.sigma_w[6:10, 6:10][off], implied[off], atol=1e-12)
    # no within covariance between the factor block and the regression block
    np.testing.assert_array_equal(moments.sigma_w[:6, 6:], 0.0)
    # means are nonzero and modest
    assert np.all(moments.mu_z != 0.0) and np.all(np.abs(moments.mu_z) < 2)
    assert np.all(moments.mu_y != 0.0) and np.all(np.abs(moments.mu_y) < 2)


def test_moments_fresh_each_call():
    """Every call builds its own arrays: changing one result leaves another call's result,
    and any later call's, as they were."""
    a = datasets.paper_model_moments()
    b = datasets.paper_model_moments()
    assert a is not b
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert not np.shares_memory(x, y), name
        np.testing.assert_array_equal(x, y)
    expected = {name: getattr(b, name).copy() for name in FIELDS}
    for name in FIELDS:
        x = getattr(a, name)
        x.setflags(write=True)  # Moments makes its arrays read-only; it owns them
        x += 1.0
    c = datasets.paper_model_moments()
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(b, name), expected[name])
        np.testing.assert_array_equal(getattr(c, name), expected[name])


# --------------------------------------------------------------------------- data


def test_example_shape_and_columns(example):
    assert list(example.columns) == ["cluster"] + Y_NAMES + Z_NAMES
    assert example.shape == (2500, 21)
    assert pd.api.types.is_integer_dtype(example["cluster"])
    sizes = example.groupby("cluster").size()
    assert sorted(sizes.index) == list(range(1, 201))
    assert sizes.value_counts().to_dict() == {5: 50, 10: 50, 15: 50, 20: 50}
    # rows of a cluster are contiguous
    assert (np.diff(example["cluster"].to_numpy()) != 0).sum() == 199


def test_example_z_constant_within_clusters(example):
    for name in Z_NAMES:
        g = example.groupby("cluster")[name]
        # same value (or all NaN) on every row of a cluster
        assert (g.nunique(dropna=False) == 1).all(), name


def test_example_missing_fraction(example):
    lvl1 = example[Y_NAMES].isna().to_numpy()
    assert 0.08 < lvl1.mean() < 0.12
    assert np.all(lvl1.mean(axis=0) > 0.05) and np.all(lvl1.mean(axis=0) < 0.15)
    lvl2 = example.groupby("cluster")[Z_NAMES].first().isna().to_numpy()
    assert lvl2.shape == (200, 7)
    assert 0.06 < lvl2.mean() < 0.14


def test_example_no_empty_level1_rows():
    for seed in (1, 2, 3):
        df = datasets.paper_example(seed=seed, missing=0.6)
        assert not df[Y_NAMES].isna().all(axis=1).any()
        assert 0.5 < df[Y_NAMES].isna().to_numpy().mean() < 0.65


def test_example_deterministic():
    a = datasets.paper_example(seed=99)
    b = datasets.paper_example(seed=99)
    pd.testing.assert_frame_equal(a, b)
    kept = b.copy()
    a.iloc[:, 1:] = 0.0  # a fresh frame each call: changing one changes no other
    pd.testing.assert_frame_equal(b, kept)
    pd.testing.assert_frame_equal(datasets.paper_example(seed=99), kept)
    c = datasets.paper_example(seed=100)
    assert not kept.equals(c)


def test_example_complete_when_missing_zero():
    df = datasets.paper_example(seed=5, missing=0.0)
    assert not df.isna().any().any()


def test_example_bad_arguments():
    with pytest.raises(ValueError):
        datasets.paper_example(missing=1.0)
    with pytest.raises(ValueError):
        datasets.paper_example(missing=-0.1)
    with pytest.raises(ValueError):
        datasets.paper_example(n_clusters_per_size=0)


def test_example_matches_moments(moments):
    """Sample moments of a large complete data set agree with the model's."""
    df = datasets.paper_example(seed=2024, missing=0.0, n_clusters_per_size=200)
    assert df.shape == (10000, 21)
    y = df[Y_NAMES].to_numpy()
    cl = df["cluster"].to_numpy()
    n_clusters = 800

    # pooled within-cluster covariance estimates sigma_w (unbiased, N - J df)
    means = pd.DataFrame(y).groupby(cl).transform("mean").to_numpy()
    dev = y - means
    s_pw = dev.T @ dev / (y.shape[0] - n_clusters)
    np.testing.assert_allclose(s_pw, moments.sigma_w, atol=0.1)

    # grand mean
    np.testing.assert_allclose(y.mean(axis=0), moments.mu_y, atol=0.1)

    # between-only variables: one value per cluster
    z = df.groupby("cluster")[Z_NAMES].first().to_numpy()
    np.testing.assert_allclose(z.mean(axis=0), moments.mu_z, atol=0.15)
    np.testing.assert_allclose(np.cov(z, rowvar=False), moments.sigma_zz, atol=0.2)

    # cluster means of within-only variables have no between variance beyond
    # sigma_w / n_j; for the "both" variables the between part shows up
    ybar = pd.DataFrame(y).groupby(cl).mean().to_numpy()
    n_j = df.groupby("cluster").size().to_numpy()
    excess = ((ybar - moments.mu_y) ** 2).mean(axis=0) - (np.diag(moments.sigma_w)[None, :] / n_j[:, None]).mean(axis=0)
    np.testing.assert_allclose(excess, np.diag(moments.sigma_b), atol=0.1)

    # Cov(y_b, z) from cluster means of y1..y6 against z
    cross = (ybar[:, :6] - moments.mu_y[:6]).T @ (z - moments.mu_z) / n_clusters
    np.testing.assert_allclose(cross, moments.sigma_yz[:6, :], atol=0.12)
