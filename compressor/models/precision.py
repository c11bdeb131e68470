"""A Keras model's weights as a converter stores them at a lower precision.

Converters fold each BatchNormalization into the convolution or dense layer before it
(scale into the kernel, shift into the bias) and round the *folded* weights to fp16;
a BatchNormalization with nothing to fold into becomes a multiply and an add with the
folded scale and shift. Rounding the Keras weights one by one differs from that by more
than the rounding itself on BatchNorms with small variances (0.024 on the MobileNetV2
sample's softmax). So the weights here are rounded the converters' way, then expressed
back in the model's own layers (kernel = round(W * s) / s, and the BatchNorm's shift
adjusted), without changing the model's architecture: the model computes
``round(W * s) x + round(folded bias)`` as the converted artifact does.
"""

from __future__ import annotations

import contextlib

import numpy as np

from compressor.models.inspection import flat_layers

FOLDS_INTO = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Dense"}


def _rounded(array: np.ndarray, dtype: str) -> np.ndarray:
    return array.astype(dtype).astype(array.dtype) if array.dtype.kind == "f" else array


def _producer(layer):
    """The layer whose output alone feeds ``layer``, if it feeds nothing else."""
    nodes = layer.inbound_nodes
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, list) else [inbound]
    if len(inbound) != 1 or len(inbound[0].outbound_nodes) != 1:
        return None
    return inbound[0]


def _bn_parts(bn) -> dict[str, np.ndarray] | None:
    """gamma, beta, mean, variance of a BatchNormalization over its last axis (None otherwise)."""
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    if axis not in (-1, len(bn.input_shape) - 1) or not bn.scale or not bn.center:
        return None
    gamma, beta, mean, variance = bn.get_weights()
    return {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance, "eps": bn.epsilon}


def _linear(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def _fold(producer, bn, parts, weights: dict, dtype: str) -> None:
    """Round conv+BN folded; write back kernel' = round(W s) / s and the BN shift that gives round(b_folded)."""
    scale = parts["gamma"] / np.sqrt(parts["variance"] + parts["eps"])
    kernel, *rest = producer.get_weights()
    per_out = scale.reshape(kernel.shape[-2:]) if type(producer).__name__ == "DepthwiseConv2D" else scale
    bias = rest[0] if rest else np.zeros_like(scale)
    safe = np.where(per_out == 0, 1, per_out)
    folded_kernel = _rounded(kernel * per_out, dtype)
    weights[producer.name] = [np.where(per_out == 0, 0, folded_kernel / safe).astype(kernel.dtype), *rest]
    folded_bias = _rounded((bias - parts["mean"]) * scale + parts["beta"], dtype)
    beta = folded_bias - (bias - parts["mean"]) * scale
    weights[bn.name] = [parts["gamma"], beta.astype(parts["beta"].dtype), parts["mean"], parts["variance"]]


def _alone(bn, parts, weights: dict, dtype: str) -> None:
    """A BatchNorm as multiply-and-add: round the folded scale and shift, write back gamma and beta."""
    std = np.sqrt(parts["variance"] + parts["eps"])
    scale = _rounded(parts["gamma"] / std, dtype)
    shift = _rounded(parts["beta"] - parts["mean"] * parts["gamma"] / std, dtype)
    weights[bn.name] = [(scale * std).astype(parts["gamma"].dtype), (shift + parts["mean"] * scale).astype(
        parts["beta"].dtype), parts["mean"], parts["variance"]]


def rounded_weights(model, dtype: str) -> dict[str, list[np.ndarray]]:
    """Each layer's weights (by name) as a converter stores them in ``dtype`` (see the module docstring)."""
    layers = [layer for layer in flat_layers(model) if layer.weights]
    weights = {layer.name: [_rounded(w, dtype) for w in layer.get_weights()] for layer in layers}
    for bn in layers:
        if type(bn).__name__ != "BatchNormalization" or (parts := _bn_parts(bn)) is None:
            continue
        producer = _producer(bn)
        if producer is not None and type(producer).__name__ in FOLDS_INTO and _linear(producer):
            _fold(producer, bn, parts, weights, dtype)
        else:
            _alone(bn, parts, weights, dtype)
    return weights


@contextlib.contextmanager
def weights_as(model, dtype: str):
    """Within the block, ``model`` holds its weights as a converter stores them in ``dtype``."""
    layers = [layer for layer in flat_layers(model) if layer.weights]
    original = {layer.name: layer.get_weights() for layer in layers}
    rounded = rounded_weights(model, dtype)
    try:
        for layer in layers:
            layer.set_weights(rounded[layer.name])
        yield model
    finally:
        for layer in layers:
            layer.set_weights(original[layer.name])
