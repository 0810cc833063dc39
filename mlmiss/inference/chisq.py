"""The chi-square p-value every test of the package reports."""

from __future__ import annotations

import numpy as np


def chi2_pvalue(x2, df):
    """P(chi-square with ``df`` degrees of freedom > ``x2``), elementwise; NaN where
    ``x2`` is not finite or ``df`` is not positive (no test). A float for scalar
    arguments."""
    from scipy.stats import chi2  # imported here: scipy.stats is slow to import

    x2 = np.asarray(x2, dtype=float)
    df = np.asarray(df, dtype=float)
    x2, df = np.broadcast_arrays(x2, df)
    out = np.full(x2.shape, np.nan)
    ok = np.isfinite(x2) & (df > 0)
    out[ok] = chi2.sf(x2[ok], df[ok])
    return float(out) if out.ndim == 0 else out
