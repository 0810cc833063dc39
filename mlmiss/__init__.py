"""mlmiss: maximum-likelihood two-level SEM with missing data at both levels.

Data flow, each layer importing only the ones below it::

    DataFrame -> data (TwoLevelData, Moments, levels) -> likelihood (engine)
              -> model (syntax, parameter table, RAM) -> estimation (problems,
                 optimizers, h1, baseline) -> inference (vcov, fit measures)
              -> results (Fit) -> fitting (sem) -> cli

``paper`` is the teaching sequence of Rosseel (2021), beside the engine;
``methods.loglik`` evaluates the log-likelihood by any of its methods.
"""

import importlib

from .data import Moments, TwoLevelData
from .errors import (ConvergenceWarning, DataError, DataWarning, InadmissibleMomentsError,
                     InformationWarning, ModelDataError, ModelError, ModelSyntaxError,
                     ModelWarning, MomentsError, SimulationError, SingularMatrixError)
from .fitting import sem
from .inference.constraint_tests import score_test, wald_test
from .inference.lrt import lrt
from .likelihood import loglik_and_gradient, loglik_gradient
from .methods import METHODS, loglik
from .results import Fit
from .simulation import monte_carlo, simulate
from .version import __version__

__all__ = ["sem", "lrt", "score_test", "wald_test", "simulate", "monte_carlo", "Fit",
           "TwoLevelData", "Moments", "loglik", "loglik_gradient", "loglik_and_gradient",
           "METHODS", "ConvergenceWarning", "InformationWarning", "DataWarning", "ModelWarning",
           "DataError", "MomentsError", "SingularMatrixError", "InadmissibleMomentsError",
           "ModelSyntaxError", "ModelError", "ModelDataError", "SimulationError", "datasets",
           "__version__"]


def __getattr__(name):
    # datasets is imported lazily: it is not needed to evaluate a likelihood
    if name == "datasets":
        return importlib.import_module(f"{__name__}.datasets")
    raise AttributeError(f"module 'mlmiss' has no attribute {name!r}")
