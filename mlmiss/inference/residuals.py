"""Residual moments of a two-level fit, per level, as lavaan's ``residuals(fit, type=)``.

For each level the observed side is the saturated (h1) model's moments
(``fit.inspect("h1")``: with missing data lavaan's sample statistics are the h1
estimates) and the fitted side the model's; the residual is observed minus fitted.

The fitted means follow lavaan's per-level split (:func:`level_implied`): each level's
mean is what that level's own model implies, ``(I - B)^-1 alpha`` over its observed
variables. A "both" variable's level-1 mean is then not always 0: when the level-1
model gives a latent variable a nonzero mean (a regression on covariates with nonzero
means) its indicators inherit it, and the level-2 mean is the rest of the total mean.
The h1 model puts the whole mean of a "both" variable at level 2, so lavaan reports a
within-level mean residual there that the between-level one cancels; their sum is the
residual of the total mean. (``fit.inspect("implied")`` shows the total mean at level 2.)

Types (lavaan's names):

* ``"raw"``: the differences themselves.
* ``"cor"`` (= ``"cor.bollen"``, lavaan's default for ``type="cor"``): each side's
  covariance matrix turned into its own correlation matrix, the means divided by the
  observed (h1) standard deviations. The covariance part is what the SRMR of
  :mod:`mlmiss.inference.measures` averages (same helper).
* ``"cor.bentler"`` (lavaan's ``lavResiduals()`` default): both sides divided by the
  observed standard deviations.

lavaan leaves elements below 1e-5 in absolute value unscaled in the correlation
metrics; here every element is scaled (the difference is below 1e-5 times the scale).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.levels import between_cov
from .measures import correlation_matrix

__all__ = ["RESIDUAL_TYPES", "level_implied", "residuals"]

#: accepted ``type`` values; "cor" is "cor.bollen", as in lavaan
RESIDUAL_TYPES = ("raw", "cor", "cor.bollen", "cor.bentler")


def _level_means(model, theta, level: int) -> np.ndarray:
    """The observed variables' means implied by one level's own model."""
    n_obs = len(model.y_names) if level == 1 else len(model.both_names) + len(model.z_names)
    return model.level_moments(theta, level)[1][:n_obs]


def level_implied(fit) -> dict:
    """The model-implied moments per level with lavaan's split of the means:
    ``{"within": {"mean", "cov"}, "between": {"mean", "cov"}}`` (Series / DataFrames,
    variables ordered as in ``fit.inspect("implied")``)."""
    model, theta = fit.model, np.asarray(fit.theta, dtype=float)
    m = model.moments(theta)
    y = list(model.y_names)
    b_names = list(model.both_names) + list(model.z_names)
    return {
        "within": {"mean": pd.Series(_level_means(model, theta, 1), index=y),
                   "cov": pd.DataFrame(m.sigma_w, index=y, columns=y)},
        "between": {"mean": pd.Series(_level_means(model, theta, 2), index=b_names),
                    "cov": pd.DataFrame(between_cov(m), index=b_names, columns=b_names)},
    }


def _scales(variances: np.ndarray) -> np.ndarray:
    """1 / sd, NaN where the variance is not positive (lavaan: NA)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variances > np.finfo(float).eps, 1.0 / np.sqrt(variances), np.nan)


def residuals(fit, type: str = "cor") -> dict:
    """Observed (h1) minus model-implied moments per level: ``{"within": {"mean": Series,
    "cov": DataFrame}, "between": {...}}``, keyed like ``fit.inspect("h1")``. ``type``:
    one of :data:`RESIDUAL_TYPES` (module docstring)."""
    kind = str(type).lower()
    if kind not in RESIDUAL_TYPES:
        raise ValueError(f"residuals(type={type!r}): type must be one of "
                         f"{', '.join(repr(t) for t in RESIDUAL_TYPES)}")
    if kind == "cor":
        kind = "cor.bollen"
    observed = fit.inspect("h1")
    fitted = level_implied(fit)
    out = {}
    for level in ("within", "between"):
        obs_cov = observed[level]["cov"]
        names = list(obs_cov.index)
        s = obs_cov.to_numpy(dtype=float)
        f = fitted[level]["cov"].loc[names, names].to_numpy(dtype=float)
        m_obs = observed[level]["mean"].loc[names].to_numpy(dtype=float)
        m_fit = fitted[level]["mean"].loc[names].to_numpy(dtype=float)
        if kind == "raw":
            cov = s - f
            mean = m_obs - m_fit
        else:
            scale = _scales(np.diag(s))
            if kind == "cor.bollen":
                cov = correlation_matrix(s) - correlation_matrix(f) if len(names) else s - f
            else:
                cov = (s - f) * scale[:, None] * scale[None, :]
            mean = (m_obs - m_fit) * scale
        out[level] = {"mean": pd.Series(mean, index=names),
                      "cov": pd.DataFrame(cov, index=names, columns=names)}
    return out
