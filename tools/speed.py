"""The speed suite: SPEED.md, every profile this host runs, on models of a real size, side by side.

Usage: python -m tools.speed [--models NAME ...] [--out speed-out] [--rounds 2] [--write SPEED.md]
(``make speed`` regenerates SPEED.md). MobileNetV2 alpha 1.0, ResNet50 and EfficientNetB0 at
224x224 (seeded untrained weights: latency does not depend on the values; calibrated on noise,
parity checked on noise, accuracy not measured) and the sample models (trained, their own data).
Each model is measured at 1 thread and all threads, batch 1 and 8; within one configuration all
artifacts run in interleaved rounds, so ratios in one table are fair, absolute times are not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

COMMAND = "make speed   # = python -m tools.speed --write SPEED.md"
LARGE = {  # name -> keras.applications builder, at 224x224x3 with 1000 classes
    "mobilenet_v2_224": ("MobileNetV2", {"alpha": 1.0}),
    "resnet50_224": ("ResNet50", {}),
    "efficientnet_b0_224": ("EfficientNetB0", {}),
}
SAMPLES = ("mnist_cnn", "cifar_cnn", "mobilenet_v2")
# Profiles not measured on the 224x224 models: a model of several MB fits no microcontroller,
# and TFLite's int16x8 kernels are reference code (seconds per inference), an accuracy option.
NOT_FOR_LARGE = {"mcu": "no microcontroller holds a 224x224 model of several MB",
                 "tflite-int16x8": "reference kernels (an accuracy option, not a speed one)"}
CONFIGS = ((1, 1), (0, 1), (1, 8), (0, 8))  # (threads, batch); 0 threads = all cores
# Structured channel pruning, measured in the same interleaved rounds as the model it comes from:
# the pruned widths are what `prune_structured` gives at each fraction (latency depends on the
# widths, not on the weight values; accuracy after fine-tuning is measured on the trained sample,
# see PRUNING_ACCURACY). Only the static int8 profiles: pruning is the step past int8.
PRUNED = {"mobilenet_v2_224": (0.25, 0.5)}
PRUNED_PROFILES = ("tflite-int8", "onnx-int8", "openvino-int8")
# The accuracy side of the same variants: `compressor search` on the trained MobileNetV2 sample
# (alpha 0.35, 96x96) with these recipes and PRUNED_PROFILES, each pruned trial fine-tuned, every
# candidate held to a 1-point budget: the drop each variant costs on a real task.
PRUNING_ACCURACY = {"mobilenet_v2_224": ("mobilenet_v2", ("int8", "structured25", "structured50"))}


def _large_model(name: str, folder: Path) -> Path:
    from compressor import keras_env

    keras = keras_env.keras3()
    keras.utils.set_random_seed(0)
    builder, kwargs = LARGE[name]
    path = folder / f"{name}.keras"
    if not path.is_file():
        getattr(keras.applications, builder)(input_shape=(224, 224, 3), weights=None, classes=1000, **kwargs).save(path)
    return path


def _data(name: str):
    """(source file, calibration, evaluation) for a model of the suite."""
    import numpy as np

    import sample_models
    from compressor.data import Dataset
    from compressor.data import samples as sample_data

    if name in LARGE:  # calibration and validation: two draws of the same noise, pixels 0-255
        draw = lambda seed, n: Dataset(np.random.default_rng(seed).uniform(0, 255, (n, 224, 224, 3))  # noqa: E731
                                       .astype(np.float32), name="uniform noise 0-255")
        return None, draw(1, 64), draw(0, 48)
    spec = sample_models.SAMPLE_MODELS[name]
    return sample_models.path(name), sample_data.load(spec.dataset, "train"), sample_data.load(spec.dataset, "test")


def export_model(name: str, out: Path) -> tuple[Path, Path, object, dict]:
    from compressor import load_model
    from targets import PROFILES, export_many, profiles_for

    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source, calibration, evaluation = _data(name)
    if source is None:
        source = _large_model(name, out)
    model = load_model(source)
    names = profiles_for(model)
    skipped = {p: "its layers have no kernel there" for p in PROFILES if p not in names}
    if name in LARGE:
        skipped.update({p: why for p, why in NOT_FOR_LARGE.items() if p in names})
        names = [p for p in names if p not in NOT_FOR_LARGE]
    _, failed = export_many(model, names, out_dir=folder, calibration=calibration, validation=evaluation,
                            validation_samples=48 if name in LARGE else 500, source_path=source,
                            on_progress=lambda line: print(f"{name}: {line}", file=sys.stderr))
    skipped.update({f.target: f.message for f in failed})
    for fraction in PRUNED.get(name, ()):
        skipped.update(_export_pruned(model, folder, fraction, calibration, evaluation, source))
    return folder, Path(source), evaluation, skipped


def variant(fraction: float) -> str:
    return f"structured{round(fraction * 100)}"


def _export_pruned(model, folder: Path, fraction: float, calibration, evaluation, source) -> dict:
    from compressor.algorithms.structured import PruneStructured, prune_channels
    from targets import export_many

    pruned, record = prune_channels(model, PruneStructured(fraction=fraction))
    where = folder / variant(fraction)
    _, failed = export_many(pruned, list(PRUNED_PROFILES), out_dir=where, calibration=calibration,
                            validation=evaluation, validation_samples=48, source_path=source,
                            on_progress=lambda line: print(f"{where.name}: {line}", file=sys.stderr))
    (where / "pruning.json").write_text(json.dumps(record, indent=2, default=str))
    return {f"{f.target} [{where.name}]": f.message for f in failed}


def _search_sample(name: str, out: Path) -> dict:
    """`compressor search` on a trained sample with the pruning recipes: accuracy of each variant."""
    import compressor
    import sample_models

    recipes = next(r for sample, r in PRUNING_ACCURACY.values() if sample == name)
    dataset = sample_models.SAMPLE_MODELS[name].dataset
    return compressor.search(sample_models.path(name), PRUNED_PROFILES, data=f"sample:{dataset}:train",
                             eval_data=f"sample:{dataset}:test", out_dir=out / f"{name}-search", max_drop=1.0,
                             recipes=recipes)


def measure_model(name: str, out: Path, rounds: int, min_seconds: float) -> dict:
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig

    started = time.perf_counter()
    folder, source, evaluation, skipped = export_model(name, out)
    docs = {}
    for threads, batch in CONFIGS:
        threads = threads or os.cpu_count() or 1
        config = LatencyConfig(threads=threads, batch=batch, min_runs=20, min_seconds=min_seconds,
                               warmup_seconds=0.3)
        key = f"{threads}t-b{batch}"
        variants = [folder / variant(f) for f in PRUNED.get(name, ()) if (folder / variant(f)).is_dir()]
        docs[key] = measure([folder, *variants], eval_data=evaluation, source=source, config=config, rounds=rounds,
                            on_progress=lambda line: print(f"{name} {key}: {line}", file=sys.stderr))
    if name in {sample for sample, _ in PRUNING_ACCURACY.values()}:
        record_search = _search_sample(name, out)
    else:
        record_search = None
    pruning = {variant(f): json.loads((folder / variant(f) / "pruning.json").read_text())
               for f in PRUNED.get(name, ()) if (folder / variant(f) / "pruning.json").is_file()}
    record = {"model": name, "skipped": skipped, "docs": docs, "pruning": pruning, "search": record_search,
              "seconds": time.perf_counter() - started}
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
    return record


def reroofed(record: dict) -> dict:
    """A cached record's roofline points held again to the ceilings the runtimes declare now
    (``Runtime.amx``): which peak an artifact is measured against is a fact about its runtime's
    kernels, not a measurement, and may be learnt after the run. Latencies stay as measured."""
    from benchmarks import roofline
    from targets.runtime import get_runtime

    for doc in record["docs"].values():
        roof, batch = doc["machine"].get("peak") or {}, doc["config"]["batch"]
        for row in doc["results"]:
            macs = (row.get("roofline") or {}).get("macs")
            if macs:
                row["roofline"] = roofline.point(macs, row["precision"], row["latency"]["p50_ms"], batch, roof,
                                                 get_runtime(row["runtime"]).amx)
    return record


def pruned_variant(row: dict) -> str | None:
    """The pruning variant an artifact row belongs to (its folder), None for the model as it is."""
    parent = Path(row["path"]).parent.name
    return parent if row["kind"] == "artifact" and parent.startswith("structured") else None


def headline(record: dict, key: str) -> dict:
    """The ratios the speed goals are stated in, for one configuration (the model as it is, no pruning)."""
    rows = [r for r in record["docs"][key]["results"] if not pruned_variant(r)]
    fp32 = [r for r in rows if r["kind"] == "artifact" and r["precision"] == "fp32"]
    float_source = next((r for r in rows if r["kind"] == "source"), None)
    artifacts = [r for r in rows if r["kind"] == "artifact" and r.get("device_class") == "CPU"]
    best = min(artifacts, key=lambda r: r["latency"]["p50_ms"])
    fastest_fp32 = min(fp32, key=lambda r: r["latency"]["p50_ms"]) if fp32 else None
    per_runtime = {r["runtime"]: r.get("speedup_vs_runtime_fp32") for r in rows
                   if r["precision"] == "int8" and r.get("device_class") == "CPU" and r.get("speedup_vs_runtime_fp32")}
    size = {r["runtime"]: r["size"]["bytes"] for r in fp32}
    shrink = {r["name"]: size[r["runtime"]] / r["size"]["bytes"] for r in rows
              if r["precision"] == "int8" and r["runtime"] in size and r["size"]["bytes"]}
    return {
        "best": best["name"], "best_p50_ms": best["latency"]["p50_ms"],
        "best_vs_fastest_fp32": fastest_fp32["latency"]["p50_ms"] / best["latency"]["p50_ms"] if fastest_fp32 else None,
        "fastest_fp32": fastest_fp32["name"] if fastest_fp32 else None,
        "best_vs_keras": float_source["latency"]["p50_ms"] / best["latency"]["p50_ms"] if float_source else None,
        "int8_vs_own_fp32": per_runtime, "int8_size_ratio": shrink,
        "best_roofline": (best.get("roofline") or {}).get("fraction"),
        "best_ceiling": (best.get("roofline") or {}).get("ceiling"),
    }


def pruning_table(record: dict, key: str, accuracy: dict | None) -> dict:
    """Static int8 per runtime, as it is and structurally pruned: latency here, the sample's accuracy drop.

    ``accuracy`` is the search record on the trained sample (recipe ``int8`` is the unpruned model);
    a variant counts as within budget only where the search measured it within its budget.
    """
    rows = record["docs"][key]["results"]
    fp32 = [r["latency"]["p50_ms"] for r in rows if r["kind"] == "artifact" and r["precision"] == "fp32"
            and not pruned_variant(r)]
    keras = next((r["latency"]["p50_ms"] for r in rows if r["kind"] == "source"), None)
    drops = {}
    for c in (accuracy or {}).get("candidates", []):
        drops[(c["recipe"], c["target"])] = (c["drop_pp"], c["within_budget"])
    macs = {v: (r["macs_before"], r["macs_after"]) for v, r in record.get("pruning", {}).items()}
    macs["int8"] = next(((before, before) for before, _ in macs.values()), None)
    table, best = [], None
    for row in rows:
        if row["kind"] != "artifact" or row["precision"] != "int8" or row.get("device_class") != "CPU":
            continue
        target = row["name"].split(" [")[0]
        if target not in PRUNED_PROFILES:
            continue
        recipe = pruned_variant(row) or "int8"
        drop, within = drops.get((recipe, target), (None, None))
        entry = {"variant": recipe, "target": target, "p50_ms": row["latency"]["p50_ms"],
                 "vs_fastest_fp32": min(fp32) / row["latency"]["p50_ms"] if fp32 else None,
                 "vs_keras": keras / row["latency"]["p50_ms"] if keras else None, "macs": macs.get(recipe),
                 "roofline": (row.get("roofline") or {}).get("fraction"),
                 "ceiling": (row.get("roofline") or {}).get("ceiling"), "sample_drop_pp": drop, "within": within}
        table.append(entry)
        if within and (best is None or entry["p50_ms"] < best["p50_ms"]):
            best = entry
    return {"rows": sorted(table, key=lambda e: (e["variant"] != "int8", e["variant"], e["target"])), "best": best}


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _peak(fraction: float | None, ceiling: str | None) -> str:
    """A roofline fraction with the ceiling it is of ("7 % of int8 (AMX)")."""
    return "-" if fraction is None else f"{fraction * 100:.0f} %" + (f" of {ceiling}" if ceiling else "")


def _render_pruning(record: dict, key: str, sample: str | None, accuracy: dict | None, sub: str = "##") -> list[str]:
    table = pruning_table(record, key, accuracy)
    parts = ["", f"{sub} Structured pruning + int8: {record['model']} (1 thread, batch 1)", "",
             "Channel pruning (`prune_structured`) at 25 and 50 %, then static int8, measured in the same interleaved "
             "rounds as the unpruned model. Latency at 224×224 (alpha 1.0; the widths the step gives, weights not "
             "fine-tuned: latency does not depend on them); accuracy drop from `compressor search` on the trained "
             f"`{sample}` sample at its own size, each pruned variant fine-tuned, against the float sample, on its "
             "test set (1-point budget, ✗ outside it; `-` where the search has no such candidate). The drop is "
             "that task's (10 digit classes, 1,347 training images): a harder task loses more to the same pruning, "
             "so run `compressor search` on your own data.", "",
             "| variant | MACs | artifact | p50 ms | × fastest fp32 | × TensorFlow/Keras | % of peak "
             "| sample drop (pt) |", "|---|---|---|---|---|---|---|---|"]
    for e in table["rows"]:
        drop = "-" if e["sample_drop_pp"] is None else f"{e['sample_drop_pp']:+.2f}" + ("" if e["within"] else " ✗")
        before, after = e["macs"] or (None, None)
        fewer = f" ({before / after:.2f}× fewer)" if after and after < before else ""
        cell = "-" if not after else f"{after / 1e6:.0f} M{fewer}"
        parts.append(f"| {e['variant']} | {cell} | {e['target']} | {e['p50_ms']:.3f} | "
                     f"{_fmt(e['vs_fastest_fp32'], '.2f', '×')} | {_fmt(e['vs_keras'], '.2f', '×')} | "
                     f"{_peak(e['roofline'], e['ceiling'])} | {drop} |")
    best = table["best"]
    if best:
        parts += ["", f"Fastest within the 1-point budget: **{best['variant']} {best['target']}**, "
                  f"{best['p50_ms']:.3f} ms: "
                  f"{_fmt(best['vs_fastest_fp32'], '.2f', '×')} the fastest fp32 artifact and "
                  f"{_fmt(best['vs_keras'], '.2f', '×')} TensorFlow/Keras."]
    elif accuracy is None:
        parts += ["", f"The `{sample}` sample's search was not run with these records: accuracy not measured."]
    return parts


def render(records: list[dict], remark: str | None = None, heading: str | None = None,
           command: str = COMMAND) -> str:
    """The page; with ``heading``, the same tables as a section for a run on another machine (its
    own CPU class), to be added below the page."""
    from benchmarks import reports

    first = next(iter(records[0]["docs"].values()))
    machine = first["machine"]
    keys = list(records[0]["docs"])
    sub = "###" if heading else "##"
    parts = [f"## {heading}" if heading else "# Speed per CPU class", "",
             f"{'Measured' if heading else 'Regenerated'} by `{command}` "
             f"({sum(r['seconds'] for r in records) / 60:.0f} min of runs) on one machine:", "",
             f"- CPU: {machine['cpu']}, class **{machine['cpu_class']}** (flags read: {', '.join(machine['flags'])}; "
             f"int8 dot product: {'yes' if machine['int8_dot_product'] else 'no'}), {machine['cores']} cores.",
             f"- Peak (1 core): {machine['peak']['formula']}." if machine.get("peak") else "",
             "- Every artifact was exported with the settings of this host's class (`--cpu-class host`). "
             "Latencies are medians of interleaved rounds, each artifact in its own process; compare ratios "
             "within one table, not absolute times across runs (the machine is shared).",
             "- The 224×224 models carry seeded untrained weights (latency does not depend on the values), "
             "calibrated and parity-checked on noise; their accuracy is not measured here. The sample models are "
             "trained and measured on their own test sets (BENCHMARKS.md has their accuracy).",
             *([f"- Conditions of this run: {remark}"] if remark else []), ""]
    parts += [f"{sub} Headline (1 thread, batch 1)", "",
              "| model | best CPU artifact | p50 ms | × fastest fp32 | × TensorFlow/Keras | int8 × its runtime's fp32 "
              "| fp32/int8 size | best's % of its peak |", "|---|---|---|---|---|---|---|---|"]
    for record in records:
        h = headline(record, keys[0])
        ratios = ", ".join(f"{k} {v:.2f}×" for k, v in sorted(h["int8_vs_own_fp32"].items()))
        sizes = ", ".join(f"{k} {v:.2f}×" for k, v in sorted(h["int8_size_ratio"].items()))
        parts.append(f"| {record['model']} | {h['best']} | {h['best_p50_ms']:.3f} | "
                     f"{_fmt(h['best_vs_fastest_fp32'], '.2f', '×')} ({h['fastest_fp32']}) | "
                     f"{_fmt(h['best_vs_keras'], '.2f', '×')} | {ratios} | {sizes} | "
                     f"{_peak(h['best_roofline'], h['best_ceiling'])} |")
    by_name = {r["model"]: r for r in records}
    for record in records:
        if not record.get("pruning"):
            continue
        sample, _ = PRUNING_ACCURACY.get(record["model"], (None, ()))
        accuracy = (by_name.get(sample) or {}).get("search")
        parts += _render_pruning(record, keys[0], sample, accuracy, sub)
    for record in records:
        parts += ["", f"{sub} {record['model']}", "",
                  "p50 ms per configuration (threads × batch; throughput = batch / p50), × fp32 of the same runtime "
                  "at 1 thread batch 1, GOP/s and % of the host's peak for its arithmetic at 1 thread batch 1.", "",
                  "| artifact | " + " | ".join(f"p50 ms {k}" for k in keys) + " | × runtime fp32 | GOP/s | % peak |",
                  "|---|" + "---|" * (len(keys) + 3)]
        per_key = {k: {r["name"]: r for r in record["docs"][k]["results"]} for k in keys}
        for name, row in per_key[keys[0]].items():
            cells = [_fmt(per_key[k].get(name, {}).get("latency", {}).get("p50_ms"), ".3f") for k in keys]
            roof = row.get("roofline") or {}
            ratio = _fmt(row.get("speedup_vs_runtime_fp32"), ".2f", "×")
            parts.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {_fmt(roof.get('gops'), '.1f')} | "
                         f"{_peak(roof.get('fraction'), roof.get('ceiling'))} |")
        slow = reports.slower_than_fp32(record["docs"][keys[0]])
        if slow:
            parts += [""] + [f"- {line}" for line in slow]
        if record["skipped"]:
            parts += ["", "Not measured: " + "; ".join(f"`{p}`: {why}" for p, why in sorted(record["skipped"].items()))
                      + "."]
    spreads = [r["latency"]["p50_spread_ms"] for rec in records for d in rec["docs"].values() for r in d["results"]]
    widest = max((hi - lo) / lo for lo, hi in spreads if lo) if spreads else 0
    parts += ["", f"Noise: the widest spread of one artifact's p50 across its rounds was {widest:.0%} of its minimum "
              f"({statistics.median((hi - lo) / lo for lo, hi in spreads if lo):.1%} median).", ""]
    return "\n".join(p for p in parts if p is not None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[*LARGE, *SAMPLES])
    parser.add_argument("--out", type=Path, default=Path("speed-out"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--cached", action="store_true", help="render the records already in OUT")
    parser.add_argument("--write", type=Path, help="write the Markdown here (e.g. SPEED.md)")
    parser.add_argument("--remark", help="what else the machine did during the run, printed with the results")
    parser.add_argument("--section", metavar="TITLE",
                        help="add the tables to the page --write names, under this heading (a run on another CPU "
                             "class), instead of writing the page anew")
    args = parser.parse_args(argv)
    from tools.publish import publish

    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for name in args.models:
        cached = args.out / f"{name}.json"
        if args.cached and cached.is_file():
            records.append(reroofed(json.loads(cached.read_text())))
            continue
        records.append(measure_model(name, args.out, args.rounds, args.min_seconds))
        print(f"{name}: measured", file=sys.stderr)
    if args.section:
        command = f"python -m tools.speed --models {' '.join(args.models)} --section ... --write SPEED.md"
        return publish(render(records, args.remark, args.section, command), args.write, append=True)
    return publish(render(records, args.remark), args.write)


if __name__ == "__main__":
    sys.exit(main())
