"""The admissible region of a two-level model, and fits that end on its edge.

The log-likelihood is defined wherever Sigma_w and every cluster's covariance
V_j = n_j Sigma_b + Sigma_w (with the between-only block) are positive definite, which
lets the between covariance Sigma_b be indefinite. There the likelihood can climb above
the saturated model's (whose Sigma_b is positive semidefinite by construction) and an
optimizer wanders without converging: a "both" variable whose between variance is near
zero, or a few clusters, sent fits into indefinite Sigma_b and to their iteration caps.

**Policy** (``between_psd=True``, the default): the model-implied joint between
covariance of the level-2 variables (:func:`mlmiss.data.levels.between_cov`) must be
positive semidefinite, as a covariance matrix is. Heywood cases in the parameters (a
negative residual variance with an implied Sigma_b that is still positive
semidefinite) stay admissible, as in lavaan. A maximum on the edge of the region (a
singular Sigma_b that the data push further) is a *boundary solution*: it is found by
:func:`fit_on_boundary` (SLSQP with the eigenvalues of Sigma_b as constraints) and
counts as converged when the Karush-Kuhn-Tucker conditions hold: the gradient lies in
the cone the active constraints span. ``between_psd=False`` keeps the wider region
where the likelihood is defined (lavaan accepts eigenvalues down to -0.05).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..data.levels import between_cov, between_cov_gradient
from ..threads import one_blas_thread

#: what optimizers see where theta is not admissible: a value that sends a line search
#: or a trust region back
INADMISSIBLE = 1e20
#: an eigenvalue of Sigma_b above -PSD_TOLERANCE x its largest one counts as >= 0
PSD_TOLERANCE = 1e-9
#: eigenvalues below ACTIVE x the largest one are on the edge in the KKT test
ACTIVE = 1e-6
#: SLSQP is restarted (at most RESTARTS times) while the KKT remainder exceeds this
KKT_RESTART = 1e-8
RESTARTS = 2


def between_eigenvalues(moments) -> np.ndarray:
    """The eigenvalues of the joint between covariance, ascending (NaN for a wild
    trial step with non-finite moments)."""
    return _eigenvalues(between_cov(moments))


def _eigenvalues(joint) -> np.ndarray:
    if not np.all(np.isfinite(joint)):
        return np.full(joint.shape[0], np.nan)
    return np.linalg.eigvalsh(joint)


def between_is_psd(moments) -> bool:
    """Whether the joint between covariance is positive semidefinite (to round-off)."""
    joint = between_cov(moments)
    if joint.size and np.all(np.isfinite(joint)):
        try:   # positive definite, the usual case, costs a Cholesky factor
            np.linalg.cholesky(joint)
            return True
        except np.linalg.LinAlgError:
            pass
    values = _eigenvalues(joint)
    return values.size == 0 or bool(values[0] >= -PSD_TOLERANCE * max(abs(values[-1]), 1e-300))


def off_the_edge(moments) -> bool:
    """Whether the joint between covariance is comfortably positive definite (no
    eigenvalue on the edge in the sense of the KKT test)."""
    values = between_eigenvalues(moments)
    return values.size == 0 or bool(values[0] > ACTIVE * abs(values[-1]))


class BetweenEigenvalues:
    """The eigenvalues of Sigma_b(theta) (divided by the largest at the start, so they
    are of order one) and their derivatives in u = theta / scales, as SLSQP's
    inequality constraints ``c(u) >= 0``."""

    def __init__(self, problem, scales, theta0):
        self.problem = problem
        self.scales = scales
        top = between_eigenvalues(problem.moments(theta0))
        self.unit = max(abs(top[-1]), 1e-300) if top.size else 1.0

    def pairs(self, u):
        values, vectors = np.linalg.eigh(between_cov(self.problem.moments(self.scales * u)))
        return values / self.unit, vectors

    def values(self, u):
        return self.pairs(u)[0]

    def derivative(self, u, a, b):
        """d (a' Sigma_b b) / du for unit vectors a, b of the joint between space."""
        theta = self.scales * u
        outer = 0.5 * (np.outer(a, b) + np.outer(b, a))
        template = self.problem.moments(theta)
        g = between_cov_gradient(outer, template)
        return self.problem.gradient_of_moments(theta, g) * self.scales / self.unit

    def jacobian(self, u):
        _, vectors = self.pairs(u)
        return np.array([self.derivative(u, v, v) for v in vectors.T])

    def active(self, u):
        """(eigenvectors of the eigenvalues on the edge, the derivatives of
        a' Sigma_b b for every pair of them (i <= j), the pairs as index pairs into
        those eigenvectors)."""
        values, vectors = self.pairs(u)
        on_edge = vectors[:, values <= ACTIVE]
        pairs = [(i, j) for i in range(on_edge.shape[1]) for j in range(i, on_edge.shape[1])]
        rows = np.array([self.derivative(u, on_edge[:, i], on_edge[:, j]) for i, j in pairs])
        return on_edge, rows, pairs


def kkt_residual(constraints, u, gradient) -> float:
    """How far the gradient of f (to be minimized) is from the cone of the active
    constraints: with V the eigenvectors of the (near) zero eigenvalues, the gradient
    must be J' vec(V M V') for some M >= 0. The largest element of the remainder; the
    largest element of the gradient itself when M has a clearly negative eigenvalue (the
    data pull away from the edge, so the point is no maximum)."""
    on_edge, rows, pairs = constraints.active(u)
    if not pairs:
        return float(np.max(np.abs(gradient)))
    # rows are rank deficient at a degenerate edge (a factor with zero variance): the
    # null directions are cut off well above round-off (rcond=None kept 1e-13 ones and
    # returned weights of 1e7)
    weights, *_ = np.linalg.lstsq(rows.T, gradient, rcond=1e-10)
    remainder = gradient - rows.T @ weights
    m = np.zeros((on_edge.shape[1],) * 2)
    for (i, j), w in zip(pairs, weights):
        m[i, j] = m[j, i] = w if i == j else 0.5 * w
    smallest = np.linalg.eigvalsh(m)[0]
    if smallest < -1e-3 * max(1.0, np.max(np.abs(weights))):
        return float(np.max(np.abs(gradient)))
    return float(np.max(np.abs(remainder)))


def fit_on_boundary(problem, theta0, maxiter: int = 500, deadline: float | None = None,
                    on_iteration=None):
    """Maximize the log-likelihood with Sigma_b constrained positive semidefinite, from
    theta0 (an admissible point near the edge, e.g. where a trust region stalled).
    ``on_iteration()`` is called after each iteration (a progress line).

    Returns (theta, f, kkt, iterations, message): f = -logl/N at theta, kkt the
    remainder of :func:`kkt_residual` in the scaled parameters."""
    from scipy.optimize import minimize

    scales = np.asarray(problem.scales, dtype=float)
    n = float(problem.data.n_obs)
    constraints = BetweenEigenvalues(problem, scales, theta0)

    def f_and_grad(u):
        # SLSQP may step a little past the edge: there the unguarded likelihood
        # (not problem.f_and_grad: SLSQP's end on between_small moved with the last bit of
        # this arithmetic, KKT remainder 2.3e-10 here against 4.4e-5 that way)
        value, g = problem.loglik_and_gradient(scales * u, guard=False)
        if g is None:
            return INADMISSIBLE, np.zeros_like(u)
        return -value / n, -g * scales / n

    def stop_at_deadline(u):
        if on_iteration is not None:
            on_iteration()
        if deadline is not None and time.perf_counter() > deadline:
            raise StopIteration

    u0 = np.asarray(theta0, dtype=float) / scales
    u, iterations = u0, 0
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # SLSQP may report success where its line search stalled short of the KKT point
        # (between_small: remainder 4.4e-5 or 2.3e-10 depending on the last bit of the
        # moments' arithmetic); a restart from there, with a fresh quasi-Newton matrix,
        # finishes the job
        for _ in range(RESTARTS + 1):
            result = minimize(f_and_grad, u, jac=True, method="SLSQP",
                              callback=stop_at_deadline,
                              constraints=[{"type": "ineq", "fun": constraints.values,
                                            "jac": constraints.jacobian}],
                              options={"maxiter": maxiter - iterations, "ftol": 1e-15})
            iterations += int(result.nit)
            # onto the region (SLSQP's last step may leave it by round-off)
            u = _inside(problem, scales, np.asarray(result.x, dtype=float), u0)
            value, g = f_and_grad(u)
            kkt = kkt_residual(constraints, u, g)
            if (kkt <= KKT_RESTART or iterations >= maxiter or not result.success
                    or (deadline is not None and time.perf_counter() > deadline)):
                break
    return scales * u, value, kkt, iterations, str(result.message)


def _inside(problem, scales, u, u0):
    """u if it is admissible (likelihood defined, Sigma_b positive semidefinite), else
    the admissible point nearest to it on the segment back to u0 (admissible)."""
    def admissible(point):
        return np.isfinite(problem.loglik(scales * point))

    if admissible(u):
        return u
    low, high = 0.0, 1.0   # fraction of the way from u0 to u
    for _ in range(60):
        middle = 0.5 * (low + high)
        if admissible(u0 + middle * (u - u0)):
            low = middle
        else:
            high = middle
    return u0 + low * (u - u0)


def tangent_basis(problem, theta):
    """At a boundary solution: an orthonormal basis Z (in the scaled parameters
    u = theta / scales) of the directions that keep the zero eigenvalues of Sigma_b at
    zero to first order, with the eigenvectors of those zero eigenvalues; (None, None)
    when Sigma_b is not on the edge. Standard errors there come from the information
    projected on Z, as for active constraints."""
    scales = np.asarray(problem.scales, dtype=float)
    constraints = BetweenEigenvalues(problem, scales, theta)
    on_edge, rows, pairs = constraints.active(np.asarray(theta, dtype=float) / scales)
    if not pairs:
        return None, None
    _, singular, vt = np.linalg.svd(rows)
    rank = int(np.sum(singular > 1e-10 * max(singular[0], 1e-300)))
    return vt[rank:].T, on_edge
