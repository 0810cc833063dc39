"""PNG plots of a Monte Carlo summary: bias, coverage and SE/SD of every parameter, one
series per design. matplotlib (the ``plot`` extra) is imported only here, with the
non-interactive Agg backend, so plots can be drawn on machines without a display."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SimulationError

#: file name, summary column, axis label, reference line
PANELS = (("bias.png", "bias", "bias (average - true)", 0.0),
          ("coverage.png", "coverage", "coverage of the {level:.0%} interval", None),
          ("se_sd.png", "se_sd", "mean SE / empirical SD", 1.0))


def plot_summary(summary, directory, level: float = 0.95) -> list[Path]:
    """Write bias.png, coverage.png and se_sd.png into ``directory`` (created if
    needed) from a Monte Carlo summary (:func:`mlmiss.simulation.summary.summarize`);
    returns their paths. Parameters on the x axis, one marker series per design."""
    try:
        import matplotlib
    except ImportError:
        raise SimulationError("plots need matplotlib: pip install 'mlmiss[plot]'") from None
    matplotlib.use("Agg")   # no display needed; the files are the output
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = _parameter_names(summary)
    order = list(dict.fromkeys(names))
    designs = list(dict.fromkeys(summary["design"]))
    x = {name: i for i, name in enumerate(order)}
    written = []
    for file_name, column, label, reference in PANELS:
        if reference is None:
            reference = level
        fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(order) + 2.0), 4.0))
        width = 0.6 / max(len(designs), 1)
        for k, design in enumerate(designs):
            part = summary["design"].to_numpy() == design
            positions = np.array([x[n] for n in np.asarray(names)[part]], dtype=float)
            positions += (k - (len(designs) - 1) / 2.0) * width
            ax.plot(positions, summary.loc[part, column].to_numpy(dtype=float), "o",
                    markersize=4, label=design)
        ax.axhline(reference, color="0.4", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=90, fontsize=7)
        ax.set_ylabel(label.format(level=level))
        ax.set_title(f"Monte Carlo: {label.format(level=level)} by design")
        if len(designs) > 1:
            ax.legend(fontsize=7, ncol=min(len(designs), 6))
        fig.tight_layout()
        path = directory / file_name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _parameter_names(summary) -> list[str]:
    """Short names: the label, else lhs op rhs with the level."""
    out = []
    for r in summary.itertuples(index=False):
        if r.label:
            out.append(str(r.label))
        else:
            out.append(f"{r.lhs}{r.op}{r.rhs}" + (f" ({r.level})" if r.level else ""))
    return out
