#!/usr/bin/env python
"""mlmiss against lavaan, timed in one run on one machine (issue "speed").

    python bench/lavaan_side_by_side.py                 # the paper_like case
    python bench/lavaan_side_by_side.py --case unseen   # a model and data simulated here

For each side it times, at one parameter point, one evaluation of the objective
(log-likelihood) and one of its gradient (medians over repeats), and the whole fit:
``sem()`` with ``fixed.x = FALSE`` and ``missing = "ml"`` followed by the fit measures and
the parameter estimates. Then it prints a markdown table with both and their ratio.

lavaan runs in an ``Rscript`` subprocess (the R script is written to a temporary file;
it reports its timings as JSON on stdout). lavaan 0.7.2 is used when ``R_LIBS=/tmp/lav072/lib``
has it, otherwise whatever lavaan R finds; the version is printed. Without ``Rscript`` or
lavaan only mlmiss is timed.

lavaan's evaluations call its internal ``lav_model_objective()`` and
``lav_model_grad()`` (``lav_model_gradient()`` before 0.7) on the slots of a
``sem(..., do.fit = FALSE)`` object, i.e. at lavaan's start values. mlmiss times
``mlmiss.loglik()`` and ``mlmiss.loglik_and_gradient()`` (value and gradient in one
pass) at lavaan's start values stored in ``paper_like.json`` (paper_like) or at the
moments implied by its own fit (unseen).

Every thread pool is held to one thread on both sides (set before numpy is imported).
Not run by CI: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import os

#: one thread for every pool, in this process and in R
THREAD_VARIABLES = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
os.environ.update(THREAD_VARIABLES)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mlmiss  # noqa: E402

LAVAAN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "lavaan"
PAPER_LIKE_CSV = LAVAAN_DIR / "paper_like.csv"
PAPER_LIKE_JSON = LAVAAN_DIR / "paper_like.json"
#: where a development build of lavaan 0.7.2 may have been installed
LAVAAN_072_LIB = "/tmp/lav072/lib"

# --------------------------------------------------------------------------- the R side
#: The R script. Arguments: data csv, model file, cluster column, number of timed
#: objective/gradient evaluations (0: none), number of timed whole fits (0: none).
#: Prints one line of JSON.
R_SCRIPT = r"""
suppressPackageStartupMessages({
  library(lavaan)
  library(jsonlite)
})
arg <- commandArgs(trailingOnly = TRUE)
model_syntax <- paste(readLines(arg[2]), collapse = "\n")
cluster_name <- arg[3]
n_eval <- as.integer(arg[4])
n_fit <- as.integer(arg[5])
dat <- read.csv(arg[1])

clock <- function() as.numeric(Sys.time())
seen_warnings <- character(0)
quietly <- function(expr) {
  withCallingHandlers(expr, warning = function(w) {
    seen_warnings <<- unique(c(seen_warnings, conditionMessage(w)))
    invokeRestart("muffleWarning")
  })
}
timings <- function(f, n) {
  vapply(seq_len(n), function(i) {
    t0 <- clock()
    f()
    clock() - t0
  }, numeric(1))
}

res <- list(lavaan_version = as.character(packageVersion("lavaan")),
            r_version = R.version.string, nrow = nrow(dat),
            nclusters = length(unique(dat[[cluster_name]])))

if (n_eval > 0L) {
  res$eval <- tryCatch({
    ns <- asNamespace("lavaan")
    grad_name <- if (exists("lav_model_grad", envir = ns, inherits = FALSE)) {
      "lav_model_grad"
    } else {
      "lav_model_gradient"
    }
    lav_objective <- get("lav_model_objective", envir = ns)
    lav_gradient <- get(grad_name, envir = ns)
    t0 <- clock()
    at_start <- quietly(sem(model_syntax, data = dat, cluster = cluster_name,
                            fixed.x = FALSE, missing = "ml", do.fit = FALSE))
    setup_s <- clock() - t0
    one_objective <- function() {
      lav_objective(lavmodel = at_start@Model, lavsamplestats = at_start@SampleStats,
                    lavdata = at_start@Data, lavcache = at_start@Cache)
    }
    one_gradient <- function() {
      lav_gradient(lavmodel = at_start@Model, lavsamplestats = at_start@SampleStats,
                   lavdata = at_start@Data, lavcache = at_start@Cache)
    }
    fx <- one_objective()
    gx <- one_gradient()
    t_obj <- timings(one_objective, n_eval)
    t_grad <- timings(one_gradient, n_eval)
    list(setup_s = setup_s, objective_s = median(t_obj), gradient_s = median(t_grad),
         repeats = n_eval, objective_value = as.numeric(fx),
         gradient_function = grad_name, n_free = length(gx),
         gradient_max_abs = max(abs(gx)))
  }, error = function(e) list(error = conditionMessage(e)))
}

