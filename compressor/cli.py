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

import click

from compressor.errors import EXIT_CODES, CompressorError
from compressor.version import __version__

EXIT_CODE_HELP = "\b\n" + "\n".join(f"  {code}  {meaning}" for meaning, code in EXIT_CODES.items())


def _quiet_libraries() -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["COMPRESSOR_QUIET"] = "1"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "tf2onnx", "nncf", "openvino", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Context:
    def __init__(self, verbose: int, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet


def trust_option(func):
    return click.option(
        "--trust-model", is_flag=True,
        help="Allow Lambda layers and custom objects (they run code). Only for models you trust.",
    )(func)


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
    """Describe MODEL: inputs, outputs, layers, parameters, MACs, sparsity, targets.

    Example:

        compressor inspect model.keras --json
    """
    from compressor import views
    from compressor.inspection import inspect_model
    from compressor.loading import load_model
    from targets import compatibility

    report = inspect_model(load_model(model, trust_model=trust_model))
    targets = compatibility({layer.type for layer in report.layers})
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "targets": targets}, indent=2))
    else:
        views.print_model_report(report, targets)


def _load_any_model(path: str, trust_model: bool):
    """A Keras model through compressor.load_model, or an ONNX model for the quantize-only path."""
    if path.lower().endswith(".onnx"):
        from targets import load_onnx

        return load_onnx(path)
    from compressor.loading import load_model

    return load_model(path, trust_model=trust_model)


def _datasets(model, data: str | None, eval_data: str | None, seed: int):
    """Calibration and validation sets; one source alone is split so that they never overlap."""
    from compressor.data import _data_spec, load_dataset

    shape = _data_spec(model)[0]
    if data is None and eval_data is None:
        raise click.UsageError("give --data (calibration) and/or --eval-data (validation)")
    if data is not None and eval_data is not None:
        return load_dataset(data, input_shape=shape), load_dataset(eval_data, input_shape=shape)
    calibration, validation = load_dataset(data or eval_data, input_shape=shape).split(0.5, seed=seed)
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
@trust_option
@json_option
def export(model, target_names, data, eval_data, out_dir, calibration_samples, threads, seed, overwrite,
           trust_model, as_json) -> None:
    """Export MODEL to hardware targets, each checked for parity against MODEL.

    Example:

        compressor export model.keras -t tflite-int8 -t openvino-int8 --data train.npz --eval-data test.npz -o out
    """
    from compressor import views
    from targets import export as export_target
    from targets import profiles_for

    source = _load_any_model(model, trust_model)
    calibration, validation = _datasets(source, data, eval_data, seed)
    names = profiles_for(source) if "all" in target_names else list(dict.fromkeys(target_names))
    results = [export_target(source, name, out_dir=out_dir, calibration=calibration, validation=validation,
                             calibration_samples=calibration_samples, threads=threads, seed=seed,
                             source_path=model, overwrite=overwrite) for name in names]
    if as_json:
        click.echo(json.dumps([r.manifest for r in results], indent=2))
    else:
        views.print_exports(results)


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
@trust_option
@json_option
def bench(paths, eval_data, source, out_dir, threads, batch, rounds, min_runs, min_seconds, warmup_seconds,
          trust_model, as_json) -> None:
    """Measure artifacts (and the float source) and write results.json and reports.

    Each artifact runs in its own process; latency percentiles, throughput, memory,
    size, accuracy and accuracy drop are measured side by side.

    Example:

        compressor bench out/ --source model.keras --eval-data test.npz
    """
    from pathlib import Path

    from benchmarks import reports, results
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig
    from compressor import views
    from compressor.data import load_dataset

    config = LatencyConfig(warmup_seconds=warmup_seconds, min_runs=min_runs, min_seconds=min_seconds, batch=batch,
                           threads=threads)
    doc = measure(list(paths), eval_data=load_dataset(eval_data), source=source, config=config, rounds=rounds,
                  trust_model=trust_model)
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
              type=click.Choice(["md", "html", "csv", "json"]), help="Report format.")
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
    from compressor import views
    from targets import PROFILES

    if as_json:
        click.echo(json.dumps([p.to_dict() for p in PROFILES.values()], indent=2))
    else:
        views.print_targets(PROFILES.values())


@cli.command()
@click.option("--model", "model_name", default="mnist_cnn", show_default=True,
              help="Which built-in sample model to use.")
@json_option
def demo(model_name: str, as_json: bool) -> None:
    """Run the main job on a built-in sample model (trained offline on first use).

    Example:

        compressor demo --model cifar_cnn
    """
    import sample_models
    from compressor import views
    from compressor.inspection import inspect_model
    from compressor.loading import load_model
    from targets import compatibility

    path = sample_models.path(model_name)
    report = inspect_model(load_model(path))
    targets = compatibility({layer.type for layer in report.layers})
    accuracy = sample_models.recorded_accuracy(model_name)
    if as_json:
        click.echo(json.dumps({"model": str(path), "test_accuracy": accuracy, **report.to_dict(), "targets": targets},
                              indent=2))
        return
    click.echo(f"sample model '{model_name}': {path} (test accuracy {accuracy:.2%})")
    views.print_model_report(report, targets)


def main(argv=None) -> None:
    """Console-script entry point: run the CLI and map typed errors to exit codes."""
    verbose = any(arg in ("-v", "--verbose") or arg.startswith("-vv") for arg in (argv or sys.argv[1:]))
    try:
        cli.main(args=argv, prog_name="compressor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CompressorError as exc:
        if verbose:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so, in one line unless -v
        if verbose:
            raise
        click.echo(f"Internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)
