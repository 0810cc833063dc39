"""The population: a model's syntax and parameter values -> the two-level moments data
are drawn from.

Every row of the model's parameter table (:func:`mlmiss.model.parameter_table`, lavaan's
``sem()`` defaults) gets a population value, by the first rule that applies:

1. ``params`` names it: by label (``{"t1": 1.0}``), by ``(lhs, op, rhs)`` or
   ``(lhs, op, rhs, level)`` (``{("y1", "~~", "y1", 2): 0.3}``; a tuple without a level
   names the row at every level), or ``params`` is a whole theta vector (one value per
   free parameter, the order of the table's ``free`` index). Fixed rows may be named
   too.
2. The syntax gives a number: a fixed value (``0.8*y2``) or a ``start(0.8)*y2``.
3. lavaan's ``simulateData()`` defaults: loadings 1, variances and residual variances
   1, everything else 0 (regressions, covariances, intercepts, means).

Rows sharing a label share the value of the first of them that has one. Equality and
inequality constraints of the syntax are checked at the population values (a
:class:`mlmiss.ModelWarning` names the one not met), and defined parameters (``:=``)
are evaluated, so they have true values too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.levels import between_cov
from ..data.moments import Moments
from ..errors import ModelWarning, SimulationError
from ..model.partable import ParTable, parameter_table
from ..model.ram import TwoLevelModel

#: a row is met by a constraint when |lhs - rhs| is below this (relative to 1 + |lhs|)
CONSTRAINT_TOLERANCE = 1e-8
#: a covariance matrix eigenvalue below -this * (1 + largest) is an error, not round-off
PSD_TOLERANCE = 1e-10


def default_value(op: str, lhs: str, rhs: str) -> float:
    """lavaan's simulateData() value of a parameter the model leaves open."""
    if op == "=~" or (op == "~~" and lhs == rhs):
        return 1.0
    return 0.0


@dataclass
class Population:
    """A model at its population values.

    ``partable``: the model's parameter table; ``values``: one population value per
    table row; ``sources``: where each came from ("params"; "fixed": a fixed value of
    the syntax or of sem()'s defaults; "start": a start() value; "default");
    ``moments``: the implied :class:`mlmiss.Moments` (level-1 variables in
    ``partable.y_names`` order, between-only in ``partable.z_names`` order);
    ``defined``: the values of the ``:=`` parameters by name."""

    partable: ParTable
    values: np.ndarray
    sources: list
    moments: Moments
    defined: dict

    @property
    def y_names(self) -> list[str]:
        return list(self.partable.y_names)

    @property
    def z_names(self) -> list[str]:
        return list(self.partable.z_names)

    def table(self) -> pd.DataFrame:
        """The parameter table with the population ``value`` of every row and its
        ``source``, then one row per defined parameter (op ":=", level 0)."""
        t = self.partable.table
        out = pd.DataFrame({"lhs": t["lhs"], "op": t["op"], "rhs": t["rhs"],
                            "level": t["level"], "label": t["label"], "free": t["free"],
                            "value": self.values, "source": self.sources})
        extra = [{"lhs": c.lhs, "op": ":=", "rhs": c.rhs, "level": 0, "label": c.lhs,
                  "free": 0, "value": self.defined[c.lhs], "source": "defined"}
                 for c in self.partable.constraints if c.op == ":="]
        if extra:
            out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True)
        return out

    def between_mean_cov(self):
        """(mean, covariance) of the level-2 vector: the between parts of the "both"
        variables (y order), then the between-only variables."""
        m = self.moments
        idx = m.between_index
        return np.concatenate([m.mu_y[idx], m.mu_z]), between_cov(m)


def population(model: str, params=None, fixed_x: bool = False) -> Population:
    """The :class:`Population` of lavaan syntax ``model`` at ``params`` (module doc)."""
    if not isinstance(model, str):
        raise SimulationError(f"model must be lavaan syntax (a string), got {type(model).__name__}")
    partable = parameter_table(model, fixed_x=fixed_x)
    values, sources = _row_values(partable, params)
    defined = _check_constraints(partable, values)
    table = partable.table.copy()
    table["free"] = 0          # every row at its population value: a model with no free part
    table["value"] = values
    moments = TwoLevelModel(table, partable.y_names, partable.z_names).moments(np.zeros(0))
    _check_covariance(moments.sigma_w, "within (level-1)", partable.y_names)
    names = [v for v, b in zip(partable.y_names, moments.between_mask) if b] + partable.z_names
    _check_covariance(between_cov(moments), "between (level-2)", names)
    return Population(partable, values, sources, moments, defined)


