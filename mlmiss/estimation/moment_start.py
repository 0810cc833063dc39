"""Start values from the two levels' sample moments, and the metric to optimize in.

The trust region's cost is in Hessian-vector products (one gradient each): from
lavaan's simple start (loadings 1, regressions 0) paper_like took 13 iterations and
140 gradients, most of them Krylov steps against the poor conditioning of the
parameters. Both are helped by a cheap first stage that never touches the missing
patterns:

1. sample moments per level: the pooled within-cluster covariance matrix S_w of the
   level-1 variables (n_w = N - J degrees of freedom), and the covariance matrix S_2 and
   means of the cluster means of the level-2 variables (the "both" variables' cluster
   means, then the between-only ones; n_2 = J), each from the available values;
2. the model fitted to them by normal-theory ML, level by level, with the cluster means
   of the "both" variables having Sigma_b + Sigma_w / n (n: the harmonic mean cluster
   size), as in Muthen's (1994) MUML:

       Phi(theta) = [n_w F_w + n_2 F_2] / (2 N),
       F = log|Sigma| + tr(Sigma^-1 S) + (m / n) d' Sigma_d^-1 d,  d = sample - model means,

   where level 1's means are those of the within-only variables (Sigma_d: their block of
   Sigma_w; m = N rows) and level 2's those of its variables (m = n_2 = J), by Fisher
   scoring, whose information I(theta) = [n_w I_w + n_2 I_2] / (2 N) with
   I_l[t, u] = tr(Sigma^-1 dSigma_t Sigma^-1 dSigma_u) + 2 (m / n) dmu_t' Sigma_d^-1 dmu_u
   needs only the model's Jacobian.

Phi approximates -logl / N, so its maximizer is near the FIML estimate, and I at that
point approximates the Hessian of -logl / N there: the optimizer works in coordinates
where I is the identity (:func:`.optimizers.optimize`'s ``metric``), which is what
shortens its Krylov sequences. This is a start value only: the FIML fit decides the
estimates, and :func:`moment_start` returns None whenever the first stage fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..threads import one_blas_thread

#: Fisher scoring stops when the largest scaled gradient element of Phi is below this
#: (the FIML fit goes the rest of the way) or after MAX_ITERATIONS
TOLERANCE = 1e-5
MAX_ITERATIONS = 50
#: the metric is used only where its condition number (in the optimizer's units) is
#: below this
MAX_CONDITION = 1e8
#: a level's sample covariance matrix is kept positive definite: eigenvalues below this
#: fraction of the largest are raised to it (pairwise-complete estimates need not be)
EIGEN_FLOOR = 1e-6


@dataclass(frozen=True)
class MomentStart:
    """The first stage's estimate and the information matrix of Phi there (the
    approximate Hessian of -logl / N in theta's units)."""

    theta: np.ndarray
    metric: np.ndarray
    iterations: int


@dataclass(frozen=True)
class _Level:
    n: float                 # the covariance part's weight: its degrees of freedom
    cov: np.ndarray          # S, positive definite
    mean: np.ndarray         # sample means of the variables with a mean at this level
    mean_index: np.ndarray   # which of the level's variables those are
    mean_n: float            # the mean part's weight: its number of observations


def _pairwise_cov(x):
    """Covariance matrix of the columns of x (NaN: not observed) from pairwise-complete
    cross products about the column means, divided by the pair counts (ML)."""
    seen = ~np.isnan(x)
    centred = np.where(seen, x - np.nanmean(x, axis=0), 0.0)
    counts = seen.T.astype(float) @ seen
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred.T @ centred) / counts


def _positive_definite(s):
    """s with eigenvalues raised to EIGEN_FLOOR times the largest; None if s has no
    finite positive scale."""
    if s.size == 0:
        return s
    if not np.all(np.isfinite(s)):
        return None
    values, vectors = np.linalg.eigh(0.5 * (s + s.T))
    top = values[-1]
    if not top > 0:
        return None
    values = np.maximum(values, EIGEN_FLOOR * top)
    return (vectors * values) @ vectors.T


def _levels(data, between_index):
    """(level 1, level 2, the harmonic mean cluster size) of the data's sample moments."""
    p = data.n_y
    n, n_clusters = data.n_obs, data.n_clusters
    counts, means, _ = data.cluster_summaries
    # cross products about the cluster means (each cluster spends one degree of
    # freedom), with one N x P temporary: at J = 100,000 each costs 130 MB
    deviations = np.take(means, data.row_cluster, axis=0)
    np.subtract(data.y, deviations, out=deviations)
    np.nan_to_num(deviations, copy=False)
    level1_patterns = data.level1
    seen = level1_patterns.observed.astype(float)
    pairs = (seen.T * level1_patterns.freq) @ seen
    with np.errstate(invalid="ignore", divide="ignore"):
        s_w = (deviations.T @ deviations) / (pairs * max(n - n_clusters, 1) / n)
        overall = np.nansum(counts * means, axis=0) / counts.sum(axis=0)
    deviations = None
    within_only = np.setdiff1d(np.arange(p), between_index)
    level1 = _Level(float(max(n - n_clusters, 1)), _positive_definite(s_w),
                    overall[within_only], within_only, float(n))
    cluster_values = np.column_stack([means[:, between_index], data.z])
    s_2 = _pairwise_cov(cluster_values)   # about the sample means, as ML's S + d d'
    level2 = _Level(float(n_clusters), _positive_definite(s_2),
                    np.nanmean(cluster_values, axis=0), np.arange(cluster_values.shape[1]),
                    float(n_clusters))
    harmonic = n_clusters / np.sum(1.0 / np.maximum(data.cluster_sizes, 1))
    return level1, level2, harmonic


