"""The text of a lavaan-style summary of a fit.

Laid out as lavaan 0.7.2's ``summary(fit, fit.measures = TRUE, standardized = ...,
rsquare = ...)`` for a two-level model: the same sections, labels, column widths and
columns, so that the two outputs can be read (and diffed) side by side. Where lavaan
leaves a row out, so does this: intercepts fixed at zero that the syntax did not ask
for, and the fixed moments of the covariates with ``fixed_x``.

Reads only what a :class:`mlmiss.Fit` answers (``loglik``, ``npar``, ``nobs``,
``nclusters``, ``converged``, ``iterations``, ``message``, ``optimizer``, ``data``,
``partable``, ``cluster``, ``options``, ``se``, ``fit_measures()``,
``parameter_estimates()``, ``inspect("r2")``, ``h1()``, ``baseline()``) and imports
nothing above the inference layer (the constraint operators' names, the Wald columns),
so the result object can offer ``summary()`` without importing anything above it. A stand-in with
fewer of these attributes works too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .inference.wald import add_wald_columns
from .model.constraints import CONSTRAINT_OPS
from .version import __version__

__all__ = ["Summary", "summary_text", "level2_patterns", "data_counts"]

#: lavaan's column widths (label, first value, second value) per block
_OPTIM = (40, 11)
_DATA = (43, 8, 11)
_TEST = (43, 8, 11)
_BASELINE = (35, 16, 11)
_INDICES = (43, 8, 11)
_LOGL = (39, 12, 11)
_SE = (37, 14)
_NAME = 14          # the parameter names' width (after a 3-character prefix)
_NUMBER = 8         # the narrowest numeric column of the estimates

#: the sections of each level, in lavaan's order
_SECTIONS = ("Latent Variables", "Regressions", "Covariances", "Intercepts", "Variances",
             "R-Square")
_GROUPED = ("Latent Variables", "Regressions", "Covariances")

#: the numeric columns of the estimates and their headings
_HEADINGS = {"est": "Estimate", "se": "Std.Err", "z": "z-value", "pvalue": "P(>|z|)",
             "std_lv": "Std.lv", "std_all": "Std.all"}


class Summary(str):
    """The summary text. At the prompt it shows as itself, once, like lavaan's
    ``summary(fit)``; in a script, ``print(fit.summary())`` (statsmodels' habit)."""

    def __repr__(self) -> str:
        return str(self)


# ----------------------------------------------------------------------------- cells

def _num(value, digits: int = 3) -> str:
    """A number as lavaan prints it: fixed with three decimals, NA when missing."""
    if value is None:
        return "NA"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else "NA"


def _df(value) -> str:
    """Degrees of freedom: an integer as an integer, anything else as a number."""
    if value is None:
        return "NA"
    value = float(value)
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return _num(value)


def _block(rows, widths, keep_edge: bool = False) -> list[str]:
    """Rows of cells as lavaan writes its label/value tables: the label left-justified,
    the values right-justified, each column as wide as its width or its widest cell,
    two spaces in front and one between. ``keep_edge``: a value wider than its column
    takes the room from the labels' column (while it lasts) instead of moving the right
    edge (our optimizer names are longer than lavaan's)."""
    ncol = len(widths)
    rows = [tuple(str(c) for c in row) + ("",) * (ncol - len(row)) for row in rows]
    if not rows:
        return []
    width = [max([w] + [len(row[i]) for row in rows]) for i, w in enumerate(widths)]
    if keep_edge:
        excess = sum(width[1:]) - sum(widths[1:])
        longest = max(len(row[0]) for row in rows)
        width[0] = max(longest, width[0] - excess)
    return ["  " + " ".join([row[0].ljust(width[0])]
                            + [row[i].rjust(width[i]) for i in range(1, ncol)])
            for row in rows]


def _abbreviate(text: str, length: int, strict: bool) -> str:
    """R's ``abbreviate()`` on one word, as lavaan shortens long names and labels: drop
    lower-case vowels from the right, then lower-case letters, then anything (never the
    first character) until ``length`` is reached; ``strict`` truncates what is still
    too long."""
    text = str(text).strip()
    if len(text) <= length:
        return text
    chars = list(text)
    for drop in (lambda c: c in "aeiou", str.islower, lambda c: True):
        i = len(chars) - 1
        while i > 0 and len(chars) > length:
            if drop(chars[i]) and chars[i - 1] != " ":
                del chars[i]
            i -= 1
    out = "".join(chars)
    return out[:length] if strict else out


def _names(names, labels=None, prefixes=None) -> list[str]:
    """The first column of the estimates: a 3-character prefix ("  ." for a residual),
    the name in 14 characters, and the label (if any row of the section has one)
    right-aligned in them."""
    names = [str(n) for n in names]
    prefixes = prefixes or [""] * len(names)
    labels = ["" if not isinstance(lab, str) else lab for lab in (labels or [""] * len(names))]
    if any(labels):
        shown = [f" ({_abbreviate(lab, 4, strict=False)})" if lab else "" for lab in labels]
        room = max(len(s) for s in shown)
        cells = [_abbreviate(n, _NAME - room, strict=True).ljust(_NAME - room) + s.rjust(room)
                 for n, s in zip(names, shown)]
    else:
        cells = [_abbreviate(n, _NAME, strict=True).ljust(_NAME) for n in names]
    return [p.rjust(3) + c for p, c in zip(prefixes, cells)]


# ----------------------------------------------------------------------------- data

def level2_patterns(data):
    """The number of level-2 missing patterns lavaan prints: the patterns of the
    between-only variables over the clusters that observe at least one of them (lavaan
    leaves the empty pattern out); None without between-only variables, where lavaan
    prints no such line. ``data.level2.n_patterns`` counts the empty pattern too."""
    level2 = getattr(data, "level2", None)
    observed = getattr(level2, "observed", None)
    if observed is None:
        return None
    observed = np.asarray(observed, dtype=bool)
    if observed.ndim != 2 or observed.shape[1] == 0:
        return None
    return int(observed.any(axis=1).sum())


def data_counts(fit) -> dict:
    """Rows used and given: ``used`` (lavaan's nobs), ``total`` (the rows of the data
    given to ``sem()``), ``dropped_empty`` (every level-1 value missing) and
    ``dropped_fixed_x`` (a covariate missing, with ``fixed_x``)."""
    data = getattr(fit, "data", None)
    problem = getattr(fit, "problem", None)
    used = int(fit.nobs)
    empty = int(getattr(data, "n_dropped_rows", 0) or 0) if data is not None else 0
    dropped = getattr(problem, "fixed_x_dropped_rows", None)
    fixed_x = 0 if dropped is None else len(dropped)
    total = getattr(problem, "n_rows_given", None)
    total = int(total) if total is not None else used + empty + fixed_x
    return {"used": used, "total": total, "dropped_empty": empty, "dropped_fixed_x": fixed_x}


def _options(fit) -> dict:
    options = getattr(fit, "options", None)
    return options if isinstance(options, dict) else {}


def _se_kind(fit) -> str:
    """"standard", "robust" or "none": the fit's ``se``, else what its estimator implies."""
    se = getattr(fit, "se", None) or _options(fit).get("se")
    if isinstance(se, str):
        return se
    return "robust" if str(_options(fit).get("estimator", "ML")).upper() == "MLR" else "standard"


# ----------------------------------------------------------------------------- header

def _header(fit, cluster) -> list[str]:
    iterations = getattr(fit, "iterations", "?")
    count = "1 iteration" if iterations == 1 else f"{iterations} iterations"
    if getattr(fit, "converged", True):
        lines = [f"mlmiss {__version__} ended normally after {count}"]
        if getattr(getattr(fit, "estimate", None), "on_boundary", False):
            lines += ["** NOTE ** boundary solution: the between covariance matrix is singular",
                      "** NOTE ** at the estimates (see the warning); standard errors are taken",
                      "** NOTE ** along the edge of the admissible region."]
    else:
        lines = [f"mlmiss {__version__} did NOT end normally after {count}",
                 "** WARNING ** the optimizer did not converge; the estimates, standard",
                 "** WARNING ** errors and fit measures below may be meaningless.",
                 f"   ({getattr(fit, 'message', '')})"]

    # lavaan counts every free row (equal labels: one row each) and the equalities
    table = getattr(getattr(fit, "partable", None), "table", None)
    npar = int(fit.npar)
    rows_free = int((table["free"] > 0).sum()) if table is not None else npar
    optim = [("Estimator", "ML"),
             ("Optimization method", str(getattr(fit, "optimizer", "?")).upper())]
    e_steps = getattr(getattr(fit, "estimate", None), "e_steps", 0)
    if e_steps:
        optim.append(("Number of E-steps", e_steps))
    optim.append(("Number of model parameters", max(rows_free, npar)))
    if rows_free > npar:
        optim.append(("Number of equality constraints", rows_free - npar))
    lines += [""] + _block(optim, _OPTIM, keep_edge=True) + [""]

    data = getattr(fit, "data", None)
    counts = data_counts(fit)
    label = f"Number of clusters [{cluster}]" if cluster else "Number of clusters"
    rows = []
    if counts["total"] != counts["used"]:
        rows.append(("", "Used", "Total"))
        rows.append(("Number of observations", counts["used"], counts["total"]))
    else:
        rows.append(("Number of observations", counts["used"]))
    rows.append((label, fit.nclusters))
    level1 = getattr(getattr(data, "level1", None), "n_patterns", None)
    if level1 is not None:
        rows.append(("Number of missing patterns -- level 1", level1))
    level2 = level2_patterns(data)
    if level2 is not None:
        rows.append(("Number of missing patterns -- level 2", level2))
    widths = _DATA if counts["total"] != counts["used"] else _DATA[:2]
    return lines + _block(rows, widths)


# ----------------------------------------------------------------------------- tests

def _value(m, key, form=_num) -> str:
    """A measure's cell: blank when the measure is not there at all."""
    return form(m[key]) if key in m else ""


def _test_block(m) -> list[str]:
    """lavaan's "Model Test User Model:": one column, or Standard and Scaled with the
    scaling factor and the name of the correction (MLR)."""
    scaled = "chisq_scaled" in m
    no_df = not (float(m["df"]) > 0)
    if not scaled:
        rows = [("", ""), ("Test statistic", _num(m["chisq"])), ("Degrees of freedom", _df(m["df"]))]
        if not no_df:
            rows.append(("P-value (Chi-square)", _num(m["pvalue"])))
        return ["Model Test User Model:"] + _block(rows, _TEST[:2])
    rows = [("", "Standard", "Scaled"),
            ("Test Statistic", _num(m["chisq"]), _num(m["chisq_scaled"])),
            ("Degrees of freedom", _df(m["df"]), _value(m, "df_scaled", _df))]
    if not no_df:
        rows += [("P-value (Chi-square)", _num(m["pvalue"]), _value(m, "pvalue_scaled")),
                 ("Scaling correction factor", "", _value(m, "chisq_scaling_factor")),
                 ("  Yuan-Bentler correction (Mplus variant)", "", "")]
    return ["Model Test User Model:"] + _block(rows, _TEST)


def _measures_block(m) -> list[str]:
    """lavaan's fit measures after the test: baseline, CFI/TLI, log-likelihoods and
    information criteria, RMSEA, SRMR; with the scaled test a second column and the
    robust indices."""
    scaled = "chisq_scaled" in m
    ncol = 3 if scaled else 2

    def cols(widths):
        return widths[:ncol]

    def second(key, form=_num):
        return (_value(m, key, form),) if scaled else ()

    def same(key):
        return (_num(m[key]),) if scaled else ()

    def robust(label, key):
        if key not in m:
            return []
        return [(label, "", _num(m[key])) if scaled else (label, _num(m[key]))]

    lines = ["", "Model Test Baseline Model:", ""]
    rows = [("Test statistic", _num(m["baseline_chisq"])) + second("baseline_chisq_scaled"),
            ("Degrees of freedom", _df(m["baseline_df"])) + second("baseline_df_scaled", _df),
            ("P-value", _value(m, "baseline_pvalue")) + second("baseline_pvalue_scaled")]
    if scaled and "baseline_chisq_scaling_factor" in m:
        rows.append(("Scaling correction factor", "", _num(m["baseline_chisq_scaling_factor"])))
    lines += _block(rows, cols(_BASELINE))

    lines += ["", "User Model versus Baseline Model:", ""]
    rows = [("Comparative Fit Index (CFI)", _num(m["cfi"])) + second("cfi_scaled"),
            ("Tucker-Lewis Index (TLI)", _num(m["tli"])) + second("tli_scaled")]
    if "cfi_robust" in m or "tli_robust" in m:
        rows += [("",)] + robust("Robust Comparative Fit Index (CFI)", "cfi_robust") \
            + robust("Robust Tucker-Lewis Index (TLI)", "tli_robust")
    lines += _block(rows, cols(_INDICES))

    lines += ["", "Loglikelihood and Information Criteria:", ""]
    rows = [("Loglikelihood user model (H0)", _num(m["logl"])) + same("logl")]
    for key, label in (("scaling_factor_h0", None), ("unrestricted_logl", "(H1)"),
                       ("scaling_factor_h1", None)):
        if key not in m:
            continue
        if label:
            rows.append(("Loglikelihood unrestricted model (H1)", _num(m[key])) + same(key))
        elif scaled:
            rows += [("Scaling correction factor", "", _num(m[key])),
                     ("    for the MLR correction", "", "")]
    rows.append(("",))
    rows += [("Akaike (AIC)", _num(m["aic"])) + same("aic"),
             ("Bayesian (BIC)", _num(m["bic"])) + same("bic")]
    sabic = "sabic" if "sabic" in m else "bic2"
    if sabic in m:
        rows.append(("Sample-size adjusted Bayesian (SABIC)", _num(m[sabic])) + same(sabic))
    lines += _block(rows, cols(_LOGL))

    lines += ["", "Root Mean Square Error of Approximation:", ""]
    level = m.get("rmsea_ci_level", 0.90)
    ci = f"{round(100 * float(level)):2d} Percent confidence interval"
    close = f"{float(m.get('rmsea_close_h0', 0.05)):4.3f}"
    notclose = f"{float(m.get('rmsea_notclose_h0', 0.08)):4.3f}"
    rows = [("RMSEA", _num(m["rmsea"])) + second("rmsea_scaled")]
    if "rmsea_ci_lower" in m:
        rows += [(f"{ci} - lower", _num(m["rmsea_ci_lower"])) + second("rmsea_ci_lower_scaled"),
                 (f"{ci} - upper", _num(m["rmsea_ci_upper"])) + second("rmsea_ci_upper_scaled")]
    if "rmsea_pvalue" in m:
        rows.append((f"P-value H_0: RMSEA <= {close}", _num(m["rmsea_pvalue"]))
                    + second("rmsea_pvalue_scaled"))
    if "rmsea_notclose_pvalue" in m:
        rows.append((f"P-value H_0: RMSEA >= {notclose}", _num(m["rmsea_notclose_pvalue"]))
                    + second("rmsea_notclose_pvalue_scaled"))
    if "rmsea_robust" in m:
        rows += [("",)] + robust("Robust RMSEA", "rmsea_robust") \
            + robust(f"{ci} - lower", "rmsea_ci_lower_robust") \
            + robust(f"{ci} - upper", "rmsea_ci_upper_robust") \
            + robust(f"P-value H_0: Robust RMSEA <= {close}", "rmsea_pvalue_robust") \
            + robust(f"P-value H_0: Robust RMSEA >= {notclose}", "rmsea_notclose_pvalue_robust")
    lines += _block(rows, cols(_INDICES))

    lines += ["", "Standardized Root Mean Square Residual (corr metric):", ""]
    rows = [("SRMR (within covariance matrix)", _num(m["srmr_within"])) + same("srmr_within"),
            ("SRMR (between covariance matrix)", _num(m["srmr_between"])) + same("srmr_between")]
    lines += _block(rows, cols(_INDICES))

    if "gfi" in m:
        lines += ["", "Goodness of Fit Index:", ""]
        rows = [("Goodness of Fit Index (GFI)", _num(m["gfi"]))]
        if "gfi_ci_lower" in m:
            rows += [(f"{ci} - lower", _num(m["gfi_ci_lower"])),
                     (f"{ci} - upper", _num(m["gfi_ci_upper"]))]
        rows = [r + ("",) * (ncol - 2) for r in rows]
        if "gfi_robust" in m:
            rows += [("",)] + robust("Robust GFI", "gfi_robust") \
                + robust(f"{ci} - lower", "gfi_ci_lower_robust") \
                + robust(f"{ci} - upper", "gfi_ci_upper_robust")
        lines += _block(rows, cols(_INDICES))
    return lines


def _fit_section(fit, measures: bool) -> list[str]:
    if not measures or getattr(fit, "test", "standard") == "none":   # test="none": no test
        return []
    try:
        m = fit.fit_measures()
    except Exception as exc:  # a failed h1 or baseline fit must not hide the estimates
        return ["", f"Fit measures are not available ({type(exc).__name__}: {exc})."]
    lines = [""] + _test_block(m) + _measures_block(m)
    for what, getter in (("unrestricted (h1)", "h1"), ("baseline", "baseline")):
        try:
            if not getattr(getattr(fit, getter)(), "converged", True):
                lines += ["", f"** WARNING ** the {what} model did not converge: "
                              "the statistics that use it are unreliable."]
        except Exception:  # already reported by fit_measures if it matters
            pass
    return lines


# ----------------------------------------------------------------------------- estimates

def _estimates(fit, standardized: bool):
    """The parameter table joined with the estimates: est, se, z, pvalue (NaN where
    absent) and, with ``standardized``, std_lv and std_all."""
    table = fit.partable.table.reset_index(drop=True)
    est = (fit.parameter_estimates(standardized=True) if standardized
           else fit.parameter_estimates())
    est = est[~est["op"].isin(CONSTRAINT_OPS)].reset_index(drop=True)
    keep = [c for c in ("lhs", "op", "rhs", "level", "free", "label", "exo", "user")
            if c in table]
    out = table[keep].copy()
    for column, default in (("exo", 0), ("user", 1), ("label", "")):
        if column not in out:
            out[column] = default
    columns = ("est", "se", "z", "pvalue") + (("std_lv", "std_all") if standardized else ())
    if len(est) == len(out):
        for column in columns:
            out[column] = est[column].to_numpy(dtype=float) if column in est else np.nan
    else:  # unexpected shape: match on (lhs, op, rhs, level)
        keyed = est.set_index(["lhs", "op", "rhs", "level"])
        for column in columns:
            if column in keyed:
                out[column] = [float(keyed[column].get((r.lhs, r.op, r.rhs, r.level), np.nan))
                               for r in out.itertuples(index=False)]
            else:
                out[column] = np.nan
    if np.isfinite(out["se"]).any() and not np.isfinite(out["z"]).any():
        # standard errors without tests: the Wald z and its two-sided normal p-value
        tests = pd.DataFrame(index=out.index)
        add_wald_columns(tests, out["est"], out["se"], 0.95, testable=out["free"] > 0)
        out["z"], out["pvalue"] = tests["z"], tests["pvalue"]
    # lavaan's "unused" rows: intercepts it added itself and kept at zero
    unused = (out["op"] == "~1") & (out["user"] == 0) & (out["free"] == 0) & (out["est"] == 0)
    return out[~unused].reset_index(drop=True)


def _r_square(fit, level: int, cluster) -> list[tuple[str, float]]:
    """(variable, R-square) of one level from ``fit.inspect("r2")``."""
    r2 = fit.inspect("r2")
    names = {1: (1, "within", "1"), 2: (2, "between", cluster, "2")}[level]
    for key in names:
        if key in r2:
            series = r2[key]
            return [(str(k), float(v)) for k, v in series.items()]
    return []


def _se_block(fit, with_se: bool) -> list[str]:
    lines = ["", "Parameter Estimates:", ""]
    if not with_se:
        return lines
    if _se_kind(fit) == "robust":
        rows = [("Standard errors", "Sandwich"), ("Information bread", "Observed")]
    else:
        rows = [("Standard errors", "Standard"), ("Information", "Observed")]
    rows.append(("Observed information based on", "Hessian"))
    return lines + _block(rows, _SE)


def _parameter_blocks(fit, cluster, standardized: bool, rsquare: bool) -> list[str]:
    rows = _estimates(fit, standardized)
    with_se = _se_kind(fit) != "none" and bool(np.isfinite(rows["se"]).any())
    columns = ["est"] + (["se", "z", "pvalue"] if with_se else []) \
        + (["std_lv", "std_all"] if standardized else [])

    r2 = {}
    if rsquare:
        for level in (1, 2):
            r2[level] = _r_square(fit, level, cluster)

    # every cell as lavaan formats it; the columns as wide as their widest cell anywhere
    def cell(value):
        return f"{value:{_NUMBER}.3f}" if math.isfinite(value) else "NA"

    cells = {c: [cell(float(v)) for v in rows[c]] for c in columns}
    if with_se:
        for i, se in enumerate(rows["se"]):
            if se == 0:              # fixed (or pinned at a boundary): no test
                cells["se"][i] = cells["z"][i] = cells["pvalue"][i] = ""
            elif not math.isfinite(se):
                cells["z"][i] = cells["pvalue"][i] = ""
    r2_cells = {level: [cell(v) for _, v in pairs] for level, pairs in r2.items()}
    width = {c: max([_NUMBER] + [len(s) for s in cells[c]]) for c in columns}
    width["est"] = max([width["est"]] + [len(s) for v in r2_cells.values() for s in v])
    heading = {c: _HEADINGS[c].rjust(_NUMBER) for c in columns}

    # residual dots: dependent variables and indicators, at any level
    dotted = set(rows.loc[rows["op"] == "~", "lhs"]) | set(rows.loc[rows["op"] == "=~", "rhs"])

    def table(first, body, shown):
        """A section as lavaan prints it: the name column as wide as its widest cell,
        each column's heading left-aligned over its right-aligned values."""
        w1 = max([_NUMBER] + [len(f) for f in first])
        out = [" " + " ".join([" " * w1] + [heading[c].ljust(width[c]) for c in shown])]
        for f, values in zip(first, body):
            out.append(" " + " ".join([f.ljust(w1)]
                                      + [v.rjust(width[c]).ljust(width[c])
                                         for c, v in zip(shown, values)]))
        return out

    level_label = {1: "within", 2: cluster or "between"}
    lines = _se_block(fit, with_se)
    for level in (1, 2):
        lines += ["", "", f"Level {level} [{level_label[level]}]:"]
        here = rows[rows["level"].astype(int) == level]
        for title in _SECTIONS:
            if title == "R-Square":
                pairs = r2.get(level, [])
                if not pairs:
                    continue
                first = _names([name for name, _ in pairs])
                body = [[v] for v in r2_cells[level]]
                lines += ["", "R-Square:"] + table(first, body, ["est"])
                continue
            # fixed_x: the covariates' moments are fixed at the sample's, not shown
            op = here["op"]
            exo = here["exo"].astype(bool) & (here["free"] == 0)
            same = here["lhs"] == here["rhs"]
            keep = {"Latent Variables": op == "=~", "Regressions": op == "~",
                    "Covariances": (op == "~~") & ~same & ~exo,
                    "Intercepts": (op == "~1") & ~exo,
                    "Variances": (op == "~~") & same & ~exo}[title]
            chosen = here[keep]
            if chosen.empty:
                continue
            index = list(chosen.index)
            name_of = chosen["lhs"] if title == "Intercepts" else chosen["rhs"]
            residual = title in ("Covariances", "Intercepts", "Variances")
            prefixes = ["  ." if residual and v in dotted else "" for v in name_of]
            names = _names(list(name_of), list(chosen["label"]), prefixes)
            values = [[cells[c][i] for c in columns] for i in index]
            if title in _GROUPED:
                first, body, previous = [], [], None
                for r, name, vals in zip(chosen.itertuples(index=False), names, values):
                    if r.lhs != previous:
                        dot = "." if title == "Covariances" and r.lhs in dotted else ""
                        first.append(f"{dot:>1}{r.lhs} {r.op}".ljust(16))
                        body.append([""] * len(columns))
                        previous = r.lhs
                    first.append(name)
                    body.append(vals)
            else:
                first, body = names, values
            lines += ["", f"{title}:"] + table(first, body, columns)
    return lines + [""]


def summary_text(fit, cluster: str | None = None, measures: bool = True,
                 standardized: bool = False, rsquare: bool = False) -> str:
    """A lavaan-style summary (lavaan 0.7.2's ``summary(fit, fit.measures = TRUE)`` for
    a two-level model): the fit, the data (rows used and given, clusters, missing
    patterns per level), the test of the model against the unrestricted one (Standard
    and Scaled columns with MLR) and the fit measures, then the estimates per level
    (Latent Variables, Regressions, Covariances, Intercepts, Variances) with Std.Err,
    z-value and P(>|z|) when the fit has standard errors.

    ``standardized=True`` adds the Std.lv and Std.all columns
    (``fit.parameter_estimates(standardized=True)``), ``rsquare=True`` an R-Square
    block per level (``fit.inspect("r2")``). A dot before a name marks a residual: the
    (co)variance or intercept of a dependent variable or indicator. ``cluster`` names
    the cluster variable (default: the fit's); ``measures=False`` leaves out the test
    and the fit measures (no h1 or baseline fit).
    """
    cluster = cluster or getattr(fit, "cluster", None)
    lines = _header(fit, cluster)
    lines += _fit_section(fit, measures)
    lines += _parameter_blocks(fit, cluster, standardized, rsquare)
    lines += _constraint_blocks(fit)
    return "\n".join(lines) + "\n"


def _constraint_blocks(fit) -> list[str]:
    """lavaan's "Defined Parameters:" (estimate, Std.Err, z-value, P(>|z|)) and
    "Constraints:" (|Slack| of lhs - (rhs)) after the levels."""
    if not getattr(getattr(fit, "partable", None), "constraints", None):
        return []
    rows = fit.parameter_estimates()
    rows = rows[rows["op"].isin(CONSTRAINT_OPS)]
    lines = []
    defined = rows[rows["op"] == ":="]
    if len(defined):
        with_se = "se" in defined
        lines += ["", "Defined Parameters:",
                  " " * 19 + "Estimate" + ("  Std.Err  z-value  P(>|z|)" if with_se else "")]
        for r in defined.itertuples(index=False):
            cells = [_num(r.est).rjust(9)]
            if with_se:
                cells += [_num(v).rjust(9) for v in (r.se, r.z, r.pvalue)]
            lines.append(f"    {r.lhs:<14}" + "".join(cells))
    written = rows[rows["op"] != ":="]
    if len(written):
        lines += ["", "Constraints:", " " * 47 + "|Slack|"]
        for r in written.itertuples(index=False):
            lines.append(f"    {f'{r.lhs} - ({r.rhs})':<41}" + _num(abs(r.est)).rjust(9))
    return lines
