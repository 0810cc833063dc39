"""Optimizers over a problem's theta -> (f, grad) (:class:`.problem.Objective`).

The default (``"auto"``) is scipy's Krylov trust-region method (``trust-krylov``) with
Hessian-vector products from differences of the analytic gradient; when it does not
reach a stationary point it hands over to the full trust-region Newton method
(``trust-exact``, the Hessian from forward differences of the gradient). A quasi-Newton
method (scipy's L-BFGS-B, ``optimizer="L-BFGS-B"``) is available, but on models with a
singular Sigma_b (zero between residual variances) it stalled far from lavaan's
solution, where the full trust region converged in 13 iterations. ``"trust-krylov"`` is
the Krylov trust region alone, for callers with a fallback of their own.

Every optimizer works on u = theta / scales, the parameters in the units of the data
(:mod:`.scaling`); on data with standard deviations near 1 the scales are 1. A fit
counts as converged when the largest element of the gradient of -logl/N with respect to
u is below :data:`GRADIENT_TOLERANCE`, whatever the optimizer says: L-BFGS-B may report success on
a stalled decrease, and near the optimum a trust region may stop on round-off with the
gradient already at its noise level.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..likelihood.information import hessian_from_gradient
from ..progress import progress_bar
from ..threads import one_blas_thread
from .boundary import INADMISSIBLE, fit_on_boundary, off_the_edge

OPTIMIZERS = ("auto", "trust-krylov", "trust-exact", "L-BFGS-B", "em")
GRADIENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Estimate:
    """What an optimizer found: theta, the log-likelihood there (the joint one, before
    any covariate part is taken out), and how it got there."""

    theta: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    message: str
    optimizer: str
    seconds: float
    max_gradient: float
    on_boundary: bool = False   # a maximum on the edge of the region (:mod:`.boundary`)
    e_steps: int = 0            # EM only: E-steps taken


def optimize(problem, theta0, optimizer: str = "auto", maxiter: int = 1000,
             gtol: float = 1e-9, max_seconds: float | None = None,
             verbose: bool | None = None, label: str = "fit", em_options=None,
             metric=None) -> Estimate:
    """Maximize the problem's log-likelihood from theta0 (scipy minimizes -logl / N).
    ``max_seconds`` caps the time as ``maxiter`` caps the iterations. A fit still
    running after two seconds shows a progress line (:mod:`mlmiss.progress`; ``verbose``
    None: when stderr is a terminal) named ``label``. ``optimizer="em"`` runs the EM
    algorithm (:mod:`.em`) with ``em_options`` (em_iter_max, em_fx_tol, em_dx_tol,
    em_accel); ``maxiter`` then caps the boundary phase that may finish it.

    ``metric``: an approximate Hessian of -logl / N in theta's units, positive definite
    (:mod:`.moment_start`); the Krylov trust region then works in coordinates where it
    is the identity, which shortens its Krylov sequences. Read by "auto" and
    "trust-krylov", ignored by the others."""
    from scipy.optimize import minimize  # imported here: slow, and not needed for loglik

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if optimizer == "em":
        return _em(problem, theta0, maxiter, max_seconds, verbose, label, em_options or {})
    # the optimizer works on u = theta / scales (:mod:`.scaling`): gradients, trust
    # regions and the convergence test in the units of the data
    scales = np.asarray(problem.scales, dtype=float)
    n = float(problem.data.n_obs)

    def f_and_grad(u):
        value, g = problem.f_and_grad(scales * u)
        return value, g * scales

    def scaled_gradient(u):   # None where inadmissible: one-sided columns there
        g = problem.gradient(scales * u)
        return None if g is None else -g * scales / n

    def hess(u):
        # analytic where the problem has it; else forward differences, which only steer
        # the trust region: a column with no admissible step is left at 0. An
        # inadmissible proposal (f = 1e20, to be rejected) gets the identity
        at = scaled_gradient(u)
        if at is None:
            return np.eye(u.size)
        exact = problem.loglik_hessian(scales * u)
        if exact is not None and np.all(np.isfinite(exact)):
            return -exact * np.outer(scales, scales) / n
        return np.nan_to_num(hessian_from_gradient(scaled_gradient, u, central=False, at=at))

    u0 = np.asarray(theta0, dtype=float) / scales
    began = time.perf_counter()
    clock = _Clock(began, max_seconds, progress_bar(label, verbose))
    used = optimizer
    with one_blas_thread():
        result = None
        if optimizer in ("auto", "trust-krylov"):
            result = _trust_krylov(f_and_grad, u0, maxiter, gtol, clock,
                                   _metric_factor(metric, scales))
            used = "trust-krylov"
            if not (_max_abs(result.jac) <= GRADIENT_TOLERANCE or clock.expired
                    or optimizer == "trust-krylov"):
                # start again with the full Hessian (from where the Krylov steps ended it
                # lost singular_between's maximum)
                result, used = None, "trust-exact"
        if result is None and used == "trust-exact":
            result = minimize(f_and_grad, u0, jac=True, hess=hess, method="trust-exact",
                              callback=clock.check, options={"maxiter": maxiter, "gtol": gtol})
        elif result is None:
            result = minimize(f_and_grad, u0, jac=True, method="L-BFGS-B", callback=clock.check,
                              options={"maxiter": maxiter, "maxfun": 10 * maxiter, "gtol": gtol,
                                       "ftol": 1e-16, "maxcor": 50})
    max_grad = _max_abs(result.jac)
    message = clock.message() or str(result.message)
    theta, fun, iterations = scales * np.asarray(result.x, dtype=float), float(result.fun), int(result.nit)
    on_boundary = False
    if (max_grad > GRADIENT_TOLERANCE and not clock.expired and problem.between_psd
            and fun < INADMISSIBLE and iterations < maxiter):
        # a stall at the edge of the admissible region: maximize on it
        edge = _on_the_edge(problem, theta, fun, maxiter - iterations, began, max_seconds, clock)
        if edge is not None:
            theta, fun, max_grad, more, on_boundary, why = edge
            iterations += more
            used += " + SLSQP on the boundary"
            message = clock.message() or why
    clock.progress.close()
    # an inadmissible point has a zero gradient by convention: never a maximum
    return Estimate(theta=theta, loglik=-fun * n,
                    converged=max_grad <= GRADIENT_TOLERANCE and fun < INADMISSIBLE,
                    iterations=iterations,
                    message=f"{message} (largest |gradient| of -logl/N: {max_grad:.1e})",
                    optimizer=used, seconds=time.perf_counter() - began, max_gradient=max_grad,
                    on_boundary=on_boundary)


def _em(problem, theta0, maxiter, max_seconds, verbose, label, options) -> Estimate:
    from .em.algorithm import fit_em

    began = time.perf_counter()
    result = fit_em(problem, theta0, max_seconds=max_seconds, verbose=verbose, label=label,
                    steps=problem.em_steps() if hasattr(problem, "em_steps") else None,
                    **options)
    theta, logl, max_grad = result.theta, result.loglik, result.max_gradient
    used, message, on_boundary, iterations = "em", result.message, False, result.iterations
    if result.near_edge:
        # EM crawls towards the edge of the admissible region (its rate tends to one as
        # an eigenvalue of Sigma_b tends to zero): the rest of the way on the edge
        n = float(problem.data.n_obs)
        clock = _Clock(began, max_seconds, progress_bar(f"{label} (EM)", verbose))
        edge = _on_the_edge(problem, theta, -logl / n, maxiter, began, max_seconds, clock)
        clock.progress.close()
        if edge is not None:
            theta, fun, max_grad, more, on_boundary, why = edge
            logl, iterations = -fun * n, iterations + more
            used = "em + SLSQP on the boundary" if on_boundary else "em + SLSQP"
            message = f"{message}; then {clock.message() or why}"
    return Estimate(theta=theta, loglik=logl, converged=max_grad <= GRADIENT_TOLERANCE,
                    iterations=iterations,
                    message=f"{message} (largest |gradient| of -logl/N: {max_grad:.1e})",
                    optimizer=used, seconds=time.perf_counter() - began,
                    max_gradient=max_grad, e_steps=result.e_steps, on_boundary=on_boundary)


def _on_the_edge(problem, theta, fun, maxiter, began, max_seconds, clock):
    """Maximize on the edge of the admissible region from theta (-logl/N = fun there):
    (theta, -logl/N, KKT remainder, iterations, at a boundary solution, message), or
    None when that found nothing better."""
    deadline = None if max_seconds is None else began + max_seconds
    theta_e, fun_e, kkt, more, why = fit_on_boundary(problem, theta, maxiter=maxiter,
                                                     deadline=deadline,
                                                     on_iteration=clock.progress.update)
    if not (fun_e <= fun + 1e-12 * abs(fun) or kkt <= GRADIENT_TOLERANCE):
        return None
    on_boundary = bool(kkt <= GRADIENT_TOLERANCE and not off_the_edge(problem.moments(theta_e)))
    clock.expired = deadline is not None and time.perf_counter() > deadline
    return (theta_e, fun_e, kkt, more, on_boundary,
            f"boundary solution: {why}" if on_boundary else why)


class _Clock:
    """A time limit for scipy's optimizers: their callback raises StopIteration past it."""

    def __init__(self, began: float, max_seconds: float | None, progress):
        self.max_seconds = max_seconds
        self.deadline = None if max_seconds is None else began + max_seconds
        self.expired = False
        self.stalled = False
        self.values = []
        self.progress = progress

    def tick(self, fun: float):
        """One iteration done (for the progress line)."""
        self.progress.update()
        self.progress.set_postfix_str(f"-logl/N {fun:.8g}", refresh=False)

    def check(self, intermediate_result=None):
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.expired = True
            raise StopIteration
        if intermediate_result is not None:
            self.tick(float(intermediate_result.fun))
            # a trust region whose proposals all leave the admissible region (the radius
            # shrinks and nothing moves), or that creeps along a degenerate ridge (a
            # factor variance at 0 from a start loading of 1000: 1e-12 per iteration)
            self.values.append(float(intermediate_result.fun))
            if (len(self.values) > STALL and self.values[-STALL - 1] - self.values[-1]
                    <= STALL_PROGRESS * abs(self.values[-1])):
                self.stalled = True
                raise StopIteration

    def message(self) -> str:
        if self.stalled:
            return f"stalled: no progress in {STALL} iterations"
        return f"stopped at the time limit of {self.max_seconds:g} s" if self.expired else ""


