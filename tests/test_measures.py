"""Fit measures, the baseline model, the summary and the ``mlmiss`` command.

The fit measures are checked against lavaan 0.7.2's ``fitMeasures()`` on every reference
case, from a stand-in fit built out of the case's own numbers (lavaan's log-likelihoods,
its h1 and fitted moments), so that only the definitions are tested here. The baseline
model itself is fitted with ``mlmiss.sem`` on two cases and must reach lavaan's.
"""

from __future__ import annotations

import json
import re
import types
import warnings

import numpy as np
import pandas as pd
import pytest

import mlmiss
from conftest import CASES, LAVAAN_DIR
from mlmiss.cli import main
from mlmiss.estimation.baseline import baseline_syntax
from mlmiss.inference.measures import (MEASURES, baseline_npar, degrees_of_freedom, fit_measures,
                                       sample_statistics)
from mlmiss.report import summary_text
from mlmiss.data.moments import Moments
from mlmiss.model.partable import parameter_table

#: lavaan's fitMeasures name -> (ours, absolute tolerance)
TOLERANCE = {name: (name.replace(".", "_"), 2e-3) for name in (
    "npar", "logl", "unrestricted.logl", "aic", "bic", "chisq", "df", "pvalue",
    "baseline.chisq", "baseline.df", "cfi", "tli", "rmsea", "srmr_within", "srmr_between")}
for _name in ("chisq", "aic", "bic"):
    TOLERANCE[_name] = (_name, 0.05)


def reference(case: str) -> dict:
    return json.loads((LAVAAN_DIR / f"{case}.json").read_text())


def model_table(ref: dict):
    # lavaan's default is fixed.x = TRUE; the cases say when they use FALSE
    fixed_x = bool(ref["case"]["options"].get("fixed.x", True))
    return parameter_table(ref["case"]["model"], fixed_x=fixed_x)


def h1_moments(h1: dict, y_names, z_names) -> Moments:
    """lavaan's per-level h1 means and covariances as mlmiss Moments.

    Level 1 (``within``) is over the level-1 variables, with the means of the "both"
    variables at 0; level 2 (``cluster``) is over the "both" and between-only variables.
    A within-only variable takes its mean from level 1 and has no between part.
    """
    within, between = h1["within"], h1["cluster"]
    w_names, b_names = within["cov"]["names"], between["cov"]["names"]
    w_cov = np.asarray(within["cov"]["value"], dtype=float)
    b_cov = np.asarray(between["cov"]["value"], dtype=float)
    w_mean = dict(zip(within["mean"]["names"], within["mean"]["value"]))
    b_mean = dict(zip(between["mean"]["names"], between["mean"]["value"]))
    wi = [w_names.index(v) for v in y_names]
    zi = [b_names.index(v) for v in z_names]
    both = [(i, b_names.index(v)) for i, v in enumerate(y_names) if v in b_names]
    p, k = len(y_names), len(z_names)
    sigma_b, sigma_yz = np.zeros((p, p)), np.zeros((p, k))
    for i, bi in both:
        for j, bj in both:
            sigma_b[i, j] = b_cov[bi, bj]
        sigma_yz[i, :] = b_cov[bi, zi]
    mu_y = [b_mean[v] if v in b_mean else w_mean[v] for v in y_names]
    return Moments(mu_y, [b_mean[v] for v in z_names], w_cov[np.ix_(wi, wi)], sigma_b,
                   b_cov[np.ix_(zi, zi)], sigma_yz)


def stub_fit(case: str, with_se: bool = True):
    """An object with the attributes fit_measures and summary_text read, from the case."""
    ref = reference(case)
    fit, fm = ref["fit"], ref["fit"]["fit_measures"]
    partable = model_table(ref)
    assert partable.y_names == fit["moments"]["y_names"]
    assert partable.z_names == fit["moments"]["z_names"]
    ndat = sample_statistics(partable)
    h1 = types.SimpleNamespace(loglik=fm["unrestricted.logl"], npar=ndat, converged=True,
                               moments=h1_moments(fit["h1"], partable.y_names, partable.z_names))
    baseline = types.SimpleNamespace(loglik=fm["unrestricted.logl"] - fm["baseline.chisq"] / 2,
                                     npar=ndat - fm["baseline.df"], converged=True)
    implied = Moments.from_dict(fit["moments"])

    theirs = pd.DataFrame(fit["estimates"]).set_index(["lhs", "op", "rhs", "level"])

    def parameter_estimates():
        table = partable.table
        keys = list(zip(table["lhs"], table["op"], table["rhs"], table["level"]))
        out = table[["lhs", "op", "rhs", "level", "label"]].copy()
        out["est"] = [theirs.loc[key, "est"] for key in keys]
        if with_se:
            out["se"] = [theirs.loc[key, "se"] for key in keys]
        return out

    stub = types.SimpleNamespace(
        loglik=fit["loglik"], npar=fm["npar"], nobs=fit["nobs"], nclusters=fit["nclusters"],
        converged=fit["converged"], iterations=fit["iterations"], optimizer="lavaan",
        partable=partable, h1=lambda: h1, baseline=lambda: baseline,
        implied=lambda: {"moments": implied}, parameter_estimates=parameter_estimates)
    stub.fit_measures = lambda: fit_measures(stub)
    return stub


