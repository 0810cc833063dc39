"""The observed-data log-likelihood of a two-level model, evaluated seven ways.

``dense`` is the definition itself; ``objective1`` ... ``objective5`` retrace the
sequence of Rosseel (2021, sec. 4), each module differing from the previous one by
one idea; ``dutoit`` is the du Toit & du Toit solution (eqs. 78-81). All return the
same number (lavaan's ``logl``, including the -n/2 log(2 pi) constant).
"""

from __future__ import annotations

from importlib import import_module

import numpy as np

from ..errors import MomentsError

METHODS = ("dense", "objective1", "objective2", "objective3", "objective4", "objective5", "dutoit")


def check_compatible(data, moments) -> None:
    """Moments must be ordered like the data: P level-1 and K between-only variables."""
    if moments.n_y != data.n_y or moments.n_z != data.n_z:
        raise MomentsError(
            f"moments are for P={moments.n_y} level-1 and K={moments.n_z} between-only variables; "
            f"the data have P={data.n_y} ({', '.join(data.y_names)}) and K={data.n_z}"
            + (f" ({', '.join(data.z_names)})" if data.n_z else ""))


def loglik(data, moments, method: str = "objective5") -> float:
    """Observed-data log-likelihood of ``data`` at ``moments``.

    Parameters
    ----------
    data : :class:`mlmiss.TwoLevelData`
    moments : :class:`mlmiss.Moments`, ordered as ``data.y_names`` / ``data.z_names``.
    method : one of :data:`METHODS`; ``"objective5"`` (default) is the fast one.

    Returns
    -------
    float
        The log-likelihood, including ``-n_observed_values/2 * log(2 pi)``. It is
        ``-inf`` when the moments do not define a proper distribution for the data:
        ``sigma_w`` or ``sigma_zz`` not positive definite, or some cluster's
        covariance V_j not positive definite (possible when ``sigma_b`` is
        indefinite). Every method applies exactly this rule.
        ``"dutoit"`` raises :class:`mlmiss.errors.SingularMatrixError` when the
        between part of ``sigma_b`` is singular.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_compatible(data, moments)
    # objective5's kernel makes the same check itself, at no extra cost
    if method != "objective5" and not (_positive_definite(moments.sigma_w)
                                       and _positive_definite(moments.sigma_zz)):
        return -np.inf
    module = import_module(f"{__name__}.{method}")
    return module.loglik(data, moments)


def _positive_definite(mat) -> bool:
    try:
        np.linalg.cholesky(mat)
    except np.linalg.LinAlgError:
        return False
    return True
