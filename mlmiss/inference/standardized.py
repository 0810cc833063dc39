"""The standardized solution and R-square of a two-level fit, as lavaan reports them.

lavaan 0.7 (``lav_standardize.R``, ``standardizedSolution()`` in
``lav_object_methods.R``, ``lav_inspect_rsquare`` in ``lav_object_inspect.R``)
standardizes each level block by that level's own model-implied variances: level-1 rows
by the within covariance, level-2 rows by the between one, never by the total. Per
variable v of a level three numbers are used:

* s_v, its scale: the implied SD for a latent variable; for an observed variable the
  implied SD if the type standardizes it, else 1 (std.lv standardizes no observed
  variable; std.nox all but the exogenous covariates, and only when they are fixed,
  ``fixed_x=True``: with random covariates std.nox is std.all);
* d_v, the divisor of its (residual) variance row: s_v^2 (for an observed variable its
  implied variance itself, which keeps the sign of a negative one);
* r_v, the divisor of its side of a covariance row: sqrt(|Psi_vv|), the SD of its
  residual (or its own SD if exogenous), or 1 if not standardized. A residual
  covariance thus becomes a residual correlation.

A row then becomes ``=~``: est s_L / s_R; ``~``: est s_X / s_Y; variance: est / d_v;
covariance: est / (r_lhs r_rhs); ``~1``: est / s_v. An implied variance of 0 makes the
observed variable's scale NaN, a negative one makes the SD NaN, as in lavaan.

The standard errors are the delta method's, J V J' with V the covariance of theta
(``fit.vcov()``) and J the Jacobian of the standardized values in theta. J comes from
central differences of the standardization, which is a cheap and smooth function of theta
(the per-level matrix algebra, no likelihood); lavaan takes a complex-step derivative of
the same function. As lavaan does, SEs below eps^(1/4) are set to 0 (no z-test then).

R-square (``lavInspect(fit, "r2")``): for every variable of a level that is an indicator
or a dependent variable there, 1 minus the std.all value of its residual variance row
(NaN when that exceeds 1), in table order.

The functions take a fit-like object: ``partable`` (``table``, ``fixed_x``,
``covariates()``), ``model`` (``level_matrices``, ``latent_names``), ``theta`` and
``vcov()``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .wald import add_wald_columns

TYPES = ("std.lv", "std.all", "std.nox")
_EPS = np.finfo(float).eps
_LEVEL_KEYS = {1: "within", 2: "between"}


class _Standardizer:
    """theta -> standardized values of every table row, for the three types at once.

    Set up once from the table: each row's (level-local) lhs and rhs positions in a
    vector holding the variables of level 1 then level 2, and which of those variables
    each type standardizes."""

    def __init__(self, fit):
        table = fit.partable.table
        self.model = fit.model
        self.free = table["free"].to_numpy(dtype=np.int64)
        self.value = table["value"].to_numpy(dtype=float)
        self.op = table["op"].to_numpy(dtype=object)
        lhs = table["lhs"].astype(str).to_numpy()
        rhs = table["rhs"].astype(str).to_numpy()
        level = table["level"].to_numpy(dtype=np.int64)

        theta = np.asarray(fit.theta, dtype=float)
        covariates = fit.partable.covariates() if fit.partable.fixed_x else {1: [], 2: []}
        position, latent, exogenous = {}, [], []
        for lev in (1, 2):
            names = self.model.level_matrices(theta, lev)[0]
            latent_here = set(self.model.latent_names[lev])
            x_here = set(covariates.get(lev, ()))
            for name in names:
                position[(lev, name)] = len(latent)
                latent.append(name in latent_here)
                exogenous.append(name in x_here)
        self.n_vars = len(latent)
        self.latent = np.array(latent, dtype=bool)
        # which observed variables each type standardizes
        observed = ~self.latent
        self.standardize_ov = {"std.lv": np.zeros(self.n_vars, dtype=bool),
                               "std.all": observed,
                               "std.nox": observed & ~np.array(exogenous, dtype=bool)}
        # position n_vars: "no variable" (the rhs of ~1), whose scale is 1
        none = self.n_vars
        self.lhs = np.array([position[(lv, n)] for lv, n in zip(level, lhs)], dtype=np.int64)
        self.rhs = np.array([position[(lv, n)] if n else none for lv, n in zip(level, rhs)],
                            dtype=np.int64)
        self.variance = (self.op == "~~") & (self.lhs == self.rhs)
        self.covariance = (self.op == "~~") & (self.lhs != self.rhs)

    def estimates(self, theta) -> np.ndarray:
        """Every row's unstandardized value at theta (fixed rows: their value)."""
        est = self.value.copy()
        free = self.free > 0
        est[free] = theta[self.free[free] - 1]
        return est

    def variances(self, theta):
        """(implied variance, residual variance Psi_vv) of every variable, level by
        level: the diagonals of (I-B)^-1 Psi (I-B)^-T and of Psi."""
        implied, residual = [], []
        for lev in (1, 2):
            implied.append(np.diag(self.model.level_moments(theta, lev)[2]))
            residual.append(np.diag(self.model.level_matrices(theta, lev)[2]))
        return np.concatenate(implied), np.concatenate(residual)

    def standardize(self, theta) -> dict:
        """{type: standardized value of every row} at theta."""
        theta = np.asarray(theta, dtype=float)
        est = self.estimates(theta)
        implied, residual = self.variances(theta)
        with np.errstate(invalid="ignore", divide="ignore"):
            lv_sd = np.sqrt(np.where(implied < 0, np.nan, implied))
            ov_var = np.where(np.abs(implied) < _EPS, np.nan, implied)
            ov_sd = np.sqrt(np.where(ov_var < 0, np.nan, ov_var))
            resid_sd = np.sqrt(np.abs(residual))
            out = {}
            for kind in TYPES:
                std_ov = self.standardize_ov[kind]
                scale = np.where(self.latent, lv_sd, np.where(std_ov, ov_sd, 1.0))
                divisor = np.where(self.latent, lv_sd * lv_sd, np.where(std_ov, ov_var, 1.0))
                side = np.where(self.latent | std_ov, resid_sd, 1.0)
                scale, divisor, side = (np.append(v, 1.0) for v in (scale, divisor, side))
                factor = np.ones(est.size)
                op, lhs, rhs = self.op, self.lhs, self.rhs
                m = op == "=~"
                factor[m] = scale[lhs[m]] / scale[rhs[m]]
                m = op == "~"
                factor[m] = scale[rhs[m]] / scale[lhs[m]]
                m = op == "~1"
                factor[m] = 1.0 / scale[lhs[m]]
                m = self.variance
                factor[m] = 1.0 / divisor[lhs[m]]
                m = self.covariance
                factor[m] = 1.0 / (side[lhs[m]] * side[rhs[m]])
                out[kind] = est * factor
        return out

    def jacobian(self, theta) -> dict:
        """{type: d standardized values / d theta} by central differences (one-sided
        where a step leaves the region where the values are defined)."""
        theta = np.asarray(theta, dtype=float)
        center = self.standardize(theta)
        jac = {kind: np.zeros((self.free.size, theta.size)) for kind in TYPES}
        for j in range(theta.size):
            h = _EPS ** (1.0 / 3.0) * max(abs(theta[j]), 0.1)
            step = np.zeros_like(theta)
            step[j] = h
            up, down = self.standardize(theta + step), self.standardize(theta - step)
            for kind in TYPES:
                central = (up[kind] - down[kind]) / (2.0 * h)
                forward = (up[kind] - center[kind]) / h
                backward = (center[kind] - down[kind]) / h
                col = np.where(np.isfinite(central), central,
                               np.where(np.isfinite(forward), forward, backward))
                jac[kind][:, j] = col
        return jac


