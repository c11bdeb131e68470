"""``export``: one model to one target, verified, with its manifest.

Work happens in a hidden staging folder inside the output folder; only an artifact
that passed its parity check is renamed into place, so a failure (a converter error, a
parity failure, an interrupt) never leaves a folder that looks valid.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor import keras_env
from compressor.data import Dataset
from compressor.errors import BadInputError, ParityError, UnsupportedModelError
from targets import manifest as manifests
from targets import parity
from targets.profiles import PROFILES, Parity, TargetProfile, get_profile, why_not
from targets.runtime import get_runtime, run_batched

DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_VALIDATION_SAMPLES = 500
ONNX_RUNTIMES = ("onnxruntime", "openvino")  # the runtimes that take an ONNX model as it is


@dataclass
class ExportResult:
    target: str
    folder: Path
    artifact: Path
    manifest: dict

    @property
    def parity(self) -> dict:
        return self.manifest["parity"]


def _is_onnx(model) -> bool:
    return getattr(model, "source_format", None) == "onnx"


def _layer_types(model) -> set[str]:
    if _is_onnx(model):
        return model.layer_types()
    from compressor.inspection import flat_layers

    return {type(layer).__name__ for layer in flat_layers(model)}


def _calibration_set(profile: TargetProfile, calibration, model, samples: int, seed: int) -> Dataset | None:
    if profile.precision not in ("int8", "int16x8"):
        return None
    if calibration is None:
        raise BadInputError(f"{profile.name}: needs calibration data (representative samples of real inputs)")
    if isinstance(calibration, str) and calibration == "random":
        return _random_calibration(model, samples, seed)
    return calibration.shuffled(seed).take(samples)


def _random_calibration(model, samples: int, seed: int) -> Dataset:
    from compressor.data import _data_spec

    shape, dtype, _ = _data_spec(model)
    rng = np.random.default_rng(seed)
    size = (samples, *[8 if d is None else int(d) for d in shape])
    x = rng.integers(0, 2, size=size) if dtype.kind in "iu" else rng.standard_normal(size)
    return Dataset(x.astype(dtype), None, "random noise (asked for)")


def _reference_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    result = model.predict(x, batch_size=64, verbose=0)
    return [np.asarray(r) for r in (result if isinstance(result, list) else [result])]


def _io_records(infos) -> list[dict]:
    return [vars(info) for info in infos]


def profiles_for(model) -> list[str]:
    """Names of the profiles that can take ``model`` (what ``--target all`` means)."""
    types = _layer_types(model)
    return [name for name, profile in PROFILES.items()
            if why_not(profile, types) is None and (not _is_onnx(model) or profile.runtime in ONNX_RUNTIMES)]


def _source_record(model, source_path) -> dict:
    if _is_onnx(model):
        return model.source_record()
    from compressor.inspection import inspect_model

    report = inspect_model(model)
    record = {"name": model.name, "params": report.params, "macs": report.macs}
    if source_path is not None:
        record.update(path=Path(source_path).name, sha256=manifests.sha256(Path(source_path)))
    return record


def export(model, target: str, *, out_dir: str | Path, validation: Dataset, calibration=None,
           calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
           validation_samples: int = DEFAULT_VALIDATION_SAMPLES, source_path=None, recipe: dict | None = None,
           threads: int = 1, seed: int = 0, overwrite: bool = False,
           parity_rule: Parity | None = None) -> ExportResult:
    """Export a tf-keras ``model`` to ``target``, check parity, write the manifest.

    Args:
        model: a tf-keras model (see :func:`compressor.load_model`).
        target: a registered profile name (``compressor targets`` lists them).
        out_dir: the artifact goes to ``out_dir/target/``.
        validation: samples for the parity check (keep them apart from calibration).
        calibration: representative samples for int8 calibration, or ``"random"``
            to calibrate on noise deliberately.
        source_path: the model file, recorded by name and sha256.
        recipe: the recipe that produced the model, recorded in the manifest.
        parity_rule: the user's own bounds, in place of the profile's (``max_abs`` for
            float targets, ``min_agreement`` for quantized ones); recorded in the manifest.

    Raises:
        UnsupportedModelError / ConversionError: the target cannot take the model.
        ParityError: the artifact disagrees with the model; nothing is left behind.

    Example:
        >>> export(model, "tflite-int8", out_dir="out", calibration=train, validation=test)
    """
    profile = get_profile(target)
    rule = profile.parity.override(parity_rule)
    if _is_onnx(model) and profile.runtime not in ONNX_RUNTIMES:
        raise UnsupportedModelError(f"{profile.name}: takes Keras models; an ONNX model goes to the "
                                    f"{' and '.join(ONNX_RUNTIMES)} targets")
    reason = why_not(profile, _layer_types(model))
    if reason:
        raise UnsupportedModelError(f"{profile.name}: cannot take model '{model.name}': {reason}")
    validation.check_fits(model)
    calibration_set = _calibration_set(profile, calibration, model, calibration_samples, seed)
    if calibration_set is not None:
        calibration_set.check_fits(model)
    final = Path(out_dir) / profile.name
    if final.exists() and not overwrite:
        raise BadInputError(f"{final}: already exists; choose another output folder or overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{profile.name}.", suffix=".partial", dir=final.parent))
    try:
        try:
            result = _export_into(staging, model, profile, rule, calibration_set,
                                  validation.take(validation_samples), source_path, recipe, threads)
        except OSError as exc:  # a full disk, a vanished folder: say so, leave nothing half-written
            raise BadInputError(f"{final}: cannot write the artifact ({exc.strerror or exc})") from None
        if final.exists():
            shutil.rmtree(final)
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(profile.name, final, final / result["artifact"]["file"], result)


def _total_size(exported) -> dict:
    """What the deployable files cost together (an OpenVINO IR is .xml + .bin; C sources excluded)."""
    files = [exported.artifact] + [p for p in exported.extra_files if p.suffix not in (".cc", ".h")]
    records = [manifests.file_record(p) for p in files]
    return {"bytes": sum(r["bytes"] for r in records), "gzip_bytes": sum(r["gzip_bytes"] for r in records)}


def _export_into(staging: Path, model, profile, rule, calibration, validation, source_path, recipe, threads) -> dict:
    runtime = get_runtime(profile.runtime)
    exported = runtime.export(model, profile, calibration, staging)
    runner = runtime.load(exported.artifact, threads=threads, details=exported.details)
    try:
        outputs = run_batched(runner, validation.x)
        inputs_info, outputs_info = runner.inputs, runner.outputs
    finally:
        runner.close()
    check = parity.compare(_reference_outputs(model, validation.x), outputs, rule)
    if not check.passed:
        raise ParityError(f"{profile.name}: parity check failed on {check.samples} validation samples: "
                          f"{'; '.join(check.failures)}")
    record = {
        "target": profile.name,
        "profile": profile.to_dict(),
        "runtime": profile.runtime,
        "precision": profile.precision,
        "libraries": manifests.library_versions(),
        "artifact": manifests.file_record(exported.artifact),
        "extra_files": [manifests.file_record(p) for p in exported.extra_files],
        "size": _total_size(exported),
        "inputs": _io_records(inputs_info),
        "outputs": _io_records(outputs_info),
        "source": _source_record(model, source_path),
        "recipe": recipe,
        "calibration": None if calibration is None else {"samples": len(calibration), "source": calibration.name},
        "validation": {"samples": len(validation), "source": validation.name},
        "parity": {**check.to_dict(), "rule_set_by": "profile" if rule == profile.parity else "user"},
        "details": exported.details,
        "threads": threads,
    }
    manifests.write(staging, record)
    return record
