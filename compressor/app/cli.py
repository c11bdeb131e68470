"""The ``compressor`` command line. Each command parses, calls the library, formats.

Errors the user can fix print one line and exit with the code of their class
(see :mod:`compressor.errors`); ``-v`` shows the traceback too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import click

from benchmarks.reports import WRITERS
from compressor.errors import EXIT_CODES, BadInputError, CompressorError
from compressor.version import __version__

EXIT_CODE_HELP = "\b\n" + "\n".join(f"  {code}  {meaning}" for meaning, code in EXIT_CODES.items())


def _quiet_libraries() -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["COMPRESSOR_QUIET"] = "1"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantizer logs to the root logger
    for name in ("tensorflow", "absl", "tf2onnx", "nncf", "openvino", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Context:
    def __init__(self, verbose: int, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet


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


def _parity_rule(max_abs, min_agreement, min_parity_snr=None):
    from targets import ParityBounds

    bounds = ParityBounds(max_abs, min_agreement, min_parity_snr)
    return None if bounds == ParityBounds() else bounds


def device_option(func):
    from targets.devices import DEVICES

    return click.option("--device", type=click.Choice(list(DEVICES)), default=None,
                        help="A microcontroller budget (RAM, flash) the mcu artifact must fit; refused if it "
                             "does not.")(func)


def budget_option(func):
    return click.option("--max-drop", type=click.FloatRange(0), default=1.0, show_default=True,
                        help="Accuracy budget of int8 targets, in top-1 points against the float model on the "
                             "eval data (points of disagreement without labels). An int8 artifact that misses "
                             "it gets its most sensitive layers kept in float, measured layer by layer, or is "
                             "refused (exit 5) with what came closest.")(
        click.option("--min-snr", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
                     help="The budget of models without class scores (regressors, segmentation maps): the SNR "
                          "of the first output against the float model, in dB; missed as --max-drop is.")(func))


def cpu_option(func):
    from targets.cpu import CLASSES, HOST

    return click.option("--cpu-class", default=HOST, show_default=True, type=click.Choice([*CLASSES, HOST]),
                        help="The CPU class the artifacts ship to; int8 settings follow it (`compressor targets` "
                             "lists the classes and this host's).")(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


@click.group(epilog=f"Exit codes:\n\n{EXIT_CODE_HELP}", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compressor")
@click.option("-v", "--verbose", count=True, help="More output; library logs and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and results.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compress Keras models and export them for edge devices.

    Example:

        compressor inspect model.keras
    """
    if not verbose:
        _quiet_libraries()
    ctx.obj = Context(verbose, quiet)


@cli.command()
@click.argument("model", type=click.Path(path_type=str))
@trust_option
@json_option
def inspect(model: str, trust_model: bool, as_json: bool) -> None:
    """Describe MODEL (.keras, .h5, SavedModel or .onnx): inputs, outputs, layers or ops,
    parameters, MACs, sparsity, and the targets that can take it. An exported artifact (its
    folder, a .tflite, an OpenVINO .xml): its target, parity, ops and the types they compute in.

    Example:

        compressor inspect model.onnx --json
    """
    from compressor.app import views
    from compressor.models import load_source
    from targets import compatibility
    from targets.runtime import describe_artifact

    path = Path(model)
    if path.suffix.lower() in (".tflite", ".xml") or (path / "manifest.json").is_file():
        described = describe_artifact(path)
        if as_json:
            click.echo(json.dumps(described, indent=2, default=str))
        else:
            views.print_artifact(described)
        return

    source = load_source(model, trust_model=trust_model)
    report = source.report()
    targets = compatibility(source)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "targets": targets}, indent=2))
    else:
        views.print_model_report(report, targets)


def _progress(ctx_obj):
    """Progress lines on stderr (plain text, so logs and pipes stay readable); none with -q."""
    if ctx_obj.quiet:
        return lambda message: None
    import time

    start = time.perf_counter()
    return lambda message: click.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)


