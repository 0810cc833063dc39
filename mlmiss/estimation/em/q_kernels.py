"""Q and its curvature as Numba kernels over the model's flattened moments.

The M-step evaluates Q(theta) = E[complete-data log-likelihood] a few times per
E-step, and its complete-data information about once (docs/em.md). Written with numpy
each was some fifty calls on matrices of a dozen rows: on a data set of 15 clusters
the calls, not the arithmetic, were the M-step's cost. Here the moments are read
straight from the model's flattened vector through index maps (``MomentMaps``), and
the gradient is written back in the same layout, so the chain rule to theta is one
product with the model's Jacobian.

Notation (docs/em.md): R the random level-2 nodes, b the "both" variables (rows
``both_y`` of the P level-1 variables), C = Sigma_bR Sigma_RR^-1, D = E C (P x R),
shift = mu_y - D mu_R; the sufficient statistics as in
:class:`mlmiss.estimation.em.estep.Statistics`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...linalg import cholesky_into, cholesky_inverse_into, lower_inverse_into


@njit(cache=True)
def _read(vec, mu_pos, sw_pos, mean_pos, joint_pos, r_index, nb):
    """The moments Q needs, gathered from the flattened vector: mu_y, Sigma_w, mu_R,
    Sigma_RR and Sigma_bR."""
    p = mu_pos.size
    r = r_index.size
    mu_y = np.empty(p)
    sw = np.empty((p, p))
    mu_r = np.empty(r)
    srr = np.empty((r, r))
    sbr = np.empty((nb, r))
    for a in range(p):
        mu_y[a] = vec[mu_pos[a]]
        for b in range(p):
            sw[a, b] = vec[sw_pos[a, b]]
    for a in range(r):
        mu_r[a] = vec[mean_pos[r_index[a]]]
        for b in range(r):
            srr[a, b] = vec[joint_pos[r_index[a], r_index[b]]]
        for i in range(nb):
            sbr[i, a] = vec[joint_pos[i, r_index[a]]]
    return mu_y, sw, mu_r, srr, sbr


@njit(cache=True)
def _regression(sbr, s_inv, both_y, c, d):
    """C = Sigma_bR Sigma_RR^-1 and D = E C (zero outside the rows both_y)."""
    nb, r = sbr.shape
    for i in range(nb):
        for a in range(r):
            s = 0.0
            for b in range(r):
                s += sbr[i, b] * s_inv[b, a]
            c[i, a] = s
    d[:, :] = 0.0
    for i in range(nb):
        for a in range(r):
            d[both_y[i], a] = c[i, a]


@njit(cache=True)
def q_and_moment_gradient(vec, mu_pos, sw_pos, mean_pos, joint_pos, r_index, both_y,
                          n, j, t1, t2, y1, y2, yv, v1n, v2n, grad):
    """Q at the moments ``vec`` (constants dropped) and, added into ``grad`` (laid out
    like vec, zeroed by the caller), its gradient with respect to them: dQ = sum
    grad_i dvec_i. Returns nan where Sigma_w or Sigma_RR is not positive definite."""
    p = mu_pos.size
    r = r_index.size
    nb = both_y.size
    mu_y, sw, mu_r, srr, sbr = _read(vec, mu_pos, sw_pos, mean_pos, joint_pos, r_index, nb)
    a_w = np.empty((p, p))
    work = np.empty((p, p))
    ld_w = cholesky_inverse_into(sw, p, a_w, work)
    s_inv = np.empty((r, r))
    work_r = np.empty((r, r))
    ld_r = cholesky_inverse_into(srr, r, s_inv, work_r)
    if np.isnan(ld_w) or np.isnan(ld_r):
        return np.nan
    c = np.empty((nb, r))
    d = np.empty((p, r))
    _regression(sbr, s_inv, both_y, c, d)

    # within: residuals y - shift - D v_R; e = y1 - D v1n, r1 = e - n shift
    shift = np.empty(p)
    e = np.empty(p)
    r1 = np.empty(p)
    dv2 = np.empty((p, r))
    for a in range(p):
        s = mu_y[a]
        s1 = y1[a]
        for b in range(r):
            s -= d[a, b] * mu_r[b]
            s1 -= d[a, b] * v1n[b]
        shift[a] = s
        e[a] = s1
        r1[a] = s1 - n * s
        for b in range(r):
            s = 0.0
            for k in range(r):
                s += d[a, k] * v2n[k, b]
            dv2[a, b] = s
    # W = y2 - yv D' - D yv' + D v2n D' - e shift' - shift e' + n shift shift'
    w = np.empty((p, p))
    for a in range(p):
        for b in range(a + 1):
            s = y2[a, b] - e[a] * shift[b] - shift[a] * e[b] + n * shift[a] * shift[b]
            for k in range(r):
                s += -yv[a, k] * d[b, k] - d[a, k] * yv[b, k] + dv2[a, k] * d[b, k]
            w[a, b] = s
            w[b, a] = s
    trace = 0.0
    for a in range(p):
        for b in range(p):
            trace += a_w[a, b] * w[a, b]
    q = -0.5 * n * ld_w - 0.5 * trace
    # between: v_R ~ N(mu_R, Sigma_RR); m_r = sum (v - mu_R)(v - mu_R)'
    m_r = np.empty((r, r))
    for a in range(r):
        for b in range(r):
            m_r[a, b] = t2[a, b] - mu_r[a] * t1[b] - t1[a] * mu_r[b] + j * mu_r[a] * mu_r[b]
    trace = 0.0
    for a in range(r):
        for b in range(r):
            trace += s_inv[a, b] * m_r[a, b]
    q += -0.5 * j * ld_r - 0.5 * trace

    # dQ/dSigma_w = -n/2 A + 1/2 A W A
    for a in range(p):
        for b in range(p):
            s = 0.0
            for k in range(p):
                s += a_w[a, k] * w[k, b]
            work[a, b] = s
    for a in range(p):
        for b in range(p):
            s = -0.5 * n * a_w[a, b]
            for k in range(p):
                s += 0.5 * work[a, k] * a_w[k, b]
            grad[sw_pos[a, b]] += s
    # dQ/dmu_y = A r1; dQ/dmu_R = -D' A r1 + Sigma_RR^-1 (t1 - j mu_R)
    ar1 = np.empty(p)
    for a in range(p):
        s = 0.0
        for b in range(p):
            s += a_w[a, b] * r1[b]
        ar1[a] = s
        grad[mu_pos[a]] += s
    for a in range(r):
        s = 0.0
        for b in range(p):
            s -= d[b, a] * ar1[b]
        for b in range(r):
            s += s_inv[a, b] * (t1[b] - j * mu_r[b])
        grad[mean_pos[r_index[a]]] += s
    # dQ/dC = E' A rv - E' A r1 mu_R', rv = yv - shift v1n' - D v2n
    rv = np.empty((p, r))
    for a in range(p):
        for b in range(r):
            rv[a, b] = yv[a, b] - shift[a] * v1n[b] - dv2[a, b]
    g_c = np.empty((nb, r))
    for i in range(nb):
        row = both_y[i]
        for b in range(r):
            s = -ar1[row] * mu_r[b]
            for k in range(p):
                s += a_w[row, k] * rv[k, b]
            g_c[i, b] = s
    # through C = Sigma_bR Sigma_RR^-1: G[b, R] = g_c S^-1, G[R, R] = -C' g_c S^-1
    gcs = np.empty((nb, r))
    for i in range(nb):
        for b in range(r):
            s = 0.0
            for k in range(r):
                s += g_c[i, k] * s_inv[k, b]
            gcs[i, b] = s
    for i in range(nb):
        for b in range(r):
            half = 0.5 * gcs[i, b]
            grad[joint_pos[i, r_index[b]]] += half
            grad[joint_pos[r_index[b], i]] += half
    # G[R, R] += -1/2 j S^-1 + 1/2 S^-1 m_r S^-1
    for a in range(r):
        for b in range(r):
            s = 0.0
            for k in range(r):
                s += m_r[a, k] * s_inv[k, b]
            work_r[a, b] = s
    for a in range(r):
        for b in range(r):
            s = -0.5 * j * s_inv[a, b]
            for k in range(r):
                s += 0.5 * s_inv[a, k] * work_r[k, b]
            for i in range(nb):
                s -= c[i, a] * gcs[i, b]
            half = 0.5 * s
            grad[joint_pos[r_index[a], r_index[b]]] += half
            grad[joint_pos[r_index[b], r_index[a]]] += half
    return q


@njit(cache=True)
def _sandwich_triangle(l_inv, ds, nonzero, tmp, w_diag, w_off, out, col):
    """The lower triangle of X = L^-1 dS L^-T (L^-1 lower triangular) into out[col:],
    the diagonal weighted by w_diag and the rest by w_off (zeros when ``nonzero`` is
    False); returns the next column."""
    n = ds.shape[0]
    if not nonzero:
        for a in range(n * (n + 1) // 2):
            out[col] = 0.0
            col += 1
        return col
    for a in range(n):
        for b in range(n):
            s = 0.0
            for k in range(a + 1):
                s += l_inv[a, k] * ds[k, b]
            tmp[a, b] = s
    for a in range(n):
        for b in range(a + 1):
            s = 0.0
            for k in range(b + 1):
                s += tmp[a, k] * l_inv[b, k]
            out[col] = s * (w_diag if a == b else w_off)
            col += 1
    return col


def information_width(p: int, r: int) -> int:
    """Columns of :func:`information_factor`'s rows."""
    return p * (p + 1) // 2 + p * (1 + r) + r * (r + 1) // 2 + r


