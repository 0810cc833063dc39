"""Robust (MLR) inference: cluster scores, sandwich standard errors, the Yuan-Bentler
scaled test as lavaan's ``estimator = "MLR"`` computes them for a two-level model.

The clusters are the independent units, so the scores are per cluster: the gradient of
each cluster's log-likelihood (:func:`mlmiss.likelihood.cluster_logliks`), here by
central differences of that vector (2 npar evaluations of a kernel that costs about as
much as one log-likelihood). With A the observed information and B = sum_j s_j s_j':

* ``se="robust"`` (lavaan's ``robust.huber.white``): Cov(theta) = A^-1 B A^-1, with
  A^-1 the model-based covariance (at a boundary solution, its projection on the edge);
* the scaled test (lavaan's ``yuan.bentler.mplus``, ``lav_test_yuan_bentler.R``):
  c = (tr(A1^-1 B1) - tr(A^-1 B)) / df, with A1 and B1 the observed and first-order
  information of the unrestricted (h1) model at its estimates, in lavaan's h1
  parameters (per level: means and the lower triangle of the covariance matrix).
  With fixed covariates the entries among the covariates (their means, variances and
  covariances) are left out of the h1 trace, as lavaan does, and out of a reference
  model's own trace.
  ``scaling_factor_h1`` and ``scaling_factor_h0`` are the two traces per parameter.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InformationWarning
from ..estimation.problem import Problem
from ..estimation.saturated import saturated_problem
from ..model.ram import flatten_moments
from ..threads import one_blas_thread
from .vcov import observed_information

#: the relative step of the central differences (cube root of the machine epsilon)
SCORE_STEP = 6e-6


def cluster_gradients(objective, theta) -> np.ndarray:
    """(J, npar): d log L_j / d theta for every cluster j, by central differences of the
    clusters' log-likelihoods in the objective's scaled parameters (the likelihood
    wherever it is defined: a boundary solution's neighbourhood included). A column
    whose steps both leave that region is NaN."""
    theta = np.asarray(theta, dtype=float)
    scales = np.asarray(objective.scales, dtype=float)
    centre = None
    out = np.empty((objective.data.n_clusters, theta.size))
    for i in range(theta.size):
        h = SCORE_STEP * max(1.0, abs(theta[i] / scales[i]))
        step = h * scales[i]
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        v_up, v_down = objective.cluster_logliks(up), objective.cluster_logliks(down)
        if v_up is not None and v_down is not None:
            out[:, i] = (v_up - v_down) / (2.0 * step)
            continue
        if centre is None:
            centre = objective.cluster_logliks(theta)
        if v_up is not None:
            out[:, i] = (v_up - centre) / step
        elif v_down is not None:
            out[:, i] = (centre - v_down) / step
        else:
            out[:, i] = np.nan
    return out


def first_order(scores) -> np.ndarray:
    """B = sum_j s_j s_j' (the meat of the sandwich)."""
    with one_blas_thread():
        return scores.T @ scores


def sandwich(bread, meat) -> np.ndarray:
    """A^-1 B A^-1 from the model-based covariance A^-1 (``bread``); parameters whose
    model-based variance or score is NaN (no derivative) stay NaN."""
    ok = np.all(np.isfinite(bread), axis=0) & np.all(np.isfinite(meat), axis=0)
    out = np.full_like(bread, np.nan)
    with one_blas_thread():
        inner = bread[np.ix_(ok, ok)]
        out[np.ix_(ok, ok)] = inner @ meat[np.ix_(ok, ok)] @ inner
    return out


def _trace(inverse, meat) -> float:
    """tr(A^-1 B) from A^-1 and B."""
    return float(np.sum(inverse * meat.T))


def _covariate_rows(table, covariates) -> np.ndarray:
    """Rows of a parameter table among fixed covariates: their means, variances and
    covariances with each other, at the covariates' level."""
    mask = np.zeros(len(table), bool)
    for i, r in enumerate(table.itertuples(index=False)):
        names = set(covariates.get(int(r.level), ()))
        if r.op == "~1":
            mask[i] = r.lhs in names
        elif r.op == "~~":
            mask[i] = r.lhs in names and r.rhs in names
    return mask


def free_covariate_parameters(partable, covariates) -> np.ndarray:
    """Boolean per free parameter of ``partable``: True where it is a covariate moment
    (see :func:`_covariate_rows`)."""
    table = partable.table
    free = table["free"].to_numpy()
    rows = _covariate_rows(table, covariates) & (free > 0)
    out = np.zeros(int(free.max(initial=0)), bool)
    out[free[rows] - 1] = True
    return out


def reference_trace(objective, theta, skip=None) -> float:
    """tr(A^-1 B) of a fitted objective (A its observed information, B its first-order
    one) over the parameters not in ``skip``."""
    keep = np.ones(objective.npar, bool) if skip is None else ~np.asarray(skip, bool)
    info = observed_information(objective, theta)[np.ix_(keep, keep)]
    meat = first_order(cluster_gradients(objective, theta))[np.ix_(keep, keep)]
    if not (np.all(np.isfinite(info)) and np.all(np.isfinite(meat))):
        return float("nan")
    with one_blas_thread():
        return _trace(np.linalg.inv(info), meat)


def h1_theta(problem: Problem, moments) -> np.ndarray:
    """The h1 parameters that give these moments (the map is linear and one-to-one)."""
    model = problem.model
    zero = np.zeros(problem.npar)
    jac = model.jacobian(zero)
    target = model.moments_vector(zero)
    theta, *_ = np.linalg.lstsq(jac, flatten_moments(moments) - target, rcond=None)
    return theta


@dataclass(frozen=True)
class ScaledTest:
    """The Yuan-Bentler (Mplus variant) scaling of a likelihood-ratio statistic."""

    trace_h1: float
    trace_h0: float
    ndat: int
    npar: int
    df: int

    @property
    def scaling_factor(self) -> float:
        """(tr_h1 - tr_h0) / df; NaN when df is 0, a trace could not be computed, or the
        difference is not positive (as lavaan)."""
        if self.df <= 0:
            return float("nan")
        c = (self.trace_h1 - self.trace_h0) / self.df
        return c if c > 0 else float("nan")

    @property
    def scaling_factor_h1(self) -> float:
        return self.trace_h1 / self.ndat

    @property
    def scaling_factor_h0(self) -> float:
        return self.trace_h0 / self.npar if self.npar else float("nan")


def h1_trace(data, between_mask, moments, covariates) -> tuple[float, int]:
    """(tr(A1^-1 B1), the number of h1 parameters it runs over) at the h1 moments."""
    problem = saturated_problem(data, between_mask)
    theta = h1_theta(problem, moments)
    skip = free_covariate_parameters(problem.partable, covariates)
    return reference_trace(problem, theta, skip), int(problem.npar - skip.sum())


def scaled_tests(fit) -> tuple[ScaledTest, ScaledTest]:
    """The scaled tests of a fit and of its baseline model (they share the h1 trace).
    Reads ``fit.data``, ``fit.model``, ``fit.partable``, ``fit.fixed_x``, ``fit.h1()``,
    ``fit.baseline()``, ``fit.standard_vcov()``, ``fit.first_order()`` and
    ``fit.fit_measures(scaled=False)`` (the degrees of freedom)."""
    covariates = fit.partable.covariates() if fit.fixed_x else {}
    trace_h1, ndat = h1_trace(fit.data, fit.model.between_mask, fit.h1().moments, covariates)
    measures = fit.fit_measures(scaled=False)
    bread, meat = fit.standard_vcov(), fit.first_order()
    ok = np.all(np.isfinite(bread), axis=0) & np.all(np.isfinite(meat), axis=0)
    # a parameter without derivatives leaves the trace incomplete: no scaling then
    trace_h0 = _trace(bread, meat) if ok.all() else float("nan")
    model = ScaledTest(trace_h1, trace_h0, ndat, int(fit.npar), int(measures["df"]))
    if measures["df"] > 0 and not np.isfinite(model.scaling_factor):
        warnings.warn("user model: the scaled test is not available (a derivative could not be "
                      "computed, or the trace difference is not positive): its statistics are NaN",
                      InformationWarning, stacklevel=4)
    base = fit.baseline()
    skip = free_covariate_parameters(base.problem.partable, covariates)
    base_h0 = reference_trace(base.problem, base.estimate.theta, skip)
    baseline = ScaledTest(trace_h1, base_h0, ndat, int(base.npar - skip.sum()),
                          int(measures["baseline_df"]))
    return model, baseline
