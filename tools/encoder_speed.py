"""A BERT-class encoder (tools.encoder) trained on ``topics-text``, exported from its ONNX form
to every ONNX Runtime and OpenVINO profile this CPU runs and from its Keras form to every LiteRT
one that takes it, each quantized one under the budget
of both heads (top-1 of the class head within ``--max-drop`` points, recall@10 of the float
model's neighbours on the embedding head within ``--retrieval-drop`` points), then timed at
sequence 128, batch 1, 1 thread, in interleaved rounds: what int8 (static, dynamic,
weight-only) and bf16 buy on a transformer here, and what each keeps of the task.

Usage: python -m tools.encoder_speed [--size mini|medium|small|base] [--epochs N] [--out encoder-out]
Prints one JSON record: the CPU class and flags, the encoder's parameters, and per profile the
p50 latency, its ratio to the fastest fp32, the artifact's size, each head's metric and drop
(on the 32-token evaluation sentences), or why it was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SIZES = {"mini": dict(), "medium": dict(layers=4, hidden=256, heads=4, intermediate=1024),
         "small": dict(vocabulary=30522, layers=4, hidden=512, heads=8, intermediate=2048),
         "base": dict(vocabulary=30522, layers=12, hidden=768, heads=12, intermediate=3072)}
RATES = {"mini": 1e-3, "medium": 3e-4, "small": 3e-4, "base": 1e-4}  # post-LayerNorm from scratch: larger is slower
SEQUENCE = 128
HEADS = "top1;retrieval:output=1,k=10,max_drop={retrieval}"


def padded(data, length: int = SEQUENCE):
    """``data`` with its tokens padded to ``length`` (mask 0): the same sentences, a longer input."""
    from compressor.data import Dataset

    grow = lambda a: np.pad(a, ((0, 0), (0, length - a.shape[1])))  # noqa: E731
    return Dataset({key: grow(value) for key, value in data.x.items()}, data.y, f"{data.name} padded to {length}")


def _trained(size: str, out: Path, epochs: int):
    """The encoder trained on topics-text, as a Keras source and in its ONNX form; and the data."""
    from compressor.models import load_source
    from targets.runtimes.onnx_runtime import convert_keras
    from tools import encoder

    model, train_set, test_set = encoder.train(encoder.Config(**SIZES[size]), epochs=epochs,
                                               learning_rate=RATES[size])
    keras_path, onnx_path = out / "encoder.keras", out / "encoder.onnx"
    model.save(keras_path)
    keras_source = load_source(keras_path)
    convert_keras(keras_source.model, onnx_path)
    return keras_source, load_source(onnx_path), train_set, test_set


def targets_for(source, from_keras: bool) -> list[str]:
    """The profiles that take ``source``: LiteRT's from the Keras file, the others from ONNX (one
    tf2onnx conversion for all of them)."""
    from targets import PROFILES, profiles_for
    from targets.runtime import get_runtime

    return [name for name in profiles_for(source)
            if ("onnx" in get_runtime(PROFILES[name].runtime).accepts) != from_keras]


def run(size: str, out: Path, epochs: int, max_drop: float = 1.0, retrieval_drop: float = 5.0) -> dict:
    from compressor import cpu
    from targets import export_many

    keras_source, onnx, train_set, test_set = _trained(size, out, epochs)
    metric = HEADS.format(retrieval=retrieval_drop)
    failed = []
    for source, from_keras in ((onnx, False), (keras_source, True)):
        failed += export_many(source, targets_for(source, from_keras), out_dir=out / "artifacts",
                              calibration=train_set, validation=test_set, validation_samples=200, overwrite=True,
                              metric=metric, max_drop=max_drop)[1]
    host = cpu.host()
    record = {"cpu": host["cpu"], "cpu_class": host["cpu_class"], "flags": host["flags"], "size": size,
              "params": onnx.report().params, "sequence": SEQUENCE, "metric": metric, "max_drop": max_drop,
              "refused": {f.target: f.message for f in failed}}
    for failure in failed:
        print(f"{failure.target}: {failure.message}", file=sys.stderr)
    return {**record, "results": timed(out, test_set)}


def timed(out: Path, test_set=None) -> dict:
    """Every artifact in ``out/artifacts`` and the ONNX source at sequence 128, interleaved:
    p50, the ratio to its own runtime's fp32 and to the fastest fp32, size, each head's metric
    (on the 32-token sentences, as the exports judged them) and the layers kept in float."""
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from compressor.data import samples
    from targets import open_artifact

    test_set = test_set or samples.load("topics-text", "test")
    folders = sorted(p for p in (out / "artifacts").iterdir() if (p / "manifest.json").is_file())
    doc = measure(folders, eval_data=padded(test_set).take(200), source=out / "encoder.onnx",
                  config=LatencyConfig(min_seconds=2.0, threads=1, batch=1), rounds=3)
    rows = {r["name"]: r for r in doc["results"]}
    fastest = min(r["latency"]["p50_ms"] for n, r in rows.items() if n.endswith("fp32"))
    budgets = {p.name: open_artifact(p).manifest.get("budget") or {} for p in folders}
    return {name: {"p50_ms": round(r["latency"]["p50_ms"], 3),
                   "speedup_vs_runtime_fp32": r.get("speedup_vs_runtime_fp32"),
                   "speedup_vs_fastest_fp32": round(fastest / r["latency"]["p50_ms"], 2),
                   "bytes": r.get("size", {}).get("bytes"), "heads": (r.get("task_metric") or {}).get("value"),
                   "float_layers": len(((budgets.get(name) or {}).get("recovery") or {}).get("float_nodes") or [])}
            for name, r in rows.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--max-drop", type=float, default=1.0, help="top-1 points the class head may lose")
    parser.add_argument("--retrieval-drop", type=float, default=5.0,
                        help="recall@10 points the embedding head may lose (5: 95 %% of the neighbours kept)")
    parser.add_argument("--out", type=Path, default=Path("encoder-out"))
    parser.add_argument("--remeasure", action="store_true",
                        help="time the artifacts already in --out again (on a quiet machine), without exporting")
    args = parser.parse_args(argv)
    from compressor.app.options import quiet_libraries

    quiet_libraries()  # as the CLI: NNCF's progress bars would go to stdout, before the JSON record
    args.out.mkdir(parents=True, exist_ok=True)
    record = timed(args.out) if args.remeasure else run(args.size, args.out, args.epochs, args.max_drop,
                                                        args.retrieval_drop)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
