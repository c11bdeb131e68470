"""Compression steps: one module per algorithm, each registering its step (see :mod:`.step`).

Each takes a tf-keras model and returns one, with a record of what it did; none knows
any runtime.
"""

from compressor.algorithms.step import (
    STEPS,
    FineTune,
    Step,
    StepConfig,
    StepContext,
    fine_tuning,
    get_step,
    register_step,
)

# importing a module registers its step
from compressor.algorithms import pruning, structured, clustering, qat, distillation  # noqa: E402,F401  isort: skip

__all__ = ["STEPS", "FineTune", "Step", "StepConfig", "StepContext", "fine_tuning", "get_step", "register_step"]
