"""Export every sample model to every profile that can take it; measure held-out accuracy."""

from __future__ import annotations

import numpy as np

import sample_models
from compressor import load_model, sample_data
from compressor.errors import CompressorError
from targets import PROFILES, export, open_artifact
from targets.runtime import run_batched


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, -1) == labels))


def sweep(name: str, out_dir, profiles=None) -> list[dict]:
    spec = sample_models.SAMPLE_MODELS[name]
    model = load_model(sample_models.path(name))
    train, test = sample_data.load(spec.dataset, "train"), sample_data.load(spec.dataset, "test")
    float_accuracy = accuracy(model.predict(test.x, verbose=0), test.y)
    rows = []
    for profile in profiles or PROFILES:
        row = {"model": name, "target": profile, "float_accuracy": float_accuracy}
        try:
            result = export(model, profile, out_dir=out_dir / name, calibration=train, validation=test)
        except CompressorError as exc:
            rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        runner = open_artifact(result.folder).runner()
        try:
            row["accuracy"] = accuracy(run_batched(runner, test.x)[0], test.y)
        finally:
            runner.close()
        row.update(bytes=result.manifest["size"]["bytes"], agreement=result.parity["agreement"])
        rows.append(row)
    return rows
