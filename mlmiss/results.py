"""The result of a fit: estimates, log-likelihood, convergence, and what follows from them.

A :class:`Fit` holds its estimation problem (model, data, parameter table) and the
optimizer's estimate, and asks the lower layers for everything else: standard errors
(:mod:`mlmiss.inference.vcov`), the saturated and baseline models
(:mod:`mlmiss.estimation`), fit measures (:mod:`mlmiss.inference.measures`), the
summary text (:mod:`mlmiss.report`). Each is computed once, on first request.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .data.levels import to_levels
from .errors import ConvergenceWarning
from .estimation.baseline import fit_baseline
from .estimation.boundary import tangent_basis
from .estimation.optimizers import Estimate
from .estimation.problem import Problem
from .estimation.reference import ReferenceFit
from .estimation.saturated import fit_saturated
from .inference.checks import FitChecks, post_fit_checks
from .inference.lrt import lrt as likelihood_ratio_test
from .inference.defined import constraint_rows
from .inference.matrices import coverage, latent_covariances, missing_patterns, ram_matrices
from .inference.measures import fit_measures
from .inference.modindices import modindices as modification_indices
from .inference.predict import predict as predict_scores
from .inference.residuals import residuals as residual_moments
from .inference.robust import cluster_gradients, first_order, sandwich, scaled_tests
from .inference.standardized import r_squared, standardized_columns, standardized_solution
from .inference.vcov import observed_information, observed_vcov
from .inference.wald import add_wald_columns
from .model.partable import table_rows
from .output import fit_to_dict, fit_to_json
from .report import Summary, summary_text
from .threads import one_blas_thread


def _warn_unless_converged(reference: ReferenceFit, which: str) -> ReferenceFit:
    if not reference.converged:
        warnings.warn(f"{which}: the optimizer did not converge ({reference.estimate.message}); "
                      "the test statistic and fit measures that use it are unreliable",
                      ConvergenceWarning, stacklevel=4)
    return reference


#: the names :meth:`Fit.inspect` knows
INSPECT_NAMES = ("h1", "sampstat", "implied", "icc", "r2", "rsquare", "std", "std.all", "est",
                 "se", "cov.lv", "patterns", "coverage")


@dataclass(eq=False)
class Fit:
    """A fitted two-level model (returned by :func:`mlmiss.sem`).

    Attributes
    ----------
    problem : the estimation problem (``partable``, ``model``, ``data``).
    estimate : what the optimizer found (:class:`mlmiss.estimation.optimizers.Estimate`).
    options : the options of the call that made it (``sem()``'s keyword arguments, by
        the names ``sem()`` takes).
    restriction : with equality constraints, the objective the optimizer saw
        (:class:`mlmiss.estimation.constraints.Reparametrized`: theta = D (u0 + K z)).
    """

    problem: Problem
    estimate: Estimate
    options: dict = field(default_factory=dict)
    restriction: object = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ what was fitted
    @property
    def partable(self):
        """The model's parameter table (:class:`mlmiss.model.ParTable`)."""
        return self.problem.partable

    @property
    def model(self):
        """The :class:`mlmiss.model.TwoLevelModel` (theta -> moments)."""
        return self.problem.model

    @property
    def data(self):
        """The :class:`mlmiss.TwoLevelData` the model was fitted to."""
        return self.problem.data

    @property
    def cluster(self) -> str:
        return self.data.cluster_name

    @property
    def fixed_x(self) -> bool:
        return bool(self.partable.fixed_x)

    # ------------------------------------------------------------------ the estimate
    @property
    def theta(self) -> np.ndarray:
        return self.estimate.theta

    @property
    def loglik(self) -> float:
        """The log-likelihood at the estimates (lavaan's ``logl``; with fixed covariates
        the conditional one)."""
        return self.estimate.loglik - self.problem.covariate_loglik

    @property
    def converged(self) -> bool:
        """The optimizer's gradient is small *and* the observed information is positive
        definite (:meth:`checks`)."""
        return self.estimate.converged and self.checks().information_ok

    @property
    def iterations(self) -> int:
        return self.estimate.iterations

    @property
    def message(self) -> str:
        return "; ".join([self.estimate.message] + self.checks().problems)

    @property
    def optimizer(self) -> str:
        return self.estimate.optimizer

    @property
    def seconds(self) -> float:
        return self.estimate.seconds

    @property
    def npar(self) -> int:
        """Free parameters: labels shared count once, and each independent equality
        constraint takes one away (lavaan's npar)."""
        taken = self.restriction.rank if self.restriction is not None else 0
        return int(self.partable.npar) - taken

    @property
    def nobs(self) -> int:
        return self.data.n_obs

    @property
    def nclusters(self) -> int:
        return self.data.n_clusters

    def _cached(self, key, compute):
        if key not in self._cache:
            # every result is computed with numpy's linear algebra on one BLAS thread (an
            # 83 x 83 eigh took 124 ms with BLAS threads on the busy machine, 1 ms without)
            with one_blas_thread():
                self._cache[key] = compute()
        return self._cache[key]

    # ------------------------------------------------------------------ estimates
    def parameter_names(self) -> list[str]:
        """One name per free parameter: its first row, as ``lhs op rhs (level L)``."""
        names = {}
        for r in table_rows(self.partable.table):
            if r.free > 0 and r.free not in names:
                names[r.free] = f"{r.lhs} {r.op} {r.rhs}".strip() + f" (level {r.level})"
        return [names[i] for i in range(1, int(self.partable.npar) + 1)]

    def information(self) -> np.ndarray:
        """The observed information at the estimates: the Hessian of -logl, analytic
        (:func:`mlmiss.inference.vcov.observed_information`)."""
        return self._cached("information", lambda: observed_information(self.problem, self.theta))

    def checks(self) -> FitChecks:
        """The post-fit checks (:mod:`mlmiss.inference.checks`): the information's
        eigenvalues, why the fit is not a maximum if it is not, Heywood cases."""
        return self._cached("checks", lambda: post_fit_checks(
            self.problem, self.theta, self.information(), self.parameter_names(),
            self.tangent()))

    def boundary(self):
        """At a boundary solution (Sigma_b singular, the data pushing past the edge of
        the admissible region, :mod:`mlmiss.estimation.boundary`): (Z, V), a basis of
        the scaled parameter directions along the edge and the eigenvectors of Sigma_b's
        zero eigenvalues over the level-2 variables (the order of ``implied()["between"]``);
        else (None, None)."""
        if not self.estimate.on_boundary:
            return None, None
        return self._cached("boundary", lambda: tangent_basis(self.problem, self.theta))

    @property
    def se(self) -> str:
        """lavaan's ``se``: "standard" (the observed information), "robust" (the
        sandwich with cluster scores, lavaan's robust.huber.white) or "none"."""
        return self.options.get("se", "standard")

    @property
    def test(self) -> str:
        """lavaan's ``test``: "standard" or "yuan.bentler.mplus" (the scaled test of MLR)."""
        return self.options.get("test", "standard")

    def standard_vcov(self) -> np.ndarray:
        """The inverse of the observed information (:meth:`information`), lavaan's
        default for missing data. Warns (:class:`mlmiss.InformationWarning`) when it is
        singular or not positive definite; NaN where a second derivative could not be
        computed."""
        return self._cached("standard_vcov", lambda: observed_vcov(
            self.problem, self.theta, self.parameter_names(), self.information(),
            self.tangent()))

    def scores(self) -> np.ndarray:
        """(nclusters, npar): each cluster's gradient of its log-likelihood at the
        estimates (:func:`mlmiss.inference.robust.cluster_gradients`)."""
        return self._cached("scores", lambda: cluster_gradients(self.problem, self.theta))

    def first_order(self) -> np.ndarray:
        """The first-order information sum_j s_j s_j' of the cluster scores."""
        return self._cached("first_order", lambda: first_order(self.scores()))

    def tangent(self):
        """The directions the estimates may move in, in the scaled parameters theta /
        scales: the null space of the equality constraints, the edge of the admissible
        region at a boundary solution, their intersection with both; None when every
        direction is free. The information is judged and inverted along it."""
        edge = self.boundary()[0]
        if self.restriction is None:
            return edge
        plane = self.restriction.tangent
        if edge is None:
            return plane
        # span(K) and span(Z) meet where K a = Z b
        _, sv, vt = np.linalg.svd(np.hstack([plane, -edge]))
        rank = int(np.sum(sv > 1e-10 * sv[0])) if sv.size else 0
        common = plane @ vt[rank:, :plane.shape[1]].T
        q, _ = np.linalg.qr(common)
        return q

    def vcov(self) -> np.ndarray:
        """Covariance matrix of theta: with ``se="standard"`` (and ``"none"``, which only
        keeps standard errors out of the tables) :meth:`standard_vcov`; with
        ``se="robust"`` the sandwich A^-1 B A^-1 with B :meth:`first_order`."""
        if self.se == "robust":
            return self._cached("robust_vcov", lambda: sandwich(self.standard_vcov(),
                                                                self.first_order()))
        return self.standard_vcov()

    def scaled_test(self):
        """The Yuan-Bentler scaled tests (Mplus variant) of the model and of the baseline
        model (:func:`mlmiss.inference.robust.scaled_tests`)."""
        return self._cached("scaled_test", lambda: scaled_tests(self))

    def parameter_estimates(self, ci_level: float = 0.95, se: bool = True,
                            standardized: bool = False) -> pd.DataFrame:
        """One row per parameter-table entry: lhs, op, rhs, level, label, est, and
        (``se=True``) se, z, pvalue, ci_lower, ci_upper (Wald, normal quantiles); fixed
        parameters have se 0 and no test, as in lavaan. ``standardized=True`` adds
        std_lv, std_all, std_nox (:mod:`mlmiss.inference.standardized`)."""
        table = self.partable.table
        est = table["value"].to_numpy(dtype=float).copy()
        free = table["free"].to_numpy()
        est[free > 0] = self.theta[free[free > 0] - 1]
        out = pd.DataFrame({"lhs": table["lhs"], "op": table["op"], "rhs": table["rhs"],
                            "level": table["level"], "label": table["label"], "est": est})
        if se and self.se != "none":
            variances = np.diag(self.vcov())
            with np.errstate(invalid="ignore"):
                std = np.where(variances >= 0, np.sqrt(np.abs(variances)), np.nan)
            se_col = np.zeros(len(est))
            se_col[free > 0] = std[free[free > 0] - 1]
            add_wald_columns(out, est, se_col, ci_level, testable=free > 0)
        if standardized:
            for name, column in standardized_columns(self).items():
                out[name] = column.to_numpy()
        extra = constraint_rows(self, ci_level, se=se and self.se != "none")
        if len(extra):   # lavaan's rows after the parameters: :=, ==, <, >
            out = pd.concat([out, extra], ignore_index=True)
        return out

    def standardized_solution(self, type: str = "std.all", ci_level: float = 0.95) -> pd.DataFrame:
        """lavaan's standardizedSolution(): est_std of every parameter-table row, each
        level by its own implied variances ("std.all", "std.lv" or "std.nox"), with
        delta-method se, z, pvalue, ci_lower, ci_upper
        (:mod:`mlmiss.inference.standardized`)."""
        return standardized_solution(self, type=type, ci_level=ci_level)

    # ------------------------------------------------------------------ moments
    def implied(self) -> dict:
        """Model-implied moments: ``{"moments": Moments, "within": {...}, "between": {...}}``
        with per-level ``mean`` (Series) and ``cov`` (DataFrame). As in lavaan, the within
        means of "both" variables are 0 and live at the between level."""
        m = self.model.moments(self.theta)
        return {"moments": m, **to_levels(m, self.data.y_names, self.data.z_names)}

    def h1(self, method: str = "auto") -> ReferenceFit:
        """The saturated model fitted to the same data (:mod:`mlmiss.estimation.saturated`):
        ``method="auto"`` (a few EM steps, each one gradient, then L-BFGS; what the fit
        measures use), ``"em"`` (EM to the end) or ``"direct"`` (L-BFGS on the Cholesky
        factors)."""
        key = "h1" if method == "auto" else f"h1-{method}"
        return self._cached(key, lambda: _warn_unless_converged(
            fit_saturated(self.problem, method), "h1 (saturated) model"))

    def baseline(self) -> ReferenceFit:
        """The baseline model of the incremental fit indices, fitted to the same data
        (:mod:`mlmiss.estimation.baseline`)."""
        return self._cached("baseline", lambda: _warn_unless_converged(
            fit_baseline(self.problem), "baseline model"))

    def fit_measures(self, scaled: bool | None = None) -> dict:
        """lavaan's fit measures (names with underscores): npar, logl, unrestricted_logl,
        aic, bic, chisq, df, pvalue, baseline_chisq, baseline_df, cfi, tli, rmsea,
        srmr_within, srmr_between, ... (:mod:`mlmiss.inference.measures`); with the
        scaled test (``test="yuan.bentler.mplus"``, MLR; ``scaled`` None follows it) also
        the scaled and robust ones (chisq_scaled, chisq_scaling_factor, cfi_robust,
        rmsea_robust, ...)."""
        if self.test == "none":
            raise ValueError("fit_measures(): the fit has test='none' (no test statistic); "
                             "fit it with test='standard' or estimator='MLR'")
        if scaled is None:
            scaled = self.test == "yuan.bentler.mplus"
        if not scaled:
            return self._cached("measures", lambda: fit_measures(self))
        return self._cached("measures_scaled", lambda: fit_measures(self, self.scaled_test()))

    def summary(self, standardized: bool = False, rsquare: bool = False,
                fit_measures: bool = True) -> Summary:
        """A lavaan-like text summary (lavaan's ``summary(fit, fit.measures = TRUE)``):
        a string that the prompt shows as the report (``print(fit.summary())`` in a
        script). ``standardized=True`` adds the Std.lv and Std.all columns,
        ``rsquare=True`` an R-Square block per level; ``fit_measures=False`` leaves out
        the test and the fit measures (no h1 or baseline fit)."""
        return Summary(summary_text(self, measures=fit_measures, standardized=standardized,
                                    rsquare=rsquare))

    def to_dict(self) -> dict:
        """The fit as JSON-ready data: estimates, fit measures, implied and h1 moments
        per level, R-square, a data summary, options, convergence and versions
        (:func:`mlmiss.output.fit_to_dict`)."""
        return fit_to_dict(self)

    def to_json(self, path=None, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text (NaN as null), also written to ``path`` if given."""
        return fit_to_json(self, path, indent=indent)

    def inspect(self, what: str):
        """lavaan's lavInspect for ``"h1"`` (or ``"sampstat"``: per-level means and
        covariances of the saturated model, lavaan's sample statistics with missing
        data), ``"implied"`` (the model's, at the estimates), ``"icc"`` (intraclass
        correlations from h1, 0 for within-only variables), ``"r2"`` (or ``"rsquare"``:
        R-square per level, {"within": Series, "between": Series}), ``"std"`` (or
        ``"std.all"``: :meth:`standardized_solution`), ``"est"`` and ``"se"`` (per level
        the RAM matrices A, S, m of the estimates or their standard errors),
        ``"cov.lv"`` (implied latent covariances per level), ``"patterns"`` and
        ``"coverage"`` (the data's missing patterns and covariance coverage per level;
        :mod:`mlmiss.inference.matrices`)."""
        if what in ("h1", "sampstat"):
            return to_levels(self.h1().moments, self.data.y_names, self.data.z_names)
        if what == "implied":
            return to_levels(self.implied()["moments"], self.data.y_names, self.data.z_names)
        if what == "icc":
            m = self.h1().moments
            w, b = np.diag(m.sigma_w), np.diag(m.sigma_b)
            return pd.Series(b / (w + b), index=list(self.data.y_names), name="icc")
        if what in ("r2", "rsquare"):
            return r_squared(self)
        if what in ("std", "std.all"):
            return self.standardized_solution()
        if what in ("est", "se"):
            return ram_matrices(self, what)
        if what == "cov.lv":
            return latent_covariances(self)
        if what == "patterns":
            return missing_patterns(self.data, self.model.between_mask)
        if what == "coverage":
            return coverage(self.data, self.model.between_mask)
        raise ValueError(f"inspect({what!r}): known are {', '.join(map(repr, INSPECT_NAMES))}")

    def residuals(self, type: str = "cor") -> dict:
        """lavaan's ``residuals(fit, type=)``: h1 (saturated) minus model-implied moments
        per level, ``{"within": {"mean": Series, "cov": DataFrame}, "between": {...}}``.
        ``type``: "cor" (= "cor.bollen": correlation metric, the SRMR's; lavaan's own
        default is "raw"), "raw" or "cor.bentler" (:mod:`mlmiss.inference.residuals`)."""
        with one_blas_thread():
            return residual_moments(self, type)

    def modindices(self, sort: bool = False, minimum_value: float = 0.0,
                   information: str = "expected") -> pd.DataFrame:
        """lavaan's ``modindices(fit)``: 1-df score tests of the fixed parameters lavaan
        would free, per level (lhs, op, rhs, level, mi, epc, sepc_all); ``sort`` by
        decreasing mi, ``minimum_value`` to keep larger ones only, ``information``
        "expected" (lavaan's default here) or "observed"
        (:mod:`mlmiss.inference.modindices`)."""
        with one_blas_thread():
            return modification_indices(self, sort=sort, minimum_value=minimum_value,
                                        information=information)

    def score_test(self, release=None, cumulative: bool = False,
                   information: str = "expected", epc: bool = False):
        """lavaan's ``lavTestScore(fit)``: score (Lagrange multiplier) tests of releasing
        the fit's equality constraints (``==`` lines and shared labels), jointly and one
        at a time (``cumulative``: the largest together); ``information`` "expected"
        (lavaan's default) or "observed"; ``epc`` the expected parameter changes. With
        MLR also Satorra's (2000) scaled, adjusted and robust tests
        (:func:`mlmiss.inference.constraint_tests.score_test`)."""
        from .inference.constraint_tests import score_test

        with one_blas_thread():
            return score_test(self, release=release, cumulative=cumulative,
                              information=information, epc=epc)

    def wald_test(self, constraints):
        """lavaan's ``lavTestWald(fit, constraints=)``: the Wald test of equality
        constraints of the labels ("l2 == m2; b1 == 2*b2 - b3") with :meth:`vcov`
        (:func:`mlmiss.inference.constraint_tests.wald_test`)."""
        from .inference.constraint_tests import wald_test

        with one_blas_thread():
            return wald_test(self, constraints)

    def predict(self, level: int = 1, type: str = "lv",
                lavaan_centering: bool = False) -> pd.DataFrame:
        """lavaan's ``lavPredict(fit, level=, type=)``: factor scores ("lv") or predicted
        values ("yhat" / "ov") given all the observed data of each cluster; ``level=1``
        one row per observation used, ``level=2`` one row per cluster (index: cluster
        ids). ``lavaan_centering=True`` reproduces lavaan 0.7.2's shifted scores
        (:mod:`mlmiss.inference.predict`)."""
        with one_blas_thread():
            return predict_scores(self, level, type, lavaan_centering)

    def lrt(self, *others, names=None) -> pd.DataFrame:
        """lavaan's ``lavTestLRT(fit, other, ...)``: the chi-square difference test of
        this fit and other fits of nested models on the same data, one row per model
        sorted by df (with MLR fits the Satorra-Bentler 2001 scaled difference;
        :func:`mlmiss.inference.lrt.lrt`). ``names`` in the order (self, *others)."""
        return likelihood_ratio_test(self, *others, names=names)

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        return (f"<mlmiss Fit: {status} after {self.iterations} iterations, logl = {self.loglik:.4f}, "
                f"npar = {self.npar}, nobs = {self.nobs}, nclusters = {self.nclusters}>")