# ----------------------------------------------------------------------------- measures

#: what the stand-in is built from (lavaan's log-likelihoods and npar): not computed
GIVEN = {"npar", "logl", "unrestricted.logl", "baseline.chisq"}


@pytest.mark.parametrize("case", CASES)
def test_fit_measures_match_lavaan(case):
    ours = fit_measures(stub_fit(case))
    assert tuple(ours) == MEASURES
    theirs = reference(case)["fit"]["fit_measures"]
    for name, value in theirs.items():
        if name in GIVEN:
            continue
        key, tol = TOLERANCE[name]
        assert ours[key] == pytest.approx(value, abs=tol), name
    assert ours["df"] == theirs["df"] and ours["npar"] == theirs["npar"]
    assert ours["baseline_df"] == theirs["baseline.df"]
    assert ours["srmr"] == pytest.approx(ours["srmr_within"] + ours["srmr_between"])


#: lavaan's name -> ours, for the measures of lavaan_extra/extra_measures.json (made by
#: extra_measures.R there, with lavaan 0.7.2 on the same cases)
EXTRA = {"ntotal": "ntotal", "bic2": "bic2", "rmsea.ci.lower": "rmsea_ci_lower",
         "rmsea.ci.upper": "rmsea_ci_upper", "rmsea.ci.level": "rmsea_ci_level",
         "rmsea.pvalue": "rmsea_pvalue", "rmsea.close.h0": "rmsea_close_h0",
         "rmsea.notclose.pvalue": "rmsea_notclose_pvalue",
         "rmsea.notclose.h0": "rmsea_notclose_h0"}


@pytest.mark.parametrize("case", CASES)
def test_rmsea_interval_tests_and_sabic_match_lavaan(case):
    """The RMSEA's 90% interval and close / not-close fit p-values (non-central
    chi-square), and the sample-size adjusted BIC, against lavaan 0.7.2 from the same
    chi-square; observed: the interval to 3e-8 (lavaan finds its roots only to
    uniroot's tolerance), p-values to 4e-14, SABIC to 1e-10."""
    extra = LAVAAN_DIR.parent / "lavaan_extra" / "extra_measures.json"
    theirs = json.loads(extra.read_text())["cases"][case]
    ours = fit_measures(stub_fit(case))
    assert ours["chisq"] == pytest.approx(theirs["chisq"], abs=0.05)
    for name, key in EXTRA.items():
        tol = {"bic2": 1e-6, "rmsea.ci.lower": 2e-7, "rmsea.ci.upper": 2e-7}.get(name, 1e-12)
        assert ours[key] == pytest.approx(theirs[name], abs=tol), name
    assert ours["sabic"] == ours["bic2"]
    assert ours["rmsea_ci_lower"] <= ours["rmsea"] <= ours["rmsea_ci_upper"]


def test_fit_measures_edge_values():
    """No degrees of freedom: no p-value, RMSEA 0, TLI 1 (lavaan's conventions)."""
    fit = stub_fit("demo_twolevel_missing")
    fit.npar = sample_statistics(fit.partable)        # as many parameters as statistics
    m = fit_measures(fit)
    assert m["df"] == 0 and np.isnan(m["pvalue"])
    assert m["rmsea"] == 0.0 and m["tli"] == 1.0
    # a fit above the h1 maximum gives chi-square 0, not a negative number
    fit.loglik = fit.h1().loglik + 1.0
    assert fit_measures(fit)["chisq"] == 0.0


# ----------------------------------------------------------------------------- baseline

