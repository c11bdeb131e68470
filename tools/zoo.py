"""The model zoo: real architectures nobody on this project designed, each trained briefly
on a built-in sample set (so its weights are not random), saved as Keras 3 ``.keras`` and
converted to ONNX, then taken through every target from both sources.

Usage: python -m tools.zoo [--models NAME ...] [--out zoo-out] [--write ZOO.md]
(``make zoo`` runs it with the defaults and regenerates ZOO.md). Each model's results are
kept in OUT/NAME/result.json; a rerun skips the models already done (``--fresh`` redoes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from compressor import keras_env

COMMAND = "make zoo   # = python -m tools.zoo --write ZOO.md"


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    dataset: str  # a built-in sample set
    build: Callable  # () -> an untrained Keras 3 model
    epochs: int = 3
    targets: Callable | None = None  # dataset -> training targets, for models that are not plain classifiers
    loss: object = "sparse_categorical_crossentropy"
    learning_rate: float = 1e-3
    inputs: Callable | None = None  # x -> {input name: array}, for models with several inputs
    pixels: float = 1.0  # the range images are fed in: 255 for models that rescale inside (EfficientNet)
    trust_model: bool = False  # custom code the user vouches for (--trust-model)
    metric: str | None = None  # the task metric it is judged by (--metric), in place of top-1
    truth: Callable | None = None  # dataset -> its t_* truth arrays, for a sample set that has none
    deploy: Callable | None = None  # trained model -> the model shipped (an embedding without its training head)


ZOO: dict[str, ZooModel] = {}


def zoo_model(name: str, description: str, dataset: str, **options):
    def register(build):
        ZOO[name] = ZooModel(name, description, dataset, build, **options)
        return build

    return register


def _keras():
    return keras_env.keras3()


def _application(factory: str, size: int = 32, **kwargs):
    keras = _keras()
    return getattr(keras.applications, factory)(input_shape=(size, size, 3), weights=None, classes=10, **kwargs)


for _name, _factory, _options, _pixels, _description in (
    ("mobilenet_v3_small", "MobileNetV3Small", {"include_preprocessing": False}, 1.0, "hard-swish, squeeze-excite"),
    ("mobilenet_v3_large", "MobileNetV3Large", {"include_preprocessing": False}, 1.0, "hard-swish, squeeze-excite"),
    ("efficientnet_b0", "EfficientNetB0", {}, 255.0, "swish, Rescaling and Normalization inside (0-255 pixels)"),
    ("efficientnet_v2_b0", "EfficientNetV2B0", {}, 255.0, "fused MBConv, Rescaling inside (0-255 pixels)"),
    ("resnet50", "ResNet50", {}, 1.0, "residual bottlenecks, BatchNorm"),
    ("densenet121", "DenseNet121", {}, 1.0, "dense concatenations"),
    ("nasnet_mobile", "NASNetMobile", {}, 1.0, "NAS cells, separable convs"),
    ("convnext_tiny", "ConvNeXtTiny", {}, 1.0, "LayerNormalization, GELU, depthwise 7x7"),
):
    zoo_model(_name, f"keras.applications.{_factory} 32x32: {_description}", "digits-32rgb", epochs=10,
              learning_rate=3e-3, pixels=_pixels)(
        lambda factory=_factory, options=_options: _application(factory, **options))


@zoo_model("xception", "keras.applications.Xception 96x96: separable convs, entry/middle/exit flows", "digits-96rgb",
           epochs=1)
def _xception():
    return _application("Xception", 96)


@zoo_model("vit_tiny", "a small ViT: 4x4 patches, 2 MultiHeadAttention blocks, LayerNorm, GELU MLP", "digits-32rgb",
           epochs=4)
def _vit():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.Reshape((64, 32))(L.Conv2D(32, 4, strides=4, name="patches")(image))
    for block in range(2):
        h = L.LayerNormalization(name=f"ln{block}a")(x)
        x = L.Add()([x, L.MultiHeadAttention(num_heads=2, key_dim=16, name=f"mha{block}")(h, h)])
        h = L.LayerNormalization(name=f"ln{block}b")(x)
        x = L.Add()([x, L.Dense(32, name=f"mlp{block}b")(L.Dense(64, activation="gelu", name=f"mlp{block}a")(h))])
    x = L.GlobalAveragePooling1D()(L.LayerNormalization(name="ln_out")(x))
    return keras.Model(image, L.Dense(10, activation="softmax", name="classes")(x), name="vit_tiny")


def _text(name: str, recurrent):
    keras = _keras()
    L = keras.layers
    tokens = keras.Input((64,), dtype="int32", name="tokens")
    x = recurrent(L.Embedding(17, 16, name="embed")(tokens))
    return keras.Model(tokens, L.Dense(10, activation="softmax", name="classes")(x), name=name)


@zoo_model("gru_text", "Embedding + GRU over 64 tokens", "digits-tokens", epochs=6)
def _gru():
    return _text("gru_text", _keras().layers.GRU(32, name="gru"))


@zoo_model("bilstm_text", "Embedding + Bidirectional LSTM over 64 tokens", "digits-tokens", epochs=6)
def _bilstm():
    L = _keras().layers
    return _text("bilstm_text", L.Bidirectional(L.LSTM(16, name="lstm"), name="bilstm"))


@zoo_model("conv1d_audio", "1-D conv network over a 784-sample signal (strided Conv1D, GlobalMaxPool)",
           "digits-784", epochs=4)
def _audio():
    keras = _keras()
    L = keras.layers
    signal = keras.Input((784,), name="signal")
    x = L.Reshape((784, 1))(signal)
    for index, filters in enumerate((16, 32, 32)):
        x = L.Conv1D(filters, 9, strides=2, padding="same", activation="relu", name=f"conv{index}")(x)
        x = L.BatchNormalization(name=f"bn{index}")(x)
    x = L.GlobalMaxPooling1D()(x)
    return keras.Model(signal, L.Dense(10, activation="softmax", name="classes")(x), name="conv1d_audio")


def _ink(data):
    return {"t_mask": (data.x[..., 0] > 0.5).astype("int64")}  # the digit's ink: a foreground mask


@zoo_model("unet", "U-Net segmenter: Conv2DTranspose, skip Concatenate, per-pixel sigmoid mask", "digits-32rgb",
           epochs=4, targets=lambda data: data.truth["t_mask"][..., None].astype("float32"),
           loss="binary_crossentropy", metric="miou", truth=_ink)
def _unet():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    d1 = L.Conv2D(16, 3, padding="same", activation="relu", name="down1")(image)
    d2 = L.Conv2D(32, 3, padding="same", activation="relu", name="down2")(L.MaxPooling2D()(d1))
    b = L.Conv2D(32, 3, padding="same", activation="relu", name="bottom")(L.MaxPooling2D()(d2))
    u2 = L.Concatenate()([L.Conv2DTranspose(32, 2, strides=2, name="up2")(b), d2])
    u1 = L.Concatenate()([L.Conv2DTranspose(16, 2, strides=2, name="up1")(
        L.Conv2D(32, 3, padding="same", activation="relu", name="dec2")(u2)), d1])
    mask = L.Conv2D(1, 1, activation="sigmoid", name="mask")(L.Conv2D(16, 3, padding="same", activation="relu")(u1))
    return keras.Model(image, mask, name="unet")


def conv_trunk(x, strided: bool = False):
    """Three 3x3 convolutions of 16, 32 and 64 filters, each halving the size: by a max-pool after
    it, or by its own stride."""
    L = _keras().layers
    for index, filters in enumerate((16, 32, 64)):
        conv = L.Conv2D(filters, 3, strides=2 if strided else 1, padding="same", activation="relu",
                        name=f"conv{index}")(x)
        x = conv if strided else L.MaxPooling2D()(conv)
    return x


def _boxes(data):
    x, y = data.x, data.y
    ink = x[..., 0] > 0.5
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    first = lambda a: np.argmax(a, axis=1) / a.shape[1]  # noqa: E731
    last = lambda a: 1 - np.argmax(a[:, ::-1], axis=1) / a.shape[1]  # noqa: E731
    return [np.stack([first(rows), first(cols), last(rows), last(cols)], 1).astype("float32"), y]


@zoo_model("detector", "detector-style: shared conv trunk, box regression head + class score head", "digits-32rgb",
           epochs=6, targets=_boxes, loss=["mse", "sparse_categorical_crossentropy"])
def _detector():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.Dense(64, activation="relu", name="trunk")(L.Flatten()(conv_trunk(image)))
    boxes = L.Dense(4, name="boxes")(x)
    scores = L.Dense(10, activation="softmax", name="scores")(x)
    return keras.Model(image, [boxes, scores], name="detector")


def _with_meta(x):
    """The image beside 4 features of its own (row and column ink profiles, summarised)."""
    ink = x[..., 0]
    meta = np.stack([ink.mean((1, 2)), ink.std((1, 2)), ink[:, :16].mean((1, 2)), ink[:, :, :16].mean((1, 2))], 1)
    return {"image": x, "meta": meta.astype("float32")}


@zoo_model("two_input", "two inputs: an image and a feature vector, merged by Concatenate", "digits-32rgb",
           epochs=6, inputs=_with_meta)
def _two_input():
    keras = _keras()
    L = keras.layers
    image, meta = keras.Input((32, 32, 3), name="image"), keras.Input((4,), name="meta")
    x = L.MaxPooling2D()(L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(image))
    x = L.Flatten()(L.MaxPooling2D()(L.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)))
    x = L.Concatenate()([x, L.Dense(8, activation="relu", name="meta_dense")(meta)])
    return keras.Model([image, meta], L.Dense(10, activation="softmax", name="classes")(x), name="two_input")


@keras_env.keras3().saving.register_keras_serializable(package="zoo")
class ScaledDense(keras_env.keras3().layers.Layer):
    """A registered custom layer: a dense layer whose output is scaled by a learned scalar."""

    def __init__(self, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation = units, keras_env.keras3().activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

    def call(self, inputs):
        ops = keras_env.keras3().ops
        return self.activation((ops.matmul(inputs, self.kernel) + self.bias) * self.scale)

    def get_config(self):
        activations = keras_env.keras3().activations
        return {**super().get_config(), "units": self.units, "activation": activations.serialize(self.activation)}


@zoo_model("custom_layer", "a registered custom layer (a scaled Dense), loaded with --trust-model", "digits-32rgb",
           epochs=3, trust_model=True)
def _custom():
    keras = _keras()
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.GlobalAveragePooling2D()(L.Conv2D(32, 3, strides=2, activation="relu", name="conv")(image))
    return keras.Model(image, ScaledDense(10, activation="softmax", name="classes")(x), name="custom_layer")


ZOO_RESULT = "result.json"
EVAL_SAMPLES = 200  # held-out samples for parity and accuracy: TFLite Micro's reference kernels are slow
BN_MOMENTUM = 0.9  # with Keras' 0.99, MobileNetV3Small scored 10 % in inference after 10 epochs; with 0.9, 92 %
NEAR_CHANCE = 0.2  # 10 classes: a float model below this learned too little for its int8 cells to mean much


def datasets(spec: ZooModel):
    """The model's (train, test) sets: its sample set, scaled and split into inputs as it takes them."""
    from compressor.data import Dataset, samples

    train_set, test_set = samples.load(spec.dataset, "train"), samples.load(spec.dataset, "test")
    if spec.pixels != 1.0:
        train_set, test_set = (Dataset(d.x * spec.pixels, d.y, f"{d.name} x{spec.pixels:g}")
                               for d in (train_set, test_set))
    if spec.inputs:
        train_set, test_set = (Dataset(spec.inputs(d.x), d.y, d.name) for d in (train_set, test_set))
    if spec.truth:
        train_set, test_set = (replace(d, truth=spec.truth(d)) for d in (train_set, test_set))
    return train_set, test_set


