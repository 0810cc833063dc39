"""Compile (and cache on disk) every Numba kernel ahead of use.

The kernels compile on first use, once per machine (the result is cached); the first
fit of a process compiles those of a fit in two processes when the cache is cold
(:mod:`mlmiss.estimation.compile`). ``python -m mlmiss.warmup`` pays the whole cost up
front, on tiny data sets whose arrays have the same types as real ones: the kernels of
a fit in two processes, then the likelihood and its gradient, the cluster
log-likelihoods of robust inference, and a two-level factor model fitted by the default
optimizer and by EM (EM's kernels).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from .data import Moments, TwoLevelData
from .estimation.compile import compile_kernels
from .fitting import sem
from .likelihood import cluster_logliks, loglik, loglik_and_gradient

_MODEL = """
level: 1
  fw =~ y1 + y2 + y3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w
"""


def _small_data(seed: int = 1) -> pd.DataFrame:
    """30 clusters of 4 rows from a one-factor model at both levels, a few values
    missing at each level."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 4)
    w = rng.normal(size=30)
    fb = 0.5 * w + rng.normal(size=30)
    y = (fb[g, None] + rng.normal(size=(120, 1))) + rng.normal(size=(120, 3))
    df = pd.DataFrame({"g": g, "y1": y[:, 0], "y2": y[:, 1], "y3": y[:, 2], "w": w[g]})
    df.loc[[3, 17, 40, 77], "y2"] = np.nan
    df.loc[df["g"] == 5, "w"] = np.nan
    return df


def warmup(verbose: bool = False) -> float:
    """Run every kernel once on tiny examples; returns seconds. The kernels of a fit
    compile in two processes first (:func:`mlmiss.estimation.compile.compile_kernels`)."""
    start = time.perf_counter()
    compile_kernels()
    df = pd.DataFrame({"g": [1, 1, 2, 2, 3], "y1": [0.1, np.nan, 0.3, 0.2, 0.5],
                       "y2": [1.0, 0.4, np.nan, 0.1, 0.2], "w": [1.0, 1.0, 2.0, 2.0, np.nan]})
    data = TwoLevelData.from_frame(df, "g", y=["y1", "y2"], z=["w"])
    moments = Moments([0.0, 0.0], [1.0], np.eye(2), [[0.5, 0.1], [0.1, 0.0]], [[1.0]],
                      [[0.1], [0.0]])
    loglik(data, moments)
    loglik_and_gradient(data, moments)
    cluster_logliks(data, moments)   # robust (MLR) inference's cluster scores
    small = _small_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for optimizer in ("auto", "em"):
            sem(_MODEL, small, cluster="g", optimizer=optimizer, verbose=False, max_seconds=60)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"mlmiss kernels ready ({seconds:.1f} s)")
    return seconds


if __name__ == "__main__":
    warmup(verbose=True)
