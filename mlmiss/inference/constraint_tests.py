"""Score (Lagrange multiplier) and Wald tests of equality constraints, as lavaan 0.7.2's
``lavTestScore()`` and ``lavTestWald()`` (``lav_test_score.R``, ``lav_test_Wald.R``,
``lav_test_satorra2000.R``), with a Bentler et al. (2011, Table 3) style printout.

**The parameter space.** Both tests work in lavaan's "unconstrained" space: every free
row of the parameter table is its own parameter, and every equality is a row of the
constraint Jacobian R, evaluated at the estimates. The ``==`` lines of the syntax come
first, in the order written; then, as lavaan (``ceq.simple = FALSE``, its default) turns
a label shared by several rows into explicit constraints, one row ``.pA. == .pB.`` per
further row of each shared label (A the first row's id, B the other's). A constraint
that names a shared label means its first row.

**Score test** (:func:`score_test`, lavaan's release mode). At the constrained estimates
with g the gradient of the log-likelihood (total over clusters) and I the information
(total), the statistic of releasing the constraints in a set S is

    X2 = g' J_S g,   J_S = Z (Z' I Z)^-1 Z',   Z a basis of the null space of R_{not S}

(the parameter block of the inverse of the information bordered with the constraints
that are kept); with S every constraint, J_S is the (Moore-Penrose) inverse of I.
lavaan writes this with the per-cluster ("unit") information and the score g / C (C the
number of clusters) times C; the factors cancel. The total test releases all
(df = their number: lavaan counts rows, here the rank, the same for independent
constraints), the univariate tests one at a time (every other kept), the cumulative
ones the r largest univariate ones together (df = r). The default information is the
*expected* one, lavaan's default for ``lavTestScore()`` even when its standard errors
use the observed information (ML with missing data): for a two-level model lavaan's
complete-data expected information (:func:`mlmiss.inference.modindices.
expected_information`, the one of ``modindices()``); ``information="observed"`` uses the
Hessian of -logl (:func:`mlmiss.inference.vcov.observed_information`). The
complete-data information ignores the missing values, so it overstates the information
and the default statistic comes out smaller than the likelihood-ratio one (on
demo_twolevel_missing by 7-16% for one linear constraint; the observed-information
statistic and the Wald statistic within 3%). The EPC
(``epc=True``) is J_S g, the Newton step from the estimates towards the model without
the released constraints (new - old). lavaan 0.7.2's ``lavTestScore(epc = TRUE)`` has
the opposite sign for two-level models: its score is the gradient of the objective
there, minus that of the log-likelihood.

**Wald test** (:func:`wald_test`). For constraints h(theta) = lhs - rhs = 0 given as
text, with H = dh/dtheta (exact, by complex steps,
:class:`mlmiss.estimation.constraints.ConstraintSet`) and V the fit's covariance
matrix of the estimates (:meth:`mlmiss.Fit.vcov`, lavaan's ``vcov(fit)``):
W = h' (H V H')^-1 h with df the number of independent rows of H (redundant ones are
dropped with a warning, as lavaan). On a fit with its own constraints V is the
projected covariance matrix, so a constraint the model already imposes has no
variance: an error says so. The univariate rows (each constraint alone,
h_i^2 / (H V H')_ii) are not lavaan's; they give a Table 3 style listing.

**Robust versions** (MLR: ``se="robust"`` or ``test="yuan.bentler.mplus"``), Satorra
(2000), as lavaan: with B the first-order information of the cluster scores
(:meth:`mlmiss.Fit.first_order`), A the tested rows of R, J = J_S, M1 = A J A' and
M2 = A J B J A', the scaled statistic X2 / (tr(M2 M1^-1) / df), the mean-and-variance
adjusted one X2 df' / tr(M2 M1^-1) with df' = tr(M2 M1^-1)^2 / tr((M2 M1^-1)^2), and the
generalized one v' M2^-1 v with v = A J g; a single constraint's scaled statistic is
X2 M1 / M2. For the Wald test M1 and M2 are H V H' with the normal-theory and the
sandwich V; lavaan's (and here the first) statistic uses the fit's own V, the sandwich
for MLR, and so is already the generalized one.
"""

