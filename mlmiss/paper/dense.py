"""Dense reference: the observed-data log-likelihood straight from its definition.

Per cluster j, the observed values v_j^o = (z_j^o, y_j1^o, ..., y_jn^o) are normal with
mean mu_j^o and covariance V_j^o (Rosseel 2021, eqs. 48-50):

    Cov(z_a, z_b)      = sigma_zz[a, b]
    Cov(z_a, y_ib)     = sigma_yz[b, a]
    Cov(y_ia, y_kb)    = sigma_b[a, b] + [i == k] sigma_w[a, b]

V_j^o is built element by element from these rules (no selection matrices, no
Woodbury algebra) and the log-density is evaluated with a Cholesky factor. It is slow
and simple on purpose: every other method is tested against it.

Returns -inf when some V_j^o is not positive definite.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

LOG_2PI = np.log(2.0 * np.pi)


def cluster_mean_cov(data, moments, j):
    """Observed values of cluster j, their mean and covariance (eqs. 48-50)."""
    rows = data.y[data.cluster_rows(j)]
    obs_row, obs_var = np.nonzero(~np.isnan(rows))  # row-major: y_j1^o, y_j2^o, ...
    z_var = np.flatnonzero(~np.isnan(data.z[j]))

    values = np.concatenate([data.z[j, z_var], rows[obs_row, obs_var]])
    mean = np.concatenate([moments.mu_z[z_var], moments.mu_y[obs_var]])

    same_unit = obs_row[:, None] == obs_row[None, :]
    v_yy = moments.sigma_b[np.ix_(obs_var, obs_var)] + same_unit * moments.sigma_w[np.ix_(obs_var, obs_var)]
    v_zy = moments.sigma_yz[np.ix_(obs_var, z_var)].T
    v_zz = moments.sigma_zz[np.ix_(z_var, z_var)]
    cov = np.block([[v_zz, v_zy], [v_zy.T, v_yy]])
    return values, mean, cov


def gaussian_logpdf(x, mean, cov):
    """log N(x; mean, cov) by Cholesky; -inf if cov is not positive definite."""
    if x.size == 0:
        return 0.0
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return -np.inf
    white = solve_triangular(chol, x - mean, lower=True)
    return -0.5 * (x.size * LOG_2PI + 2.0 * np.sum(np.log(np.diag(chol))) + white @ white)


def loglik(data, moments) -> float:
    """Sum over clusters of log N(v_j^o; mu_j^o, V_j^o)."""
    total = 0.0
    for j in range(data.n_clusters):
        total += gaussian_logpdf(*cluster_mean_cov(data, moments, j))
    return float(total)
