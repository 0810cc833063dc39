"""The E-step: expected complete-data sufficient statistics given the observed data.

Per cluster j, with delta = v_R,j - mu_R (docs/em.md):

* every level-1 row with observed set o is a noisy look at delta:
  y_o - mu_o = D_o delta + w_o, w_o ~ N(0, Sigma_w[o, o]) (D = E C);
* every observed between-only value is an exact one: z_k - mu_k = Z_k delta;

so delta | data is normal: the prior N(0, Sigma_RR) updated by the rows (information
form, summed per (cluster, pattern) pair), then conditioned on the exact observations.

Every row of level-1 pattern p, given delta, is y = a + H_p delta + e with
a = mu + B_p (y - mu) (B_p = Sigma_w W_p, W_p the zero-padded inverse of
Sigma_w[o, o]: identity rows for the observed variables, the regression
K = Sigma_w[m, o] Sigma_w[o, o]^-1 for the missing ones), H_p = (I - B_p) D and
Var(e) = E_p = (I - B_p) Sigma_w. The statistics are sums of E[y], E[y y'] and
E[y v_R'] over rows; what is quadratic in the data is a per-pattern sum the data
bookkeeping already holds (``pattern_sumsq``), and what depends on the cluster's
posterior is accumulated per pattern by the kernel (sums of n m, n (P + m m') and
s m' over the pattern's pairs), so the rows themselves are never visited.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ...linalg import FAST, cholesky_inverse, cholesky_inverse_into, inverse_update_into


@dataclass
class Statistics:
    """Sums over clusters (t1, t2: of E[v_R] and E[v_R v_R']) and over rows (y1, y2,
    yv: of E[y], E[y y'], E[y v_R']; v1n, v2n: of E[v_R] and E[v_R v_R'] once per row)."""

    n_rows: int
    n_clusters: int
    t1: np.ndarray
    t2: np.ndarray
    y1: np.ndarray
    y2: np.ndarray
    yv: np.ndarray
    v1n: np.ndarray
    v2n: np.ndarray


class EStepError(ArithmeticError):
    """The model at this theta gives a posterior that is not proper (a covariance that
    is not positive definite)."""


# ---------------------------------------------------------------- kernels
@njit(cache=True)
def split_pattern(observed, obs, mis):
    """The indices of a pattern's observed and missing variables into obs and mis;
    returns their counts (k, m)."""
    k = 0
    m = 0
    for a in range(observed.shape[0]):
        if observed[a]:
            obs[k] = a
            k += 1
        else:
            mis[m] = a
            m += 1
    return k, m


@njit(cache=True, fastmath=FAST)
def pattern_forms(sigma, omega, logdet, observed, d, mu, info, tmat, tmu, kmat, hmat, emat):
    """Per level-1 pattern p with observed set o and missing set m: info = D_o' W D_o,
    T = D_o' W (zero columns m), T mu, and for the missing rows the regression
    K = Sigma[m, o] W (into kmat[p][m, :], zero columns m), H_m = D_m - K D_o and the
    conditional covariance E_mm = Sigma[m, m] - K Sigma[o, m] (W = sigma[o, o]^-1
    padded with zeros; rows o of B, H and E are the identity or zero, so they are never
    formed). Loops run over whole padded rows, which vectorize: cheaper than visiting
    the observed entries alone. info and tmat must come zeroed. Returns -1, or the first
    pattern whose sigma[o, o] is not positive definite."""
    n_pat, p = observed.shape
    r = d.shape[1]
    w = np.empty((p, p))
    idx = np.empty(p, np.int64)
    small = np.empty((p, p))
    small_inv = np.empty((p, p))
    work = np.empty((p, p))
    obs = np.empty(p, np.int64)
    mis = np.empty(p, np.int64)
    for q in range(n_pat):
        ld = inverse_update_into(sigma, omega, logdet, observed[q], w, idx, small, small_inv, work)
        if np.isnan(ld):
            return q
        k, m = split_pattern(observed[q], obs, mis)
        t = tmat[q]
        # T = D' W over the observed rows of D (W's other rows are zero)
        for jb in range(k):
            b = obs[jb]
            for r1 in range(r):
                dv = d[b, r1]
                if dv != 0.0:
                    for c in range(p):
                        t[r1, c] += dv * w[b, c]
        inf = info[q]
        for r1 in range(r):
            s = 0.0
            for c in range(p):
                tv = t[r1, c]
                s += tv * mu[c]
                if tv != 0.0:
                    for r2 in range(r):
                        inf[r1, r2] += tv * d[c, r2]
            tmu[q, r1] = s
        kq = kmat[q]
        h = hmat[q]
        e = emat[q]
        for i in range(m):
            a = mis[i]
            for c in range(p):
                kq[a, c] = 0.0
            for jb in range(k):
                b = obs[jb]
                sv = sigma[a, b]
                for c in range(p):
                    kq[a, c] += sv * w[b, c]
            for r1 in range(r):
                h[a, r1] = d[a, r1]
            for jb in range(k):
                b = obs[jb]
                kv = kq[a, b]
                for r1 in range(r):
                    h[a, r1] -= kv * d[b, r1]
            for i2 in range(m):
                c = mis[i2]
                s = sigma[a, c]
                for jb in range(k):
                    s -= kq[a, obs[jb]] * sigma[obs[jb], c]
                e[a, c] = s
    return -1


@njit(cache=True, fastmath=FAST)
def row_sums(observed, freq, pattern_sum, pattern_sumsq, mu, kmat, hmat, emat, nm, ndd, sm,
             y1, y2, am_all, hndd_all):
    """The row statistics from the pattern forms and the per-pattern posterior sums:
    y1 = sum E[y], y2 = sum E[y y'] (both triangles), am_all = sum a m' and
    hndd_all = sum H (P + m m') n (for E[y v_R']). Per row E[y | delta] = a + H delta
    with a_o = y_o and a_m = c_m + K y_o (c_m = mu_m - K mu_o). Accumulators zeroed by
    the caller."""
    n_pat, p = observed.shape
    r = nm.shape[1]
    obs = np.empty(p, np.int64)
    mis = np.empty(p, np.int64)
    cm = np.empty(p)
    ks = np.empty(p)
    ksso = np.empty((p, p))
    am = np.empty((p, r))
    hndd = np.empty((p, r))
    for q in range(n_pat):
        k, m = split_pattern(observed[q], obs, mis)
        n = freq[q]
        sq = pattern_sum[q]
        ss = pattern_sumsq[q]
        kq = kmat[q]
        h = hmat[q]
        # the observed part: the data themselves
        for ja in range(k):
            a = obs[ja]
            y1[a] += sq[a]
            for jb in range(k):
                y2[a, obs[jb]] += ss[a, obs[jb]]
            for c in range(r):
                am[a, c] = sm[q, a, c]
        for i in range(m):
            a = mis[i]
            s = mu[a]
            s2 = 0.0
            for jb in range(k):
                s -= kq[a, obs[jb]] * mu[obs[jb]]
                s2 += kq[a, obs[jb]] * sq[obs[jb]]
            cm[i] = s
            ks[i] = s2
            s3 = 0.0
            for c in range(r):
                s3 += h[a, c] * nm[q, c]
            y1[a] += n * s + s2 + s3
            for jb in range(k):
                b = obs[jb]
                s = 0.0
                for jc in range(k):
                    s += kq[a, obs[jc]] * ss[obs[jc], b]
                ksso[i, b] = s
                v = s + cm[i] * sq[b]      # sum a_m y_o'
                y2[a, b] += v
                y2[b, a] += v
            for c in range(r):
                s = cm[i] * nm[q, c]
                for jb in range(k):
                    s += kq[a, obs[jb]] * sm[q, obs[jb], c]
                am[a, c] = s
                s = 0.0
                for c2 in range(r):
                    s += h[a, c2] * ndd[q, c2, c]
                hndd[a, c] = s
        for i in range(m):
            a = mis[i]
            for i2 in range(m):
                b = mis[i2]
                s = n * cm[i] * cm[i2] + cm[i] * ks[i2] + ks[i] * cm[i2] + n * emat[q, a, b]
                for jc in range(k):
                    s += ksso[i, obs[jc]] * kq[b, obs[jc]]
                for c in range(r):
                    s += hndd[a, c] * h[b, c]
                y2[a, b] += s
        # sum a m' H' and its transpose: H has rows m only
        for x in range(p):
            for i in range(m):
                b = mis[i]
                s = 0.0
                for c in range(r):
                    s += am[x, c] * h[b, c]
                y2[x, b] += s
                y2[b, x] += s
        for x in range(p):
            for c in range(r):
                am_all[x, c] += am[x, c]
        for i in range(m):
            a = mis[i]
            for c in range(r):
                hndd_all[a, c] += hndd[a, c]
    return 0


@njit(cache=True, fastmath=FAST)
def cluster_posteriors(prior_precision, info, tmat, tmu, complete_pattern, cluster_pair_ptr,
                       pair_pattern, pair_freq, pair_sum, z, mu_z, zrows, mu_r,
                       t1, t2, v1n, v2n, nm, ndd, sm):
    """The posterior N(m_j, P_j) of delta per cluster and the sums built from it (all
    accumulators zeroed by the caller): t1, t2, v1n, v2n as in :class:`Statistics`;
    per pattern nm = sum n m, ndd = sum n (P + m m'), sm = sum s m' over its pairs
    (n rows, s their sum of y); nm and ndd only serve the missing values, so they are
    left at zero for the patterns flagged ``complete_pattern``. Returns -1, or the
    first cluster whose posterior is not proper."""
    n_clusters = cluster_pair_ptr.shape[0] - 1
    r = prior_precision.shape[0]
    p = pair_sum.shape[1]
    k_all = z.shape[1]
    precision = np.empty((r, r))
    cov = np.empty((r, r))
    second = np.empty((r, r))
    work = np.empty((r, r))
    eta = np.empty(r)
    mean = np.empty(r)
    v = np.empty(r)
    seen = np.empty(k_all, np.int64)
    cf = np.empty((r, k_all))
    fpf = np.empty((k_all, k_all))
    fpf_inv = np.empty((k_all, k_all))
    work_k = np.empty((k_all, k_all))
    gain = np.empty((r, k_all))
    gap = np.empty(k_all)
    for j in range(n_clusters):
        for a in range(r):
            eta[a] = 0.0
            for b in range(r):
                precision[a, b] = prior_precision[a, b]
        n_rows = 0
        for q in range(cluster_pair_ptr[j], cluster_pair_ptr[j + 1]):
            pat = pair_pattern[q]
            n = pair_freq[q]
            n_rows += n
            for a in range(r):
                s = -n * tmu[pat, a]
                for c in range(p):
                    s += tmat[pat, a, c] * pair_sum[q, c]
                eta[a] += s
                for b in range(r):
                    precision[a, b] += n * info[pat, a, b]
        if np.isnan(cholesky_inverse_into(precision, r, cov, work)):
            return j
        for a in range(r):
            s = 0.0
            for b in range(r):
                s += cov[a, b] * eta[b]
            mean[a] = s
        # the observed between-only values are exact linear observations of delta
        k = np.int64(0)   # not a literal 0: callees compile once, for int64
        for c in range(k_all):
            if not np.isnan(z[j, c]):
                seen[k] = c
                k += 1
        if k > 0:
            for a in range(r):
                for c in range(k):
                    s = 0.0
                    for b in range(r):
                        s += cov[a, b] * zrows[seen[c], b]
                    cf[a, c] = s
            for c in range(k):
                s = z[j, seen[c]] - mu_z[seen[c]]
                for b in range(r):
                    s -= zrows[seen[c], b] * mean[b]
                gap[c] = s
                for e in range(k):
                    s = 0.0
                    for b in range(r):
                        s += zrows[seen[c], b] * cf[b, e]
                    fpf[c, e] = s
            if np.isnan(cholesky_inverse_into(fpf, k, fpf_inv, work_k)):
                return j
            for a in range(r):
                for c in range(k):
                    s = 0.0
                    for e in range(k):
                        s += cf[a, e] * fpf_inv[e, c]
                    gain[a, c] = s
            for a in range(r):
                s = 0.0
                for c in range(k):
                    s += gain[a, c] * gap[c]
                mean[a] += s
            for a in range(r):
                for b in range(a + 1):
                    s = 0.0
                    for c in range(k):
                        s += gain[a, c] * cf[b, c]
                    cov[a, b] -= s
                    cov[b, a] = cov[a, b]
        for a in range(r):
            v[a] = mu_r[a] + mean[a]
        for a in range(r):
            t1[a] += v[a]
            v1n[a] += n_rows * v[a]
            for b in range(r):
                vv = cov[a, b] + v[a] * v[b]
                t2[a, b] += vv
                v2n[a, b] += n_rows * vv
        for a in range(r):
            for b in range(r):
                second[a, b] = cov[a, b] + mean[a] * mean[b]
        for q in range(cluster_pair_ptr[j], cluster_pair_ptr[j + 1]):
            pat = pair_pattern[q]
            n = pair_freq[q]
            if not complete_pattern[pat]:
                for a in range(r):
                    nm[pat, a] += n * mean[a]
                    for b in range(r):
                        ndd[pat, a, b] += n * second[a, b]
            for c in range(p):
                s = pair_sum[q, c]
                for a in range(r):
                    sm[pat, c, a] += s * mean[a]
    return -1


# ---------------------------------------------------------------- the E-step
class Workspace:
    """The E-step's arrays for one data set and |R|, made once and reused by every
    E-step: the per-pattern scratch the kernels fill, and what the kernels read of the
    data in the form they read it (which patterns are complete, the pattern counts as
    floats, z as a contiguous array)."""

    def __init__(self, data, r: int):
        lv1 = data.level1
        n_pat, p = lv1.n_patterns, data.n_y
        self.data, self.r = data, r
        self.complete_pattern = lv1.observed.all(axis=1)
        self.freq = lv1.freq.astype(float)
        self.z = np.ascontiguousarray(data.z, dtype=float)
        self.info = np.empty((n_pat, r, r))
        self.tmat = np.empty((n_pat, r, p))
        self.tmu = np.empty((n_pat, r))
        self.kmat = np.empty((n_pat, p, p))
        self.hmat = np.empty((n_pat, p, r))
        self.emat = np.empty((n_pat, p, p))
        self.nm = np.empty((n_pat, r))
        self.ndd = np.empty((n_pat, r, r))
        self.sm = np.empty((n_pat, p, r))

    @classmethod
    def reuse(cls, work, data, r: int) -> "Workspace":
        """``work`` when it was made for this data set and |R|, else a new one."""
        return work if work is not None and work.data is data and work.r == r else cls(data, r)


def expected_statistics(data, parts, complete, work: Workspace | None = None) -> Statistics:
    """The E-step at the model ``parts`` (:meth:`CompleteData.parts`). Raises
    :class:`EStepError` where Sigma_w, Sigma_RR or a posterior is not positive definite.
    ``work``: a :class:`Workspace` to reuse (one is made when it is None or was made
    for other data)."""
    lv1 = data.level1
    p = data.n_y
    mu_y = np.ascontiguousarray(parts["mu_y"], dtype=float)
    sigma_w = np.ascontiguousarray(parts["sigma_w"], dtype=float)
    mu_r = np.ascontiguousarray(parts["mu_R"], dtype=float)
    r = mu_r.size
    d = np.zeros((p, r))
    d[complete.both_y] = parts["C"]
    omega, logdet = cholesky_inverse(sigma_w)
    prior_precision, _ = cholesky_inverse(parts["sigma_RR"])
    if omega is None or prior_precision is None:
        raise EStepError("Sigma_w or Sigma_RR is not positive definite")
    work = Workspace.reuse(work, data, r)
    for name in ("info", "tmat", "tmu", "nm", "ndd", "sm"):
        getattr(work, name).fill(0.0)
    if pattern_forms(sigma_w, omega, logdet, lv1.observed, d, mu_y, work.info,
                     work.tmat, work.tmu, work.kmat, work.hmat, work.emat) >= 0:
        raise EStepError("Sigma_w[o, o] is not positive definite")

    t1, t2 = np.zeros(r), np.zeros((r, r))
    v1n, v2n = np.zeros(r), np.zeros((r, r))
    mu_z = np.ascontiguousarray(parts["mean_u"][complete.z_u], dtype=float)
    zrows = np.ascontiguousarray(parts["Z"], dtype=float).reshape(mu_z.size, r)
    bad = cluster_posteriors(prior_precision, work.info, work.tmat, work.tmu,
                             work.complete_pattern, lv1.cluster_pair_ptr, lv1.pair_pattern,
                             lv1.pair_freq, lv1.pair_sum, work.z, mu_z, zrows, mu_r, t1, t2, v1n, v2n, work.nm, work.ndd, work.sm)
    if bad >= 0:
        raise EStepError(f"the posterior of cluster {data.cluster_ids[bad]!r} is not proper")

    y1, y2 = np.zeros(p), np.zeros((p, p))
    am, hndd = np.zeros((p, r)), np.zeros((p, r))
    row_sums(lv1.observed, work.freq, lv1.pattern_sum, lv1.pattern_sumsq, mu_y,
             work.kmat, work.hmat, work.emat, work.nm, work.ndd, work.sm, y1, y2, am, hndd)
    yv = y1[:, None] * mu_r[None, :] + am + hndd
    return Statistics(data.n_obs, data.n_clusters, t1, t2, y1, 0.5 * (y2 + y2.T), yv, v1n, v2n)
