"""The du Toit & du Toit (2008) solution (Rosseel 2021, sec. 3.4, eqs. 78-81; Appendix A).

McDonald (sec. 3.3) inverts V_j by the second partitioned-inverse identity (A21),
eliminating z first; du Toit & du Toit use the first identity (A20) and eliminate y
first. V_j(yy) = Lambda_j + Q_j Sb Q_j' (A1) is inverted with the classic Woodbury
identity (A25), which needs Sb^{-1}:

    A_j  = Q_j' Lambda_j^{-1} Q_j,    p_j = Q_j' Lambda_j^{-1} delta_j^y
    B_j  = (Sb^{-1} + A_j)^{-1}                                         (A2)
    Q_j' V_j(yy)^{-1} Q_j = A_j B_j Sb^{-1}                             (A5)
    Sigma_j(z.y) = Szz - Szy A_j B_j Sb^{-1} Syz                        (A6)
    V_j^zz = (G_j Sigma_j(z.y) G_j')^{-1}                               (A7)
    g~_j   = Syz G_j' V_j^zz delta_j^z                                  (A12)

and then

    q_zz = delta_z' V_j^zz delta_z                                      (81)
    q_yz = - p_j' B_j Sb^{-1} g~_j                                      (80)
    q_yy = delta_y' Lambda_j^{-1} delta_y
           - p_j' [B_j - B_j Sb^{-1} Syz G_j' V_j^zz G_j Szy Sb^{-1} B_j] p_j   (79)
    log|V_j| = log|G_j Sigma_j(z.y) G_j'| + log|Lambda_j| + log|Sb| + log|Sb^{-1} + A_j|  (78)

The minus sign of q_yz is lost in the extracted text of (80) and (A11): (A20) gives the
off-diagonal block of V_j^{-1} as -D^{-1} C M^{-1}, here
V_j^{yz} = -V_j(yy)^{-1} Q_j Syz G_j' V_j^zz = -Lambda_j^{-1} Q_j B_j Sb^{-1} Syz G_j' V_j^zz (A3).

Within-only variables. Their rows and columns of Sb (and their rows of Syz) are zero,
so Sb itself is singular whenever there are any. But Q_j Sb Q_j' = Q_j E Sb_bb E' Q_j',
where E keeps the columns of the P_b variables with a between part
(``moments.between_index``) and Sb_bb = E' Sb E. Every formula above involves Sb and Syz
only through Q_j Sb Q_j' and Q_j Syz, so it holds with Q_j E in place of Q_j: Sb becomes
Sb_bb, Syz becomes E' Syz, and A_j, p_j become E' A_j E, E' p_j (P_b x P_b and P_b).
Only Sb_bb must be invertible. If it is singular (reciprocal condition number, from its
eigenvalues, below 1e-12) or there is no between variable at all, this solution does not
exist and :class:`SingularMatrixError` is raised; the singular-safe McDonald variants
(objective2-objective5, sec. 3.5) handle that case. Sb_bb need not be positive
definite: the Woodbury identity (A25) only needs it invertible, so an indefinite but
nonsingular Sb_bb (a trial point an optimizer may visit) gives the same value as the
other methods, with the signs of |Sb| and |Sb^{-1} + A_j| in (78) multiplied out.

Lambda_j is handled row by row with index arrays instead of selection matrices: the
point of this module is the du Toit algebra, not the bookkeeping.

Returns -inf when Sigma_w (restricted to a row's observed variables) or some V_j is not
positive definite.
"""

from __future__ import annotations

import numpy as np

from .. import linalg
from ..errors import SingularMatrixError

LOG_2PI = np.log(2.0 * np.pi)

#: Sb_bb counts as singular below this reciprocal condition number
RCOND_TOL = 1e-12


def between_inverse(moments):
    """(bidx, Sb_bb^{-1}, sign and log|Sb_bb|); raises if Sb_bb is singular."""
    bidx = moments.between_index
    if bidx.size == 0:
        raise SingularMatrixError(
            "sigma_b is zero (no variable has a between part), hence singular; du Toit's "
            "solution needs a nonsingular Sigma_b, objective2-objective5 handle a singular one")
    sb = moments.sigma_b[np.ix_(bidx, bidx)]
    # reciprocal condition number of a symmetric matrix: smallest over largest |eigenvalue|
    eig = np.abs(np.linalg.eigvalsh(sb))
    rcond = eig.min() / eig.max()
    if not rcond >= RCOND_TOL:
        raise SingularMatrixError(
            f"sigma_b restricted to the {bidx.size} variables with a between part is singular "
            f"(reciprocal condition number {rcond:.3g} < {RCOND_TOL:g}); du Toit's solution "
            "needs a nonsingular Sigma_b, objective2-objective5 handle a singular one")
    sign, logdet = np.linalg.slogdet(sb)
    return bidx, np.linalg.inv(sb), sign, logdet


