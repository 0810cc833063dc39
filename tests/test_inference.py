"""Standard errors, the saturated (h1) model and ICCs against lavaan 0.7.2."""

import numpy as np
import pandas as pd
import pytest
from mlmiss.data.moments import Moments


CASES = ["demo_twolevel", "demo_twolevel_fixedx", "demo_twolevel_missing", "paper_like",
         "saturated_between", "singular_between"]


@pytest.fixture(scope="module")
def fits(lavaan_fit):
    return lavaan_fit


@pytest.mark.parametrize("case", CASES)
def test_standard_errors_match_lavaan(fits, case):
    ref, fit = fits(case)
    pe = fit.parameter_estimates()
    theirs = pd.DataFrame(ref["fit"]["estimates"])
    free = theirs["se"].to_numpy() > 0
    assert np.all(pe["se"].to_numpy()[~free] == 0)
    ratio = pe["se"].to_numpy()[free] / theirs["se"].to_numpy()[free]
    # observed worst 0.2% (saturated_between, where our optimum is above lavaan's)
    assert np.max(np.abs(ratio - 1)) < 0.006
    # Wald columns follow from est and se
    row = pe[free].iloc[0]
    assert row["z"] == pytest.approx(row["est"] / row["se"])
    assert row["ci_lower"] == pytest.approx(row["est"] - 1.959963984540054 * row["se"])


@pytest.mark.parametrize("case", CASES)
def test_h1_reaches_lavaan(fits, case):
    ref, fit = fits(case)
    h1 = fit.h1()
    assert h1.converged
    assert h1.loglik >= ref["fit"]["fit_measures"]["unrestricted.logl"] - 1e-6
    assert h1.loglik >= fit.loglik


@pytest.mark.parametrize("case", CASES)
def test_icc_matches_lavaan(fits, case):
    ref, fit = fits(case)
    icc = fit.inspect("icc")
    theirs = pd.Series(ref["fit"]["icc"]["value"], index=ref["fit"]["icc"]["names"])
    # observed worst 7e-5 (paper_like)
    np.testing.assert_allclose(icc[theirs.index].to_numpy(), theirs.to_numpy(), atol=3e-4)


def test_h1_per_level_layout(fits):
    ref, fit = fits("demo_twolevel_missing")
    h1 = fit.inspect("h1")
    within, between = h1["within"], h1["between"]
    lav_w, lav_b = ref["fit"]["h1"]["within"], ref["fit"]["h1"]["cluster"]
    assert list(within["cov"].columns) == lav_w["cov"]["names"]
    # lavaan's convention: "both" variables' within means are 0
    assert within["mean"][["y1", "y2", "y3"]].eq(0).all()
    np.testing.assert_allclose(within["mean"].to_numpy(), lav_w["mean"]["value"], atol=2e-3)
    np.testing.assert_allclose(within["cov"].to_numpy(), np.array(lav_w["cov"]["value"]), atol=2e-3)
    names = lav_b["cov"]["names"]
    assert sorted(between["mean"].index) == sorted(names)
    np.testing.assert_allclose(between["cov"].loc[names, names].to_numpy(),
                               np.array(lav_b["cov"]["value"]), atol=2e-3)
    np.testing.assert_allclose(between["mean"][names].to_numpy(), lav_b["mean"]["value"], atol=2e-3)


@pytest.mark.parametrize("case", ["demo_twolevel_missing", "singular_between"])
def test_inspect_implied_and_sampstat(fits, case):
    """inspect("implied") against lavaan's implied moments at its estimates (the
    reference's moments, put in per-level form; observed: 8e-5); "sampstat" is h1's."""
    from mlmiss.data.levels import to_levels

    ref, fit = fits(case)
    m = ref["fit"]["moments"]
    theirs = to_levels(Moments(m["mu_y"], m["mu_z"], m["sigma_w"], m["sigma_b"], m["sigma_zz"],
                               m["sigma_yz"]), m["y_names"], m["z_names"])
    ours = fit.inspect("implied")
    for level in ("within", "between"):
        for part in ("mean", "cov"):
            a, b = ours[level][part], theirs[level][part]
            np.testing.assert_allclose(a.loc[b.index].to_numpy() if part == "mean"
                                       else a.loc[b.index, b.columns].to_numpy(),
                                       b.to_numpy(), atol=4e-4)
    h1, sampstat = fit.inspect("h1"), fit.inspect("sampstat")
    assert sampstat["between"]["cov"].equals(h1["between"]["cov"])
    with pytest.raises(ValueError, match="implied"):
        fit.inspect("no such thing")


LOOSE = {"logl", "unrestricted.logl", "chisq", "aic", "bic", "baseline.chisq"}


@pytest.mark.parametrize("case", CASES)
def test_fit_measures_of_real_fits_match_lavaan(fits, case):
    ref, fit = fits(case)
    ours = fit.fit_measures()
    for name, theirs in ref["fit"]["fit_measures"].items():
        if theirs is None:
            continue
        # observed worst: 6.3e-3 for the likelihood-based ones (saturated_between, where
        # our maximum is 0.003 above lavaan's: its optimizer stopped short), 9.3e-4 for
        # the others (srmr_between, same case)
        tol = 0.02 if name in LOOSE else 2e-3
        assert ours[name.replace(".", "_")] == pytest.approx(theirs, abs=tol), name
    assert ours["df"] == ref["fit"]["fit_measures"]["df"]
    assert ours["npar"] == ref["fit"]["fit_measures"]["npar"]
