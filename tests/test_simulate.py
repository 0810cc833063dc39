"""mlmiss.simulate: population values, moments of the drawn data, recovery by sem(),
cluster sizes, missing-data mechanisms, seeds, errors, and the `simulate` command."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import mlmiss
from mlmiss.errors import ModelWarning, SimulationError
from mlmiss.simulation import population
from mlmiss.simulation.missing import intercept_for_rate
from mlmiss.simulation.population import psd_root

#: x1 within-only (with a mean), y1-y3 "both", z1 between-only; every value given
POPULATION = """
level: 1
  fw =~ 1*y1 + 0.8*y2 + 0.6*y3
  fw ~ 0.5*x1
  fw ~~ 0.8*fw
  y1 ~~ 0.5*y1
  y2 ~~ 0.4*y2
  y3 ~~ 0.6*y3
  x1 ~~ 1.5*x1
  x1 ~ 0.5*1
level: 2
  fb =~ 1*y1 + 0.7*y2 + 0.5*y3
  fb ~ 0.6*z1
  fb ~~ 0.4*fb
  y1 ~~ 0.2*y1
  y2 ~~ 0.1*y2
  y3 ~~ 0.1*y3
  y1 ~ 1*1
  y2 ~ -1*1
  z1 ~ 2*1
  z1 ~~ 0.7*z1
"""
#: the same structure with every parameter free
FREE = """
level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1
level: 2
  fb =~ y1 + y2 + y3
  fb ~ z1
"""
SMALL = """
level: 1
  fw =~ y1 + y2
level: 2
  fb =~ y1 + y2
  z1 ~~ z1
