"""The complete data of the EM algorithm and their expected log-likelihood Q.

The missing data are, per cluster, the values of the *random* between nodes R: the
level-2 observed variables whose residual variance is not fixed at zero, and, when a
"both" variable has its between residual variance fixed at 0, the latent level-2
variables with a variance not fixed at zero (docs/em.md). The other level-2 nodes D
are then exact linear functions of R (the latent ones not in R are integrated out), so
the complete data have a proper density however singular Sigma_b is:

    v_R,j ~ N(mu_R, Sigma_RR)
    y_ij | v_R,j ~ N(mu_y + E C (v_R,j - mu_R), Sigma_w),   C = Sigma_bR Sigma_RR^-1

(b: the "both" variables, E embeds them in the P level-1 variables). The implied
moments over the level-2 nodes U = b + z + latent come from the model with its level-2
latent variables turned into observed between-only ones (each ``f =~ y`` row read as
``y ~ f``), so the model layer's analytic Jacobian serves the M-step as well.
"""

from __future__ import annotations

import numpy as np

from ...data.levels import between_cov, between_cov_gradient
from ...data.moments import Moments
from ...model.ram import TwoLevelModel, flatten_gradient


def _latent_as_observed(table):
    """The parameter table with level-2 ``f =~ y`` rows read as ``y ~ f``."""
    out = table.copy()
    measure = ((out["op"] == "=~") & (out["level"] == 2)).to_numpy()
    lhs = out.loc[measure, "lhs"].to_numpy()
    out.loc[measure, "lhs"] = out.loc[measure, "rhs"].to_numpy()
    out.loc[measure, "rhs"] = lhs
    out.loc[measure, "op"] = "~"
    return out


