"""The cluster stage's dense algebra for many clusters at once, clusters in lanes.

Per cluster the algebra is on P_b x P_b matrices (P_b = 6 in the paper's design):
loops of 6 with a dependency chain in each, a square root and divisions in the
Cholesky factor, which one cluster at a time cannot vectorize (0.8 us per cluster,
half of the gradient's cluster stage). Here a chunk of clusters sits on the last axis
of every array, so each step of the algebra is one loop over the chunk's clusters,
independent lanes that the compiler turns into vector instructions (0.15 us per
cluster). The per-cluster formulas are those of :func:`.clusters.cluster_f_into`
(McDonald's form) and :func:`.clusters.cluster_score_vectors` for the gradient
(:func:`mcdonald_lanes`), and of McDonald's form in :func:`.clusters.cluster_terms` for
the log-likelihood (:func:`mcdonald_term_lanes`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg import FAST

#: clusters per chunk: the chunk's lane arrays (seven of nb x nb x CHUNK) stay near the
#: core (gradient at J = 100,000: 101-103 ms with 64, 104-107 with 48 or 128, 107-109
#: with 32, 111-113 with 256)
CHUNK = 64

# The kernels below use Numba's "numpy" error model: a division by a zero pivot gives
# inf (that lane is then caught by its pivot test) instead of raising in the middle of
# a vector loop.


@njit(cache=True)
def lane_buffers(nb, k, n):
    """The lane arrays of a chunk of ``n`` clusters, in the order :func:`mcdonald_lanes`
    and the cluster stage use them: inputs (M, A, p, g, Sigma^zz delta_z, q_zz_a),
    outputs (F, E, c, b, quad, log|M|, smallest pivot) and scratch (L, L^{-1} A, A g, t)."""
    return (np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty((nb, n)),
            np.empty((k, n)), np.empty(n),
            np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty((nb, n)),
            np.empty(n), np.empty(n), np.empty(n),
            np.empty((nb, nb, n)), np.empty((nb, nb, n)), np.empty((nb, n)), np.empty(n))


@njit(cache=True, fastmath=FAST, error_model="numpy")
def cholesky_lanes(m, n, lf, t, pmin, logdet, prod):
    """Lanes l < n: the Cholesky factor of M (its lower triangle is read) into lf, which
    keeps L below the diagonal and 1 / L_jj on it, log|M| into logdet and the smallest
    pivot into pmin (M is positive definite where pmin > 0 and logdet is not nan).
    t, prod: (n,) scratch."""
    nb = m.shape[0]
    for l in range(n):
        pmin[l] = np.inf
        prod[l] = 1.0          # the running product of pivots, folded into logdet
        logdet[l] = 0.0
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
                    d = prod[l] * s
                    prod[l] = d
                    big = max(big, d)
                    small = min(small, d)
                    lf[j, j, l] = 1.0 / np.sqrt(s)
                if big > 1e150 or small < 1e-150:   # keep the product in range
                    for l in range(n):
                        logdet[l] += np.log(prod[l])
                        prod[l] = 1.0
            else:
                for l in range(n):
                    lf[i, j, l] = t[l] * lf[j, j, l]
    for l in range(n):
        logdet[l] += np.log(prod[l])


@njit(cache=True, fastmath=FAST, error_model="numpy")
def mcdonald_term_lanes(m, x, y, n, lf, t, pmin, logdet, quad):
    """What the log-likelihood needs of McDonald's form, lanes l < n: from
    M = S^{-1} + A_j = K K' (lower triangle), x = p_j and y = S^{-1} g_j, log|M| into
    logdet (pmin as in :func:`cholesky_lanes`) and quad = -(y'y + 2 x'y + x'x) after
    x <- K^{-1} x, y <- K^{-1} y."""
    nb = m.shape[0]
    cholesky_lanes(m, n, lf, t, pmin, logdet, quad)
    for i in range(nb):
        for k in range(i):
            for l in range(n):
                x[i, l] -= lf[i, k, l] * x[k, l]
                y[i, l] -= lf[i, k, l] * y[k, l]
        for l in range(n):
            x[i, l] *= lf[i, i, l]
            y[i, l] *= lf[i, i, l]
    for l in range(n):
        quad[l] = 0.0
    for i in range(nb):
        for l in range(n):
            quad[l] -= y[i, l] * y[i, l] + 2.0 * x[i, l] * y[i, l] + x[i, l] * x[i, l]


@njit(cache=True, fastmath=FAST, error_model="numpy")
def mcdonald_lanes(m, a, pj, g, n, f, e_mat, cvec, bvec, quad, logdet, pmin, lf, af, ag, t):
    """For lanes l < n: from M = S^{-1} + A_j (its lower triangle is read) and A_j, p_j,
    g_j: F = M^{-1}, log|M| (into logdet), c = g + F (p - A g), b = p - A c,
    E = A - A F A and quad = g'A g - 2 p'g - (p - A g)' F (p - A g), the quadratic
    forms of the cluster's term (:func:`.clusters.cluster_terms`). pmin receives each
    lane's smallest Cholesky pivot: M is positive definite where it is > 0 and logdet
    is not nan; elsewhere the outputs are meaningless."""
    nb = m.shape[0]
    cholesky_lanes(m, n, lf, t, pmin, logdet, quad)
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
    # A g; X = L^{-1} A (into af) and E = A - A F A = A - X'X, symmetric: half the
    # products of forming A F and then (A F) A
    for e in range(nb):
        for l in range(n):
            t[l] = 0.0
        for c in range(nb):
            for l in range(n):
                t[l] += a[e, c, l] * g[c, l]
        for l in range(n):
            ag[e, l] = t[l]
    for i in range(nb):
        for c in range(nb):
            for l in range(n):
                t[l] = 0.0
            for k in range(i + 1):
                for l in range(n):
                    t[l] += lf[i, k, l] * a[k, c, l]
            for l in range(n):
                af[i, c, l] = t[l]
    for e in range(nb):
        for c in range(e + 1):
            for l in range(n):
                t[l] = a[e, c, l]
            for i in range(nb):
                for l in range(n):
                    t[l] -= af[i, e, l] * af[i, c, l]
            for l in range(n):
                e_mat[e, c, l] = t[l]
                e_mat[c, e, l] = t[l]
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
