"""Monte Carlo studies described in a TOML file (``mlmiss montecarlo STUDY.toml``).

The schema (every path relative to the TOML file; unknown keys are errors)::

    replications = 200          # per design (required)
    seed = 2011                 # optional: drawn (and printed) when left out
    workers = 2                 # optional: default every core; 1 = in this process
    chunk_size = 5              # optional: replications per task

    [population]                # simulate() arguments shared by every design
    model_file = "population.lav"   # or model = '''...'''; default: the analysis model
    params = { t1 = 1.0 }       # population values by label (override the syntax)
    n_clusters = 60
    cluster_sizes = [4, 6, 8]   # an int or a list (cycled over the clusters)
    fixed_x = false
    [population.missing]        # see mlmiss.simulation.missing
    mcar_within = 0.1
    mar = { y2 = ["x1", -1.0, 1.0] }

    [analysis]
    model_file = "analysis.lav" # or model = '''...''' (required)
    fit_options = { fixed_x = false }   # sem() keyword arguments

    [designs.D1]                # optional: population overrides per design
    n_clusters = 60
    cluster_sizes = [4, 6, 8]

    [output]                    # optional
    results = "results.csv"     # the tidy table (default <study>_results.csv)
    summary = "summary.csv"     # the summary (default <study>_summary.csv)
    store = "study.parquet"     # resume from / keep finished replications
    plots = "plots"             # a directory for bias/coverage/SE-SD PNGs (matplotlib)
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import SimulationError

TOP_KEYS = {"replications", "seed", "workers", "chunk_size", "population", "analysis",
            "designs", "output"}
POPULATION_KEYS = {"model", "model_file", "params", "n_clusters", "cluster_sizes", "fixed_x",
                   "missing", "cluster"}
ANALYSIS_KEYS = {"model", "model_file", "fit_options"}
OUTPUT_KEYS = {"results", "summary", "store", "plots"}


def read_toml(path: Path) -> dict:
    """A TOML file as a dict (tomllib on Python 3.11+, else the tomli package)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:   # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise SimulationError("reading a study file needs Python 3.11 or the tomli "
                                  "package") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SimulationError(f"study file {str(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SimulationError(f"study file {str(path)!r} is not valid TOML ({exc})") from None


def load_study(path) -> dict:
    """The study of a TOML file: ``monte_carlo`` keyword arguments under ``"run"`` and
    the output paths under ``"output"`` (results, summary, plots; None when not
    wanted)."""
    path = Path(path)
    spec = read_toml(path)
    base = path.parent
    _known(spec, TOP_KEYS, f"study file {path.name}")
    if "replications" not in spec:
        raise SimulationError(f"study file {path.name}: 'replications' is required")
    analysis = spec.get("analysis") or {}
    _known(analysis, ANALYSIS_KEYS, "[analysis]")
    model = _model(analysis, base, "[analysis]")
    if model is None:
        raise SimulationError(f"study file {path.name}: [analysis] needs model or model_file")
    population = dict(spec.get("population") or {})
    _known(population, POPULATION_KEYS, "[population]")
    population_model = _model(population, base, "[population]")
    population.pop("model_file", None)
    if population_model is not None:
        population["model"] = population_model
    designs = spec.get("designs")
    for name, overrides in (designs or {}).items():
        _known(overrides, POPULATION_KEYS - {"model_file"}, f"[designs.{name}]")
    output = spec.get("output") or {}
    _known(output, OUTPUT_KEYS, "[output]")
    stem = path.stem

    def where(key, default):
        value = output.get(key, default)
        return None if value is None else base / value

    run = {"model": model, "generate": population, "replications": spec["replications"],
           "designs": designs, "fit_options": analysis.get("fit_options") or {},
           "seed": spec.get("seed"), "workers": spec.get("workers"),
           "chunk_size": spec.get("chunk_size"), "store": where("store", None)}
    return {"run": run, "output": {"results": where("results", f"{stem}_results.csv"),
                                   "summary": where("summary", f"{stem}_summary.csv"),
                                   "plots": where("plots", None)}}


def run_study(path, workers=None, progress=None, replications=None):
    """Run a study file and write its outputs; returns (MonteCarlo, [paths written]).
    ``workers``, ``replications``: override the file's."""
    from .montecarlo import monte_carlo

    study = load_study(path)
    run = study["run"]
    if workers is not None:
        run["workers"] = workers
    if replications is not None:
        run["replications"] = replications
    result = monte_carlo(**run, progress=progress)
    written = []
    out = study["output"]
    result.results.to_csv(out["results"], index=False)
    written.append(out["results"])
    result.summary().to_csv(out["summary"], index=False)
    written.append(out["summary"])
    if out["plots"] is not None:
        written += result.plot(out["plots"])
    return result, written


def _known(table, keys, where: str) -> None:
    if not isinstance(table, dict):
        raise SimulationError(f"{where} must be a table")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise SimulationError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(keys))}")


def _model(table: dict, base: Path, where: str):
    """The syntax of a table's ``model`` or ``model_file`` (not both), or None."""
    if "model" in table and "model_file" in table:
        raise SimulationError(f"{where}: give model or model_file, not both")
    if "model_file" in table:
        file = base / table["model_file"]
        try:
            return file.read_text()
        except OSError as exc:
            raise SimulationError(f"{where}: model_file {str(file)!r} cannot be read "
                                  f"({exc.strerror or exc})") from None
    return table.get("model")
