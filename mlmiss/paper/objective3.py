"""Objective 3 (Rosseel 2021, sec. 4.4): no selection matrices, inverses updated.

Objective 2 built the selection matrices Q_ji and G_j and inverted
W_ji = Q_ji Sigma_w Q_ji' afresh for every level-1 row. Here the inverse and the
log-determinant of the full Sigma_w are computed once per evaluation, and a row with
missing values gets the (zero-padded) inverse of Sigma_w[o, o] by the Appendix B.1
update instead (:func:`mlmiss.linalg.inverse_update`). Missing values are tracked by
boolean masks; a P-vector or P x P matrix simply carries zeros where a row misses a
variable, so Q_ji' (...)^{-1} Q_ji is the padded inverse itself.

Per cluster j:

1. within, row by row (i = 1..n_j, delta_i = y_ji - mu_y with zeros where missing):
   W_i = Sigma_w[o, o]^{-1} (padded; the precomputed Sigma_w^{-1} for a complete row),

       log|Lambda_j| = sum_i log|Sigma_w[o_i, o_i]|
       A_j = sum_i W_i,   p_j = sum_i W_i delta_i                                (eq. 61)
       q_yy_a = sum_i delta_i' W_i delta_i = delta_y' Lambda_j^{-1} delta_y

   accumulated while the rows are processed;
2. between, three cases for z_j: all missing (Sigma_j(b.z) = Sigma_b, g_j = 0, no z
   term), some missing (Sigma_zz^{-1} updated to Sigma_j^zz), complete (Sigma_zz^{-1} and
   Sigma_b.z precomputed once). Then Sigma_j(b.z) (eq. 57) and g_j (eq. 67);
3. IBZA_j = I_P + Sigma_j(b.z) A_j and the singular-safe forms (85)-(87), split as in
   the paper into within-only and between parts:

       q_yy = q_yy_a - q_yy_b,     q_yy_b = p_j' IBZA_j^{-1} Sigma_j(b.z) p_j
       q_yz = -p_j' IBZA_j^{-1} g_j
       q_zz = q_zz_a + q_zz_b,     q_zz_a = delta_z' Sigma_j^zz delta_z,
                                   q_zz_b = g_j' A_j IBZA_j^{-1} g_j
       log|V_j| = log|G_j Sigma_zz G_j'| + log|Lambda_j| + log|IBZA_j|

   (|I_P + A_j Sigma_j(b.z)| = |I_P + Sigma_j(b.z) A_j|), and the cluster adds
   -1/2 [P_j log(2 pi) + log|V_j| + q_zz + 2 q_yz + q_yy], P_j = its observed values.

Returns -inf when some V_j is not positive definite: I + Sigma_j(b.z) A_j must have
positive eigenvalues (:func:`mlmiss.linalg.ibza_logdet`). Sigma_w and Sigma_zz are
checked once by :func:`mlmiss.loglik`.
"""

from __future__ import annotations

import numpy as np

from .. import linalg
from ..linalg import cholesky_inverse, inverse_update

LOG_2PI = np.log(2.0 * np.pi)


def complete_z_terms(moments):
    """(Sigma_zz^{-1}, log|Sigma_zz|, H = Sigma_yz Sigma_zz^{-1}, Sigma_b.z) for a complete
    z_j, once per evaluation; None if Sigma_zz is not positive definite."""
    omega_z, logdet_z = cholesky_inverse(moments.sigma_zz)
    if omega_z is None:
        return None
    h_full = moments.sigma_yz @ omega_z
    return omega_z, logdet_z, h_full, moments.sigma_b - h_full @ moments.sigma_yz.T


