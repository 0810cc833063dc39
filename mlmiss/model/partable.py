"""The parameter table of a two-level model: lavaan syntax plus lavaan ``sem()`` defaults.

``parameter_table(model)`` gives one row per parameter, the ones written in the syntax
(``user == 1``) followed, level by level, by the ones lavaan's ``sem()`` adds on its own
(``user == 0``), in lavaan's order, so that the rows line up one to one with lavaan's
``parTable()`` for the same model. The defaults, per level (lavaan 0.7: the ``sem()``
options in ``lav_lavaan_step00_init.R``, applied in ``lav_partable_flat.R`` and
``lav_partable.R``):

* the first loading of every latent variable is fixed at 1 (``auto.fix.first``), unless
  the syntax frees it (``NA*y1``) or fixes it otherwise;
* residual variances of all observed variables (except exogenous ``x``) and variances of
  all latent variables are free (``auto.var``); when a latent variable has a single
  indicator that loads on nothing else, that indicator's residual variance is fixed at 0
  (``auto.fix.single``);
* covariances among exogenous latent variables are free (``auto.cov.lv.x``), and so are
  the covariances among the residuals of the endogenous variables that are regressed on
  something and predict nothing, latent ones first (``auto.cov.y``);
* exogenous observed variables (predictors that are nothing else and whose variance,
  covariance or intercept the syntax does not mention) get all their variances and
  covariances; with ``fixed_x=False`` (the default here, lavaan's ``fixed.x = FALSE``)
  these, and their means, are free; with ``fixed_x=True`` they are fixed, with value NaN
  (their sample values are filled in later). Exogenous is judged within each level: a
  level-2 predictor that is a dependent variable at level 1 is fixed at level 2 too.
  (lavaan warns that such a variable "will be treated as endogenous", but its
  ``lav_model_pt`` resets that per-level list to NULL in the ``conditional.x`` branch
  that follows, so its table fixes it; we follow the table.)
* intercepts of all observed variables are free (``int.ov.free``), latent means are fixed
  at 0 (``int.lv.free = FALSE``), and then, the two-level rule: the level-1 intercept of
  every variable that also has a level-2 intercept (the "both" variables) is fixed at 0,
  its mean living at level 2.

After the defaults come the user's modifiers (fixed value or NA, then start, then label);
parameters that share a label are one parameter (one ``free`` index), and if one of
them is fixed, all are fixed at its value (as lavaan does).

Variable classes and order follow lavaan's ``lav_partable_vnames.R``: within a level,
observed variables are ordered indicators first, then dependent variables, then
predictors, then variables that appear only in variances, covariances or intercepts. A
variable in both level blocks is a "both" variable; only in level 1, within-only; only in
level 2, between-only. Observed variables in the structural part of a level become
single-indicator latent variables when the model is built; they need no rows here.
"""

from __future__ import annotations

import math
import warnings
from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import ModelDataError, ModelSyntaxError
from .constraints import Constraint, check_constraints, split_constraints
from .syntax import Modifiers, Statement, parse

__all__ = ["ParTable", "parameter_table", "check_variables", "ModelDataError", "COLUMNS"]

#: the columns of ``ParTable.table``, in order
COLUMNS = ["id", "lhs", "op", "rhs", "level", "user", "free", "value", "label", "exo"]


@lru_cache(maxsize=32)
def _row_type(columns: tuple):
    return namedtuple("Row", columns, rename=True)   # as itertuples names them


def table_rows(table: pd.DataFrame) -> list:
    """A parameter table's rows as named tuples, as ``table.itertuples(index=False)``
    gives them (Python scalars, NaN where missing), built from whole columns: pandas'
    own iteration indexes every column per call, 0.5 ms on a 100-row table, and a
    fit iterates its tables some twenty times."""
    make = _row_type(tuple(table.columns))._make
    return [make(values) for values in zip(*(table[c].tolist() for c in table.columns))]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass
class _Row:
    lhs: str
    op: str
    rhs: str
    level: int
    user: int
    free: bool = True
    value: float = math.nan
    label: str = ""
    exo: int = 0
    modifiers: Modifiers | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.lhs, self.op, self.rhs