"""


def sample_moments(df, y, z, size):
    """Within covariance (cluster-mean-centred), between covariance of the cluster means
    and z minus Sigma_w / size on the y block, and the grand means (equal sizes)."""
    groups = df.groupby("cluster")
    means = groups[y].mean()
    centred = (df[y] - groups[y].transform("mean")).to_numpy()
    n, j = len(df), len(means)
    sw = centred.T @ centred / (n - j)
    level2 = np.column_stack([means.to_numpy(), groups[z].first().to_numpy()])
    sb = np.cov(level2, rowvar=False)
    p = len(y)
    sb[:p, :p] -= sw / size
    return sw, sb, level2.mean(axis=0)


def test_population_values_follow_the_syntax_params_and_defaults():
    model = """
    level: 1
      f =~ y1 + start(0.7)*y2 + 0.9*y3
      y1 ~ x1
    level: 2
      fb =~ y1 + b2*y2 + y3
    """
    table = population(model, params={"b2": 0.3, ("y1", "~~", "y1", 2): 0.05}).table()
    value = {(r.lhs, r.op, r.rhs, r.level): r.value for r in table.itertuples()}
    assert value[("f", "=~", "y2", 1)] == 0.7           # start()
    assert value[("f", "=~", "y3", 1)] == 0.9           # fixed in the syntax
    assert value[("fb", "=~", "y2", 2)] == 0.3          # params by label
    assert value[("y1", "~~", "y1", 2)] == 0.05         # params by (lhs, op, rhs, level)
    assert value[("y1", "~~", "y1", 1)] == 1.0          # default residual variance
    assert value[("f", "~~", "f", 1)] == 1.0            # default latent variance
    assert value[("y1", "~", "x1", 1)] == 0.0           # default regression
    assert value[("y2", "~1", "", 2)] == 0.0            # default mean
    # a theta vector sets the free parameters in order
    pop = population(SMALL)
    theta = np.arange(1, pop.partable.npar + 1) / 10
    free = pop.partable.table["free"].to_numpy()
    values = population(SMALL, params=theta).values
    np.testing.assert_allclose(values[free > 0], theta[free[free > 0] - 1])


def test_bentler_population_moments():
    """The Bentler et al. (2011) population: E(y) = Lambda_b (p11 mu1 + p12 mu2)."""
    model = """
    level: 1
      fw =~ 1*y1 + 1*y2 + 2*y3 + 2*y4
      fw ~~ 0.16*fw
      y1 ~~ 0.25*y1
      y2 ~~ 0.25*y2
      y3 ~~ 0.25*y3
      y4 ~~ 0.25*y4
    level: 2
      fb =~ 1*y1 + 0.5*y2 + 0.5*y3 + 1.25*y4
      y1 ~~ 0.36*y1
      y2 ~~ 0.36*y2
      y3 ~~ 0.36*y3
      y4 ~~ 0.36*y4
      fb ~ 1.0*z1 + 0.5*z2
      fb ~~ 0.16*fb
      z1 ~~ 0.49*z1
      z1 ~~ 0.3*z2
      z2 ~~ 0.49*z2
      z1 ~ 1*1
      z2 ~ 1*1
      y1 ~ 0*1
      y2 ~ 0*1
      y3 ~ 0*1
      y4 ~ 0*1
      fb ~ 0*1
    """
    m = population(model).moments
    loadings = np.array([1.0, 0.5, 0.5, 1.25])
    np.testing.assert_allclose(m.mu_y, loadings * 1.5)
    var_fb = 0.16 + 0.49 + 0.25 * 0.49 + 2 * 0.5 * 0.3
    np.testing.assert_allclose(m.sigma_b, var_fb * np.outer(loadings, loadings) + 0.36 * np.eye(4))
    df = mlmiss.simulate(model, n_clusters=60, cluster_sizes=[4, 6, 8], seed=1)
    assert list(df.columns) == ["cluster", "y1", "y2", "y3", "y4", "z1", "z2"]
    assert len(df) == 20 * (4 + 6 + 8)
    assert (df.groupby("cluster")[["z1", "z2"]].nunique() == 1).all().all()


def test_large_sample_moments_match_the_population():
    pop = population(POPULATION)
    m = pop.moments
    df = mlmiss.simulate(POPULATION, n_clusters=3000, cluster_sizes=4, seed=11)
    assert list(df.columns) == ["cluster", "y1", "y2", "y3", "x1", "z1"]
    sw, sb, means = sample_moments(df, pop.y_names, pop.z_names, 4)
    implied_b = np.block([[m.sigma_b, m.sigma_yz], [m.sigma_yz.T, m.sigma_zz]])
    # largest deviations seen over 5 seeds: 0.057 (within), 0.038 (between), 0.029 (means)
    assert np.abs(sw - m.sigma_w).max() < 0.15
    assert np.abs(sb - implied_b).max() < 0.12
    assert np.abs(means - np.concatenate([m.mu_y, m.mu_z])).max() < 0.08
    # the within-only x1 has no between variance: its cluster means vary as Sigma_w / n
    assert abs(sb[3, 3]) < 0.06


def test_fit_recovers_the_population_values():
    from mlmiss.simulation.truth import analysis_rows, true_values

    rows = analysis_rows(FREE, {"fixed_x": False})
    truth = true_values(rows, population(POPULATION))
    df = mlmiss.simulate(POPULATION, n_clusters=150, cluster_sizes=[4, 6, 8], seed=3,
                         missing={"mcar": 0.1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mlmiss.sem(FREE, df, cluster="cluster", fixed_x=False)
    assert fit.converged
    table = fit.partable.table
    estimates = fit.parameter_estimates().iloc[:len(table)][table["free"].to_numpy() > 0]
    z = (estimates["est"].to_numpy() - truth) / estimates["se"].to_numpy()
    assert np.all(np.isfinite(z))
    assert np.abs(z).max() < 4.0, estimates.assign(true=truth, z=z)


def test_singular_between_covariance_is_drawn():
    # no between residuals: the level-2 vector (y1, y2, y3, z1) has rank 2 (fb, z1)
    model = (POPULATION.replace("y1 ~~ 0.2*y1", "y1 ~~ 0*y1")
             .replace("y2 ~~ 0.1*y2", "y2 ~~ 0*y2").replace("y3 ~~ 0.1*y3", "y3 ~~ 0*y3"))
    pop = population(model)
    _, cov = pop.between_mean_cov()
    assert np.sum(np.linalg.eigvalsh(cov) > 1e-10) == 2      # singular indeed
    root = psd_root(cov)
    np.testing.assert_allclose(root @ root.T, cov, atol=1e-12)
    df = mlmiss.simulate(model, n_clusters=400, cluster_sizes=3, seed=0)
    assert df.notna().all().all()
    # the between parts are exact multiples of fb: y2 - 0.7 y1 has no between variance
    means = df.groupby("cluster")[["y1", "y2"]].mean()
    contrast = means["y2"] - 0.7 * means["y1"]
    within = pop.moments.sigma_w
    var_within = (within[1, 1] - 1.4 * within[0, 1] + 0.49 * within[0, 0]) / 3
    assert abs(contrast.var() / var_within - 1.0) < 0.25


def test_a_covariance_that_is_not_psd_is_an_error():
    with pytest.raises(SimulationError, match="not positive semidefinite"):
        mlmiss.simulate(POPULATION.replace("y2 ~~ 0.1*y2", "y2 ~~ -0.5*y2"), n_clusters=5,
                        cluster_sizes=2, seed=0)


def test_same_seed_same_data_and_missingness_leaves_values_alone():
    a = mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=7)
    b = mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=8)
    assert not np.allclose(a["y1"], c["y1"])
    sequence = np.random.SeedSequence(7)   # a SeedSequence may be passed again
    pd.testing.assert_frame_equal(
        mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=sequence),
        mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=sequence))
    holed = mlmiss.simulate(POPULATION, n_clusters=20, cluster_sizes=[3, 5], seed=7,
                            missing={"mcar": 0.3})
    observed = holed.notna()
    assert 0 < (~observed).sum().sum()
    pd.testing.assert_frame_equal(holed[observed], a[observed])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.one_of(st.integers(1, 9), st.lists(st.integers(1, 9), min_size=1,
                                                                  max_size=5)))
def test_cluster_size_specs_give_the_row_counts(n_clusters, sizes):
    df = mlmiss.simulate(SMALL, n_clusters=n_clusters, cluster_sizes=sizes, seed=0)
    expected = np.resize(np.atleast_1d(sizes), n_clusters)
    counts = df.groupby("cluster").size()
    assert counts.index.tolist() == list(range(1, n_clusters + 1))
    assert counts.tolist() == expected.tolist()
    assert len(df) == expected.sum()


def test_drawn_cluster_sizes():
    from scipy import stats

    df = mlmiss.simulate(SMALL, n_clusters=400, cluster_sizes=stats.poisson(3), seed=1)
    sizes = df.groupby("cluster").size()
    assert sizes.min() >= 1 and len(sizes) == 400
    assert abs(sizes.mean() - 3.0) < 0.35      # poisson(3) raised to >= 1: mean ~3.15
    df = mlmiss.simulate(SMALL, n_clusters=50, cluster_sizes=lambda rng: rng.integers(2, 5), seed=1)
    assert set(df.groupby("cluster").size()) <= {2, 3, 4}
    one = mlmiss.simulate(SMALL, cluster_sizes=[2, 7, 1], seed=1)   # a list without J
    assert one.groupby("cluster").size().tolist() == [2, 7, 1]


def test_missing_rates_per_level_and_whole_clusters():
    df = mlmiss.simulate(POPULATION, n_clusters=2000, cluster_sizes=5, seed=5,
                         missing={"mcar_within": 0.2, "mcar_between": 0.3,
                                  "mcar": {"y3": 0.05}})
    level1 = df[["y1", "y2", "x1"]].isna().to_numpy().mean()
    assert abs(level1 - 0.2) < 0.02
    assert abs(df["y3"].isna().mean() - 0.05) < 0.015
    per_cluster = df.groupby("cluster")["z1"]
    assert (per_cluster.apply(lambda s: s.isna().nunique()) == 1).all()   # whole clusters
    assert abs(per_cluster.first().isna().mean() - 0.3) < 0.05


def test_mar_rule_empty_rows_and_empty_clusters():
    spec = {"mar": {"y2": {"on": "x1", "slope": 1.5, "rate": 0.25},
                    "y1": ("z1", -8.0, 3.0)},
            "empty_rows": 0.1, "empty_clusters": 0.2}
    df = mlmiss.simulate(POPULATION, n_clusters=2000, cluster_sizes=5, seed=9, missing=spec)
    complete = mlmiss.simulate(POPULATION, n_clusters=2000, cluster_sizes=5, seed=9)
    empty = df[["y1", "y2", "y3", "x1"]].isna().all(axis=1)
    assert abs(empty.mean() - 0.1) < 0.015
    kept = ~empty.to_numpy()
    # the solved intercept gives the requested rate; missingness rises with x1
    y2_missing = df["y2"].isna().to_numpy()[kept]
    assert abs(y2_missing.mean() - 0.25) < 0.02
    x1 = complete["x1"].to_numpy()[kept]
    assert y2_missing[x1 > np.median(x1)].mean() > 2 * y2_missing[x1 <= np.median(x1)].mean()
    # y1 depends on its cluster's z1 (mean 2, sd 0.84): logistic(-8 + 3 z1)
    y1_missing = df["y1"].isna().to_numpy()[kept]
    z1 = complete["z1"].to_numpy()[kept]
    high, low = y1_missing[z1 > 2.5].mean(), y1_missing[z1 < 1.5].mean()
    assert high > 0.6 and low < 0.2
    z_missing = df.groupby("cluster")["z1"].first().isna().mean()
    assert abs(z_missing - 0.2) < 0.04
    # the solved intercept: E[logistic(a + b x)] = rate under N(mean, var)
    a = intercept_for_rate(0.3, 2.0, 1.0, 0.5)
    x = np.random.default_rng(0).normal(1.0, np.sqrt(0.5), 400_000)
    assert abs(np.mean(1 / (1 + np.exp(-(a + 2.0 * x)))) - 0.3) < 0.003


@pytest.mark.parametrize("kwargs, message", [
    ({"missing": {"mcar": {"y9": 0.1}}}, "'y9' is not an observed variable"),
    ({"missing": {"mcar_within": 1.0}}, r"outside \[0, 1\)"),
    ({"missing": {"mcar": -0.1}}, r"outside \[0, 1\)"),
    ({"missing": {"mcra": 0.1}}, "unknown key"),
    ({"missing": {"mar": {"z1": ("x1", 0.0, 1.0)}}}, "between-only variables only"),
    ({"missing": {"mar": {"y1": ("x1", 0.0)}}}, r"give \(on, intercept, slope\)"),
    ({"params": {"nope": 1.0}}, "'nope', which is neither a label"),
    ({"params": [1.0, 2.0]}, "one value per free parameter"),
    ({"cluster_sizes": 0}, "not a cluster size"),
    ({"cluster_sizes": [3, 2.5]}, "not a cluster size"),
    ({"n_clusters": 0}, "at least 1"),
    ({"cluster_sizes": None}, "needs cluster_sizes"),
])
def test_bad_specifications_name_the_problem(kwargs, message):
    arguments = {"n_clusters": 10, "cluster_sizes": 3, "seed": 0, **kwargs}
    with pytest.raises(SimulationError, match=message):
        mlmiss.simulate(POPULATION, **arguments)


def test_population_values_that_break_a_constraint_warn():
    model = SMALL.replace("fw =~ y1 + y2", "fw =~ y1 + a*y2") + "a == 2\n"
    with pytest.warns(ModelWarning, match="do not meet the constraint 'a == 2'"):
        population(model, params={"a": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        population(model, params={"a": 2.0})


def test_simulate_command(tmp_path):
    model = tmp_path / "population.lav"
    model.write_text(POPULATION)
    out = tmp_path / "data.csv"
    run = subprocess.run([sys.executable, "-m", "mlmiss", "simulate", str(model), "--clusters",
                          "12", "--sizes", "4,6,8", "--seed", "3", "--mcar", "0.1",
                          "--output", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    df = pd.read_csv(out)
    expected = mlmiss.simulate(POPULATION, n_clusters=12, cluster_sizes=[4, 6, 8], seed=3,
                               missing={"mcar": 0.1})
    pd.testing.assert_frame_equal(df, expected, check_exact=False, rtol=1e-12)
    bad = subprocess.run([sys.executable, "-m", "mlmiss", "simulate", str(model), "--sizes",
                          "4", "--mcar", "2", "--output", str(out)], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "outside [0, 1)" in bad.stderr
