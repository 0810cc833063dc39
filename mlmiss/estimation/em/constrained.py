"""EM under equality and inequality constraints: Bentler, Liang, Tang and Yuan (2011).

Their algorithm (Section 3, eqs. 6-9, 13, 19-22) is an augmented Lagrangian around one
EM-gradient step. At iteration j, with multipliers xi_j and penalty c_j:

* E-step at theta_j: the expected sufficient statistics, hence Q(. | theta_j);
* M_j(theta) = -Q(theta | theta_j) + xi_j' h(theta) + c_j sum phi(h_i(theta)) with
  phi(t) = t^2 / 2 (eqs. 6-7), computed divided by N (the scale of our optimizers);
  xi and c are in the paper's units, those of Q summed over the data (their eq. 11):
  in units of Q / N their start, xi_1 = 1 and c_1 = 1, would push N times harder, and
  on Bentler's model that sent 4 of 1,200 simulated fits to far worse stationary
  points (or none) where the paper's units reach the maximum in 20-60 iterations;
* one Newton-type step Delta = -H_j^-1 grad M_j (eq. 22) with H_j the complete-data
  information plus the constraints' curvature, sum (xi_i + c h_i) h_i'' + c h_i' h_i'^T
  (eqs. 19-21), halved (rho = 1, 1/2, 1/4, ...) until M_j does not increase (eqs. 8-9).
  Unlike the paper, Delta is first cut to length 1 in the scaled parameters (the
  unconstrained EM's M-step radius): on Bentler's model with linear constraints the
  unclipped first step from the start values ran to a region (a between variance of
  -17) the iteration never left, in 6 of 1,200 simulated data sets;
* c_{j+1} = 1.5 c_j and xi_{j+1} = xi_j + c_{j+1} h(theta_{j+1}) (Step 3).

The paper covers equalities h(theta) = 0. Inequalities g(theta) >= 0 enter the same way
through the usual augmented-Lagrangian term for them (Rockafellar's),
(max(0, mu - c g)^2 - mu^2) / (2 c), with mu <- max(0, mu - c g): zero while an
inequality is slack, the equality penalty while it binds.

The paper stops when successive iterates differ by less than 1e-6 (RMSE). An EM step is
short where EM is slow, so that rule can stop far from the maximum; we stop, as the
unconstrained EM does, when the maximum is reached: the KKT remainder (the gradient of
the observed-data -logl/N off the span of the active constraints' gradients,
:func:`mlmiss.estimation.constraints.kkt_remainder`) below ``em_dx_tol`` and the
constraints met to :data:`FEASIBLE`.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ...progress import progress_bar
from ...threads import one_blas_thread
from ..boundary import INADMISSIBLE
from ..constraints import kkt_remainder
from .algorithm import (
    M_STEP_RADIUS,
    EMSteps,
    _inverse_if_positive_definite,
    cap_reached,
)

#: Bentler et al.'s choices: xi_1 = (1, ..., 1), c_1 = 1, c_{j+1} = 1.5 c_j
MULTIPLIER_START = 1.0
PENALTY_START = 1.0
PENALTY_GROWTH = 1.5
#: the penalty (in units of Q / N) stops growing here: beyond it H_j's condition
#: number costs digits of the step, and the multipliers already carry the constraints
PENALTY_MAX = 1e8
#: a converged fit meets every constraint to this
FEASIBLE = 1e-9
#: the step halving gives up after this many halvings (a step of 2^-40)
HALVINGS = 40


class ConstrainedEMResult(NamedTuple):
    theta: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    e_steps: int
    message: str
    kkt: float
    violation: float


class _Lagrangian:
    """M_j of one iteration: -Q(. | theta_j)/N plus the constraint terms, with the
    multipliers and penalty of that iteration."""

    def __init__(self, complete, stats, constraints, xi, mu, c, n):
        self.complete, self.stats, self.constraints = complete, stats, constraints
        self.xi, self.mu, self.c, self.n = xi, mu, c, n

    def _combine(self, q, h, ineq) -> float:
        slack = np.maximum(0.0, self.mu - self.c * ineq)
        return float(-q / self.n + self.xi @ h + 0.5 * self.c * (h @ h)
                     + (slack @ slack - self.mu @ self.mu) / (2.0 * self.c))

    def value(self, theta) -> float:
        q, g = self.complete.q_and_gradient(theta, self.stats)
        if g is None:
            return np.inf
        h, ineq, _ = self.constraints.values(theta)
        return self._combine(q, h, ineq)

    def newton_step(self, theta, scales, columns, jacobians):
        """(Delta, M_j(theta)): Delta (in u = theta / scales) = -H^-1 grad M_j at theta,
        H as eq. (19), or without the constraints' second derivatives (always positive
        definite) where it is not positive definite; None where Q is not defined.
        ``jacobians``: the constraints' Jacobians at theta."""
        q, g = self.complete.q_and_gradient(theta, self.stats)
        info = self.complete.information(theta, self.stats)
        if g is None or info is None:
            return None
        h, ineq, _ = self.constraints.values(theta)
        jh, jg, _ = jacobians
        hh, hg = self.constraints.hessians(theta, columns)
        weight_h = self.xi + self.c * h                       # phi'(h) weighted
        slack = np.maximum(0.0, self.mu - self.c * ineq)      # > 0: the inequality binds
        binding = slack > 0.0
        grad = -g / self.n + jh.T @ weight_h - jg.T @ slack
        outer = self.c * (jh.T @ jh + jg[binding].T @ jg[binding])
        curvature = (np.tensordot(weight_h, hh, axes=1)
                     - np.tensordot(slack, hg, axes=1))
        gu = scales * grad
        value = self._combine(q, h, ineq)
        for second in (curvature, 0.0):
            matrix = scales[:, None] * (info / self.n + outer + second) * scales
            inverse = _inverse_if_positive_definite(matrix)
            if inverse is not None:
                return -(inverse @ gu), value
        return -gu, value


