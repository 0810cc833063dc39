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

Beyond the paper's script, for speed:

* the level-1 patterns are visited along the prefix tree of their missing sets, so
  each W_p is a rank-one update of its parent's (Appendix B.1 with a 1 x 1 block);
* step 2 runs inside the cluster loop from per-pattern blocks W_p[B, :], W_p[B, B];
* M_j is never formed: when Sigma_j(b.z) is positive definite and well conditioned,
  M_j = S (S^{-1} + A_j) and the symmetric S^{-1} + A_j is factored (McDonald's
  form); when it is singular, S = R R' and I + R' A_j R is factored; when it is
  indefinite (a negative between variance), A_j = L L' and I + L' S L is factored,
  which also decides whether V_j is positive definite (see :func:`cluster_chunk`);
* the pattern tree's subtrees and the clusters are shared out among
  ``numba.get_num_threads()`` threads.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange

from ..linalg import (FAST, cholesky_into, cholesky_inverse, cholesky_inverse_into,
                      drop_variable_into, forward_solve, psd_factor_into)

LOG_2PI = np.log(2.0 * np.pi)


@njit(cache=True, fastmath=FAST, parallel=True)
def within_patterns(mu_y, omega_w, logdet_w, bidx, tree_var, tree_depth, tree_pattern, freq,
                    pattern_sum, pattern_sumsq, wb, wbb, wmub, n_threads):
    """Step 1. Returns sum_p [n_p log|Sigma_w[o, o]| + tr(W_p S_p(mu))], the within part
    of sum_j [log|Lambda_j| + delta_y' Lambda_j^{-1} delta_y] (nan if not PD), and
    stores what step 2 needs of each W_p: wb = W_p[B, :], wbb = W_p[B, B] (flat) and
    wmub = (W_p mu)[B].

    The patterns are visited along their prefix tree (``patterns.missing_tree``): a
    node's inverse is its parent's with one more variable removed, so each costs one
    rank-one update (``linalg.drop_variable_into``) instead of a P^3 inversion. The
    subtrees below the root are independent; they are shared out among the threads.
    """
    n_nodes = tree_depth.shape[0]
    # chunk boundaries: nodes of depth 1 (a subtree starts there) near equal shares
    n_chunks = max(1, min(n_threads, n_nodes))
    bounds = np.empty(n_chunks + 1, np.int64)
    bounds[0] = 0
    bounds[n_chunks] = n_nodes
    node = 1
    for c in range(1, n_chunks):
        target = c * n_nodes // n_chunks
        node = max(node, target)
        while node < n_nodes and tree_depth[node] != 1:
            node += 1
        bounds[c] = node
    total = 0.0
    for c in prange(n_chunks):
        total += within_chunk(bounds[c], bounds[c + 1], mu_y, omega_w, logdet_w, bidx, tree_var,
                              tree_depth, tree_pattern, freq, pattern_sum, pattern_sumsq,
                              wb, wbb, wmub)
    return total


@njit(cache=True, fastmath=FAST)
def within_chunk(first, last, mu_y, omega_w, logdet_w, bidx, tree_var, tree_depth, tree_pattern,
                 freq, pattern_sum, pattern_sumsq, wb, wbb, wmub):
    """Step 1 for tree nodes first..last-1 (a run of whole subtrees below the root).
    Inner loops reduce into fresh locals, so that LLVM can vectorize them."""
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
    total = 0.0
    for node in range(first, last):
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
        # tr(W S_p(mu)) = <W, sum y y'> - 2 mu' W s + n mu' W mu
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
        for k in range(nb):
            for b in range(p):
                wb[pat, k, b] = w[bidx[k], b]
            for l in range(nb):
                wbb[pat, k * nb + l] = w[bidx[k], bidx[l]]
            wmub[pat, k] = wmu[bidx[k]]
    return total


