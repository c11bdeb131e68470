"""The toolkit's own overhead: one int8 export against the bare library calls it wraps, on the
same model and the same calibration samples, alternated in one process per runtime group.

Bare calls: LiteRT ``TFLiteConverter.from_keras_model`` with a representative dataset (full
integer, float I/O, as ``tflite-int8``) on the Keras model; ONNX Runtime ``quant_pre_process`` +
``quantize_static`` (QDQ, per-channel, the profile's activation type) and OpenVINO
``convert_model`` + ``nncf.quantize`` + ``save_model`` on its ONNX conversion. The toolkit's
export does those and checks parity on the validation samples, stages the files, hashes them
and writes the manifest. Medians of ``--rounds`` alternated rounds; each export cold (nothing
kept from the round before).

Usage: python -m tools.overhead [--models NAME ...] [--zoo zoo-out] [--rounds 3]
[--write overhead.md]. Models are zoo or sample model names, converted to ONNX first.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compressor import atomic
from tools.sensitivity_cost import PAGE_HEADER

COMMAND = "python -m tools.overhead"
HEADER = ("| model | target | toolkit export s | bare library calls s | ratio |", "|---|---|---|---|---|")


def _bare_onnx(model: Path, calibration, workdir: Path, activations: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name, arrays):
            self._items = iter([{name: arrays[i:i + 1]} for i in range(len(arrays))])

        def get_next(self):
            return next(self._items, None)

    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(model), str(prepared))
    import onnx

    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    kind = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    quantize_static(str(prepared), str(workdir / "bare-int8.onnx"), Reader(name, calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=kind, weight_type=QuantType.QInt8)


def _bare_openvino(model: Path, calibration, workdir: Path) -> None:
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(model))
    quantized = nncf.quantize(ov_model, nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))]),
                              subset_size=len(calibration), target_device=nncf.TargetDevice.CPU)
    ov.save_model(quantized, str(workdir / "bare-int8.xml"), compress_to_fp16=False)


def _bare_litert(model, calibration, workdir: Path) -> None:
    from compressor import keras_env

    tf = keras_env.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    (workdir / "bare-int8.tflite").write_bytes(converter.convert())


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run_model(name: str, zoo_out: Path, rounds: int) -> list[str]:
    """The model's rows, each group timed in a process of its own that holds what the CLI's would:
    the Keras model and TensorFlow for ``tflite-int8``; only the ONNX model (no TensorFlow) for the
    ONNX Runtime and OpenVINO rows, as ``compressor export model.onnx`` runs. The garbage
    collections the export makes between stages scan every object the process holds, so one
    process holding both would time the ONNX rows with TensorFlow's ~350,000 objects in it."""
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    try:
        rows = []
        for group in ("keras", "onnx"):
            child = subprocess.run([sys.executable, "-m", "tools.overhead", "--child", group, "--models", name,
                                    "--zoo", str(zoo_out), "--rounds", str(rounds), "--work", str(work)],
                                   capture_output=True, text=True)
            if child.returncode:
                last = (child.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"{name} ({group}): {last}")
            rows += [line for line in child.stdout.splitlines() if line.startswith(f"| {name} |")]
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _keras_rows(name: str, zoo_out: Path, rounds: int, work: Path) -> list[str]:
    """LiteRT's row beside the Keras model; leaves the ONNX conversion and the samples in ``work``."""
    import numpy as np

    from compressor.models import load_source
    from targets.runtimes.onnx_runtime import convert_keras
    from tools import budget_zoo, zoo

    model_path, trust_model, train_set, test_set = budget_zoo._model_and_data(name, zoo_out)
    keras_source = load_source(model_path, trust_model=trust_model)
    calibration, validation = train_set.shuffled(0).take(200), test_set.take(zoo.EVAL_SAMPLES)
    keras_arrays = calibration.feeds(keras_source)[0]
    times = _alternated({"tflite-int8": (keras_source, lambda: _bare_litert(
        keras_source.representation("keras"), keras_arrays, work))}, calibration, validation, work, rounds)
    convert_keras(keras_source.representation("keras"), work / "model.onnx")
    for part, data in (("calibration", calibration), ("validation", validation)):
        np.savez(work / f"{part}.npz", x=data.feeds(keras_source)[0],
                 **({"y": data.y} if data.y is not None else {}))
    return _rows(name, times)


