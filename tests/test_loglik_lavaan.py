"""Every likelihood method against lavaan 0.7.2's log-likelihood (tests/data/lavaan)."""

import numpy as np
import pytest

import mlmiss
from conftest import CASES

# lavaan's fit.loglik with fixed.x = TRUE is the conditional likelihood of y given x:
# not the quantity mlmiss.loglik computes (its start value is the joint one)
POINTS = [(case, point) for case in CASES for point in ("start", "fit")
          if not (case == "demo_twolevel_fixedx" and point == "fit")]


def _expected(ref, point):
    return ref[point]["loglik"]


@pytest.mark.parametrize("method", mlmiss.METHODS)
@pytest.mark.parametrize("case,point", POINTS)
def test_matches_lavaan(lavaan_case, case, point, method):
    ref, data = lavaan_case(case)
    moments = mlmiss.Moments.from_dict(ref[point]["moments"])
    if method == "dutoit" and case == "singular_between":
        with pytest.raises(mlmiss.SingularMatrixError, match="singular"):
            mlmiss.loglik(data, moments, method)
        return
    value = mlmiss.loglik(data, moments, method)
    assert value == pytest.approx(_expected(ref, point), abs=1e-7, rel=0)


def test_fixture_shapes_match_data(lavaan_case):
    ref, data = lavaan_case("paper_like")
    assert data.n_obs == ref["fit"]["nobs"]
    assert data.n_clusters == ref["fit"]["nclusters"]
    # the pattern counts are checked against pandas in test_data.py


def test_singular_between_sigma_b_is_singular(lavaan_case):
    ref, _ = lavaan_case("singular_between")
    sb = np.array(ref["fit"]["moments"]["sigma_b"])
    between = np.flatnonzero(np.any(sb != 0, axis=1))
    assert np.linalg.matrix_rank(sb[np.ix_(between, between)]) < between.size
