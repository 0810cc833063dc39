"""Fit measures and a printed summary of a two-level fit, as lavaan reports them.

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
* ``rmsea`` (``lav_fit_rmsea.R``): ``sqrt(max(chisq / N / df - 1 / N, 0))``, N again the
  level-1 rows; 0 when ``df`` is 0.
* ``srmr_within``, ``srmr_between`` (``lav_fit_srmr.R``: ``lav_fit_srmr_twolevel``): per
  level, the covariance matrices of the h1 model and of the fitted model are turned into
  correlation matrices and compared; the root mean square of the lower triangle
  (diagonal included) of the difference. No means. The fitted between covariance matrix
  is first made positive definite (eigenvalues below 1e-6 of the largest are raised to
  it). ``srmr`` is their sum.

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
from scipy.stats import chi2

__all__ = ["baseline_syntax", "baseline_npar", "sample_statistics", "degrees_of_freedom",
           "fit_measures", "summary_text", "MEASURES"]

#: the keys of :func:`fit_measures`, lavaan's names with dots as underscores
MEASURES = ("npar", "logl", "unrestricted_logl", "aic", "bic", "chisq", "df", "pvalue",
            "baseline_chisq", "baseline_df", "baseline_pvalue", "cfi", "tli", "rmsea",
            "srmr", "srmr_within", "srmr_between")


# --------------------------------------------------------------------------- counting

def _level_variables(partable) -> tuple[list[str], list[str]]:
    """Observed variables of level 1 (within-only and "both", in ``y_names`` order) and
    of level 2 ("both" then between-only)."""
    both = set(partable.both_names)
    level1 = list(partable.y_names)
    level2 = [v for v in partable.y_names if v in both] + list(partable.z_names)
    return level1, level2


def _fixed_x(partable) -> bool:
    """Whether the covariates are fixed (lavaan's test: some ``exo`` row is fixed; mlmiss
    flags the covariate rows either way, and the two-level rule fixes some level-1
    intercepts, so the table's own ``fixed_x`` decides when it has one)."""
    flag = getattr(partable, "fixed_x", None)
    if flag is not None:
        return bool(flag)
    table = partable.table
    level1_mean = (table["op"] == "~1") & (table["level"] == 1)
    return bool(((table["exo"] == 1) & (table["free"] == 0) & ~level1_mean).any())


def _covariates(partable) -> dict[int, list[str]]:
    """lavaan's ``ov.x`` per level: the variables of the ``exo`` rows.

    With ``fixed.x = FALSE`` lavaan's table flags no row and ``ov.x`` is the structural
    definition, which at level 2 leaves out a variable that is regressed on something at
    any level; mlmiss flags those rows in either case, so they are removed here.
    """
    table = partable.table
    names: dict[int, list[str]] = {1: [], 2: []}
    for row in table[table["exo"] == 1].itertuples(index=False):
        for name in (row.lhs, row.rhs):
            if name and name not in names[int(row.level)]:
                names[int(row.level)].append(name)
    if not _fixed_x(partable):
        dependent = set(table.loc[table["op"] == "~", "lhs"])
        names[2] = [v for v in names[2] if v not in dependent]
    return names


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
    level1, level2 = _level_variables(partable)
    x = _covariates(partable)
    return _count_statistics(level1, level2, partable.within_names, x[1], x[2],
                             _fixed_x(partable))


def baseline_syntax(partable) -> str:
    """lavaan model syntax of the baseline model lavaan fits for this two-level model.

    Per level a free variance for every observed variable of the level, free covariances
    among that level's exogenous covariates, nothing else; the parser's defaults then give
    the means (level 2 free; level 1 free only for within-only variables). The covariates
    are written free whatever ``fixed_x`` is: with ``fixed_x=True`` lavaan fixes them at
    their h1 values, which a free fit reproduces (they are independent of everything
    else), so fit it like the h1 model (covariate rows free, the covariates' marginal
    log-likelihood subtracted). :func:`baseline_npar` gives lavaan's parameter count.
    Variables appear in the model's order (``y_names``, then ``z_names``), so the baseline
    table orders its variables like the model's.

    One case this cannot reproduce: with ``fixed_x=True``, a level-2 covariate that is a
    dependent variable at level 1 has its rows (at both levels, and its level-2
    covariances with the other covariates) fixed at h1 values by lavaan, which is not an
    independence model; the parameter count still follows lavaan.
    """
    levels = _level_variables(partable)
    x = _covariates(partable)
    lines = []
    for level, names in zip((1, 2), levels):
        if not names:
            raise ValueError(f"the model has no observed variables at level {level}")
        lines.append(f"level: {level}")
        lines += [f"  {v} ~~ {v}" for v in names]
        covs = [v for v in names if v in set(x[level])]
        for i, a in enumerate(covs[:-1]):
            lines.append(f"  {a} ~~ " + " + ".join(covs[i + 1:]))
    return "\n".join(lines) + "\n"


def _baseline_fixed_rows(partable, table) -> np.ndarray:
    """Rows of the baseline table that lavaan fixes under ``fixed.x = TRUE``.

    Its rule runs over the whole group: the level-2 covariates' rows at level 1 are fixed
    too (this only matters for a variable that is a covariate at level 2 but not at 1).
    """
    x = _covariates(partable)
    sets = {1: set(x[1]) | set(x[2]), 2: set(x[2])}
    fixed = np.zeros(len(table), dtype=bool)
    for i, row in enumerate(table.itertuples(index=False)):
        names = sets[int(row.level)]
        if row.op == "~~":
            fixed[i] = row.lhs in names and row.rhs in names
        elif row.op == "~1":
            fixed[i] = row.lhs in names
    return fixed


def baseline_npar(partable) -> int:
    """lavaan's number of free parameters of the baseline model (``fixed.x = TRUE``:
    without the covariate rows, which it fixes)."""
    from .partable import parameter_table

    base = parameter_table(baseline_syntax(partable))
    if not _fixed_x(partable):
        return int(base.npar)
    table = base.table
    free = table["free"].to_numpy()
    fixed = _baseline_fixed_rows(partable, table)
    return int(len(set(free[(free > 0) & ~fixed])))


def _baseline_statistics(partable) -> int:
    """``ndat`` of lavaan's baseline table (its own covariate sets, see above)."""
    level1, level2 = _level_variables(partable)
    if not _fixed_x(partable):
        return sample_statistics(partable)
    x = _covariates(partable)
    level1_set = set(level1)
    x1 = list(dict.fromkeys(x[1] + [v for v in x[2] if v in level1_set]))
    return _count_statistics(level1, level2, partable.within_names, x1, x[2], True)


def degrees_of_freedom(partable) -> tuple[int, int]:
    """(``df``, ``baseline_df``) as lavaan counts them for this model."""
    return (sample_statistics(partable) - int(partable.npar),
            _baseline_statistics(partable) - baseline_npar(partable))


# --------------------------------------------------------------------------- measures

def _blocks(moments, partable):
    """(within covariance, between covariance) of a Moments, lavaan's two blocks."""
    sigma_w = np.asarray(moments.sigma_w, dtype=float)
    y_names = list(partable.y_names)
    both = set(partable.both_names)
    idx = [i for i, v in enumerate(y_names) if v in both]
    sb = np.asarray(moments.sigma_b, dtype=float)[np.ix_(idx, idx)]
    syz = np.asarray(moments.sigma_yz, dtype=float)[idx, :]
    szz = np.asarray(moments.sigma_zz, dtype=float)
    between = np.block([[sb, syz], [syz.T, szz]]) if szz.size else sb
    return sigma_w, between


def _force_pd(s: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Raise eigenvalues below ``tol`` times the largest one to that value."""
    if s.shape[0] == 1:
        return np.array([[max(s[0, 0], tol)]])
    values, vectors = np.linalg.eigh(s)
    top = abs(values[-1])
    values = np.where(values / top < tol, tol * top, values)
    return (vectors * values) @ vectors.T


def _correlation(s: np.ndarray) -> np.ndarray:
    d = np.diag(s)
    if np.any(~(d > 0)):
        return np.full_like(s, np.nan)
    scale = 1.0 / np.sqrt(d)
    return s * scale[:, None] * scale[None, :]


def _srmr(observed: np.ndarray, fitted: np.ndarray) -> float:
    if observed.shape[0] == 0:
        return float("nan")
    residual = _correlation(observed) - _correlation(fitted)
    lower = residual[np.tril_indices(residual.shape[0])]
    return float(np.sqrt(np.sum(lower ** 2) / lower.size))


def _cfi(x2, df, x2_0, df_0) -> float:
    if any(math.isnan(float(v)) for v in (x2, df, x2_0, df_0)):
        return float("nan")
    t1 = max(x2 - df, 0.0)
    t2 = max(x2 - df, x2_0 - df_0, 0.0)
    if abs(t1) < 1.5e-8 and abs(t2) < 1.5e-8:
        return 1.0
    return 1.0 - t1 / t2


def _tli(x2, df, x2_0, df_0) -> float:
    t1 = (x2 - df) * df_0
    t2 = (x2_0 - df_0) * df
    if not (math.isfinite(t1) and math.isfinite(t2)):
        return float("nan")
    if df > 0 and abs(t2) > 0:
        return 1.0 - t1 / t2
    return 1.0


def _rmsea(x2, df, n) -> float:
    if not math.isfinite(x2):
        return float("nan")
    if df <= 0:
        return 0.0
    return math.sqrt(max(x2 / n / df - 1.0 / n, 0.0))


def _pvalue(x2, df) -> float:
    if df <= 0 or not math.isfinite(x2):
        return float("nan")
    return float(chi2.sf(x2, df))


def fit_measures(fit) -> dict:
    """lavaan's ``fitMeasures()`` for a two-level ML fit (names with ``_`` for ``.``).

    Keys: :data:`MEASURES`. See the module docstring for each definition.
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

    s_within, s_between = _blocks(h1.moments, partable)
    f_within, f_between = _blocks(fit.implied()["moments"], partable)
    srmr_within = _srmr(s_within, f_within)
    srmr_between = _srmr(s_between, _force_pd(f_between)) if f_between.size else float("nan")

    out = {
        "npar": npar,
        "logl": logl,
        "unrestricted_logl": h1_logl,
        "aic": -2.0 * logl + 2.0 * npar,
        "bic": -2.0 * logl + npar * math.log(n),
        "chisq": x2,
        "df": int(df),
        "pvalue": _pvalue(x2, df),
        "baseline_chisq": base_x2,
        "baseline_df": int(base_df),
        "baseline_pvalue": _pvalue(base_x2, base_df),
        "cfi": _cfi(x2, df, base_x2, base_df),
        "tli": _tli(x2, df, base_x2, base_df),
        "rmsea": _rmsea(x2, df, n),
        "srmr": srmr_within + srmr_between,
        "srmr_within": srmr_within,
        "srmr_between": srmr_between,
    }
    return {k: out[k] for k in MEASURES}


# --------------------------------------------------------------------------- summary

_WIDTH = 54          # the header block's width: label left, value right


def _line(label: str, value) -> str:
    text = str(value)
    return "  " + label + text.rjust(max(_WIDTH - 2 - len(label), len(text) + 1))


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "NA"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else "NA"


def _header(fit, cluster) -> list[str]:
    from . import __version__

    iterations = getattr(fit, "iterations", "?")
    if getattr(fit, "converged", True):
        lines = [f"mlmiss {__version__} ended normally after {iterations} iterations"]
    else:
        lines = [f"mlmiss {__version__} did NOT end normally after {iterations} iterations",
                 "** WARNING ** the optimizer did not converge; the estimates, standard",
                 "** WARNING ** errors and fit measures below may be meaningless.",
                 f"   ({getattr(fit, 'message', '')})"]
    lines += ["", _line("Estimator", "ML"),
              _line("Optimization method", str(getattr(fit, "optimizer", "?")).upper()),
              _line("Number of model parameters", fit.npar), ""]
    data = getattr(fit, "data", None)
    lines.append(_line("Number of observations", fit.nobs))
    dropped = getattr(data, "n_dropped_rows", 0) if data is not None else 0
    if dropped:
        lines.append(_line("Rows dropped (all level-1 values missing)", dropped))
    label = f"Number of clusters [{cluster}]" if cluster else "Number of clusters"
    lines.append(_line(label, fit.nclusters))
    for level in (1, 2):
        patterns = getattr(getattr(data, f"level{level}", None), "n_patterns", None)
        if patterns is not None:
            lines.append(_line(f"Number of missing patterns -- level {level}", patterns))
    return lines


def _measures_block(fit) -> list[str]:
    try:
        m = fit_measures(fit)
    except Exception as exc:  # a failed h1 or baseline fit must not hide the estimates
        return ["", f"Fit measures are not available ({type(exc).__name__}: {exc})."]
    notes = []
    for what, getter in (("unrestricted (h1)", "h1"), ("baseline", "baseline")):
        try:
            if not getattr(getattr(fit, getter)(), "converged", True):
                notes.append(f"** WARNING ** the {what} model did not converge: "
                             "the statistics that use it are unreliable.")
        except Exception:  # already reported by fit_measures if it matters
            pass
    lines = ["", "Model Test User Model:", "",
             _line("Test statistic", _num(m["chisq"])),
             _line("Degrees of freedom", m["df"]),
             _line("P-value (Chi-square)", _num(m["pvalue"])),
             "", "Model Test Baseline Model:", "",
             _line("Test statistic", _num(m["baseline_chisq"])),
             _line("Degrees of freedom", m["baseline_df"]),
             _line("P-value", _num(m["baseline_pvalue"])),
             "", "User Model versus Baseline Model:", "",
             _line("Comparative Fit Index (CFI)", _num(m["cfi"])),
             _line("Tucker-Lewis Index (TLI)", _num(m["tli"])),
             "", "Loglikelihood and Information Criteria:", "",
             _line("Loglikelihood user model (H0)", _num(m["logl"])),
             _line("Loglikelihood unrestricted model (H1)", _num(m["unrestricted_logl"])),
             "",
             _line("Akaike (AIC)", _num(m["aic"])),
             _line("Bayesian (BIC)", _num(m["bic"])),
             "", "Root Mean Square Error of Approximation:", "",
             _line("RMSEA", _num(m["rmsea"])),
             "", "Standardized Root Mean Square Residual (corr metric):", "",
             _line("SRMR (within covariance matrix)", _num(m["srmr_within"])),
             _line("SRMR (between covariance matrix)", _num(m["srmr_between"]))]
    if notes:
        lines += [""] + notes
    return lines


def _estimates(fit):
    """The parameter table joined with the estimates; se/z/pvalue NaN where absent."""
    table = fit.partable.table.reset_index(drop=True)
    est = fit.parameter_estimates().reset_index(drop=True)
    out = table[["lhs", "op", "rhs", "level", "free", "label", "exo"]].copy()
    if len(est) == len(out):
        for column in ("est", "se", "z", "pvalue"):
            out[column] = est[column].to_numpy(dtype=float) if column in est else np.nan
    else:  # unexpected shape: match on (lhs, op, rhs, level)
        keyed = est.set_index(["lhs", "op", "rhs", "level"])
        for column in ("est", "se", "z", "pvalue"):
            if column in keyed:
                out[column] = [float(keyed[column].get((r.lhs, r.op, r.rhs, r.level), np.nan))
                               for r in out.itertuples(index=False)]
            else:
                out[column] = np.nan
    if np.isfinite(out["se"]).any() and not np.isfinite(out["z"]).any():
        # standard errors without tests: the Wald z and its two-sided normal p-value
        from scipy.stats import norm

        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where((out["free"] > 0) & (out["se"] > 0), out["est"] / out["se"], np.nan)
        out["z"] = z
        out["pvalue"] = 2.0 * norm.sf(np.abs(z))
    return out


def _columns(row, with_se: bool) -> str:
    cells = [f"{row.est:9.3f}" if math.isfinite(row.est) else f"{'NA':>9}"]
    if with_se:
        free = row.free > 0
        for value in (row.se, row.z, row.pvalue):
            cells.append(f"{value:9.3f}" if free and math.isfinite(value) else " " * 9)
    return "".join(cells).rstrip()


def _parameter_blocks(fit, cluster) -> list[str]:
    rows = _estimates(fit)
    with_se = bool(np.isfinite(rows["se"]).any())
    # rows lavaan does not print: the covariates' fixed (fixed.x) moments
    rows = rows[~((rows["exo"] == 1) & (rows["free"] == 0))]
    # a dot marks a residual (co)variance or an intercept: dependent variables and
    # indicators, at any level
    dotted = set(rows.loc[rows["op"] == "~", "lhs"]) | set(rows.loc[rows["op"] == "=~", "rhs"])

    def name(var, label):
        return f"{var} ({label})" if isinstance(label, str) and label else var

    names = [name(r.rhs if r.op != "~1" else r.lhs, r.label) for r in rows.itertuples(index=False)]
    width = max([14] + [len(s) for s in names]) + 4
    heading = " " * width + " Estimate" + ("  Std.Err  z-value  P(>|z|)" if with_se else "")

    def entry(var, label, prefix=" "):
        return ("   " + prefix + name(var, label)).ljust(width)

    lines = ["", "Parameter Estimates:", "",
             _line("Standard errors", "Standard" if with_se else "none")]
    if with_se:
        lines += [_line("Information", "Observed"),
                  _line("Observed information based on", "Hessian")]
    sections = [
        ("Latent Variables", lambda r: r.op == "=~", True),
        ("Regressions", lambda r: r.op == "~", True),
        ("Covariances", lambda r: r.op == "~~" and r.lhs != r.rhs, True),
        ("Intercepts", lambda r: r.op == "~1", False),
        ("Variances", lambda r: r.op == "~~" and r.lhs == r.rhs, False),
    ]
    level_label = {1: "within", 2: cluster or "between"}
    for level in (1, 2):
        at_level = [r for r in rows.itertuples(index=False) if int(r.level) == level]
        lines += ["", "", f"Level {level} [{level_label[level]}]:"]
        for title, keep, grouped in sections:
            chosen = [r for r in at_level if keep(r)]
            if not chosen:
                continue
            lines += ["", f"{title}:", heading]
            previous = None
            for r in chosen:
                if grouped:
                    dot = "." if title == "Covariances" and r.lhs in dotted else " "
                    if r.lhs != previous:
                        lines.append(f" {dot}{r.lhs} {r.op}")
                        previous = r.lhs
                    prefix = "." if title == "Covariances" and r.rhs in dotted else " "
                    lines.append(entry(r.rhs, r.label, prefix) + _columns(r, with_se))
                else:
                    prefix = "." if r.lhs in dotted else " "
                    lines.append(entry(r.lhs, r.label, prefix) + _columns(r, with_se))
    return lines


def summary_text(fit, cluster: str | None = None, measures: bool = True) -> str:
    """A lavaan-style summary: the fit, the test against the unrestricted model and a few
    fit measures, then the estimates per level (Latent Variables, Regressions,
    Covariances, Intercepts, Variances) with Std.Err, z-value and P(>|z|) when
    ``fit.parameter_estimates()`` has them.

    A dot before a name marks a residual: the (co)variance or intercept of a dependent
    variable or indicator. ``cluster`` names the cluster variable in the header;
    ``measures=False`` leaves out the test and fit measures (no h1 or baseline fit).
    """
    cluster = cluster or getattr(fit, "cluster", None) or (getattr(fit, "extra", None) or {}).get("cluster")
    lines = _header(fit, cluster)
    if measures:
        lines += _measures_block(fit)
    lines += _parameter_blocks(fit, cluster)
    return "\n".join(lines) + "\n"