from __future__ import annotations

import copy
import types
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ModelSyntaxError
from ..estimation.constraints import ConstraintSet, rank_and_null_space
from ..estimation.problem import Problem
from ..model.constraints import check_constraints, split_constraints
from .chisq import chi2_pvalue
from .modindices import expected_information
from .robust import cluster_gradients, first_order, sandwich
from .vcov import observed_information

__all__ = ["INFORMATION_TYPES", "ConstraintTest", "score_test", "wald_test"]

#: the information matrices the score test can use (lavaan's ``information=``)
INFORMATION_TYPES = ("expected", "observed")

#: relative eigenvalue below which a (scaled) matrix counts as singular; MASS::ginv's
#: tolerance, which lavaan's score test uses for the inverse of the information
GINV_TOLERANCE = float(np.sqrt(np.finfo(float).eps))


# --------------------------------------------------------------------------- the result

@dataclass(eq=False)
class ConstraintTest:
    """The result of :func:`score_test` or :func:`wald_test`.

    Attributes
    ----------
    kind : "score" or "wald".
    total : DataFrame, the joint test: test ("score" / "wald", and for robust fits
        the scaled, adjusted and robust versions), X2, df, pvalue.
    univariate : DataFrame, one row per constraint: lhs, op, rhs, X2, df, pvalue (score
        test of releasing that constraint alone; Wald test of that constraint alone,
        with its est = lhs - rhs and se); for robust fits also X2_scaled, pvalue_scaled.
    cumulative : DataFrame or None (score test with ``cumulative=True``): the
        constraints in order of their univariate statistic, each row releasing it and
        those above it: lhs, op, rhs, X2, df, pvalue (X2_scaled, pvalue_scaled).
    epc : DataFrame or None (score test with ``epc=True``): per free parameter lhs, op,
        rhs, level, label, est, epc (expected change when the constraints are released),
        epv (est + epc).
    information : the information of the score test ("expected" / "observed"), None for
        the Wald test.
    se : the fit's standard errors ("standard" or "robust").
    nclusters : the fit's number of clusters.
    notes : sentences printed below the tables.
    """

    kind: str
    total: pd.DataFrame
    univariate: pd.DataFrame
    cumulative: pd.DataFrame | None = None
    epc: pd.DataFrame | None = None
    information: str | None = None
    se: str = "standard"
    nclusters: int = 0
    notes: list = field(default_factory=list)

    @property
    def stat(self) -> float:
        """The joint statistic (the first row of :attr:`total`)."""
        return float(self.total["X2"].iloc[0])

    @property
    def df(self) -> float:
        return float(self.total["df"].iloc[0])

    @property
    def pvalue(self) -> float:
        return float(self.total["pvalue"].iloc[0])

    def __str__(self) -> str:
        return _format(self)

    def __repr__(self) -> str:
        return _format(self)


def _fmt(x, digits=3) -> str:
    return "NA" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_df(x) -> str:
    return "NA" if not np.isfinite(x) else (f"{int(round(x))}" if abs(x - round(x)) < 1e-9
                                            else f"{x:.3f}")


def _constraint_table(rows: pd.DataFrame, scaled: bool, with_est: bool) -> list[str]:
    labels = [f"{r.lhs} {r.op} {r.rhs}" for r in rows.itertuples(index=False)]
    width = max([len("Constraint")] + [len(s) for s in labels])
    head = f"  {'#':>2}  {'Constraint':<{width}}"
    if with_est:
        head += f"  {'Estimate':>9}  {'Std.Err':>8}"
    head += f"  {'Chi-square':>10}  {'Df':>5}  {'P-value':>7}"
    if scaled:
        head += f"  {'Scaled':>8}  {'P(scaled)':>9}"
    out = [head]
    for i, (text, r) in enumerate(zip(labels, rows.to_dict("records")), start=1):
        line = f"  {i:>2}  {text:<{width}}"
        if with_est:
            line += f"  {_fmt(r['est']):>9}  {_fmt(r['se']):>8}"
        line += f"  {_fmt(r['X2']):>10}  {_fmt_df(r['df']):>5}  {_fmt(r['pvalue']):>7}"
        if scaled:
            line += f"  {_fmt(r.get('X2_scaled')):>8}  {_fmt(r.get('pvalue_scaled')):>9}"
        out.append(line)
    return out


