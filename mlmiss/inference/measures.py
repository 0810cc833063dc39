"""Fit measures of a two-level fit, as lavaan reports them.

lavaan's definitions for a two-level model fitted by ML (lavaan 0.7; the file each comes
from is named beside it):

* ``chisq`` (``lav_test.R``): the likelihood-ratio statistic against the unrestricted
  (h1) model, ``2 * (unrestricted_logl - logl)``, set to 0 when negative; ``pvalue`` its
  upper chi-square tail with ``df`` degrees of freedom (missing when ``df`` is 0).
* ``df`` (``lav_partable_utils.R``: ``lav_pt_ndat``, ``lav_pt_df``; ``lav_test_utils.R``):
  the number of "sample statistics" minus ``npar``. Per level: the within level counts
  the covariances of its variables and the means of the within-only ones; the between
  level counts covariances and means of its variables. With ``fixed.x = TRUE`` the
  covariates' own moments are taken out (their covariances at each level, and their
  means at level 2; their level-1 means were never counted).
* the baseline model (``lav_object_generate.R``: ``lav_object_baseline``;
  ``lav_partable_unrestricted.R``: ``lav_pt_indep_or_unrestricted``): per level, every
  observed variable of that level gets a free variance and nothing else, except that the
  exogenous covariates of a level (lavaan's ``ov.x``) keep their covariances among
  themselves free (``baseline.fixed.x.free.cov = TRUE``, the default); the means follow
  the two-level rule (free at level 2, free at level 1 for within-only variables only).
  With ``fixed.x = TRUE`` the covariates' rows are fixed at the h1 values, so they do
  not count as parameters; the baseline statistic is then the same number as with
  ``fixed.x = FALSE``. ``baseline_chisq`` is ``2 * (unrestricted_logl - baseline logl)``
  (0 if negative) and ``baseline_df`` its sample statistics minus its parameters.
* ``cfi``, ``tli`` (``lav_fit_cfi.R``): Bentler's CFI with lavaan's guards (1 when both
  non-centralities are 0), and the TLI written as ``1 - (X2 - df) df0 / ((X0 - df0) df)``
  (1 when ``df`` is 0).
* ``aic``, ``bic`` (``lav_fit_aic.R``, ``lav_model_loglik.R``): ``-2 logl + 2 npar`` and
  ``-2 logl + npar log N`` with N the number of level-1 rows used (not clusters).
* ``sabic`` (lavaan's ``bic2``, also under that name): the sample-size adjusted BIC,
  ``-2 logl + npar log((N + 2) / 24)``; ``ntotal`` is N.
* ``rmsea`` (``lav_fit_rmsea.R``): ``sqrt(max(chisq / N / df - 1 / N, 0))``, N again the
  level-1 rows; 0 when ``df`` is 0. Its 90% interval ``rmsea_ci_lower``,
  ``rmsea_ci_upper``: sqrt(lambda / (N df)) for the non-centralities lambda at which
  the observed chisq is the 95th and the 5th percentile of the non-central chi-square
  (0 where even lambda = 0 puts it below, and both 0 when df is 0; the upper search
  runs to max(N, 4 chisq)).
  ``rmsea_pvalue`` tests RMSEA <= ``rmsea_close_h0`` = 0.05 (the upper tail of chisq
  under lambda = N df 0.05^2) and ``rmsea_notclose_pvalue`` RMSEA >= 0.08 (the lower
  tail under lambda = N df 0.08^2); NaN when df is 0.
* ``gfi`` (``lav_fit_gfi.R``): for a two-level model lavaan falls back to the
  likelihood-ratio statistic, ``N p / (N p + 2 chisq - 2 df)`` (at most 1) with p the
  number of level-1 observed variables; its interval ``gfi_ci_lower``, ``gfi_ci_upper``
  puts the RMSEA interval's non-centralities lambda in place of ``chisq - df``. With
  MLR, ``gfi_robust`` uses ``c df`` and its interval ``c lambda`` from the scaled statistic.
* ``srmr_within``, ``srmr_between`` (``lav_fit_srmr.R``: ``lav_fit_srmr_twolevel``): per
  level, the covariance matrices of the h1 model and of the fitted model are turned into
  correlation matrices and compared; the root mean square of the lower triangle
  (diagonal included) of the difference. No means. The fitted between covariance matrix
  is first made positive definite (eigenvalues below 1e-6 of the largest are raised to
  it). ``srmr`` is their sum.

With the scaled test (``estimator="MLR"``; lavaan's ``yuan.bentler.mplus``, the scaling
factor c from :mod:`mlmiss.inference.robust`; ``lav_fit_cfi.R``, ``lav_fit_rmsea.R``):

* ``chisq_scaled = chisq / c`` on ``df`` (``pvalue_scaled``), ``chisq_scaling_factor = c``;
  the same for the baseline model with its own factor c0;
* ``cfi_scaled``, ``tli_scaled``: CFI and TLI of the scaled statistics;
  ``cfi_robust``, ``tli_robust``: with the non-centralities ``chisq - c df`` and
  ``baseline_chisq - c0 df0`` (Brosseau-Liard and Savalei's robust versions);
* ``rmsea_scaled``: lavaan refers the unscaled statistic to ``c df`` degrees of freedom
  (its interval and tests likewise); ``rmsea_robust = sqrt(max(chisq / (N df) - c / N,
  0))``, its interval ``sqrt(c lambda / (N df))`` with lambda from the scaled statistic on
  ``df``, its tests with non-centralities divided by c.

``fit_measures(fit)`` reads only ``fit.loglik``, ``fit.npar``, ``fit.nobs``,
``fit.partable``, ``fit.h1()`` (``.loglik``, ``.moments``),
``fit.baseline()`` (``.loglik``) and ``fit.implied()["moments"]``, so any object with
those attributes will do. The degrees of freedom come from the parameter table, not from
the h1 or baseline objects' ``npar``: with ``fixed_x=True`` those are fitted with the
covariate rows free, and their ``loglik`` must have the covariates' marginal
log-likelihood taken out, as the model's has.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.levels import between_cov
from ..estimation.baseline import baseline_syntax
from ..model.partable import parameter_table, table_rows
from .chisq import chi2_pvalue

__all__ = ["baseline_npar", "sample_statistics", "degrees_of_freedom", "fit_measures",
           "MEASURES", "SCALED_MEASURES"]

#: the keys of :func:`fit_measures`, lavaan's names with dots as underscores
MEASURES = ("npar", "ntotal", "logl", "unrestricted_logl", "aic", "bic", "bic2", "sabic",
            "chisq", "df", "pvalue", "baseline_chisq", "baseline_df", "baseline_pvalue",
            "cfi", "tli", "rmsea", "rmsea_ci_lower", "rmsea_ci_upper", "rmsea_ci_level",
            "rmsea_pvalue", "rmsea_close_h0", "rmsea_notclose_pvalue", "rmsea_notclose_h0",
            "gfi", "gfi_ci_lower", "gfi_ci_upper", "gfi_ci_level",
            "srmr", "srmr_within", "srmr_between")
#: the keys the scaled test (MLR) adds, lavaan's names with dots as underscores
SCALED_MEASURES = ("chisq_scaled", "df_scaled", "pvalue_scaled", "chisq_scaling_factor",
                   "scaling_factor_h1", "scaling_factor_h0", "baseline_chisq_scaled",
                   "baseline_df_scaled", "baseline_pvalue_scaled",
                   "baseline_chisq_scaling_factor", "cfi_scaled", "tli_scaled", "cfi_robust",
                   "tli_robust", "rmsea_scaled", "rmsea_ci_lower_scaled",
                   "rmsea_ci_upper_scaled", "rmsea_pvalue_scaled",
                   "rmsea_notclose_pvalue_scaled", "rmsea_robust", "rmsea_ci_lower_robust",
                   "rmsea_ci_upper_robust", "rmsea_pvalue_robust",
                   "rmsea_notclose_pvalue_robust", "gfi_robust", "gfi_ci_lower_robust",
                   "gfi_ci_upper_robust")
#: lavaan's defaults: a 90% interval, close fit RMSEA <= 0.05, not-close fit >= 0.08
RMSEA_CI_LEVEL = 0.90
RMSEA_CLOSE = 0.05
RMSEA_NOTCLOSE = 0.08


# --------------------------------------------------------------------------- counting

def _count_statistics(level1, level2, within_only, x1, x2, fixed) -> int:
    p1, p2 = len(level1), len(level2)
    x1_set = set(x1)
    count = p1 * (p1 + 1) // 2 + p2 * (p2 + 1) // 2 + p2
    # within means: within-only variables, but not the covariates' when they are fixed
    count += sum(1 for v in within_only if not (fixed and v in x1_set))
    if fixed:
        k1, k2 = len(x1), len(x2)
        count -= k1 * (k1 + 1) // 2 + k2 * (k2 + 1) // 2 + k2
    return count


def sample_statistics(partable) -> int:
    """lavaan's ``ndat`` for the model: the df are this minus ``npar``."""
    x = partable.covariates()
    return _count_statistics(partable.level_names(1), partable.level_names(2),
                             partable.within_names, x[1], x[2], partable.fixed_x)