def judged(spec: ZooModel, data):
    """The data a model is judged on: a model with a task metric keeps its truth (``t_*``) and not
    the sample set's class labels, which are not what its outputs are."""
    return replace(data, y=None) if spec.metric else data


def train(spec: ZooModel):
    """The model built and trained briefly on its sample set; returns (model, train, test)."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    train_set, test_set = datasets(spec)
    model = spec.build()
    targets = spec.targets(train_set) if spec.targets else train_set.y
    for layer in model.layers:  # 1,347 samples: BatchNorm's moving statistics must settle within a few epochs
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    model.compile(keras.optimizers.Adam(spec.learning_rate), spec.loss)
    model.fit(train_set.x, targets, epochs=spec.epochs, batch_size=32, verbose=0)
    return (spec.deploy(model) if spec.deploy else model), train_set, test_set


def _cells(source, train_set, test_set, out: Path, spec: ZooModel, stages: dict | None = None) -> dict:
    """Every target that can take ``source``: artifact + parity + accuracy drop + latency, or the reason.
    The drop is in top-1 points, or in the points of the model's task metric where it has one.
    ``stages``, when given, gets each export's wall time and the benchmark's."""
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from targets import PROFILES, compatibility, export_many

    train_set, test_set = judged(spec, train_set), judged(spec, test_set.take(EVAL_SAMPLES))
    reasons = {name: reason for name, reason in compatibility(source).items() if reason}
    costs: dict = {}
    exported, failed = export_many(source, [p for p in PROFILES if p not in reasons], out_dir=out,
                                   calibration=train_set, validation=test_set, metric=spec.metric, costs=costs)
    if stages is not None:
        stages["exports"] = {name: cost["seconds"] for name, cost in costs.items()}
    started = time.perf_counter()
    cells = {name: {"status": "cannot take it", "reason": reason} for name, reason in reasons.items()}
    cells.update({f.target: {"status": "refused" if f.exit_code != 1 else "internal error", "exit_code": f.exit_code,
                             "reason": f.message} for f in failed})
    if exported:
        doc = measure([r.folder for r in exported], eval_data=test_set, source=source.path,
                      trust_model=spec.trust_model,
                      config=LatencyConfig(warmup_seconds=0.1, min_runs=20, min_seconds=0.2), rounds=1)
        rows = {row["name"]: row for row in doc["results"]}
        for result in exported:
            row, parity = rows[result.target], result.manifest["parity"]
            cells[result.target] = {
                "status": "ok", "p50_ms": row["latency"]["p50_ms"], "top1": row["accuracy"].get("top1"),
                "drop_pp": row["accuracy_drop_pp"].get("top1"), "max_abs": parity["max_abs"],
                "agreement": parity["agreement"], "snr_db": parity["snr_db"], "bytes": result.manifest["size"]["bytes"],
                **_task_figures(row)}
        base = rows[doc["reference"]]
        cells["float"] = {"status": "ok", "p50_ms": base["latency"]["p50_ms"], "top1": base["accuracy"].get("top1"),
                          **_task_figures(base)}
    if stages is not None:
        stages["benchmark"] = round(time.perf_counter() - started, 2)
    return cells


def _task_figures(row: dict) -> dict:
    """A results row's task metric: its value and drop (in its points) and what it was scored against."""
    task = row.get("task_metric")
    if not task:
        return {}
    return {"metric": task["name"], "metric_value": task["value"][task["name"]], "drop_pp": task["drop_pp"],
            "truth": task["truth"], "metric_unit": task["unit"]}