if (n_fit > 0L) {
  res$fit <- tryCatch({
    secs <- numeric(n_fit)
    for (i in seq_len(n_fit)) {
      t0 <- clock()
      fit <- quietly(sem(model_syntax, data = dat, cluster = cluster_name,
                         fixed.x = FALSE, missing = "ml"))
      fm <- quietly(fitMeasures(fit))
      pe <- quietly(parameterEstimates(fit))
      secs[i] <- clock() - t0
    }
    list(seconds = median(secs), all_seconds = secs,
         converged = isTRUE(lavInspect(fit, "converged")),
         iterations = as.integer(lavInspect(fit, "iterations")),
         logl = as.numeric(fm[["logl"]]), npar = as.integer(fm[["npar"]]),
         chisq = as.numeric(fm[["chisq"]]))
  }, error = function(e) list(error = conditionMessage(e)))
}

res$warnings <- seen_warnings
cat(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null"), "\n")
"""


def r_environment(lib: str | None) -> dict:
    env = dict(os.environ)
    env.update(THREAD_VARIABLES)
    if lib:
        env["R_LIBS"] = lib
    else:
        env.pop("R_LIBS", None)
    return env


def _r_lavaan_version(lib: str | None) -> str | None:
    probe = ('suppressPackageStartupMessages(library(jsonlite)); '
             'cat(as.character(packageVersion("lavaan")))')
    try:
        out = subprocess.run(["Rscript", "-e", probe], env=r_environment(lib),
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def find_lavaan() -> tuple[str | None, str | None, str]:
    """(R_LIBS to use or None, lavaan's version or None, a sentence saying what was found)."""
    if shutil.which("Rscript") is None:
        return None, None, "Rscript not found: only mlmiss is timed"
    if Path(LAVAAN_072_LIB).is_dir():
        version = _r_lavaan_version(LAVAAN_072_LIB)
        if version and version.startswith("0.7.2"):
            return LAVAAN_072_LIB, version, f"lavaan {version} (R_LIBS={LAVAAN_072_LIB})"
    version = _r_lavaan_version(None)
    if version:
        return None, version, f"lavaan {version} (R's default library)"
    return None, None, "lavaan (or jsonlite) not installed in R: only mlmiss is timed"


def run_lavaan(csv: Path, model: str, cluster: str, n_eval: int, n_fit: int,
               lib: str | None, timeout: float | None = None) -> dict:
    """Run :data:`R_SCRIPT` on one data set; its JSON as a dict. On a timeout
    ``{"timeout": seconds}``, on a crash ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="mlmiss-lavaan-") as tmp:
        script = Path(tmp) / "lavaan_timing.R"
        script.write_text(R_SCRIPT)
        model_file = Path(tmp) / "model.lav"
        model_file.write_text(model)
        cmd = ["Rscript", str(script), str(csv), str(model_file), cluster, str(n_eval),
               str(n_fit)]
        # a session of its own, so that a timeout ends R and anything R started
        proc = subprocess.Popen(cmd, env=r_environment(lib), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"timeout": timeout}
    lines = [line for line in stdout.splitlines() if line.lstrip().startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"Rscript exited {proc.returncode}: {stderr.strip()[-2000:]}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- the cases
Y_PAPER = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z_PAPER = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]

#: the "unseen" case: population values (for simulate) ...
UNSEEN_POPULATION = """
level: 1
  f1 =~ 1*u1 + 0.8*u2 + 0.7*u3 + 0.9*u4
  f2 =~ 1*u5 + 0.6*u6 + 1.1*u7 + 0.8*u8
  f1 ~~ 1.0*f1 + 0.3*f2
  f2 ~~ 0.8*f2
  u1 ~~ 0.5*u1
  u2 ~~ 0.6*u2
  u3 ~~ 0.4*u3
  u4 ~~ 0.5*u4
  u5 ~~ 0.7*u5
  u6 ~~ 0.5*u6
  u7 ~~ 0.6*u7
  u8 ~~ 0.4*u8
level: 2
  fb =~ 1*u1 + 0.9*u2 + 0.8*u3 + 1.0*u4 + 0.7*u5 + 0.9*u6 + 1.1*u7 + 0.8*u8
  fb ~ 0.4*v
  fb ~~ 0.3*fb
  v ~~ 1*v
  v ~ 0.5*1
  u1 ~~ 0.05*u1
  u2 ~~ 0.05*u2
  u3 ~~ 0.05*u3
  u4 ~~ 0.05*u4
  u5 ~~ 0.05*u5
  u6 ~~ 0.05*u6
  u7 ~~ 0.05*u7
  u8 ~~ 0.05*u8
  u1 ~ 2*1
  u5 ~ 1*1
"""
#: ... and the model fitted (the same structure, every value free)
UNSEEN_MODEL = """level: 1
  f1 =~ u1 + u2 + u3 + u4
  f2 =~ u5 + u6 + u7 + u8
level: 2
  fb =~ u1 + u2 + u3 + u4 + u5 + u6 + u7 + u8
  fb ~ v
"""


def _sizes_5_to_15(rng) -> int:
    return int(rng.integers(5, 16))


def paper_like_case():
    """(name, model, df, csv path, moments for the evaluations, what they are)."""
    ref = json.loads(PAPER_LIKE_JSON.read_text())
    df = pd.read_csv(PAPER_LIKE_CSV)
    data = mlmiss.TwoLevelData.from_frame(df, cluster=ref["case"]["cluster"], y=Y_PAPER,
                                          z=Z_PAPER)
    moments = mlmiss.Moments.from_dict(ref["start"]["moments"])
    return dict(name="paper_like", model=ref["case"]["model"], cluster=ref["case"]["cluster"],
                df=df, csv=PAPER_LIKE_CSV, data=data, moments=moments,
                point="lavaan 0.7.2's start values (paper_like.json)")


def unseen_case(tmp: Path, n_clusters: int, missing: float, seed: int):
    df = mlmiss.simulate(UNSEEN_POPULATION, n_clusters=n_clusters,
                         cluster_sizes=_sizes_5_to_15, missing={"mcar": missing}, seed=seed)
    csv = tmp / "unseen.csv"
    df.to_csv(csv, index=False)
    return dict(name="unseen", model=UNSEEN_MODEL, cluster="cluster", df=df, csv=csv,
                data=None, moments=None, point="the moments implied by mlmiss's fit")


# --------------------------------------------------------------------------- our side
def median_seconds(f, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def whole_fit(model: str, df: pd.DataFrame, cluster: str):
    f = mlmiss.sem(model, df, cluster=cluster, fixed_x=False)
    f.fit_measures()
    f.parameter_estimates()
    return f


def time_ours(case: dict, n_eval: int, n_fit: int) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = whole_fit(case["model"], case["df"], case["cluster"])  # warm-up
        secs = []
        for _ in range(n_fit):
            t0 = time.perf_counter()
            fit = whole_fit(case["model"], case["df"], case["cluster"])
            secs.append(time.perf_counter() - t0)
    if case["moments"] is None:                     # unseen: at our own estimates
        case["data"] = fit.data
        case["moments"] = fit.implied()["moments"]
    data, moments = case["data"], case["moments"]
    value = mlmiss.loglik(data, moments)            # warm-up (compilation, caches)
    mlmiss.loglik_and_gradient(data, moments)
    return dict(
        loglik_s=median_seconds(lambda: mlmiss.loglik(data, moments), n_eval),
        gradient_s=median_seconds(lambda: mlmiss.loglik_and_gradient(data, moments), n_eval),
        loglik_value=float(value), fit_s=statistics.median(secs), fit_all_s=secs,
        converged=bool(fit.converged), iterations=int(fit.iterations),
        logl=float(fit.loglik), npar=int(fit.npar),
        chisq=float(fit.fit_measures().get("chisq", np.nan)),
        nobs=int(fit.nobs), nclusters=int(fit.nclusters),
        warnings=sorted({f"{w.category.__name__}: {w.message}" for w in caught}))


# --------------------------------------------------------------------------- report
def fmt_seconds(s) -> str:
    if s is None or not np.isfinite(s):
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_ratio(ours, theirs) -> str:
    if ours is None or theirs is None or not ours > 0:
        return "–"
    return f"{theirs / ours:.1f}×"


def table(ours: dict, lav: dict | None, n_eval: int, n_fit: int, lav_n_eval: int,
          lav_n_fit: int) -> str:
    ev = (lav or {}).get("eval") or {}
    fit = (lav or {}).get("fit") or {}
    rows = [
        (f"objective (log-likelihood) evaluation, median of {n_eval} / {lav_n_eval}",
         ours["loglik_s"], ev.get("objective_s")),
        (f"gradient evaluation, median of {n_eval} / {lav_n_eval} "
         "(ours: value and gradient in one pass)", ours["gradient_s"], ev.get("gradient_s")),
        (f"whole fit: sem() + fit measures + parameter estimates, median of {n_fit} / "
         f"{lav_n_fit}", ours["fit_s"], fit.get("seconds")),
    ]
    lines = ["| quantity | ours (mlmiss) | lavaan | lavaan / ours |", "|---|---|---|---|"]
    for name, mine, theirs in rows:
        lines.append(f"| {name} | {fmt_seconds(mine)} | {fmt_seconds(theirs)} | "
                     f"{fmt_ratio(mine, theirs)} |")
    return "\n".join(lines)


def check_table(ours: dict, lav: dict | None) -> str:
    fit = (lav or {}).get("fit") or {}
    lines = ["| fit | converged | iterations | npar | logl | chisq |", "|---|---|---|---|---|---|",
             f"| ours | {ours['converged']} | {ours['iterations']} | {ours['npar']} | "
             f"{ours['logl']:.4f} | {ours['chisq']:.4f} |"]
    if fit and "error" not in fit:
        lines.append(f"| lavaan | {fit['converged']} | {fit['iterations']} | {fit['npar']} | "
                     f"{fit['logl']:.4f} | {fit['chisq']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=("paper_like", "unseen"), default="paper_like")
    p.add_argument("--repeats", type=int, default=500, help="our timed evaluations")
    p.add_argument("--fits", type=int, default=5, help="our timed whole fits")
    p.add_argument("--lavaan-repeats", type=int, default=20, help="lavaan's timed evaluations")
    p.add_argument("--lavaan-fits", type=int, default=3, help="lavaan's timed whole fits")
    p.add_argument("--no-lavaan", action="store_true", help="time only mlmiss")
    p.add_argument("--clusters", type=int, default=150, help="unseen: number of clusters")
    p.add_argument("--missing", type=float, default=0.10, help="unseen: MCAR rate")
    p.add_argument("--seed", type=int, default=20240611, help="unseen: simulation seed")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlmiss-side-by-side-") as tmp:
        if args.case == "paper_like":
            case = paper_like_case()
        else:
            case = unseen_case(Path(tmp), args.clusters, args.missing, args.seed)
        df = case["df"]
        print(f"case {case['name']}: {len(df)} rows, {df[case['cluster']].nunique()} clusters; "
              f"mlmiss {mlmiss.__version__}, Python {sys.version.split()[0]}, numpy "
              f"{np.__version__}; threads: " + ", ".join(f"{k}={v}" for k, v in
                                                        THREAD_VARIABLES.items()))
        if args.no_lavaan:
            lib, version, found = None, None, "lavaan not run (--no-lavaan)"
        else:
            lib, version, found = find_lavaan()
        print(f"lavaan: {found}", flush=True)

        lav = None
        if version is not None:
            t0 = time.perf_counter()
            lav = run_lavaan(case["csv"], case["model"], case["cluster"], args.lavaan_repeats,
                             args.lavaan_fits, lib)
            print(f"(lavaan's Rscript took {time.perf_counter() - t0:.1f} s in all)", flush=True)
        ours = time_ours(case, args.repeats, args.fits)

    print(f"\nper-evaluation point: ours at {case['point']}; lavaan at its own start values "
          "(sem(..., do.fit = FALSE))\n")
    print(table(ours, lav, args.repeats, args.fits, args.lavaan_repeats, args.lavaan_fits))
    print()
    print(check_table(ours, lav))
    print(f"\nours: all whole-fit times {[round(s, 3) for s in ours['fit_all_s']]} s; "
          f"log-likelihood at the evaluation point {ours['loglik_value']:.4f}")
    if ours["warnings"]:
        print("ours: warnings: " + " | ".join(ours["warnings"]))
    if lav is not None:
        print(f"lavaan {lav.get('lavaan_version', version)} ({lav.get('r_version', '?')})")
        for part in ("eval", "fit"):
            if (lav.get(part) or {}).get("error"):
                print(f"lavaan {part}: ERROR {lav[part]['error']}")
        if "error" in lav:
            print(f"lavaan: ERROR {lav['error']}")
        ev = lav.get("eval") or {}
        if "objective_s" in ev:
            print(f"lavaan: {ev['gradient_function']}(), {ev['n_free']} free parameters, "
                  f"objective at start {ev['objective_value']:.6f}, sem(do.fit = FALSE) "
                  f"{ev['setup_s']:.2f} s")
        fit = lav.get("fit") or {}
        if "all_seconds" in fit:
            secs = fit["all_seconds"]
            secs = secs if isinstance(secs, list) else [secs]
            print(f"lavaan: all whole-fit times {[round(s, 3) for s in secs]} s")
        if lav.get("warnings"):
            print("lavaan: warnings: " + " | ".join(lav["warnings"]))
    print("\n(timings are medians on this machine, with whatever else runs on it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
