"""``sem(model, data, cluster)``: fit a two-level SEM by full-information ML."""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from .errors import ConvergenceWarning, ModelError, ModelWarning
from .estimation.build import build_problem
from .estimation.checks import admissible_start
from .estimation.compile import ensure_compiled
from .estimation.constraints import (KKT_TOL, ActiveSet, ConstraintSet, Reparametrized,
                                     fit_constrained)
from .estimation.moment_start import moment_start
from .estimation.optimizers import Estimate, optimize
from .results import Fit


def sem(model: str, data, cluster: str | None = None, fixed_x: bool = True, start=None,
        optimizer: str = "auto", maxiter: int = 1000, gtol: float = 1e-9,
        max_seconds: float | None = 300.0, between_psd: bool = True,
        verbose: bool | None = None, em_iter_max: int = 10000, em_fx_tol: float = 1e-10,
        em_dx_tol: float = 1e-7, em_accel: str | None = "squarem", estimator: str = "ML",
        se: str | None = None, test: str | None = None, std_lv: bool = False,
        orthogonal: bool = False, missing: str = "ml", optim_method: str | None = None,
        **lavaan_options) -> Fit:
    """Fit a two-level SEM by full-information maximum likelihood.

    Parameters
    ----------
    model : lavaan model syntax with ``level: 1`` and ``level: 2`` blocks.
    data : a pandas DataFrame (one row per level-1 unit) or a :class:`TwoLevelData`.
    cluster : the cluster-id column (not needed with a :class:`TwoLevelData`).
    fixed_x : lavaan's ``fixed.x``; the default True (lavaan's ``sem()`` default) fixes
        exogenous observed covariates at their sample moments, drops the rows (and
        clusters) missing one, and reports the conditional log-likelihood, as lavaan
        does (:mod:`mlmiss.estimation.fixed_x`). False treats them as random: their
        means, variances and covariances are estimated and their missing values are
        handled by FIML like any other.
    start : optional theta to start from (default: the model fitted to the levels'
        sample moments, :mod:`mlmiss.estimation.moment_start`, else lavaan-style simple
        start values).
    optimizer : "auto" (default: scipy's Krylov trust region with Hessian-vector products
        from the analytic gradient, and the full-Hessian trust region when that does not
        reach a stationary point), "trust-krylov" (the Krylov trust region alone),
        "trust-exact", "L-BFGS-B" or "em" (the EM algorithm,
        :mod:`mlmiss.estimation.em`; with ``==``, ``<`` or ``>`` constraints, Bentler et
        al.'s (2011) EM with an augmented Lagrangian, :mod:`mlmiss.estimation.em.constrained`).
    em_iter_max, em_fx_tol, em_dx_tol, em_accel : with ``optimizer="em"``: the
        iteration cap, the change of -logl/N and the largest (scaled) gradient element
        to stop at, and the acceleration ("squarem" or None for plain EM).
    maxiter, gtol : the optimizer's iteration limit and gradient tolerance (on the
        scaled objective -logl / N).
    max_seconds : the optimizer's time limit (None: none).
    verbose : a progress line on stderr for fits still running after two seconds;
        None (default) when stderr is a terminal, True always, False never.
    between_psd : the admissible region (:mod:`mlmiss.estimation.boundary`): True
        (default) keeps the model's between covariance matrix positive semidefinite, and
        a maximum on that edge is reported as a boundary solution; False allows any
        point where the likelihood is defined (an indefinite between covariance matrix,
        as lavaan allows down to eigenvalues of -0.05).

    estimator : "ML" (default) or "MLR": the same estimates, with robust standard
        errors (``se="robust"``) and the Yuan-Bentler scaled test
        (``test="yuan.bentler.mplus"``), as lavaan's MLR for two-level models
        (:mod:`mlmiss.inference.robust`).
    se : "standard" (the observed information), "robust" (lavaan's
        "robust.huber.white": the sandwich with cluster scores) or "none"; default from
        ``estimator``.
    test : "standard" or "yuan.bentler.mplus" (adds the scaled and robust fit measures)
        or "none"; default from ``estimator``.

    std_lv : lavaan's ``std.lv``: scale latent variables by fixing their variances at 1
        (their first loadings free).
    orthogonal : lavaan's ``orthogonal``: the covariances among latent variables that the
        defaults add are fixed at 0.
    missing : "ml" (full-information ML; also "fiml", "direct"): the only method.
    optim_method : lavaan's name for ``optimizer`` ("em", or "nlminb"/"default" for the
        default trust region).
    **lavaan_options : lavaan's dotted names (``**{"fixed.x": False, "std.lv": True}``)
        are accepted for the options above; any other name is an error.

    The fit counts as converged when the largest element of the gradient of -logl / N
    is below 1e-6, whatever the optimizer says, and the observed information is positive
    definite (:meth:`Fit.checks`). When start() values in the syntax lead nowhere, the
    fit is tried again from the default start values and the better one is kept.
    """
    if lavaan_options:
        given = {"fixed_x": fixed_x, "std_lv": std_lv, "orthogonal": orthogonal,
                 "estimator": estimator, "se": se, "test": test, "missing": missing,
                 "optim_method": optim_method}
        given.update(_lavaan_names(lavaan_options))
        fixed_x, std_lv, orthogonal = given["fixed_x"], given["std_lv"], given["orthogonal"]
        estimator, se, test = given["estimator"], given["se"], given["test"]
        missing, optim_method = given["missing"], given["optim_method"]
    if str(missing).lower() not in MISSING_NAMES:
        raise ValueError(f"missing={missing!r} is not available: mlmiss estimates by "
                         "full-information ML (missing='ml'), which uses every observed value")
    if optim_method is not None:
        optimizer = _optimizer_name(optim_method)
    se, test = _inference_options(estimator, se, test)
    if cluster is None and not hasattr(data, "level1"):
        raise ValueError("sem() needs cluster= (the cluster-id column) for a DataFrame")
    ensure_compiled()   # a cold Numba cache: the kernels compile in two processes
    problem = build_problem(model, data, cluster, fixed_x, std_lv=std_lv, orthogonal=orthogonal)
    problem.between_psd = bool(between_psd)
    # EM's path is monotone: it starts from loadings with the signs the data give
    loadings = "fabin3" if optimizer == "em" else "simple"
    if start is None:
        theta0 = problem.start(loadings=loadings)
    else:
        theta0 = np.asarray(start, dtype=float)
        if theta0.shape != (problem.npar,):
            raise ValueError(f"start has shape {theta0.shape}; the model has {problem.npar} "
                             "free parameters")
    theta0 = admissible_start(problem, theta0, user_start=start is not None)
    em = {"em_iter_max": em_iter_max, "em_fx_tol": em_fx_tol, "em_dx_tol": em_dx_tol,
          "em_accel": em_accel}
    restriction = _restriction(problem, theta0, optimizer)
    metric, first_stage = None, None
    if restriction is None and optimizer == "auto" and start is None \
            and not problem.has_start_values:
        # start where the model fits the levels' sample moments (:mod:`.estimation.moment_start`)
        first_stage, simple_start = moment_start(problem, theta0), theta0
        if first_stage is not None:
            theta0, metric = first_stage.theta, first_stage.metric
    if isinstance(restriction, Reparametrized):
        estimate = _restricted_fit(restriction, theta0, optimizer, maxiter, gtol, max_seconds,
                                   verbose, em)
    elif restriction is not None and optimizer == "em":
        estimate, restriction = _constrained_em(problem, restriction, theta0, max_seconds,
                                                verbose, em)
    elif restriction is not None:
        estimate, restriction = _constrained_fit(problem, restriction, theta0, maxiter)
    else:
        estimate = optimize(problem, theta0, optimizer, maxiter, gtol, max_seconds, verbose,
                            "user model", em, metric=metric)
    left = None if max_seconds is None else max_seconds - estimate.seconds
    if first_stage is not None and not estimate.converged and (left is None or left > 0):
        # the first stage led nowhere: lavaan's simple start, in the time that is left;
        # the higher maximum wins (a converged one unless clearly lower)
        simple = optimize(problem, simple_start, optimizer, maxiter, gtol, left,
                          verbose, "user model (simple start)", em)
        close = simple.loglik >= estimate.loglik - 1e-6 * abs(estimate.loglik)
        if simple.loglik > estimate.loglik or (simple.converged and close):
            estimate, first_stage = simple, None
    if restriction is None and not estimate.converged and start is None \
            and problem.has_start_values:
        retry = optimize(problem, problem.start(user=False, loadings=loadings), optimizer,
                         maxiter, gtol, max_seconds,
                         verbose, "user model (default start)", em)
        if retry.converged or retry.loglik > estimate.loglik:
            warnings.warn("user model: from the start() values of the syntax the optimizer did "
                          f"not converge (logl {estimate.loglik:.4f}); the default start values "
                          "are used instead", ModelWarning, stacklevel=2)
            estimate = retry
    options = {"cluster": problem.data.cluster_name, "fixed_x": bool(fixed_x),
               "optimizer": optimizer, "maxiter": maxiter, "gtol": gtol,
               "max_seconds": max_seconds, "between_psd": bool(between_psd),
               "start": "user" if start is not None else (
                   "moments" if first_stage is not None else None),
               "estimator": estimator.upper(), "se": se, "test": test,
               "std_lv": bool(std_lv), "orthogonal": bool(orthogonal), "missing": "ml"}
    if optimizer == "em":
        options.update(em)
    fit = Fit(problem, estimate, options, restriction=restriction)
    if not fit.estimate.converged:
        warnings.warn(f"user model: the optimizer did not converge: {fit.estimate.message}",
                      ConvergenceWarning, stacklevel=2)
    else:
        for problem_found in fit.checks().problems:
            warnings.warn(f"user model: not converged: {problem_found}", ConvergenceWarning,
                          stacklevel=2)
    if fit.estimate.on_boundary:
        beyond = _beyond_the_edge(problem, fit.theta, optimizer, maxiter, gtol, max_seconds)
        warnings.warn(f"user model: {_boundary_sentence(fit)}{beyond}", ModelWarning,
                      stacklevel=2)
    for case in fit.checks().heywood:
        warnings.warn(f"user model: Heywood case at {case}", ModelWarning, stacklevel=2)
    return fit


