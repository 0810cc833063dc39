"""Score (Lagrange multiplier) and Wald tests of equality constraints
(:mod:`mlmiss.inference.constraint_tests`) against lavaan 0.7.2's lavTestScore() and
lavTestWald() (tests/data/lavaan_extra/constraints.json and constraint_tests.json), and
checks of their own: invariances, agreement with the likelihood-ratio test, the EPC as a
step towards the unconstrained estimates."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LAVAAN_DIR
from scipy.stats import chi2
from test_constraints import BASE

import mlmiss

EXTRA = Path(__file__).parent / "data" / "lavaan_extra"
REF = json.loads((EXTRA / "constraints.json").read_text())["cases"]
MORE = json.loads((EXTRA / "constraint_tests.json").read_text())

LINEAR = "l2 == m2\nb1 == 2*b2 - b3\n"
SHARED = BASE.replace("l2*y2", "a*y2").replace("m2*y2", "a*y2") + "b1 == 2*b2 - b3\n"

# our estimates differ from lavaan's by about 1e-4: the statistics by up to 3e-5
# relative (score), 3e-4 (Wald, through the observed information) and 2e-4 (MLR, whose
# cluster scores lavaan computes slightly differently on this data set)
SCORE_REL = 2e-4
WALD_REL = 1e-3
ROBUST_REL = 1e-3
P_ABS = 1e-4


@pytest.fixture(scope="module")
def demo():
    return pd.read_csv(LAVAAN_DIR / "demo_twolevel_missing.csv")


@pytest.fixture(scope="module")
def fits(demo):
    cache = {}

    def get(extra="", model=None, estimator="ML"):
        key = (model or BASE + extra, estimator)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[key] = mlmiss.sem(key[0], demo, cluster="cluster", fixed_x=False,
                                        estimator=estimator)
            assert cache[key].estimate.converged
        return cache[key]

    return get


def compact(text):
    return "".join(str(text).split())


def assert_rows(table, ref, rel, columns=("X2", "df", "p.value"), names=True):
    """The rows of one of our tables against lavaan's (its column names)."""
    ours = {"X2": "X2", "df": "df", "p.value": "pvalue", "X2.scaled": "X2_scaled",
            "p.value.scaled": "pvalue_scaled"}
    ref = {k: v if isinstance(v, list) else [v] for k, v in ref.items()}
    assert len(table) == len(ref["X2"])
    if names:
        assert list(table["lhs"]) == ref["lhs"]
        assert list(table["op"]) == ref["op"]
        assert [compact(r) for r in table["rhs"]] == [compact(r) for r in ref["rhs"]]
    for col in columns:
        want = np.asarray(ref[col], dtype=float)
        got = table[ours[col]].to_numpy(dtype=float)
        if col.startswith("p.value"):
            np.testing.assert_allclose(got, want, atol=P_ABS, err_msg=col)
        elif col == "df":
            np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=col)
        else:
            np.testing.assert_allclose(got, want, rtol=rel, err_msg=col)


def assert_pvalues_follow(table):
    np.testing.assert_allclose(table["pvalue"], chi2.sf(table["X2"], table["df"]), rtol=1e-12)


# ---------------------------------------------------------------------------- lavaan
@pytest.mark.parametrize("case, extra", [("linear", LINEAR), ("nonlinear", "l3 == l2^2\n")])
def test_score_test_matches_lavaan(fits, case, extra):
    ref = REF[case]["score_test"]
    result = fits(extra).score_test()
    assert list(result.total["test"]) == ref["test"]["test"]
    assert_rows(result.total, ref["test"], SCORE_REL, names=False)
    assert_rows(result.univariate, ref["uni"], SCORE_REL)
    assert result.information == "expected"
    assert_pvalues_follow(result.total)
    assert_pvalues_follow(result.univariate)


def test_wald_test_matches_lavaan(fits):
    ref = REF["unconstrained"]["wald_test"]
    result = fits().wald_test(ref["constraints"])
    assert result.stat == pytest.approx(ref["stat"], rel=WALD_REL)
    assert result.df == ref["df"]
    assert result.pvalue == pytest.approx(ref["p.value"], abs=P_ABS)
    # one constraint: its univariate row is the joint test, with est = l2 - m2 and its
    # delta-method standard error from the fit's covariance matrix
    est = fits().parameter_estimates().set_index("label")
    row = result.univariate.iloc[0]
    assert row["X2"] == pytest.approx(result.stat, rel=1e-12)
    assert row["est"] == pytest.approx(est.loc["l2", "est"] - est.loc["m2", "est"], rel=1e-10)
    table = fits().partable.table.set_index("label")
    i, j = int(table.loc["l2", "free"]) - 1, int(table.loc["m2", "free"]) - 1
    v = fits().vcov()
    assert row["se"] == pytest.approx(np.sqrt(v[i, i] + v[j, j] - 2 * v[i, j]), rel=1e-10)


