"""Describe a model: inputs, outputs, layers, parameters, MACs and weight sparsity.

MACs (multiply-accumulates) count the multiplications of weighted layers for one
sample, the convention of most papers and of TFLite's profilers; FLOPs ≈ 2 × MACs.
Element-wise layers (activations, BatchNorm, pooling, Add) count as zero MACs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

MacCounter = Callable[[object, tuple, tuple], int]
MAC_COUNTERS: dict[str, MacCounter] = {}


def mac_counter(*class_names: str):
    """Register a MAC counter for the named layer classes."""

    def register(func: MacCounter) -> MacCounter:
        for name in class_names:
            MAC_COUNTERS[name] = func
        return func

    return register


def _prod(values) -> int:
    """The product of known dimensions: a dynamic one (a sequence's length) counts one position,
    so a text encoder's MACs are per token."""
    return int(np.prod([1 if v is None else int(v) for v in values])) if len(values) else 1


@mac_counter("Conv1D", "Conv2D", "Conv3D")
def _conv_macs(layer, in_shape, out_shape) -> int:
    kernel = layer.kernel.shape  # (*k, in/groups, out)
    return _prod(out_shape[1:-1]) * _prod(kernel)


@mac_counter("DepthwiseConv1D", "DepthwiseConv2D")
def _depthwise_macs(layer, in_shape, out_shape) -> int:
    kernel = layer.depthwise_kernel.shape  # (*k, in, multiplier)
    return _prod(out_shape[1:-1]) * _prod(kernel)


@mac_counter("SeparableConv1D", "SeparableConv2D")
def _separable_macs(layer, in_shape, out_shape) -> int:
    spatial = _prod(out_shape[1:-1])
    return spatial * (_prod(layer.depthwise_kernel.shape) + _prod(layer.pointwise_kernel.shape))


@mac_counter("Dense")
def _dense_macs(layer, in_shape, out_shape) -> int:
    return _prod(out_shape[1:-1]) * _prod(layer.kernel.shape)


@mac_counter("MultiHeadAttention")
def _attention_macs(layer, in_shape, out_shape) -> int:
    """Its four projections at each query position (the score and context products grow with the
    sequence, which a dynamic one leaves unknown: not counted)."""
    return _prod(out_shape[1:-1]) * sum(int(np.prod(w.shape)) for w in layer.weights if _weight_name(w) == "kernel")


def _recurrent_macs(layer, in_shape, gates: int) -> int:
    steps = int(in_shape[1]) if in_shape[1] is not None else 1
    units, features = int(layer.units), int(in_shape[-1])
    return steps * gates * units * (features + units)


@mac_counter("LSTM")
def _lstm_macs(layer, in_shape, out_shape) -> int:
    return _recurrent_macs(layer, in_shape, 4)


@mac_counter("GRU")
def _gru_macs(layer, in_shape, out_shape) -> int:
    return _recurrent_macs(layer, in_shape, 3)


@mac_counter("SimpleRNN")
def _rnn_macs(layer, in_shape, out_shape) -> int:
    return _recurrent_macs(layer, in_shape, 1)


@dataclass
class TensorSpec:
    name: str
    shape: list
    dtype: str


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: list
    params: int
    macs: int
    sparsity: float  # fraction of exact zeros in the layer's kernels
    kernel_elements: int  # how many kernel weights ``sparsity`` is over


@dataclass
class ModelReport:
    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over all kernels (biases and BN excluded)."""
        total = sum(layer.kernel_elements for layer in self.layers)
        zeros = sum(layer.sparsity * layer.kernel_elements for layer in self.layers)
        return zeros / total if total else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(params=self.params, macs=self.macs, sparsity=self.sparsity)
        return data


def _shape(tensor_shape) -> list:
    if tensor_shape is None or isinstance(tensor_shape, int):  # unknown, or an op layer's scalar-ish shape
        return [] if tensor_shape is None else [tensor_shape]
    return [None if d is None else int(d) for d in tuple(tensor_shape)]


def _first_shape(shapes):
    """A layer's (first) input or output shape as a tuple (a model on a dict of inputs: the first)."""
    if isinstance(shapes, dict):
        shapes = next(iter(shapes.values()), None)
    if isinstance(shapes, list) and shapes and isinstance(shapes[0], (list, tuple)) and not isinstance(shapes[0], int):
        shapes = shapes[0]
    return tuple(_shape(shapes))


KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")


def _weight_name(weight) -> str:
    """A variable's own name, without its layer's path or its ``:0``."""
    return weight.name.split("/")[-1].split(":")[0]


def kernels(layer) -> list[np.ndarray]:
    """The weight tensors of a layer that multiply activations (not biases, BN, alphas)."""
    return [w.numpy() for w in layer.weights if _weight_name(w) in KERNEL_NAMES]


def _kernel_counts(layer) -> tuple[int, int]:
    """Elements and zeros of a layer's kernels."""
    weights = kernels(layer)
    return sum(w.size for w in weights), sum(int(np.count_nonzero(w == 0)) for w in weights)


def _layer_info(layer) -> LayerInfo:
    in_shape = _first_shape(layer.input_shape) if hasattr(layer, "input_shape") else ()
    out_shape = _first_shape(layer.output_shape)
    inner = getattr(layer, "layer", layer)  # tfmot wrappers (QAT, pruning) hold the real layer
    counter = MAC_COUNTERS.get(type(inner).__name__)
    macs = counter(inner, in_shape, out_shape) if counter else 0
    size, zeros = _kernel_counts(layer)
    return LayerInfo(
        name=layer.name,
        type=getattr(inner, "wrapped_class", None) or type(inner).__name__,  # a bridged Keras 3 layer: its class
        output_shape=list(out_shape),
        params=int(layer.count_params()),
        macs=int(macs),
        sparsity=zeros / size if size else 0.0,
        kernel_elements=int(size),
    )


def flat_layers(model):
    """Every layer, nested models flattened."""
    for layer in model.layers:
        if type(layer).__name__ in ("Functional", "Sequential", "Model"):
            yield from flat_layers(layer)
        else:
            yield layer


def inspect_model(model) -> ModelReport:
    """Describe a tf-keras model layer by layer.

    Example:
        >>> report = inspect_model(load_model("model.keras"))
        >>> report.macs, report.params
    """
    inputs, outputs = tensor_specs(model)
    layers = []
    for layer in flat_layers(model):
        if type(layer).__name__ == "InputLayer":
            continue
        inner = _wrapped_leaves(layer)
        if inner:
            positions = _prod(list(inputs[0].shape[1:])) if inputs and inputs[0].shape else 1
            layers.extend(_leaf_info(leaf, positions) for leaf in inner)
        else:
            layers.append(_layer_info(layer))
    return ModelReport(model.name, inputs, outputs, layers)


def _wrapped_leaves(layer) -> list:
    """The weighted innermost layers of a bridged Keras 3 layer that holds others (a keras-hub
    backbone run as it is), so that the report counts its Dense and embedding weights; empty for
    any other layer."""
    wrapped = getattr(layer, "_wrapped", None)
    if not wrapped or not hasattr(wrapped[0], "_flatten_layers"):
        return []
    inner = [sub for sub in wrapped[0]._flatten_layers(include_self=False)
             if not list(sub._flatten_layers(include_self=False, recursive=False)) and sub.weights]
    return inner if sum(sub.count_params() for sub in inner) == layer.count_params() else []


def _leaf_info(layer, positions: int) -> LayerInfo:
    """A Keras 3 layer inside a bridged one: its weights, named by the Keras class it is, and, for
    a dense layer, its kernel's MACs at each of the model input's ``positions`` (a dynamic
    sequence counts one, as for any text encoder here). Its shapes are not known from outside
    the call that runs it."""
    keras_class = next((cls.__name__ for cls in type(layer).__mro__ if cls.__module__.startswith("keras.src.")),
                       type(layer).__name__)
    size, zeros = _kernel_counts(layer)
    macs = positions * size if keras_class in ("Dense", "EinsumDense") else 0
    return LayerInfo(name=layer.path if hasattr(layer, "path") else layer.name, type=keras_class, output_shape=[],
                     params=int(layer.count_params()), macs=int(macs), sparsity=zeros / size if size else 0.0,
                     kernel_elements=int(size))


def tensor_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The named inputs and outputs of a tf-keras model (batch axis included, None if dynamic)."""
    return ([TensorSpec(n, _shape(t.shape), t.dtype.name) for n, t in zip(model.input_names, model.inputs)],
            [TensorSpec(n, _shape(t.shape), t.dtype.name) for n, t in zip(model.output_names, model.outputs)])

