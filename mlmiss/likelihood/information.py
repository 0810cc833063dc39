"""Second derivatives by central differences of an analytic gradient.

With the gradient exact, each column costs two gradient evaluations and the error is
O(h^2) with no cancellation of function values: the curvature the trust-region
optimizer uses, and the observed information of problems without an analytic Hessian
(:mod:`.hessian` has it for a model's problem).

Near the edge of the admissible region a step may land where the log-likelihood is
-inf and there is no gradient (``gradient`` returns None): that column then comes from
the one side that is admissible, or is NaN when neither is. Never a silent zero.
"""

from __future__ import annotations

import numpy as np


def hessian_from_gradient(gradient, theta, rel_step: float = 1e-6, central: bool = True,
                          at=None) -> np.ndarray:
    """Symmetrized Jacobian of ``gradient(theta) -> (npar,) or None`` at theta.

    ``central=False`` uses forward differences (half the gradient evaluations, O(h)
    error): enough to steer an optimizer; standard errors want the central ones.
    ``at`` may pass gradient(theta) when it is already known. Columns where no
    admissible step exists are NaN (and so are the matching rows)."""
    theta = np.asarray(theta, dtype=float)
    n = theta.size
    out = np.empty((n, n))
    base = at

    def centre():
        nonlocal base
        if base is None:
            base = gradient(theta)
            if base is None:
                raise ValueError("the gradient is not defined at theta itself")
        return base

    if not central:
        rel_step = max(rel_step, 1e-7) * 10.0  # forward differences want a larger step
    for i in range(n):
        h = rel_step * max(1.0, abs(theta[i]))
        up = theta.copy()
        up[i] += h
        g_up = gradient(up)
        g_down = None
        if central or g_up is None:
            down = theta.copy()
            down[i] -= h
            g_down = gradient(down)
        if g_up is not None and g_down is not None:
            out[:, i] = (g_up - g_down) / (2.0 * h)
        elif g_up is not None:
            out[:, i] = (g_up - centre()) / h
        elif g_down is not None:
            out[:, i] = (centre() - g_down) / h
        else:
            out[:, i] = np.nan
    return 0.5 * (out + out.T)
