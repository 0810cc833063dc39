"""The paper's teaching sequence (Rosseel 2021, sec. 4), kept apart from the engine.

``dense`` (the definition, eqs. 48-50), ``objective1`` ... ``objective5`` (secs.
4.2-4.6, each differing from the previous one by the idea the paper names) and
``dutoit`` (sec. 3.4), each a module with ``loglik(data, moments)``; ``design`` holds
the paper-design data and model moments, ``table1`` the timing of Table 1. Nothing here
imports the production engine (:mod:`mlmiss.likelihood`), and the engine imports
nothing from here. ``docs/walkthrough.md`` maps the formulas to the functions.
"""

#: the methods of the paper's Table 1, in its order
OBJECTIVES = ("objective1", "objective2", "objective3", "objective4", "objective5")