class _Names:
    """lavaan's variable classes within one level block (``lav_partable_vnames.R``).

    ``rows`` need ``lhs``, ``op``, ``rhs`` and ``user`` (every Statement counts as user).
    ``dependent_anywhere``: the dependent variables of all levels; at level 2 lavaan does
    not count a predictor as exogenous if it is regressed on something at any level.
    """

    def __init__(self, rows: Sequence, dependent_anywhere: Iterable[str] | None = None):
        def column(op: str, side: str) -> list[str]:
            return _unique(getattr(r, side) for r in rows if r.op == op)

        lv = column("=~", "lhs")
        dependent = column("~", "lhs")
        predictors = column("~", "rhs")
        indicators = column("=~", "rhs")
        lv_set = set(lv)
        ov_ind = [v for v in indicators if v not in lv_set]
        ov_dep = [v for v in dependent if v not in lv_set and v not in ov_ind]
        not_x = lv_set | set(ov_ind) | set(ov_dep if dependent_anywhere is None else dependent_anywhere)
        ov_x_raw = [v for v in predictors if v not in not_x]
        # orphans: observed variables that only appear in (co)variances and intercepts;
        # all left-hand sides of ~~ first, then all right-hand sides, then intercepts
        extra = _unique([r.lhs for r in rows if r.op == "~~" and r.lhs not in lv_set]
                        + [r.rhs for r in rows if r.op == "~~" and r.rhs not in lv_set]
                        + [r.lhs for r in rows if r.op == "~1" and r.lhs not in lv_set])
        first = ov_ind + ov_dep + ov_x_raw
        self.ov = first + [v for v in extra if v not in set(first)]
        # a predictor whose variance, covariance or intercept the user wrote is not exogenous
        said = ({r.lhs for r in rows if r.user and r.op in ("~~", "~1")}
                | {r.rhs for r in rows if r.user and r.op == "~~"})
        self.ov_x = [v for v in ov_x_raw if v not in said]
        self.x_made_random = [v for v in ov_x_raw if v in said]
        x_set = set(self.ov_x)
        self.ov_nox = [v for v in self.ov if v not in x_set]
        self.lv = lv
        self.lv_x = [v for v in lv if v not in indicators and v not in dependent]
        # 'pure' dependent variables: regressed, but neither indicator nor predictor
        self.ov_y = [v for v in self.ov if v in dependent and v not in indicators
                     and v not in predictors and v not in lv_set]
        self.lv_y = [v for v in lv if v in dependent and v not in indicators and v not in predictors]


@dataclass(frozen=True)
class _Flat:
    """A Statement seen as a row of lavaan's 'flat' table (every row is a user row)."""

    lhs: str
    op: str
    rhs: str
    modifiers: Modifiers
    line: int
    user: int = 1


