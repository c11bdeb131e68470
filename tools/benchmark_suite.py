"""Regenerate BENCHMARKS.md: every sample model, every profile that takes it, measured side by side.

Usage: python -m tools.benchmark_suite [--models NAME ...] [--out DIR] [--rounds 3] [--write BENCHMARKS.md]
(`make benchmarks` runs it with the defaults.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import sample_models
from benchmarks import reports
from benchmarks.harness import measure
from benchmarks.latency import LatencyConfig
from compressor import load_model
from compressor.data import samples as sample_data
from targets import PROFILES, export, export_many, profiles_for

COMMAND = "make benchmarks   # = python -m tools.benchmark_suite --write BENCHMARKS.md"


def run_model(name: str, out: Path, config: LatencyConfig, rounds: int) -> dict:
    spec = sample_models.SAMPLE_MODELS[name]
    source = sample_models.path(name)
    model = load_model(source)
    train, test = sample_data.load(spec.dataset, "train"), sample_data.load(spec.dataset, "test")
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    skipped = {p: "the layers it uses have no kernel there" for p in PROFILES if p not in profiles_for(model)}
    _, failed = export_many(model, ["all"], out_dir=folder, calibration=train, validation=test, source_path=source)
    skipped.update({failure.target: failure.message for failure in failed})
    doc = measure([folder], eval_data=test, source=source, config=config, rounds=rounds)
    reports.write_reports(doc, folder)
    return {"model": name, "doc": doc, "skipped": skipped}


FIDELITY_REFERENCE = "mobilenet_v2_224"


def fidelity_reference(out: Path) -> Path:
    """A MobileNetV2 alpha 1.0 at 224x224 (untrained: latency does not depend on the weights'
    values), exported to OpenVINO fp32 and int8, so that the benchmark_app comparison also
    covers a model of several milliseconds, where a Python call's fixed cost is small."""
    import numpy as np

    from compressor import keras_env
    from compressor.data import Dataset

    folder = out / FIDELITY_REFERENCE
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    keras = keras_env.keras3()
    keras.utils.set_random_seed(0)
    source = folder / "source.keras"
    keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000).save(source)
    model = load_model(source)
    noise = Dataset(np.random.default_rng(0).uniform(-1, 1, (32, 224, 224, 3)).astype(np.float32), name="noise")
    for profile in ("openvino-fp32", "openvino-int8"):
        export(model, profile, out_dir=folder, calibration="random", validation=noise, source_path=source)
    return folder


def int8_summary(doc: dict) -> list[str]:
    """For each runtime: int8 p50 against the same runtime's fp32 p50."""
    lines = []
    for row in doc["results"]:
        ratio = row.get("speedup_vs_runtime_fp32")
        if row["precision"] in ("int8", "dynamic-int8") and ratio:
            verdict = "faster" if ratio > 1.02 else "slower" if ratio < 0.98 else "no different"
            lines.append(f"{row['name']}: {ratio:.2f}× the speed of {row['runtime']} fp32 ({verdict})")
    return lines