def fit_em_constrained(problem, constraints, theta0, em_iter_max: int = 10000,
                       em_dx_tol: float = 1e-7, max_seconds: float | None = None,
                       verbose: bool | None = None, label: str = "fit",
                       multiplier_start: float = MULTIPLIER_START,
                       penalty_start: float = PENALTY_START,
                       penalty_growth: float = PENALTY_GROWTH) -> ConstrainedEMResult:
    """Maximize the log-likelihood under ``constraints`` (a
    :class:`mlmiss.estimation.constraints.ConstraintSet`) by Bentler et al.'s
    augmented-Lagrangian EM from theta0 (admissible; it need not meet the constraints).
    ``multiplier_start``, ``penalty_start``: xi_1 (every element) and c_1, in the
    paper's units (Q summed over the data)."""
    step = EMSteps(problem)
    complete, scales = step.complete, step.scales
    n = float(problem.data.n_obs)
    theta = np.asarray(theta0, dtype=float).copy()
    columns = constraints.involved(theta)
    h, ineq, _ = constraints.values(theta)
    # the paper's units (Q summed) in ours (Q / N)
    xi = np.full(h.size, float(multiplier_start) / n)
    mu = np.zeros(ineq.size)
    c = float(penalty_start) / n
    began = time.perf_counter()
    bar = progress_bar(f"{label} (EM, constrained)", verbose)
    iterations, message, kkt, violation = 0, "", np.inf, np.inf
    with one_blas_thread():
        while True:
            value, grad = problem.f_and_grad(theta)
            if not np.isfinite(value) or value >= INADMISSIBLE:
                message = "left the admissible region"
                break
            jacobians = constraints.jacobians(theta)   # for the KKT test and the step
            kkt = kkt_remainder(constraints, theta, grad, scales, jacobians)
            violation = constraints.violation(theta)
            if kkt <= em_dx_tol and violation <= FEASIBLE:
                message = "converged"
                break
            message = cap_reached(iterations, em_iter_max, began, max_seconds)
            if message:
                break
            stats = step.expected(theta)
            if stats is None:
                message = "the E-step failed (a covariance matrix not positive definite)"
                break
            lagrangian = _Lagrangian(complete, stats, constraints, xi, mu, c, n)
            step_and_value = lagrangian.newton_step(theta, scales, columns, jacobians)
            if step_and_value is None:
                message = "Q is not defined at the current point"
                break
            delta, start = step_and_value
            # at most M_STEP_RADIUS long in u, as the unconstrained EM's M-step: from a
            # poor start the first Newton steps otherwise run off along ridges of Q
            length = float(np.linalg.norm(delta))
            if length > M_STEP_RADIUS:
                delta = delta * (M_STEP_RADIUS / length)
            theta = _halved(lagrangian, theta, scales * delta, start)
            c = min(c * penalty_growth, PENALTY_MAX)
            h, ineq, _ = constraints.values(theta)
            xi = xi + c * h
            mu = np.maximum(0.0, mu - c * ineq)
            iterations += 1
            bar.update()
            bar.set_postfix_str(f"-logl/N {value:.10g}, KKT {kkt:.1e}", refresh=False)
    bar.close()
    value, _ = problem.f_and_grad(theta)
    converged = message == "converged"
    return ConstrainedEMResult(
        theta, -value * n, converged, iterations, step.e_steps,
        f"EM with an augmented Lagrangian (Bentler et al. 2011) {message} after "
        f"{step.e_steps} E-steps; KKT remainder {kkt:.1e}, largest constraint violation "
        f"{violation:.1e}", float(kkt), float(violation))


def _halved(lagrangian, theta, delta, start):
    """theta + rho delta with the first rho in 1, 1/2, 1/4, ... that does not increase
    M_j from its value ``start`` at theta (eq. 9); theta itself when none does."""
    rho = 1.0
    for _ in range(HALVINGS):
        trial = theta + rho * delta
        if lagrangian.value(trial) <= start:
            return trial
        rho *= 0.5
    return theta

