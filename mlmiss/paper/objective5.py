"""Objective 5 (Rosseel 2021, sec. 4.6): global missing patterns.

Objective 4 walked the clusters and, inside each, its missing patterns: Sigma_w[o, o]
was inverted (by the Appendix B.1 update) once per (cluster, pattern) pair, and
Sigma_zz[o, o] once per cluster. Yet the same pattern turns up in many clusters. The
one idea of sec. 4.6 is to turn the loops inside out: invert Sigma_w[o, o] once per
distinct level-1 pattern *of the whole data set* and scatter that pattern's share into
A_j and p_j of every cluster that has rows with it; likewise invert Sigma_zz[o, o] once
per level-2 pattern. The price is bookkeeping (``data.level1``, ``data.level2``) and
per-cluster containers (A_j as a J x P x P array, p_j as J x P) filled in along the way.

1. :func:`within_patterns`, per level-1 pattern p: W_p = Sigma_w[o, o]^{-1} padded with
   zeros (App. B.1, from the full inverse of Sigma_w), and for each pair (j, p) with n_jp
   rows, d_i = y_i - mu_y (zeros where missing):

       log|Lambda_j| += n_jp log|Sigma_w[o, o]|
       A_j += n_jp W_p,   p_j += W_p sum_i d_i                                  (eq. 61)
       q_yy_a(j) += sum_i d_i' W_p d_i          (= delta_y' Lambda_j^{-1} delta_y)

2. :func:`between_patterns`, per level-2 pattern q: Sigma^zz_q (padded inverse of
   Sigma_zz[o, o]), log|Sigma_zz[o, o]|, H_q = Sigma_yz Sigma^zz_q and
   Sigma_q(b.z) = Sigma_b - H_q Sigma_zy (eq. 57), shared by all clusters of pattern q.
3. :func:`cluster_terms`, per cluster: g_j = H_q delta_z (eq. 67),
   q_zz_a = delta_z' Sigma^zz_q delta_z, and with S = Sigma_q(b.z), A = A_j the
   singular-safe forms (85)-(87) and |V_j| = |G Sigma_zz G'| |Lambda_j| |I + S A|.

Step 3 evaluates I + S A through a factor of A: A_j is positive semidefinite, so a
pivoted Cholesky gives A = R R' (R: P x r, r = rank). Then, by (A32),
|I_P + S R R'| = |I_r + R'S R| =: |N|, and V_j is positive definite exactly when N is
(V_j's Schur complement Lambda_j + Q S Q' is, after whitening by Lambda_j, I plus a
matrix whose nonzero eigenvalues are those of R'S R). So one Cholesky N = L L' gives
the determinant and an exact check even for an indefinite Sigma_b. Woodbury (A26)
with U = S R, V = R' gives (I + S R R')^{-1} = I - S R N^{-1} R', which turns (85)-(87)
into, with u = R'S p_j and v = R'g_j,

    q_yy_b = p_j'S p_j - |L^{-1} u|^2     (q_yy = q_yy_a - q_yy_b)
    q_yz   = -(p_j'g_j - (L^{-1} u)'(L^{-1} v))
    q_zz_b = |L^{-1} v|^2                 (q_zz = q_zz_a + q_zz_b)

The constant -1/2 P_j log(2 pi), summed over clusters, is -1/2 n_observed log(2 pi).

This is the teaching version. The engine (:mod:`mlmiss.likelihood`) goes further:
a prefix tree over the missing sets (each inverse one update from its parent's),
per-pattern sums instead of rows, and three factorizations.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import (FAST, cholesky_into, cholesky_inverse_into, forward_solve,
                      inverse_update_into, psd_factor_into)

LOG_2PI = np.log(2.0 * np.pi)


@njit(cache=True, fastmath=FAST)
def within_patterns(sigma_w, mu_y, y, observed, pattern_pairs, pattern_pair_ptr,
                    pair_cluster, pair_freq, pair_row_ptr, n_clusters):
    """Step 1: (ok, log|Lambda_j|, A_j, p_j, q_yy_a) for all clusters, one inverse
    update per global level-1 pattern; ok is False if Sigma_w or some Sigma_w[o, o] is
    not positive definite."""
    n_y = sigma_w.shape[0]
    log_lambda = np.zeros(n_clusters)
    a = np.zeros((n_clusters, n_y, n_y))
    p = np.zeros((n_clusters, n_y))
    q_yy_a = np.zeros(n_clusters)
    omega, w = np.empty((n_y, n_y)), np.empty((n_y, n_y))
    small, small_inv, work = np.empty((n_y, n_y)), np.empty((n_y, n_y)), np.empty((n_y, n_y))
    idx = np.empty(n_y, np.int64)
    d = np.empty(n_y)

    # the full inverse once; every pattern's inverse is updated from it (App. B.1)
    logdet_w = cholesky_inverse_into(sigma_w, n_y, omega, work)
    if np.isnan(logdet_w):
        return False, log_lambda, a, p, q_yy_a
    for pat in range(observed.shape[0]):
        ld = inverse_update_into(sigma_w, omega, logdet_w, observed[pat], w, idx, small, small_inv, work)
        if np.isnan(ld):
            return False, log_lambda, a, p, q_yy_a
        # scatter W_p into every cluster that has rows with this pattern
        for t in range(pattern_pair_ptr[pat], pattern_pair_ptr[pat + 1]):
            q = pattern_pairs[t]
            j = pair_cluster[q]
            n = pair_freq[q]
            log_lambda[j] += n * ld
            for r in range(n_y):
                for c in range(n_y):
                    a[j, r, c] += n * w[r, c]
            for i in range(pair_row_ptr[q], pair_row_ptr[q + 1]):   # the pair's rows
                for k in range(n_y):
                    d[k] = y[i, k] - mu_y[k] if observed[pat, k] else 0.0
                quad = 0.0
                for r in range(n_y):
                    s = 0.0
                    for c in range(n_y):
                        s += w[r, c] * d[c]
                    p[j, r] += s
                    quad += d[r] * s
                q_yy_a[j] += quad
    return True, log_lambda, a, p, q_yy_a


@njit(cache=True, fastmath=FAST)
def between_patterns(sigma_zz, sigma_yz, sigma_b, observed):
    """Step 2: (ok, Sigma^zz_q, log|Sigma_zz[o, o]|, H_q, Sigma_q(b.z)) per level-2
    pattern q; a pattern observing no z (or K = 0) gets zeros and Sigma_b."""
    n_pat, n_z = observed.shape
    n_y = sigma_b.shape[0]
    zinv = np.zeros((n_pat, n_z, n_z))
    z_logdet = np.zeros(n_pat)
    h = np.zeros((n_pat, n_y, n_z))
    s_bz = np.zeros((n_pat, n_y, n_y))
    omega = np.empty((n_z, n_z))
    small, small_inv, work = np.empty((n_z, n_z)), np.empty((n_z, n_z)), np.empty((n_z, n_z))
    idx = np.empty(n_z, np.int64)

    logdet_z = cholesky_inverse_into(sigma_zz, n_z, omega, work)
    if np.isnan(logdet_z):
        return False, zinv, z_logdet, h, s_bz
    for q in range(n_pat):
        ld = inverse_update_into(sigma_zz, omega, logdet_z, observed[q], zinv[q], idx, small, small_inv, work)
        if np.isnan(ld):
            return False, zinv, z_logdet, h, s_bz
        z_logdet[q] = ld
        for r in range(n_y):                       # H_q = Sigma_yz Sigma^zz_q
            for c in range(n_z):
                s = 0.0
                for k in range(n_z):
                    s += sigma_yz[r, k] * zinv[q, k, c]
                h[q, r, c] = s
        for r in range(n_y):                       # eq. (57)
            for c in range(n_y):
                s = sigma_b[r, c]
                for k in range(n_z):
                    s -= h[q, r, k] * sigma_yz[c, k]
                s_bz[q, r, c] = s
    return True, zinv, z_logdet, h, s_bz


@njit(cache=True, fastmath=FAST)
def cluster_terms(z, mu_z, cluster_pattern, zinv, z_logdet, h, s_bz, a, p, log_lambda, q_yy_a):
    """Step 3: sum over clusters of -1/2 [log|V_j| + q_zz + 2 q_yz + q_yy] (no constant);
    nan when some V_j is not positive definite."""
    n_clusters, n_z = z.shape
    n_y = a.shape[1]
    dz, g, sp, u, v = np.empty(n_z), np.empty(n_y), np.empty(n_y), np.empty(n_y), np.empty(n_y)
    r_fac, sr, nmat, chol = np.empty((n_y, n_y)), np.empty((n_y, n_y)), np.empty((n_y, n_y)), np.empty((n_y, n_y))
    a_unit, work, dsc = np.empty((n_y, n_y)), np.empty((n_y, n_y)), np.empty(n_y)
    perm = np.empty(n_y, np.int64)
    total = 0.0
    for j in range(n_clusters):
        q = cluster_pattern[j]
        s = s_bz[q]
        # ---- between: delta_z (zeros where missing), q_zz_a and g_j (eq. 67)
        for k in range(n_z):
            dz[k] = 0.0 if np.isnan(z[j, k]) else z[j, k] - mu_z[k]
        q_zz_a = 0.0
        for r in range(n_z):
            for c in range(n_z):
                q_zz_a += dz[r] * zinv[q, r, c] * dz[c]
        for r in range(n_y):
            t = 0.0
            for k in range(n_z):
                t += h[q, r, k] * dz[k]
            g[r] = t
        # ---- A_j = R R' (rank rk), factored at unit diagonal so that the rank
        # tolerance does not depend on the variables' scales; SR = S R, sp = S p_j
        for r in range(n_y):
            dsc[r] = np.sqrt(a[j, r, r]) if a[j, r, r] > 0.0 else 1.0
        for r in range(n_y):
            for c in range(n_y):
                a_unit[r, c] = a[j, r, c] / (dsc[r] * dsc[c])
        rk = psd_factor_into(a_unit, n_y, r_fac, work, perm)
        if rk < 0:                                 # A_j not PSD: only through rounding
            return np.nan
        for r in range(n_y):
            for l in range(rk):
                r_fac[r, l] *= dsc[r]
        for r in range(n_y):
            t = 0.0
            for c in range(n_y):
                t += s[r, c] * p[j, c]
            sp[r] = t
            for l in range(rk):
                t = 0.0
                for c in range(n_y):
                    t += s[r, c] * r_fac[c, l]
                sr[r, l] = t
        # ---- N = I_r + R'S R; its Cholesky: log|I + S A| and the exact PD check of V_j
        for k in range(rk):
            for l in range(rk):
                t = 1.0 if k == l else 0.0
                for r in range(n_y):
                    t += r_fac[r, k] * sr[r, l]
                nmat[k, l] = t
        ld_n = cholesky_into(nmat, rk, chol)
        if np.isnan(ld_n):
            return np.nan
        # ---- u = R'S p, v = R'g, both whitened by L; then (85)-(87)
        psp, pg = 0.0, 0.0
        for r in range(n_y):
            psp += p[j, r] * sp[r]
            pg += p[j, r] * g[r]
        for l in range(rk):
            tu, tv = 0.0, 0.0
            for r in range(n_y):
                tu += r_fac[r, l] * sp[r]
                tv += r_fac[r, l] * g[r]
            u[l], v[l] = tu, tv
        forward_solve(chol, rk, u)
        forward_solve(chol, rk, v)
        uu, uv, vv = 0.0, 0.0, 0.0
        for l in range(rk):
            uu += u[l] * u[l]
            uv += u[l] * v[l]
            vv += v[l] * v[l]
        q_yy = q_yy_a[j] - (psp - uu)
        q_yz = -(pg - uv)
        q_zz = q_zz_a + vv
        log_v = z_logdet[q] + log_lambda[j] + ld_n
        total += log_v + q_zz + 2.0 * q_yz + q_yy
    return -0.5 * total


def _arr(x):
    """A writable C-contiguous float copy (the moments are read-only): one compiled signature."""
    return np.array(x, dtype=np.float64, order="C")


def loglik(data, moments) -> float:
    """lavaan's logl (with the constant); -inf if Sigma_w, Sigma_zz, a needed sub-block
    or some V_j is not positive definite."""
    l1, l2 = data.level1, data.level2
    ok, log_lambda, a, p, q_yy_a = within_patterns(
        _arr(moments.sigma_w), _arr(moments.mu_y), data.y, l1.observed, l1.pattern_pairs,
        l1.pattern_pair_ptr, l1.pair_cluster, l1.pair_freq, l1.pair_row_ptr, data.n_clusters)
    if not ok:
        return -np.inf
    ok, zinv, z_logdet, h, s_bz = between_patterns(
        _arr(moments.sigma_zz), _arr(moments.sigma_yz), _arr(moments.sigma_b), l2.observed)
    if not ok:
        return -np.inf
    value = cluster_terms(data.z, _arr(moments.mu_z), l2.cluster_pattern, zinv, z_logdet, h,
                          s_bz, a, p, log_lambda, q_yy_a)
    if np.isnan(value):
        return -np.inf
    return float(value - 0.5 * data.n_observed_values * LOG_2PI)
