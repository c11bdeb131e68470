"""The whole job: compress → export every target → verify parity → benchmark → report.

Output layout (one folder per run)::

    OUT/
      run.json            what ran, every step's record, every target's outcome (written last)
      model.keras         the compressed float model (tf-keras)
      <target>/           artifact, manifest.json (+ model_data.cc/.h for mcu)
      results.json        benchmark results, the source of the reports
      report.md  report.html  results.csv

An existing OUT is never mixed with old results: it is refused, unless ``overwrite`` is
given and OUT holds a previous run (a ``run.json``), which is then replaced. A folder that
was not written by this tool is never deleted.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compressor import atomic, interrupts, memory
from compressor.errors import BadInputError, CompressorError

RUN_FILE = "run.json"
STARTED = ".compressor-run"  # in a folder this tool began writing; run.json replaces it when the run ends
ERROR_LOG = "errors.log"
Progress = Callable[[str], None]


@dataclass
class RunOutcome:
    out_dir: Path
    exported: list = field(default_factory=list)  # targets.ExportResult
    failed: list = field(default_factory=list)  # targets.ExportFailure
    results: dict | None = None  # benchmark results document
    compression: dict | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit_code(failure.exit_code for failure in self.failed)


def write_error_log(out_dir: Path, failures) -> Path | None:
    """The tracebacks of the failures that were bugs, in ``out_dir/errors.log``, for a bug report."""
    bugs = [f for f in failures if f.traceback]
    if not bugs:
        return None
    text = "".join(f"== {f.target}: {f.message}\n{f.traceback}\n" for f in bugs)
    return atomic.write_text(Path(out_dir) / ERROR_LOG, text)


def worst_exit_code(codes) -> int:
    """The exit code of several failures: a bug (1) first, else the highest; 0 for none."""
    codes = list(codes)
    return CompressorError.exit_code if CompressorError.exit_code in codes else max(codes, default=0)


def refuse_inputs_inside(out_dir: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is or contains one of the ``inputs`` (it would be swallowed)."""
    out = Path(out_dir).resolve()
    for path in inputs:
        source = Path(path).resolve()
        if source == out or out in source.parents:
            raise BadInputError(f"{out_dir}: the output folder is or contains the input {path}; choose another")


def prepare_output(out_dir: Path, inputs: list[Path], *, overwrite: bool) -> None:
    """Refuse an output folder that would mix runs, lose data or swallow an input."""
    out = out_dir.resolve()
    refuse_inputs_inside(out_dir, inputs)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out_dir}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise BadInputError(f"{out_dir}: exists and is not empty; choose a new folder or pass --overwrite")
        if not (out / RUN_FILE).is_file() and not (out / STARTED).is_file():
            raise BadInputError(f"{out_dir}: --overwrite only replaces a folder holding a previous run ({RUN_FILE}, "
                                "or an interrupted one); this one holds neither, so it is left untouched")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / STARTED).write_bytes(b"")  # an interrupted run can be replaced with --overwrite
    except OSError as exc:
        raise BadInputError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class JobSpec:
    """One whole job, as the CLI or a caller states it: what to compress, with which recipe, to
    which targets, on which data, within which budget, into which folder."""

    model_path: str
    recipe: object  # a built-in name, a recipe file, or a Recipe
    data: str
    eval_data: str
    out_dir: str
    targets: tuple = ()  # () = the recipe's targets
    overwrite: bool = False
    bench_config: object = None  # benchmarks.latency.LatencyConfig
    rounds: int = 3
    trust_model: bool = False
    parity_rule: object = None  # targets.ParityBounds
    device: str | None = None
    pixel_scale: str | None = None
    cpu_class: str = "host"
    max_drop: float | None = None
    min_snr: float = 30.0
    metric: str | None = None  # a task metric spec (compressor.metrics.task): the budget in its points
    input_shapes: tuple = ()  # --input-shape values: an ONNX model's dynamic dimensions fixed


@dataclass
class _Prepared:
    """What the job's one preflight established: everything parsed, loaded and checked to fit."""

    recipe: object
    targets: list
    source: object
    train: object
    test: object
    metric: object = None  # the task metric, parsed (a user's own loaded, with --trust-model)


def _prepare(spec: JobSpec) -> _Prepared:
    """Parse and check everything once, before the output folder exists: a typo in the recipe, a
    target or the model, or data that cannot feed the model, stops the job before any work."""
    from compressor.data import load_dataset
    from compressor.models import load_source
    from compressor.models.source import fixing_shapes
    from compressor.pipeline import check_steps_fit
    from compressor.recipes import load_recipe
    from targets import validate_targets
    from compressor.cpu import get_class

    recipe = load_recipe(spec.recipe)
    names = validate_targets(list(spec.targets) or list(recipe.targets))
    get_class(spec.cpu_class)
    from compressor.metrics.task import parse_metric

    metric = None if spec.metric is None else parse_metric(spec.metric, trust=spec.trust_model)
    if not names:
        raise BadInputError("no target: give --target (or a recipe with targets)")
    source = fixing_shapes(load_source(spec.model_path, trust_model=spec.trust_model), spec.input_shapes)
    check_steps_fit(recipe, source)
    shape = source.data_spec()[0]
    train, test = (load_dataset(d, input_shape=shape, pixel_scale=spec.pixel_scale) for d in (spec.data, spec.eval_data))
    for dataset in (train, test):
        dataset.check_fits(source, metric=metric)
    return _Prepared(recipe, names, source, train, test, metric)


