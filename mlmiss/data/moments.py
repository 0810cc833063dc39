"""The six moment blocks of a two-level random-intercept model (Rosseel 2021, sec. 3.1).

``y`` are the level-1 variables (within-only and "both" variables), ``z`` the
between-only variables::

    y_ji = mu_y + y_b(j) + y_w(ji)     Var(y_w) = sigma_w,  Var(y_b) = sigma_b
    z_j  ~ (mu_z, sigma_zz)            Cov(y_b, z) = sigma_yz   (P x K)

Which level-1 variables have a between part (the "both" variables) is decided in one
place, :attr:`Moments.between_mask`: the set a model declares (``between=``), else the
variables whose ``sigma_b`` row is not all zero. A declared variable may have a zero
row (a between variance fixed or estimated at 0); it still has a between part.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import MomentsError

_FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")


def _as_float_array(name, value, ndim):
    arr = np.array(value, dtype=float, copy=True)
    if arr.size == 0:
        # allow [] / np.empty for K = 0 in any compatible shape
        arr = arr.reshape((0,) * ndim) if ndim == 1 or arr.ndim != ndim else arr
    if arr.ndim != ndim:
        raise MomentsError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MomentsError(f"{name} contains non-finite values")
    return arr


def _check_symmetric(name, mat):
    if mat.shape[0] != mat.shape[1]:
        raise MomentsError(f"{name} must be square, got shape {mat.shape}")
    scale = max(1.0, float(np.max(np.abs(mat)))) if mat.size else 1.0
    asym = float(np.max(np.abs(mat - mat.T))) if mat.size else 0.0
    if asym > 1e-10 * scale:
        i, j = np.unravel_index(np.argmax(np.abs(mat - mat.T)), mat.shape)
        raise MomentsError(
            f"{name} is not symmetric: [{i},{j}] = {mat[i, j]!r} but [{j},{i}] = {mat[j, i]!r}"
        )


def _between_mask(sigma_b, between) -> np.ndarray:
    """The one rule for "has a between part": declared, else a nonzero sigma_b row."""
    if between is not None:
        return np.array(between, dtype=bool).reshape(-1)
    return np.any(np.asarray(sigma_b) != 0.0, axis=1)


@dataclass(frozen=True, init=False)
class Moments:
    """Model-implied moments, ordered as ``data.y_names`` (P) and ``data.z_names`` (K).

    Parameters
    ----------
    mu_y : (P,) mean of the level-1 variables.
    mu_z : (K,) mean of the between-only variables.
    sigma_w : (P, P) within covariance matrix.
    sigma_b : (P, P) between covariance of y's between parts; zero rows/columns
        for within-only variables.
    sigma_zz : (K, K) covariance of z.
    sigma_yz : (P, K) Cov(y_b, z); rows of within-only variables must be zero.
    between : optional (P,) booleans, True for the variables with a between part (a
        model's "both" variables); default: the nonzero rows of ``sigma_b``.

    Arrays are copied and made read-only. Shapes, finiteness and symmetry are
    checked; positive definiteness is the likelihood's business (see
    :func:`mlmiss.loglik`).
    """

    mu_y: np.ndarray
    mu_z: np.ndarray
    sigma_w: np.ndarray
    sigma_b: np.ndarray
    sigma_zz: np.ndarray
    sigma_yz: np.ndarray

    def __init__(self, mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz, between=None):
        mu_y = _as_float_array("mu_y", mu_y, 1)
        mu_z = _as_float_array("mu_z", mu_z, 1)
        p, k = mu_y.shape[0], mu_z.shape[0]
        sigma_w = _as_float_array("sigma_w", sigma_w, 2)
        sigma_b = _as_float_array("sigma_b", sigma_b, 2)
        sigma_zz = np.array(sigma_zz, dtype=float).reshape(k, k) if k == 0 else _as_float_array(
            "sigma_zz", sigma_zz, 2)
        sigma_yz = np.array(sigma_yz, dtype=float).reshape(p, k) if k == 0 else _as_float_array(
            "sigma_yz", sigma_yz, 2)
        if p == 0:
            raise MomentsError("mu_y is empty: a two-level model needs at least one level-1 variable")
        for name, mat, shape in (
            ("sigma_w", sigma_w, (p, p)),
            ("sigma_b", sigma_b, (p, p)),
            ("sigma_zz", sigma_zz, (k, k)),
            ("sigma_yz", sigma_yz, (p, k)),
        ):
            if mat.shape != shape:
                raise MomentsError(
                    f"{name} has shape {mat.shape}; expected {shape} for P={p} level-1 "
                    f"and K={k} between-only variables"
                )
        for name, mat in (("sigma_w", sigma_w), ("sigma_b", sigma_b), ("sigma_zz", sigma_zz)):
            _check_symmetric(name, mat)
        mask = _between_mask(sigma_b, between)
        if between is None:
            bad = np.flatnonzero(~mask & np.any(sigma_yz != 0.0, axis=1))
            if bad.size:
                raise MomentsError(
                    f"sigma_yz row(s) {bad.tolist()} are nonzero but the matching sigma_b rows are "
                    "zero (a variable without a between part cannot covary with z)")
        else:
            if mask.shape != (p,):
                raise MomentsError(f"between has shape {mask.shape}; expected ({p},)")
            bad = np.flatnonzero(~mask & (np.any(sigma_b != 0.0, axis=1)
                                          | np.any(sigma_yz != 0.0, axis=1)))
            if bad.size:
                raise MomentsError(
                    f"variable(s) {bad.tolist()} have no between part (between=False) but nonzero "
                    "sigma_b or sigma_yz rows")
        for name, arr in zip(_FIELDS, (mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        mask.setflags(write=False)
        object.__setattr__(self, "between_mask", mask)

    @property
    def n_y(self) -> int:
        return self.mu_y.shape[0]

    @property
    def n_z(self) -> int:
        return self.mu_z.shape[0]

    @cached_property
    def between_index(self) -> np.ndarray:
        """Indices of the level-1 variables with a between part (:attr:`between_mask`)."""
        index = np.flatnonzero(self.between_mask).astype(np.int64)
        index.setflags(write=False)
        return index

    def as_dict(self) -> dict:
        """The six blocks by name (``between_mask`` is not among them)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def unchecked(cls, mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz, between=None) -> "Moments":
        """Build without validation, for arrays that are right by construction (a
        model's implied moments inside an optimizer, or a gradient, whose blocks need
        not satisfy the moment rules). The arrays are still copied and made read-only."""
        out = object.__new__(cls)
        for name, arr in zip(_FIELDS, (mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz)):
            arr = np.array(arr, dtype=float, order="C")
            arr.setflags(write=False)
            object.__setattr__(out, name, arr)
        mask = _between_mask(out.sigma_b, between)
        mask.setflags(write=False)
        object.__setattr__(out, "between_mask", mask)
        return out

    @classmethod
    def from_dict(cls, d) -> "Moments":
        """Build from a mapping with the six field names (extra keys are ignored)."""
        return cls(*(d[name] for name in _FIELDS))
