"""Bar chart of our Table 1 timings beside the paper's R timings (Rosseel 2021).

    python bench/table1_figure.py --out table1.png
    python bench/table1_figure.py --out table1.png --repeat-scale 0.3 --csv other.csv

Times ``mlmiss.paper.table1.table1`` (the paper's five objectives and the engine) on the lavaan ``paper_like`` data (moments: lavaan's
starting values from ``paper_like.json``) and writes a PNG with a log-scale y axis.
Needs matplotlib (``pip install mlmiss[plot]``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import mlmiss
from mlmiss.data.moments import Moments
from mlmiss.methods import METHODS, method_function
from mlmiss.paper import OBJECTIVES
from mlmiss.paper.table1 import format_table1, table1

LAVAAN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "lavaan"
Y_NAMES = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z_NAMES = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]


def plot_table1(table: pd.DataFrame, out, title=None):
    """Write a grouped bar chart (ours vs. paper, ms, log scale) of a table1() result."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting Table 1 needs matplotlib, which is optional for mlmiss; "
            "install it with `pip install matplotlib` (or `pip install mlmiss[plot]`)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(table["method"])
    ours = table["ms"].to_numpy(dtype=float)
    paper = table["paper_ms"].to_numpy(dtype=float)
    x = np.arange(len(methods))
    width = 0.38

    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    bars_ours = ax.bar(x - width / 2, ours, width, label="mlmiss (Python/numba, this machine)",
                       color="tab:blue")
    has_paper = ~np.isnan(paper)
    bars_paper = ax.bar(x[has_paper] + width / 2, paper[has_paper], width,
                        label="Rosseel (2021), R", color="tab:gray")
    ax.bar_label(bars_ours, labels=[f"{v:.3g}" for v in ours], fontsize=8, padding=2)
    ax.bar_label(bars_paper, labels=[f"{v:.4g}" for v in paper[has_paper]], fontsize=8, padding=2)
    ax.set_yscale("log")
    lo = np.nanmin(np.concatenate([ours, paper[has_paper]]))
    hi = np.nanmax(np.concatenate([ours, paper[has_paper]]))
    ax.set_ylim(lo / 3, hi * 5)
    ax.set_xticks(x, methods)
    ax.set_ylabel("time per evaluation (ms, log scale)")
    ax.set_title(title or "Observed log-likelihood, two-level SEM with missing data (Table 1)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("table1.png"), help="PNG to write")
    ap.add_argument("--csv", type=Path, default=LAVAAN_DIR / "paper_like.csv",
                    help="data (default tests/data/lavaan/paper_like.csv)")
    ap.add_argument("--json", type=Path, default=LAVAAN_DIR / "paper_like.json",
                    help="lavaan reference JSON whose start.moments are used "
                         "(default tests/data/lavaan/paper_like.json)")
    ap.add_argument("--repeat-scale", type=float, default=1.0,
                    help="multiply every repetition count and time budget by this")
    default = list(OBJECTIVES) + ["engine"]
    ap.add_argument("--methods", nargs="+", default=default, choices=METHODS,
                    help=f"methods to time (default: {' '.join(default)})")
    args = ap.parse_args(argv)

    df = pd.read_csv(args.csv)
    data = mlmiss.TwoLevelData.from_frame(df, cluster="cluster", y=Y_NAMES, z=Z_NAMES)
    with open(args.json) as fh:
        moments = Moments.from_dict(json.load(fh)["start"]["moments"])

    functions = {name: method_function(name) for name in args.methods}
    table = table1(data, moments, functions, repeat_scale=args.repeat_scale)
    print(format_table1(table))
    plot_table1(table, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