@pytest.mark.parametrize("case", CASES)
def test_baseline_syntax_parameter_count(case):
    ref = reference(case)
    partable = model_table(ref)
    base = parameter_table(baseline_syntax(partable))
    ndat = sample_statistics(partable)
    assert ndat - partable.npar == ref["fit"]["fit_measures"]["df"]
    assert ndat - baseline_npar(partable) == ref["fit"]["fit_measures"]["baseline.df"]
    assert base.y_names == partable.y_names and base.z_names == partable.z_names
    assert set(base.table["op"]) <= {"~~", "~1"}
    if partable.fixed_x:
        # lavaan fixes the covariates' rows; the syntax leaves them free (see baseline_syntax)
        assert base.npar > baseline_npar(partable)
    else:
        assert base.npar == baseline_npar(partable)


def test_baseline_syntax_text():
    partable = model_table(reference("demo_twolevel"))
    assert baseline_syntax(partable) == (
        "level: 1\n  y1 ~~ y1\n  y2 ~~ y2\n  y3 ~~ y3\n  x1 ~~ x1\n  x2 ~~ x2\n  x3 ~~ x3\n"
        "  x1 ~~ x2 + x3\n  x2 ~~ x3\n"
        "level: 2\n  y1 ~~ y1\n  y2 ~~ y2\n  y3 ~~ y3\n  w1 ~~ w1\n  w2 ~~ w2\n  w1 ~~ w2\n")


# Degrees of freedom that lavaan 0.6.14 (R, run on this project's machine with
# fitMeasures(fit, c("npar", "df", "baseline.df")), data demo_twolevel.csv) reported for
# models outside the reference cases: a level-2 predictor that is a dependent variable
# at level 1 (EDGE), a covariate at both levels (BOTH), covariates made random by a
# covariance in the syntax (SAID). (model, fixed.x) -> (npar, df, baseline.df).
EDGE = """
level: 1
  fw =~ y1 + y2 + y3
  y4 ~ x1 + x2
level: 2
  fb =~ y1 + y2 + y3
  fb ~ y4 + w1 + w2
"""
BOTH = """
level: 1
  y1 ~ x1 + x2
level: 2
  y1 ~ x1 + w1
"""
SAID = """
level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
  x1 ~~ x2
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"""
LAVAAN_0614_COUNTS = [
    (EDGE, False, (35, 15, 28)), (EDGE, True, (21, 15, 24)),
    (BOTH, False, (16, 0, 4)), (BOTH, True, (7, 0, 4)),
    (SAID, False, (32, 12, 24)), (SAID, True, (25, 12, 24)),
]


