"""The covariance matrix of the estimates from the observed information.

lavaan's default with missing data: the information is the Hessian of -logl at the
estimates, here analytic (``problem.loglik_hessian``, ``docs/hessian.md``; central
differences of the gradient, :func:`mlmiss.likelihood.information.hessian_from_gradient`,
for problems without it), and the covariance matrix is its inverse. Where that cannot be trusted the user is told, as lavaan does:
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
    """-d^2 logl / d theta^2 at theta: analytic where the problem has it
    (``problem.loglik_hessian``), else :func:`differenced_information`."""
    with one_blas_thread():
        hessian = problem.loglik_hessian(theta)
    if hessian is not None and np.all(np.isfinite(hessian)):
        return -hessian
    return differenced_information(problem, theta)


def differenced_information(problem, theta) -> np.ndarray:
    """-d^2 logl / d theta^2 at theta from central differences of the gradient, with
    NaN rows and columns where no admissible step exists. The steps are taken in the
    problem's scaled parameters theta / scales (:mod:`mlmiss.estimation.scaling`), so
    they suit data in any units."""
    scales = np.asarray(problem.scales, dtype=float)

    def scaled_gradient(u):
        # the likelihood wherever it is defined: smooth across the edge of the admissible
        # region, where a boundary solution's curvature is wanted
        g = problem.loglik_and_gradient(scales * u, guard=False)[1]
        return None if g is None else g * scales

    with one_blas_thread():
        scaled = -hessian_from_gradient(scaled_gradient, np.asarray(theta, dtype=float) / scales)
    return scaled / np.outer(scales, scales)


def diagnose_information(information, names, scales=None, tangent=None):
    """Why an information matrix cannot be trusted, if it cannot: (finite columns mask,
    smallest and largest eigenvalue over them, sentences). Singular means a model that
    may not be identified (the sentence names the parameters along the null direction);
    not positive definite means the point is not a maximum. With ``scales`` (the
    parameters' typical magnitudes) it is judged in the scaled parameters, where a
    variance of 1e16 and a loading of 1 weigh alike. At a boundary solution ``tangent``
    (a basis Z of the scaled directions along the edge,
    :func:`mlmiss.estimation.boundary.tangent_basis`) restricts the judgement to Z' I Z:
    a maximum on an edge need only curve down along it."""
    if scales is not None:
        information = information * np.outer(scales, scales)
    finite = np.all(np.isfinite(information), axis=0)
    if tangent is not None and finite.all():
        return finite, *_eigen_test(information, tangent, names, " along the boundary")
    problems = []
    if not finite.all():
        bad = [names[i] for i in np.flatnonzero(~finite)]
        problems.append(f"the second derivatives of {', '.join(bad)} could not be computed: "
                        "every small step away from the estimate leaves the admissible region "
                        "(a covariance matrix that is not positive definite)")
    small, top, sentence = _eigen_test(information, np.eye(len(names))[:, finite], names, "")
    return finite, small, top, problems + sentence


def _eigen_test(information, basis, names, where):
    """(smallest, largest eigenvalue of basis' I basis, [the sentence when that is
    singular or not positive definite, naming the parameters along the smallest])."""
    if basis.shape[1] == 0:
        return float("nan"), float("nan"), []
    # NaN rows and columns lie outside the basis: zeros keep them out of the product
    values, vectors = np.linalg.eigh(basis.T @ np.nan_to_num(information) @ basis)
    small, top = float(values[0]), float(values[-1])
    if small > SINGULAR_TOLERANCE * abs(top):
        return small, top, []
    weight = np.abs(basis @ vectors[:, 0])
    involved = [names[i] for i in np.argsort(-weight)[:4] if weight[i] > 0.2]
    what = (f"not positive definite{where}: the estimates are not at a maximum"
            if small < -SINGULAR_TOLERANCE * abs(top)
            else f"singular{where}: the model may not be identified")
    return small, top, [f"the information matrix is {what} (smallest eigenvalue {small:.3g}, "
                        f"largest {top:.3g}; parameters involved: {', '.join(involved) or 'many'})"]


def observed_vcov(problem, theta, names=None, information=None, tangent=None) -> np.ndarray:
    """The inverse of the observed information (computed here unless given), with
    warnings where it is not to be trusted (:func:`diagnose_information`): NaN standard
    errors where a second derivative could not be computed. ``names`` (one per
    parameter) make the warnings specific. At a boundary solution (``tangent``, see
    :func:`diagnose_information`) the covariance is Z (Z' I Z)^-1 Z', as for active
    constraints."""
    names = list(names) if names is not None else [f"theta[{i}]" for i in range(len(theta))]
    scales = np.asarray(problem.scales, dtype=float)
    with one_blas_thread():
        info = observed_information(problem, theta) if information is None else information
        info = info * np.outer(scales, scales)   # inverted in the scaled parameters
        npar = info.shape[0]
        vcov = np.full((npar, npar), np.nan)
        ok, _, _, problems = diagnose_information(info, names, tangent=tangent)
        for sentence in problems:
            warnings.warn(f"user model: {sentence}; standard errors are not trustworthy "
                          "(NaN where not computed)", InformationWarning, stacklevel=3)
        if tangent is not None and ok.all():
            projected = np.linalg.pinv(tangent.T @ info @ tangent, hermitian=True)
            vcov = tangent @ projected @ tangent.T
            # parameters the edge pins (a variance held at zero): exactly no variance
            pinned = np.diag(vcov) <= 1e-10 * np.max(np.diag(vcov))
            vcov[pinned, :] = 0.0
            vcov[:, pinned] = 0.0
        elif ok.any():
            vcov[np.ix_(ok, ok)] = np.linalg.pinv(info[np.ix_(ok, ok)], hermitian=True)
    return vcov * np.outer(scales, scales)
