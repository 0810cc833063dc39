"""optimizer="em" under constraints: Bentler et al. (2011)'s augmented-Lagrangian EM must
reach the constrained maximum the default optimizer (SLSQP / reparametrization) finds,
with the constraints met, on lavaan's constraint cases and on Bentler's own model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmiss
from mlmiss.datasets import BENTLER2011_TRUE_VALUES, bentler2011_cluster_sizes, bentler2011_model
from mlmiss.errors import ConvergenceWarning
from mlmiss.estimation.constraints import ConstraintSet
from mlmiss.model import parameter_table

from conftest import LAVAAN_DIR

EXTRA = json.loads((Path(__file__).parent / "data" / "lavaan_extra" / "constraints.json")
                   .read_text())


def fit(model, df, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmiss.sem(model, df, cluster="cluster", fixed_x=False, **options)


@pytest.fixture(scope="module")
def demo():
    return pd.read_csv(LAVAAN_DIR / "demo_twolevel_missing.csv")


def _violation(fitted) -> float:
    return ConstraintSet(fitted.problem.partable).violation(fitted.theta)


@pytest.mark.parametrize("case", ["linear", "nonlinear", "ineq_active", "ineq_inactive",
                                  "ineq_active_general"])
def test_em_reaches_the_constrained_maximum_of_the_default_optimizer(demo, case):
    ref = EXTRA["cases"][case]
    em = fit(ref["model"], demo, optimizer="em")
    default = fit(ref["model"], demo)
    assert em.estimate.converged and default.estimate.converged
    assert em.estimate.optimizer == "em (augmented Lagrangian)"
    # observed: logl within 5e-11, theta within 4e-7
    assert em.loglik == pytest.approx(default.loglik, abs=1e-8)
    np.testing.assert_allclose(em.theta, default.theta, atol=5e-6)
    assert _violation(em) <= 1e-9
    # and lavaan's answer is not higher (the constraints met to 1e-8 there too)
    assert em.loglik >= ref["logl"] - 1e-6 * em.problem.data.n_obs
    # inference on the active set: the same SEs and df as the default fit
    se_em, se_default = em.parameter_estimates()["se"], default.parameter_estimates()["se"]
    np.testing.assert_allclose(se_em, se_default, rtol=1e-4)
    assert em.fit_measures()["df"] == default.fit_measures()["df"] == ref["df"]


def test_a_capped_em_says_it_did_not_converge(demo):
    model = EXTRA["cases"]["nonlinear"]["model"]
    with pytest.warns(ConvergenceWarning, match="em_iter_max = 3"):
        capped = mlmiss.sem(model, demo, cluster="cluster", fixed_x=False, optimizer="em",
                            em_iter_max=3)
    assert not capped.estimate.converged
    assert capped.estimate.iterations == 3


def test_constraint_hessians_are_the_second_derivatives():
    table = parameter_table(bentler2011_model(1))
    constraints = ConstraintSet(table)
    rows = table.table[table.table.free > 0].sort_values("free")
    index = {label: int(k) for k, label in enumerate(rows.label)}
    theta = np.random.default_rng(2).uniform(0.5, 2.0, size=table.npar)
    columns = constraints.involved(theta)
    assert sorted(columns) == sorted(index[k] for k in ("t1", "t2", "t3", "p1", "p2", "p3",
                                                       "p11", "p12"))
    hh, hg = constraints.hessians(theta, columns)
    assert hg.shape == (0, table.npar, table.npar)
    expected = np.zeros_like(hh)
    # 2 t1 + t2 - t3^2; p11 - 2 p12; p1^2 + 2 p2 - p3; t1^2 - p1 - p2
    expected[0, index["t3"], index["t3"]] = -2.0
    expected[2, index["p1"], index["p1"]] = 2.0
    expected[3, index["t1"], index["t1"]] = 2.0
    np.testing.assert_allclose(hh, expected, atol=1e-8)


@pytest.mark.parametrize("experiment, design", [(1, "D1"), (1, "D6"), (2, "D3")])
def test_bentlers_model_by_both_optimizers_to_the_same_maximum(experiment, design):
    """Their Figure 1 model with constraints (28) (nonlinear) or (29) (linear), on data
    drawn at the true values of their Table 1 / 2."""
    truth = BENTLER2011_TRUE_VALUES[experiment]
    df = mlmiss.simulate(bentler2011_model(experiment, constrained=False),
                         cluster_sizes=bentler2011_cluster_sizes(design), params=truth,
                         seed=11)
    model = bentler2011_model(experiment)
    em = fit(model, df, optimizer="em")
    default = fit(model, df)
    assert em.estimate.converged and default.estimate.converged
    # observed: logl within 3e-10, theta within 3e-7
    assert em.loglik == pytest.approx(default.loglik, abs=1e-8)
    np.testing.assert_allclose(em.theta, default.theta, atol=5e-6)
    assert _violation(em) <= 1e-9 and _violation(default) <= 1e-8
    # the estimates are near the truth (a few SEs)
    est = em.parameter_estimates()
    est = est[est["label"].isin(list(truth))]
    z = (est["est"] - est["label"].map(truth)) / est["se"]
    assert np.all(np.abs(z[np.isfinite(z)]) < 4.5)