#: the total rows' names in the printout
_TEST_NAMES = {"score": "Standard", "score.scaled": "Scaled (Satorra 2000)",
               "score.adjusted": "Mean and variance adjusted",
               "score.robust": "Generalized (robust)", "wald": "Wald",
               "wald.standard": "Normal-theory", "wald.scaled": "Scaled (Satorra 2000)",
               "wald.adjusted": "Mean and variance adjusted",
               "wald.robust": "Generalized (robust)"}


def _format(result: ConstraintTest) -> str:
    """Bentler et al. (2011, Table 3) style: the joint test, then one line per
    constraint with its chi-square, df and p-value."""
    if result.kind == "score":
        title = "Score (Lagrange multiplier) tests of the equality constraints"
        detail = f"information: {result.information}"
        uni_title = "Univariate tests (each constraint released alone, the others kept):"
    else:
        title = "Wald tests of the constraints"
        detail = "covariance of the estimates: " + ("robust (sandwich)" if result.se == "robust"
                                                     else "standard (observed information)")
        uni_title = "Univariate tests (each constraint alone):"
    lines = [title, f"  {detail}; {result.nclusters} clusters", ""]
    n = len(result.univariate)
    lines.append(f"Joint test of the {n} constraint{'s' if n != 1 else ''}:")
    width = max(len(_TEST_NAMES.get(t, t)) for t in result.total["test"])
    for r in result.total.itertuples(index=False):
        name = _TEST_NAMES.get(r.test, r.test)
        lines.append(f"  {name:<{width}}  chi-square = {_fmt(r.X2)}, df = {_fmt_df(r.df)}, "
                     f"p = {_fmt(r.pvalue)}")
    scaled = "X2_scaled" in result.univariate.columns
    lines += ["", uni_title]
    lines += _constraint_table(result.univariate, scaled, with_est=result.kind == "wald")
    if result.cumulative is not None:
        lines += ["", "Cumulative tests (released in order of their univariate chi-square):"]
        lines += _constraint_table(result.cumulative, "X2_scaled" in result.cumulative.columns,
                                   with_est=False)
    for note in result.notes:
        lines += ["", note]
    return "\n".join(lines)


# --------------------------------------------------------------------------- linear algebra

