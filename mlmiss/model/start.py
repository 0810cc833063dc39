"""Starting values for a two-level model, in the spirit of lavaan's "simple" start.

Free loadings and regressions start at 1 and 0, latent variances at 0.05 and latent
covariances at 0; residual variances of observed variables start at half the observed
variance at their level, and intercepts at the observed means. The observed level-1
statistics are the pooled within-cluster moments of the available values; level 2
uses the variances and means of the cluster means (between-only variables: of their
cluster values). User ``start()`` values win.
"""

from __future__ import annotations

import numpy as np


def level_statistics(data):
    """(within variance (P), between variance of the level-1 variables (P), overall
    means (P), z variances (K), z means (K)) from the available values."""
    y = data.y
    cluster = data.row_cluster
    n_clusters = data.n_clusters
    p = data.n_y
    means = np.nanmean(y, axis=0)
    counts = np.zeros((n_clusters, p))
    sums = np.zeros((n_clusters, p))
    observed = ~np.isnan(y)
    np.add.at(counts, cluster, observed)
    np.add.at(sums, cluster, np.where(observed, y, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cluster_means = sums / counts
    deviations = np.where(observed, y - cluster_means[cluster], 0.0)
    dof = np.maximum(observed.sum(axis=0) - (counts > 0).sum(axis=0), 1)
    within = (deviations ** 2).sum(axis=0) / dof
    between = np.nanvar(cluster_means, axis=0)
    z_var = np.nanvar(data.z, axis=0) if data.n_z else np.zeros(0)
    z_mean = np.nanmean(data.z, axis=0) if data.n_z else np.zeros(0)
    return within, between, means, z_var, z_mean


def start_values(partable, data, user: bool = True, scales=None) -> np.ndarray:
    """theta (npar) of starting values for the free rows of ``partable.table``;
    ``user=False`` ignores the syntax's start() values. ``scales`` (the parameters'
    typical magnitudes, :mod:`mlmiss.estimation.scaling`) put the latent variances'
    0.05 in the units of their markers."""
    table = partable.table
    within, between, means, z_var, z_mean = level_statistics(data)
    y_index = {name: i for i, name in enumerate(data.y_names)}
    z_index = {name: i for i, name in enumerate(data.z_names)}

    def observed_variance(name, level):
        if name in z_index:
            return z_var[z_index[name]]
        if name in y_index:
            return (within if level == 1 else between)[y_index[name]]
        return None

    def observed_mean(name, level):
        if name in z_index:
            return z_mean[z_index[name]]
        if name in y_index:
            # a "both" variable's mean lives at level 2; a within-only one at level 1
            return means[y_index[name]]
        return None

    theta = np.zeros(partable.npar)
    seen = set()
    for row in table.itertuples(index=False):
        if row.free == 0 or row.free in seen:
            continue
        seen.add(row.free)
        if user and np.isfinite(row.value):
            value = row.value
        elif row.op == "=~":
            value = 1.0
        elif row.op == "~":
            value = 0.0
        elif row.op == "~1":
            m = observed_mean(row.lhs, row.level)
            value = 0.0 if m is None or not np.isfinite(m) else m
        elif row.lhs == row.rhs:
            v = observed_variance(row.lhs, row.level)
            if v is None:  # a latent variance
                value = 0.05 * (1.0 if scales is None else scales[row.free - 1])
            elif getattr(row, "exo", 0):
                value = v if np.isfinite(v) and v > 0 else 1.0
            else:
                value = 0.5 * v if np.isfinite(v) and v > 0 else 0.05
        else:
            value = 0.0
        theta[row.free - 1] = value
    return theta
