"""Models: lavaan syntax -> parameter table (sem() defaults) -> RAM matrices per level
-> implied two-level moments and their Jacobian; start values. Knows nothing of missing
patterns."""

from .partable import ParTable, parameter_table
from .ram import TwoLevelModel

__all__ = ["ParTable", "parameter_table", "TwoLevelModel"]
