"""Export every sample model to every profile that can take it; measure held-out accuracy."""

from __future__ import annotations

import numpy as np

import sample_models
from compressor import load_model
from compressor.data import samples as sample_data
from targets import PROFILES, export_many, open_artifact
from targets.runtime import run_batched


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, -1) == labels))


def sweep(name: str, out_dir, profiles=None) -> list[dict]:
    spec = sample_models.SAMPLE_MODELS[name]
    model = load_model(sample_models.path(name))
    train, test = sample_data.load(spec.dataset, "train"), sample_data.load(spec.dataset, "test")
    float_accuracy = accuracy(model.predict(test.x, verbose=0), test.y)
    exported, failed = export_many(model, list(profiles or PROFILES), out_dir=out_dir / name, calibration=train,
                                   validation=test)
    base = {"model": name, "float_accuracy": float_accuracy}
    rows = [{**base, "target": f.target, "error": f"{type(f.error).__name__}: {f.message}"} for f in failed]
    for result in exported:
        runner = open_artifact(result.folder).runner()
        try:
            measured = accuracy(run_batched(runner, test.x)[0], test.y)
        finally:
            runner.close()
        rows.append({**base, "target": result.target, "accuracy": measured, "bytes": result.manifest["size"]["bytes"],
                     "agreement": result.parity["agreement"]})
    return rows
