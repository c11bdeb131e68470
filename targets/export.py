"""``export``: one model to one target, verified, with its manifest.

Work happens in a hidden staging folder inside the output folder; only an artifact
that passed its parity check is renamed into place, so a failure (a converter error, a
parity failure, an interrupt) never leaves a folder that looks valid. One :class:`Attempt`
is one conversion: convert, stage, check parity, measure the budget, write the manifest. The
accuracy budget (``targets.budget``) sits above it and calls attempts until one holds.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from compressor import interrupts, memory
from compressor.data import Dataset
from compressor.errors import BadInputError, CompressorError, UnsupportedModelError
from compressor.models import as_source
from compressor import cpu
from targets import devices
from targets.artifact import Artifact
from targets.attempt import Attempt
from targets.budget import budget_for, within_budget
from targets.profiles import PROFILES, Parity, TargetProfile, get_profile, why_not, why_not_weights
from targets.runtime import get_runtime, runtimes

DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_VALIDATION_SAMPLES = 500


@dataclass(frozen=True)
class ExportResult(Artifact):
    """An artifact just written, its parity check passed."""

    @property
    def artifact(self) -> Path:
        return self.path

    @property
    def parity(self) -> dict:
        return self.manifest["parity"]


@dataclass
class ExportFailure:
    """A target that could not be exported: its exit code, one-line message, the error, and,
    for an unexpected exception (a bug), the traceback."""

    target: str
    exit_code: int
    message: str
    error: BaseException
    traceback: str | None = None


def _calibration_set(profile: TargetProfile, calibration, source, samples: int, seed: int) -> Dataset | None:
    if profile.precision not in ("int8", "int16x8"):
        return None
    if calibration is None:
        raise BadInputError(f"{profile.name}: needs calibration data (representative samples of real inputs)")
    if isinstance(calibration, str) and calibration == "random":
        return _random_calibration(source, samples, seed)
    return calibration.shuffled(seed).take(samples)


def _random_calibration(source, samples: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in source.inputs:
        size = (samples, *[8 if d is None else int(d) for d in spec.shape[1:]])
        dtype = np.dtype(spec.dtype)
        arrays[spec.name] = (rng.integers(0, 2, size=size) if dtype.kind in "iu" else rng.standard_normal(size)
                             ).astype(dtype)
    x = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return Dataset(x, None, "random noise (asked for)")


def why_not_source(profile: TargetProfile, source, report=None) -> str | None:
    """Why ``profile`` cannot take ``source`` (its format or its layers), or None if it can
    (``report``: the source's inspection, when the caller has it already)."""
    runtime = get_runtime(profile.runtime)
    if not runtime.takes(source):
        others = [name for name, other in runtimes().items() if other.takes(source)]
        return (f"{runtime.name} exports from {' or '.join(runtime.accepts)} models, not {source.format} ones"
                + (f"; {source.format} models go to the {' and '.join(others)} targets" if others else ""))
    return why_not(profile, source.op_types()) or (why_not_weights(profile, report or source.report())
                                                   if profile.compresses else None)


def compatibility(model) -> dict[str, str | None]:
    """For every profile: None if it can take ``model`` (a source or a Keras model), else why not."""
    source = as_source(model)
    report = source.report()  # once, for every weight-only profile's share of MatMul weights
    return {name: why_not_source(profile, source, report) for name, profile in PROFILES.items()}


def profiles_for(model) -> list[str]:
    """Names of the profiles that can take ``model`` (what ``--target all`` means)."""
    return [name for name, reason in compatibility(model).items() if reason is None]


@dataclass(frozen=True)
class ExportOptions:
    """How to export, beside the model, the target and the data (:func:`export`'s settings).

    Attributes:
        calibration_samples / validation_samples: how many samples calibrate int8 and check parity.
        source_path: the model file, recorded by name and sha256.
        recipe: the recipe that produced the model, recorded in the manifest.
        threads: the runner's threads for the parity check.
        seed: what shuffles the calibration samples.
        overwrite: replace an existing ``out_dir/target/``.
        parity_rule: the user's own bounds, in place of the profile's (``max_abs`` for
            float targets, ``min_agreement`` for quantized ones); recorded in the manifest.
        device: a named microcontroller budget (``targets.devices``); an artifact with a
            measured tensor arena (mcu) that does not fit it is refused.
        cpu_class: the CPU class the artifact ships to (``compressor.cpu.CLASSES``; ``host``:
            this machine's); CPU profiles choose their quantization settings for it.
        max_drop: the accuracy budget of a quantized target, in top-1 points against the float
            model on the validation labels (in points of disagreement without labels). When
            the profile's int8 misses it, the layers that cost accuracy are found by measuring
            and kept in float (runtimes that can mix precisions), or the target is refused
            (AccuracyBudgetError) with what came closest. The parity floor stays the hard floor.
        min_snr: the budget of a model without class scores (regressors, segmentation maps):
            the SNR floor of its outputs against the float model, in dB (with ``max_drop``).
        budget_against: the float model the budget is measured against when it is not the
            exported one (the user's model before a recipe's steps): the drop then counts what
            pruning or fine-tuning lost too, and a compressed model that alone misses the budget
            is refused.
        timer: ``timer(runner, feeds) -> ms``, a loaded artifact's p50 on one sample
            (``benchmarks.latency.runner_p50_ms``); with it, the budget's search records the
            latency of full int8 and of each number of layers it tried in float.
        metric: the task's own metric (``compressor.metrics.task``: ``"map"``, ``"miou"``,
            ``"cer"``, ``"retrieval"``, ``"mae"``, ``"pck"``, with options): ``max_drop`` is then
            in its points, against the validation data's ``t_*`` truth or the float model's
            own decoded outputs; recorded in the manifest.
    """

    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    validation_samples: int = DEFAULT_VALIDATION_SAMPLES
    source_path: str | Path | None = None
    recipe: dict | None = None
    threads: int = 1
    seed: int = 0
    overwrite: bool = False
    parity_rule: Parity | None = None
    device: str | None = None
    cpu_class: str = cpu.HOST
    max_drop: float | None = None
    min_snr: float = 30.0
    budget_against: object = None
    timer: object = None
    metric: object = None  # a task metric spec ("map:layout=yolov8") or compressor.metrics.task.ChosenMetric

    @classmethod
    def of(cls, options: "ExportOptions | None", settings: dict) -> "ExportOptions":
        """``options`` with ``settings`` (keyword names of its fields) laid over it, checked."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"export() got unknown setting(s): {', '.join(unknown)}")
        merged = cls(**{**(vars(options) if options is not None else {}), **settings})
        merged.check()
        if isinstance(merged.metric, str):
            from compressor.metrics.task import parse_metric

            merged = cls(**{**vars(merged), "metric": parse_metric(merged.metric, max_drop=merged.max_drop)})
        elif hasattr(merged.metric, "bound"):  # several heads: judged against this run's budget
            merged = cls(**{**vars(merged), "metric": merged.metric.bound(merged.max_drop)})
        return merged

    def check(self) -> None:
        if self.max_drop is not None and not self.max_drop >= 0:
            raise BadInputError(f"the accuracy budget must be >= 0 top-1 points, not {self.max_drop}")
        if not self.min_snr > 0:
            raise BadInputError(f"the SNR floor must be > 0 dB, not {self.min_snr}")
        if self.device is not None:
            devices.get_device(self.device)


def export(model, target: str, *, out_dir: str | Path, validation: Dataset, calibration=None,
           options: ExportOptions | None = None, on_progress=None, **settings) -> ExportResult:
    """Export a model to ``target``, check parity, write the manifest.

    Args:
        model: a source model (:func:`compressor.load_source`) or a Keras model.
        target: a registered profile name (``compressor targets`` lists them).
        out_dir: the artifact goes to ``out_dir/target/``.
        validation: samples for the parity check (keep them apart from calibration).
        calibration: representative samples for int8 calibration, or ``"random"``
            to calibrate on noise deliberately.
        options: an :class:`ExportOptions`; ``settings`` are its fields by name, laid over it
            (``threads=2, max_drop=1.0``).
        on_progress: ``on_progress(line)`` is told what a long stage is doing.

    Raises:
        UnsupportedModelError / ConversionError: the target cannot take the model.
        ParityError: the artifact disagrees with the model; nothing is left behind.
        AccuracyBudgetError: no setting met ``max_drop``; nothing is left behind.

    Example:
        >>> export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    """
    options = ExportOptions.of(options, settings)
    profile = get_profile(target).for_cpu(options.cpu_class)
    source = as_source(model)
    reason = why_not_source(profile, source)
    if reason:
        raise UnsupportedModelError(f"{profile.name}: cannot take model '{source.name}': {reason}")
    final = Path(out_dir) / profile.name
    if final.exists() and not options.overwrite:
        raise BadInputError(f"{final}: already exists; choose another output folder or overwrite")
    calibration_set, validation, budget = _data_and_budget(profile, source, validation, calibration, options)
    rule = _task_aware(profile.parity.override(options.parity_rule), profile, options)
    result = _in_staging(final, lambda staging: _written(
        Attempt(staging, source, rule, calibration_set, validation, options, budget), profile, final, on_progress))
    return ExportResult(final, final / result["artifact"]["file"], result)


BROKEN_SNR_DB = 6.0  # with a task metric: the SNR floor left to catch a broken conversion (noise = signal / 4)


def _task_aware(rule, profile: TargetProfile, options: ExportOptions):
    """With a task metric judging a quantized artifact, the tensor SNR floor no longer refuses
    what the metric accepts (a box head at 19 dB whose boxes hold their IoU): it keeps only a
    floor that catches broken conversions, and the metric's budget decides."""
    if options.metric is None or not profile.quantized or options.parity_rule is not None:
        return rule
    return dataclasses.replace(rule, min_snr_db=min(rule.min_snr_db, BROKEN_SNR_DB))


def _in_staging(final: Path, write) -> dict:
    """``write(staging)`` into a hidden folder beside ``final``, renamed into place only when it
    returns: a failure or an interrupt leaves nothing that looks like an artifact."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        result = write(staging)
        if final.exists():
            shutil.rmtree(final)
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _data_and_budget(profile: TargetProfile, source, validation: Dataset, calibration, options: ExportOptions):
    """The calibration and validation samples, each checked to fit the model, and the budget."""
    validation.check_fits(source, metric=options.metric)
    calibration_set = _calibration_set(profile, calibration, source, options.calibration_samples, options.seed)
    if calibration_set is not None:
        calibration_set.check_fits(source, metric=options.metric)
    validation = validation.take(options.validation_samples)
    budget = None if options.max_drop is None or not profile.quantized else \
        budget_for(source, profile, validation, options)
    return calibration_set, validation, budget


def _written(attempt: "Attempt", profile: TargetProfile, final: Path, on_progress) -> dict:
    """The manifest of the artifact written into the staging folder: the profile's own export,
    or, with a budget, what the budget's ladder settles on."""
    try:
        if attempt.budget is None:
            return attempt(profile).record
        return within_budget(attempt, profile, on_progress)
    except OSError as exc:  # a full disk, a vanished folder: say so, leave nothing half-written
        raise BadInputError(f"{final}: cannot write the artifact ({exc.strerror or exc})") from None


def export_many(model, targets: list[str], *, on_progress=None, costs: dict | None = None,
                **options) -> tuple[list[ExportResult], list[ExportFailure]]:
    """Export ``model`` to each of ``targets``; one target's failure never stops the others.

    ``all`` among the names means every profile that can take the model. ``options`` are
    :func:`export`'s. A failure the user can act on keeps its typed error's exit code and
    message; an unexpected exception is recorded as a bug (exit 1) with its traceback.
    ``on_progress(message)`` is told as each target starts and fails. ``costs``, when given, gets
    each target's wall time and peak resident memory (``compressor.memory``).

    Example:
        >>> exported, failed = export_many(model, ["all"], out_dir="out", calibration=train, validation=test)
    """
    source = as_source(model)
    names = profiles_for(source) if "all" in targets else list(dict.fromkeys(targets))
    exported, failed = [], []
    for index, name in enumerate(names):
        interrupts.check()
        if on_progress:
            on_progress(f"export: {name} ({index + 1}/{len(names)})")
        started, own_peak = time.perf_counter(), memory.reset_peak()
        try:
            exported.append(export(source, name, on_progress=on_progress, **options))
        except Exception as exc:
            if interrupts.interrupted(exc):  # Ctrl-C or SIGTERM surfaced inside a library: stop everything
                raise
            failed.append(_failure(name, exc))
            if on_progress:
                on_progress(f"export: {name} FAILED: {failed[-1].message}")
        finally:
            if costs is not None:
                costs[name] = {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": memory.peak_mb(),
                               "peak_since": "the export's start" if own_peak else "the process's start"}
    interrupts.check()
    return exported, failed


def _failure(target: str, exc: Exception) -> ExportFailure:
    """A typed error keeps its exit code and message; anything else is a bug (exit 1), traceback kept."""
    if isinstance(exc, CompressorError):
        return ExportFailure(target, exc.exit_code, str(exc), exc)
    return ExportFailure(target, CompressorError.exit_code, f"{target}: {type(exc).__name__}: {exc}", exc,
                         traceback.format_exc())
