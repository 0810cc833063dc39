"""EM (issue 10, in progress): the E-step and the expected complete-data log-likelihood
Q are checked by Fisher's identity, grad Q(theta | theta) = grad logl(theta), against
the engine's analytic gradient; the EM iteration against the trust-region optimum."""

import warnings

import numpy as np
import pandas as pd
import pytest

import mlmiss

from conftest import LAVAAN_DIR
from conftest import case_problem as problem_of
from mlmiss.estimation.em.algorithm import fit_em
from mlmiss.estimation.em.complete import CompleteData
from mlmiss.estimation.em.estep import Statistics, expected_statistics
from mlmiss.estimation.optimizers import optimize


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "singular_between",
                                  "demo_twolevel_fixedx"])
def test_fisher_identity(name):
    """Away from the optimum, where the gradient is large: the gradient of Q at the
    point of its E-step is the observed-data gradient (observed: 1e-11 relative), also
    with Sigma_b singular (singular_between: four "both" variables with no between
    residual, so the complete data hold only the random level-2 nodes)."""
    problem = problem_of(name)
    complete = CompleteData(problem)
    rng = np.random.default_rng(7)
    theta = problem.start()
    theta = theta + 0.02 * rng.standard_normal(theta.size) * np.clip(np.abs(theta), 0.1, None)
    stats = expected_statistics(problem.data, complete.parts(theta), complete)
    _, g_q = complete.q_and_gradient(theta, stats)
    _, g = problem.loglik_and_gradient(theta, guard=False)
    assert np.max(np.abs(g)) > 10.0
    np.testing.assert_allclose(g_q, g, atol=1e-8 * np.max(np.abs(g)))
    if name == "singular_between":
        assert complete.random.sum() < len(complete.u_names)


