"""The ``mlmiss`` command.

    mlmiss [--debug] fit MODEL_FILE DATA.csv --cluster NAME [--fixed-x | --no-fixed-x]
                         [--estimator {ML,MLR}] [--optimizer NAME] [--standardized]
                         [--rsquare] [--output ESTIMATES.csv] [--json FIT.json]
                         [--indefinite-between] [--max-seconds S] [--no-fit-measures]
        fit a two-level model by FIML, print a lavaan-style summary and write the
        estimates (CSV) and the whole fit (JSON) if asked; exit status 1 for an error
        (one line naming it; the traceback with --debug), 3 for a fit that did not
        converge (the summary and the files are still written)
    mlmiss table1 [--seed N] [--csv PATH] [--repeat-scale X]
        Table 1 of Rosseel (2021): every log-likelihood method on the paper-design data,
        checked against each other and timed beside the paper's R timings
    mlmiss simulate MODEL_FILE --clusters J --sizes 4,6,8 [--seed N] [--mcar R]
                    [--mcar-within R] [--mcar-between R] [--param LABEL=VALUE ...]
                    --output DATA.csv
        draw a data set from a model at its population values (mlmiss.simulate)
    mlmiss montecarlo STUDY.toml [--workers N] [--replications R] [--no-progress]
        run a Monte Carlo study described in a TOML file (mlmiss.simulation.study) and
        write its tidy results, its summary and, with matplotlib, plots

``python3 -m mlmiss.cli ...`` works without installing the script.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

from .estimation.optimizers import OPTIMIZERS
from .version import __version__

EXIT_ERROR = 1
EXIT_NOT_CONVERGED = 3


class InputError(Exception):
    """A file the command cannot read or write; its message names the file."""

#: the paper example's level-1 and between-only variables (``mlmiss.datasets``)
PAPER_Y = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
PAPER_Z = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlmiss",
        description="Two-level SEM by full-information maximum likelihood (missing data at "
                    "both levels).")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"mlmiss {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    fit = commands.add_parser(
        "fit", help="fit a model and print its summary",
        description="Fit a two-level model (lavaan syntax with 'level: 1' and 'level: 2' "
                    "blocks) to a CSV file and print a lavaan-style summary.")
    fit.add_argument("model", type=Path, metavar="MODEL_FILE", help="file with the model syntax")
    fit.add_argument("data", type=Path, metavar="DATA.csv",
                     help="one row per level-1 unit; empty cells or NA are missing")
    fit.add_argument("--cluster", required=True, metavar="NAME", help="the cluster-id column")
    fit.add_argument("--fixed-x", action=argparse.BooleanOptionalAction, default=None,
                     help="treat exogenous covariates as fixed (lavaan's fixed.x = TRUE: "
                          "rows missing a covariate are dropped; sem()'s default) or, with "
                          "--no-fixed-x, as random (fixed.x = FALSE)")
    fit.add_argument("--estimator", default="ML", type=str.upper, choices=["ML", "MLR"],
                     help="ML (default) or MLR: the same estimates with robust (sandwich) "
                          "standard errors and the Yuan-Bentler scaled test, as lavaan's MLR")
    fit.add_argument("--optimizer", default="auto", choices=list(OPTIMIZERS),
                     help="default auto (Krylov trust region, full trust region as fallback)")
    fit.add_argument("--standardized", action="store_true",
                     help="add the standardized estimates (Std.lv, Std.all) to the summary "
                          "and to --output")
    fit.add_argument("--rsquare", action="store_true",
                     help="add the R-square of each level's dependent variables and "
                          "indicators to the summary")
    fit.add_argument("--output", type=Path, default=None, metavar="ESTIMATES.csv",
                     help="write the parameter estimates (fit.parameter_estimates()) to this "
                          "CSV file")
    fit.add_argument("--json", type=Path, default=None, metavar="FIT.json",
                     help="write the whole fit (fit.to_dict(): estimates, fit measures, "
                          "moments, data summary, options, convergence) to this JSON file")
    fit.add_argument("--indefinite-between", action="store_true",
                     help="allow an indefinite model between covariance matrix wherever the "
                          "likelihood is defined (default: it must be positive semidefinite; "
                          "a maximum on that edge is reported as a boundary solution)")
    fit.add_argument("--max-seconds", type=float, default=300.0, metavar="S",
                     help="the optimizer's time limit (default 300)")
    fit.add_argument("--no-fit-measures", action="store_true",
                     help="skip the unrestricted and baseline fits (no test, no fit measures)")
    fit.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                     help="show the full traceback of an error (as mlmiss --debug fit ...)")

    table = commands.add_parser(
        "table1", help="reproduce Table 1 of Rosseel (2021)",
        description="Evaluate the log-likelihood of the paper's example with every method, "
                    "check that they agree, and time the five objective functions beside "
                    "the paper's Table 1.")
    table.add_argument("--seed", type=int, default=1234,
                       help="seed of the generated paper-design data (default 1234)")
    table.add_argument("--csv", type=Path, default=None, metavar="PATH",
                       help="read the data from this CSV instead (columns cluster, y1..y10, "
                            "x1..x3, z1..z4, w1..w3)")
    table.add_argument("--moments-json", type=Path, default=None, metavar="PATH",
                       help="use a lavaan reference JSON's start.moments instead of "
                            "mlmiss.datasets.paper_model_moments()")
    table.add_argument("--repeat-scale", type=float, default=1.0, metavar="X",
                       help="multiply every repetition count and time budget (default 1)")
    _simulation_parsers(commands)
    return parser


def _simulation_parsers(commands) -> None:
    """The ``simulate`` and ``montecarlo`` commands (:mod:`mlmiss.simulation`)."""
    simulate = commands.add_parser(
        "simulate", help="draw a data set from a model",
        description="Draw two-level data from a model (lavaan syntax) at its population "
                    "values: numbers in the syntax, --param values, else loadings and "
                    "variances 1 and everything else 0.")
    simulate.add_argument("model", type=Path, metavar="MODEL_FILE",
                          help="file with the population model's syntax")
    simulate.add_argument("--clusters", type=int, default=None, metavar="J",
                          help="number of clusters (default: one per --sizes entry)")
    simulate.add_argument("--sizes", required=True, metavar="N[,N...]",
                          help="cluster size, or sizes cycled over the clusters (4,6,8)")
    simulate.add_argument("--seed", type=int, default=None, help="seed (default: fresh)")
    simulate.add_argument("--mcar", type=float, default=None, metavar="R",
                          help="share of values missing completely at random, both levels")
    simulate.add_argument("--mcar-within", type=float, default=None, metavar="R",
                          help="the same for the level-1 variables only")
    simulate.add_argument("--mcar-between", type=float, default=None, metavar="R",
                          help="the same for the between-only variables (per cluster)")
    simulate.add_argument("--param", action="append", default=[], metavar="LABEL=VALUE",
                          help="population value of a labelled parameter (repeatable)")
    simulate.add_argument("--output", type=Path, required=True, metavar="DATA.csv",
                          help="the CSV file to write (empty cells are missing)")

    study = commands.add_parser(
        "montecarlo", help="run a Monte Carlo study from a TOML file",
        description="Run a Monte Carlo study (population, analysis model, designs, "
                    "replications, seed, outputs in a TOML file; see "
                    "mlmiss.simulation.study) and write the tidy results, the summary "
                    "and, with matplotlib and [output] plots, PNG plots.")
    study.add_argument("study", type=Path, metavar="STUDY.toml", help="the study file")
    study.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes (default: the file's, else every core)")
    study.add_argument("--replications", type=int, default=None, metavar="R",
                       help="replications per design (default: the file's)")
    study.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar (default: when stderr is a terminal)")


def _run_simulate(args) -> int:
    from .simulation import simulate

    try:
        sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        raise ValueError(f"--sizes {args.sizes!r}: give cluster sizes as integers separated "
                         "by commas (4,6,8)") from None
    missing = {key: value for key, value in (("mcar", args.mcar),
                                             ("mcar_within", args.mcar_within),
                                             ("mcar_between", args.mcar_between))
               if value is not None}
    params = {}
    for item in args.param:
        label, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--param {item!r}: write LABEL=VALUE")
        params[label.strip()] = float(value)
    data = simulate(_read(args.model, "model file"), n_clusters=args.clusters,
                    cluster_sizes=sizes,
                    params=params or None, missing=missing or None, seed=args.seed)
    _write(args.output, "data file", lambda p: data.to_csv(p, index=False))
    print(f"{len(data)} rows in {data['cluster'].nunique()} clusters written to {args.output}")
    return 0


def _run_montecarlo(args) -> int:
    from .simulation.study import run_study

    result, written = run_study(args.study, workers=args.workers, progress=args.progress,
                                replications=args.replications)
    print(result)
    columns = ["design", "lhs", "op", "rhs", "level", "true", "average", "bias", "sd",
               "mean_se", "coverage", "chisq_reject", "converged_rate"]
    print(result.summary()[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for path in written:
        print(f"written: {path}")
    return 0


def _read(path: Path, what: str) -> str:
    """A file's text, or an error naming the file and what it was for."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r}: cannot be read ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _read_csv(path: Path):
    import pandas as pd

    if not path.exists():
        raise InputError(f"data file {str(path)!r}: no such file")
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:   # pandas' parser errors too
        raise InputError(f"data file {str(path)!r}: cannot be read as CSV "
                         f"({_reason(exc)})") from None


