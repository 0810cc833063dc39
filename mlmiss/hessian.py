"""Second derivatives by central differences of an analytic gradient.

With the gradient exact, each column costs two gradient evaluations and the error is
O(h^2) with no cancellation of function values: the observed information of lavaan's
default standard errors, and the curvature the trust-region optimizer uses.
"""

from __future__ import annotations

import numpy as np


def hessian_from_gradient(gradient, theta, rel_step: float = 1e-6, central: bool = True,
                          at=None) -> np.ndarray:
    """Symmetrized Jacobian of ``gradient(theta) -> (npar,)`` at theta.

    ``central=False`` uses forward differences (half the gradient evaluations, O(h)
    error): enough to steer an optimizer; standard errors want the central ones.
    ``at`` may pass gradient(theta) when it is already known (forward differences)."""
    theta = np.asarray(theta, dtype=float)
    n = theta.size
    out = np.empty((n, n))
    base = None
    if not central:
        base = gradient(theta) if at is None else at
        rel_step = max(rel_step, 1e-7) * 10.0  # forward differences want a larger step
    for i in range(n):
        h = rel_step * max(1.0, abs(theta[i]))
        up = theta.copy()
        up[i] += h
        if central:
            down = theta.copy()
            down[i] -= h
            out[:, i] = (gradient(up) - gradient(down)) / (2.0 * h)
        else:
            out[:, i] = (gradient(up) - base) / h
    return 0.5 * (out + out.T)