def _finish_run(outcome, as_json: bool) -> None:
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


@cli.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("-r", "--recipe", default="int8", show_default=True,
              help="A built-in recipe (see `compressor recipes`) or a YAML file.")
@click.option("-t", "--target", "target_names", multiple=True,
              help="A target profile (repeatable); `all` for every profile that can take the model. "
                   "Default: the recipe's targets.")
@click.option("--data", required=True, help="Labelled training/calibration data: .npz, image folder, sample:NAME.")
@click.option("--eval-data", required=True, help="Labelled held-out data for parity, accuracy and benchmarks.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=str), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it holds a previous run.")
@pixel_option
@parity_options
@device_option
@cpu_option
@budget_option
@bench_options
@trust_option
@json_option
@click.pass_obj
def compress(obj, model, recipe, target_names, data, eval_data, out_dir, overwrite, pixel_scale, max_abs,
             min_agreement, min_parity_snr, device, cpu_class, max_drop, min_snr, rounds, min_seconds, threads,
             trust_model, as_json) -> None:
    """Compress MODEL with a recipe, export each target, check parity, benchmark, report.

    Exit code 0 only when every requested artifact was written and passed its parity check.

    Example:

        compressor compress model.keras -r prune50-int8 -t tflite-int8 -t openvino-int8 --data train.npz --eval-data test.npz -o out
    """
    from benchmarks.latency import LatencyConfig
    from compressor.app.workflow import run

    outcome = run(model, recipe, targets=list(target_names), data=data, eval_data=eval_data, out_dir=out_dir,
                  overwrite=overwrite, bench_config=LatencyConfig(min_seconds=min_seconds, threads=threads),
                  rounds=rounds, trust_model=trust_model,
                  parity_rule=_parity_rule(max_abs, min_agreement, min_parity_snr),
                  device=device, pixel_scale=pixel_scale, cpu_class=cpu_class, max_drop=max_drop,
                  min_snr=min_snr, progress=_progress(obj))
    _finish_run(outcome, as_json)