def run_model(spec: ZooModel, out: Path) -> dict:
    from compressor.errors import CompressorError
    from compressor.models import load_source
    from targets.runtimes.onnx_runtime import convert_keras

    folder = out / spec.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    model, train_set, test_set = train(spec)
    keras_path, onnx_path = folder / f"{spec.name}.keras", folder / f"{spec.name}.onnx"
    model.save(keras_path)
    stages = {"train": round(time.perf_counter() - start, 2), "keras": {}, "onnx": {}}  # where the time goes
    record = {"model": spec.name, "description": spec.description, "dataset": spec.dataset, "params": None,
              "metric": spec.metric, "stages": stages}
    try:
        source = load_source(keras_path, trust_model=spec.trust_model)
        record["params"], record["macs"] = source.report().params, source.report().macs
        if spec.trust_model:  # the benchmark's workers import the custom layer's module (as --custom-code does)
            import os

            from compressor.models import custom_code

            os.environ[custom_code.ENV] = "tools.zoo"
        record["keras"] = _cells(source, train_set, test_set, folder / "keras", spec, stages["keras"])
        started = time.perf_counter()
        convert_keras(source.model, onnx_path)
        stages["onnx conversion"] = round(time.perf_counter() - started, 2)
        record["onnx"] = _cells(load_source(onnx_path), train_set, test_set, folder / "onnx",
                                replace(spec, trust_model=False), stages["onnx"])
    except CompressorError as exc:  # the source itself cannot be read or converted: one line, the rest goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = time.perf_counter() - start
    (folder / ZOO_RESULT).write_text(json.dumps(record, indent=2, default=str))
    return record


