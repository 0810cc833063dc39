"""The covariance matrix of the estimates from the observed information.

lavaan's default with missing data: the information is the Hessian of -logl at the
estimates, here from central differences of the analytic gradient
(:func:`mlmiss.likelihood.information.hessian_from_gradient`), and the covariance
matrix is its inverse. Where that cannot be trusted the user is told, as lavaan does:
an :class:`mlmiss.errors.InformationWarning` when the information is singular (a
symptom of a model that is not identified) or not positive definite (the estimates are
not at a maximum), and NaN standard errors for the parameters whose second
derivatives could not be computed (no admissible step on either side).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InformationWarning
from ..likelihood.information import hessian_from_gradient
from ..threads import one_blas_thread

#: the smallest eigenvalue of the information, relative to the largest, below which it
#: counts as singular; central differences of an exact gradient are good to about 1e-9
SINGULAR_TOLERANCE = 1e-8


def observed_information(problem, theta) -> np.ndarray:
    """-d^2 logl / d theta^2 at theta; NaN rows and columns where no admissible step
    exists."""
    with one_blas_thread():
        return -hessian_from_gradient(problem.gradient, theta)


def observed_vcov(problem, theta, names=None, information=None) -> np.ndarray:
    """The inverse of the observed information (computed here unless given), with
    warnings where it is not to be trusted. ``names`` (one per parameter) make the
    warnings specific."""
    names = list(names) if names is not None else [f"theta[{i}]" for i in range(len(theta))]
    with one_blas_thread():
        info = observed_information(problem, theta) if information is None else information
        npar = info.shape[0]
        vcov = np.full((npar, npar), np.nan)
        ok = np.all(np.isfinite(info), axis=0)
        if not ok.all():
            bad = [names[i] for i in np.flatnonzero(~ok)]
            warnings.warn(
                f"user model: the second derivatives of {', '.join(bad)} could not be "
                "computed: every small step away from the estimate leaves the admissible "
                "region (a covariance matrix that is not positive definite); their standard "
                "errors are NaN",
                InformationWarning, stacklevel=3)
        if not ok.any():
            return vcov
        sub = info[np.ix_(ok, ok)]
        values = np.linalg.eigvalsh(sub)
        top = max(abs(values[-1]), 1e-300)
        if values[0] < -SINGULAR_TOLERANCE * top:
            warnings.warn(
                "user model: the information matrix is not positive definite (smallest "
                f"eigenvalue {values[0]:.3g}, largest {values[-1]:.3g}): the estimates are not at a "
                "maximum; standard errors are not trustworthy", InformationWarning, stacklevel=3)
        elif values[0] <= SINGULAR_TOLERANCE * top:
            warnings.warn(
                "user model: the information matrix is singular (smallest eigenvalue "
                f"{values[0]:.3g}, largest {values[-1]:.3g}): the model may not be identified; "
                "standard errors are not trustworthy", InformationWarning, stacklevel=3)
        vcov[np.ix_(ok, ok)] = np.linalg.pinv(sub, hermitian=True)
    return vcov
