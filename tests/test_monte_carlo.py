"""mlmiss.monte_carlo: reproducible seeds wherever replications run (in-process, worker
processes, Dask), true values, failure recording, resuming from a store, the summary,
and the `montecarlo` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss.datasets import BENTLER2011_TRUE_VALUES, bentler2011_model
from mlmiss.errors import ModelSyntaxError, SimulationError
from mlmiss.simulation.replicate import RESULT_COLUMNS
from mlmiss.simulation.summary import summarize

POPULATION = """
level: 1
  fw =~ 1*y1 + 0.8*y2 + 0.6*y3 + 0.7*y4
  fw ~~ 1*fw
  y1 ~~ 0.5*y1
  y2 ~~ 0.5*y2
  y3 ~~ 0.5*y3
  y4 ~~ 0.5*y4
level: 2
  fb =~ 1*y1 + 0.7*y2 + 0.8*y3 + 0.6*y4
  fb ~~ 1*fb
  y1 ~~ 0.2*y1
  y2 ~~ 0.2*y2
  y3 ~~ 0.2*y3
  y4 ~~ 0.2*y4
  y1 ~ 1*1
"""
ANALYSIS = """
level: 1
  fw =~ y1 + a*y2 + y3 + y4
  y3 ~~ y4
level: 2
  fb =~ y1 + b*y2 + y3 + y4
