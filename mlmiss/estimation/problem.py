"""Estimation problems: theta -> log-likelihood and its gradient, all an optimizer sees.

:class:`Problem` is a model (:class:`mlmiss.model.TwoLevelModel`) on a data set: its
moments come from the model, the log-likelihood and the gradient with respect to the
moments from the engine (:mod:`mlmiss.likelihood`), and the chain rule J' g gives the
gradient in theta. The saturated model (:mod:`.saturated`) is another problem with the
same interface.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..likelihood import cluster_logliks, loglik, loglik_and_gradient
from ..likelihood.hessian import loglik_hessian
from ..model.ram import TwoLevelModel, flatten_gradient
from ..model.start import start_values
from .boundary import INADMISSIBLE, between_is_psd
from .scaling import parameter_scales

#: relative step of the central differences of J(theta)' g (the moments' curvature)
HESSIAN_STEP = 1e-5


class Objective:
    """The interface optimizers use; subclasses give ``npar``, ``data``,
    ``moments(theta)`` and ``gradient_of_moments(theta, g)``."""

    npar: int
    data: object

    @property
    def scales(self) -> np.ndarray:
        """Typical magnitudes of the parameters: optimizers work on theta / scales
        (:mod:`.scaling`). All ones unless a subclass knows better."""
        return np.ones(self.npar)

    #: the admissible-region policy (:mod:`.boundary`): Sigma_b positive semidefinite
    between_psd: bool = True

    def admissible(self, moments) -> bool:
        """Whether moments where the likelihood is defined are also inside the policy's
        region (always, with ``between_psd`` False)."""
        return not self.between_psd or between_is_psd(moments)

    def loglik(self, theta) -> float:
        """The log-likelihood (-inf where the moments are not admissible)."""
        moments = self.moments(theta)
        if not self.admissible(moments):
            return -np.inf
        return loglik(self.data, moments)

    def loglik_and_gradient(self, theta, guard: bool = True):
        """(log-likelihood, its gradient in theta); the gradient is None where the
        log-likelihood is -inf. ``guard=False`` drops the policy: the likelihood
        wherever it is defined."""
        moments = self.moments(theta)
        if guard and not self.admissible(moments):
            return -np.inf, None
        value, g = loglik_and_gradient(self.data, moments)
        if g is None:
            return value, None
        return value, self.gradient_of_moments(theta, g)

    def cluster_logliks(self, theta):
        """Each cluster's log-likelihood at theta wherever the likelihood is defined
        (no admissible-region policy), or None: robust inference differentiates it."""
        return cluster_logliks(self.data, self.moments(theta))

    def loglik_hessian(self, theta):
        """The Hessian of the log-likelihood in theta, analytic, wherever the likelihood
        is defined (no admissible-region policy); None where it is not, or where this
        problem has no analytic form (then differences of the gradient serve)."""
        return None

    def gradient(self, theta):
        """The gradient of the log-likelihood in theta, or None where it is -inf."""
        return self.loglik_and_gradient(theta)[1]

    def f_and_grad(self, theta):
        """What optimizers minimize: -logl / N (lavaan's scaling) and its gradient. An
        inadmissible theta gives a large value, which sends a line search back."""
        value, g = self.loglik_and_gradient(theta)
        n = float(self.data.n_obs)
        if g is None:
            return INADMISSIBLE, np.zeros_like(np.asarray(theta, dtype=float))
        return -value / n, -g / n


class Problem(Objective):
    """A two-level model from a parameter table, on two-level data.

    ``covariate_loglik`` is the covariates' marginal log-likelihood when they are fixed
    (lavaan's ``fixed.x = TRUE``, :mod:`.fixed_x`): the joint log-likelihood is
    maximized, and this is subtracted from what is reported."""

    def __init__(self, partable, data, covariate_loglik: float = 0.0):
        self.partable = partable
        self.data = data
        self.covariate_loglik = float(covariate_loglik)
        # the moments are laid out like the data (same variables, perhaps another order)
        self.model = TwoLevelModel(partable.table, list(data.y_names), list(data.z_names))
        self.npar = self.model.npar

    @cached_property
    def scales(self) -> np.ndarray:
        return parameter_scales(self.partable, self.data)

    def moments(self, theta):
        return self.model.moments(theta)

    def gradient_of_moments(self, theta, g):
        return self.model.jacobian(theta).T @ flatten_gradient(g)

    def moments_and_directions(self, theta):
        """(moments, their derivatives in theta as :class:`Directions`)."""
        moments, jac = self.model.moments_and_jacobian(theta)
        return moments, self.model.directions(jac)

    def loglik_hessian(self, theta):
        """J' H J along the model's Jacobian (:func:`mlmiss.likelihood.hessian.loglik_hessian`)
        plus the curvature of the moments in theta paired with their gradient."""
        theta = np.asarray(theta, dtype=float)
        moments, jac = self.model.moments_and_jacobian(theta)
        _, g = loglik_and_gradient(self.data, moments)
        if g is None:
            return None
        data_part = loglik_hessian(self.data, moments, self.model.directions(jac))
        if data_part is None:
            return None
        steps = HESSIAN_STEP * np.maximum(np.abs(theta), self.scales)
        return data_part + self.model.curvature(theta, flatten_gradient(g), steps)

    @property
    def has_start_values(self) -> bool:
        """Whether the syntax gives start() values for free parameters."""
        table = self.partable.table
        return bool(((table["free"] > 0) & table["value"].notna()).any())

    def start(self, user: bool = True, loadings: str = "simple") -> np.ndarray:
        """lavaan-style simple start values (:func:`mlmiss.model.start.start_values`);
        ``user=False`` ignores the syntax's start() values; ``loadings="fabin3"``
        starts the loadings from the data (EM's start)."""
        return start_values(self.partable, self.data, user, self.scales, loadings)
