"""Exceptions raised by mlmiss.

Every error that comes from bad input is a ``ValueError`` subclass, so code that
already catches ``ValueError`` keeps working, and the message names the column,
cluster or row at fault.
"""


class DataError(ValueError):
    """The data frame cannot be used as two-level data (names the column/cluster/row)."""


class MomentsError(ValueError):
    """Moment arrays have the wrong shape, are not symmetric, or are inconsistent."""


class SingularMatrixError(ValueError):
    """A method needs a matrix to be nonsingular and it is not (e.g. du Toit's Sigma_b)."""
