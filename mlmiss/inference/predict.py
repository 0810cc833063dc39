"""Factor scores and predicted values of a two-level fit, as lavaan's
``lavPredict(fit, level=)`` (regression / empirical-Bayes scores).

Every score is a conditional expectation given *all* the observed data of the cluster,
at both levels, under the fitted model (lavaan 0.7's route for ``missing = "ml"``):

1. **The cluster's random effects** (:func:`cluster_posteriors`). Write a level-1 row as
   ``y = mu_y + beta_j + w`` (``beta_j`` the between deviations of the "both"
   variables, ``w ~ N(0, Sigma_w)``). Given the observed between-only values
   ``z_o`` the prior of ``(beta_j, z_mis)`` is normal with mean m0 and covariance
   C0 (regression on ``z_o``), and the rows contribute
   ``A_j = sum_i W_i[b, b]``, ``p_j = sum_i W_i[b, :] (y_i - mu_y)`` (``W_i`` the inverse
   of ``Sigma_w`` over the row's observed variables, zero elsewhere). The posterior
   mean is ``(I + C0 A) ^-1 (m0 + C0 p)``, which needs no inverse of C0, so a singular
   between covariance matrix is fine. Clusters are solved together per pattern of
   observed between-only variables.
2. **The completed data.** A missing level-1 value gets
   ``mu_m + beta_m + K (y_o - mu_o - beta_o)`` with ``K = Sigma_w[m, o] Sigma_w[o, o]^-1``
   (exact: it is linear in ``beta``), a missing between-only value its posterior mean;
   done per level-1 missing pattern.
3. **Scores.** Level 1: the within deviations ``E[w | data] = E[y | data] - mu_y - E[beta]``
   go through the level-1 model, ``E[eta | w] = mu_eta + Cov(eta, y_w) Sigma_w^-1 w``;
   level 2: the between deviations ``(E[beta], E[z] - mu_z)`` through the level-2 model,
   with a pseudo-inverse of the between covariance matrix (exact when it is singular:
   the deviations lie in its range). Since everything is linear, these are the exact
   posterior means ``E[eta | all observed data]``.

``type="yhat"`` (or ``"ov"``, the same in lavaan) gives each observed variable's
predicted value at the level as lavaan defines it: its level-implied mean plus the
effects of the factor scores' deviations from their means through the latent
variables (``nu + Lambda E[eta]`` for an indicator; a dependent variable of a
regression on covariates gets its implied mean, as the covariates' part is left out),
and for an exogenous covariate that lavaan carries as a latent "dummy" its own
conditional expectation (its value where observed). At level 2 these are the between
components. lavaan 0.7.2 ignores ``level`` for ``type="yhat"`` and always returns the
level-1 values; here ``level=2`` gives the level-2 ones.

**One difference from lavaan 0.7.2.** lavaan centres the within deviations of the
"both" variables at the level-1 model's implied mean a second time (its cluster
effects are on the scale of the total mean, then the level-1 implied mean is
subtracted again), and shifts the between deviations by the same amount the other way.
The level-1 implied mean of a "both" variable is not zero when the level-1 model gives
a latent variable a nonzero mean (a regression on covariates with nonzero means); then
lavaan's scores are all off by the constant ``-C m`` (level 1) and ``+C m`` (level 2),
m those means and C the score coefficients, and their average is not the latent mean.
The exact conditional expectations are returned here; ``lavaan_centering=True``
reproduces lavaan's numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..linalg import padded_inverses

__all__ = ["PREDICT_TYPES", "cluster_posteriors", "completed_level1", "predict"]

#: accepted ``type`` values ("ov" is "yhat", as in lavaan)
PREDICT_TYPES = ("lv", "yhat", "ov")


# --------------------------------------------------------------------------- posteriors

def cluster_posteriors(data, moments):
    """Posterior means given all the observed data, per cluster: (beta, z), beta the
    between deviations of the "both" variables (J x n_both, y order) and z the
    between-only values with the missing ones filled in (J x K)."""
    lv1 = data.level1
    k = data.n_z
    n_clusters = data.n_clusters
    bidx = np.flatnonzero(moments.between_mask)
    nb = bidx.size
    mu_y, mu_z = moments.mu_y, moments.mu_z
    inverses = padded_inverses(moments.sigma_w, lv1.observed)
    w_b = inverses[:, bidx, :]                       # (n_pat, nb, P)
    w_bb = w_b[:, :, bidx]
    freq = lv1.pair_freq.astype(float)
    a = np.zeros((n_clusters, nb, nb))
    np.add.at(a, lv1.pair_cluster, freq[:, None, None] * w_bb[lv1.pair_pattern])
    centred = lv1.pair_sum - freq[:, None] * mu_y[None, :]
    pvec = np.zeros((n_clusters, nb))
    np.add.at(pvec, lv1.pair_cluster, np.einsum("qbp,qp->qb", w_b[lv1.pair_pattern], centred))

    s_bb = moments.sigma_b[np.ix_(bidx, bidx)]
    s_bz = moments.sigma_yz[bidx, :]
    s_zz = moments.sigma_zz
    beta = np.zeros((n_clusters, nb))
    z = np.array(data.z, dtype=float, copy=True)
    if k:
        observed_z = data.level2.observed
        cluster_pattern = data.level2.cluster_pattern
    else:
        observed_z = np.zeros((1, 0), dtype=bool)
        cluster_pattern = np.zeros(n_clusters, dtype=np.int64)
    for q in range(observed_z.shape[0]):
        members = np.flatnonzero(cluster_pattern == q)
        if members.size == 0:
            continue
        zo, zm = np.flatnonzero(observed_z[q]), np.flatnonzero(~observed_z[q])
        prior = np.block([[s_bb, s_bz[:, zm]], [s_bz[:, zm].T, s_zz[np.ix_(zm, zm)]]])
        m0 = np.zeros((members.size, nb + zm.size))
        if zo.size:
            link = np.vstack([s_bz[:, zo], s_zz[np.ix_(zm, zo)]])
            gain = np.linalg.solve(s_zz[np.ix_(zo, zo)], link.T).T
            m0 = (z[np.ix_(members, zo)] - mu_z[zo]) @ gain.T
            prior = prior - gain @ link.T
        nw = nb + zm.size
        if nw == 0:                      # nothing unknown at level 2 for these clusters
            continue
        lhs = np.broadcast_to(np.eye(nw), (members.size, nw, nw)).copy()
        lhs[:, :, :nb] += np.einsum("ab,jbc->jac", prior[:, :nb], a[members])
        rhs = m0 + pvec[members] @ prior[:, :nb].T
        post = np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]
        beta[members] = post[:, :nb]
        if zm.size:
            z[np.ix_(members, zm)] = mu_z[zm] + post[:, nb:]
    return beta, z


def completed_level1(data, moments, beta) -> np.ndarray:
    """E[y | all observed data] for every stored level-1 row (data order: by cluster,
    then pattern), the observed values kept, given the clusters' posterior ``beta``."""
    lv1 = data.level1
    p = data.n_y
    bidx = np.flatnonzero(moments.between_mask)
    effect = np.zeros((data.n_clusters, p))
    effect[:, bidx] = beta
    row_effect = effect[data.row_cluster]
    out = np.array(data.y, dtype=float, copy=True)
    mu, sw = moments.mu_y, moments.sigma_w
    for q in range(lv1.n_patterns):
        o, m = np.flatnonzero(lv1.observed[q]), np.flatnonzero(~lv1.observed[q])
        if m.size == 0:
            continue
        rows = np.flatnonzero(lv1.row_pattern == q)
        reg = np.linalg.solve(sw[np.ix_(o, o)], sw[np.ix_(o, m)]).T     # K (m x o)
        dev = out[np.ix_(rows, o)] - mu[o] - row_effect[np.ix_(rows, o)]
        out[np.ix_(rows, m)] = mu[m] + row_effect[np.ix_(rows, m)] + dev @ reg.T
    return out


