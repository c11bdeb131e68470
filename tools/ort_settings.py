"""ONNX Runtime session settings, measured: graph optimisation level, threads and spinning.

Usage: python -m tools.ort_settings [FOLDER] [--rounds 5] [--runs 30]
FOLDER holds ``onnx-fp32/`` and ``onnx-int8/`` artifacts (default: what ``make speed`` left
for MobileNetV2 at 224x224, ``speed-out/mobilenet_v2_224``). Every setting of every artifact
is loaded once in this process; the rounds run them in turn (interleaved, the order rotated
each round), each round timing ``--runs`` inferences of one image, so the ratios in one
table share the machine's load. It prints a Markdown table: p50 per setting and its ratio to
the setting the toolkit uses (``ORT_ENABLE_ALL``; spinning on, ONNX Runtime's default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL")
DEFAULT = ("ORT_ENABLE_ALL", True)


def _session(model: Path, level: str, threads: int, spinning: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def settings(threads_all: int) -> list[tuple[str, int, bool]]:
    """(level, threads, spinning): every level at 1 thread; spinning on and off at all threads."""
    one = [(level, 1, True) for level in LEVELS]
    many = [(level, threads_all, spin) for level in LEVELS[:2] for spin in (True, False)] if threads_all > 1 else []
    return one + many


def measure(folder: Path, rounds: int, runs: int, threads_all: int) -> list[dict]:
    entries = []
    for artifact in ("onnx-fp32", "onnx-int8"):
        model = folder / artifact / "model.onnx"
        if not model.is_file():
            raise SystemExit(f"{model}: missing; run `make speed` first or name a folder with {artifact}/model.onnx")
        for level, threads, spinning in settings(threads_all):
            session = _session(model, level, threads, spinning)
            info = session.get_inputs()[0]
            shape = [d if isinstance(d, int) else 1 for d in info.shape]
            feed = {info.name: np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)}
            session.run(None, feed)  # warm-up
            entries.append({"artifact": artifact, "level": level, "threads": threads, "spinning": spinning,
                            "session": session, "feed": feed, "p50s": []})
    for round_index in range(rounds):
        shift = round_index % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                entry["session"].run(None, entry["feed"])
                times.append((time.perf_counter() - start) * 1000)
            entry["p50s"].append(statistics.median(times))
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr)
    for entry in entries:
        entry["p50_ms"] = statistics.median(entry["p50s"])
        del entry["session"], entry["feed"]
    return entries


def render(entries: list[dict], folder: Path) -> str:
    from benchmarks import machine

    host = machine.capture()
    lines = [f"ONNX Runtime settings on {folder.name}, host class {host['cpu_class']} ({host['cpu']}, "
             f"{host['cores']} cores); p50 of one image, median over interleaved rounds.", "",
             "| artifact | graph optimisation | threads | spinning | p50 ms | × the toolkit's setting |",
             "|---|---|---|---|---|---|"]
    for entry in entries:
        base = next(e for e in entries if e["artifact"] == entry["artifact"] and e["threads"] == entry["threads"]
                    and (e["level"], e["spinning"]) == DEFAULT)
        lines.append(f"| {entry['artifact']} | {entry['level']} | {entry['threads']} | "
                     f"{'on' if entry['spinning'] else 'off'} | {entry['p50_ms']:.3f} | "
                     f"{base['p50_ms'] / entry['p50_ms']:.2f}× |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("speed-out/mobilenet_v2_224"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    entries = measure(args.folder, args.rounds, args.runs, os.cpu_count() or 1)
    print(render(entries, args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