class ParTable:
    """A two-level model's parameters: ``table`` (a DataFrame, columns ``COLUMNS``) and
    the model's variables.

    * ``table``: one row per parameter, fixed ones included. ``free`` is 0 for a fixed
      parameter and otherwise its 1-based index into the parameter vector theta (rows with
      the same label share one index); ``value`` is the fixed value of a fixed row (NaN for
      the fixed-x rows, filled from the data later) and the start() value of a free row
      (else NaN); ``exo`` is 1 on the variance, covariance and mean rows of exogenous
      observed variables, the rows that ``fixed_x=True`` fixes.
    * ``y_names``: the level-1 observed variables (within-only and "both"), ``z_names``: the
      between-only ones, both in lavaan's order (``Moments``/``TwoLevelData`` use this
      order); ``both_names``, ``within_names`` (y order), ``between_names`` (= z_names);
      ``latent_names``: {level: [latent variables]}; ``npar``: number of free parameters.
    """

    def __init__(self, table: pd.DataFrame, *, y_names, z_names, level2_names, latent_names,
                 fixed_x: bool, statements: list[Statement], constraints=()):
        self.table = table
        self.y_names: list[str] = list(y_names)
        self.z_names: list[str] = list(z_names)
        level2 = set(level2_names)
        self.both_names: list[str] = [v for v in self.y_names if v in level2]
        self.within_names: list[str] = [v for v in self.y_names if v not in level2]
        self.between_names: list[str] = list(self.z_names)
        self.latent_names: dict[int, list[str]] = {k: list(v) for k, v in latent_names.items()}
        self.npar: int = int(table["free"].max()) if len(table) else 0
        self.fixed_x = fixed_x
        self.statements = list(statements)
        self.constraints = list(constraints)

    def level_names(self, level: int) -> list[str]:
        """Observed variables of a level: level 1 the level-1 variables (y order), level 2
        the "both" ones (y order) then the between-only ones."""
        return list(self.y_names) if level == 1 else self.both_names + self.z_names

    def covariates(self) -> dict[int, list[str]]:
        """lavaan's ``ov.x`` per level: the variables of the ``exo`` rows, in table order.

        With ``fixed.x = FALSE`` lavaan flags no row and ``ov.x`` is the structural
        definition, which at level 2 leaves out a variable regressed on something at any
        level; the ``exo`` rows here are flagged either way, so those are removed."""
        rows = table_rows(self.table)
        names: dict[int, list[str]] = {1: [], 2: []}
        for row in rows:
            if row.exo != 1:
                continue
            for name in (row.lhs, row.rhs):
                if name and name not in names[int(row.level)]:
                    names[int(row.level)].append(name)
        if not self.fixed_x:
            dependent = {row.lhs for row in rows if row.op == "~"}
            names[2] = [v for v in names[2] if v not in dependent]
        return names

    def where(self, row) -> str:
        """Where a table row comes from, for messages: its model line, or that it is one
        of sem()'s defaults."""
        for st in self.statements:
            if st.level == row.level and st.op == row.op and (
                    (st.lhs, st.rhs) == (row.lhs, row.rhs)
                    or (row.op == "~~" and (st.rhs, st.lhs) == (row.lhs, row.rhs))):
                return f"line {st.line}" if st.line else "the model"
        return "a default of sem()"

    @property
    def observed_names(self) -> list[str]:
        """Every observed variable of the model: ``y_names + z_names``."""
        return self.y_names + self.z_names

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (f"ParTable({len(self)} rows, {self.npar} free parameters; y={self.y_names}, "
                f"z={self.z_names}, latent={self.latent_names})")


def _level_rows(flat: list[_Flat], level: int, fixed_x: bool, std_lv: bool = False,
                orthogonal: bool = False) -> list[_Row]:
    """User rows then default rows of one level, with lavaan's defaults applied
    (``std_lv``, ``orthogonal``: see :func:`parameter_table`)."""
    names = _Names(flat)
    if fixed_x and names.x_made_random:
        warnings.warn(
            f"level {level}: the syntax gives variances, covariances or intercepts of the "
            f"predictor(s) {', '.join(names.x_made_random)}; they are treated as random "
            "variables with free parameters (as lavaan does)", stacklevel=3)

    defaults = [(v, "~~", v) for v in names.ov_nox + names.lv]
    defaults += [(a, "~~", b) for a, b in combinations(names.lv_x, 2)]
    defaults += [(a, "~~", b) for a, b in combinations(names.lv_y + names.ov_y, 2)]
    defaults += [(a, "~~", b) for i, a in enumerate(names.ov_x) for b in names.ov_x[i:]]
    defaults += [(v, "~1", "") for v in names.ov + names.lv]

    rows = [_Row(f.lhs, f.op, f.rhs, level, 1, modifiers=f.modifiers) for f in flat]
    written = {r.key for r in rows}
    rows += [_Row(lhs, op, rhs, level, 0) for lhs, op, rhs in _unique(defaults)
             if (lhs, op, rhs) not in written]

    # the scale of each latent variable: its first loading fixed at 1, or (std_lv) its
    # (residual) variance fixed at 1 and every loading free
    seen: set[str] = set()
    loadings = [r for r in rows if r.op == "=~"]
    for r in loadings:
        if r.lhs not in seen and not std_lv:
            seen.add(r.lhs)
            r.free, r.value = False, 1.0
    if std_lv:
        for r in rows:
            if r.op == "~~" and r.lhs == r.rhs and r.lhs in set(names.lv):
                r.free, r.value = False, 1.0
    if orthogonal:   # the covariances lavaan adds among latent variables: zero
        for r in rows:
            if (not r.user and r.op == "~~" and r.lhs != r.rhs and r.lhs in set(names.lv)
                    and r.rhs in set(names.lv)):
                r.free, r.value = False, 0.0
    # a single indicator (loading on one latent variable only) gets a zero residual variance
    per_lv: dict[str, list[_Row]] = {}
    for r in loadings:
        per_lv.setdefault(r.lhs, []).append(r)
    ind_count: dict[str, int] = {}
    for r in loadings:
        ind_count[r.rhs] = ind_count.get(r.rhs, 0) + 1
    single = {rs[0].rhs for rs in per_lv.values()
              if len(rs) == 1 and rs[0].lhs != rs[0].rhs and ind_count[rs[0].rhs] == 1}
    lv_set = set(names.lv)
    x_set = set(names.ov_x)
    for r in rows:
        if r.user:
            continue
        if r.op == "~~" and r.lhs == r.rhs and r.lhs in single:
            r.free, r.value = False, 0.0
        if r.op == "~1" and r.lhs in lv_set:   # latent means
            r.free, r.value = False, 0.0
        if (r.op == "~~" and r.lhs in x_set and r.rhs in x_set) or (r.op == "~1" and r.lhs in x_set):
            r.exo = 1
            if fixed_x:
                r.free, r.value = False, math.nan
    return rows


