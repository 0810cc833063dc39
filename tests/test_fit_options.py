"""sem()'s options and the fit's outputs beyond the estimates: the quasi-Newton
optimizer, start values, the summary, warm-up, thread counts, and standard errors where
the information cannot be trusted."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmiss
from conftest import LAVAAN_DIR, load_case
from mlmiss.likelihood.information import hessian_from_gradient


@pytest.fixture(scope="module")
def missing_case():
    ref, _ = load_case("demo_twolevel_missing")
    return ref, pd.read_csv(LAVAAN_DIR / ref["case"]["data"])


def lavaan_theta(fit, ref):
    return fit.model.theta_from_estimates(ref["fit"]["estimates"])


def test_lbfgs_reaches_lavaan(missing_case):
    ref, df = missing_case
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", optimizer="L-BFGS-B", fixed_x=False)
    assert fit.converged and fit.optimizer == "L-BFGS-B"
    assert fit.loglik >= ref["fit"]["loglik"] - 1e-4
    theirs = pd.DataFrame(ref["fit"]["estimates"])["est"].to_numpy()
    ours = fit.parameter_estimates(se=False)["est"].to_numpy()
    assert np.max(np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs))) <= 2e-3


def test_start_values_are_used(missing_case, lavaan_fit):
    """One iteration is enough from the optimum, and not enough from the default
    start (the model fitted to the levels' sample moments: 0.13 below the maximum
    after one iteration)."""
    ref, df = missing_case
    _, default = lavaan_fit("demo_twolevel_missing")
    fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", start=default.theta, maxiter=1, fixed_x=False)
    assert fit.converged
    assert fit.loglik == pytest.approx(default.loglik, abs=1e-8)
    with pytest.warns(mlmiss.ConvergenceWarning):
        cold = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", maxiter=1, fixed_x=False)
    assert not cold.converged and cold.loglik < default.loglik - 0.01
    # lavaan's estimates, read into theta, are a fine start too
    warm = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", start=lavaan_theta(default, ref), fixed_x=False)
    assert warm.converged and warm.loglik == pytest.approx(default.loglik, abs=1e-6)
    with pytest.raises(ValueError, match="34 free parameters"):
        mlmiss.sem(ref["case"]["model"], df, cluster="cluster", start=default.theta[:-1], fixed_x=False)


def test_summary_reports_the_fit(lavaan_fit, capsys):
    ref, fit = lavaan_fit("demo_twolevel_missing")
    text = fit.summary()
    # returned, not printed: the prompt shows it once, as itself
    assert capsys.readouterr().out == "" and repr(text) == str(text)
    assert "ended normally" in text and "Number of clusters [cluster]" in text
    assert "Level 1 [within]:" in text and "Level 2 [cluster]:" in text
    line = next(s for s in text.splitlines() if s.strip().startswith("Test statistic"))
    assert float(line.split()[-1]) == pytest.approx(ref["fit"]["fit_measures"]["chisq"], abs=5e-3)
    short = fit.summary(fit_measures=False)
    assert "Test statistic" not in short and "Latent Variables:" in short


def test_warmup_compiles_and_runs():
    out = subprocess.run([sys.executable, "-m", "mlmiss.warmup"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mlmiss kernels ready")


THREADS_SCRIPT = """
import json, sys
import numpy as np, pandas as pd, mlmiss
ref = json.load(open(sys.argv[1]))
df = pd.read_csv(sys.argv[2])
m = ref["start"]["moments"]
data = mlmiss.TwoLevelData.from_frame(df, "cluster", y=m["y_names"], z=m["z_names"])
moments = mlmiss.Moments.from_dict(m)
value, g = mlmiss.loglik_and_gradient(data, moments)
fit = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False)
se = fit.parameter_estimates()["se"].tolist()
print(json.dumps({"loglik": value, "gradient": g.sigma_w.ravel().tolist(),
                  "theta": fit.theta.tolist(), "fit": fit.loglik, "se": se}))
"""


def test_results_do_not_depend_on_thread_counts():
    """The kernels run on one thread and numpy's BLAS is held to one where they alternate,
    so the machine's thread settings change nothing, to the last bit."""
    runs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT,
                              str(LAVAAN_DIR / "demo_twolevel_missing.json"),
                              str(LAVAAN_DIR / "demo_twolevel_missing.csv")],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]


# ---------------------------------------------------------------- the information matrix

def test_one_sided_differences_at_the_edge():
    """A step that leaves the admissible region gives no gradient: that column comes
    from the other side, never from a made-up zero gradient."""
    def gradient(theta):   # of -(x^2 + x y + 2 y^2), defined for x >= 1 only
        x, y = theta
        if x < 1.0:
            return None
        return np.array([-2 * x - y, -x - 4 * y])

    exact = np.array([[-2.0, -1.0], [-1.0, -4.0]])
    np.testing.assert_allclose(hessian_from_gradient(gradient, np.array([1.0, 0.5])), exact,
                               atol=1e-6)
    np.testing.assert_allclose(hessian_from_gradient(gradient, np.array([1.0, 0.5]),
                                                     central=False), exact, atol=1e-4)

    def nowhere(theta):    # admissible only at theta itself
        return np.zeros(2) if np.all(theta == 1.0) else None

    h = hessian_from_gradient(nowhere, np.array([1.0, 1.0]))
    assert np.all(np.isnan(h))


