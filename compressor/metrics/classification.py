"""Classification metrics: top-1, top-5, and the decision of one sigmoid unit."""

from __future__ import annotations

from typing import Callable

import numpy as np

from compressor.metrics import Metric, register
from compressor.metrics.compare import top1


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
