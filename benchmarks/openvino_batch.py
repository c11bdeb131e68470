"""Static against dynamic batch: what the OpenVINO targets gain from a batch fixed to 1.

Usage: python -m benchmarks.openvino_batch ARTIFACT_FOLDER... [--threads 1] [--seconds 1] [--rounds 5]

The exported IR has a static batch of 1. The same IR with its batch axis made dynamic
again (what ``openvino.convert_model`` writes for a Keras model) is saved beside it, and
both are run through the toolkit's own OpenVINO runner with the same CPU properties, at
batch 1, alternately ``rounds`` times (ABBA order); the medians of the per-round p50s are
compared, after checking that the two give the same outputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.latency import LatencyConfig, measure
from compressor.errors import BadInputError
from targets import open_artifact


def _dynamic_copy(xml: Path, workdir: Path) -> Path:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    model.reshape({i: ov.PartialShape([ov.Dimension(), *list(port.get_partial_shape())[1:]])
                   for i, port in enumerate(model.inputs)})
    copy = workdir / "dynamic.xml"
    ov.save_model(model, str(copy), compress_to_fp16=False)
    return copy


def compare(folder: Path, *, threads: int = 1, seconds: float = 1.0, rounds: int = 5) -> dict:
    from targets.openvino_runtime import OpenVINORunner

    artifact = open_artifact(folder)
    if artifact.runtime != "openvino" or artifact.manifest["details"].get("batch") != 1:
        raise BadInputError(f"{folder}: not an OpenVINO IR with a static batch of 1")
    if rounds < 1:
        raise BadInputError("rounds must be at least 1")
    shape = [1, *artifact.manifest["inputs"][0]["shape"][1:]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    config = LatencyConfig(min_seconds=seconds, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"static": OpenVINORunner(artifact.path, threads=threads),
                   "dynamic": OpenVINORunner(_dynamic_copy(artifact.path, Path(tmp)), threads=threads)}
        x = x.astype(runners["static"].inputs[0].dtype)
        np.testing.assert_allclose(runners["dynamic"].run(x)[0], runners["static"].run(x)[0], rtol=1e-5, atol=1e-6)
        p50s: dict[str, list[float]] = {"static": [], "dynamic": []}
        for index in range(rounds):
            for kind in ("static", "dynamic") if index % 2 == 0 else ("dynamic", "static"):
                runner = runners[kind]
                p50s[kind].append(measure(lambda: runner.run(x), config).p50_ms)
        for runner in runners.values():
            runner.close()
    static, dynamic = statistics.median(p50s["static"]), statistics.median(p50s["dynamic"])
    return {"target": artifact.target, "threads": threads, "rounds": rounds, "seconds_per_round": seconds,
            "static_p50_ms": static, "dynamic_p50_ms": dynamic, "speedup": dynamic / static,
            "static_rounds_ms": [round(v, 4) for v in p50s["static"]],
            "dynamic_rounds_ms": [round(v, 4) for v in p50s["dynamic"]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = [compare(f, threads=args.threads, seconds=args.seconds, rounds=args.rounds) for f in args.folders]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