#: lavaan's names of the choices sem() accepts for ``se`` and ``test``, and what they mean here
SE_NAMES = {"standard": "standard", "robust": "robust", "robust.huber.white": "robust",
            "sandwich": "robust", "none": "none"}
TEST_NAMES = {"standard": "standard", "yuan.bentler.mplus": "yuan.bentler.mplus",
              "none": "none"}
ESTIMATORS = {"ML": ("standard", "standard"), "MLR": ("robust", "yuan.bentler.mplus")}


def _inference_options(estimator, se, test):
    """(se, test) from lavaan's estimator / se / test arguments; a clear error for a
    name that is not known."""
    key = str(estimator).upper()
    if key not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not available; use one of "
                         f"{', '.join(map(repr, ESTIMATORS))}")
    default_se, default_test = ESTIMATORS[key]
    for name, value, known in (("se", se, SE_NAMES), ("test", test, TEST_NAMES)):
        if value is not None and value not in known:
            raise ValueError(f"{name}={value!r} is not available; use one of "
                             f"{', '.join(map(repr, known))}")
    return (SE_NAMES[se] if se is not None else default_se,
            TEST_NAMES[test] if test is not None else default_test)


def _restriction(problem, theta0, optimizer):
    """How the syntax's constraints are imposed: None without any; the
    :class:`Reparametrized` objective of linear equalities (met exactly); else the
    :class:`ConstraintSet` for :func:`_constrained_fit` (nonlinear equalities,
    inequalities)."""
    constraints = ConstraintSet(problem.partable)
    if not constraints:
        return None
    if constraints.inequalities or not constraints.linear_equalities(theta0):
        return constraints
    try:
        restriction = Reparametrized(problem, constraints, theta0)
    except ValueError as exc:
        raise ModelError(f"{exc}: " + "; ".join(f"line {c.line}: '{c}'"
                                                for c in constraints.equalities)) from None
    # EM (Bentler et al. 2011) takes every constraint through its Lagrangian
    return constraints if optimizer == "em" else restriction


