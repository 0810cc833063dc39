"""The shared small linear algebra: inverse updates (Appendix B.1) and friends."""

import numpy as np
import pytest

from mlmiss import linalg


def spd(rng, p):
    a = rng.normal(size=(p + 2, p))
    return a.T @ a + 0.1 * np.eye(p)


@pytest.mark.parametrize("p", [1, 2, 5, 13])
def test_cholesky_inverse(p):
    s = spd(np.random.default_rng(p), p)
    inv, logdet = linalg.cholesky_inverse(s)
    np.testing.assert_allclose(inv, np.linalg.inv(s), rtol=1e-10, atol=1e-12)
    assert logdet == pytest.approx(np.linalg.slogdet(s)[1], rel=1e-12)
    inv, logdet = linalg.cholesky_inverse(s - 100 * np.eye(p))
    assert inv is None and np.isnan(logdet)


@pytest.mark.parametrize("p", [2, 6, 13])
def test_inverse_update_matches_direct_inverse(p):
    rng = np.random.default_rng(p)
    s = spd(rng, p)
    omega, logdet = linalg.cholesky_inverse(s)
    for _ in range(30):
        observed = rng.random(p) < rng.uniform(0.1, 0.9)
        out, ld = linalg.inverse_update(s, omega, logdet, observed)
        o = np.flatnonzero(observed)
        expected = np.zeros((p, p))
        if o.size:
            expected[np.ix_(o, o)] = np.linalg.inv(s[np.ix_(o, o)])
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-11)
        assert ld == pytest.approx(np.linalg.slogdet(s[np.ix_(o, o)])[1] if o.size else 0.0, abs=1e-10)


def test_drop_variable_is_one_step_of_the_update():
    rng = np.random.default_rng(0)
    s = spd(rng, 7)
    w, logdet = linalg.cholesky_inverse(s)
    out = np.empty_like(w)
    keep = np.ones(7, bool)
    for k in (3, 0, 6):
        step = linalg.drop_variable_into(w, k, out)
        keep[k] = False
        logdet += step
        expected, ld = linalg.inverse_update(s, *linalg.cholesky_inverse(s), keep)
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)
        assert logdet == pytest.approx(ld, rel=1e-12)
        w = out.copy()


def test_ibza_logdet_detects_indefinite_v():
    # S with two eigenvalues below -1 after scaling by A: positive det, not admissible
    s = -3.0 * np.eye(2)
    a = np.eye(2)
    ibza = np.eye(2) + s @ a
    assert np.linalg.det(ibza) > 0
    assert linalg.ibza_logdet(ibza, s) is None
    s_ok = np.array([[1.0, 0.2], [0.2, 0.5]])
    ibza = np.eye(2) + s_ok @ a
    assert linalg.ibza_logdet(ibza, s_ok) == pytest.approx(np.linalg.slogdet(ibza)[1])