def _duration(text: str | None) -> float | None:
    """``30m``, ``2h``, ``90s`` or seconds, as seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a duration (e.g. 30m, 2h, 90s)") from None


@cli.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("-t", "--target", "target_names", multiple=True, required=True, help="A target profile (repeatable).")
@click.option("--data", required=True, help="Labelled training/calibration data.")
@click.option("--eval-data", required=True, help="Labelled held-out data: accuracy, parity, the budget.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=str),
              help="Output folder: the chosen artifact per target, search.json, reports; trials cached in "
                   "OUT/trials (a rerun skips finished ones).")
@click.option("--objective", type=click.Choice(["latency", "size"]), default="latency", show_default=True)
@click.option("--recipe", "recipes", multiple=True,
              help="A trial recipe (repeatable): int8, structured25, structured50, prune50, prune80. Default: all "
                   "that the model takes.")
@click.option("--time-budget", default=None, help="Start no trial after this long (e.g. 30m).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Trials at a time.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where trials run: a local process pool, or Ray (pip install '.[distributed]').")
@click.option("--address", default=None, help="A running Ray cluster's address (default: a local instance).")
@budget_option
@cpu_option
@trust_option
@json_option
@click.pass_obj
def search(obj, model, target_names, data, eval_data, out_dir, objective, recipes, time_budget, jobs, executor,
           address, max_drop, min_snr, cpu_class, trust_model, as_json) -> None:
    """Find the fastest (or smallest) artifact per target within the accuracy budget: int8, structured
    and magnitude pruning (Keras models), each exported with the budget and measured here.

    Example:

        compressor search model.keras -t tflite-int8 -t onnx-int8 --max-drop 1 --data train.npz --eval-data test.npz -o best
    """
    from compressor.app import views
    from compressor.app.search import SearchConfig
    from compressor.app.search import search as run_search

    config = SearchConfig(model, tuple(target_names), data, eval_data, out_dir, max_drop=max_drop, min_snr=min_snr,
                          objective=objective,
                          recipes=tuple(recipes), cpu_class=cpu_class, jobs=jobs, executor=executor, address=address,
                          time_budget_s=_duration(time_budget), trust_model=trust_model)
    record = run_search(config, progress=_progress(obj))
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
    else:
        views.print_search(record)
    if not record["chosen"]:
        raise SystemExit(5)


@cli.command()
@click.option("--model", "model_name", default="mnist_cnn", show_default=True,
              help="Which built-in sample model to use (trained offline on first use).")
@click.option("-r", "--recipe", default="structured50-int8", show_default=True, help="The recipe to run.")
@click.option("-o", "--output", "out_dir", default="demo-out", show_default=True, type=click.Path(path_type=str))
@bench_options
@json_option
@click.pass_obj
def demo(obj, model_name, recipe, out_dir, rounds, min_seconds, threads, as_json) -> None:
    """The main job on a built-in sample model: compress, export to every target, benchmark, report.

    Replaces the previous demo run in OUTPUT.

    Example:

        compressor demo --model cifar_cnn -o demo-cifar
    """
    import sample_models
    from benchmarks.latency import LatencyConfig
    from compressor.app.workflow import run

    progress = _progress(obj)
    progress(f"sample model: {model_name} (trained on first use, then cached)")
    path = sample_models.path(model_name)
    spec = sample_models.SAMPLE_MODELS[model_name]
    outcome = run(str(path), recipe, targets=["all"], data=f"sample:{spec.dataset}:train",
                  eval_data=f"sample:{spec.dataset}:test", out_dir=out_dir, overwrite=True,
                  bench_config=LatencyConfig(min_seconds=min_seconds, threads=threads), rounds=rounds,
                  max_drop=1.0, progress=progress)
    _finish_run(outcome, as_json)
    if not as_json:
        click.echo(f"HTML report: {Path(out_dir).resolve() / 'report.html'}")


@cli.command()
@json_option
def recipes(as_json: bool) -> None:
    """List the built-in recipes.

    Example:

        compressor recipes --json
    """
    from compressor.app import views
    from compressor.recipes import BUILTIN, load_recipe

    loaded = [load_recipe(name) for name in BUILTIN]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in loaded], indent=2))
    else:
        views.print_recipes(loaded)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("-f", "--format", "fmt", default="c-array", show_default=True, type=click.Choice(["c-array"]),
              help="What to emit for device firmware.")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=str),
              help="Folder for the generated files (default: beside the artifact).")
def embed(artifact: str, fmt: str, out_dir: str | None) -> None:
    """Emit a .tflite artifact as source for device firmware: an aligned C array
    (model_data.cc/.h) and an op resolver with exactly the kernels it needs (model_ops.h).

    Example:

        compressor embed out/mcu -o firmware/src
    """
    from targets import embedding, open_artifact

    opened = open_artifact(artifact)
    if opened.path.suffix != ".tflite":
        raise BadInputError(f"{artifact}: embedding needs a .tflite artifact, this is {opened.path.name}")
    folder = Path(out_dir) if out_dir else opened.folder
    folder.mkdir(parents=True, exist_ok=True)
    details = opened.manifest.get("details") or {}
    written = embedding.write_c_array(opened.path, folder, arena_bytes=details.get("arena_bytes"))
    if details.get("ops"):
        written.append(embedding.write_op_resolver(details["ops"], folder, model=opened.manifest["source"]["name"]))
    for path in written:
        click.echo(str(path))


def _datasets(source, data: str | None, eval_data: str | None, seed: int, pixel_scale: str | None = None):
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


@cli.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("-t", "--target", "target_names", multiple=True, required=True,
              help="A target profile (repeatable); `all` for every profile that can take the model.")
@click.option("--data", help="Calibration data: .npz (x, y), image folder, or sample:NAME[:SPLIT].")
@click.option("--eval-data", help="Validation data for the parity check (kept apart from calibration).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=str),
              help="Output folder; each target gets a sub-folder.")
@click.option("--calibration-samples", default=200, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace existing target sub-folders.")
@pixel_option
@parity_options
@device_option
@cpu_option
@budget_option
@trust_option
@json_option
@click.pass_obj
def export(obj, model, target_names, data, eval_data, out_dir, calibration_samples, threads, seed, overwrite, pixel_scale,
           max_abs, min_agreement, min_parity_snr, device, cpu_class, max_drop, min_snr, trust_model,
           as_json) -> None:
    """Export MODEL to hardware targets, each checked for parity against MODEL.

    Example:

        compressor export model.keras -t tflite-int8 -t openvino-int8 --data train.npz --eval-data test.npz -o out
    """
    from benchmarks.latency import runner_p50_ms
    from compressor.app import views
    from compressor.models import load_source
    from targets import export_many, validate_targets

    names = validate_targets(target_names)
    source = load_source(model, trust_model=trust_model)
    calibration, validation = _datasets(source, data, eval_data, seed, pixel_scale)
    exported, failed = export_many(source, names, out_dir=out_dir, calibration=calibration, validation=validation,
                                   calibration_samples=calibration_samples, threads=threads, seed=seed,
                                   source_path=model, overwrite=overwrite, device=device, cpu_class=cpu_class,
                                   max_drop=max_drop, min_snr=min_snr, timer=runner_p50_ms,
                                   parity_rule=_parity_rule(max_abs, min_agreement, min_parity_snr),
                                   on_progress=_progress(obj))
    if len(failed) == 1 and not exported:  # one target asked for and refused: its own one-line error
        raise failed[0].error
    if as_json:
        click.echo(json.dumps([r.manifest for r in exported], indent=2))
    elif exported:
        views.print_exports(exported)
    _report_failures(failed, out_dir)


def _report_failures(failed, out_dir) -> None:
    """One line per failed target (the others went on); a bug's traceback goes to errors.log."""
    from compressor.app.workflow import write_error_log, worst_exit_code

    log = write_error_log(Path(out_dir), failed)
    for failure in failed:
        if failure.traceback:
            click.echo(f"Internal error: {_printable(failure.message)} (a bug: please report it with {log})",
                       err=True)
        else:
            click.echo(f"Error: {_printable(failure.message)}", err=True)
    if failed:
        raise SystemExit(worst_exit_code(f.exit_code for f in failed))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--eval-data", required=True, help="Labelled evaluation data: .npz, image folder or sample:NAME[:SPLIT].")