def _restricted_fit(restriction, theta0, optimizer, maxiter, gtol, max_seconds, verbose, em):
    """Fit in the free directions z of the equality constraints; the estimate holds the
    full theta (on the constraints) and the gradient along the free directions."""
    z0 = restriction.z(theta0)
    if not np.isfinite(restriction.loglik(z0)):
        raise ModelError("the start values projected onto the equality constraints are not "
                         "admissible (a covariance matrix that is not positive definite); "
                         "give start values that meet the constraints (start=)")
    estimate = optimize(restriction, z0, optimizer, maxiter, gtol, max_seconds, verbose,
                        "user model", em)
    return dataclasses.replace(estimate, theta=restriction.theta(estimate.theta))


def _constrained_fit(problem, constraints, theta0, maxiter):
    """Nonlinear equalities and inequalities: SLSQP under the constraints
    (:func:`mlmiss.estimation.constraints.fit_constrained`); converged when the KKT
    remainder is below :data:`KKT_TOL` and the constraints hold to 1e-8. Returns the
    estimate and the :class:`ActiveSet` of the solution."""
    began = time.perf_counter()
    theta, f, kkt, iterations, message, violation = fit_constrained(
        problem, constraints, theta0, maxiter=maxiter)
    n = float(problem.data.n_obs)
    converged = bool(np.isfinite(f) and kkt <= KKT_TOL and violation <= 1e-8)
    note = (f"SLSQP under the constraints: {message}; KKT remainder {kkt:.1e}, largest "
            f"constraint violation {violation:.1e}")
    estimate = Estimate(theta, -f * n, converged, iterations, note, "slsqp",
                        time.perf_counter() - began, kkt)
    return estimate, ActiveSet(constraints, theta, np.asarray(problem.scales, dtype=float))


