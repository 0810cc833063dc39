"""Modification indices of a two-level fit: 1-df score tests of fixed parameters, as
lavaan's ``modindices(fit)`` (lavaan 0.7.2, ``lav_modification.R``).

**The candidates** (:func:`candidates`). Every fixed row of the parameter table (first
loadings, latent means, the level-1 intercepts of "both" variables, zeros written in
the syntax, fixed covariate moments) and, per level, the rows lavaan's
``lav_partable_full`` would add that the table does not have:

1. ``f =~ v`` for every latent variable f and observed non-covariate v that is in no
   regression;
2. ``a ~~ b`` (and ``a ~~ a``) among the observed non-covariates, leaving out every
   pair that involves a variable that is neither an indicator, nor a covariate, nor in
   a regression; then among the covariates; then among the latent variables;
3. ``a ~ b`` for every ordered pair of variables that appear in the level's
   regressions (either side; no self-regression, no indicator regressed on a latent
   variable);
4. ``v ~1`` for every observed and latent variable.

A candidate that equals a table row (a covariance in either orientation) is not added.
Each candidate is tested alone: it is freed in an extended parameter table (its own
parameter, labels ignored, as lavaan's ``modindices()`` ignores equality constraints),
the model's parameters stay at their estimates and the candidate at its fixed value.

**The test.** With g the gradient of the log-likelihood at that point (analytic,
:meth:`mlmiss.estimation.problem.Problem.loglik_and_gradient`) and I the information of
the extended model partitioned into the candidate (1) and the model's parameters (2),
``V = I_11 - I_12 I_22^-1 I_21``, ``mi = g_1^2 / V`` and the expected parameter change
``epc = g_1 / V``. lavaan's default for ``modindices()`` is the *expected* information
even when the standard errors use the observed one; for a two-level model it is
lavaan's complete-data expected information (``lav_mvn_cl_info_expected_delta``), which
takes no account of the missing values: the within part (N - J) times the normal
information of Sigma_w (and of the within-only means) and, per cluster size n, the
normal information of the cluster mean's distribution, means
(mu_both, mu_within / n, mu_z) and covariance [[Sigma_w / n + Sigma_b, Sigma_yz],
[., Sigma_zz]], times the number of clusters of that size (:func:`expected_information`).
``information="observed"`` uses the Hessian of -logl instead (analytic,
``docs/hessian.md``). V below ``J * eps^(1/3)`` (lavaan's per-cluster threshold)
makes the candidate untestable (not identified when freed); those rows are dropped,
as lavaan drops its NA rows.

``sepc_all`` is the EPC in lavaan's "std.all" metric (:func:`_standardize`): loadings
and regressions times the ratio of the implied standard deviations, covariances of
observed variables over the square roots of their residual variances, of latent ones
over the square roots of their (residual) variances, means over the implied standard
deviation.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from ..estimation.problem import Problem
from ..estimation.scaling import parameter_scales
from ..model.partable import _Names

__all__ = ["INFORMATION_TYPES", "candidates", "expected_information", "modindices"]

INFORMATION_TYPES = ("expected", "observed")


# --------------------------------------------------------------------------- candidates

def _pairs(names):
    """lavaan's lower-triangle order: (names[j], names[i]) for j <= i, column by column."""
    return [(names[j], names[i]) for j in range(len(names)) for i in range(j, len(names))]


def _level_candidates(partable, level: int) -> list:
    table = partable.table
    rows = list(table[table["level"] == level].itertuples(index=False))
    dependent_anywhere = list(dict.fromkeys(table.loc[table["op"] == "~", "lhs"]))
    names = _Names(rows, dependent_anywhere if level == 2 else None)
    lv = list(names.lv)
    ov = list(names.ov)
    ov_x = [v for v in partable.covariates()[level] if v in set(ov)]
    ov_nox = [v for v in ov if v not in set(ov_x)]
    ov_ind = list(dict.fromkeys(r.rhs for r in rows if r.op == "=~" and r.rhs not in set(lv)))
    # every variable of the level's regressions, either side (lavaan's eqs.y and eqs.x
    # merged: without conditional.x, which two-level models never have, both are this)
    eqs = list(dict.fromkeys([r.lhs for r in rows if r.op == "~"]
                             + [r.rhs for r in rows if r.op == "~"]))

    out = [(f, "=~", v) for f in lv for v in ov_nox if v not in set(eqs)]
    other = set(ov) - set(ov_ind) - set(ov_x) - set(eqs)
    out += [(a, "~~", b) for a, b in _pairs(ov_nox) if a not in other and b not in other]
    out += [(a, "~~", b) for a, b in _pairs(ov_x)]
    out += [(a, "~~", b) for a, b in _pairs(lv)]
    out += [(y, "~", x) for y in eqs for x in eqs
            if y != x and not (y in set(ov_ind) and x in set(lv))]
    out += [(v, "~1", "") for v in ov + lv]
    return [(lhs, op, rhs, level) for lhs, op, rhs in out]


