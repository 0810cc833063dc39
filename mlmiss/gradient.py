"""Analytic gradient of the log-likelihood with respect to the moments.

The derivation is in ``docs/gradient.md``; in short, for one cluster with observed
values v (mean m, covariance V), dl = u' dm + tr(Gamma dV) with u = V^{-1}(v - m)
and Gamma = (u u' - V^{-1}) / 2. V is linear in the six moment blocks, so each
block's gradient collects pieces of u and V^{-1}, which the singular-safe McDonald
form gives in P_b x P_b terms. With S = Sigma_j(b.z), M = I + S A_j and

    F = M^{-1} S (symmetric),   E = A_j M^{-1} = A_j - A_j F A_j,
    c = g_j + F (p_j - A_j g_j),   b = p_j - A_j c,   u_z = Sigma_j^zz delta_z - H' b,

a cluster contributes

    mu_z:     u_z                           sigma_zz: (u_z u_z' - Sigma_j^zz - H' E H) / 2
    sigma_b:  (b b' - E) / 2                sigma_yz: b u_z' + E H
    mu_y:     sum_i W_i (delta_i - c)
    sigma_w:  sum_i W_i [(delta_i - c)(delta_i - c)' + F] W_i / 2 - W_i / 2

(b, E live on the variables with a between part, H = Sigma_yz G' Sigma_j^zz.)
The sigma_w term is summed per level-1 pattern into sum_p W_p X_p W_p and pushed
back to sigma_w through the same prefix tree objective 5 walks forward: reverse
mode through its rank-one updates, O(P^2) per node.

The passes reuse objective 5's kernels (:mod:`mlmiss.loglik.objective5`) for the
forward quantities; the per-cluster matrix F is formed by whichever of objective 5's
three forms applies (McDonald's inverse, the rank-revealing factor of a singular
Sigma_j(b.z), or the factor of A_j for an indefinite one).
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from .errors import MomentsError
from .linalg import FAST, cholesky_into, cholesky_inverse_into, drop_variable_into
from .loglik import check_compatible
from .loglik.objective5 import LOG_2PI, cluster_blocks, pattern_stages
from .moments import Moments


class InadmissibleMomentsError(MomentsError):
    """The log-likelihood is -inf at these moments, so it has no gradient."""


# ---------------------------------------------------------------- per cluster: F and log|M|
@njit(cache=True, fastmath=FAST)
def cluster_f_into(aj, s, r_fac, rank, s_inv, s_logdet, f, work):
    """F = M^{-1} S for M = I + S A_j, into f (Pb x Pb); returns log|M|, nan if V_j is
    not positive definite. work: (4, Pb, Pb) scratch.

    * s_logdet finite (S positive definite, well conditioned): F = (S^{-1} + A_j)^{-1},
      log|M| = log|S| + log|S^{-1} + A_j|;
    * rank >= 0 (S = R R', R = r_fac[:, :rank]): F = R N^{-1} R', N = I + R' A_j R;
    * rank < 0 (S indefinite): A_j = L L' over the observed between variables,
      N = I + L' S L, F = S - S L N^{-1} L' S, and V_j > 0 exactly when N > 0.
    """
    nb = aj.shape[0]
    a = work[0]
    b = work[1]
    c = work[2]
    d = work[3]
    if not np.isnan(s_logdet):
        for e in range(nb):
            for g in range(nb):
                a[e, g] = s_inv[e, g] + aj[e, g]
        ld = cholesky_inverse_into(a, nb, f, b)
        return s_logdet + ld
    if rank >= 0:
        r = rank
        # b = A R (nb x r), a = N = I + R' A R
        for e in range(nb):
            for g in range(r):
                t = 0.0
                for h in range(nb):
                    t += aj[e, h] * r_fac[h, g]
                b[e, g] = t
        for e in range(r):
            for g in range(r):
                t = 0.0
                for h in range(nb):
                    t += r_fac[h, e] * b[h, g]
                a[e, g] = t + (1.0 if e == g else 0.0)
        ld = cholesky_inverse_into(a, r, c, d)  # c = N^{-1}
        if np.isnan(ld):
            return np.nan
        # f = R N^{-1} R'
        for e in range(nb):
            for g in range(r):
                t = 0.0
                for h in range(r):
                    t += r_fac[e, h] * c[h, g]
                d[e, g] = t
        for e in range(nb):
            for g in range(nb):
                t = 0.0
                for h in range(r):
                    t += d[e, h] * r_fac[g, h]
                f[e, g] = t
        return ld
    # indefinite S: factor A_j over the between variables this cluster observes
    seen = np.empty(nb, np.int64)
    n_seen = 0
    for e in range(nb):
        if aj[e, e] > 0.0:
            seen[n_seen] = e
            n_seen += 1
    for e in range(n_seen):
        for g in range(n_seen):
            a[e, g] = aj[seen[e], seen[g]]
    if np.isnan(cholesky_into(a, n_seen, b)):  # b = L
        return np.nan
    # c = S[:, o] L  (nb x n_seen)
    for e in range(nb):
        for g in range(n_seen):
            t = 0.0
            for h in range(g, n_seen):
                t += s[e, seen[h]] * b[h, g]
            c[e, g] = t
    # a = N = I + L' S_oo L = I + L' c[o, :]
    for e in range(n_seen):
        for g in range(n_seen):
            t = 0.0
            for h in range(e, n_seen):
                t += b[h, e] * c[seen[h], g]
            a[e, g] = t + (1.0 if e == g else 0.0)
    for e in range(n_seen):
        for g in range(e):
            t = 0.5 * (a[e, g] + a[g, e])
            a[e, g] = t
            a[g, e] = t
    ld = cholesky_inverse_into(a, n_seen, d, b)  # d = N^{-1}
    if np.isnan(ld):
        return np.nan
    # f = S - c N^{-1} c'
    for e in range(nb):
        for g in range(n_seen):
            t = 0.0
            for h in range(n_seen):
                t += c[e, h] * d[h, g]
            a[e, g] = t
    for e in range(nb):
        for g in range(nb):
            t = s[e, g]
            for h in range(n_seen):
                t -= a[e, h] * c[g, h]
            f[e, g] = t
    return ld


# ---------------------------------------------------------------- clusters: value and scores
@njit(cache=True, fastmath=FAST)
def cluster_scores_chunk(first, last, mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz,
                         r_bz, rank_bz, s_inv, s_logdet, cluster_pair_ptr, pair_pattern,
                         pair_freq, pair_sum, wb, wbb, wmub,
                         g_mu_z, g_szz, g_syz, g_sb, e_sum, c_all, k_all):
    """Clusters first..last-1: the between part of -2 log-likelihood (as objective 5's
    cluster stage) and the scores: c_j and K_j = c_j c_j' + F_j into c_all[j], k_all[j]
    (for the level-1 backward pass), and into this thread's accumulators g_mu_z,
    g_szz (u_z u_z' / 2), g_syz (b u_z'), g_sb (b b' / 2) and e_sum[q]: the sum of E over
    the level-2 pattern, or of F where the pattern uses McDonald's form (see
    cluster_scores).
    Returns nan if some V_j is not positive definite."""
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat = np.empty(nb * nb)
    aj = a_flat.reshape((nb, nb))
    pj = np.empty(nb)
    dz = np.empty(k)
    g = np.empty(nb)
    af = np.empty((nb, nb))
    work = np.empty((4, nb, nb))
    ag = np.empty(nb)
    bvec = np.empty(nb)
    uz = np.empty(k)
    tmp = np.empty(nb)
    total = 0.0
    for j in range(first, last):
        q = cluster_pattern[j]
        qzz_a = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern, pair_freq,
                               pair_sum, wb, wbb, wmub, a_flat, pj, dz, uz, g)
        f = k_all[j]  # holds F until K = c c' + F is formed below
        logdet_m = cluster_f_into(aj, s_bz[q], r_bz[q], rank_bz[q], s_inv[q], s_logdet[q], f, work)
        if np.isnan(logdet_m):
            return np.nan
        # A g and the quadratic forms: p'M^{-1}Sp = p'Fp, p'M^{-1}g = p'g - p'F A g,
        # g'A M^{-1} g = g'E g = g'A g - (A g)'F (A g)
        for e in range(nb):
            t = 0.0
            for c in range(nb):
                t += aj[e, c] * g[c]
            ag[e] = t
            tmp[e] = pj[e] - t  # p - A g
        pfp = 0.0
        pg = 0.0
        pfag = 0.0
        gag = 0.0
        agfag = 0.0
        for e in range(nb):
            fp = 0.0
            fag = 0.0
            for c in range(nb):
                fp += f[e, c] * pj[c]
                fag += f[e, c] * ag[c]
            pfp += pj[e] * fp
            pfag += pj[e] * fag
            agfag += ag[e] * fag
            gag += g[e] * ag[e]
            pg += pj[e] * g[e]
        total += zlogdet[q] + logdet_m + qzz_a + (gag - agfag) - 2.0 * (pg - pfag) - pfp
        # E = A - A F A summed per level-2 pattern; with McDonald's form the pattern's
        # sum is n_q S^{-1} - S^{-1} (sum F) S^{-1}, so only F is summed (e_sum holds it)
        if np.isnan(s_logdet[q]):
            for e in range(nb):
                for c in range(nb):
                    t = 0.0
                    for d in range(nb):
                        t += aj[e, d] * f[d, c]
                    af[e, c] = t
            for e in range(nb):
                for c in range(nb):
                    t = aj[e, c]
                    for d in range(nb):
                        t -= af[e, d] * aj[d, c]
                    e_sum[q, e, c] += t
        else:
            for e in range(nb):
                for c in range(nb):
                    e_sum[q, e, c] += f[e, c]
        # scores: c = g + F (p - A g), b = p - A c, u_z = Sigma^zz delta_z - H' b
        cvec = c_all[j]
        for e in range(nb):
            t = g[e]
            for c in range(nb):
                t += f[e, c] * tmp[c]
            cvec[e] = t
        for e in range(nb):
            t = pj[e]
            for c in range(nb):
                t -= aj[e, c] * cvec[c]
            bvec[e] = t
        for a in range(k):
            t = uz[a]
            for e in range(nb):
                t -= h[q, e, a] * bvec[e]
            uz[a] = t
        for e in range(nb):
            for c in range(nb):
                f[e, c] += cvec[e] * cvec[c]
        for a in range(k):
            g_mu_z[a] += uz[a]
            for b in range(k):
                g_szz[a, b] += 0.5 * uz[a] * uz[b]
        for e in range(nb):
            for a in range(k):
                g_syz[e, a] += bvec[e] * uz[a]
            for c in range(nb):
                g_sb[e, c] += 0.5 * bvec[e] * bvec[c]
    return total


@njit(cache=True, fastmath=FAST, parallel=True)
def cluster_scores(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
                   s_logdet, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb, wmub,
                   freq_q, n_chunks, c_all, k_all, g_mu_z, g_szz, g_syz, g_sb):
    """All clusters, one chunk per thread; then the level-2 gradient is completed with
    the V^{-1} parts summed per level-2 pattern q (n_q clusters, E summed to E_q):

        sigma_zz -= (n_q Sigma_q^zz + H_q' E_q H_q) / 2,  sigma_yz += E_q H_q,
        sigma_b  -= E_q / 2.

    Returns the between part of -2 log-likelihood (nan if some V_j is not PD)."""
    n_clusters, k = z.shape
    nb = wmub.shape[1]
    n_q = zinv.shape[0]
    t_mu_z = np.zeros((n_chunks, k))
    t_szz = np.zeros((n_chunks, k, k))
    t_syz = np.zeros((n_chunks, nb, k))
    t_sb = np.zeros((n_chunks, nb, nb))
    t_e = np.zeros((n_chunks, n_q, nb, nb))
    total = 0.0
    for c in prange(n_chunks):
        total += cluster_scores_chunk(
            c * n_clusters // n_chunks, (c + 1) * n_clusters // n_chunks, mu_z, z,
            cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet,
            cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb, wmub,
            t_mu_z[c], t_szz[c], t_syz[c], t_sb[c], t_e[c], c_all, k_all)
    e_q = np.zeros((nb, nb))
    he = np.empty((k, nb))
    for a in range(k):
        g_mu_z[a] = 0.0
        for b in range(k):
            g_szz[a, b] = 0.0
    for e in range(nb):
        for a in range(k):
            g_syz[e, a] = 0.0
        for f in range(nb):
            g_sb[e, f] = 0.0
    for c in range(n_chunks):
        for a in range(k):
            g_mu_z[a] += t_mu_z[c, a]
            for b in range(k):
                g_szz[a, b] += t_szz[c, a, b]
        for e in range(nb):
            for a in range(k):
                g_syz[e, a] += t_syz[c, e, a]
            for f in range(nb):
                g_sb[e, f] += t_sb[c, e, f]
    fs = np.empty((nb, nb))
    for q in range(n_q):
        for e in range(nb):
            for f in range(nb):
                t = 0.0
                for c in range(n_chunks):
                    t += t_e[c, q, e, f]
                e_q[e, f] = t
        if not np.isnan(s_logdet[q]):
            # E_q = n_q S^{-1} - S^{-1} (sum F) S^{-1}
            for e in range(nb):
                for f in range(nb):
                    t = 0.0
                    for c in range(nb):
                        t += s_inv[q, e, c] * e_q[c, f]
                    fs[e, f] = t
            for e in range(nb):
                for f in range(nb):
                    t = freq_q[q] * s_inv[q, e, f]
                    for c in range(nb):
                        t -= fs[e, c] * s_inv[q, c, f]
                    e_q[e, f] = t
        for e in range(nb):
            for f in range(nb):
                g_sb[e, f] -= 0.5 * e_q[e, f]
        # he = H_q' E_q (k x nb)
        for a in range(k):
            for f in range(nb):
                t = 0.0
                for e in range(nb):
                    t += h[q, e, a] * e_q[e, f]
                he[a, f] = t
        for a in range(k):
            for b in range(k):
                t = freq_q[q] * zinv[q, a, b]
                for f in range(nb):
                    t += he[a, f] * h[q, f, b]
                g_szz[a, b] -= 0.5 * t
            for e in range(nb):
                g_syz[e, a] += he[a, e]
    return total


# ---------------------------------------------------------------- within: reverse through the tree
@njit(cache=True, fastmath=FAST)
def close_node(w_parent, k, g_child, l_child, g_parent, v):
    """Adjoint of W_child = W - W[:, k] W[k, :] / W[k, k] (and log-det += log W[k, k]):
    adds the child's adjoint (g_child, l_child) into the parent's g_parent; the log-det
    adjoint passes to the parent unchanged (the caller adds it). v: (P,) scratch.

    With f = W[:, k], d = W[k, k] and v = G f (G = g_child, row/column k cleared: W_child
    has them identically zero):  G_parent += G - (v e_k' + e_k v') / d
    + (f'v / d^2 + l_child / d) e_k e_k'."""
    p = w_parent.shape[0]
    for a in range(p):
        g_child[a, k] = 0.0
        g_child[k, a] = 0.0
    d = w_parent[k, k]
    fv = 0.0
    for a in range(p):
        t = 0.0
        for b in range(p):
            t += g_child[a, b] * w_parent[k, b]  # W symmetric: row k is f'
        v[a] = t
        fv += w_parent[k, a] * t
    for a in range(p):
        for b in range(p):
            g_parent[a, b] += g_child[a, b]
    for a in range(p):
        g_parent[a, k] -= v[a] / d
        g_parent[k, a] -= v[a] / d
    g_parent[k, k] += fv / (d * d) + l_child / d


@njit(cache=True, fastmath=FAST)
def within_backward_chunk(first, last, mu_y, omega_w, bidx, tree_var, tree_depth, tree_pattern,
                          freq, pattern_sum, pattern_sumsq, pattern_pairs, pattern_pair_ptr,
                          pair_cluster, pair_freq, pair_sum, c_all, k_all, g_root, g_mu_y):
    """Nodes first..last-1 in depth-first order: the W_p are recomputed on the way down;
    each pattern seeds its node with the adjoints -X_p/2 (of W_p) and -n_p/2 (of its
    log-det), and adds W_p (s_p - n_p mu) - W_p[:, B] c_p to the mu_y gradient; a node is
    closed (its adjoint pushed to its parent) once its subtree is done. The root's
    adjoint is added to g_root; returns the root's log-det adjoint.

    Per pattern, from its (cluster, count, sum) pairs: c_p = sum n_jp c_j,
    R_p = sum (s_jp - n_jp mu) c_j', Y_p = sum n_jp K_j with K_j = c_j c_j' + F_j."""
    p = mu_y.shape[0]
    nb = bidx.shape[0]
    max_depth = 0
    for node in range(tree_depth.shape[0]):
        max_depth = max(max_depth, tree_depth[node])
    w = np.empty((max_depth + 1, p, p))
    gbar = np.zeros((max_depth + 1, p, p))
    lbar = np.zeros(max_depth + 1)
    var = np.empty(max_depth + 1, np.int64)
    v = np.empty(p)
    sm = np.empty(p)
    c_p = np.empty(nb)
    rt = np.empty((nb, p))
    y_flat = np.empty(nb * nb)
    k_flat = k_all.reshape((k_all.shape[0], nb * nb))
    for a in range(p):
        for b in range(p):
            w[0, a, b] = omega_w[a, b]
    top = 0
    for node in range(first, last):
        d = tree_depth[node]
        if d > 0:
            while top >= d:
                close_node(w[top - 1], var[top], gbar[top], lbar[top], gbar[top - 1], v)
                lbar[top - 1] += lbar[top]
                top -= 1
            drop_variable_into(w[d - 1], tree_var[node], w[d])
            var[d] = tree_var[node]
            for a in range(p):
                for b in range(p):
                    gbar[d, a, b] = 0.0
            lbar[d] = 0.0
            top = d
        pat = tree_pattern[node]
        if pat < 0:
            continue
        n = freq[pat]
        wd = w[d]
        # c_p = sum n_jp c_j, rt = sum c_j s_jp' (nb x P), y_p = sum n_jp K_j
        for e in range(nb):
            c_p[e] = 0.0
            for b in range(p):
                rt[e, b] = 0.0
        for t in range(nb * nb):
            y_flat[t] = 0.0
        for q in range(pattern_pair_ptr[pat], pattern_pair_ptr[pat + 1]):
            pair = pattern_pairs[q]
            j = pair_cluster[pair]
            m = pair_freq[pair]
            for e in range(nb):
                ce = c_all[j, e]
                c_p[e] += m * ce
                for b in range(p):
                    rt[e, b] += ce * pair_sum[pair, b]
            for t in range(nb * nb):
                y_flat[t] += m * k_flat[j, t]
        # seed: gbar -= X_p / 2, X_p = S_p(mu) - R_p E' - E R_p' + E Y_p E', where
        # S_p(mu) = sum yy' - mu (s - n mu)' - s mu' and R_p = rt' - mu c_p'
        for b in range(p):
            sm[b] = pattern_sum[pat, b] - n * mu_y[b]
        for a in range(p):
            ma = mu_y[a]
            sa = pattern_sum[pat, a]
            for b in range(p):
                gbar[d, a, b] -= 0.5 * (pattern_sumsq[pat, a, b] - ma * sm[b] - sa * mu_y[b])
        for e in range(nb):
            be = bidx[e]
            for a in range(p):
                r = 0.5 * (rt[e, a] - mu_y[a] * c_p[e])
                gbar[d, a, be] += r
                gbar[d, be, a] += r
            for f in range(nb):
                gbar[d, be, bidx[f]] -= 0.5 * y_flat[e * nb + f]
        lbar[d] -= 0.5 * n
        # mu_y: W_p (s_p - n_p mu) - W_p[:, B] c_p
        for a in range(p):
            t = 0.0
            for b in range(p):
                t += wd[a, b] * sm[b]
            for e in range(nb):
                t -= wd[a, bidx[e]] * c_p[e]
            g_mu_y[a] += t
    while top >= 1:
        close_node(w[top - 1], var[top], gbar[top], lbar[top], gbar[top - 1], v)
        lbar[top - 1] += lbar[top]
        top -= 1
    for a in range(p):
        for b in range(p):
            g_root[a, b] += gbar[0, a, b]
    return lbar[0]


@njit(cache=True, fastmath=FAST, parallel=True)
def within_backward(mu_y, omega_w, bidx, tree_var, tree_depth, tree_pattern, freq, pattern_sum,
                    pattern_sumsq, pattern_pairs, pattern_pair_ptr, pair_cluster, pair_freq,
                    pair_sum, c_all, k_all, n_threads, g_sigma_w, g_mu_y):
    """Subtrees below the root shared among threads; then sigma_w's gradient from the
    root's adjoints, G_w = l_root Omega - Omega G_root Omega (dW = -W dSigma W), into
    g_sigma_w, and the mu_y gradient into g_mu_y."""
    n_nodes = tree_depth.shape[0]
    p = mu_y.shape[0]
    n_chunks = max(1, min(n_threads, n_nodes))
    g_root = np.zeros((n_chunks, p, p))
    t_mu_y = np.zeros((n_chunks, p))
    bounds = np.empty(n_chunks + 1, np.int64)
    bounds[0] = 0
    bounds[n_chunks] = n_nodes
    node = 1
    for c in range(1, n_chunks):
        node = max(node, c * n_nodes // n_chunks)
        while node < n_nodes and tree_depth[node] != 1:
            node += 1
        bounds[c] = node
    lbar = 0.0
    for c in prange(n_chunks):
        lbar += within_backward_chunk(bounds[c], bounds[c + 1], mu_y, omega_w, bidx, tree_var,
                                      tree_depth, tree_pattern, freq, pattern_sum, pattern_sumsq,
                                      pattern_pairs, pattern_pair_ptr, pair_cluster, pair_freq,
                                      pair_sum, c_all, k_all, g_root[c], t_mu_y[c])
    g = np.zeros((p, p))
    for a in range(p):
        g_mu_y[a] = 0.0
        for c in range(n_chunks):
            g_mu_y[a] += t_mu_y[c, a]
            for b in range(p):
                g[a, b] += 0.5 * (g_root[c, a, b] + g_root[c, b, a])
    og = np.empty((p, p))
    for a in range(p):
        for b in range(p):
            t = 0.0
            for e in range(p):
                t += omega_w[a, e] * g[e, b]
            og[a, b] = t
    for a in range(p):
        for b in range(a + 1):
            t = lbar * omega_w[a, b]
            for e in range(p):
                t -= og[a, e] * omega_w[e, b]
            g_sigma_w[a, b] = t
            g_sigma_w[b, a] = t


# ---------------------------------------------------------------- public API
def loglik_and_gradient(data, moments):
    """(log-likelihood, gradient) in one pass; the gradient is ``None`` where the
    log-likelihood is -inf (the moments are not admissible).

    The gradient is a :class:`Moments` of derivatives of :func:`mlmiss.loglik`:
    ``mu_y``, ``mu_z`` and ``sigma_yz`` hold plain partial derivatives; ``sigma_w``,
    ``sigma_b`` and ``sigma_zz`` hold the symmetric G with dL = sum_ij G_ij dS_ij for
    every symmetric perturbation dS (so a free off-diagonal element, which appears
    twice, has derivative 2 G_ij). Rows and columns of ``sigma_b``, and rows of
    ``sigma_yz``, of variables without a between part (zero ``sigma_b`` row) are
    structurally fixed and returned as 0.
    """
    check_compatible(data, moments)
    l1, l2 = data.level1, data.level2
    bidx = moments.between_index
    n_threads = get_num_threads()
    st = pattern_stages(data, moments, n_threads)
    if st is None:
        return -np.inf, None
    p, nb, k = data.n_y, bidx.size, data.n_z
    c_all = np.empty((data.n_clusters, nb))
    k_all = np.empty((data.n_clusters, nb, nb))
    g_mu_z = np.empty(k)
    g_szz = np.empty((k, k))
    g_syz = np.empty((nb, k))
    g_sb = np.empty((nb, nb))
    between = cluster_scores(moments.mu_z, data.z, l2.cluster_pattern, st.zinv, st.zlogdet, st.h,
                             st.s_bz, st.r_bz, st.rank_bz, st.s_inv, st.s_logdet, l1.cluster_pair_ptr,
                             l1.pair_pattern, l1.pair_freq, l1.pair_sum, st.wb, st.wbb, st.wmub, l2.freq,
                             max(1, min(n_threads, data.n_clusters)), c_all, k_all,
                             g_mu_z, g_szz, g_syz, g_sb)
    if np.isnan(between):
        return -np.inf, None
    value = float(-0.5 * (data.n_observed_values * LOG_2PI + st.within + between))
    g_sw = np.empty((p, p))
    g_mu_y = np.empty(p)
    within_backward(moments.mu_y, st.omega_w, bidx, l1.tree_var, l1.tree_depth, l1.tree_pattern,
                    l1.freq, l1.pattern_sum, l1.pattern_sumsq, l1.pattern_pairs, l1.pattern_pair_ptr,
                    l1.pair_cluster, l1.pair_freq, l1.pair_sum, c_all, k_all, n_threads, g_sw, g_mu_y)

    sigma_b = np.zeros((p, p))
    sigma_b[np.ix_(bidx, bidx)] = 0.5 * (g_sb + g_sb.T)
    sigma_yz = np.zeros((p, k))
    sigma_yz[bidx, :] = g_syz
    gradient = Moments.unchecked(g_mu_y, g_mu_z, g_sw, sigma_b, 0.5 * (g_szz + g_szz.T), sigma_yz)
    return value, gradient


def loglik_gradient(data, moments) -> Moments:
    """The gradient of :func:`mlmiss.loglik` with respect to the moments (see
    :func:`loglik_and_gradient` for the layout). Raises
    :class:`InadmissibleMomentsError` where the log-likelihood is -inf."""
    value, gradient = loglik_and_gradient(data, moments)
    if gradient is None:
        raise InadmissibleMomentsError(
            "the log-likelihood is -inf at these moments (sigma_w, sigma_zz or some cluster's "
            "V_j is not positive definite), so it has no gradient")
    return gradient
