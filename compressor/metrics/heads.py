"""Several heads, each judged by its own metric and, if it says so, its own budget: a sentence
encoder's class head by top-1 and its embedding head by retrieval,
``"top1;retrieval:output=1,k=10,max_drop=5"`` (the CLI takes one ``--metric`` per head).

A head's drop is in its own metric's points; ``max_drop=`` on a head is its budget, else the
run's (``--max-drop``). The model's drop is the worst head's, scaled to the run's budget
(``drop × run budget / head budget``), so it is within the run's budget exactly when every head
is within its own; the value is ``1 - that drop / 100`` (the float model scores 1). Each head's
value and drop are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.errors import BadInputError
from compressor.metrics.task import ChosenMetric, TaskMetric

SEPARATOR = ";"
BUDGET = "max_drop"  # a head's own budget, an option of its spec
NAME = "heads"


def split_budget(spec: str) -> tuple[str, float | None]:
    """A head's spec without its ``max_drop=`` option, and that budget (None: the run's)."""
    name, _, rest = spec.partition(":")
    kept, budget = [], None
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key != BUDGET:
            kept.append(item)
            continue
        try:
            budget = float(value)
        except ValueError:
            raise BadInputError(f"metric {spec!r}: {BUDGET}={value!r} is not a number") from None
        if not budget >= 0:
            raise BadInputError(f"metric {spec!r}: {BUDGET} must be >= 0 points, not {value}")
    return name + (":" + ",".join(kept) if kept else ""), budget


@dataclass(frozen=True)
class Heads(ChosenMetric):
    """The heads' metrics as one: ``parts`` with their budgets, and the run's budget."""

    parts: tuple = ()
    budgets: tuple = ()
    max_drop: float | None = None
    given: str = ""

    @property
    def spec(self) -> str:
        return self.given

    def bound(self, max_drop: float | None) -> "Heads":
        """The same heads judged against the run's budget ``max_drop``."""
        return several(self.given, self.parts, self.budgets, max_drop)

    def outputs_read(self, count: int) -> dict[int, bool]:
        read: dict[int, bool] = {}
        for part in self.parts:
            for index, scores in part.outputs_read(count).items():
                read[index] = read.get(index, False) or scores
        return read

    def to_dict(self) -> dict:
        return {**super().to_dict(), "heads": [
            {**part.to_dict(), "max_drop_pp": budget if budget is not None else self.max_drop}
            for part, budget in zip(self.parts, self.budgets)]}


def _scaled(drop: float, budget: float | None, max_drop: float | None) -> float:
    """A head's drop in the run's budget's points: within it exactly when within its own."""
    if budget is None or max_drop is None:
        return drop
    if budget == 0:
        return drop if drop <= 0 else max_drop + drop
    return drop * max_drop / budget


def several(given: str, parts: tuple, budgets: tuple, max_drop: float | None) -> Heads:
    """The heads ``parts`` (chosen metrics) with their ``budgets`` as one metric."""
    labels = [part.spec for part in parts]

    def truth(reference, labels_arrays, options):
        truths = [part.truth(reference, labels_arrays) for part in parts]
        return {"truths": [t for t, _ in truths], "sources": [s for _, s in truths],
                "float": [part.score(reference, t)[part.name] for part, (t, _) in zip(parts, truths)]}

    def score(outputs, found, options):
        values, worst = {}, None
        for label, part, budget, head_truth, reference in zip(labels, parts, budgets, found["truths"],
                                                              found["float"]):
            value = part.score(outputs, head_truth)[part.name]
            drop = part.drop_pp(value, reference)
            values[label], values[f"{label} drop_pp"] = value, drop
            scaled = _scaled(drop, budget, max_drop)
            worst = scaled if worst is None else max(worst, scaled)
        return {NAME: 1.0 - worst / 100.0, **values}

    metric = TaskMetric(NAME, True, "points of the worst head, each against its own budget", score,
                        truth_from_outputs=lambda outputs, options: None, truth=truth,
                        description="several heads, each by its own metric")
    return Heads(metric, {}, tuple(parts), tuple(budgets), max_drop, given)


def parse_heads(spec: str, parse_one, max_drop: float | None = None) -> Heads:
    """``"A;B:k=v,max_drop=5"`` as one metric over those heads (``parse_one`` parses each)."""
    specs = [part.strip() for part in spec.split(SEPARATOR) if part.strip()]
    if not specs:
        raise BadInputError(f"metric {spec!r} names no metric")
    parts, budgets = [], []
    for text in specs:
        bare, budget = split_budget(text)
        parts.append(parse_one(bare))
        budgets.append(budget)
    return several(SEPARATOR.join(specs), tuple(parts), tuple(budgets), max_drop)
