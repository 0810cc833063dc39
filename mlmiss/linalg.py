"""Small dense linear algebra shared by the objectives, written out as Numba kernels.

The objectives invert many small matrices: ``sigma_w`` and ``sigma_zz`` with some rows
and columns removed, and the matrix I + Sigma_j(b.z) A_j per cluster (P x P in the
paper's objectives, P_b x P_b in the engine). Loops
written by hand over preallocated buffers beat ``np.linalg`` calls at these sizes,
which allocate on every call.

The central helper is the *inverse update* of Rosseel (2021), Appendix B.1: given
Omega = Sigma^{-1} and log|Sigma|, the inverse of Sigma[o, o] (o = observed variables,
m = missing ones) is, by the second partitioned-inverse identity (A21),

    Sigma[o, o]^{-1} = Omega[o, o] - Omega[o, m] Omega[m, m]^{-1} Omega[m, o]

and by the determinant identity (A23)  log|Sigma[o, o]| = log|Sigma| + log|Omega[m, m]|.
When few variables are missing this costs O(P^2 r) instead of O(P^3).

All ``*_into`` functions write into caller-provided arrays and allocate nothing; the
plain-named wrappers allocate and are for use from Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Reassociation lets LLVM vectorize the many short dot products; no "nnan"/"ninf",
# so the NaN checks that signal "not positive definite" survive optimization.
FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=FAST)
def cholesky_into(a, n, out):
    """Lower Cholesky factor of a[:n, :n] into out[:n, :n]; returns log|a| or nan if not PD."""
    # the log-determinant is taken from the product of the pivots (one log call, which
    # dominates at these sizes), rescaled whenever the product leaves a safe range
    det = 1.0
    logdet = 0.0
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= out[j, k] * out[j, k]
        if not s > 0.0:
            return np.nan
        d = np.sqrt(s)
        out[j, j] = d
        det *= s
        if det > 1e150 or det < 1e-150:
            logdet += np.log(det)
            det = 1.0
        for i in range(j + 1, n):
            t = a[i, j]
            for k in range(j):
                t -= out[i, k] * out[j, k]
            out[i, j] = t / d
        for i in range(j):
            out[i, j] = 0.0
    return logdet + np.log(det)


@njit(cache=True, fastmath=FAST)
def lower_inverse_into(lower, n):
    """lower[:n, :n] <- its inverse, in place (lower triangular, zero above the
    diagonal); column by column, each entry from the ones already inverted above it."""
    for j in range(n):
        lower[j, j] = 1.0 / lower[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s -= lower[i, k] * lower[k, j]
            lower[i, j] = s / lower[i, i]


@njit(cache=True, fastmath=FAST)
def cholesky_inverse_into(a, n, out, work):
    """Inverse of SPD a[:n, :n] into out[:n, :n] (work: n x n); returns log|a| or nan."""
    logdet = cholesky_into(a, n, work)
    if np.isnan(logdet):
        return logdet
    lower_inverse_into(work, n)
    # a^{-1} = L^{-T} L^{-1}
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += work[k, i] * work[k, j]
            out[i, j] = s
            out[j, i] = s
    return logdet


@njit(cache=True, fastmath=FAST)
def inverse_update_into(sigma, omega, logdet, observed, out, idx, small, small_inv, work):
    """Inverse of sigma[o, o], padded with zeros to P x P, from omega = sigma^{-1}.

    ``observed`` is a boolean mask. Returns log|sigma[o, o]| (nan if not PD). Uses the
    update (Appendix B.1) when fewer variables are missing than observed, a direct
    Cholesky inverse of sigma[o, o] otherwise (cheaper then, and better conditioned).
    Buffers: idx (P,) int, small / small_inv / work (P, P).
    """
    p = observed.shape[0]
    n_obs = 0
    for a in range(p):
        if observed[a]:
            n_obs += 1
    n_mis = p - n_obs
    for a in range(p):
        for b in range(p):
            out[a, b] = 0.0
    if n_mis == 0:
        for a in range(p):
            for b in range(p):
                out[a, b] = omega[a, b]
        return logdet
    if n_obs == 0:
        return 0.0
    if n_mis < n_obs:
        r = np.int64(0)   # not a literal 0: callees compile once, for int64
        for a in range(p):
            if not observed[a]:
                idx[r] = a
                r += 1
        for k in range(r):
            for l in range(r):
                small[k, l] = omega[idx[k], idx[l]]
        ld_mm = cholesky_inverse_into(small, r, small_inv, work)
        if np.isnan(ld_mm):
            return np.nan
        # small <- omega[m, :] (rows of the missing variables, contiguous);
        # work <- omega[:, m] omega[m, m]^{-1}  (P x r)
        for k in range(r):
            for b in range(p):
                small[k, b] = omega[idx[k], b]
        for a in range(p):
            for l in range(r):
                s = 0.0
                for k in range(r):
                    s += small[k, a] * small_inv[k, l]
                work[a, l] = s
        # out[o, o] = omega[o, o] - work[o, :] omega[m, o]; full rows first (vectorizes),
        # then the missing columns are cleared
        for a in range(p):
            if observed[a]:
                for b in range(p):
                    out[a, b] = omega[a, b]
                for l in range(r):
                    t = work[a, l]
                    for b in range(p):
                        out[a, b] -= t * small[l, b]
                for k in range(r):
                    out[a, idx[k]] = 0.0
        return logdet + ld_mm
    # many variables missing: invert sigma[o, o] directly
    r = np.int64(0)
    for a in range(p):
        if observed[a]:
            idx[r] = a
            r += 1
    for k in range(r):
        for l in range(r):
            small[k, l] = sigma[idx[k], idx[l]]
    ld = cholesky_inverse_into(small, r, small_inv, work)
    if np.isnan(ld):
        return np.nan
    for k in range(r):
        for l in range(r):
            out[idx[k], idx[l]] = small_inv[k, l]
    return ld


@njit(cache=True, fastmath=FAST)
def drop_variable_into(w, k, out):
    """Inverse update for one more missing variable (Appendix B.1 with a 1 x 1 block).

    ``w`` is the zero-padded inverse of sigma[o, o]; ``out`` receives the padded inverse
    of sigma[o - {k}, o - {k}] = w - w[:, k] w[k, :] / w[k, k]. Returns log(w[k, k]), the
    amount log|sigma[o, o]| grows by when k is removed (A23), or nan if w[k, k] <= 0.
    """
    p = w.shape[0]
    piv = w[k, k]
    if not piv > 0.0:
        return np.nan
    for a in range(p):
        f = w[a, k] / piv
        for b in range(p):
            out[a, b] = w[a, b] - f * w[k, b]
    for a in range(p):
        out[a, k] = 0.0
        out[k, a] = 0.0
    return np.log(piv)


@njit(cache=True, fastmath=FAST)
def psd_factor_into(a, n, out, work, perm):
    """Rank-revealing factor of a symmetric positive semidefinite a[:n, :n] = R R'.

    Cholesky with diagonal pivoting; R (n x rank, rows in the original order) goes into
    out[:n, :rank]. Pivots below 1e-13 times the largest diagonal element count as zero,
    so an exactly singular matrix gets its true rank. Returns the rank, or -1 when
    ``a`` is not positive semidefinite (a clearly negative pivot, or a remainder that
    is not negligible). work: (n, n) float, perm: (n,) int.
    """
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(a[i, i]))
        perm[i] = i
        for j in range(n):
            work[i, j] = a[i, j]
            out[i, j] = 0.0
    tol = 1e-13 * max(scale, 1e-300)
    rank = 0
    for k in range(n):
        # largest remaining diagonal element
        piv = k
        for i in range(k + 1, n):
            if work[perm[i], perm[i]] > work[perm[piv], perm[piv]]:
                piv = i
        t = perm[k]
        perm[k] = perm[piv]
        perm[piv] = t
        pk = perm[k]
        d = work[pk, pk]
        if d <= tol:
            # the remainder must vanish for a PSD matrix
            for i in range(k, n):
                for j in range(k, n):
                    if abs(work[perm[i], perm[j]]) > 1e3 * tol:
                        return -1
            return rank
        root = np.sqrt(d)
        for i in range(k, n):
            out[perm[i], k] = work[perm[i], pk] / root
        for i in range(k + 1, n):
            pi = perm[i]
            for j in range(k + 1, n):
                pj = perm[j]
                work[pi, pj] -= out[pi, k] * out[pj, k]
        rank += 1
    return rank


@njit(cache=True, fastmath=FAST)
def forward_solve(lower, n, x):
    """x[:n] <- lower[:n, :n]^{-1} x[:n] for a lower-triangular factor, in place."""
    for i in range(n):
        s = x[i]
        for k in range(i):
            s -= lower[i, k] * x[k]
        x[i] = s / lower[i, i]


# ---------------------------------------------------------------- Python-facing wrappers
def cholesky_inverse(a):
    """(inverse, log-determinant) of a symmetric positive definite matrix; (None, nan) if not PD."""
    a = np.array(a, dtype=float, order="C")  # a writable copy: one compiled signature
    n = a.shape[0]
    out = np.empty((n, n))
    logdet = cholesky_inverse_into(a, n, out, np.empty((n, n)))
    return (None, logdet) if np.isnan(logdet) else (out, logdet)


def padded_inverses(sigma, observed):
    """Per missing pattern (rows of ``observed``, (n, P) bool): sigma[o, o]^{-1} embedded
    in P x P with zeros elsewhere, (n, P, P). The unobserved rows and columns are
    replaced by the identity's, so one batched inverse serves every pattern."""
    observed = np.asarray(observed, dtype=bool)
    both = observed[:, :, None] & observed[:, None, :]
    eye = np.eye(sigma.shape[0], dtype=bool)
    out = np.linalg.inv(np.where(both, sigma[None], eye[None].astype(float)))
    out[~both] = 0.0
    return out


