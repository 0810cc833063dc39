"""Shared fixtures of the benchmarks: the lavaan ``paper_like`` case.

Run with ``pytest bench/`` (the default ``pytest`` run only collects ``tests/``).
"""

import json
from pathlib import Path

import pandas as pd
import pytest

import mlmiss
from mlmiss.data.moments import Moments

LAVAAN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "lavaan"
PAPER_LIKE_CSV = LAVAAN_DIR / "paper_like.csv"
PAPER_LIKE_JSON = LAVAAN_DIR / "paper_like.json"

Y_NAMES = [f"y{i}" for i in range(1, 11)] + ["x1", "x2", "x3"]
Z_NAMES = ["z1", "z2", "z3", "z4", "w1", "w2", "w3"]


def load_paper_like():
    """(data, moments) of the paper_like case: lavaan's starting values as moments."""
    df = pd.read_csv(PAPER_LIKE_CSV)
    data = mlmiss.TwoLevelData.from_frame(df, cluster="cluster", y=Y_NAMES, z=Z_NAMES)
    with open(PAPER_LIKE_JSON) as fh:
        ref = json.load(fh)
    moments = Moments.from_dict(ref["start"]["moments"])
    return data, moments, ref


@pytest.fixture(scope="session")
def paper_like():
    data, moments, ref = load_paper_like()
    assert list(data.y_names) == list(ref["start"]["moments"]["y_names"])
    assert list(data.z_names) == list(ref["start"]["moments"]["z_names"])
    return data, moments
