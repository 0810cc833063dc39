"""Bentler, Liang, Tang and Yuan (2011), Tables 1 and 2, reproduced by Monte Carlo.

    python paper_scripts/bentler2011.py                   # both tables, 200 replications
    python paper_scripts/bentler2011.py --replications 20 --experiments 1
    python paper_scripts/bentler2011.py --missing         # also with missing data
    python paper_scripts/bentler2011.py --dask            # on a local Dask cluster

Their model (Figure 1, eq. 27) is fitted under the nonlinear constraints (28)
(experiment 1, Table 1) or the linear ones (29) (experiment 2, Table 2) to data drawn
at their true values, 200 replications in each of the designs D1-D6, by their algorithm
(``optimizer="em"``: the EM with an augmented Lagrangian, mlmiss.estimation.em.constrained).
For every parameter and design the script prints the paper's average estimate (A.E.)
and standard deviation (S.D.) beside ours, and checks them statistically: our average
within 3 S.D. sqrt(2/200) of theirs (two averages of 200 draws each), our S.D. within
15% of theirs. The paper gives no seed, so the numbers cannot be the same, only
compatible.

Then the unconstrained model at D6 (coverage of 95% intervals; 1,000 replications, so
that the coverage of each parameter is known to +-1.4%), and with ``--missing``
the constrained studies again with 10% and 20% of the values missing at both levels,
completely at random (MCAR) and at random (MAR: y2-y4 by a logistic rule on y1, z2 on
z1), which the paper could not do. Results go to ``--out`` as CSV files.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mlmiss
from mlmiss.datasets import (BENTLER2011_DESIGNS, BENTLER2011_TRUE_VALUES,
                             bentler2011_cluster_sizes, bentler2011_model)

sys.path.insert(0, str(Path(__file__).parent))
from bentler2011_tables import PARAMETERS, TABLES  # noqa: E402

#: the statistical check: |average - paper| <= AVERAGE_SDS S.D. sqrt(2/R), S.D. ratio
AVERAGE_SDS = 3.0
SD_TOLERANCE = 0.15


def missing_specs(rate: float) -> dict:
    """The missing-data designs at one rate: MCAR everywhere, and MAR with y2-y4 (rows)
    by a logistic rule on y1 and z2 (clusters) on z1, y1 and z1 always observed."""
    rule = {"slope": 1.5, "rate": rate}
    mar = {name: {"on": "y1", **rule} for name in ("y2", "y3", "y4")}
    mar["z2"] = {"on": "z1", **rule}
    return {f"MCAR {rate:.0%}": {"mcar": rate}, f"MAR {rate:.0%}": {"mar": mar}}


def study(experiment: int, args, constrained: bool = True, missing=None, designs=None,
          store=None, replications=None) -> mlmiss.simulation.MonteCarlo:
    names = designs or list(BENTLER2011_DESIGNS)
    generate = {"model": bentler2011_model(experiment, constrained=False),
                "params": BENTLER2011_TRUE_VALUES[experiment]}
    if missing is not None:
        generate["missing"] = missing
    return mlmiss.monte_carlo(
        bentler2011_model(experiment, constrained=constrained), generate,
        replications=replications or args.replications,
        designs={name: {"cluster_sizes": bentler2011_cluster_sizes(name)} for name in names},
        fit_options={"fixed_x": False, "optimizer": args.optimizer},
        seed=args.seed + experiment, workers=args.workers, client=args.client, store=store,
        progress=not args.quiet)


def by_label(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's rows of the labelled parameters, indexed by (design, label)."""
    rows = summary[summary["label"].isin(PARAMETERS)]
    return rows.set_index(["design", "label"])


def compare(experiment: int, summary: pd.DataFrame, replications: int) -> tuple[str, list]:
    """The paper's table beside ours, and the parameters outside the check."""
    ours = by_label(summary)
    paper = TABLES[experiment]
    lines, misses = [], []
    for start in range(0, len(PARAMETERS), 8):
        block = PARAMETERS[start:start + 8]
        lines.append(f"{'':16}" + "".join(f"{name:>9}" for name in block))
        truth = BENTLER2011_TRUE_VALUES[experiment]
        lines.append(f"{'true value':16}" + "".join(f"{truth[name]:9.4f}" for name in block))
        for design in BENTLER2011_DESIGNS:
            if (design, block[0]) not in ours.index:
                continue
            theirs_ae = dict(zip(PARAMETERS, paper["AE"][design]))
            theirs_sd = dict(zip(PARAMETERS, paper["SD"][design]))
            ae = [ours.loc[(design, name), "average"] for name in block]
            sd = [ours.loc[(design, name), "sd"] for name in block]
            for what, values in ((f"A.E.({design}) paper", [theirs_ae[n] for n in block]),
                                 (f"A.E.({design}) ours", ae),
                                 (f"S.D.({design}) paper", [theirs_sd[n] for n in block]),
                                 (f"S.D.({design}) ours", sd)):
                lines.append(f"{what:16}" + "".join(f"{v:9.4f}" for v in values))
            for name, a, s in zip(block, ae, sd):
                tolerance = AVERAGE_SDS * theirs_sd[name] * math.sqrt(2.0 / replications)
                if abs(a - theirs_ae[name]) > tolerance:
                    misses.append(f"{design} {name}: average {a:.4f} vs {theirs_ae[name]:.4f} "
                                  f"(allowed +-{tolerance:.4f})")
                if abs(s / theirs_sd[name] - 1.0) > SD_TOLERANCE:
                    misses.append(f"{design} {name}: S.D. {s:.4f} vs {theirs_sd[name]:.4f} "
                                  f"(ratio {s / theirs_sd[name]:.3f})")
        lines.append("")
    return "\n".join(lines), misses


