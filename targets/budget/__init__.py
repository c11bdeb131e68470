"""The accuracy budget, above single export attempts: its predicate and record (:mod:`.measure`),
the ladder of rungs tried when an int8 artifact misses it (:mod:`.ladder`), and the sensitivity
ranking that finds the layers to keep in float (:mod:`.sensitivity`)."""

from targets.budget.measure import Budget, budget_for, head_labels
from targets.budget.ladder import within_budget

__all__ = ["Budget", "budget_for", "head_labels", "within_budget"]
