"""Checks before fitting: what lavaan refuses or warns about, and a little more.

Each finding is an error (:class:`mlmiss.DataError`, :class:`mlmiss.ModelError`) when
no fit could mean anything, else a warning (:class:`mlmiss.DataWarning`) that names the
variable, cluster or model line. The likelihood itself accepts all of these (it is
used on one cluster, or on singletons, in tests); only fitting a model needs them.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..data.frame import cluster_range
from ..errors import DataError, DataWarning, ModelError, ModelWarning
from ..model.partable import table_rows

#: values that often stand for "missing" in exported files
MISSING_CODES = (-9999.0, -999.0, -99.0, -9.0, 99.0, 999.0, 9999.0)
#: above this a variance makes the optimizer's numbers lose meaning (lavaan warns too)
LARGE_VARIANCE = 1e6


def _show(names, most: int = 5) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def check_model(partable) -> None:
    """Fixed variances must not be negative."""
    table = partable.table
    for row in table_rows(table):
        if row.op == "~~" and row.lhs == row.rhs and row.free == 0 and row.value < 0:
            raise ModelError(
                f"{partable.where(row)}: the variance of {row.lhs} (level {row.level}) is fixed "
                f"at {row.value:g}; a variance cannot be negative")


def check_cluster_count(n_clusters: int, some_id, cluster: str) -> None:
    """A two-level model needs two clusters at least (checked on the data frame too,
    before its between-only columns are read per cluster)."""
    if n_clusters < 2:
        raise DataError(f"the data have a single cluster ({cluster} = {some_id!r}); a "
                        "two-level model needs several")


def check_data(data, covariates=None, both=None) -> None:
    """Errors for data no two-level model can be fitted to; warnings for the suspicious.
    ``covariates``: the model's level-1 exogenous covariates (lavaan warns when one does
    not vary within some clusters); ``both``: the level-1 variables the model also uses
    at level 2 (warned when they have no between part)."""
    check_cluster_count(data.n_clusters, data.cluster_ids[0], data.cluster_name)
    if np.all(data.cluster_sizes <= 1):
        raise DataError("every cluster contains only one observation: the within and between "
                        "parts cannot be told apart; is the cluster column right "
                        f"({data.cluster_name!r})?")
    _check_variances(data)
    if covariates:
        _check_covariates_vary_within(data, covariates)
    if both:
        _check_between_parts(data, both)
    if data.n_dropped_rows:
        warnings.warn(
            f"{data.n_dropped_rows} row(s) have every level-1 value missing and were dropped "
            f"(as lavaan does; their clusters keep their level-2 values): rows "
            f"{_show(data.dropped_rows)}", DataWarning, stacklevel=4)
    _check_codes(data)


def _columns(data):
    """(name, values) of every observed variable: level-1 rows, then one per cluster."""
    return ([(name, data.y[:, k]) for k, name in enumerate(data.y_names)]
            + [(name, data.z[:, k]) for k, name in enumerate(data.z_names)])


def _check_variances(data) -> None:
    large = []
    for name, values in _columns(data):
        seen = values[~np.isnan(values)]
        if seen.size and np.ptp(seen) == 0.0:
            raise DataError(f"variable {name!r} has no variance: every observed value is "
                            f"{seen[0]:g}")
        if seen.size > 1 and np.var(seen) > LARGE_VARIANCE:
            large.append(f"{name} ({np.var(seen):.3g})")
    # a level-1 variable constant within every cluster has no within part
    for k, name in enumerate(data.y_names):
        lo, hi, several = _spread_within(data, k)
        if several.any() and np.all(hi[several] == lo[several]):
            raise DataError(f"variable {name!r} does not vary within any cluster: it has no "
                            "within (level-1) part; model it as a between-only variable")
    if large:
        warnings.warn(f"variances above {LARGE_VARIANCE:g}: {_show(large)}; the optimizer works "
                      "on internally rescaled parameters and reports on the original scale, "
                      "but rescaled variables (e.g. divided by a power of 10) give estimates "
                      "that are easier to read", DataWarning, stacklevel=5)


def _check_between_parts(data, both) -> None:
    """A level-1 variable with the same mean in every cluster (centred on its cluster
    means) has no between part, yet the model gives it one."""
    flat = []
    for k, name in enumerate(data.y_names):
        if name not in set(both):
            continue
        values = data.y[:, k]
        ok = ~np.isnan(values)
        sums = np.bincount(data.row_cluster[ok], values[ok], minlength=data.n_clusters)
        counts = np.bincount(data.row_cluster[ok], minlength=data.n_clusters)
        means = sums[counts > 0] / counts[counts > 0]
        spread = np.sqrt(np.var(values[ok])) if ok.sum() > 1 else 0.0
        if means.size > 1 and np.ptp(means) <= 1e-10 * max(spread, 1e-300):
            flat.append(name)
    if flat:
        warnings.warn(f"{_show(flat)} have the same mean in every cluster (centred on the "
                      "cluster means?): no between part, yet the model uses them at level 2, "
                      "where their between variance will end at zero (a boundary solution); "
                      "model them at level 1 only, or use the uncentred variables",
                      DataWarning, stacklevel=4)


def _spread_within(data, k):
    """Per cluster: smallest and largest observed value of level-1 variable k, and
    whether the cluster has two or more observed values of it."""
    values = data.y[:, k]
    ok = ~np.isnan(values)
    lo, hi = cluster_range(values, data.row_cluster, data.n_clusters)
    return lo, hi, np.bincount(data.row_cluster[ok], minlength=data.n_clusters) >= 2


def _check_covariates_vary_within(data, covariates) -> None:
    for name in covariates:
        if name not in data.y_names:
            continue
        lo, hi, several = _spread_within(data, data.y_names.index(name))
        flat = np.flatnonzero(several & (hi == lo))
        if flat.size:
            warnings.warn(f"level-1 covariate {name!r} has no variance within cluster(s) "
                          f"{_show(data.cluster_ids[flat])} (as lavaan warns)", DataWarning,
                          stacklevel=5)


def _check_codes(data) -> None:
    """A code such as -999 that recurs in a column far outside its other values."""
    hits = {}
    for name, values in _columns(data):
        seen = values[~np.isnan(values)]
        for code in MISSING_CODES:
            at = seen == code
            n = int(at.sum())
            if n < 2:
                continue
            rest = seen[~at]
            if rest.size < 2:
                continue
            centre, spread = np.median(rest), np.std(rest)
            if abs(code - centre) > 5.0 * spread:
                hits.setdefault(code, []).append(f"{name} ({n} times)")
    for code, where in hits.items():
        warnings.warn(f"the value {code:g} recurs far outside the other values of "
                      f"{_show(where)}: is it a missing-value code? Set it to NaN "
                      f"(pandas.read_csv(..., na_values=[{code:g}]))", DataWarning,
                      stacklevel=5)


def admissible_start(problem, theta0, user_start: bool) -> np.ndarray:
    """theta0 if the log-likelihood is finite there, else start values repaired as lavaan
    does (its "simple" start), with a warning that says which; an error if none work.

    ``user_start``: theta0 was given to sem() (then it is only checked)."""
    if np.isfinite(problem.loglik(theta0)):
        return theta0
    partable = problem.partable
    if user_start:
        raise ModelError("the start values given to sem() are not admissible: the implied "
                         "within, between or cluster covariance matrix is not positive definite")
    written = [row for row in table_rows(partable.table)
               if row.free > 0 and np.isfinite(row.value)]
    theta = problem.start(user=False)
    if written and np.isfinite(problem.loglik(theta)):
        where = _show(f"{r.lhs} {r.op} {r.rhs} (level {r.level}, {partable.where(r)})"
                      for r in written)
        warnings.warn(f"the start() values of {where} give a covariance matrix that is not "
                      "positive definite; the default start values are used instead",
                      ModelWarning, stacklevel=3)
        return theta
    raise ModelError("the default start values are not admissible (the implied covariance "
                     "matrix is not positive definite); give start values with start()")
