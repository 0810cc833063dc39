"""``mlmiss fit``: the files it writes (--output, --json), the summary's options
(--standardized, --rsquare, --estimator) and one line with a non-zero exit status for
every input it cannot use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mlmiss
from conftest import LAVAAN_DIR
from mlmiss.cli import EXIT_ERROR, main

DATA = LAVAAN_DIR / "demo_twolevel_missing.csv"

MODEL = """level: 1
  fw =~ y1 + y2 + y3
  fw ~ x1 + x2 + x3
level: 2
  fb =~ y1 + y2 + y3
  fb ~ w1 + w2
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.lav"
    path.write_text(MODEL)
    return path


@pytest.fixture(scope="module")
def python_fit():
    """The same fit from Python, to compare the files with."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmiss.sem(MODEL, pd.read_csv(DATA), cluster="cluster", fixed_x=False)


def run(capsys, *args):
    status = main(["fit", *map(str, args)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_output_json_standardized_rsquare(tmp_path, model_file, python_fit, capsys):
    csv, js = tmp_path / "estimates.csv", tmp_path / "fit.json"
    status, out, _ = run(capsys, model_file, DATA, "--cluster", "cluster", "--no-fixed-x",
                         "--standardized", "--rsquare", "--output", csv, "--json", js)
    assert status == 0
    assert "Std.lv  Std.all" in out and out.count("R-Square:") == 2
    assert "Number of observations                          2500" in out

    table = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    expected = python_fit.parameter_estimates(standardized=True)
    assert list(table.columns) == ["lhs", "op", "rhs", "level", "label", "est", "se", "z",
                                   "pvalue", "ci_lower", "ci_upper", "std_lv", "std_all", "std_nox"]
    assert len(table) == len(expected)
    for column in ("est", "se", "std_lv", "std_all"):
        assert table[column].to_numpy() == pytest.approx(expected[column].to_numpy(),
                                                         abs=1e-6, nan_ok=True), column

    d = json.loads(js.read_text())
    assert d["converged"] is True and d["data"]["nobs"] == 2500 and d["data"]["nclusters"] == 200
    assert d["options"]["fixed_x"] is False and d["options"]["estimator"] == "ML"
    assert d["fit_measures"]["chisq"] == pytest.approx(python_fit.fit_measures()["chisq"], abs=1e-6)
    assert len(d["estimates"]) == len(expected)


def test_without_options_no_files_and_plain_summary(tmp_path, model_file, capsys):
    status, out, _ = run(capsys, model_file, DATA, "--cluster", "cluster", "--no-fixed-x",
                         "--no-fit-measures")
    assert status == 0 and "Std.lv" not in out and "R-Square" not in out
    assert "Test statistic" not in out and "Latent Variables:" in out
    assert list(tmp_path.iterdir()) == [model_file]


def test_estimator_mlr(tmp_path, model_file, capsys):
    js = tmp_path / "fit.json"
    status, out, _ = run(capsys, model_file, DATA, "--cluster", "cluster", "--no-fixed-x",
                         "--estimator", "mlr", "--json", js)
    assert status == 0
    assert "Standard      Scaled" in out and "Sandwich" in out and "Robust RMSEA" in out
    d = json.loads(js.read_text())
    assert d["options"]["estimator"] == "MLR" and d["options"]["se"] == "robust"
    assert d["fit_measures"]["chisq_scaled"] > 0


def test_fixed_x_flag(model_file, capsys):
    status, out, _ = run(capsys, model_file, DATA, "--cluster", "cluster", "--fixed-x",
                         "--no-fit-measures")
    assert status == 0
    assert "Number of observations                          1516        2500" in out


def one_line_error(capsys, args, expected: str):
    status = main(["fit", *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == EXIT_ERROR
    assert len(err) == 1 and err[0].startswith("mlmiss: error: "), err
    assert expected in err[0], err[0]
    assert "Traceback" not in err[0]


def test_errors_are_one_line(tmp_path, model_file, capsys):
    data = ["--cluster", "cluster", "--no-fixed-x"]
    one_line_error(capsys, [model_file, tmp_path / "nowhere.csv", *data],
                   "data file '" + str(tmp_path / "nowhere.csv") + "': no such file")
    one_line_error(capsys, [tmp_path / "nomodel.lav", DATA, *data],
                   "model file '" + str(tmp_path / "nomodel.lav") + "': no such file")
    one_line_error(capsys, [model_file, DATA, "--cluster", "school"], "no column 'school'")

    bad = tmp_path / "bad.lav"
    bad.write_text("level: 1\n  fw =~ y1 + y2 +\nlevel: 2\n  fb =~ y1 + y2 + y3\n")
    one_line_error(capsys, [bad, DATA, *data], f"model file '{bad}', line 2: empty term")

    unknown = tmp_path / "unknown.lav"
    unknown.write_text(MODEL.replace("fw ~ x1", "fw ~ q9"))
    one_line_error(capsys, [unknown, DATA, *data], "q9")

    text = pd.read_csv(DATA)
    text["y2"] = text["y2"].astype(object)
    text.loc[3, "y2"] = "abc"
    text_csv = tmp_path / "text.csv"
    text.to_csv(text_csv, index=False)
    one_line_error(capsys, [model_file, text_csv, *data], "'y2' is not numeric")

    one_line_error(capsys, [model_file, tmp_path, *data], "cannot be read as CSV")
    one_line_error(capsys, [model_file, DATA, *data, "--no-fit-measures", "--output",
                            tmp_path / "no" / "dir" / "e.csv"], "cannot be written")


def test_debug_shows_the_exception(tmp_path, model_file, capsys):
    args = ["fit", str(model_file), str(tmp_path / "nowhere.csv"), "--cluster", "cluster"]
    with pytest.raises(Exception, match="no such file"):
        main(["--debug"] + args)
    with pytest.raises(Exception, match="no such file"):
        main(args + ["--debug"])


def test_unknown_estimator_is_a_usage_error(model_file, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", str(model_file), str(DATA), "--cluster", "cluster", "--estimator", "WLS"])
    assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ----------------------------------------------------------------------------- to_dict / to_json

def test_to_json_round_trips(tmp_path, python_fit):
    fit = python_fit
    text = fit.to_json(tmp_path / "fit.json")
    assert (tmp_path / "fit.json").read_text().strip() == text
    d = json.loads(text)
    assert d == json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert "NaN" not in text and "Infinity" not in text

    est = fit.parameter_estimates(standardized=True)
    assert len(d["estimates"]) == len(est)
    for record, row in zip(d["estimates"], est.itertuples(index=False)):
        assert (record["lhs"], record["op"], record["rhs"], record["level"]) == \
            (row.lhs, row.op, row.rhs, row.level)
        assert record["est"] == pytest.approx(row.est)
        # fixed parameters: no z or p-value (NaN in the table, null here)
        assert (record["z"] is None) == (not row.z == row.z)
        assert record["std_all"] == pytest.approx(row.std_all)

    measures = fit.fit_measures()
    assert set(d["fit_measures"]) == set(measures)
    for key, value in measures.items():
        assert d["fit_measures"][key] == pytest.approx(value), key

    for what in ("implied", "h1"):
        levels = fit.inspect(what)
        for level in ("within", "between"):
            mine = d[what][level]
            assert mine["cov"]["names"] == list(levels[level]["cov"].columns)
            assert mine["mean"]["value"] == pytest.approx(levels[level]["mean"].to_list())
            np.testing.assert_allclose(mine["cov"]["value"], levels[level]["cov"].to_numpy())
    assert d["r2"]["within"]["y1"] == pytest.approx(fit.inspect("r2")["within"]["y1"])

    data = d["data"]
    assert (data["nobs"], data["ntotal_rows"], data["nclusters"], data["cluster"]) == \
        (2500, 2500, 200, "cluster")
    assert data["y"] == list(fit.data.y_names) and data["z"] == ["w1", "w2"]
    assert data["missing_patterns"]["level1"]["n_patterns"] == fit.data.level1.n_patterns
    assert data["missing_patterns"]["level2"]["n_patterns"] == 3
    assert sum(p["n"] for p in data["missing_patterns"]["level2"]["patterns"]) == 200
    assert data["dropped_rows"] == {"all_level1_missing": [], "fixed_x_covariate_missing": []}

    conv = d["convergence"]
    assert conv["converged"] is True and conv["iterations"] == fit.iterations
    assert conv["optimizer"] == fit.optimizer and conv["seconds"] > 0
    assert conv["loglik"] == pytest.approx(fit.loglik)
    assert d["options"] == json.loads(json.dumps(fit.options))
    assert d["versions"]["mlmiss"] == mlmiss.__version__
    assert set(d["versions"]) == {"mlmiss", "numpy", "scipy", "numba", "pandas", "python"}


def test_to_dict_counts_the_dropped_rows():
    import warnings

    df = pd.read_csv(DATA)
    df.loc[0:1, ["y1", "y2", "y3", "x1", "x2", "x3"]] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = mlmiss.sem(MODEL, df, cluster="cluster", fixed_x=False).to_dict()["data"]
        fixed = mlmiss.sem(MODEL, pd.read_csv(DATA), cluster="cluster", fixed_x=True).to_dict()["data"]
    assert (empty["nobs"], empty["ntotal_rows"]) == (2498, 2500)
    assert empty["dropped_rows"] == {"all_level1_missing": [0, 1], "fixed_x_covariate_missing": []}
    # fixed_x: lavaan drops the rows missing a covariate (984 here)
    assert (fixed["nobs"], fixed["ntotal_rows"]) == (1516, 2500)
    assert len(fixed["dropped_rows"]["fixed_x_covariate_missing"]) == 984
    assert fixed["dropped_rows"]["all_level1_missing"] == []