@click.option("--source", type=click.Path(path_type=str),
              help="The float source model: the baseline for speed-ups and accuracy drop.")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=str),
              help="Where results.json and the reports go (default: the first PATH if it is a folder).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1))
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1), help="Interleaved repetitions.")
@click.option("--min-runs", default=50, show_default=True, type=click.IntRange(1))
@click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--warmup-seconds", default=0.5, show_default=True, type=click.FloatRange(0))
@pixel_option
@trust_option
@json_option
@click.pass_obj
def bench(obj, paths, eval_data, source, out_dir, threads, batch, rounds, min_runs, min_seconds, warmup_seconds,
          pixel_scale, trust_model, as_json) -> None:
    """Measure artifacts (and the float source) and write results.json and reports.

    Each artifact runs in its own process; latency percentiles, throughput, memory,
    size, accuracy and accuracy drop are measured side by side.

    Example:

        compressor bench out/ --source model.keras --eval-data test.npz
    """

    from benchmarks import reports
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from compressor.app import views
    from compressor.data import load_dataset

    config = LatencyConfig(warmup_seconds=warmup_seconds, min_runs=min_runs, min_seconds=min_seconds, batch=batch,
                           threads=threads)
    doc = measure(list(paths), eval_data=load_dataset(eval_data, pixel_scale=pixel_scale), source=source,
                  config=config, rounds=rounds, trust_model=trust_model, on_progress=_progress(obj))
    target = Path(out_dir) if out_dir else (Path(paths[0]) if Path(paths[0]).is_dir() else Path("."))
    written = reports.write_reports(doc, target)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    views.print_benchmark(doc)
    click.echo(f"reports: {', '.join(str(p) for p in written.values())}")


