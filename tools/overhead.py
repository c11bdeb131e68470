"""The toolkit's own overhead: one int8 export against the bare library calls it wraps, on the
same ONNX model and the same calibration samples, alternated in one process.

Bare calls: ONNX Runtime ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel, the
profile's activation type); OpenVINO ``convert_model`` + ``nncf.quantize`` + ``save_model``. The
toolkit's export does those and checks parity on the validation samples, stages the files,
hashes them and writes the manifest. Medians of ``--rounds`` alternated rounds.

Usage: python -m tools.overhead [--models NAME ...] [--zoo zoo-out] [--rounds 3]
[--write overhead.md]. Models are zoo or sample model names, converted to ONNX first.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run_model(name: str, zoo_out: Path, rounds: int) -> list[str]:
    from compressor.models import load_source
    from targets import Parity, export
    from targets.profiles import get_profile
    from targets.runtimes.onnx_runtime import convert_keras
    from tools import budget_zoo, zoo

    model_path, trust_model, train_set, test_set = budget_zoo._model_and_data(name, zoo_out)
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    try:
        keras_source = load_source(model_path, trust_model=trust_model)
        onnx_path = work / f"{name}.onnx"
        convert_keras(keras_source.representation("keras"), onnx_path)
        source = load_source(onnx_path)
        calibration = train_set.shuffled(0).take(200)
        validation = test_set.take(zoo.EVAL_SAMPLES)
        arrays = calibration.feeds(source)[0]
        activations = get_profile("onnx-int8").for_cpu().options.get("activations", "int8")
        bare = {"onnx-int8": lambda: _bare_onnx(onnx_path, arrays, work, activations),
                "openvino-int8": lambda: _bare_openvino(onnx_path, arrays, work)}
        times = {t: {"toolkit": [], "bare": []} for t in bare}
        for _ in range(rounds):
            for target, call in bare.items():
                out = work / "out"
                times[target]["toolkit"].append(_timed(lambda: export(
                    source, target, out_dir=out, calibration=calibration, validation=validation,
                    parity_rule=Parity(min_agreement=1e-6), overwrite=True)))
                shutil.rmtree(out, ignore_errors=True)
                times[target]["bare"].append(_timed(call))
        rows = []
        for target, t in times.items():
            ours, theirs = statistics.median(t["toolkit"]), statistics.median(t["bare"])
            rows.append(f"| {name} | {target} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}× |")
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_b0", "resnet50"])
    parser.add_argument("--zoo", type=Path, default=Path("zoo-out"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--append", action="store_true", help="add the section below the page --write names")
    args = parser.parse_args(argv)
    from benchmarks.machine import capture

    host = capture()
    rows = [row for name in args.models for row in run_model(name, args.zoo, args.rounds)]
    text = "\n".join(["## The toolkit's overhead against the bare library calls", "",
                      f"Regenerated by `{COMMAND} --models {' '.join(args.models)} --rounds {args.rounds}` on "
                      f"{host.get('cpu', '?')} (class {host.get('cpu_class', '?')}); medians of alternated rounds; "
                      "200 calibration samples; the toolkit's export also checks parity on 200 validation samples.",
                      "", *HEADER, *rows]) + "\n"
    print(text)
    if args.write:
        before = args.write.read_text() + "\n" if args.append and args.write.is_file() else PAGE_HEADER
        atomic.write_text(args.write, before + text)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
