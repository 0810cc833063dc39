"""Estimation: problems theta -> (log-likelihood, gradient), optimizers, the fixed-x
covariates, and the saturated and baseline reference models. Optimizers see only
problems."""
