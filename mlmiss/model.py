"""Model-implied two-level moments from a parameter table, and their Jacobian.

Each level is written in the RAM (all-y) form over *all* of its variables, observed
and latent together (Rosseel 2021, eqs. 5-8, with every observed variable upgraded
to a single-indicator latent variable without measurement error)::

    eta = alpha + B eta + zeta,   Var(zeta) = Psi,   A = (I - B)^{-1}
    mu_all = A alpha,             Sigma_all = A Psi A'

and the observed rows and columns are kept. The parameter-table rows fill the
matrices:

    "=~"  lhs latent, rhs indicator   B[rhs, lhs]   (loading)
    "~"   lhs regressed on rhs        B[lhs, rhs]
    "~~"  (residual) (co)variance     Psi[lhs, rhs] = Psi[rhs, lhs]
    "~1"  intercept or mean           alpha[lhs]

The two levels map to :class:`mlmiss.Moments` as lavaan does: ``sigma_w`` is the
level-1 Sigma over ``y_names``; at level 2 the observed variables are the "both"
ones (level-1 variables that also appear at level 2) and the between-only ``z``:
their Sigma gives ``sigma_b`` (embedded in P x P, zero for within-only variables),
``sigma_yz`` and ``sigma_zz``; ``mu_y`` is the level-1 mean plus, for "both"
variables, the level-2 mean; ``mu_z`` the level-2 mean of ``z``.

The Jacobian is analytic. With dA = A dB A:

    dmu_all    = A dalpha + A dB mu_all
    dSigma_all = A dPsi A' + A dB Sigma_all + (A dB Sigma_all)'

so a free B[k, l] moves Sigma_o by a_k s_l' + s_l a_k' (a_k = A[o, k],
s_l = Sigma_all[l, o]) and mu_o by a_k mu_all[l]; a free Psi[k, l] moves Sigma_o by
a_k a_l' + a_l a_k' (a_k a_k' on the diagonal); a free alpha[k] moves mu_o by a_k.
All entries of a level are done at once as outer products; a 0/1 matrix adds the
entries that share a free index (equal labels), and fixed index maps scatter each
level's rows into the flattened moments.

Flattening (:func:`flatten_moments`): ``mu_y, mu_z, sigma_w, sigma_b, sigma_zz,
sigma_yz``, each matrix whole (both triangles), C order. The gradient blocks of
:func:`mlmiss.loglik_gradient` satisfy dL = sum_ij G_ij dS_ij over all i, j, so
``J.T @ flatten_gradient(g)`` is dL/dtheta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .moments import Moments

OPS = ("=~", "~", "~~", "~1")
_FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")


class ModelError(ValueError):
    """The parameter table cannot be turned into a two-level model (names the row/variable)."""


def flatten_moments(m: Moments) -> np.ndarray:
    """mu_y, mu_z, sigma_w, sigma_b, sigma_zz, sigma_yz, whole matrices in C order."""
    return np.concatenate([np.asarray(getattr(m, f), dtype=float).ravel() for f in _FIELDS])


def flatten_gradient(g: Moments) -> np.ndarray:
    """A gradient with respect to the moments (e.g. :func:`mlmiss.loglik_gradient`),
    flattened like :meth:`TwoLevelModel.moments_vector`, so ``J.T @ flatten_gradient(g)``
    is the gradient with respect to theta."""
    return flatten_moments(g)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _rows_frame(rows) -> pd.DataFrame:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    missing = [c for c in ("lhs", "op", "rhs", "level") if c not in df.columns]
    if missing:
        raise ModelError(f"table is missing column(s) {missing}")
    out = pd.DataFrame({
        "lhs": [_text(v) for v in df["lhs"]],
        "op": [_text(v) for v in df["op"]],
        "rhs": [_text(v) for v in df["rhs"]],
    }, index=df.index)
    try:
        out["level"] = [int(v) for v in df["level"]]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"column 'level' must hold 1 or 2: {exc}") from None
    return out


@dataclass
class _Level:
    """One level's RAM matrices: fixed parts, and where the free entries go."""

    names: list            # observed (in moment order) then latent variables
    n_obs: int
    b0: np.ndarray          # fixed B, free entries zero
    psi0: np.ndarray
    alpha0: np.ndarray
    b_row: np.ndarray       # free B entries: B[b_row, b_col] = theta[b_par]
    b_col: np.ndarray
    b_par: np.ndarray
    psi_row: np.ndarray     # free Psi entries (set in both triangles)
    psi_col: np.ndarray
    psi_par: np.ndarray
    psi_half: np.ndarray    # 0.5 on the diagonal (a_k a_k' counted once), else 1
    alpha_row: np.ndarray
    alpha_par: np.ndarray
    par_map: np.ndarray     # (entries, npar) 0/1: entries in order B, Psi, alpha
    keep: np.ndarray        # rows of [mu_o; vec Sigma_o] that enter the moments vector
    target: np.ndarray      # ... and where they go

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def n_entries(self) -> int:
        return self.b_row.size + self.psi_row.size + self.alpha_row.size

    def matrices(self, theta):
        b = self.b0.copy()
        b[self.b_row, self.b_col] = theta[self.b_par]
        psi = self.psi0.copy()
        psi[self.psi_row, self.psi_col] = theta[self.psi_par]
        psi[self.psi_col, self.psi_row] = theta[self.psi_par]
        alpha = self.alpha0.copy()
        alpha[self.alpha_row] = theta[self.alpha_par]
        return b, psi, alpha

    def forward(self, theta):
        """A[:, o], Sigma_all[:, o], mu_all and the level's moment vector [mu_o; vec Sigma_o]."""
        n, o = self.n, self.n_obs
        b, psi, alpha = self.matrices(theta)
        if n == 0:
            return None, None, None, np.zeros(0)
        try:
            a = np.linalg.inv(np.eye(n) - b)
        except np.linalg.LinAlgError:
            raise ModelError("I - B is singular at this theta (a nonrecursive loop with gain 1)") from None
        a_o = a[:o]                              # A[o, :]
        s_cols = a @ (psi @ a_o.T)               # Sigma_all[:, o]
        mu_all = a @ alpha
        sigma_o = s_cols[:o]
        sigma_o = 0.5 * (sigma_o + sigma_o.T)
        vec = np.concatenate([mu_all[:o], sigma_o.ravel()])
        return a_o, s_cols, mu_all, vec

    def jacobian(self, a_o, s_cols, mu_all):
        """d[mu_o; vec Sigma_o][keep] / dtheta, (len(keep), npar)."""
        o = self.n_obs
        nb, npsi = self.b_row.size, self.psi_row.size
        e = self.n_entries
        if e == 0:
            return np.zeros((self.keep.size, self.par_map.shape[1]))
        # each entry moves Sigma_o by u v' + v u' and mu_o by m
        u = np.empty((o, e))
        v = np.empty((o, e))
        m = np.zeros((o, e))
        ak = a_o[:, self.b_row]
        u[:, :nb] = ak
        v[:, :nb] = s_cols[self.b_col].T
        m[:, :nb] = ak * mu_all[self.b_col]
        u[:, nb:nb + npsi] = a_o[:, self.psi_row] * self.psi_half
        v[:, nb:nb + npsi] = a_o[:, self.psi_col]
        u[:, nb + npsi:] = 0.0
        v[:, nb + npsi:] = 0.0
        m[:, nb + npsi:] = a_o[:, self.alpha_row]
        ds = u[:, None, :] * v[None, :, :]
        ds += ds.transpose(1, 0, 2)
        d = np.concatenate([m, ds.reshape(o * o, e)])
        return d[self.keep] @ self.par_map


