"""Typical magnitudes of the free parameters, so optimizers work on a well-scaled problem.

Data measured in large or tiny units (a variance of 1e16, or 1e-6) give parameters
whose gradients differ by as many orders of magnitude; a trust region or a gradient
tolerance in absolute units then stops at once or never. Dividing each observed
variable by a power of ten ``c`` near its standard deviation would fix that; the same
is done here without touching the data, by a diagonal change of variables
``theta = scales * u``: each variable (observed or latent) gets a unit ``c`` per level,
and a parameter's scale is what its value would be multiplied by if the data were
multiplied by those units:

    loading or regression  a <- b      c_a / c_b
    (co)variance           a ~~ b      c_a c_b
    mean or intercept      a ~1        c_a

A latent variable takes the unit of the indicator whose loading is fixed (its marker),
else 1. Units are powers of ten (exact in floating point), so data on an ordinary scale
(standard deviations between about 0.3 and 3) give scales of 1: nothing changes. Any
positive scales leave the maximum where it is; they only change the optimizer's view.
"""

from __future__ import annotations

import numpy as np

from ..model.partable import table_rows
from ..model.start import level_statistics


def power_of_ten(variance) -> float:
    """10**round(log10(sd)) for a positive finite variance, else 1."""
    if not np.isfinite(variance) or variance <= 0:
        return 1.0
    return float(10.0 ** np.round(0.5 * np.log10(variance)))


def parameter_scales(partable, data) -> np.ndarray:
    """One positive scale per free parameter of ``partable`` on ``data`` (see the module
    docstring)."""
    within, between, _, z_var, _ = level_statistics(data)
    units = {1: {}, 2: {}}
    for i, name in enumerate(data.y_names):
        units[1][name] = power_of_ten(within[i])
        units[2][name] = power_of_ten(between[i])
    for i, name in enumerate(data.z_names):
        units[1][name] = units[2][name] = power_of_ten(z_var[i])
    table = partable.table
    for row in table_rows(table):   # latent variables: their marker's unit
        if (row.op == "=~" and row.free == 0 and row.value != 0
                and row.lhs not in units[row.level] and row.rhs in units[row.level]):
            units[row.level][row.lhs] = units[row.level][row.rhs]

    def unit(name, level):
        return units[level].get(name, 1.0)

    scales = np.ones(partable.npar)
    seen = set()
    for row in table_rows(table):
        if row.free == 0 or row.free in seen:   # a shared label: its first row decides
            continue
        seen.add(row.free)
        if row.op == "=~":
            value = unit(row.rhs, row.level) / unit(row.lhs, row.level)
        elif row.op == "~":
            value = unit(row.lhs, row.level) / unit(row.rhs, row.level)
        elif row.op == "~~":
            value = unit(row.lhs, row.level) * unit(row.rhs, row.level)
        else:
            value = unit(row.lhs, row.level)
        scales[row.free - 1] = value
    return scales