def _portable(text: str) -> str:
    """A message without the folder this machine ran in (``zoo-out/...`` stays)."""
    return text.replace(f"{Path.cwd()}/", "")


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if cell["status"] != "ok":
        return f"{cell['status']}: {_portable(cell['reason'])[:90]}".replace("|", "/")
    unit = f" {cell['metric']}" if cell.get("metric") else ""
    drop = "" if cell.get("drop_pp") is None else f" {cell['drop_pp']:+.2f} pt{unit}"
    quality = (f"{cell['agreement']:.1%} agr" if cell.get("agreement") is not None
               else f"{cell['snr_db']:.0f} dB")
    return f"ok{drop}, {quality}, {cell['p50_ms']:.2f} ms"


def _float_text(cell: dict) -> str:
    """The float model's cell: its task metric or top-1, and its latency."""
    if cell.get("metric"):
        value = f"{cell['metric']} {cell['metric_value']:.3f}"
    else:
        value = "-" if cell.get("top1") is None else f"{cell['top1']:.1%}"
    return value + (f", {cell['p50_ms']:.2f} ms" if cell else "")


def _host() -> str:
    from compressor.cpu import host

    facts = host()
    return f"{facts['cpu']}, class {facts['cpu_class']}"


def _onnx_profiles() -> list[str]:
    """The profiles whose runtime exports from an ONNX model (the ONNX table's columns)."""
    from targets import PROFILES
    from targets.runtime import get_runtime

    return [name for name, profile in PROFILES.items() if "onnx" in get_runtime(profile.runtime).accepts]


