"""lavaan's ``fixed.x = TRUE``: exogenous covariates treated as fixed.

The likelihood is then that of the endogenous variables given the covariates. In a
two-level model whose exogenous covariates are within-only (level 1) or between-only
(level 2) variables with a saturated covariate block, the joint log-likelihood factors
as conditional(theta_y) + marginal(covariates), and the marginal's maximum is at the
sample means and (biased) covariances. So the covariate rows are fixed at those
sample moments, the joint likelihood is maximized over the remaining parameters (the
same estimates as the conditional one), and the marginal part is subtracted from the
reported log-likelihood, as lavaan reports it.

As in lavaan, covariates must be complete: level-1 rows missing one are dropped, and
so are clusters missing a level-2 covariate.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataWarning

LOG_2PI = np.log(2.0 * np.pi)


def drop_incomplete(df, cluster, x_within, x_between):
    """The rows lavaan keeps: complete level-1 covariates, clusters with complete
    level-2 covariates (their value may sit on any row of the cluster). Returns (the
    kept rows, the index labels of the dropped ones)."""
    keep = df[x_within].notna().all(axis=1) if x_within else np.ones(len(df), bool)
    if x_between:
        per_cluster = df.groupby(cluster, sort=False)[x_between].agg(lambda s: s.notna().any())
        complete = per_cluster.all(axis=1)
        keep &= df[cluster].map(complete).to_numpy(dtype=bool)
    dropped = int((~np.asarray(keep)).sum())
    if dropped:
        warnings.warn(f"fixed_x=True: {dropped} rows dropped for missing values in the exogenous "
                      f"covariates {x_within + x_between} (as lavaan does; fixed_x=False keeps "
                      "them)", DataWarning, stacklevel=4)
    keep = np.asarray(keep, dtype=bool)
    return df[keep], np.asarray(df.index[~keep])


def _sample_moments(values):
    mean = values.mean(axis=0)
    centred = values - mean
    return mean, centred.T @ centred / values.shape[0]


def fill_covariate_rows(table, data, x_within, x_between):
    """A copy of the table with the covariate rows' values set to the sample moments;
    returns (table, marginal log-likelihood of the covariates at those moments)."""
    table = table.copy()
    marginal = 0.0
    for level, names in ((1, x_within), (2, x_between)):
        if not names:
            continue
        if level == 1:
            values = data.y[:, [data.y_names.index(n) for n in names]]
        else:
            values = data.z[:, [data.z_names.index(n) for n in names]]
        mean, cov = _sample_moments(values)
        n, k = values.shape
        marginal += -0.5 * n * (k * LOG_2PI + np.linalg.slogdet(cov)[1] + k)
        index = {name: i for i, name in enumerate(names)}
        rows = (table["exo"] == 1) & (table["level"] == level)
        for i in np.flatnonzero(rows.to_numpy()):
            lhs, op, rhs = table.at[table.index[i], "lhs"], table.at[table.index[i], "op"], \
                table.at[table.index[i], "rhs"]
            value = mean[index[lhs]] if op == "~1" else cov[index[lhs], index[rhs]]
            table.at[table.index[i], "value"] = value
    return table, float(marginal)
