"""Parity: does an artifact compute what its source model computes?

Float artifacts must stay within the profile's tolerance, scaled by the output range, of
the source computed at the profile's precision (fp16: with its weights rounded to fp16).
Quantized artifacts must agree with the source's top-1 on at least the profile's floor
(silent accuracy collapse after int8 is the most common complaint in this field);
max abs error, MSE, cosine similarity and SNR are reported for every artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from compressor.errors import ParityError
from targets.profiles import Parity


@dataclass
class ParityResult:
    samples: int
    max_abs: float
    mse: float
    cosine: float
    snr_db: float
    agreement: float | None  # top-1 agreement (classifier outputs only)
    samples_over_tolerance: int | None  # how many samples exceed the float tolerance anywhere
    tolerance: float | None
    min_agreement: float | None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _snr_db(reference: np.ndarray, error: np.ndarray) -> float:
    signal, noise = float(np.mean(reference**2)), float(np.mean(error**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a.ravel(), b.ravel()) / denom) if denom else 1.0


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], rule: Parity, *,
            at_precision: list[np.ndarray] | None = None) -> ParityResult:
    """Compare the outputs of a source model and an artifact on the same samples.

    ``at_precision``: the source's outputs computed at the profile's precision (see
    ``Parity.weights``); the tolerance is checked against them, everything else against
    ``reference`` (the fp32 source).
    """
    if len(reference) != len(candidate):
        raise ParityError(f"artifact has {len(candidate)} outputs, the source model {len(reference)}")
    at_precision = reference if at_precision is None else at_precision
    failures, max_abs, mse, cosines, snrs, agreements, scale = [], 0.0, 0.0, [], [], [], 1.0
    per_sample = np.zeros(len(reference[0]) if reference else 0)
    for index, (ref, got, near) in enumerate(zip(reference, candidate, at_precision)):
        ref, got, near = np.asarray(ref, np.float64), np.asarray(got, np.float64), np.asarray(near, np.float64)
        if ref.shape != got.shape:
            raise ParityError(f"output {index}: artifact shape {got.shape} differs from the source's {ref.shape}")
        error = got - near
        max_abs = max(max_abs, float(np.max(np.abs(error))) if error.size else 0.0)
        if error.size and error.ndim and len(error) == len(per_sample):
            per_sample = np.maximum(per_sample, np.abs(error).reshape(len(error), -1).max(axis=1))
        mse = max(mse, float(np.mean((got - ref) ** 2)) if error.size else 0.0)
        cosines.append(cosine_similarity(ref, got))
        snrs.append(_snr_db(ref, got - ref))
        scale = max(scale, float(np.max(np.abs(ref))) if ref.size else 1.0)
        if ref.ndim == 2 and ref.shape[-1] > 1:
            agreements.append(float(np.mean(np.argmax(ref, -1) == np.argmax(got, -1))))
    agreement = min(agreements) if agreements else None
    tolerance = rule.max_abs * scale if rule.max_abs is not None else None
    over = int(np.sum(~(per_sample <= tolerance))) if tolerance is not None else None
    if tolerance is not None and not max_abs <= tolerance:
        detail = f" on {over} of {len(per_sample)} samples" if over else ""
        if agreement is not None:
            detail += f"; top-1 agreement {agreement:.1%}"
        failures.append(f"max abs diff {max_abs:.3g} exceeds tolerance {tolerance:.3g}{detail}")
    if rule.min_agreement is not None:
        if agreement is not None and not agreement >= rule.min_agreement:
            failures.append(f"top-1 agreement {agreement:.1%} is below the floor {rule.min_agreement:.0%}")
        if agreement is None and not min(snrs) >= rule.min_snr_db:
            failures.append(f"output SNR {min(snrs):.1f} dB is below the floor {rule.min_snr_db:g} dB")
    return ParityResult(len(reference[0]) if reference else 0, max_abs, mse, min(cosines), min(snrs), agreement,
                        over, tolerance, rule.min_agreement, failures)
