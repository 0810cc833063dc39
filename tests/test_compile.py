"""Compiling the kernels of a fit in two processes on a cold Numba cache
(mlmiss.estimation.compile): a fresh interpreter with an empty cache directory."""

import json
import os
import subprocess
import sys

from conftest import LAVAAN_DIR

SCRIPT = """
import json, sys, warnings
import pandas as pd
import mlmiss
from mlmiss.estimation import compile as comp
assert comp.cache_is_cold()
warnings.simplefilter("ignore")
df = pd.read_csv(sys.argv[1])
case = json.load(open(sys.argv[2]))["case"]
fit = mlmiss.sem(case["model"], df, cluster="cluster",
                 fixed_x=case["options"].get("fixed.x", True))
assert comp._done and not comp.cache_is_cold()
print(json.dumps({"logl": fit.loglik, "converged": bool(fit.estimate.converged)}))
"""


def test_cold_cache_compiles_in_two_processes(tmp_path, lavaan_fit):
    ref, fit = lavaan_fit("demo_twolevel_missing")
    out = subprocess.run([sys.executable, "-c", SCRIPT,
                          str(LAVAAN_DIR / ref["case"]["data"]),
                          str(LAVAAN_DIR / "demo_twolevel_missing.json")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["converged"]
    # the same maximum as in this process (kernels compiled elsewhere round alike to 1e-8)
    assert abs(result["logl"] - fit.loglik) < 1e-6
    # the helper's group is in the cache too
    names = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"clusters.cluster_scores", "within.within_backward", "clusters.cluster_terms",
            "kernels.level_jacobian_into"} <= names
