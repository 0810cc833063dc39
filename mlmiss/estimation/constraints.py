"""Estimation under lavaan's constraints (``==``, ``<``, ``>``) and defined parameters
(``:=``), from the parameter table's :class:`mlmiss.model.constraints.Constraint` list.

:class:`ConstraintSet` evaluates the constraints as functions of theta: equalities
h(theta) = lhs - rhs, inequalities g(theta) >= 0 (rhs - lhs for ``<``, lhs - rhs for
``>``) and the defined parameters, with exact Jacobians by complex steps (the
expressions are analytic). Linear equalities are met exactly by reparametrization,
as lavaan does: theta = D (u0 + K z) with D the parameter scales, K an orthonormal basis
of the null space of the scaled constraint Jacobian and u0 a particular solution
(:class:`Reparametrized`, an objective like any other for the optimizers).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..model.partable import table_rows
from ..threads import one_blas_thread
from .boundary import INADMISSIBLE
from .problem import Objective

#: the complex step: derivatives of analytic expressions exact to round-off
COMPLEX_STEP = 1e-30


class ConstraintSet:
    """The constraints of a parameter table as functions of theta."""

    def __init__(self, partable):
        table = partable.table
        self.constraints = list(partable.constraints)
        self.npar = int(partable.npar)
        self._free, self._fixed = {}, {}
        for r in table_rows(table):
            if isinstance(r.label, str) and r.label:
                if r.free > 0:
                    self._free[r.label] = int(r.free) - 1
                else:
                    self._fixed[r.label] = float(r.value)
        self.equalities = [c for c in self.constraints if c.op == "=="]
        self.inequalities = [c for c in self.constraints if c.op in ("<", ">")]
        self.defined = [c for c in self.constraints if c.op == ":="]

    def __bool__(self) -> bool:
        return bool(self.equalities or self.inequalities)

    def _evaluate(self, theta):
        env = dict(self._fixed)
        env.update({name: theta[i] for name, i in self._free.items()})
        eq, ineq, defined = [], [], []
        for c in self.constraints:
            if c.op == ":=":
                env[c.lhs] = c.right(env)
                defined.append(env[c.lhs])
                continue
            left, right = c.left(env), c.right(env)
            if c.op == "==":
                eq.append(left - right)
            else:
                ineq.append(right - left if c.op == "<" else left - right)
        dtype = complex if np.iscomplexobj(theta) else float
        return (np.array(eq, dtype=dtype), np.array(ineq, dtype=dtype),
                np.array(defined, dtype=dtype))

    def values(self, theta):
        """(h, g, defined) at theta: equalities (0 when met), inequalities (>= 0 when met),
        defined parameters."""
        return self._evaluate(np.asarray(theta, dtype=float))

    def jacobians(self, theta, columns=None):
        """(dh/dtheta, dg/dtheta, d defined/dtheta), each (rows, npar), by complex steps;
        with ``columns``, only those columns are computed (the others are zero)."""
        theta = np.asarray(theta, dtype=float)
        n = theta.size
        eq, ineq, defined = (np.zeros((len(self.equalities), n)), np.zeros((len(self.inequalities), n)),
                             np.zeros((len(self.defined), n)))
        for i in range(n) if columns is None else columns:
            step = theta.astype(complex)
            step[i] += 1j * COMPLEX_STEP
            h, g, d = self._evaluate(step)
            eq[:, i], ineq[:, i], defined[:, i] = (h.imag / COMPLEX_STEP, g.imag / COMPLEX_STEP,
                                                   d.imag / COMPLEX_STEP)
        return eq, ineq, defined

    def violation(self, theta) -> float:
        """How far theta is from meeting every constraint: the largest |h| and the
        largest shortfall of an inequality (0 when all are met)."""
        h, ineq, _ = self.values(theta)
        return float(max(np.max(np.abs(h), initial=0.0), -np.min(ineq, initial=0.0)))

    def involved(self, theta) -> np.ndarray:
        """The parameters the equalities and inequalities depend on (a nonzero Jacobian
        column at theta or at a distant point)."""
        theta = np.asarray(theta, dtype=float)
        other = theta + np.random.default_rng(1).normal(size=theta.size) * (1.0 + np.abs(theta))
        used = np.zeros(theta.size, dtype=bool)
        for point in (theta, other):
            jh, jg, _ = self.jacobians(point)
            used |= np.any(jh != 0.0, axis=0) | np.any(jg != 0.0, axis=0)
        return np.flatnonzero(used)

    def hessians(self, theta, columns, step: float = 1e-5):
        """Second derivatives (rows, npar, npar) of the equalities and of the
        inequalities, by central differences of their exact Jacobians over ``columns``
        (the parameters they involve; every other entry is zero)."""
        theta = np.asarray(theta, dtype=float)
        n = theta.size
        hh = np.zeros((len(self.equalities), n, n))
        hg = np.zeros((len(self.inequalities), n, n))
        for k in columns:
            delta = step * (1.0 + abs(theta[k]))
            up, down = theta.copy(), theta.copy()
            up[k] += delta
            down[k] -= delta
            (h1, g1, _), (h0, g0, _) = self.jacobians(up, columns), self.jacobians(down, columns)
            hh[:, :, k] = (h1 - h0) / (2.0 * delta)
            hg[:, :, k] = (g1 - g0) / (2.0 * delta)
        return 0.5 * (hh + hh.transpose(0, 2, 1)), 0.5 * (hg + hg.transpose(0, 2, 1))

    def linear_equalities(self, theta) -> bool:
        """Whether the equalities are linear in theta: their Jacobian is the same at theta
        and at a distant point, and h is affine between them."""
        theta = np.asarray(theta, dtype=float)
        other = theta + np.random.default_rng(0).normal(size=theta.size) * (1.0 + np.abs(theta))
        j0, j1 = self.jacobians(theta)[0], self.jacobians(other)[0]
        h0, h1 = self.values(theta)[0], self.values(other)[0]
        scale = 1.0 + np.abs(j0).max(initial=0.0)
        return (np.allclose(j0, j1, rtol=1e-10, atol=1e-12 * scale)
                and np.allclose(h1 - h0, j0 @ (other - theta), rtol=1e-9,
                                atol=1e-9 * scale * (1.0 + np.abs(other).max())))


class Reparametrized(Objective):
    """``problem`` restricted to linear equalities J theta + c = 0 (J, c from a
    :class:`ConstraintSet`): theta = D (u0 + K z), z free. Raises ValueError when the
    equalities contradict each other."""

    def __init__(self, problem, constraints: ConstraintSet, theta0):
        self.problem = problem
        self.data = problem.data
        theta0 = np.asarray(theta0, dtype=float)
        jac = constraints.jacobians(theta0)[0]
        c = constraints.values(theta0)[0] - jac @ theta0
        scales = np.asarray(problem.scales, dtype=float)
        self.d = scales
        ju = jac * scales[None, :]
        self.rank, self.basis = rank_and_null_space(ju)   # K, orthonormal, scaled units
        self.u0 = np.linalg.lstsq(ju, -c, rcond=None)[0]
        if np.linalg.norm(ju @ self.u0 + c) > 1e-8 * (1.0 + np.linalg.norm(c)):
            raise ValueError("the equality constraints contradict each other: no parameter "
                             "values meet them all")
        self.npar = self.basis.shape[1]

    @property
    def between_psd(self):
        return self.problem.between_psd

    @between_psd.setter
    def between_psd(self, value):
        self.problem.between_psd = value

    def admissible(self, moments) -> bool:
        return self.problem.admissible(moments)

    def theta(self, z) -> np.ndarray:
        """The full parameter vector of z."""
        return self.d * (self.u0 + self.basis @ np.asarray(z, dtype=float))

    def z(self, theta) -> np.ndarray:
        """The z closest to theta (its projection onto the constraints' plane)."""
        return self.basis.T @ (np.asarray(theta, dtype=float) / self.d - self.u0)

    def moments(self, z):
        return self.problem.moments(self.theta(z))

    def gradient_of_moments(self, z, g):
        full = self.problem.gradient_of_moments(self.theta(z), g)
        return self.basis.T @ (self.d * full)

    def loglik_hessian(self, z):
        full = self.problem.loglik_hessian(self.theta(z))
        if full is None:
            return None
        dk = self.d[:, None] * self.basis   # d theta / d z
        return dk.T @ full @ dk

    @property
    def tangent(self) -> np.ndarray:
        """The directions theta may move in, in scaled parameters (theta / D)."""
        return self.basis


#: an inequality within this (scaled) distance of its bound counts as active
ACTIVE_TOL = 1e-7
#: the largest KKT remainder (scaled gradient of -logl / N) of a converged constrained fit
KKT_TOL = 1e-6


class ActiveSet:
    """What inference needs of a constrained maximum: ``tangent``, an orthonormal basis
    (in theta / scales) of the directions that keep the equalities and the active
    inequalities, and ``rank``, the number of independent equalities (the parameters
    they take away; inactive or active inequalities take none, as in lavaan)."""

    def __init__(self, constraints: ConstraintSet, theta, scales):
        jh, jg, _ = constraints.jacobians(theta)
        active = jg[_active(constraints.values(theta)[1])]
        self.rank = rank_and_null_space(jh * scales)[0]
        self.tangent = rank_and_null_space(np.vstack([jh, active]) * scales)[1]


def _active(g) -> np.ndarray:
    """Which inequalities (g >= 0) are at their bound."""
    return np.abs(g) <= ACTIVE_TOL * (1.0 + np.abs(g))


def rank_and_null_space(rows):
    """(rank, orthonormal basis of the null space) of a constraint Jacobian, singular
    values counted above round-off (with a margin of 1e3)."""
    if rows.size == 0:
        return 0, np.eye(rows.shape[1])
    _, sv, vt = np.linalg.svd(rows)
    rank = int(np.sum(sv > max(rows.shape) * np.finfo(float).eps * sv[0] * 1e3))
    return rank, vt[rank:].T


def kkt_remainder(constraints: ConstraintSet, theta, gradient, scales,
                  jacobians=None) -> float:
    """How far the scaled gradient of f = -logl / N is from the span of the equality
    and active inequality gradients, with non-negative weights on the inequalities
    (lstsq weights; a clearly negative one: the whole gradient, no maximum).
    ``jacobians``: the constraints' Jacobians at theta, when the caller has them."""
    jh, jg, _ = constraints.jacobians(theta) if jacobians is None else jacobians
    rows = np.vstack([jh, jg[_active(constraints.values(theta)[1])]]) * scales
    grad = gradient * scales
    if rows.size == 0:
        return float(np.max(np.abs(grad)))
    weights, *_ = np.linalg.lstsq(rows.T, grad, rcond=1e-10)
    # f is minimized with g >= 0: at a minimum grad f = sum w_j grad g_j with w_j >= 0
    if np.any(weights[jh.shape[0]:] < -1e-6 * max(1.0, np.max(np.abs(weights)))):
        return float(np.max(np.abs(grad)))
    return float(np.max(np.abs(grad - rows.T @ weights)))


def fit_constrained(problem, constraints: ConstraintSet, theta0, maxiter: int = 1000,
                    restarts: int = 3):
    """Minimize -logl / N under the equalities and inequalities by SLSQP (sequential
    quadratic programming with the constraints' exact Jacobians), in the scaled
    parameters; restarted from where it stopped while the KKT remainder is above
    :data:`KKT_TOL` / 100 (a fresh quasi-Newton matrix finishes what a stalled line search
    left). Returns (theta, f, kkt, iterations, message, violation)."""
    from scipy.optimize import minimize

    scales = np.asarray(problem.scales, dtype=float)
    n = float(problem.data.n_obs)

    def f_and_grad(u):
        value, g = problem.loglik_and_gradient(scales * u, guard=False)
        if g is None:
            return INADMISSIBLE, np.zeros_like(u)
        return -value / n, -g * scales / n

    def equalities(u):
        return constraints.values(scales * u)[0]

    def inequalities(u):
        return constraints.values(scales * u)[1]

    last = {}

    def jacobians(u):
        # SLSQP asks for both Jacobians at each point: the complex steps run once
        key = u.tobytes()
        if key not in last:
            last.clear()
            last[key] = [j * scales for j in constraints.jacobians(scales * u)[:2]]
        return last[key]

    def eq_jac(u):
        return jacobians(u)[0]

    def ineq_jac(u):
        return jacobians(u)[1]

    spec = []
    if constraints.equalities:
        spec.append({"type": "eq", "fun": equalities, "jac": eq_jac})
    if constraints.inequalities:
        spec.append({"type": "ineq", "fun": inequalities, "jac": ineq_jac})
    u = np.asarray(theta0, dtype=float) / scales
    iterations, message = 0, ""
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(restarts + 1):
            result = minimize(f_and_grad, u, jac=True, method="SLSQP", constraints=spec,
                              options={"maxiter": max(maxiter - iterations, 1), "ftol": 1e-15})
            iterations += int(result.nit)
            u = np.asarray(result.x, dtype=float)
            message = str(result.message)
            value, g = f_and_grad(u)
            kkt = kkt_remainder(constraints, scales * u, g / scales, scales)
            if kkt <= KKT_TOL / 100 or iterations >= maxiter:
                break
    return scales * u, value, kkt, iterations, message, constraints.violation(scales * u)
