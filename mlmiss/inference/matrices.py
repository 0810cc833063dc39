"""Per-level views for ``Fit.inspect``: the model matrices of the estimates or their
standard errors (lavaan's ``lavInspect(fit, "est")`` / ``"se"``, in the RAM form the
model uses), the latent covariance matrices (``"cov.lv"``), and the data's missing
patterns and coverage per level (``"patterns"``, ``"coverage"``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

LEVELS = {1: "within", 2: "between"}


def ram_matrices(fit, column: str = "est") -> dict:
    """Per level {"A": directed effects (A[i, j] of j on i: loadings and regressions),
    "S": (residual) variances and covariances, "m": intercepts}, over that level's
    observed then latent variables, filled from ``fit.parameter_estimates()[column]``
    (fixed parameters: their value for "est", 0 for "se")."""
    rows = fit.parameter_estimates(se=column != "est")
    if column not in rows:
        raise ValueError(f"inspect({column!r}): the fit has no standard errors (se='none')")
    values = rows[column].to_numpy(dtype=float)
    out = {}
    for level, key in LEVELS.items():
        names = fit.model.level_matrices(fit.theta, level)[0]
        index = {v: i for i, v in enumerate(names)}
        n = len(names)
        a, s, m = np.zeros((n, n)), np.zeros((n, n)), np.zeros(n)
        for r, value in zip(rows.itertuples(index=False), values):
            if int(r.level) != level:
                continue
            if r.op == "=~":
                a[index[r.rhs], index[r.lhs]] = value
            elif r.op == "~":
                a[index[r.lhs], index[r.rhs]] = value
            elif r.op == "~~":
                s[index[r.lhs], index[r.rhs]] = s[index[r.rhs], index[r.lhs]] = value
            elif r.op == "~1":
                m[index[r.lhs]] = value
        out[key] = {"A": pd.DataFrame(a, index=names, columns=names),
                    "S": pd.DataFrame(s, index=names, columns=names),
                    "m": pd.Series(m, index=names)}
    return out


def latent_covariances(fit) -> dict:
    """Per level the model-implied covariance matrix of its latent variables."""
    out = {}
    latent = fit.partable.latent_names
    for level, key in LEVELS.items():
        names, _, cov = fit.model.level_moments(fit.theta, level)
        idx = [names.index(v) for v in latent.get(level, [])]
        lv = [names[i] for i in idx]
        out[key] = pd.DataFrame(cov[np.ix_(idx, idx)], index=lv, columns=lv)
    return out


def _between_observed(data, between_mask) -> tuple[list, np.ndarray]:
    """(level-2 variable names, J x n bool): a "both" variable counts as observed in a
    cluster when some row of the cluster observes it."""
    both = np.flatnonzero(between_mask)
    seen = np.zeros((data.n_clusters, both.size), bool)
    np.logical_or.at(seen, data.row_cluster, ~np.isnan(data.y[:, both]))
    names = [data.y_names[i] for i in both] + list(data.z_names)
    return names, np.hstack([seen, ~np.isnan(data.z)])


def missing_patterns(data, between_mask) -> dict:
    """Per level the missing patterns (True = observed) with their counts (rows at
    level 1, clusters at level 2), most frequent first."""
    level1 = pd.DataFrame(data.level1.observed, columns=list(data.y_names))
    level1.insert(0, "count", data.level1.freq)
    names, seen = _between_observed(data, between_mask)
    patterns, counts = np.unique(seen, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    level2 = pd.DataFrame(patterns[order], columns=names)
    level2.insert(0, "count", counts[order])
    return {"within": level1, "between": level2}


def coverage(data, between_mask) -> dict:
    """Per level the proportion of units (rows; clusters) that observe each pair of
    variables (lavaan's covariance coverage)."""
    observed = (~np.isnan(data.y)).astype(float)
    within = observed.T @ observed / observed.shape[0]
    names, seen = _between_observed(data, between_mask)
    seen = seen.astype(float)
    between = seen.T @ seen / max(seen.shape[0], 1)
    return {"within": pd.DataFrame(within, index=list(data.y_names), columns=list(data.y_names)),
            "between": pd.DataFrame(between, index=names, columns=names)}
