"""The independence model's estimates, variable by variable.

Without covariances every variable of the baseline model is a model of its own: a
"both" variable y is a one-way random-effects model (mean mu, within variance a,
between variance b), a within-only one a mean and a variance over its rows, a
between-only one a mean and a variance over its clusters. The last two have closed
forms; the first is solved by Newton's method on its three parameters, for all
variables at once, from each cluster's count n_j, mean ybar_j and within sum of squares
W_j of the available values. With d_j = a + n_j b and r_j = ybar_j - mu,

    -2 logl = sum_j [(n_j - 1) log a + W_j / a + log d_j + n_j r_j^2 / d_j] + const,

since V_j = a I + b 1 1' has |V_j| = a^(n_j - 1) d_j and e' V_j^-1 e = W_j / a +
n_j r_j^2 / d_j. The baseline fit starts at these values and ends there after one
gradient evaluation when nothing else is free; covariances among covariates are left
to the optimizer.
"""

from __future__ import annotations

import numpy as np

from ..model.partable import table_rows


#: EM iterations of a block of covariates, and the change of its estimates (relative to
#: the variances) at which it stops
EM_ITERATIONS = 500
EM_TOLERANCE = 1e-12
#: Newton iterations of the one-way random-effects fit, and the relative size of the
#: last step at which it stops (Newton converges quadratically: the next step would be
#: at round-off)
NEWTON_ITERATIONS = 50
STEP_TOLERANCE = 1e-9


def random_intercepts(counts, means, within):
    """(mu, a, b) per column: the ML estimates of the one-way random-effects model from
    :func:`mlmiss.data.summaries.cluster_summaries`; NaN for a column whose Newton
    iteration fails (a between variance at or below zero, or a within variance that is
    not positive), which is left to the general optimizer."""
    n = counts
    used = n > 0
    total = n.sum(axis=0)
    mu = np.nansum(np.where(used, means, 0.0) * n, axis=0) / total
    within_df = np.maximum(total - used.sum(axis=0), 1.0)
    a = within.sum(axis=0) / within_df
    spread = np.where(used, means - mu, 0.0)
    b = np.maximum(np.sum(used * spread ** 2, axis=0) / used.sum(axis=0) - a / np.maximum(
        total / used.sum(axis=0), 1.0), 0.05 * a)
    ybar = np.where(used, means, 0.0)
    ok = np.ones(n.shape[1], dtype=bool)
    for _ in range(NEWTON_ITERATIONS):
        d = a + n * b
        r = ybar - mu
        nd = np.where(used, n / d, 0.0)
        nr = nd * r
        q = nr * r / d                      # n r^2 / d^2
        grad = np.stack([
            -2.0 * nr.sum(axis=0),
            np.sum(np.where(used, (n - 1.0) / a - within / a ** 2 + 1.0 / d, 0.0) - q, axis=0),
            np.sum(nd - n * q, axis=0)], axis=1)
        hess = np.empty((n.shape[1], 3, 3))
        hess[:, 0, 0] = 2.0 * nd.sum(axis=0)
        hess[:, 1, 1] = np.sum(np.where(used, -(n - 1.0) / a ** 2 + 2.0 * within / a ** 3
                                        - 1.0 / d ** 2, 0.0) + 2.0 * q / d, axis=0)
        hess[:, 2, 2] = np.sum(-n * nd / d + 2.0 * n * n * q / d, axis=0)
        hess[:, 0, 1] = hess[:, 1, 0] = 2.0 * np.sum(nr / d, axis=0)
        hess[:, 0, 2] = hess[:, 2, 0] = 2.0 * np.sum(n * nr / d, axis=0)
        hess[:, 1, 2] = hess[:, 2, 1] = np.sum(-nd / d + 2.0 * n * q / d, axis=0)
        # a maximum of logl needs a positive definite Hessian of -2 logl
        ok &= np.all(np.linalg.eigvalsh(hess) > 0, axis=1)
        if not ok.any():
            break
        hess[~ok] = np.eye(3)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        step[~ok] = 0.0
        # halve while a or b would leave (0, inf): a maximum on the edge b = 0 is the
        # general optimizer's to find (there the iteration does not converge)
        length = np.ones(n.shape[1])
        for _ in range(60):
            bad = (a - length * step[:, 1] <= 0) | (b - length * step[:, 2] <= 0)
            if not bad.any():
                break
            length = np.where(bad, 0.5 * length, length)
        mu = mu - length * step[:, 0]
        a = a - length * step[:, 1]
        b = b - length * step[:, 2]
        small = ((np.abs(step[:, 0]) <= STEP_TOLERANCE * np.sqrt(a))
                 & (np.abs(step[:, 1]) <= STEP_TOLERANCE * a)
                 & (np.abs(step[:, 2]) <= STEP_TOLERANCE * b) & (length == 1.0))
        if np.all(small | ~ok):
            break
    else:
        ok[:] = False
    return np.where(ok, mu, np.nan), np.where(ok, a, np.nan), np.where(ok, b, np.nan)


