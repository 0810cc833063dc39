"""FIML estimation: ``sem(model, data, cluster)``.

The optimizer sees only theta -> (f, grad): f is minus the log-likelihood divided by
the number of level-1 rows (lavaan's scaling), and its gradient is -J' g / N with
J = d(moments)/d(theta) (:meth:`TwoLevelModel.jacobian`) and g the gradient of the
log-likelihood with respect to the moments (:func:`mlmiss.loglik_and_gradient`).

The default optimizer is scipy's Krylov trust-region method (``trust-krylov``) with
Hessian-vector products from differences of the analytic gradient; when it does not
reach a stationary point it hands over to the full trust-region Newton method
(``trust-exact``, the Hessian from differences of the gradient, :mod:`mlmiss.hessian`).
A quasi-Newton method (scipy's L-BFGS-B, ``optimizer="L-BFGS-B"``) is available, but
on models with a singular Sigma_b (zero between residual variances) it stalled far
from lavaan's solution, where the full trust region converged in 13 iterations.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from .data import TwoLevelData
from .fit import Fit
from .fixed_x import covariate_names, drop_incomplete, fill_covariate_rows
from .gradient import loglik_and_gradient
from .hessian import hessian_from_gradient
from .model import TwoLevelModel, flatten_gradient
from .partable import check_variables, parameter_table
from .start import start_values


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criterion."""


def objective(model, data):
    """theta -> (f, grad) for the optimizer; inadmissible moments give f = +inf-like."""
    n = float(data.n_obs)

    def f_and_grad(theta):
        value, gradient = loglik_and_gradient(data, model.moments(theta))
        if gradient is None:
            # outside the admissible region: a large value sends the line search back
            return 1e20, np.zeros_like(theta)
        g_theta = model.jacobian(theta).T @ flatten_gradient(gradient)
        return -value / n, -g_theta / n

    return f_and_grad


def run_optimizer(f_and_grad, theta0, optimizer, maxiter, gtol):
    """(scipy result, name of the method that produced it)."""
    from scipy.optimize import minimize  # imported here: slow, and not needed for loglik

    def grad(theta):
        return f_and_grad(theta)[1]

    def hess(theta):
        return hessian_from_gradient(grad, theta, central=False)

    if optimizer == "auto":
        # Hessian-vector products (one gradient each) are cheap; when the Krylov trust
        # region does not reach a stationary point, the full Hessian's does
        cache = {}

        def hessp(theta, v):
            norm = np.linalg.norm(v)
            if norm == 0.0:
                return np.zeros_like(v)
            key = theta.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = grad(theta)
            eps = 1e-7 * max(1.0, np.linalg.norm(theta)) / norm
            return (grad(theta + eps * v) - cache[key]) / eps

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's notes on inexact trust-region solves
            # it either gets there in a few dozen steps or stalls at round-off
            result = minimize(f_and_grad, theta0, jac=True, hessp=hessp, method="trust-krylov",
                              options={"maxiter": min(maxiter, 100), "gtol": gtol})
        if np.size(result.jac) == 0 or np.max(np.abs(result.jac)) <= 1e-6:
            return result, "trust-krylov"
        optimizer = "trust-exact"
    if optimizer == "trust-exact":
        return minimize(f_and_grad, theta0, jac=True, hess=hess, method="trust-exact",
                        options={"maxiter": maxiter, "gtol": gtol}), "trust-exact"
    if optimizer == "L-BFGS-B":
        return minimize(f_and_grad, theta0, jac=True, method="L-BFGS-B",
                        options={"maxiter": maxiter, "maxfun": 10 * maxiter, "gtol": gtol,
                                 "ftol": 1e-15, "maxcor": 30}), "L-BFGS-B"
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'auto', 'trust-exact' or 'L-BFGS-B'")


def sem(model: str, data, cluster: str, fixed_x: bool = False, start=None,
        optimizer: str = "auto", maxiter: int = 1000, gtol: float = 1e-9) -> Fit:
    """Fit a two-level SEM by full-information maximum likelihood.

    Parameters
    ----------
    model : lavaan model syntax with ``level: 1`` and ``level: 2`` blocks.
    data : a pandas DataFrame (one row per level-1 unit) or a :class:`TwoLevelData`.
    cluster : the cluster-id column.
    fixed_x : lavaan's ``fixed.x``; the default False treats exogenous observed
        variables as random (their means, variances and covariances are estimated).
        True fixes them at their sample moments and reports the conditional
        log-likelihood, as lavaan does (:mod:`mlmiss.fixed_x`).
    start : optional theta to start from (default: :func:`mlmiss.start.start_values`).
    optimizer : "auto" (default: scipy's Krylov trust region with Hessian-vector products
        from the analytic gradient, and the full-Hessian trust region when that does not
        reach a stationary point), "trust-exact" or "L-BFGS-B".
    maxiter, gtol : the optimizer's iteration limit and gradient tolerance (on the
        scaled objective -logl / N). The fit counts as converged when the largest
        element of that gradient is below 1e-6, whatever the optimizer says.
    """
    partable = parameter_table(model, fixed_x=fixed_x)
    table = partable.table
    x_within, x_between = covariate_names(table) if fixed_x else ([], [])
    if isinstance(data, TwoLevelData):
        if (sorted(data.y_names) != sorted(partable.y_names)
                or sorted(data.z_names) != sorted(partable.z_names)):
            raise ValueError(f"the model's level-1 variables {list(partable.y_names)} and between-only "
                             f"variables {list(partable.z_names)} are not those of the data "
                             f"({list(data.y_names)}, {list(data.z_names)})")
    else:
        check_variables(partable, list(data.columns))
        if fixed_x:
            data = drop_incomplete(data, cluster, x_within, x_between)
        data = TwoLevelData.from_frame(data, cluster, y=list(partable.y_names),
                                       z=list(partable.z_names))
    marginal = 0.0
    if fixed_x:
        table, marginal = fill_covariate_rows(table, data, x_within, x_between)
        partable.table = table
    # the moments are laid out like the data (the same variables, perhaps in another order)
    twolevel = TwoLevelModel(table, list(data.y_names), list(data.z_names))
    theta0 = start_values(partable, data) if start is None else np.asarray(start, dtype=float)
    f_and_grad = objective(twolevel, data)

    began = time.perf_counter()
    # numba's threads spin between parallel regions; BLAS threads competing for the
    # same two cores would stall both, so BLAS runs single-threaded during the fit
    with threadpool_limits(1, user_api="blas"):
        result, used = run_optimizer(f_and_grad, theta0, optimizer, maxiter, gtol)
    seconds = time.perf_counter() - began
    # judged by the gradient: L-BFGS-B may report success on a stalled decrease, and
    # near the optimum the trust region may stop on round-off ("failure to predict
    # improvement") with the gradient already at its noise level
    max_grad = float(np.max(np.abs(result.jac))) if np.size(result.jac) else 0.0
    converged = max_grad <= 1e-6
    joint = -result.fun * data.n_obs
    fit = Fit(partable=partable, model=twolevel, data=data, theta=result.x,
              loglik=joint - marginal, converged=converged, iterations=int(result.nit),
              message=f"{result.message} (largest |gradient| of -logl/N: {max_grad:.1e})",
              optimizer=used, seconds=seconds,
              extra={"joint_loglik": joint, "fixed_x": fixed_x, "max_gradient": max_grad,
                     "covariate_loglik": marginal})
    if not fit.converged:
        warnings.warn(f"the optimizer did not converge: {result.message}", ConvergenceWarning,
                      stacklevel=2)
    return fit
