"""EM for two-level models with missing data at both levels (docs/em.md)."""
