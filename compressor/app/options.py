"""The command line's shared parts: the options several commands take, the progress lines,
and how a run's outcome is printed. Each command lives in :mod:`compressor.app.cli`."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import click


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (as logging's own
    last-resort handler does), not to the stream that was current when it was made."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def quiet_libraries() -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["COMPRESSOR_QUIET"] = "1"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    root = logging.getLogger()
    if not root.handlers:  # ONNX Runtime's int4 quantizer calls logging.basicConfig(level=INFO) on import,
        handler = _CurrentStderr()  # which does nothing once the root logger has a handler
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.ERROR)  # ONNX Runtime's quantizers and LiteRT's log to the root logger
    for name in ("tensorflow", "absl", "tf2onnx", "nncf", "openvino", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _load_custom_code(ctx, param, values):
    if values:
        from compressor.models import custom_code

        if not ctx.params.get("trust_model"):  # --trust-model is eager: known before this runs
            raise click.UsageError("--custom-code runs the given code: pass --trust-model with it")

        custom_code.load(values)
    return values


def trust_option(func):
    func = click.option(
        "--custom-code", multiple=True, metavar="FILE.py|MODULE", expose_value=False, callback=_load_custom_code,
        help="Python file or module defining the model's custom layers (imported: it runs code; "
             "needs --trust-model). Repeatable.")(func)
    return click.option(
        "--trust-model", is_flag=True, is_eager=True,
        help="Allow Lambda layers and custom objects (they run code). Only for models you trust.",
    )(func)


def pixel_option(func):
    return click.option(
        "--pixel-scale", type=click.Choice(["raw", "unit", "symmetric"]), default=None,
        help="Image folders only: pixels as decoded (raw 0-255, the default, as Keras' image_dataset_from_directory "
             "gives), unit (/255) or symmetric (/127.5 - 1). Recorded with the data in manifests and reports.")(func)


def parity_options(func):
    """The user's own parity bounds, in place of the target profiles' (recorded in each manifest)."""
    func = click.option("--min-parity-snr", type=float, default=None,
                        help="SNR floor (dB) of outputs without class scores for quantized and fp16 targets, in "
                             "place of the profiles' 20 dB (int8) and 40 dB (fp16).")(func)
    func = click.option("--min-agreement", type=click.FloatRange(0, 1, min_open=True), default=None,
                        help="Top-1 agreement floor for quantized and fp16 targets, in place of the profiles' "
                             "0.95 (int8) and 0.99 (fp16).")(func)
    return click.option("--max-abs", type=click.FloatRange(0, min_open=True), default=None,
                        help="Largest output difference for float targets (scaled by the output range), "
                             "in place of the profiles' 1e-4 (fp32) and 1e-2 (fp16).")(func)


def parity_bounds(given: dict):
    """The user's own parity bounds from the parity options (None: the profiles' own)."""
    from targets import ParityBounds

    bounds = ParityBounds(given["max_abs"], given["min_agreement"], given.get("min_parity_snr"))
    return None if bounds == ParityBounds() else bounds


def latency_config(given: dict):
    """The latency settings from the options a command took (the others keep their defaults)."""
    from benchmarks.latency import LatencyConfig

    keys = ("warmup_seconds", "min_runs", "min_seconds", "batch", "threads")
    return LatencyConfig(**{k: given[k] for k in keys if k in given})


def device_option(func):
    from targets.devices import DEVICES

    return click.option("--device", type=click.Choice(list(DEVICES)), default=None,
                        help="A microcontroller budget (RAM, flash) the mcu artifact must fit; refused if it "
                             "does not.")(func)


def budget_option(func):
    return click.option("--max-drop", type=click.FloatRange(0), default=1.0, show_default=True,
                        help="Accuracy budget of int8 targets, in top-1 points against the float model on the "
                             "eval data (points of disagreement without labels), or in the points of --metric. "
                             "An int8 artifact that misses it gets its most sensitive layers kept in float, "
                             "found by measuring (runs of layers first on large models), or is refused (exit 5) "
                             "with what came closest.")(
        click.option("--min-snr", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
                     help="The budget of models without class scores and without --metric: the SNR of their "
                          "outputs against the float model, in dB; missed as --max-drop is.")(
            click.option("--metric", multiple=True, callback=_joined_metrics, metavar="NAME[:KEY=VALUE,...]",
                         help="The task's own metric, which the budget, the search and the reports judge by: "
                              "map (detection: COCO mAP), miou (segmentation), cer (CTC text), retrieval "
                              "(embeddings: recall@k), mae (regression), pck (keypoints), top1 (one class "
                              "head); e.g. map:layout=yolov8. Against the eval data's t_* arrays (and labels), "
                              "else the float model's own outputs. Repeat it for a model with several heads "
                              "(output=N picks one), each within --max-drop of its own points, or within its "
                              "own max_drop=.")(func)))


def _joined_metrics(ctx, param, value):
    """Several --metric as one spec, one head each (compressor.metrics.heads); none: None."""
    from compressor.metrics.heads import SEPARATOR

    return SEPARATOR.join(value) if value else None


def input_shape_option(func):
    return click.option(
        "--input-shape", "input_shapes", multiple=True, metavar="[NAME=]DxDx...",
        help="Fix an ONNX model's dynamic input dimensions (1x3x320x320), for runtimes and quantizers that "
             "need static shapes; recorded in each manifest. Repeatable, one per input.")(func)


def cpu_option(func):
    from compressor.cpu import CLASSES, HOST

    return click.option("--cpu-class", default=HOST, show_default=True, type=click.Choice([*CLASSES, HOST]),
                        help="The CPU class the artifacts ship to; int8 settings follow it (`compressor targets` "
                             "lists the classes and this host's).")(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def progress_for(ctx_obj):
    """Progress lines on stderr (plain text, so logs and pipes stay readable); none with -q."""
    if ctx_obj.quiet:
        return lambda message: None
    import time

    start = time.perf_counter()
    return lambda message: click.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)


def finish_run(outcome, as_json: bool) -> None:
    from compressor.app import views

    if as_json:
        click.echo(json.dumps({"out_dir": str(outcome.out_dir), "exported": [r.target for r in outcome.exported],
                               "failed": {f.target: f.message for f in outcome.failed},
                               "compression": outcome.compression, "results": outcome.results}, indent=2,
                              default=str))
    else:
        views.print_run(outcome)
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)


def bench_options(func):
    for option in reversed([
        click.option("--rounds", default=3, show_default=True, type=click.IntRange(1), help="Interleaved rounds."),
        click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(0)),
        click.option("--threads", default=1, show_default=True, type=click.IntRange(1)),
    ]):
        func = option(func)
    return func


def duration(text: str | None) -> float | None:
    """``30m``, ``2h``, ``90s`` or seconds, as seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a duration (e.g. 30m, 2h, 90s)") from None