def inverse_update(sigma, omega, logdet, observed):
    """Padded inverse of sigma[o, o] and log|sigma[o, o]| from omega = sigma^{-1} (App. B.1)."""
    p = sigma.shape[0]
    out = np.empty((p, p))
    ld = inverse_update_into(np.ascontiguousarray(sigma, dtype=float), np.ascontiguousarray(omega, dtype=float),
                             float(logdet), np.asarray(observed, dtype=np.bool_), out,
                             np.empty(p, np.int64), np.empty((p, p)), np.empty((p, p)), np.empty((p, p)))
    return out, ld


def ibza_logdet(ibza, sigma_bz):
    """log|I + Sigma_j(b.z) A_j| when V_j is positive definite, else None.

    The eigenvalues of I + S A (S = Sigma_j(b.z), A = A_j PSD) are real: they are those
    of I + A^{1/2} S A^{1/2}. V_j is positive definite exactly when all are positive; a
    positive determinant alone is not enough (two negative eigenvalues). When S is
    positive semidefinite every eigenvalue is >= 1, so the eigenvalue check is only
    needed for an indefinite Sigma_j(b.z) (e.g. a negative between variance).
    """
    sign, logdet = np.linalg.slogdet(ibza)
    if not sign > 0.0:
        return None
    if sigma_bz.size:
        scale = max(1.0, float(np.max(np.abs(sigma_bz))))
        if np.linalg.eigvalsh(sigma_bz)[0] < -1e-10 * scale and np.linalg.eigvals(ibza).real.min() <= 0.0:
            return None
    return logdet