@njit(cache=True)
def information_factor(jt, vec, mu_pos, sw_pos, mean_pos, joint_pos, r_index, both_y,
                       n, j, v1n, v2n, out):
    """Rows F (npar x information_width) with F F' = the complete-data information
    J_phi' I_phi J_phi (docs/em.md), from jt = the model's Jacobian transposed
    (npar x n_moments). Per parameter, with dS its derivative:

    * within covariance: L_w^-1 dSigma_w L_w^-T, one triangle, weighted so that the
      squared norm is n/2 tr((A dSigma_w)^2);
    * within means: L_w^-1 [dshift, dD] L_m, L_m L_m' = [[n, v1n'], [v1n, v2n]];
    * between: L_R^-1 dSigma_RR L_R^-T (weighted by j/2) and sqrt(j) L_R^-1 dmu_R.

    dC = (dSigma_bR - C dSigma_RR) Sigma_RR^-1. Returns 0, or 1 where Sigma_w, Sigma_RR
    or the second moments of (1, v_R) are not positive definite."""
    npar = jt.shape[0]
    p = mu_pos.size
    r = r_index.size
    nb = both_y.size
    mu_y, sw, mu_r, srr, sbr = _read(vec, mu_pos, sw_pos, mean_pos, joint_pos, r_index, nb)
    lw = np.empty((p, p))
    lr = np.empty((r, r))
    if np.isnan(cholesky_into(sw, p, lw)) or np.isnan(cholesky_into(srr, r, lr)):
        return 1
    lw_inv = lw.copy()
    lr_inv = lr.copy()
    lower_inverse_into(lw_inv, p)
    lower_inverse_into(lr_inv, r)
    s_inv = np.empty((r, r))
    for a in range(r):
        for b in range(r):
            s = 0.0
            for k in range(r):
                s += lr_inv[k, a] * lr_inv[k, b]
            s_inv[a, b] = s
    c = np.empty((nb, r))
    d = np.empty((p, r))
    _regression(sbr, s_inv, both_y, c, d)
    second = np.empty((r + 1, r + 1))
    second[0, 0] = n
    for a in range(r):
        second[0, a + 1] = v1n[a]
        second[a + 1, 0] = v1n[a]
        for b in range(r):
            second[a + 1, b + 1] = 0.5 * (v2n[a, b] + v2n[b, a])
    l_m = np.empty((r + 1, r + 1))
    if np.isnan(cholesky_into(second, r + 1, l_m)):
        return 1

    root_half_n = np.sqrt(0.5 * n)
    root_n = np.sqrt(n)
    root_half_j = np.sqrt(0.5 * j)
    root_j = np.sqrt(j)
    ds = np.empty((p, p))
    tmp = np.empty((p, p))
    g = np.empty((p, r + 1))
    gl = np.empty((p, r + 1))
    dsrr = np.empty((r, r))
    dsbr = np.empty((nb, r))
    dmur = np.empty(r)
    dc0 = np.empty((nb, r))
    tmp_r = np.empty((r, r))
    for par in range(npar):
        row = jt[par]
        col = 0
        # within covariance
        nonzero = False
        for a in range(p):
            for b in range(p):
                ds[a, b] = row[sw_pos[a, b]]
                if ds[a, b] != 0.0:
                    nonzero = True
        col = _sandwich_triangle(lw_inv, ds, nonzero, tmp, root_half_n, root_n, out[par], col)
        # between pieces: dSigma_RR, dSigma_bR, dmu_R (a level-1 parameter has none)
        cov_b = False
        mean_b = False
        for a in range(r):
            dmur[a] = row[mean_pos[r_index[a]]]
            mean_b = mean_b or dmur[a] != 0.0
            for b in range(r):
                dsrr[a, b] = row[joint_pos[r_index[a], r_index[b]]]
                cov_b = cov_b or dsrr[a, b] != 0.0
            for i in range(nb):
                dsbr[i, a] = row[joint_pos[i, r_index[a]]]
                cov_b = cov_b or dsbr[i, a] != 0.0
        for a in range(p):
            for b in range(r + 1):
                g[a, b] = 0.0
        if cov_b:
            # dC = (dSigma_bR - C dSigma_RR) S^-1
            for i in range(nb):
                for b in range(r):
                    s = dsbr[i, b]
                    for k in range(r):
                        s -= c[i, k] * dsrr[k, b]
                    dc0[i, b] = s
            for i in range(nb):
                for b in range(r):
                    s = 0.0
                    for k in range(r):
                        s += dc0[i, k] * s_inv[k, b]
                    g[both_y[i], b + 1] = s
        # dshift = dmu_y - dD mu_R - D dmu_R
        for a in range(p):
            s = row[mu_pos[a]]
            for k in range(r):
                s -= g[a, k + 1] * mu_r[k] + d[a, k] * dmur[k]
            g[a, 0] = s
        # within means: L_w^-1 g L_m
        last = r + 1 if cov_b else 1   # columns of g that can be nonzero
        for a in range(p):
            for b in range(r + 1):
                s = 0.0
                for k in range(b, last):
                    s += g[a, k] * l_m[k, b]
                gl[a, b] = s
        for a in range(p):
            for b in range(r + 1):
                s = 0.0
                for k in range(a + 1):
                    s += lw_inv[a, k] * gl[k, b]
                out[par, col] = s
                col += 1
        # between covariance and means
        col = _sandwich_triangle(lr_inv, dsrr, cov_b, tmp_r, root_half_j, root_j, out[par], col)
        for a in range(r):
            s = 0.0
            if mean_b:
                for k in range(a + 1):
                    s += lr_inv[a, k] * dmur[k]
            out[par, col] = s * root_j
            col += 1
    return 0