def test_standard_errors_near_the_edge(lavaan_fit):
    """The covariate x1's variance set just above zero (its covariances at zero): a
    step of 1e-6 below it is inadmissible, which the analytic information does not need
    (before it, the column was a forward difference). It must match central differences
    at a step the edge allows."""
    ref, fit = lavaan_fit("demo_twolevel_missing")
    table = fit.partable.table

    def index(lhs, rhs):
        row = table[(table.op == "~~") & (table.lhs == lhs) & (table.rhs == rhs) & (table.level == 1)]
        return int(row["free"].iloc[0]) - 1

    theta = fit.theta.copy()
    theta[[index("x1", "x2"), index("x1", "x3")]] = 0.0
    index = index("x1", "x1")
    theta[index] = 1e-7   # sigma_w stays positive definite; a 1e-6 step down does not
    problem = fit.problem
    assert problem.gradient(theta) is not None
    down = theta.copy()
    down[index] -= 1e-6
    assert problem.gradient(down) is None
    from mlmiss.inference.vcov import observed_information

    info = observed_information(problem, theta)
    assert np.all(np.isfinite(info))
    step = 1e-11
    up, down = theta.copy(), theta.copy()
    up[index] += step
    down[index] -= step
    central = -(problem.gradient(up) - problem.gradient(down)) / (2 * step)
    np.testing.assert_allclose(info[:, index], central, rtol=1e-4,
                               atol=1e-4 * np.max(np.abs(central)))


def test_singular_information_warns(missing_case):
    """A model that is not identified (the first loading freed with the factor variance
    free, lavaan's classic mistake): lavaan warns, so do we."""
    ref, df = missing_case
    model = ref["case"]["model"].replace("fw =~ y1", "fw =~ NA*y1")
    with pytest.warns(mlmiss.ConvergenceWarning, match="singular.*not be identified.*fw =~ y1"):
        fit = mlmiss.sem(model, df, cluster="cluster", fixed_x=False)
    assert not fit.converged and "singular" in fit.message
    with pytest.warns(mlmiss.InformationWarning, match="singular.*not be identified"):
        fit.parameter_estimates()


def test_identified_models_do_not_warn(lavaan_fit):
    _, fit = lavaan_fit("paper_like")
    with warnings.catch_warnings():
        warnings.simplefilter("error", mlmiss.InformationWarning)
        fit.vcov()


# ---------------------------------------------------------------- lavaan's option names
def test_std_lv_is_the_same_model_scaled_by_variances(missing_case):
    ref, df = missing_case
    default = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False)
    std = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_x=False, std_lv=True)
    assert std.converged and std.npar == default.npar
    assert std.loglik == pytest.approx(default.loglik, abs=1e-6)
    est = std.parameter_estimates()
    variances = est[(est.op == "~~") & est.lhs.isin(["fw", "fb"]) & (est.lhs == est.rhs)]
    assert (variances.est == 1.0).all() and (variances.se == 0.0).all()
    loadings = est[est.op == "=~"]
    assert (loadings.se > 0).all()
    # the first loading of the std_lv fit is the default fit's factor standard deviation
    d = default.parameter_estimates()
    psi_fb = float(d[(d.lhs == "fb") & (d.op == "~~") & (d.rhs == "fb")].est.iloc[0])
    first = float(loadings[(loadings.lhs == "fb") & (loadings.rhs == "y1")].est.iloc[0])
    assert abs(first) == pytest.approx(np.sqrt(psi_fb), rel=1e-4)


def test_orthogonal_fixes_the_latent_covariances_the_defaults_add():
    model = """
level: 1
  f1 =~ y1 + y2 + y3
  f2 =~ y4 + y5 + y6
level: 2
  g1 =~ y1 + y2 + y3
  g2 =~ y4 + y5 + y6
"""
    table = mlmiss.model.parameter_table(model, orthogonal=True).table
    covs = table[(table.op == "~~") & (table.lhs != table.rhs)]
    assert len(covs) == 2 and (covs.free == 0).all() and (covs.value == 0).all()
    written = mlmiss.model.parameter_table(model + "  g1 ~~ g2\n", orthogonal=True).table
    row = written[(written.lhs == "g1") & (written.op == "~~") & (written.rhs == "g2")]
    assert int(row.free.iloc[0]) > 0        # a covariance the syntax writes stays free


def test_dotted_lavaan_names_and_unknown_options(missing_case):
    ref, df = missing_case
    named = mlmiss.sem(ref["case"]["model"], df, cluster="cluster", **{"fixed.x": False})
    assert named.fixed_x is False and named.nobs == 2500
    assert mlmiss.sem(ref["case"]["model"], df, cluster="cluster").nobs < 2500  # fixed.x drops
    with pytest.raises(TypeError, match="'fixed_y'"):
        mlmiss.sem(ref["case"]["model"], df, cluster="cluster", fixed_y=True)
    with pytest.raises(ValueError, match="estimator='WLSMV'"):
        mlmiss.sem(ref["case"]["model"], df, cluster="cluster", estimator="WLSMV")
    with pytest.raises(ValueError, match="missing='listwise'"):
        mlmiss.sem(ref["case"]["model"], df, cluster="cluster", missing="listwise")
    with pytest.raises(ValueError, match="se='bootstrap'"):
        mlmiss.sem(ref["case"]["model"], df, cluster="cluster", se="bootstrap")


def test_fixed_x_with_a_covariate_at_both_levels_is_a_clear_error():
    df = pd.read_csv(Path(__file__).parent / "data" / "hard" / "near_zero_between.csv")
    model = "level: 1\n  y ~ x1 + x2\nlevel: 2\n  y ~ x1 + x2 + w\n"
    with pytest.raises(mlmiss.errors.ModelDataError, match="x1, x2.*fixed_x=False"):
        mlmiss.sem(model, df, cluster="cluster")
    assert mlmiss.sem(model, df, cluster="cluster", fixed_x=False, max_seconds=60).npar > 0