def _inverse(info: np.ndarray) -> np.ndarray:
    """The Moore-Penrose inverse of a symmetric (scaled) information, eigenvalues below
    :data:`GINV_TOLERANCE` times the largest counted as zero (MASS::ginv)."""
    values, vectors = np.linalg.eigh(0.5 * (info + info.T))
    top = np.max(np.abs(values)) if values.size else 0.0
    keep = np.abs(values) > GINV_TOLERANCE * top
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def _restricted_inverse(info: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The parameter block of the inverse of the information bordered by the kept
    constraint rows: Z (Z' I Z)^-1 Z' with Z a basis of their null space; the
    Moore-Penrose inverse of the bordered matrix when Z' I Z is singular."""
    if kept.shape[0] == 0:
        return _inverse(info)
    _, z = rank_and_null_space(kept)
    ziz = z.T @ info @ z
    try:
        np.linalg.cholesky(0.5 * (ziz + ziz.T))
        out = z @ np.linalg.solve(ziz, z.T)
        return 0.5 * (out + out.T)
    except np.linalg.LinAlgError:
        m = kept.shape[0]
        bordered = np.block([[info, kept.T], [kept, np.zeros((m, m))]])
        return np.linalg.pinv(bordered, rcond=GINV_TOLERANCE)[:info.shape[0], :info.shape[0]]


def _independent_rows(jac: np.ndarray) -> list[int]:
    """The rows of a Jacobian, in order, that are not combinations of earlier ones
    (lavaan's pivots of the reduced row echelon form of its transpose)."""
    keep: list[int] = []
    scale = np.max(np.abs(jac)) if jac.size else 0.0
    for i in range(jac.shape[0]):
        trial = jac[keep + [i]]
        sv = np.linalg.svd(trial, compute_uv=False)
        if sv.size and sv[-1] > 1e-10 * max(scale, 1e-300) and sv[-1] > 1e-10 * sv[0]:
            keep.append(i)
    return keep


def _satorra2000(stat: float, df: float, m1: np.ndarray, m2: np.ndarray, v=None) -> dict:
    """Scaled, adjusted and generalized versions of a restricted test (Satorra 2000;
    module doc): m1 = A J A', m2 = A J B J A', v = A J g."""
    out = {"scaling_factor": np.nan, "scaled": np.nan, "adjusted": np.nan,
           "df_adjusted": np.nan, "robust": np.nan}
    ug = m2 @ np.linalg.pinv(m1, rcond=GINV_TOLERANCE)
    tr, tr2 = float(np.trace(ug)), float(np.sum(ug * ug.T))
    if np.isfinite(tr) and tr > 0:
        out["scaling_factor"] = tr / df
        out["scaled"] = stat / out["scaling_factor"]
        if np.isfinite(tr2) and tr2 > 0:
            out["df_adjusted"] = tr * tr / tr2
            out["adjusted"] = stat * out["df_adjusted"] / tr
    if v is not None:
        v = np.asarray(v, dtype=float)
        out["robust"] = float(v @ np.linalg.pinv(m2, rcond=GINV_TOLERANCE) @ v)
    return out


def _is_robust(fit) -> bool:
    """Whether the fit has the sandwich ingredients lavaan robustifies the tests with
    (``se="robust"``, or the scaled test)."""
    return fit.se == "robust" or fit.test == "yuan.bentler.mplus"


# --------------------------------------------------------------------------- the space

class _Unconstrained:
    """lavaan's 'unco' space of a fit: one parameter per free row of the parameter
    table (shared labels split), with the equalities as rows of R (module doc)."""

    def __init__(self, fit):
        table = fit.partable.table
        free = table["free"].to_numpy(dtype=int)
        rows = np.flatnonzero(free > 0)
        self.rows = rows                          # table rows of the unco parameters
        self.index = free[rows] - 1               # their parameter in fit.theta
        npar = int(fit.partable.npar)
        # the unco position of each parameter's first row
        first = np.full(npar, -1)
        for pos, k in enumerate(self.index):
            if first[k] < 0:
                first[k] = pos
        self.first = first
        self.theta = np.asarray(fit.theta, dtype=float)[self.index]
        self.shared = len(rows) > npar
        if self.shared:
            ext = copy.copy(fit.partable)
            new = table.copy()
            column = np.zeros(len(table), dtype=int)
            column[rows] = np.arange(1, len(rows) + 1)
            new["free"] = column
            ext.table = new
            ext.npar = len(rows)
            self.problem = Problem(ext, fit.data)
            self.problem.between_psd = False
        else:
            self.problem = fit.problem
        # the constraints: the syntax's == lines, then the shared labels' rows
        lhs, rhs, jac = [], [], []
        constraints = ConstraintSet(fit.partable)
        if constraints.equalities:
            jh = constraints.jacobians(fit.theta)[0]
            block = np.zeros((jh.shape[0], len(rows)))
            block[:, first] = jh
            jac.append(block)
            for c in constraints.equalities:
                lhs.append(c.lhs)
                rhs.append(c.rhs)
        ids = table["id"].to_numpy()
        if self.shared:
            # lavaan's order: the labels by their second row, each pair (first, other)
            second = {}
            for pos, k in enumerate(self.index):
                if pos != first[k] and k not in second:
                    second[k] = pos
            for k in sorted(second, key=second.get):
                ref = first[k]
                for pos in np.flatnonzero(self.index == k):
                    if pos == ref:
                        continue
                    row = np.zeros(len(rows))
                    row[ref], row[pos] = 1.0, -1.0
                    jac.append(row[None, :])
                    lhs.append(f".p{ids[rows[ref]]}.")
                    rhs.append(f".p{ids[rows[pos]]}.")
        self.jac = np.vstack(jac) if jac else np.zeros((0, len(rows)))
        self.labels = pd.DataFrame({"lhs": lhs, "op": ["=="] * len(lhs), "rhs": rhs})


def _score_checks(fit, information):
    if information not in INFORMATION_TYPES:
        raise ValueError(f"score_test(information={information!r}): information must be one of "
                         f"{', '.join(repr(t) for t in INFORMATION_TYPES)}")
    constraints = ConstraintSet(fit.partable)
    if constraints.inequalities:
        written = "; ".join(str(c) for c in constraints.inequalities)
        raise ValueError(f"score_test(): the model has inequality constraints ({written}); the "
                         "score test releases equality constraints only (as lavaan's "
                         "lavTestScore()); fit the model without them")
    if not fit.estimate.converged:
        raise ValueError("score_test(): the model did not converge; the score test needs the "
                         "constrained maximum")


def _release_positions(release, labels: pd.DataFrame) -> list[int]:
    """0-based rows of R for lavaan's ``release=`` (1-based numbers, or constraint text
    such as "l2 == m2", spaces ignored)."""
    n = len(labels)
    if release is None:
        return list(range(n))
    items = [release] if isinstance(release, (int, np.integer, str)) else list(release)
    if not items:
        raise ValueError("score_test(release=[]): no constraint to release")
    texts = ["".join(f"{r.lhs}{r.op}{r.rhs}".split()) for r in labels.itertuples(index=False)]
    out = []
    for item in items:
        if isinstance(item, str):
            key = "".join(item.split())
            if key not in texts:
                known = ", ".join(map(repr, _constraint_strings(labels)))
                raise ValueError(f"score_test(release={item!r}): no such equality constraint; the "
                                 f"model's are: {known}")
            out.append(texts.index(key))
        else:
            number = int(item)
            if not 1 <= number <= n:
                raise ValueError(f"score_test(release={number}): the constraints are numbered 1 to "
                                 f"{n} (as lavaan's release=)")
            out.append(number - 1)
    return list(dict.fromkeys(out))


def _constraint_strings(labels: pd.DataFrame) -> list[str]:
    return [f"{r.lhs} {r.op} {r.rhs}" for r in labels.itertuples(index=False)]


# --------------------------------------------------------------------------- score test

def score_test(fit, release=None, cumulative: bool = False, information: str = "expected",
               epc: bool = False) -> ConstraintTest:
    """lavaan's ``lavTestScore(fit)``: score (Lagrange multiplier) tests of releasing the
    equality constraints of a fit (module doc).

    Parameters
    ----------
    fit : a converged :class:`mlmiss.Fit` with equality constraints (``==`` lines or
        labels shared by several parameters) and no inequality constraints.
    release : None (every constraint, the default) or the constraints whose release is
        the joint test: numbers 1, 2, ... in the order of the univariate table (lavaan's
        ``release=``) or their text ("l2 == m2"). The univariate tests release one
        constraint at a time with all others kept.
    cumulative : also the cumulative tests (lavaan's ``cumulative=TRUE``).
    information : "expected" (lavaan's default) or "observed".
    epc : also the expected parameter changes of releasing the constraints (the sign is
        new - old; lavaan's is the opposite for two-level models, see the module doc).

    Returns
    -------
    :class:`ConstraintTest` with ``total``, ``univariate`` (``cumulative``, ``epc``).
    With MLR (``se="robust"`` or ``test="yuan.bentler.mplus"``) also the scaled, adjusted
    and generalized (robust) tests of Satorra (2000), as lavaan.
    """
    _score_checks(fit, information)
    space = _Unconstrained(fit)
    if space.jac.shape[0] == 0:
        raise ValueError("score_test(): the model has no equality constraints to release (no "
                         "'==' line and no label shared by several parameters); use "
                         "fit.modindices() to test fixed parameters")
    released = _release_positions(release, space.labels)
    problem, theta = space.problem, space.theta
    _, gradient = problem.loglik_and_gradient(theta, guard=False)
    if gradient is None:
        raise ValueError("score_test(): the log-likelihood is not defined at the estimates")
    if information == "expected":
        info = expected_information(problem.model, theta, fit.data)
    elif not space.shared:
        info = np.asarray(fit.information(), dtype=float)
    else:
        info = observed_information(problem, theta)
    robust = _is_robust(fit)
    meat = None
    if robust:
        meat = (np.asarray(fit.first_order(), dtype=float) if not space.shared
                else first_order(cluster_gradients(problem, theta)))
    # everything in the scaled parameters theta / scales (the tests do not change)
    scales = np.asarray(problem.scales, dtype=float)
    g = gradient * scales
    info = info * np.outer(scales, scales)
    rows = space.jac * scales[None, :]
    if meat is not None:
        meat = meat * np.outer(scales, scales)
    n_con = rows.shape[0]

    def statistic(kept_mask):
        inverse = _restricted_inverse(info, rows[kept_mask])
        return float(g @ inverse @ g), inverse

    def robust_parts(tested, inverse):
        a = rows[tested]
        aj = a @ inverse
        return aj @ a.T, aj @ meat @ aj.T, aj @ g

    keep = np.ones(n_con, dtype=bool)
    keep[released] = False
    stat, inverse_all = statistic(keep)
    df = float(rank_and_null_space(rows[released])[0])
    total = [{"test": "score", "X2": stat, "df": df}]
    if robust:
        m1, m2, v = robust_parts(released, inverse_all)
        s = _satorra2000(stat, df, m1, m2, v)
        total += [{"test": "score.scaled", "X2": s["scaled"], "df": df},
                  {"test": "score.adjusted", "X2": s["adjusted"], "df": s["df_adjusted"]},
                  {"test": "score.robust", "X2": s["robust"], "df": df}]
    total = pd.DataFrame(total)
    total["pvalue"] = chi2_pvalue(total["X2"], total["df"])

    uni_x2 = np.full(n_con, np.nan)
    uni_scaled = np.full(n_con, np.nan)
    for r in released:
        mask = np.ones(n_con, dtype=bool)
        mask[r] = False
        uni_x2[r], inverse = statistic(mask)
        if robust:
            m1, m2, _ = robust_parts([r], inverse)
            m1, m2 = float(m1[0, 0]), float(m2[0, 0])
            if np.isfinite(m1) and np.isfinite(m2) and m1 > 0 and m2 > 0:
                uni_scaled[r] = uni_x2[r] * m1 / m2
    univariate = space.labels.iloc[released].reset_index(drop=True)
    univariate["X2"] = uni_x2[released]
    univariate["df"] = 1.0
    univariate["pvalue"] = chi2_pvalue(univariate["X2"], 1.0)
    if robust:
        univariate["X2_scaled"] = uni_scaled[released]
        univariate["pvalue_scaled"] = chi2_pvalue(univariate["X2_scaled"], 1.0)

    cumul = None
    if cumulative:
        order = [released[i] for i in np.argsort(-uni_x2[released], kind="stable")]
        x2, scaled = [], []
        for count in range(1, len(order) + 1):
            mask = np.ones(n_con, dtype=bool)
            mask[order[:count]] = False
            value, inverse = statistic(mask)
            x2.append(value)
            if robust:
                m1, m2, _ = robust_parts(order[:count], inverse)
                scaled.append(_satorra2000(value, float(count), m1, m2)["scaled"])
        cumul = space.labels.iloc[order].reset_index(drop=True)
        cumul["X2"] = x2
        cumul["df"] = np.arange(1, len(order) + 1, dtype=float)
        cumul["pvalue"] = chi2_pvalue(cumul["X2"], cumul["df"])
        if robust:
            cumul["X2_scaled"] = scaled
            cumul["pvalue_scaled"] = chi2_pvalue(cumul["X2_scaled"], cumul["df"])

    epc_table = None
    if epc:
        change = (inverse_all @ g) * scales
        table = fit.partable.table.iloc[space.rows]
        epc_table = pd.DataFrame({
            "lhs": table["lhs"].to_numpy(), "op": table["op"].to_numpy(),
            "rhs": table["rhs"].to_numpy(), "level": table["level"].to_numpy(),
            "label": table["label"].to_numpy(), "est": theta, "epc": change,
            "epv": theta + change})

    notes = []
    if robust:
        notes.append("Robust (MLR) fit: the scaled, adjusted and generalized tests of Satorra "
                     "(2000) use the first-order information of the cluster scores.")
    return ConstraintTest("score", total, univariate, cumul, epc_table, information,
                          "robust" if robust else "standard", int(fit.nclusters), notes)


# --------------------------------------------------------------------------- Wald test

def _parse(fit, constraints):
    """The ``==`` constraints of a text (lines or ``;``-separated, or a list of them),
    checked against the fit's labels and defined parameters."""
    if isinstance(constraints, str):
        text = constraints
    else:
        text = "\n".join(str(c) for c in constraints)
    text = text.replace(";", "\n")
    try:
        rest, found = split_constraints(text)
        leftover = [line.strip() for line in rest.split("\n") if line.strip()]
        if leftover:
            raise ValueError(f"wald_test(): '{leftover[0]}' is not a constraint (write them as "
                             "'l2 == m2', one per line or separated by ';')")
        if not found:
            raise ValueError("wald_test(): the constraints are empty (write them as "
                             "'l2 == m2; b1 == 2*b2 - b3')")
        other = [str(c) for c in found if c.op != "=="]
        if other:
            raise ValueError(f"wald_test(): only equality constraints ('==') can be tested, not "
                             f"{', '.join(map(repr, other))}")
        table = fit.partable.table
        labels = [x for x in table["label"] if isinstance(x, str) and x]
        defined = [c for c in fit.partable.constraints if c.op == ":="]
        check_constraints(defined + found, labels)
    except ModelSyntaxError as exc:
        raise ValueError(f"wald_test(): {exc}") from None
    return defined, found


def wald_test(fit, constraints) -> ConstraintTest:
    """lavaan's ``lavTestWald(fit, constraints=)``: the Wald test of equality constraints
    on the estimates of any fit (module doc).

    Parameters
    ----------
    fit : a converged :class:`mlmiss.Fit`.
    constraints : text with ``==`` constraints of the fit's labels (and its ``:=``
        names), one per line or separated by ``;`` ("l2 == m2; b1 == 2*b2 - b3"), or a
        list of such strings.

    Returns
    -------
    :class:`ConstraintTest`: ``total`` (X2, df, pvalue; with MLR first lavaan's
    statistic from the robust covariance matrix, then the normal-theory, scaled and
    adjusted ones), ``univariate`` (each constraint alone: est = lhs - rhs, se, X2, df,
    pvalue).
    """
    if not fit.estimate.converged:
        raise ValueError("wald_test(): the model did not converge")
    defined, found = _parse(fit, constraints)
    space = types.SimpleNamespace(table=fit.partable.table, constraints=defined + found,
                                  npar=int(fit.partable.npar))
    cset = ConstraintSet(space)
    theta = np.asarray(fit.theta, dtype=float)
    h = cset.values(theta)[0]
    jac = cset.jacobians(theta)[0]
    scales = np.asarray(fit.problem.scales, dtype=float)
    keep = _independent_rows(jac * scales[None, :])
    if not keep:
        raise ValueError("wald_test(): the constraints do not involve any free parameter")
    if len(keep) < len(found):
        dropped = [str(found[i]) for i in range(len(found)) if i not in keep]
        warnings.warn("wald_test(): the Jacobian of the constraints is rank deficient; redundant "
                      f"constraints were removed: {', '.join(map(repr, dropped))}",
                      UserWarning, stacklevel=2)
    vcov = np.asarray(fit.vcov(), dtype=float)
    jk, hk = jac[keep], h[keep]
    var = jk @ vcov @ jk.T
    if not np.all(np.isfinite(var)):
        raise ValueError("wald_test(): the covariance matrix of the estimates is not available "
                         "for the parameters of these constraints (NaN standard errors)")
    sd = np.sqrt(np.clip(np.diag(var), 0.0, None))
    # the standard deviation each constraint would have if the estimates were
    # uncorrelated: a far smaller one means the fit's own constraints hold it
    reference = np.sqrt(np.einsum("ij,j->i", jk ** 2, np.clip(np.diag(vcov), 0.0, None)))
    small = sd <= 1e-6 * reference
    scale = np.where(sd > 0, sd, 1.0)
    if small.any() or np.linalg.eigvalsh(var / np.outer(scale, scale))[0] < 1e-10:
        which = ([str(found[keep[i]]) for i in np.flatnonzero(small)]
                 or [str(found[i]) for i in keep])
        raise ValueError("wald_test(): the constraints have no sampling variance at these "
                         f"estimates ({', '.join(map(repr, which))}): the fit's own constraints "
                         "already impose them (or a combination of them)")
    stat = float(hk @ np.linalg.solve(var, hk))
    df = float(len(keep))
    # lavaan's statistic: from the fit's own covariance matrix (the sandwich with MLR)
    total = [{"test": "wald", "X2": stat, "df": df}]
    robust = _is_robust(fit)
    if robust:
        standard = np.asarray(fit.standard_vcov(), dtype=float)
        robust_vcov = vcov if fit.se == "robust" else sandwich(standard, fit.first_order())
        m1 = jk @ standard @ jk.T
        m2 = jk @ robust_vcov @ jk.T
        stat_nt = float(hk @ np.linalg.pinv(m1, rcond=GINV_TOLERANCE) @ hk)
        s = _satorra2000(stat_nt, df, m1, m2, hk)
        if fit.se == "robust":
            total.append({"test": "wald.standard", "X2": stat_nt, "df": df})
        else:
            total.append({"test": "wald.robust", "X2": s["robust"], "df": df})
        total += [{"test": "wald.scaled", "X2": s["scaled"], "df": df},
                  {"test": "wald.adjusted", "X2": s["adjusted"], "df": s["df_adjusted"]}]
    total = pd.DataFrame(total)
    total["pvalue"] = chi2_pvalue(total["X2"], total["df"])

    univariate = pd.DataFrame({"lhs": [found[i].lhs for i in keep],
                               "op": [found[i].op for i in keep],
                               "rhs": [found[i].rhs for i in keep]})
    univariate["est"] = hk
    univariate["se"] = sd
    univariate["X2"] = hk ** 2 / sd ** 2
    univariate["df"] = 1.0
    univariate["pvalue"] = chi2_pvalue(univariate["X2"], 1.0)
    notes = []
    if robust and fit.se == "robust":
        notes.append("Robust (MLR) fit: the first statistic uses the sandwich covariance matrix "
                     "(lavaan's; the generalized test of Satorra 2000); the scaled and adjusted "
                     "ones correct the normal-theory statistic.")
    elif robust:
        notes.append("Scaled test without robust standard errors: the first statistic uses the "
                     "normal-theory covariance matrix, the generalized (robust) one the sandwich.")
    return ConstraintTest("wald", total, univariate, None, None, None,
                          "robust" if robust else "standard", int(fit.nclusters), notes)

