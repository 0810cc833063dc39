"""The result of a fit: estimates, log-likelihood, convergence, implied moments."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from .hessian import hessian_from_gradient


def per_level(m, data) -> dict:
    """Per-level means (Series) and covariances (DataFrames) of two-level moments, in
    lavaan's layout: level 1 over the level-1 variables with the "both" variables' means
    at 0; level 2 over the "both" and between-only variables."""
    y, z = list(data.y_names), list(data.z_names)
    between = np.any(m.sigma_b != 0.0, axis=1)
    idx = np.flatnonzero(between)
    b_names = [y[i] for i in idx] + z
    b_cov = np.block([[m.sigma_b[np.ix_(idx, idx)], m.sigma_yz[idx, :]],
                      [m.sigma_yz[idx, :].T, m.sigma_zz]])
    return {
        "within": {"mean": pd.Series(np.where(between, 0.0, m.mu_y), index=y),
                   "cov": pd.DataFrame(m.sigma_w, index=y, columns=y)},
        "between": {"mean": pd.Series(np.concatenate([m.mu_y[idx], m.mu_z]), index=b_names),
                    "cov": pd.DataFrame(b_cov, index=b_names, columns=b_names)},
    }


@dataclass(eq=False)
class Fit:
    """A fitted two-level model (returned by :func:`mlmiss.sem`).

    Attributes
    ----------
    partable : the model's parameter table (:class:`mlmiss.partable.ParTable`).
    model : the :class:`mlmiss.model.TwoLevelModel` (theta -> moments).
    data : the :class:`mlmiss.TwoLevelData` the model was fitted to.
    theta : the estimates of the free parameters.
    loglik : the log-likelihood at the estimates (lavaan's ``logl``).
    converged, iterations, message : what the optimizer reported.
    optimizer : its name.
    """

    partable: object
    model: object
    data: object
    theta: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    message: str
    optimizer: str = "trust-exact"
    seconds: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def npar(self) -> int:
        """Free parameters (equality-constrained ones counted once)."""
        return int(self.partable.npar)

    @property
    def nobs(self) -> int:
        return self.data.n_obs

    @property
    def nclusters(self) -> int:
        return self.data.n_clusters

    # ------------------------------------------------------------------ estimates
    def vcov(self) -> np.ndarray:
        """Covariance matrix of theta: the inverse of the observed information (the
        Hessian of -logl at the estimates, from central differences of the analytic
        gradient), lavaan's default for missing data."""
        if "vcov" not in self.extra:
            from .estimate import objective

            f_and_grad = objective(self.model, self.data)
            n = float(self.data.n_obs)
            hessian = n * hessian_from_gradient(lambda t: f_and_grad(t)[1], self.theta)
            self.extra["vcov"] = np.linalg.pinv(hessian, hermitian=True)
        return self.extra["vcov"]

    def parameter_estimates(self, ci_level: float = 0.95, se: bool = True) -> pd.DataFrame:
        """One row per parameter-table entry: lhs, op, rhs, level, label, est, and
        (``se=True``) se, z, pvalue, ci_lower, ci_upper (Wald, normal quantiles); fixed
        parameters have se 0 and no test, as in lavaan."""
        table = self.partable.table
        est = table["value"].to_numpy(dtype=float).copy()
        free = table["free"].to_numpy()
        est[free > 0] = self.theta[free[free > 0] - 1]
        out = pd.DataFrame({"lhs": table["lhs"], "op": table["op"], "rhs": table["rhs"],
                            "level": table["level"], "label": table["label"], "est": est})
        if se:
            from scipy import stats  # imported here: scipy.stats is slow to import

            std = np.sqrt(np.clip(np.diag(self.vcov()), 0.0, None))
            se_col = np.zeros(len(est))
            se_col[free > 0] = std[free[free > 0] - 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(free > 0, est / se_col, np.nan)
            q = stats.norm.ppf(0.5 + ci_level / 2.0)
            out["se"] = se_col
            out["z"] = z
            out["pvalue"] = 2.0 * stats.norm.sf(np.abs(z))
            out["ci_lower"] = est - q * se_col
            out["ci_upper"] = est + q * se_col
        return out

    # ------------------------------------------------------------------ moments
    def implied(self) -> dict:
        """Model-implied moments: ``{"moments": Moments, "within": {...}, "between": {...}}``
        with per-level ``mean`` (Series) and ``cov`` (DataFrame). As in lavaan, the within
        means of "both" variables are 0 and live at the between level."""
        m = self.model.moments(self.theta)
        return {"moments": m, **per_level(m, self.data)}

    def h1(self):
        """The saturated model fitted to the same data (:mod:`mlmiss.h1`), cached."""
        if "h1" not in self.extra:
            from .h1 import fit_h1

            self.extra["h1"] = fit_h1(self)
        return self.extra["h1"]

    def baseline(self):
        """The baseline model of the incremental fit indices, fitted to the same data
        (:func:`mlmiss.measures.baseline_syntax`), cached."""
        if "baseline" not in self.extra:
            from .estimate import sem
            from .h1 import H1
            from .measures import baseline_syntax

            # the covariates' rows are free in the baseline syntax; with fixed_x their
            # marginal log-likelihood is subtracted, as for h1 and the model itself
            fitted = sem(baseline_syntax(self.partable), self.data, cluster=None)
            self.extra["baseline"] = H1(fitted, offset=self.extra.get("covariate_loglik", 0.0))
        return self.extra["baseline"]

    def fit_measures(self) -> dict:
        """lavaan's fit measures (names with underscores): npar, logl, unrestricted_logl,
        aic, bic, chisq, df, pvalue, baseline_chisq, baseline_df, cfi, tli, rmsea,
        srmr_within, srmr_between (:mod:`mlmiss.measures`)."""
        from .measures import fit_measures

        return fit_measures(self)

    def summary(self) -> str:
        """A lavaan-like text summary (also printed)."""
        from .measures import summary_text

        text = summary_text(self)
        print(text)
        return text

    def inspect(self, what: str):
        """lavaan's lavInspect for ``"h1"`` (per-level means and covariances of the
        saturated model) and ``"icc"`` (intraclass correlations from it, 0 for
        within-only variables)."""
        if what == "h1":
            return per_level(self.h1().moments, self.data)
        if what == "icc":
            m = self.h1().moments
            w, b = np.diag(m.sigma_w), np.diag(m.sigma_b)
            return pd.Series(b / (w + b), index=list(self.data.y_names), name="icc")
        raise ValueError(f"inspect({what!r}): known are 'h1' and 'icc'")

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        return (f"<mlmiss Fit: {status} after {self.iterations} iterations, logl = {self.loglik:.4f}, "
                f"npar = {self.npar}, nobs = {self.nobs}, nclusters = {self.nclusters}>")
