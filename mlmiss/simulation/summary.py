"""The summary of a Monte Carlo study, per design and parameter, as Mplus's MONTECARLO
output reports it.

Columns (Mplus's names in brackets):

* ``true`` [Population]; ``average`` [ESTIMATES Average], the mean estimate;
  ``bias`` = average - true; ``rel_bias`` = bias / true (NaN when true is 0);
* ``sd`` [Std. Dev.], the empirical standard deviation of the estimates;
  ``mean_se`` [S.E. Average]; ``se_sd`` = mean_se / sd; ``mse`` [M.S.E.], the mean of
  (estimate - true)^2;
* ``coverage`` [95% Cover]: the share of replications whose interval
  estimate +- z se (z the normal quantile of ``level``) holds the true value;
  ``sig`` [% Sig Coeff]: the share with |estimate / se| > z (the power, or the type-I
  error rate where the true value is 0);
* ``chisq_reject``: the share of replications whose chi-square test (the scaled one
  when the fits have it, estimator="MLR") rejects at ``alpha``, per design;
  ``mean_chisq``: its average;
* ``converged_rate``: converged replications / replications run, per design;
  ``n_used``: the replications each row is computed from (converged ones with an
  estimate, unless ``converged_only=False``: every one with an estimate);
  ``n_replications``: the replications run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["design", "lhs", "op", "rhs", "level", "label"]
COLUMNS = KEYS + ["true", "average", "bias", "rel_bias", "sd", "mean_se", "se_sd", "mse",
                  "coverage", "sig", "chisq_reject", "mean_chisq", "converged_rate", "n_used",
                  "n_replications"]


def summarize(results: pd.DataFrame, level: float = 0.95, alpha: float = 0.05,
              converged_only: bool = True) -> pd.DataFrame:
    """One row per design and parameter of a Monte Carlo ``results`` table (module
    doc), designs and parameters in the order they first appear."""
    from scipy.stats import norm   # imported here: scipy.stats is slow to import

    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must lie in (0, 1)")
    z = float(norm.ppf(0.5 + level / 2.0))
    if results.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok = results["converged"] if converged_only else results["error"] == ""
    used = results[ok.to_numpy() & results["est"].notna().to_numpy()].copy()
    error = used["est"] - used["true"]
    with np.errstate(invalid="ignore", divide="ignore"):
        has_se = (used["se"] > 0) & used["se"].notna()
        used["covered"] = np.where(has_se & used["true"].notna(),
                                   (error.abs() <= z * used["se"]).astype(float), np.nan)
        used["significant"] = np.where(has_se, (used["est"].abs() > z * used["se"]).astype(float),
                                       np.nan)
    used["squared_error"] = error ** 2
    stats = used.groupby(KEYS, sort=False, dropna=False).agg(
        average=("est", "mean"), sd=("est", "std"), mean_se=("se", "mean"),
        mse=("squared_error", "mean"), coverage=("covered", "mean"),
        sig=("significant", "mean"), n_used=("est", "size")).reset_index()
    params = results.drop_duplicates(KEYS)[KEYS + ["true"]]
    out = params.merge(stats, on=KEYS, how="left", sort=False)
    out["n_used"] = out["n_used"].fillna(0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bias"] = out["average"] - out["true"]
        out["rel_bias"] = np.where(out["true"] != 0, out["bias"] / out["true"].abs(), np.nan)
        out["se_sd"] = out["mean_se"] / out["sd"]
    out = out.merge(_per_design(results, ok, alpha), on="design", how="left", sort=False)
    return out[COLUMNS].reset_index(drop=True)


def _per_design(results: pd.DataFrame, ok: pd.Series, alpha: float) -> pd.DataFrame:
    """converged_rate, chisq_reject, mean_chisq, n_replications per design."""
    first = ~results.duplicated(["design", "replication"])
    reps = results[first.to_numpy()].assign(ok=ok[first].to_numpy())
    scaled = reps["pvalue_scaled"].notna()
    reps = reps.assign(p=reps["pvalue_scaled"].where(scaled, reps["pvalue"]),
                       x2=reps["chisq_scaled"].where(scaled, reps["chisq"]))
    tested = reps[reps["ok"] & reps["p"].notna()]
    reject = (tested["p"] < alpha).groupby(tested["design"], sort=False).mean()
    mean_chisq = tested.groupby("design", sort=False)["x2"].mean()
    counts = reps.groupby("design", sort=False).agg(
        converged_rate=("converged", "mean"), n_replications=("replication", "size"))
    counts["chisq_reject"] = reject
    counts["mean_chisq"] = mean_chisq
    return counts.reset_index()