@njit(cache=True, fastmath=FAST)
def between_patterns(sigma_b, sigma_zz, sigma_yz, bidx, observed,
                     zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet, s_inv_h):
    """Step 3, per level-2 pattern: zinv (K x K padded), zlogdet, h (Pb x K), s_bz (Pb x Pb).

    There are few level-2 patterns, so Sigma_zz[o, o] is inverted directly. How the
    clusters of the pattern will be handled is decided here, once:
    * Sigma_j(b.z) positive definite and well conditioned: its inverse s_inv, log|S| and
      s_inv_h = S^{-1} H are stored (McDonald's form; rank_bz = Pb, s_logdet finite);
    * positive semidefinite otherwise (singular Sigma_b): S = R R' with R in r_bz and
      its rank in rank_bz (s_logdet = nan);
    * indefinite: rank_bz = -1.
    Returns False if Sigma_zz is not positive definite."""
    n_pat, k = observed.shape
    nb = bidx.shape[0]
    work = np.empty((nb, nb))
    perm = np.empty(nb, np.int64)
    idx = np.empty(k, np.int64)
    small = np.empty((k, k))
    small_inv = np.empty((k, k))
    work_k = np.empty((k, k))
    # the whole Sigma_zz must be positive definite, whatever the patterns observe
    if np.isnan(cholesky_into(sigma_zz, k, work_k)):
        return False
    for q in range(n_pat):
        r = 0
        for c in range(k):
            if observed[q, c]:
                idx[r] = c
                r += 1
        for a in range(r):
            for b in range(r):
                small[a, b] = sigma_zz[idx[a], idx[b]]
        ld = cholesky_inverse_into(small, r, small_inv, work_k)
        if np.isnan(ld):
            return False
        for a in range(k):
            for b in range(k):
                zinv[q, a, b] = 0.0
        for a in range(r):
            for b in range(r):
                zinv[q, idx[a], idx[b]] = small_inv[a, b]
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
        # S_ii (S^{-1})_ii >= 1 grows with the condition number: beyond 1e6 the inverse
        # would lose digits, and the factored form is used instead
        ld = cholesky_inverse_into(s_bz[q], nb, s_inv[q], work)
        worst = np.inf
        if not np.isnan(ld):
            worst = 0.0
            for r in range(nb):
                worst = max(worst, s_bz[q, r, r] * s_inv[q, r, r])
        if worst < 1e6:
            s_logdet[q] = ld
            rank_bz[q] = nb
            for r in range(nb):
                for c in range(k):
                    t = 0.0
                    for e in range(nb):
                        t += s_inv[q, r, e] * h[q, e, c]
                    s_inv_h[q, r, c] = t
        else:
            s_logdet[q] = np.nan
            rank_bz[q] = psd_factor_into(s_bz[q], nb, r_bz[q], work, perm)
    return True


@njit(cache=True, fastmath=FAST)
def cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum,
                   wb, wbb, wmub, a_flat, pj, dz, zd, g):
    """Step 2 and the start of step 4 for cluster j (level-2 pattern q), into buffers:
    A_j (flat, a_flat) and p_j from the cluster's pairs (eq. 61), delta_z (zeros where
    missing), zd = Sigma_j^zz delta_z and g_j = H delta_z (eq. 67). Returns
    q_zz_a = delta_z' Sigma_j^zz delta_z."""
    k = z.shape[1]
    nb = wmub.shape[1]
    p = wb.shape[2]
    # A_j = sum n_jp W_p[B, B], p_j = sum W_p[B, :] (s_jp - n_jp mu_y)
    for t in range(nb * nb):
        a_flat[t] = 0.0
    for e in range(nb):
        pj[e] = 0.0
    for pair in range(cluster_pair_ptr[j], cluster_pair_ptr[j + 1]):
        pat = pair_pattern[pair]
        m = pair_freq[pair]
        for e in range(nb):
            t = 0.0
            for b in range(p):
                t += wb[pat, e, b] * pair_sum[pair, b]
            pj[e] += t - m * wmub[pat, e]
        for t in range(nb * nb):
            a_flat[t] += m * wbb[pat, t]
    for c in range(k):
        dz[c] = 0.0 if np.isnan(z[j, c]) else z[j, c] - mu_z[c]
    qzz_a = 0.0
    for a in range(k):
        t = 0.0
        for b in range(k):
            t += zinv[q, a, b] * dz[b]
        zd[a] = t
        qzz_a += dz[a] * t
    for e in range(nb):
        t = 0.0
        for c in range(k):
            t += h[q, e, c] * dz[c]
        g[e] = t
    return qzz_a


