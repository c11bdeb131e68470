"""How closely one output follows its reference, sample for sample: the comparisons that parity,
the accuracy budget, the sensitivity ranking and the benchmarks' fidelity all use.

Each is computed here and nowhere else.
"""

from __future__ import annotations

import numpy as np

SNR_CAP_DB = 120.0  # what a JSON document records for "identical" (JSON has no infinity)


def snr_db(reference: np.ndarray, candidate: np.ndarray, *, capped: bool = False) -> float:
    """10 log10(signal / noise) of ``candidate`` against ``reference``: inf when they are equal,
    -inf when the reference is all zeros and the candidate is not; ``capped``: within ±120 dB."""
    reference = np.asarray(reference, np.float64)
    signal = float(np.mean(reference**2)) if reference.size else 0.0
    noise = mse(reference, candidate)
    if noise == 0.0:
        value = float("inf")
    else:
        value = 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")
    return float(np.clip(value, -SNR_CAP_DB, SNR_CAP_DB)) if capped else float(value)


def mse(reference: np.ndarray, candidate: np.ndarray) -> float:
    error = np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)
    return float(np.mean(error**2)) if error.size else 0.0


def max_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    error = np.asarray(candidate, np.float64) - np.asarray(reference, np.float64)
    return float(np.max(np.abs(error))) if error.size else 0.0


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine similarity of the two outputs taken whole; 1 when either is all zeros."""
    a, b = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a.ravel(), b.ravel()) / denom) if denom else 1.0


def agreement_count(reference: np.ndarray, candidate: np.ndarray) -> int:
    """On how many samples the two class-score outputs have the same top-1 class."""
    return int(np.sum(np.argmax(reference, -1) == np.argmax(candidate, -1)))


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Top-1 agreement: the share of samples whose top-1 class is the reference's."""
    return agreement_count(reference, candidate) / len(reference) if len(reference) else 1.0


def correct_count(scores: np.ndarray, labels: np.ndarray) -> int:
    """On how many samples the top-1 class of ``scores`` is the label."""
    return int(np.sum(np.argmax(scores, -1) == labels))


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return correct_count(scores, labels) / len(labels) if len(labels) else 0.0


def is_class_scores(output: np.ndarray) -> bool:
    """A 2-D output with several columns: class scores, by shape."""
    return np.ndim(output) == 2 and np.shape(output)[-1] > 1


def fidelity(reference: np.ndarray, candidate: np.ndarray, *, scores: bool = True) -> dict[str, float]:
    """The comparisons together, JSON-ready: max abs, MSE, cosine, SNR in dB (capped), and top-1
    agreement where the output holds class ``scores``."""
    result = {"max_abs": max_abs(reference, candidate), "mse": mse(reference, candidate),
              "cosine": cosine(reference, candidate), "snr_db": snr_db(reference, candidate, capped=True)}
    if scores and is_class_scores(candidate):
        result["agreement"] = agreement(reference, candidate)
    return result
