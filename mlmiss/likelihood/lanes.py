"""The cluster stage's dense algebra for many clusters at once, clusters in lanes.

Per cluster the algebra is on P_b x P_b matrices (P_b = 6 in the paper's design):
loops of 6 with a dependency chain in each, a square root and divisions in the
Cholesky factor, which one cluster at a time cannot vectorize (0.8 us per cluster,
half of the gradient's cluster stage). Here a chunk of clusters sits on the last axis
of every array, so each step of the algebra is one loop over the chunk's clusters,
independent lanes that the compiler turns into vector instructions (0.15 us per
cluster). The per-cluster formulas are those of :func:`.clusters.cluster_f_into`
(McDonald's form) and :func:`.clusters.cluster_score_vectors`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import FAST

#: clusters per chunk: the chunk's lane arrays stay in the core's L2 cache
CHUNK = 256


@njit(cache=True)
def lane_buffers(nb, k, n):
    """The lane arrays of a chunk of ``n`` clusters, in the order :func:`mcdonald_lanes`
    and the cluster stage use them: inputs (M, A, p, g, Sigma^zz delta_z, q_zz_a),
    outputs (F, E, c, b, quad, log|M|, smallest pivot) and scratch (L, A F, A g, t)."""
    return (np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty((nb, n)),
            np.empty((k, n)), np.empty(n),
            np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty((nb, n)),
            np.empty(n), np.empty(n), np.empty(n),
            np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty(n))


@njit(cache=True, fastmath=FAST)
def mcdonald_lanes(m, a, pj, g, n, f, e_mat, cvec, bvec, quad, logdet, pmin, lf, af, ag, t):
    """For lanes l < n: from M = S^{-1} + A_j (its lower triangle is read) and A_j, p_j,
    g_j: F = M^{-1}, log|M| (into logdet), c = g + F (p - A g), b = p - A c,
    E = A - A F A and quad = g'A g - 2 p'g - (p - A g)' F (p - A g), the quadratic
    forms of the cluster's term (:func:`.clusters.cluster_terms`). pmin receives each
    lane's smallest Cholesky pivot: M is positive definite where it is > 0 and logdet
    is not nan; elsewhere the outputs are meaningless."""
    nb = m.shape[0]
    for l in range(n):
        pmin[l] = np.inf
        quad[l] = 1.0          # the running product of pivots, folded into logdet
        logdet[l] = 0.0
    # Cholesky factor; lf keeps L below the diagonal and 1 / L_jj on it
    for j in range(nb):
        for i in range(j, nb):
            for l in range(n):
                t[l] = m[i, j, l]
            for k in range(j):
                for l in range(n):
                    t[l] -= lf[i, k, l] * lf[j, k, l]
            if i == j:
                big = 0.0
                small = np.inf
                for l in range(n):
                    s = t[l]
                    pmin[l] = min(pmin[l], s)
                    d = quad[l] * s
                    quad[l] = d
                    big = max(big, d)
                    small = min(small, d)
                    lf[j, j, l] = 1.0 / np.sqrt(s)
                if big > 1e150 or small < 1e-150:   # keep the product in range
                    for l in range(n):
                        logdet[l] += np.log(quad[l])
                        quad[l] = 1.0
            else:
                for l in range(n):
                    lf[i, j, l] = t[l] * lf[j, j, l]
    for l in range(n):
        logdet[l] += np.log(quad[l])
    # L^{-1} in place, column by column
    for j in range(nb):
        for i in range(j + 1, nb):
            for l in range(n):
                t[l] = -lf[i, j, l] * lf[j, j, l]
            for k in range(j + 1, i):
                for l in range(n):
                    t[l] -= lf[i, k, l] * lf[k, j, l]
            for l in range(n):
                lf[i, j, l] = t[l] * lf[i, i, l]
    # F = L^{-T} L^{-1}
    for i in range(nb):
        for j in range(i + 1):
            for l in range(n):
                t[l] = 0.0
            for k in range(i, nb):
                for l in range(n):
                    t[l] += lf[k, i, l] * lf[k, j, l]
            for l in range(n):
                f[i, j, l] = t[l]
                f[j, i, l] = t[l]
    # A g, A F, E = A - (A F) A
    for e in range(nb):
        for l in range(n):
            t[l] = 0.0
        for c in range(nb):
            for l in range(n):
                t[l] += a[e, c, l] * g[c, l]
        for l in range(n):
            ag[e, l] = t[l]
    for e in range(nb):
        for c in range(nb):
            for l in range(n):
                t[l] = 0.0
            for d in range(nb):
                for l in range(n):
                    t[l] += a[e, d, l] * f[d, c, l]
            for l in range(n):
                af[e, c, l] = t[l]
    for e in range(nb):
        for c in range(nb):
            for l in range(n):
                t[l] = a[e, c, l]
            for d in range(nb):
                for l in range(n):
                    t[l] -= af[e, d, l] * a[d, c, l]
            for l in range(n):
                e_mat[e, c, l] = t[l]
    # c = g + F (p - A g); then the quadratic forms, with F (p - A g) = c - g
    for e in range(nb):
        for l in range(n):
            t[l] = g[e, l]
        for c in range(nb):
            for l in range(n):
                t[l] += f[e, c, l] * (pj[c, l] - ag[c, l])
        for l in range(n):
            cvec[e, l] = t[l]
    for l in range(n):
        quad[l] = 0.0
    for e in range(nb):
        for l in range(n):
            u = pj[e, l] - ag[e, l]
            quad[l] += g[e, l] * ag[e, l] - 2.0 * pj[e, l] * g[e, l] - u * (cvec[e, l] - g[e, l])
    # b = p - A c
    for e in range(nb):
        for l in range(n):
            t[l] = pj[e, l]
        for c in range(nb):
            for l in range(n):
                t[l] -= a[e, c, l] * cvec[c, l]
        for l in range(n):
            bvec[e, l] = t[l]