def _statements(model) -> tuple[list[Statement], list[Constraint]]:
    """The statements of the level blocks and the constraint lines."""
    if isinstance(model, str):
        text, constraints = split_constraints(model)
        return parse(text), constraints
    statements = list(model)
    for s in statements:
        if not isinstance(s, Statement):
            raise TypeError(f"model must be lavaan syntax or a list of Statement, got {type(s).__name__}")
    levels = {s.level for s in statements}
    if levels != {1, 2}:
        missing = sorted({1, 2} - levels)
        raise ModelSyntaxError(f"the model has no statements at level {missing[0]}; a two-level "
                               "model needs a model for each level")
    return statements, []


def parameter_table(model: str | list[Statement], fixed_x: bool = False, std_lv: bool = False,
                    orthogonal: bool = False) -> ParTable:
    """lavaan syntax (or parsed statements) -> :class:`ParTable` with ``sem()`` defaults.

    ``fixed_x=False`` (lavaan's ``fixed.x = FALSE``): exogenous observed variables are
    random, their means, variances and covariances free. ``fixed_x=True``: those rows are
    fixed (``value`` NaN, to be set to their sample values). ``std_lv`` (lavaan's
    ``std.lv``): latent variables are scaled by fixing their (residual) variances at 1
    instead of their first loadings. ``orthogonal``: the covariances lavaan adds among
    latent variables are fixed at 0. A value or NA the syntax writes (``0.5*f``,
    ``NA*f``) overrides both.
    """
    statements, constraints = _statements(model)
    dependent_anywhere = _unique(s.lhs for s in statements if s.op == "~")
    flat = {lev: [_Flat(s.lhs, s.op, s.rhs, s.modifiers, s.line) for s in statements if s.level == lev]
            for lev in (1, 2)}

    # lavaan writes a covariance with its variables in model order (latent, then observed)
    n1, n2 = _Names(flat[1]), _Names(flat[2], dependent_anywhere)
    position = {v: i for i, v in enumerate(_unique(n1.lv + n2.lv + n1.ov + n2.ov))}
    for lev in (1, 2):
        rows = []
        seen: dict[tuple[str, str, str], _Flat] = {}
        for f in flat[lev]:
            if f.op == "~~" and f.lhs != f.rhs and position[f.lhs] > position[f.rhs]:
                f = _Flat(f.rhs, f.op, f.lhs, f.modifiers, f.line)
            key = (f.lhs, f.op, f.rhs)
            if key in seen:
                raise ModelSyntaxError(f"'{f.lhs} {f.op} {f.rhs}' at level {lev} is given twice (lines "
                                       f"{seen[key].line} and {f.line}); write it once, with all "
                                       "its modifiers", f.line or None)
            seen[key] = f
            rows.append(f)
        flat[lev] = rows

    rows = (_level_rows(flat[1], 1, fixed_x, std_lv, orthogonal)
            + _level_rows(flat[2], 2, fixed_x, std_lv, orthogonal))
    split = [v for v in _Names(flat[2]).ov_x if v in {f.lhs for f in flat[1] if f.op == "~"}]
    if fixed_x and split:
        warnings.warn(
            f"{', '.join(split)}: exogenous at level 2 but a dependent variable at level 1; with "
            "fixed_x=True its level-2 variances, covariances and mean are fixed like lavaan's "
            "(lavaan's warning says they are freed, its table fixes them); use fixed_x=False "
            "to estimate them", stacklevel=2)

    # two-level rule: a variable with a level-2 intercept has its level-1 intercept fixed at 0
    observed = set(_Names([r for r in rows if r.level == 1]).ov) | set(
        _Names([r for r in rows if r.level == 2], dependent_anywhere).ov)
    level2_means = {r.lhs for r in rows if r.level == 2 and r.op == "~1" and r.lhs in observed}
    for r in rows:
        if r.level == 1 and r.op == "~1" and r.lhs in level2_means:
            r.free, r.value = False, 0.0

    # the user's modifiers, in lavaan's order: fixed value or NA, start, label
    for r in rows:
        m = r.modifiers
        if m is None:
            continue
        if m.fixed is not None:
            r.free, r.value = False, m.fixed
        elif m.free:
            r.free, r.value = True, math.nan
        if m.start is not None:
            r.value = m.start
        if m.label is not None:
            r.label = m.label

    # equal labels: one parameter; a fixed member fixes them all at its value
    groups: dict[str, list[_Row]] = {}
    for r in rows:
        if r.label:
            groups.setdefault(r.label, []).append(r)
    for label, members in groups.items():
        fixed = [r for r in members if not r.free]
        if len(members) > 1 and fixed:
            values = {r.value for r in fixed if not math.isnan(r.value)}
            if len(values) > 1:
                warnings.warn(f"parameters labelled {label!r} are fixed at different values; "
                              f"all are fixed at the first one, {fixed[0].value:g}", stacklevel=2)
            for r in members:
                r.free, r.value = False, fixed[0].value

    free_index: list[int] = []
    by_label: dict[str, int] = {}
    npar = 0
    for r in rows:
        if not r.free:
            free_index.append(0)
        elif r.label and r.label in by_label:
            free_index.append(by_label[r.label])
        else:
            npar += 1
            free_index.append(npar)
            if r.label:
                by_label[r.label] = npar

    table = pd.DataFrame({
        "id": np.arange(1, len(rows) + 1),
        "lhs": [r.lhs for r in rows],
        "op": [r.op for r in rows],
        "rhs": [r.rhs for r in rows],
        "level": np.array([r.level for r in rows], dtype=np.int64),
        "user": np.array([r.user for r in rows], dtype=np.int64),
        "free": np.array(free_index, dtype=np.int64),
        "value": np.array([r.value for r in rows], dtype=float),
        "label": [r.label for r in rows],
        "exo": np.array([r.exo for r in rows], dtype=np.int64),
    }, columns=COLUMNS)

    full1 = _Names([r for r in rows if r.level == 1])
    full2 = _Names([r for r in rows if r.level == 2], dependent_anywhere)
    y_names = full1.ov
    z_names = [v for v in full2.ov if v not in set(y_names)]
    check_constraints(constraints, [r.label for r in rows if r.label])
    return ParTable(table, y_names=y_names, z_names=z_names, level2_names=full2.ov,
                    latent_names={1: full1.lv, 2: full2.lv}, fixed_x=fixed_x, statements=statements,
                    constraints=constraints)


def check_variables(partable: ParTable | str, columns) -> None:
    """Raise :class:`ModelDataError` naming every observed variable of the model that is
    not among ``columns`` (a list of names or a DataFrame)."""
    if isinstance(partable, str):
        partable = parameter_table(partable)
    names = list(columns.columns) if hasattr(columns, "columns") else list(columns)
    have = {str(c) for c in names}
    missing = [v for v in partable.observed_names if v not in have]
    if missing:
        latent = sorted({v for lvs in partable.latent_names.values() for v in lvs})
        hint = (f" (latent variables, which need no column: {', '.join(latent)})" if latent else "")
        raise ModelDataError(
            f"the model's observed variable(s) {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not column(s) of the data; every name in the "
            "syntax that is not a latent variable (the left-hand side of =~ at its level) must "
            f"be a data column{hint}")
