"""True values of an analysis model's parameters, from the population that generated
the data.

A parameter of the analysis model is matched to the population's parameter table by
(lhs, op, rhs, level), a covariance also with lhs and rhs swapped. A regression,
loading or covariance the population does not have, between variables it has at that
level, is 0 there; anything else unmatched (a latent variable of another name) has no
true value (NaN). A defined parameter (``:=``) is its expression at the true values of
the labels it uses. ``explicit`` values (by label or (lhs, op, rhs, level)) win.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import SimulationError
from ..model.partable import parameter_table


def analysis_rows(model: str, fit_options: dict) -> pd.DataFrame:
    """lhs, op, rhs, level, label of the parameters a fit of ``model`` reports in a
    Monte Carlo study: the free rows of its table and the defined parameters, in the
    order of ``fit.parameter_estimates()``."""
    import warnings

    options = {key.replace(".", "_"): value for key, value in fit_options.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # sem() itself warns, per replication
        partable = parameter_table(model, fixed_x=bool(options.get("fixed_x", True)),
                                   std_lv=bool(options.get("std_lv", False)),
                                   orthogonal=bool(options.get("orthogonal", False)))
    table = partable.table
    rows = table.loc[table["free"] > 0, ["lhs", "op", "rhs", "level", "label"]]
    defined = pd.DataFrame([{"lhs": c.lhs, "op": ":=", "rhs": c.rhs, "level": 0, "label": c.lhs}
                            for c in partable.constraints if c.op == ":="],
                           columns=["lhs", "op", "rhs", "level", "label"])
    out = pd.concat([rows, defined], ignore_index=True) if len(defined) else rows
    out = out.reset_index(drop=True)
    out["level"] = out["level"].astype(np.int64)
    return out


def true_values(rows: pd.DataFrame, population=None, explicit=None) -> np.ndarray:
    """One true value per row of ``rows`` (lhs, op, rhs, level, label): module doc.
    ``population``: a :class:`mlmiss.simulation.population.Population` or None."""
    values = np.full(len(rows), np.nan)
    known, variables = {}, {1: set(), 2: set()}
    if population is not None:
        table = population.table()
        for r in table.itertuples(index=False):
            known[(r.lhs, r.op, r.rhs, int(r.level))] = float(r.value)
            if r.op == "~~":
                known[(r.rhs, r.op, r.lhs, int(r.level))] = float(r.value)
        pt = population.partable
        for level in (1, 2):
            variables[level] = set(pt.level_names(level)) | set(pt.latent_names[level])
    given = _explicit(explicit, rows)
    labels = {}
    for i, r in enumerate(rows.itertuples(index=False)):
        key = (r.lhs, r.op, r.rhs, int(r.level))
        if r.op == ":=":
            continue
        if r.label and r.label in given:
            values[i] = given[r.label]
        elif key in given:
            values[i] = given[key]
        elif key in known:
            values[i] = known[key]
        elif r.op in ("~", "=~", "~~") and not (r.op == "~~" and r.lhs == r.rhs) \
                and {r.lhs, r.rhs} <= variables.get(int(r.level), set()):
            values[i] = 0.0   # a path or covariance the population does not have
        if r.label:
            labels.setdefault(r.label, values[i])
    for i, r in enumerate(rows.itertuples(index=False)):
        if r.op == ":=":
            values[i] = given.get(r.lhs, _evaluate(r.rhs, labels))
            labels[r.lhs] = values[i]
    return values


def _explicit(explicit, rows) -> dict:
    if explicit is None:
        return {}
    if not isinstance(explicit, dict):
        raise SimulationError(f"true_values must be a dict (by label or (lhs, op, rhs, level)), "
                              f"got {type(explicit).__name__}")
    labels = set(rows["label"]) - {""}
    keys = {(r.lhs, r.op, r.rhs, int(r.level)) for r in rows.itertuples(index=False)}
    out = {}
    for key, value in explicit.items():
        key = tuple(key) if isinstance(key, list) else key
        if key not in labels and key not in keys:
            raise SimulationError(f"true_values names {key!r}, which is no label "
                                  f"({', '.join(sorted(labels)) or 'none'}) nor parameter "
                                  "(lhs, op, rhs, level) of the analysis model")
        out[key] = float(value)
    return out


def _evaluate(text: str, env: dict) -> float:
    """A defined parameter's expression at the true values; NaN if it cannot be had."""
    from ..model.constraints import expression

    expr = expression(text, 0)
    if any(math.isnan(env.get(name, math.nan)) for name in expr.names):
        return math.nan
    try:
        with np.errstate(all="ignore"):
            return float(expr(env))
    except (ArithmeticError, ValueError):
        return math.nan
