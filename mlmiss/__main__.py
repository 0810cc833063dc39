"""``python -m mlmiss``: the command-line interface (:mod:`mlmiss.cli`)."""

import sys

from .cli import main

sys.exit(main())
