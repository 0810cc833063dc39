"""Objective 1 (Rosseel 2021, sec. 4.2): the naive evaluation with selection matrices.

The missing-data likelihood of sec. 3.2, taken literally. For each cluster j:

* G_j (K_j^o x K) keeps the observed between-only values: the identity with the rows
  of missing z removed; Q_ji (P_ji^o x P) does the same for level-1 row i, and
  Q_j = [Q_j1; Q_j2; ...; Q_jn] stacks them (the display after eq. 47);
* the mean of the observed values is (eq. 48)
      mu_j = [G_j mu_z; Q_j1 mu_y; ...; Q_jn mu_y]
  and their covariance matrix is (eqs. 49-50)
      V_j = [ G_j Szz G_j'     G_j Szy Q_j'                                 ]
            [ Q_j Syz G_j'     Q_j Sb Q_j' + (+)_i Q_ji Sw Q_ji'            ]
  where (+) is the direct sum (a block diagonal matrix);
* v_j^o = [G_j z_j; Q_j1 y_j1; ...; Q_jn y_jn] (eq. 52), and the cluster contributes
      -1/2 [P_j log(2 pi) + log|V_j| + (v_j^o - mu_j)' V_j^{-1} (v_j^o - mu_j)]
  to the log-likelihood (eqs. 26 and 51).

The determinant and the inverse of the full P_j x P_j matrix V_j are computed
directly (a Cholesky factor for the determinant, ``inv`` for the inverse), as the
paper's script does with general-purpose routines. This is the slow baseline the other
objectives improve on. Unlike :mod:`.dense`, which fills V_j element by element, it
builds everything from the selection matrices, so the two check each other.

Returns -inf when some V_j is not positive definite (the moments do not give that
cluster a proper normal distribution).
"""

from __future__ import annotations

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def selection_matrix(observed: np.ndarray) -> np.ndarray:
    """Identity with the rows of the unobserved entries removed (G_j or Q_ji)."""
    return np.eye(observed.shape[0])[observed]


def direct_sum(blocks) -> np.ndarray:
    """Block diagonal matrix with the given square blocks (the (+) of eq. 50)."""
    size = sum(block.shape[0] for block in blocks)
    out = np.zeros((size, size))
    start = 0
    for block in blocks:
        stop = start + block.shape[0]
        out[start:stop, start:stop] = block
        start = stop
    return out


def observed_part(selection: np.ndarray, values: np.ndarray) -> np.ndarray:
    """selection @ values, with missing values zeroed first (0 * NaN would be NaN)."""
    return selection @ np.where(np.isnan(values), 0.0, values)


def cluster_loglik(data, moments, j: int) -> float:
    """Log-density of cluster j's observed values, from the full V_j."""
    rows = data.y[data.cluster_rows(j)]
    z_j = data.z[j]

    # selection matrices: G_j for the between-only values, Q_ji per level-1 row
    g_j = selection_matrix(~np.isnan(z_j))
    q_ji = [selection_matrix(~np.isnan(row)) for row in rows]
    q_j = np.vstack(q_ji) if q_ji else np.zeros((0, moments.n_y))

    # V_j from its four blocks (eqs. 49-50)
    v_zz = g_j @ moments.sigma_zz @ g_j.T
    v_zy = g_j @ moments.sigma_yz.T @ q_j.T
    v_yy = q_j @ moments.sigma_b @ q_j.T + direct_sum([q @ moments.sigma_w @ q.T for q in q_ji])
    v_j = np.block([[v_zz, v_zy], [v_zy.T, v_yy]])
    if v_j.shape[0] == 0:
        # nothing observed in this cluster (its rows dropped and z missing)
        return 0.0

    # mean (eq. 48) and observed values (eq. 52), in the same order as V_j
    mu_j = np.concatenate([g_j @ moments.mu_z] + [q @ moments.mu_y for q in q_ji])
    v_obs = np.concatenate([observed_part(g_j, z_j)]
                           + [observed_part(q, row) for q, row in zip(q_ji, rows)])
    delta_j = v_obs - mu_j

    # the determinant and the inverse of the full V_j; the Cholesky factor gives the
    # determinant and tells whether V_j is positive definite at all (a positive
    # determinant alone does not)
    try:
        chol = np.linalg.cholesky(v_j)
    except np.linalg.LinAlgError:
        return -np.inf
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    quad = delta_j @ np.linalg.inv(v_j) @ delta_j
    return -0.5 * (v_j.shape[0] * LOG_2PI + logdet + quad)


def sum_over_clusters(cluster_loglik, data, moments) -> float:
    """Sum of cluster_loglik(data, moments, j) over the clusters (eq. 25); -inf as soon
    as one cluster's V_j is not positive definite."""
    total = 0.0
    for j in range(data.n_clusters):
        term = cluster_loglik(data, moments, j)
        if term == -np.inf:
            return -np.inf
        total += term
    return float(total)


def loglik(data, moments) -> float:
    """Sum of the cluster log-densities (eqs. 48-52); -inf if some V_j is not positive definite."""
    return sum_over_clusters(cluster_loglik, data, moments)
