"""The step registry: each algorithm module registers its step type with its config class.

A step is one call signature, ``run(model, config, context) -> (model, record)``; the
recipe parser reads the config classes from here and the pipeline the runners, so a new
step is one module that calls :func:`register_step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

from compressor.data import Dataset
from compressor.errors import BadInputError


@dataclass(frozen=True)
class FineTune:
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-4

    def check(self, where: str) -> None:
        positive(where, "epochs", self.epochs, allow_zero=True)
        positive(where, "batch_size", self.batch_size)
        positive(where, "learning_rate", self.learning_rate)


@dataclass(frozen=True)
class StepConfig:
    type: ClassVar[str] = ""
    exclude: tuple[str, ...] = ()  # layer names or layer types left alone
    fine_tune: FineTune | None = None  # None: the recipe's fine_tune

    def check(self, where: str) -> None:
        if self.fine_tune is not None:
            self.fine_tune.check(f"{where}.fine_tune")


def positive(where: str, key: str, value, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise BadInputError(f"{where}.{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def fraction(where: str, key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise BadInputError(f"{where}.{key}: must be between 0 and 1 (exclusive), got {value}")


@dataclass(frozen=True)
class StepContext:
    """What every step gets besides the model and its own config."""

    data: Dataset
    eval_data: Dataset | None
    fine_tune: FineTune  # the step's own, or the recipe's
    seed: int
    trust_model: bool


StepRun = Callable[[object, StepConfig, StepContext], tuple[object, dict]]


@dataclass(frozen=True)
class Step:
    config: type[StepConfig]
    run: StepRun
    position: Literal["any", "first", "last"] = "any"
    why_position: str = ""  # shown when a recipe puts the step elsewhere
    trains: bool = True  # fine-tunes a Keras model on labelled data

    @property
    def type(self) -> str:
        return self.config.type


STEPS: dict[str, Step] = {}


def register_step(config: type[StepConfig], *, position: str = "any", why_position: str = "", trains: bool = True):
    """Register ``config.type``: decorates its runner (``run(model, config, context)``)."""

    def register(run: StepRun) -> StepRun:
        if config.type in STEPS:
            raise ValueError(f"step type '{config.type}' is registered twice")
        STEPS[config.type] = Step(config, run, position, why_position, trains)
        return run

    return register


def fine_tuning(algorithm) -> StepRun:
    """The runner of an algorithm called as ``algorithm(model, data, config, fine_tune, *, seed, trust_model)``."""

    def run(model, config: StepConfig, ctx: StepContext):
        return algorithm(model, ctx.data, config, ctx.fine_tune, seed=ctx.seed, trust_model=ctx.trust_model)

    return run


def get_step(step_type: str) -> Step:
    if step_type not in STEPS:
        raise BadInputError(f"unknown step type '{step_type}' (valid: {', '.join(sorted(STEPS))})")
    return STEPS[step_type]
