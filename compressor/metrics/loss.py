"""What an artifact lost against the float model, in the accuracy budget's measure: top-1 points
where the model has class scores (against the labels, or points of disagreement without them),
else the SNR of its outputs. The budget's predicate and the way a loss reads live here too, so
that the export, the search and the reports judge and print a loss the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressor.metrics.compare import agreement_count, correct_count, snr_db


@dataclass
class Loss:
    """How an artifact's output compares with the float model's on some samples."""

    drop_pp: float | None  # top-1 points lost against the float model (labels), else 100 x (1 - agreement)
    agreement: float | None
    snr_db: float
    # what the profile's parity floor refuses in these outputs (every output, against the
    # exported model); None: not checked
    below_floor: list[str] | None = None

    def to_dict(self) -> dict:
        return {"drop_pp": None if self.drop_pp is None else round(self.drop_pp, 4),
                "agreement": None if self.agreement is None else round(self.agreement, 6),
                "snr_db": round(self.snr_db, 2), **({"below_floor": self.below_floor} if self.below_floor else {})}


def measure(output: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, classifier: bool) -> Loss:
    """Top-1 drop (with labels) or disagreement (without), and SNR, of ``output`` against ``reference``."""
    snr = snr_db(reference, output, capped=True)
    if not classifier:
        return Loss(None, None, snr)
    # from counts, so that a drop of exactly the budget (2 samples in 200 against 1 pt) is not
    # 1.0000000000000009 and over it
    n = len(output)
    agree = agreement_count(reference, output)
    if labels is None:
        return Loss(100 * (n - agree) / n, agree / n, snr)
    lost = correct_count(reference, labels) - correct_count(output, labels)
    return Loss(100 * lost / n, agree / n, snr)


def within(drop_pp: float | None, snr: float | None, budget_pp: float, min_snr_db: float | None) -> bool:
    """A loss within the budget: top-1 points where there are class scores, else the SNR floor."""
    if drop_pp is not None:
        return drop_pp <= budget_pp
    return snr is not None and min_snr_db is not None and snr >= min_snr_db


def row_within(drop_pp: float | None, agreement: float | None, snr: float | None, budget_pp: float,
               min_snr_db: float | None) -> bool:
    """A measured artifact within the budget, from what a results row has: its drop in the
    budget's points (a task metric's or top-1's), else its top-1 disagreement in points, else
    its SNR against the floor (None: no floor to miss)."""
    if drop_pp is None and agreement is not None:
        drop_pp = 100 * (1 - agreement)
    if drop_pp is not None:
        return within(drop_pp, None, budget_pp, None)
    return snr is None or min_snr_db is None or within(None, snr, budget_pp, min_snr_db)


def loss_text(drop_pp: float | None, snr: float | None, missing: str = "-") -> str:
    """A loss as it reads: "+1.25 pt", or "24.1 dB" for a model without class scores."""
    if drop_pp is not None:
        return f"{drop_pp:+.2f} pt"
    return missing if snr is None else f"{snr:.1f} dB"


def lost_text(measured: dict) -> str:
    """A missed budget as a sentence's verb: "loses 1.50 pt" or "reaches 24.1 dB SNR"."""
    if measured.get("drop_pp") is not None:
        return f"loses {measured['drop_pp']:.2f} pt"
    return f"reaches {measured['snr_db']:.1f} dB SNR"


def task_texts(task: dict) -> tuple[str, str]:
    """A results row's task metric as it reads: its value ("map 24.50"; per head, "top1 97.00 ·
    retrieval:k=10,output=1 98.90") and its drop in its points ("+0.75"; per head, "+0.00 / +1.10")."""
    heads = [head["spec"] for head in task.get("heads") or []]
    if heads:
        values = task["value"]
        return (" · ".join(f"{head} {values[head] * 100:.2f}" for head in heads),
                " / ".join(f"{values[f'{head} drop_pp']:+.2f}" for head in heads))
    drop = task.get("drop_pp")
    return f"{task['name']} {task['value'][task['name']] * 100:.2f}", "-" if drop is None else f"{drop:+.2f}"
