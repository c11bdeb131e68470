"""``compress``: run a recipe's steps on a model, recording what each step did.

The pipeline and the CLI are the only places that know compressor, targets and
benchmarks together; each algorithm module knows only tf-keras models and data.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from compressor import keras_env, training
from compressor.data import Dataset, load_dataset
from compressor.inspection import inspect_model
from compressor.recipes import Recipe, StepConfig, load_recipe


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
    model: object  # the compressed tf-keras model
    recipe: Recipe
    baseline: StepRecord
    steps: list[StepRecord]

    def to_dict(self) -> dict:
        return {"recipe": self.recipe.to_dict(), "baseline": asdict(self.baseline),
                "steps": [asdict(s) for s in self.steps]}


@dataclass(frozen=True)
class StepContext:
    data: Dataset
    eval_data: Dataset | None
    recipe: Recipe
    trust_model: bool


StepRunner = Callable[[object, StepConfig, StepContext], tuple[object, dict]]
STEP_RUNNERS: dict[str, StepRunner] = {}


def step_runner(step_type: str):
    def register(func: StepRunner) -> StepRunner:
        STEP_RUNNERS[step_type] = func
        return func

    return register


def _fine_tuning_step(step_type: str, module: str, function: str) -> None:
    """Register a step whose algorithm fine-tunes as it goes: every one takes the same arguments."""

    def run(model, step, ctx):
        algorithm = getattr(importlib.import_module(f"compressor.{module}"), function)
        return algorithm(model, ctx.data, step, ctx.recipe.fine_tune_for(step), seed=ctx.recipe.seed,
                         trust_model=ctx.trust_model)

    step_runner(step_type)(run)


for _type, _module, _function in (("prune", "pruning", "prune_magnitude"), ("prune_nm", "pruning", "prune_nm"),
                                  ("cluster", "clustering", "cluster"), ("qat", "qat", "quantize_aware")):
    _fine_tuning_step(_type, _module, _function)


@step_runner("prune_structured")
def _prune_structured(model, step, ctx):
    from compressor import structured

    pruned, record = structured.prune_channels(model, step, trust_model=ctx.trust_model)
    record["accuracy_before_fine_tune"] = training.accuracy(pruned, ctx.eval_data)
    training.fit(pruned, ctx.data, ctx.recipe.fine_tune_for(step), seed=ctx.recipe.seed)
    return pruned, record


@step_runner("distill")
def _distill(model, step, ctx):
    from compressor import distillation

    return distillation.distill(model, ctx.data, step, ctx.recipe.fine_tune_for(step), seed=ctx.recipe.seed,
                                eval_data=ctx.eval_data, trust_model=ctx.trust_model)


def _record(kind: str, config: dict, model, eval_data, seconds: float, details: dict) -> StepRecord:
    report = inspect_model(model)
    return StepRecord(kind, config, seconds, report.params, report.macs, report.sparsity,
                      training.accuracy(model, eval_data), details)


def compress(model, recipe, *, data, eval_data=None, trust_model: bool = False,
             on_step: Callable[[int, str], None] | None = None) -> CompressResult:
    """Run ``recipe`` on ``model``; return the compressed model and a record per step.

    Args:
        model: a path or an in-memory Keras 3 / tf-keras model.
        recipe: a built-in recipe name, a YAML path, a dict or a Recipe.
        data: labelled training data for fine-tuning (any source ``load_dataset`` takes).
        eval_data: labelled held-out data; accuracy is recorded after every step.
        on_step: called with (index, step type) as each step starts (progress display).

    Example:
        >>> result = compress("model.keras", "prune50-int8", data="train.npz", eval_data="test.npz")
        >>> result.steps[0].details["layer_sparsity"]
    """
    with keras_env.releasing_graphs():
        return _compress(model, recipe, data, eval_data, trust_model, on_step)


def _compress(model, recipe, data, eval_data, trust_model, on_step) -> CompressResult:
    from compressor.loading import load_model

    recipe = load_recipe(recipe)
    model = load_model(model, trust_model=trust_model)
    shape = tuple(model.inputs[0].shape)[1:]
    train = load_dataset(data, input_shape=shape)
    train.check_fits(model)
    test = load_dataset(eval_data, input_shape=shape) if eval_data is not None else None
    if test is not None:
        test.check_fits(model)
    keras_env.set_seed(recipe.seed)
    context = StepContext(train, test, recipe, trust_model)
    baseline = _record("baseline", {}, model, test, 0.0, {})
    records = []
    for index, step in enumerate(recipe.steps):
        if on_step:
            on_step(index, step.type)
        start = time.perf_counter()
        model, details = STEP_RUNNERS[step.type](model, step, context)
        config = recipe.to_dict()["steps"][index]
        records.append(_record(step.type, config, model, test, time.perf_counter() - start, details))
    return CompressResult(model, recipe, baseline, records)
