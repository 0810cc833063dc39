"""Inference on a fitted model: the covariance matrix of the estimates and fit measures."""
