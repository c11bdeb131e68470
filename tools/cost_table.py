"""What one export costs as the model grows: every target's wall time and peak resident memory on
models from 0.1 M to 25 M parameters, each model in a process of its own, and how both grow with
the parameters and the layers.

The models: the trained samples (mnist_cnn, cifar_cnn, the mobilenet_v2 sample) on their own
data, and keras.applications' MobileNetV2 and ResNet50 at 224x224 and an SSDLite-style detector
at 320x320 (two outputs: boxes and class scores) with seeded untrained weights (cost does not
depend on the values), calibrated on 64 noise images and checked on 48 others, as the speed
suite makes them (tools.speed). Each export is one export: the profiles' parity
floors, no accuracy budget (the budget search's cost against one export is the page's first
section). The 110 M-parameter encoder has its own table (tools.encoder_cost).

With ``--fresh`` each export is the CLI's (``compressor export``) in a process of its own, the
data passed as .npz files: its peak is one export's alone, not a process that has done the ones
before it (tools.export_memory).

Usage: python -m tools.cost_table [--models NAME ...] [--fresh] [--out cost-out] [--write COST.md [--append]]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

DETECTOR = "ssdlite_320"  # a detector at 320x320, as SSDLite lays one out (the edge's usual detector)
MODELS = ("mnist_cnn", "cifar_cnn", "mobilenet_v2", DETECTOR, "mobilenet_v2_224", "resnet50_224")
COMMAND = "python -m tools.cost_table --write COST.md --append"
BOUND_MB = 1536  # one export's bound: 4 x the model's fp32 size + 1.5 GB


def measure(name: str, out: Path, fresh: bool = False) -> dict:
    """Every target ``name`` can take, exported in this process (or, ``fresh``, each by the CLI in a
    process of its own); its cost per target."""
    from compressor.models import load_source
    from targets import profiles_for
    from tools import speed

    large = name in speed.LARGE or name == DETECTOR
    if name == DETECTOR:
        source_path, calibration, evaluation = _detector(out), _noise(1, 64, 320), _noise(0, 48, 320)
    else:
        source_path, calibration, evaluation = speed._data(name)
    if source_path is None:
        source_path = speed._large_model(name, out)
    source = load_source(source_path)
    report = source.report()
    names = [t for t in profiles_for(source) if not (large and t in speed.NOT_FOR_LARGE)]
    validation = evaluation.take(48 if large else 500)
    run = _fresh_exports if fresh else _exports
    costs = run(name, source, source_path, names, calibration, validation, out)
    weighted = [layer for layer in report.layers if layer.params]
    return {"model": name, "params": report.params, "layers": len(weighted), "macs": report.macs,
            "targets": {target: {key: cost[key] for key in ("seconds", "peak_rss_mb", "status") if key in cost}
                        for target, cost in costs.items()}}


def _exports(name, source, source_path, names, calibration, validation, out: Path) -> dict:
    """One export per target in this process, each with its own high-water mark (reset as it starts)."""
    from targets import export_many

    costs: dict = {}
    exported, failed = export_many(source, names, out_dir=out / name, calibration=calibration, validation=validation,
                                   source_path=source_path, overwrite=True, costs=costs,
                                   on_progress=lambda line: print(f"{name}: {line}", file=sys.stderr, flush=True))
    for result in exported:
        costs[result.target]["status"] = "ok"
    for failure in failed:
        costs[failure.target]["status"] = f"refused (exit {failure.exit_code})"
    return costs


def _fresh_exports(name, source, source_path, names, calibration, validation, out: Path) -> dict:
    """Each target exported by ``compressor export`` in a fresh process, the data as .npz files; one
    export, not the accuracy budget's search (``--max-drop 100``, ``--min-snr`` at its least)."""
    import numpy as np

    from targets.export import DEFAULT_CALIBRATION_SAMPLES
    from tools.export_memory import measure as export_alone

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    calibration = calibration.shuffled(0).take(DEFAULT_CALIBRATION_SAMPLES)  # the samples the export takes
    for label, dataset in (("calibration", calibration), ("validation", validation)):
        arrays = dict(dataset.arrays)  # "x", or one array per named input
        if dataset.y is not None:
            arrays["y"] = dataset.y
        files.append(folder / f"{label}.npz")
        np.savez(files[-1], **arrays)
    options = ["--data", str(files[0]), "--eval-data", str(files[1]), "--calibration-samples",
               str(len(next(iter(calibration.arrays.values())))), "--max-drop", "100", "--min-snr", "1e-9"]
    tree = Path(__file__).resolve().parents[1]
    costs = {}
    for target in names:
        row = export_alone(str(source_path), target, tree, options)
        status = "ok" if row["exit"] == 0 else f"refused (exit {row['exit']})"
        costs[target] = {"seconds": row["seconds"], "peak_rss_mb": row["peak_mb"], "status": status}
        print(f"{name}: {target} {status} {row['seconds']} s, peak {row['peak_mb']} MB", file=sys.stderr, flush=True)
    return costs


