"""``monte_carlo()``: many data sets drawn from a population, each fitted with an
analysis model; the estimates tabulated and summarized as Mplus's MONTECARLO does.

Replication r (1..R) of the design at position d (0-based) of ``designs`` draws its data
from ``numpy.random.SeedSequence([seed, d, r])``, on the worker that fits it: the
results depend on the seed only, not on the workers, the chunking or the order in which
replications finish. A failed replication (an exception, no convergence) is recorded
in its rows and never stops the study.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import SimulationError
from ..progress import progress_bar
from . import execute, store as stores
from .replicate import RESULT_COLUMNS, StudySpec
from .summary import summarize
from .truth import analysis_rows, true_values as match_true_values

#: seconds between two writes of the store while a study runs
SAVE_INTERVAL = 5.0


@dataclass
class MonteCarlo:
    """The result of :func:`monte_carlo`.

    ``results``: one row per design, replication and parameter (columns
    :data:`mlmiss.simulation.replicate.RESULT_COLUMNS`: design, replication, lhs, op,
    rhs, label, level, true, est, se, converged, iterations, logl, chisq, df, pvalue,
    chisq_scaled, pvalue_scaled, seconds, error, warnings); ``seed``: the study's seed
    (drawn when none was given); ``designs``: name -> overrides; ``replications``: R;
    ``n_run`` / ``n_stored``: replications run now / taken from the store;
    ``seconds``: the wall time of this call."""

    results: pd.DataFrame
    seed: int
    designs: dict
    replications: int
    n_run: int = 0
    n_stored: int = 0
    seconds: float = 0.0
    population: dict = field(default_factory=dict, repr=False)

    def summary(self, level: float = 0.95, alpha: float = 0.05,
                converged_only: bool = True) -> pd.DataFrame:
        """Per design and parameter: true, average, bias, rel_bias, sd, mean_se, se_sd,
        mse, coverage, sig, chisq_reject, mean_chisq, converged_rate, n_used,
        n_replications (:mod:`mlmiss.simulation.summary`)."""
        return summarize(self.results, level=level, alpha=alpha, converged_only=converged_only)

    def failures(self) -> pd.DataFrame:
        """One row per replication that failed or did not converge: design,
        replication, converged, error, warnings."""
        reps = self.results.drop_duplicates(["design", "replication"])
        bad = reps[~reps["converged"] | (reps["error"] != "")]
        columns = ["design", "replication", "converged", "error", "warnings"]
        return bad[columns].reset_index(drop=True)

    def plot(self, directory, level: float = 0.95) -> list:
        """PNG plots of bias, coverage and SE/SD by design in ``directory``
        (:func:`mlmiss.simulation.plots.plot_summary`; needs matplotlib)."""
        from .plots import plot_summary

        return plot_summary(self.summary(level=level), directory, level=level)

    def __repr__(self) -> str:
        reps = self.results.drop_duplicates(["design", "replication"])
        rate = float(reps["converged"].mean()) if len(reps) else math.nan
        return (f"<mlmiss MonteCarlo: {len(self.designs)} design(s) x {self.replications} "
                f"replications, {rate:.1%} converged, seed {self.seed}; {self.n_run} run now, "
                f"{self.n_stored} from the store>")


def monte_carlo(model: str, generate, replications: int, designs: dict | None = None,
                fit_options: dict | None = None, seed: int | None = None,
                workers: int | None = None, client=None, store=None, progress=None,
                true_values: dict | None = None, chunk_size: int | None = None) -> MonteCarlo:
    """Run a Monte Carlo study.

    Parameters
    ----------
    model : the analysis model (lavaan syntax; labels, constraints, ``:=`` allowed).
    generate : how each data set is drawn: a dict of :func:`mlmiss.simulate` keyword
        arguments (``model`` is the population syntax, the analysis model when left out;
        ``params``, ``n_clusters``, ``cluster_sizes``, ``missing``, ``fixed_x``), or a
        callable ``(rng, design) -> DataFrame`` (``design``: the design's overrides and
        its ``"name"``; the cluster column must be "cluster" or ``fit_options["cluster"]``).
    replications : R, the replications per design.
    designs : name -> dict of overrides of ``generate`` (e.g.
        ``{"D1": {"n_clusters": 60, "cluster_sizes": [4, 6, 8]}}``); None: one design,
        "default".
    fit_options : keyword arguments of :func:`mlmiss.sem` (e.g. ``{"fixed_x": False}``);
        ``verbose`` is False unless given.
    seed : a non-negative int; None draws one (``result.seed``), or takes the store's.
    workers : local worker processes; None: ``os.cpu_count()``; 1: in this process.
    client : a ``dask.distributed.Client``: the replications run on its cluster instead.
    store : a Parquet file keeping the finished replications: a rerun with the same
        store (and seed and settings) skips them and returns all of them.
    progress : a progress bar of the replications done: None when stderr is a
        terminal, True, False.
    true_values : true values by label or (lhs, op, rhs, level), over those found from
        the population (needed with a callable ``generate``).
    chunk_size : replications per task (default: about four tasks per worker, at most 10).

    Returns
    -------
    :class:`MonteCarlo`: ``.results`` (tidy, one row per design x replication x
    parameter), ``.summary()``, ``.failures()``, ``.plot(directory)``.
    """
    began = time.perf_counter()
    replications = _positive_int(replications, "replications")
    designs = _designs(designs)
    fit_options = dict(fit_options or {})
    fit_options.setdefault("verbose", False)
    cluster = fit_options.pop("cluster", "cluster")
    if not (callable(generate) or isinstance(generate, dict)):
        raise SimulationError("generate must be a dict of simulate() arguments or a callable "
                              f"(rng, design) -> DataFrame, got {type(generate).__name__}")
    rows = analysis_rows(model, fit_options)   # a syntax error stops here, not R times
    if isinstance(generate, dict):
        populations = _check_generate(model, generate, designs, cluster)
    else:
        populations = {name: None for name in designs}
    truth = {name: match_true_values(rows, populations[name], true_values) for name in designs}

    stored, study = (None, {}) if store is None else stores.load(store)
    if seed is None:
        seed = study.get("seed", np.random.SeedSequence().entropy)
    seed = _seed(seed)
    spec = StudySpec(model, generate, tuple(designs.items()), fit_options, seed, cluster, rows)
    fingerprints = {name: _fingerprint(spec, i) for i, name in enumerate(designs)}
    if stored is not None:
        stores.check_compatible(store, study, seed, fingerprints)
    metadata = {"seed": seed, "designs": {**study.get("designs", {}), **fingerprints}}

    done = _finished(stored, designs, replications)
    todo = {i: [r for r in range(1, replications + 1) if (name, r) not in done]
            for i, name in enumerate(designs)}
    todo = {i: reps for i, reps in todo.items() if reps}
    n_todo = sum(len(reps) for reps in todo.values())
    if workers is None:
        workers = os.cpu_count() or 1
    workers = _positive_int(workers, "workers")
    n_workers = execute.dask_workers(client) if client is not None else workers
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    tasks = execute.chunks(todo, n_workers, chunk_size)

    new_frames, keep = [], []   # keep: the frames that go to the store
    bar = progress_bar("Monte Carlo", verbose=progress, total=n_todo)
    last_save = [time.monotonic()]

    def on_done(frame, reps, finished):
        name = frame["design"].iloc[0]
        frame["true"] = _match_truth(frame, rows, truth[name])
        new_frames.append(frame)
        if finished:
            keep.append(frame)
        bar.update(len(reps))
        if store is not None and time.monotonic() - last_save[0] > SAVE_INTERVAL:
            stores.save(store, _combine(stored, keep), metadata)
            last_save[0] = time.monotonic()

    try:
        execute.run(spec, tasks, workers, client, on_done)
    finally:
        bar.close()
        if store is not None and (keep or stored is None):
            stores.save(store, _combine(stored, keep), metadata)
    results = _ordered(_combine(stored, new_frames), designs, replications)
    return MonteCarlo(results, seed, designs, replications, n_run=n_todo,
                      n_stored=len(done), seconds=time.perf_counter() - began,
                      population=populations)


# ----------------------------------------------------------------------------- checks

def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SimulationError(f"{what}={value!r} must be a positive integer")
    return int(value)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SimulationError(f"seed={seed!r} must be a non-negative integer (or None)")
    return int(seed)


def _designs(designs) -> dict:
    if designs is None:
        return {"default": {}}
    if not isinstance(designs, dict) or not designs:
        raise SimulationError("designs must be a non-empty dict: name -> dict of overrides")
    out = {}
    for name, overrides in designs.items():
        if not isinstance(overrides, dict):
            raise SimulationError(f"design {name!r}: its overrides must be a dict, got "
                                  f"{type(overrides).__name__}")
        out[str(name)] = dict(overrides)
    return out


def _check_generate(model, generate, designs, cluster) -> dict:
    """Each design's population, after one trial draw of its data: a mistake in the
    settings is an error now, not R failed replications."""
    from .generate import simulate
    from .population import population

    allowed = set(inspect.signature(simulate).parameters) - {"seed"}
    populations = {}
    for name, overrides in designs.items():
        settings = {"model": model, "cluster": cluster, **generate, **overrides}
        if settings["cluster"] != cluster:
            raise SimulationError(f"design {name!r}: the data's cluster column "
                                  f"{settings['cluster']!r} is not the one the fits use "
                                  f"({cluster!r}, fit_options['cluster'])")
        unknown = sorted(set(settings) - allowed)
        if unknown:
            where = "generate" if set(unknown) & set(generate) else f"design {name!r}"
            raise SimulationError(f"{where}: {', '.join(map(repr, unknown))} is not an argument "
                                  f"of simulate() ({', '.join(sorted(allowed))}; the seed "
                                  "comes from the study)")
        try:
            simulate(**settings, seed=0)
            populations[name] = population(settings["model"], settings.get("params"),
                                           settings.get("fixed_x", False))
        except SimulationError as exc:
            raise SimulationError(f"design {name!r}: {exc}") from None
    return populations


def _fingerprint(spec: StudySpec, design_index: int) -> str:
    """A digest of what decides a design's numbers (the seed aside)."""
    name, overrides = spec.designs[design_index]
    if callable(spec.generate):
        generate, settings = _canonical(spec.generate), {"name": name, **overrides}
    else:
        generate, settings = "simulate", spec.settings(design_index)
    text = "\n".join([spec.model, generate, _canonical(settings), _canonical(spec.fit_options),
                      spec.cluster])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(value) -> str:
    """A text for settings that is the same in every run (no memory addresses)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_canonical(k)}: {_canonical(v)}"
                               for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist())
    if hasattr(value, "dist") and hasattr(value, "args"):   # a frozen scipy distribution
        return f"{value.dist.name}{_canonical(list(value.args))}{_canonical(dict(value.kwds))}"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


# ----------------------------------------------------------------------------- results

def _finished(stored, designs, replications) -> set:
    if stored is None or stored.empty:
        return set()
    pairs = stored[["design", "replication"]].drop_duplicates()
    return {(d, int(r)) for d, r in pairs.itertuples(index=False)
            if d in designs and 1 <= r <= replications}


def _combine(stored, frames) -> pd.DataFrame:
    parts = ([stored] if stored is not None and len(stored) else []) + list(frames)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    return pd.concat(parts, ignore_index=True)[RESULT_COLUMNS]


def _ordered(results, designs, replications) -> pd.DataFrame:
    """The current designs' replications 1..R, by design order then replication, each
    replication's rows in parameter order."""
    order = {name: i for i, name in enumerate(designs)}
    keep = results["design"].isin(order) & results["replication"].between(1, replications)
    out = results[keep.to_numpy()]
    position = out["design"].map(order).to_numpy()
    index = np.lexsort((np.arange(len(out)), out["replication"].to_numpy(), position))
    return out.iloc[index].reset_index(drop=True)


def _match_truth(frame, rows, truth) -> np.ndarray:
    """The true value of each row of a task's frame, matched to the analysis rows by
    (lhs, op, rhs, level)."""
    lookup = {(r.lhs, r.op, r.rhs, int(r.level)): t
              for r, t in zip(rows.itertuples(index=False), truth)}
    return np.array([lookup.get((r.lhs, r.op, r.rhs, int(r.level)), np.nan)
                     for r in frame.itertuples(index=False)])