def render(records: list[dict], wall: float, heading: str | None = None, command: str = COMMAND) -> str:
    """The page; with ``heading``, a section of the same tables for a later run of some models,
    to be added below the page."""
    from targets import PROFILES

    work = sum(r.get("seconds", 0) for r in records)  # each model's own run, kept with its cached result
    sub = "###" if heading else "##"
    lines = [f"## {heading}", "", f"`{command}` ({work / 60:.0f} min of model runs on a {_host()}); columns as "
             "above.", ""] if heading else [
             "# Model zoo", "", f"Regenerated by `{command}` ({work / 60:.0f} min of model runs on this machine; "
             f"this rendering {wall / 60:.1f} min).", "",
             "Each model is a real architecture trained briefly on a built-in sample set, saved as Keras 3 `.keras`, "
             "and taken through every target from the Keras file and from its ONNX conversion (tf2onnx). A cell is "
             "an artifact (drop in top-1 points against the float model on 200 held-out samples, or in the points of "
             "the model's task metric, named in the cell, against the data's truth; the export's parity: "
             "top-1 agreement for class scores, SNR for other outputs, and p50 latency, batch 1, 1 thread) or the "
             "toolkit's one-line reason.", ""]
    summary = {"ok": 0, "refused": 0, "cannot take it": 0, "internal error": 0}
    for source, columns in (("keras", list(PROFILES)), ("onnx", _onnx_profiles())):
        lines += [f"{sub} From the {'Keras' if source == 'keras' else 'ONNX'} file", "",
                  "| model | float | " + " | ".join(columns) + " |", "|---|" + "---|" * (len(columns) + 1)]
        for record in records:
            cells = record.get(source) or {}
            for name in columns:
                if name in cells:
                    summary[cells[name]["status"]] += 1
            float_cell = cells.get("float") or {}
            base = _float_text(float_cell)
            if float_cell.get("top1") is not None and float_cell["top1"] < NEAR_CHANCE:
                base += " (near chance: agreement says little here)"
            row = [base] + [_cell_text(cells.get(name)) for name in columns] if cells else [
                _portable(record.get("error", "-")).replace("|", "/")] + ["-"] * len(columns)
            lines.append(f"| {record['model']} | " + " | ".join(row) + " |")
        lines.append("")
    lines += [f"{sub} Summary", "", ", ".join(f"{count} {status}" for status, count in summary.items()), "",
              f"{sub} Float conversions: the spread of max abs difference (fp32 profiles)", ""]
    spread = sorted(cell["max_abs"] for r in records for s in ("keras", "onnx")
                    for name, cell in (r.get(s) or {}).items()
                    if cell.get("status") == "ok" and name.endswith("fp32"))
    if spread:
        lines.append(f"{len(spread)} fp32 artifacts: median {np.median(spread):.2g}, max {spread[-1]:.2g}.")
    lines += ["", f"{sub} Models", ""] + [f"- `{r['model']}`: {r['description']} ({r['dataset']}; "
                                          + (f"judged by `--metric {r['metric']}`; " if r.get("metric") else "")
                                          + f"{(r.get('params') or 0):,} params, {r.get('seconds', 0):.0f} s)"
                                          for r in records]
    lines += _time_table(records, sub)
    missing = [name for name in ZOO if name not in {r["model"] for r in records}]
    if missing and not heading:
        lines += ["", f"Not in this regeneration: {', '.join(f'`{name}`' for name in missing)} "
                  "(`python -m tools.zoo --models NAME ... --write ZOO.md` adds them; finished models are kept)."]
    return "\n".join(lines) + "\n"


