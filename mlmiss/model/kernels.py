"""One level's implied moments and their Jacobian as Numba kernels.

The RAM algebra is that of :mod:`mlmiss.model.ram`; written with numpy, a level's
moments and Jacobian took some thirty calls on matrices of a dozen rows, which
dominated the M-step of EM (and the trust region's iterations) on small data sets.

Jacobian bookkeeping (:class:`mlmiss.model.ram._Level`): free entry e
moves Sigma_o by u_e v_e' + v_e u_e' and mu_o by m_e, with u_e, v_e rows of
G = [A_o'; Sigma_all[:, o]; A_o' / 2; 0] and m_e = A_o'[m_idx[e]] c[c_idx[e]],
c = [mu_all, 0, 1]; one loop over the entries adds each one's derivatives into its
parameter's row.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _g_row(a_pad, s_pad, index, out):
    """Row ``index`` of G = [A_o'; Sigma_all[:, o]; A_o' / 2; 0] into out."""
    n, dim = a_pad.shape
    if index < n:
        for c in range(dim):
            out[c] = a_pad[index, c]
    elif index < 2 * n:
        for c in range(dim):
            out[c] = s_pad[index - n, c]
    elif index < 3 * n:
        for c in range(dim):
            out[c] = 0.5 * a_pad[index - 2 * n, c]
    else:
        for c in range(dim):
            out[c] = 0.0


@njit(cache=True)
def level_jacobian_into(jt, a_pad, s_pad, mu_all, g_idx, m_idx, c_idx, entry_par, mu_offset,
                        blocks):
    """Add d moments / d theta of one level into jt (npar x n_moments, zeroed by the
    caller; entries sharing a parameter add up). ``blocks`` rows: (row start, row stop,
    column start, column stop, offset) of each covariance block on the padded axis."""
    n, dim = a_pad.shape
    u = np.empty(dim)
    v = np.empty(dim)
    for e in range(entry_par.size):
        row = jt[entry_par[e]]
        k = m_idx[e]
        ci = c_idx[e]
        scale = mu_all[ci] if ci < n else (0.0 if ci == n else 1.0)
        if scale != 0.0:
            for c in range(dim):
                row[mu_offset + c] += a_pad[k, c] * scale
        _g_row(a_pad, s_pad, g_idx[2 * e], u)
        _g_row(a_pad, s_pad, g_idx[2 * e + 1], v)
        for b in range(blocks.shape[0]):
            r0, r1, c0, c1, offset = blocks[b]
            width = c1 - c0
            for i in range(r0, r1):
                ui = u[i]
                vi = v[i]
                if ui == 0.0 and vi == 0.0:
                    continue
                base = offset + (i - r0) * width - c0
                for j in range(c0, c1):
                    row[base + j] += ui * v[j] + vi * u[j]


@njit(cache=True)
def _invert_into(m, out, work):
    """out <- m^-1 by Gauss-Jordan elimination with partial pivoting (m is left
    intact); returns False when a pivot is exactly zero (m singular)."""
    n = m.shape[0]
    for i in range(n):
        for j in range(n):
            work[i, j] = m[i, j]
            out[i, j] = 1.0 if i == j else 0.0
    for col in range(n):
        best = col
        for i in range(col + 1, n):
            if abs(work[i, col]) > abs(work[best, col]):
                best = i
        if work[best, col] == 0.0:
            return False
        if best != col:
            for j in range(n):
                t = work[col, j]
                work[col, j] = work[best, j]
                work[best, j] = t
                t = out[col, j]
                out[col, j] = out[best, j]
                out[best, j] = t
        inv_pivot = 1.0 / work[col, col]
        for j in range(n):
            work[col, j] *= inv_pivot
            out[col, j] *= inv_pivot
        for i in range(n):
            if i != col:
                f = work[i, col]
                if f != 0.0:
                    for j in range(n):
                        work[i, j] -= f * work[col, j]
                        out[i, j] -= f * out[col, j]
    return True


@njit(cache=True)
def level_forward_into(theta, b0, psi0, alpha0, b_row, b_col, b_par, psi_row, psi_col,
                       psi_par, alpha_row, alpha_par, depth, pad, mu_offset, blocks, out,
                       a_pad, s_pad, mu_all):
    """One level's moments at theta: the padded mean added into out[mu_offset:], each
    covariance block written into its slice; a_pad = A[o, :]' and s_pad =
    Sigma_all[:, o] on the padded axis (n x dim) and mu_all = A alpha filled for the
    Jacobian. A = (I - B)^-1 by Horner's sum I + B (I + B (...)) of ``depth`` terms
    when B is nilpotent (depth >= 0), by elimination otherwise. Returns False when
    I - B is singular."""
    n, dim = a_pad.shape
    b = b0.copy()
    for e in range(b_row.size):
        b[b_row[e], b_col[e]] = theta[b_par[e]]
    psi = psi0.copy()
    for e in range(psi_row.size):
        psi[psi_row[e], psi_col[e]] = theta[psi_par[e]]
        psi[psi_col[e], psi_row[e]] = theta[psi_par[e]]
    alpha = alpha0.copy()
    for e in range(alpha_row.size):
        alpha[alpha_row[e]] = theta[alpha_par[e]]
    a = np.empty((n, n))
    work = np.empty((n, n))
    if depth < 0:
        for i in range(n):
            for j in range(n):
                work[i, j] = (1.0 if i == j else 0.0) - b[i, j]
        if not _invert_into(work.copy(), a, work):
            return False
    else:
        for i in range(n):
            for j in range(n):
                a[i, j] = (1.0 if i == j else 0.0) + (b[i, j] if depth >= 1 else 0.0)
        for _ in range(depth - 1):
            for i in range(n):
                for j in range(n):
                    s = 1.0 if i == j else 0.0
                    for k in range(n):
                        s += b[i, k] * a[k, j]
                    work[i, j] = s
            for i in range(n):
                for j in range(n):
                    a[i, j] = work[i, j]
    # a_pad[:, pad[k]] = A[k, :]' for the observed variables k
    for i in range(n):
        for c in range(dim):
            a_pad[i, c] = 0.0
    for k in range(pad.size):
        for i in range(n):
            a_pad[i, pad[k]] = a[k, i]
    pa = np.empty((n, dim))
    for i in range(n):
        for c in range(dim):
            s = 0.0
            for k in range(n):
                s += psi[i, k] * a_pad[k, c]
            pa[i, c] = s
    for i in range(n):
        for c in range(dim):
            s = 0.0
            for k in range(n):
                s += a[i, k] * pa[k, c]
            s_pad[i, c] = s
        s = 0.0
        for k in range(n):
            s += a[i, k] * alpha[k]
        mu_all[i] = s
    for c in range(dim):
        s = 0.0
        for i in range(n):
            s += alpha[i] * a_pad[i, c]
        out[mu_offset + c] += s
    sigma = np.empty((dim, dim))
    for c in range(dim):
        for d in range(c + 1):
            s = 0.0
            t = 0.0
            for i in range(n):
                s += a_pad[i, c] * pa[i, d]
                t += a_pad[i, d] * pa[i, c]
            sigma[c, d] = 0.5 * (s + t)
            sigma[d, c] = sigma[c, d]
    for blk in range(blocks.shape[0]):
        r0, r1, c0, c1, offset = blocks[blk]
        pos = offset
        for i in range(r0, r1):
            for j in range(c0, c1):
                out[pos] = sigma[i, j]
                pos += 1
    return True
