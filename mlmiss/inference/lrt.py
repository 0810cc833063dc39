"""The likelihood-ratio (chi-square difference) test of nested models, as lavaan 0.7.2's
``lavTestLRT(fit0, fit1, ...)`` (``anova()``) computes it for ML and MLR fits.

What lavaan does (``lav_test_LRT.R``, ``lav_test_diff.R``), and so what :func:`lrt` does:

* the models are put in order of their degrees of freedom, smallest first (the least
  restricted model on top); each row after the first is compared with the row above it;
* the table has one row per model: ``df``, ``aic``, ``bic`` and ``chisq`` (the model's
  own *standard* likelihood-ratio statistic against the unrestricted model, also with
  MLR) and, from the second row on, ``chisq_diff``, ``df_diff`` and ``pvalue`` (the
  upper chi-square tail of the difference); the first row has NaN there;
* with ML fits the difference is the plain one, ``chisq_diff = chisq0 - chisq1`` on
  ``df_diff = df0 - df1`` (0 for the more restricted model, 1 for the less restricted);
* with MLR fits (the scaled test ``yuan.bentler.mplus``) lavaan's default is
  ``method = "satorra.bentler.2001"``: with c0, c1 the models' scaling factors
  (``chisq_scaling_factor``), the difference's scaling factor is
  ``cd = (df0 c0 - df1 c1) / (df0 - df1)`` and ``chisq_diff = (chisq0 - chisq1) / cd``.
  A saturated less restricted model (df1 = 0) counts with c1 = 1 and one that fits
  perfectly (chisq1 numerically 0, below 1.5e-8) with c1 = 0. When cd is negative lavaan
  warns ("scaling factor is negative") and leaves the difference and its p-value
  missing. lavaan keeps the cd's in the table's ``scale`` attribute; here they are the
  ``scaling_factor`` column (NaN in the first row);
* the difference is rounded to 10 decimals (lavaan zaps near-zero values so);
* lavaan warns when a restricted model fits better than a less restricted one (a
  standard difference below -eps^(1/3)), and when not all models converged.

Where this differs from lavaan, on purpose: fits on different data, a mix of ML and
MLR fits, and two fits with the same degrees of freedom are errors here (lavaan warns,
or stops only for the mix of scaled and unscaled tests, and gives a missing p-value for
equal df); a single fit is an error too (lavaan then compares it with the saturated
model, which is ``fit.fit_measures()``'s test). lavaan's numerical check that the
models are nested (its NET procedure) is not done.

:func:`lrt` reads ``fit_measures()`` (``chisq``, ``df``, ``aic``, ``bic`` and, with the
scaled test, ``chisq_scaling_factor``), ``test``, ``options``, ``nobs``, ``nclusters``,
``data`` (``y_names``, ``z_names``, ``y``, ``z``, ``cluster_sizes``) and
``estimate.converged`` of each fit, so any object with those will do.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .chisq import chi2_pvalue

__all__ = ["lrt", "satorra_bentler_2001", "COLUMNS"]

#: the table's columns (lavaan's "Df", "AIC", "BIC", "Chisq", "Chisq diff", "Df diff",
#: "Pr(>Chisq)"); with MLR fits also ``scaling_factor`` (lavaan's "scale" attribute)
COLUMNS = ("df", "aic", "bic", "chisq", "chisq_diff", "df_diff", "pvalue")

#: the scaled test whose difference is the Satorra-Bentler (2001) one
SCALED_TEST = "yuan.bentler.mplus"

#: lavaan's tolerance for a difference that is negative: eps^(1/3)
NEGATIVE_TOLERANCE = np.finfo(float).eps ** (1.0 / 3.0)

#: below this a statistic counts as 0 (R's all.equal(x, 0) with its default tolerance)
ZERO_STATISTIC = 1.5e-8


def satorra_bentler_2001(chisq0, df0, c0, chisq1, df1, c1) -> tuple[float, float]:
    """(scaled difference, its scaling factor cd) of the more restricted model (0) against
    the less restricted one (1) from their standard statistics, df and scaling factors.

    The scaled difference is (chisq0 - chisq1) / cd with cd = (df0 c0 - df1 c1) / (df0 - df1);
    a saturated model 1 (df1 = 0) has c1 = 1, a perfectly fitting one (chisq1 < 1.5e-8)
    c1 = 0. A negative cd gives (NaN, NaN) and a warning, as lavaan's.
    """
    m = df0 - df1
    if m == 0:
        return chisq0 - chisq1, float("nan")
    if df1 == 0:
        c1 = 1.0
    elif abs(chisq1) < ZERO_STATISTIC:
        c1 = 0.0
    cd = (df0 * c0 - df1 * c1) / m
    if cd < 0:
        warnings.warn(f"lrt: the scaling factor of the difference test is negative ({cd:.6g}); "
                      "the scaled difference is left missing", UserWarning, stacklevel=3)
        return float("nan"), float("nan")
    return (chisq0 - chisq1) / cd, cd


def _estimator(fit) -> str:
    return str(fit.options.get("estimator", "ML")).upper()


def _check_same_data(fits, names) -> None:
    """ValueError unless every fit used the same rows, clusters, variables and values."""
    first, name0 = fits[0], names[0]
    d0 = first.data
    for fit, name in zip(fits[1:], names[1:]):
        d = fit.data
        if d is d0:
            continue
        if (int(fit.nobs), int(fit.nclusters)) != (int(first.nobs), int(first.nclusters)):
            raise ValueError(
                f"lrt: the fits are on different data: {name0} has {first.nobs} observations "
                f"in {first.nclusters} clusters, {name} {fit.nobs} in {fit.nclusters}")
        for what, a, b in (("level-1", d0.y_names, d.y_names),
                           ("between-only", d0.z_names, d.z_names)):
            if sorted(a) != sorted(b):
                raise ValueError(
                    f"lrt: the fits use different {what} observed variables: {name0} "
                    f"{sorted(a)}, {name} {sorted(b)}; nested models are fitted to the "
                    "same variables")
        if sorted(d0.cluster_sizes.tolist()) != sorted(d.cluster_sizes.tolist()):
            raise ValueError(f"lrt: the fits are on different data: {name0} and {name} "
                             "have different cluster sizes")
        for values0, values, names0, names1 in ((d0.y, d.y, d0.y_names, d.y_names),
                                                (d0.z, d.z, d0.z_names, d.z_names)):
            for k, variable in enumerate(names0):
                a = np.sort(values0[:, k])
                b = np.sort(values[:, list(names1).index(variable)])
                if not np.array_equal(a, b, equal_nan=True):
                    raise ValueError(f"lrt: the fits are on different data: the values of "
                                     f"{variable!r} differ between {name0} and {name}")


def _check_fits(fits, names) -> bool:
    """The checks before the table; returns whether the fits carry the scaled test."""
    if len(fits) < 2:
        raise ValueError(f"lrt: needs at least two fits of nested models, got {len(fits)}")
    estimators = [_estimator(f) for f in fits]
    tests = [str(getattr(f, "test", "standard")) for f in fits]
    if len(set(estimators)) > 1 or len(set(tests)) > 1:
        shown = ", ".join(f"{n}: estimator={e!r}, test={t!r}"
                          for n, e, t in zip(names, estimators, tests))
        raise ValueError(f"lrt: the fits mix estimators or tests ({shown}); fit all the "
                         "models with the same estimator")
    _check_same_data(fits, names)
    return tests[0] == SCALED_TEST


def _default_names(fits, names) -> list[str]:
    if names is None:
        return [f"model{i + 1}" for i in range(len(fits))]
    names = [str(n) for n in names]
    if len(names) != len(fits):
        raise ValueError(f"lrt: {len(names)} names for {len(fits)} fits")
    if len(set(names)) != len(names):
        raise ValueError(f"lrt: the model names are not unique: {names}")
    return names


def lrt(*fits, names=None) -> pd.DataFrame:
    """lavaan's ``lavTestLRT(fit0, fit1, ...)``: the chi-square difference test of nested
    models (module doc).

    Parameters
    ----------
    *fits : two or more fits (:class:`mlmiss.Fit`) of nested models on the same data,
        all ML or all MLR, with different degrees of freedom; in any order.
    names : the models' names (the table's index), in the order of ``fits``; default
        "model1", "model2", ... by position.

    Returns
    -------
    DataFrame, one row per model sorted by df: df, aic, bic, chisq, chisq_diff, df_diff,
    pvalue (and with MLR fits scaling_factor, the difference's cd). ``attrs["heading"]``
    is lavaan's title, ``attrs["method"]`` "standard" or "satorra.bentler.2001".
    """
    if len(fits) == 1 and isinstance(fits[0], (list, tuple)):
        fits = tuple(fits[0])
    names = _default_names(fits, names)
    scaled = _check_fits(fits, names)

    measures = [f.fit_measures() for f in fits]
    order = sorted(range(len(fits)), key=lambda i: measures[i]["df"])
    fits = [fits[i] for i in order]
    measures = [measures[i] for i in order]
    names = [names[i] for i in order]

    df = np.array([int(m["df"]) for m in measures])
    same = [f"{names[i]} and {names[i + 1]} (df = {df[i]})"
            for i in range(len(df) - 1) if df[i] == df[i + 1]]
    if same:
        raise ValueError(f"lrt: models with the same degrees of freedom cannot be compared by "
                         f"a difference test: {'; '.join(same)}")
    chisq = np.array([float(m["chisq"]) for m in measures])

    standard_diff = np.diff(chisq)
    if np.any(standard_diff < -NEGATIVE_TOLERANCE):
        warnings.warn(
            "lrt: some restricted models fit better than less restricted models; either these "
            "models are not nested, or the less restricted model failed to reach a global "
            f"optimum. Smallest difference = {float(standard_diff.min()):.6g}.",
            UserWarning, stacklevel=2)
    if not all(bool(f.estimate.converged) for f in fits):
        warnings.warn("lrt: not all models converged", UserWarning, stacklevel=2)

    n = len(fits)
    diff = np.full(n, np.nan)
    df_diff = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    for i in range(1, n):
        df_diff[i] = df[i] - df[i - 1]
        if scaled:
            diff[i], scale[i] = satorra_bentler_2001(
                chisq[i], df[i], float(measures[i]["chisq_scaling_factor"]),
                chisq[i - 1], df[i - 1], float(measures[i - 1]["chisq_scaling_factor"]))
        else:
            diff[i] = chisq[i] - chisq[i - 1]
    diff = np.round(diff, 10)

    pvalue = chi2_pvalue(diff, df_diff)

    table = pd.DataFrame({
        "df": df, "aic": [float(m["aic"]) for m in measures],
        "bic": [float(m["bic"]) for m in measures], "chisq": chisq,
        "chisq_diff": diff, "df_diff": df_diff, "pvalue": pvalue}, index=pd.Index(names, name="model"))
    # lavaan falls back to the unscaled heading when the last cd is missing
    method = "satorra.bentler.2001" if scaled else "standard"
    if scaled:
        table["scaling_factor"] = scale
    if scaled and math.isfinite(scale[-1]):
        table.attrs["heading"] = ('Scaled Chi-Squared Difference Test (method = '
                                  '"satorra.bentler.2001")')
        table.attrs["note"] = ('The "chisq" column contains standard test statistics, not the '
                               "robust test that should be reported per model. A robust "
                               "difference test is a function of two standard (not robust) "
                               "statistics.")
    else:
        table.attrs["heading"] = "Chi-Squared Difference Test"
    table.attrs["method"] = method
    return table
