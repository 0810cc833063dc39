"""Python counterpart of the paper's main.R (Rosseel 2021, section 4.1, Appendix C.1).

Builds the example data (or reads a CSV with the same columns), takes the
model-implied moments of the example model, evaluates the observed-data
log-likelihood with every method, checks that they agree, and times the five
objective functions beside the paper's Table 1.

    python paper_scripts/main.py
    python paper_scripts/main.py --seed 7 --repeat-scale 0.2
    python paper_scripts/main.py --csv tests/data/lavaan/paper_like.csv
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

import mlmiss
import mlmiss.datasets as datasets
from mlmiss.moments import Moments
from mlmiss.table1 import PAPER_METHODS, format_table1, table1

Y_NAMES = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z_NAMES = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1234,
                    help="seed of the generated example data (default 1234)")
    ap.add_argument("--csv", type=Path, default=None,
                    help="read the data from this CSV (columns cluster, y1..y10, x1..x3, "
                         "z1..z4, w1..w3; empty/NA = missing) instead of generating it")
    ap.add_argument("--moments-json", type=Path, default=None,
                    help="take the moments from a lavaan reference JSON's start.moments "
                         "(e.g. tests/data/lavaan/paper_like.json) instead of the "
                         "documented parameter point of mlmiss.datasets.paper_model_moments()")
    ap.add_argument("--repeat-scale", type=float, default=1.0,
                    help="multiply every repetition count and time budget by this (default 1)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    if args.csv is not None:
        df = pd.read_csv(args.csv)
        source = str(args.csv)
    else:
        df = datasets.paper_example(seed=args.seed)
        source = f"mlmiss.datasets.paper_example(seed={args.seed})"
    data = mlmiss.TwoLevelData.from_frame(df, cluster="cluster", y=Y_NAMES, z=Z_NAMES)

    if args.moments_json is not None:
        with open(args.moments_json) as fh:
            moments = Moments.from_dict(json.load(fh)["start"]["moments"])
        msource = f"{args.moments_json}: start.moments"
    else:
        moments = datasets.paper_model_moments()
        msource = "mlmiss.datasets.paper_model_moments()"

    n_clusters = df["cluster"].nunique()
    level1 = df[Y_NAMES].isna().to_numpy()
    level2 = df.groupby("cluster")[Z_NAMES].first().isna().to_numpy()
    print(f"data:    {source}")
    print(f"         {len(df)} rows, {n_clusters} clusters, "
          f"{level1.mean():.1%} missing at level 1, {level2.mean():.1%} at level 2")
    print(f"moments: {msource}")
    print()

    # Log-likelihood by every method; they must all agree.
    values, failed, first_ms = {}, {}, {}
    for method in mlmiss.METHODS:
        try:
            t0 = time.perf_counter()
            values[method] = mlmiss.loglik(data, moments, method=method)
            first_ms[method] = (time.perf_counter() - t0) * 1e3
        except Exception as exc:  # e.g. dutoit with a singular between part
            failed[method] = exc
            print(f"  {method:<11} failed: {type(exc).__name__}: {exc}")
            continue
        print(f"  {method:<11} loglik = {values[method]:.10f}   "
              f"(first call {first_ms[method]:.1f} ms)")
    finite = [v for v in values.values() if math.isfinite(v)]
    spread = max(finite) - min(finite) if finite else math.nan
    # dutoit may legitimately refuse a singular between part; anything else is a failure
    excused = all(isinstance(e, mlmiss.SingularMatrixError) for e in failed.values())
    ok = (bool(finite) and len(finite) == len(values) and excused
          and spread <= 1e-8 * max(1.0, abs(finite[0])))
    print(f"  all methods agree: {'yes' if ok else 'NO'} "
          f"({len(values)} of {len(mlmiss.METHODS)} ran; largest difference {spread:.3g})")
    print()

    # Table 1.
    def progress(method, row):
        print(f"  timed {method:<11} {row['ms']:10.3f} ms (mean of {row['repeats']}), "
              f"first call {row['first_ms']:.1f} ms", flush=True)

    table = table1(data, moments, PAPER_METHODS, repeat_scale=args.repeat_scale,
                   progress=progress)
    print()
    if "objective5" in first_ms:
        print(f"objective5 first call in this process (includes numba compilation or "
              f"loading the on-disk cache): {first_ms['objective5']:.1f} ms; "
              f"steady state {float(table.loc[table['method'] == 'objective5', 'ms'].iloc[0]):.3f} ms")
    print()
    print("Table 1 (ours: Python/numba on this machine; paper: R, Rosseel 2021)")
    print(format_table1(table))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
