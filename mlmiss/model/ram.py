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
One compiled loop over a level's free entries adds u v' + v u' per block of the
moments into the entry's parameter row (entries sharing a free index, through equal
labels, add up); the observed variables sit on a padded axis laid out like the
Moments blocks, so each block lands in a contiguous slice of the flattened moments
(:mod:`.kernels`). For a recursive model B is nilpotent, and
A = I + B + ... + B^d with d the longest directed path, found once from the table.

Flattening (:func:`flatten_moments`): ``mu_y, mu_z, sigma_w, sigma_b, sigma_zz,
sigma_yz``, each matrix whole (both triangles), C order. The gradient blocks of
:func:`mlmiss.loglik_gradient` satisfy dL = sum_ij G_ij dS_ij over all i, j, so
``J.T @ flatten_gradient(g)`` is dL/dtheta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.moments import Moments
from ..errors import ModelError
from ..likelihood.hessian import Directions
from .kernels import level_forward_into, level_jacobian_into

OPS = ("=~", "~", "~~", "~1")
_FIELDS = ("mu_y", "mu_z", "sigma_w", "sigma_b", "sigma_zz", "sigma_yz")


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


def _nilpotency_depth(n, rows, cols) -> int:
    """Longest path in the graph with an edge j -> i for each possibly nonzero B[i, j]:
    then B^(d+1) = 0 and (I - B)^{-1} = I + B + ... + B^d. -1 if the graph has a cycle
    (a nonrecursive model), where the inverse has to be computed."""
    children = [[] for _ in range(n)]
    indegree = np.zeros(n, dtype=np.int64)
    for i, j in zip(rows, cols):
        children[j].append(i)
        indegree[i] += 1
    depth = np.zeros(n, dtype=np.int64)
    ready = [v for v in range(n) if indegree[v] == 0]
    done = 0
    while ready:
        v = ready.pop()
        done += 1
        for c in children[v]:
            depth[c] = max(depth[c], depth[v] + 1)
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if done < n:
        return -1
    return int(depth.max()) if n else 0


