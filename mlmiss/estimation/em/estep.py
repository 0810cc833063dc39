"""The E-step: expected complete-data sufficient statistics given the observed data.

Per cluster j, with delta = v_R,j - mu_R (docs/em.md):

* every level-1 row i with observed set o is a noisy look at delta:
  y_o - mu_o = D_o delta + w_o, w_o ~ N(0, Sigma_w[o, o]) (D = E C);
* every observed between-only value is an exact one: z_k - mu_k = Z_k delta;

so delta | data is normal: the prior N(0, Sigma_RR) updated by the rows (information
form, summed per missing pattern), then conditioned on the exact observations. A
missing y_m given delta and the row's observed values is
mu_m + K (y_o - mu_o) + (D_m - K D_o) delta + e, K = Sigma_w[m, o] Sigma_w[o, o]^-1,
e ~ N(0, Sigma_w[m, m] - K Sigma_w[o, m]); the statistics follow from these linear
forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


class RowForms:
    """Per missing pattern of the level-1 rows: the pieces of the linear forms above,
    for one theta."""

    def __init__(self, sigma_w, d, observed_sets):
        self.cache = {}
        self.sigma_w = sigma_w
        self.d = d
        for key in observed_sets:
            self.cache[key] = self._build(np.frombuffer(key, dtype=bool))

    def _build(self, observed):
        o = np.flatnonzero(observed)
        m = np.flatnonzero(~observed)
        s = self.sigma_w
        s_oo_inv = np.linalg.inv(s[np.ix_(o, o)])
        d_o = self.d[o]
        info = d_o.T @ s_oo_inv @ d_o                    # R x R information of one row
        to_delta = d_o.T @ s_oo_inv                      # R x |o|
        k = s[np.ix_(m, o)] @ s_oo_inv
        h = np.zeros((observed.size, self.d.shape[1]))
        h[m] = self.d[m] - k @ d_o                       # y = a + H delta + e
        e_var = np.zeros((observed.size, observed.size))
        e_var[np.ix_(m, m)] = s[np.ix_(m, m)] - k @ s[np.ix_(o, m)]
        return o, m, info, to_delta, k, h, e_var


def expected_statistics(data, parts, complete) -> Statistics:
    """The E-step at the model ``parts`` (:meth:`CompleteData.parts`)."""
    p = data.n_y
    mu_y, sigma_w = parts["mu_y"], parts["sigma_w"]
    mu_r, s_rr, c, zrows = parts["mu_R"], parts["sigma_RR"], parts["C"], parts["Z"]
    r = mu_r.size
    d = np.zeros((p, r))
    d[complete.both_y] = c
    observed = ~np.isnan(data.y)
    keys = [row.tobytes() for row in observed]
    forms = RowForms(sigma_w, d, set(keys))
    prior_precision = np.linalg.inv(s_rr)
    z = data.z
    mu_z = parts["mean_u"][complete.z_u]

    stats = Statistics(data.n_obs, data.n_clusters, np.zeros(r), np.zeros((r, r)), np.zeros(p),
                       np.zeros((p, p)), np.zeros((p, r)), np.zeros(r), np.zeros((r, r)))
    starts = np.concatenate([[0], np.cumsum(data.cluster_sizes)])
    y = np.where(observed, data.y, 0.0)
    for j in range(data.n_clusters):
        rows = range(starts[j], starts[j + 1])
        precision = prior_precision.copy()
        eta = np.zeros(r)
        for i in rows:
            o, m, info, to_delta, k, h, e_var = forms.cache[keys[i]]
            precision += info
            eta += to_delta @ (y[i, o] - mu_y[o])
        cov = np.linalg.inv(precision)
        mean = cov @ eta
        seen = ~np.isnan(z[j]) if z.size else np.zeros(0, dtype=bool)
        if seen.any():                                   # exact observations of delta
            f = zrows[seen]
            gap = (z[j, seen] - mu_z[seen]) - f @ mean
            cf = cov @ f.T
            gain = np.linalg.solve(f @ cf, cf.T).T
            mean = mean + gain @ gap
            cov = cov - gain @ cf.T
            cov = 0.5 * (cov + cov.T)
        v = mu_r + mean
        vv = cov + np.outer(v, v)
        stats.t1 += v
        stats.t2 += vv
        n = len(rows)
        stats.v1n += n * v
        stats.v2n += n * vv
        for i in rows:
            o, m, info, to_delta, k, h, e_var = forms.cache[keys[i]]
            a = y[i].copy()
            a[m] = mu_y[m] + k @ (y[i, o] - mu_y[o])
            ey = a + h @ mean
            stats.y1 += ey
            stats.y2 += np.outer(ey, ey) + h @ cov @ h.T + e_var
            stats.yv += np.outer(ey, v) + h @ cov
    return stats
