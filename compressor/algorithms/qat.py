"""Quantization-aware training with tensorflow-model-optimization.

The model trains with int8 fake-quantization so that the int8 export that follows loses
less. A model that earlier steps made sparse or clustered keeps that structure through
QAT with tfmot's collaborative-optimization schemes (prune- or cluster-preserving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from compressor import keras_env
from compressor.algorithms import training
from compressor.algorithms.step import StepConfig, fine_tuning, register_step

@dataclass(frozen=True)
class QAT(StepConfig):
    """Quantization-aware training (tfmot); keeps sparsity/clusters of earlier steps."""

    type: ClassVar[str] = "qat"
    preserve: Literal["auto", "none", "sparsity", "clusters"] = "auto"


SPARSE_ENOUGH = 0.2  # the kernel sparsity from which "auto" keeps the sparsity
QUANTIZABLE_KERNELS = ("Conv2D", "Dense", "DepthwiseConv2D")


def _tfmot():
    keras_env.tf_keras()
    import tensorflow_model_optimization as tfmot

    return tfmot


def _kernels(model):
    return [layer.kernel.numpy() for layer in model.layers
            if type(layer).__name__ in QUANTIZABLE_KERNELS and hasattr(layer, "kernel")]


def detect_structure(model) -> str:
    """"sparsity", "clusters" or "none": what QAT should preserve."""
    kernels = _kernels(model)
    if not kernels:
        return "none"
    if np.mean([np.mean(k == 0) for k in kernels]) >= SPARSE_ENOUGH:
        return "sparsity"
    if all(np.unique(k).size <= 256 for k in kernels if k.size > 256):
        return "clusters"
    return "none"


def _kernel_sparsity(model) -> dict[str, float]:
    return {layer.name: float(np.mean(layer.kernel.numpy() == 0)) for layer in model.layers
            if type(layer).__name__ in QUANTIZABLE_KERNELS and hasattr(layer, "kernel")}


def quantize_aware(model, data, config, fine_tune, *, seed: int = 0, trust_model: bool = False):
    """Fine-tune ``model`` with int8 fake quantization; return ``(qat_model, record)``."""
    tfmot = _tfmot()
    preserve = detect_structure(model) if config.preserve == "auto" else config.preserve
    copy = training.copy(model, trust_model=trust_model)

    def annotate(layer):
        if training.is_excluded(layer, config.exclude):
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    if config.exclude:
        annotated = training.clone(copy, annotate, trust_model=trust_model)
    else:
        annotated = tfmot.quantization.keras.quantize_annotate_model(copy)
    scheme = {"sparsity": tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
              "clusters": tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme()}.get(preserve)
    with tfmot.quantization.keras.quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(annotated, scheme) if scheme else \
            tfmot.quantization.keras.quantize_apply(annotated)
    before = _kernel_sparsity(model)
    training.fit(qat, data, fine_tune, seed=seed)
    return qat, {"preserve": preserve, "partial": bool(config.exclude), "excluded": list(config.exclude),
                 "sparsity_before": float(np.mean(list(before.values()))) if before else 0.0}


register_step(QAT, position="last", why_position="the model it makes is fake-quantized and cannot be pruned or "
              "clustered further")(fine_tuning(quantize_aware))
