"""The rows lavaan's parameterEstimates() adds after the parameters: defined parameters
(``:=``) with delta-method standard errors, and the constraints (``==``, ``<``, ``>``)
with the value of lhs - rhs at the estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..estimation.constraints import ConstraintSet
from .wald import add_wald_columns


def constraint_rows(fit, ci_level: float = 0.95, se: bool = True) -> pd.DataFrame:
    """One row per ``:=`` (est, and with ``se`` the delta method's se, z, pvalue and
    interval from ``fit.vcov()``) and per constraint (est = lhs - rhs), in the order
    written; level 0 (they belong to no level)."""
    constraints = ConstraintSet(fit.partable)
    if not constraints.constraints:
        return pd.DataFrame()
    h, g, defined = constraints.values(fit.theta)
    rows, est = [], []
    d_iter, h_iter, g_iter = iter(defined), iter(h), iter(g)
    for c in constraints.constraints:
        rows.append({"lhs": c.lhs, "op": c.op, "rhs": c.rhs, "level": 0,
                     "label": c.lhs if c.op == ":=" else ""})
        if c.op == ":=":
            est.append(next(d_iter))
        elif c.op == "==":
            est.append(next(h_iter))
        else:   # the slack, signed as written: lhs - rhs
            slack = next(g_iter)
            est.append(-slack if c.op == "<" else slack)
    out = pd.DataFrame(rows)
    out["est"] = np.asarray(est, dtype=float)
    if se:
        jac = constraints.jacobians(fit.theta)[2]
        variances = np.einsum("ij,jk,ik->i", jac, np.asarray(fit.vcov(), dtype=float), jac)
        # a defined parameter the constraints fix (m2 / l2 with l2 == m2) has variance 0
        # up to round-off: no standard error, no test
        d_est = out.loc[out["op"] == ":=", "est"].to_numpy()
        variances = np.where(variances > 1e-14 * (1.0 + d_est ** 2), variances, 0.0)
        ses = np.full(len(out), np.nan)
        ses[(out["op"] == ":=").to_numpy()] = np.sqrt(variances)
        add_wald_columns(out, out["est"], ses, ci_level, testable=(out["op"] == ":=").to_numpy())
    return out
