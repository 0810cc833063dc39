"""Simulation studies: data drawn from a two-level model at population values
(:func:`simulate`) and Monte Carlo studies of the estimator (:func:`monte_carlo`),
run in local worker processes or on a Dask cluster.

Modules: :mod:`.population` (syntax + values -> moments), :mod:`.sizes` (cluster
sizes), :mod:`.missing` (missing-data mechanisms), :mod:`.generate` (``simulate``),
:mod:`.replicate` (one replication, on a worker), :mod:`.execute` (where the work
runs), :mod:`.store` (resumable studies), :mod:`.truth` (true values),
:mod:`.summary` (Mplus-style summary), :mod:`.plots` (PNG plots), :mod:`.study` (TOML
study files, for ``mlmiss montecarlo``).
"""

from .generate import simulate
from .montecarlo import MonteCarlo, monte_carlo
from .population import Population, population

__all__ = ["simulate", "monte_carlo", "MonteCarlo", "population", "Population"]
