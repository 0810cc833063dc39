"""Shared fixtures: the lavaan reference cases copied into tests/data/lavaan/."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

import mlmiss

LAVAAN_DIR = Path(__file__).parent / "data" / "lavaan"
CASES = sorted(p.stem for p in LAVAAN_DIR.glob("*.json"))


def load_case(name: str):
    """(json dict, TwoLevelData) for one lavaan reference case."""
    ref = json.loads((LAVAAN_DIR / f"{name}.json").read_text())
    df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
    names = ref["start"]["moments"]
    data = mlmiss.TwoLevelData.from_frame(df, ref["case"]["cluster"], y=names["y_names"], z=names["z_names"])
    return ref, data


def case_problem(name: str, clusters=None):
    """The estimation problem of a lavaan reference case (its first ``clusters``
    clusters if given), warnings of the pre-fit checks silenced."""
    from mlmiss.estimation.build import build_problem

    case = json.loads((LAVAAN_DIR / f"{name}.json").read_text())["case"]
    df = pd.read_csv(LAVAAN_DIR / case["data"])
    if clusters is not None:
        df = df[df[case["cluster"]].isin(sorted(df[case["cluster"]].unique())[:clusters])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_problem(case["model"], df, case["cluster"], case.get("fixed_x", False))


@pytest.fixture(scope="session")
def lavaan_case():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_case(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def lavaan_fit():
    """(reference, mlmiss fit) of a case, fitted once per session with the case's
    fixed.x (lavaan's default is TRUE)."""
    cache = {}

    def get(name):
        if name not in cache:
            ref, _ = load_case(name)
            df = pd.read_csv(LAVAAN_DIR / ref["case"]["data"])
            fixed_x = ref["case"]["options"].get("fixed.x", True)
            cache[name] = (ref, mlmiss.sem(ref["case"]["model"], df,
                                           cluster=ref["case"]["cluster"], fixed_x=fixed_x))
        return cache[name]

    return get
