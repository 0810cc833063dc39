"""The EM iteration, accelerated by SQUAREM (Varadhan and Roland, 2008, scheme S3).

One EM step ``M(theta)`` is an E-step (:mod:`.estep`) at theta and an M-step: the
maximum of Q(. | theta) (:mod:`.complete`), found by Fisher scoring from theta with
Q's analytic gradient and complete-data information (:func:`fisher_scoring`). SQUAREM takes two EM steps, extrapolates along them
(``theta0 - 2 a r + a^2 v`` with r = theta1 - theta0, v = theta2 - 2 theta1 + theta0,
a = -|r| / |v|, at most ``step_max`` long) and takes one more EM step from there; the
extrapolation is kept only when the log-likelihood did not fall, and ``step_max``
grows fourfold each time a full-length extrapolation is kept.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from scipy.linalg import lapack

from ...progress import progress_bar
from ...threads import one_blas_thread
from ..boundary import INADMISSIBLE, between_eigenvalues
from .complete import CompleteData
from .estep import EStepError, Workspace, expected_statistics

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
#: the M-step moves at most this far (in u = theta / scales, where parameters are of
#: order one) from the E-step's point
M_STEP_RADIUS = 1.0
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
        # the last inverse information: the M-step's steps where a new one fails
        self.hess_inv = None
        self.work = None   # the E-step's arrays, reused

    def expected(self, theta):
        """The E-step at theta: the expected sufficient statistics, or None where the
        model is not admissible there."""
        try:
            self.work = Workspace.reuse(self.work, self.problem.data,
                                        self.complete.r_index.size)
            stats = expected_statistics(self.problem.data, self.complete.parts(theta),
                                        self.complete, self.work)
        except (np.linalg.LinAlgError, EStepError):
            return None
        self.e_steps += 1
        return stats

    def __call__(self, u, gtol=1e-10):
        stats = self.expected(self.scales * u)
        if stats is None:
            return None
        n = float(self.problem.data.n_obs)
        scales = self.scales

        def f_and_grad(x):
            q, g = self.complete.q_and_gradient(scales * x, stats)
            if g is None:
                return INADMISSIBLE, np.zeros_like(x)
            return -q / n, -g * scales / n

        def information(x):   # of -Q/N in u; None where not positive definite
            matrix = self.complete.information(scales * x, stats)
            if matrix is None:
                return None
            return _inverse_if_positive_definite(scales[:, None] * matrix * scales / n)

        x, self.hess_inv = fisher_scoring(f_and_grad, information, u, gtol, self.hess_inv,
                                          radius=M_STEP_RADIUS)
        return x


def fisher_scoring(f_and_grad, inverse_information, x, gtol, fallback=None, maxiter=100,
                   radius=None):
    """Minimize f (-Q/N) from x by Fisher scoring: steps -I(x)^-1 grad with the
    complete-data information I (computed at x, and again after any step that was not
    Newton-like; ``fallback`` where it is not positive definite) (within a few per cent of
    Q's Hessian near the maximum and, unlike it, positive definite far from it: from
    paper_like's start 8 iterations, where BFGS from the same matrix took 200
    evaluations), halved until f decreases (Armijo). Stops at ``gtol`` or when f changes
    only at round-off, or on the sphere of ``radius`` around the start (a generalized
    EM step: Q need only increase, and where Q's maximum runs off along a ridge, as from
    few15's start, the M-step must not follow it). Returns (x, the last inverse
    information)."""
    origin = x
    f, g = f_and_grad(x)
    h = fallback
    flat = 0   # iterations in a row that changed f only at round-off
    # within an M-step the information is kept while its steps are Newton-like (a full
    # step that cut the gradient tenfold): it costs more than an evaluation of Q. (Kept
    # across E-steps too, it made the EM map rougher: paper_like took 58 E-steps, not 23)
    good = False
    for _ in range(maxiter):
        g_max = float(np.max(np.abs(g), initial=0.0))
        if g_max <= gtol or flat >= 2:
            break
        if not good:
            h_new = inverse_information(x)
            if h_new is not None:
                h = h_new
        d = -(h @ g) if h is not None else -g
        slope = float(g @ d)
        if slope >= 0.0:
            d, slope = -g, -float(g @ g)
        t = 1.0 if radius is None else _to_sphere(x - origin, d, radius)
        for _ in range(30):
            f_new, g_new = f_and_grad(x + t * d)
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break   # no decrease along d: at the round-off level of f
        flat = flat + 1 if f - f_new <= 1e-15 * abs(f) else 0
        good = t == 1.0 and float(np.max(np.abs(g_new), initial=0.0)) <= 0.1 * g_max
        x, f, g = x + t * d, f_new, g_new
        if radius is not None and np.linalg.norm(x - origin) >= (1.0 - 1e-9) * radius:
            break
    return x, h


def _to_sphere(offset, d, radius) -> float:
    """The step length t <= 1 that keeps offset + t d inside the sphere of ``radius``."""
    if np.linalg.norm(offset + d) <= radius:
        return 1.0
    a, b, c = float(d @ d), float(offset @ d), float(offset @ offset) - radius * radius
    return float((-b + np.sqrt(max(b * b - a * c, 0.0))) / a)


def _inverse_if_positive_definite(matrix):
    """The inverse of a symmetric positive definite matrix (its lower triangle is read),
    else None; by LAPACK's Cholesky routines directly (half the time of numpy's)."""
    factor, info = lapack.dpotrf(matrix, lower=True, clean=False)
    if info != 0:
        return None
    inverse, info = lapack.dpotri(factor, lower=True)
    if info != 0:
        return None
    inverse = np.tril(inverse) + np.tril(inverse, -1).T
    return inverse if np.all(np.isfinite(inverse)) else None


def cap_reached(iterations, em_iter_max, began, max_seconds) -> str:
    """Why an EM iteration stops short ("" while it may go on): its iteration cap or its
    time limit."""
    if iterations >= em_iter_max:
        return f"stopped at em_iter_max = {em_iter_max}"
    if max_seconds is not None and time.perf_counter() - began > max_seconds:
        return f"stopped at the time limit of {max_seconds:g} s"
    return ""


def fit_em(problem, theta0, em_iter_max: int = 10000, em_fx_tol: float = 1e-10,
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

    last = {}

    def objective(u):   # -logl/N and its largest scaled gradient element
        key = u.tobytes()
        if key not in last:   # SQUAREM's accepted point is evaluated once, not twice
            last.clear()
            value, g = problem.f_and_grad(scales * u)
            last[key] = ((np.inf, np.inf) if value >= INADMISSIBLE
                         else (value, float(np.max(np.abs(g * scales), initial=0.0))))
        return last[key]

    def admissible(u):   # the value alone: an extrapolation's first test
        return np.isfinite(problem.loglik(scales * u))

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
            message = cap_reached(iterations, em_iter_max, began, max_seconds)
            if message:
                break
            if (len(history) > EM_STALL
                    and history[-EM_STALL - 1] - f <= EM_STALL_PROGRESS * abs(f)):
                message = f"stalled: no progress in {EM_STALL} iterations"
                break
            if near_edge >= EDGE_PATIENCE:
                message = "stopped near the edge of the admissible region"
                break
            # the M-step need not be more precise than the distance still to go (a
            # strict tolerance far from the maximum costs Q evaluations that change
            # nothing EM keeps)
            tol = float(np.clip(M_TOL_FACTOR * grad_max, 1e-9, M_TOL_MAX))
            u_next = (_squarem_cycle(step, u, objective, admissible, f, step_max, tol)
                      if em_accel else None)
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


def _squarem_cycle(step, u0, objective, admissible, f0, step_max, tol):
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
    if admissible(trial):
        stabilized = step(trial, tol)
        if stabilized is not None:
            f_new = objective(stabilized)[0]
            if f_new <= f0:
                return stabilized, True, alpha == -step_max
    return u2, False, False
