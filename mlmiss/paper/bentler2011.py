"""The Monte Carlo model of Bentler, Liang, Tang and Yuan (2011), their Figure 1 / eq. (27),
with the nonlinear constraints (28) of their first experiment and the linear ones (29)
of their second, the true values of their Tables 1 and 2 and their six designs.

The paper's extracted text lost its symbols; the reconstruction (and the check that
every constraint is exactly zero at the true values) is in ``shared/notes/bentler2011.md``:
theta_k is ``tk``, phi_k is ``pk``.
"""

from __future__ import annotations

#: one factor per level over y1-y4; at level 2 the factor regressed on two modelled
#: covariates z1, z2 (fixed.x = FALSE) with free means; every intercept of y and fb is 0
MODEL = """
level: 1
  fw =~ 1*y1 + t1*y2 + t2*y3 + t3*y4
  fw ~~ t4*fw
  y1 ~~ t5*y1
  y2 ~~ t6*y2
  y3 ~~ t7*y3
  y4 ~~ t8*y4
level: 2
  fb =~ 1*y1 + p1*y2 + p2*y3 + p3*y4
  y1 ~~ p4*y1
  y2 ~~ p5*y2
  y3 ~~ p6*y3
  y4 ~~ p7*y4
  fb ~ p11*z1 + p12*z2
  fb ~~ p13*fb
  z1 ~~ p8*z1
  z1 ~~ p9*z2
  z2 ~~ p10*z2
  z1 ~ mu1*1
  z2 ~ mu2*1
  y1 ~ 0*1
  y2 ~ 0*1
  y3 ~ 0*1
  y4 ~ 0*1
  fb ~ 0*1
"""

#: eq. (28), experiment 1, and eq. (29), experiment 2
CONSTRAINTS = {
    1: ["2*t1 + t2 == t3^2", "p11 == 2*p12", "p1^2 + 2*p2 == p3", "t1^2 == p1 + p2"],
    2: ["t1 + 2*t2 - t3 == 2", "t3 - p3 == 0.5", "t1 == 2*p1", "p1 + p2 + p3 == p11",
        "t2 + p2 == 2", "p11 - 2*p12 == 0.5"],
}


def _values(t, t4, te, p, pe, p8, p9, p10, p11, p12, p13):
    out = {"t1": t[0], "t2": t[1], "t3": t[2], "t4": t4,
           "p1": p[0], "p2": p[1], "p3": p[2], "p8": p8, "p9": p9, "p10": p10,
           "p11": p11, "p12": p12, "p13": p13, "mu1": 1.0, "mu2": 1.0}
    out.update({f"t{k}": te for k in range(5, 9)})
    out.update({f"p{k}": pe for k in range(4, 8)})
    return out


#: the population values of Table 1 (experiment 1) and Table 2 (experiment 2)
TRUE_VALUES = {
    1: _values((1.0, 2.0, 2.0), 0.16, 0.25, (0.5, 0.5, 1.25), 0.36, 0.49, 0.30, 0.49,
               1.0, 0.5, 0.16),
    2: _values((1.0, 1.0, 1.0), 1.0, 0.25, (0.5, 1.0, 0.5), 0.16, 0.36, 0.20, 0.36,
               2.0, 0.75, 0.25),
}

#: design -> (number of clusters G, cluster sizes: the first G/3 clusters have the first
#: size, the next G/3 the second, the last G/3 the third)
DESIGNS = {
    "D1": (60, (4, 6, 8)),
    "D2": (60, (8, 12, 16)),
    "D3": (120, (4, 6, 8)),
    "D4": (120, (8, 12, 16)),
    "D5": (240, (4, 6, 8)),
    "D6": (240, (8, 12, 16)),
}


def bentler2011_model(experiment: int = 1, constrained: bool = True) -> str:
    """The analysis model of experiment 1 (nonlinear constraints) or 2 (linear), in
    lavaan syntax; ``constrained=False`` leaves the constraints out."""
    if experiment not in CONSTRAINTS:
        raise ValueError(f"experiment must be 1 or 2, not {experiment!r}")
    lines = CONSTRAINTS[experiment] if constrained else []
    return MODEL + "".join(f"{line}\n" for line in lines)


def bentler2011_cluster_sizes(design: str) -> list[int]:
    """The cluster sizes of a design, as the paper lists them: its first size for the
    first third of the clusters, the second for the next third, the third for the
    last."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    n_clusters, sizes = DESIGNS[design]
    return [size for size in sizes for _ in range(n_clusters // 3)]