def convergence_line(result) -> str:
    reps = result.results.drop_duplicates(["design", "replication"])
    per_fit = reps["seconds"].median()
    return (f"{int(reps['converged'].sum())} of {len(reps)} fits converged; median fit "
            f"{per_fit:.3f} s; study wall time {result.seconds:.1f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--experiments", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=2011)
    parser.add_argument("--optimizer", default="em", help="em (their algorithm) or auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--dask", action="store_true", help="run on a local Dask cluster")
    parser.add_argument("--missing", action="store_true",
                        help="also the studies with 10%% and 20%% MCAR and MAR data")
    parser.add_argument("--coverage-replications", type=int, default=1000,
                        help="replications of the unconstrained D6 study (coverage)")
    parser.add_argument("--missing-replications", type=int, default=100,
                        help="replications per design of the missing-data studies")
    parser.add_argument("--out", default="bentler2011_output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.client = None
    if args.dask:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers or 2, threads_per_worker=1)
        args.client = Client(cluster)
    began = time.perf_counter()
    all_misses = {}
    for experiment in args.experiments:
        kind = "nonlinear constraints (28)" if experiment == 1 else "linear constraints (29)"
        print(f"\n=== Experiment {experiment}: {kind}, Table {experiment} of the paper ===")
        result = study(experiment, args)
        result.results.to_csv(out / f"table{experiment}_results.csv", index=False)
        summary = result.summary()
        summary.to_csv(out / f"table{experiment}_summary.csv", index=False)
        print(convergence_line(result))
        table, misses = compare(experiment, summary, args.replications)
        print(table)
        checks = 2 * len(PARAMETERS) * summary["design"].nunique()
        print(f"{checks - len(misses)} of {checks} checks pass "
              f"(average within {AVERAGE_SDS:g} S.D. sqrt(2/{args.replications}), S.D. within "
              f"{SD_TOLERANCE:.0%})")
        for miss in misses:
            print("  outside:", miss)
        all_misses[experiment] = misses

    print(f"\n=== The unconstrained model at D6: 95% interval coverage, "
          f"{args.coverage_replications} replications ===")
    for experiment in args.experiments:
        result = study(experiment, args, constrained=False, designs=["D6"],
                       replications=args.coverage_replications)
        summary = by_label(result.summary())
        coverage = summary["coverage"]
        print(f"experiment {experiment} population: {convergence_line(result)}")
        print(f"  coverage from {coverage.min():.3f} ({coverage.idxmin()[1]}) to "
              f"{coverage.max():.3f} ({coverage.idxmax()[1]}), mean {coverage.mean():.3f}; "
              f"all within [0.92, 0.98]: {bool(coverage.between(0.92, 0.98).all())}")
        result.summary().to_csv(out / f"unconstrained{experiment}_D6_summary.csv", index=False)

    if args.missing:
        print(f"\n=== With missing data at both levels (what the paper could not do), "
              f"{args.missing_replications} replications per design ===")
        for experiment in args.experiments:
            complete = by_label(pd.read_csv(out / f"table{experiment}_summary.csv"))
            for rate in (0.10, 0.20):
                for name, spec in missing_specs(rate).items():
                    result = study(experiment, args, missing=spec,
                                   replications=args.missing_replications)
                    summary = result.summary()
                    tag = name.replace(" ", "_").replace("%", "")
                    summary.to_csv(out / f"table{experiment}_{tag}_summary.csv", index=False)
                    rows = by_label(summary)
                    truth = BENTLER2011_TRUE_VALUES[experiment]
                    z = [(rows.loc[key, "average"] - truth[key[1]])
                         / (rows.loc[key, "sd"] / math.sqrt(rows.loc[key, "n_used"]))
                         for key in rows.index]
                    ratio = (rows["sd"] / complete.loc[rows.index, "sd"]).to_numpy()
                    print(f"experiment {experiment}, {name}: {convergence_line(result)}; "
                          f"largest |bias| / (S.D./sqrt(R)) {np.max(np.abs(z)):.2f}; "
                          f"S.D. / complete-data S.D. {np.median(ratio):.3f} (median), "
                          f"{np.max(ratio):.3f} (largest); coverage "
                          f"{rows['coverage'].min():.3f}-{rows['coverage'].max():.3f}")
    print(f"\nTotal wall time {time.perf_counter() - began:.0f} s")
    if args.client is not None:
        args.client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