def render(runs: list[dict], fidelity: list[dict], wall: float, batch_checks: list[dict] = ()) -> str:
    first = runs[0]["doc"]
    parts = ["# Benchmarks", "",
             "Every number below was measured on this project's CI-class machine in one run of:", "",
             f"```bash\n{COMMAND}\n```", "",
             f"Machine: {reports.machine_line(first).split('; data:')[0]}. Wall time of the whole run: "
             f"{wall / 60:.1f} min. Each artifact is measured in its own process; latencies are medians over "
             "interleaved rounds on a shared, noisy machine, so compare ratios within a table, not across runs.", "",
             "## Is int8 faster than fp32 here?", ""]
    for run in runs:
        parts.append(f"**{run['model']}**: " + "; ".join(int8_summary(run["doc"])) + ".")
        parts.append("")
    dot = first["machine"]["int8_dot_product"]
    parts += [f"This CPU {'has' if dot else 'has no'} int8 dot-product instructions (VNNI / Arm dotprod); "
              "above 1× the int8 artifact is faster than its runtime's fp32 artifact, below 1× slower.", ""]
    for run in runs:
        doc = run["doc"]
        parts += [f"## {run['model']}", "", f"Data: {doc['dataset']['name']} ({doc['dataset']['samples']} samples).",
                  "", reports.to_markdown(doc).split("\n\n")[0], ""]
        if run["skipped"]:
            parts.append("Not exported: " + "; ".join(f"`{p}`: {why}" for p, why in sorted(run["skipped"].items()))
                         + ".")
            parts.append("")
    if fidelity:
        first_check = fidelity[0]
        parts += ["## Harness vs OpenVINO benchmark_app", "",
                  f"Same IR and the same CPU plugin properties (benchmark_app gets the runner's configuration with "
                  f"`-load_config`), {first_check['threads']} thread, batch 1, {first_check['rounds']} alternating "
                  f"rounds of {first_check['seconds_per_round']:g} s each; medians of the round medians "
                  "(`python -m tools.fidelity FOLDER...`). "
                  f"`{FIDELITY_REFERENCE}` is an untrained MobileNetV2 α1.0 at 224×224, there for its size.", "",
                  "| model / target | harness p50 ms | benchmark_app median ms | harness / benchmark_app | "
                  "within 10 % |", "|---|---|---|---|---|"]
        for f in fidelity:
            parts.append(f"| {f['model']} / {f['target']} | {f['harness_p50_ms']:.3f} | "
                         f"{f['benchmark_app_median_ms']:.3f} | {f['ratio']:.3f} | {'yes' if f['agree'] else 'no'} |")
        parts += ["", "benchmark_app times each request inside the runtime; the harness times a Python call with "
                  "input binding and output copy, so it is slower by the binding's fixed cost, which only matters "
                  "for the smallest models.", ""]
    if batch_checks:
        first_check = batch_checks[0]
        parts += ["## OpenVINO: static batch of 1 against a dynamic batch", "",
                  "The OpenVINO targets write the IR with a static batch of 1. Against the same IR with its batch "
                  f"made dynamic again, both run by the toolkit's runner, {first_check['threads']} thread, batch 1, "
                  f"{first_check['rounds']} alternating rounds of {first_check['seconds_per_round']:g} s; medians of "
                  "the round p50s (`python -m tools.openvino_batch FOLDER...`).", "",
                  "| model / target | static p50 ms | dynamic p50 ms | speed-up |", "|---|---|---|---|"]
        for b in batch_checks:
            parts.append(f"| {b['model']} / {b['target']} | {b['static_p50_ms']:.3f} | {b['dynamic_p50_ms']:.3f} | "
                         f"{b['speedup']:.2f}× |")
        parts.append("")
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(sample_models.SAMPLE_MODELS))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="write the Markdown here (e.g. BENCHMARKS.md)")
    parser.add_argument("--no-fidelity-reference", dest="fidelity_reference", action="store_false",
                        help=f"skip the larger {FIDELITY_REFERENCE} model of the benchmark_app comparison")
    args = parser.parse_args(argv)
    from tools import fidelity as fidelity_check
    from tools import openvino_batch
    from tools.publish import publish

    start = time.perf_counter()
    runs = []
    for name in args.models:
        runs.append(run_model(name, args.out, LatencyConfig(), args.rounds))
        print(f"{name}: measured", file=sys.stderr)
    checks = []
    fidelity_models = [m for m in ("mobilenet_v2", "cifar_cnn") if m in args.models]
    if args.fidelity_reference:
        fidelity_reference(args.out)
        fidelity_models.insert(0, FIDELITY_REFERENCE)
    for name in fidelity_models:
        for target in ("openvino-fp32", "openvino-int8"):
            folder = args.out / name / target
            if folder.is_dir():
                checks.append({"model": name, **fidelity_check.compare(folder)})
    batch_checks = [{"model": name, **openvino_batch.compare(args.out / name / target)}
                    for name in args.models for target in ("openvino-fp32", "openvino-int8")
                    if (args.out / name / target).is_dir()]
    text = render(runs, checks, time.perf_counter() - start, batch_checks)
    (args.out / "suite.json").write_text(json.dumps({"fidelity": checks, "openvino_batch": batch_checks,
                                                     "skipped": {r["model"]: r["skipped"] for r in runs}}, indent=2))
    return publish(text, args.write)


if __name__ == "__main__":
    sys.exit(main())
