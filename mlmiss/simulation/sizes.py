"""Cluster sizes from a specification: a number, a list, or a distribution."""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import SimulationError


def cluster_sizes(spec, n_clusters: int | None, rng: np.random.Generator) -> np.ndarray:
    """The size of each of ``n_clusters`` clusters (int64, each >= 1).

    ``spec``:

    * an int: every cluster has this size;
    * a list or array: cycled over the clusters in order (cluster j has size
      ``spec[j % len(spec)]``), so a list of ``n_clusters`` sizes is one per cluster
      and ``[4, 6, 8]`` with 60 clusters gives each size to 20 clusters; with
      ``n_clusters`` None, one cluster per element;
    * a scipy.stats frozen distribution (anything with ``rvs(size=, random_state=)``):
      sizes drawn from it at once;
    * a callable ``rng -> int``: called once per cluster, in cluster order.

    Drawn sizes are rounded to integers and raised to at least 1.
    """
    if isinstance(spec, (str, bytes)):
        raise SimulationError(f"cluster_sizes={spec!r}: give an int, a list of ints, a "
                              "scipy.stats distribution or a callable rng -> int")
    if n_clusters is None:
        if isinstance(spec, numbers.Number) or callable(spec) or hasattr(spec, "rvs"):
            raise SimulationError("n_clusters is needed unless cluster_sizes is a list "
                                  "(one cluster per element)")
        n_clusters = len(np.atleast_1d(spec))
    n_clusters = _count(n_clusters)
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        return np.full(n_clusters, _size(spec, "cluster_sizes"), dtype=np.int64)
    if hasattr(spec, "rvs"):
        drawn = np.asarray(spec.rvs(size=n_clusters, random_state=rng), dtype=float)
        return _drawn(drawn, "the distribution's draws")
    if callable(spec):
        drawn = np.array([float(spec(rng)) for _ in range(n_clusters)])
        return _drawn(drawn, "the callable's values")
    values = np.atleast_1d(np.asarray(spec))
    if values.ndim != 1 or values.size == 0:
        raise SimulationError(f"cluster_sizes={spec!r}: a list of sizes must be flat and "
                              "not empty")
    sizes = np.array([_size(v, "cluster_sizes") for v in values.tolist()], dtype=np.int64)
    return np.resize(sizes, n_clusters)   # cycles the list


def _count(n_clusters) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise SimulationError(f"n_clusters={n_clusters!r} must be an integer")
    if n_clusters < 1:
        raise SimulationError(f"n_clusters={n_clusters} must be at least 1")
    return int(n_clusters)


def _size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SimulationError(f"{what}: {value!r} is not a cluster size (an integer >= 1)")
    return int(value)


def _drawn(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise SimulationError(f"cluster_sizes: {what} include non-finite numbers")
    return np.maximum(np.rint(values), 1).astype(np.int64)
