"""The one mapping between the two-level moments and lavaan's per-level layout.

:class:`Moments` hold the paper's six blocks (mu_y, mu_z, sigma_w, sigma_b, sigma_zz,
sigma_yz). lavaan reports two levels instead:

* level 1 ("within") over the level-1 variables y: covariance sigma_w; mean mu_y for
  the within-only variables and 0 for the "both" ones, whose means live at level 2;
* level 2 ("between") over the "both" variables (in y order) then the between-only z:
  the joint covariance [[sigma_b[B, B], sigma_yz[B, :]], [sigma_yz[B, :]', sigma_zz]]
  and means (mu_y[B], mu_z).

B, the variables with a between part, is ``moments.between_mask``: the one rule.
Every module that needs the per-level view (model moments, the saturated model, fit
measures, reports) goes through here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .moments import Moments


def between_names(y_names, z_names, between_mask) -> list:
    """Level-2 observed variables: the "both" ones in y order, then the between-only ones."""
    return [v for v, b in zip(y_names, between_mask) if b] + list(z_names)


def between_cov(m: Moments) -> np.ndarray:
    """The joint level-2 covariance of the "both" and between-only variables."""
    idx = m.between_index
    nb = idx.size
    joint = np.empty((nb + m.mu_z.size, nb + m.mu_z.size))
    joint[:nb, :nb] = m.sigma_b[np.ix_(idx, idx)]
    joint[:nb, nb:] = m.sigma_yz[idx, :]
    joint[nb:, :nb] = joint[:nb, nb:].T
    joint[nb:, nb:] = m.sigma_zz
    return joint


def to_levels(m: Moments, y_names, z_names) -> dict:
    """lavaan's per-level moments: ``{"within": {"mean", "cov"}, "between": {...}}``,
    means as pandas Series and covariances as DataFrames."""
    y = list(y_names)
    b_names = between_names(y, z_names, m.between_mask)
    idx = m.between_index
    return {
        "within": {"mean": pd.Series(np.where(m.between_mask, 0.0, m.mu_y), index=y),
                   "cov": pd.DataFrame(m.sigma_w, index=y, columns=y)},
        "between": {"mean": pd.Series(np.concatenate([m.mu_y[idx], m.mu_z]), index=b_names),
                    "cov": pd.DataFrame(between_cov(m), index=b_names, columns=b_names)},
    }


def from_levels(within_mean, within_cov, between_mean, between_cov_, between_mask,
                checked: bool = True) -> Moments:
    """Moments from per-level arrays (the inverse of :func:`to_levels`).

    ``within_mean`` (P) is read for the within-only variables only; ``between_mean`` and
    ``between_cov_`` are over the "both" variables (in y order) then the K between-only
    ones. ``checked=False`` skips validation, for arrays right by construction."""
    mask = np.asarray(between_mask, dtype=bool)
    idx = np.flatnonzero(mask)
    p, nb = mask.size, idx.size
    between_mean = np.asarray(between_mean, dtype=float)
    joint = np.asarray(between_cov_, dtype=float)
    k = joint.shape[0] - nb
    mu_y = np.array(within_mean, dtype=float)
    mu_y[idx] = between_mean[:nb]
    sigma_b = np.zeros((p, p))
    sigma_b[np.ix_(idx, idx)] = joint[:nb, :nb]
    sigma_yz = np.zeros((p, k))
    sigma_yz[idx, :] = joint[:nb, nb:]
    build = Moments if checked else Moments.unchecked
    return build(mu_y, between_mean[nb:], within_cov, sigma_b, joint[nb:, nb:], sigma_yz,
                 between=mask)


def gradient_between_cov(g: Moments) -> np.ndarray:
    """A gradient with respect to the moments (``likelihood.loglik_gradient``'s layout)
    as the symmetric G of the joint level-2 covariance: dL = sum_ij G_ij dC_ij.

    sigma_yz holds plain partial derivatives, and each of its elements appears twice
    in the joint covariance, hence the halves."""
    idx = g.between_index
    half = 0.5 * g.sigma_yz[idx, :]
    return np.block([[g.sigma_b[np.ix_(idx, idx)], half], [half.T, g.sigma_zz]])


def between_cov_gradient(joint_gradient, like: Moments) -> Moments:
    """The inverse of :func:`gradient_between_cov`: a symmetric G over the joint level-2
    covariance as a gradient with respect to the moments (laid out like ``like``, zero
    outside the between blocks), so that sum_ij G_ij dC_ij = dL."""
    idx = like.between_index
    g = np.asarray(joint_gradient, dtype=float)
    nb = idx.size
    p, k = like.mu_y.size, like.mu_z.size
    sigma_b = np.zeros((p, p))
    sigma_b[np.ix_(idx, idx)] = g[:nb, :nb]
    sigma_yz = np.zeros((p, k))
    sigma_yz[idx, :] = 2.0 * g[:nb, nb:]   # each element appears twice in the joint matrix
    return Moments.unchecked(np.zeros(p), np.zeros(k), np.zeros((p, p)), sigma_b, g[nb:, nb:],
                             sigma_yz, between=like.between_mask)
