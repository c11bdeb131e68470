"""``compress``: run a recipe's steps on a model, recording what each step did.

Steps come from the step registry (:mod:`compressor.algorithms`); each knows only
tf-keras models and data. The whole job (export and benchmarks too) is in
:mod:`compressor.app.workflow`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable


from compressor import keras_env
from compressor.algorithms import StepContext, get_step
from compressor.data import load_dataset
from compressor.errors import UnsupportedModelError
from compressor.metrics.compare import top1
from compressor.models import as_source, load_source
from compressor.models.source import labelled_output
from compressor.recipes import Recipe, load_recipe


@dataclass
class StepRecord:
    type: str
    config: dict
    seconds: float
    params: int
    macs: int
    sparsity: float
    accuracy: float | None
    details: dict = field(default_factory=dict)


@dataclass
class CompressResult:
    source: object  # the compressed model, a SourceModel (see compressor.models)
    recipe: Recipe
    baseline: StepRecord
    steps: list[StepRecord]

    @property
    def model(self):
        """The compressed tf-keras model (None for a source that is not Keras, e.g. ONNX with no steps)."""
        return self.source.representation("keras")

    def to_dict(self) -> dict:
        return {"recipe": self.recipe.to_dict(), "baseline": asdict(self.baseline),
                "steps": [asdict(s) for s in self.steps]}


def _record(kind: str, config: dict, source, eval_data, seconds: float, details: dict) -> StepRecord:
    report = source.report()
    return StepRecord(kind, config, seconds, report.params, report.macs, report.sparsity,
                      _accuracy(source, eval_data), details)


def _accuracy(source, data) -> float | None:
    """Top-1 of the source's class-score output on labelled ``data`` (None without labels or scores)."""
    head = labelled_output(source)
    if data is None or data.y is None or head is None:
        return None
    return top1(source.predict(data.feeds(source), batch_size=256)[head], data.y)


def check_steps_fit(recipe: Recipe, source) -> None:
    """Refuse, before any work, a step that fine-tunes when the source is not a Keras model."""
    for index, step in enumerate(recipe.steps):
        if not get_step(step.type).trains:
            continue
        if "keras" not in source.provides:
            raise UnsupportedModelError(
                f"steps[{index}] ({step.type}): fine-tunes a Keras model, and '{source.name}' is an "
                f"{source.format} model; {source.format} models take quantize-only recipes (no steps, e.g. -r int8)")
        if len(source.outputs) > 1:
            raise UnsupportedModelError(
                f"steps[{index}] ({step.type}): fine-tuning a model with {len(source.outputs)} outputs needs labels "
                "for each, which recipes do not take yet; quantize-only recipes (no steps, e.g. -r int8) work")
        run_as_is = _keras3_layers_with_weights(source.representation("keras"))
        if run_as_is:
            name, kind = run_as_is[0]
            raise UnsupportedModelError(
                f"steps[{index}] ({step.type}): layer '{name}' ({kind}) has no tf-keras twin and runs as the Keras 3 "
                "layer itself, whose weights tensorflow-model-optimization can neither wrap nor train in a copy; "
                "quantize-only recipes (no steps, e.g. -r int8) and the weight-only targets work")


def _keras3_layers_with_weights(model) -> list[tuple[str, str]]:
    """(name, Keras 3 class) of each bridged layer that runs as the Keras 3 layer itself and holds
    weights (a keras-hub backbone, a custom layer): a copy of the model would share them."""
    from compressor.models.inspection import flat_layers

    return [(layer.name, layer.wrapped_class or type(layer._wrapped[0]).__name__) for layer in flat_layers(model)
            if getattr(layer, "_wrapped", None) and layer.weights]


def compress(model, recipe, *, data, eval_data=None, trust_model: bool = False,
             on_step: Callable[[int, str], None] | None = None, pixel_scale: str | None = None) -> CompressResult:
    """Run ``recipe`` on ``model``; return the compressed model and a record per step.

    Args:
        model: a path (any format ``load_source`` reads), a source, or an in-memory Keras
            3 / tf-keras model. A step that fine-tunes needs a Keras model; an ONNX
            model takes recipes without steps (quantization happens per target).
        recipe: a built-in recipe name, a YAML path, a dict or a Recipe.
        data: labelled training data for fine-tuning (any source ``load_dataset`` takes).
        eval_data: labelled held-out data; accuracy is recorded after every step.
        on_step: called with (index, step type) as each step starts (progress display).
        pixel_scale: how image-folder pixels are scaled (``compressor.data.PIXEL_SCALES``; raw 0-255 by default).

    Example:
        >>> result = compress("model.keras", "prune50-int8", data="train.npz", eval_data="test.npz")
        >>> result.steps[0].details["layer_sparsity"]
    """
    with keras_env.releasing_graphs():
        return _compress(model, recipe, data, eval_data, trust_model, on_step, pixel_scale)


def _compress(model, recipe, data, eval_data, trust_model, on_step, pixel_scale) -> CompressResult:
    recipe = load_recipe(recipe)
    source = load_source(model, trust_model=trust_model)
    check_steps_fit(recipe, source)
    shape = source.data_spec()[0]
    train = load_dataset(data, input_shape=shape, pixel_scale=pixel_scale)
    train.check_fits(source)
    test = load_dataset(eval_data, input_shape=shape, pixel_scale=pixel_scale) if eval_data is not None else None
    if test is not None:
        test.check_fits(source)
    return run_steps(source, recipe, train, test, trust_model=trust_model, on_step=on_step)


def run_steps(source, recipe: Recipe, train, test, *, trust_model: bool = False, on_step=None) -> CompressResult:
    """The recipe's steps on ``source`` with data already checked to fit it (the job's preflight
    did; :func:`compress` checks first)."""
    keras_env.set_seed(recipe.seed)
    baseline = _record("baseline", {}, source, test, 0.0, {})
    records = []
    for index, step in enumerate(recipe.steps):
        if on_step:
            on_step(index, step.type)
        start = time.perf_counter()
        context = StepContext(train, test, recipe.fine_tune_for(step), recipe.seed, trust_model)
        model, details = get_step(step.type).run(source.representation("keras"), step, context)
        source = as_source(model)
        config = recipe.to_dict()["steps"][index]
        records.append(_record(step.type, config, source, test, time.perf_counter() - start, details))
    return CompressResult(source, recipe, baseline, records)
