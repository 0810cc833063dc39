"""Fuzz test (issue 9): random small two-level models and data, fitted as a user would.

Every run must end in one of: a clear error (DataError / ModelError); a fit reported as
converged whose log-likelihood is at least that of the same model started at the true
parameter values; or a fit that says it did not converge (a ConvergenceWarning). Never
an absurd number reported as converged.
"""

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlmiss
from mlmiss.data.levels import between_cov
from mlmiss.model.partable import parameter_table
from mlmiss.model.ram import TwoLevelModel

TEMPLATES = {
    "factor both levels": "level: 1\n  fw =~ {ys}\nlevel: 2\n  fb =~ {ys}\n",
    "factor, covariate": "level: 1\n  fw =~ {ys}\n  fw ~ x1\nlevel: 2\n  fb =~ {ys}\n  fb ~ w1\n",
    "regression": "level: 1\n  y1 ~ x1\nlevel: 2\n  y1 ~ w1\n",
    "saturated between": "level: 1\n  fw =~ {ys}\nlevel: 2\n  {pairs}\n",
}


UNITS = {"same": [1.0], "mixed": [1e-3, 1.0, 1e4], "huge": [1e6, 1e8], "tiny": [1e-6]}


def in_units(table, theta, unit):
    """theta for data whose variables are multiplied by ``unit`` (a latent variable
    takes its first indicator's unit, that loading being fixed at 1)."""
    unit = dict(unit)
    for row in table.itertuples(index=False):
        if row.op == "=~" and row.free == 0:
            unit.setdefault(row.lhs, unit[row.rhs])
    out = theta.copy()
    for row in table.itertuples(index=False):
        if row.free == 0:
            continue
        a, b = unit[row.lhs], unit.get(row.rhs, 1.0)
        factor = {"=~": b / a, "~": a / b, "~~": a * b, "~1": a}[row.op]
        out[row.free - 1] = theta[row.free - 1] * factor
    return out


def true_theta(table, rng):
    theta = np.zeros(int(table["free"].max()))
    for row in table.itertuples(index=False):
        if row.free == 0:
            continue
        if row.op == "=~":
            value = rng.uniform(0.5, 1.5)
        elif row.op == "~":
            value = rng.uniform(-0.6, 0.6)
        elif row.op == "~1":
            value = rng.uniform(-1.0, 1.0)
        elif row.lhs == row.rhs:
            value = rng.uniform(0.3, 1.5)
        else:
            value = rng.uniform(-0.2, 0.2)
        theta[row.free - 1] = value
    return theta


def simulate(moments, y_names, z_names, sizes, rng):
    """Rows of a two-level normal model with these moments (between part of the "both"
    variables and z drawn jointly per cluster)."""
    p = len(y_names)
    idx = moments.between_index
    joint = between_cov(moments)
    values, vectors = np.linalg.eigh(joint)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    lw = np.linalg.cholesky(moments.sigma_w)
    rows = []
    for j, n in enumerate(sizes):
        draw = root @ rng.standard_normal(joint.shape[0])
        b = np.zeros(p)
        b[idx] = draw[:idx.size]
        z = moments.mu_z + draw[idx.size:]
        y = moments.mu_y + b + rng.standard_normal((n, p)) @ lw.T
        for i in range(n):
            rows.append([j] + list(y[i]) + list(z))
    return pd.DataFrame(rows, columns=["cluster"] + list(y_names) + list(z_names))


@st.composite
def studies(draw):
    template = draw(st.sampled_from(sorted(TEMPLATES)))
    n_y = draw(st.integers(2, 4))
    return dict(
        template=template, n_y=n_y,
        n_clusters=draw(st.integers(3, 30)),
        max_size=draw(st.sampled_from([1, 2, 5, 15])),
        miss=draw(st.sampled_from([0.0, 0.1, 0.3])),
        miss_z=draw(st.sampled_from([0.0, 0.2])),
        between_scale=draw(st.sampled_from([1.0, 0.1, 1e-3])),
        degenerate=draw(st.sampled_from([None, "constant", "no within"])),
        units=draw(st.sampled_from(["same", "mixed", "huge", "tiny"])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(studies())
def test_fits_are_honest(study):
    rng = np.random.default_rng(study["seed"])
    text = TEMPLATES[study["template"]]
    ys = [f"y{i}" for i in range(1, study["n_y"] + 1)]
    pairs = "\n  ".join(f"{a} ~~ " + " + ".join(ys[i:]) for i, a in enumerate(ys))
    model = text.format(ys=" + ".join(ys), pairs=pairs)
    partable = parameter_table(model)
    twolevel = TwoLevelModel(partable.table, partable.y_names, partable.z_names)
    theta = true_theta(partable.table, rng)
    # the between (co)variances shrunk: near-zero between parts are a hard case
    table = partable.table
    for row in table.itertuples(index=False):
        if row.free and row.level == 2 and row.op == "~~" and row.lhs not in partable.z_names:
            theta[row.free - 1] *= study["between_scale"]
    moments = twolevel.moments(theta)
    sizes = rng.integers(1, study["max_size"] + 1, size=study["n_clusters"])
    df = simulate(moments, partable.y_names, partable.z_names, sizes, rng)
    for column in partable.y_names:
        df.loc[rng.random(len(df)) < study["miss"], column] = np.nan
    for column in partable.z_names:
        gone = rng.random(study["n_clusters"]) < study["miss_z"]
        df.loc[df["cluster"].isin(np.flatnonzero(gone)), column] = np.nan
    unit = {v: rng.choice(UNITS[study["units"]]) for v in partable.y_names + partable.z_names}
    for v, c in unit.items():
        df[v] *= c
    theta = in_units(table, theta, unit)
    target = partable.y_names[0]
    if study["degenerate"] == "constant":
        df[target] = 3.0
    elif study["degenerate"] == "no within":
        df[target] = df.groupby("cluster")[target].transform("mean")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = mlmiss.sem(model, df, cluster="cluster", max_seconds=20, fixed_x=False)
        except (mlmiss.DataError, mlmiss.ModelError):
            return                      # a clear error is a fine ending
        said_not_converged = any(issubclass(w.category, mlmiss.ConvergenceWarning)
                                 for w in caught)
    assert study["degenerate"] is None, "degenerate data must be refused"
    if not fit.converged:
        assert said_not_converged
        return
    assert np.isfinite(fit.loglik)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reference = mlmiss.sem(model, df, cluster="cluster", start=theta, max_seconds=20, fixed_x=False)
        except mlmiss.ModelError:       # the truth is not admissible for these data
            return
    if reference.converged:
        assert fit.loglik >= reference.loglik - 1e-4 * max(1.0, abs(reference.loglik) * 1e-3)
