"""Second derivatives by central differences of an analytic gradient.

With the gradient exact, each column costs two gradient evaluations and the error is
O(h^2) with no cancellation of function values: the observed information of lavaan's
default standard errors, and the curvature the trust-region optimizer uses.
"""

from __future__ import annotations

import numpy as np


def hessian_from_gradient(gradient, theta, rel_step: float = 1e-6) -> np.ndarray:
    """Symmetrized Jacobian of ``gradient(theta) -> (npar,)`` at theta."""
    theta = np.asarray(theta, dtype=float)
    n = theta.size
    out = np.empty((n, n))
    for i in range(n):
        h = rel_step * max(1.0, abs(theta[i]))
        up = theta.copy()
        down = theta.copy()
        up[i] += h
        down[i] -= h
        out[:, i] = (gradient(up) - gradient(down)) / (2.0 * h)
    return 0.5 * (out + out.T)
