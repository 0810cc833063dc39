"""Objective 5 (Rosseel 2021, sec. 4.6): global level-1 and level-2 missing patterns.

Objective 4 still inverted Sigma_w[o, o] once per pattern *per cluster*. Here each
distinct level-1 pattern in the whole data set is inverted once, and its contribution
is added to every cluster it occurs in. Likewise Sigma_zz[o, o] is inverted once per
level-2 pattern. The work per evaluation is done by Numba kernels over plain arrays:

1. per level-1 pattern p with observed set o (Appendix B.1 inverse update):
   W_p = Sigma_w[o, o]^{-1} (padded), log|Sigma_w[o, o]|, and the within part of
   q_yy, sum_i (y_i - mu)' W_p (y_i - mu) = tr(W_p S_p(mu)), from the pattern's sums of
   y and y y' (so the cost does not grow with the number of rows);
2. per (cluster j, pattern p) pair with n_jp rows and sum s_jp:
   A_j += n_jp W_p  and  p_j += W_p (s_jp - n_jp mu_y)                      (eq. 61);
3. per level-2 pattern: Sigma_j^zz = Sigma_zz[o, o]^{-1}, log|G Sigma_zz G'|,
   H = Sigma_yz G' Sigma_j^zz and Sigma_j(b.z) = Sigma_b - H G Sigma_zy      (eq. 57);
4. per cluster: g_j = H delta_z (eq. 67), M_j = I + Sigma_j(b.z) A_j, and the
   singular-safe quadratic forms (85)-(87) and log|V_j| (eq. 84):

       q_yy = delta_y' Lambda^{-1} delta_y - p_j' M_j^{-1} Sigma_j(b.z) p_j
       q_yz = -p_j' M_j^{-1} g_j
       q_zz = delta_z' Sigma_j^zz delta_z + g_j' A_j M_j^{-1} g_j
       log|V_j| = log|G Sigma_zz G'| + log|Lambda_j| + log|M_j|

Only the P_b variables with a between part enter steps 2-4: Sigma_j(b.z) is zero
outside them, so I + Sigma_j(b.z) A_j is block triangular with an identity block and
everything reduces to P_b x P_b matrices.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import (FAST, cholesky_into, cholesky_inverse_into, drop_variable_into, forward_solve,
                      inverse_update_into)

LOG_2PI = np.log(2.0 * np.pi)


@njit(cache=True, fastmath=FAST)
def within_patterns(mu_y, omega_w, logdet_w, bidx, tree_var, tree_depth, tree_pattern, freq,
                    pattern_sum, pattern_sumsq, pattern_pairs, pattern_pair_ptr, pair_cluster,
                    pair_freq, pair_sum, a_j, p_j):
    """Steps 1-2. Fills a_j (J, Pb, Pb) and p_j (J, Pb); returns the within part of
    sum_j [log|Lambda_j| + delta_y' Lambda_j^{-1} delta_y], or nan if not PD.

    The patterns are visited along their prefix tree (``patterns.missing_tree``): a
    node's inverse is its parent's with one more variable removed, so each costs one
    rank-one update (``linalg.drop_variable_into``) instead of a P^3 inversion.
    Inner loops reduce into fresh locals, so that LLVM can vectorize them.
    """
    p = mu_y.shape[0]
    nb = bidx.shape[0]
    max_depth = 0
    for node in range(tree_depth.shape[0]):
        max_depth = max(max_depth, tree_depth[node])
    w_stack = np.empty((max_depth + 1, p, p))
    ld_stack = np.empty(max_depth + 1)
    for a in range(p):
        for b in range(p):
            w_stack[0, a, b] = omega_w[a, b]
    ld_stack[0] = logdet_w
    wmu = np.empty(p)
    wb = np.empty((nb, p))
    wbb = np.empty((nb, nb))
    wmub = np.empty(nb)
    for j in range(a_j.shape[0]):
        for k in range(nb):
            p_j[j, k] = 0.0
            for l in range(nb):
                a_j[j, k, l] = 0.0
    total = 0.0
    for node in range(tree_depth.shape[0]):
        d = tree_depth[node]
        w = w_stack[d]
        if d > 0:
            step = drop_variable_into(w_stack[d - 1], tree_var[node], w)
            if np.isnan(step):
                return np.nan
            ld_stack[d] = ld_stack[d - 1] + step
        pat = tree_pattern[node]
        if pat < 0:
            continue
        # step 1: tr(W S_p(mu)) = <W, sum y y'> - 2 mu' W s + n mu' W mu
        n = freq[pat]
        trace = 0.0
        for a in range(p):
            s = 0.0
            t = 0.0
            for b in range(p):
                t += w[a, b] * pattern_sumsq[pat, a, b]
                s += w[a, b] * mu_y[b]
            wmu[a] = s
            trace += t
        for a in range(p):
            trace += wmu[a] * (n * mu_y[a] - 2.0 * pattern_sum[pat, a])
        total += n * ld_stack[d] + trace
        # step 2: W[B, :], W[B, B], (W mu)[B] contiguous, then every pair of the pattern
        for k in range(nb):
            for b in range(p):
                wb[k, b] = w[bidx[k], b]
            for l in range(nb):
                wbb[k, l] = w[bidx[k], bidx[l]]
            wmub[k] = wmu[bidx[k]]
        for q in range(pattern_pair_ptr[pat], pattern_pair_ptr[pat + 1]):
            pair = pattern_pairs[q]
            j = pair_cluster[pair]
            m = pair_freq[pair]
            for k in range(nb):
                s = 0.0
                for b in range(p):
                    s += wb[k, b] * pair_sum[pair, b]
                p_j[j, k] += s - m * wmub[k]
                for l in range(nb):
                    a_j[j, k, l] += m * wbb[k, l]
    return total


@njit(cache=True, fastmath=FAST)
def between_patterns(sigma_b, sigma_zz, sigma_yz, omega_z, logdet_z, bidx, observed,
                     zinv, zlogdet, h, s_bz):
    """Step 3, per level-2 pattern: zinv (K x K padded), zlogdet, h (Pb x K), s_bz (Pb x Pb).
    Returns False if some Sigma_zz[o, o] is not positive definite."""
    n_pat, k = observed.shape
    nb = bidx.shape[0]
    idx = np.empty(k, np.int64)
    buf1 = np.empty((k, k))
    buf2 = np.empty((k, k))
    buf3 = np.empty((k, k))
    for q in range(n_pat):
        ld = inverse_update_into(sigma_zz, omega_z, logdet_z, observed[q], zinv[q], idx, buf1, buf2, buf3)
        if np.isnan(ld):
            return False
        zlogdet[q] = ld
        for r in range(nb):
            for c in range(k):
                s = 0.0
                for e in range(k):
                    s += sigma_yz[bidx[r], e] * zinv[q, e, c]
                h[q, r, c] = s
        for r in range(nb):
            for c in range(nb):
                s = sigma_b[bidx[r], bidx[c]]
                for e in range(k):
                    s -= h[q, r, e] * sigma_yz[bidx[c], e]
                s_bz[q, r, c] = s
    return True


@njit(cache=True, fastmath=FAST)
def cluster_terms(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, a_j, p_j):
    """Step 4: sum over clusters of log|G Szz G'| + log|M_j| + q_zz + 2 q_yz + (q_yy - within part).

    M_j = I + S A_j (S = Sigma_j(b.z)) is not symmetric. Write A_j = L L' over the between
    variables the cluster observes (the others have zero rows in A_j and p_j); then
    M_j has the eigenvalues of N = I + L' S L (plus ones), and with u = L'(S p), v = L' g:

        log|M_j| = log|N|
        p' M^{-1} S p = p' S p - u' N^{-1} u
        p' M^{-1} g   = p' g   - u' N^{-1} v
        g' A M^{-1} g = v' N^{-1} v

    N is symmetric, and V_j is positive definite exactly when N is, so its Cholesky
    factor doubles as the admissibility check (nan is returned when it fails), even
    when Sigma_b is indefinite.
    """
    n_clusters, k = z.shape
    nb = a_j.shape[1]
    dz = np.empty(k)
    g = np.empty(nb)
    sp = np.empty(nb)
    seen = np.empty(nb, np.int64)
    buf = np.empty((nb, nb))
    lo = np.empty((nb, nb))
    t = np.empty((nb, nb))
    ln = np.empty((nb, nb))
    so = np.empty((nb, nb))
    spo = np.empty(nb)
    go = np.empty(nb)
    u = np.empty(nb)
    v = np.empty(nb)
    total = 0.0
    for j in range(n_clusters):
        q = cluster_pattern[j]
        for c in range(k):
            dz[c] = 0.0 if np.isnan(z[j, c]) else z[j, c] - mu_z[c]
        qzz_a = 0.0
        for a in range(k):
            s = 0.0
            for b in range(k):
                s += zinv[q, a, b] * dz[b]
            qzz_a += dz[a] * s
        # g_j = H delta_z, S p_j, p' S p, p' g
        psp = 0.0
        pg = 0.0
        for r in range(nb):
            s = 0.0
            for c in range(k):
                s += h[q, r, c] * dz[c]
            g[r] = s
            s = 0.0
            for c in range(nb):
                s += s_bz[q, r, c] * p_j[j, c]
            sp[r] = s
            psp += p_j[j, r] * s
            pg += p_j[j, r] * g[r]
        # L = chol(A_j) over the between variables observed in this cluster
        n_seen = 0
        for r in range(nb):
            if a_j[j, r, r] > 0.0:
                seen[n_seen] = r
                n_seen += 1
        for r in range(n_seen):
            spo[r] = sp[seen[r]]
            go[r] = g[seen[r]]
            for c in range(n_seen):
                buf[r, c] = a_j[j, seen[r], seen[c]]
                so[r, c] = s_bz[q, seen[r], seen[c]]
        if np.isnan(cholesky_into(buf, n_seen, lo)):
            return np.nan
        # u = L' (S p)_o, v = L' g_o, t = S_oo L, N = I + L' t
        for r in range(n_seen):
            su = 0.0
            sv = 0.0
            for c in range(r, n_seen):
                su += lo[c, r] * spo[c]
                sv += lo[c, r] * go[c]
            u[r] = su
            v[r] = sv
        for r in range(n_seen):
            for c in range(n_seen):
                t[r, c] = 0.0
            for e in range(n_seen):
                f = so[r, e]
                for c in range(e + 1):
                    t[r, c] += f * lo[e, c]
        for r in range(n_seen):
            for c in range(r + 1):
                s = 0.0
                for e in range(r, n_seen):
                    s += lo[e, r] * t[e, c]
                buf[r, c] = s + (1.0 if r == c else 0.0)
                buf[c, r] = buf[r, c]
        logdet_n = cholesky_into(buf, n_seen, ln)
        if np.isnan(logdet_n):
            return np.nan
        # forward solves: N^{-1} = LN^{-T} LN^{-1}, so x' N^{-1} y = (LN^{-1} x)'(LN^{-1} y)
        forward_solve(ln, n_seen, u)
        forward_solve(ln, n_seen, v)
        uu = 0.0
        uv = 0.0
        vv = 0.0
        for r in range(n_seen):
            uu += u[r] * u[r]
            uv += u[r] * v[r]
            vv += v[r] * v[r]
        qyy_b = psp - uu
        qyz = -(pg - uv)
        qzz_b = vv
        total += zlogdet[q] + logdet_n + qzz_a + qzz_b + 2.0 * qyz - qyy_b
    return total


@njit(cache=True, fastmath=FAST)
def loglik_kernel(mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz, bidx, n_values,
                  tree_var, tree_depth, tree_pattern, l1_freq, pattern_sum, pattern_sumsq, pattern_pairs,
                  pattern_pair_ptr, pair_cluster, pair_freq, pair_sum,
                  z, l2_observed, cluster_pattern):
    """The whole log-likelihood from plain arrays; -inf if the moments are not admissible."""
    p = mu_y.shape[0]
    k = mu_z.shape[0]
    nb = bidx.shape[0]
    n_clusters = z.shape[0]
    omega_w = np.empty((p, p))
    logdet_w = cholesky_inverse_into(sigma_w, p, omega_w, np.empty((p, p)))
    omega_z = np.empty((k, k))
    logdet_z = cholesky_inverse_into(sigma_zz, k, omega_z, np.empty((k, k)))
    if np.isnan(logdet_w) or np.isnan(logdet_z):
        return -np.inf
    a_j = np.empty((n_clusters, nb, nb))
    p_j = np.empty((n_clusters, nb))
    within = within_patterns(mu_y, omega_w, logdet_w, bidx, tree_var, tree_depth, tree_pattern,
                             l1_freq, pattern_sum, pattern_sumsq, pattern_pairs, pattern_pair_ptr,
                             pair_cluster, pair_freq, pair_sum, a_j, p_j)
    if np.isnan(within):
        return -np.inf
    n_q = l2_observed.shape[0]
    zinv = np.empty((n_q, k, k))
    zlogdet = np.empty(n_q)
    h = np.empty((n_q, nb, k))
    s_bz = np.empty((n_q, nb, nb))
    if not between_patterns(sigma_b, sigma_zz, sigma_yz, omega_z, logdet_z, bidx, l2_observed,
                            zinv, zlogdet, h, s_bz):
        return -np.inf
    between = cluster_terms(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, a_j, p_j)
    if np.isnan(between):
        return -np.inf
    return -0.5 * (n_values * LOG_2PI + within + between)


def kernel_args(data, moments):
    """The plain arrays the kernel takes, in order (moments first, then data)."""
    l1, l2 = data.level1, data.level2
    return (moments.mu_y, moments.mu_z, moments.sigma_w, moments.sigma_b, moments.sigma_zz,
            moments.sigma_yz, moments.between_index.astype(np.int64), float(data.n_observed_values),
            l1.tree_var, l1.tree_depth, l1.tree_pattern, l1.freq, l1.pattern_sum, l1.pattern_sumsq, l1.pattern_pairs,
            l1.pattern_pair_ptr, l1.pair_cluster, l1.pair_freq, l1.pair_sum,
            data.z, l2.observed, l2.cluster_pattern)


def loglik(data, moments) -> float:
    return float(loglik_kernel(*kernel_args(data, moments)))
