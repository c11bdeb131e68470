"""Endurance: compress and export many models in one process, as a notebook or service would.

Usage: python -m tools.endurance [--models 20] [--targets tflite-int8 onnx-int8 openvino-int8]

Prints the process's resident memory after each model. Each iteration builds a fresh
model, prunes it with fine-tuning, exports it to every target (parity checked), then
releases what a long-lived process must release: runners are closed by ``export``,
``compress`` drops the graphs its training traced (see ``keras_env.releasing_graphs``),
and the Keras session is cleared here, as a service would between jobs.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(models: int, targets: list[str]) -> list[float]:
    from compressor import keras_env
    from compressor.data import samples as sample_data
    from compressor.pipeline import compress
    from targets import export_many

    tfk = keras_env.tf_keras()
    train, test = sample_data.load("digits-8", "train"), sample_data.load("digits-8", "test")
    recipe = {"fine_tune": {"epochs": 1}, "steps": [{"type": "prune", "sparsity": 0.5}]}
    readings = []
    work = Path(tempfile.mkdtemp(prefix="compressor-endurance-"))
    try:
        for index in range(models):
            keras_env.set_seed(index)
            model = tfk.Sequential([tfk.Input((8, 8, 1)), tfk.layers.Conv2D(8, 3, activation="relu"),
                                    tfk.layers.Flatten(), tfk.layers.Dense(10, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy")
            with keras_env.releasing_graphs():  # the caller's own training: see releasing_graphs
                model.fit(train.x, train.y, epochs=3, verbose=0)
            result = compress(model, recipe, data=train)
            _, failed = export_many(result.model, targets, out_dir=work / str(index), calibration=train,
                                    validation=test)
            if failed:
                raise failed[0].error
            shutil.rmtree(work / str(index), ignore_errors=True)
            del model, result
            tfk.backend.clear_session()
            gc.collect()
            readings.append(rss_mb())
            print(f"model {index + 1:2d}: RSS {readings[-1]:.0f} MB", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return readings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--targets", nargs="+", default=["tflite-int8", "onnx-int8", "openvino-int8"])
    args = parser.parse_args(argv)
    readings = run(args.models, args.targets)
    settled = readings[min(4, len(readings) - 1)]
    print(json.dumps({"rss_mb": [round(r, 1) for r in readings], "after_5": round(settled, 1),
                      "last": round(readings[-1], 1), "growth_after_5_mb": round(readings[-1] - settled, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