def _baseline_fixed_rows(partable, table) -> np.ndarray:
    """Rows of the baseline table that lavaan fixes under ``fixed.x = TRUE``.

    Its rule runs over the whole group: the level-2 covariates' rows at level 1 are fixed
    too (this only matters for a variable that is a covariate at level 2 but not at 1).
    """
    x = partable.covariates()
    sets = {1: set(x[1]) | set(x[2]), 2: set(x[2])}
    fixed = np.zeros(len(table), dtype=bool)
    for i, row in enumerate(table_rows(table)):
        names = sets[int(row.level)]
        if row.op == "~~":
            fixed[i] = row.lhs in names and row.rhs in names
        elif row.op == "~1":
            fixed[i] = row.lhs in names
    return fixed


def baseline_npar(partable) -> int:
    """lavaan's number of free parameters of the baseline model (``fixed.x = TRUE``:
    without the covariate rows, which it fixes)."""
    base = parameter_table(baseline_syntax(partable))
    if not partable.fixed_x:
        return int(base.npar)
    table = base.table
    free = table["free"].to_numpy()
    fixed = _baseline_fixed_rows(partable, table)
    return int(len(set(free[(free > 0) & ~fixed])))


def _baseline_statistics(partable) -> int:
    """``ndat`` of lavaan's baseline table (its own covariate sets, see above)."""
    if not partable.fixed_x:
        return sample_statistics(partable)
    x = partable.covariates()
    level1 = partable.level_names(1)
    level1_set = set(level1)
    x1 = list(dict.fromkeys(x[1] + [v for v in x[2] if v in level1_set]))
    return _count_statistics(level1, partable.level_names(2), partable.within_names, x1, x[2],
                             True)


