"""A BERT-class encoder (tools.encoder) trained on ``topics-text``, exported from its ONNX form
to every ONNX Runtime and OpenVINO profile this CPU runs under the top-1 budget, then timed at
sequence 128, batch 1, 1 thread, in interleaved rounds: what int8 (static, dynamic, weight-only)
and bf16 buy on a transformer here.

Usage: python -m tools.encoder_speed [--size small|mini|base] [--out encoder-out]
Prints one JSON record: the CPU class and flags, the encoder's parameters, and per profile the
p50 latency, its ratio to the fastest fp32, the artifact's size, and top-1 (or why it was refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SIZES = {"mini": dict(), "small": dict(vocabulary=30522, layers=4, hidden=512, heads=8, intermediate=2048),
         "base": dict(vocabulary=30522, layers=12, hidden=768, heads=12, intermediate=3072)}
SEQUENCE = 128


def padded(data, length: int = SEQUENCE):
    """``data`` with its tokens padded to ``length`` (mask 0): the same sentences, a longer input."""
    from compressor.data import Dataset

    grow = lambda a: np.pad(a, ((0, 0), (0, length - a.shape[1])))  # noqa: E731
    return Dataset({key: grow(value) for key, value in data.x.items()}, data.y, f"{data.name} padded to {length}")


def run(size: str, out: Path, epochs: int) -> dict:
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from compressor import cpu
    from compressor.models import load_source
    from targets import export_many, profiles_for
    from targets.runtimes.onnx_runtime import convert_keras
    from tools import encoder

    model, train_set, test_set = encoder.train(encoder.Config(**SIZES[size]), epochs=epochs)
    keras_path, onnx_path = out / "encoder.keras", out / "encoder.onnx"
    model.save(keras_path)
    source = load_source(keras_path)
    convert_keras(source.model, onnx_path)
    onnx = load_source(onnx_path)
    names = [p for p in profiles_for(onnx)]
    exported, failed = export_many(onnx, names, out_dir=out / "artifacts", calibration=train_set,
                                   validation=test_set, validation_samples=200, overwrite=True)
    host = cpu.host()
    record = {"cpu": host["cpu"], "cpu_class": host["cpu_class"], "flags": host["flags"], "size": size,
              "params": onnx.report().params, "sequence": SEQUENCE,
              "refused": {f.target: f.message for f in failed}}
    doc = measure([r.folder for r in exported], eval_data=padded(test_set).take(200), source=onnx_path,
                  config=LatencyConfig(min_seconds=2.0, threads=1, batch=1), rounds=3)
    rows = {r["name"]: r for r in doc["results"]}
    fastest = min(r["latency"]["p50_ms"] for n, r in rows.items() if n.endswith("fp32"))
    record["results"] = {name: {"p50_ms": round(r["latency"]["p50_ms"], 3),
                                "speedup_vs_fastest_fp32": round(fastest / r["latency"]["p50_ms"], 2),
                                "bytes": r.get("size", {}).get("bytes"), "top1": r["accuracy"].get("top1")}
                         for name, r in rows.items()}
    for failure in failed:
        print(f"{failure.target}: {failure.message}", file=sys.stderr)
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("encoder-out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.size, args.out, args.epochs), indent=2))


if __name__ == "__main__":
    main()
