"""Classification metrics: top-1, top-5, and the decision of one sigmoid unit."""

from __future__ import annotations

from typing import Callable

import numpy as np

from compressor.metrics import Metric, register, register_task
from compressor.metrics.compare import top1
from compressor.metrics.task import TaskMetric, output_index


def _top_k(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    if k == 1:
        return top1

    def compute(outputs: np.ndarray, labels: np.ndarray) -> float:
        best = np.argsort(-outputs, axis=-1)[:, :k]
        return float(np.mean(np.any(best == labels[:, None], axis=1)))

    return compute


def _is_classifier(min_classes: int) -> Callable[[np.ndarray], bool]:
    return lambda outputs: outputs.ndim == 2 and outputs.shape[1] >= min_classes


def _binary(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((outputs[:, 0] > 0.5) == (labels > 0)))


register(Metric("top1", True, _top_k(1), _is_classifier(2)))
register(Metric("top5", True, _top_k(5), _is_classifier(10)))  # top-5 of fewer than 10 classes says little
# one sigmoid unit (a detector's objectness, a yes/no head): the decision at 0.5
register(Metric("binary", True, _binary, lambda outputs: outputs.ndim == 2 and outputs.shape[1] == 1))


def _task_top1(outputs: list, truth: np.ndarray, options: dict) -> dict:
    scores = np.asarray(outputs[output_index(options, outputs)])
    return {"top1": float(np.mean(np.argmax(scores, axis=-1) == truth))}


# top-1 as a task metric: one head of a model with several (``--metric "top1;retrieval:output=1"``),
# against its labels (``y``, or ``y_<output>`` by ``labels=``) or, without, the float model's choices
register_task(TaskMetric(
    "top1", True, "top-1 points", _task_top1,
    truth_from_outputs=lambda outputs, options: np.argmax(outputs[output_index(options, outputs)], axis=-1),
    truth_from_labels=lambda labels, options: np.asarray(labels[options["labels"]]),
    label_keys=("{labels}",), defaults={"output": 0, "labels": "y"},
    description="top-1 of one class-score output (for a head among several)"))