def _key(lhs, op, rhs, level):
    if op == "~~" and rhs < lhs:
        lhs, rhs = rhs, lhs
    return lhs, op, rhs, int(level)


def candidates(partable) -> pd.DataFrame:
    """The parameters lavaan's ``modindices()`` tests (module docstring): columns lhs,
    op, rhs, level, value (the fixed value it is tested at: the table's for a fixed
    row, 0 for an added one) and row (the table row of a fixed one, -1 for an added
    one), exo (1 for the fixed covariate rows of ``fixed_x=True``), in lavaan's order:
    fixed table rows first, then the added ones, level 1 first."""
    table = partable.table
    seen = {_key(r.lhs, r.op, r.rhs, r.level) for r in table.itertuples(index=False)}
    out = []
    fixed_x = bool(partable.fixed_x)
    for pos, r in enumerate(table.itertuples(index=False)):
        if r.free == 0:
            exo = int(fixed_x and r.exo == 1)
            out.append((r.lhs, r.op, r.rhs, int(r.level), float(r.value), pos, exo))
    for level in (1, 2):
        for lhs, op, rhs, lev in _level_candidates(partable, level):
            key = _key(lhs, op, rhs, lev)
            if key not in seen:
                seen.add(key)
                out.append((lhs, op, rhs, lev, 0.0, -1, 0))
    return pd.DataFrame(out, columns=["lhs", "op", "rhs", "level", "value", "row", "exo"])


def extended_problem(fit, cand: pd.DataFrame):
    """(Problem with every candidate free, theta at the estimates and the candidates'
    fixed values). The model's parameters keep their indices; candidate k is
    parameter npar + k."""
    partable = fit.partable
    table = partable.table.copy()
    npar = int(partable.npar)
    free = table["free"].to_numpy().copy()
    fixed_rows = cand["row"].to_numpy()
    index = npar + 1 + np.arange(len(cand))
    hit = fixed_rows >= 0
    free[fixed_rows[hit]] = index[hit]
    table["free"] = free
    added = cand[~hit]
    if len(added):
        extra = pd.DataFrame({
            "id": len(table) + 1 + np.arange(len(added)),
            "lhs": added["lhs"].to_numpy(), "op": added["op"].to_numpy(),
            "rhs": added["rhs"].to_numpy(), "level": added["level"].to_numpy(dtype=np.int64),
            "user": np.full(len(added), 10, dtype=np.int64), "free": index[~hit],
            "value": np.zeros(len(added)), "label": [""] * len(added),
            "exo": np.zeros(len(added), dtype=np.int64)})
        table = pd.concat([table, extra[table.columns]], ignore_index=True)
    ext = copy.copy(partable)
    ext.table = table
    ext.npar = npar + len(cand)
    problem = Problem(ext, fit.data)
    problem.between_psd = False
    theta = np.concatenate([np.asarray(fit.theta, dtype=float), cand["value"].to_numpy(dtype=float)])
    return problem, theta


# --------------------------------------------------------------------------- information

def _sqrt_inverse(s: np.ndarray) -> np.ndarray:
    """L with L L' = s^-1 (s symmetric positive definite)."""
    return np.linalg.cholesky(np.linalg.inv(s))


def _quadratic(dmean, dcov, s):
    """Normal information of N(mean, s) in the parameters: dmean (p, q), dcov (p, p, q):
    dm' s^-1 dm + 1/2 tr(s^-1 dS_k s^-1 dS_l)."""
    root = _sqrt_inverse(s)
    out = (root.T @ dmean).T @ (root.T @ dmean) if dmean is not None else 0.0
    x = np.einsum("ai,abk,bj->kij", root, dcov, root, optimize=True)
    x = x.reshape(x.shape[0], -1)
    return out + 0.5 * (x @ x.T)


