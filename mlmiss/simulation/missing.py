"""Missing values for simulated two-level data: MCAR per level or per variable, MAR by a
logistic rule on another variable, empty rows, clusters without their level-2 values.

The specification is a dict; every key is optional::

    {
        "mcar": 0.1,                    # every variable (or {"y1": 0.1, "z1": 0.2})
        "mcar_within": 0.1,             # every level-1 variable (overrides "mcar")
        "mcar_between": 0.2,            # every between-only variable (overrides "mcar")
        "mar": {                        # P(target missing) = logistic(a + b * on)
            "y2": ("x1", -2.0, 1.0),    # (on, a, b)
            "y3": {"on": "z1", "slope": 1.0, "rate": 0.2},   # a solved for a 20% rate
        },
        "empty_rows": 0.05,             # rows with every level-1 value missing
        "empty_clusters": 0.05,         # clusters with every between-only value missing
    }

A level-1 variable's value is missing per row, a between-only variable's per cluster
(the whole cluster: between-only values are constant within a cluster). A per-variable
``mcar`` dict wins over ``mcar_within`` / ``mcar_between``, which win over a number
given as ``mcar``. A value is missing when any mechanism makes it so.

MAR rules use the generated (complete) value of ``on``: the mechanism is MAR when
``on`` itself is always observed (give it no missingness), and MNAR when ``on`` is the
target itself. A level-1 target may depend on a level-1 or a between-only variable
(its cluster's value); a between-only target only on a between-only variable. With
``"rate"`` instead of ``"intercept"`` the intercept is solved so that the expected
share missing is the rate, ``on`` having its population mean and variance (for a
level-1 variable the total, within plus between).

Rates must lie in [0, 1). Draws come from the generator passed in, always in the
same order, so a seed fixes the pattern.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import SimulationError

KEYS = ("mcar", "mcar_within", "mcar_between", "mar", "empty_rows", "empty_clusters")


@dataclass(frozen=True)
class MarRule:
    """P(``target`` missing) = logistic(``intercept`` + ``slope`` * ``on``)."""

    target: str
    on: str
    intercept: float
    slope: float


@dataclass(frozen=True)
class MissingSpec:
    """A checked missing-data specification: MCAR rates per level-1 variable
    (``within``) and per between-only variable (``between``), MAR rules, and the rates
    of empty rows and of clusters without level-2 values."""

    within: np.ndarray
    between: np.ndarray
    mar: tuple
    empty_rows: float
    empty_clusters: float


def missing_spec(spec, y_names, z_names, marginals=None) -> MissingSpec:
    """Check ``spec`` (module doc) against the variables; ``marginals`` maps a variable
    to its population (mean, variance), for MAR rules given by ``rate``."""
    y_names, z_names = list(y_names), list(z_names)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise SimulationError(f"missing must be a dict (keys {', '.join(KEYS)}), got "
                              f"{type(spec).__name__}")
    unknown = [k for k in spec if k not in KEYS]
    if unknown:
        raise SimulationError(f"missing: unknown key(s) {', '.join(map(repr, unknown))}; the "
                              f"keys are {', '.join(KEYS)}")
    everything = spec.get("mcar", 0.0)
    per_variable = everything if isinstance(everything, dict) else {}
    overall = 0.0 if isinstance(everything, dict) else _rate(everything, "missing['mcar']")
    within_rate = _rate(spec.get("mcar_within", overall), "missing['mcar_within']")
    between_rate = _rate(spec.get("mcar_between", overall), "missing['mcar_between']")
    within = np.full(len(y_names), within_rate)
    between = np.full(len(z_names), between_rate)
    for name, rate in per_variable.items():
        where = _variable(name, y_names, z_names, "missing['mcar']")
        rate = _rate(rate, f"missing['mcar'][{name!r}]")
        if where == 1:
            within[y_names.index(name)] = rate
        else:
            between[z_names.index(name)] = rate
    rules = tuple(_mar_rule(target, rule, y_names, z_names, marginals or {})
                  for target, rule in (spec.get("mar") or {}).items())
    return MissingSpec(within, between, rules,
                       _rate(spec.get("empty_rows", 0.0), "missing['empty_rows']"),
                       _rate(spec.get("empty_clusters", 0.0), "missing['empty_clusters']"))


def missing_masks(spec: MissingSpec, y: np.ndarray, z: np.ndarray, cluster_index: np.ndarray,
                  y_names, z_names, rng: np.random.Generator):
    """(level-1 mask n x P, between-only mask J x K): True where a value is missing.
    ``y`` are the complete level-1 values (one row per unit), ``z`` the between-only
    values (one row per cluster), ``cluster_index`` each row's cluster (0-based)."""
    y_names, z_names = list(y_names), list(z_names)
    n, n_clusters = y.shape[0], z.shape[0]
    mask_y = rng.random(y.shape) < spec.within if spec.within.any() else np.zeros(y.shape, bool)
    mask_z = (rng.random(z.shape) < spec.between if spec.between.any()
              else np.zeros(z.shape, bool))
    for rule in spec.mar:
        if rule.on in z_names:
            on = z[:, z_names.index(rule.on)]
            if rule.target in y_names:
                on = on[cluster_index]
        else:
            on = y[:, y_names.index(rule.on)]
        hit = rng.random(on.shape) < _logistic(rule.intercept + rule.slope * on)
        if rule.target in y_names:
            mask_y[:, y_names.index(rule.target)] |= hit
        else:
            mask_z[:, z_names.index(rule.target)] |= hit
    if spec.empty_rows > 0:
        mask_y |= (rng.random(n) < spec.empty_rows)[:, None]
    if spec.empty_clusters > 0 and z.shape[1]:
        mask_z |= (rng.random(n_clusters) < spec.empty_clusters)[:, None]
    return mask_y, mask_z


