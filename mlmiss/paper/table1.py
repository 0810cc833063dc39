"""Timing of the log-likelihood methods beside Table 1 of Rosseel (2021).

Table 1 of the paper reports the mean time (over 100 replications, R's
``microbenchmark``) of the five R objective functions on the paper's example
data, and each time as a percentage of ``objective2``.  :func:`table1` times
log-likelihood functions the same way and returns a table with the paper's numbers
alongside; the caller passes the functions by name (the command ``mlmiss table1``
adds a row for the production engine, so a reader sees what the paper's last step
gives and what goes beyond it).  It is used by ``mlmiss table1``
(``paper_scripts/main.py``) and ``bench/table1_figure.py``.

Timing protocol: every method is called once first (that call is timed
separately as ``first_ms``: for numba-compiled methods it includes compilation)
and then repeatedly with :func:`time.perf_counter`; ``ms`` is the mean of the
repeated calls, with numpy's BLAS on one thread (:mod:`mlmiss.threads`).  Slow
methods (:data:`SLOW_METHODS`) get a fixed, small number of repetitions; the others are repeated until about ``budget_seconds`` have
been spent (at least ``min_repeats``, at most ``max_repeats`` calls).  All
counts and the budget are multiplied by ``repeat_scale``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from ..threads import one_blas_thread

__all__ = [
    "PAPER_TABLE1_MS",
    "PAPER_TABLE1_PCT",
    "PAPER_METHODS",
    "SLOW_METHODS",
    "time_method",
    "table1",
    "format_table1",
]

#: Table 1 of Rosseel (2021): mean time in milliseconds of the R scripts.
PAPER_TABLE1_MS = {
    "objective1": 3875.33,
    "objective2": 390.30,
    "objective3": 85.89,
    "objective4": 82.52,
    "objective5": 20.18,
}

#: Table 1 of Rosseel (2021): time as a percentage of objective2, as printed.
PAPER_TABLE1_PCT = {
    "objective1": 992.90,
    "objective2": 100.00,
    "objective3": 22.01,
    "objective4": 21.14,
    "objective5": 5.17,
}

#: The methods that appear in the paper's Table 1, in its order.
PAPER_METHODS = tuple(PAPER_TABLE1_MS)

#: Methods timed with a fixed, small number of repetitions.
SLOW_METHODS = ("dense", "objective1")

_BASELINE = "objective2"


def time_method(function, data, moments, *, slow=False, repeat_scale=1.0, budget_seconds=1.0,
                min_repeats=3, max_repeats=10000, slow_repeats=3):
    """Time ``function(data, moments)`` (``slow``: a fixed, small number of repeats).

    Returns a dict with ``value`` (the log-likelihood), ``first_ms`` (the first,
    warm-up call), ``ms`` (mean of the repeated calls), ``sd_ms``, ``min_ms`` and
    ``repeats``.
    """
    scale = float(repeat_scale)
    if not scale > 0:
        raise ValueError(f"repeat_scale must be positive, got {repeat_scale!r}")

    with one_blas_thread():
        t0 = time.perf_counter()
        value = function(data, moments)
        first = time.perf_counter() - t0

        times = []
        if slow:
            n = max(1, int(round(slow_repeats * scale)))
            for _ in range(n):
                t0 = time.perf_counter()
                function(data, moments)
                times.append(time.perf_counter() - t0)
        else:
            budget = budget_seconds * scale
            lo = max(1, int(round(min_repeats * scale)))
            hi = max(lo, int(round(max_repeats * scale)))
            spent = 0.0
            while len(times) < hi and (len(times) < lo or spent < budget):
                t0 = time.perf_counter()
                function(data, moments)
                dt = time.perf_counter() - t0
                times.append(dt)
                spent += dt

    arr = np.asarray(times) * 1e3
    return {
        "value": float(value),
        "first_ms": first * 1e3,
        "ms": float(arr.mean()),
        "sd_ms": float(arr.std(ddof=1)) if arr.size > 1 else math.nan,
        "min_ms": float(arr.min()),
        "repeats": int(arr.size),
    }


def table1(data, moments, functions, *, repeat_scale=1.0, budget_seconds=1.0,
           min_repeats=3, max_repeats=10000, slow_repeats=3, progress=None) -> pd.DataFrame:
    """Time each function and return Table 1 with the paper's numbers beside ours.

    Parameters
    ----------
    data : :class:`mlmiss.TwoLevelData`
    moments : :class:`mlmiss.Moments`
    functions : {method name: ``(data, moments) -> float``}, in the table's order
        (e.g. the paper's five from :func:`mlmiss.methods.method_function`).
    repeat_scale : multiplies every repetition count and the time budget.
    budget_seconds, min_repeats, max_repeats : repetition rule for fast methods.
    slow_repeats : repetitions for :data:`SLOW_METHODS`.
    progress : optional callable ``progress(method, row_dict)`` called after
        each method is timed (e.g. to print as you go).

    Returns
    -------
    pandas.DataFrame, one row per method (in the order given), columns
    ``method``, ``value`` (log-likelihood), ``ms`` (mean time of the repeated
    calls), ``sd_ms``, ``min_ms``, ``repeats``, ``first_ms`` (first call,
    including any compilation), ``pct`` (``ms`` as % of objective2's, NaN if
    objective2 is not timed), ``paper_ms`` and ``paper_pct`` (NaN for methods
    not in the paper).
    """
    if not functions:
        raise ValueError("no methods to time")
    rows = []
    for method, function in functions.items():
        row = {"method": method}
        row.update(time_method(function, data, moments, slow=method in SLOW_METHODS,
                               repeat_scale=repeat_scale,
                               budget_seconds=budget_seconds, min_repeats=min_repeats,
                               max_repeats=max_repeats, slow_repeats=slow_repeats))
        if progress is not None:
            progress(method, row)
        rows.append(row)

    df = pd.DataFrame(rows)
    base = df.loc[df["method"] == _BASELINE, "ms"]
    df["pct"] = 100.0 * df["ms"] / float(base.iloc[0]) if len(base) else math.nan
    df["paper_ms"] = [PAPER_TABLE1_MS.get(m, math.nan) for m in df["method"]]
    df["paper_pct"] = [PAPER_TABLE1_PCT.get(m, math.nan) for m in df["method"]]
    return df[["method", "value", "ms", "sd_ms", "min_ms", "repeats", "first_ms", "pct",
               "paper_ms", "paper_pct"]]


def format_table1(table: pd.DataFrame) -> str:
    """Plain-text rendering of :func:`table1`'s result in the paper's layout."""
    lines = [f"{'Version':<12}{'Time (ms)':>12}{'Relative':>10}{'Paper R (ms)':>14}"
             f"{'Paper rel.':>12}{'Repeats':>9}"]
    def fmt(x, width, prec):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "-".rjust(width)
        return f"{x:{width}.{prec}f}"

    for r in table.itertuples(index=False):
        lines.append(f"{r.method:<12}{fmt(r.ms, 12, 3)}{fmt(r.pct, 10, 2)}"
                     f"{fmt(r.paper_ms, 14, 2)}{fmt(r.paper_pct, 12, 2)}{r.repeats:>9d}")
    return "\n".join(lines)
