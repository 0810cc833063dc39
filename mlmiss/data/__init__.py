"""Data: a DataFrame as two-level arrays, clusters and missing patterns (built once);
the moment blocks of a two-level model; and their per-level layout."""

from .frame import TwoLevelData
from .moments import Moments

__all__ = ["TwoLevelData", "Moments"]
