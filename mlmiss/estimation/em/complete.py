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

from ...data.levels import between_cov
from ...model.ram import TwoLevelModel
from .q_kernels import information_factor, information_width, q_and_moment_gradient


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
        self._maps = self._moment_maps()
        self._last = None
        self._width = information_width(len(self.y_names), self.r_index.size)

    def _moment_maps(self):
        """Where the complete model's flattened moments hold mu_y, Sigma_w, the level-2
        means (over U) and the joint level-2 covariance (U x U), for the kernels of
        :mod:`.q_kernels`; then the random nodes R and the rows of b in y."""
        o = self.model.offsets
        p, k = len(self.y_names), len(self.model.z_names)
        b = self.both_y
        nb = b.size
        mu_pos = o["mu_y"] + np.arange(p)
        sw_pos = o["sigma_w"] + np.arange(p * p).reshape(p, p)
        mean_pos = np.concatenate([o["mu_y"] + b, o["mu_z"] + np.arange(k)])
        joint_pos = np.empty((nb + k, nb + k), dtype=np.int64)
        joint_pos[:nb, :nb] = o["sigma_b"] + b[:, None] * p + b[None, :]
        yz = o["sigma_yz"] + b[:, None] * k + np.arange(k)[None, :]
        joint_pos[:nb, nb:] = yz
        joint_pos[nb:, :nb] = yz.T
        joint_pos[nb:, nb:] = o["sigma_zz"] + np.arange(k * k).reshape(k, k)
        return (mu_pos.astype(np.int64), sw_pos.astype(np.int64), mean_pos.astype(np.int64),
                joint_pos, self.r_index.astype(np.int64), b.astype(np.int64))

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
        return {"mu_y": m.mu_y, "sigma_w": m.sigma_w, "mean_u": mean_u,
                "mu_R": mean_u[r], "sigma_RR": s_rr,
                "C": weights[:len(self.both)], "Z": weights[self.z_u]}

    def _moments_and_jacobian(self, theta):
        """The complete model's moments vector and Jacobian at theta; the last pair is
        kept, for the M-step asks for the information where it has just evaluated Q."""
        key = np.asarray(theta, dtype=float).tobytes()
        if self._last is None or self._last[0] != key:
            self._last = (key, *self.model.moments_vector_and_jacobian(theta))
        return self._last[1], self._last[2]

    # ------------------------------------------------------------------ Q
    def q_and_gradient(self, theta, stats):
        """Q(theta) = E[complete-data log-likelihood] (constants dropped) and its
        gradient in theta; (-inf, None) where Sigma_w or Sigma_RR is not positive
        definite."""
        vec, jac = self._moments_and_jacobian(theta)
        grad = np.zeros(vec.size)
        q = q_and_moment_gradient(vec, *self._maps, float(stats.n_rows),
                                  float(stats.n_clusters), stats.t1, stats.t2, stats.y1,
                                  stats.y2, stats.yv, stats.v1n, stats.v2n, grad)
        if np.isnan(q):
            return -np.inf, None
        return q, jac.T @ grad

    # ------------------------------------------------------------------ curvature
    def information(self, theta, stats) -> np.ndarray | None:
        """The complete-data information at theta, J_phi' I_phi J_phi: the Hessian of -Q
        without the terms in second derivatives of the model (Fisher scoring's matrix;
        the M-step's Newton steps start from it). phi are the complete-data parameters
        (shift, D, Sigma_w; mu_R, Sigma_RR); their derivatives come from the model's
        analytic Jacobian, C = Sigma_bR Sigma_RR^-1 differentiated as
        dC = (dSigma_bR - C dSigma_RR) Sigma_RR^-1. The within mean part uses the
        expected statistics (sums of E[v_R], E[v_R v_R'] over rows). None where Sigma_w,
        Sigma_RR or those sums are not positive definite."""
        vec, jac = self._moments_and_jacobian(theta)
        rows = np.empty((self.npar, self._width))
        if information_factor(jac.T, vec, *self._maps, float(stats.n_rows),
                              float(stats.n_clusters), stats.v1n, stats.v2n, rows):
            return None
        return rows @ rows.T
