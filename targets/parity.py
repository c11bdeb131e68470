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
from compressor.metrics import compare as metrics
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
    outputs: list[dict] = field(default_factory=list)  # the same figures for each output, by name
    failed_checks: list[str] = field(default_factory=list)  # which bounds failed: max_abs, agreement, snr
    noise_outliers: int = 0  # samples over the float tolerance forgiven as arithmetic noise (Parity.outlier_share)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], rule: Parity, *,
            at_precision: list[np.ndarray] | None = None, names: list[str] | None = None,
            class_outputs: list[bool] | None = None, passthrough: dict[int, str] | None = None) -> ParityResult:
    """Compare the outputs of a source model and an artifact on the same samples, output by output.

    ``at_precision``: the source's outputs computed at the profile's precision (see
    ``Parity.weights``); the tolerance is checked against them, everything else against
    ``reference`` (the fp32 source). ``class_outputs``: which outputs hold class scores
    (top-1 agreement); the others are held to the SNR floor. By default a 2-D output with
    several columns counts as class scores. ``passthrough``: outputs that carry no computation
    (``compressor.models.source.passthrough_outputs``), by index with why: each must equal the
    source's exactly, and none enters the summary figures or scales the float tolerance (an int64
    copy of token ids would otherwise widen it to thousands).
    """
    if len(reference) != len(candidate):
        raise ParityError(f"artifact has {len(candidate)} outputs, the source model {len(reference)}")
    at_precision = reference if at_precision is None else at_precision
    names = names or [f"output {i}" for i in range(len(reference))]
    if class_outputs is None:
        class_outputs = [metrics.is_class_scores(r) for r in reference]
    passthrough = passthrough or {}
    outputs = [_compare_output(name, np.asarray(ref, np.float64), np.asarray(got, np.float64),
                               np.asarray(near, np.float64), scores)
               for name, ref, got, near, scores in zip(names, reference, candidate, at_precision, class_outputs)]
    for index, why in passthrough.items():
        outputs[index]["passthrough"] = why
        outputs[index]["agreement"] = None
    return _judge(outputs, rule, len(reference[0]) if reference else 0)


def _compare_output(name: str, ref, got, near, scores: bool) -> dict:
    if ref.shape != got.shape:
        raise ParityError(f"{name}: artifact shape {got.shape} differs from the source's {ref.shape}")
    error = got - near
    per_sample = np.abs(error).reshape(len(error), -1).max(axis=1) if error.size and error.ndim else np.zeros(0)
    return {"name": name, "max_abs": metrics.max_abs(near, got), "mse": metrics.mse(ref, got),
            "cosine": metrics.cosine(ref, got), "snr_db": metrics.snr_db(ref, got),
            "scale": float(np.max(np.abs(ref))) if ref.size else 1.0,
            "agreement": metrics.agreement(ref, got) if scores else None,
            "per_sample": per_sample}


def _passthrough_failures(outputs: list[dict], rule: Parity) -> tuple[list[str], list[str]]:
    """Pass-through outputs that differ from the source's: what failed, and which check."""
    failures, kinds = [], []
    for o in outputs:
        if not o.get("passthrough") or o["max_abs"] == 0.0:
            continue
        # an integer output the model computes (indices, argmax) may differ where the scores it
        # is taken from do: on as many samples as the agreement floor allows; copies never
        equal = float(np.mean(o["per_sample"] == 0)) if len(o["per_sample"]) else 0.0
        allowed = (rule.min_agreement or 1.0) if o["passthrough"] == "integer" else 1.0
        if equal < allowed:
            failures.append(f"output '{o['name']}' ({o['passthrough']} in the source) differs on "
                            f"{1 - equal:.1%} of samples, by up to {o['max_abs']:.3g}")
            kinds.append("passthrough" if allowed == 1.0 else "agreement")
    return failures, kinds


def _noise(judged: list[dict], rule: Parity, over: int, samples: int, agreement: float | None) -> bool:
    """Whether the samples over the float tolerance are arithmetic noise: few of them, and the
    outputs keep a float SNR and their top-1 (a conversion bug moves every sample)."""
    return (over <= int(rule.outlier_share * samples) and min(o["snr_db"] for o in judged) >= rule.noise_snr_db
            and (agreement is None or agreement >= 0.99))


def _judge(outputs: list[dict], rule: Parity, samples: int) -> ParityResult:
    failures, kinds = _passthrough_failures(outputs, rule)
    judged = [o for o in outputs if not o.get("passthrough")] or outputs
    scale = max([1.0] + [o["scale"] for o in judged])
    max_abs = max(o["max_abs"] for o in judged)
    per_sample = np.zeros(samples)
    for o in judged:
        if len(o["per_sample"]) == samples:
            per_sample = np.maximum(per_sample, o["per_sample"])
    agreements = [o["agreement"] for o in judged if o["agreement"] is not None]
    agreement = min(agreements) if agreements else None
    tolerance = rule.max_abs * scale if rule.max_abs is not None else None
    over = int(np.sum(~(per_sample <= tolerance))) if tolerance is not None else None
    forgiven = tolerance is not None and not max_abs <= tolerance and _noise(judged, rule, over, samples, agreement)
    if tolerance is not None and not max_abs <= tolerance and not forgiven:
        detail = f" on {over} of {samples} samples" if over else ""
        if agreement is not None:
            detail += f"; top-1 agreement {agreement:.1%}"
        failures.append(f"max abs diff {max_abs:.3g} exceeds tolerance {tolerance:.3g}{detail}")
        kinds.append("max_abs")
    if rule.min_agreement is not None:
        for o in judged:
            where = f"output '{o['name']}': " if len(outputs) > 1 else ""
            if o["agreement"] is not None and not o["agreement"] >= rule.min_agreement:
                failures.append(f"{where}top-1 agreement {o['agreement']:.1%} is below the floor "
                                f"{rule.min_agreement:.0%}")
                kinds.append("agreement")
            if o["agreement"] is None and not o["snr_db"] >= rule.min_snr_db:
                failures.append(f"{where}output SNR {o['snr_db']:.1f} dB is below the floor {rule.min_snr_db:g} dB")
                kinds.append("snr")
    per_output = [{k: v for k, v in o.items() if k not in ("per_sample", "scale")} for o in outputs]
    return ParityResult(samples, max_abs, max(o["mse"] for o in judged), min(o["cosine"] for o in judged),
                        min(o["snr_db"] for o in judged), agreement, over, tolerance, rule.min_agreement, failures,
                        per_output, list(dict.fromkeys(kinds)), over if forgiven else 0)
