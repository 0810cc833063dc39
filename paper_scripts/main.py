"""Python counterpart of the paper's main.R (Rosseel 2021, section 4.1, Appendix C.1).

Builds the example data (or reads a CSV with the same columns), takes the
model-implied moments of the example model, evaluates the observed-data
log-likelihood with every method, checks that they agree, and times the five
objective functions beside the paper's Table 1. The work is done by the
``table1`` command of the command-line interface (``mlmiss/cli.py``), which this
script runs with its arguments:

    python paper_scripts/main.py
    python paper_scripts/main.py --seed 7 --repeat-scale 0.2
    python paper_scripts/main.py --csv tests/data/lavaan/paper_like.csv \\
        --moments-json tests/data/lavaan/paper_like.json
"""

import sys

from mlmiss.cli import main

if __name__ == "__main__":
    sys.exit(main(["table1", *sys.argv[1:]]))
