"""Int8 within an accuracy budget: find the layers whose quantization costs accuracy, by
measuring, and keep the fewest of them in float.

The cheap per-tensor statistics (a layer's own quantization error) do not find the layers
that matter; what matters is each layer's effect on the model's output. So:

1. **Sensitivity**: for each candidate layer (the runtime's weighted ops), quantize the model
   with that layer alone in float and measure the output's SNR against the float model on a
   small subset. The layers whose float copy lifts the SNR most rank first.
2. **Confirmation**: keep the top 1, 2, 3, 4, 6, 8, ... layers in float, each candidate
   actually quantized and evaluated on the whole validation set, until the budget holds.

Memory stays bounded by the subset and the validation set (outputs only, never activations).
Runtimes opt in by declaring ``Runtime.mixed`` (ONNX Runtime: ``nodes_to_exclude``; OpenVINO:
NNCF's ignored scope).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor import interrupts
from compressor.errors import one_line
from targets.runtime import get_runtime, run_batched

SUBSET = 128  # samples the sensitivity pass runs on
MAX_CANDIDATES = 160  # layers measured one by one (the first ones in graph order beyond that)
STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass
class Quality:
    """How an artifact's primary output compares with the float model's on some samples."""

    drop_pp: float | None  # top-1 points lost against the float model (labels), else 100 x (1 - agreement)
    agreement: float | None
    snr_db: float
    parity: "Quality | None" = None  # against the exported model, when the budget's reference is another

    def to_dict(self) -> dict:
        return {"drop_pp": None if self.drop_pp is None else round(self.drop_pp, 4),
                "agreement": None if self.agreement is None else round(self.agreement, 6),
                "snr_db": round(self.snr_db, 2)}


def quality(output: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, classifier: bool) -> Quality:
    """Top-1 drop (with labels) or disagreement (without), and SNR, of ``output`` against ``reference``."""
    output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    noise = float(np.mean((output - reference) ** 2))
    signal = float(np.mean(reference ** 2))
    snr = 120.0 if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
    if not classifier:
        return Quality(None, None, snr)
    # from counts, so that a drop of exactly the budget (2 samples in 200 against 1 pt) is not
    # 1.0000000000000009 and over it
    n = len(output)
    agree = int(np.sum(output.argmax(-1) == reference.argmax(-1)))
    if labels is None:
        return Quality(100 * (n - agree) / n, agree / n, snr)
    lost = int(np.sum(reference.argmax(-1) == labels)) - int(np.sum(output.argmax(-1) == labels))
    return Quality(100 * lost / n, agree / n, snr)


def within(drop_pp: float | None, snr_db: float | None, budget_pp: float, min_snr_db: float | None) -> bool:
    """A loss within the budget: top-1 points where there are class scores, else the SNR floor."""
    if drop_pp is not None:
        return drop_pp <= budget_pp
    return snr_db is not None and min_snr_db is not None and snr_db >= min_snr_db


def loss_text(drop_pp: float | None, snr_db: float | None, missing: str = "-") -> str:
    """A loss as it reads: "+1.25 pt", or "24.1 dB" for a model without class scores."""
    if drop_pp is not None:
        return f"{drop_pp:+.2f} pt"
    return missing if snr_db is None else f"{snr_db:.1f} dB"


@dataclass
class Recovery:
    """What the search measured: the full-int8 quality, each layer's sensitivity, each k tried."""

    budget_pp: float
    min_snr_db: float | None = None  # a model without class scores: the SNR floor is the budget
    floor: object = None  # the profile's parity rule (targets.profiles.Parity): the hard floor under the budget
    full_int8: dict | None = None
    sensitivity: list[dict] = field(default_factory=list)
    tried: list[dict] = field(default_factory=list)
    float_nodes: list[str] | None = None  # the answer; None: nothing met the budget
    seconds: float = 0.0
    candidates: int = 0

    def closest(self) -> dict | None:
        if self.min_snr_db is not None:
            return max(self.tried, key=lambda t: (t["snr_db"], -t["k"])) if self.tried else None
        scored = [t for t in self.tried if t.get("drop_pp") is not None]
        return min(scored, key=lambda t: (t["drop_pp"], t["k"])) if scored else None

    def holds(self, measured: Quality) -> bool:
        """Within the budget, and above the parity floor that the artifact's export will check."""
        parity = measured.parity or measured
        if self.min_snr_db is not None:
            above = self.floor is None or parity.snr_db >= self.floor.min_snr_db
        else:
            floor = None if self.floor is None else self.floor.min_agreement
            above = floor is None or parity.agreement is None or parity.agreement >= floor
        drop = None if self.min_snr_db is not None else measured.drop_pp
        return above and within(drop, measured.snr_db, self.budget_pp, self.min_snr_db)

    def to_dict(self) -> dict:
        return {"budget_pp": self.budget_pp, "min_snr_db": self.min_snr_db, "full_int8": self.full_int8,
                "sensitivity": self.sensitivity,
                "tried": self.tried, "float_nodes": self.float_nodes, "seconds": round(self.seconds, 1),
                "candidates": self.candidates}


