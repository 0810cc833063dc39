"""The cluster stage of the engine: each cluster's term, and its scores for the gradient.

Per cluster j: A_j and p_j from its (pattern, count, sum of y) pairs (eq. 61), g_j
(eq. 67), and the singular-safe quadratic forms (85)-(87) and log|V_j| (sec. 3.5) over
the P_b variables with a between part, with M_j = I + Sigma_j(b.z) A_j never formed:
McDonald's symmetric form when Sigma_j(b.z) is well conditioned, a rank-revealing factor
when it is singular, and a factor of A_j when it is indefinite (which also decides
whether V_j is positive definite).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import FAST, cholesky_into, cholesky_inverse_into, forward_solve
from .lanes import CHUNK, lane_buffers, mcdonald_lanes, mcdonald_term_lanes


@njit(cache=True, fastmath=FAST)
def cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum,
                   wb, wbb, wmub, a_flat, pj, dz, zd, g):
    """The start of stage 3 for cluster j (level-2 pattern q), into buffers:
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



@njit(cache=True)
def block_buffers(nb, k):
    """The buffers :func:`cluster_blocks` fills: (a_flat, A_j as its (nb, nb) view, p_j,
    delta_z, Sigma_j^zz delta_z, g_j)."""
    a_flat = np.empty(nb * nb)
    return a_flat, a_flat.reshape((nb, nb)), np.empty(nb), np.empty(k), np.empty(k), np.empty(nb)


@njit(cache=True, fastmath=FAST)
def cluster_terms(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_inv, s_logdet, s_inv_h,
                  cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb, wmub, each):
    """The clusters whose S = Sigma_j(b.z) is well conditioned (s_logdet[q] finite):
    A_j and p_j from the cluster's (pattern, count, sum y) pairs, then log|G Szz G'| +
    log|M_j| + q_zz + 2 q_yz + (q_yy - within part), summed; also written per cluster
    into ``each`` unless it is empty (the cluster-wise log-likelihoods of robust
    inference). The other clusters are :func:`other_cluster_terms`'.

    M_j = I + S A_j is not symmetric. McDonald's form M_j = S (S^{-1} + A_j) with
    Ms = S^{-1} + A_j = K K' gives

        log|M_j| = log|S| + log|Ms|,   p' M^{-1} S p = x'x,
        p' M^{-1} g = x'y,   g' A M^{-1} g = g' S^{-1} g - y'y

    with x = K^{-1} p, y = K^{-1} S^{-1} g; the clusters' blocks are gathered into
    lanes, CHUNK at a time (:func:`.lanes.mcdonald_term_lanes`). Returns nan when some
    V_j is not positive definite.
    """
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat, aj, pj, dz, zd, g = block_buffers(nb, k)
    n_cl = z.shape[0]
    n_lanes = min(CHUNK, n_cl)
    m_l = np.empty((nb, nb, n_lanes))
    lf_l = np.empty((nb, nb, n_lanes))
    x_l = np.empty((nb, n_lanes))
    y_l = np.empty((nb, n_lanes))
    rest = np.empty(n_lanes)   # the term's part found while gathering
    quad = np.empty(n_lanes)
    logdet = np.empty(n_lanes)
    pmin = np.empty(n_lanes)
    t_l = np.empty(n_lanes)
    lane_cluster = np.empty(n_lanes, np.int64)
    total = 0.0
    n = 0
    for j in range(n_cl):
        q = cluster_pattern[j]
        if not np.isnan(s_logdet[q]):
            qzz_a = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern,
                                   pair_freq, pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
            gsg = 0.0
            for e in range(nb):
                for c in range(e + 1):
                    m_l[e, c, n] = s_inv[q, e, c] + aj[e, c]
                t = 0.0
                for c in range(k):
                    t += s_inv_h[q, e, c] * dz[c]
                y_l[e, n] = t  # S^{-1} g
                gsg += g[e] * t
                x_l[e, n] = pj[e]
            rest[n] = zlogdet[q] + s_logdet[q] + qzz_a + gsg
            lane_cluster[n] = j
            n += 1
        if n == n_lanes or (n > 0 and j == n_cl - 1):
            mcdonald_term_lanes(m_l, x_l, y_l, n, lf_l, t_l, pmin, logdet, quad)
            for l in range(n):
                if not pmin[l] > 0.0 or np.isnan(logdet[l]):
                    return np.nan
                term = rest[l] + logdet[l] + quad[l]
                total += term
                if each.size:
                    each[lane_cluster[l]] = term
            n = 0
    return total


