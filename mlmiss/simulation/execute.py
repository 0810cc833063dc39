"""Running the chunks of a Monte Carlo study: in the calling process, in local worker
processes, or on a Dask cluster. The same task function (:func:`.replicate.run_chunk`)
runs everywhere, so where it runs changes nothing in the results.

Local workers are started with the "spawn" method (no state inherited from the caller,
the same on every platform) and with every thread pool held to one thread
(:data:`.replicate.THREAD_VARIABLES`), set in their environment before they import
numpy and Numba: processes, not threads, share the cores.
"""

from __future__ import annotations

import contextlib
import os
import pickle

from ..errors import SimulationError
from .replicate import THREAD_VARIABLES, failed_chunk, run_chunk, worker_setup


def chunks(todo: dict, n_workers: int, chunk_size: int | None = None) -> list:
    """Tasks (design index, [replications]) for the replications ``todo`` (design index
    -> list); by default about four tasks per worker, at most 10 replications each,
    to spread the work evenly while amortizing each task's overhead."""
    total = sum(len(reps) for reps in todo.values())
    if chunk_size is None:
        chunk_size = max(1, min(10, -(-total // (4 * max(n_workers, 1)))))
    return [(design, reps[start:start + chunk_size])
            for design, reps in todo.items() for start in range(0, len(reps), chunk_size)]


def run(spec, tasks: list, workers: int, client, on_done) -> None:
    """Run every task; ``on_done(frame, replications, stored)`` gets each task's rows
    as it finishes (``stored`` False for rows of a task that crashed, so a resumed study
    tries those replications again)."""
    if client is not None:
        _run_dask(spec, tasks, client, on_done)
    elif workers <= 1 or len(tasks) <= 1:
        for design, reps in tasks:
            on_done(run_chunk(spec, design, reps), reps, True)
    else:
        _run_local(spec, tasks, min(workers, len(tasks)), on_done)


@contextlib.contextmanager
def _thread_environment():
    """The worker variables in os.environ while workers start (spawned processes take
    a copy of it), the caller's values back afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(THREAD_VARIABLES)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_local(spec, tasks, workers, on_done) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    try:
        pickle.dumps(spec)
    except Exception as exc:
        raise SimulationError(
            f"the study cannot be sent to worker processes ({type(exc).__name__}: {exc}); a "
            "generate function must be defined at module level (not a lambda or a nested "
            "function), or run with workers=1") from None
    context = multiprocessing.get_context("spawn")
    with _thread_environment():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=worker_setup)
        # spawned on submit: every worker starts inside the environment above
        futures = {pool.submit(run_chunk, spec, design, reps): (design, reps)
                   for design, reps in tasks}
    try:
        for future in as_completed(futures):
            design, reps = futures[future]
            try:
                frame, stored = future.result(), True
            except BrokenProcessPool as exc:   # every task left would fail the same way
                raise SimulationError(
                    f"the worker processes stopped ({_describe(exc)}): in a script, call "
                    "monte_carlo() under 'if __name__ == \"__main__\":' (workers are "
                    "started by importing it), or run with workers=1; finished "
                    "replications are kept in the store, if one was given") from None
            except Exception as exc:   # a task that failed as a whole, not for its data
                frame, stored = failed_chunk(spec, design, reps, f"worker: {_describe(exc)}"), False
            on_done(frame, reps, stored)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(spec, tasks, client, on_done) -> None:
    from distributed import as_completed   # imported here: Dask is optional

    futures = {}
    for design, reps in tasks:
        future = client.submit(run_chunk, spec, design, reps, pure=False)
        futures[future] = (design, reps)
    try:
        for future in as_completed(list(futures)):
            design, reps = futures[future]
            try:
                frame, stored = future.result(), True
            except Exception as exc:
                frame, stored = failed_chunk(spec, design, reps, f"worker: {_describe(exc)}"), False
            on_done(frame, reps, stored)
    finally:
        for future in futures:
            future.cancel()


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def dask_workers(client) -> int:
    """The number of workers (threads) of a Dask client's cluster, at least 1."""
    try:
        info = client.scheduler_info()["workers"]
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
    except Exception:   # an unusual client: chunk as for one worker
        return 1
