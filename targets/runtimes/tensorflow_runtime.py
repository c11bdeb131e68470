"""TensorFlow: runs a Keras source model as it is, the float baseline every artifact is measured against.

It exports nothing; the other runtimes export from the source.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.models.source import feed_list
from targets.runtime import Runtime, TensorInfo


class KerasRunner:
    """Runs a Keras model file with TensorFlow (a compiled ``tf.function``, no ``predict`` overhead)."""

    def __init__(self, path: str | Path, *, threads: int = 1, trust_model: bool = False) -> None:
        tf = keras_env.tf()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised in this process; thread counts are fixed for its lifetime
        from compressor.models import load_model

        start = time.perf_counter()
        self._model = load_model(path, trust_model=trust_model)
        self._call = tf.function(lambda *x: self._model(keras_env.as_called(self._model, x), training=False),
                                 reduce_retracing=True)
        self.load_seconds = time.perf_counter() - start
        self.inputs = [TensorInfo(n, [-1 if d is None else int(d) for d in t.shape], t.dtype.name)
                       for n, t in zip(self._model.input_names, self._model.inputs)]
        self.outputs = [TensorInfo(n, [-1 if d is None else int(d) for d in t.shape], t.dtype.name)
                        for n, t in zip(self._model.output_names, self._model.outputs)]

    def run(self, x) -> list[np.ndarray]:
        result = self._call(*[a.astype(info.dtype, copy=False) for info, a in zip(self.inputs, feed_list(x))])
        return [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]

    def close(self) -> None:
        self._model = None
        self._call = None


def load(path: Path, *, threads: int = 1, details: dict | None = None) -> KerasRunner:
    return KerasRunner(path, threads=threads, trust_model=bool((details or {}).get("trust_model")))


RUNTIME = Runtime("tensorflow", load, libraries=("tensorflow", "tf-keras"), preimport=("tf_keras",),
                  runs_sources=("keras",))