def _row_values(partable: ParTable, params):
    """(value per row, source per row) by the rules of the module doc."""
    t = partable.table
    n = len(t)
    given, by_free = _given_values(partable, params)
    values = np.full(n, np.nan)
    sources = [""] * n
    for i, row in enumerate(t.itertuples(index=False)):
        keys = [(row.lhs, row.op, row.rhs, int(row.level)), (row.lhs, row.op, row.rhs)]
        if row.op == "~~":
            keys += [(row.rhs, row.op, row.lhs, int(row.level)), (row.rhs, row.op, row.lhs)]
        if row.label:
            keys.append(row.label)
        hit = next((k for k in keys if k in given), None)
        if hit is not None:
            values[i], sources[i] = given[hit], "params"
        elif row.free > 0 and row.free in by_free:
            values[i], sources[i] = by_free[row.free], "params"
        elif not math.isnan(row.value):
            values[i], sources[i] = row.value, "start" if row.free > 0 else "fixed"
    # rows sharing a free index (equal labels) share the first value found
    free = t["free"].to_numpy()
    for index in np.unique(free[free > 0]):
        members = np.flatnonzero(free == index)
        known = [i for i in members if not math.isnan(values[i])]
        if known:
            values[members], source = values[known[0]], sources[known[0]]
        else:
            first = t.iloc[members[0]]
            values[members], source = default_value(first.op, first.lhs, first.rhs), "default"
        for i in members:
            sources[i] = source
    for i in np.flatnonzero(np.isnan(values)):   # fixed_x rows (value NaN) and the like
        row = t.iloc[i]
        values[i], sources[i] = default_value(row.op, row.lhs, row.rhs), "default"
    return values, sources


def _given_values(partable: ParTable, params):
    """``params`` as ({key: value}, {free index: value}); a key that names nothing is an
    error listing what can be named."""
    if params is None:
        return {}, {}
    if isinstance(params, pd.Series):
        params = params.to_dict()
    if not isinstance(params, dict):
        theta = np.asarray(params, dtype=float)
        if theta.shape != (partable.npar,):
            raise SimulationError(f"params as a vector must have one value per free parameter "
                                  f"({partable.npar}), got shape {theta.shape}")
        return {}, {i + 1: float(v) for i, v in enumerate(theta)}
    t = partable.table
    labels = set(t["label"]) - {""}
    rows = set()
    for row in t.itertuples(index=False):
        pairs = [(row.lhs, row.rhs)] + ([(row.rhs, row.lhs)] if row.op == "~~" else [])
        for lhs, rhs in pairs:
            rows.add((lhs, row.op, rhs))
            rows.add((lhs, row.op, rhs, int(row.level)))
    given = {}
    for key, value in params.items():
        if isinstance(key, list):
            key = tuple(key)
        if isinstance(key, tuple) and len(key) == 2 and key[1] == "~1":
            key = (key[0], "~1", "")
        if isinstance(key, tuple) and len(key) == 4:
            key = key[:3] + (int(key[3]),)
        if key not in labels and key not in rows:
            raise SimulationError(
                f"params names {key!r}, which is neither a label of the model "
                f"({', '.join(sorted(labels)) or 'none'}) nor a row (lhs, op, rhs[, level]) "
                "of its parameter table")
        try:
            given[key] = float(value)
        except (TypeError, ValueError):
            raise SimulationError(f"params[{key!r}] = {value!r} is not a number") from None
        if not math.isfinite(given[key]):
            raise SimulationError(f"params[{key!r}] = {value!r} is not finite")
    return given, {}


def _check_constraints(partable: ParTable, values) -> dict:
    """Evaluate the syntax's constraints at the population values: warn about each one
    not met; return the defined parameters' values."""
    env = {}
    for label, value in zip(partable.table["label"], values):
        if label:
            env.setdefault(label, float(value))
    defined = {}
    for c in partable.constraints:
        if c.op == ":=":
            defined[c.lhs] = env[c.lhs] = _evaluate(c.right, env)
            continue
        left, right = _evaluate(c.left, env), _evaluate(c.right, env)
        slack = left - right
        met = {"==": abs(slack) <= CONSTRAINT_TOLERANCE * (1.0 + abs(left)),
               "<": slack < 0, ">": slack > 0}[c.op]   # NaN (log of a negative): not met
        if not met:
            warnings.warn(f"the population values do not meet the constraint '{c}' (line "
                          f"{c.line}): lhs - rhs = {slack:.6g}", ModelWarning, stacklevel=4)
    return defined


def _evaluate(expression, env: dict) -> float:
    """An expression of labels at the population values; NaN where it has no value
    (a division by zero, the log of a negative number)."""
    try:
        with np.errstate(all="ignore"):
            return float(expression(env))
    except ArithmeticError:
        return math.nan


def _check_covariance(cov: np.ndarray, which: str, names) -> None:
    """A covariance matrix data can be drawn from: symmetric positive semidefinite
    (singular allowed: zero variances, perfectly correlated parts)."""
    if cov.size == 0:
        return
    eigenvalues = np.linalg.eigvalsh(cov)
    if eigenvalues[0] < -PSD_TOLERANCE * (1.0 + abs(eigenvalues[-1])):
        diag = ", ".join(f"{v} {d:.4g}" for v, d in zip(names, np.diag(cov)))
        raise SimulationError(
            f"the population {which} covariance matrix is not positive semidefinite "
            f"(smallest eigenvalue {eigenvalues[0]:.4g}; variances: {diag}): check the "
            "population values (a negative variance, a correlation above 1)")


def psd_root(cov: np.ndarray) -> np.ndarray:
    """L with L L' = cov for a positive semidefinite ``cov`` (singular allowed): the
    symmetric eigen-decomposition, negative round-off eigenvalues set to 0."""
    if cov.size == 0:
        return np.zeros_like(cov)
    eigenvalues, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
