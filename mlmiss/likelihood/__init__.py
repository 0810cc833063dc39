"""The likelihood engine: the observed-data log-likelihood of a two-level model, its
gradient with respect to the moments, and its second derivatives along moment
directions (:mod:`.hessian`; differences of the gradient in :mod:`.information`).

Knows data and moments only, nothing of models. ``paper/`` holds the paper's teaching
sequence; nothing here imports it.
"""

from .engine import cluster_logliks, loglik, loglik_and_gradient, loglik_gradient
from .hessian import Directions, loglik_hessian

__all__ = ["Directions", "cluster_logliks", "loglik", "loglik_and_gradient", "loglik_gradient",
           "loglik_hessian"]
