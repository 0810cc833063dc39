"""The result of a fit: estimates, log-likelihood, convergence, implied moments."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(eq=False)
class Fit:
    """A fitted two-level model (returned by :func:`mlmiss.sem`).

    Attributes
    ----------
    partable : the model's parameter table (:class:`mlmiss.partable.ParTable`).
    model : the :class:`mlmiss.model.TwoLevelModel` (theta -> moments).
    data : the :class:`mlmiss.TwoLevelData` the model was fitted to.
    theta : the estimates of the free parameters.
    loglik : the log-likelihood at the estimates (lavaan's ``logl``).
    converged, iterations, message : what the optimizer reported.
    optimizer : its name.
    """

    partable: object
    model: object
    data: object
    theta: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    message: str
    optimizer: str = "trust-exact"
    seconds: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def npar(self) -> int:
        """Free parameters (equality-constrained ones counted once)."""
        return int(self.partable.npar)

    @property
    def nobs(self) -> int:
        return self.data.n_obs

    @property
    def nclusters(self) -> int:
        return self.data.n_clusters

    def parameter_estimates(self) -> pd.DataFrame:
        """One row per parameter-table entry: lhs, op, rhs, level, label, est."""
        table = self.partable.table
        est = table["value"].to_numpy(dtype=float).copy()
        free = table["free"].to_numpy()
        est[free > 0] = self.theta[free[free > 0] - 1]
        return pd.DataFrame({"lhs": table["lhs"], "op": table["op"], "rhs": table["rhs"],
                             "level": table["level"], "label": table["label"], "est": est})

    def implied(self) -> dict:
        """Model-implied moments: ``{"moments": Moments, "within": {...}, "between": {...}}``
        with per-level ``mean`` (Series) and ``cov`` (DataFrame). As in lavaan, the within
        means of "both" variables are 0 and live at the between level."""
        m = self.model.moments(self.theta)
        y, z = list(self.data.y_names), list(self.data.z_names)
        between = np.any(m.sigma_b != 0.0, axis=1)
        both = [name for name, b in zip(y, between) if b]
        idx = [i for i, b in enumerate(between) if b]
        within_mean = pd.Series(np.where(between, 0.0, m.mu_y), index=y)
        b_names = both + z
        b_cov = np.block([[m.sigma_b[np.ix_(idx, idx)], m.sigma_yz[idx, :]],
                          [m.sigma_yz[idx, :].T, m.sigma_zz]])
        b_mean = np.concatenate([m.mu_y[idx], m.mu_z])
        return {
            "moments": m,
            "within": {"mean": within_mean, "cov": pd.DataFrame(m.sigma_w, index=y, columns=y)},
            "between": {"mean": pd.Series(b_mean, index=b_names),
                        "cov": pd.DataFrame(b_cov, index=b_names, columns=b_names)},
        }

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        return (f"<mlmiss Fit: {status} after {self.iterations} iterations, logl = {self.loglik:.4f}, "
                f"npar = {self.npar}, nobs = {self.nobs}, nclusters = {self.nclusters}>")