@njit(cache=True, fastmath=FAST, parallel=True)
def cluster_terms(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
                  s_logdet, s_inv_h, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum,
                  wb, wbb, wmub, n_threads):
    """Steps 2 and 4 for all clusters, split into one chunk per thread (the clusters are
    independent); nan if some V_j is not positive definite."""
    n_clusters = z.shape[0]
    n_chunks = min(n_threads, max(n_clusters, 1))
    total = 0.0
    for c in prange(n_chunks):
        total += cluster_chunk(c * n_clusters // n_chunks, (c + 1) * n_clusters // n_chunks,
                               mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz,
                               s_inv, s_logdet, s_inv_h, cluster_pair_ptr, pair_pattern,
                               pair_freq, pair_sum, wb, wbb, wmub)
    return total


@njit(cache=True, fastmath=FAST)
def cluster_chunk(first, last, mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz,
                  s_inv, s_logdet, s_inv_h, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum,
                  wb, wbb, wmub):
    """Steps 2 and 4 for clusters first..last-1: A_j and p_j from the cluster's (pattern,
    count, sum y) pairs, then log|G Szz G'| + log|M_j| + q_zz + 2 q_yz + (q_yy - within
    part), summed.

    M_j = I + S A_j (S = Sigma_j(b.z)) is not symmetric. With S = R R' (rank r, from
    step 3), the push-through identity gives M_j^{-1} = I - R N^{-1} R' A_j with the
    symmetric r x r matrix N = I + R' A_j R, and with x = R' p_j, y = R' A_j g_j:

        log|M_j| = log|N|
        p' M^{-1} S p = x' N^{-1} x
        p' M^{-1} g   = p' g - x' N^{-1} y
        g' A M^{-1} g = g' A g - y' N^{-1} y

    N >= I, so V_j is positive definite. An indefinite S (negative between variances)
    goes to :func:`indefinite_cluster_term`, which also checks V_j. Returns nan when
    some V_j is not positive definite.
    """
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat = np.empty(nb * nb)
    aj = a_flat.reshape((nb, nb))
    pj = np.empty(nb)
    dz = np.empty(k)
    zd = np.empty(k)
    g = np.empty(nb)
    ag = np.empty(nb)
    ar = np.empty((nb, nb))
    nmat = np.empty((nb, nb))
    ms = np.empty((nb, nb))
    ln = np.empty((nb, nb))
    x = np.empty(nb)
    y = np.empty(nb)
    total = 0.0
    for j in range(first, last):
        q = cluster_pattern[j]
        qzz_a = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern, pair_freq,
                               pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
        if not np.isnan(s_logdet[q]):
            # McDonald's form: M_j = S (S^{-1} + A_j), Ms = S^{-1} + A_j = K K'
            for e in range(nb):
                for c in range(e + 1):
                    ms[e, c] = s_inv[q, e, c] + aj[e, c]
            logdet_ms = cholesky_into(ms, nb, ln)
            if np.isnan(logdet_ms):
                return np.nan
            gsg = 0.0
            for e in range(nb):
                t = 0.0
                for c in range(k):
                    t += s_inv_h[q, e, c] * dz[c]
                y[e] = t  # S^{-1} g
                gsg += g[e] * t
                x[e] = pj[e]
            forward_solve(ln, nb, x)
            forward_solve(ln, nb, y)
            xx = 0.0
            xy = 0.0
            yy = 0.0
            for e in range(nb):
                xx += x[e] * x[e]
                xy += x[e] * y[e]
                yy += y[e] * y[e]
            pg = 0.0
            for e in range(nb):
                pg += pj[e] * g[e]
            # p' M^{-1} S p = p' Ms^{-1} p;  p' M^{-1} g = p' Ms^{-1} S^{-1} g;
            # g' A M^{-1} g = g' S^{-1} g - g' S^{-1} Ms^{-1} S^{-1} g
            total += zlogdet[q] + s_logdet[q] + logdet_ms + qzz_a + (gsg - yy) - 2.0 * xy - xx
            continue
        r = rank_bz[q]
        if r < 0:
            term = indefinite_cluster_term(s_bz[q], aj, pj, g)
            if np.isnan(term):
                return np.nan
            total += zlogdet[q] + qzz_a + term
            continue
        # A g, g' A g, p' g
        gag = 0.0
        pg = 0.0
        for e in range(nb):
            s = 0.0
            for c in range(nb):
                s += aj[e, c] * g[c]
            ag[e] = s
            gag += g[e] * s
            pg += pj[e] * g[e]
        # A R, x = R' p, y = R' A g
        for e in range(nb):
            for c in range(r):
                ar[e, c] = 0.0
            for f in range(nb):
                aef = aj[e, f]
                for c in range(r):
                    ar[e, c] += aef * r_bz[q, f, c]
        for c in range(r):
            sx = 0.0
            sy = 0.0
            for e in range(nb):
                sx += r_bz[q, e, c] * pj[e]
                sy += r_bz[q, e, c] * ag[e]
            x[c] = sx
            y[c] = sy
        # N = I + R' (A R), lower triangle, then its Cholesky factor
        for c in range(r):
            for d in range(c + 1):
                s = 0.0
                for e in range(nb):
                    s += r_bz[q, e, c] * ar[e, d]
                nmat[c, d] = s + (1.0 if c == d else 0.0)
                nmat[d, c] = nmat[c, d]
        logdet_n = cholesky_into(nmat, r, ln)
        if np.isnan(logdet_n):
            return np.nan
        forward_solve(ln, r, x)
        forward_solve(ln, r, y)
        xx = 0.0
        xy = 0.0
        yy = 0.0
        for c in range(r):
            xx += x[c] * x[c]
            xy += x[c] * y[c]
            yy += y[c] * y[c]
        qyy_b = xx
        qyz = -(pg - xy)
        qzz_b = gag - yy
        total += zlogdet[q] + logdet_n + qzz_a + qzz_b + 2.0 * qyz - qyy_b
    return total


