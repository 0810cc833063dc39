"""The production log-likelihood and its gradient: the stages run in turn.

What the paper's objective 5 does (sec. 4.6: global level-1 and level-2 patterns),
taken further for speed; each stage is one Numba kernel over plain arrays, one thread:

1. :func:`.within.within_forward`: per level-1 pattern, W_p = Sigma_w[o, o]^{-1} as a
   rank-one update of its parent on the prefix tree of the missing sets, and the
   within term from the pattern's sums of y and y y';
2. :func:`.between.between_patterns`: per level-2 pattern, Sigma_zz[o, o]^{-1}, H and
   Sigma_j(b.z), with its inverse or a rank-revealing factor;
3. :func:`.clusters.cluster_terms`: per cluster, A_j and p_j from its pairs and the
   singular-safe forms (85)-(87), in P_b x P_b terms; McDonald's form for a chunk of
   clusters at once (:mod:`.lanes`). Clusters whose Sigma_j(b.z) is singular or
   indefinite go to kernels of their own (:func:`.clusters.other_cluster_terms`,
   :func:`.clusters.other_cluster_scores`), which compile only when a fit meets one.

The gradient (:func:`loglik_and_gradient`, derivation in ``docs/gradient.md``) runs
stages 1-2, then :func:`.clusters.cluster_scores` (the cluster terms and the level-2
gradient) and :func:`.within.within_backward` (sigma_w and mu_y, reverse mode through
stage 1's tree walk).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data.moments import Moments
from ..errors import InadmissibleMomentsError
from ..linalg import cholesky_inverse
from .between import between_patterns, factor_other_patterns
from .clusters import (cluster_scores, cluster_terms, finish_between_gradient,
                       other_cluster_scores, other_cluster_terms)
from .within import row_within_terms, within_backward, within_forward

LOG_2PI = np.log(2.0 * np.pi)
#: the cluster stage's per-cluster output, when only the sum is wanted
_NO_CLUSTERS = np.empty(0)


class Stages(NamedTuple):
    """Stages 1 and 2 of one evaluation: what the cluster stage needs."""

    omega_w: np.ndarray
    within: float
    wb: np.ndarray
    wbb: np.ndarray
    wmub: np.ndarray
    zinv: np.ndarray
    zlogdet: np.ndarray
    h: np.ndarray
    s_bz: np.ndarray
    r_bz: np.ndarray
    rank_bz: np.ndarray
    s_inv: np.ndarray
    s_logdet: np.ndarray
    s_inv_h: np.ndarray


def pattern_buffers(data, nb, alloc=np.empty):
    """The arrays stages 1 and 2 fill, made by ``alloc``: per level-1 pattern (wb, wbb,
    wmub) and per level-2 pattern (zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
    s_logdet, s_inv_h)."""
    p, n_pat = data.n_y, data.level1.n_patterns
    n_q, k = data.level2.observed.shape
    return ((alloc((n_pat, nb, p)), alloc((n_pat, nb * nb)), alloc((n_pat, nb))),
            (alloc((n_q, k, k)), alloc(n_q), alloc((n_q, nb, k)), alloc((n_q, nb, nb)),
             alloc((n_q, nb, nb)), alloc(n_q, np.int64), alloc((n_q, nb, nb)), alloc(n_q),
             alloc((n_q, nb, k))))


def score_buffers(data, nb, alloc=np.empty):
    """The arrays :func:`.clusters.cluster_scores` fills: per level-1 pattern (pat_c,
    pat_r, pat_y), the level-2 gradient (mu_z, sigma_zz, sigma_yz, sigma_b) and the sums
    of E per level-2 pattern."""
    p, k, n_pat = data.n_y, data.n_z, data.level1.n_patterns
    return (alloc((n_pat, nb)), alloc((n_pat, nb, p)), alloc((n_pat, nb * nb)), alloc(k),
            alloc((k, k)), alloc((nb, k)), alloc((nb, nb)),
            alloc((data.level2.n_patterns, nb, nb)))


def pattern_stages(data, moments):
    """Stages 1 (level-1 patterns) and 2 (level-2 patterns); None if sigma_w or
    sigma_zz (or one of their observed blocks) is not positive definite."""
    l1, l2 = data.level1, data.level2
    bidx = moments.between_index
    omega_w, logdet_w = cholesky_inverse(moments.sigma_w)
    if omega_w is None:
        return None
    (wb, wbb, wmub), (zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet,
                      s_inv_h) = pattern_buffers(data, bidx.size)
    within = within_forward(moments.mu_y, omega_w, logdet_w, bidx, l1.tree_var, l1.tree_depth,
                            l1.tree_pattern, l1.freq, l1.pattern_sum, l1.pattern_sumsq,
                            wb, wbb, wmub)
    if np.isnan(within):
        return None
    if not between_patterns(moments.sigma_b, moments.sigma_zz, moments.sigma_yz, bidx, l2.observed,
                            zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv, s_logdet, s_inv_h):
        return None
    if _other_forms(s_logdet):
        factor_other_patterns(s_bz, r_bz, rank_bz)
    return Stages(omega_w, within, wb, wbb, wmub, zinv, zlogdet, h, s_bz, r_bz, rank_bz, s_inv,
                  s_logdet, s_inv_h)


def _cluster_stage(data, moments, st, each) -> float:
    """Stage 3 (:func:`.clusters.cluster_terms`) after stages 1-2 ``st``: the clusters'
    summed term, also per cluster into ``each`` unless it is empty; nan where some V_j
    is not positive definite."""
    l1, l2 = data.level1, data.level2
    pairs = (l1.cluster_pair_ptr, l1.pair_pattern, l1.pair_freq, l1.pair_sum, st.wb, st.wbb,
             st.wmub)
    total = cluster_terms(moments.mu_z, data.z, l2.cluster_pattern, st.zinv, st.zlogdet, st.h,
                          st.s_inv, st.s_logdet, st.s_inv_h, *pairs, each)
    if _other_forms(st.s_logdet) and not np.isnan(total):
        total += other_cluster_terms(moments.mu_z, data.z, l2.cluster_pattern, st.zinv,
                                     st.zlogdet, st.h, st.s_bz, st.r_bz, st.rank_bz,
                                     st.s_logdet, *pairs, each)
    return total


def _other_forms(s_logdet) -> bool:
    """Whether some level-2 pattern's Sigma_j(b.z) is singular or indefinite (stage 2
    leaves its log-determinant nan): its clusters need the kernels of the other forms."""
    return bool(np.isnan(s_logdet).any())


def loglik(data, moments) -> float:
    """The log-likelihood (lavaan's logl); -inf where the moments are not admissible."""
    data.check_moments(moments)
    st = pattern_stages(data, moments)
    if st is None:
        return -np.inf
    between = _cluster_stage(data, moments, st, _NO_CLUSTERS)
    if np.isnan(between):
        return -np.inf
    return float(-0.5 * (data.n_observed_values * LOG_2PI + st.within + between))


def cluster_logliks(data, moments):
    """Each cluster's log-likelihood (J,), summing to :func:`loglik`; None where the
    moments are not admissible. The clusters are independent, so these are the terms
    whose derivatives are the cluster scores of robust (sandwich) inference.

    Cluster j's term is its rows' within part, sum_i [log|Sigma_w[o_i, o_i]| + r_i' W_i
    r_i] with r_i = y_i - mu_y over the row's observed set (the per-row form of what
    stage 1 sums per pattern), plus its cluster stage term, plus the 2 pi constant of
    its observed values."""
    data.check_moments(moments)
    st = pattern_stages(data, moments)
    if st is None:
        return None
    each = np.empty(data.n_clusters)
    between = _cluster_stage(data, moments, st, each)
    if np.isnan(between):
        return None
    within = np.empty(data.n_obs)
    l1 = data.level1
    if not row_within_terms(moments.sigma_w, moments.mu_y, data.y, l1.row_pattern, l1.observed,
                            within):
        return None
    values = (np.bincount(data.row_cluster, within, data.n_clusters) + each
              + LOG_2PI * (np.bincount(data.row_cluster, (~np.isnan(data.y)).sum(axis=1),
                                       data.n_clusters) + (~np.isnan(data.z)).sum(axis=1)))
    return -0.5 * values


def loglik_and_gradient(data, moments):
    """(log-likelihood, gradient) in one pass; the gradient is ``None`` where the
    log-likelihood is -inf (the moments are not admissible).

    The gradient is a :class:`Moments` of derivatives of :func:`loglik`: ``mu_y``,
    ``mu_z`` and ``sigma_yz`` hold plain partial derivatives; ``sigma_w``, ``sigma_b``
    and ``sigma_zz`` hold the symmetric G with dL = sum_ij G_ij dS_ij for every
    symmetric perturbation dS (so a free off-diagonal element, which appears twice, has
    derivative 2 G_ij). Rows and columns of ``sigma_b``, and rows of ``sigma_yz``, of
    variables without a between part (``moments.between_index``) are structurally
    fixed and returned as 0.
    """
    data.check_moments(moments)
    l1, l2 = data.level1, data.level2
    bidx = moments.between_index
    st = pattern_stages(data, moments)
    if st is None:
        return -np.inf, None
    p, k = data.n_y, data.n_z
    sums = score_buffers(data, bidx.size)
    pat_c, pat_r, pat_y, g_mu_z, g_szz, g_syz, g_sb, e_sum = sums
    pairs = (l1.cluster_pair_ptr, l1.pair_pattern, l1.pair_freq, l1.pair_sum, st.wb, st.wbb,
             st.wmub)
    between = cluster_scores(moments.mu_z, data.z, l2.cluster_pattern, st.zinv, st.zlogdet, st.h,
                             st.s_inv, st.s_logdet, *pairs, e_sum, *sums[:7])
    if _other_forms(st.s_logdet) and not np.isnan(between):
        between += other_cluster_scores(moments.mu_z, data.z, l2.cluster_pattern, st.zinv,
                                        st.zlogdet, st.h, st.s_bz, st.r_bz, st.rank_bz, st.s_inv,
                                        st.s_logdet, *pairs, e_sum, *sums[:7])
    if np.isnan(between):
        return -np.inf, None
    finish_between_gradient(e_sum, st.h, st.zinv, l2.freq, g_szz, g_syz, g_sb)
    value = float(-0.5 * (data.n_observed_values * LOG_2PI + st.within + between))
    g_sw = np.empty((p, p))
    g_mu_y = np.empty(p)
    within_backward(moments.mu_y, st.omega_w, bidx, l1.tree_var, l1.tree_depth, l1.tree_pattern,
                    l1.freq, l1.pattern_sum, l1.pattern_sumsq, pat_c, pat_r, pat_y, g_sw, g_mu_y)
    sigma_b = np.zeros((p, p))
    sigma_b[np.ix_(bidx, bidx)] = 0.5 * (g_sb + g_sb.T)
    sigma_yz = np.zeros((p, k))
    sigma_yz[bidx, :] = g_syz
    gradient = Moments.unchecked(g_mu_y, g_mu_z, g_sw, sigma_b, 0.5 * (g_szz + g_szz.T), sigma_yz,
                                 between=moments.between_mask)
    return value, gradient


def loglik_gradient(data, moments) -> Moments:
    """The gradient of :func:`loglik` with respect to the moments (layout as in
    :func:`loglik_and_gradient`). Raises :class:`InadmissibleMomentsError` where the
    log-likelihood is -inf."""
    value, gradient = loglik_and_gradient(data, moments)
    if gradient is None:
        raise InadmissibleMomentsError(
            "the log-likelihood is -inf at these moments (sigma_w, sigma_zz or some cluster's "
            "V_j is not positive definite), so it has no gradient")
    return gradient
