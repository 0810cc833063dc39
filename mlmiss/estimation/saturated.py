"""The saturated (h1) model: unrestricted within and between means and covariances.

Level 1 over the level-1 variables (within-only and "both"), level 2 over the "both"
and between-only variables, means as in every two-level model (within-only variables
at level 1, the others at level 2). It is fitted by FIML directly in moment space, on
the Cholesky factors of the two covariance matrices (:class:`SaturatedProblem`), from
the observed moments; as a fallback, like any other model, from lavaan-style syntax
that frees every variance and covariance (:func:`saturated_syntax`). ``method="em"``
fits it by EM instead, whose M-step is closed-form here (:mod:`.em.saturated`).

The default gets close by a few EM cycles and finishes by the Krylov trust region on
the moments themselves (:class:`SaturatedMoments`), in the metric of each level's
expected information (:mod:`mlmiss.likelihood.expected`). EM and L-BFGS on the
Cholesky factors both slow down where a level holds little information (few clusters
or a small intraclass correlation); in that metric the Hessian's eigenvalues stay near
one.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import cached_property

import numpy as np

from ..data.levels import between_cov, from_levels, gradient_between_cov
from ..errors import ConvergenceWarning
from ..likelihood import loglik_and_gradient
from ..likelihood.expected import covariance_information, level_information
from ..model.partable import parameter_table, table_rows
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
    for row in table_rows(partable.table):
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
#: EM cycles of the "auto" h1 fit before the trust region takes over: EM gains most at
#: first and slows down where the between part holds little information (a 150-cluster
#: CFA: 81 SQUAREM cycles, 0.45 s, against 0.02 s for 3 cycles and the trust region)
H1_EM_STEPS = 3
#: EM cycles before L-BFGS, should the trust region not converge
H1_EM_FALLBACK_STEPS = 10


def saturated_problem(data, between_mask) -> Problem:
    """The unrestricted model as a model from :func:`saturated_syntax` (lavaan's h1
    parameters: per level the means and covariances of its variables) on ``data``."""
    both = [n for n, b in zip(data.y_names, between_mask) if b]
    return Problem(parameter_table(saturated_syntax(list(data.y_names),
                                                    both + list(data.z_names))), data)


def fit_saturated(problem, method: str = "auto") -> ReferenceFit:
    """Fit the unrestricted model to ``problem``'s data (same variables, same rows).

    In moment space first, by ``method``: "em", EM with the closed-form M-step, each
    step one gradient (:mod:`.em.saturated`); "direct", L-BFGS on the Cholesky factors
    (:class:`SaturatedProblem`); "auto" (the default), :data:`H1_EM_STEPS` EM cycles,
    then the Krylov trust region on the moments in the metric of each level's expected
    information (:class:`SaturatedMoments`); should that not converge, more EM cycles
    from where the first ones ended and L-BFGS, on the Cholesky factors. Should all that
    not converge, as a model from :func:`saturated_syntax` with the trust-region
    optimizer."""
    if method not in H1_METHODS:
        raise ValueError(f"unknown h1 method {method!r}; use one of {H1_METHODS}")
    data = problem.data
    between = problem.model.between_mask
    direct = SaturatedProblem(data, between)
    start = direct.start()
    if method == "auto":
        finished, start = _em_then_trust_region(direct, start)   # else EM goes on from there
        if finished is not None:
            return ReferenceFit(*finished, problem.covariate_loglik)
    if method != "direct":
        limit = {"em_iter_max": H1_EM_FALLBACK_STEPS} if method == "auto" else {}
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


def _em_then_trust_region(direct, start):
    """The "auto" h1 fit: :data:`H1_EM_STEPS` EM cycles on the Cholesky factors, then
    the Krylov trust region on the moments, in the metric of
    :meth:`SaturatedMoments.metric`. Returns ((problem, estimate) or None where it does
    not converge, the EM cycles' end in ``direct``'s terms, for the fallback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # capped on purpose
        em = optimize(direct, start, "em", label="h1 model",
                      em_options={"em_iter_max": H1_EM_STEPS})
    moments = SaturatedMoments(direct)
    theta = moments.from_factors(em.theta)
    metric = moments.metric(theta)
    if metric is None:
        return None, em.theta
    # started outside the region (it cannot be, after EM) it reports no convergence
    estimate = optimize(moments, theta, "trust-krylov", gtol=1e-10, label="h1 model",
                        metric=metric)
    if not estimate.converged:
        return None, em.theta
    return (moments, dataclasses.replace(
        estimate, iterations=estimate.iterations + em.iterations, e_steps=em.e_steps,
        optimizer="em + " + estimate.optimizer, seconds=estimate.seconds + em.seconds)), em.theta


class SaturatedMoments(Objective):
    """The saturated model on its moments: theta holds the free means (as
    :class:`SaturatedProblem`'s) and the lower triangles of the within covariance and
    of the joint between covariance, row by row. Admissible where both are positive
    definite; a maximum on the edge is left to :class:`SaturatedProblem`."""

    between_psd = False   # no edge phase: admissible() asks for a positive definite Sigma_B

    def __init__(self, factors: SaturatedProblem):
        self.factors = factors
        self.data = factors.data
        self.npar = factors.npar
        a, b, c, _ = factors.sizes
        self._cuts = (a, a + b, a + b + c)
        # off the diagonal an element stands for two entries of its matrix
        self._twice_w = np.where(factors.tril_w[0] == factors.tril_w[1], 1.0, 2.0)
        self._twice_b = np.where(factors.tril_b[0] == factors.tril_b[1], 1.0, 2.0)

    def from_factors(self, theta) -> np.ndarray:
        """This problem's theta at the moments of :class:`SaturatedProblem`'s ``theta``."""
        f = self.factors
        mean_w, mean_b, lw, lb = f.split(theta)
        return np.concatenate([mean_w, mean_b, (lw @ lw.T)[f.tril_w], (lb @ lb.T)[f.tril_b]])

    def matrices(self, theta):
        """(means of the within-only variables, between means, within covariance,
        joint between covariance)."""
        f = self.factors
        a, ab, abc = self._cuts
        within = np.empty((f.p, f.p))
        within[f.tril_w] = theta[ab:abc]
        within.T[f.tril_w] = theta[ab:abc]
        between = np.empty((f.m, f.m))
        between[f.tril_b] = theta[abc:]
        between.T[f.tril_b] = theta[abc:]
        return theta[:a], theta[a:ab], within, between

    def moments(self, theta):
        mean_w, mean_b, within, between = self.matrices(theta)
        within_mean = np.zeros(self.factors.p)
        within_mean[self.factors.within_only] = mean_w
        return from_levels(within_mean, within, mean_b, between, self.factors.between_mask,
                           checked=False)

    def admissible(self, moments) -> bool:
        """Sigma_B positive definite (the engine itself refuses a sigma_w that is not)."""
        try:
            np.linalg.cholesky(between_cov(moments))
        except np.linalg.LinAlgError:
            return False
        return True

    def gradient_of_moments(self, theta, g):
        f = self.factors
        return np.concatenate([g.mu_y[f.within_only], g.mu_y[f.both], g.mu_z,
                               g.sigma_w[f.tril_w] * self._twice_w,
                               gradient_between_cov(g)[f.tril_b] * self._twice_b])

    @cached_property
    def scales(self) -> np.ndarray:
        """A mean in its variable's unit, a covariance in the product of two (:mod:`.scaling`)."""
        f = self.factors
        a, ab, abc = self._cuts
        unit = f.scales   # means, then rows of the Cholesky factors: one unit each
        unit_w = np.ones(f.p)
        unit_w[f.tril_w[0]] = unit[ab:abc]
        unit_b = unit[a:ab]
        return np.concatenate([unit[:ab], unit_w[f.tril_w[0]] * unit_w[f.tril_w[1]],
                               unit_b[f.tril_b[0]] * unit_b[f.tril_b[1]]])

    def metric(self, theta):
        """Each level's expected information about its moments over N
        (:func:`mlmiss.likelihood.expected.level_information`), block diagonal: an
        approximate Hessian of -logl / N; None where sigma_w has a singular block."""
        f = self.factors
        a, ab, abc = self._cuts
        try:
            info = level_information(self.data, self.moments(theta))
        except np.linalg.LinAlgError:
            return None
        out = np.zeros((self.npar, self.npar))
        out[:a, :a] = info.w_mean[np.ix_(f.within_only, f.within_only)]
        out[a:ab, a:ab] = info.b_mean
        out[ab:abc, ab:abc] = covariance_information(info.w_kron, *f.tril_w)
        out[abc:, abc:] = covariance_information(info.b_kron, *f.tril_b)
        return out / float(self.data.n_obs)
