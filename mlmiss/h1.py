"""The saturated (h1) model: unrestricted within and between means and covariances.

Level 1 over the level-1 variables (within-only and "both"), level 2 over the "both"
and between-only variables, means as in every two-level model (within-only variables
at level 1, the others at level 2). It is fitted by FIML directly in moment space, on
the Cholesky factors of the two covariance matrices (:class:`SaturatedFit`), from the
observed moments; as a fallback, like any other model from lavaan-style syntax that
frees every variance and covariance (:func:`saturated_syntax`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from .start import level_statistics


@dataclass
class H1:
    """A fitted unrestricted model. With fixed_x=True the covariates' marginal
    log-likelihood is subtracted, as for the model itself (``offset``)."""

    fit: object
    offset: float = 0.0

    @property
    def loglik(self) -> float:
        return self.fit.loglik - self.offset

    @property
    def npar(self) -> int:
        return self.fit.npar

    @property
    def converged(self) -> bool:
        return self.fit.converged

    @property
    def moments(self):
        return self.fit.implied()["moments"]


def saturated_syntax(within_names, between_names) -> str:
    """Every variance and covariance free at each level."""
    lines = ["level: 1"]
    for i, a in enumerate(within_names):
        lines.append(f"  {a} ~~ " + " + ".join(within_names[i:]))
    lines.append("level: 2")
    for i, a in enumerate(between_names):
        lines.append(f"  {a} ~~ " + " + ".join(between_names[i:]))
    return "\n".join(lines) + "\n"


def saturated_start(partable, data) -> np.ndarray:
    """Observed variances (within, between, of z) and means; covariances 0."""
    within, between, means, z_var, z_mean = level_statistics(data)
    y_index = {n: i for i, n in enumerate(data.y_names)}
    z_index = {n: i for i, n in enumerate(data.z_names)}
    theta = np.zeros(partable.npar)
    for row in partable.table.itertuples(index=False):
        if row.free == 0:
            continue
        name = row.lhs
        if row.op == "~1":
            value = z_mean[z_index[name]] if name in z_index else means[y_index[name]]
        elif row.lhs == row.rhs:
            if name in z_index:
                value = z_var[z_index[name]]
            else:
                value = (within if row.level == 1 else between)[y_index[name]]
            value = value if np.isfinite(value) and value > 0 else 1.0
        else:
            value = 0.0
        theta[row.free - 1] = value
    return theta


def fit_h1(fit):
    """Fit the unrestricted model to ``fit``'s data (same variables, same rows).

    Directly in moment space first (:class:`SaturatedFit`, L-BFGS on Cholesky factors:
    0.1 s for paper_like's 202 parameters); should that not converge, as a model from
    :func:`saturated_syntax` with the trust-region optimizer."""
    from .estimate import sem
    from .partable import parameter_table

    data = fit.data
    offset = fit.extra.get("covariate_loglik", 0.0)
    both = [n for n in data.y_names if n in set(fit.partable.both_names)]
    direct = SaturatedFit(data, both)
    with threadpool_limits(1, user_api="blas"):
        result = minimize(direct.f_and_grad, direct.start(), jac=True, method="L-BFGS-B",
                          options={"maxiter": 5000, "maxfun": 20000, "gtol": 1e-10,
                                   "ftol": 1e-16, "maxcor": 50})
    if np.max(np.abs(result.jac)) <= 1e-6:
        return DirectH1(direct, result.x, -result.fun * data.n_obs, True, offset)
    syntax = saturated_syntax(list(data.y_names), both + list(data.z_names))
    start = saturated_start(parameter_table(syntax), data)
    return H1(sem(syntax, data, cluster=None, start=start), offset=offset)


# ---------------------------------------------------------------- direct fit
class SaturatedFit:
    """The saturated model fitted directly in moment space: theta holds the free means
    and the Cholesky factors of the within covariance and of the joint between
    covariance of the "both" and between-only variables. Every theta gives positive
    definite matrices, so L-BFGS needs no guard against inadmissible steps."""

    def __init__(self, data, both):
        self.data = data
        p, k = data.n_y, data.n_z
        self.p, self.k = p, k
        self.both = np.array([data.y_names.index(n) for n in both], dtype=np.int64)
        self.within_only = np.setdiff1d(np.arange(p), self.both)
        self.m = self.both.size + k                       # between variables
        self.tril_w = np.tril_indices(p)
        self.tril_b = np.tril_indices(self.m)
        self.sizes = (self.within_only.size, self.m, self.tril_w[0].size, self.tril_b[0].size)

    @property
    def npar(self) -> int:
        return int(sum(self.sizes))

    def split(self, theta):
        a, b, c, _ = self.sizes
        lw = np.zeros((self.p, self.p))
        lw[self.tril_w] = theta[a + b:a + b + c]
        lb = np.zeros((self.m, self.m))
        lb[self.tril_b] = theta[a + b + c:]
        return theta[:a], theta[a:a + b], lw, lb

    def moments(self, theta):
        from .moments import Moments

        mean_w, mean_b, lw, lb = self.split(theta)
        nb = self.both.size
        mu_y = np.zeros(self.p)
        mu_y[self.within_only] = mean_w
        mu_y[self.both] = mean_b[:nb]
        joint = lb @ lb.T
        sigma_b = np.zeros((self.p, self.p))
        sigma_b[np.ix_(self.both, self.both)] = joint[:nb, :nb]
        sigma_yz = np.zeros((self.p, self.k))
        sigma_yz[self.both, :] = joint[:nb, nb:]
        return Moments.unchecked(mu_y, mean_b[nb:], lw @ lw.T, sigma_b, joint[nb:, nb:], sigma_yz)

    def start(self):
        """Observed means and variances, no covariances."""
        within, between, means, z_var, z_mean = level_statistics(self.data)
        b_var = np.concatenate([between[self.both], z_var])
        lw = np.diag(np.sqrt(np.where(np.isfinite(within) & (within > 0), within, 1.0)))
        lb = np.diag(np.sqrt(np.where(np.isfinite(b_var) & (b_var > 0), b_var, 1.0)))
        return np.concatenate([means[self.within_only], means[self.both], z_mean,
                               lw[self.tril_w], lb[self.tril_b]])

    def f_and_grad(self, theta):
        from .gradient import loglik_and_gradient

        n = float(self.data.n_obs)
        value, g = loglik_and_gradient(self.data, self.moments(theta))
        if g is None:
            return 1e20, np.zeros_like(theta)
        _, _, lw, lb = self.split(theta)
        nb = self.both.size
        g_joint = np.zeros((self.m, self.m))
        g_joint[:nb, :nb] = g.sigma_b[np.ix_(self.both, self.both)]
        g_joint[:nb, nb:] = 0.5 * g.sigma_yz[self.both, :]
        g_joint[nb:, :nb] = g_joint[:nb, nb:].T
        g_joint[nb:, nb:] = g.sigma_zz
        grad = np.concatenate([g.mu_y[self.within_only], g.mu_y[self.both], g.mu_z,
                               (2.0 * g.sigma_w @ lw)[self.tril_w], (2.0 * g_joint @ lb)[self.tril_b]])
        return -value / n, -grad / n


@dataclass
class DirectH1:
    """The saturated model from :class:`SaturatedFit` (same interface as :class:`H1`)."""

    model: SaturatedFit
    theta: np.ndarray
    joint_loglik: float
    converged: bool
    offset: float = 0.0

    @property
    def loglik(self) -> float:
        return self.joint_loglik - self.offset

    @property
    def npar(self) -> int:
        return self.model.npar

    @property
    def moments(self):
        return self.model.moments(self.theta)
