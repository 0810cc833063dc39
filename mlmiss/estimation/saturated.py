"""The saturated (h1) model: unrestricted within and between means and covariances.

Level 1 over the level-1 variables (within-only and "both"), level 2 over the "both"
and between-only variables, means as in every two-level model (within-only variables
at level 1, the others at level 2). It is fitted by FIML directly in moment space, on
the Cholesky factors of the two covariance matrices (:class:`SaturatedProblem`), from
the observed moments; as a fallback, like any other model, from lavaan-style syntax
that frees every variance and covariance (:func:`saturated_syntax`). ``method="em"``
fits it by EM instead, whose M-step is closed-form here (:mod:`.em.saturated`).
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np

from ..data.levels import from_levels, gradient_between_cov
from ..errors import ConvergenceWarning
from ..likelihood import loglik_and_gradient
from ..model.partable import parameter_table
from ..model.start import level_statistics
from .optimizers import optimize
from .problem import Objective, Problem
from .reference import ReferenceFit
from .scaling import power_of_ten


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


H1_METHODS = ("auto", "direct", "em")
#: EM steps of the "auto" h1 fit before L-BFGS takes over: EM gains most at first and
#: slows down where the between part holds little information (a 150-cluster CFA: 81
#: SQUAREM cycles, 0.45 s, against 0.06 s for 10 cycles and L-BFGS)
H1_EM_STEPS = 10


def saturated_problem(data, between_mask) -> Problem:
    """The unrestricted model as a model from :func:`saturated_syntax` (lavaan's h1
    parameters: per level the means and covariances of its variables) on ``data``."""
    both = [n for n, b in zip(data.y_names, between_mask) if b]
    return Problem(parameter_table(saturated_syntax(list(data.y_names),
                                                    both + list(data.z_names))), data)


def fit_saturated(problem, method: str = "auto") -> ReferenceFit:
    """Fit the unrestricted model to ``problem``'s data (same variables, same rows).

    In moment space first (:class:`SaturatedProblem`), by ``method``: "em", EM with the
    closed-form M-step, each step one gradient (:mod:`.em.saturated`); "direct", L-BFGS
    on the Cholesky factors; "auto" (the default), at most :data:`H1_EM_STEPS` EM
    cycles, then L-BFGS from there (paper_like's 202 parameters: 0.04 s, against 0.04 s
    by EM and 0.1 s by L-BFGS alone). Should that not converge, as a model from
    :func:`saturated_syntax` with the trust-region optimizer."""
    if method not in H1_METHODS:
        raise ValueError(f"unknown h1 method {method!r}; use one of {H1_METHODS}")
    data = problem.data
    between = problem.model.between_mask
    direct = SaturatedProblem(data, between)
    start = direct.start()
    if method != "direct":
        limit = {"em_iter_max": H1_EM_STEPS} if method == "auto" else {}
        with warnings.catch_warnings():
            if method == "auto":   # capped on purpose: L-BFGS goes on from there
                warnings.simplefilter("ignore", ConvergenceWarning)
            estimate = optimize(direct, start, "em", label="h1 model", em_options=limit)
        start = estimate.theta
    if method == "direct" or (method == "auto" and not estimate.converged):
        estimate = optimize(direct, start, "L-BFGS-B", maxiter=5000, gtol=1e-10,
                            label="h1 model")
    if estimate.converged:
        return ReferenceFit(direct, estimate, problem.covariate_loglik)
    fallback = saturated_problem(data, between)
    estimate = optimize(fallback, saturated_start(fallback.partable, data), "trust-exact",
                        label="h1 model")
    return ReferenceFit(fallback, estimate, problem.covariate_loglik)


class SaturatedProblem(Objective):
    """The saturated model in moment space: theta holds the free means and the Cholesky
    factors of the within covariance and of the joint between covariance of the "both"
    and between-only variables. Every theta gives positive definite matrices, so L-BFGS
    needs no guard against inadmissible steps."""

    between_psd = False   # positive semidefinite by construction: no check needed

    def __init__(self, data, between_mask):
        self.data = data
        self.between_mask = np.asarray(between_mask, dtype=bool)
        p, k = data.n_y, data.n_z
        self.p = p
        self.both = np.flatnonzero(self.between_mask)
        self.within_only = np.flatnonzero(~self.between_mask)
        self.m = self.both.size + k                       # between variables
        self.tril_w = np.tril_indices(p)
        self.tril_b = np.tril_indices(self.m)
        self.sizes = (self.within_only.size, self.m, self.tril_w[0].size, self.tril_b[0].size)
        self.npar = int(sum(self.sizes))
        self._last = None

    def split(self, theta):
        a, b, c, _ = self.sizes
        lw = np.zeros((self.p, self.p))
        lw[self.tril_w] = theta[a + b:a + b + c]
        lb = np.zeros((self.m, self.m))
        lb[self.tril_b] = theta[a + b + c:]
        return theta[:a], theta[a:a + b], lw, lb

    def moments(self, theta):
        mean_w, mean_b, lw, lb = self.split(theta)
        within_mean = np.zeros(self.p)
        within_mean[self.within_only] = mean_w
        return from_levels(within_mean, lw @ lw.T, mean_b, lb @ lb.T, self.between_mask,
                           checked=False)

    def moment_gradient(self, theta):
        """(logl, its gradient in the moments) at theta, the last one kept: the EM step
        (:mod:`.em.saturated`) and the test of its convergence read the same one."""
        key = np.asarray(theta, dtype=float).tobytes()
        if self._last is None or self._last[0] != key:
            self._last = (key, loglik_and_gradient(self.data, self.moments(theta)))
        return self._last[1]

    def loglik_and_gradient(self, theta, guard: bool = True):
        value, g = self.moment_gradient(theta)
        return value, (None if g is None else self.gradient_of_moments(theta, g))

    def gradient_of_moments(self, theta, g):
        _, _, lw, lb = self.split(theta)
        g_joint = gradient_between_cov(g)
        return np.concatenate([g.mu_y[self.within_only], g.mu_y[self.both], g.mu_z,
                               (2.0 * g.sigma_w @ lw)[self.tril_w],
                               (2.0 * g_joint @ lb)[self.tril_b]])

    @cached_property
    def scales(self) -> np.ndarray:
        """A mean and a row of a Cholesky factor are in the units of their variable
        (:mod:`.scaling`)."""
        within, between, _, z_var, _ = level_statistics(self.data)
        unit_w = np.array([power_of_ten(v) for v in within])
        unit_b = np.array([power_of_ten(v) for v in np.concatenate([between[self.both], z_var])])
        return np.concatenate([unit_w[self.within_only], unit_b, unit_w[self.tril_w[0]],
                               unit_b[self.tril_b[0]]])

    def em_steps(self):
        """The EM map with its closed-form M-step (:mod:`.em.saturated`)."""
        from .em.saturated import SaturatedSteps
        return SaturatedSteps(self)

    def start(self):
        """Observed means and variances, no covariances."""
        within, between, means, z_var, z_mean = level_statistics(self.data)
        b_var = np.concatenate([between[self.both], z_var])
        lw = np.diag(np.sqrt(np.where(np.isfinite(within) & (within > 0), within, 1.0)))
        lb = np.diag(np.sqrt(np.where(np.isfinite(b_var) & (b_var > 0), b_var, 1.0)))
        return np.concatenate([means[self.within_only], means[self.both], z_mean,
                               lw[self.tril_w], lb[self.tril_b]])
