"""The data layer: lavaan's conventions, cluster ids, patterns, and clear errors."""

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss import DataError, TwoLevelData
from conftest import LAVAAN_DIR


def small_frame():
    return pd.DataFrame({
        "school": ["b", "b", "a", "c", "a", "b", "c"],
        "y1": [1.0, 2.0, np.nan, 0.5, 1.5, -1.0, 2.5],
        "y2": [0.3, np.nan, np.nan, 1.0, 0.2, 0.0, -0.4],
        "w": [5.0, 5.0, np.nan, 7.0, np.nan, 5.0, np.nan],
    })


def test_basic_counts_and_names():
    data = TwoLevelData.from_frame(small_frame(), "school", y=["y1", "y2"], z=["w"])
    assert data.y_names == ("y1", "y2") and data.z_names == ("w",)
    # row 2 (cluster a) has no level-1 value: dropped from N, counted
    assert data.n_obs == 6
    assert data.n_dropped_rows == 1 and list(data.dropped_rows) == [2]
    assert data.n_clusters == 3
    assert list(data.cluster_ids) == ["b", "a", "c"]  # order of first appearance
    assert list(data.cluster_sizes) == [3, 1, 2]
    np.testing.assert_array_equal(data.z[:, 0], [5.0, np.nan, 7.0])
    assert data.n_observed_values == int(np.sum(~np.isnan(data.y))) + 2


def test_dropped_rows_keep_their_cluster_z():
    df = pd.DataFrame({"g": [1, 1, 2, 2], "y": [np.nan, np.nan, 1.0, 2.0], "w": [3.0, 3.0, 4.0, 4.0]})
    data = TwoLevelData.from_frame(df, "g", y=["y"], z=["w"])
    assert data.n_obs == 2 and data.n_dropped_rows == 2
    assert data.n_clusters == 2 and list(data.cluster_sizes) == [0, 2]
    assert data.z[0, 0] == 3.0
    moments = mlmiss.Moments([0.0], [3.5], [[1.0]], [[0.5]], [[2.0]], [[0.1]])
    # the empty cluster contributes the density of its z alone
    for method in mlmiss.METHODS:
        assert mlmiss.loglik(data, moments, method) == pytest.approx(
            mlmiss.loglik(data, moments, "dense"), rel=1e-12)


def test_z_value_taken_from_any_row_of_the_cluster():
    df = pd.DataFrame({"g": [1, 1, 2], "y": [0.1, 0.2, 0.3], "w": [np.nan, 3.0, 4.0]})
    data = TwoLevelData.from_frame(df, "g", y=["y"], z=["w"])
    np.testing.assert_array_equal(data.z[:, 0], [3.0, 4.0])


def test_autodetect_y_and_z():
    df = small_frame()
    df["label"] = "x"  # not numeric: ignored by the detection
    data = TwoLevelData.from_frame(df, "school")
    assert data.y_names == ("y1", "y2") and data.z_names == ("w",)
    only_z = TwoLevelData.from_frame(small_frame(), "school", z=["w"])
    assert only_z.y_names == ("y1", "y2")
    only_y = TwoLevelData.from_frame(small_frame(), "school", y=["y1"])
    assert only_y.z_names == ()


@pytest.mark.parametrize("make_ids", [
    lambda v: v,                              # sorted integers
    lambda v: (v * 7919) % 10007,             # unsorted, non-contiguous
    lambda v: np.array([f"id-{x}" for x in v], dtype=object),
    lambda v: v.astype(float) / 3.0,
])
def test_cluster_ids_of_any_type_and_order(make_ids):
    """Same likelihood whatever the ids and row order (lavaan issue #379 was about this)."""
    rng = np.random.default_rng(1)
    n_clusters, size = 15, 4
    base = np.repeat(np.arange(n_clusters), size)
    df = pd.DataFrame({"g": make_ids(base), "y1": rng.normal(size=base.size),
                       "y2": rng.normal(size=base.size), "w": np.repeat(rng.normal(size=n_clusters), size)})
    df.loc[rng.random(base.size) < 0.2, "y1"] = np.nan
    shuffled = df.sample(frac=1.0, random_state=3)
    moments = mlmiss.Moments([0.1, -0.2], [0.0], [[1.0, 0.3], [0.3, 1.2]], [[0.4, 0.1], [0.1, 0.3]],
                             [[1.0]], [[0.2], [0.1]])
    reference = mlmiss.loglik(TwoLevelData.from_frame(
        pd.DataFrame({"g": base, **{c: df[c] for c in ["y1", "y2", "w"]}}), "g", y=["y1", "y2"], z=["w"]),
        moments, "dense")
    for frame in (df, shuffled):
        data = TwoLevelData.from_frame(frame, "g", y=["y1", "y2"], z=["w"])
        assert data.n_clusters == n_clusters
        for method in ("objective5", "dense"):
            assert mlmiss.loglik(data, moments, method) == pytest.approx(reference, rel=1e-12)