# --------------------------------------------------------------------------- the levels

def _dummies(table, level: int, observed, latent) -> set:
    """The observed variables lavaan turns into latent "dummies" at a level (its LISREL
    representation): those in a regression, those in a covariance with one of them
    (one step further, as lavaan does), and those in a covariance with a latent
    variable."""
    rows = table[table["level"] == level]
    obs, lat = set(observed), set(latent)
    reg = rows[rows["op"] == "~"]
    first = (set(reg["lhs"]) | set(reg["rhs"])) - lat
    cov = rows[rows["op"] == "~~"]
    touching = cov[cov["lhs"].isin(first) | cov["rhs"].isin(first)]
    wider = cov[cov["lhs"].isin(set(touching["lhs"])) | cov["rhs"].isin(set(touching["rhs"]))]
    second = set(touching["lhs"]) | set(touching["rhs"]) | set(wider["lhs"]) | set(wider["rhs"])
    third = (set(cov.loc[cov["lhs"].isin(obs) & cov["rhs"].isin(lat), "lhs"])
             | set(cov.loc[cov["lhs"].isin(lat) & cov["rhs"].isin(obs), "rhs"]))
    return (first | second | third) & obs


def _pseudo_inverse(s: np.ndarray) -> np.ndarray:
    """The inverse, or where s is singular the pseudo-inverse (MASS::ginv's tolerance,
    lavaan's fallback)."""
    return np.linalg.pinv(s, rcond=np.sqrt(np.finfo(float).eps), hermitian=True)


