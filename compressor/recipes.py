"""Recipes: typed, validated configs that compose compression steps and name the targets.

A recipe is a YAML file or a dict::

    name: prune50-int8
    seed: 0
    fine_tune: {epochs: 3, batch_size: 32, learning_rate: 0.0005}
    steps:
      - {type: prune, sparsity: 0.5, schedule: polynomial}
      - {type: qat}
    targets: [tflite-int8, onnx-int8, openvino-int8]

Every key is checked on load; an unknown key or step type names the valid ones, and a
value of the wrong type or out of range says which (target names are checked where a
job starts, against the target registry). Step types and their config classes come from
the step registry (:mod:`compressor.algorithms`). The recipe round-trips (``to_dict``)
and is written into every artifact's manifest.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from compressor.algorithms import STEPS, FineTune, StepConfig
from compressor.errors import BadInputError, UsageError


@dataclass(frozen=True)
class Recipe:
    name: str = "custom"
    description: str = ""
    seed: int = 0
    fine_tune: FineTune = field(default_factory=FineTune)
    steps: tuple[StepConfig, ...] = ()
    targets: tuple[str, ...] = ()

    def check(self) -> "Recipe":
        self.fine_tune.check("fine_tune")
        last = len(self.steps) - 1
        for index, step in enumerate(self.steps):
            step.check(f"steps[{index}] ({step.type})")
            registered = STEPS[step.type]
            required = {"first": 0, "last": last}.get(registered.position, index)
            if index != required:
                raise BadInputError(f"steps[{index}] ({step.type}): must be the {registered.position} step "
                                    f"({registered.why_position})")
        return self

    def fine_tune_for(self, step: StepConfig) -> FineTune:
        return step.fine_tune or self.fine_tune

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "seed": self.seed,
                "fine_tune": dataclasses.asdict(self.fine_tune),
                "steps": [{"type": s.type, **_plain(dataclasses.asdict(s))} for s in self.steps],
                "targets": list(self.targets)}


def _plain(data: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- parsing


def _coerce(value: Any, annotation, where: str):
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(str(a) for a in typing.get_args(annotation))
            raise BadInputError(f"{where}: '{value}' is not one of: {choices}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise BadInputError(f"{where}: must be a list of names")
        return tuple(value)
    if annotation in ("FineTune | None", FineTune) or annotation == FineTune | None:
        return _build(FineTune, value, where)
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
    expected = kinds.get(annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
    if expected is not None:
        if isinstance(value, bool) and expected is not bool:
            raise BadInputError(f"{where}: must be a number, got {value!r}")
        if not isinstance(value, expected):
            raise BadInputError(f"{where}: must be {annotation if isinstance(annotation, str) else annotation.__name__}"
                                f", got {type(value).__name__} {value!r}")
        return float(value) if annotation in (float, "float") else value
    return value


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: must be a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields and k != "type")
    if unknown:
        raise BadInputError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(fields)})")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items() if k != "type"})


def _step(data: Any, where: str) -> StepConfig:
    if not isinstance(data, dict) or "type" not in data:
        raise BadInputError(f"{where}: each step needs a 'type' (valid: {', '.join(sorted(STEPS))})")
    kind = data["type"]
    if not isinstance(kind, str) or kind not in STEPS:
        raise BadInputError(f"{where}: unknown step type '{kind}' (valid: {', '.join(sorted(STEPS))})")
    return _build(STEPS[kind].config, data, f"{where} ({kind})")


def from_dict(data: Any) -> Recipe:
    """Build and validate a recipe from plain data."""
    if not isinstance(data, dict):
        raise BadInputError(f"recipe: must be a mapping, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise BadInputError(f"recipe: unknown key '{unknown[0]}' (valid: {', '.join(sorted(fields))})")
    steps = data.get("steps") or []
    if not isinstance(steps, list):
        raise BadInputError("recipe.steps: must be a list of steps")
    kwargs = {k: v for k, v in data.items() if k not in ("steps", "fine_tune", "targets")}
    hints = typing.get_type_hints(Recipe)
    kwargs = {k: _coerce(v, hints[k], f"recipe.{k}") for k, v in kwargs.items()}
    recipe = Recipe(
        **kwargs,
        fine_tune=_build(FineTune, data.get("fine_tune") or {}, "fine_tune"),
        steps=tuple(_step(s, f"steps[{i}]") for i, s in enumerate(steps)),
        targets=_coerce(data.get("targets") or [], tuple[str, ...], "targets"),
    )
    return recipe.check()


def load_recipe(source) -> Recipe:
    """A Recipe from a built-in name, a YAML file, a dict, or a Recipe.

    Example:
        >>> load_recipe("prune50-int8").steps[0].sparsity
        0.5
    """
    if isinstance(source, Recipe):
        return source.check()
    if not isinstance(source, (str, Path)):
        return from_dict(source)
    text = str(source)
    if text in BUILTIN:
        return from_dict(BUILTIN[text])
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"unknown recipe '{text}': not a file, not a built-in (valid: {', '.join(BUILTIN)})")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return from_dict(data)


def _structured(fraction: float, *, epochs: int) -> dict:
    percent = round(fraction * 100)
    return {"name": f"structured{percent}-int8",
            "description": f"Remove {percent} % of channels (fewer MACs on any runtime), fine-tune from the unpruned "
                           "model, int8 targets",
            "fine_tune": {"epochs": epochs}, "steps": [{"type": "prune_structured", "fraction": fraction}],
            "targets": ["tflite-int8", "onnx-int8", "openvino-int8"]}


BUILTIN: dict[str, dict] = {
    "int8": {"name": "int8", "description": "Post-training int8 only: the model as it is, quantized per target",
             "steps": [], "targets": ["tflite-int8", "onnx-int8", "openvino-int8"]},
    "qat-int8": {"name": "qat-int8",
                 "description": "Quantization-aware fine-tuning (int8 rounding trained in), int8 targets; "
                                "the way back for integer-only hardware (mcu, edgetpu)",
                 "fine_tune": {"epochs": 3, "learning_rate": 0.0001},
                 "steps": [{"type": "qat"}],
                 "targets": ["tflite-int8", "onnx-int8", "openvino-int8"]},
    "prune50-int8": {"name": "prune50-int8",
                     "description": "50 % magnitude pruning with fine-tuning, sparsity-preserving QAT, int8 targets",
                     "fine_tune": {"epochs": 3},
                     "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "qat"}],
                     "targets": ["tflite-int8", "onnx-int8", "openvino-int8"]},
    "structured25-int8": _structured(0.25, epochs=15),
    "structured50-int8": _structured(0.5, epochs=30),  # half the channels need twice the fine-tuning
    "distill-int8": {"name": "distill-int8",
                     "description": "Distil into a half-width student, then int8 targets",
                     "fine_tune": {"epochs": 10, "learning_rate": 0.002},
                     "steps": [{"type": "distill", "width": 0.5}],
                     "targets": ["tflite-int8", "onnx-int8", "openvino-int8"]},
    "cluster16": {"name": "cluster16", "description": "16-cluster weight sharing (smaller gzip), fp16 and int8 targets",
                  "fine_tune": {"epochs": 2},
                  "steps": [{"type": "cluster", "clusters": 16}],
                  "targets": ["tflite-fp16", "tflite-int8"]},
    "mcu": {"name": "mcu", "description": "50 % pruning + QAT for a Cortex-M microcontroller (TFLite Micro, C array)",
            "fine_tune": {"epochs": 3},
            "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "qat"}],
            "targets": ["mcu"]},
}
