"""Random two-level data sets and moments for property tests.

The data need not come from the moments: every method must return the same number
for any data and any admissible moments. What matters is covering the awkward
shapes: clusters of size 1-30, empty rows, clusters whose z are all missing, no z,
within-only and between-only variables, and singular Sigma_b.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mlmiss


def random_case(seed, n_y=3, n_z=2, n_between=2, n_clusters=6, max_size=30,
                miss_y=0.2, miss_z=0.2, sigma_b_rank=None, zero_rows=0, ids="int"):
    """A (TwoLevelData, Moments) pair.

    sigma_b_rank: rank of the loadings behind the joint between covariance of (y_b, z)
    (None = full rank; 0 = sigma_b all zero, every variable within-only).
    zero_rows: this many between variables get a zero *residual*: their between part
    is an exact combination of the other between parts, so sigma_b is singular.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, size=n_clusters)
    n = int(sizes.sum())
    cluster = np.repeat(np.arange(n_clusters), sizes)
    y = rng.normal(size=(n, n_y)) + rng.normal(size=(n_clusters, n_y))[cluster]
    y[rng.random(size=y.shape) < miss_y] = np.nan
    z_cluster = rng.normal(size=(n_clusters, n_z))
    z_cluster[rng.random(size=z_cluster.shape) < miss_z] = np.nan
    z = z_cluster[cluster]
    if ids == "str":
        labels = np.array([f"c{v * 7 % 13}-{v}" for v in range(n_clusters)], dtype=object)
    else:
        labels = (np.arange(n_clusters) * 37 + 5) % 1009
    df = pd.DataFrame({"cl": labels[cluster]})
    y_names = [f"y{k}" for k in range(n_y)]
    z_names = [f"z{k}" for k in range(n_z)]
    for k, name in enumerate(y_names):
        df[name] = y[:, k]
    for k, name in enumerate(z_names):
        df[name] = z[:, k]
    df = df.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))  # unsorted rows
    # every variable needs one observed value, or the data layer rightly refuses it
    for name in y_names + z_names:
        if df[name].isna().all():
            df.loc[df.index[0], name] = 0.5
    data = mlmiss.TwoLevelData.from_frame(df, "cl", y=y_names, z=z_names)
    return data, random_moments(rng, n_y, n_z, n_between, sigma_b_rank, zero_rows)


def random_moments(rng, n_y, n_z, n_between, sigma_b_rank=None, zero_rows=0):
    a = rng.normal(size=(n_y + 2, n_y))
    sigma_w = a.T @ a / (n_y + 2) + 0.3 * np.eye(n_y)
    between = np.sort(rng.choice(n_y, size=n_between, replace=False))
    m = n_between + n_z
    rank = m if sigma_b_rank is None else sigma_b_rank
    load = rng.normal(size=(m, max(rank, 1))) * (rank > 0)
    joint = load @ load.T
    # z needs a positive definite covariance; y_b may be singular
    joint[n_between:, n_between:] += 0.5 * np.eye(n_z)
    for r in range(min(zero_rows, n_between)):
        # y_b[r] becomes an exact combination of the other between parts of y
        w = np.zeros(m)
        w[:n_between] = rng.normal(size=n_between)
        w[r] = 0.0
        joint[r, :] = w @ joint
        joint[:, r] = joint[r, :]
        joint[r, r] = w @ joint @ w
    sigma_b = np.zeros((n_y, n_y))
    sigma_b[np.ix_(between, between)] = joint[:n_between, :n_between]
    sigma_yz = np.zeros((n_y, n_z))
    sigma_yz[between, :] = joint[:n_between, n_between:]
    sigma_zz = joint[n_between:, n_between:]
    return mlmiss.Moments(rng.normal(size=n_y), rng.normal(size=n_z), sigma_w, sigma_b,
                          sigma_zz, sigma_yz)


def with_smallest_between_eigenvalue(moments, value):
    """The moments with the smallest eigenvalue of sigma_b's between block (the variables
    in moments.between_index) moved to ``value``; its eigenvector and the other
    eigenvalues are unchanged. A negative value makes sigma_b indefinite, and with it
    every Sigma_j(b.z) = sigma_b - sigma_yz G' Sigma_j^zz G sigma_zy (which is smaller)."""
    b = moments.between_index
    fields = moments.as_dict()
    sigma_b = fields["sigma_b"].copy()
    eigvals, eigvecs = np.linalg.eigh(sigma_b[np.ix_(b, b)])
    v = eigvecs[:, 0]
    sigma_b[np.ix_(b, b)] += (value - eigvals[0]) * np.outer(v, v)
    sigma_b = (sigma_b + sigma_b.T) / 2
    return mlmiss.Moments.from_dict(dict(fields, sigma_b=sigma_b))


def between_observed(data, moments):
    """(n_clusters, P_b) booleans: does cluster j observe between variable b on some row.
    A cluster lacking some (not all) of them has a singular A_j; one lacking all of them
    has A_j = 0."""
    b = moments.between_index
    out = np.zeros((data.n_clusters, b.size), dtype=bool)
    for j in range(data.n_clusters):
        rows = data.y[data.cluster_rows(j)][:, b]
        out[j] = ~np.all(np.isnan(rows), axis=0)
    return out
