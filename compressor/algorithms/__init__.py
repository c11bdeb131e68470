"""Compression steps: one module per algorithm, each registering its step (see :mod:`.step`).

Each takes a tf-keras model and returns one, with a record of what it did; none knows
any runtime. A new step is one module here that calls ``register_step``: every module of
this package is imported (like the runtimes in ``targets/runtimes/``).
"""

import importlib
import pkgutil

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


def _discover() -> None:
    """Import every module of this package: importing one registers its step."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()

__all__ = ["STEPS", "FineTune", "Step", "StepConfig", "StepContext", "fine_tuning", "get_step", "register_step"]