@pytest.mark.parametrize("key", ["two", "nonlinear", "on_linear"])
def test_more_wald_tests_match_lavaan(fits, key):
    ref = MORE["ml_wald"][key]
    fit = fits(LINEAR) if key == "on_linear" else fits()
    result = mlmiss.wald_test(fit, ref["constraints"])
    assert result.stat == pytest.approx(ref["stat"], rel=WALD_REL)
    assert result.df == ref["df"]
    assert result.pvalue == pytest.approx(ref["p.value"], abs=P_ABS)


def test_cumulative_observed_release_and_epc_match_lavaan(fits):
    fit = fits(LINEAR)
    more = MORE["ml_linear"]
    result = fit.score_test(cumulative=True, epc=True)
    assert_rows(result.cumulative, more["cumulative_epc"]["cumulative"], SCORE_REL)
    # the last cumulative row releases everything: the joint test
    assert result.cumulative["X2"].iloc[-1] == pytest.approx(result.stat, rel=1e-10)
    observed = fit.score_test(information="observed")
    assert_rows(observed.total, more["observed"]["test"], SCORE_REL, names=False)
    assert_rows(observed.univariate, more["observed"]["uni"], SCORE_REL)
    # release = 2: the joint test of that one constraint is its univariate test
    for release in (2, [2], "b1 == 2*b2-b3"):
        one = fit.score_test(release=release)
        assert_rows(one.total, more["release2"]["test"], SCORE_REL, names=False)
        assert one.stat == pytest.approx(result.univariate["X2"].iloc[1], rel=1e-10)
    # lavaan's EPC for a two-level model has the opposite sign (module doc); its small
    # ones (means, covariate covariances) carry what is left of its own gradient at its
    # estimates, up to 7e-5
    ref = pd.DataFrame(more["cumulative_epc"]["epc"])
    assert list(result.epc["lhs"]) == list(ref["lhs"]) and list(result.epc["op"]) == list(ref["op"])
    np.testing.assert_allclose(result.epc["epc"], -ref["epc"], rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(result.epc["est"], ref["est"], atol=1e-4)


def test_shared_label_is_an_equality_constraint_as_in_lavaan(fits):
    """lavaan turns a label on two rows into .pA. == .pB.; the score test releases it
    and gives the numbers of the same model written with l2 == m2."""
    ref = MORE["ml_shared"]["score"]
    shared = fits(model=SHARED).score_test()
    assert_rows(shared.total, ref["test"], SCORE_REL, names=False)
    assert_rows(shared.univariate, ref["uni"], SCORE_REL)
    explicit = fits(LINEAR).score_test()
    assert shared.stat == pytest.approx(explicit.stat, rel=1e-5)
    np.testing.assert_allclose(shared.univariate["X2"].to_numpy()[::-1],
                               explicit.univariate["X2"], rtol=1e-5)
    observed = fits(model=SHARED).score_test(information="observed")
    assert observed.stat == pytest.approx(fits(LINEAR).score_test(information="observed").stat,
                                          rel=1e-4)


def test_robust_score_and_wald_tests_match_lavaan(fits):
    ref = MORE["mlr_linear"]["score"]
    result = fits(LINEAR, estimator="MLR").score_test()
    assert list(result.total["test"]) == ref["test"]["test"]
    assert_rows(result.total, ref["test"], ROBUST_REL, names=False)
    assert_rows(result.univariate, ref["uni"], ROBUST_REL,
                columns=("X2", "df", "p.value", "X2.scaled", "p.value.scaled"))
    # the standard rows are the ML fit's
    ml = fits(LINEAR).score_test()
    assert result.stat == pytest.approx(ml.stat, rel=1e-8)
    assert "Satorra" in str(result)

    wref = MORE["mlr_wald"]
    wald = fits(estimator="MLR").wald_test(wref["constraints"])
    got = wald.total.set_index("test")["X2"]
    assert got["wald"] == pytest.approx(wref["stat"], rel=ROBUST_REL)
    assert got["wald.standard"] == pytest.approx(wref["stat.standard"], rel=WALD_REL)
    assert got["wald.scaled"] == pytest.approx(wref["stat.scaled"], rel=ROBUST_REL)
    assert got["wald.adjusted"] == pytest.approx(wref["stat.adjusted"], rel=ROBUST_REL)
    assert got["wald.standard"] == pytest.approx(fits().wald_test("l2 == m2").stat, rel=1e-6)


# ---------------------------------------------------------------------------- our own
def test_score_test_does_not_depend_on_how_a_constraint_is_written(fits):
    """The same restriction written another way: the same score statistic (the Wald
    statistic of a nonlinear constraint does change, as it should)."""
    assert fits("2*l2 == 2*m2\n").score_test().stat == pytest.approx(
        fits("l2 == m2\n").score_test().stat, rel=1e-5)
    squared = fits("l3 == l2^2\n").score_test().stat
    assert fits("sqrt(l3) == l2\n").score_test().stat == pytest.approx(squared, rel=1e-4)
    w1, w2 = fits().wald_test("l3 == l2^2").stat, fits().wald_test("sqrt(l3) == l2").stat
    assert abs(w1 / w2 - 1) > 0.05


@pytest.mark.parametrize("constraint", ["l2 == m2", "b1 == 2*b2 - b3"])
def test_score_and_wald_tests_are_close_to_the_likelihood_ratio_test(fits, constraint):
    """One linear constraint: LR = 2 (logl1 - logl0), the score test on the constrained
    fit and the Wald test on the unconstrained one agree asymptotically; here the
    observed-information versions within 5%. lavaan's default expected information is
    the complete-data one, which ignores the missing values and so overstates the
    information: its score statistic is smaller (here by 7-16%)."""
    free, restricted = fits(), fits(constraint + "\n")
    lr = 2.0 * (free.loglik - restricted.loglik)
    assert lr > 0.5
    observed = restricted.score_test(information="observed").stat
    expected = restricted.score_test().stat
    wald = free.wald_test(constraint).stat
    assert observed == pytest.approx(lr, rel=0.05)
    assert wald == pytest.approx(lr, rel=0.05)
    assert 0.8 * lr < expected < lr


def test_epc_steps_towards_the_unconstrained_estimates(fits):
    result = fits(LINEAR).score_test(epc=True)
    free = fits().parameter_estimates().set_index("label")["est"]
    epc = result.epc.set_index("label")
    for name in ("l2", "m2", "b1", "b2", "b3"):
        before = abs(epc.loc[name, "est"] - free[name])
        after = abs(epc.loc[name, "epv"] - free[name])
        assert after < 0.35 * before, name


def test_joint_tests_and_pvalues(fits):
    result = fits(LINEAR).score_test(cumulative=True)
    assert result.df == 2 and len(result.univariate) == 2
    for table in (result.total, result.univariate, result.cumulative):
        assert_pvalues_follow(table)
    assert list(result.cumulative["df"]) == [1.0, 2.0]
    # the cumulative order: largest univariate statistic first
    assert compact(result.cumulative["rhs"].iloc[0]) == "2*b2-b3"
    wald = fits().wald_test("l2 == m2; b1 == 2*b2 - b3")
    assert wald.df == 2 and len(wald.univariate) == 2
    assert_pvalues_follow(wald.total)
    assert_pvalues_follow(wald.univariate)
    # a list of constraints is the same as one text
    assert fits().wald_test(["l2 == m2", "b1 == 2*b2 - b3"]).stat == pytest.approx(wald.stat)


def test_printout_lists_each_constraint(fits):
    text = str(fits(LINEAR).score_test(cumulative=True))
    for piece in ("Score (Lagrange multiplier)", "information: expected", "Chi-square",
                  "l2 == m2", "b1 == 2*b2 - b3", "chi-square = 2.227, df = 2, p = 0.328",
                  "Cumulative"):
        assert piece in text
    assert "0.815" in text and "1.412" in text
    text = repr(fits().wald_test("l2 == m2"))
    assert "Wald" in text and "chi-square = 0.903, df = 1, p = 0.342" in text


def test_redundant_wald_constraints_are_dropped_with_a_warning(fits):
    with pytest.warns(UserWarning, match="redundant"):
        result = fits().wald_test("l2 == m2; l3 == m3; l2 - l3 == m2 - m3")
    assert result.df == 2
    assert result.stat == pytest.approx(fits().wald_test("l2 == m2; l3 == m3").stat, rel=1e-10)


@pytest.mark.parametrize("call, message", [
    (lambda f: f().score_test(), "no equality constraints"),
    (lambda f: f("g1 < 0.1\n").score_test(), "inequality constraints"),
    (lambda f: f(LINEAR).score_test(information="hessian"), "information must be"),
    (lambda f: f(LINEAR).score_test(release=3), "numbered 1 to 2"),
    (lambda f: f(LINEAR).score_test(release="l3 == m3"), "no such equality constraint"),
    (lambda f: f(LINEAR).wald_test("l2 == m2"), "already impose"),
    (lambda f: f().wald_test("l2 == q9"), "'q9' is not a parameter label"),
    (lambda f: f().wald_test("l2 > 0.5"), "only equality constraints"),
    (lambda f: f().wald_test("l2 m2"), "is not a constraint"),
    (lambda f: f().wald_test(" ; "), "empty"),
])
def test_errors_name_the_problem(fits, call, message):
    with pytest.raises(ValueError, match=message):
        call(fits)
