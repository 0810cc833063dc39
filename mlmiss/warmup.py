"""Compile (and cache on disk) every Numba kernel ahead of use.

The kernels compile on first use, which takes tens of seconds once per machine (the
result is cached). ``python -m mlmiss.warmup`` pays that cost up front, on a tiny
data set whose arrays have the same types as real ones.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .data import Moments, TwoLevelData
from .likelihood import loglik, loglik_and_gradient


def warmup(verbose: bool = False) -> float:
    """Run the log-likelihood and its gradient once on a tiny example; returns seconds."""
    start = time.perf_counter()
    df = pd.DataFrame({"g": [1, 1, 2, 2, 3], "y1": [0.1, np.nan, 0.3, 0.2, 0.5],
                       "y2": [1.0, 0.4, np.nan, 0.1, 0.2], "w": [1.0, 1.0, 2.0, 2.0, np.nan]})
    data = TwoLevelData.from_frame(df, "g", y=["y1", "y2"], z=["w"])
    moments = Moments([0.0, 0.0], [1.0], np.eye(2), [[0.5, 0.1], [0.1, 0.0]], [[1.0]],
                      [[0.1], [0.0]])
    loglik(data, moments)
    loglik_and_gradient(data, moments)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"mlmiss kernels ready ({seconds:.1f} s)")
    return seconds


if __name__ == "__main__":
    warmup(verbose=True)
