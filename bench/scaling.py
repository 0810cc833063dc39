#!/usr/bin/env python
"""How mlmiss's time and memory grow with the number of clusters J (issue "speed").

    python bench/scaling.py                              # J = 200, 2000, 20000, 100000
    python bench/scaling.py --clusters 200,2000 --lavaan # also lavaan's whole fit
    python bench/scaling.py --no-fit                     # set-up and evaluations only

Data: ``mlmiss.datasets.paper_example(n_clusters_per_size=J // 4)`` (clusters of sizes
5, 10, 15, 20; 10% MCAR at both levels). Each J runs in a fresh subprocess, so the peak
resident set size (``ru_maxrss``) belongs to that J alone. Measured per J:

* set-up: ``TwoLevelData.from_frame()``; peak RSS after it;
* ``mlmiss.loglik()`` and ``mlmiss.loglik_and_gradient()`` at
  ``mlmiss.datasets.paper_model_moments()`` (medians after one warm-up call), also per
  cluster, which is flat when the cost is linear in J;
* the whole fit: ``mlmiss.sem()`` with the paper_like model syntax
  (tests/data/lavaan/paper_like.json), ``fixed_x=False``, then ``fit_measures()`` and
  ``parameter_estimates()``; after a warm-up fit on small data (compilation, caches);
  converged flag and peak RSS after it;
* with ``--lavaan``: lavaan's ``sem()`` + ``fitMeasures()`` + ``parameterEstimates()`` on
  the same data (written to a temporary CSV) in an Rscript subprocess, stopped after
  ``--lavaan-timeout`` seconds (300); larger J are then not tried.

Writes bench/results/scaling.csv and scaling.md (rows of earlier runs at other J are
kept unless ``--fresh``), and scaling.png (log-log, with a slope-1 reference) when
matplotlib is importable. Every thread pool is held to one thread. Not run by CI.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
os.environ.update(THREAD_VARIABLES)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAPER_LIKE_JSON = HERE.parent / "tests" / "data" / "lavaan" / "paper_like.json"
Y = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]

#: the columns of scaling.csv, in order
COLUMNS = ["J", "rows", "rss_data_mb", "setup_s", "rss_setup_mb", "loglik_ms", "loglik_us_per_cluster",
           "grad_ms", "grad_us_per_cluster", "eval_repeats", "fit_s", "sem_s", "post_s",
           "converged", "iterations", "logl", "rss_fit_mb", "lavaan_version", "lavaan_fit_s",
           "lavaan_status", "lavaan_converged", "lavaan_logl", "when"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def repeats_for(J: int) -> int:
    if J <= 2000:
        return 20
    if J <= 20000:
        return 7
    return 3


# --------------------------------------------------------------------------- one J
def worker(J: int, fit: bool, csv_out: str | None) -> dict:
    """Everything measured at one J, in this (fresh) process."""
    import mlmiss
    from lavaan_side_by_side import median_seconds

    model = json.loads(PAPER_LIKE_JSON.read_text())["case"]["model"]
    df = mlmiss.datasets.paper_example(n_clusters_per_size=J // 4)
    out = {"J": int(df["cluster"].nunique()), "rows": len(df),
           "rss_data_mb": peak_rss_mb()}
    if csv_out:
        df.to_csv(csv_out, index=False)

    t0 = time.perf_counter()
    data = mlmiss.TwoLevelData.from_frame(df, "cluster", y=Y, z=Z)
    out["setup_s"] = time.perf_counter() - t0
    out["rss_setup_mb"] = peak_rss_mb()

    moments = mlmiss.datasets.paper_model_moments()
    mlmiss.loglik(data, moments)                     # warm-up
    mlmiss.loglik_and_gradient(data, moments)
    n = repeats_for(J)
    loglik_s = median_seconds(lambda: mlmiss.loglik(data, moments), n)
    grad_s = median_seconds(lambda: mlmiss.loglik_and_gradient(data, moments), n)
    out.update(eval_repeats=n, loglik_ms=1e3 * loglik_s,
               loglik_us_per_cluster=1e6 * loglik_s / out["J"], grad_ms=1e3 * grad_s,
               grad_us_per_cluster=1e6 * grad_s / out["J"])
    data = None   # free the engine's arrays before the whole fit builds its own

    if fit:
        with warnings.catch_warnings():
            # the warm-up's 40 clusters: its h1 fit does not converge, which says
            # nothing about J
            warnings.simplefilter("ignore")
            small = mlmiss.datasets.paper_example(n_clusters_per_size=10)
            warm = mlmiss.sem(model, small, cluster="cluster", fixed_x=False)  # warm-up
            warm.fit_measures()
            warm.parameter_estimates()
            del warm, small
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            f = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
            t1 = time.perf_counter()
            f.fit_measures()
            f.parameter_estimates()
            t2 = time.perf_counter()
        out.update(fit_s=t2 - t0, sem_s=t1 - t0, post_s=t2 - t1,
                   converged=bool(f.converged), iterations=int(f.iterations),
                   logl=float(f.loglik), rss_fit_mb=peak_rss_mb(),
                   fit_message=f.message,
                   warnings=sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
    return out


def run_worker(J: int, fit: bool, csv_out: str | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(J)]
    if not fit:
        cmd.append("--no-fit")
    if csv_out:
        cmd += ["--csv-out", csv_out]
    env = dict(os.environ)
    env.update(THREAD_VARIABLES)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker J={J} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- outputs
def merge_rows(new: list[dict], fresh: bool):
    import pandas as pd

    frame = pd.DataFrame(new).reindex(columns=COLUMNS)
    path = RESULTS / "scaling.csv"
    if path.exists() and not fresh:
        old = pd.read_csv(path).reindex(columns=COLUMNS)
        # a rerun without --lavaan keeps lavaan's earlier times at the same J
        lavaan = [c for c in COLUMNS if c.startswith("lavaan")]
        earlier = old.set_index("J")[lavaan]
        frame[lavaan] = frame[lavaan].astype(object)
        for i, row in frame.iterrows():
            if pd.isna(row["lavaan_status"]) and row["J"] in earlier.index:
                frame.loc[i, lavaan] = earlier.loc[row["J"]].to_numpy()
        old = old[~old["J"].isin(frame["J"])]
        frame = pd.concat([old, frame], ignore_index=True)
    return frame.sort_values("J").reset_index(drop=True)


def _num(value, fmt: str) -> str:
    try:
        if value is None or value != value:      # None or NaN
            return "–"
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def _lavaan_cell(row) -> str:
    status = row.get("lavaan_status")
    if not isinstance(status, str) or not status:
        return "not run"
    if status == "ok":
        return _num(row.get("lavaan_fit_s"), ".1f")
    return status


def markdown(frame) -> str:
    head = ("| J | rows | set-up s | RSS after set-up MB | loglik ms | loglik µs/cluster | "
            "gradient ms | gradient µs/cluster | whole fit s | converged | iterations | "
            "RSS after fit MB | lavaan whole fit s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in frame.to_dict("records"):
        conv = str(row.get("converged"))
        conv = conv.capitalize() if conv.lower() in ("true", "false") else "–"
        lines.append(
            f"| {int(row['J'])} | {int(row['rows'])} | {_num(row['setup_s'], '.3f')} | "
            f"{_num(row['rss_setup_mb'], '.0f')} | {_num(row['loglik_ms'], '.2f')} | "
            f"{_num(row['loglik_us_per_cluster'], '.2f')} | {_num(row['grad_ms'], '.2f')} | "
            f"{_num(row['grad_us_per_cluster'], '.2f')} | {_num(row['fit_s'], '.2f')} | "
            f"{conv} | {_num(row['iterations'], '.0f')} | {_num(row['rss_fit_mb'], '.0f')} | "
            f"{_lavaan_cell(row)} |")
    return "\n".join(lines)


def plot(frame, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import numpy as np

    J = frame["J"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    series = [("setup_s", 1.0, "set-up (from_frame)", "o-"),
              ("loglik_ms", 1e-3, "log-likelihood", "s-"),
              ("grad_ms", 1e-3, "log-likelihood + gradient", "^-"),
              ("fit_s", 1.0, "whole fit (mlmiss)", "D-"),
              ("lavaan_fit_s", 1.0, "whole fit (lavaan)", "x-")]
    for column, scale, label, style in series:
        y = frame[column].to_numpy(float) * scale
        if column == "lavaan_fit_s":
            y = np.where(frame["lavaan_status"].astype(str) == "ok", y, np.nan)
        ok = np.isfinite(y) & (y > 0)
        if ok.any():
            ax.plot(J[ok], y[ok], style, label=label)
    anchor = frame["grad_ms"].to_numpy(float) * 1e-3
    if np.isfinite(anchor[0]):
        ref = anchor[0] * 3 * J / J[0]
        ax.plot(J, ref, "k--", lw=1, label="slope 1 (time ∝ J)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clusters J")
    ax.set_ylabel("seconds")
    ax.set_title("mlmiss on paper_example data, one thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clusters", default="200,2000,20000,100000",
                   help="comma-separated J (multiples of 4)")
    p.add_argument("--no-fit", action="store_true", help="skip the whole fits")
    p.add_argument("--lavaan", action="store_true", help="also time lavaan's whole fit")
    p.add_argument("--lavaan-timeout", type=float, default=300.0)
    p.add_argument("--fresh", action="store_true",
                   help="overwrite the results instead of keeping rows at other J")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--csv-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        print(json.dumps(worker(args.worker, not args.no_fit, args.csv_out)))
        return 0

    clusters = [int(j) for j in args.clusters.split(",") if j.strip()]
    lib = version = None
    if args.lavaan:
        from lavaan_side_by_side import find_lavaan, run_lavaan
        lib, version, found = find_lavaan()
        print(f"lavaan: {found}", flush=True)
    model = json.loads(PAPER_LIKE_JSON.read_text())["case"]["model"]

    rows = []
    lavaan_gave_up = False
    with tempfile.TemporaryDirectory(prefix="mlmiss-scaling-") as tmp:
        for J in clusters:
            csv = str(Path(tmp) / f"paper_example_J{J}.csv") if version else None
            res = run_worker(J, not args.no_fit, csv)
            row = {k: res.get(k) for k in COLUMNS}
            row["when"] = datetime.now().isoformat(timespec="seconds")
            msg = (f"J={res['J']}: rows {res['rows']}, set-up {res['setup_s']:.3f} s, "
                   f"loglik {res['loglik_ms']:.2f} ms, gradient {res['grad_ms']:.2f} ms, "
                   f"RSS {res['rss_setup_mb']:.0f} MB")
            if "fit_s" in res:
                msg += (f"; fit {res['fit_s']:.2f} s (sem {res['sem_s']:.2f} + post "
                        f"{res['post_s']:.2f}), converged {res['converged']}, "
                        f"{res['iterations']} it, RSS {res['rss_fit_mb']:.0f} MB")
                if not res["converged"]:
                    msg += f" [{res.get('fit_message')}]"
                if res.get("warnings"):
                    msg += "\n  warnings: " + " | ".join(res["warnings"])
            print(msg, flush=True)

            if version:
                row["lavaan_version"] = version
                if lavaan_gave_up:
                    row["lavaan_status"] = "not tried (a smaller J timed out)"
                else:
                    t0 = time.perf_counter()
                    lav = run_lavaan(Path(csv), model, "cluster", 0, 1, lib,
                                     timeout=args.lavaan_timeout)
                    wall = time.perf_counter() - t0
                    fit = lav.get("fit") or {}
                    if "timeout" in lav:
                        lavaan_gave_up = True
                        limit = args.lavaan_timeout
                        limit = f"{limit / 60:g} min" if limit >= 60 else f"{limit:g} s"
                        row["lavaan_status"] = f"did not finish in {limit}"
                    elif "error" in lav or "error" in fit:
                        row["lavaan_status"] = "error"
                        print(f"  lavaan ERROR: {lav.get('error') or fit.get('error')}")
                    else:
                        row.update(lavaan_status="ok", lavaan_fit_s=fit["seconds"],
                                   lavaan_converged=fit["converged"], lavaan_logl=fit["logl"])
                    print(f"  lavaan {version}: {row['lavaan_status']}"
                          + (f", {fit['seconds']:.1f} s, converged {fit['converged']}, "
                             f"logl {fit['logl']:.4f} (ours {res.get('logl')})"
                             if row["lavaan_status"] == "ok" else "")
                          + f" (Rscript wall {wall:.0f} s)", flush=True)
                    if lav.get("warnings"):
                        print("  lavaan warnings: " + " | ".join(lav["warnings"]))
                Path(csv).unlink(missing_ok=True)
            rows.append(row)

    RESULTS.mkdir(parents=True, exist_ok=True)
    frame = merge_rows(rows, args.fresh)
    frame.to_csv(RESULTS / "scaling.csv", index=False)
    table = markdown(frame)
    note = ("Data: `mlmiss.datasets.paper_example(n_clusters_per_size=J // 4)`; evaluations at "
            "`paper_model_moments()`; whole fit = `sem(paper_like model, fixed_x=False)` + "
            "`fit_measures()` + `parameter_estimates()`; lavaan whole fit = `sem(..., "
            "fixed.x = FALSE, missing = \"ml\")` + `fitMeasures()` + `parameterEstimates()`"
            f"{f' (lavaan {version})' if version else ''}. One thread; peak RSS of a fresh "
            "process per J. Generated by `bench/scaling.py`.")
    (RESULTS / "scaling.md").write_text(f"# Scaling in J\n\n{note}\n\n{table}\n")
    print()
    print(table)
    if plot(frame, RESULTS / "scaling.png"):
        print(f"\nwrote {RESULTS / 'scaling.csv'}, scaling.md, scaling.png")
    else:
        print(f"\nwrote {RESULTS / 'scaling.csv'}, scaling.md (no matplotlib: no plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