def _logistic(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # 1 / (1 + exp(-x)) without overflow


def _rate(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SimulationError(f"{what} = {value!r} is not a rate (a number in [0, 1))")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise SimulationError(f"{what} = {value!r} is outside [0, 1)")
    return value


def _variable(name, y_names, z_names, what: str) -> int:
    """1 for a level-1 variable, 2 for a between-only one; an error for anything else."""
    if name in y_names:
        return 1
    if name in z_names:
        return 2
    raise SimulationError(f"{what}: {name!r} is not an observed variable of the model "
                          f"(level 1: {', '.join(y_names)}; between-only: "
                          f"{', '.join(z_names) or 'none'})")


def _mar_rule(target, rule, y_names, z_names, marginals) -> MarRule:
    what = f"missing['mar'][{target!r}]"
    target_level = _variable(target, y_names, z_names, what)
    if isinstance(rule, dict):
        unknown = set(rule) - {"on", "intercept", "slope", "rate"}
        if unknown or "on" not in rule or ("intercept" in rule) == ("rate" in rule):
            raise SimulationError(
                f"{what} = {rule!r}: give 'on', 'slope' and either 'intercept' or 'rate'")
        on, slope = rule["on"], rule.get("slope", 1.0)
        intercept, rate = rule.get("intercept"), rule.get("rate")
    elif isinstance(rule, (tuple, list)) and len(rule) == 3:
        (on, intercept, slope), rate = rule, None
    else:
        raise SimulationError(f"{what} = {rule!r}: give (on, intercept, slope) or "
                              "{'on': ..., 'slope': ..., 'intercept' or 'rate': ...}")
    on_level = _variable(on, y_names, z_names, f"{what}, 'on'")
    if target_level == 2 and on_level == 1:
        raise SimulationError(f"{what}: the between-only {target!r} is missing per cluster, "
                              f"so it can depend on between-only variables only, not on the "
                              f"level-1 {on!r}")
    slope = _number(slope, f"{what}, slope")
    if rate is not None:
        rate = _rate(rate, f"{what}, rate")
        if on not in marginals:
            raise SimulationError(f"{what}: a 'rate' needs the population moments of {on!r}")
        return MarRule(target, on, intercept_for_rate(rate, slope, *marginals[on]), slope)
    return MarRule(target, on, _number(intercept, f"{what}, intercept"), slope)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SimulationError(f"{what} = {value!r} is not a finite number")
    return float(value)


def intercept_for_rate(rate: float, slope: float, mean: float, variance: float) -> float:
    """The intercept a with E[logistic(a + slope * x)] = rate for x ~ N(mean, variance)
    (Gauss-Hermite quadrature; rate 0 gives -inf)."""
    if rate == 0.0:
        return -math.inf
    from scipy.optimize import brentq   # imported here: only rate rules need it

    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    x = mean + math.sqrt(max(variance, 0.0)) * nodes

    def excess(a):
        return float(weights @ _logistic(a + slope * x)) - rate

    spread = 10.0 + abs(slope) * (abs(mean) + 10.0 * math.sqrt(max(variance, 0.0)))
    return float(brentq(excess, -spread - 50.0, spread + 50.0, xtol=1e-12))