class _Evaluator:
    def __init__(self, runtime, mixed, workdir: Path, head: int, classifier: bool) -> None:
        self.runtime, self.mixed, self.workdir = runtime, mixed, workdir
        self.head, self.classifier = head, classifier
        self.count = 0

    def __call__(self, float_nodes, feeds, reference, labels, baseline=None) -> Quality:
        self.count += 1
        folder = self.workdir / f"candidate-{self.count}"
        folder.mkdir()
        try:
            destination = folder / f"model{getattr(self.mixed, 'suffix', '')}"
            details = self.mixed.write(list(float_nodes), destination) or {}
            runner = self.runtime.load(destination, threads=1, details=details)
            try:
                outputs = run_batched(runner, feeds)
            finally:
                runner.close()
            if baseline is None:
                return quality(outputs[self.head], reference, labels, self.classifier)
            measured = quality(outputs[self.head], baseline, labels, self.classifier)
            measured.parity = quality(outputs[self.head], reference, None, self.classifier)
            return measured
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _take(feeds, n: int):
    return [array[:n] for array in feeds] if isinstance(feeds, list) else feeds[:n]


def search(source, profile, calibration, feeds, reference: np.ndarray, labels: np.ndarray | None, *, head: int,
           classifier: bool, budget_pp: float, workdir: Path, min_snr_db: float | None = None,
           baseline: np.ndarray | None = None, floor=None, on_progress=None) -> Recovery:
    """The fewest layers to keep in float for ``profile``'s int8 to lose at most ``budget_pp``
    (or, with ``min_snr_db``, for its output to stay at or above that SNR).

    ``feeds``: the validation inputs (one array per input); ``reference``: the float model's
    primary output on them; ``labels``: their labels, or None (agreement then). Returns the
    record of the search; its ``float_nodes`` is None when nothing met the budget.
    ``baseline``: the output of the model the budget is measured against, when not ``source``
    (layers are still ranked against ``source``, whose quantization they are). ``floor``: the
    profile's parity rule; a set of float layers counts only if the artifact will also pass it.
    """
    started = time.perf_counter()
    say = on_progress or (lambda line: None)
    runtime = get_runtime(profile.runtime)
    mixed = runtime.mixed(source, profile, calibration, workdir)
    evaluate = _Evaluator(runtime, mixed, workdir, head, classifier)
    record = Recovery(budget_pp, min_snr_db, floor)
    nodes = list(mixed.nodes)[:MAX_CANDIDATES]
    record.candidates = len(nodes)
    if not nodes:
        return record
    subset, subset_ref = _take(feeds, SUBSET), reference[:SUBSET]
    base = evaluate([], subset, subset_ref, None)
    record.full_int8 = base.to_dict()
    ranked = []
    for index, node in enumerate(nodes):
        say(f"{profile.name}: sensitivity {index + 1}/{len(nodes)}: {node}")
        try:
            measured = evaluate([node], subset, subset_ref, None)
        except Exception as exc:  # a layer the quantizer cannot leave out alone: not a candidate
            if interrupts.interrupted(exc):
                raise
            record.sensitivity.append({"node": node, "error": one_line(exc)[:200]})
            continue
        ranked.append((measured.snr_db - base.snr_db, node, measured))
        record.sensitivity.append({"node": node, "snr_gain_db": round(measured.snr_db - base.snr_db, 2),
                                   **measured.to_dict()})
    ranked.sort(key=lambda item: (-item[0], nodes.index(item[1])))
    record.sensitivity.sort(key=lambda s: -s.get("snr_gain_db", -1e9))
    order = [node for _, node, _ in ranked]
    for k in [k for k in STEPS if k <= len(order)] or [len(order)]:
        float_nodes = order[:k]
        say(f"{profile.name}: {k} layer(s) in float")
        measured = evaluate(float_nodes, feeds, reference, labels, baseline)
        record.tried.append({"k": k, "float_nodes": float_nodes, **measured.to_dict()})
        if record.holds(measured):
            record.float_nodes = float_nodes
            break
    record.seconds = time.perf_counter() - started
    return record