def _implied(moments, directions, between_index, harmonic):
    """Per level (Sigma_l, its derivatives (T, d, d), the model means of the level's
    mean variables, their derivatives (T, m))."""
    b = between_index
    within = (moments.sigma_w, directions.sigma_w, moments.mu_y, directions.mu_y)

    def level2(sigma_b, sigma_w, sigma_yz, sigma_zz):
        bb = sigma_b[..., b[:, None], b] + sigma_w[..., b[:, None], b] / harmonic
        yz = sigma_yz[..., b, :]
        top = np.concatenate([bb, yz], axis=-1)
        bottom = np.concatenate([np.swapaxes(yz, -1, -2), sigma_zz], axis=-1)
        return np.concatenate([top, bottom], axis=-2)

    between = (level2(moments.sigma_b, moments.sigma_w, moments.sigma_yz, moments.sigma_zz),
               level2(directions.sigma_b, directions.sigma_w, directions.sigma_yz,
                      directions.sigma_zz),
               np.concatenate([moments.mu_y[b], moments.mu_z]),
               np.concatenate([directions.mu_y[:, b], directions.mu_z], axis=1))
    return within, between


def _level_terms(level, sigma, d_sigma, mu, d_mu, want_information):
    """(F, dF/dtheta, Fisher information or None) of one level, or None where Sigma is
    not positive definite."""
    try:
        chol = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return None
    omega = np.linalg.inv(sigma)
    idx = level.mean_index
    d = level.mean - mu[idx]
    # the mean's quadratic form uses its variables' block of Sigma
    omega_m = omega if idx.size == sigma.shape[0] else np.linalg.inv(sigma[np.ix_(idx, idx)])
    od = omega_m @ d
    w = level.mean_n / level.n   # the mean part's weight relative to the covariance part's
    value = 2.0 * np.sum(np.log(np.diag(chol))) + np.sum(omega * level.cov) + w * (d @ od)
    g_sigma = omega - omega @ level.cov @ omega
    g_sigma[np.ix_(idx, idx)] -= w * np.outer(od, od)
    grad = np.einsum("tij,ij->t", d_sigma, g_sigma) - 2.0 * w * (d_mu[:, idx] @ od)
    if not want_information:
        return value, grad, None
    a = omega @ d_sigma   # (T, d, d): Sigma^-1 dSigma_t
    t = a.shape[0]
    info = a.reshape(t, -1) @ np.swapaxes(a, 1, 2).reshape(t, -1).T
    dm = d_mu[:, idx]
    info += 2.0 * w * (dm @ omega_m @ dm.T)
    return value, grad, info


def _phi(problem, theta, levels, harmonic, want_information=True):
    """(Phi, its gradient, its information) at theta, or None outside the region where
    every level's Sigma is positive definite."""
    moments, directions = problem.moments_and_directions(theta)
    parts = _implied(moments, directions, moments.between_index, harmonic)
    value, grad, info = 0.0, 0.0, 0.0
    for level, implied in zip(levels, parts):
        if implied[0].size == 0:
            continue
        terms = _level_terms(level, *implied, want_information)
        if terms is None:
            return None
        value += level.n * terms[0]
        grad = grad + level.n * terms[1]
        if want_information:
            info = info + level.n * terms[2]
    scale = 0.5 / problem.data.n_obs
    return value * scale, grad * scale, (info * scale if want_information else None)


def moment_start(problem, theta0) -> MomentStart | None:
    """Fit the model to the levels' sample moments from theta0 (see the module
    docstring); None if the sample moments, the model's implied ones or the scoring
    steps break down, or if the FIML log-likelihood is no better there than at theta0."""
    with one_blas_thread():   # small matrices, between Numba kernels (and reproducible)
        try:
            return _moment_start(problem, theta0)
        except (np.linalg.LinAlgError, ArithmeticError, ValueError):
            return None   # a start value only: the simple start serves


def _moment_start(problem, theta0):
    if not hasattr(problem, "moments_and_directions"):
        return None
    theta = np.asarray(theta0, dtype=float).copy()
    between_index = problem.moments(theta).between_index
    level1, level2, harmonic = _levels(problem.data, between_index)
    if level1.cov is None or level2.cov is None:
        return None
    levels = (level1, level2)
    scales = np.asarray(problem.scales, dtype=float)
    current = _phi(problem, theta, levels, harmonic)
    if current is None:
        return None
    iterations = 0
    while True:
        value, grad, info = current
        if np.max(np.abs(grad * scales)) < TOLERANCE:
            break
        if iterations == MAX_ITERATIONS:
            return None   # e.g. a Heywood ridge of Phi (a loading to -50, a variance to 0)
        try:
            step = np.linalg.solve(info, -grad)
        except np.linalg.LinAlgError:
            return None
        for _ in range(30):   # step halving: inside the region, downhill
            trial = theta + step
            found = _phi(problem, trial, levels, harmonic)
            if found is not None and found[0] <= value:
                break
            step *= 0.5
        else:
            return None
        theta, current = trial, found
        iterations += 1
    metric = 0.5 * (info + info.T)
    if not np.all(np.isfinite(theta)) or not _well_conditioned(metric * np.outer(scales, scales)):
        return None
    start_logl, logl = problem.loglik(theta0), problem.loglik(theta)
    if not np.isfinite(logl) or (np.isfinite(start_logl) and logl < start_logl):
        return None
    return MomentStart(theta, metric, iterations)


def _well_conditioned(matrix) -> bool:
    """Positive definite with a condition number below MAX_CONDITION: near a degenerate
    point of Phi (a variance at 0) the metric would mislead the trust region."""
    if not np.all(np.isfinite(matrix)):
        return False
    values = np.linalg.eigvalsh(matrix)
    return bool(values[0] > 0 and values[-1] < MAX_CONDITION * values[0])