#: a trust region is stopped when STALL iterations improved -logl/N by less than
#: STALL_PROGRESS relative (a converging trust region gains far more per iteration)
STALL = 30
STALL_PROGRESS = 1e-10


def _max_abs(x) -> float:
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


class _Breakdown(Exception):
    """trust-krylov asked for a Hessian-vector product along a non-finite direction."""


#: trust-krylov stops here: past it, round-off makes its steps wander (it used to run to
#: its iteration cap after converging, proposing inadmissible points)
KRYLOV_STOP = 1e-8


def _metric_factor(metric, scales):
    """R, upper triangular, with R'R the metric in the optimizer's units u = theta /
    scales; None without a metric or where it is not positive definite."""
    if metric is None:
        return None
    metric_u = np.asarray(metric, dtype=float) * np.outer(scales, scales)
    try:
        return np.linalg.cholesky(0.5 * (metric_u + metric_u.T)).T
    except np.linalg.LinAlgError:
        return None


def _trust_krylov(f_and_grad, theta0, maxiter, gtol, clock, factor=None):
    """scipy's trust-krylov with Hessian-vector products from gradient differences
    (one gradient each; the gradient at theta is kept between products), stopped as soon
    as an accepted step's gradient is below :data:`KRYLOV_STOP`.

    With ``factor`` R (:func:`_metric_factor`) it runs on v = R theta: the gradient
    there is R^-T g, the Hessian R^-T H R^-1, and the trust region a ball in the metric;
    the stopping test and the result stay in theta's terms."""
    from scipy.linalg import solve_triangular
    from scipy.optimize import OptimizeResult, minimize

    largest = {}
    recent = {}   # the last gradients evaluated: hessp's base point is one of them
    plain = {}    # with a factor: the gradients in theta's terms

    def to_theta(x):
        return x if factor is None else solve_triangular(factor, x)

    def evaluate(x):
        value, g = f_and_grad(to_theta(x))
        if len(largest) > 64:   # the accepted point is among the last few evaluated
            largest.clear()
        if len(recent) > 4:
            recent.clear()
        key = x.tobytes()
        largest[key] = _max_abs(g) if value < INADMISSIBLE else np.inf
        if factor is not None:
            if len(plain) > 64:
                plain.clear()
            plain[key] = g
            g = solve_triangular(factor, g, trans="T")
        recent[key] = g.copy()
        return value, g

    def grad(x):
        return evaluate(x)[1]

    values = []
    accepted = [np.asarray(theta0 if factor is None else factor @ theta0, dtype=float)]

    def stop_when_small(intermediate_result):
        accepted[0] = np.array(intermediate_result.x, dtype=float)
        clock.check()
        clock.tick(float(intermediate_result.fun))
        grad_max = largest.get(intermediate_result.x.tobytes(), np.inf)
        values.append(intermediate_result.fun)
        if grad_max <= max(gtol, KRYLOV_STOP):
            raise StopIteration
        # converged, but round-off keeps the gradient from falling further
        if (grad_max <= GRADIENT_TOLERANCE and len(values) > 3
                and values[-4] - values[-1] <= 1e-14 * abs(values[-1])):
            raise StopIteration

    def hessp(theta, v):
        norm = np.linalg.norm(v)
        if not np.isfinite(norm):
            raise _Breakdown
        if norm == 0.0:
            return np.zeros_like(v)
        base = recent.get(theta.tobytes())
        if base is None:
            base = grad(theta)
        eps = 1e-7 * max(1.0, np.linalg.norm(theta)) / norm
        return (grad(theta + eps * v) - base) / eps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's notes on inexact trust-region solves
        # it either gets there in a few dozen steps or stalls at round-off
        try:
            result = minimize(evaluate, accepted[0], jac=True, hessp=hessp,
                              method="trust-krylov", callback=stop_when_small,
                              options={"maxiter": min(maxiter, 100), "gtol": gtol})
        except _Breakdown:
            # trlib's Krylov solve broke down (NaN directions; seen once the gradient was
            # at 1e-8): the last accepted point is the result
            value, g = evaluate(accepted[0])
            result = OptimizeResult(x=accepted[0], fun=value, jac=g, nit=len(values),
                                    success=False,
                                    message="the trust-region subproblem broke down")
    if factor is not None:   # back to theta's terms
        key = result.x.tobytes()
        result.jac = plain[key] if key in plain else f_and_grad(to_theta(result.x))[1]
        result.x = to_theta(result.x)
    if "StopIteration" in str(result.message) and not clock.expired:
        result.message = "gradient below tolerance"
    elif not result.success and _max_abs(result.jac) <= GRADIENT_TOLERANCE:
        # scipy's "bad approximation": a step at round-off, after converging
        result.message = "gradient below tolerance; the last steps were at round-off"
    return result
