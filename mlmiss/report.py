"""The text of a lavaan-style summary of a fit.

Reads only what a :class:`mlmiss.Fit` answers (``loglik``, ``npar``, ``nobs``,
``nclusters``, ``converged``, ``iterations``, ``message``, ``optimizer``, ``data``,
``partable``, ``cluster``, ``fit_measures()``, ``parameter_estimates()``, ``h1()``,
``baseline()``) and imports no other part of the package, so the result object can
offer ``summary()`` without importing anything above it.
"""

from __future__ import annotations

import math

import numpy as np

from .version import __version__

_WIDTH = 54          # the header block's width: label left, value right


class Summary(str):
    """The summary text. At the prompt it shows as itself, once, like lavaan's
    ``summary(fit)``; in a script, ``print(fit.summary())`` (statsmodels' habit)."""

    def __repr__(self) -> str:
        return str(self)


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
    iterations = getattr(fit, "iterations", "?")
    if getattr(fit, "converged", True):
        lines = [f"mlmiss {__version__} ended normally after {iterations} iterations"]
        if getattr(getattr(fit, "estimate", None), "on_boundary", False):
            lines += ["** NOTE ** boundary solution: the between covariance matrix is singular",
                      "** NOTE ** at the estimates (see the warning); standard errors are taken",
                      "** NOTE ** along the edge of the admissible region."]
    else:
        lines = [f"mlmiss {__version__} did NOT end normally after {iterations} iterations",
                 "** WARNING ** the optimizer did not converge; the estimates, standard",
                 "** WARNING ** errors and fit measures below may be meaningless.",
                 f"   ({getattr(fit, 'message', '')})"]
    lines += ["", _line("Estimator", "ML"),
              _line("Optimization method", str(getattr(fit, "optimizer", "?")).upper()),
              *([_line("Number of E-steps", fit.estimate.e_steps)]
                if getattr(getattr(fit, "estimate", None), "e_steps", 0) else []),
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
        m = fit.fit_measures()
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
    ci = f"{100 * m['rmsea_ci_level']:.0f} Percent"
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
             _line("Sample-size adjusted Bayesian (SABIC)", _num(m["sabic"])),
             "", "Root Mean Square Error of Approximation:", "",
             _line("RMSEA", _num(m["rmsea"])),
             _line(f"{ci} confidence interval - lower", _num(m["rmsea_ci_lower"])),
             _line(f"{ci} confidence interval - upper", _num(m["rmsea_ci_upper"])),
             _line(f"P-value H_0: RMSEA <= {m['rmsea_close_h0']:.3f}", _num(m["rmsea_pvalue"])),
             _line(f"P-value H_0: RMSEA >= {m['rmsea_notclose_h0']:.3f}",
                   _num(m["rmsea_notclose_pvalue"])),
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
    cluster = cluster or getattr(fit, "cluster", None)
    lines = _header(fit, cluster)
    if measures:
        lines += _measures_block(fit)
    lines += _parameter_blocks(fit, cluster)
    return "\n".join(lines) + "\n"
