"""Two-level data: a pandas DataFrame turned into arrays, clusters and missing patterns.

Built once; every likelihood evaluation reads these arrays and never touches pandas.
Conventions follow lavaan (``missing = "ml"``):

* rows whose level-1 values are all missing are dropped from N (counted in
  ``n_dropped_rows``); their cluster keeps its between-only (z) values;
* a cluster's z value is the value observed on its rows (z must be constant within a
  cluster, missing values aside). lavaan reads it from the cluster's first row; the two
  agree whenever z is missing for the whole cluster or not at all;
* clusters are numbered in order of first appearance; ids may be of any hashable
  type, unsorted and non-contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, MomentsError
from .patterns import Level1Patterns, Level2Patterns, level1_patterns, level2_patterns, sort_rows
from .summaries import cluster_summaries as _cluster_summaries

_SHOW = 5  # how many offending clusters/rows an error message lists


def _show(values) -> str:
    values = list(values)
    head = ", ".join(repr(v) for v in values[:_SHOW])
    return head + (f", ... ({len(values)} in all)" if len(values) > _SHOW else "")


def _numeric_block(df: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The columns as a float array with NaN for missing; non-numeric columns are an error."""
    out = np.empty((len(df), len(names)))
    for k, name in enumerate(names):
        col = df[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"variable {name!r} is not numeric (dtype {col.dtype}); "
                            "mlmiss models continuous variables only")
        values = col.to_numpy(dtype=float, na_value=np.nan)
        bad = np.flatnonzero(np.isinf(values))
        if bad.size:
            raise DataError(f"variable {name!r} has infinite values in rows {_show(df.index[bad])}")
        out[:, k] = values
    return out


def cluster_range(values: np.ndarray, cluster: np.ndarray, n_clusters: int, order=None):
    """Per cluster: (min, max) over observed values, NaN where all are missing.
    ``order``: the rows sorted by cluster (stable), when the caller has it already."""
    if order is None:
        order = np.argsort(cluster, kind="stable")
    sorted_cluster = cluster[order]
    starts = np.searchsorted(sorted_cluster, np.arange(n_clusters))
    lo = np.full(n_clusters, np.nan)
    hi = np.full(n_clusters, np.nan)
    present = np.zeros(n_clusters, dtype=bool)
    present[sorted_cluster] = True
    if values.size:
        # fmin / fmax skip NaN: a cluster is NaN only when every value is missing
        ordered = values[order]
        lo[present] = np.fmin.reduceat(ordered, starts[present])
        hi[present] = np.fmax.reduceat(ordered, starts[present])
    return lo, hi


def _varies(lo, hi) -> np.ndarray:
    """Clusters where a between-only value is not constant (relative tolerance 1e-10)."""
    with np.errstate(invalid="ignore"):
        return (hi - lo) > 1e-10 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))


