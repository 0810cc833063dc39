"""Benchmarks of every log-likelihood method on the lavaan ``paper_like`` data.

    pytest bench/                          # all methods
    pytest bench/ -k engine                # one method
    pytest bench/ --benchmark-only --benchmark-columns=mean,stddev,rounds

Nothing here asserts anything about speed; each benchmark only checks that the
value is finite. The first (compiling) call of a method happens before timing.
"""

import math

import pytest

import mlmiss

#: methods slow enough to be timed with a few explicit rounds
SLOW = {"dense": 3, "objective1": 3}


@pytest.mark.parametrize("method", mlmiss.METHODS)
def test_bench_loglik(benchmark, paper_like, method):
    data, moments = paper_like
    benchmark.group = "loglik paper_like"
    benchmark.extra_info["method"] = method

    # warm-up outside the timings (numba compilation, caches)
    mlmiss.loglik(data, moments, method=method)

    if method in SLOW:
        value = benchmark.pedantic(mlmiss.loglik, args=(data, moments),
                                   kwargs={"method": method},
                                   rounds=SLOW[method], iterations=1, warmup_rounds=0)
    else:
        value = benchmark(mlmiss.loglik, data, moments, method=method)
    assert math.isfinite(value)
