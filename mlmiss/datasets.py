"""Built-in data: the paper-design example (:mod:`mlmiss.paper.design`)."""

from .paper.design import paper_example, paper_model_moments

__all__ = ["paper_example", "paper_model_moments"]
