"""Metrics: one registry, each computation in one place.

- :mod:`.compare`: how one output follows its reference (SNR, cosine, max abs, MSE, top-1
  agreement) — parity, the accuracy budget, the sensitivity ranking and the benchmarks'
  fidelity all use these;
- :mod:`.loss`: what an artifact lost in the budget's measure, whether that is within the
  budget, and how it reads;
- ``METRICS``: metrics of one class-score output and its labels (top-1, top-5, ...), which the
  benchmarks compute wherever they apply;
- ``TASKS``: the task metrics a user chooses (``--metric detect:layout=yolov8``): mAP, mIoU,
  CER, retrieval, regression error, computed over all of a model's outputs against the
  dataset's truth (``t_*`` arrays) or, without it, against the float model's own outputs
  (:mod:`.task`). The budget, the search and the reports judge in the chosen one's unit.

A new metric is one module here with one ``register(...)`` or ``register_task(...)``: the
package imports every module in it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A task metric: its ``name``, whether higher is better, and ``compute(outputs, labels)``
    for the outputs it ``applies`` to."""

    name: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]  # (outputs, labels) -> value
    applies: Callable[[np.ndarray], bool] = lambda outputs: True
    unit: str = "points"  # what a drop is counted in: 100 x the value's difference


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    from compressor.errors import BadInputError

    if name not in METRICS:
        raise BadInputError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def evaluate(outputs: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    """Every registered metric that applies to these outputs."""
    if labels is None:
        return {}
    return {m.name: m.compute(outputs, labels) for m in METRICS.values() if m.applies(outputs)}


def drop_points(metrics: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Accuracy drop against the float source, in percentage points (positive = worse)."""
    drops = {}
    for name, value in metrics.items():
        if name in reference:
            sign = 1.0 if METRICS[name].higher_is_better else -1.0
            # rounded: a loss of exactly 1 pt (2 of 200 samples) must not read 1.0000000000000009
            drops[name] = round(sign * (reference[name] - value) * 100.0, 9)
    return drops


TASKS: dict = {}  # name -> compressor.metrics.task.TaskMetric


def register_task(metric):
    TASKS[metric.name] = metric
    return metric


def _discover() -> None:
    """Import every module of this package: importing one registers its metrics."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()

__all__ = ["METRICS", "TASKS", "Metric", "drop_points", "evaluate", "get_metric", "register", "register_task"]
