"""Reports from one results document: JSON, CSV, Markdown, and self-contained HTML with plots.

Every format is generated from the results JSON alone, so ``compressor report`` can
regenerate any of them later. A report format is one module of this package that registers
its writer with ``@writer(name, filename)``: the package imports every module in it. The rows
and lines every format shows are in :mod:`.tables`, the figures in :mod:`.figures`.
"""

from __future__ import annotations

import importlib
import pkgutil

from pathlib import Path
from typing import Callable

from compressor import atomic
from compressor.errors import BadInputError


WRITERS: dict[str, tuple[str, Callable[[dict], str]]] = {}


def writer(name: str, filename: str):
    def register(func: Callable[[dict], str]):
        WRITERS[name] = (filename, func)
        return func

    return register


def render(doc: dict, fmt: str) -> str:
    if fmt not in WRITERS:
        raise BadInputError(f"unknown report format '{fmt}' (valid: {', '.join(WRITERS)})")
    return WRITERS[fmt][1](doc)


def write_reports(doc: dict, out_dir: str | Path, formats=None) -> dict[str, Path]:
    """Write each format (default: every registered one) to ``out_dir`` atomically; return {format: path}."""
    written = {}
    for fmt in formats or tuple(WRITERS):
        text = render(doc, fmt)
        written[fmt] = atomic.write_text(Path(out_dir) / WRITERS[fmt][0], text)
    return written


def _discover() -> None:
    """Import every module of this package: a format module registers its writer."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()

from benchmarks.reports.figures import accuracy_latency_figure, sensitivity_figure  # noqa: E402
from benchmarks.reports.markdown import to_markdown  # noqa: E402
from benchmarks.reports.tables import (MD_COLUMNS, machine_line, md_cells, noise_pp,  # noqa: E402
                                       recommendations, slower_than_fp32, table_rows)

__all__ = ["MD_COLUMNS", "WRITERS", "accuracy_latency_figure", "machine_line", "md_cells", "noise_pp",
           "recommendations", "render", "sensitivity_figure", "slower_than_fp32", "table_rows", "to_markdown",
           "write_reports", "writer"]