def test_q_gradient_matches_finite_differences():
    problem = problem_of("demo_twolevel_missing")
    complete = CompleteData(problem)
    theta = problem.start()
    stats = expected_statistics(problem.data, complete.parts(theta), complete)
    other = theta * 1.01 + 0.01
    _, g = complete.q_and_gradient(other, stats)
    h = 1e-6
    fd = np.array([(complete.q_and_gradient(other + h * e, stats)[0]
                    - complete.q_and_gradient(other - h * e, stats)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(fd, g, atol=1e-6 * np.max(np.abs(g)))


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "singular_between"])
def test_information_is_the_hessian_where_the_statistics_fit_the_model(name):
    """Given sufficient statistics equal to their expectation under the complete-data
    model at theta, Q is maximal at theta and its Hessian there is minus the
    complete-data information (the terms in second derivatives of the model vanish with
    dQ/dphi): the kernel's information against finite differences of Q's gradient;
    observed: 4e-11 and 8e-10 relative (the differences' error), the gradient 2e-17."""
    problem = problem_of(name)
    complete = CompleteData(problem)
    theta = problem.start() * 1.02 + 0.01
    parts = complete.parts(theta)
    base = expected_statistics(problem.data, parts, complete)
    n, j = float(base.n_rows), float(base.n_clusters)
    mu_r, s_rr = parts["mu_R"], parts["sigma_RR"]
    d = np.zeros((len(complete.y_names), mu_r.size))
    d[complete.both_y] = parts["C"]
    shift = parts["mu_y"] - d @ mu_r
    g = np.column_stack([shift, d])
    second = np.block([[np.array([[n]]), base.v1n[None, :]], [base.v1n[:, None], base.v2n]])
    fitted = Statistics(base.n_rows, base.n_clusters, j * mu_r, j * (s_rr + np.outer(mu_r, mu_r)),
                        n * shift + d @ base.v1n, n * parts["sigma_w"] + g @ second @ g.T,
                        np.outer(shift, base.v1n) + d @ base.v2n, base.v1n, base.v2n)
    _, grad = complete.q_and_gradient(theta, fitted)
    info = complete.information(theta, fitted)
    scale = np.max(np.abs(info))
    assert np.max(np.abs(grad)) <= 1e-14 * scale
    h = 1e-6
    hessian = np.array([(complete.q_and_gradient(theta + h * e, fitted)[1]
                         - complete.q_and_gradient(theta - h * e, fitted)[1]) / (2 * h)
                        for e in np.eye(theta.size)])
    np.testing.assert_allclose(info, -0.5 * (hessian + hessian.T), atol=5e-9 * scale)


def test_em_reaches_the_trust_region_maximum():
    """On 40 clusters of the missing-data Demo case (a few seconds): the log-likelihood
    to 1e-6 relative to N and the estimates to 1e-4, as the issue asks."""
    problem = problem_of("demo_twolevel_missing", clusters=40)
    theta0 = problem.start()
    reference = optimize(problem, theta0)
    assert reference.converged
    theta, logl, converged, iterations, e_steps, message, *_ = fit_em(problem, theta0,
                                                                    max_seconds=120)
    assert converged, message
    assert abs(logl - reference.loglik) <= 1e-6 * problem.data.n_obs
    np.testing.assert_allclose(theta, reference.theta, atol=1e-4)
    assert e_steps >= iterations > 0


def test_sem_with_em_reports_it(lavaan_fit):
    import mlmiss

    ref, default = lavaan_fit("demo_twolevel_missing")
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    fit = mlmiss.sem(ref["case"]["model"], df, cluster=ref["case"]["cluster"], optimizer="em", fixed_x=False)
    assert fit.converged and fit.estimate.optimizer == "em" and fit.estimate.e_steps > 0
    assert abs(fit.loglik - default.loglik) <= 1e-6 * fit.nobs
    np.testing.assert_allclose(fit.theta, default.theta, atol=1e-4)
    text = fit.summary(fit_measures=False)
    assert "Number of E-steps" in text and "EM" in text
    capped = mlmiss.sem(ref["case"]["model"], df, cluster=ref["case"]["cluster"],
                        optimizer="em", em_iter_max=2, fixed_x=False)
    assert not capped.converged and "em_iter_max = 2" in capped.estimate.message


def test_em_is_exact_with_a_singular_between_covariance():
    """singular_between (four between residual variances fixed at zero): from EM's own
    start (FABIN3 loadings) EM reaches the trust region's maximum, the zeros staying
    zero (they are no parameters of the complete data). Observed: logl equal to 3e-15
    relative to N, estimates to 6e-7."""
    problem = problem_of("singular_between")
    reference = optimize(problem, problem.start())
    assert reference.converged
    theta, logl, converged, *_ = fit_em(problem, problem.start(loadings="fabin3"),
                                        max_seconds=120)
    assert converged
    assert abs(logl - reference.loglik) <= 1e-6 * problem.data.n_obs
    np.testing.assert_allclose(theta, reference.theta, atol=1e-4)
    moments = problem.moments(theta)
    zero = [problem.data.y_names.index(v) for v in ("y1", "y2", "y3", "y4")]
    b = moments.sigma_b[np.ix_(zero, zero)]
    # no between residual: y1-y4's between covariance is rank one (the factor alone)
    assert np.linalg.matrix_rank(b, tol=1e-10 * np.abs(b).max()) == 1


def test_em_from_a_start_far_off_returns_to_the_maximum():
    """Started 5% off the maximum in every parameter of singular_between."""
    problem = problem_of("singular_between")
    reference = optimize(problem, problem.start())
    rng = np.random.default_rng(3)
    start = reference.theta * (1 + 0.05 * rng.standard_normal(reference.theta.size))
    theta, logl, converged, *_ = fit_em(problem, start, max_seconds=120)
    assert converged
    np.testing.assert_allclose(theta, reference.theta, atol=1e-4)


FACTOR_MODEL = ("level: 1\n  fw =~ y1 + y2 + y3\nlevel: 2\n  fb =~ y1 + y2 + y3\n"
                "  fb ~ w1\n")


def few_clusters(n):
    df = pd.read_csv(LAVAAN_DIR / "demo_twolevel.csv")
    return df[df["cluster"].isin(sorted(df["cluster"].unique())[:n])]


def test_em_does_not_follow_a_ridge_of_q():
    """demo_twolevel's first 15 clusters: from the start, Q's maximum runs off along a
    ridge (fb's loadings to -6e4, its variance to 0; an M-step that followed it ended
    at logl -911.2, the data's maximum is -899.19, a Heywood case). M-steps kept within
    a radius of the E-step's point reach the trust region's maximum (observed: 4e-15
    per observation, estimates to 1.3e-7)."""
    df = few_clusters(15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = mlmiss.sem(FACTOR_MODEL, df, cluster="cluster", fixed_x=False)
        fit = mlmiss.sem(FACTOR_MODEL, df, cluster="cluster", optimizer="em", max_seconds=60, fixed_x=False)
    assert reference.converged and fit.converged
    assert abs(fit.loglik - reference.loglik) <= 1e-6 * fit.nobs
    np.testing.assert_allclose(fit.theta, reference.theta, atol=1e-5)


def test_em_on_eight_clusters_is_at_least_the_trust_region():
    """demo_twolevel's first 8 clusters: the trust region does not converge (logl
    -484.57); EM, finishing on the edge, converges at a boundary solution with a higher
    log-likelihood (observed -483.08)."""
    df = few_clusters(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = mlmiss.sem(FACTOR_MODEL, df, cluster="cluster", max_seconds=60, fixed_x=False)
        fit = mlmiss.sem(FACTOR_MODEL, df, cluster="cluster", optimizer="em", max_seconds=60, fixed_x=False)
    assert fit.converged and fit.estimate.on_boundary
    assert fit.loglik >= reference.loglik - 1e-6 * fit.nobs


NEAR_ZERO_MODEL = "level: 1\n  y ~ x1 + x2\nlevel: 2\n  y ~ x1 + x2 + w\n"


def test_em_hands_over_to_the_edge_near_a_zero_between_variance():
    """near_zero_between: the maximum has y's between residual variance on the edge
    (zero), where EM crawls (alone it was 1.4e-6 short of the maximum per observation
    after 60 s). EM stops once Sigma_b stays near singular and SLSQP finishes on the edge:
    observed the trust region's logl to 9e-16 per observation, estimates to 1.5e-7."""
    df = pd.read_csv(LAVAAN_DIR.parent / "hard" / "near_zero_between.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = mlmiss.sem(NEAR_ZERO_MODEL, df, cluster="cluster", max_seconds=60, fixed_x=False)
        fit = mlmiss.sem(NEAR_ZERO_MODEL, df, cluster="cluster", optimizer="em",
                         max_seconds=60, fixed_x=False)
    assert reference.converged and reference.estimate.on_boundary
    assert fit.converged and fit.estimate.on_boundary
    assert fit.optimizer == "em + SLSQP on the boundary"
    assert "stopped near the edge" in fit.estimate.message
    assert abs(fit.loglik - reference.loglik) <= 1e-6 * fit.nobs
    np.testing.assert_allclose(fit.theta, reference.theta, atol=1e-5)
    pe = fit.parameter_estimates(se=False)
    residual = pe.query("level == 2 and op == '~~' and lhs == 'y' and rhs == 'y'").iloc[0]
    assert abs(residual["est"]) < 1e-10


def rowwise_statistics(data, parts, complete):
    """The E-step written row by row, as docs/em.md states it (no pattern sums): the
    reference for the kernels."""
    p, mu_y, s = data.n_y, parts["mu_y"], parts["sigma_w"]
    mu_r, zrows = parts["mu_R"], parts["Z"]
    r = mu_r.size
    d = np.zeros((p, r))
    d[complete.both_y] = parts["C"]
    mu_z = parts["mean_u"][complete.z_u]
    out = {k: 0.0 for k in ("t1", "t2", "y1", "y2", "yv", "v1n", "v2n")}
    starts = np.concatenate([[0], np.cumsum(data.cluster_sizes)])
    for j in range(data.n_clusters):
        rows = data.y[starts[j]:starts[j + 1]]
        precision = np.linalg.inv(parts["sigma_RR"])
        eta = np.zeros(r)
        for y in rows:
            o = ~np.isnan(y)
            w = np.linalg.inv(s[np.ix_(o, o)])
            precision = precision + d[o].T @ w @ d[o]
            eta = eta + d[o].T @ w @ (y[o] - mu_y[o])
        cov = np.linalg.inv(precision)
        mean = cov @ eta
        seen = ~np.isnan(data.z[j]) if data.n_z else np.zeros(0, bool)
        if seen.any():
            f = zrows[seen]
            gain = cov @ f.T @ np.linalg.inv(f @ cov @ f.T)
            mean = mean + gain @ (data.z[j, seen] - mu_z[seen] - f @ mean)
            cov = cov - gain @ f @ cov
        v = mu_r + mean
        vv = cov + np.outer(v, v)
        out["t1"] = out["t1"] + v
        out["t2"] = out["t2"] + vv
        out["v1n"] = out["v1n"] + len(rows) * v
        out["v2n"] = out["v2n"] + len(rows) * vv
        for y in rows:
            o, m = ~np.isnan(y), np.isnan(y)
            k = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
            a = np.where(o, y, 0.0)
            a[m] = mu_y[m] + k @ (y[o] - mu_y[o])
            h = np.zeros((p, r))
            h[m] = d[m] - k @ d[o]
            e = np.zeros((p, p))
            e[np.ix_(m, m)] = s[np.ix_(m, m)] - k @ s[np.ix_(o, m)]
            ey = a + h @ mean
            out["y1"] = out["y1"] + ey
            out["y2"] = out["y2"] + np.outer(ey, ey) + h @ cov @ h.T + e
            out["yv"] = out["yv"] + np.outer(ey, v) + h @ cov
    return out


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "singular_between", "paper_like"])
def test_estep_kernels_match_the_rowwise_estep(name):
    """The kernels (pattern forms, per-cluster posteriors, pattern sums) against the
    E-step row by row, on 30 clusters with missing values at both levels; observed:
    4e-15 relative."""
    problem = problem_of(name, clusters=30)
    complete = CompleteData(problem)
    theta = problem.start() * 1.03 + 0.01
    parts = complete.parts(theta)
    fast = expected_statistics(problem.data, parts, complete)
    slow = rowwise_statistics(problem.data, parts, complete)
    for key, value in slow.items():
        np.testing.assert_allclose(getattr(fast, key), value,
                                   atol=1e-12 * max(1.0, np.max(np.abs(value))))


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "paper_like", "singular_between"])
def test_saturated_em_reaches_the_direct_fit_and_lavaan(lavaan_fit, name):
    """h1 by EM (closed-form M-step, E-step from the gradient) against the
    direct quasi-Newton fit and lavaan's unrestricted log-likelihood; observed: equal to
    1e-13 relative to N, moments to 1e-7."""
    ref, fit = lavaan_fit(name)
    direct, em = fit.h1(method="direct"), fit.h1(method="em")
    assert em.converged and em.estimate.optimizer == "em" and em.estimate.e_steps > 0
    assert abs(em.loglik - direct.loglik) <= 1e-9 * fit.nobs
    assert em.loglik >= ref["fit"]["fit_measures"]["unrestricted.logl"] - 1e-6
    for a, b in ((em.moments.sigma_w, direct.moments.sigma_w),
                 (em.moments.sigma_b, direct.moments.sigma_b), (em.moments.mu_y, direct.moments.mu_y)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", ["demo_twolevel_missing", "paper_like", "singular_between"])
def test_saturated_statistics_from_the_gradient(lavaan_fit, name):
    """The h1 EM reads its expected complete-data statistics off the gradient (Fisher's
    identity, mlmiss.estimation.em.saturated); the explicit E-step computes them from the
    posteriors of the between values. Away from the maximum (the start) the two agree:
    observed 1e-12 relative."""
    from types import SimpleNamespace

    from mlmiss.data.levels import gradient_between_cov
    from mlmiss.estimation.saturated import SaturatedProblem

    _, fit = lavaan_fit(name)
    prob = SaturatedProblem(fit.data, fit.model.between_mask)
    theta = prob.start()
    _, g = prob.moment_gradient(theta)
    mean_w, mean_b, lw, lb = prob.split(theta)
    sigma_w, sigma_b = lw @ lw.T, lb @ lb.T
    nb, m, p = prob.both.size, prob.m, prob.p
    n, j = fit.data.n_obs, fit.data.n_clusters
    m_w = np.zeros(p)
    m_w[prob.within_only] = mean_w
    eye = np.eye(m)
    parts = {"mu_y": m_w + np.eye(p)[:, prob.both] @ mean_b[:nb], "sigma_w": sigma_w,
             "mu_R": mean_b, "sigma_RR": sigma_b, "mean_u": mean_b, "C": eye[:nb],
             "Z": eye[nb:]}
    stats = expected_statistics(fit.data, parts,
                                SimpleNamespace(both_y=prob.both, z_u=np.arange(nb, m)))
    # between: E[sum (v - mu_B)] and E[sum (v - mu_B)(v - mu_B)']
    t_engine = sigma_b @ np.concatenate([g.mu_y[prob.both], g.mu_z])
    t_estep = stats.t1 - j * mean_b
    np.testing.assert_allclose(t_engine, t_estep, atol=1e-9 * np.abs(t_estep).max())
    s_engine = j * sigma_b + 2.0 * sigma_b @ gradient_between_cov(g) @ sigma_b
    s_estep = (stats.t2 - np.outer(stats.t1, mean_b) - np.outer(mean_b, stats.t1)
               + j * np.outer(mean_b, mean_b))
    np.testing.assert_allclose(s_engine, s_estep, atol=1e-9 * np.abs(s_estep).max())
    # within: e = y - E b - m_w, E[sum e] and E[sum e e']
    emb = np.zeros((p, nb))
    emb[prob.both, np.arange(nb)] = 1.0
    r1 = stats.y1 - emb @ stats.v1n[:nb]
    yv_b = stats.yv[:, :nb]
    rr = stats.y2 - yv_b @ emb.T - emb @ yv_b.T + emb @ stats.v2n[:nb, :nb] @ emb.T
    e1 = r1 - n * m_w
    ee = rr - np.outer(r1, m_w) - np.outer(m_w, r1) + n * np.outer(m_w, m_w)
    np.testing.assert_allclose(sigma_w @ g.mu_y, e1, atol=1e-9 * np.abs(e1).max())
    np.testing.assert_allclose(n * sigma_w + 2.0 * sigma_w @ g.sigma_w @ sigma_w, ee,
                               atol=1e-9 * np.abs(ee).max())
