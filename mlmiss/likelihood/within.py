"""The within (level-1) stage of the engine: global level-1 patterns on a prefix tree.

Forward (:func:`within_forward`): the inverse W_p of Sigma_w[o, o] for every level-1
pattern, each a rank-one update of its parent's along the prefix tree of the missing
sets (``data.patterns.missing_tree``), and the pattern's within term from its sums of
y and y y', so the cost does not grow with the number of rows.

Backward (:func:`within_backward`): the gradient with respect to sigma_w and mu_y, by
reverse mode through the same walk, O(P^2) per node (``docs/gradient.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import FAST, cholesky_inverse_into, drop_variable_into


@njit(cache=True, fastmath=FAST)
def within_forward(mu_y, omega_w, logdet_w, bidx, tree_var, tree_depth, tree_pattern,
                   freq, pattern_sum, pattern_sumsq, wb, wbb, wmub):
    """Per level-1 pattern p with observed set o: W_p = Sigma_w[o, o]^{-1} (padded with
    zeros) by walking the prefix tree of the missing sets, each node one rank-one update
    of its parent (``linalg.drop_variable_into``, Appendix B.1 with a 1 x 1 block).

    Returns sum_p [n_p log|Sigma_w[o, o]| + tr(W_p S_p(mu))], the within part of
    sum_j [log|Lambda_j| + delta_y' Lambda_j^{-1} delta_y], or nan if some Sigma_w[o, o]
    is not positive definite; stores what the cluster stage needs of each W_p:
    wb = W_p[B, :], wbb = W_p[B, B] (flat) and wmub = (W_p mu)[B].
    Inner loops reduce into fresh locals, so that LLVM can vectorize them."""
    p = mu_y.shape[0]
    nb = bidx.shape[0]
    max_depth = 0
    for node in range(tree_depth.shape[0]):
        max_depth = max(max_depth, tree_depth[node])
    w_stack = np.empty((max_depth + 1, p, p))
    ld_stack = np.empty(max_depth + 1)
    for a in range(p):
        for b in range(p):
            w_stack[0, a, b] = omega_w[a, b]
    ld_stack[0] = logdet_w
    wmu = np.empty(p)
    total = 0.0
    for node in range(tree_depth.shape[0]):
        d = tree_depth[node]
        w = w_stack[d]
        if d > 0:
            step = drop_variable_into(w_stack[d - 1], tree_var[node], w)
            if np.isnan(step):
                return np.nan
            ld_stack[d] = ld_stack[d - 1] + step
        pat = tree_pattern[node]
        if pat < 0:
            continue
        # tr(W S_p(mu)) = <W, sum y y'> - 2 mu' W s + n mu' W mu
        n = freq[pat]
        trace = 0.0
        for a in range(p):
            s = 0.0
            t = 0.0
            for b in range(p):
                t += w[a, b] * pattern_sumsq[pat, a, b]
                s += w[a, b] * mu_y[b]
            wmu[a] = s
            trace += t
        for a in range(p):
            trace += wmu[a] * (n * mu_y[a] - 2.0 * pattern_sum[pat, a])
        total += n * ld_stack[d] + trace
        for k in range(nb):
            for b in range(p):
                wb[pat, k, b] = w[bidx[k], b]
            for l in range(nb):
                wbb[pat, k * nb + l] = w[bidx[k], bidx[l]]
            wmub[pat, k] = wmu[bidx[k]]
    return total



@njit(cache=True, fastmath=FAST)
def close_node(w_parent, k, g_child, l_child, g_parent, v):
    """Adjoint of W_child = W - W[:, k] W[k, :] / W[k, k] (and log-det += log W[k, k]):
    adds the child's adjoint (g_child, l_child) into the parent's g_parent; the log-det
    adjoint passes to the parent unchanged (the caller adds it). v: (P,) scratch.

    With f = W[:, k], d = W[k, k] and v = G f (G = g_child, row/column k cleared: W_child
    has them identically zero):  G_parent += G - (v e_k' + e_k v') / d
    + (f'v / d^2 + l_child / d) e_k e_k'."""
    p = w_parent.shape[0]
    for a in range(p):
        g_child[a, k] = 0.0
        g_child[k, a] = 0.0
    d = w_parent[k, k]
    fv = 0.0
    for a in range(p):
        t = 0.0
        for b in range(p):
            t += g_child[a, b] * w_parent[k, b]  # W symmetric: row k is f'
        v[a] = t
        fv += w_parent[k, a] * t
    for a in range(p):
        for b in range(p):
            g_parent[a, b] += g_child[a, b]
    for a in range(p):
        g_parent[a, k] -= v[a] / d
        g_parent[k, a] -= v[a] / d
    g_parent[k, k] += fv / (d * d) + l_child / d


@njit(cache=True, fastmath=FAST)
def within_backward(mu_y, omega_w, bidx, tree_var, tree_depth, tree_pattern, freq, pattern_sum,
                    pattern_sumsq, pat_c, pat_r, pat_y, g_sigma_w, g_mu_y):
    """The gradient with respect to sigma_w and mu_y, into g_sigma_w and g_mu_y.

    Reverse mode through :func:`within_forward`'s tree walk. The nodes are visited in
    depth-first order: the W_p are recomputed on the way down;
    each pattern seeds its node with the adjoints -X_p/2 (of W_p) and -n_p/2 (of its
    log-det), and adds W_p (s_p - n_p mu) - W_p[:, B] c_p to the mu_y gradient; a node is
    closed (its adjoint pushed to its parent) once its subtree is done. From the root's
    adjoints (G_root, l_root), G_w = l_root Omega - Omega G_root Omega (dW = -W dSigma W).

    Per pattern, from :func:`.clusters.cluster_scores`' sums over its (cluster, pattern)
    pairs: c_p = pat_c[p] = sum n_jp c_j, pat_r[p] = sum c_j s_jp' (so that
    R_p = sum (s_jp - n_jp mu) c_j' = pat_r[p]' - mu c_p'), Y_p = pat_y[p] = sum n_jp K_j
    with K_j = c_j c_j' + F_j."""
    p = mu_y.shape[0]
    nb = bidx.shape[0]
    max_depth = 0
    for node in range(tree_depth.shape[0]):
        max_depth = max(max_depth, tree_depth[node])
    w = np.empty((max_depth + 1, p, p))
    gbar = np.zeros((max_depth + 1, p, p))
    lbar = np.zeros(max_depth + 1)
    var = np.empty(max_depth + 1, np.int64)
    v = np.empty(p)
    sm = np.empty(p)
    for a in range(p):
        g_mu_y[a] = 0.0
        for b in range(p):
            w[0, a, b] = omega_w[a, b]
    top = 0
    for node in range(tree_depth.shape[0]):
        d = tree_depth[node]
        if d > 0:
            while top >= d:
                close_node(w[top - 1], var[top], gbar[top], lbar[top], gbar[top - 1], v)
                lbar[top - 1] += lbar[top]
                top -= 1
            drop_variable_into(w[d - 1], tree_var[node], w[d])
            var[d] = tree_var[node]
            for a in range(p):
                for b in range(p):
                    gbar[d, a, b] = 0.0
            lbar[d] = 0.0
            top = d
        pat = tree_pattern[node]
        if pat < 0:
            continue
        n = freq[pat]
        wd = w[d]
        c_p = pat_c[pat]
        rt = pat_r[pat]
        y_flat = pat_y[pat]
        # seed: gbar -= X_p / 2, X_p = S_p(mu) - R_p E' - E R_p' + E Y_p E', where
        # S_p(mu) = sum yy' - mu (s - n mu)' - s mu' and R_p = rt' - mu c_p'
        for b in range(p):
            sm[b] = pattern_sum[pat, b] - n * mu_y[b]
        for a in range(p):
            ma = mu_y[a]
            sa = pattern_sum[pat, a]
            for b in range(p):
                gbar[d, a, b] -= 0.5 * (pattern_sumsq[pat, a, b] - ma * sm[b] - sa * mu_y[b])
        for e in range(nb):
            be = bidx[e]
            for a in range(p):
                r = 0.5 * (rt[e, a] - mu_y[a] * c_p[e])
                gbar[d, a, be] += r
                gbar[d, be, a] += r
            for f in range(nb):
                gbar[d, be, bidx[f]] -= 0.5 * y_flat[e * nb + f]
        lbar[d] -= 0.5 * n
        # mu_y: W_p (s_p - n_p mu) - W_p[:, B] c_p
        for a in range(p):
            t = 0.0
            for b in range(p):
                t += wd[a, b] * sm[b]
            for e in range(nb):
                t -= wd[a, bidx[e]] * c_p[e]
            g_mu_y[a] += t
    while top >= 1:
        close_node(w[top - 1], var[top], gbar[top], lbar[top], gbar[top - 1], v)
        lbar[top - 1] += lbar[top]
        top -= 1
    # G_w = l_root Omega - Omega sym(G_root) Omega
    lroot = lbar[0]
    g = np.empty((p, p))
    for a in range(p):
        for b in range(p):
            g[a, b] = 0.5 * (gbar[0, a, b] + gbar[0, b, a])
    og = np.empty((p, p))
    for a in range(p):
        for b in range(p):
            t = 0.0
            for e in range(p):
                t += omega_w[a, e] * g[e, b]
            og[a, b] = t
    for a in range(p):
        for b in range(a + 1):
            t = lroot * omega_w[a, b]
            for e in range(p):
                t -= og[a, e] * omega_w[e, b]
            g_sigma_w[a, b] = t
            g_sigma_w[b, a] = t




@njit(cache=True, fastmath=FAST)
def row_within_terms(sigma_w, mu_y, y, row_pattern, observed, out):
    """Each row's within part, log|Sigma_w[o, o]| + r' Sigma_w[o, o]^{-1} r with
    r = y[o] - mu_y[o] over the row's observed set o, into ``out``: what
    :func:`within_forward` sums per pattern, kept per row so that it can be summed
    per cluster. Returns False if some Sigma_w[o, o] is not positive definite."""
    n_pat, p = observed.shape
    idx = np.empty((n_pat, p), np.int64)
    size = np.empty(n_pat, np.int64)
    inv = np.empty((n_pat, p, p))
    logdet = np.empty(n_pat)
    sub = np.empty((p, p))
    work = np.empty((p, p))
    for q in range(n_pat):
        m = np.int64(0)   # not a literal 0: callees compile once, for int64
        for a in range(p):
            if observed[q, a]:
                idx[q, m] = a
                m += 1
        size[q] = m
        for a in range(m):
            for b in range(m):
                sub[a, b] = sigma_w[idx[q, a], idx[q, b]]
        logdet[q] = cholesky_inverse_into(sub, m, inv[q], work)
        if np.isnan(logdet[q]):
            return False
    r = np.empty(p)
    for i in range(y.shape[0]):
        q = row_pattern[i]
        m = size[q]
        for a in range(m):
            r[a] = y[i, idx[q, a]] - mu_y[idx[q, a]]
        quad = 0.0
        for a in range(m):
            t = 0.0
            for b in range(m):
                t += inv[q, a, b] * r[b]
            quad += r[a] * t
        out[i] = logdet[q] + quad
    return True