@njit(cache=True, fastmath=FAST)
def other_cluster_terms(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz,
                        s_logdet, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb,
                        wmub, each):
    """What :func:`cluster_terms` leaves: the clusters whose S is singular or
    indefinite (s_logdet[q] nan), one at a time (:func:`other_cluster_term`). A kernel
    of its own, compiled on first need: most fits never meet such an S."""
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat, aj, pj, dz, zd, g = block_buffers(nb, k)
    work = np.empty((5, nb, nb))
    total = 0.0
    for j in range(z.shape[0]):
        q = cluster_pattern[j]
        if not np.isnan(s_logdet[q]):
            continue
        qzz_a = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern,
                               pair_freq, pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
        term = other_cluster_term(s_bz[q], r_bz[q], rank_bz[q], aj, pj, g, work)
        if np.isnan(term):
            return np.nan
        term += zlogdet[q] + qzz_a
        total += term
        if each.size:
            each[j] = term
    return total


@njit(cache=True, fastmath=FAST)
def other_cluster_term(s_bz, r_fac, rank, aj, pj, g, work):
    """log|M_j| + q_zz_b + 2 q_yz - q_yy_b of a cluster whose S = Sigma_j(b.z) is not
    well conditioned; nan when V_j is not positive definite. work: (5, Pb, Pb).

    With S = R R' (rank r, from stage 2), the push-through identity gives
    M_j^{-1} = I - R N^{-1} R' A_j with the symmetric r x r matrix N = I + R' A_j R,
    and with x = R' p_j, y = R' A_j g_j:

        log|M_j| = log|N|
        p' M^{-1} S p = x' N^{-1} x
        p' M^{-1} g   = p' g - x' N^{-1} y
        g' A M^{-1} g = g' A g - y' N^{-1} y

    N >= I, so V_j is positive definite. An indefinite S (negative between variances)
    goes to :func:`indefinite_cluster_term`, which also checks V_j."""
    if rank < 0:
        return indefinite_cluster_term(s_bz, aj, pj, g)
    nb = aj.shape[0]
    r = rank
    ar = work[0]
    nmat = work[1]
    ln = work[2]
    ag = work[3, 0]
    x = work[3, 1]
    y = work[3, 2]
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
                ar[e, c] += aef * r_fac[f, c]
    for c in range(r):
        sx = 0.0
        sy = 0.0
        for e in range(nb):
            sx += r_fac[e, c] * pj[e]
            sy += r_fac[e, c] * ag[e]
        x[c] = sx
        y[c] = sy
    # N = I + R' (A R), lower triangle, then its Cholesky factor
    for c in range(r):
        for d in range(c + 1):
            s = 0.0
            for e in range(nb):
                s += r_fac[e, c] * ar[e, d]
            nmat[c, d] = s + (1.0 if c == d else 0.0)
            nmat[d, c] = nmat[c, d]
    logdet_n, xx, xy, yy = factor_quadratics(nmat, r, ln, x, y)
    if np.isnan(logdet_n):
        return np.nan
    return logdet_n + (gag - yy) - 2.0 * (pg - xy) - xx


@njit(cache=True, fastmath=FAST)
def factor_quadratics(nmat, n, ln, x, y):
    """(log|N|, x' N^-1 x, x' N^-1 y, y' N^-1 y) for the leading n x n block of the
    symmetric N, through its Cholesky factor (into ln; x and y are overwritten by
    L^-1 x and L^-1 y); log|N| is nan where N is not positive definite."""
    logdet = cholesky_into(nmat, n, ln)
    if np.isnan(logdet):
        return logdet, 0.0, 0.0, 0.0
    forward_solve(ln, n, x)
    forward_solve(ln, n, y)
    xx = 0.0
    xy = 0.0
    yy = 0.0
    for c in range(n):
        xx += x[c] * x[c]
        xy += x[c] * y[c]
        yy += y[c] * y[c]
    return logdet, xx, xy, yy


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
    n_seen = np.int64(0)   # not a literal 0: callees compile once, for int64
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
    logdet_n, uu, uv, vv = factor_quadratics(buf, n_seen, ln, u, v)
    if np.isnan(logdet_n):
        return np.nan
    return logdet_n + vv - 2.0 * (pg - uv) - (psp - uu)


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
    n_seen = np.int64(0)   # not a literal 0: callees compile once, for int64
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