diff := a - b
"""
GENERATE = {"model": POPULATION, "missing": {"mcar": 0.05}}
DESIGNS = {"small": {"n_clusters": 40, "cluster_sizes": 5},
           "mixed": {"n_clusters": 50, "cluster_sizes": [3, 6]}}
RUN = {"replications": 4, "designs": DESIGNS, "seed": 17, "progress": False}


def comparable(results: pd.DataFrame) -> pd.DataFrame:
    """The results without the timings, which no two runs share."""
    return results.drop(columns="seconds")


def assert_same_study(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """The same study run again: the same data and the same fits, equal to round-off.
    With a cold Numba cache the kernels a run uses depend on what was compiled before
    it (a specialization compiled in this process, or loaded from the cache, for the
    arrays' layout), and those round differently: estimates 5e-8 apart and iterations
    17 vs 19 on one replication were observed, in one process and across processes. So
    the numbers are compared to 1e-6 and the iteration counts are left out."""
    numbers = ["est", "se", "logl", "chisq", "pvalue"]
    left, right = comparable(left), comparable(right)
    pd.testing.assert_frame_equal(left.drop(columns=numbers + ["iterations"]),
                                  right.drop(columns=numbers + ["iterations"]))
    for column in numbers:
        np.testing.assert_allclose(left[column], right[column], rtol=1e-6, atol=1e-8,
                                   err_msg=column)


@pytest.fixture(scope="module")
def reference():
    return mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, **RUN)


def test_results_table_and_true_values(reference):
    results = reference.results
    assert list(results.columns) == RESULT_COLUMNS
    per_replication = 22   # 21 free parameters and one defined
    assert len(results) == 2 * 4 * per_replication
    assert results.groupby(["design", "replication"]).size().eq(per_replication).all()
    assert list(dict.fromkeys(results["design"])) == ["small", "mixed"]
    first = results[(results["design"] == "small") & (results["replication"] == 1)]
    true = {(r.lhs, r.op, r.rhs, r.level): r.true for r in first.itertuples()}
    assert true[("fw", "=~", "y2", 1)] == 0.8
    assert true[("fb", "=~", "y2", 2)] == 0.7
    assert true[("y3", "~~", "y4", 1)] == 0.0          # not in the population: 0
    assert true[("y1", "~1", "", 2)] == 1.0
    assert true[("diff", ":=", "a - b", 0)] == pytest.approx(0.1)
    assert results["converged"].all() and (results["error"] == "").all()
    assert (results["df"] > 0).all() and results["chisq"].notna().all()
    assert np.allclose(first.loc[first["op"] == ":=", "est"].iloc[0],
                       first.loc[first["label"] == "a", "est"].iloc[0]
                       - first.loc[first["label"] == "b", "est"].iloc[0])


def test_same_seed_same_results_other_seed_other_results(reference):
    again = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, chunk_size=3, **RUN)
    assert_same_study(again.results, reference.results)
    other = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, **{**RUN, "seed": 18})
    assert not np.allclose(other.results["est"], reference.results["est"])


def test_worker_processes_give_the_same_results(reference):
    pooled = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=2, chunk_size=2, **RUN)
    assert_same_study(pooled.results, reference.results)


def test_dask_gives_the_same_results(reference):
    distributed = pytest.importorskip("dask.distributed")
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = mlmiss.monte_carlo(ANALYSIS, GENERATE, client=client, **RUN)
    assert_same_study(on_dask.results, reference.results)


def test_resume_from_store(tmp_path, reference):
    store = tmp_path / "study.parquet"
    first = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, store=store,
                               **{**RUN, "replications": 2})
    assert (first.n_run, first.n_stored) == (4, 0) and store.exists()
    resumed = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, store=store, **RUN)
    assert (resumed.n_run, resumed.n_stored) == (4, 4)
    assert_same_study(resumed.results, reference.results)
    # seed None takes the store's; nothing is left to run
    done = mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, store=store,
                              **{**RUN, "seed": None})
    assert (done.n_run, done.n_stored, done.seed) == (0, 8, 17)
    pd.testing.assert_frame_equal(done.results, resumed.results)
    with pytest.raises(SimulationError, match="seed 17, not 99"):
        mlmiss.monte_carlo(ANALYSIS, GENERATE, workers=1, store=store, **{**RUN, "seed": 99})
    with pytest.raises(SimulationError, match="other settings"):
        mlmiss.monte_carlo(ANALYSIS, {**GENERATE, "missing": None}, workers=1, store=store,
                           **RUN)


def flaky_generate(rng, design):
    """A generate function that fails on even replications' draws of one design."""
    if design["name"] == "flaky" and rng.random() < 0.5:
        raise RuntimeError("no data today")
    return mlmiss.simulate(POPULATION, n_clusters=30, cluster_sizes=5, seed=rng)


def test_failures_are_recorded_not_raised():
    no_y4 = POPULATION.replace(" + 0.7*y4", "").replace(" + 0.6*y4", "")
    no_y4 = "\n".join(line for line in no_y4.splitlines() if "y4 ~~" not in line)
    study = mlmiss.monte_carlo(ANALYSIS, GENERATE, replications=3, workers=1, seed=1,
                               designs={"ok": {"n_clusters": 40, "cluster_sizes": 5},
                                        "broken": {"model": no_y4, "n_clusters": 40,
                                                   "cluster_sizes": 5}}, progress=False)
    failures = study.failures()
    assert failures["design"].eq("broken").all() and len(failures) == 3
    assert failures["error"].str.contains("ModelDataError").all()
    assert failures["error"].str.contains("y4").all()
    summary = study.summary().set_index("design")
    assert (summary.loc["ok", "n_used"] == 3).all()
    assert (summary.loc["broken", "n_used"] == 0).all()
    assert (summary.loc["broken", "converged_rate"] == 0).all()
    # a generate function that raises, and fits that stop before converging (L-BFGS-B:
    # from the first stage a trust-region step or two may already converge)
    flaky = mlmiss.monte_carlo(ANALYSIS, flaky_generate, replications=6, workers=1, seed=2,
                               designs={"flaky": {}},
                               fit_options={"maxiter": 2, "optimizer": "L-BFGS-B"},
                               progress=False)
    reps = flaky.failures()
    raised = reps["error"].str.startswith("generate: RuntimeError: no data today")
    assert 0 < raised.sum() < 6
    unconverged = reps[~raised]
    assert (unconverged["error"] == "").all() and len(unconverged) == 6 - raised.sum()
    assert unconverged["warnings"].str.contains("ConvergenceWarning").all()
    assert flaky.results["true"].isna().all()       # no population, no true values


def test_bad_studies_are_refused_before_running():
    with pytest.raises(ModelSyntaxError):
        mlmiss.monte_carlo("level: 1\n fw =~ \nlevel: 2\n fb =~ y1", GENERATE, replications=2)
    with pytest.raises(SimulationError, match="'n_cluster' is not an argument"):
        mlmiss.monte_carlo(ANALYSIS, GENERATE, replications=2, designs={"D": {"n_cluster": 3}})
    with pytest.raises(SimulationError, match="design 'D'.*outside"):
        mlmiss.monte_carlo(ANALYSIS, GENERATE, replications=2,
                           designs={"D": {"n_clusters": 3, "cluster_sizes": 2,
                                          "missing": {"mcar": 1.5}}})
    with pytest.raises(SimulationError, match="replications"):
        mlmiss.monte_carlo(ANALYSIS, GENERATE, replications=0)
    with pytest.raises(SimulationError, match="module level"):
        mlmiss.monte_carlo(ANALYSIS, lambda rng, design: None, replications=4, workers=2,
                           designs={"A": {}, "B": {}}, chunk_size=1, progress=False)


def test_summary_by_hand():
    rows = []
    estimates = {1: (1.1, 0.1, True, 0.01), 2: (0.8, 0.1, True, 0.5), 3: (1.3, 0.2, True, 0.2),
                 4: (9.0, 0.1, False, 0.001)}
    for rep, (est, se, converged, p) in estimates.items():
        rows.append({"design": "D", "replication": rep, "lhs": "f", "op": "=~", "rhs": "y2",
                     "label": "", "level": 1, "true": 1.0, "est": est, "se": se,
                     "converged": converged, "chisq": 3.0 + rep, "pvalue": p,
                     "chisq_scaled": np.nan, "pvalue_scaled": np.nan, "error": ""})
    summary = summarize(pd.DataFrame(rows)).iloc[0]
    used = np.array([1.1, 0.8, 1.3])
    assert summary["n_used"] == 3 and summary["n_replications"] == 4
    assert summary["average"] == pytest.approx(used.mean())
    assert summary["bias"] == pytest.approx(used.mean() - 1.0)
    assert summary["sd"] == pytest.approx(used.std(ddof=1))
    assert summary["mean_se"] == pytest.approx(0.4 / 3)
    assert summary["se_sd"] == pytest.approx((0.4 / 3) / used.std(ddof=1))
    assert summary["mse"] == pytest.approx(np.mean((used - 1.0) ** 2))
    assert summary["coverage"] == pytest.approx(2 / 3)    # 1.1 +- 0.196 and 1.3 +- 0.392
    assert summary["sig"] == pytest.approx(1.0)
    assert summary["chisq_reject"] == pytest.approx(1 / 3)
    assert summary["mean_chisq"] == pytest.approx(5.0)
    assert summary["converged_rate"] == pytest.approx(0.75)
    everything = summarize(pd.DataFrame(rows), converged_only=False).iloc[0]
    assert everything["n_used"] == 4


BENTLER = bentler2011_model(1)
BENTLER_TRUE = BENTLER2011_TRUE_VALUES[1]


def test_bentler_2011_design_d1():
    """The constrained model of Bentler et al. (2011), population by params."""
    study = mlmiss.monte_carlo(BENTLER, {"params": BENTLER_TRUE}, replications=2, seed=2011,
                               designs={"D1": {"n_clusters": 60, "cluster_sizes": [4, 6, 8]}},
                               fit_options={"fixed_x": False}, workers=1, progress=False)
    results = study.results
    assert results["converged"].all()
    assert (results["df"] == 18).all()        # 37 moments - (23 parameters - 4 constraints)
    true = results.drop_duplicates("label").set_index("label")["true"]
    assert true.to_dict() == pytest.approx(BENTLER_TRUE)
    est = results.set_index(["replication", "label"])["est"]
    for rep in (1, 2):   # the nonlinear constraints hold at the estimates
        assert 2 * est[rep, "t1"] + est[rep, "t2"] == pytest.approx(est[rep, "t3"] ** 2)


STUDY = """
replications = 2
seed = 5
workers = 1

[population]
model_file = "population.lav"
missing = {{ mcar_within = 0.1 }}

[analysis]
model = '''{analysis}'''

[designs.A]
n_clusters = 40
cluster_sizes = 5

[designs.B]
n_clusters = 50
cluster_sizes = [3, 6]

[output]
results = "out/results.csv"
summary = "out/summary.csv"
{plots}
"""


def test_montecarlo_command(tmp_path, capsys):
    from mlmiss.cli import main

    (tmp_path / "population.lav").write_text(POPULATION)
    (tmp_path / "out").mkdir()
    try:
        import matplotlib  # noqa: F401
        plots = 'plots = "out/plots"'
    except ImportError:
        plots = ""
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(analysis=ANALYSIS, plots=plots))
    assert main(["montecarlo", str(study), "--no-progress"]) == 0
    assert "written:" in capsys.readouterr().out
    results = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False,
                          na_values=[""])
    expected = mlmiss.monte_carlo(ANALYSIS, {"model": POPULATION,
                                             "missing": {"mcar_within": 0.1}},
                                  replications=2, seed=5, workers=1, progress=False,
                                  designs={"A": {"n_clusters": 40, "cluster_sizes": 5},
                                           "B": {"n_clusters": 50, "cluster_sizes": [3, 6]}})
    np.testing.assert_allclose(results["est"], expected.results["est"], rtol=1e-12)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == 2 * 22 and set(summary["design"]) == {"A", "B"}
    if plots:
        for name in ("bias.png", "coverage.png", "se_sd.png"):
            assert (tmp_path / "out" / "plots" / name).stat().st_size > 1000
    study.write_text("replications = 2\n[analysis]\nmodel = 'x'\n[populaton]\n")
    assert main(["montecarlo", str(study)]) == 1
    assert "unknown key(s) populaton" in capsys.readouterr().err
