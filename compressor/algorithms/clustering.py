"""Weight clustering with tensorflow-model-optimization: each kernel keeps N distinct values.

Clustered kernels compress well (gzip, or a palette on device); the record gives the
unique-value count per clustered kernel and the gzip size of all weights before and after.
"""

from __future__ import annotations

import gzip
import io

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from compressor import keras_env
from compressor.algorithms import training
from compressor.algorithms.step import StepConfig, fine_tuning, register_step
from compressor.errors import BadInputError, UnsupportedModelError

@dataclass(frozen=True)
class Cluster(StepConfig):
    """Weight clustering (tfmot ``cluster_weights``)."""

    type: ClassVar[str] = "cluster"
    clusters: int = 16
    init: Literal["kmeans++", "linear", "density", "random"] = "kmeans++"

    def check(self, where: str) -> None:
        super().check(where)
        if self.clusters < 2:
            raise BadInputError(f"{where}.clusters: need at least 2 clusters, got {self.clusters}")


CLUSTERABLE = ("Conv1D", "Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def _tfmot():
    keras_env.tf_keras()
    import tensorflow_model_optimization as tfmot

    return tfmot


def weights_gzip_bytes(model) -> int:
    """gzip size of all the model's weights as float32 (what a compressed download costs)."""
    buffer = io.BytesIO()
    np.savez(buffer, *[w.astype(np.float32) for w in model.get_weights()])
    return len(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))


def _kernel(layer):
    return (layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") and type(layer).__name__ ==
            "DepthwiseConv2D" else layer.kernel).numpy()


def cluster(model, data, config, fine_tune, *, seed: int = 0, trust_model: bool = False):
    """Cluster each eligible kernel into ``config.clusters`` values; return ``(model, record)``."""
    tfmot = _tfmot()
    keras_env.set_seed(seed)
    init = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED",
            "random": "RANDOM"}[config.init]
    params = {"number_of_clusters": config.clusters,
              "cluster_centroids_init": getattr(tfmot.clustering.keras.CentroidInitialization, init)}
    names: list[str] = []

    def clone_function(layer):
        kernel_size = layer.kernel.shape.num_elements() if hasattr(layer, "kernel") else 0
        if (type(layer).__name__ in CLUSTERABLE and not training.is_excluded(layer, config.exclude)
                and kernel_size > config.clusters):
            names.append(layer.name)
            return tfmot.clustering.keras.cluster_weights(layer, **params)
        return layer

    copy = training.copy(model, trust_model=trust_model)
    wrapped = training.clone(copy, clone_function, trust_model=trust_model)
    if not names:
        raise UnsupportedModelError("clustering: no layer with more weights than clusters after exclusions")
    training.fit(wrapped, data, fine_tune, seed=seed)
    stripped = tfmot.clustering.keras.strip_clustering(wrapped)
    unique = {name: int(np.unique(_kernel(stripped.get_layer(name))).size) for name in names}
    over = {n: u for n, u in unique.items() if u > config.clusters}
    if over:
        raise UnsupportedModelError(f"clustering left more than {config.clusters} values in: {over}")
    before, after = weights_gzip_bytes(model), weights_gzip_bytes(stripped)
    return stripped, {"clusters": config.clusters, "init": config.init, "unique_values": unique,
                      "weights_gzip_before": before, "weights_gzip_after": after,
                      "gzip_reduction": 1.0 - after / before}


register_step(Cluster)(fine_tuning(cluster))