@njit(cache=True, fastmath=FAST)
def cluster_score_vectors(aj, f, pj, g, ag, p_ag, af, e_mat, cvec, bvec):
    """Cluster j's scores from A_j, F_j, p_j and g_j, into buffers: ag = A g,
    p_ag = p - A g, af = A F, E = A - A F A (formed per cluster: the shortcut
    n_q S^{-1} - S^{-1} (sum F) S^{-1} lost digits when S was ill conditioned),
    c = g + F (p - A g) and b = p - A c."""
    nb = aj.shape[0]
    for e in range(nb):
        t = 0.0
        for c in range(nb):
            t += aj[e, c] * g[c]
        ag[e] = t
        p_ag[e] = pj[e] - t
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
            e_mat[e, c] = t
    for e in range(nb):
        t = g[e]
        for c in range(nb):
            t += f[e, c] * p_ag[c]
        cvec[e] = t
    for e in range(nb):
        t = pj[e]
        for c in range(nb):
            t -= aj[e, c] * cvec[c]
        bvec[e] = t


@njit(cache=True, fastmath=FAST)
def spread_scores(n, lane_cluster, cluster_pattern, zlogdet, h, cluster_pair_ptr, pair_pattern,
                  pair_freq, pair_sum, qzz_l, ld_l, quad_l, f_l, e_l, c_l, b_l, zd_l, f_flat,
                  cvec, e_sum, pat_c, pat_r, pat_y, g_mu_z, g_szz, g_syz, g_sb):
    """Lanes l < n hold the results of cluster lane_cluster[l] (q_zz_a, log|M_j|, the
    quadratic form, F, E, c, b and Sigma^zz delta_z): its scores go into the sums
    :func:`cluster_scores` describes; returns the lanes' summed terms. f_flat (Pb*Pb)
    and cvec (Pb) are scratch."""
    k = zd_l.shape[0]
    nb = c_l.shape[0]
    p = pair_sum.shape[1]
    f = f_flat.reshape((nb, nb))
    total = 0.0
    # K = F + c c' and b b' / 2, on all lanes
    for e in range(nb):
        for c in range(nb):
            s = 0.0
            for l in range(n):
                f_l[e, c, l] += c_l[e, l] * c_l[c, l]
                s += b_l[e, l] * b_l[c, l]
            g_sb[e, c] += 0.5 * s
    # per cluster: its term, E into its level-2 pattern, u_z = Sigma^zz delta_z - H' b,
    # and c_j, K_j spread over its pairs
    for l in range(n):
        j = lane_cluster[l]
        q = cluster_pattern[j]
        total += zlogdet[q] + ld_l[l] + qzz_l[l] + quad_l[l]
        for e in range(nb):
            for c in range(nb):
                e_sum[q, e, c] += e_l[e, c, l]
                f[e, c] = f_l[e, c, l]
            cvec[e] = c_l[e, l]
        for a in range(k):
            t = zd_l[a, l]
            for e in range(nb):
                t -= h[q, e, a] * b_l[e, l]
            zd_l[a, l] = t
        for pair in range(cluster_pair_ptr[j], cluster_pair_ptr[j + 1]):
            pat = pair_pattern[pair]
            m = pair_freq[pair]
            for e in range(nb):
                ce = cvec[e]
                pat_c[pat, e] += m * ce
                for b in range(p):
                    pat_r[pat, e, b] += ce * pair_sum[pair, b]
            for t in range(nb * nb):
                pat_y[pat, t] += m * f_flat[t]
    # u_z (now in zd_l), u_z u_z' / 2 and b u_z', on all lanes
    for a in range(k):
        s = 0.0
        for l in range(n):
            s += zd_l[a, l]
        g_mu_z[a] += s
        for b in range(k):
            s = 0.0
            for l in range(n):
                s += zd_l[a, l] * zd_l[b, l]
            g_szz[a, b] += 0.5 * s
        for e in range(nb):
            s = 0.0
            for l in range(n):
                s += b_l[e, l] * zd_l[a, l]
            g_syz[e, a] += s
    return total


