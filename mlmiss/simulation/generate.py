"""``simulate()``: data drawn from a two-level model at population values.

Each cluster j draws its level-2 vector b_j (the between parts of the "both" variables
and the between-only variables, jointly) from N(mu_b, Sigma_b) of the model; each row i
of it draws a level-1 part w_ij from N(0, Sigma_w) and adds it::

    y_ij = mu_y + w_ij + (b_j - mu_b)[both]      z_j = b_j[between-only]

so y has mean mu_y, within covariance Sigma_w and between covariance Sigma_b, exactly the
moments the likelihood assumes. Square roots are symmetric eigen-decompositions, so a
singular covariance (a zero variance, a factor with no residual) is fine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import SimulationError
from .missing import missing_masks, missing_spec
from .population import Population, population, psd_root
from .sizes import cluster_sizes as draw_sizes


def simulate(model: str, n_clusters: int | None = None, cluster_sizes=None, params=None,
             missing=None, seed=None, fixed_x: bool = False,
             cluster: str = "cluster") -> pd.DataFrame:
    """Draw a two-level data set from ``model`` at its population values.

    Parameters
    ----------
    model : lavaan syntax with ``level: 1`` and ``level: 2`` blocks. Numbers in it are
        population values (``fw =~ 1*y1 + 0.8*y2``, ``y1 ~~ 0.25*y1``, ``z1 ~ 1*1``,
        also ``start(0.8)*y2``).
    n_clusters : the number of clusters J (may be left out when ``cluster_sizes`` is a
        list: one cluster per element).
    cluster_sizes : an int (all clusters), a list (cycled over the clusters: ``[4, 6, 8]``
        with J = 60 gives each size to 20 clusters), a scipy.stats frozen distribution or
        a callable ``rng -> int`` (sizes drawn, at least 1);
        :func:`mlmiss.simulation.sizes.cluster_sizes`.
    params : population values that override the syntax: a dict by label
        (``{"t1": 1.0}``) or by ``(lhs, op, rhs[, level])``, or one value per free
        parameter (theta). Parameters without any value take lavaan's simulateData()
        defaults: loadings 1, (residual) variances 1, everything else 0
        (:mod:`mlmiss.simulation.population`).
    missing : a missing-data specification, e.g. ``{"mcar": 0.1}``,
        ``{"mcar_within": 0.1, "mcar_between": 0.2}``, ``{"mar": {"y2": ("x1", -1, 1)}}``,
        ``{"empty_rows": 0.05}`` (:mod:`mlmiss.simulation.missing`); None: complete data.
    seed : an int, a :class:`numpy.random.SeedSequence`, a
        :class:`numpy.random.Generator` or None (fresh entropy). The sizes, the values
        and the missing values come from three independent streams of it, so the same
        seed gives the same complete data with or without missingness.
    fixed_x : how the parameter table is built (lavaan's ``fixed.x``); only matters for
        ``params`` given as a vector. Covariates are drawn either way.
    cluster : the name of the cluster-id column.

    Returns
    -------
    A DataFrame: ``cluster`` (1..J, rows sorted by cluster), the level-1 variables, then
    the between-only variables (constant within a cluster), in the model's order.
    """
    if cluster_sizes is None:
        raise SimulationError("simulate() needs cluster_sizes (an int, a list of sizes, a "
                              "distribution or a callable)")
    pop = population(model, params, fixed_x)
    if cluster in pop.y_names + pop.z_names:
        raise SimulationError(f"cluster={cluster!r} is also a variable of the model")
    size_rng, value_rng, missing_rng = _streams(seed)
    sizes = draw_sizes(cluster_sizes, n_clusters, size_rng)
    spec = missing_spec(missing, pop.y_names, pop.z_names, _marginals(pop))
    y, z, cluster_index = draw_values(pop, sizes, value_rng)
    mask_y, mask_z = missing_masks(spec, y, z, cluster_index, pop.y_names, pop.z_names,
                                   missing_rng)
    y[mask_y] = np.nan
    z[mask_z] = np.nan
    columns = {cluster: cluster_index + 1}
    columns.update({name: y[:, i] for i, name in enumerate(pop.y_names)})
    z_rows = z[cluster_index]
    columns.update({name: z_rows[:, i] for i, name in enumerate(pop.z_names)})
    return pd.DataFrame(columns)


def draw_values(pop: Population, sizes: np.ndarray, rng: np.random.Generator):
    """(y: n x P level-1 values, z: J x K between-only values, each row's cluster
    index), complete, drawn as the module doc says."""
    m = pop.moments
    n_clusters, n = sizes.size, int(sizes.sum())
    cluster_index = np.repeat(np.arange(n_clusters), sizes)
    between_mean, between_covariance = pop.between_mean_cov()
    between_root = psd_root(between_covariance)
    between = rng.standard_normal((n_clusters, between_root.shape[0])) @ between_root.T
    within = rng.standard_normal((n, m.mu_y.size)) @ psd_root(m.sigma_w).T
    y = within + m.mu_y
    both = m.between_index
    y[:, both] += between[cluster_index, :both.size]
    z = between[:, both.size:] + between_mean[both.size:]
    return y, z, cluster_index


def _marginals(pop: Population) -> dict:
    """Each observed variable's population (mean, variance); a level-1 variable's
    variance is the total, within plus between."""
    m = pop.moments
    total = np.diag(m.sigma_w) + np.diag(m.sigma_b)
    out = {v: (float(m.mu_y[i]), float(total[i])) for i, v in enumerate(pop.y_names)}
    out.update({v: (float(m.mu_z[i]), float(m.sigma_zz[i, i])) for i, v in enumerate(pop.z_names)})
    return out


def _streams(seed):
    """Three independent generators (sizes, values, missing values) from ``seed``."""
    if isinstance(seed, np.random.Generator):
        return seed.spawn(3)
    if isinstance(seed, np.random.SeedSequence):
        sequence = seed
    else:
        try:
            sequence = np.random.SeedSequence(seed)
        except (TypeError, ValueError) as exc:
            raise SimulationError(f"seed={seed!r} cannot seed a generator ({exc})") from None
    # children built by hand, not sequence.spawn(): spawning counts, so the same
    # SeedSequence passed twice would give other data the second time
    return [np.random.default_rng(np.random.SeedSequence(
        sequence.entropy, spawn_key=tuple(sequence.spawn_key) + (k,),
        pool_size=sequence.pool_size)) for k in range(3)]
