"""Each level's expected (Fisher) information about its own moments, approximately.

An optimizer's metric, not a basis for standard errors: it leaves out what the levels
tell about each other's moments, and at level 2 it treats the within covariance as
known. With those simplifications every block is a sum of Kronecker products:

- level 1: a row with level-1 pattern p is normal with covariance Sigma_w[o, o], so
  its means and covariance carry W_p and 1/2 W_p (x) W_p (W_p the pattern's padded
  inverse), as in a one-level FIML fit;
- level 2: cluster j's rows pin its between values v_j = (b_j, z_j) down with
  precision A_j = sum over its rows of W_p[B, B] for b (B: the variables with a between
  part), and observed z values exactly. Its summary is then normal with covariance
  Sigma_B + A_j^{-1} (zero noise on z), and E_j = (Sigma_B + A_j^{-1})^{-1} =
  (I + Abar_j Sigma_B)^{-1} Abar_j, which needs no inverse of a singular A_j or
  Sigma_B. Abar_j puts a precision far above any sample's (1e8 / var) on observed z,
  zero on missing z. The cluster carries E_j for the means and 1/2 E_j (x) E_j for the
  covariance.

On the reference cases the generalized eigenvalues of the saturated model's Hessian
against this metric (``estimation.saturated``) lie in [0.6, 1.3].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data.levels import between_cov
from ..linalg import padded_inverses

#: precision put on an observed between-only value, relative to its variance
KNOWN = 1e8
#: clusters the level-2 sums are taken over at most: beyond, an evenly spaced sample
#: stands for all (weighted up), which a metric can afford (at J = 100,000 the full
#: sums took 0.7 s, a tenth of the h1 fit)
SAMPLE = 4096


class LevelInformation(NamedTuple):
    """Sums over rows (level 1) and clusters (level 2): ``w_mean`` (P, P) = sum W_p,
    ``w_kron`` (P, P, P, P) with [t, u, v, s] = sum W_p[t, u] W_p[v, s]; ``b_mean``
    and ``b_kron`` the same with E_j over the joint between variables (the "both"
    ones in y order, then the between-only ones)."""

    w_mean: np.ndarray
    w_kron: np.ndarray
    b_mean: np.ndarray
    b_kron: np.ndarray


def level_information(data, moments) -> LevelInformation:
    """The per-level sums (see the module docstring) at ``moments``; the level-2 ones
    over at most :data:`SAMPLE` clusters, weighted up to all. Raises
    ``numpy.linalg.LinAlgError`` where sigma_w has a singular observed block."""
    l1, l2 = data.level1, data.level2
    p, k = data.n_y, data.n_z
    bidx = moments.between_index
    nb = bidx.size
    m = nb + k
    w = padded_inverses(moments.sigma_w, l1.observed)
    freq = l1.freq.astype(float)
    flat = w.reshape(-1, p * p)
    w_kron = ((flat * freq[:, None]).T @ flat).reshape(p, p, p, p)
    w_mean = np.tensordot(freq, w, axes=1)
    joint = between_cov(moments)
    n_cl = data.n_clusters
    chosen = (np.arange(n_cl) if n_cl <= SAMPLE
              else np.unique(np.linspace(0, n_cl - 1, SAMPLE).round().astype(np.int64)))
    # A_j of the chosen clusters: their pairs, cluster by cluster, summed per cluster
    ptr = l1.cluster_pair_ptr
    counts = ptr[chosen + 1] - ptr[chosen]
    offsets = np.cumsum(counts) - counts
    pairs = np.repeat(ptr[chosen] - offsets, counts) + np.arange(counts.sum())
    wbb = w[:, bidx][:, :, bidx].reshape(w.shape[0], nb * nb)
    terms = l1.pair_freq[pairs, None] * wbb[l1.pair_pattern[pairs]]
    a = np.zeros((chosen.size, m, m))
    some = counts > 0
    if terms.size:
        a[some, :nb, :nb] = np.add.reduceat(terms, offsets[some], axis=0).reshape(-1, nb, nb)
    if k:
        observed = l2.observed[l2.cluster_pattern[chosen]]
        known = KNOWN / np.maximum(np.diag(joint)[nb:], 1e-300)
        a[:, np.arange(nb, m), np.arange(nb, m)] = observed * known
    e = np.linalg.solve(np.eye(m) + a @ joint, a)
    e = 0.5 * (e + e.transpose(0, 2, 1))
    e_flat = e.reshape(-1, m * m)
    weight = n_cl / max(chosen.size, 1)
    b_kron = weight * (e_flat.T @ e_flat)
    return LevelInformation(w_mean, w_kron, weight * e.sum(axis=0), b_kron.reshape(m, m, m, m))


def covariance_information(kron, rows, cols) -> np.ndarray:
    """1/2 tr(E C_a E C_b) summed as in ``kron`` ([t, u, v, s] = sum E_tu E_vs), for the
    unit symmetric directions C_a of the covariance elements (rows[a], cols[a]) (one
    for a variance, e_i e_j' + e_j e_i' for a covariance)."""
    i, j = np.asarray(rows), np.asarray(cols)
    # tr(E e_s e_t' E e_u e_v') = E_tu E_vs, over the one or two (s, t) of each direction
    total = (kron[j[:, None], i[None, :], j[None, :], i[:, None]]
             + kron[j[:, None], j[None, :], i[None, :], i[:, None]]
             + kron[i[:, None], i[None, :], j[None, :], j[:, None]]
             + kron[i[:, None], j[None, :], i[None, :], j[:, None]])
    half = np.where(i == j, 0.5, 1.0)   # a variance's single term was counted twice per side
    return 0.5 * total * half[:, None] * half[None, :]