@njit(cache=True, fastmath=FAST)
def indefinite_cluster_term(s_bz, a_j, p_j, g):
    """log|M_j| + q_zz_b + 2 q_yz - q_yy_b for an indefinite S = Sigma_j(b.z); nan if V_j
    is not positive definite.

    Here S has no real square root, so A_j is factored instead: A_j = L L' over the
    between variables the cluster observes (the others have zero rows in A_j and p_j).
    M_j has the eigenvalues of N = I + L' S L (plus ones), and with u = L'(S p), v = L' g:

        log|M_j| = log|N|,   p' M^{-1} S p = p' S p - u' N^{-1} u,
        p' M^{-1} g = p' g - u' N^{-1} v,   g' A M^{-1} g = v' N^{-1} v.

    V_j is positive definite exactly when N is, so N's Cholesky factor is the check.
    """
    nb = a_j.shape[0]
    seen = np.empty(nb, np.int64)
    buf = np.empty((nb, nb))
    so = np.empty((nb, nb))
    lo = np.empty((nb, nb))
    t = np.empty((nb, nb))
    ln = np.empty((nb, nb))
    sp = np.empty(nb)
    u = np.empty(nb)
    v = np.empty(nb)
    psp = 0.0
    pg = 0.0
    for r in range(nb):
        s = 0.0
        for c in range(nb):
            s += s_bz[r, c] * p_j[c]
        sp[r] = s
        psp += p_j[r] * s
        pg += p_j[r] * g[r]
    n_seen = 0
    for r in range(nb):
        if a_j[r, r] > 0.0:
            seen[n_seen] = r
            n_seen += 1
    for r in range(n_seen):
        for c in range(n_seen):
            buf[r, c] = a_j[seen[r], seen[c]]
            so[r, c] = s_bz[seen[r], seen[c]]
    if np.isnan(cholesky_into(buf, n_seen, lo)):
        return np.nan
    for r in range(n_seen):
        su = 0.0
        sv = 0.0
        for c in range(r, n_seen):
            su += lo[c, r] * sp[seen[c]]
            sv += lo[c, r] * g[seen[c]]
        u[r] = su
        v[r] = sv
    for r in range(n_seen):
        for c in range(n_seen):
            s = 0.0
            for e in range(c, n_seen):
                s += so[r, e] * lo[e, c]
            t[r, c] = s
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
    forward_solve(ln, n_seen, u)
    forward_solve(ln, n_seen, v)
    uu = 0.0
    uv = 0.0
    vv = 0.0
    for r in range(n_seen):
        uu += u[r] * u[r]
        uv += u[r] * v[r]
        vv += v[r] * v[r]
    return logdet_n + vv - 2.0 * (pg - uv) - (psp - uu)