def datasets_for(source, data: str | None, eval_data: str | None, seed: int, pixel_scale: str | None = None):
    """Calibration and validation sets; one source alone is split so that they never overlap."""
    from compressor.data import load_dataset

    shape = source.data_spec()[0]
    if data is None and eval_data is None:
        raise click.UsageError("give --data (calibration) and/or --eval-data (validation)")
    if data is not None and eval_data is not None:
        return (load_dataset(data, input_shape=shape, pixel_scale=pixel_scale),
                load_dataset(eval_data, input_shape=shape, pixel_scale=pixel_scale))
    whole = load_dataset(data or eval_data, input_shape=shape, pixel_scale=pixel_scale)
    calibration, validation = whole.split(0.5, seed=seed)
    return calibration, validation


def report_failures(failed, out_dir) -> None:
    """One line per failed target (the others went on); a bug's traceback goes to errors.log."""
    from compressor.app.workflow import write_error_log, worst_exit_code

    log = write_error_log(Path(out_dir), failed)
    for failure in failed:
        if failure.traceback:
            click.echo(f"Internal error: {printable(failure.message)} (a bug: please report it with {log})",
                       err=True)
        else:
            click.echo(f"Error: {printable(failure.message)}", err=True)
    if failed:
        raise SystemExit(worst_exit_code(f.exit_code for f in failed))


def printable(exc: BaseException) -> str:
    """The message on one line, with bytes from damaged files escaped rather than crashing the print."""
    text = " ".join(str(exc).split("\n"))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
