"""``loglik(data, moments, method=...)``: the log-likelihood by any of the methods.

``engine`` is the production engine (:mod:`mlmiss.likelihood`); the others are the
paper's teaching sequence and references (:mod:`mlmiss.paper`): ``dense`` is the
definition itself, ``objective1`` ... ``objective5`` retrace Rosseel (2021, sec. 4),
``dutoit`` is the du Toit & du Toit solution (eqs. 78-81). All return the same number
(lavaan's ``logl``, including the -n/2 log(2 pi) constant). This module sits above both
packages, which never import each other.
"""

from __future__ import annotations

from importlib import import_module

import numpy as np

from .linalg import cholesky_inverse

METHODS = ("engine", "dense", "objective1", "objective2", "objective3", "objective4", "objective5",
           "dutoit")


def method_function(method: str):
    """The ``(data, moments) -> float`` function behind a method name (unchecked input)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "engine":
        return import_module(f"{__package__}.likelihood.engine").loglik
    return import_module(f"{__package__}.paper.{method}").loglik


def loglik(data, moments, method: str = "engine") -> float:
    """Observed-data log-likelihood of ``data`` at ``moments``.

    Parameters
    ----------
    data : :class:`mlmiss.TwoLevelData`
    moments : :class:`mlmiss.Moments`, ordered as ``data.y_names`` / ``data.z_names``.
    method : one of :data:`METHODS`; ``"engine"`` (default) is the fast one.

    Returns
    -------
    float
        The log-likelihood, including ``-n_observed_values/2 * log(2 pi)``. It is
        ``-inf`` when the moments do not define a proper distribution for the data:
        ``sigma_w`` or ``sigma_zz`` not positive definite, or some cluster's
        covariance V_j not positive definite (possible when ``sigma_b`` is
        indefinite). Every method applies exactly this rule.
        ``"dutoit"`` raises :class:`mlmiss.SingularMatrixError` when the between
        part of ``sigma_b`` is singular.
    """
    function = method_function(method)
    data.check_moments(moments)
    # the engine and objective5 check this inside their kernels, at no extra cost
    if method not in ("engine", "objective5") and (cholesky_inverse(moments.sigma_w)[0] is None
                                                   or cholesky_inverse(moments.sigma_zz)[0] is None):
        return -np.inf
    return function(data, moments)
