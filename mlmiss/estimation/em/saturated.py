"""EM for the saturated (h1) model: the same E-step, a closed-form M-step.

The complete data are every cluster's between values v_j = (b_j, z_j) (the between
parts of the "both" variables and the between-only variables): v_j ~ N(mu_B, Sigma_B)
and y_ij | v_j ~ N(m_w + E b_j, Sigma_w), with m_w the means of the within-only
variables (zero for the "both" ones, whose means live at level 2) and E embedding b
among the P level-1 variables. In the notation of :mod:`.estep` this is R = all
between nodes, C = [I 0] and the z rows [0 I]. Unrestricted moments maximize the
expected complete-data log-likelihood in closed form, the sample moments of the
expected statistics:

    mu_B = t1 / J,   Sigma_B = t2 / J - mu_B mu_B'
    r1 = y1 - E v1n_b,   RR = y2 - yv_b E' - E yv_b' + E v2n_bb E'    (sums of E[r], E[r r'], r = y - E b)
    m_w = r1 / N on the within-only variables,   Sigma_w = (RR - m_w r1' - r1 m_w' + N m_w m_w') / N

The steps work on the saturated problem's own parameters (means and Cholesky factors,
:class:`mlmiss.estimation.saturated.SaturatedProblem`), so SQUAREM's extrapolations
stay positive definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estep import EStepError, Workspace, expected_statistics


@dataclass(frozen=True)
class _Layout:
    """Where the between nodes sit (what :func:`expected_statistics` reads of the
    complete-data view)."""

    both_y: np.ndarray
    z_u: np.ndarray


class SaturatedSteps:
    """M(u) for a saturated problem (``problem.split``, ``problem.both``, ...), in its
    scaled parameters u = theta / scales."""

    def __init__(self, problem):
        self.problem = problem
        self.scales = np.asarray(problem.scales, dtype=float)
        self.e_steps = 0
        nb = problem.both.size
        self.layout = _Layout(problem.both, np.arange(nb, problem.m))
        self.work = None   # the E-step's arrays, reused

    def parts(self, theta):
        """The E-step's view of the saturated moments at theta."""
        prob = self.problem
        mean_w, mean_b, lw, lb = prob.split(theta)
        nb, m = prob.both.size, prob.m
        mu_y = np.zeros(prob.p)
        mu_y[prob.within_only] = mean_w
        mu_y[prob.both] = mean_b[:nb]
        eye = np.eye(m)
        return {"mu_y": mu_y, "sigma_w": lw @ lw.T, "mu_R": mean_b, "sigma_RR": lb @ lb.T,
                "mean_u": mean_b, "C": eye[:nb], "Z": eye[nb:]}

    def __call__(self, u, gtol=None):
        prob = self.problem
        data = prob.data
        try:
            parts = self.parts(self.scales * u)
            self.work = Workspace.reuse(self.work, data, parts["mu_R"].size)
            stats = expected_statistics(data, parts, self.layout, self.work)
        except (np.linalg.LinAlgError, EStepError):
            return None
        self.e_steps += 1
        n, j, nb = float(stats.n_rows), float(stats.n_clusters), prob.both.size
        mu_b = stats.t1 / j
        sigma_b = stats.t2 / j - np.outer(mu_b, mu_b)
        emb = np.zeros((prob.p, nb))
        emb[prob.both, np.arange(nb)] = 1.0
        yv_b = stats.yv[:, :nb]
        r1 = stats.y1 - emb @ stats.v1n[:nb]
        rr = (stats.y2 - yv_b @ emb.T - emb @ yv_b.T
              + emb @ stats.v2n[:nb, :nb] @ emb.T)
        m_w = np.zeros(prob.p)
        m_w[prob.within_only] = r1[prob.within_only] / n
        sigma_w = (rr - np.outer(m_w, r1) - np.outer(r1, m_w)) / n + np.outer(m_w, m_w)
        try:
            lw = np.linalg.cholesky(0.5 * (sigma_w + sigma_w.T))
            lb = np.linalg.cholesky(0.5 * (sigma_b + sigma_b.T))
        except np.linalg.LinAlgError:
            return None
        theta = np.concatenate([m_w[prob.within_only], mu_b, lw[prob.tril_w], lb[prob.tril_b]])
        return theta / self.scales
