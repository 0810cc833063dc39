"""Checks after fitting, as lavaan's post-checks and a little beyond.

A fit is converged only when the gradient is small *and* the observed information is
positive definite: otherwise the point is a saddle or a ridge (a model that is not
identified), and :func:`post_fit_checks` says which, with the smallest eigenvalue and
the parameters that move along it. Heywood cases (negative variances, latent covariance
matrices that are not positive definite) are reported per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .vcov import diagnose_information


@dataclass(frozen=True)
class FitChecks:
    """What the post-fit checks found. ``problems`` are reasons the fit is not converged;
    ``heywood`` are warnings that do not stop it from being a maximum."""

    smallest_eigenvalue: float
    largest_eigenvalue: float
    problems: list = field(default_factory=list)
    heywood: list = field(default_factory=list)

    @property
    def information_ok(self) -> bool:
        return not self.problems


def post_fit_checks(problem, theta, information, names, tangent=None) -> FitChecks:
    """The information at the estimates (``-d2 logl``, from
    :func:`mlmiss.inference.vcov.observed_information`) and the model's matrices; at a
    boundary solution the information along the edge (``tangent``, see
    :func:`mlmiss.inference.vcov.diagnose_information`)."""
    _, small, top, problems = diagnose_information(information, names, problem.scales, tangent)
    return FitChecks(small, top, problems, heywood_cases(problem, theta))


def heywood_cases(problem, theta) -> list:
    """Negative variances and latent covariance matrices that are not positive
    definite, per level, as sentences."""
    model = problem.model
    found = []
    for level in (1, 2):
        names, _, psi, _ = model.level_matrices(theta, level)
        # below round-off of zero: a variance a boundary solution pins at 0 is not negative
        floor = -1e-12 * max(np.max(np.abs(np.diag(psi)), initial=0.0), 1e-300)
        negative = [f"{v} ({psi[i, i]:.3g})" for i, v in enumerate(names) if psi[i, i] < floor]
        if negative:
            found.append(f"level {level}: negative variance(s) {', '.join(negative)}")
        latent = [i for i, v in enumerate(names) if v in set(model.latent_names[level])]
        if len(latent) > 1:
            cov = model.level_moments(theta, level)[2][np.ix_(latent, latent)]
            values = np.linalg.eigvalsh(cov)
            low = values[0]
            if low < -1e-12 * max(abs(values[-1]), 1e-300):
                found.append(f"level {level}: the covariance matrix of the latent variables "
                             f"{', '.join(names[i] for i in latent)} is not positive definite "
                             f"(smallest eigenvalue {low:.3g})")
    return found