@dataclass
class _Level:
    """One level's RAM matrices (fixed parts; where the free entries go) and how its
    observed moments land in the flattened moments vector.

    The level's observed variables are laid out on a padded axis of length ``dim``:
    P for level 1 (y order), P + K for level 2 (y order, zero for within-only
    variables, then z), so the implied moments and their derivatives come out
    directly in the blocks of :class:`mlmiss.Moments`.

    Jacobian bookkeeping: free entry e moves Sigma_o by u_e v_e' + v_e u_e' and mu_o
    by m_e. With G = [A_o'; Sigma_all[:, o]; A_o' / 2; 0] (rows of length dim),
    (u_e, v_e) = G[g_idx[2e]], G[g_idx[2e + 1]], and m_e = A_o'[m_idx[e]] c[c_idx[e]]
    with c = [mu_all, 0, 1]:

        B[k, l]             u = a_k,  v = s_l,      m = a_k mu_all[l]
        Psi[k, l], k != l   u = a_k,  v = a_l,      m = 0
        Psi[k, k]           u = a_k,  v = a_k / 2,  m = 0
        alpha[k]            u = v = 0,              m = a_k
    """

    names: list             # observed, then latent variables
    dim: int                # length of the padded axis
    pad: np.ndarray         # the padded position of each observed variable (names' order)
    b0: np.ndarray          # fixed B, free entries zero
    psi0: np.ndarray
    alpha0: np.ndarray
    b_row: np.ndarray       # free B entries: B[b_row, b_col] = theta[b_par]
    b_col: np.ndarray
    b_par: np.ndarray
    psi_row: np.ndarray     # free Psi entries (set in both triangles)
    psi_col: np.ndarray
    psi_par: np.ndarray
    alpha_row: np.ndarray
    alpha_par: np.ndarray
    depth: int              # (I - B)^{-1} = sum_{k <= depth} B^k; -1: invert
    g_idx: np.ndarray
    m_idx: np.ndarray
    c_idx: np.ndarray
    entry_par: np.ndarray   # free index of each entry (order: B, Psi, alpha)
    mu_offset: int          # padded mean -> vector[mu_offset:mu_offset + dim]
    blocks: list            # (rows, cols, offset): Sigma_pad[rows, cols] -> vector[offset:]

    def __post_init__(self):
        # the blocks as the Jacobian kernel reads them: row and column ranges, offset
        self.block_table = np.array([(r.start, r.stop, c.start, c.stop, o)
                                     for r, c, o in self.blocks], dtype=np.int64).reshape(-1, 5)

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

    def forward(self, theta, out):
        """Add this level's moments into ``out``; return what the Jacobian needs:
        A[o, :]' and Sigma_all[:, o] on the padded axis (n x dim), and mu_all
        (:func:`.kernels.level_forward_into`)."""
        if self.n == 0:
            return None, None, None
        dim = self.dim
        a_pad, s_pad, mu_all = np.empty((self.n, dim)), np.empty((self.n, dim)), np.empty(self.n)
        if not level_forward_into(theta, self.b0, self.psi0, self.alpha0, self.b_row,
                                  self.b_col, self.b_par, self.psi_row, self.psi_col,
                                  self.psi_par, self.alpha_row, self.alpha_par, self.depth,
                                  self.pad, self.mu_offset, self.block_table, out, a_pad,
                                  s_pad, mu_all):
            raise ModelError("I - B is singular at this theta")
        return a_pad, s_pad, mu_all

    def jacobian_into(self, jt, a_pad, s_pad, mu_all):
        """Add d moments / d theta into jt (npar x n_moments, the transposed Jacobian,
        zeroed by the caller): :func:`.kernels.level_jacobian_into`."""
        if self.n_entries == 0:
            return
        level_jacobian_into(jt, a_pad, s_pad, mu_all, self.g_idx, self.m_idx, self.c_idx,
                            self.entry_par, self.mu_offset, self.block_table)


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

        # plain lists: pandas masks over (arrow) strings cost 5 ms per model
        labels = rows.index.tolist()
        lhs, op, rhs, level = (rows[c].tolist() for c in ("lhs", "op", "rhs", "level"))
        for pos in range(len(labels)):
            where = f"row {labels[pos]} ({lhs[pos]} {op[pos]} {rhs[pos]})"
            if op[pos] not in OPS:
                raise ModelError(f"{where}: op must be one of {OPS}")
            if level[pos] not in (1, 2):
                raise ModelError(f"row {labels[pos]}: level must be 1 or 2, got {level[pos]}")
            if op[pos] != "~1" and rhs[pos] == "":
                raise ModelError(f"row {labels[pos]} ({lhs[pos]} {op[pos]}): rhs is empty")
            if op[pos] == "~1" and rhs[pos] != "":
                raise ModelError(f"row {labels[pos]} ({lhs[pos]} ~1): rhs must be empty")
            if free[pos] == 0 and np.isnan(value[pos]):
                raise ModelError(f"row {labels[pos]} ({lhs[pos]} {op[pos]} {rhs[pos]}, level "
                                 f"{level[pos]}) is fixed but has no value")

        # observed and latent variables per level
        latent, observed = {}, {}
        for lev in (1, 2):
            at = [pos for pos in range(len(labels)) if level[pos] == lev]
            lat = list(dict.fromkeys(lhs[pos] for pos in at if op[pos] == "=~"))
            seen = list(dict.fromkeys(v for pos in at for v in (lhs[pos], rhs[pos]) if v))
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
        # the "both" variables have a between part, even where their row of sigma_b is 0
        self.between_mask = np.array([v in obs2 for v in self.y_names], dtype=bool)
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
        o = self.offsets
        rows_y, rows_z = slice(0, p), slice(p, p + k)
        # level 1: observed = y_names, padded axis = y; Sigma -> sigma_w
        pad1 = list(range(p))
        blocks1 = [(rows_y, rows_y, o["sigma_w"])]
        # level 2: observed = "both" (y order) then z; padded axis = y (zero rows for
        # within-only variables) then z; Sigma -> sigma_b, sigma_zz, sigma_yz
        pad2 = [y_index[v] for v in self.both_names] + [p + i for i in range(k)]
        blocks2 = [(rows_y, rows_y, o["sigma_b"])]
        if k:
            blocks2 += [(rows_z, rows_z, o["sigma_zz"]), (rows_y, rows_z, o["sigma_yz"])]
        self._levels = (
            self._build_level(1, list(self.y_names) + latent[1], pad1, p, 0, blocks1),
            self._build_level(2, self.both_names + self.z_names + latent[2], pad2, p + k, 0, blocks2),
        )
        self._last = None

    # ------------------------------------------------------------------ construction
    def _build_level(self, lev, names, pad, dim, mu_offset, blocks) -> _Level:
        n = len(names)
        index = {v: i for i, v in enumerate(names)}
        b0, psi0, alpha0 = np.zeros((n, n)), np.zeros((n, n)), np.zeros(n)
        entries = {"B": [], "Psi": [], "alpha": []}
        filled = {}
        rows = self._rows
        # plain lists: a pandas row per parameter cost 10 ms per model
        lhs, op, rhs = (rows[c].tolist() for c in ("lhs", "op", "rhs"))
        labels = rows.index.tolist()
        for pos in np.flatnonzero((rows["level"] == lev).to_numpy()).tolist():
            if op[pos] == "=~":
                mat, i, j = "B", index[rhs[pos]], index[lhs[pos]]
            elif op[pos] == "~":
                mat, i, j = "B", index[lhs[pos]], index[rhs[pos]]
                if i == j:
                    raise ModelError(f"row {labels[pos]} ({lhs[pos]} ~ {rhs[pos]}, level {lev}): "
                                     "a variable cannot be regressed on itself")
            elif op[pos] == "~~":
                mat, i, j = "Psi", index[lhs[pos]], index[rhs[pos]]
                i, j = min(i, j), max(i, j)
            else:
                mat, i, j = "alpha", index[lhs[pos]], 0
            key = (mat, i, j)
            if key in filled:
                raise ModelError(f"rows {filled[key]} and {labels[pos]} both set the same "
                                 f"{mat} entry ({lhs[pos]} {op[pos]} {rhs[pos]}, level {lev})")
            filled[key] = labels[pos]
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
        nb, npsi, nal = b_row.size, psi_row.size, alpha_row.size
        zero = 3 * n                                    # the zero row of G
        g_idx = np.empty((nb + npsi + nal, 2), dtype=np.int64)
        g_idx[:nb, 0], g_idx[:nb, 1] = b_row, n + b_col
        diag = psi_row == psi_col
        g_idx[nb:nb + npsi, 0] = psi_row
        g_idx[nb:nb + npsi, 1] = np.where(diag, 2 * n + psi_col, psi_col)
        g_idx[nb + npsi:] = zero
        m_idx = np.concatenate([b_row, psi_row, alpha_row])
        c_idx = np.concatenate([b_col, np.full(npsi, n), np.full(nal, n + 1)]).astype(np.int64)
        # B's possible nonzeros: free entries and fixed nonzero ones
        fixed_i, fixed_j = np.nonzero(b0)
        depth = _nilpotency_depth(n, np.concatenate([b_row, fixed_i]), np.concatenate([b_col, fixed_j]))

        return _Level(
            names=names, dim=dim, pad=np.asarray(pad, dtype=np.int64), b0=b0, psi0=psi0,
            alpha0=alpha0,
            b_row=b_row, b_col=b_col, b_par=b_par,
            psi_row=psi_row, psi_col=psi_col, psi_par=psi_par,
            alpha_row=alpha_row, alpha_par=alpha_par, depth=depth,
            g_idx=g_idx.ravel(), m_idx=m_idx, c_idx=c_idx,
            entry_par=np.concatenate([b_par, psi_par, alpha_par]),
            mu_offset=mu_offset, blocks=blocks,
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

    def level_moments(self, theta, level: int):
        """(names, mean, cov) of one level's observed then latent variables at theta,
        the level's own model alone: (I - B)^-1 alpha and (I - B)^-1 Psi (I - B)^-T."""
        names, b, psi, alpha = self.level_matrices(theta, level)
        effects = np.linalg.inv(np.eye(len(names)) - b)
        return names, effects @ alpha, effects @ psi @ effects.T

    def _forward(self, theta):
        """Moments vector and per-level Jacobian inputs; the last theta's pass is kept,
        so ``moments(theta)`` followed by ``jacobian(theta)`` runs the levels once."""
        key = theta.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1].copy(), last[2]
        out = np.zeros(self.n_moments)
        fwds = [lev.forward(theta, out) for lev in self._levels]
        self._last = (key, out.copy(), fwds)
        return out, fwds

    def moments_vector(self, theta) -> np.ndarray:
        """The implied moments, flattened (see :func:`flatten_moments`)."""
        return self._forward(self._theta(theta))[0]

    def moments_from_vector(self, vec, symmetrize: bool = True) -> Moments:
        """Unflatten a vector laid out like :meth:`moments_vector` into Moments (the
        symmetric blocks averaged with their transposes unless ``symmetrize=False``;
        the model's own vectors are exactly symmetric already)."""
        p, k = len(self.y_names), len(self.z_names)
        vec = np.asarray(vec, dtype=float)
        o = self.offsets
        sw = vec[o["sigma_w"]:o["sigma_w"] + p * p].reshape(p, p)
        sb = vec[o["sigma_b"]:o["sigma_b"] + p * p].reshape(p, p)
        szz = vec[o["sigma_zz"]:o["sigma_zz"] + k * k].reshape(k, k)
        syz = vec[o["sigma_yz"]:o["sigma_yz"] + p * k].reshape(p, k)
        if symmetrize:
            sw, sb, szz = 0.5 * (sw + sw.T), 0.5 * (sb + sb.T), 0.5 * (szz + szz.T)
            return Moments(vec[:p], vec[p:p + k], sw, sb, szz, syz, between=self.between_mask)
        # the model's own vectors satisfy the moment rules by construction
        return Moments.unchecked(vec[:p], vec[p:p + k], sw, sb, szz, syz, between=self.between_mask)

    def moments(self, theta) -> Moments:
        """The model-implied :class:`mlmiss.Moments` at theta."""
        return self.moments_from_vector(self.moments_vector(theta), symmetrize=False)

    def moments_vector_and_jacobian(self, theta):
        """(moments_vector(theta), jacobian(theta)) from one pass. The Jacobian is
        returned as the transpose of a C-ordered (npar, n_moments) array, so
        ``J.T @ g`` runs over contiguous rows."""
        out, fwds = self._forward(self._theta(theta))
        jt = np.zeros((self.npar, self.n_moments))
        for lev, fwd in zip(self._levels, fwds):
            if fwd[0] is not None:
                lev.jacobian_into(jt, *fwd)
        return out, jt.T

    def moments_and_jacobian(self, theta):
        """(Moments, Jacobian) from one pass."""
        vec, jac = self.moments_vector_and_jacobian(theta)
        return self.moments_from_vector(vec, symmetrize=False), jac

    def jacobian(self, theta) -> np.ndarray:
        """d moments_vector / d theta, shape (n_moments, npar), analytic."""
        return self.moments_vector_and_jacobian(theta)[1]

    flatten_gradient = staticmethod(flatten_gradient)

    def directions(self, jac) -> Directions:
        """The columns of a Jacobian (n_moments, T) as T moment-space directions, the
        form :func:`mlmiss.likelihood.hessian.loglik_hessian` reads."""
        p, k = len(self.y_names), len(self.z_names)
        t = jac.shape[1]
        o = self.offsets

        def block(name, shape):
            size = int(np.prod(shape))
            return np.ascontiguousarray(jac[o[name]:o[name] + size].T).reshape((t,) + shape)

        return Directions(block("mu_y", (p,)), block("mu_z", (k,)), block("sigma_w", (p, p)),
                          block("sigma_b", (p, p)), block("sigma_zz", (k, k)),
                          block("sigma_yz", (p, k)))

    @property
    def nonlinear_parameters(self) -> np.ndarray:
        """The parameters the moments are not linear in: those of B (loadings and
        regressions); the moments are linear in Psi and alpha."""
        pars = np.concatenate([lev.b_par for lev in self._levels])
        return np.unique(pars).astype(np.int64)

    def curvature(self, theta, g, steps) -> np.ndarray:
        """sum_k g_k d^2 m_k / d theta^2 for a fixed vector g laid out like the moments
        (a gradient with respect to them): the second-order part of the chain rule.

        Only B's parameters make it nonzero; their columns come from central differences
        (``steps``, one per parameter) of the analytic J(theta)' g, the rest by symmetry
        (rows and columns of two linear parameters are exactly zero)."""
        theta = self._theta(theta)
        nonlinear = self.nonlinear_parameters
        out = np.zeros((self.npar, self.npar))
        for i in nonlinear:
            up, down = theta.copy(), theta.copy()
            up[i] += steps[i]
            down[i] -= steps[i]
            out[:, i] = (self.jacobian(up).T @ g - self.jacobian(down).T @ g) / (2.0 * steps[i])
        nonlin = np.zeros(self.npar, dtype=bool)
        nonlin[nonlinear] = True
        out[np.ix_(nonlin, ~nonlin)] = out[np.ix_(~nonlin, nonlin)].T
        return 0.5 * (out + out.T)


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
