"""The baseline model of the incremental fit indices (CFI, TLI), as lavaan builds it
for a two-level model (``lav_object_generate.R``: ``lav_object_baseline``;
``lav_partable_unrestricted.R``: ``lav_pt_indep_or_unrestricted``), fitted to the
same data as the model."""

from __future__ import annotations

from ..errors import ModelError
from .build import build_problem
from .independence import independence_theta
from .optimizers import optimize
from .reference import ReferenceFit


def baseline_syntax(partable) -> str:
    """lavaan model syntax of the baseline model lavaan fits for this two-level model.

    Per level a free variance for every observed variable of the level, free covariances
    among that level's exogenous covariates, nothing else; the parser's defaults then give
    the means (level 2 free; level 1 free only for within-only variables). The covariates
    are written free whatever ``fixed_x`` is: with ``fixed_x=True`` lavaan fixes them at
    their h1 values, which a free fit reproduces (they are independent of everything
    else), so fit it like the h1 model (covariate rows free, the covariates' marginal
    log-likelihood subtracted). ``inference.measures.baseline_npar`` gives lavaan's
    parameter count.
    Variables appear in the model's order (``y_names``, then ``z_names``), so the baseline
    table orders its variables like the model's.

    One case this cannot reproduce: with ``fixed_x=True``, a level-2 covariate that is a
    dependent variable at level 1 has its rows (at both levels, and its level-2
    covariances with the other covariates) fixed at h1 values by lavaan, which is not an
    independence model; the parameter count still follows lavaan.
    """
    x = partable.covariates()
    lines = []
    for level in (1, 2):
        names = partable.level_names(level)
        if not names:
            raise ModelError(f"the model has no observed variables at level {level}")
        lines.append(f"level: {level}")
        lines += [f"  {v} ~~ {v}" for v in names]
        covs = [v for v in names if v in set(x[level])]
        for i, a in enumerate(covs[:-1]):
            lines.append(f"  {a} ~~ " + " + ".join(covs[i + 1:]))
    return "\n".join(lines) + "\n"


def fit_baseline(problem) -> ReferenceFit:
    """The baseline model fitted to ``problem``'s data with the default optimizer,
    started at its variable-by-variable estimates (:mod:`.independence`: where nothing
    else is free the optimizer confirms them with one gradient); the covariates'
    marginal log-likelihood is taken out as for the model."""
    baseline = build_problem(baseline_syntax(problem.partable), problem.data, checks=False)
    estimate = optimize(baseline, independence_theta(baseline), label="baseline model")
    return ReferenceFit(baseline, estimate, problem.covariate_loglik)