def degrees_of_freedom(partable) -> tuple[int, int]:
    """(``df``, ``baseline_df``) as lavaan counts them for this model."""
    return (sample_statistics(partable) - int(partable.npar),
            _baseline_statistics(partable) - baseline_npar(partable))


# --------------------------------------------------------------------------- measures

def _force_pd(s: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Raise eigenvalues below ``tol`` times the largest one to that value."""
    if s.shape[0] == 1:
        return np.array([[max(s[0, 0], tol)]])
    values, vectors = np.linalg.eigh(s)
    top = abs(values[-1])
    values = np.where(values / top < tol, tol * top, values)
    return (vectors * values) @ vectors.T


def correlation_matrix(s: np.ndarray) -> np.ndarray:
    d = np.diag(s)
    if np.any(~(d > 0)):
        return np.full_like(s, np.nan)
    scale = 1.0 / np.sqrt(d)
    return s * scale[:, None] * scale[None, :]


def _srmr(observed: np.ndarray, fitted: np.ndarray) -> float:
    if observed.shape[0] == 0:
        return float("nan")
    residual = correlation_matrix(observed) - correlation_matrix(fitted)
    lower = residual[np.tril_indices(residual.shape[0])]
    return float(np.sqrt(np.sum(lower ** 2) / lower.size))


def _cfi(x2, df, x2_0, df_0, c=1.0, c_0=1.0) -> float:
    """CFI; with the scaling factors c, c_0 of the two statistics the robust CFI (the
    non-centralities x2 - c df)."""
    if any(math.isnan(float(v)) for v in (x2, df, x2_0, df_0, c, c_0)):
        return float("nan")
    t1 = max(x2 - c * df, 0.0)
    t2 = max(x2 - c * df, x2_0 - c_0 * df_0, 0.0)
    if abs(t1) < 1.5e-8 and abs(t2) < 1.5e-8:
        return 1.0
    return 1.0 - t1 / t2


def _tli(x2, df, x2_0, df_0, c=1.0, c_0=1.0) -> float:
    """TLI; with scaling factors the robust TLI, as :func:`_cfi`."""
    t1 = (x2 - c * df) * df_0
    t2 = (x2_0 - c_0 * df_0) * df
    if not (math.isfinite(t1) and math.isfinite(t2)):
        return float("nan")
    if df > 0 and abs(t2) > 0:
        return 1.0 - t1 / t2
    return 1.0


def _rmsea(x2, df, n, c=1.0) -> float:
    """RMSEA; with the scaling factor c the robust RMSEA sqrt(max(x2/(N df) - c/N, 0))."""
    if not (math.isfinite(x2) and math.isfinite(c) and math.isfinite(df)):
        return float("nan")
    if df <= 0:
        return 0.0
    return math.sqrt(max(x2 / n / df - c / n, 0.0))


def _noncentral_cdf(x2, df, ncp) -> float:
    """P(X <= x2) for X ~ chi-square(df, non-centrality ncp). scipy.special's
    functions, the same numbers as scipy.stats' without its 0.1 ms per call: the
    interval's root search calls this some twenty times."""
    from scipy.special import chdtr, chndtr

    return float(chdtr(df, x2) if ncp <= 0.0 else chndtr(x2, df, ncp))


def _noncentrality_interval(x2, df, n, level=RMSEA_CI_LEVEL) -> tuple[float, float]:
    """The non-centralities (lambda_lower, lambda_upper) at which x2 is the upper and the
    lower (1 - level) / 2 quantile of the non-central chi-square on df; 0 where even
    lambda = 0 puts x2 beyond it (and both 0 when df < 1). The upper search runs to
    max(N, 4 x2), as lavaan's."""
    from scipy.optimize import brentq

    upper_p, lower_p = 1.0 - (1.0 - level) / 2.0, (1.0 - level) / 2.0

    def solve(target, top):
        # the lambda where P(X <= x2; lambda) = target (decreasing in lambda)
        if df < 1 or _noncentral_cdf(x2, df, 0.0) < target or _noncentral_cdf(x2, df, top) > target:
            return 0.0
        return brentq(lambda v: _noncentral_cdf(x2, df, v) - target, 0.0, top, xtol=1e-12)

    return solve(upper_p, x2), solve(lower_p, max(n, 4.0 * x2))


def _rmsea_interval(x2, df, n, level=RMSEA_CI_LEVEL, c=1.0) -> tuple[float, float]:
    """The RMSEA's confidence interval from the non-central chi-square (module doc);
    with the scaling factor c (and the scaled x2) the robust one, sqrt(c lambda / (N df))."""
    if not (math.isfinite(x2) and math.isfinite(c) and math.isfinite(df)):
        return float("nan"), float("nan")
    if df <= 0:
        return 0.0, 0.0
    low, high = _noncentrality_interval(x2, df, n, level)
    return math.sqrt(c * low / (n * df)), math.sqrt(c * high / (n * df))


def _gfi(x2, df, n, p, c=1.0) -> float:
    """lavaan's GFI from the test statistic, N p / (N p + 2 x2 - 2 c df), at most 1."""
    denominator = n * p + 2.0 * x2 - 2.0 * c * df
    if not math.isfinite(denominator) or denominator <= 0 or not math.isfinite(df):
        return float("nan")
    return min(n * p / denominator, 1.0)


def _gfi_interval(x2, df, n, p, level=RMSEA_CI_LEVEL, c=1.0) -> tuple[float, float]:
    """The GFI's interval: N p / (N p + 2 c lambda) at the interval's non-centralities
    (the lower GFI from the upper lambda)."""
    if not (math.isfinite(x2) and math.isfinite(c) and math.isfinite(df)):
        return float("nan"), float("nan")
    low, high = _noncentrality_interval(x2, df, n, level)
    return (min(n * p / (n * p + 2.0 * c * high), 1.0), min(n * p / (n * p + 2.0 * c * low), 1.0))


def _rmsea_tests(x2, df, n, c=1.0) -> tuple[float, float]:
    """p-values of close fit (RMSEA <= 0.05) and of not-close fit (RMSEA >= 0.08); with
    the scaling factor c (and the scaled x2) the robust ones (non-centrality / c)."""
    if not (math.isfinite(x2) and math.isfinite(c) and math.isfinite(df)) or df <= 0:
        return float("nan"), float("nan")
    close = 1.0 - _noncentral_cdf(x2, df, n * df * RMSEA_CLOSE ** 2 / c)
    return close, _noncentral_cdf(x2, df, n * df * RMSEA_NOTCLOSE ** 2 / c)


def fit_measures(fit, scaled=None) -> dict:
    """lavaan's ``fitMeasures()`` for a two-level ML fit (names with ``_`` for ``.``).

    Keys: :data:`MEASURES`, and with ``scaled`` (the model's and the baseline's
    :class:`mlmiss.inference.robust.ScaledTest`) also :data:`SCALED_MEASURES`. See the
    module docstring for each definition.
    """
    partable = fit.partable
    npar = int(fit.npar)
    logl = float(fit.loglik)
    n = float(fit.nobs)
    h1 = fit.h1()
    base = fit.baseline()
    h1_logl = float(h1.loglik)

    df = sample_statistics(partable) - npar
    x2 = max(2.0 * (h1_logl - logl), 0.0)
    base_df = degrees_of_freedom(partable)[1]
    base_x2 = max(2.0 * (h1_logl - float(base.loglik)), 0.0)

    observed, fitted = h1.moments, fit.implied()["moments"]
    f_between = between_cov(fitted)
    srmr_within = _srmr(observed.sigma_w, fitted.sigma_w)
    s_between = between_cov(observed)
    srmr_between = _srmr(s_between, _force_pd(f_between)) if f_between.size else float("nan")

    ci_lower, ci_upper = _rmsea_interval(x2, df, n)
    p = len(partable.y_names)
    gfi_lower, gfi_upper = _gfi_interval(x2, df, n, p)
    close, notclose = _rmsea_tests(x2, df, n)
    sabic = -2.0 * logl + npar * math.log((n + 2.0) / 24.0)
    out = {
        "npar": npar,
        "ntotal": int(n),
        "logl": logl,
        "unrestricted_logl": h1_logl,
        "aic": -2.0 * logl + 2.0 * npar,
        "bic": -2.0 * logl + npar * math.log(n),
        "bic2": sabic,
        "sabic": sabic,
        "chisq": x2,
        "df": int(df),
        "pvalue": chi2_pvalue(x2, df),
        "baseline_chisq": base_x2,
        "baseline_df": int(base_df),
        "baseline_pvalue": chi2_pvalue(base_x2, base_df),
        "cfi": _cfi(x2, df, base_x2, base_df),
        "tli": _tli(x2, df, base_x2, base_df),
        "rmsea": _rmsea(x2, df, n),
        "rmsea_ci_lower": ci_lower,
        "rmsea_ci_upper": ci_upper,
        "rmsea_ci_level": RMSEA_CI_LEVEL,
        "rmsea_pvalue": close,
        "rmsea_close_h0": RMSEA_CLOSE,
        "rmsea_notclose_pvalue": notclose,
        "rmsea_notclose_h0": RMSEA_NOTCLOSE,
        "gfi": _gfi(x2, df, n, p),
        "gfi_ci_lower": gfi_lower,
        "gfi_ci_upper": gfi_upper,
        "gfi_ci_level": RMSEA_CI_LEVEL,
        "srmr": srmr_within + srmr_between,
        "srmr_within": srmr_within,
        "srmr_between": srmr_between,
    }
    result = {k: out[k] for k in MEASURES}
    if scaled is not None:
        result.update(_scaled_measures(result, p, *scaled))
    return result


def _scaled_measures(m, p, model, baseline) -> dict:
    """The MLR measures (module doc) from the standard ones and the scaling factors."""
    x2, df, n = m["chisq"], m["df"], float(m["ntotal"])
    b2, bdf = m["baseline_chisq"], m["baseline_df"]
    c, cb = model.scaling_factor, baseline.scaling_factor
    x2s, b2s = x2 / c, b2 / cb
    out = {"chisq_scaled": x2s, "df_scaled": df, "pvalue_scaled": chi2_pvalue(x2s, df),
           "chisq_scaling_factor": c,
           "scaling_factor_h1": model.scaling_factor_h1,
           "scaling_factor_h0": model.scaling_factor_h0,
           "baseline_chisq_scaled": b2s, "baseline_df_scaled": bdf,
           "baseline_pvalue_scaled": chi2_pvalue(b2s, bdf), "baseline_chisq_scaling_factor": cb,
           "cfi_scaled": _cfi(x2s, df, b2s, bdf), "tli_scaled": _tli(x2s, df, b2s, bdf),
           "cfi_robust": _cfi(x2, df, b2, bdf, c, cb), "tli_robust": _tli(x2, df, b2, bdf, c, cb),
           # lavaan's scaled RMSEA: the unscaled statistic on tr(U Gamma) = c df
           # degrees of freedom; the robust one: non-centrality x2 - c df
           "rmsea_scaled": _rmsea(x2, c * df, n), "rmsea_robust": _rmsea(x2, df, n, c)}
    out["rmsea_ci_lower_scaled"], out["rmsea_ci_upper_scaled"] = _rmsea_interval(x2, c * df, n)
    out["rmsea_ci_lower_robust"], out["rmsea_ci_upper_robust"] = _rmsea_interval(x2s, df, n, c=c)
    out["rmsea_pvalue_scaled"], out["rmsea_notclose_pvalue_scaled"] = _rmsea_tests(x2, c * df, n)
    out["rmsea_pvalue_robust"], out["rmsea_notclose_pvalue_robust"] = _rmsea_tests(x2s, df, n, c)
    out["gfi_robust"] = _gfi(x2, df, n, p, c)
    out["gfi_ci_lower_robust"], out["gfi_ci_upper_robust"] = _gfi_interval(x2s, df, n, p, c=c)
    return {k: out[k] for k in SCALED_MEASURES}