def run(spec: JobSpec, progress: Progress = lambda message: None) -> RunOutcome:
    """Compress ``spec.model_path`` with its recipe and take it through every target to reports."""
    from benchmarks.latency import runner_p50_ms
    from targets import export_many

    job = _prepare(spec)
    out = Path(spec.out_dir)
    prepare_output(out, [Path(spec.model_path)] + [Path(p) for p in (spec.data, spec.eval_data)
                                                   if not str(p).startswith("sample:")], overwrite=spec.overwrite)
    outcome = RunOutcome(out)
    source, provenance = _compress(job.source, job.recipe, job.train, job.test, spec.trust_model, progress, outcome)
    costs: dict = {"before_exports_mb": memory.peak_mb()}  # loading and compressing
    outcome.exported, outcome.failed = export_many(
        source, job.targets, out_dir=out, calibration=job.train, validation=job.test, source_path=spec.model_path,
        recipe=provenance, seed=job.recipe.seed, parity_rule=spec.parity_rule, device=spec.device,
        cpu_class=spec.cpu_class, max_drop=spec.max_drop, min_snr=spec.min_snr, metric=job.metric,
        budget_against=job.source if job.recipe.steps else None, timer=runner_p50_ms, on_progress=progress,
        costs=costs.setdefault("exports", {}))
    interrupts.check()
    if outcome.exported:
        _benchmark(spec, job.test, progress, outcome, title=f"{Path(spec.model_path).name}, recipe {job.recipe.name}")
    interrupts.check()  # never mark an interrupted run complete
    write_error_log(out, outcome.failed)
    atomic.write_text(out / RUN_FILE, json.dumps(_summary(spec, job, outcome, costs), indent=2, default=str) + "\n")
    (out / STARTED).unlink(missing_ok=True)
    return outcome


def _summary(spec: JobSpec, job: _Prepared, outcome: RunOutcome, costs: dict) -> dict:
    """What ``run.json`` holds: what ran, every step's record, every target's outcome, the cost."""
    from compressor.cpu import get_class

    exports = costs["exports"]
    return {"model": str(spec.model_path), "recipe": job.recipe.to_dict(), "targets": job.targets,
            "cpu_class": get_class(spec.cpu_class).name, "max_drop_pp": spec.max_drop, "min_snr_db": spec.min_snr,
            "metric": spec.metric,
            "exported": [r.target for r in outcome.exported],
            "failed": {f.target: {"exit_code": f.exit_code, "error": f.message,
                                  **({"traceback": f.traceback} if f.traceback else {})} for f in outcome.failed},
            "compression": outcome.compression,
            # what the job cost here (run.json only: manifests stay byte-identical between runs)
            "cost": {"exports": exports, "benchmark_workers_peak_rss_mb": memory.children_peak_mb(),
                     "job_peak_rss_mb": max([costs["before_exports_mb"], memory.peak_mb(),
                                             *(c["peak_rss_mb"] for c in exports.values())])}}


def _compress(source, recipe, data, eval_data, trust_model, progress, outcome):
    """The recipe's steps on the source and data the preflight checked; the compressed model saved."""
    from compressor import keras_env
    from compressor.pipeline import run_steps

    progress(f"compress: recipe '{recipe.name}' ({len(recipe.steps)} step(s))")
    with keras_env.releasing_graphs():
        result = run_steps(source, recipe, data, eval_data, trust_model=trust_model,
                           on_step=lambda i, kind: progress(f"compress: step {i + 1}/{len(recipe.steps)} {kind}"))
    outcome.compression = result.to_dict()
    if result.model is not None:  # the compressed Keras model; an ONNX source has none of its own
        with atomic.atomic_path(outcome.out_dir / "model.keras") as tmp:
            result.model.save(tmp)
    # manifests carry what was done, not how long it took: same inputs, byte-identical manifests
    provenance = {**outcome.compression,
                  "steps": [{k: v for k, v in step.items() if k != "seconds"} for step in outcome.compression["steps"]]}
    return result.source, provenance


def _benchmark(spec: JobSpec, test, progress, outcome, title=None):
    """Every artifact and the float source measured side by side; the reports written."""
    from benchmarks import reports
    from benchmarks.harness import measure
    from benchmarks.latency import LatencyConfig

    progress(f"benchmark: {len(outcome.exported)} artifact(s) and the float source, each in its own process")
    outcome.results = measure([r.folder for r in outcome.exported], eval_data=test, source=spec.model_path,
                              config=spec.bench_config or LatencyConfig(), rounds=spec.rounds,
                              trust_model=spec.trust_model, on_progress=progress)
    outcome.results["title"] = title
    outcome.results["refused"] = [{"target": f.target, "exit_code": f.exit_code, "reason": f.message}
                                  for f in outcome.failed]
    # the run's own budget, for what the reports say to ship (not the defaults)
    outcome.results.update({k: v for k, v in (("budget_pp", spec.max_drop), ("min_snr_db", spec.min_snr))
                            if v is not None})
    reports.write_reports(outcome.results, outcome.out_dir)
