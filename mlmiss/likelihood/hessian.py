"""Second derivatives of the log-likelihood along moment directions, analytic.

For T directions d_a in moment space (each a change of mu_y, mu_z, sigma_w, sigma_b,
sigma_zz, sigma_yz), :func:`loglik_hessian` returns the T x T matrix d_a' (d^2 logl) d_b:
with the columns of a model's Jacobian as directions, the part of the observed
information that needs the data (derivation and notation in ``docs/hessian.md``).

Per cluster, given the between-only values z, the rows are normal with covariance
V = blockdiag(Sigma_w[o_i, o_i]) + Z S Z' (S = Sigma_j(b.z)) and mean mu_y + Z g_j
(g_j = H delta_z), and z itself is normal. Both are linear in (mu_y, sigma_w, S, g_j)
and (mu_z, sigma_zz), so for -2 logl

    d_a d_b (-2 l_j) = -tr(P V_a P V_b) + 2 w_a' P w_b,   w_a = V_a P r + m_a,

plus the curvature of S and H in (sigma_b, sigma_yz, sigma_zz), which pairs their
second derivatives with the first derivatives the gradient already uses. With
P = D - D Z F Z' D (D the rows' W_i = Sigma_w[o_i, o_i]^{-1}, F = (I + S A)^{-1} S,
defined for singular S too), every term reduces to per-pattern sums (level-1 patterns
on the one side, level-2 patterns on the other) and per-cluster P_b x P_b algebra; the
clusters' part is summed as matrix products over chunks of clusters.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ..linalg import FAST, padded_inverses
from .clusters import block_buffers, cluster_blocks, cluster_f_into, cluster_score_vectors
from .engine import pattern_stages

#: clusters per chunk of the cluster stage (its buffers grow with it)
CHUNK = 256


class Directions(NamedTuple):
    """T directions in moment space, stacked: mu_y (T, P), mu_z (T, K), sigma_w (T, P, P),
    sigma_b (T, P, P), sigma_zz (T, K, K), sigma_yz (T, P, K); symmetric blocks
    symmetric, rows and columns of variables without a between part zero."""

    mu_y: np.ndarray
    mu_z: np.ndarray
    sigma_w: np.ndarray
    sigma_b: np.ndarray
    sigma_zz: np.ndarray
    sigma_yz: np.ndarray


def _factor_within(ew):
    """sigma_w directions as sums of lam u u' (eigenvectors with nonzero eigenvalues):
    (u (P, R), lam (R), owner (R): which direction each column belongs to). A model's
    directions are of rank 2 (u v' + v u'), so this keeps per-pattern work small."""
    values, vectors = np.linalg.eigh(ew)
    top = np.abs(values).max(axis=1, initial=0.0, keepdims=True)
    keep = np.abs(values) > 1e-14 * np.maximum(top, 1e-300)
    owner, column = np.nonzero(keep)
    return (np.ascontiguousarray(vectors[owner, :, column].T), values[owner, column],
            owner.astype(np.int64))


@njit(cache=True, fastmath=FAST)
def pattern_gammas(yp, lam, owner, gp):
    """gp[p, :, :, a] = W_p[B, :] E_a W_p[:, B] = sum over a's factors lam y y', from
    yp[p] = W_p[B, :] u."""
    n_pat, nb, n_r = yp.shape
    gp[:] = 0.0
    for pat in range(n_pat):
        for r in range(n_r):
            a = owner[r]
            lr = lam[r]
            for e in range(nb):
                le = lr * yp[pat, e, r]
                for c in range(nb):
                    gp[pat, e, c, a] += le * yp[pat, c, r]


@njit(cache=True, fastmath=FAST)
def cluster_hessian_chunk(j0, mu_y, mu_z, z, cluster_pattern, zinv, h, s_bz, r_bz, rank_bz,
                          s_inv, s_logdet, cluster_pair_ptr, pair_pattern, pair_freq, pair_sum,
                          wb, wbb, wmub, bidx, w, u, lam, owner, aw, yp, gp, wmu, s_a, dh, muz_d,
                          l1, r1, v, qv, agg2, ke, fbar, g_s, g_h, g_bar, xz_outer, xz_sum,
                          pat_c, pat_cc, pat_rc):
    """Clusters j0 .. j0 + len(l1) - 1 (fewer at the end of the data): their per-cluster
    Hessian terms as factors for matrix products (l1, r1: F Gamma_a and its transpose;
    v, qv: (t_a; Gamma x_a) and Q times it), and their sums per level-2 pattern and per
    level-1 pattern. Returns the number of clusters done, -1 if some V_j is not
    positive definite. Directions are the last axis of every per-direction array."""
    k = z.shape[1]
    nb = wmub.shape[1]
    p = pair_sum.shape[1]
    tw = gp.shape[3]
    t_all = wmu.shape[2]
    n_r = lam.shape[0]
    a_flat, aj, pj, dz, zd, g = block_buffers(nb, k)
    f = np.empty((nb, nb))
    work = np.empty((4, nb, nb))
    af = np.empty((nb, nb))
    ee = np.empty((nb, nb))
    nn = np.empty((nb, nb))
    cvec = np.empty(nb)
    bvec = np.empty(nb)
    tmp = np.empty(nb)
    ag = np.empty(nb)
    dvec = np.empty(p)
    xi = np.empty(p)
    gam = np.empty((nb, nb, tw))
    gx = np.empty((nb, t_all))
    tt = np.empty((nb, t_all))
    x1 = np.empty((nb, nb, tw))
    n_j = min(l1.shape[0], z.shape[0] - j0)
    for jj in range(n_j):
        j = j0 + jj
        q = cluster_pattern[j]
        cluster_blocks(j, q, mu_z, z, zinv, h, cluster_pair_ptr, pair_pattern, pair_freq,
                       pair_sum, wb, wbb, wmub, a_flat, pj, dz, zd, g)
        if np.isnan(cluster_f_into(aj, s_bz[q], r_bz[q], rank_bz[q], s_inv[q], s_logdet[q], f,
                                   work)):
            return -1
        cluster_score_vectors(aj, f, pj, g, ag, tmp, af, ee, cvec, bvec)
        for e in range(nb):
            for c in range(nb):
                nn[c, e] = (1.0 if e == c else 0.0) - af[e, c]   # N = I - F A = (I - A F)'
        # the cluster's pairs: Gamma_a, Gamma x_a and the level-1 pattern sums
        gam[:] = 0.0
        gx[:] = 0.0
        for pair in range(cluster_pair_ptr[j], cluster_pair_ptr[j + 1]):
            pat = pair_pattern[pair]
            m = pair_freq[pair]
            for a in range(p):
                dvec[a] = pair_sum[pair, a] - m * mu_y[a]
            for e in range(nb):
                ce = cvec[e]
                pat_c[pat, e] += m * ce
                for c in range(nb):
                    pat_cc[pat, e, c] += m * ce * cvec[c]
                    fbar[pat, e, c] += m * f[e, c]
                for a in range(p):
                    pat_rc[pat, a, e] += dvec[a] * ce
            for e in range(nb):
                dvec[bidx[e]] -= m * cvec[e]
            for a in range(p):
                s = 0.0
                for c in range(p):
                    s += w[pat, a, c] * dvec[c]
                xi[a] = s
            for e in range(nb):
                for c in range(nb):
                    for a in range(tw):
                        gam[e, c, a] += m * gp[pat, e, c, a]
                for a in range(t_all):
                    gx[e, a] += m * wmu[pat, e, a]
            for r in range(n_r):
                s = 0.0
                for a in range(p):
                    s += u[a, r] * xi[a]
                s *= lam[r]
                col = aw[owner[r]]
                for e in range(nb):
                    gx[e, col] += s * yp[pat, e, r]
        # t_a = S_a b + dH_a delta_z - H dmu_z,a
        for e in range(nb):
            for a in range(t_all):
                tt[e, a] = 0.0
            for c in range(nb):
                bc = bvec[c]
                for a in range(t_all):
                    tt[e, a] += s_a[q, e, c, a] * bc
            for c in range(k):
                zc = dz[c]
                hc = h[q, e, c]
                for a in range(t_all):
                    tt[e, a] += dh[q, e, c, a] * zc - hc * muz_d[c, a]
        # v = (t; Gamma x), Q v with Q = [[E, N'], [N, -F]]
        for e in range(nb):
            for a in range(t_all):
                v[jj, e, a] = tt[e, a]
                v[jj, nb + e, a] = gx[e, a]
                qv[jj, e, a] = 0.0
                qv[jj, nb + e, a] = 0.0
            for c in range(nb):
                ec = ee[e, c]
                nce = nn[c, e]
                nec = nn[e, c]
                fec = f[e, c]
                for a in range(t_all):
                    qv[jj, e, a] += ec * tt[c, a] + nce * gx[c, a]
                    qv[jj, nb + e, a] += nec * tt[c, a] - fec * gx[c, a]
        # F Gamma_a and its transpose (within x within trace)
        for e in range(nb):
            for c in range(nb):
                for a in range(tw):
                    x1[e, c, a] = 0.0
                for d in range(nb):
                    fed = f[e, d]
                    for a in range(tw):
                        x1[e, c, a] += fed * gam[d, c, a]
        for e in range(nb):
            for c in range(nb):
                for a in range(tw):
                    l1[jj, e * nb + c, a] = x1[e, c, a]
                    r1[jj, c * nb + e, a] = x1[e, c, a]
        # N' Gamma_a N summed per level-2 pattern (within x between trace): x1 = Gamma N
        for e in range(nb):
            for c in range(nb):
                for a in range(tw):
                    x1[e, c, a] = 0.0
                for d in range(nb):
                    ndc = nn[d, c]
                    for a in range(tw):
                        x1[e, c, a] += gam[e, d, a] * ndc
        for e in range(nb):
            for c in range(nb):
                for d in range(nb):
                    nde = nn[d, e]
                    for a in range(tw):
                        agg2[q, e, c, a] += nde * x1[d, c, a]
        # E (x) E per level-2 pattern (between x between trace): ke[q, j, k, l, i] = E_ij E_kl
        for i in range(nb):
            for jx in range(nb):
                eij = ee[i, jx]
                for kx in range(nb):
                    for lx in range(nb):
                        ke[q, jx, kx, lx, i] += eij * ee[kx, lx]
        # level-2 pattern sums: the gradient in S and H, and the z part
        for e in range(nb):
            g_bar[q, e] -= 2.0 * bvec[e]
            for c in range(nb):
                g_s[q, e, c] += ee[e, c] - bvec[e] * bvec[c]
            for c in range(k):
                g_h[q, e, c] -= 2.0 * bvec[e] * dz[c]
        for c in range(k):
            xz_sum[q, c] += zd[c]
            for d in range(k):
                xz_outer[q, c, d] += zd[c] * zd[d]
    return n_j


def _pattern_terms(m, w, xi, n, cov, mean):
    """The per-pattern part of a normal log-likelihood's second derivatives (-2 logl):
    sum_p tr(M_p C_a W_p C_b) + 2 (C_a xi_p)' W_p m_b + 2 (C_b xi_p)' W_p m_a
    + 2 n_p m_a' W_p m_b over covariance directions C (T, P, P) and mean directions m
    (T, P), with W_p the pattern's padded inverse, xi_p its sum of W_p (y - mu) terms and
    M_p (P x P) collecting its trace terms; as one matrix product over the patterns."""
    n_pat, p = w.shape[0], w.shape[1]
    t = cov.shape[0]
    k4 = (m.reshape(n_pat, p * p).T @ w.reshape(n_pat, p * p)).reshape(p, p, p, p)
    k4 = k4.transpose(1, 2, 3, 0).reshape(p * p, p * p)
    cf = cov.reshape(t, p * p)
    out = cf @ k4 @ cf.T
    lt = np.tensordot(xi, w, axes=(0, 0)).transpose(1, 0, 2).reshape(p * p, p)
    cross = cf @ lt @ mean.T
    return out + 2.0 * (cross + cross.T + mean @ np.tensordot(n, w, axes=1) @ mean.T)


def loglik_hessian(data, moments, directions: Directions):
    """The T x T matrix of second derivatives of :func:`mlmiss.loglik` along the
    directions, d_a' H d_b; None where the log-likelihood is -inf, or where some
    pattern's block of sigma_w is numerically singular though its pivots on the tree
    were positive (then the caller's differences of the gradient serve)."""
    data.check_moments(moments)
    st = pattern_stages(data, moments)
    if st is None:
        return None
    try:
        return hessian_from_stages(data, moments, st, directions)
    except np.linalg.LinAlgError:
        return None


def hessian_from_stages(data, moments, st, directions: Directions):
    """:func:`loglik_hessian` after the engine's stages 1-2 (``st``)."""
    l1, l2 = data.level1, data.level2
    bidx = moments.between_index
    nb, p, k = bidx.size, data.n_y, data.n_z
    d = directions
    t_all = d.mu_y.shape[0]
    n_pat, n_q = l1.freq.size, l2.freq.size
    w = padded_inverses(moments.sigma_w, l1.observed)
    aw = np.flatnonzero(np.any(d.sigma_w != 0.0, axis=(1, 2)))
    ew = d.sigma_w[aw]
    tw = aw.size
    u, lam, owner = _factor_within(ew)
    yp = np.ascontiguousarray(w[:, bidx, :] @ u)
    gp = np.empty((n_pat, nb, nb, tw))
    pattern_gammas(yp, lam, owner, gp)
    wmu = np.ascontiguousarray(w[:, bidx, :] @ d.mu_y.T)
    # level-2 patterns: D_a = dSigma_yz - H dSigma_zz, dH_a = D_a Z_q,
    # S_a = dSigma_b - D_a H' - H dSigma_yz' (over the between variables)
    h = st.h
    syz = d.sigma_yz[:, bidx, :]
    dd = syz[None] - h[:, None] @ d.sigma_zz[None]
    dh = dd @ st.zinv[:, None]
    sb = d.sigma_b[:, bidx][:, :, bidx]
    s_a = sb[None] - dd @ h.transpose(0, 2, 1)[:, None] - h[:, None] @ syz.transpose(0, 2, 1)
    s_a_last = np.ascontiguousarray(np.moveaxis(s_a, 1, -1))
    dh_last = np.ascontiguousarray(np.moveaxis(dh, 1, -1))
    muz_d = np.ascontiguousarray(d.mu_z.T)
    chunk = min(CHUNK, max(data.n_clusters, 1))
    l1buf = np.empty((chunk, nb * nb, tw))
    r1buf = np.empty((chunk, nb * nb, tw))
    vbuf = np.empty((chunk, 2 * nb, t_all))
    qvbuf = np.empty((chunk, 2 * nb, t_all))
    agg2 = np.zeros((n_q, nb, nb, tw))
    ke = np.zeros((n_q, nb, nb, nb, nb))
    fbar = np.zeros((n_pat, nb, nb))
    g_s = np.zeros((n_q, nb, nb))
    g_h = np.zeros((n_q, nb, k))
    g_bar = np.zeros((n_q, nb))
    xz_outer = np.zeros((n_q, k, k))
    xz_sum = np.zeros((n_q, k))
    pat_c = np.zeros((n_pat, nb))
    pat_cc = np.zeros((n_pat, nb, nb))
    pat_rc = np.zeros((n_pat, p, nb))
    hess = np.zeros((t_all, t_all))   # of -2 logl
    h_ww = np.zeros((tw, tw))
    for j0 in range(0, data.n_clusters, chunk):
        done = cluster_hessian_chunk(
            j0, moments.mu_y, moments.mu_z, data.z, l2.cluster_pattern, st.zinv, h, st.s_bz,
            st.r_bz, st.rank_bz, st.s_inv, st.s_logdet, l1.cluster_pair_ptr, l1.pair_pattern,
            l1.pair_freq, l1.pair_sum, st.wb, st.wbb, st.wmub, bidx, w, u, lam, owner, aw, yp, gp,
            wmu, s_a_last, dh_last, muz_d, l1buf, r1buf, vbuf, qvbuf, agg2, ke, fbar, g_s, g_h,
            g_bar, xz_outer, xz_sum, pat_c, pat_cc, pat_rc)
        if done < 0:
            return None
        if tw:   # reshape(-1, 0) is ambiguous
            h_ww -= l1buf[:done].reshape(-1, tw).T @ r1buf[:done].reshape(-1, tw)
        vv = vbuf[:done].reshape(-1, t_all)
        hess += 2.0 * (vv.T @ qvbuf[:done].reshape(-1, t_all))
    # per level-2 pattern: within x between and between x between traces
    s_flat = s_a.reshape(n_q, t_all, nb * nb)
    cross = np.zeros((tw, t_all))
    for q in range(n_q):
        cross += agg2[q].reshape(nb * nb, tw).T @ s_flat[q].T
        hess -= s_flat[q] @ ke[q].reshape(nb * nb, nb * nb) @ s_flat[q].T
    hess[aw, :] -= cross
    hess[:, aw] -= cross.T
    # per level-1 pattern: M_p = 2 W (R_p + Fbar_p) W - n W, with R_p the sum of the
    # rows' (r - Z c)(r - Z c)' and Fbar_p their clusters' F (X_p = W R_p W)
    mu = moments.mu_y
    n = l1.freq.astype(float)
    s = l1.pattern_sum
    inner = (l1.pattern_sumsq - mu[None, :, None] * s[:, None, :] - s[:, :, None] * mu[None, None, :]
             + n[:, None, None] * np.outer(mu, mu)[None])
    rc = np.zeros((n_pat, p, p))
    rc[:, :, bidx] = pat_rc
    inner -= rc + rc.transpose(0, 2, 1)
    inner[:, bidx[:, None], bidx[None, :]] += pat_cc + fbar
    m_p = 2.0 * (w @ inner @ w) - n[:, None, None] * w
    zc = np.zeros((n_pat, p))
    zc[:, bidx] = pat_c
    xi = (w @ (s - n[:, None] * mu[None] - zc)[:, :, None])[:, :, 0]
    hess += _pattern_terms(m_p, w, xi, n, d.sigma_w, d.mu_y)
    hess[np.ix_(aw, aw)] += h_ww
    # z's marginal part, the same form with one "row" per cluster
    nq = l2.freq.astype(float)
    hess += _pattern_terms(2.0 * xz_outer - nq[:, None, None] * st.zinv, st.zinv, xz_sum, nq,
                           d.sigma_zz, d.mu_z)
    # the curvature of S and H: <g_S, d2 S> = -2 tr(g_S D_a Z D_b'),
    # <G_H, d2 H> = -tr(G' D_a Z dSzz_b Z) - (a <-> b), and H's product with mu_z
    if k and nb:
        x1 = (g_s[:, None] @ dd @ st.zinv[:, None]).transpose(1, 0, 2, 3).reshape(t_all, -1)
        ddf = dd.transpose(1, 0, 2, 3).reshape(t_all, -1)
        mz = (st.zinv[:, None] @ d.sigma_zz[None] @ st.zinv[:, None] @ g_h.transpose(0, 2, 1)[:, None])
        x2 = mz.transpose(1, 0, 3, 2).reshape(t_all, -1)
        x3 = np.einsum("qi,qaik->ak", g_bar, dh)
        curv = x1 @ ddf.T + ddf @ x2.T + x3 @ d.mu_z.T
        hess -= curv + curv.T
    return -0.25 * (hess + hess.T)