def _time_table(records: list[dict], sub: str) -> list[str]:
    """Where each model's run went: training, the exports from each file (the three slowest
    named), the benchmark of each file's artifacts, the ONNX conversion."""
    timed = [r for r in records if r.get("stages")]
    if not timed:
        return []
    lines = ["", f"{sub} Where the time goes", "",
             "Seconds per stage of each model's run (exports: every target's export with its calibration and "
             "parity check; benchmark: latency and accuracy of every artifact and the float model).", "",
             "| model | total s | train | Keras exports | Keras benchmark | ONNX conversion | ONNX exports "
             "| ONNX benchmark | slowest exports |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for record in timed:
        stages = record["stages"]
        exports = {f"{name} ({source})": seconds for source in ("keras", "onnx")
                   for name, seconds in (stages.get(source) or {}).get("exports", {}).items()}
        slowest = sorted(exports.items(), key=lambda item: -item[1])[:3]
        cells = [stages.get("train"), sum((stages.get("keras") or {}).get("exports", {}).values()),
                 (stages.get("keras") or {}).get("benchmark"), stages.get("onnx conversion"),
                 sum((stages.get("onnx") or {}).get("exports", {}).values()), (stages.get("onnx") or {}).get("benchmark")]
        lines.append(f"| {record['model']} | {record.get('seconds', 0):.0f} | "
                     + " | ".join("-" if c is None else f"{c:.0f}" for c in cells) + " | "
                     + ", ".join(f"{name} {seconds:.0f}" for name, seconds in slowest) + " |")
    return lines


def _run_isolated(name: str, out: Path) -> None:
    """One model in its own process: a native crash in a converter takes down that model's row only."""
    log = out / f"{name}.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        code = subprocess.run([sys.executable, "-m", "tools.zoo", "--in-process", "--models", name, "--out", str(out)],
                              stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        (out / f"{name}.crash").write_text(str(code))


def _crashed(name: str, out: Path) -> dict:
    lines = [line for line in (out / f"{name}.log").read_text(errors="replace").splitlines() if line.strip()]
    code = (out / f"{name}.crash").read_text() if (out / f"{name}.crash").is_file() else "?"
    return {"model": name, "description": ZOO[name].description, "dataset": ZOO[name].dataset,
            "error": f"the process died (exit code {code}): {lines[-1][:200] if lines else 'no output'}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(ZOO))
    parser.add_argument("--out", type=Path, default=Path("zoo-out"))
    parser.add_argument("--write", type=Path, help="write the Markdown here (e.g. ZOO.md)")
    parser.add_argument("--fresh", action="store_true", help="redo models already done in OUT")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--section", metavar="TITLE",
                        help="add these models' tables to the page --write names, under this heading, "
                             "instead of writing the page anew")
    args = parser.parse_args(argv)
    from tools.publish import publish

    if args.in_process:  # one model, in the child process main() starts for it
        run_model(ZOO[args.models[0]], args.out)
        return 0
    start, records = time.perf_counter(), []
    for name in args.models:
        done = args.out / name / ZOO_RESULT
        if args.fresh or not done.is_file():
            _run_isolated(name, args.out)
        records.append(json.loads(done.read_text()) if done.is_file() else _crashed(name, args.out))
        print(f"{name}: done ({records[-1].get('seconds', 0):.0f} s)", file=sys.stderr, flush=True)
    if args.section:
        command = f"python -m tools.zoo --models {' '.join(args.models)} --section ... --write ZOO.md"
        return publish(render(records, time.perf_counter() - start, heading=args.section, command=command),
                       args.write, append=True)
    return publish(render(records, time.perf_counter() - start), args.write)


from tools import zoo_tasks  # noqa: E402,F401  (registers the models judged by a task metric)

if __name__ == "__main__":  # run as the imported module, whose ZOO the task models registered into
    from tools.zoo import main as imported_main

    sys.exit(imported_main())
