"""Wald columns of an estimates table: se, z, pvalue and the normal-theory interval."""

from __future__ import annotations

import numpy as np


def add_wald_columns(out, est, se, ci_level: float, testable=None) -> None:
    """Add ``se``, ``z``, ``pvalue``, ``ci_lower``, ``ci_upper`` to the DataFrame ``out``.
    z (and its two-sided p-value) only where ``testable`` (default: everywhere) and the
    standard error is positive: a fixed parameter, or one pinned at a boundary, has none."""
    from scipy.special import ndtr, ndtri  # scipy.stats' norm calls these; it is slow to import

    est = np.asarray(est, dtype=float)
    se = np.asarray(se, dtype=float)
    ok = se > 0 if testable is None else np.asarray(testable, bool) & (se > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(ok, est / se, np.nan)
    q = ndtri(0.5 + ci_level / 2.0)
    out["se"] = se
    out["z"] = z
    out["pvalue"] = 2.0 * ndtr(-np.abs(z))
    out["ci_lower"] = est - q * se
    out["ci_upper"] = est + q * se