def _write(path: Path, what: str, write) -> None:
    try:
        write(path)
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r}: cannot be written ({_reason(exc)})") from None


def _run_fit(args) -> int:
    from .errors import DataError, ModelSyntaxError
    from .fitting import sem
    from .report import summary_text

    model = _read(args.model, "model file")
    df = _read_csv(args.data)
    if args.cluster not in df.columns:
        raise DataError(f"no column {args.cluster!r} in {args.data} "
                        f"(columns: {', '.join(map(str, df.columns))})")
    options = {"cluster": args.cluster, "optimizer": args.optimizer,
               "between_psd": not args.indefinite_between, "max_seconds": args.max_seconds,
               "estimator": args.estimator}
    if args.fixed_x is not None:
        options["fixed_x"] = args.fixed_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sem(model, df, **options)
        except ModelSyntaxError as exc:   # name the file the line is in
            raise ModelSyntaxError(f"model file {str(args.model)!r}, {exc}") from None
        text = summary_text(fit, cluster=args.cluster, measures=not args.no_fit_measures,
                            standardized=args.standardized, rsquare=args.rsquare)
        print(text, end="")
        if args.output is not None:
            table = fit.parameter_estimates(standardized=args.standardized)
            _write(args.output, "estimates file", lambda p: table.to_csv(p, index=False))
        if args.json is not None:
            _write(args.json, "JSON file", fit.to_json)
    for w in caught:
        print(f"Warning: {w.message}", file=sys.stderr)
    return 0 if fit.converged else EXIT_NOT_CONVERGED


