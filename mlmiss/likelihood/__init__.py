"""The likelihood engine: the observed-data log-likelihood of a two-level model, its
gradient with respect to the moments, and second derivatives from that gradient.

Knows data and moments only, nothing of models. ``paper/`` holds the paper's teaching
sequence; nothing here imports it.
"""

from .engine import cluster_logliks, loglik, loglik_and_gradient, loglik_gradient

__all__ = ["cluster_logliks", "loglik", "loglik_and_gradient", "loglik_gradient"]