def within_terms(moments, rows):
    """Lambda_j row by row: (log|Lambda_j|, A_j, p_j, delta_y' Lambda_j^{-1} delta_y), or None."""
    p = moments.n_y
    logdet = 0.0
    a_j = np.zeros((p, p))
    p_j = np.zeros(p)
    quad = 0.0
    for row in rows:
        o = np.flatnonzero(~np.isnan(row))
        w_ji = moments.sigma_w[np.ix_(o, o)]
        sign, ld = np.linalg.slogdet(w_ji)
        if not sign > 0.0:
            return None
        w_inv = np.linalg.inv(w_ji)
        delta = row[o] - moments.mu_y[o]
        w_delta = w_inv @ delta
        logdet += ld
        a_j[np.ix_(o, o)] += w_inv
        p_j[o] += w_delta
        quad += delta @ w_delta
    return logdet, a_j, p_j, quad


def loglik(data, moments) -> float:
    """Sum of the cluster log-densities from eqs. (78)-(81); -inf if some V_j is not positive definite."""
    bidx, sb_inv, sb_sign, sb_logdet = between_inverse(moments)
    sb = moments.sigma_b[np.ix_(bidx, bidx)]
    syz = moments.sigma_yz[bidx]  # E' Syz: P_b x K
    total = 0.0
    for j in range(data.n_clusters):
        rows = data.y[data.cluster_rows(j)]
        within = within_terms(moments, rows)
        if within is None:
            return -np.inf
        lambda_logdet, a_full, p_full, q_yy_a = within
        a_j = a_full[np.ix_(bidx, bidx)]
        p_j = p_full[bidx]

        # B_j = (Sb^{-1} + A_j)^{-1}  (A2)
        sb_inv_a = sb_inv + a_j
        sign_ba, logdet_ba = np.linalg.slogdet(sb_inv_a)
        # V_j(yy) = Lambda_j + Q Sb Q' is positive definite iff I + Sb A_j has only
        # positive eigenvalues (automatic when Sb is positive definite)
        if linalg.ibza_logdet(np.eye(bidx.size) + sb @ a_j, sb) is None:
            return -np.inf
        b_j = np.linalg.inv(sb_inv_a)
        b_sbinv = b_j @ sb_inv

        # G_j Sigma_j(z.y) G_j' (A6), and its inverse V_j^zz (A7)
        oz = np.flatnonzero(~np.isnan(data.z[j]))
        syz_o = syz[:, oz]
        sigma_z_y = moments.sigma_zz[np.ix_(oz, oz)] - syz_o.T @ a_j @ b_sbinv @ syz_o
        # given V_j(yy) > 0, V_j is positive definite iff its Schur complement is
        try:
            logdet_zy = 2.0 * np.sum(np.log(np.diag(np.linalg.cholesky(sigma_z_y))))
        except np.linalg.LinAlgError:
            return -np.inf
        v_zz_inv = np.linalg.inv(sigma_z_y)  # V_j^zz
        delta_z = data.z[j, oz] - moments.mu_z[oz]
        g_tilde = syz_o @ v_zz_inv @ delta_z

        # quadratic forms (79)-(81)
        h_j = b_j - b_sbinv @ syz_o @ v_zz_inv @ syz_o.T @ b_sbinv.T
        q_yy = q_yy_a - p_j @ h_j @ p_j
        q_yz = -p_j @ b_sbinv @ g_tilde
        q_zz = delta_z @ v_zz_inv @ delta_z

        # (78): Sb and Sb^{-1} + A_j may be indefinite (their signs then agree), so
        # their log-determinants are of absolute values
        if not sb_sign * sign_ba > 0.0:
            return -np.inf
        logdet_v = logdet_zy + lambda_logdet + sb_logdet + logdet_ba
        n_values = oz.size + int(np.sum(~np.isnan(rows)))
        total += -0.5 * (n_values * LOG_2PI + logdet_v + q_zz + 2.0 * q_yz + q_yy)
    return float(total)
