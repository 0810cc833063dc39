"""EM for the saturated (h1) model, its E-step read off the gradient.

The complete data are every cluster's between values v_j = (b_j, z_j) (the between
parts of the "both" variables and the between-only variables), v_j ~ N(mu_B, Sigma_B),
and every row's within part e_ij = y_ij - E b_j ~ N(m_w, Sigma_w) (E embeds b among the
P level-1 variables). Here m_w is free for all P variables: for a "both" variable only
m_w + mu_B is identified, and moving m_w's share into mu_B after each M-step leaves the
observed-data likelihood unchanged (a parameter-expanded EM, which converges at least as
fast as the plain one).

The expected complete-data statistics need no E-step of their own. By Fisher's identity
the observed-data gradient is the expected complete-data score, and for a normal
sample that score is linear in the statistics. With N rows, J clusters and the engine's
gradient g (symmetric G with dL = sum G_ij dS_ij):

    E[sum (e - m_w)]               = Sigma_w g_mu_y
    E[sum (e - m_w)(e - m_w)']     = N Sigma_w + 2 Sigma_w G_w Sigma_w
    E[sum (v - mu_B)]              = Sigma_B (g_mu_y[both], g_mu_z)
    E[sum (v - mu_B)(v - mu_B)']   = J Sigma_B + 2 Sigma_B G_B Sigma_B

so the M-step, the sample moments of the expected statistics, is

    m_w += r,        Sigma_w += 2/N Sigma_w G_w Sigma_w - r r',    r = Sigma_w g_mu_y / N
    mu_B += t,       Sigma_B += 2/J Sigma_B G_B Sigma_B - t t',    t = Sigma_B g_B / J

and one EM step costs one gradient, which the iteration's convergence test shares
(:meth:`mlmiss.estimation.saturated.SaturatedProblem.moment_gradient` keeps the last).
The steps work on the saturated problem's own parameters (means and Cholesky factors),
so SQUAREM's extrapolations stay positive definite.
"""

from __future__ import annotations

import numpy as np

from ...data.levels import gradient_between_cov


class SaturatedSteps:
    """M(u) for a saturated problem (``problem.split``, ``problem.both``, ...), in its
    scaled parameters u = theta / scales."""

    def __init__(self, problem):
        self.problem = problem
        self.scales = np.asarray(problem.scales, dtype=float)
        self.e_steps = 0

    def __call__(self, u, gtol=None):
        prob = self.problem
        theta = self.scales * u
        _, g = prob.moment_gradient(theta)
        if g is None:
            return None
        self.e_steps += 1
        data = prob.data
        n, j, nb = float(data.n_obs), float(data.n_clusters), prob.both.size
        mean_w, mean_b, lw, lb = prob.split(theta)
        sigma_w, sigma_b = lw @ lw.T, lb @ lb.T
        m_w = np.zeros(prob.p)
        m_w[prob.within_only] = mean_w
        r = sigma_w @ g.mu_y / n
        sigma_w = sigma_w + (2.0 / n) * sigma_w @ g.sigma_w @ sigma_w - np.outer(r, r)
        m_w = m_w + r
        t = sigma_b @ np.concatenate([g.mu_y[prob.both], g.mu_z]) / j
        sigma_b = (sigma_b + (2.0 / j) * sigma_b @ gradient_between_cov(g) @ sigma_b
                   - np.outer(t, t))
        mu_b = mean_b + t
        mu_b[:nb] += m_w[prob.both]   # the "both" variables' means live at level 2
        try:
            lw = np.linalg.cholesky(0.5 * (sigma_w + sigma_w.T))
            lb = np.linalg.cholesky(0.5 * (sigma_b + sigma_b.T))
        except np.linalg.LinAlgError:
            return None
        theta = np.concatenate([m_w[prob.within_only], mu_b, lw[prob.tril_w], lb[prob.tril_b]])
        return theta / self.scales
