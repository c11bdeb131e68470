"""One measurement in its own process: ``python -m benchmarks.worker SPEC.json``.

Each artifact (and the float baseline) is measured in a fresh process so that one
runtime's thread pools, caches and memory do not skew another's. The spec names the
artifact, the evaluation inputs, the latency settings and where to write results.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np


class PeakRSS:
    """Samples this process's resident memory in a background thread."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _preimport(runtime: str) -> None:
    """Import the runtime's libraries before the memory baseline: the model's cost is what is measured."""
    import importlib

    from targets.runtime import get_runtime

    for module in get_runtime(runtime).preimport:
        importlib.import_module(module)


def _open(spec: dict):
    """A runner: an artifact through its manifest (sha256 checked), the source model through the
    runtime that runs its format as it is."""
    if spec["kind"] == "artifact":
        from targets import open_artifact

        return open_artifact(spec["path"]).runner(threads=spec["threads"])
    from targets.runtime import get_runtime

    return get_runtime(spec["runtime"]).load(Path(spec["path"]), threads=spec["threads"],
                                             details={"source": True, "trust_model": spec.get("trust_model", False)})


def run(spec: dict) -> dict:
    from benchmarks.latency import LatencyConfig, measure
    from targets.runtime import run_batched

    config = LatencyConfig(**spec["latency"])
    _preimport(spec["runtime"])
    with np.load(spec["inputs"]) as data:
        x = [data[f"input_{i}"] for i in range(len(data.files))]
    sample = [a[: config.batch] for a in x]
    with PeakRSS() as memory:
        runner = _open(spec)
        outputs = run_batched(runner, x) if spec.get("outputs") else None
        runner.run(sample)
    if outputs is not None:
        np.savez(spec["outputs"], *outputs)
    stats = measure(lambda: runner.run(sample), config)
    load_seconds = runner.load_seconds
    runner.close()
    return {
        "latency": stats.to_dict(),
        "load_ms": load_seconds * 1000.0,
        "memory": {"baseline_mb": memory.baseline / 2**20, "peak_mb": memory.peak / 2**20,
                   "peak_above_baseline_mb": (memory.peak - memory.baseline) / 2**20},
    }


def main() -> None:
    import os

    os.environ.setdefault("COMPRESSOR_QUIET", "1")
    spec = json.loads(Path(sys.argv[1]).read_text())
    if spec.get("trust_model"):  # the user's custom layers, as the parent imported them (--custom-code)
        from compressor.models import custom_code

        custom_code.load_from_environment()
    result = run(spec)
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
