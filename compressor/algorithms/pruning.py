"""Unstructured magnitude pruning and N:M sparsity with tensorflow-model-optimization.

Each function wraps the prunable layers (``prune_low_magnitude``), fine-tunes with the
pruning callback, strips the wrappers (``strip_pruning``) and verifies the sparsity it
reached in every pruned kernel: the record says what was done, measured, not assumed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from compressor import keras_env
from compressor.algorithms import training
from compressor.algorithms.step import StepConfig, fine_tuning, fraction, register_step
from compressor.data import Dataset
from compressor.errors import BadInputError, CompressorError, UnsupportedModelError

@dataclass(frozen=True)
class Prune(StepConfig):
    """Unstructured magnitude pruning (tfmot ``prune_low_magnitude``)."""

    type: ClassVar[str] = "prune"
    sparsity: float = 0.5
    schedule: Literal["constant", "polynomial"] = "polynomial"

    def check(self, where: str) -> None:
        super().check(where)
        fraction(where, "sparsity", self.sparsity)


@dataclass(frozen=True)
class PruneNM(StepConfig):
    """N:M structured sparsity (N zeros in every M consecutive weights), e.g. 2:4."""

    type: ClassVar[str] = "prune_nm"
    n: int = 2
    m: int = 4

    def check(self, where: str) -> None:
        super().check(where)
        if not (1 <= self.n < self.m):
            raise BadInputError(f"{where}: need 1 <= n < m for N:M sparsity, got {self.n}:{self.m}")


NM_PRUNABLE = ("Conv2D", "Dense")  # the layers tfmot's N:M pruning supports


@functools.cache
def _registry() -> dict[str, list[str]]:
    """Layer class name -> the weights tfmot prunes in it (its own registry: it lists
    DepthwiseConv2D with none, SeparableConv2D with the pointwise kernel only)."""
    _tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return {cls.__name__: list(names) for cls, names in PruneRegistry._LAYERS_WEIGHTS_MAP.items() if names}


def prunable_kinds() -> tuple[str, ...]:
    return tuple(sorted(kind for kind in _registry() if kind != "MultiHeadAttention"))


def _tfmot():
    keras_env.tf_keras()
    import tensorflow_model_optimization as tfmot

    return tfmot


def _schedule(config, steps: int):
    sparsity = _tfmot().sparsity.keras
    if config.schedule == "constant":
        return sparsity.ConstantSparsity(config.sparsity, begin_step=0, frequency=max(1, steps // 10))
    return sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=config.sparsity, begin_step=0,
                                    end_step=max(1, int(steps * 0.7)), frequency=max(1, steps // 20))


def _kernel(layer) -> np.ndarray:
    """The weights pruning acts on (all of them flattened, for a layer with several)."""
    names = _registry().get(type(layer).__name__, ["kernel"])
    arrays = [getattr(layer, name).numpy() for name in names if hasattr(layer, name)]
    if not arrays:
        raise CompressorError(f"layer '{layer.name}' has no kernel")
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.reshape(-1) for a in arrays])


def _not_pruned(model, kinds) -> dict[str, str]:
    """Layers with a kernel that tfmot does not prune, and why (the record names them)."""
    return {layer.name: f"tfmot does not prune {type(layer).__name__}" for layer in model.layers
            if type(layer).__name__ not in kinds and any(hasattr(layer, n) for n in ("kernel", "depthwise_kernel"))}


def _wrap_and_train(model, data: Dataset, fine_tune, seed: int, wrap, kinds, exclude, trust_model):
    tfmot = _tfmot()
    pruned_names: list[str] = []

    def clone_function(layer):
        if type(layer).__name__ in kinds and not training.is_excluded(layer, exclude):
            pruned_names.append(layer.name)
            return wrap(layer)
        return layer

    # tfmot's wrappers wrap layer objects in place: work on a copy, never the caller's model
    wrapped = training.clone(training.copy(model, trust_model=trust_model), clone_function, trust_model=trust_model)
    if not pruned_names:
        raise UnsupportedModelError("no prunable layer left after exclusions")
    training.fit(wrapped, data, fine_tune, seed=seed, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    return stripped, pruned_names


def prune_magnitude(model, data: Dataset, config, fine_tune, *, seed: int = 0, trust_model: bool = False):
    """Prune ``config.sparsity`` of each prunable kernel's weights by magnitude; return ``(model, record)``."""
    tfmot = _tfmot()
    steps = max(1, math.ceil(len(data) / fine_tune.batch_size) * max(1, fine_tune.epochs))
    schedule = _schedule(config, steps)
    if fine_tune.epochs == 0:
        schedule = tfmot.sparsity.keras.ConstantSparsity(config.sparsity, begin_step=0, frequency=1)
        fine_tune = type(fine_tune)(epochs=1, batch_size=fine_tune.batch_size, learning_rate=0.0)

    def wrap(layer):
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    kinds = prunable_kinds()
    pruned, names = _wrap_and_train(model, data, fine_tune, seed, wrap, kinds, config.exclude, trust_model)
    per_layer = {name: float(np.mean(_kernel(pruned.get_layer(name)) == 0)) for name in names}
    short = {n: s for n, s in per_layer.items() if s < config.sparsity - 0.01}
    if short:
        raise UnsupportedModelError(f"pruning reached less than {config.sparsity:.0%} in: "
                              + ", ".join(f"{n} {s:.1%}" for n, s in short.items()))
    skipped = _not_pruned(model, kinds)
    record = {"target_sparsity": config.sparsity, "schedule": config.schedule, "layer_sparsity": per_layer,
              "skipped_layers": skipped}
    if skipped:
        why = "; ".join(sorted(set(skipped.values())))
        record["notes"] = [f"not pruned: {', '.join(sorted(skipped))} ({why})"]
    return pruned, record


