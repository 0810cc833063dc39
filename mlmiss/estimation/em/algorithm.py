"""The EM iteration, accelerated by SQUAREM (Varadhan and Roland, 2008, scheme S3).

One EM step ``M(theta)`` is an E-step (:mod:`.estep`) at theta and an M-step: the
maximum of Q(. | theta) (:mod:`.complete`), found by a trust region from theta with
the analytic gradient of Q. SQUAREM takes two EM steps, extrapolates along them
(``theta0 - 2 a r + a^2 v`` with r = theta1 - theta0, v = theta2 - 2 theta1 + theta0,
a = -|r| / |v|, at most ``step_max`` long) and takes one more EM step from there; the
extrapolation is kept only when the log-likelihood did not fall, and ``step_max``
grows fourfold each time a full-length extrapolation is kept.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import numpy as np

from ...progress import progress_bar
from ...threads import one_blas_thread
from ..boundary import INADMISSIBLE, between_eigenvalues
from .complete import CompleteData
from .estep import EStepError, expected_statistics

ACCELERATIONS = ("squarem", None)

#: EM is stopped as stalled when EM_STALL iterations improved -logl/N by less than
#: EM_STALL_PROGRESS relative: round-off, not the slow progress EM is known for
EM_STALL = 50
EM_STALL_PROGRESS = 1e-14
#: EM stops, to hand over to a fit on the edge of the admissible region, when an
#: eigenvalue of Sigma_b has been below EDGE_RATIO x the largest for EDGE_PATIENCE
#: iterations without convergence: there EM's rate tends to one (zeros the model
#: itself fixes, as in singular_between, do not count)
EDGE_RATIO = 1e-3
EDGE_PATIENCE = 10
M_TOL_FACTOR = 1e-3
M_TOL_MAX = 1e-4


class EMResult(NamedTuple):
    """What :func:`fit_em` found; ``near_edge``: it stopped crawling towards the edge of
    the admissible region (a singular Sigma_b), for a boundary fit to finish."""

    theta: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    e_steps: int
    message: str
    max_gradient: float
    near_edge: bool = False


class EMSteps:
    """M(theta) for one problem, counting E-steps; all in the scaled parameters
    u = theta / scales."""

    def __init__(self, problem):
        self.problem = problem
        self.complete = CompleteData(problem)
        self.scales = np.asarray(problem.scales, dtype=float)
        self.e_steps = 0
        # Q's curvature (the complete-data information) changes little from one EM step
        # to the next: the first M-step starts BFGS from the inverse of a difference
        # Hessian of Q, each later one from the previous one's inverse Hessian
        self.hess_inv = None

    def __call__(self, u, gtol=1e-10):
        theta = self.scales * u
        try:
            stats = expected_statistics(self.problem.data, self.complete.parts(theta),
                                        self.complete)
        except (np.linalg.LinAlgError, EStepError):
            return None
        self.e_steps += 1
        n = float(self.problem.data.n_obs)
        scales = self.scales

        def f_and_grad(x):
            q, g = self.complete.q_and_gradient(scales * x, stats)
            if g is None:
                return INADMISSIBLE, np.zeros_like(x)
            return -q / n, -g * scales / n

        if self.hess_inv is None:
            self.hess_inv = _inverse_of_modulus(_difference_hessian(f_and_grad, u))
        if self.hess_inv is None:
            self.hess_inv = np.eye(u.size)
        x, self.hess_inv = quasi_newton(f_and_grad, u, self.hess_inv, gtol)
        return x


def quasi_newton(f_and_grad, x, hess_inv, gtol, maxiter=100):
    """Minimize from x by BFGS with unit steps first (Q's curvature carried over from
    the previous M-step makes them nearly Newton steps) and backtracking (Armijo) when
    a step does not decrease f; stopped at ``gtol`` or when f changes only at round-off.
    Returns (x, inverse Hessian)."""
    f, g = f_and_grad(x)
    h = hess_inv.copy()
    flat = 0   # iterations in a row that changed f only at round-off
    for _ in range(maxiter):
        if float(np.max(np.abs(g), initial=0.0)) <= gtol or flat >= 2:
            break
        d = -(h @ g)
        slope = float(g @ d)
        if slope >= 0.0:   # not a descent direction: restart from the gradient
            h = np.eye(x.size)
            d, slope = -g, -float(g @ g)
        t = 1.0
        for _ in range(30):
            x_new = x + t * d
            f_new, g_new = f_and_grad(x_new)
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break   # no decrease along d: at the round-off level of f
        flat = flat + 1 if f - f_new <= 1e-15 * abs(f) else 0
        s_vec, y_vec = x_new - x, g_new - g
        sy = float(s_vec @ y_vec)
        if sy > 1e-12 * float(np.linalg.norm(s_vec) * np.linalg.norm(y_vec)):
            rho = 1.0 / sy
            hy = h @ y_vec
            h = (h - rho * (np.outer(s_vec, hy) + np.outer(hy, s_vec))
                 + (rho * rho * float(y_vec @ hy) + rho) * np.outer(s_vec, s_vec))
        x, f, g = x_new, f_new, g_new
    return x, h


def _difference_hessian(f_and_grad, u, step=1e-5):
    """Forward differences of the analytic gradient (symmetrized); the identity when a
    step leaves the region where Q is defined."""
    base = f_and_grad(u)[1]
    hessian = np.empty((u.size, u.size))
    for i in range(u.size):
        moved = u.copy()
        moved[i] += step * max(1.0, abs(u[i]))
        value, g = f_and_grad(moved)
        if value >= INADMISSIBLE:
            return np.eye(u.size)
        hessian[i] = (g - base) / (moved[i] - u[i])
    if not np.all(np.isfinite(hessian)):
        return np.eye(u.size)
    return 0.5 * (hessian + hessian.T)


def _inverse_of_modulus(hessian):
    """The inverse of |H| (eigenvalues by their moduli, the small ones raised to 1e-3
    of the largest): a positive definite start for BFGS where Q is not yet concave."""
    values, vectors = np.linalg.eigh(hessian)
    moduli = np.abs(values)
    moduli = np.maximum(moduli, 1e-3 * max(float(moduli.max(initial=0.0)), 1e-300))
    return _positive_definite((vectors / moduli) @ vectors.T)


def _positive_definite(matrix):
    """The symmetric part of ``matrix`` if it is positive definite, else None."""
    matrix = 0.5 * (matrix + matrix.T)
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None
    return matrix if np.all(np.isfinite(matrix)) else None


def fit_em(problem, theta0, em_iter_max: int = 10000, em_fx_tol: float = 1e-12,
           em_dx_tol: float = 1e-7, em_accel: str | None = "squarem",
           max_seconds: float | None = None, verbose: bool | None = None,
           label: str = "fit", steps=None) -> EMResult:
    """Maximize the log-likelihood by EM from theta0 (admissible). Stops when the change
    of -logl/N is below ``em_fx_tol`` and the largest element of its (scaled)
    gradient below ``em_dx_tol``, at ``em_iter_max`` iterations (an EM step, or a
    SQUAREM cycle of three), or at ``max_seconds``. Returns (theta, logl, converged,
    iterations, e_steps, message, max_gradient). ``steps``: the EM map (default
    :class:`EMSteps`; the saturated model brings its own closed-form one)."""
    if em_accel not in ACCELERATIONS:
        raise ValueError(f"unknown em_accel {em_accel!r}; use 'squarem' or None")
    step = EMSteps(problem) if steps is None else steps
    scales = step.scales
    n = float(problem.data.n_obs)

    def objective(u):   # -logl/N and its largest scaled gradient element
        value, g = problem.f_and_grad(scales * u)
        if value >= INADMISSIBLE:
            return np.inf, np.inf
        return value, float(np.max(np.abs(g * scales), initial=0.0))

    began = time.perf_counter()
    bar = progress_bar(f"{label} (EM)", verbose)
    u = np.asarray(theta0, dtype=float) / scales
    f, grad_max = objective(u)
    step_max, iterations, message, change = 1.0, 0, "", np.inf
    history = [f]
    watch_edge = bool(getattr(problem, "between_psd", False))
    structural = _small_eigenvalues(problem, scales * u, 1e-12) if watch_edge else 0
    near_edge = 0   # consecutive iterations with Sigma_b near singular
    with one_blas_thread():
        while True:
            if grad_max <= em_dx_tol and abs(change) <= em_fx_tol:
                message = "converged"
                break
            if iterations >= em_iter_max:
                message = f"stopped at em_iter_max = {em_iter_max}"
                break
            if max_seconds is not None and time.perf_counter() - began > max_seconds:
                message = f"stopped at the time limit of {max_seconds:g} s"
                break
            if (len(history) > EM_STALL
                    and history[-EM_STALL - 1] - f <= EM_STALL_PROGRESS * abs(f)):
                message = f"stalled: no progress in {EM_STALL} iterations"
                break
            if near_edge >= EDGE_PATIENCE:
                message = "stopped near the edge of the admissible region"
                break
            # the M-step need not be more precise than the distance still to go (a
            # strict tolerance far from the maximum costs BFGS line searches that
            # cannot resolve the change of Q)
            tol = float(np.clip(M_TOL_FACTOR * grad_max, 1e-9, M_TOL_MAX))
            u_next = _squarem_cycle(step, u, objective, f, step_max, tol) if em_accel else None
            if u_next is None:
                u_next = step(u, tol)
                if u_next is None:
                    message = "the M-step left the admissible region"
                    break
                extrapolated = False
            else:
                u_next, extrapolated, full = u_next
                step_max = step_max * 4.0 if full else step_max
            f_next, grad_next = objective(u_next)
            if not np.isfinite(f_next):
                message = "the EM step left the admissible region"
                break
            change = f - f_next
            u, f, grad_max = u_next, f_next, grad_next
            history.append(f)
            iterations += 1
            if watch_edge:
                edge = _small_eigenvalues(problem, scales * u, EDGE_RATIO) > structural
                near_edge = near_edge + 1 if edge else 0
            bar.update()
            bar.set_postfix_str(f"-logl/N {f:.10g}", refresh=False)
    bar.close()
    converged = bool(grad_max <= em_dx_tol)
    return EMResult(scales * u, -f * n, converged, iterations, step.e_steps,
                    f"EM {message} after {step.e_steps} E-steps", grad_max,
                    near_edge >= EDGE_PATIENCE and not converged)


def _small_eigenvalues(problem, theta, ratio) -> int:
    """How many eigenvalues of Sigma_b are below ``ratio`` x the largest."""
    values = between_eigenvalues(problem.moments(theta))
    return int(np.sum(values < ratio * abs(values[-1]))) if values.size else 0


def _squarem_cycle(step, u0, objective, f0, step_max, tol):
    """One SQUAREM cycle from u0: (u, extrapolated, at full length) or None when the
    EM steps themselves failed."""
    u1 = step(u0, tol)
    if u1 is None:
        return None
    u2 = step(u1, tol)
    if u2 is None:
        return None
    r = u1 - u0
    v = u2 - 2.0 * u1 + u0
    vv = float(v @ v)
    if vv == 0.0:
        return u2, False, False
    alpha = -np.sqrt(float(r @ r) / vv)
    alpha = max(min(alpha, -1.0), -step_max)
    if alpha == -1.0:   # plain EM; at full length when step_max is still 1
        return u2, False, alpha == -step_max
    trial = u0 - 2.0 * alpha * r + alpha * alpha * v
    if np.isfinite(objective(trial)[0]):
        stabilized = step(trial, tol)
        if stabilized is not None:
            f_new = objective(stabilized)[0]
            if f_new <= f0:
                return stabilized, True, alpha == -step_max
    return u2, False, False