@pytest.mark.parametrize("model, fixed_x, counts", LAVAAN_0614_COUNTS)
def test_degrees_of_freedom_like_lavaan(model, fixed_x, counts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partable = parameter_table(model, fixed_x=fixed_x)
    assert (partable.npar, *degrees_of_freedom(partable)) == counts


@pytest.mark.parametrize("case", ["demo_twolevel_missing", "singular_between"])
def test_baseline_fit_reaches_lavaan(case):
    """Fitting baseline_syntax gives lavaan's baseline log-likelihood."""
    ref = reference(case)
    fm = ref["fit"]["fit_measures"]
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    base = mlmiss.sem(baseline_syntax(model_table(ref)), df, cluster=ref["case"]["cluster"], fixed_x=False)
    assert base.converged
    assert base.loglik == pytest.approx(fm["unrestricted.logl"] - fm["baseline.chisq"] / 2, abs=1e-3)


# ----------------------------------------------------------------------------- summary

SECTIONS = ["Estimator", "ML", "Number of model parameters", "Number of observations",
            "Number of clusters", "Model Test User Model:", "Test statistic",
            "Degrees of freedom", "P-value (Chi-square)", "Comparative Fit Index (CFI)",
            "Tucker-Lewis Index (TLI)", "Akaike (AIC)", "Bayesian (BIC)", "RMSEA",
            "SRMR (within covariance matrix)", "SRMR (between covariance matrix)",
            "Parameter Estimates:", "Level 1 [within]:", "Level 2 [", "Latent Variables:",
            "Regressions:", "Covariances:", "Intercepts:", "Variances:"]


def _value(text: str, label: str) -> float:
    match = re.search(rf"^  {re.escape(label)}\s+(\S+)$", text, flags=re.M)
    assert match, label
    return float(match.group(1))


def test_summary_text_sections():
    text = summary_text(stub_fit("demo_twolevel_missing"), cluster="cluster")
    for section in SECTIONS:
        assert section in text, section
    assert "Std.Err  z-value  P(>|z|)" in text
    assert "Number of clusters [cluster]" in text and "Level 2 [cluster]:" in text
    assert _value(text, "Test statistic") == pytest.approx(9.735, abs=1e-3)
    assert _value(text, "Degrees of freedom") == 10
    # estimates, standard errors and the residual dots as lavaan prints them
    # (the stand-in has no z-values: they come from est / se, as lavaan's)
    assert re.search(r"^    y2\s+0\.760\s+0\.036\s+21\.377\s+0\.000$", text, flags=re.M)
    assert re.search(r"^   \.fw\s+0\.578\s+0\.046\s+12\.535\s+0\.000$", text, flags=re.M)
    assert re.search(r"^    w1\s+0\.178\s+0\.080\s+2\.210\s+0\.027$", text, flags=re.M)
    assert re.search(r"^    y1\s+1\.000\s*$", text, flags=re.M)   # fixed: no Std.Err
    assert text.index("Level 1 [within]:") < text.index("Level 2 [cluster]:")


def test_summary_text_without_standard_errors_or_h1():
    fit = stub_fit("paper_like", with_se=False)

    def fails():
        raise RuntimeError("no h1 today")

    fit.h1 = fails
    text = summary_text(fit)
    assert "Fit measures are not available" in text
    assert "Std.Err" not in text and "Estimate" in text
    assert "Level 2 [between]:" in text and "Latent Variables:" in text


def test_summary_hides_fixed_covariates():
    """With fixed.x = TRUE lavaan does not print the covariates' fixed moments."""
    text = summary_text(stub_fit("demo_twolevel_fixedx"))
    assert not re.search(r"^    x1\s", text.split("Intercepts:")[1].split("Variances:")[0], flags=re.M)
    assert "Covariances:" not in text


# ----------------------------------------------------------------------------- command

MODEL = """level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"""


def test_cli_fit(tmp_path, capsys):
    model_file = tmp_path / "model.lav"
    model_file.write_text(MODEL)
    status = main(["fit", str(model_file), str(LAVAAN_DIR / "demo_twolevel_missing.csv"),
                   "--cluster", "cluster", "--no-fixed-x"])
    text = capsys.readouterr().out
    assert status == 0
    assert "ended normally" in text
    for section in ["Number of clusters [cluster]", "Level 1 [within]:", "Level 2 [cluster]:",
                    "Latent Variables:", "Regressions:", "Variances:", "Std.Err"]:
        assert section in text, section
    assert _value(text, "Number of observations") == 2500
    assert _value(text, "Number of model parameters") == 34
    ref = reference("demo_twolevel_missing")["fit"]["fit_measures"]
    assert _value(text, "Test statistic") == pytest.approx(ref["chisq"], abs=0.05)
    assert _value(text, "Comparative Fit Index (CFI)") == pytest.approx(ref["cfi"], abs=2e-3)


def test_cli_fit_reports_bad_cluster(tmp_path, capsys):
    model_file = tmp_path / "model.lav"
    model_file.write_text(MODEL)
    args = ["fit", str(model_file), str(LAVAAN_DIR / "demo_twolevel_missing.csv"),
            "--cluster", "school"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlmiss: error: no column 'school'")
    with pytest.raises(mlmiss.DataError, match="no column 'school'"):
        main(["--debug"] + args)


def test_cli_fit_bad_model_line_and_non_convergence(tmp_path, capsys):
    model_file = tmp_path / "model.lav"
    model_file.write_text(MODEL + "  y1 ~~ -1*y1\n")
    data = str(LAVAAN_DIR / "demo_twolevel_missing.csv")
    assert main(["fit", str(model_file), data, "--cluster", "cluster"]) == 1
    err = capsys.readouterr().err
    assert "line 7" in err and "negative" in err and "Traceback" not in err
    # a model that is not identified: the fit ends, but not converged (exit status 3)
    model_file.write_text(MODEL.replace("fw =~ y1", "fw =~ NA*y1"))
    assert main(["fit", str(model_file), data, "--cluster", "cluster",
                 "--no-fit-measures"]) == 3
    captured = capsys.readouterr()
    assert "did NOT end normally" in captured.out and "not be identified" in captured.err


def test_cli_table1(capsys):
    status = main(["table1", "--seed", "7", "--repeat-scale", "0.01"])
    text = capsys.readouterr().out
    assert status == 0
    assert "methods agree: yes" in text
    assert "objective5" in text and "Paper R (ms)" in text


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlmiss {mlmiss.__version__}"