def _noise(seed: int, samples: int, side: int):
    """Images of uniform noise, pixels 0-255, as the speed suite calibrates its untrained models."""
    import numpy as np

    from compressor.data import Dataset

    return Dataset(np.random.default_rng(seed).uniform(0, 255, (samples, side, side, 3)).astype(np.float32),
                   name="uniform noise 0-255")


def _detector(folder: Path) -> Path:
    """An SSDLite-style detector at 320x320 with seeded untrained weights: a MobileNetV2 (alpha 0.5)
    trunk, box and class heads (separable 3x3 convolutions, 6 anchors a cell, 20 classes) on its
    stride-16 and stride-32 maps (20x20 and 10x10 cells), 3,000 boxes and their sigmoid scores."""
    from compressor import keras_env

    path = folder / f"{DETECTOR}.keras"
    if path.is_file():
        return path
    keras = keras_env.keras3()
    keras.utils.set_random_seed(0)
    layers, anchors, classes = keras.layers, 6, 20
    image = keras.Input((320, 320, 3), name="image")
    trunk = keras.applications.MobileNetV2(input_tensor=image, alpha=0.5, include_top=False, weights=None)
    boxes, scores = [], []
    for index, features in enumerate([trunk.get_layer("block_13_expand_relu").output, trunk.output]):
        box = layers.SeparableConv2D(anchors * 4, 3, padding="same", name=f"boxes_{index}")(features)
        score = layers.SeparableConv2D(anchors * classes, 3, padding="same", name=f"scores_{index}")(features)
        boxes.append(layers.Reshape((-1, 4), name=f"boxes_{index}_flat")(box))
        scores.append(layers.Reshape((-1, classes), name=f"scores_{index}_flat")(score))
    outputs = [layers.Concatenate(axis=1, name="boxes")(boxes),
               layers.Activation("sigmoid", name="scores")(layers.Concatenate(axis=1)(scores))]
    keras.Model(image, outputs, name=DETECTOR).save(path)
    return path


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x): the power ``y`` grows with (1: linearly)."""
    points = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(points) < 3:
        return None
    mx, my = (sum(p[i] for p in points) / len(points) for i in (0, 1))
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else None


def render(records: list[dict], machine: str, fresh: bool = False) -> str:
    how = ("each export by `compressor export` in a fresh process (the data as .npz files, `--max-drop 100`: "
           "one export, not the accuracy budget's search). Peak RSS: the process's high-water mark (`VmHWM`), "
           "TensorFlow, ONNX Runtime and OpenVINO loaded as the export needs them; each export converts the "
           "model again where it needs ONNX." if fresh else
           "each model in a process of its own, one export per target (the profiles' parity floors, no accuracy "
           "budget: the search's cost is the first section). Peak RSS: the export's own high-water mark (reset "
           "as it starts), in a process that has done the exports above it. The first ONNX Runtime target "
           "carries the model's one ONNX conversion, which the OpenVINO targets reuse.")
    command = COMMAND.replace("--write", "--fresh --write") if fresh else COMMAND
    lines = ["## One export's cost as the model grows (0.1 M to 25 M parameters)"
             + (", each export a process of its own" if fresh else ""), "",
             f"Regenerated by `{command}` on a {machine}, 2 cores; {how} The 224×224 models and the "
             f"320×320 detector ({DETECTOR}: boxes and class scores) are untrained (calibrated on noise); the "
             "samples are trained. Bound: 4 × the fp32 weights + 1.5 GB. "
             "The 110 M-parameter encoder: its own section below.", ""]
    targets = list(dict.fromkeys(t for r in records for t in r["targets"]))
    header = " | ".join(f"{r['model']} ({r['params'] / 1e6:.2f} M, {r['layers']} layers)" for r in records)
    lines += [f"| target | {header} |", "|---|" + "---|" * len(records)]
    for target in targets:
        cells = []
        for record in records:
            cost = record["targets"].get(target)
            if cost is None:
                cells.append("-")
                continue
            mark = "" if cost.get("status") == "ok" else f" ({cost.get('status', '?')})"
            seconds = f"{cost['seconds']:.1f}" if cost["seconds"] < 10 else f"{cost['seconds']:.0f}"
            cells.append(f"{seconds} s, {cost['peak_rss_mb']:,.0f} MB{mark}")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    bound = {r["model"]: 4 * r["params"] * 4 / 2**20 + BOUND_MB for r in records}
    over = [f"{r['model']} {t}" for r in records for t, c in r["targets"].items()
            if c["peak_rss_mb"] is None or c["peak_rss_mb"] > bound[r["model"]]]
    if not over:
        lines += ["", "- Within the bound: every export."]
    elif fresh:
        cells = {f"{r['model']} {t}": c["peak_rss_mb"] for r in records for t, c in r["targets"].items()}
        lines += ["", f"- Over the bound: {len(over)} of {len(cells)} exports: "
                  + ", ".join(f"{item} {cells[item] or 0:,.0f} MB (bound {bound[item.split(' ')[0]]:,.0f})"
                              for item in over) + "."]
    else:
        models = list(dict.fromkeys(item.split(" ")[0] for item in over))
        total = sum(len(r["targets"]) for r in records)
        first = {r["model"]: next(iter(r["targets"].values()))["peak_rss_mb"] for r in records if r["targets"]}
        lines += ["", f"- Over the bound: {len(over)} of {total} exports, on {', '.join(models)}: the bound of these "
                  "models is below the process's own footprint with TensorFlow, ONNX Runtime, OpenVINO, "
                  "the model and its data loaded (the first export's peak: "
                  + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in first.items()) + ")."]
    growth = []
    for target in targets:
        seconds = [(r["params"], r["targets"][target]["seconds"]) for r in records if target in r["targets"]]
        by_layers = [(r["layers"], r["targets"][target]["seconds"]) for r in records if target in r["targets"]]
        memory = [(r["params"], r["targets"][target]["peak_rss_mb"]) for r in records if target in r["targets"]]
        p, lay, m = _slope(seconds), _slope(by_layers), _slope(memory)
        if p is not None:
            growth.append(f"{target} time ∝ params^{p:.2f} (layers^{lay:.2f}), peak ∝ params^{m:.2f}")
    if growth:
        lines += ["- How each grows (least-squares power over these models; 1.00 is linear): " + "; ".join(growth)
                  + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("cost-out"))
    parser.add_argument("--write", type=Path, help="the page to write (e.g. COST.md)")
    parser.add_argument("--append", action="store_true", help="add the section below the page --write names")
    parser.add_argument("--fresh", action="store_true", help="each export by the CLI in a process of its own")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one model, JSON out
    args = parser.parse_args(argv)
    from compressor.app.options import quiet_libraries

    quiet_libraries()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.one, args.out, fresh=args.fresh)))
        return 0
    records = []
    for name in args.models:  # a process per model: its peak is its own
        done = subprocess.run([sys.executable, "-m", "tools.cost_table", "--one", name, "--out", str(args.out),
                               *(["--fresh"] if args.fresh else [])],
                              stdout=subprocess.PIPE, text=True, check=True)
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        (args.out / f"{name}.json").write_text(json.dumps(records[-1], indent=2))
    from benchmarks.machine import capture
    from tools.publish import publish

    host = capture()
    machine = f"{host.get('cpu', '?')} (class {host.get('cpu_class', '?')})"
    return publish(render(records, machine, fresh=args.fresh), args.write,
                   append=args.append)


if __name__ == "__main__":
    sys.exit(main())