def _delta_se(jac: np.ndarray, vcov: np.ndarray) -> np.ndarray:
    """sqrt(diag(J V J')), NaN for a row whose derivative meets an unknown entry of V
    or whose variance is negative, 0 below eps^(1/4) (lavaan's cut)."""
    unknown = np.isnan(vcov)
    v = np.where(unknown, 0.0, vcov)
    variance = np.einsum("ij,jk,ik->i", jac, v, jac)
    used = (jac != 0).astype(float)
    touches = np.einsum("ij,jk,ik->i", used, unknown.astype(float), used) > 0
    with np.errstate(invalid="ignore"):
        se = np.where(touches | ~(variance >= 0), np.nan, np.sqrt(np.abs(variance)))
    return np.where(se < _EPS ** 0.25, 0.0, se)


def _keys(fit) -> pd.DataFrame:
    return fit.parameter_estimates(se=False)[["lhs", "op", "rhs", "level", "label"]]


def standardized_columns(fit, theta=None) -> pd.DataFrame:
    """``std_lv``, ``std_all``, ``std_nox`` of every table row (the columns lavaan's
    ``parameterEstimates(standardized = TRUE)`` adds), in table order; at ``theta``
    (default: the estimates), e.g. another program's estimates to compare with."""
    values = _Standardizer(fit).standardize(fit.theta if theta is None else theta)
    return pd.DataFrame({"std_lv": values["std.lv"], "std_all": values["std.all"],
                         "std_nox": values["std.nox"]})


def standardized_solution(fit, type: str = "std.all", ci_level: float = 0.95) -> pd.DataFrame:
    """lavaan's ``standardizedSolution(fit, type=)``: the keys of every table row with
    ``est_std`` and its delta-method ``se``, ``z``, ``pvalue``, ``ci_lower``,
    ``ci_upper`` (normal quantiles); only ``est_std`` when the fit has ``se="none"``."""
    if type not in TYPES:
        raise ValueError(f"type must be one of {TYPES}, got {type!r}")
    std = _Standardizer(fit)
    est = std.standardize(fit.theta)[type]
    out = _keys(fit).copy()
    out["est_std"] = est
    if getattr(fit, "se", "standard") == "none":
        return out
    se = _delta_se(std.jacobian(fit.theta)[type], np.asarray(fit.vcov(), dtype=float))
    add_wald_columns(out, est, se, ci_level)
    return out


def r_squared(fit, theta=None) -> dict:
    """lavaan's ``lavInspect(fit, "r2")``: {"within": Series, "between": Series}, the
    R-square of each level's indicators and dependent variables (observed or latent),
    named by variable, in the order of their variance rows; at ``theta`` (default: the
    estimates)."""
    table = fit.partable.table
    std_all = _Standardizer(fit).standardize(fit.theta if theta is None else theta)["std.all"]
    with np.errstate(invalid="ignore"):
        r2 = 1.0 - std_all
    r2 = np.where(r2 > 1.0, np.nan, r2)
    out = {}
    for lev, key in _LEVEL_KEYS.items():
        here = (table["level"] == lev).to_numpy()
        ops = table["op"].to_numpy()
        explained = (set(table.loc[here & (ops == "=~"), "rhs"])
                     | set(table.loc[here & (ops == "~"), "lhs"]))
        rows = np.flatnonzero(here & (ops == "~~") & (table["lhs"] == table["rhs"]).to_numpy()
                              & table["lhs"].isin(explained).to_numpy())
        out[key] = pd.Series(r2[rows], index=list(table["lhs"].iloc[rows]), name="r2")
    return out
