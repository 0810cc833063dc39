"""Per-cluster summaries of the level-1 values, the sample statistics that start values,
parameter scales and the first stage read (:attr:`.frame.TwoLevelData.cluster_summaries`
computes them once per data set)."""

from __future__ import annotations

import numpy as np


def cluster_summaries(y, row_cluster, n_clusters):
    """Per cluster and column (J x P): the number of available values, their mean
    (NaN where none) and their sum of squared deviations from it."""
    observed = ~np.isnan(y)
    filled = np.where(observed, y, 0.0)
    p = y.shape[1]
    counts = np.empty((n_clusters, p))
    means = np.empty((n_clusters, p))
    within = np.empty((n_clusters, p))
    for c in range(p):
        counts[:, c] = np.bincount(row_cluster, observed[:, c], n_clusters)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[:, c] = np.bincount(row_cluster, filled[:, c], n_clusters) / counts[:, c]
        # deviations from the cluster means, not sum y^2 - n ybar^2 (no cancellation)
        deviation = np.where(observed[:, c], y[:, c] - means[row_cluster, c], 0.0)
        within[:, c] = np.bincount(row_cluster, deviation ** 2, n_clusters)
    return counts, means, within
