"""Check the harness against OpenVINO's own ``benchmark_app`` on the same IR.

Usage: python -m benchmarks.fidelity ARTIFACT_FOLDER [--threads 1] [--seconds 3]

Both measure batch-1 synchronous latency on one stream with the same thread count; the
script prints both medians and exits 1 if they differ by more than 10 %. benchmark_app
reports the runtime's own timing of each request, the harness the wall time of a
Python call (input binding and output copy included), so for models of a few tens of
microseconds the harness is slower by the Python binding's fixed cost.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.latency import LatencyConfig
from compressor.errors import BadInputError
from targets import open_artifact

MEDIAN = re.compile(r"Median:\s+([\d.]+)\s*(ms|us)")
AGREEMENT = 0.10


def benchmark_app_median(xml: Path, shape: list[int], *, threads: int, seconds: float) -> float:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "none", "-api", "sync", "-nstreams", "1",
               "-nthreads", str(threads), "-t", str(max(1, round(seconds))), "-infer_precision", "f32",
               "-shape", "[" + ",".join(str(d) for d in shape) + "]"]
    proc = subprocess.run(command, capture_output=True, text=True)
    match = MEDIAN.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise BadInputError(f"benchmark_app failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    value = float(match.group(1))
    return value / 1000.0 if match.group(2) == "us" else value


def harness_median(folder: Path, shape: list[int], *, threads: int, seconds: float) -> float:
    import numpy as np

    from benchmarks.harness import Candidate, _run_worker
    import tempfile

    artifact = open_artifact(folder)
    candidate = Candidate(artifact.target, "artifact", artifact.folder, artifact.runtime, artifact.precision, {})
    config = LatencyConfig(min_seconds=seconds, warmup_seconds=0.5, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "x.npz"
        np.savez(inputs, x=np.random.default_rng(0).random(shape, dtype=np.float32))
        return _run_worker(candidate, "fidelity", Path(tmp), inputs, config, None, False)["latency"]["p50_ms"]


def compare(folder: Path, *, threads: int = 1, seconds: float = 3.0) -> dict:
    artifact = open_artifact(folder)
    if artifact.runtime != "openvino":
        raise BadInputError(f"{folder}: benchmark_app measures OpenVINO IR, this is {artifact.runtime}")
    shape = [1, *[d for d in artifact.manifest["inputs"][0]["shape"][1:]]]
    ours = harness_median(folder, shape, threads=threads, seconds=seconds)
    theirs = benchmark_app_median(artifact.path, shape, threads=threads, seconds=seconds)
    return {"target": artifact.target, "harness_p50_ms": ours, "benchmark_app_median_ms": theirs,
            "ratio": ours / theirs, "agree": abs(ours / theirs - 1.0) <= AGREEMENT}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    result = compare(args.folder, threads=args.threads, seconds=args.seconds)
    print(json.dumps(result, indent=2))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
