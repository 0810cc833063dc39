"""Built-in data and models: the paper-design example (:mod:`mlmiss.paper.design`) and
the Monte Carlo model of Bentler et al. (2011) (:mod:`mlmiss.paper.bentler2011`)."""

from .paper.bentler2011 import (DESIGNS as BENTLER2011_DESIGNS,
                                TRUE_VALUES as BENTLER2011_TRUE_VALUES,
                                bentler2011_cluster_sizes, bentler2011_model)
from .paper.design import paper_example, paper_model_moments

__all__ = ["paper_example", "paper_model_moments", "bentler2011_model",
           "bentler2011_cluster_sizes", "BENTLER2011_DESIGNS", "BENTLER2011_TRUE_VALUES"]
