"""A reference model fitted to the same data as a fit: the saturated (h1) model or
the baseline model of the incremental fit indices."""

from __future__ import annotations

from dataclasses import dataclass

from .optimizers import Estimate


@dataclass(frozen=True)
class ReferenceFit:
    """``problem`` and its ``estimate``; with fixed covariates their marginal
    log-likelihood (``offset``) is taken out of ``loglik``, as for the model itself."""

    problem: object
    estimate: Estimate
    offset: float = 0.0

    @property
    def loglik(self) -> float:
        return self.estimate.loglik - self.offset

    @property
    def npar(self) -> int:
        return int(self.problem.npar)

    @property
    def converged(self) -> bool:
        return self.estimate.converged

    @property
    def moments(self):
        return self.problem.moments(self.estimate.theta)
