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


# The activations tfmot's int8 QAT has a fake-quantization rule for (its activation quantize config).
TFMOT_ACTIVATIONS = frozenset({"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"})


def _takes_integers(layer) -> bool:
    tf = keras_env.tf()
    try:
        return any(t.dtype.is_integer for t in tf.nest.flatten(layer.input))
    except (AttributeError, ValueError):  # a layer with several call nodes has no single input
        return False


def _folded_into_producer(layer) -> bool:
    """A BatchNormalization right after a convolution without activation: tfmot's graph
    transforms fold it into the convolution (its registry does not list it)."""
    if type(layer).__name__ != "BatchNormalization":
        return False
    producers = [node.inbound_layers for node in layer._inbound_nodes]
    producer = producers[0] if producers and not isinstance(producers[0], list) else None
    return (type(producer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")
            and getattr(producer.activation, "__name__", "") == "linear")


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
    large = [k for k in kernels if k.size > 256]  # a small kernel has few distinct values anyway
    if large and all(np.unique(k).size <= 256 for k in large):
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
    annotate, unsupported, scope = _annotator(tfmot, config)
    annotated = training.clone(copy, annotate, trust_model=trust_model)
    scheme = {"sparsity": tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme(),
              "clusters": tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme()}.get(preserve)
    with tfmot.quantization.keras.quantize_scope(scope):
        qat = tfmot.quantization.keras.quantize_apply(annotated, scheme) if scheme else \
            tfmot.quantization.keras.quantize_apply(annotated)
    before = _kernel_sparsity(model)
    training.fit(qat, data, fine_tune, seed=seed)
    record = {"preserve": preserve, "partial": bool(config.exclude or unsupported), "excluded": list(config.exclude),
              "left_float": unsupported, "sparsity_before": float(np.mean(list(before.values()))) if before else 0.0}
    if unsupported:
        kinds = ", ".join(sorted(set(unsupported.values())))
        record["notes"] = [f"left in float where tfmot's int8 QAT cannot quantize them ({kinds}; their outputs are "
                           f"int8 where int8 layers follow): {', '.join(unsupported)}"]
    return qat, record


def _annotator(tfmot, config):
    """How each layer is annotated for tfmot's int8 QAT; the layers it leaves in float (filled as
    the model is cloned), by name with why; the quantize configs' scope."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs, default_8bit_quantize_registry as registry_module)

    registry = registry_module.Default8BitQuantizeRegistry()
    unsupported: dict[str, str] = {}
    # A layer tfmot's int8 registry lacks (Rescaling, a BatchNormalization it cannot fold, a
    # custom layer) computes in float and is fake-quantized at its output, so the int8 layers
    # after it still get a trained range; excluded layers are left wholly float.
    output_only, keep_float = configs.Default8BitOutputQuantizeConfig(), configs.NoOpQuantizeConfig()
    annotate_layer = tfmot.quantization.keras.quantize_annotate_layer

    def annotate(layer):
        if type(layer).__name__ == "InputLayer":
            return layer
        if training.is_excluded(layer, config.exclude):
            return annotate_layer(layer, quantize_config=keep_float)
        if _takes_integers(layer):  # token ids: tfmot would fake-quantize the int input in front of it
            unsupported[layer.name] = f"{type(layer).__name__} on integer input"
            return layer
        activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if activation not in TFMOT_ACTIVATIONS:  # MobileNetV3's hard_silu: tfmot has no fake-quant rule for it
            unsupported[layer.name] = f"{type(layer).__name__}({activation})"
            return annotate_layer(layer, quantize_config=output_only)
        if registry.supports(layer) or _folded_into_producer(layer):
            return annotate_layer(layer)
        unsupported[layer.name] = getattr(layer, "wrapped_class", None) or type(layer).__name__
        return annotate_layer(layer, quantize_config=output_only)

    return annotate, unsupported, {type(c).__name__: type(c) for c in (output_only, keep_float)}


register_step(QAT, position="last", why_position="the model it makes is fake-quantized and cannot be pruned or "
              "clustered further")(fine_tuning(quantize_aware))