def _level_scores(model, theta, level: int, deviations: np.ndarray):
    """E[every variable of the level | data] from the observed variables' deviations
    from their level-implied means; returns (names, values, implied means, B)."""
    names, mean, cov = model.level_moments(theta, level)
    b = model.level_matrices(theta, level)[1]
    n_obs = deviations.shape[1]
    coef = cov[:, :n_obs] @ _pseudo_inverse(cov[:n_obs, :n_obs])
    return names, mean[None, :] + deviations @ coef.T, mean, b


def _yhat(fit, level, names, values, mean, b, observed, latent) -> np.ndarray:
    """lavaan's predicted values (``lav_lisrel_eyetax3``): each observed variable's
    implied mean plus the effects of the factor scores' deviations through the
    latent variables alone (paths that start at or pass through an observed
    variable are left out); an exogenous covariate carried as a dummy keeps its own
    conditional expectation."""
    position = {v: i for i, v in enumerate(names)}
    dummies = _dummies(fit.partable.table, level, observed, latent)
    covariates = set(fit.partable.covariates()[level])
    b_latent = b.copy()
    b_latent[:, [position[v] for v in dummies]] = 0.0
    effects = np.linalg.inv(np.eye(len(names)) - b_latent)
    lat = [position[v] for v in latent]
    centred = values[:, lat] - mean[lat]
    out = np.empty((values.shape[0], len(observed)))
    for c, v in enumerate(observed):
        i = position[v]
        if v in dummies and v in covariates:
            out[:, c] = values[:, i]
        else:
            out[:, c] = mean[i] + centred @ effects[i, lat]
    return out


def predict(fit, level: int = 1, type: str = "lv", lavaan_centering: bool = False) -> pd.DataFrame:
    """lavaan's ``lavPredict(fit, level=, type=)`` for a two-level fit (module
    docstring). ``level=1``: one row per level-1 row used (index: the data frame's row
    labels); ``level=2``: one row per cluster (index: the cluster ids). ``type``:
    "lv" (factor scores of the level's latent variables) or "yhat" / "ov" (predicted
    values of the level's observed variables). ``lavaan_centering``: reproduce lavaan
    0.7.2's centring of the "both" variables instead of the exact expectations."""
    if isinstance(level, bool) or level not in (1, 2):
        raise ValueError(f"predict(level={level!r}): level must be 1 (within, one row per "
                         "observation) or 2 (between, one row per cluster)")
    kind = str(type).lower()
    if kind not in PREDICT_TYPES:
        raise ValueError(f"predict(type={type!r}): type must be one of "
                         f"{', '.join(repr(t) for t in PREDICT_TYPES)}")
    model, data = fit.model, fit.data
    theta = np.asarray(fit.theta, dtype=float)
    moments = model.moments(theta)
    beta, z = cluster_posteriors(data, moments)
    bidx = np.flatnonzero(moments.between_mask)
    # the level-1 model's implied means of the "both" variables: what lavaan subtracts
    # from the within deviations once more (and adds to the between ones)
    within_mean = model.level_moments(theta, 1)[1][:data.n_y]
    shift = within_mean[bidx] if lavaan_centering else np.zeros(bidx.size)

    if level == 1:
        completed = completed_level1(data, moments, beta)
        effect = np.zeros((data.n_clusters, data.n_y))
        effect[:, bidx] = beta + shift
        deviations = completed - moments.mu_y - effect[data.row_cluster]
        observed = list(model.y_names)
        # back to the data frame's row order (the stored order groups rows by cluster)
        order = (np.argsort(data.row_position, kind="stable") if data.row_position is not None
                 else np.arange(data.n_obs))
        index = pd.Index(np.asarray(data.row_index)[order])
    else:
        deviations = np.hstack([beta + shift, z - moments.mu_z])
        observed = list(model.both_names) + list(model.z_names)
        order = np.arange(data.n_clusters)
        index = pd.Index(data.cluster_ids, name=data.cluster_name or None)
    names, values, mean, b = _level_scores(model, theta, level, deviations)
    values = values[order]
    latent = list(model.latent_names[level])
    if kind == "lv":
        position = {v: i for i, v in enumerate(names)}
        return pd.DataFrame(values[:, [position[v] for v in latent]], index=index,
                            columns=latent)
    out = _yhat(fit, level, names, values, mean, b, observed, latent)
    return pd.DataFrame(out, index=index, columns=observed)