@njit(cache=True, fastmath=FAST)
def cluster_scores(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_inv, s_logdet,
                   cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb, wmub, e_sum,
                   pat_c, pat_r, pat_y, g_mu_z, g_szz, g_syz, g_sb):
    """The clusters whose S = Sigma_j(b.z) is well conditioned: the between part of -2
    log-likelihood (as :func:`cluster_terms`) and the level-2 gradient; the sums start
    here from zero, :func:`other_cluster_scores` adds the other clusters and
    :func:`finish_between_gradient` completes them. Per cluster, the scores c_j and
    K_j = c_j c_j' + F_j are summed over its (cluster, pattern) pairs into what the
    level-1 backward pass needs per level-1 pattern p: pat_c[p] = sum n_jp c_j,
    pat_r[p] = sum c_j s_jp' and pat_y[p] = sum n_jp K_j (flat), while c_j and K_j are
    at hand and the pairs are read in storage order (summed per pattern later, they
    were gathered by cluster at random and cost 75 ns per pair at J = 20,000).
    u_z u_z' / 2, b u_z', b b' / 2 go into g_szz, g_syz, g_sb; E = A_j - A_j F_j A_j
    is summed per level-2 pattern q into e_sum[q].

    The clusters' blocks are gathered into lanes, CHUNK at a time, and McDonald's form
    runs on all lanes at once (:func:`.lanes.mcdonald_lanes`). Returns nan if some V_j
    is not positive definite."""
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat, aj, pj, dz, zd, g = block_buffers(nb, k)   # zd: Sigma^zz delta_z
    cvec = np.empty(nb)
    f_flat = np.empty(nb * nb)
    n_cl = z.shape[0]
    n_lanes = min(CHUNK, n_cl)
    (m_l, a_l, p_l, g_l, zd_l, qzz_l, f_l, e_l, c_l, b_l, quad_l, ld_l, pmin_l, lf_l, af_l,
     ag_l, t_l) = lane_buffers(nb, k, n_lanes)
    lane_cluster = np.empty(n_lanes, np.int64)
    pat_c[:, :] = 0.0
    pat_r[:, :, :] = 0.0
    pat_y[:, :] = 0.0
    e_sum[:, :, :] = 0.0
    g_mu_z[:] = 0.0
    g_szz[:, :] = 0.0
    g_syz[:, :] = 0.0
    g_sb[:, :] = 0.0
    total = 0.0
    n = 0
    for j in range(n_cl):
        q = cluster_pattern[j]
        if not np.isnan(s_logdet[q]):
            qzz_l[n] = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern,
                                      pair_freq, pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
            for e in range(nb):
                for c in range(nb):
                    a_l[e, c, n] = aj[e, c]
                for c in range(e + 1):   # the Cholesky factor reads the lower triangle
                    m_l[e, c, n] = s_inv[q, e, c] + aj[e, c]
                p_l[e, n] = pj[e]
                g_l[e, n] = g[e]
            for a in range(k):
                zd_l[a, n] = zd[a]
            lane_cluster[n] = j
            n += 1
        if n == n_lanes or (n > 0 and j == n_cl - 1):
            mcdonald_lanes(m_l, a_l, p_l, g_l, n, f_l, e_l, c_l, b_l, quad_l, ld_l, pmin_l, lf_l,
                           af_l, ag_l, t_l)
            for l in range(n):
                if not pmin_l[l] > 0.0 or np.isnan(ld_l[l]):
                    return np.nan
                ld_l[l] += s_logdet[cluster_pattern[lane_cluster[l]]]
            total += spread_scores(n, lane_cluster, cluster_pattern, zlogdet, h, cluster_pair_ptr,
                                   pair_pattern, pair_freq, pair_sum, qzz_l, ld_l, quad_l, f_l,
                                   e_l, c_l, b_l, zd_l, f_flat, cvec, e_sum, pat_c, pat_r, pat_y,
                                   g_mu_z, g_szz, g_syz, g_sb)
            n = 0
    return total