class Stages(NamedTuple):
    """Steps 1 and 3 of one evaluation (what the cluster stage, or the gradient, needs)."""

    omega_w: np.ndarray
    within: float
    wb: np.ndarray
    wbb: np.ndarray
    wmub: np.ndarray
    zinv: np.ndarray
    zlogdet: np.ndarray
    h: np.ndarray
    s_bz: np.ndarray
    r_bz: np.ndarray
    rank_bz: np.ndarray
    s_inv: np.ndarray
    s_logdet: np.ndarray
    s_inv_h: np.ndarray


def pattern_stages(data, moments, n_threads):
    """Steps 1 (level-1 patterns) and 3 (level-2 patterns); None if sigma_w or sigma_zz
    (or one of their observed blocks) is not positive definite."""
    l1, l2 = data.level1, data.level2
    bidx = moments.between_index
    omega_w, logdet_w = cholesky_inverse(moments.sigma_w)
    if omega_w is None:
        return None
    p, nb, n_pat = data.n_y, bidx.size, l1.n_patterns
    wb = np.empty((n_pat, nb, p))
    wbb = np.empty((n_pat, nb * nb))
    wmub = np.empty((n_pat, nb))
    within = within_patterns(moments.mu_y, omega_w, logdet_w, bidx, l1.tree_var, l1.tree_depth,
                             l1.tree_pattern, l1.freq, l1.pattern_sum, l1.pattern_sumsq,
                             wb, wbb, wmub, n_threads)
    if np.isnan(within):
        return None
    n_q, k = l2.observed.shape
    zinv = np.empty((n_q, k, k))
    zlogdet = np.empty(n_q)
    h = np.empty((n_q, nb, k))
    s_bz = np.empty((n_q, nb, nb))
    r_bz = np.empty((n_q, nb, nb))
    rank_bz = np.empty(n_q, np.int64)
    s_inv = np.empty((n_q, nb, nb))
    s_logdet = np.empty(n_q)
    s_inv_h = np.empty((n_q, nb, k))
    if not between_patterns(moments.sigma_b, moments.sigma_zz, moments.sigma_yz, bidx, l2.observed,
                            zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet, s_inv_h):
        return None
    return Stages(omega_w, within, wb, wbb, wmub, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
                  s_logdet, s_inv_h)


def loglik(data, moments) -> float:
    """Steps 1-4 in turn; each stage is one Numba kernel over plain arrays."""
    l1, l2 = data.level1, data.level2
    n_threads = get_num_threads()
    st = pattern_stages(data, moments, n_threads)
    if st is None:
        return -np.inf
    between = cluster_terms(moments.mu_z, data.z, l2.cluster_pattern, st.zinv, st.zlogdet, st.h,
                            st.s_bz, st.r_bz, st.rank_bz, st.s_inv, st.s_logdet, st.s_inv_h,
                            l1.cluster_pair_ptr, l1.pair_pattern, l1.pair_freq, l1.pair_sum,
                            st.wb, st.wbb, st.wmub, n_threads)
    if np.isnan(between):
        return -np.inf
    return float(-0.5 * (data.n_observed_values * LOG_2PI + st.within + between))