def between_terms(z_j, moments, complete):
    """Step 2 for one cluster: (log|G Szz G'|, Sigma_j(b.z), g_j, q_zz_a, observed z),
    or None if Sigma_zz[o, o] is not positive definite."""
    observed_z = ~np.isnan(z_j)
    n_z = int(observed_z.sum())
    if n_z == 0:                                   # all z missing (or K = 0)
        return 0.0, moments.sigma_b, np.zeros(moments.n_y), 0.0, 0
    if n_z < observed_z.shape[0]:                  # some missing: update Sigma_zz^{-1}
        omega_z, logdet_z = complete[0], complete[1]
        zinv_j, z_logdet = inverse_update(moments.sigma_zz, omega_z, logdet_z, observed_z)
        if np.isnan(z_logdet):
            return None
        h_j = moments.sigma_yz @ zinv_j
        s_bz_j = moments.sigma_b - h_j @ moments.sigma_yz.T       # eq. (57)
        delta_z = np.where(observed_z, z_j - moments.mu_z, 0.0)
    else:                                          # complete: precomputed
        zinv_j, z_logdet, h_j, s_bz_j = complete
        delta_z = z_j - moments.mu_z
    g_j = h_j @ delta_z                            # eq. (67)
    return z_logdet, s_bz_j, g_j, delta_z @ zinv_j @ delta_z, n_z


def cluster_term(w_logdet, a_j, p_j, q_yy_a, between, n_values):
    """Step 3: the cluster's log-likelihood from its within sums and between terms."""
    z_logdet, s_bz_j, g_j, q_zz_a, _ = between
    ibza = np.eye(a_j.shape[0]) + s_bz_j @ a_j
    ibza_logdet = linalg.ibza_logdet(ibza, s_bz_j)
    if ibza_logdet is None:                        # V_j not positive definite
        return -np.inf
    solved = np.linalg.solve(ibza, np.column_stack((s_bz_j @ p_j, g_j)))
    q_yy = q_yy_a - p_j @ solved[:, 0]                         # q_yy_a - q_yy_b
    q_yz = -(p_j @ solved[:, 1])
    q_zz = q_zz_a + g_j @ (a_j @ solved[:, 1])                 # q_zz_a + q_zz_b
    v_logdet = z_logdet + w_logdet + ibza_logdet
    return -0.5 * (n_values * LOG_2PI + v_logdet + q_zz + 2.0 * q_yz + q_yy)


def loglik(data, moments) -> float:
    mu_y, sigma_w = moments.mu_y, moments.sigma_w
    n_y = mu_y.shape[0]

    # complete-data inverses and log-determinants, once per evaluation
    omega_w, logdet_w = cholesky_inverse(sigma_w)
    complete = complete_z_terms(moments)
    if omega_w is None or complete is None:
        return -np.inf

    total = 0.0
    for j in range(data.n_clusters):
        # ---- within: accumulate log|Lambda_j|, A_j, p_j, q_yy_a row by row
        rows = data.y[data.cluster_rows(j)]
        w_logdet = 0.0
        a_j = np.zeros((n_y, n_y))
        p_j = np.zeros(n_y)
        q_yy_a = 0.0
        n_values = 0
        for y_i in rows:
            observed = ~np.isnan(y_i)
            if observed.all():
                w_i, ld = omega_w, logdet_w
                delta = y_i - mu_y
            else:
                w_i, ld = inverse_update(sigma_w, omega_w, logdet_w, observed)
                if np.isnan(ld):
                    return -np.inf
                delta = np.where(observed, y_i - mu_y, 0.0)
            n_values += int(observed.sum())
            w_logdet += ld
            a_j += w_i
            w_delta = w_i @ delta
            p_j += w_delta
            q_yy_a += delta @ w_delta

        # ---- between: three cases for the observed part of z_j
        between = between_terms(data.z[j], moments, complete)
        if between is None:
            return -np.inf

        # ---- IBZA_j = I_P + Sigma_j(b.z) A_j and the quadratic forms (85)-(87)
        term = cluster_term(w_logdet, a_j, p_j, q_yy_a, between, n_values + between[4])
        if term == -np.inf:
            return -np.inf
        total += term
    return float(total)
