"""From model syntax and a data frame to an estimation :class:`.problem.Problem`.

Parses the model into its parameter table, checks that its variables are data columns,
builds the two-level data laid out as the model's variables and, with ``fixed_x``, drops
the rows lavaan drops and fixes the covariates at their sample moments.
"""

from __future__ import annotations

import numpy as np

from ..data.frame import TwoLevelData
from ..errors import ModelDataError
from ..model.partable import check_variables, parameter_table
from .checks import check_cluster_count, check_data, check_model
from .fixed_x import drop_incomplete, fill_covariate_rows
from .problem import Problem


def build_problem(model, data, cluster=None, fixed_x: bool = False, checks: bool = True,
                  std_lv: bool = False, orthogonal: bool = False) -> Problem:
    """``model``: lavaan syntax (or parsed statements); ``data``: a DataFrame with the
    ``cluster`` column, or a :class:`TwoLevelData` with the model's variables.
    ``checks``: run the pre-fit checks (:mod:`.checks`) on the model and the data;
    ``std_lv``, ``orthogonal``: :func:`mlmiss.model.partable.parameter_table`."""
    partable = parameter_table(model, fixed_x=fixed_x, std_lv=std_lv, orthogonal=orthogonal)
    if checks:
        check_model(partable)
    exogenous = partable.covariates()
    covariates = exogenous if fixed_x else {1: [], 2: []}   # the ones fixed_x fixes
    split = [v for v in covariates[1] + covariates[2] if v in set(partable.both_names)]
    if split:
        raise ModelDataError(
            f"fixed_x=True (the default, as lavaan's fixed.x): the covariate(s) "
            f"{', '.join(dict.fromkeys(split))} have a within and a between part (they appear at "
            "both levels); fixing such covariates at their sample moments is not available "
            "here: pass fixed_x=False to estimate their moments (lavaan's fixed.x = FALSE)")
    fixed_x_dropped = np.asarray([], dtype=object)
    if isinstance(data, TwoLevelData):
        n_rows = data.n_obs + data.n_dropped_rows
        if (sorted(data.y_names) != sorted(partable.y_names)
                or sorted(data.z_names) != sorted(partable.z_names)):
            raise ModelDataError(
                f"the model's level-1 variables {list(partable.y_names)} and between-only "
                f"variables {list(partable.z_names)} are not those of the data "
                f"({list(data.y_names)}, {list(data.z_names)})")
    else:
        check_variables(partable, list(data.columns))
        if checks and cluster in data.columns and len(data):
            check_cluster_count(data[cluster].nunique(), data[cluster].iloc[0], cluster)
        n_rows = len(data)
        if fixed_x:
            data, fixed_x_dropped = drop_incomplete(data, cluster, covariates[1], covariates[2])
        data = TwoLevelData.from_frame(data, cluster, y=list(partable.y_names),
                                       z=list(partable.z_names))
    if checks:
        check_data(data, exogenous[1], partable.both_names)
    marginal = 0.0
    if fixed_x:
        partable.table, marginal = fill_covariate_rows(partable.table, data, covariates[1],
                                                       covariates[2])
    problem = Problem(partable, data, covariate_loglik=marginal)
    # lavaan's "Used / Total": the rows given, and those fixed_x dropped (the rows with
    # every level-1 value missing are the data's own ``dropped_rows``)
    problem.n_rows_given = int(n_rows)
    problem.fixed_x_dropped_rows = fixed_x_dropped
    return problem
