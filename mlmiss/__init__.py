"""mlmiss: maximum-likelihood two-level SEM with missing data at both levels.

Data flow: ``DataFrame -> TwoLevelData -> Moments -> loglik / loglik_gradient``.
"""

import importlib

from .data import TwoLevelData
from .estimate import ConvergenceWarning, sem
from .fit import Fit
from .errors import DataError, MomentsError, SingularMatrixError
from .gradient import InadmissibleMomentsError, loglik_and_gradient, loglik_gradient
from .loglik import METHODS, loglik
from .moments import Moments

__version__ = "0.1.0"

__all__ = ["sem", "Fit", "ConvergenceWarning", "TwoLevelData", "Moments", "loglik", "loglik_gradient", "loglik_and_gradient", "METHODS",
           "DataError", "MomentsError", "SingularMatrixError", "InadmissibleMomentsError", "datasets"]


def __getattr__(name):
    # datasets is imported lazily: it is not needed to evaluate a likelihood
    if name == "datasets":
        return importlib.import_module(f"{__name__}.datasets")
    raise AttributeError(f"module 'mlmiss' has no attribute {name!r}")