def _constrained_em(problem, constraints, theta0, max_seconds, verbose, em):
    """Any constraints with ``optimizer="em"``: Bentler et al. (2011)'s augmented
    Lagrangian EM (:mod:`mlmiss.estimation.em.constrained`). Returns the estimate and
    the :class:`ActiveSet` of the solution."""
    from .estimation.em.constrained import fit_em_constrained

    began = time.perf_counter()
    result = fit_em_constrained(problem, constraints, theta0, em_iter_max=em["em_iter_max"],
                                em_dx_tol=em["em_dx_tol"], max_seconds=max_seconds,
                                verbose=verbose, label="user model")
    estimate = Estimate(result.theta, result.loglik, result.converged, result.iterations,
                        result.message, "em (augmented Lagrangian)",
                        time.perf_counter() - began, result.kkt, e_steps=result.e_steps)
    scales = np.asarray(problem.scales, dtype=float)
    return estimate, ActiveSet(constraints, result.theta, scales)


#: lavaan's names for full-information ML
MISSING_NAMES = ("ml", "fiml", "direct")
#: the lavaan options sem() takes under their dotted names, and sem()'s own name
LAVAAN_NAMES = {"fixed.x": "fixed_x", "std.lv": "std_lv", "orthogonal": "orthogonal",
                "estimator": "estimator", "se": "se", "test": "test", "missing": "missing",
                "optim.method": "optim_method"}


def _lavaan_names(options: dict) -> dict:
    """sem()'s names for lavaan's dotted option names; an unknown name is an error."""
    out = {}
    for name, value in options.items():
        key = LAVAAN_NAMES.get(name)
        if key is None:
            known = sorted(set(LAVAAN_NAMES) | set(LAVAAN_NAMES.values()))
            raise TypeError(f"sem() has no option {name!r}; lavaan's options it knows: "
                            f"{', '.join(known)} (and optimizer, start, maxiter, gtol, "
                            "max_seconds, between_psd, verbose, em_*)")
        out[key] = value
    return out


def _optimizer_name(optim_method: str) -> str:
    """sem()'s optimizer for lavaan's ``optim.method``."""
    name = str(optim_method).lower()
    if name in ("nlminb", "default", "auto"):
        return "auto"
    if name in ("em", "l-bfgs-b", "trust-exact", "trust-krylov"):
        return {"em": "em", "l-bfgs-b": "L-BFGS-B", "trust-exact": "trust-exact",
                "trust-krylov": "trust-krylov"}[name]
    raise ValueError(f"optim_method={optim_method!r} is not available; use 'nlminb' (the "
                     "default trust region), 'em', 'L-BFGS-B', 'trust-krylov' or 'trust-exact'")


#: the time the hint of :func:`_beyond_the_edge` may take
WIDE_SECONDS = 1.0


def _beyond_the_edge(problem, theta, optimizer, maxiter, gtol, max_seconds) -> str:
    """Where the likelihood alone would go from a boundary solution (between_psd=False,
    as lavaan): a sentence for the warning, empty when that fit does not converge."""
    problem.between_psd = False
    try:
        # only a hint: a short run (there the likelihood may climb without end)
        wide = optimize(problem, theta, optimizer, min(maxiter, 100), gtol,
                        min(max_seconds or WIDE_SECONDS, WIDE_SECONDS), False)
    finally:
        problem.between_psd = True
    if not wide.converged:
        return ""
    return (f"; without that restriction (between_psd=False, as lavaan) the likelihood "
            f"reaches logl {wide.loglik - problem.covariate_loglik:.4f} with an indefinite "
            "between covariance matrix")


def _boundary_sentence(fit) -> str:
    """What a boundary solution is, in the user's variables."""
    _, vectors = fit.boundary()
    names = list(fit.implied()["between"]["cov"].index)
    directions = []
    for v in vectors.T:
        order = np.argsort(-np.abs(v))
        terms = [f"{v[i]:+.2f}*{names[i]}" for i in order[:4] if abs(v[i]) > 0.1]
        directions.append(" ".join(terms))
    return ("boundary solution: the maximum lies on the edge of the admissible region, the "
            "model's between covariance matrix is singular there (zero variance along "
            f"{'; '.join(directions)}); standard errors are taken along the edge, and the "
            "chi-square test has no exact chi-square reference there")