def test_pattern_bookkeeping_is_consistent():
    rng = np.random.default_rng(5)
    n = 300
    df = pd.DataFrame({"g": rng.integers(0, 40, n), **{f"y{k}": rng.normal(size=n) for k in range(4)}})
    for k in range(4):
        df.loc[rng.random(n) < 0.3, f"y{k}"] = np.nan
    data = TwoLevelData.from_frame(df, "g", y=[f"y{k}" for k in range(4)])
    l1 = data.level1
    assert l1.freq.sum() == data.n_obs
    assert l1.pair_freq.sum() == data.n_obs
    # every row's missingness matches its pattern, and pairs are contiguous row blocks
    np.testing.assert_array_equal(~np.isnan(data.y), l1.observed[l1.row_pattern])
    for q in range(l1.n_pairs):
        rows = slice(l1.pair_row_ptr[q], l1.pair_row_ptr[q + 1])
        assert np.all(data.row_cluster[rows] == l1.pair_cluster[q])
        assert np.all(l1.row_pattern[rows] == l1.pair_pattern[q])
        np.testing.assert_allclose(l1.pair_sum[q], np.nansum(data.y[rows], axis=0))
    # sums per pattern
    y0 = np.nan_to_num(data.y)
    for p in range(l1.n_patterns):
        rows = l1.row_pattern == p
        np.testing.assert_allclose(l1.pattern_sumsq[p], y0[rows].T @ y0[rows])
    # the prefix tree spells out every pattern's missing set exactly once
    assert sorted(l1.tree_pattern[l1.tree_pattern >= 0]) == list(range(l1.n_patterns))
    path = []
    for node in range(len(l1.tree_var)):
        path = path[: l1.tree_depth[node] - 1] + ([l1.tree_var[node]] if node else [])
        if l1.tree_pattern[node] >= 0:
            assert path == list(np.flatnonzero(~l1.observed[l1.tree_pattern[node]]))


def test_pattern_counts_of_paper_like_counted_with_pandas():
    """The level-1 and level-2 pattern bookkeeping on the paper_like data, against counts
    made here from the CSV."""
    df = pd.read_csv(LAVAAN_DIR / "paper_like.csv")
    y = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
    z = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]
    missing = df[y].isna()
    kept = ~missing.all(axis=1)  # rows with no level-1 value are dropped
    n_level1 = len(missing[kept].drop_duplicates())
    n_pairs = len(pd.concat([df.loc[kept, ["cluster"]], missing[kept]], axis=1).drop_duplicates())
    # a cluster observes z when some row of it does
    z_observed = df[z].notna().groupby(df["cluster"]).any()
    n_level2 = len(z_observed.drop_duplicates())
    assert n_level1 > 1 and n_pairs > n_level1 and n_level2 > 1
    data = TwoLevelData.from_frame(df, "cluster", y=y, z=z)
    assert data.level1.n_patterns == n_level1
    assert data.level1.n_pairs == n_pairs
    assert data.level2.n_patterns == n_level2


# ---------------------------------------------------------------- errors
def test_error_cluster_column_absent():
    with pytest.raises(DataError, match="cluster column 'schl'"):
        TwoLevelData.from_frame(small_frame(), "schl")


def test_error_cluster_ids_missing():
    df = small_frame()
    df.loc[3, "school"] = None
    with pytest.raises(DataError, match=r"missing ids in rows 3"):
        TwoLevelData.from_frame(df, "school")