@njit(cache=True, fastmath=FAST)
def other_cluster_scores(mu_z, z, cluster_pattern, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
                         s_logdet, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum, wb, wbb,
                         wmub, e_sum, pat_c, pat_r, pat_y, g_mu_z, g_szz, g_syz, g_sb):
    """What :func:`cluster_scores` leaves: the clusters whose S is singular or
    indefinite, one at a time (F_j by :func:`cluster_f_into`), added into the same sums.
    A kernel of its own, compiled on first need: most fits never meet such an S."""
    k = z.shape[1]
    nb = wmub.shape[1]
    a_flat, aj, pj, dz, zd, g = block_buffers(nb, k)
    f = np.empty((nb, nb))
    af = np.empty((nb, nb))
    e_mat = np.empty((nb, nb))
    work = np.empty((4, nb, nb))
    ag = np.empty(nb)
    bvec = np.empty(nb)
    tmp = np.empty(nb)
    cvec = np.empty(nb)
    f_flat = np.empty(nb * nb)
    one = np.int64(1)   # not a literal 1: the callees compile once, for int64
    (_, _, _, _, zd_l, qzz_l, f_l, e_l, c_l, b_l, quad_l, ld_l, _, _, _, _,
     _) = lane_buffers(nb, k, one)
    lane_cluster = np.empty(1, np.int64)
    total = 0.0
    for j in range(z.shape[0]):
        q = cluster_pattern[j]
        if not np.isnan(s_logdet[q]):
            continue
        qzz_l[0] = cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern,
                                  pair_freq, pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
        ld_l[0] = cluster_f_into(aj, s_bz[q], r_bz[q], rank_bz[q], s_inv[q], s_logdet[q], f, work)
        if np.isnan(ld_l[0]):
            return np.nan
        cluster_score_vectors(aj, f, pj, g, ag, tmp, af, e_mat, cvec, bvec)
        # g'A g - 2 p'g - (p - A g)' F (p - A g), with F (p - A g) = c - g
        quad = 0.0
        for e in range(nb):
            quad += g[e] * ag[e] - 2.0 * pj[e] * g[e] - tmp[e] * (cvec[e] - g[e])
        quad_l[0] = quad
        for e in range(nb):
            c_l[e, 0] = cvec[e]
            b_l[e, 0] = bvec[e]
            for c in range(nb):
                f_l[e, c, 0] = f[e, c]
                e_l[e, c, 0] = e_mat[e, c]
        for a in range(k):
            zd_l[a, 0] = zd[a]
        lane_cluster[0] = j
        total += spread_scores(one, lane_cluster, cluster_pattern, zlogdet, h, cluster_pair_ptr,
                               pair_pattern, pair_freq, pair_sum, qzz_l, ld_l, quad_l, f_l, e_l,
                               c_l, b_l, zd_l, f_flat, cvec, e_sum, pat_c, pat_r, pat_y, g_mu_z,
                               g_szz, g_syz, g_sb)
    return total


@njit(cache=True, fastmath=FAST)
def finish_between_gradient(e_sum, h, zinv, freq_q, g_szz, g_syz, g_sb):
    """The level-2 gradient's last terms from E_q = e_sum[q], summed over the n_q
    clusters of each level-2 pattern q:

        sigma_zz -= (n_q Sigma_q^zz + H_q' E_q H_q) / 2,  sigma_yz += E_q H_q,
        sigma_b  -= E_q / 2."""
    n_q, nb = e_sum.shape[0], e_sum.shape[1]
    k = zinv.shape[1]
    he = np.empty((k, nb))
    for q in range(n_q):
        for e in range(nb):
            for f in range(nb):
                g_sb[e, f] -= 0.5 * e_sum[q, e, f]
        # he = H_q' E_q (k x nb)
        for a in range(k):
            for f in range(nb):
                t = 0.0
                for e in range(nb):
                    t += h[q, e, a] * e_sum[q, e, f]
                he[a, f] = t
        for a in range(k):
            for b in range(k):
                t = freq_q[q] * zinv[q, a, b]
                for f in range(nb):
                    t += he[a, f] * h[q, f, b]
                g_szz[a, b] -= 0.5 * t
            for e in range(nb):
                g_syz[e, a] += he[a, e]
