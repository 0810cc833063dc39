"""Missing-pattern bookkeeping, built once per data set (Rosseel 2021, secs. 4.5-4.6).

Three groupings of the level-1 rows are used by the objectives:

* global level-1 patterns: rows that miss the same variables (objective 5 inverts
  ``sigma_w[o, o]`` once per pattern; the engine walks the prefix tree of the missing
  sets, each inverse a rank-one update of its parent's);
* (cluster, pattern) pairs: the patterns within each cluster (objective 4 loops over
  them; objective 5 sums each cluster's pairs with its patterns' inverses);
* level-2 patterns: clusters that miss the same between-only variables.

Rows are stored sorted by cluster and, inside a cluster, by pattern, so that every
pair is a contiguous block of rows and every cluster a contiguous block of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _unique_rows_by_frequency(mask: np.ndarray):
    """Group the rows of a boolean matrix: (patterns, pattern id per row, counts).

    Patterns are ordered from most to least frequent (ties: lexicographic), as lavaan
    does; the order is cosmetic. Up to 62 columns a row is one integer (its bits, the
    first column the most significant, so integer order is lexicographic order): a 1-d
    unique instead of a sort of whole rows, 10x faster on a million rows.
    """
    n, p = mask.shape
    if n == 0:
        return np.zeros((0, p), bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if p <= 62:
        weights = np.left_shift(np.int64(1), np.arange(p - 1, -1, -1, dtype=np.int64))
        keys = mask.astype(np.int64) @ weights
        ukeys, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        uniq = (ukeys[:, None] & weights[None, :]) != 0
    else:
        uniq, inverse, counts = np.unique(mask, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[np.ravel(inverse)], counts[order]


@dataclass(frozen=True, eq=False)
class Level1Patterns:
    """Global level-1 missing patterns and the (cluster, pattern) pairs.

    Attributes
    ----------
    observed : (n_patterns, P) bool, True where the pattern observes the variable.
    freq : (n_patterns,) number of rows with the pattern.
    row_pattern : (N,) pattern of each stored row.
    pair_cluster, pair_pattern, pair_freq : (n_pairs,) the pairs, cluster-major.
    pair_row_ptr : (n_pairs + 1,) rows of pair q are ``pair_row_ptr[q]:pair_row_ptr[q+1]``.
    cluster_pair_ptr : (J + 1,) pairs of cluster j are ``cluster_pair_ptr[j]:cluster_pair_ptr[j+1]``.
    pattern_sum, pattern_sumsq : (n_patterns, P) and (n_patterns, P, P) sums of y and
        y y' over the pattern's rows (zeros at unobserved variables).
    pair_sum : (n_pairs, P) sums of y over the pair's rows (zeros where unobserved).
    pattern_pairs, pattern_pair_ptr : pairs of pattern p are
        ``pattern_pairs[pattern_pair_ptr[p]:pattern_pair_ptr[p+1]]`` (the paper's
        objective 5 visits them per pattern).
    tree_var, tree_depth, tree_pattern : the patterns' missing sets as a prefix tree in
        depth-first order (see :func:`missing_tree`).
    """

    observed: np.ndarray
    freq: np.ndarray
    row_pattern: np.ndarray
    pair_cluster: np.ndarray
    pair_pattern: np.ndarray
    pair_freq: np.ndarray
    pair_row_ptr: np.ndarray
    cluster_pair_ptr: np.ndarray
    pattern_sum: np.ndarray
    pattern_sumsq: np.ndarray
    pair_sum: np.ndarray
    pattern_pairs: np.ndarray
    pattern_pair_ptr: np.ndarray
    tree_var: np.ndarray
    tree_depth: np.ndarray
    tree_pattern: np.ndarray

    @property
    def n_patterns(self) -> int:
        return self.observed.shape[0]

    @property
    def n_pairs(self) -> int:
        return self.pair_cluster.shape[0]


@dataclass(frozen=True, eq=False)
class Level2Patterns:
    """Level-2 missing patterns of the between-only variables.

    The pattern that observes nothing (a cluster with every z missing, or K = 0) is
    a pattern like any other, so the objectives need no special case for it.

    observed : (n_patterns, K) bool; freq : (n_patterns,) clusters per pattern;
    cluster_pattern : (J,) pattern of each cluster.
    """

    observed: np.ndarray
    freq: np.ndarray
    cluster_pattern: np.ndarray

    @property
    def n_patterns(self) -> int:
        return self.observed.shape[0]


def sort_rows(y: np.ndarray, row_cluster: np.ndarray):
    """Order rows by cluster, then by level-1 pattern; returns (order, patterns, pattern ids)."""
    observed, row_pattern, _ = _unique_rows_by_frequency(~np.isnan(y))
    # one integer key, (cluster, pattern) in lexicographic order, one stable sort
    key = row_cluster.astype(np.int64) * max(observed.shape[0], 1) + row_pattern
    order = np.argsort(key, kind="stable")
    return order, observed, row_pattern[order]


def level1_patterns(y, row_cluster, observed, row_pattern, n_clusters) -> Level1Patterns:
    """Bookkeeping for rows already sorted by (cluster, pattern) with :func:`sort_rows`."""
    n, p = y.shape
    n_pat = observed.shape[0]
    freq = np.bincount(row_pattern, minlength=n_pat).astype(np.int64)
    # a new pair starts wherever the cluster or the pattern changes
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = (row_cluster[1:] != row_cluster[:-1]) | (row_pattern[1:] != row_pattern[:-1])
    first = np.flatnonzero(starts)
    pair_row_ptr = np.append(first, n).astype(np.int64)
    pair_cluster = row_cluster[first].astype(np.int64)
    pair_pattern = row_pattern[first].astype(np.int64)
    pair_freq = np.diff(pair_row_ptr)
    cluster_pair_ptr = np.searchsorted(pair_cluster, np.arange(n_clusters + 1)).astype(np.int64)
    pattern_pairs = np.argsort(pair_pattern, kind="stable").astype(np.int64)
    pattern_pair_ptr = np.searchsorted(
        pair_pattern[pattern_pairs], np.arange(n_pat + 1)).astype(np.int64)

    y0 = np.where(np.isnan(y), 0.0, y)
    pair_sum = np.add.reduceat(y0, first, axis=0) if n else np.zeros((0, p))
    pattern_sum, pattern_sumsq = _pattern_sums(y0, row_pattern, n_pat)
    tree_var, tree_depth, tree_pattern = missing_tree(observed)
    return Level1Patterns(
        tree_var=tree_var, tree_depth=tree_depth, tree_pattern=tree_pattern,
        observed=observed, freq=freq, row_pattern=row_pattern.astype(np.int64),
        pair_cluster=pair_cluster, pair_pattern=pair_pattern, pair_freq=pair_freq,
        pair_row_ptr=pair_row_ptr, cluster_pair_ptr=cluster_pair_ptr,
        pattern_pairs=pattern_pairs, pattern_pair_ptr=pattern_pair_ptr,
        pattern_sum=pattern_sum, pattern_sumsq=pattern_sumsq, pair_sum=pair_sum,
    )


def _pattern_sums(y0, row_pattern, n_pat):
    """Per pattern, the sums of y and of y y' over its rows (y0: y with zeros for NaN):
    one product of each pattern's block of rows, in pattern order, so no N x P x P
    temporary is ever made."""
    p = y0.shape[1]
    pattern_sum = np.zeros((n_pat, p))
    pattern_sumsq = np.zeros((n_pat, p, p))
    by_pattern = np.argsort(row_pattern, kind="stable")
    bounds = np.searchsorted(row_pattern[by_pattern], np.arange(n_pat + 1))
    for pat in range(n_pat):
        block = y0[by_pattern[bounds[pat]:bounds[pat + 1]]]
        pattern_sum[pat] = block.sum(axis=0)
        pattern_sumsq[pat] = block.T @ block
    return pattern_sum, pattern_sumsq


def missing_tree(observed: np.ndarray):
    """The missing sets of the patterns as a prefix tree, in depth-first order.

    Node 0 is the root (nothing missing). Every other node adds one missing variable,
    ``tree_var[node]``, to its parent, which is the closest earlier node at depth
    ``tree_depth[node] - 1``. ``tree_pattern[node]`` is the pattern whose missing set the
    node spells out, or -1 for an intermediate node. Walking the nodes in order, each
    inverse of sigma_w[o, o] is one rank-one update away from its parent's, and patterns
    that share missing variables share the work.
    """
    n_pat, p = observed.shape
    children = [dict()]
    pattern_at = [-1]
    for pat in range(n_pat):
        node = 0
        for var in np.flatnonzero(~observed[pat]):
            nxt = children[node].get(int(var))
            if nxt is None:
                nxt = len(children)
                children[node][int(var)] = nxt
                children.append(dict())
                pattern_at.append(-1)
            node = nxt
        pattern_at[node] = pat
    var_out, depth_out, pat_out = [], [], []
    stack = [(0, -1, 0)]
    while stack:
        node, var, depth = stack.pop()
        var_out.append(var)
        depth_out.append(depth)
        pat_out.append(pattern_at[node])
        for child_var in sorted(children[node], reverse=True):
            stack.append((children[node][child_var], child_var, depth + 1))
    return (np.array(var_out, np.int64), np.array(depth_out, np.int64), np.array(pat_out, np.int64))


def level2_patterns(z: np.ndarray) -> Level2Patterns:
    """Group clusters by which between-only variables they observe."""
    observed, cluster_pattern, freq = _unique_rows_by_frequency(~np.isnan(z))
    return Level2Patterns(observed=observed, freq=freq.astype(np.int64),
                          cluster_pattern=cluster_pattern.astype(np.int64))