def expected_information(model, theta, data) -> np.ndarray:
    """lavaan's expected (complete-data) information of a two-level model, total over
    clusters (module docstring), at theta."""
    m, jac = model.moments_and_jacobian(np.asarray(theta, dtype=float))
    p, k = len(model.y_names), len(model.z_names)
    q = jac.shape[1]
    off = model.offsets

    def block(name, shape):
        size = int(np.prod(shape))
        return jac[off[name]:off[name] + size].reshape(*shape, q)

    d_mu_y, d_mu_z = block("mu_y", (p,)), block("mu_z", (k,))
    d_sw, d_sb = block("sigma_w", (p, p)), block("sigma_b", (p, p))
    d_szz, d_syz = block("sigma_zz", (k, k)), block("sigma_yz", (p, k))
    both = np.asarray(model.between_mask, dtype=bool)
    within_only = np.flatnonzero(~both)

    n_total = float(data.n_obs)
    sizes = np.asarray(data.cluster_sizes)
    n_clusters = float(data.n_clusters)
    info = np.zeros((q, q))
    # within: (N - J) x the information of Sigma_w and of the within-only means, the
    # means read off the inverse of the whole Sigma_w as lavaan does
    w_inv = np.linalg.inv(m.sigma_w)
    dm = d_mu_y[within_only]
    mean_part = dm.T @ w_inv[np.ix_(within_only, within_only)] @ dm if within_only.size else 0.0
    info += (n_total - n_clusters) * (mean_part + _quadratic(None, d_sw, m.sigma_w))
    # per cluster size: the distribution of the cluster means (and z)
    for n, count in zip(*np.unique(sizes[sizes > 0], return_counts=True)):
        omega = np.block([[m.sigma_w / n + m.sigma_b, m.sigma_yz],
                          [m.sigma_yz.T, m.sigma_zz]])
        d_mean = np.concatenate([np.where(both[:, None], d_mu_y, d_mu_y / n), d_mu_z])
        d_omega = np.concatenate([
            np.concatenate([d_sw / n + d_sb, d_syz], axis=1),
            np.concatenate([np.transpose(d_syz, (1, 0, 2)), d_szz], axis=1)], axis=0)
        info += count * _quadratic(d_mean, d_omega, omega)
    return 0.5 * (info + info.T)


def _observed_columns(problem, theta, columns) -> np.ndarray:
    """-d^2 logl / d theta d theta[columns]: the analytic Hessian, else central
    differences of the analytic gradient, steps in the problem's scaled parameters (as
    the observed information)."""
    hessian = problem.loglik_hessian(theta)
    if hessian is not None and np.all(np.isfinite(hessian)):
        return -hessian[:, columns]
    scales = np.asarray(parameter_scales(problem.partable, problem.data), dtype=float)
    u = theta / scales
    out = np.empty((theta.size, len(columns)))
    for c, i in enumerate(columns):
        h = 1e-6 * max(1.0, abs(u[i]))
        grads = []
        for sign in (1.0, -1.0):
            step = u.copy()
            step[i] += sign * h
            g = problem.loglik_and_gradient(scales * step, guard=False)[1]
            grads.append(np.full(theta.size, np.nan) if g is None else g * scales)
        out[:, c] = -(grads[0] - grads[1]) / (2.0 * h)
    return out / (scales[:, None] * scales[columns][None, :])


# --------------------------------------------------------------------------- standardizing

def _level_sds(model, theta, level: int):
    """{variable: implied sd} and {variable: (residual) variance Psi_ii} at one level."""
    names, _, cov = model.level_moments(theta, level)
    psi = model.level_matrices(theta, level)[2]
    total = np.diag(cov)
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.where(total > 0, total, np.nan))
    return dict(zip(names, sd)), dict(zip(names, np.diag(psi)))


