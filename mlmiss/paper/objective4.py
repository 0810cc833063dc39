"""Objective 4 (Rosseel 2021, sec. 4.5): missing patterns within each cluster.

Objective 3 updated the inverse of Sigma_w once per level-1 *row*. Rows of a cluster
that miss the same variables share W = Sigma_w[o, o]^{-1} (padded with zeros) and
log|Sigma_w[o, o]|, so here the loop runs over the missing patterns within each cluster
instead, the (cluster, pattern) pairs of ``data.level1`` (du Toit & du Toit's
suggestion): one inverse update per pair, weighted by its number of rows n_jq. The level-1
data are centred once per evaluation (y - mu_y, zeros where missing). Per pair
q of cluster j with centred rows D_q (n_jq x P):

    log|Lambda_j| += n_jq log|Sigma_w[o, o]|
    A_j += n_jq W_q,   p_j += W_q (sum of the rows of D_q)                       (eq. 61)
    q_yy_a += sum_i d_i' W_q d_i

(a complete pattern uses the precomputed Sigma_w^{-1}, as a complete row did in
objective 3).

Everything after the within part is objective 3's, reused from there
(:func:`.objective3.between_terms`, :func:`.objective3.cluster_term`): the three cases
for z_j, Sigma_j(b.z) (eq. 57), g_j (eq. 67), IBZA_j = I_P + Sigma_j(b.z) A_j and the
singular-safe forms (85)-(87). NY and NZ count the observed values of the cluster at
the two levels (NY from the pattern sizes times their frequencies); P_j = NY + NZ
gives the cluster's constant.

Returns -inf when some V_j is not positive definite: I + Sigma_j(b.z) A_j must have
positive eigenvalues (:func:`mlmiss.linalg.ibza_logdet`). Sigma_w and Sigma_zz are
checked once by :func:`mlmiss.loglik`.
"""

from __future__ import annotations

import numpy as np

from ..linalg import cholesky_inverse, inverse_update
from .objective3 import between_terms, cluster_term, complete_z_terms



def loglik(data, moments) -> float:
    mu_y, sigma_w = moments.mu_y, moments.sigma_w
    n_y = mu_y.shape[0]
    l1 = data.level1

    # complete-data inverses and log-determinants, once per evaluation
    omega_w, logdet_w = cholesky_inverse(sigma_w)
    complete = complete_z_terms(moments)
    if omega_w is None or complete is None:
        return -np.inf

    # pre-centred data, zeros where missing
    y_centred = np.nan_to_num(data.y - mu_y, nan=0.0)
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

        # ---- between (NZ = between[4]) and the cluster's term: as in objective 3
        between = between_terms(data.z[j], moments, complete)
        if between is None:
            return -np.inf
        term = cluster_term(w_logdet, a_j, p_j, q_yy_a, between, n_values_y + between[4])
        if term == -np.inf:
            return -np.inf
        total += term
    return float(total)