def _run_table1(args) -> int:
    import pandas as pd

    from .data import Moments, TwoLevelData
    from .errors import SingularMatrixError
    from .methods import METHODS, loglik, method_function
    from .paper import OBJECTIVES, design
    from .paper.table1 import format_table1, table1
    from .threads import one_blas_thread

    if args.csv is not None:
        df = pd.read_csv(args.csv)
        source = str(args.csv)
    else:
        df = design.paper_example(seed=args.seed)
        source = f"mlmiss.datasets.paper_example(seed={args.seed})"
    data = TwoLevelData.from_frame(df, cluster="cluster", y=PAPER_Y, z=PAPER_Z)
    if args.moments_json is not None:
        with open(args.moments_json) as fh:
            moments = Moments.from_dict(json.load(fh)["start"]["moments"])
        moment_source = f"{args.moments_json}: start.moments"
    else:
        moments = design.paper_model_moments()
        moment_source = "mlmiss.datasets.paper_model_moments()"

    missing1 = df[PAPER_Y].isna().to_numpy().mean()
    missing2 = df.groupby("cluster")[PAPER_Z].first().isna().to_numpy().mean()
    print(f"data:    {source}")
    print(f"         {data.n_obs} rows, {data.n_clusters} clusters, {missing1:.1%} missing at "
          f"level 1, {missing2:.1%} at level 2")
    print(f"moments: {moment_source}")
    print()

    values, refused = {}, {}
    with one_blas_thread():   # numpy's BLAS threads would spin against the kernels
        for method in METHODS:
            began = time.perf_counter()
            try:
                values[method] = loglik(data, moments, method=method)
            except SingularMatrixError as exc:   # du Toit needs a nonsingular Sigma_b
                refused[method] = exc
                print(f"  {method:<11} not applicable: {exc}")
                continue
            ms = (time.perf_counter() - began) * 1e3
            print(f"  {method:<11} loglik = {values[method]:.10f}   (first call {ms:.1f} ms)")
    finite = [v for v in values.values() if math.isfinite(v)]
    spread = max(finite) - min(finite) if finite else math.nan
    agree = (len(finite) == len(values) > 0
             and spread <= 1e-8 * max(1.0, abs(finite[0])))
    print(f"  methods agree: {'yes' if agree else 'NO'} ({len(values)} of {len(METHODS)} "
          f"evaluated; largest difference {spread:.3g})")
    print()

    def progress(method, row):
        print(f"  timed {method:<11} {row['ms']:10.3f} ms (mean of {row['repeats']})", flush=True)

    # the paper's five objectives, then the production engine: what goes beyond the paper
    functions = {name: method_function(name) for name in OBJECTIVES + ("engine",)}
    result = table1(data, moments, functions, repeat_scale=args.repeat_scale, progress=progress)
    print()
    print("Table 1 (mlmiss: Python/Numba on this machine; paper: R, Rosseel 2021)")
    print(format_table1(result))
    return 0 if agree else 1


def main(argv=None) -> int:
    """Entry point of the ``mlmiss`` script; returns the exit status: 0, 1 for an error
    (one line on stderr; the traceback with ``--debug``), 3 for a fit that did not
    converge."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "fit":
            return _run_fit(args)
        if args.command == "simulate":
            return _run_simulate(args)
        if args.command == "montecarlo":
            return _run_montecarlo(args)
        return _run_table1(args)
    except Exception as exc:  # every failure is one line for the user
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__   # one line
        print(f"mlmiss: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