class TwoLevelModel:
    """A two-level random-intercept SEM given by a parameter table.

    Parameters
    ----------
    table : DataFrame with columns ``lhs, op, rhs, level, free, value`` (``id``,
        ``user``, ``label``, ``exo`` are allowed and not needed). ``free`` is 0 for a
        fixed row, else the 1-based index into theta (rows sharing an index share the
        parameter); fixed rows take ``value``.
    y_names : level-1 observed variables (within-only and "both"), the order of
        ``mu_y`` and ``sigma_w``.
    z_names : between-only observed variables, the order of ``mu_z``.

    A variable is latent at a level when it is the lhs of a "=~" row of that level,
    observed otherwise. Every level-1 observed variable must be in ``y_names`` and
    every ``y_names`` variable must appear at level 1; a level-2 observed variable is
    either "both" (it is in ``y_names``) or in ``z_names``, and every ``z_names``
    variable must appear at level 2 only.
    """

    def __init__(self, table: pd.DataFrame, y_names, z_names=()):
        self.y_names = [str(v) for v in y_names]
        self.z_names = [str(v) for v in z_names]
        p, k = len(self.y_names), len(self.z_names)
        if p == 0:
            raise ModelError("y_names is empty: a two-level model needs level-1 variables")
        for label, names in (("y_names", self.y_names), ("z_names", self.z_names)):
            dup = sorted({v for v in names if names.count(v) > 1})
            if dup:
                raise ModelError(f"{label} repeats {dup}")
        overlap = sorted(set(self.y_names) & set(self.z_names))
        if overlap:
            raise ModelError(f"{overlap} are in both y_names and z_names")

        rows = _rows_frame(table)
        if "free" not in table.columns:
            raise ModelError("table is missing column 'free'")
        free = np.asarray(table["free"], dtype=float)
        if np.any(np.isnan(free)) or np.any(free < 0) or np.any(free != np.round(free)):
            raise ModelError("column 'free' must hold 0 (fixed) or a positive integer index")
        free = free.astype(np.int64)
        value = (np.asarray(table["value"], dtype=float) if "value" in table.columns
                 else np.full(len(table), np.nan))
        self.table = table
        self._rows = rows
        self._free = free
        self._value = value
        self.npar = int(free.max()) if free.size else 0
        unused = sorted(set(range(1, self.npar + 1)) - set(free.tolist()))
        if unused:
            raise ModelError(f"free indices {unused} are used by no row (expected 1..{self.npar})")

        bad = rows[~rows["op"].isin(OPS)]
        if len(bad):
            r = bad.iloc[0]
            raise ModelError(f"row {bad.index[0]} ({r.lhs} {r.op} {r.rhs}): op must be one of {OPS}")
        bad = rows[~rows["level"].isin((1, 2))]
        if len(bad):
            raise ModelError(f"row {bad.index[0]}: level must be 1 or 2, got {bad['level'].iloc[0]}")
        need_rhs = rows["op"] != "~1"
        bad = rows[need_rhs & (rows["rhs"] == "")]
        if len(bad):
            raise ModelError(f"row {bad.index[0]} ({bad['lhs'].iloc[0]} {bad['op'].iloc[0]}): rhs is empty")
        bad = rows[(rows["op"] == "~1") & (rows["rhs"] != "")]
        if len(bad):
            raise ModelError(f"row {bad.index[0]} ({bad['lhs'].iloc[0]} ~1): rhs must be empty")
        fixed_nan = (free == 0) & np.isnan(value)
        if np.any(fixed_nan):
            i = int(np.flatnonzero(fixed_nan)[0])
            r = rows.iloc[i]
            raise ModelError(f"row {rows.index[i]} ({r.lhs} {r.op} {r.rhs}, level {r.level}) "
                             "is fixed but has no value")

        # observed and latent variables per level
        latent, observed = {}, {}
        for lev in (1, 2):
            sub = rows[rows["level"] == lev]
            lat = list(dict.fromkeys(sub.loc[sub["op"] == "=~", "lhs"]))
            seen = list(dict.fromkeys(v for pair in zip(sub["lhs"], sub["rhs"]) for v in pair if v))
            latent[lev] = lat
            observed[lev] = [v for v in seen if v not in set(lat)]
        obs1, obs2 = set(observed[1]), set(observed[2])
        ys, zs = set(self.y_names), set(self.z_names)
        if obs1 - ys:
            raise ModelError(f"level-1 observed variable(s) {sorted(obs1 - ys)} are not in y_names")
        if ys - obs1:
            raise ModelError(f"y_names variable(s) {sorted(ys - obs1)} do not appear at level 1")
        if obs2 - ys - zs:
            raise ModelError(f"level-2 observed variable(s) {sorted(obs2 - ys - zs)} are in neither "
                             "y_names nor z_names")
        if zs - obs2:
            raise ModelError(f"z_names variable(s) {sorted(zs - obs2)} do not appear at level 2")
        self.both_names = [v for v in self.y_names if v in obs2]
        self.within_names = [v for v in self.y_names if v not in obs2]
        self.latent_names = {lev: list(latent[lev]) for lev in (1, 2)}

        # flattened moments: offsets of the six blocks
        self.offsets = {}
        pos = 0
        for name, size in zip(_FIELDS, (p, k, p * p, p * p, k * k, p * k)):
            self.offsets[name] = pos
            pos += size
        self.n_moments = pos

        y_index = {v: i for i, v in enumerate(self.y_names)}
        z_index = {v: i for i, v in enumerate(self.z_names)}
        # level 1: observed = y_names in order; everything lands
        keep1 = np.arange(p + p * p)
        target1 = np.concatenate([np.arange(p), self.offsets["sigma_w"] + np.arange(p * p)])
        # level 2: observed = both (y order), then z; Cov(z, y_b) rows are duplicates
        names2 = self.both_names + self.z_names
        n2 = len(names2)
        where = [("y", y_index[v]) for v in self.both_names] + [("z", z_index[v]) for v in self.z_names]
        keep2, target2 = [], []
        for i, (ki, ii) in enumerate(where):
            keep2.append(i)
            target2.append(ii if ki == "y" else self.offsets["mu_z"] + ii)
        for i, (ki, ii) in enumerate(where):
            for j, (kj, jj) in enumerate(where):
                row = n2 + i * n2 + j
                if ki == "y" and kj == "y":
                    t = self.offsets["sigma_b"] + ii * p + jj
                elif ki == "z" and kj == "z":
                    t = self.offsets["sigma_zz"] + ii * k + jj
                elif ki == "y" and kj == "z":
                    t = self.offsets["sigma_yz"] + ii * k + jj
                else:
                    continue
                keep2.append(row)
                target2.append(t)
        self._levels = (
            self._build_level(1, list(self.y_names) + latent[1], p, keep1, target1),
            self._build_level(2, names2 + latent[2], n2, np.array(keep2, dtype=np.int64),
                              np.array(target2, dtype=np.int64)),
        )

    # ------------------------------------------------------------------ construction
    def _build_level(self, lev, names, n_obs, keep, target) -> _Level:
        n = len(names)
        index = {v: i for i, v in enumerate(names)}
        b0, psi0, alpha0 = np.zeros((n, n)), np.zeros((n, n)), np.zeros(n)
        entries = {"B": [], "Psi": [], "alpha": []}
        filled = {}
        rows = self._rows
        for pos in np.flatnonzero((rows["level"] == lev).to_numpy()):
            r = rows.iloc[pos]
            if r.op == "=~":
                mat, i, j = "B", index[r.rhs], index[r.lhs]
            elif r.op == "~":
                mat, i, j = "B", index[r.lhs], index[r.rhs]
                if i == j:
                    raise ModelError(f"row {rows.index[pos]} ({r.lhs} ~ {r.rhs}, level {lev}): "
                                     "a variable cannot be regressed on itself")
            elif r.op == "~~":
                mat, i, j = "Psi", index[r.lhs], index[r.rhs]
                i, j = min(i, j), max(i, j)
            else:
                mat, i, j = "alpha", index[r.lhs], 0
            key = (mat, i, j)
            if key in filled:
                raise ModelError(f"rows {filled[key]} and {rows.index[pos]} both set the same "
                                 f"{mat} entry ({r.lhs} {r.op} {r.rhs}, level {lev})")
            filled[key] = rows.index[pos]
            par = int(self._free[pos])
            if par == 0:
                val = float(self._value[pos])
                if mat == "B":
                    b0[i, j] = val
                elif mat == "Psi":
                    psi0[i, j] = psi0[j, i] = val
                else:
                    alpha0[i] = val
            else:
                entries[mat].append((i, j, par - 1))

        def arrays(lst):
            a = np.array(lst, dtype=np.int64).reshape(-1, 3)
            return a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy()

        b_row, b_col, b_par = arrays(entries["B"])
        psi_row, psi_col, psi_par = arrays(entries["Psi"])
        alpha_row, _, alpha_par = arrays(entries["alpha"])
        pars = np.concatenate([b_par, psi_par, alpha_par])
        par_map = np.zeros((pars.size, self.npar))
        par_map[np.arange(pars.size), pars] = 1.0
        return _Level(
            names=names, n_obs=n_obs, b0=b0, psi0=psi0, alpha0=alpha0,
            b_row=b_row, b_col=b_col, b_par=b_par,
            psi_row=psi_row, psi_col=psi_col, psi_par=psi_par,
            psi_half=np.where(psi_row == psi_col, 0.5, 1.0),
            alpha_row=alpha_row, alpha_par=alpha_par, par_map=par_map,
            keep=np.asarray(keep, dtype=np.int64), target=np.asarray(target, dtype=np.int64),
        )

    # ------------------------------------------------------------------ evaluation
    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.npar,):
            raise ModelError(f"theta has shape {theta.shape}; expected ({self.npar},)")
        return theta

    def level_matrices(self, theta, level: int):
        """(names, B, Psi, alpha) of one level (1 or 2) at theta, for inspection."""
        lev = self._levels[level - 1]
        b, psi, alpha = lev.matrices(self._theta(theta))
        return list(lev.names), b, psi, alpha

    def moments_vector(self, theta) -> np.ndarray:
        """The implied moments, flattened (see :func:`flatten_moments`)."""
        theta = self._theta(theta)
        out = np.zeros(self.n_moments)
        for lev in self._levels:
            vec = lev.forward(theta)[3]
            out[lev.target] += vec[lev.keep]
        return out

    def moments_from_vector(self, vec) -> Moments:
        """Unflatten a vector laid out like :meth:`moments_vector` into Moments."""
        p, k = len(self.y_names), len(self.z_names)
        vec = np.asarray(vec, dtype=float)
        o = self.offsets
        sw = vec[o["sigma_w"]:o["sigma_w"] + p * p].reshape(p, p)
        sb = vec[o["sigma_b"]:o["sigma_b"] + p * p].reshape(p, p)
        szz = vec[o["sigma_zz"]:o["sigma_zz"] + k * k].reshape(k, k)
        return Moments(
            vec[:p], vec[p:p + k],
            0.5 * (sw + sw.T), 0.5 * (sb + sb.T), 0.5 * (szz + szz.T),
            vec[o["sigma_yz"]:o["sigma_yz"] + p * k].reshape(p, k),
        )

    def moments(self, theta) -> Moments:
        """The model-implied :class:`mlmiss.Moments` at theta."""
        return self.moments_from_vector(self.moments_vector(theta))

    def moments_vector_and_jacobian(self, theta):
        """(moments_vector(theta), jacobian(theta)) from one pass."""
        theta = self._theta(theta)
        out = np.zeros(self.n_moments)
        jac = np.zeros((self.n_moments, self.npar))
        for lev in self._levels:
            a_o, s_cols, mu_all, vec = lev.forward(theta)
            out[lev.target] += vec[lev.keep]
            if lev.n_entries:
                jac[lev.target] += lev.jacobian(a_o, s_cols, mu_all)
        return out, jac

    def moments_and_jacobian(self, theta):
        """(Moments, Jacobian) from one pass."""
        vec, jac = self.moments_vector_and_jacobian(theta)
        return self.moments_from_vector(vec), jac

    def jacobian(self, theta) -> np.ndarray:
        """d moments_vector / d theta, shape (n_moments, npar), analytic."""
        return self.moments_vector_and_jacobian(theta)[1]

    flatten_gradient = staticmethod(flatten_gradient)

    def theta_gradient(self, theta, g: Moments) -> np.ndarray:
        """Chain rule: J(theta)' flatten(g) for a gradient g with respect to the moments."""
        return self.jacobian(theta).T @ flatten_gradient(g)

    # ------------------------------------------------------------------ theta
    def theta_from_table(self, default: bool = True) -> np.ndarray:
        """theta from the table's ``value`` column (the first row of each free index that
        has one). An index with no value gets a plain default when ``default`` (1 for a
        loading or a variance, 0 otherwise) and NaN when not."""
        theta = np.full(self.npar, np.nan)
        fallback = np.zeros(self.npar)
        rows = self._rows
        for pos in np.flatnonzero(self._free > 0):
            par = self._free[pos] - 1
            if np.isnan(theta[par]) and not np.isnan(self._value[pos]):
                theta[par] = self._value[pos]
            r = rows.iloc[pos]
            if r.op == "=~" or (r.op == "~~" and r.lhs == r.rhs):
                fallback[par] = 1.0
        if default:
            theta = np.where(np.isnan(theta), fallback, theta)
        return theta

    def theta_from_estimates(self, rows, column: str = "est") -> np.ndarray:
        """theta from rows with ``lhs, op, rhs, level`` and ``column`` (a DataFrame, a
        dict of columns or a list of dicts, e.g. lavaan's parameter estimates), matched
        by (lhs, op, rhs, level); "~~" rows also match with lhs and rhs swapped."""
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        if column not in df.columns:
            raise ModelError(f"estimates have no column {column!r}")
        keys = _rows_frame(df)
        est = {}
        for (lhs, op, rhs, lev), val in zip(keys.itertuples(index=False, name=None), df[column]):
            est.setdefault((lhs, op, rhs, lev), float(val))
            if op == "~~":
                est.setdefault((rhs, op, lhs, lev), float(val))
        theta = np.full(self.npar, np.nan)
        missing = []
        table = self._rows
        for pos in np.flatnonzero(self._free > 0):
            par = self._free[pos] - 1
            r = table.iloc[pos]
            key = (r.lhs, r.op, r.rhs, int(r.level))
            if key in est:
                if np.isnan(theta[par]):
                    theta[par] = est[key]
            else:
                missing.append(key)
        unset = np.flatnonzero(np.isnan(theta))
        if unset.size:
            raise ModelError(f"no estimate for free parameter(s) {(unset + 1).tolist()}; "
                             f"unmatched rows: {missing[:10]}")
        return theta

    def __repr__(self) -> str:
        return (f"TwoLevelModel(npar={self.npar}, within={self.within_names}, both={self.both_names}, "
                f"z={self.z_names}, latent1={self.latent_names[1]}, latent2={self.latent_names[2]})")