def test_error_non_numeric_variable():
    df = small_frame()
    df["y2"] = df["y2"].astype(str)
    with pytest.raises(DataError, match="variable 'y2' is not numeric"):
        TwoLevelData.from_frame(df, "school", y=["y1", "y2"])


def test_error_between_variable_varies_within_cluster():
    df = small_frame()
    df.loc[1, "w"] = 6.0  # cluster "b" now has 5, 6, 5
    with pytest.raises(DataError, match=r"'w' varies within cluster\(s\) 'b'"):
        TwoLevelData.from_frame(df, "school", y=["y1", "y2"], z=["w"])


def test_error_variable_without_observed_value():
    df = small_frame()
    df["y3"] = np.nan
    with pytest.raises(DataError, match="'y3' has no observed value"):
        TwoLevelData.from_frame(df, "school", y=["y1", "y3"])
    df["w2"] = np.nan
    with pytest.raises(DataError, match="'w2' has no observed value"):
        TwoLevelData.from_frame(df, "school", y=["y1"], z=["w2"])


def test_error_duplicate_names():
    with pytest.raises(DataError, match="'y1' is listed twice"):
        TwoLevelData.from_frame(small_frame(), "school", y=["y1", "y2", "y1"])
    df = pd.concat([small_frame(), small_frame()[["y1"]]], axis=1)
    with pytest.raises(DataError, match="duplicate column names.*'y1'"):
        TwoLevelData.from_frame(df, "school", y=["y2"])


def test_error_name_in_both_y_and_z():
    with pytest.raises(DataError, match="'w'.* both y and z"):
        TwoLevelData.from_frame(small_frame(), "school", y=["y1", "w"], z=["w"])


def test_error_unknown_variable():
    with pytest.raises(DataError, match="y variable 'nope' is not in the data"):
        TwoLevelData.from_frame(small_frame(), "school", y=["y1", "nope"])


def test_error_infinite_value():
    df = small_frame()
    df.loc[4, "y1"] = np.inf
    with pytest.raises(DataError, match="'y1' has infinite values in rows 4"):
        TwoLevelData.from_frame(df, "school", y=["y1", "y2"])


def test_data_errors_are_value_errors():
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- moments
def test_moments_validation():
    ok = dict(mu_y=[0.0, 0.0], mu_z=[0.0], sigma_w=np.eye(2), sigma_b=np.diag([1.0, 0.0]),
              sigma_zz=[[1.0]], sigma_yz=[[0.2], [0.0]])
    m = mlmiss.Moments(**ok)
    np.testing.assert_array_equal(m.between_index, [0])
    with pytest.raises(mlmiss.MomentsError, match="sigma_w has shape"):
        mlmiss.Moments(**dict(ok, sigma_w=np.eye(3)))
    with pytest.raises(mlmiss.MomentsError, match="sigma_b is not symmetric"):
        mlmiss.Moments(**dict(ok, sigma_b=[[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(mlmiss.MomentsError, match="sigma_yz row"):
        mlmiss.Moments(**dict(ok, sigma_yz=[[0.2], [0.3]]))
    with pytest.raises(mlmiss.MomentsError, match="non-finite"):
        mlmiss.Moments(**dict(ok, mu_y=[0.0, np.nan]))


def test_moments_must_match_data():
    data = TwoLevelData.from_frame(small_frame(), "school", y=["y1", "y2"], z=["w"])
    m = mlmiss.Moments([0.0], [0.0], [[1.0]], [[1.0]], [[1.0]], [[0.0]])
    with pytest.raises(mlmiss.MomentsError, match="P=2"):
        mlmiss.loglik(data, m)


def test_unknown_method():
    data = TwoLevelData.from_frame(small_frame(), "school", y=["y1", "y2"], z=["w"])
    m = mlmiss.Moments([0.0, 0.0], [0.0], np.eye(2), np.eye(2), [[1.0]], [[0.0], [0.0]])
    with pytest.raises(ValueError, match="unknown method 'objective6'"):
        mlmiss.loglik(data, m, "objective6")
