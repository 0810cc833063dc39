"""Every exception and warning mlmiss raises, in one place.

Errors that come from bad input are ``ValueError`` subclasses, so code that already
catches ``ValueError`` keeps working; each message names the column, cluster, row,
model line or parameter at fault.
"""


class DataError(ValueError):
    """The data frame cannot be used as two-level data (names the column/cluster/row)."""


class MomentsError(ValueError):
    """Moment arrays have the wrong shape, are not symmetric, or are inconsistent."""


class InadmissibleMomentsError(MomentsError):
    """The log-likelihood is -inf at these moments, so it has no gradient."""


class SingularMatrixError(ValueError):
    """A method needs a matrix to be nonsingular and it is not (e.g. du Toit's Sigma_b)."""


class ModelSyntaxError(ValueError):
    """The model syntax cannot be read; ``line`` is the 1-based line number (or None)."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


class ModelError(ValueError):
    """The parameter table cannot be turned into a two-level model (names the row/variable)."""


class ModelDataError(ValueError):
    """The model and the data do not fit together (e.g. a variable is not a data column)."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its convergence criterion."""


class InformationWarning(UserWarning):
    """The information matrix is singular or could not be computed everywhere: the
    standard errors are not trustworthy (a symptom of a model that is not identified)."""


class DataWarning(UserWarning):
    """The data can be fitted but look wrong in a way that often means a mistake (empty
    rows dropped, a missing-value code left in, variables on wildly different scales)."""


class ModelWarning(UserWarning):
    """The fitted model is not trustworthy as it stands: a Heywood case (a negative
    variance or a latent covariance matrix that is not positive definite), repaired
    start values, an information matrix that is not positive definite."""


class SimulationError(ValueError):
    """A simulation or Monte Carlo specification cannot be used (names the argument,
    variable, rate or design at fault)."""