@dataclass(frozen=True, eq=False)
class TwoLevelData:
    """Level-1 rows, clusters and missing patterns of a two-level data set.

    Attributes
    ----------
    y_names, z_names : level-1 variables (within-only and "both") and between-only ones.
    y : (n_obs, P) level-1 values, NaN = missing, sorted by cluster then pattern.
    row_cluster : (n_obs,) cluster number (0..J-1) of each row of ``y``.
    row_index : (n_obs,) the original DataFrame index label of each row of ``y``.
    row_position : (n_obs,) the position of each row of ``y`` in the DataFrame it came
        from (per-row outputs go back to the data's order with it).
    z : (J, K) between-only values per cluster, NaN = missing.
    cluster_ids : (J,) the original cluster ids, in order of first appearance.
    cluster_sizes : (J,) level-1 rows used per cluster (0 if all its rows were dropped).
    dropped_rows : index labels of rows dropped because all level-1 values are missing.
    level1, level2 : the missing-pattern bookkeeping (:mod:`mlmiss.data.patterns`).
    cluster_name : the name of the cluster-id column.
    """

    y_names: tuple
    z_names: tuple
    y: np.ndarray
    row_cluster: np.ndarray
    row_index: np.ndarray
    z: np.ndarray
    cluster_ids: np.ndarray
    cluster_sizes: np.ndarray
    dropped_rows: np.ndarray
    level1: Level1Patterns
    level2: Level2Patterns
    cluster_name: str = ""
    row_position: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frame(cls, df: pd.DataFrame, cluster: str, y=None, z=None) -> "TwoLevelData":
        """Build from a DataFrame with one row per level-1 unit.

        Parameters
        ----------
        df : the data; missing values are NaN/None/pd.NA.
        cluster : name of the cluster-id column (any hashable ids, no missing ids).
        y : level-1 variables, in order. z : between-only variables, in order.
            Both omitted: z = numeric columns constant within every cluster (missing
            values aside), y = the other numeric columns. Only ``y`` given: no z.
            Only ``z`` given: y = every other numeric column.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if cluster not in df.columns:
            raise DataError(f"cluster column {cluster!r} is not in the data "
                            f"(columns: {_show(df.columns)})")
        ids = df[cluster]
        if ids.isna().any():
            rows = df.index[ids.isna().to_numpy()]
            raise DataError(f"cluster column {cluster!r} has missing ids in rows {_show(rows)}")
        codes, cluster_ids = pd.factorize(ids, sort=False)
        n_clusters = len(cluster_ids)

        y_names, z_names = cls._resolve_names(df, cluster, y, z, codes, n_clusters)
        y_all = _numeric_block(df, y_names)
        z_rows = _numeric_block(df, z_names)
        for k, name in enumerate(y_names):
            if np.all(np.isnan(y_all[:, k])):
                raise DataError(f"variable {name!r} has no observed value")

        # between-only variables: one value per cluster, constant within it
        z = np.full((n_clusters, len(z_names)), np.nan)
        by_cluster = np.argsort(codes, kind="stable")
        for k, name in enumerate(z_names):
            lo, hi = cluster_range(z_rows[:, k], codes, n_clusters, by_cluster)
            bad = np.flatnonzero(_varies(lo, hi))
            if bad.size:
                raise DataError(
                    f"between-only variable {name!r} varies within cluster(s) "
                    f"{_show(cluster_ids[bad])}; a level-2 variable must be constant in each cluster")
            if np.all(np.isnan(lo)):
                raise DataError(f"variable {name!r} has no observed value")
            z[:, k] = lo

        # lavaan drops rows with no level-1 value; the cluster keeps its z
        empty = np.all(np.isnan(y_all), axis=1)
        keep = ~empty
        y_kept, cl_kept, idx_kept = y_all[keep], codes[keep].astype(np.int64), df.index[keep]
        order, observed, row_pattern = sort_rows(y_kept, cl_kept)
        y_sorted = np.ascontiguousarray(y_kept[order])
        cl_sorted = cl_kept[order]
        level1 = level1_patterns(y_sorted, cl_sorted, observed, row_pattern, n_clusters)
        return cls(
            y_names=tuple(y_names), z_names=tuple(z_names),
            y=y_sorted, row_cluster=cl_sorted, row_index=np.asarray(idx_kept)[order],
            z=z, cluster_ids=np.asarray(cluster_ids),
            cluster_sizes=np.bincount(cl_sorted, minlength=n_clusters).astype(np.int64),
            dropped_rows=np.asarray(df.index[empty]),
            level1=level1, level2=level2_patterns(z), cluster_name=str(cluster),
            row_position=np.flatnonzero(keep)[order],
        )

    @staticmethod
    def _resolve_names(df, cluster, y, z, codes, n_clusters):
        def listed(arg, what):
            names = [arg] if isinstance(arg, str) else list(arg)
            seen = set()
            for name in names:
                if name == cluster:
                    raise DataError(f"the cluster column {cluster!r} cannot also be a {what} variable")
                if name not in df.columns:
                    raise DataError(f"{what} variable {name!r} is not in the data")
                if name in seen:
                    raise DataError(f"variable {name!r} is listed twice in {what}")
                seen.add(name)
            return names

        if df.columns.duplicated().any():
            dup = df.columns[df.columns.duplicated()].unique()
            raise DataError(f"duplicate column names in the data: {_show(dup)}")
        numeric = [c for c in df.columns if c != cluster
                   and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
        if y is not None:
            y_names = listed(y, "y")
            z_names = listed(z, "z") if z is not None else []
        elif z is not None:
            z_names = listed(z, "z")
            y_names = [c for c in numeric if c not in z_names]
        else:
            z_names = []
            for c in numeric:
                values = df[c].to_numpy(dtype=float, na_value=np.nan)
                lo, hi = cluster_range(values, codes, n_clusters)
                if not np.all(np.isnan(lo)) and not np.any(_varies(lo, hi)):
                    z_names.append(c)
            y_names = [c for c in numeric if c not in z_names]
        both = [name for name in y_names if name in z_names]
        if both:
            raise DataError(f"variable(s) {_show(both)} are listed in both y and z")
        if not y_names:
            raise DataError("no level-1 (y) variables: a two-level model needs at least one")
        return y_names, z_names

    # ------------------------------------------------------------------ summaries
    @property
    def n_obs(self) -> int:
        """Level-1 rows used (dropped empty rows excluded), lavaan's ``nobs``."""
        return int(self.y.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.z.shape[0])

    @property
    def n_dropped_rows(self) -> int:
        return int(len(self.dropped_rows))

    @property
    def n_y(self) -> int:
        return len(self.y_names)

    @property
    def n_z(self) -> int:
        return len(self.z_names)

    @cached_property
    def n_observed_values(self) -> int:
        """Observed values entering the likelihood: level-1 values plus one z per cluster."""
        return int(np.sum(~np.isnan(self.y)) + np.sum(~np.isnan(self.z)))

    @cached_property
    def cluster_summaries(self):
        """Per cluster and level-1 column (J x P, read-only): the number of available
        values, their mean (NaN where none) and their sum of squared deviations from it
        (:func:`.summaries.cluster_summaries`)."""
        arrays = _cluster_summaries(self.y, self.row_cluster, self.n_clusters)
        for array in arrays:
            array.flags.writeable = False
        return arrays

    def check_moments(self, moments) -> None:
        """Moments must be ordered like the data: P level-1 and K between-only variables."""
        if moments.n_y != self.n_y or moments.n_z != self.n_z:
            raise MomentsError(
                f"moments are for P={moments.n_y} level-1 and K={moments.n_z} between-only "
                f"variables; the data have P={self.n_y} ({', '.join(self.y_names)}) and "
                f"K={self.n_z}" + (f" ({', '.join(self.z_names)})" if self.n_z else ""))

    def cluster_rows(self, j: int) -> slice:
        """Rows of ``y`` that belong to cluster ``j``."""
        ptr = self.level1.cluster_pair_ptr
        rows = self.level1.pair_row_ptr
        return slice(int(rows[ptr[j]]), int(rows[ptr[j + 1]]))

    def __repr__(self) -> str:
        return (f"TwoLevelData(n_obs={self.n_obs}, n_clusters={self.n_clusters}, "
                f"y={list(self.y_names)}, z={list(self.z_names)}, "
                f"level1_patterns={self.level1.n_patterns}, level2_patterns={self.level2.n_patterns}, "
                f"dropped_rows={self.n_dropped_rows})")
