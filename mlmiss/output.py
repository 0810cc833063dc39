"""A fit as plain data: ``fit.to_dict()`` and ``fit.to_json()``.

:func:`fit_to_dict` reads only what a :class:`mlmiss.Fit` answers and returns nested
dicts and lists of strings, numbers, booleans and None (NaN and infinities become
None), ready for :func:`json.dumps`:

* ``estimates``: one record per parameter-table row of ``fit.parameter_estimates()``
  (with ``std_lv``, ``std_all``, ``std_nox`` when the fit can standardize);
* ``fit_measures``: ``fit.fit_measures()`` (None, and ``fit_measures_error``, when the
  unrestricted or baseline fit fails);
* ``implied`` and ``h1``: per level (``within``, ``between``) the ``mean`` and ``cov``
  as ``{"names": [...], "value": ...}``, the layout of the lavaan reference files;
* ``r2``: R-square per level, ``{variable: value}``;
* ``data``: rows used and given, dropped rows (every level-1 value missing; a
  covariate missing with ``fixed_x``), clusters, the variables, the missing patterns
  per level;
* ``options`` (``fit.options``), ``convergence`` and ``versions``.

It imports nothing above :mod:`mlmiss.report`, so :mod:`mlmiss.results` can offer it.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from .report import data_counts, level2_patterns
from .version import __version__

__all__ = ["fit_to_dict", "fit_to_json", "json_safe"]


def json_safe(value):
    """``value`` with numpy scalars and arrays, pandas objects, tuples and paths turned
    into plain Python, and NaN / infinities into None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict") and hasattr(value, "index"):   # a pandas object
        return json_safe(value.to_dict())
    return str(value)


def _levels(levels: dict) -> dict:
    """Per-level mean Series / cov DataFrame as names and values."""
    out = {}
    for level, moments in levels.items():
        mean, cov = moments["mean"], moments["cov"]
        out[str(level)] = {
            "mean": {"names": [str(n) for n in mean.index],
                     "value": json_safe(mean.to_numpy(dtype=float))},
            "cov": {"names": [str(n) for n in cov.columns],
                    "value": json_safe(cov.to_numpy(dtype=float))}}
    return out


def _attempt(what, errors: dict, name: str):
    """``what()``, or None with the error's one line in ``errors[name]``."""
    try:
        return what()
    except Exception as exc:  # a part that cannot be computed must not lose the rest
        errors[name] = f"{type(exc).__name__}: {exc}"
        return None


def _estimates(fit) -> list[dict]:
    try:
        table = fit.parameter_estimates(standardized=True)
    except TypeError:  # a stand-in fit without the standardized keyword: plain estimates
        table = fit.parameter_estimates()
    records = table.to_dict(orient="records")
    return [json_safe(r) for r in records]


def _patterns(data) -> dict:
    y_names, z_names = list(data.y_names), list(data.z_names)
    level1, level2 = data.level1, data.level2

    def listed(observed, freq, names):
        return [{"observed": [n for n, seen in zip(names, row) if seen], "n": int(f)}
                for row, f in zip(np.asarray(observed, dtype=bool), np.asarray(freq))]

    return {
        "level1": {"n_patterns": int(level1.n_patterns),
                   "patterns": listed(level1.observed, level1.freq, y_names)},
        # lavaan counts the level-2 patterns that observe something; ours has the
        # empty pattern too (clusters with every between-only value missing)
        "level2": {"n_patterns": level2_patterns(data),
                   "n_patterns_with_empty": int(level2.n_patterns),
                   "patterns": listed(level2.observed, level2.freq, z_names)},
    }


def _data(fit) -> dict:
    data = fit.data
    counts = data_counts(fit)
    dropped_x = getattr(getattr(fit, "problem", None), "fixed_x_dropped_rows", None)
    return {
        "nobs": counts["used"],
        "ntotal_rows": counts["total"],
        "nclusters": int(fit.nclusters),
        "cluster": getattr(fit, "cluster", None),
        "y": [str(v) for v in data.y_names],
        "z": [str(v) for v in data.z_names],
        "missing_patterns": _patterns(data),
        "dropped_rows": {
            "all_level1_missing": json_safe(np.asarray(data.dropped_rows).tolist()),
            "fixed_x_covariate_missing": json_safe(
                [] if dropped_x is None else np.asarray(dropped_x).tolist()),
        },
    }


def _versions() -> dict:
    import numba
    import pandas
    import scipy

    return {"mlmiss": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "pandas": pandas.__version__,
            "python": platform.python_version()}


def fit_to_dict(fit) -> dict:
    """Everything a report needs from a fit, as JSON-ready data (module docstring)."""
    errors: dict = {}
    estimate = getattr(fit, "estimate", None)
    out = {
        "converged": bool(fit.converged),
        "estimates": _estimates(fit),
        "fit_measures": json_safe(_attempt(fit.fit_measures, errors, "fit_measures")),
        "implied": _levels(fit.inspect("implied")),
        "h1": _attempt(lambda: _levels(fit.inspect("h1")), errors, "h1"),
        "r2": _attempt(lambda: {str(k): json_safe(v) for k, v in fit.inspect("r2").items()},
                       errors, "r2"),
        "data": _data(fit),
        "options": json_safe(dict(getattr(fit, "options", {}) or {})),
        "convergence": {
            "converged": bool(fit.converged),
            "iterations": json_safe(fit.iterations),
            "message": str(fit.message),
            "optimizer": str(fit.optimizer),
            "seconds": json_safe(fit.seconds),
            "loglik": json_safe(fit.loglik),
            "npar": int(fit.npar),
            "on_boundary": bool(getattr(estimate, "on_boundary", False)),
            "e_steps": json_safe(getattr(estimate, "e_steps", 0) or 0),
        },
        "versions": _versions(),
    }
    for name, message in errors.items():
        out[f"{name}_error"] = message
    return out


def fit_to_json(fit, path=None, indent: int | None = 2) -> str:
    """:func:`fit_to_dict` as JSON text (strict JSON: no NaN); written to ``path`` too
    when given."""
    text = json.dumps(fit_to_dict(fit), indent=indent, allow_nan=False)
    if path is not None:
        Path(path).write_text(text + "\n")
    return text