def _standardize(fit, cand: pd.DataFrame, epc: np.ndarray) -> np.ndarray:
    """lavaan's sepc.all (module docstring). As in lavaan, a variance's candidate is
    standardized at its current value (only its sign comes from the EPC), except the
    fixed covariate variances of ``fixed_x=True``, which keep their EPC; a variance
    below sqrt(eps) gives 0; the covariance of two observed variables is divided by
    the square roots of the values their variance rows carry there."""
    theta = np.asarray(fit.theta, dtype=float)
    model = fit.model
    info = {lev: _level_sds(model, theta, lev) for lev in (1, 2)}
    tiny = np.sqrt(np.finfo(float).eps)
    # the value each variance row carries: its estimate, or a fixed covariate's EPC
    carried = {lev: dict(info[lev][1]) for lev in (1, 2)}
    for i, r in enumerate(cand.itertuples(index=False)):
        if r.op == "~~" and r.lhs == r.rhs and r.exo:
            value = abs(epc[i])
            carried[int(r.level)][r.lhs] = value if value >= tiny else np.nan
    out = np.full(len(cand), np.nan)
    for i, r in enumerate(cand.itertuples(index=False)):
        sd = info[int(r.level)][0]
        rv = carried[int(r.level)]
        value = epc[i]
        if r.op == "=~":
            out[i] = value * sd[r.lhs] / sd[r.rhs]
        elif r.op == "~":
            out[i] = value * sd[r.rhs] / sd[r.lhs]
        elif r.op == "~1":
            out[i] = value / sd[r.lhs]
        elif r.lhs == r.rhs:
            size = abs(value) if r.exo else abs(rv[r.lhs])
            out[i] = np.sign(value) * size / sd[r.lhs] ** 2 if size >= tiny else 0.0
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[i] = value / np.sqrt(abs(rv[r.lhs]) * abs(rv[r.rhs]))
    return out


# --------------------------------------------------------------------------- the tests

def modindices(fit, sort: bool = False, minimum_value: float = 0.0,
               information: str = "expected") -> pd.DataFrame:
    """lavaan's ``modindices(fit)`` for a two-level fit: one row per testable candidate
    (module docstring) with columns lhs, op, rhs, level, mi, epc, sepc_all.
    ``sort``: by decreasing mi; ``minimum_value``: only rows with mi above it;
    ``information``: "expected" (lavaan's default) or "observed"."""
    if information not in INFORMATION_TYPES:
        raise ValueError(f"modindices(information={information!r}): information must be "
                         f"one of {', '.join(repr(t) for t in INFORMATION_TYPES)}")
    cand = candidates(fit.partable)
    columns = ["lhs", "op", "rhs", "level", "mi", "epc", "sepc_all"]
    if cand.empty:
        return pd.DataFrame(columns=columns)
    problem, theta = extended_problem(fit, cand)
    npar = int(fit.npar)
    _, gradient = problem.loglik_and_gradient(theta, guard=False)
    if gradient is None:
        raise ValueError("modindices(): the log-likelihood is not defined at the estimates")
    extra = np.arange(npar, theta.size)
    if information == "expected":
        full = expected_information(problem.model, theta, fit.data)
        i11 = np.diag(full)[extra]
        i12 = full[np.ix_(extra, np.arange(npar))]
        i22 = full[:npar, :npar]
    else:
        cols = _observed_columns(problem, theta, extra)
        i11 = cols[extra, np.arange(extra.size)]
        i12 = cols[:npar].T
        i22 = np.asarray(fit.information(), dtype=float)
    try:
        solved = np.linalg.solve(i22, i12.T)
    except np.linalg.LinAlgError:
        solved = np.linalg.pinv(i22, hermitian=True) @ i12.T
    v = i11 - np.einsum("ij,ji->i", i12, solved)
    g = gradient[extra]
    testable = v / float(fit.nclusters) >= np.finfo(float).eps ** (1.0 / 3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.where(testable, g * g / v, np.nan)
        epc = np.where(testable, g / v, np.nan)
    out = cand[["lhs", "op", "rhs", "level"]].copy()
    out["mi"] = mi
    out["epc"] = epc
    out["sepc_all"] = _standardize(fit, cand, epc)
    out = out[testable].reset_index(drop=True)
    if sort:
        out = out.sort_values("mi", ascending=False, kind="stable").reset_index(drop=True)
    if minimum_value > 0.0:
        out = out[out["mi"] > minimum_value].reset_index(drop=True)
    return out[columns]
