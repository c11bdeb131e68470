"""The user's own Keras classes (custom layers, activations): the Python files or modules that
define and register them, imported before a model that names them is loaded.

Importing them runs their code, so it goes with ``--trust-model``. The list is kept in the
environment, so that the processes the toolkit starts (benchmark workers) import the same.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from compressor.errors import BadInputError, one_line

ENV = "COMPRESSOR_CUSTOM_CODE"


def _import(entry: str) -> None:
    path = Path(entry)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise BadInputError(f"{entry}: custom code file not found")
            name = f"compressor_custom_{path.stem}"
            if name in sys.modules:
                return
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(entry)
    except BadInputError:
        raise
    except Exception as exc:
        sys.modules.pop(f"compressor_custom_{path.stem}", None)
        raise BadInputError(f"{entry}: cannot import custom code ({type(exc).__name__}: {one_line(exc)})") from None


def load(entries) -> None:
    """Import each entry (a ``.py`` file or a module name) and remember them for child processes."""
    entries = [str(Path(e).resolve()) if str(e).endswith(".py") else str(e) for e in entries]
    for entry in entries:
        _import(entry)
    known = [e for e in os.environ.get(ENV, "").split(os.pathsep) if e]
    os.environ[ENV] = os.pathsep.join(dict.fromkeys(known + entries))


def load_from_environment() -> None:
    """In a child process: import what the parent imported."""
    for entry in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        _import(entry)
