"""The between (level-2) stage of the engine: one pass per level-2 missing pattern.

Per level-2 pattern (the between-only variables a cluster observes; sec. 4.6), the
inverse of Sigma_zz[o, o] and its log-determinant, H = Sigma_yz G' Sigma_j^zz and
Sigma_j(b.z) = Sigma_b - H G Sigma_zy (eq. 57) over the variables with a between part,
and the form in which the cluster stage will use Sigma_j(b.z): its inverse when it is
well conditioned, a rank-revealing factor when it is singular, nothing when indefinite.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import FAST, cholesky_into, cholesky_inverse_into, psd_factor_into

#: rank_bz of a pattern whose Sigma_j(b.z) awaits :func:`factor_other_patterns`
UNFACTORED = -2


@njit(cache=True, fastmath=FAST)
def between_patterns(sigma_b, sigma_zz, sigma_yz, bidx, observed,
                     zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet, s_inv_h):
    """Stage 2, per level-2 pattern: zinv (K x K padded), zlogdet, h (Pb x K), s_bz (Pb x Pb).

    There are few level-2 patterns, so Sigma_zz[o, o] is inverted directly. How the
    clusters of the pattern will be handled is decided here, once:
    * Sigma_j(b.z) positive definite and well conditioned: its inverse s_inv, log|S| and
      s_inv_h = S^{-1} H are stored (McDonald's form; rank_bz = Pb, s_logdet finite);
    * otherwise s_logdet = nan and rank_bz = :data:`UNFACTORED`, for
      :func:`factor_other_patterns`.
    Returns False if Sigma_zz is not positive definite."""
    n_pat, k = observed.shape
    nb = bidx.shape[0]
    work = np.empty((nb, nb))
    idx = np.empty(k, np.int64)
    small = np.empty((k, k))
    small_inv = np.empty((k, k))
    work_k = np.empty((k, k))
    # the whole Sigma_zz must be positive definite, whatever the patterns observe (a
    # writable copy: cholesky_into then compiles once, for the kernels' own buffers)
    for a in range(k):
        for b in range(k):
            small[a, b] = sigma_zz[a, b]
    if np.isnan(cholesky_into(small, k, work_k)):
        return False
    for q in range(n_pat):
        r = np.int64(0)   # not a literal 0: callees compile once, for int64
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
            rank_bz[q] = UNFACTORED
    return True


@njit(cache=True, fastmath=FAST)
def factor_other_patterns(s_bz, r_bz, rank_bz):
    """The patterns :func:`between_patterns` left unfactored (singular or indefinite
    Sigma_j(b.z)): positive semidefinite S = R R' with R in r_bz and its rank in
    rank_bz; indefinite, rank_bz = -1. A kernel of its own, compiled on first need."""
    nb = s_bz.shape[1]
    work = np.empty((nb, nb))
    perm = np.empty(nb, np.int64)
    for q in range(s_bz.shape[0]):
        if rank_bz[q] == UNFACTORED:
            rank_bz[q] = psd_factor_into(s_bz[q], nb, r_bz[q], work, perm)
