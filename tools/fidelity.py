"""Check the harness against OpenVINO's own ``benchmark_app`` on the same IR.

Usage: python -m tools.fidelity ARTIFACT_FOLDER... [--threads 1] [--seconds 2] [--rounds 5]

Both measure batch-1 synchronous latency of the same IR with the same CPU plugin
properties: ``benchmark_app`` is handed the runner's own configuration
(``-load_config``), so threads, streams, hint, pinning and precision cannot differ.
Both run the IR as it is: benchmark_app gets batch-1 data with ``-data_shape``, which is
the exported IR's own static batch of 1 and also fits an IR that kept a dynamic batch;
``-shape`` would reshape such an IR into another (faster) program than the runner's.
The two are run alternately, ``rounds`` times each (ABBA order), so that drift of a
shared machine lands on both; the medians of the per-round medians are compared, and
the script exits 1 if they differ by more than 10 %.

benchmark_app reports the runtime's own timing of each request, the harness the wall
time of a Python call (input binding and output copy included), so the harness is
slower by the Python binding's fixed cost; for models of a few tens of microseconds
that cost alone exceeds 10 %.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import side_by_side
from benchmarks.latency import LatencyConfig
from tools.side_by_side import alternate
from compressor.errors import BadInputError
from targets import open_artifact

MEDIAN = re.compile(r"Median:\s+([\d.]+)\s*(ms|us)")
AGREEMENT = 0.10


def benchmark_app_command(xml: Path, shape: list[int], *, threads: int, seconds: float, workdir: Path) -> list[str]:
    """The benchmark_app call for ``xml``; its CPU properties are the runner's, written to ``workdir``."""
    from targets.runtimes.openvino_runtime import cpu_config

    config = workdir / "ov-config.json"
    config.write_text(json.dumps({"CPU": {k: str(v) for k, v in cpu_config(threads).items()}}))
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    return [tool, "-m", str(xml), "-d", "CPU", "-api", "sync", "-load_config", str(config),
            "-t", str(max(1, round(seconds))), "-data_shape", "[" + ",".join(str(d) for d in shape) + "]"]


def benchmark_app_median(xml: Path, shape: list[int], *, threads: int, seconds: float, workdir: Path) -> float:
    from benchmarks.harness import thread_env

    command = benchmark_app_command(xml, shape, threads=threads, seconds=seconds, workdir=workdir)
    proc = subprocess.run(command, capture_output=True, text=True, env=thread_env(threads))
    match = MEDIAN.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise BadInputError(f"benchmark_app failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    value = float(match.group(1))
    return value / 1000.0 if match.group(2) == "us" else value


def harness_median(folder: Path, shape: list[int], *, threads: int, seconds: float) -> float:
    import numpy as np

    from benchmarks.harness import artifact_latency

    config = LatencyConfig(min_seconds=seconds, warmup_seconds=0.5, threads=threads)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return artifact_latency(folder, x, config)["p50_ms"]


def compare(folder: Path, *, threads: int = 1, seconds: float = 2.0, rounds: int = 5) -> dict:
    artifact = open_artifact(folder)
    if artifact.runtime != "openvino":
        raise BadInputError(f"{folder}: benchmark_app measures OpenVINO IR, this is {artifact.runtime}")
    shape = [1, *artifact.manifest["inputs"][0]["shape"][1:]]
    with tempfile.TemporaryDirectory() as tmp:
        rounds_ms = alternate({
            "harness": lambda: harness_median(folder, shape, threads=threads, seconds=seconds),
            "app": lambda: benchmark_app_median(artifact.path, shape, threads=threads, seconds=seconds,
                                                workdir=Path(tmp)),
        }, rounds)
    harness, app = statistics.median(rounds_ms["harness"]), statistics.median(rounds_ms["app"])
    return {"target": artifact.target, "threads": threads, "rounds": rounds, "seconds_per_round": seconds,
            "harness_p50_ms": harness, "benchmark_app_median_ms": app, "ratio": harness / app,
            "agree": abs(harness / app - 1.0) <= AGREEMENT,
            "harness_rounds_ms": [round(v, 4) for v in rounds_ms["harness"]],
            "benchmark_app_rounds_ms": [round(v, 4) for v in rounds_ms["app"]]}


def main(argv=None) -> int:
    return side_by_side.main(argv, description=__doc__.splitlines()[0], compare=compare, seconds=2.0,
                             passed=lambda result: result["agree"])


if __name__ == "__main__":
    sys.exit(main())
