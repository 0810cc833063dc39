"""Benchmarks of the analytic gradient on the lavaan ``paper_like`` data, beside the
log-likelihood alone (the engine), to show what the gradient adds.

    pytest bench/test_bench_gradient.py
"""

import math

import mlmiss


def test_bench_loglik_engine(benchmark, paper_like):
    data, moments = paper_like
    benchmark.group = "gradient paper_like"
    mlmiss.loglik(data, moments)
    assert math.isfinite(benchmark(mlmiss.loglik, data, moments))


def test_bench_loglik_and_gradient(benchmark, paper_like):
    data, moments = paper_like
    benchmark.group = "gradient paper_like"
    mlmiss.loglik_and_gradient(data, moments)
    value, gradient = benchmark(mlmiss.loglik_and_gradient, data, moments)
    assert math.isfinite(value) and gradient is not None


def test_bench_loglik_gradient(benchmark, paper_like):
    data, moments = paper_like
    benchmark.group = "gradient paper_like"
    mlmiss.loglik_gradient(data, moments)
    assert benchmark(mlmiss.loglik_gradient, data, moments) is not None
