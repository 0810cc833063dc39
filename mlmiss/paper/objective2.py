"""Objective 2 (Rosseel 2021, sec. 4.3): McDonald's solution, singular-safe (sec. 3.5).

Same selection matrices G_j, Q_ji and Q_j = [Q_j1; ...; Q_jn] as objective 1, but V_j
(P_j x P_j) is never formed. Writing (eqs. 54, 56-57)

    Lambda_j       = (+)_i Q_ji Sw Q_ji'                  (block diagonal)
    Sigma_j^zz     = (G_j Szz G_j')^{-1}
    Sigma_j(b.z)   = Sb - Syz G_j' Sigma_j^zz G_j Szy
    A_j            = Q_j' Lambda_j^{-1} Q_j = sum_i A_ji,  A_ji = Q_ji' (Q_ji Sw Q_ji')^{-1} Q_ji
    p_j            = Q_j' Lambda_j^{-1} delta_j^y          (eq. 61)
    g_j            = Syz G_j' Sigma_j^zz delta_j^z         (eq. 67)
    IBZA_j         = I_P + Sigma_j(b.z) A_j

the quadratic forms are (eqs. 85-87)

    q_yy = delta_y' Lambda_j^{-1} delta_y - p_j' IBZA_j^{-1} Sigma_j(b.z) p_j
    q_yz = - p_j' IBZA_j^{-1} g_j
    q_zz = delta_z' Sigma_j^zz delta_z + g_j' A_j IBZA_j^{-1} g_j

The minus sign of q_yz is lost in the extracted text of (86) (and of sec. 3.3's V_j^{yz},
q_yz and eq. 76): the second partitioned-inverse identity (A21) gives the off-diagonal
block of V_j^{-1} as -Q^{-1} C A^{-1}, here
    V_j^{yz} = -(Lambda_j + Q_j Sigma_j(b.z) Q_j')^{-1} Q_j Syz G_j' Sigma_j^zz,
and the push-through identity (A28) turns that into
    V_j^{yz} = -Lambda_j^{-1} Q_j IBZA_j^{-1} Syz G_j' Sigma_j^zz.

The determinant is (end of sec. 3.5, via (A32))

    |V_j| = |G_j Szz G_j'| |Lambda_j| |I_P + A_j Sigma_j(b.z)|.

Nothing here inverts Sb or Sigma_j(b.z), so a singular Sb is fine. Lambda_j is
inverted block by block (Appendix B.4) and log|Lambda_j| is the sum of the blocks'
log-determinants. IBZA_j is the full P x P matrix (the engine, ``mlmiss.likelihood``,
reduces it to the variables with a between part). A cluster whose z are all missing has a G_j with no
rows: then Sigma_j(b.z) = Sb, and only the y part contributes.

Returns -inf when some V_j is not positive definite: I + Sigma_j(b.z) A_j must have
positive eigenvalues (:func:`mlmiss.linalg.ibza_logdet`). Sigma_w and Sigma_zz are
checked once by :func:`mlmiss.loglik`.
"""

from __future__ import annotations

import numpy as np

from .. import linalg
from .objective1 import direct_sum, observed_part, selection_matrix, sum_over_clusters

LOG_2PI = np.log(2.0 * np.pi)


def cluster_loglik(data, moments, j: int) -> float:
    """Log-density of cluster j's observed values from eqs. (85)-(87) and |V_j|."""
    p = moments.n_y
    rows = data.y[data.cluster_rows(j)]
    z_j = data.z[j]
    g_sel = selection_matrix(~np.isnan(z_j))
    q_ji = [selection_matrix(~np.isnan(row)) for row in rows]

    # ---- level 1: Lambda_j block by block, A_j = sum_i A_ji
    lambda_logdet = 0.0
    w_inv = []
    a_j = np.zeros((p, p))
    for q in q_ji:
        w_ji = q @ moments.sigma_w @ q.T
        sign, logdet = np.linalg.slogdet(w_ji)
        if not sign > 0.0:
            return -np.inf
        lambda_logdet += logdet
        w_ji_inv = np.linalg.inv(w_ji)
        w_inv.append(w_ji_inv)
        a_j += q.T @ w_ji_inv @ q
    q_j = np.vstack(q_ji) if q_ji else np.zeros((0, p))
    lambda_inv = direct_sum(w_inv)

    # delta_j^y = Q_j (y_j - 1 mu_y), stacked row by row like Q_j
    y_obs = np.concatenate([observed_part(q, row) for q, row in zip(q_ji, rows)] or [np.zeros(0)])
    delta_y = y_obs - q_j @ moments.mu_y
    p_j = q_j.T @ lambda_inv @ delta_y
    q_yy_a = delta_y @ lambda_inv @ delta_y

    # ---- level 2: Sigma_j^zz, Sigma_j(b.z) (eq. 57) and g_j (eq. 67)
    if g_sel.shape[0] == 0:
        # all z missing: V_j is V_j(yy) alone, Sigma_j(b.z) = Sb and there is no z term
        zz_logdet = 0.0
        sigma_bz = np.array(moments.sigma_b)
        g_j = np.zeros(p)
        q_zz_a = 0.0
    else:
        v_zz = g_sel @ moments.sigma_zz @ g_sel.T
        sign, zz_logdet = np.linalg.slogdet(v_zz)
        if not sign > 0.0:
            return -np.inf
        sigma_zz_j = np.linalg.inv(v_zz)
        syz_g = moments.sigma_yz @ g_sel.T
        sigma_bz = moments.sigma_b - syz_g @ sigma_zz_j @ syz_g.T
        delta_z = observed_part(g_sel, z_j) - g_sel @ moments.mu_z
        g_j = syz_g @ sigma_zz_j @ delta_z
        q_zz_a = delta_z @ sigma_zz_j @ delta_z

    # ---- IBZA_j = I_P + Sigma_j(b.z) A_j, and the singular-safe forms (85)-(87)
    ibza = np.eye(p) + sigma_bz @ a_j
    ibza_logdet = linalg.ibza_logdet(ibza, sigma_bz)
    if ibza_logdet is None:  # V_j not positive definite
        return -np.inf
    # one solve for both right-hand sides: IBZA^{-1} Sigma_j(b.z) p_j and IBZA^{-1} g_j
    solved = np.linalg.solve(ibza, np.column_stack([sigma_bz @ p_j, g_j]))
    q_yy = q_yy_a - p_j @ solved[:, 0]
    q_yz = -p_j @ solved[:, 1]
    q_zz = q_zz_a + g_j @ a_j @ solved[:, 1]

    # |V_j| = |G Szz G'| |Lambda_j| |I + A_j Sigma_j(b.z)|, and |I + AS| = |I + SA|
    logdet_v = zz_logdet + lambda_logdet + ibza_logdet
    n_values = g_sel.shape[0] + q_j.shape[0]
    return -0.5 * (n_values * LOG_2PI + logdet_v + q_zz + 2.0 * q_yz + q_yy)


def loglik(data, moments) -> float:
    """Sum of the cluster log-densities; -inf if some V_j is not admissible."""
    return sum_over_clusters(cluster_loglik, data, moments)
