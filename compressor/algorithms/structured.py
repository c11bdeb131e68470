"""Structured (channel) pruning that removes work: fewer filters, a genuinely smaller model.

Unstructured sparsity leaves dense runtimes as slow as before (tfmot #173, #611, #722);
removing whole filters shrinks every following tensor. Channels are followed through the
graph: BatchNorm, activations, pooling, padding and depthwise convolutions carry a
producer's channels; an ``Add`` ties the channels of its inputs (they are pruned together);
``Concatenate`` lays channel ranges side by side; ``Flatten`` → ``Dense`` slices rows.
Channels that reach the model's output, its input, an excluded layer or a layer this
module does not know (Reshape, recurrent layers, ...) are kept.

Filters are ranked by the L1 (or L2) norm of their weights, summed over the layers
that produce a tied group; the lowest are removed, the model is rebuilt from its config
with the smaller widths, and every kernel, bias and per-channel parameter is sliced.
The step then re-estimates BatchNorm statistics on the training data and fine-tunes with
the unpruned model as teacher. Measured on the MobileNetV2 sample (alpha 0.35, 96x96
digits, float 97.56 % on its 450 test images), 25 % of channels removed: 10.2 % right
after pruning (chance), 33.1 % after BatchNorm recalibration, and after 15 epochs 95.33 %
fine-tuned on the labels alone against 96.89 % distilled. Half the channels, distilled:
95.56 % after 15 epochs, 97.56 % after 30 (the built-in recipes' epochs follow this).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from compressor import keras_env
from compressor.algorithms import training
from compressor.algorithms.step import StepConfig, fraction, positive, register_step
from compressor.errors import BadInputError, UnsupportedModelError

@dataclass(frozen=True)
class PruneStructured(StepConfig):
    """Remove whole filters/units (channels), rebuilding a smaller model."""

    type: ClassVar[str] = "prune_structured"
    fraction: float = 0.5
    criterion: Literal["l1", "l2"] = "l1"
    round_to: int = 1  # keep a multiple of this many channels (SIMD-friendly widths)
    # BatchNorm statistics re-estimated on the training data right after pruning, before
    # fine-tuning ("adaptive BN", Li et al., EagleEye, 2020): the sliced statistics describe
    # activations of the unpruned model, and a network of removed channels starts near chance.
    recalibrate_bn: bool = True
    # Weight of the unpruned model's soft predictions in the fine-tuning loss (knowledge
    # distillation, the unpruned model as teacher); 0 fine-tunes on the labels alone.
    teacher_weight: float = 0.5

    def check(self, where: str) -> None:
        super().check(where)
        fraction(where, "fraction", self.fraction)
        positive(where, "round_to", self.round_to)
        if not 0.0 <= self.teacher_weight < 1.0:
            raise BadInputError(f"{where}.teacher_weight: must be in [0, 1), got {self.teacher_weight}")


PRODUCERS = {"Conv1D": "filters", "Conv2D": "filters", "SeparableConv2D": "filters", "Dense": "units"}
PASS_THROUGH = {"BatchNormalization", "ReLU", "Activation", "PReLU", "LeakyReLU", "ELU", "Dropout",
                "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "MaxPooling1D",
                "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "ZeroPadding1D",
                "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "DepthwiseConv2D",
                "Rescaling", "ActivityRegularization", "AlphaDropout", "ThresholdedReLU"}
# Channel-wise and pass-through, but with per-channel statistics this step does not slice:
# their channels are followed and kept.
PASS_THROUGH_KEPT = {"Normalization", "LayerNormalization", "UnitNormalization"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}


@dataclass
class Segment:
    group: int
    size: int


@dataclass
class Flat:
    """A flattened channels-last tensor: ``spatial`` positions of the given channel segments."""

    segments: list[Segment]
    spatial: int


@dataclass
class Group:
    size: int
    producers: list[str] = field(default_factory=list)
    blocked: bool = False
    reason: str = ""


class ChannelGraph:
    """Which channels of which layers are tied together, and which may be removed."""

    def __init__(self, model, exclude) -> None:
        self.model = model
        self.groups: list[Group] = []
        self.parent: list[int] = []
        self.tensors: dict[str, list[Segment] | Flat | None] = {}
        self.inputs_of: dict[str, list[str]] = {}
        self.exclude = set(exclude)
        self._trace()

    # union-find over groups tied by merges
    def _new_group(self, size: int, producer: str | None = None, blocked: str = "") -> int:
        self.groups.append(Group(size, [producer] if producer else [], bool(blocked), blocked))
        self.parent.append(len(self.parent))
        return len(self.groups) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def _union(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        A, B = self.groups[ra], self.groups[rb]
        if A.size != B.size:
            raise UnsupportedModelError(f"structured pruning: {where} merges {A.size} and {B.size} channels")
        self.parent[rb] = ra
        A.producers += B.producers
        A.blocked, A.reason = A.blocked or B.blocked, A.reason or B.reason

    def block(self, value, reason: str) -> None:
        segments = value.segments if isinstance(value, Flat) else (value or [])
        for seg in segments:
            group = self.groups[self.find(seg.group)]
            if not group.blocked:
                group.blocked, group.reason = True, reason

    def _trace(self) -> None:
        for layer in _layers_in_order(self.model):
            self.inputs_of[layer.name] = _inbound(layer)
            self.tensors[layer.name] = self._output_of(layer, [self.tensors.get(n) for n in self.inputs_of[layer.name]])
        for name in _output_layers(self.model):
            self.block(self.tensors[name], "reaches the model's output")

    def _output_of(self, layer, inputs):
        kind = type(layer).__name__
        name = layer.name
        if kind == "InputLayer":
            channels = int(layer.output_shape[0][-1] if isinstance(layer.output_shape, list) else layer.output_shape[-1])
            return [Segment(self._new_group(channels, blocked="model input"), channels)]
        if any(t is None for t in inputs):
            for t in inputs:
                self.block(t, f"feeds untracked layer '{name}'")
            return None
        excluded = name in self.exclude or kind in self.exclude
        if kind in PRODUCERS:
            size = int(getattr(layer, PRODUCERS[kind]))
            return [Segment(self._new_group(size, name, f"excluded layer '{name}'" if excluded else ""), size)]
        if isinstance(inputs[0], Flat):
            if kind in ("Dropout",):
                return inputs[0]
            self.block(inputs[0], f"flattened channels feed '{name}' ({kind})")
            return None
        return self._channels_through(layer, kind, inputs, excluded)

    def _channels_through(self, layer, kind: str, inputs, excluded: bool):
        """The channel segments out of a layer that does not make channels of its own."""
        name = layer.name
        if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
            self.block(inputs[0], f"depthwise layer '{name}' has depth multiplier {layer.depth_multiplier}")
            return None
        if kind in PASS_THROUGH_KEPT:
            self.block(inputs[0], f"'{name}' ({kind}) holds per-channel statistics")
            return inputs[0]
        if kind == "Rescaling" and (np.size(layer.scale) > 1 or np.size(layer.offset) > 1):
            self.block(inputs[0], f"'{name}' rescales per channel")
            return inputs[0]
        if kind in PASS_THROUGH:
            if excluded:
                self.block(inputs[0], f"passes through excluded layer '{name}'")
            return inputs[0]
        if kind in MERGES:
            return self._merged(name, inputs)
        if kind == "Concatenate" and layer.axis in (-1, len(layer.output_shape) - 1):
            return [seg for t in inputs for seg in t]
        if kind == "Flatten":
            shape = layer.input_shape
            return Flat(inputs[0], int(np.prod(shape[1:-1])))
        for t in inputs:
            self.block(t, f"feeds '{name}' ({kind}), which structured pruning does not follow")
        return None

    def _merged(self, name: str, inputs):
        """An element-wise merge (Add, Multiply, ...): the channels of its inputs become one group each."""
        first = inputs[0]
        for other in inputs[1:]:
            if [s.size for s in other] != [s.size for s in first]:
                self.block(first, f"'{name}' merges differently split channels")
                self.block(other, f"'{name}' merges differently split channels")
                continue
            for a, b in zip(first, other):
                self._union(a.group, b.group, f"'{name}'")
        return [Segment(s.group, s.size) for s in first]

    def keep_indices(self, keep: dict[int, np.ndarray], value) -> np.ndarray:
        """Kept channel indices of a tensor (for a Flat tensor: kept rows of the flattened vector)."""
        segments = value.segments if isinstance(value, Flat) else value
        indices, offset = [], 0
        for seg in segments:
            indices.append(offset + keep[self.find(seg.group)])
            offset += seg.size
        kept = np.concatenate(indices) if indices else np.arange(0)
        if isinstance(value, Flat):
            channels = offset
            return np.concatenate([p * channels + kept for p in range(value.spatial)])
        return kept


def _layers_in_order(model):
    """Every layer in call order, the input layers first (a Sequential model lists none)."""
    inputs = [t._keras_history.layer for t in model.inputs]
    return [layer for layer in inputs if layer not in model.layers] + list(model.layers)


def _inbound(layer) -> list[str]:
    nodes = layer.inbound_nodes
    if len(nodes) > 1:
        raise UnsupportedModelError(f"structured pruning: layer '{layer.name}' is called more than once (shared)")
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, list) else [inbound]
    return [l.name for l in inbound]


def _output_layers(model) -> list[str]:
    return [t._keras_history.layer.name for t in model.outputs]


def _scores(model, graph: ChannelGraph, root: int, criterion: str) -> np.ndarray:
    total = np.zeros(graph.groups[root].size)
    for name in graph.groups[root].producers:
        layer = model.get_layer(name)
        kernel = layer.pointwise_kernel.numpy() if type(layer).__name__ == "SeparableConv2D" else layer.kernel.numpy()
        flat = kernel.reshape(-1, kernel.shape[-1])
        norm = np.abs(flat).sum(0) if criterion == "l1" else np.sqrt((flat**2).sum(0))
        total += norm / (norm.max() or 1.0)  # tied producers count equally, whatever their scale
    return total


def plan(model, graph: ChannelGraph, fraction: float, criterion: str, round_to: int) -> dict[int, np.ndarray]:
    """Kept channel indices for every group root (all of them for blocked groups)."""
    keep = {}
    for g in range(len(graph.groups)):
        root = graph.find(g)
        if root in keep:
            continue
        group = graph.groups[root]
        if group.blocked or not group.producers:
            keep[root] = np.arange(group.size)
            continue
        count = int(np.ceil(group.size * (1.0 - fraction) / round_to) * round_to)
        count = min(group.size, max(round_to, count, 1))
        order = np.argsort(-_scores(model, graph, root, criterion), kind="stable")
        keep[root] = np.sort(order[:count])
    return keep


def _sliced_weights(layer, in_keep, out_keep, weights):
    kind = type(layer).__name__
    if kind in ("Conv1D", "Conv2D", "Dense"):
        kernel = weights[0][..., in_keep, :][..., out_keep]
        return [kernel] + [w[out_keep] for w in weights[1:]]
    if kind == "SeparableConv2D":
        depthwise, pointwise = weights[0], weights[1]
        mult = depthwise.shape[-1]
        rows = (in_keep[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)
        return [depthwise[..., in_keep, :], pointwise[..., rows, :][..., out_keep]] + [w[out_keep] for w in weights[2:]]
    if kind == "DepthwiseConv2D":
        return [weights[0][..., in_keep, :]] + [w[in_keep] for w in weights[1:]]
    if kind in ("BatchNormalization", "PReLU"):
        return [w[..., in_keep] for w in weights]
    return weights


def prune_channels(model, config, *, trust_model: bool = False):
    """Remove ``config.fraction`` of the channels of every prunable group; return ``(model, record)``."""
    from compressor.models.inspection import inspect_model
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    tfk = keras_env.tf_keras()
    if any(type(l).__name__ in ("Functional", "Sequential", "Model") for l in model.layers):
        raise UnsupportedModelError("structured pruning: nested models are not supported; flatten the model first")
    graph = ChannelGraph(model, config.exclude)
    keep = plan(model, graph, config.fraction, config.criterion, config.round_to)
    widths = {}
    for root, indices in keep.items():
        for name in graph.groups[root].producers:
            widths[name] = len(indices)
    model_config = model.get_config()
    for layer_config in model_config["layers"]:
        name = layer_config["config"].get("name")
        if name in widths:
            layer_config["config"][PRODUCERS[layer_config["class_name"]]] = widths[name]
    with SafeModeScope(safe_mode=not trust_model):
        rebuilt = (tfk.Sequential if type(model).__name__ == "Sequential" else tfk.Model).from_config(model_config)
    _copy_kept_weights(model, rebuilt, graph, keep)
    before, after = inspect_model(model), inspect_model(rebuilt)
    pruned_groups = [{"producers": graph.groups[r].producers, "channels": f"{graph.groups[r].size} -> {len(k)}"}
                     for r, k in keep.items() if len(k) < graph.groups[r].size]
    kept_groups = sorted({f"{', '.join(graph.groups[r].producers) or 'input'}: {graph.groups[r].reason}"
                          for r in keep if graph.groups[r].blocked and graph.groups[r].producers})
    record = {"fraction": config.fraction, "criterion": config.criterion, "groups_pruned": pruned_groups,
              "groups_kept": kept_groups, "macs_before": before.macs, "macs_after": after.macs,
              "params_before": before.params, "params_after": after.params,
              "mac_reduction": 1.0 - after.macs / before.macs if before.macs else 0.0}
    return rebuilt, record


def _copy_kept_weights(model, rebuilt, graph: ChannelGraph, keep: dict) -> None:
    """Each layer's weights into the narrower ``rebuilt`` model: the kept channels' slices."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        inputs = [graph.tensors.get(n) for n in graph.inputs_of[layer.name]]
        in_keep = graph.keep_indices(keep, inputs[0]) if inputs and inputs[0] is not None else None
        out = graph.tensors.get(layer.name)
        out_keep = graph.keep_indices(keep, out) if out is not None and not isinstance(out, Flat) else None
        if in_keep is None or out_keep is None:
            rebuilt.get_layer(layer.name).set_weights(weights)
            continue
        rebuilt.get_layer(layer.name).set_weights(_sliced_weights(layer, in_keep, out_keep, weights))


