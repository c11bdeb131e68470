"""The ``compressor`` command line. Each command parses, calls the library, formats.

Errors the user can fix print one line and exit with the code of their class
(see :mod:`compressor.errors`); ``-v`` shows the traceback too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from compressor.app.options import (bench_options, budget_option, cpu_option, datasets_for, device_option, duration,
                                    input_shape_option,
                                    finish_run, json_option, latency_config, parity_bounds, parity_options, pixel_option,
                                    printable, progress_for, quiet_libraries, report_failures, trust_option)
from compressor.errors import EXIT_CODES, BadInputError, CompressorError
from compressor.version import __version__

EXIT_CODE_HELP = "\b\n" + "\n".join(f"  {code}  {meaning}" for meaning, code in EXIT_CODES.items())


class Context:
    def __init__(self, verbose: int, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet


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
        quiet_libraries()
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
    from targets.runtime import describe_artifact, is_artifact

    path = Path(model)
    if is_artifact(path):
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
@input_shape_option
@cpu_option
@budget_option
@bench_options
@trust_option
@json_option
@click.pass_obj
def compress(obj, model, **given) -> None:
    """Compress MODEL with a recipe, export each target, check parity, benchmark, report.

    Exit code 0 only when every requested artifact was written and passed its parity check.

    Example:

        compressor compress model.keras -r prune50-int8 -t tflite-int8 -t openvino-int8 --data train.npz --eval-data test.npz -o out
    """
    from compressor.app.workflow import JobSpec, run

    spec = JobSpec(model, given["recipe"], given["data"], given["eval_data"], given["out_dir"],
                   targets=tuple(given["target_names"]), overwrite=given["overwrite"],
                   bench_config=latency_config(given), rounds=given["rounds"], trust_model=given["trust_model"],
                   parity_rule=parity_bounds(given), device=given["device"], pixel_scale=given["pixel_scale"],
                   cpu_class=given["cpu_class"], max_drop=given["max_drop"], min_snr=given["min_snr"],
                   metric=given["metric"], input_shapes=tuple(given["input_shapes"]))
    finish_run(run(spec, progress_for(obj)), given["as_json"])


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
def search(obj, model, **given) -> None:
    """Find the fastest (or smallest) artifact per target within the accuracy budget: int8, structured
    and magnitude pruning (Keras models), each exported with the budget and measured here.

    Example:

        compressor search model.keras -t tflite-int8 -t onnx-int8 --max-drop 1 --data train.npz --eval-data test.npz -o best
    """
    from compressor.app import views
    from compressor.app.search import SearchConfig
    from compressor.app.search import search as run_search

    config = SearchConfig(model, tuple(given["target_names"]), given["data"], given["eval_data"], given["out_dir"],
                          recipes=tuple(given["recipes"]), time_budget_s=duration(given["time_budget"]),
                          **{k: given[k] for k in ("max_drop", "min_snr", "metric", "objective", "cpu_class", "jobs",
                                                   "executor", "address", "trust_model")})
    record = run_search(config, progress=progress_for(obj))
    if given["as_json"]:
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
    from compressor.app.workflow import JobSpec, run

    progress = progress_for(obj)
    progress(f"sample model: {model_name} (trained on first use, then cached)")
    path = sample_models.path(model_name)
    sample = sample_models.SAMPLE_MODELS[model_name]
    spec = JobSpec(str(path), recipe, f"sample:{sample.dataset}:train", f"sample:{sample.dataset}:test", out_dir,
                   targets=("all",), overwrite=True, rounds=rounds, max_drop=1.0,
                   bench_config=LatencyConfig(min_seconds=min_seconds, threads=threads))
    outcome = run(spec, progress)
    finish_run(outcome, as_json)
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
@input_shape_option
@cpu_option
@budget_option
@trust_option
@json_option
@click.pass_obj
def export(obj, model, **given) -> None:
    """Export MODEL to hardware targets, each checked for parity against MODEL.

    Example:

        compressor export model.keras -t tflite-int8 -t openvino-int8 --data train.npz --eval-data test.npz -o out
    """
    from benchmarks.latency import runner_p50_ms
    from compressor.app import views
    from compressor.models import load_source
    from targets import export_many, validate_targets

    from compressor.models.source import fixing_shapes

    names = validate_targets(given["target_names"])
    source = fixing_shapes(load_source(model, trust_model=given["trust_model"]), given["input_shapes"])
    calibration, validation = datasets_for(source, given["data"], given["eval_data"], given["seed"],
                                           given["pixel_scale"])
    from compressor.metrics.task import parse_metric

    settings = {k: given[k] for k in ("calibration_samples", "threads", "seed", "overwrite", "device", "cpu_class",
                                      "max_drop", "min_snr")}
    settings["metric"] = None if given["metric"] is None else parse_metric(given["metric"], trust=given["trust_model"])
    exported, failed = export_many(source, names, out_dir=given["out_dir"], calibration=calibration,
                                   validation=validation, source_path=model, timer=runner_p50_ms,
                                   parity_rule=parity_bounds(given), on_progress=progress_for(obj), **settings)
    if len(failed) == 1 and not exported:  # one target asked for and refused: its own one-line error
        raise failed[0].error
    if given["as_json"]:
        click.echo(json.dumps([r.manifest for r in exported], indent=2))
    elif exported:
        views.print_exports(exported)
    report_failures(failed, given["out_dir"])


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
    from compressor.cpu import CLASSES

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


INTERRUPTED = "Interrupted; nothing half-written was left behind."


from compressor.app.bench_cli import bench, report  # noqa: E402  (registered below)

cli.add_command(bench)
cli.add_command(report)


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
        _stop(f"Error: {printable(exc)}", exc.exit_code, as_json)
    except KeyboardInterrupt:
        _stop(INTERRUPTED, 130, as_json)
    except Exception as exc:  # a bug: say so, in one line unless -v
        if interrupts.interrupted(exc):  # the interrupt surfaced inside a library as another error
            _stop(INTERRUPTED, 130, as_json)
        if verbose:
            raise
        _stop(f"Internal error: {type(exc).__name__}: {printable(exc)} (run with -v for the traceback)", 1, as_json)
    sys.exit(0)