@cli.command()
@click.argument("results_file", type=click.Path(path_type=str))
@click.option("-f", "--format", "fmt", default="md", show_default=True,
              type=click.Choice(list(WRITERS)), help="Report format.")
@click.option("-o", "--output", type=click.Path(path_type=str), help="Write to this file instead of stdout.")
def report(results_file: str, fmt: str, output: str | None) -> None:
    """Regenerate a report from RESULTS_FILE (the results.json of `compressor bench`).

    Example:

        compressor report out/results.json --format html -o report.html
    """
    from compressor import atomic
    from benchmarks import reports, results

    text = reports.render(results.load(results_file), fmt)
    if output:
        atomic.write_text(output, text)
    else:
        click.echo(text, nl=False)


@cli.command()
@json_option
def targets(as_json: bool) -> None:
    """List the registered hardware target profiles.

    Example:

        compressor targets --json
    """
    from benchmarks.machine import host
    from compressor.app import views
    from targets import PROFILES
    from targets.cpu import CLASSES

    machine = host()
    if as_json:
        click.echo(json.dumps({"host": machine, "profiles": [p.to_dict() for p in PROFILES.values()],
                               "cpu_classes": [c.to_dict() for c in CLASSES.values()]}, indent=2))
    else:
        views.print_targets(PROFILES.values())
        views.print_cpu_classes(CLASSES.values(), PROFILES.values(), machine["cpu_class"])
        click.echo(f"This host: {machine['cpu']}, CPU class {machine['cpu_class']} "
                   f"(from its flags: {', '.join(machine['flags']) or 'none read'}); latencies measured here are "
                   "for that class.")


def _printable(exc: BaseException) -> str:
    """The message on one line, with bytes from damaged files escaped rather than crashing the print."""
    text = " ".join(str(exc).split("\n"))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


INTERRUPTED = "Interrupted; nothing half-written was left behind."


def _stop(message: str, code: int, as_json: bool) -> None:
    """End with ``code``: the one-line message on stderr, and with --json the same as JSON on stdout."""
    click.echo(message, err=True)
    if as_json:
        click.echo(json.dumps({"error": {"message": message, "exit_code": code}}))
    sys.exit(code)


def main(argv=None) -> None:
    """Console-script entry point: run the CLI and map typed errors to exit codes."""
    from compressor import interrupts

    interrupts.install()  # SIGTERM unwinds like Ctrl-C, so that half-written outputs are cleaned up
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in ("-v", "--verbose") or arg.startswith("-vv") for arg in args)
    as_json = "--json" in args
    try:
        cli.main(args=argv, prog_name="compressor", standalone_mode=False)
    except click.exceptions.Abort:
        _stop(INTERRUPTED, 130, as_json)
    except click.ClickException as exc:
        if as_json:
            _stop(f"Error: {exc.format_message()}", exc.exit_code, as_json)
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except CompressorError as exc:
        if interrupts.interrupted(exc):
            _stop(INTERRUPTED, 130, as_json)
        if verbose:
            raise
        _stop(f"Error: {_printable(exc)}", exc.exit_code, as_json)
    except KeyboardInterrupt:
        _stop(INTERRUPTED, 130, as_json)
    except Exception as exc:  # a bug: say so, in one line unless -v
        if interrupts.interrupted(exc):  # the interrupt surfaced inside a library as another error
            _stop(INTERRUPTED, 130, as_json)
        if verbose:
            raise
        _stop(f"Internal error: {type(exc).__name__}: {_printable(exc)} (run with -v for the traceback)", 1, as_json)
    sys.exit(0)