def recalibrate_batch_norm(model, data, *, batch_size: int = 64, max_batches: int = 50) -> int:
    """Re-estimate every BatchNormalization's moving statistics on ``data`` (forward passes in
    training mode, a cumulative average over the batches; no weight changes). Returns the
    number of layers recalibrated."""
    tf = keras_env.tf()
    tfk = keras_env.tf_keras()
    norms = [layer for layer in model.layers if isinstance(layer, tfk.layers.BatchNormalization)]
    if not norms or data is None:
        return 0
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    try:
        for seen, (x, _) in enumerate(data.batches(batch_size, shuffle=True, seed=0), start=1):
            if seen > max_batches:
                break
            for layer in norms:  # the n-th batch weighs 1/n: the mean over the batches so far
                layer.momentum = 1.0 - 1.0 / seen
            model(x, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return len(norms)


def _fine_tune(teacher, pruned, config, ctx) -> str:
    """Fine-tune ``pruned``: distilled from ``teacher`` where the model is a single-output classifier."""
    from compressor.algorithms.distillation import _Distiller

    if config.teacher_weight > 0 and len(pruned.outputs) == 1 and ctx.data is not None and ctx.data.y is not None \
            and ctx.fine_tune.epochs:
        _Distiller(teacher, pruned, alpha=1.0 - config.teacher_weight, temperature=4.0).fit(
            ctx.data, ctx.fine_tune, seed=ctx.seed)
        return "distilled from the unpruned model"
    training.fit(pruned, ctx.data, ctx.fine_tune, seed=ctx.seed)
    return "labels"


@register_step(PruneStructured)
def _run(model, config, ctx):
    pruned, record = prune_channels(model, config, trust_model=ctx.trust_model)
    if not record["groups_pruned"]:  # nothing removed: fine-tuning would only cost accuracy and time
        reasons = "; ".join(record["groups_kept"][:3]) or "no channel group to prune"
        record["notes"] = [f"removed nothing and skipped fine-tuning: every channel group is kept ({reasons})"]
        return model, record
    record["accuracy_before_fine_tune"] = training.accuracy(pruned, ctx.eval_data)
    if config.recalibrate_bn and recalibrate_batch_norm(pruned, ctx.data):
        record["accuracy_after_bn_recalibration"] = training.accuracy(pruned, ctx.eval_data)
    record["fine_tuned_on"] = _fine_tune(model, pruned, config, ctx)
    return pruned, record
