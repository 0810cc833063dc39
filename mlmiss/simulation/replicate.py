"""One Monte Carlo replication, and a chunk of them: what runs on a worker.

A worker gets a :class:`StudySpec` (small: syntax, settings, seed) and replication
numbers; it draws each data set itself from ``SeedSequence([seed, design, replication])``,
fits it, and returns the tidy rows. Nothing depends on which worker runs what, so local
processes, Dask and a loop in the calling process give the same table.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: the per-replication columns of the results, after the parameter columns
RESULT_COLUMNS = ["design", "replication", "lhs", "op", "rhs", "label", "level", "true",
                  "est", "se", "converged", "iterations", "logl", "chisq", "df", "pvalue",
                  "chisq_scaled", "pvalue_scaled", "seconds", "error", "warnings"]
#: environment of a worker process: every thread pool on one thread (:mod:`mlmiss.threads`)
THREAD_VARIABLES = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs for any replication of the study.

    ``generate``: simulate() keyword arguments (dict) or a callable
    ``(rng, design) -> DataFrame``; ``designs``: ((name, overrides), ...) in order;
    ``analysis_rows``: lhs, op, rhs, level, label of the parameters reported (free ones
    and ``:=``), for the rows of a replication that failed."""

    model: str
    generate: object
    designs: tuple
    fit_options: dict
    seed: int
    cluster: str = "cluster"
    analysis_rows: pd.DataFrame = field(default=None, compare=False)

    def settings(self, design_index: int) -> dict:
        """simulate()'s keyword arguments for a design (dict ``generate`` only)."""
        overrides = self.designs[design_index][1]
        settings = {"model": self.model, "cluster": self.cluster, **self.generate, **overrides}
        return settings

    def draw(self, rng: np.random.Generator, design_index: int) -> pd.DataFrame:
        """The data of one replication."""
        if callable(self.generate):
            name, overrides = self.designs[design_index]
            data = self.generate(rng, {"name": name, **overrides})
            if not isinstance(data, pd.DataFrame):
                raise TypeError(f"generate returned {type(data).__name__}, not a DataFrame")
            return data
        from .generate import simulate

        return simulate(**self.settings(design_index), seed=rng)


def replication_rng(seed: int, design_index: int, replication: int) -> np.random.Generator:
    """The generator of one replication: the same wherever it runs."""
    return np.random.default_rng(np.random.SeedSequence([seed, design_index, replication]))


def worker_setup() -> None:
    """Initializer of a local worker process: one thread for BLAS and OpenMP. The
    variables are also set in the environment the process starts with
    (:mod:`.execute`); here they are only filled in where missing, since Numba rereads
    them when it compiles and must not see them change."""
    for name, value in THREAD_VARIABLES.items():
        os.environ.setdefault(name, value)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)   # the whole process: it is ours


def run_chunk(spec: StudySpec, design_index: int, replications) -> pd.DataFrame:
    """The rows of some replications of one design, in order. Never raises for a
    replication: its failure is in its rows."""
    from threadpoolctl import threadpool_limits

    # as a context, so a Dask worker or the calling process gets its settings back
    with threadpool_limits(1):
        frames = [run_replication(spec, design_index, int(r)) for r in replications]
    return pd.concat(frames, ignore_index=True)


def run_replication(spec: StudySpec, design_index: int, replication: int) -> pd.DataFrame:
    """Draw, fit and tabulate one replication; warnings are recorded, not shown."""
    from ..fitting import sem

    began = time.perf_counter()
    rng = replication_rng(spec.seed, design_index, replication)
    outcome = {"converged": False, "error": ""}
    rows = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = spec.draw(rng, design_index)
        except Exception as exc:   # a replication's failure is data, not a crash
            outcome["error"] = f"generate: {_describe(exc)}"
        else:
            try:
                fit = sem(spec.model, data, cluster=spec.cluster, **spec.fit_options)
                rows = estimate_rows(fit)
                outcome.update(converged=bool(fit.converged), iterations=int(fit.iterations),
                               logl=float(fit.loglik))
                outcome.update(_test_statistics(fit))
            except Exception as exc:
                outcome["error"] = f"fit: {_describe(exc)}"
                rows = None
    messages = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    outcome["warnings"] = " | ".join(messages)
    outcome["seconds"] = time.perf_counter() - began
    return tabulate(spec, design_index, replication, rows, outcome)


