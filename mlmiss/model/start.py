"""Starting values for a two-level model, in the spirit of lavaan's "simple" start.

Free loadings and regressions start at 1 and 0, latent variances at 0.05 and latent
covariances at 0; residual variances of observed variables start at half the observed
variance at their level, and intercepts at the observed means. The observed level-1
statistics are the pooled within-cluster moments of the available values; level 2
uses the variances and means of the cluster means (between-only variables: of their
cluster values). User ``start()`` values win.

``loadings="fabin3"`` starts the free loadings of a factor measured by observed
variables (marker first) at Hagglund's (1982) FABIN3 instrumental-variable estimates,
as lavaan's default start does, but from the covariances of the factor's own level (the
pooled within-cluster covariances at level 1, those of the cluster means at level 2;
lavaan uses the total covariances at both), and no larger in magnitude than the simple
start. EM uses them: its path is monotone, and from a between loading of 1 where the
data say 0.1 it climbs a ridge that leads away from the maximum (``singular_between``).
The trust region keeps the simple start, from which it was checked on every hard case.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .partable import table_rows


def level_statistics(data):
    """(within variance (P), between variance of the level-1 variables (P), overall
    means (P), z variances (K), z means (K)) from the available values."""
    means = np.nanmean(data.y, axis=0)
    counts, cluster_means, squares = data.cluster_summaries
    dof = np.maximum(counts.sum(axis=0) - (counts > 0).sum(axis=0), 1)
    within = squares.sum(axis=0) / dof
    between = np.nanvar(cluster_means, axis=0)
    z_var = np.nanvar(data.z, axis=0) if data.n_z else np.zeros(0)
    z_mean = np.nanmean(data.z, axis=0) if data.n_z else np.zeros(0)
    return within, between, means, z_var, z_mean


def level_covariances(data):
    """Pairwise-complete covariance matrices of the level-1 variables within clusters
    (deviations from the cluster means) and of the level-2 values between them (cluster
    means of the level-1 variables, then the between-only variables), as DataFrames
    labelled by variable name."""
    _, cluster_means, _ = data.cluster_summaries
    deviations = data.y - cluster_means[data.row_cluster]
    within = pd.DataFrame(deviations, columns=list(data.y_names)).cov()
    level2 = np.column_stack([cluster_means, data.z]) if data.n_z else cluster_means
    between = pd.DataFrame(level2, columns=list(data.y_names) + list(data.z_names)).cov()
    return within, between


def fabin3_loadings(cov: np.ndarray) -> np.ndarray:
    """One-factor loadings, the first fixed at 1, by FABIN3 (Hagglund, 1982): loading i
    is the 2SLS slope of indicator i on the marker with the other indicators as
    instruments. NaN where not defined (two indicators, singular instruments, a
    negative triad of three, missing covariances). Bounded as lavaan bounds them (a
    marker reliability of at least 0.1)."""
    n = cov.shape[0]
    lam = np.full(n, np.nan)
    lam[0] = 1.0
    if n < 3 or not np.all(np.isfinite(cov)):
        return lam
    if n == 3 and cov[0, 1] * cov[0, 2] * cov[1, 2] < 0:
        return lam   # no one-factor model has these signs
    for i in range(1, n):
        rest = [k for k in range(1, n) if k != i]
        s_i = cov[i, rest]
        s_1 = cov[rest, 0]
        try:
            w = np.linalg.solve(cov[np.ix_(rest, rest)], s_1)
        except np.linalg.LinAlgError:
            continue
        denominator = s_1 @ w
        if denominator != 0.0:
            lam[i] = (s_i @ w) / denominator
    if cov[0, 0] > 0:
        bound = np.sqrt(np.maximum(np.diag(cov), 0.0) / (0.1 * cov[0, 0]))
        lam = np.clip(lam, -bound, bound)
    return lam


def _fabin3_starts(table, data):
    """{(factor, indicator, level): loading} for factors whose first loading is fixed
    (a marker) and whose indicators are all observed variables of the data."""
    within, between = level_covariances(data)
    starts = {}
    rows = table[table["op"] == "=~"]
    for (factor, level), group in rows.groupby(["lhs", "level"], sort=False):
        cov = within if level == 1 else between
        names = list(group["rhs"])
        first = group.iloc[0]
        if first["free"] != 0 or not first["value"] or not all(v in cov.columns for v in names):
            continue
        lam = fabin3_loadings(cov.loc[names, names].to_numpy())
        for name, value in zip(names[1:], lam[1:]):
            if np.isfinite(value):
                # no larger than the simple start: a marker with almost no variance at
                # this level makes FABIN3's ratios huge (and the trust region lost
                # between_small's boundary maximum from there)
                starts[(factor, name, level)] = float(np.clip(value, -1.0, 1.0)) * first["value"]
    return starts


LOADINGS = ("simple", "fabin3")


def start_values(partable, data, user: bool = True, scales=None,
                 loadings: str = "simple") -> np.ndarray:
    """theta (npar) of starting values for the free rows of ``partable.table``;
    ``user=False`` ignores the syntax's start() values. ``scales`` (the parameters'
    typical magnitudes, :mod:`mlmiss.estimation.scaling`) put the latent variances'
    0.05 in the units of their markers. ``loadings``: "simple" (1) or "fabin3"."""
    if loadings not in LOADINGS:
        raise ValueError(f"unknown start for loadings {loadings!r}; use one of {LOADINGS}")
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

    loadings = _fabin3_starts(table, data) if loadings == "fabin3" else {}
    theta = np.zeros(partable.npar)
    seen = set()
    for row in table_rows(table):
        if row.free == 0 or row.free in seen:
            continue
        seen.add(row.free)
        if user and np.isfinite(row.value):
            value = row.value
        elif row.op == "=~":
            value = loadings.get((row.lhs, row.rhs, row.level), 1.0)
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
