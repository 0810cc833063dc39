"""The example model and data design of Rosseel (2021), section 4.1.

The paper's example (its ``main.R``) is a two-level SEM on an artificial data
set of 2500 rows in J = 200 clusters, 50 clusters each of sizes 5, 10, 15 and
20, with roughly 10% of the values missing at both levels.  The model, in
lavaan syntax, is::

    level: 1
      fw =~ y1 + y2 + y3 + y4 + y5 + y6
      y7 + y8 + y9 + y10 ~ x1 + x2 + x3
      y7 ~~ 0*y8 + 0*y9 + 0*y10
      y8 ~~ 0*y9 + 0*y10
      y9 ~~ 0*y10
    level: 2
      fb =~ y1 + y2 + y3 + y4 + y5 + y6
      fz =~ z1 + z2 + z3 + z4
      fwb =~ w1 + w2 + w3
      fb ~ fz + fwb

``y1``-``y6`` have a within and a between part, ``y7``-``y10`` and the
exogenous (random, ``fixed.x = FALSE``) ``x1``-``x3`` are within-only, and
``z1``-``z4``, ``w1``-``w3`` are between-only.  The paper does not publish its
data, so this module provides

* :func:`paper_model_moments` -- the model-implied moments (in the paper's
  notation: ``mu_y``, ``mu_z``, ``sigma_w``, ``sigma_b``, ``sigma_zz``,
  ``sigma_yz``) at a fixed, plausible parameter point, computed from explicit
  LISREL all-y matrices for each level (paper eqs. 5-8)::

      Sigma = Lambda (I - B)^-1 Psi (I - B)^-T Lambda' + Theta
      mu    = nu + Lambda (I - B)^-1 alpha

* :func:`paper_example` -- a data set with the paper's design drawn from the
  normal two-level model with those moments, with MCAR missingness at both
  levels.

Variable order: ``y_names`` = y1..y10, x1, x2, x3 (P = 13) and ``z_names`` =
z1..z4, w1..w3 (K = 7).

Parameter point (chosen to resemble what lavaan estimates on data of this
kind; every value below is a model parameter, not an estimate):

Level 1 (within), latent vector (fw, y7, y8, y9, y10, x1, x2, x3) where the
observed regression variables enter as single-indicator "phantom" factors:

* loadings of y1..y6 on fw: 1 (marker), 0.8, 0.9, 0.7, 1.2, 0.6
* Var(fw) = 0.9; residual variances of y1..y6: 0.50, 0.50, 0.50, 0.50, 0.50, 0.45
* regressions of y7..y10 on x1, x2, x3 (rows y7..y10)::

      y7 : 0.40  0.20  0.10
      y8 : 0.30  0.10  0.30
      y9 : 0.10  0.50  0.20
      y10: 0.20  0.15  0.20

* residual variances of y7..y10: 0.60, 0.60, 0.65, 0.65 (mutually uncorrelated,
  as the ``0*`` constraints say)
* Var(x1, x2, x3): variances 1.0, covariances x1-x2 0.25, x1-x3 0.20, x2-x3 0.25
* intercepts of y7..y10: 0.15, 0.20, 0.20, 0.20; means of x1..x3: 0.10, -0.10,
  0.05; the within intercepts of y1..y6 are 0 (their means live at level 2).

Level 2 (between), latent vector (fb, fz, fwb), observed (y1..y6 between
parts, z1..z4, w1..w3):

* loadings: fb -> y1..y6: 1, 0.95, 0.85, 1.05, 0.65, 0.65;
  fz -> z1..z4: 1, 0.85, 0.75, 0.9; fwb -> w1..w3: 1, 0.55, 0.8
* regressions fb ~ 0.30 fz + 0.25 fwb
* Var(fz) = 0.8, Var(fwb) = 0.8, Cov(fz, fwb) = 0.3, residual Var(fb) = 0.2
* residual variances: y1..y6 0.08, 0.09, 0.10, 0.11, 0.10, 0.12;
  z1..z4 0.45, 0.35, 0.40, 0.20; w1..w3 0.22, 0.24, 0.16
* intercepts: y1..y6 1.0, 1.05, 1.0, 0.95, 1.0, 1.0; z1..z4 0.5, 0.45, 0.5,
  0.3; w1..w3 -0.4, -0.4, -0.35

This gives intraclass correlations of about 0.2-0.3 for y1..y6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.moments import Moments

__all__ = ["paper_model_moments", "paper_example"]

_Y_BOTH = ("y1", "y2", "y3", "y4", "y5", "y6")
_Y_WITHIN_ONLY = ("y7", "y8", "y9", "y10")
_X = ("x1", "x2", "x3")
_Y_NAMES = _Y_BOTH + _Y_WITHIN_ONLY + _X  # P = 13, the level-1 variables
_Z_NAMES = ("z1", "z2", "z3", "z4", "w1", "w2", "w3")  # K = 7, between-only
_CLUSTER_SIZES = (5, 10, 15, 20)


def _lisrel_moments(lam, beta, psi, theta, nu, alpha):
    """Implied mean and covariance of the LISREL all-y model (paper eqs. 5-8)."""
    ib_inv = np.linalg.inv(np.eye(beta.shape[0]) - beta)
    lam_ib = lam @ ib_inv
    sigma = lam_ib @ psi @ lam_ib.T + theta
    sigma = 0.5 * (sigma + sigma.T)
    mu = nu + lam_ib @ alpha
    return mu, sigma


def _within_level():
    """Level-1 model: (mu_w, Sigma_w) for y1..y10, x1..x3.

    Latent vector eta_w = (fw, y7, y8, y9, y10, x1, x2, x3); the observed
    regression variables are single-indicator factors with zero residual
    variance in Theta (lavaan's "phantom" representation).
    """
    p, m = len(_Y_NAMES), 8
    lam = np.zeros((p, m))
    lam[0:6, 0] = [1.0, 0.8, 0.9, 0.7, 1.2, 0.6]
    lam[6:13, 1:8] = np.eye(7)  # y7..y10, x1..x3 are their own factors

    beta = np.zeros((m, m))
    # rows: y7..y10 (eta 1..4), columns x1..x3 (eta 5..7)
    beta[1:5, 5:8] = [
        [0.40, 0.20, 0.10],
        [0.30, 0.10, 0.30],
        [0.10, 0.50, 0.20],
        [0.20, 0.15, 0.20],
    ]

    psi = np.zeros((m, m))
    psi[0, 0] = 0.9  # Var(fw)
    psi[1:5, 1:5] = np.diag([0.60, 0.60, 0.65, 0.65])  # residual variances y7..y10
    psi[5:8, 5:8] = [  # Var(x1, x2, x3), free (fixed.x = FALSE)
        [1.00, 0.25, 0.20],
        [0.25, 1.00, 0.25],
        [0.20, 0.25, 1.00],
    ]

    theta = np.zeros((p, p))
    theta[0:6, 0:6] = np.diag([0.50, 0.50, 0.50, 0.50, 0.50, 0.45])

    nu = np.zeros(p)
    nu[6:10] = [0.15, 0.20, 0.20, 0.20]  # intercepts of y7..y10
    alpha = np.zeros(m)
    alpha[5:8] = [0.10, -0.10, 0.05]  # means of x1..x3
    return _lisrel_moments(lam, beta, psi, theta, nu, alpha)


def _between_level():
    """Level-2 model: (mean, covariance) of (y1..y6 between parts, z1..z4, w1..w3).

    Latent vector eta_b = (fb, fz, fwb).
    """
    q, m = 6 + len(_Z_NAMES), 3
    lam = np.zeros((q, m))
    lam[0:6, 0] = [1.0, 0.95, 0.85, 1.05, 0.65, 0.65]  # fb
    lam[6:10, 1] = [1.0, 0.85, 0.75, 0.90]  # fz
    lam[10:13, 2] = [1.0, 0.55, 0.80]  # fwb

    beta = np.zeros((m, m))
    beta[0, 1] = 0.30  # fb ~ fz
    beta[0, 2] = 0.25  # fb ~ fwb

    psi = np.array([
        [0.20, 0.00, 0.00],
        [0.00, 0.80, 0.30],
        [0.00, 0.30, 0.80],
    ])
    theta = np.diag([
        0.08, 0.09, 0.10, 0.11, 0.10, 0.12,  # y1..y6 (between)
        0.45, 0.35, 0.40, 0.20,  # z1..z4
        0.22, 0.24, 0.16,  # w1..w3
    ])
    nu = np.array([
        1.0, 1.05, 1.0, 0.95, 1.0, 1.0,  # y1..y6
        0.5, 0.45, 0.5, 0.3,  # z1..z4
        -0.4, -0.4, -0.35,  # w1..w3
    ])
    alpha = np.zeros(m)
    return _lisrel_moments(lam, beta, psi, theta, nu, alpha)


def paper_model_moments() -> Moments:
    """Model-implied moments of the paper's example model at the documented parameter point.

    Returns a :class:`mlmiss.moments.Moments` ordered as y1..y10, x1..x3
    (level-1 variables) and z1..z4, w1..w3 (between-only variables).  ``sigma_b``
    has rank 6 (zero rows/columns for y7..y10, x1..x3) and ``sigma_yz`` has zero
    rows for the same variables.
    """
    mu_w, sigma_w = _within_level()
    mu_2, sigma_2 = _between_level()
    p, k = len(_Y_NAMES), len(_Z_NAMES)
    nb = len(_Y_BOTH)

    sigma_b = np.zeros((p, p))
    sigma_b[:nb, :nb] = sigma_2[:nb, :nb]
    sigma_yz = np.zeros((p, k))
    sigma_yz[:nb, :] = sigma_2[:nb, nb:]
    sigma_zz = sigma_2[nb:, nb:]

    mu_y = mu_w.copy()
    mu_y[:nb] += mu_2[:nb]  # within means of the "both" variables are 0
    mu_z = mu_2[nb:]
    return Moments(mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz)


def paper_example(seed: int = 1234, missing: float = 0.10, n_clusters_per_size: int = 50) -> pd.DataFrame:
    """Draw a data set with the design of the paper's example (section 4.1).

    Parameters
    ----------
    seed : seed for :func:`numpy.random.default_rng`; the result is a
        deterministic function of ``(seed, missing, n_clusters_per_size)``.
    missing : MCAR missing probability in ``[0, 1)`` at both levels.  Each
        level-1 value (y1..y10, x1..x3) is missing independently with this
        probability (a row whose 13 values would all be missing gets its mask
        redrawn); each cluster's value of each between-only variable (z1..z4,
        w1..w3) is missing with this probability, and then missing on every row
        of that cluster.
    n_clusters_per_size : number of clusters of each size 5, 10, 15, 20 (the
        paper has 50, giving 200 clusters and 2500 rows).

    Returns
    -------
    pandas.DataFrame with columns ``cluster`` (integer ids 1..J), y1..y10,
    x1..x3, z1..z4, w1..w3.  The cluster sizes appear in a random order; rows
    of a cluster are contiguous.  Values are drawn from the normal two-level
    model with :func:`paper_model_moments`: ``y_ji = mu_y + y_b(j) + y_w(ji)``
    with ``(y_b(j), z_j)`` jointly normal and ``y_w(ji) ~ N(0, sigma_w)``.
    """
    missing = float(missing)
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be in [0, 1), got {missing!r}")
    n_clusters_per_size = int(n_clusters_per_size)
    if n_clusters_per_size < 1:
        raise ValueError(f"n_clusters_per_size must be >= 1, got {n_clusters_per_size!r}")

    rng = np.random.default_rng(seed)
    mom = paper_model_moments()
    p, k = mom.n_y, mom.n_z
    b_idx = mom.between_index  # the 6 "both" variables

    sizes = rng.permutation(np.repeat(np.asarray(_CLUSTER_SIZES), n_clusters_per_size))
    n_clusters = sizes.shape[0]
    n = int(sizes.sum())
    cluster_of_row = np.repeat(np.arange(n_clusters), sizes)

    # Between level: sample only the nonzero part of sigma_b jointly with z
    # (the full (P + K) joint covariance is singular).
    nb = b_idx.shape[0]
    joint = np.empty((nb + k, nb + k))
    joint[:nb, :nb] = mom.sigma_b[np.ix_(b_idx, b_idx)]
    joint[:nb, nb:] = mom.sigma_yz[b_idx, :]
    joint[nb:, :nb] = joint[:nb, nb:].T
    joint[nb:, nb:] = mom.sigma_zz
    between = rng.standard_normal((n_clusters, nb + k)) @ np.linalg.cholesky(joint).T
    y_between = np.zeros((n_clusters, p))
    y_between[:, b_idx] = between[:, :nb]
    z = mom.mu_z + between[:, nb:]

    # Within level.
    y_within = rng.standard_normal((n, p)) @ np.linalg.cholesky(mom.sigma_w).T
    y = mom.mu_y + y_between[cluster_of_row] + y_within

    # MCAR missingness at level 1; redraw the mask of rows that lost every value.
    if missing > 0.0:
        mask_y = rng.random((n, p)) < missing
        empty = np.flatnonzero(mask_y.all(axis=1))
        while empty.size:
            mask_y[empty] = rng.random((empty.size, p)) < missing
            empty = empty[mask_y[empty].all(axis=1)]
        y[mask_y] = np.nan
        # ... and at level 2, per cluster and variable.
        mask_z = rng.random((n_clusters, k)) < missing
        z[mask_z] = np.nan

    frame = {"cluster": (cluster_of_row + 1).astype(np.int64)}
    for i, name in enumerate(_Y_NAMES):
        frame[name] = y[:, i]
    z_rows = z[cluster_of_row]
    for i, name in enumerate(_Z_NAMES):
        frame[name] = z_rows[:, i]
    return pd.DataFrame(frame)
