"""Accuracy metrics behind one interface, and the comparison with the float source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from targets.parity import cosine_similarity, snr_db


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]  # (outputs, labels) -> value
    applies: Callable[[np.ndarray], bool] = lambda outputs: True


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    METRICS[metric.name] = metric
    return metric


def _top_k(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    def compute(outputs: np.ndarray, labels: np.ndarray) -> float:
        best = np.argsort(-outputs, axis=-1)[:, :k]
        return float(np.mean(np.any(best == labels[:, None], axis=1)))

    return compute


def _is_classifier(min_classes: int) -> Callable[[np.ndarray], bool]:
    return lambda outputs: outputs.ndim == 2 and outputs.shape[1] >= min_classes


register_metric(Metric("top1", True, _top_k(1), _is_classifier(2)))
register_metric(Metric("top5", True, _top_k(5), _is_classifier(10)))  # top-5 of fewer than 10 classes says little


def _binary(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((outputs[:, 0] > 0.5) == (labels > 0)))


# one sigmoid unit (a detector's objectness, a yes/no head): the decision at 0.5
register_metric(Metric("binary", True, _binary, lambda outputs: outputs.ndim == 2 and outputs.shape[1] == 1))


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


def fidelity(outputs: np.ndarray, reference: np.ndarray, *, scores: bool = True) -> dict[str, float]:
    """How closely an artifact's outputs follow the float source's, sample for sample: max abs,
    MSE, cosine, SNR in dB, and top-1 agreement where the output holds class ``scores``."""
    error = outputs.astype(np.float64) - reference.astype(np.float64)
    result = {"max_abs": float(np.max(np.abs(error))), "mse": float(np.mean(error**2)),
              "cosine": cosine_similarity(reference.astype(np.float64), outputs.astype(np.float64)),
              "snr_db": min(120.0, snr_db(reference.astype(np.float64), error))}  # capped: JSON has no inf
    if scores and outputs.ndim == 2 and outputs.shape[1] > 1:
        result["agreement"] = float(np.mean(outputs.argmax(1) == reference.argmax(1)))
    return result
