"""OpenVINO fp32, bf16 and int8 side by side on 224x224 models (seeded untrained weights: latency
does not depend on the values; calibrated and parity-checked on noise), 1 thread, batch 1, in
interleaved rounds: how much bf16 (AMX or AVX-512 BF16) and int8 buy on this CPU.

Usage: python -m tools.bf16_speed [--models resnet50_224 mobilenet_v2_224] [--out bf16-out]
Prints one JSON record: the CPU class and flags, and p50 ms per model and profile. On a CPU
without bf16 the bf16 profile is refused and left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROFILES = ("openvino-fp32", "openvino-bf16", "openvino-int8")


def run(models, out: Path) -> dict:
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from compressor import cpu, load_model
    from targets import export_many
    from tools import speed

    host = cpu.host()
    record = {"cpu": host["cpu"], "cpu_class": host["cpu_class"], "flags": host["flags"], "p50_ms": {}}
    for name in models:
        source = speed._large_model(name, out)
        _, calibration, evaluation = speed._data(name)
        folder = out / name
        _, failed = export_many(load_model(source), list(PROFILES), out_dir=folder, calibration=calibration,
                                validation=evaluation, validation_samples=48, overwrite=True)
        for failure in failed:
            print(f"{name}: {failure.message}", file=sys.stderr)
        doc = measure([folder], eval_data=evaluation.take(8), config=LatencyConfig(min_seconds=2.0, threads=1),
                      rounds=3)
        record["p50_ms"][name] = {r["name"]: round(r["latency"]["p50_ms"], 3) for r in doc["results"]}
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50_224", "mobilenet_v2_224"])
    parser.add_argument("--out", type=Path, default=Path("bf16-out"))
    args = parser.parse_args(argv)
    from compressor.app.options import quiet_libraries

    quiet_libraries()  # as the CLI: NNCF's progress bars would go to stdout, before the JSON record
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.models, args.out), indent=2))


if __name__ == "__main__":
    main()