class CompleteData:
    """The complete-data view of a :class:`mlmiss.estimation.problem.Problem`: which
    level-2 nodes are random (R), and Q(theta) with its gradient from expected
    sufficient statistics (:class:`mlmiss.estimation.em.estep.Statistics`)."""

    def __init__(self, problem):
        self.problem = problem
        table = problem.partable.table
        model = problem.model
        latent2 = list(model.latent_names[2])
        self.model = TwoLevelModel(_latent_as_observed(table), model.y_names,
                                   list(model.z_names) + latent2)
        self.npar = model.npar
        self.y_names = list(model.y_names)
        self.both = list(model.both_names)
        # U: the level-2 nodes in the order of between_cov (both, then z, then latent)
        self.u_names = self.both + list(model.z_names) + latent2
        fixed_zero = set()
        for row in table.itertuples(index=False):
            if (row.level == 2 and row.op == "~~" and row.lhs == row.rhs and row.free == 0
                    and row.value == 0):
                fixed_zero.add(row.lhs)
        # the latent level-2 variables are integrated out in the M-step (less missing
        # information, faster EM) unless a "both" variable without between residual needs
        # them to be an exact function of the complete data
        observed = set(self.both) | set(model.z_names)
        need_latent = any(v in fixed_zero for v in self.both)
        self.random = np.array([v not in fixed_zero and (v in observed or need_latent)
                                for v in self.u_names])
        self.r_index = np.flatnonzero(self.random)
        y_index = {v: i for i, v in enumerate(self.y_names)}
        self.both_y = np.array([y_index[v] for v in self.both], dtype=np.int64)
        self.z_u = np.arange(len(self.both), len(self.both) + len(model.z_names))

    # ------------------------------------------------------------------ moments
    def parts(self, theta):
        """The model at theta as the E- and M-steps use it: a dict with mu_y, sigma_w,
        mu_R, sigma_RR, C (|b| x |R|), and the between rows of the z variables
        (their means and regressions on v_R: exact observations)."""
        m = self.model.moments(theta)
        joint = between_cov(m)
        mean_u = np.concatenate([m.mu_y[m.between_index], m.mu_z])
        r = self.r_index
        s_rr = joint[np.ix_(r, r)]
        solve = np.linalg.solve(s_rr, joint[r, :])          # Sigma_RR^-1 Sigma_RU
        weights = solve.T                                     # U x R regression on v_R
        return {"moments": m, "mu_y": m.mu_y, "sigma_w": m.sigma_w, "mean_u": mean_u,
                "mu_R": mean_u[r], "sigma_RR": s_rr, "joint": joint,
                "C": weights[:len(self.both)], "Z": weights[self.z_u]}

    # ------------------------------------------------------------------ Q
    def q_and_gradient(self, theta, stats):
        """Q(theta) = E[complete-data log-likelihood] (constants dropped) and its
        gradient in theta; (-inf, None) where Sigma_w or Sigma_RR is not positive
        definite."""
        try:
            parts = self.parts(theta)
            lw = np.linalg.cholesky(parts["sigma_w"])
            lr = np.linalg.cholesky(parts["sigma_RR"])
        except np.linalg.LinAlgError:
            return -np.inf, None
        m = parts["moments"]
        p, nb = len(self.y_names), len(self.both)
        mu_r, s_rr, c = parts["mu_R"], parts["sigma_RR"], parts["C"]
        emb = np.zeros((p, nb))
        emb[self.both_y, np.arange(nb)] = 1.0
        d = emb @ c                                           # P x R
        shift = m.mu_y - d @ mu_r                             # c in docs/em.md
        n, j = stats.n_rows, stats.n_clusters
        # within: residuals r = y - shift - D v_R
        r1 = stats.y1 - n * shift - d @ stats.v1n
        rv = stats.yv - np.outer(shift, stats.v1n) - d @ stats.v2n
        w = (stats.y2 - stats.yv @ d.T - d @ stats.yv.T + d @ stats.v2n @ d.T
             - np.outer(r1 + n * shift, shift) - np.outer(shift, stats.y1 - d @ stats.v1n)
             + n * np.outer(shift, shift))
        w = 0.5 * (w + w.T)
        a = np.linalg.inv(parts["sigma_w"])
        q_w = -n * np.sum(np.log(np.diag(lw))) - 0.5 * np.sum(a * w)
        # between: v_R ~ N(mu_R, Sigma_RR)
        m_r = stats.t2 - np.outer(mu_r, stats.t1) - np.outer(stats.t1, mu_r) + j * np.outer(mu_r, mu_r)
        s_inv = np.linalg.inv(s_rr)
        q_b = -j * np.sum(np.log(np.diag(lr))) - 0.5 * np.sum(s_inv * m_r)

        # gradient with respect to the moments, then J' g
        g_sw = -0.5 * n * a + 0.5 * a @ w @ a
        ar1 = a @ r1
        g_mu_y = ar1.copy()                                   # through shift
        g_mu_u = np.zeros(len(self.u_names))
        g_mu_u[self.r_index] += -(d.T @ ar1) + s_inv @ (stats.t1 - j * mu_r)
        g_c = emb.T @ (a @ rv) - np.outer(emb.T @ ar1, mu_r)  # dQ/dC, |b| x |R|
        g_joint = np.zeros((len(self.u_names),) * 2)
        r = self.r_index
        bpos = np.arange(nb)
        g_joint[np.ix_(bpos, r)] += g_c @ s_inv               # through Sigma_bR
        g_joint[np.ix_(r, r)] += -c.T @ g_c @ s_inv           # through Sigma_RR in C
        g_joint[np.ix_(r, r)] += -0.5 * j * s_inv + 0.5 * s_inv @ m_r @ s_inv
        g_joint = 0.5 * (g_joint + g_joint.T)
        g_between = between_cov_gradient(g_joint, m)
        g_mu_y[m.between_index] += g_mu_u[:nb]
        g = Moments.unchecked(g_mu_y, g_mu_u[nb:], g_sw, g_between.sigma_b,
                              g_between.sigma_zz, g_between.sigma_yz, between=m.between_mask)
        grad = self.model.jacobian(theta).T @ flatten_gradient(g)
        return q_w + q_b, grad

    # ------------------------------------------------------------------ curvature
    def information(self, theta, stats) -> np.ndarray | None:
        """The complete-data information at theta, J_phi' I_phi J_phi: the Hessian of -Q
        without the terms in second derivatives of the model (Fisher scoring's matrix;
        the M-step's Newton steps start from it). phi are the complete-data parameters
        (shift, D, Sigma_w; mu_R, Sigma_RR); their derivatives come from the model's
        analytic Jacobian, C = Sigma_bR Sigma_RR^-1 differentiated as
        dC = (dSigma_bR - C dSigma_RR) Sigma_RR^-1. The within mean part uses the
        expected statistics (sums of E[v_R], E[v_R v_R'] over rows). None where Sigma_w or
        Sigma_RR is not positive definite."""
        parts = self.parts(theta)
        try:
            lw = np.linalg.cholesky(parts["sigma_w"])
            lr = np.linalg.cholesky(parts["sigma_RR"])
        except np.linalg.LinAlgError:
            return None
        m = parts["moments"]
        jt = self.model.moments_vector_and_jacobian(theta)[1].T      # npar x n_moments
        npar = jt.shape[0]
        p, k = m.mu_y.size, m.mu_z.size
        nb, r = len(self.both), self.r_index
        # the moment blocks of every column of the Jacobian (flatten_moments' order)
        cut = np.cumsum([p, k, p * p, p * p, k * k, p * k])
        d_mu_y, d_mu_z = jt[:, :cut[0]], jt[:, cut[0]:cut[1]]
        d_sw = jt[:, cut[1]:cut[2]].reshape(npar, p, p)
        d_sb = jt[:, cut[2]:cut[3]].reshape(npar, p, p)
        d_szz = jt[:, cut[3]:cut[4]].reshape(npar, k, k)
        d_syz = jt[:, cut[4]:cut[5]].reshape(npar, p, k)
        idx = m.between_index
        d_joint = np.concatenate([
            np.concatenate([d_sb[:, idx][:, :, idx], d_syz[:, idx]], axis=2),
            np.concatenate([d_syz[:, idx].transpose(0, 2, 1), d_szz], axis=2)], axis=1)
        d_mean_u = np.concatenate([d_mu_y[:, idx], d_mu_z], axis=1)
        s_rr, c, mu_r = parts["sigma_RR"], parts["C"], parts["mu_R"]
        s_inv = np.linalg.inv(s_rr)
        d_srr = d_joint[:, r][:, :, r]
        d_c = (d_joint[:, :nb][:, :, r] - c @ d_srr) @ s_inv          # npar x |b| x |R|
        d_d = np.zeros((npar, p, r.size))
        d_d[:, self.both_y] = d_c
        d = np.zeros((p, r.size))
        d[self.both_y] = c
        d_mu_r = d_mean_u[:, r]
        d_shift = d_mu_y - d_d @ mu_r - d_mu_r @ d.T
        n, j = float(stats.n_rows), float(stats.n_clusters)

        lw_inv = _lower_inverse(lw)
        lr_inv = _lower_inverse(lr)
        x_w = (lw_inv @ d_sw @ lw_inv.T).reshape(npar, -1)            # L^-1 dSigma L^-T
        x_b = (lr_inv @ d_srr @ lr_inv.T).reshape(npar, -1)
        # within means: rows y = shift + D v_R + e; E over v_R from the statistics
        second = np.block([[np.array([[n]]), stats.v1n[None, :]],
                           [stats.v1n[:, None], stats.v2n]])
        try:
            l_m = np.linalg.cholesky(0.5 * (second + second.T))
        except np.linalg.LinAlgError:
            return None
        g = np.concatenate([d_shift[:, :, None], d_d], axis=2)          # npar x P x (1+R)
        y_w = (lw_inv @ g @ l_m).reshape(npar, -1)
        y_b = d_mu_r @ lr_inv.T
        return (0.5 * n * x_w @ x_w.T + y_w @ y_w.T
                + 0.5 * j * x_b @ x_b.T + j * y_b @ y_b.T)


def _lower_inverse(lower):
    from scipy.linalg import solve_triangular

    return solve_triangular(lower, np.eye(lower.shape[0]), lower=True)
