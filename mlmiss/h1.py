"""The saturated (h1) model: unrestricted within and between means and covariances.

Fitted by FIML like any other model (``mlmiss.sem``), from lavaan-style syntax that
frees every variance and covariance at each level: level 1 over the level-1 variables
(within-only and "both"), level 2 over the "both" and between-only variables; the
means follow the usual two-level defaults. It starts from the observed moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .start import level_statistics


@dataclass
class H1:
    """A fitted unrestricted model. With fixed_x=True the covariates' marginal
    log-likelihood is subtracted, as for the model itself (``offset``)."""

    fit: object
    offset: float = 0.0

    @property
    def loglik(self) -> float:
        return self.fit.loglik - self.offset

    @property
    def npar(self) -> int:
        return self.fit.npar

    @property
    def converged(self) -> bool:
        return self.fit.converged

    @property
    def moments(self):
        return self.fit.implied()["moments"]


def saturated_syntax(within_names, between_names) -> str:
    """Every variance and covariance free at each level."""
    lines = ["level: 1"]
    for i, a in enumerate(within_names):
        lines.append(f"  {a} ~~ " + " + ".join(within_names[i:]))
    lines.append("level: 2")
    for i, a in enumerate(between_names):
        lines.append(f"  {a} ~~ " + " + ".join(between_names[i:]))
    return "\n".join(lines) + "\n"


def saturated_start(partable, data) -> np.ndarray:
    """Observed variances (within, between, of z) and means; covariances 0."""
    within, between, means, z_var, z_mean = level_statistics(data)
    y_index = {n: i for i, n in enumerate(data.y_names)}
    z_index = {n: i for i, n in enumerate(data.z_names)}
    theta = np.zeros(partable.npar)
    for row in partable.table.itertuples(index=False):
        if row.free == 0:
            continue
        name = row.lhs
        if row.op == "~1":
            value = z_mean[z_index[name]] if name in z_index else means[y_index[name]]
        elif row.lhs == row.rhs:
            if name in z_index:
                value = z_var[z_index[name]]
            else:
                value = (within if row.level == 1 else between)[y_index[name]]
            value = value if np.isfinite(value) and value > 0 else 1.0
        else:
            value = 0.0
        theta[row.free - 1] = value
    return theta


def fit_h1(fit):
    """Fit the unrestricted model to ``fit``'s data (same variables, same rows)."""
    from .estimate import sem
    from .partable import parameter_table

    data = fit.data
    both = [n for n in data.y_names if n in set(fit.partable.both_names)]
    syntax = saturated_syntax(list(data.y_names), both + list(data.z_names))
    start = saturated_start(parameter_table(syntax), data)
    return H1(sem(syntax, data, cluster=None, start=start),
              offset=fit.extra.get("covariate_loglik", 0.0))