def nm_pattern_holds(kernel: np.ndarray, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive weights along the input axis has ≥ ``n`` zeros."""
    # tfmot groups along the input-channel axis (the second-to-last axis of a Dense/Conv kernel)
    flat = np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2])
    usable = (flat.shape[1] // m) * m
    groups = flat[:, :usable].reshape(flat.shape[0], -1, m)
    return bool(np.all(np.sum(groups == 0, axis=-1) >= n))


def prune_nm(model, data: Dataset, config, fine_tune, *, seed: int = 0, trust_model: bool = False):
    """N:M sparsity (``config.n`` zeros in every ``config.m`` weights); return ``(model, record)``."""
    tfmot = _tfmot()
    keep = config.m - config.n

    def wrap(layer):
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(config.n / config.m, 0, frequency=1),
            sparsity_m_by_n=(keep, config.m))

    def eligible(layer) -> bool:
        kernel = _kernel(layer)
        return kernel.shape[-2] % config.m == 0

    kinds = NM_PRUNABLE
    exclude = tuple(config.exclude) + tuple(layer.name for layer in model.layers
                                            if type(layer).__name__ in kinds and not eligible(layer))
    if fine_tune.epochs == 0:
        fine_tune = type(fine_tune)(epochs=1, batch_size=fine_tune.batch_size, learning_rate=0.0)
    pruned, names = _wrap_and_train(model, data, fine_tune, seed, wrap, kinds, exclude, trust_model)
    patterns = {name: nm_pattern_holds(_kernel(pruned.get_layer(name)), config.n, config.m) for name in names}
    broken = [name for name, ok in patterns.items() if not ok]
    if broken:
        raise UnsupportedModelError(f"{config.n}:{config.m} pattern does not hold in: {', '.join(broken)}")
    per_layer = {name: float(np.mean(_kernel(pruned.get_layer(name)) == 0)) for name in names}
    skipped = sorted(set(exclude) - set(config.exclude))
    return pruned, {"pattern": f"{config.n}:{config.m}", "layer_sparsity": per_layer,
                    "skipped_layers": skipped}


register_step(Prune)(fine_tuning(prune_magnitude))
register_step(PruneNM)(fine_tuning(prune_nm))
