"""Model-implied moments from a parameter table (mlmiss.model) against lavaan, and the
analytic Jacobian against central differences."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import CASES, LAVAAN_DIR

import mlmiss
from mlmiss.errors import ModelError
from mlmiss.model.ram import TwoLevelModel, flatten_gradient, flatten_moments

FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")


def load_fit(name):
    return json.loads((LAVAAN_DIR / f"{name}.json").read_text())


def table_from_estimates(estimates) -> pd.DataFrame:
    """A parameter table from lavaan's estimates: a row is free iff its se > 0, fixed
    rows keep est as their value, rows with equal (nonempty) labels share an index."""
    est = pd.DataFrame(estimates)
    n = len(est)
    labels = est["label"].fillna("").astype(str) if "label" in est else pd.Series([""] * n)
    rhs = est["rhs"].fillna("").astype(str)
    free = np.zeros(n, dtype=np.int64)
    by_label = {}
    npar = 0
    for i, (se, label) in enumerate(zip(est["se"], labels)):
        if not se > 0:
            continue
        if label and label in by_label:
            free[i] = by_label[label]
            continue
        npar += 1
        free[i] = npar
        if label:
            by_label[label] = npar
    # exo: fixed (co)variances and means of the predictors (rhs of "~"), as lavaan marks
    # them under fixed.x = TRUE; the model does not need the column
    exo = np.zeros(n, dtype=np.int64)
    for level in (1, 2):
        at = est["level"] == level
        ov_x = set(rhs[at & (est["op"] == "~")]) - set(est.loc[at & (est["op"] == "=~"), "lhs"])
        exo |= (at & (free == 0) & est["op"].isin(["~~", "~1"]) & est["lhs"].isin(ov_x)
                & (rhs.isin(ov_x) | (rhs == ""))).to_numpy().astype(np.int64)
    return pd.DataFrame({
        "id": np.arange(1, n + 1), "lhs": est["lhs"], "op": est["op"], "rhs": rhs,
        "level": est["level"].astype(int), "user": 1, "free": free, "value": est["est"],
        "label": labels, "exo": exo,
    })


def case_model(name):
    ref = load_fit(name)
    names = ref["fit"]["moments"]
    model = TwoLevelModel(table_from_estimates(ref["fit"]["estimates"]), names["y_names"], names["z_names"])
    return ref, model


def numeric_jacobian(model, theta, rel=1e-6):
    jac = np.empty((model.n_moments, model.npar))
    for i in range(model.npar):
        h = rel * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        jac[:, i] = (model.moments_vector(up) - model.moments_vector(down)) / (2 * h)
    return jac


def assert_jacobian(model, theta):
    analytic = model.jacobian(theta)
    numeric = numeric_jacobian(model, theta)
    assert analytic.shape == (model.n_moments, model.npar)
    err = np.abs(analytic - numeric) / np.maximum(np.abs(analytic), 1.0)
    assert err.max() <= 1e-6, (err.max(), np.unravel_index(err.argmax(), err.shape))
    return err.max()


# ---------------------------------------------------------------- lavaan's implied moments
@pytest.mark.parametrize("case", CASES)
def test_moments_match_lavaan(case):
    ref, model = case_model(case)
    fit = ref["fit"]
    theta = model.theta_from_estimates(fit["estimates"])
    moments = model.moments(theta)
    for field in FIELDS:
        got = getattr(moments, field)
        want = np.asarray(fit["moments"][field], dtype=float).reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8, err_msg=f"{case}: {field}")
    # the table's values are the estimates here, so both routes give the same theta
    np.testing.assert_array_equal(model.theta_from_table(), theta)
    np.testing.assert_allclose(model.moments_vector(theta), flatten_moments(moments), rtol=0, atol=1e-15)


def test_fixed_x_rows_are_fixed():
    table = table_from_estimates(load_fit("demo_twolevel_fixedx")["fit"]["estimates"])
    exo = table[table["exo"] == 1]
    # x1-x3 at level 1 (3 variances, 3 covariances, 3 means) and w1, w2 at level 2 (3 + 2)
    assert len(exo) == 14 and (exo["free"] == 0).all()


def test_roles_inferred_from_table():
    _, model = case_model("paper_like")
    assert model.both_names == ["y1", "y2", "y3", "y4", "y5", "y6"]
    assert model.within_names == ["y7", "y8", "y9", "y10", "x1", "x2", "x3"]
    assert model.latent_names == {1: ["fw"], 2: ["fb", "fz", "fwb"]}
    moments = model.moments(model.theta_from_table())
    assert moments.between_index.tolist() == list(range(6))


# ---------------------------------------------------------------- Jacobian
@pytest.mark.parametrize("point", ["estimates", "perturbed"])
@pytest.mark.parametrize("case", CASES)
def test_jacobian_matches_central_differences(case, point):
    ref, model = case_model(case)
    theta = model.theta_from_estimates(ref["fit"]["estimates"])
    if point == "perturbed":
        theta = theta + np.random.default_rng(1).normal(scale=0.2, size=theta.size)
    assert_jacobian(model, theta)


@pytest.mark.parametrize("case", ["paper_like", "singular_between"])
def test_chain_rule_gives_loglik_gradient(case):
    ref, model = case_model(case)
    y_names, z_names = ref["fit"]["moments"]["y_names"], ref["fit"]["moments"]["z_names"]
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    data = mlmiss.TwoLevelData.from_frame(df, ref["case"]["cluster"], y=y_names, z=z_names)
    theta_hat = model.theta_from_estimates(ref["fit"]["estimates"])
    rng = np.random.default_rng(2)
    for theta in (theta_hat, theta_hat * (1 + 0.05 * rng.normal(size=theta_hat.size))):
        value, g = mlmiss.loglik_and_gradient(data, model.moments(theta))
        assert np.isfinite(value)
        analytic = model.jacobian(theta).T @ flatten_gradient(g)
        np.testing.assert_allclose(analytic, model.theta_gradient(theta, g), rtol=1e-12, atol=1e-12)
        # five-point differences, steps relative to the parameter: the log-likelihood
        # curves fast in small variances (singular_between's fb ~~ fb is 0.08)
        numeric = np.empty(model.npar)
        for i in range(model.npar):
            h = 1e-4 * max(abs(theta[i]), 0.1)
            values = []
            for step in (2 * h, h, -h, -2 * h):
                moved = theta.copy()
                moved[i] += step
                values.append(mlmiss.loglik(data, model.moments(moved)))
            numeric[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
        # a difference quotient's own error is about |L| eps_machine / h ~ 1e-6 here
        err = np.abs(analytic - numeric) / np.maximum(np.abs(numeric), 1.0)
        assert err.max() <= 1e-5, (err.max(), int(err.argmax()))


# ---------------------------------------------------------------- other structures
def make_table(rows):
    """rows: (lhs, op, rhs, level, free-or-label, value); free-or-label is 0 (fixed),
    None (a new free parameter) or a label (shared)."""
    out, labels, npar = [], {}, 0
    for i, (lhs, op, rhs, level, spec, value) in enumerate(rows):
        if spec == 0:
            free, label = 0, ""
        elif spec is None or spec not in labels:
            npar += 1
            free, label = npar, spec or ""
            if spec:
                labels[spec] = npar
        else:
            free, label = labels[spec], spec
        out.append({"id": i + 1, "lhs": lhs, "op": op, "rhs": rhs, "level": level, "user": 1,
                    "free": free, "value": value, "label": label, "exo": 0})
    return pd.DataFrame(out)


def test_shared_labels_within_and_across_levels():
    # equal loadings across levels (a common cross-level constraint) and within level 1
    rows = [
        ("fw", "=~", "y1", 1, 0, 1.0), ("fw", "=~", "y2", 1, "l2", 0.8), ("fw", "=~", "y3", 1, "l2", 0.8),
        ("fw", "~", "x1", 1, None, 0.3),
        ("y1", "~~", "y1", 1, None, 1.0), ("y2", "~~", "y2", 1, None, 1.1), ("y3", "~~", "y3", 1, None, 0.9),
        ("fw", "~~", "fw", 1, None, 0.6), ("x1", "~~", "x1", 1, None, 1.0), ("x1", "~1", "", 1, None, 0.1),
        ("y1", "~1", "", 1, 0, 0.0), ("y2", "~1", "", 1, 0, 0.0), ("y3", "~1", "", 1, 0, 0.0),
        ("fb", "=~", "y1", 2, 0, 1.0), ("fb", "=~", "y2", 2, "l2", 0.8), ("fb", "=~", "y3", 2, "l3b", 0.7),
        ("fb", "~", "w1", 2, None, 0.2),
        ("y1", "~~", "y1", 2, None, 0.1), ("y2", "~~", "y2", 2, None, 0.2), ("y3", "~~", "y3", 2, None, 0.15),
        ("fb", "~~", "fb", 2, None, 0.5), ("w1", "~~", "w1", 2, None, 0.9), ("w1", "~1", "", 2, None, -0.1),
        ("y1", "~1", "", 2, None, 0.3), ("y2", "~1", "", 2, None, 0.2), ("y3", "~1", "", 2, None, 0.1),
    ]
    model = TwoLevelModel(make_table(rows), ["y1", "y2", "y3", "x1"], ["w1"])
    assert model.npar == 19       # 21 free rows, l2 on three of them
    theta = model.theta_from_table()
    assert_jacobian(model, theta)
    assert_jacobian(model, theta + np.random.default_rng(3).normal(scale=0.1, size=theta.size))
    m = model.moments(theta)
    # level 1: y2 = 0.8 fw + e, fw = 0.3 x1 + d
    var_fw = 0.3 ** 2 * 1.0 + 0.6
    assert m.sigma_w[1, 1] == pytest.approx(0.8 ** 2 * var_fw + 1.1)
    assert m.sigma_w[1, 3] == pytest.approx(0.8 * 0.3 * 1.0)
    assert m.mu_y[3] == pytest.approx(0.1)
    assert m.mu_y[1] == pytest.approx(0.8 * 0.3 * 0.1 + 0.2 + 0.8 * 0.2 * -0.1)   # within + between
    var_fb = 0.2 ** 2 * 0.9 + 0.5
    assert m.sigma_b[1, 2] == pytest.approx(0.8 * 0.7 * var_fb)
    assert m.sigma_yz[2, 0] == pytest.approx(0.7 * 0.2 * 0.9)
    assert not m.sigma_b[3].any() and not m.sigma_yz[3].any()


def reference_moments_vector(model, theta):
    """The same moments through np.linalg.inv and explicit selection, for comparison."""
    parts = {}
    for level in (1, 2):
        names, b, psi, alpha = model.level_matrices(theta, level)
        a = np.linalg.inv(np.eye(len(names)) - b)
        parts[level] = (names, a @ psi @ a.T, a @ alpha)
    p, k = len(model.y_names), len(model.z_names)
    names1, s1, m1 = parts[1]
    names2, s2, m2 = parts[2]
    i1 = [names1.index(v) for v in model.y_names]
    yb = [names2.index(v) if v in names2 else None for v in model.y_names]
    iz = [names2.index(v) for v in model.z_names]
    mu_y = m1[i1] + np.array([m2[j] if j is not None else 0.0 for j in yb])
    sigma_b = np.array([[s2[i, j] if i is not None and j is not None else 0.0 for j in yb] for i in yb])
    sigma_yz = np.array([[s2[i, j] if i is not None else 0.0 for j in iz] for i in yb]).reshape(p, k)
    return np.concatenate([mu_y, m2[iz], s1[np.ix_(i1, i1)].ravel(), sigma_b.ravel(),
                           s2[np.ix_(iz, iz)].ravel(), sigma_yz.ravel()])


def test_higher_order_and_nonrecursive_structures():
    # level 1: second-order factor g (paths x1 -> g -> f1 -> y1, depth 3);
    # level 2: a feedback loop y1 <-> y2 (I - B has no finite power series)
    rows = [
        ("f1", "=~", "y1", 1, 0, 1.0), ("f1", "=~", "y2", 1, None, 0.9),
        ("f2", "=~", "y3", 1, 0, 1.0), ("f2", "=~", "y4", 1, None, 1.2),
        ("g", "=~", "f1", 1, 0, 1.0), ("g", "=~", "f2", 1, None, 0.7), ("g", "~", "x1", 1, None, 0.4),
        ("f1", "~~", "f1", 1, None, 0.3), ("f2", "~~", "f2", 1, None, 0.4), ("g", "~~", "g", 1, None, 0.5),
        ("x1", "~~", "x1", 1, None, 1.0), ("y3", "~~", "y4", 1, None, 0.1), ("x1", "~1", "", 1, None, 0.2),
        ("g", "~1", "", 1, 0, 0.0),
    ] + [(v, "~~", v, 1, None, 0.5) for v in ("y1", "y2", "y3", "y4")] + [
        ("y1", "~", "y2", 2, None, 0.3), ("y2", "~", "y1", 2, None, -0.2), ("y2", "~", "w1", 2, None, 0.5),
        ("y1", "~~", "y1", 2, None, 0.2), ("y2", "~~", "y2", 2, None, 0.3), ("w1", "~~", "w1", 2, None, 1.0),
        ("y1", "~~", "y2", 2, None, 0.05), ("y1", "~1", "", 2, None, 1.0), ("y2", "~1", "", 2, None, -1.0),
        ("w1", "~1", "", 2, None, 0.5),
    ]
    model = TwoLevelModel(make_table(rows), ["y1", "y2", "y3", "y4", "x1"], ["w1"])
    assert model._levels[0].depth == 3 and model._levels[1].depth == -1
    theta = model.theta_from_table()
    for t in (theta, theta + np.random.default_rng(4).normal(scale=0.1, size=theta.size)):
        np.testing.assert_allclose(model.moments_vector(t), reference_moments_vector(model, t),
                                   rtol=1e-12, atol=1e-14)
        assert_jacobian(model, t)
    # y3 and y4 are within-only here
    assert model.within_names == ["y3", "y4", "x1"]


def test_singular_feedback_loop_is_an_error():
    """y1 = 2 y2 + e, y2 = 0.5 y1 + e: I - B is singular, a ModelError (not inf or nan
    moments)."""
    rows = [("y1", "~", "y2", 2, None, 2.0), ("y2", "~", "y1", 2, None, 0.5),
            ("y1", "~~", "y1", 2, None, 0.2), ("y2", "~~", "y2", 2, None, 0.3)] + [
        (v, "~~", v, 1, None, 1.0) for v in ("y1", "y2")]
    model = TwoLevelModel(make_table(rows), ["y1", "y2"], [])
    with pytest.raises(ModelError, match="I - B is singular"):
        model.moments_vector(model.theta_from_table())


def test_forward_cache_is_not_stale():
    ref, model = case_model("paper_like")
    fresh = TwoLevelModel(model.table, model.y_names, model.z_names)
    theta = model.theta_from_estimates(ref["fit"]["estimates"])
    other = theta * 1.1
    first = model.moments_vector(theta)
    first[:] = 0.0                                  # the caller's copy, not the cache
    np.testing.assert_array_equal(model.moments_vector(theta), fresh.moments_vector(theta))
    model.jacobian(other)
    np.testing.assert_array_equal(model.moments_vector(theta), fresh.moments_vector(theta))
    vec, jac = model.moments_vector_and_jacobian(other)
    np.testing.assert_array_equal(vec, fresh.moments_vector(other))
    np.testing.assert_array_equal(jac, fresh.jacobian(other))


# ---------------------------------------------------------------- bad tables
def test_errors_name_the_problem():
    rows = [("f", "=~", "y1", 1, 0, 1.0), ("f", "=~", "y2", 1, None, 1.0), ("y1", "~~", "y1", 1, None, 1.0),
            ("y2", "~~", "y2", 1, None, 1.0), ("f", "~~", "f", 1, None, 1.0), ("y1", "~~", "y1", 2, None, 1.0)]
    table = make_table(rows)
    TwoLevelModel(table, ["y1", "y2"], [])
    with pytest.raises(ModelError, match="y3"):
        TwoLevelModel(table, ["y1", "y2", "y3"], [])
    with pytest.raises(ModelError, match="y2"):
        TwoLevelModel(table, ["y1"], [])
    with pytest.raises(ModelError, match="w1"):
        TwoLevelModel(table, ["y1", "y2"], ["w1"])
    bad = table.copy()
    bad.loc[0, "op"] = "|"
    with pytest.raises(ModelError, match="op must be"):
        TwoLevelModel(bad, ["y1", "y2"], [])
    dup = pd.concat([table, table.iloc[[2]].assign(lhs="y1", rhs="y1")], ignore_index=True)
    with pytest.raises(ModelError, match="same Psi entry"):
        TwoLevelModel(dup, ["y1", "y2"], [])
    model = TwoLevelModel(table, ["y1", "y2"], [])
    with pytest.raises(ModelError, match="no estimate"):
        model.theta_from_estimates(table.assign(est=1.0).iloc[:3])
    with pytest.raises(ModelError, match="shape"):
        model.moments(np.zeros(model.npar + 1))
