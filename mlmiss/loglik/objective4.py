"""Objective 4 (Rosseel 2021, sec. 4.5): missing patterns within each cluster.

Objective 3 updated the inverse of Sigma_w once per level-1 *row*. Rows of a cluster
that miss the same variables share W = Sigma_w[o, o]^{-1} (padded with zeros) and
log|Sigma_w[o, o]|, so here the loop runs over the missing patterns within each cluster
instead, the (cluster, pattern) pairs of ``data.level1`` (du Toit & du Toit's
suggestion): one inverse update per pair, weighted by its number of rows n_jq. The data
are centred once per evaluation (y - mu_y and z - mu_z, zeros where missing). Per pair
q of cluster j with centred rows D_q (n_jq x P):

    log|Lambda_j| += n_jq log|Sigma_w[o, o]|
    A_j += n_jq W_q,   p_j += W_q (sum of the rows of D_q)                       (eq. 61)
    q_yy_a += sum_i d_i' W_q d_i

(a complete pattern uses the precomputed Sigma_w^{-1}, as a complete row did in
objective 3).

Everything after the within part is objective 3: the three cases for z_j, Sigma_j(b.z)
(eq. 57), g_j (eq. 67), IBZA_j = I_P + Sigma_j(b.z) A_j and the singular-safe forms
(85)-(87), with q_zz_a = delta_z' Sigma_j^zz delta_z now computed in the between part.
NY and NZ count the observed values of the cluster at the two levels (NY from the
pattern sizes times their frequencies); P_j = NY + NZ gives the cluster's constant.

Returns -inf when some V_j is not positive definite: I + Sigma_j(b.z) A_j must have
positive eigenvalues (:func:`mlmiss.linalg.ibza_logdet`). Sigma_w and Sigma_zz are
checked once by :func:`mlmiss.loglik`.
"""

from __future__ import annotations

import numpy as np

from .. import linalg
from ..linalg import cholesky_inverse, inverse_update

LOG_2PI = np.log(2.0 * np.pi)


def loglik(data, moments) -> float:
    mu_y, mu_z = moments.mu_y, moments.mu_z
    sigma_w, sigma_b = moments.sigma_w, moments.sigma_b
    sigma_zz, sigma_yz = moments.sigma_zz, moments.sigma_yz
    n_y = mu_y.shape[0]
    identity = np.eye(n_y)
    l1 = data.level1

    # complete-data inverses and log-determinants, once per evaluation
    omega_w, logdet_w = cholesky_inverse(sigma_w)
    omega_z, logdet_z = cholesky_inverse(sigma_zz)
    if omega_w is None or omega_z is None:
        return -np.inf
    h_full = sigma_yz @ omega_z                    # Sigma_yz Sigma_zz^{-1}
    sigma_b_z = sigma_b - h_full @ sigma_yz.T      # Sigma_b.z for a complete z_j

    # pre-centred data, zeros where missing
    y_centred = np.nan_to_num(data.y - mu_y, nan=0.0)
    z_centred = np.nan_to_num(data.z - mu_z, nan=0.0)
    pattern_size = l1.observed.sum(axis=1)         # observed values per level-1 pattern

    total = 0.0
    for j in range(data.n_clusters):
        # ---- within: one inverse update per missing pattern of the cluster
        w_logdet = 0.0
        a_j = np.zeros((n_y, n_y))
        p_j = np.zeros(n_y)
        q_yy_a = 0.0
        n_values_y = 0                             # NY
        for q in range(l1.cluster_pair_ptr[j], l1.cluster_pair_ptr[j + 1]):
            pattern = l1.pair_pattern[q]
            freq = l1.pair_freq[q]
            if pattern_size[pattern] == n_y:       # complete rows: precomputed
                w_q, ld = omega_w, logdet_w
            else:
                w_q, ld = inverse_update(sigma_w, omega_w, logdet_w, l1.observed[pattern])
                if np.isnan(ld):
                    return -np.inf
            d_q = y_centred[l1.pair_row_ptr[q]:l1.pair_row_ptr[q + 1]]
            wd_q = d_q @ w_q                       # rows d_i' W_q
            w_logdet += freq * ld
            a_j += freq * w_q
            p_j += wd_q.sum(axis=0)
            q_yy_a += np.vdot(wd_q, d_q)
            n_values_y += freq * pattern_size[pattern]

        # ---- between: three cases for the observed part of z_j
        observed_z = ~np.isnan(data.z[j])
        n_values_z = int(observed_z.sum())         # NZ
        if n_values_z == 0:                        # all z missing (or K = 0)
            z_logdet = 0.0
            s_bz_j = sigma_b
            g_j = np.zeros(n_y)
            q_zz_a = 0.0
        else:
            if n_values_z < observed_z.shape[0]:   # some missing: update Sigma_zz^{-1}
                zinv_j, z_logdet = inverse_update(sigma_zz, omega_z, logdet_z, observed_z)
                if np.isnan(z_logdet):
                    return -np.inf
                h_j = sigma_yz @ zinv_j
                s_bz_j = sigma_b - h_j @ sigma_yz.T
            else:                                  # complete: precomputed
                zinv_j, z_logdet, h_j, s_bz_j = omega_z, logdet_z, h_full, sigma_b_z
            delta_z = z_centred[j]
            g_j = h_j @ delta_z                    # eq. (67)
            q_zz_a = delta_z @ zinv_j @ delta_z

        # ---- IBZA_j = I_P + Sigma_j(b.z) A_j and the quadratic forms (85)-(87)
        ibza = identity + s_bz_j @ a_j
        ibza_logdet = linalg.ibza_logdet(ibza, s_bz_j)
        if ibza_logdet is None:  # V_j not positive definite
            return -np.inf
        solved = np.linalg.solve(ibza, np.column_stack((s_bz_j @ p_j, g_j)))
        q_yy_b = p_j @ solved[:, 0]
        q_yz = -(p_j @ solved[:, 1])
        q_zz_b = g_j @ (a_j @ solved[:, 1])
        q_yy = q_yy_a - q_yy_b
        q_zz = q_zz_a + q_zz_b

        v_logdet = z_logdet + w_logdet + ibza_logdet
        n_values = n_values_y + n_values_z         # P_j
        total += -0.5 * (n_values * LOG_2PI + v_logdet + q_zz + 2.0 * q_yz + q_yy)
    return float(total)