def estimate_rows(fit) -> pd.DataFrame:
    """lhs, op, rhs, level, label, est, se of the free parameters (table order) and the
    defined ones (``:=``)."""
    estimates = fit.parameter_estimates()
    if "se" not in estimates.columns:   # se="none"
        estimates["se"] = np.nan
    n_table = len(fit.partable.table)
    free = np.zeros(len(estimates), dtype=bool)
    free[:n_table] = fit.partable.table["free"].to_numpy() > 0
    keep = free | (estimates["op"] == ":=").to_numpy()
    columns = ["lhs", "op", "rhs", "level", "label", "est", "se"]
    return estimates.loc[keep, columns].reset_index(drop=True)


def _test_statistics(fit) -> dict:
    """chisq, df, pvalue (and the scaled ones under MLR), NaN when the test cannot be
    had (test="none", a failed h1 fit: the reason goes to the warnings)."""
    if fit.test == "none":
        return {}
    try:
        measures = fit.fit_measures()
    except Exception as exc:
        warnings.warn(f"fit measures: {_describe(exc)}", RuntimeWarning, stacklevel=2)
        return {}
    out = {"chisq": measures["chisq"], "df": measures["df"], "pvalue": measures["pvalue"]}
    if "chisq_scaled" in measures:
        out.update(chisq_scaled=measures["chisq_scaled"], pvalue_scaled=measures["pvalue_scaled"])
    return out


def tabulate(spec: StudySpec, design_index: int, replication: int, rows, outcome: dict):
    """The tidy rows of one replication; ``rows`` None (a failure): the analysis
    model's parameters with no estimates."""
    if rows is None:
        rows = spec.analysis_rows.assign(est=np.nan, se=np.nan)
    n = len(rows)
    frame = pd.DataFrame({
        "design": [spec.designs[design_index][0]] * n,
        "replication": np.full(n, replication, dtype=np.int64),
        "lhs": rows["lhs"].to_numpy(), "op": rows["op"].to_numpy(),
        "rhs": rows["rhs"].to_numpy(), "label": rows["label"].to_numpy(),
        "level": rows["level"].to_numpy(dtype=np.int64),
        "true": np.nan,   # filled in by the caller, who knows the population
        "est": rows["est"].to_numpy(dtype=float), "se": rows["se"].to_numpy(dtype=float),
        "converged": np.full(n, outcome["converged"], dtype=bool),
        "iterations": pd.array([outcome.get("iterations")] * n, dtype="Int64"),
        "logl": np.full(n, outcome.get("logl", np.nan), dtype=float),
        "chisq": np.full(n, outcome.get("chisq", np.nan), dtype=float),
        "df": pd.array([outcome.get("df")] * n, dtype="Int64"),
        "pvalue": np.full(n, outcome.get("pvalue", np.nan), dtype=float),
        "chisq_scaled": np.full(n, outcome.get("chisq_scaled", np.nan), dtype=float),
        "pvalue_scaled": np.full(n, outcome.get("pvalue_scaled", np.nan), dtype=float),
        "seconds": np.full(n, outcome["seconds"], dtype=float),
        "error": [outcome["error"]] * n,
        "warnings": [outcome["warnings"]] * n,
    }, columns=RESULT_COLUMNS)
    return frame


def failed_chunk(spec: StudySpec, design_index: int, replications, message: str):
    """Rows for replications whose whole task failed (a worker that died)."""
    outcome = {"converged": False, "error": message, "warnings": "", "seconds": np.nan}
    return pd.concat([tabulate(spec, design_index, int(r), None, outcome)
                      for r in replications], ignore_index=True)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
