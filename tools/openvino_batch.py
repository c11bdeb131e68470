"""Static against dynamic batch: what the OpenVINO targets gain from a batch fixed to 1.

Usage: python -m tools.openvino_batch ARTIFACT_FOLDER... [--threads 1] [--seconds 1] [--rounds 5]

The exported IR has a static batch of 1. The same IR with its batch axis made dynamic
again (what ``openvino.convert_model`` writes for a Keras model) is saved beside it, and
both are run through the toolkit's own OpenVINO runner with the same CPU properties, at
batch 1, alternately ``rounds`` times (ABBA order); the medians of the per-round p50s are
compared, after checking that the two give the same outputs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from tools import side_by_side
from benchmarks.latency import LatencyConfig, measure
from tools.side_by_side import alternate
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
    from targets.runtimes.openvino_runtime import OpenVINORunner

    artifact = open_artifact(folder)
    if artifact.runtime != "openvino" or artifact.manifest["details"].get("batch") != 1:
        raise BadInputError(f"{folder}: not an OpenVINO IR with a static batch of 1")
    shape = [1, *artifact.manifest["inputs"][0]["shape"][1:]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    config = LatencyConfig(min_seconds=seconds, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"static": OpenVINORunner(artifact.path, threads=threads),
                   "dynamic": OpenVINORunner(_dynamic_copy(artifact.path, Path(tmp)), threads=threads)}
        x = x.astype(runners["static"].inputs[0].dtype)
        np.testing.assert_allclose(runners["dynamic"].run(x)[0], runners["static"].run(x)[0], rtol=1e-5, atol=1e-6)
        p50s = alternate({kind: lambda runner=runner: measure(lambda: runner.run(x), config).p50_ms
                          for kind, runner in runners.items()}, rounds)
        for runner in runners.values():
            runner.close()
    static, dynamic = statistics.median(p50s["static"]), statistics.median(p50s["dynamic"])
    return {"target": artifact.target, "threads": threads, "rounds": rounds, "seconds_per_round": seconds,
            "static_p50_ms": static, "dynamic_p50_ms": dynamic, "speedup": dynamic / static,
            "static_rounds_ms": [round(v, 4) for v in p50s["static"]],
            "dynamic_rounds_ms": [round(v, 4) for v in p50s["dynamic"]]}


def main(argv=None) -> int:
    return side_by_side.main(argv, description=__doc__.splitlines()[0], compare=compare, seconds=1.0)


if __name__ == "__main__":
    sys.exit(main())
