"""Int8 within an accuracy budget: find the layers whose quantization costs accuracy, by
measuring, and keep the fewest of them in float.

The cheap per-tensor statistics (a layer's own quantization error) do not find the layers
that matter, and neither does keeping one layer at a time in float: in a chain of int8 ops
the float island still reads and writes int8 tensors, and a layer norm quantized in seven
places stays broken when one of them is float. What matters is what quantizing each layer
does to the model's output. So:

1. **Sensitivity**: for each candidate layer (every op the runtime quantizes), quantize that
   layer alone, every other one in float, and measure the output's noise against the float
   model on a small subset, as a share of full int8's noise. The layers whose quantization
   alone makes the most of it rank first. With several outputs, the output the budget is on
   and every output under the parity floor in full int8 are watched; a layer ranks by its
   largest share. On models with many layers, runs of consecutive layers are measured first
   and a run is opened only when it may hold the next layer in the order (``_Ranking``): the
   ranking is measured only as far as the confirmation needs it.
2. **Confirmation**: keep the top 1, 2, 3, 4, 6, 8, ... layers in float, each candidate
   evaluated on the whole validation set, until the budget holds and every output passes the
   parity floor its export will check. Where the runtime can, each candidate is first edited
   from full int8 (no quantization); the one that holds is then quantized for real and must
   hold again.

Memory stays bounded by the subset and the validation set (outputs only, never activations).
Runtimes opt in by declaring ``Runtime.mixed`` (LiteRT: the converter's denylisted nodes;
ONNX Runtime: ``nodes_to_exclude``; OpenVINO: NNCF's ignored scope).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor import interrupts
from compressor.cpu import usable_cores
from compressor.errors import one_line
from compressor.metrics.compare import mse
from compressor.metrics.loss import Loss, measure, within
from compressor.progress import time_left
from targets.runtime import get_runtime, run_batched

SUBSET = 128  # samples the sensitivity pass runs on
RUNS = 16  # more candidates than twice this: runs of consecutive ones are measured first, this many
SEARCH = True  # False: no layer may be kept in float (the ladder's other rungs only)
STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
MAX_THREADS = 4  # candidates measured at once, at most, where the runtime allows (and the cores)
CONFIRM_BY_EDIT = True  # each k first edited from full int8 where the runtime can (False: quantized each time)


@dataclass(frozen=True)
class Outputs:
    """The float model's outputs on some samples, and what an artifact's are judged by: the
    budget on output ``head`` (top-1 with ``labels`` or agreement, else SNR; against
    ``baseline``, the model before compression, when given), the parity ``floor`` on all."""

    references: list  # the float model's outputs, one array per output
    head: int
    classifier: bool
    labels: np.ndarray | None = None
    baseline: list | None = None  # the budget's references (one per output), when not the float model's
    floor: object = None  # targets.profiles.Parity: the hard floor the export checks, on every output
    names: tuple = ()
    class_outputs: tuple | None = None
    also: tuple = ()  # without class scores: further outputs the budget judges, the worst SNR counting
    passthrough: dict | None = None  # outputs that carry no computation (parity: equality only)
    budget_pp: float = 1.0  # what an artifact may lose: top-1 points (class scores) ...
    min_snr_db: float | None = None  # ... or, without class scores, the SNR floor
    metric: object = None  # ... or a task metric's points (compressor.metrics.task.ChosenMetric)
    truth: dict | None = None  # the data's t_* arrays for the task metric (None: the float model's outputs)

    def take(self, n: int) -> "Outputs":
        """The first ``n`` samples, unlabelled (the sensitivity pass ranks on agreement and SNR)."""
        return dataclasses.replace(self, references=[r[:n] for r in self.references], labels=None, truth=None,
                                   baseline=None if self.baseline is None else [b[:n] for b in self.baseline])

    def judge(self, outputs: list) -> Loss:
        """``outputs`` (an artifact's, on the same samples) in the budget's measure, floor checked."""
        references = self.references if self.baseline is None else self.baseline
        if self.metric is not None:  # the task metric's points; the worst SNR beside it
            from targets.budget.measure import metric_loss

            snr = min(measure(outputs[i], references[i], None, False).snr_db for i in (self.head, *self.also))
            measured = Loss(metric_loss(self.metric, outputs, references, self.truth)["drop_pp"], None, snr)
        elif self.classifier:
            measured = measure(outputs[self.head], references[self.head], self.labels, True)
        else:  # every judged output, the worst SNR counting
            measured = min((measure(outputs[i], references[i], None, False) for i in (self.head, *self.also)),
                           key=lambda q: q.snr_db)
        if self.floor is not None:
            measured.below_floor = self._floor_check(outputs).failures
        return measured

    def watched(self, outputs: list) -> list[int]:
        """The outputs the ranking follows: the budget's, and each one under the floor here."""
        if self.floor is None or len(self.references) == 1:
            return [self.head, *self.also]
        check = self._floor_check(outputs)
        under = [i for i, o in enumerate(check.outputs) if any(f"output '{o['name']}'" in f for f in check.failures)]
        return sorted({self.head, *self.also, *under})

    def _floor_check(self, outputs: list):
        from targets import parity

        return parity.compare(self.references, outputs, self.floor, names=list(self.names) or None,
                              class_outputs=None if self.class_outputs is None else list(self.class_outputs),
                              passthrough=self.passthrough)


@dataclass
class Recovery:
    """What the search measured: the full-int8 quality, each layer's sensitivity, each k tried."""

    budget_pp: float
    min_snr_db: float | None = None  # a model without class scores: the SNR floor is the budget
    full_int8_subset: dict | None = None  # full int8 on the sensitivity pass's samples
    full_int8_p50_ms: float | None = None
    sensitivity: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # with more layers than the pass measures: runs of them first
    tried: list[dict] = field(default_factory=list)
    float_nodes: list[str] | None = None  # the answer; None: nothing met the budget
    seconds: float = 0.0
    candidates: int = 0
    measurements: int = 0  # quantizations measured by the ranking (runs of layers and layers)

    def closest(self) -> dict | None:
        """The k that came closest: among those quantized for real when any was (an edit that held
        and then did not is no answer), else among the edited ones."""
        tried = [t for t in self.tried if not t.get("edited")] or self.tried
        if self.min_snr_db is not None:
            return max(tried, key=lambda t: (t["snr_db"], -t["k"])) if tried else None
        scored = [t for t in tried if t.get("drop_pp") is not None]
        return min(scored, key=lambda t: (t["drop_pp"], t["k"])) if scored else None

    def holds(self, measured: Loss) -> bool:
        """Within the budget, and above the parity floor that the artifact's export will check."""
        drop = None if self.min_snr_db is not None else measured.drop_pp
        return not measured.below_floor and within(drop, measured.snr_db, self.budget_pp, self.min_snr_db)

    def to_dict(self) -> dict:
        return {"budget_pp": self.budget_pp, "min_snr_db": self.min_snr_db, "full_int8_subset": self.full_int8_subset,
                "full_int8_p50_ms": self.full_int8_p50_ms,
                "sensitivity": self.sensitivity, "runs": self.runs,
                "tried": self.tried, "float_nodes": self.float_nodes, "seconds": round(self.seconds, 1),
                "candidates": self.candidates, "measurements": self.measurements}


class _Evaluator:
    """Each candidate set of float layers quantized, run on some samples, and deleted: its outputs."""

    def __init__(self, runtime, mixed, workdir: Path) -> None:
        self.runtime, self.mixed, self.workdir = runtime, mixed, workdir
        self._numbers = itertools.count(1)  # each candidate's folder (next() is atomic: threads may ask)

    def __call__(self, float_nodes, feeds, timer=None, *, alone=None) -> tuple[list[np.ndarray], float | None]:
        """The outputs on ``feeds``, and with ``timer`` the candidate's p50 on the first sample (ms).
        ``alone``: only these nodes in int8, from full int8 where the runtime can (``write_alone``:
        no quantization per candidate), else by quantizing with every other node in float."""
        folder = self.workdir / f"candidate-{next(self._numbers)}"
        folder.mkdir()
        try:
            destination = folder / f"model{getattr(self.mixed, 'suffix', '')}"
            if alone is not None and callable(getattr(self.mixed, "write_alone", None)):
                details = self.mixed.write_alone(list(alone), destination) or {}
            else:
                details = self.mixed.write(list(float_nodes), destination) or {}
            runner = self.runtime.load(destination, threads=1, details=details)
            try:
                outputs = run_batched(runner, feeds)
                return outputs, None if timer is None else round(float(timer(runner, _take(feeds, 1))), 4)
            finally:
                runner.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


    def each(self, measure, items: list, float_node_sets: list[list[str]]) -> Iterator:
        """``measure(item)`` for each item, in order, or the exception it raised; each evaluates
        the float nodes of ``float_node_sets`` at the same position. In threads where the runtime's
        candidates may be written, loaded and run at once (``mixed.concurrent``: ONNX Runtime and
        OpenVINO run and compile without the GIL), else one by one, the runtime told what comes
        (``mixed.ahead``: LiteRT's helper process)."""
        threads = min(usable_cores(), MAX_THREADS) if getattr(self.mixed, "concurrent", False) else 1
        if threads > 1 and len(items) > 1:
            with ThreadPoolExecutor(threads) as pool:
                yield from pool.map(lambda item: _outcome(measure, item), items)
            return
        if callable(getattr(self.mixed, "ahead", None)):
            self.mixed.ahead([list(nodes) for nodes in float_node_sets])
        yield from one_by_one(measure, items)

    def close(self) -> None:
        if callable(getattr(self.mixed, "close", None)):
            self.mixed.close()


def _outcome(measure, item):
    """``measure(item)``, or the exception it raised (an interrupt is raised)."""
    try:
        return measure(item)
    except Exception as exc:  # noqa: BLE001 - the caller decides: a layer that cannot be quantized alone
        if interrupts.interrupted(exc):
            raise
        return exc


def one_by_one(measure, items: list) -> Iterator:
    for item in items:
        yield _outcome(measure, item)


def _take(feeds, n: int):
    return [array[:n] for array in feeds] if isinstance(feeds, list) else feeds[:n]


class _Ranking:
    """The candidates, the one whose quantization alone makes the largest share of full int8's
    output noise first, measured only as far as the confirmation asks for them.

    With more than ``2 * RUNS`` candidates, runs of consecutive layers are quantized alone first
    (``RUNS`` measurements). Quantizing several layers makes about the sum of the noise each one
    makes alone, so a run's share bounds each of its layers': the run with the largest share is
    opened (its layers measured, in runs again when it is long) until a measured layer's share is
    above every run not opened yet: that layer is next. When a few layers make the noise, the
    ranking costs a few runs' measurements instead of one per layer; when every layer makes some,
    at most ``RUNS`` measurements more than one per layer.
    """

    def __init__(self, share_alone, everything: list[str], record: Recovery, say, name: str,
                 each=one_by_one) -> None:
        self._share_alone, self._record, self._say, self._name = share_alone, record, say, name
        self._each = each  # each(share_alone, parts): the outcomes of a batch of runs or layers, in order
        self._position = {node: index for index, node in enumerate(everything)}
        self._heap: list = []  # (-share, position, nodes, is_layer): measured layers and unopened runs
        self.order: list[str] = []
        self.measurements = 0
        self._open(everything, "")

    def first(self, k: int) -> list[str]:
        """The ``k`` candidates that rank first (fewer when fewer could be measured)."""
        while len(self.order) < k and self._heap:
            _, _, nodes, is_layer = heapq.heappop(self._heap)
            if is_layer:
                self.order.append(nodes[0])
            else:
                self._open(nodes, f" in layers {nodes[0]} .. {nodes[-1]}")
        return self.order[:k]

    def _open(self, nodes: list[str], where: str) -> None:
        """Measure ``nodes`` one by one, or, when many, in ``RUNS`` runs of consecutive ones."""
        size = math.ceil(len(nodes) / RUNS) if RUNS > 0 and len(nodes) > 2 * RUNS else 1
        parts, started = [nodes[i : i + size] for i in range(0, len(nodes), size)], time.perf_counter()
        outcomes = iter(self._each(self._share_alone, parts))
        for index, part in enumerate(parts):
            what = part[0] if size == 1 else f"run {part[0]} .. {part[-1]}"
            self._say(f"{self._name}: sensitivity {index + 1}/{len(parts)}{where}"
                      f"{time_left(started, index, len(parts))}: {what}")
            self.measurements += 1
            outcome = next(outcomes)
            if isinstance(outcome, Exception):  # a layer the quantizer cannot quantize alone: not a candidate
                if size == 1:
                    self._record.sensitivity.append({"node": part[0], "error": one_line(outcome)[:200]})
                    continue
                share, alone = math.inf, None  # a run that cannot: its layers are measured first
            else:
                share, alone = outcome
            if size > 1:
                self._record.runs.append({"first": part[0], "last": part[-1], "layers": len(part),
                                          "noise_share": None if math.isinf(share) else round(share, 4)})
            else:
                self._record.sensitivity.append({"node": part[0], "noise_share": round(share, 4), **alone})
            heapq.heappush(self._heap, (-share, self._position[part[0]], part, size == 1))


def search(source, profile, calibration, feeds, expected: Outputs, *, workdir: Path, timer=None,
           on_progress=None) -> Recovery:
    """The fewest layers to keep in float for ``profile``'s int8 to lose at most ``expected.budget_pp``
    (or, with ``expected.min_snr_db``, for its judged outputs to stay at or above that SNR).

    ``feeds``: the validation inputs (one array per input); ``expected``: the float model's
    outputs on them and how an artifact's are judged (labels, baseline, parity floor). Returns
    the record of the search; its ``float_nodes`` is None when nothing met the budget. Layers
    are ranked against the float ``source``, whose quantization they are. ``timer(runner,
    feeds)``: a loaded candidate's p50 in ms on one sample; with it, full int8 and each k
    tried record their latency (the cost of each k in float).
    """
    started = time.perf_counter()
    say = on_progress or (lambda line: None)
    runtime = get_runtime(profile.runtime)
    mixed = runtime.mixed(source, profile, calibration, workdir)
    evaluate = _Evaluator(runtime, mixed, workdir)
    record = Recovery(expected.budget_pp, expected.min_snr_db)
    everything = list(mixed.nodes) if SEARCH else []
    record.candidates = len(everything)
    if record.candidates:
        try:
            ranking = _rank(evaluate, everything, feeds, expected, record, timer, say, profile.name)
            _confirm(evaluate, ranking.first, feeds, expected, record, timer, say, profile.name)
        finally:
            evaluate.close()
        record.measurements = ranking.measurements
        record.sensitivity.sort(key=lambda s: -s.get("noise_share", -1.0))
    record.seconds = time.perf_counter() - started
    return record


def _rank(evaluate, everything: list[str], feeds, expected: Outputs, record: Recovery, timer, say,
          name: str) -> _Ranking:
    """The candidates' ranking by the share of full int8's output noise that quantizing each one
    alone makes on the pass's subset (measured as far as it is asked)."""
    subset, near = _take(feeds, SUBSET), expected.take(SUBSET)
    full, full_ms = evaluate([], subset, timer)
    record.full_int8_subset, record.full_int8_p50_ms = near.judge(full).to_dict(), full_ms
    watched = near.watched(full)
    noise = {o: mse(full[o], near.references[o]) for o in watched}

    def share_alone(quantized: list[str]) -> tuple[float, dict]:
        """The share of full int8's output noise that quantizing ``quantized`` alone makes, and the
        budget's output measured so."""
        chosen = set(quantized)
        alone, _ = evaluate([other for other in everything if other not in chosen], subset, alone=quantized)
        share = max(mse(alone[o], near.references[o]) / noise[o] if noise[o] > 0 else 0.0 for o in watched)
        return share, measure(alone[expected.head], near.references[expected.head], None,
                              expected.classifier).to_dict()

    def each(measure, parts: list[list[str]]):
        return evaluate.each(measure, parts, [[other for other in everything if other not in set(part)]
                                              for part in parts])

    return _Ranking(share_alone, everything, record, say, name, each)


def _confirm(evaluate, first, feeds, expected: Outputs, record: Recovery, timer, say, name: str) -> None:
    """Keep the ``first(k)`` ranked layers in float for k = 1, 2, 3, 4, 6, ..., each measured on
    every validation sample, until one holds the budget and the floor: that is the record's answer.

    Where the runtime edits its full int8 model (``write_alone``), each k is first measured so,
    with no quantization: only a k that holds there is quantized for real (and must hold again),
    so a search that ends at its first step or finds nothing costs no quantization here."""
    everything = list(evaluate.mixed.nodes)
    steps, started = [k for k in STEPS if k <= len(everything)], time.perf_counter()
    edits = CONFIRM_BY_EDIT and callable(getattr(evaluate.mixed, "write_alone", None))
    for step, k in enumerate(steps):
        float_nodes = first(k)
        if len(float_nodes) < k:  # fewer layers could be ranked: no k this large
            return
        say(f"{name}: {k} layer(s) in float (step {step + 1}/{len(steps)} at most"
            f"{time_left(started, step, len(steps))})")

        if edits and not _holds(evaluate, k, float_nodes, feeds, expected, record, timer,
                                alone=[n for n in everything if n not in set(float_nodes)]):
            continue
        if _holds(evaluate, k, float_nodes, feeds, expected, record, timer):
            record.float_nodes = float_nodes
            return


def _holds(evaluate, k: int, float_nodes: list[str], feeds, expected: Outputs, record: Recovery, timer,
           alone=None) -> bool:
    """``float_nodes`` in float (edited from full int8: only ``alone`` in int8) measured on every
    validation sample and recorded in ``record.tried``: does it hold the budget and the floor?"""
    outputs, ms = evaluate(float_nodes, feeds, timer, alone=alone)
    measured = expected.judge(outputs)
    record.tried.append({"k": k, "float_nodes": float_nodes, **({"edited": True} if alone is not None else {}),
                         **measured.to_dict(), **({"p50_ms": ms} if timer else {})})
    return record.holds(measured)
