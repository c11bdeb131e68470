"""The measuring commands: ``compressor bench`` (artifacts side by side, to a results document and
reports) and ``compressor report`` (reports again from a results document)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.reports import WRITERS
from compressor.app.options import json_option, latency_config, pixel_option, progress_for, trust_option


@click.command()
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
def bench(obj, paths, **given) -> None:
    """Measure artifacts (and the float source) and write results.json and reports.

    Each artifact runs in its own process; latency percentiles, throughput, memory,
    size, accuracy and accuracy drop are measured side by side.

    Example:

        compressor bench out/ --source model.keras --eval-data test.npz
    """
    from benchmarks import reports
    from benchmarks.harness import measure
    from compressor.app import views
    from compressor.data import load_dataset

    doc = measure(list(paths), eval_data=load_dataset(given["eval_data"], pixel_scale=given["pixel_scale"]),
                  source=given["source"], config=latency_config(given), rounds=given["rounds"],
                  trust_model=given["trust_model"], on_progress=progress_for(obj))
    out_dir = given["out_dir"]
    target = Path(out_dir) if out_dir else (Path(paths[0]) if Path(paths[0]).is_dir() else Path("."))
    written = reports.write_reports(doc, target)
    if given["as_json"]:
        click.echo(json.dumps(doc, indent=2))
        return
    views.print_benchmark(doc)
    click.echo(f"reports: {', '.join(str(p) for p in written.values())}")


@click.command()
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