def _onnx_rows(name: str, rounds: int, work: Path) -> list[str]:
    """ONNX Runtime's and OpenVINO's rows on the ONNX conversion, in a process without TensorFlow."""
    import numpy as np

    from compressor.data.dataset import Dataset
    from compressor.models import load_source
    from targets.profiles import get_profile

    onnx_path = work / "model.onnx"
    source = load_source(onnx_path)
    calibration, validation = (Dataset(**dict(np.load(work / f"{part}.npz")), name=part)
                               for part in ("calibration", "validation"))
    arrays = calibration.feeds(source)[0]
    activations = get_profile("onnx-int8").for_cpu().options.get("activations", "int8")
    times = _alternated({"onnx-int8": (source, lambda: _bare_onnx(onnx_path, arrays, work, activations)),
                         "openvino-int8": (source, lambda: _bare_openvino(onnx_path, arrays, work))},
                        calibration, validation, work, rounds)
    if "tensorflow" in sys.modules:
        raise RuntimeError("the ONNX rows' process imported TensorFlow")
    return _rows(name, times)


def _rows(name: str, times: dict) -> list[str]:
    rows = []
    for target, t in times.items():
        ours, theirs = statistics.median(t["toolkit"]), statistics.median(t["bare"])
        rows.append(f"| {name} | {target} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}× |")
    return rows


def _alternated(bare: dict, calibration, validation, work: Path, rounds: int) -> dict:
    """Per target, the toolkit's export and the bare calls' seconds, alternated ``rounds`` times."""
    from targets import Parity, export
    from targets.runtime import forget_conversions

    times = {t: {"toolkit": [], "bare": []} for t in bare}
    for _ in range(rounds):
        for target, (source, call) in bare.items():
            out = work / "out"
            forget_conversions()  # each export cold, as the bare calls are: nothing kept from the round before
            times[target]["toolkit"].append(_timed(lambda: export(
                source, target, out_dir=out, calibration=calibration, validation=validation,
                parity_rule=Parity(min_agreement=1e-6), overwrite=True)))
            shutil.rmtree(out, ignore_errors=True)
            times[target]["bare"].append(_timed(call))
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_b0", "resnet50"])
    parser.add_argument("--zoo", type=Path, default=Path("zoo-out"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--append", action="store_true", help="add the section below the page --write names")
    parser.add_argument("--child", choices=["keras", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        rows = (_keras_rows(args.models[0], args.zoo, args.rounds, args.work) if args.child == "keras"
                else _onnx_rows(args.models[0], args.rounds, args.work))
        print("\n".join(rows))
        return
    from benchmarks.machine import capture

    host = capture()
    rows = [row for name in args.models for row in run_model(name, args.zoo, args.rounds)]
    text = "\n".join(["## The toolkit's overhead against the bare library calls", "",
                      f"Regenerated by `{COMMAND} --models {' '.join(args.models)} --rounds {args.rounds}` on "
                      f"{host.get('cpu', '?')} (class {host.get('cpu_class', '?')}); medians of alternated rounds; "
                      "200 calibration samples; the toolkit's export also checks parity on 200 validation samples. "
                      "Each export cold (no conversion kept from the round before); `tflite-int8` timed in a "
                      "process holding the Keras model, the ONNX rows in one holding only the model's ONNX "
                      "conversion (no TensorFlow), as `compressor export` runs on each.",
                      "", *HEADER, *rows]) + "\n"
    print(text)
    if args.write:
        before = args.write.read_text() + "\n" if args.append and args.write.is_file() else PAGE_HEADER
        atomic.write_text(args.write, before + text)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