def normal_fiml(x):
    """(mean, covariance) by ML of the rows of ``x`` (NaN where missing) as independent
    draws from one multivariate normal, by EM over the missing patterns; None if some
    variable has no value or the estimate is not positive definite. For a block of
    covariates that are free to covary with one another and with nothing else: the
    rows of within-only variables, or the clusters' values of between-only ones."""
    observed = ~np.isnan(x)
    n, p = int(observed.any(axis=1).sum()), x.shape[1]
    if n < 2 or not observed.any(axis=0).all():
        return None
    # per missing pattern: its count, and the sums of x_o and x_o x_o' (what the
    # E-step needs, so an iteration costs nothing per row)
    keys = observed @ (1 << np.arange(p))
    filled = np.where(observed, x, 0.0)
    groups = []
    for key in np.unique(keys[keys > 0]):
        seen = (key >> np.arange(p)) & 1 == 1
        rows = filled[keys == key][:, seen]
        o, m = np.flatnonzero(seen), np.flatnonzero(~seen)
        groups.append((o, m, np.ix_(o, o), np.ix_(o, m), np.ix_(m, o), np.ix_(m, m),
                       rows.shape[0], rows.sum(axis=0), rows.T @ rows))
    mean = np.nanmean(x, axis=0)
    cov = np.diag(np.nanvar(x, axis=0))
    for _ in range(EM_ITERATIONS):
        total = np.zeros(p)
        cross = np.zeros((p, p))
        for o, m, oo, om_, mo, mm, count, s_o, ss_o in groups:
            total[o] += s_o
            cross[oo] += ss_o
            if not m.size:
                continue
            # x_m | x_o has mean b + c x_o and covariance cov_mm - c cov_om
            c = np.linalg.solve(cov[oo], cov[om_]).T
            b = mean[m] - c @ mean[o]
            cs = c @ s_o
            total[m] += count * b + cs
            om = np.outer(s_o, b) + ss_o @ c.T
            cross[om_] += om
            cross[mo] += om.T
            cross[mm] += (count * (np.outer(b, b) + cov[mm] - c @ cov[om_])
                          + np.outer(cs, b) + np.outer(b, cs) + c @ ss_o @ c.T)
        new_mean = total / n
        new_cov = cross / n - np.outer(new_mean, new_mean)
        new_cov = 0.5 * (new_cov + new_cov.T)
        scale = np.sqrt(np.maximum(np.diag(new_cov), np.finfo(float).tiny))
        change = max(np.max(np.abs(new_mean - mean) / scale),
                     np.max(np.abs(new_cov - cov) / np.outer(scale, scale)))
        mean, cov = new_mean, new_cov
        if change <= EM_TOLERANCE:
            break
    if np.any(np.linalg.eigvalsh(cov) <= 0):
        return None
    return mean, cov


def _covariate_blocks(table):
    """{level: [names of a connected block of variables with free covariances]}."""
    blocks = {}
    rows = table[(table["op"] == "~~") & (table["lhs"] != table["rhs"])]
    for level, group in rows.groupby("level"):
        parent = {}

        def root(v):
            while parent.setdefault(v, v) != v:
                v = parent[v]
            return v
        for a, b in zip(group["lhs"], group["rhs"]):
            parent[root(a)] = root(b)
        members = {}
        for v in parent:
            members.setdefault(root(v), []).append(v)
        blocks[int(level)] = list(members.values())
    return blocks


def independence_theta(problem) -> np.ndarray:
    """theta of the baseline ``problem`` (:mod:`.baseline`) at the variable-by-variable
    estimates; a parameter these do not give (a covariance among covariates, a variable
    whose one-way fit failed) keeps its ordinary start value."""
    data = problem.data
    both = np.asarray(problem.model.between_mask, dtype=bool)
    y_index = {name: i for i, name in enumerate(data.y_names)}
    z_index = {name: i for i, name in enumerate(data.z_names)}
    counts, means, within = (a[:, both] for a in data.cluster_summaries)
    mu_b, a_b, b_b = random_intercepts(counts, means, within)
    column = {i: c for c, i in enumerate(np.flatnonzero(both))}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y, var_y = np.nanmean(data.y, axis=0), np.nanvar(data.y, axis=0)
        mean_z = np.nanmean(data.z, axis=0) if data.n_z else np.zeros(0)
        var_z = np.nanvar(data.z, axis=0) if data.n_z else np.zeros(0)

    def estimate(name, op, level):
        if name in z_index:
            return (mean_z if op == "~1" else var_z)[z_index[name]]
        i = y_index.get(name)
        if i is None:
            return np.nan
        if i in column:
            c = column[i]
            return {("~1", 2): mu_b, ("~~", 1): a_b, ("~~", 2): b_b}.get(
                (op, level), np.full(len(column), np.nan))[c]
        return (mean_y if op == "~1" else var_y)[i]

    # blocks of covariates that covary: within-only ones over rows, between-only ones
    # over clusters (anything else is left to the optimizer)
    joint = {}
    table = problem.partable.table
    for level, blocks in _covariate_blocks(table).items():
        for names in blocks:
            if level == 1 and all(v in y_index and y_index[v] not in column for v in names):
                fitted = normal_fiml(data.y[:, [y_index[v] for v in names]])
            elif level == 2 and all(v in z_index for v in names):
                fitted = normal_fiml(data.z[:, [z_index[v] for v in names]])
            else:
                continue
            if fitted is not None:
                where = {v: i for i, v in enumerate(names)}
                joint.update({(v, level): (where, *fitted) for v in names})

    def value_of(row):
        level = int(row.level)
        if (row.lhs, level) in joint:
            where, mean, cov = joint[(row.lhs, level)]
            if row.op == "~1":
                return mean[where[row.lhs]]
            if row.op == "~~" and row.rhs in where:
                return cov[where[row.lhs], where[row.rhs]]
        if row.op == "~1" or (row.op == "~~" and row.lhs == row.rhs):
            return estimate(row.lhs, row.op, level)
        return np.nan

    theta = problem.start()
    for row in table_rows(table):
        if row.free:
            value = value_of(row)
            if np.isfinite(value):
                theta[row.free - 1] = value
    return theta
