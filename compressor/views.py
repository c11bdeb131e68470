"""Terminal rendering of reports with rich (plain text when output is not a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    # Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def print_model_report(report, targets: dict[str, str | None]) -> None:
    console = _console()
    console.print(f"[bold]{report.name}[/bold]")
    for label, specs in (("input", report.inputs), ("output", report.outputs)):
        for spec in specs:
            console.print(f"  {label}: {spec.name} {_shape(spec.shape)} {spec.dtype}")
    table = Table(title="Layers")
    for column in ("layer", "type", "output shape", "params", "MACs", "sparsity"):
        table.add_column(column, justify="right" if column in ("params", "MACs", "sparsity") else "left")
    for layer in report.layers:
        table.add_row(layer.name, layer.type, _shape(layer.output_shape), f"{layer.params:,}", f"{layer.macs:,}",
                      f"{layer.sparsity:.1%}" if layer.kernel_elements else "-")
    table.add_row("total", "", "", f"{report.params:,}", f"{report.macs:,}", f"{report.sparsity:.1%}",
                  style="bold")
    console.print(table)
    targets_table = Table(title="Targets that can take this model")
    targets_table.add_column("target")
    targets_table.add_column("verdict")
    for name, reason in targets.items():
        targets_table.add_row(name, "yes" if reason is None else f"no: {reason}")
    console.print(targets_table)


def print_targets(profiles) -> None:
    table = Table(title="Target profiles")
    for column in ("name", "runtime", "precision", "I/O", "hardware", "description"):
        table.add_column(column)
    for p in profiles:
        table.add_row(p.name, p.runtime, p.precision, f"{p.input_type}/{p.output_type}", p.hardware, p.description)
    _console().print(table)


def print_exports(results) -> None:
    table = Table(title="Exported artifacts (parity checked on validation samples)")
    for column in ("target", "precision", "size", "gzip", "max abs diff", "top-1 agreement", "folder"):
        table.add_column(column)
    for result in results:
        m = result.manifest
        agreement = m["parity"]["agreement"]
        table.add_row(m["target"], m["precision"], f"{m['size']['bytes']:,} B", f"{m['size']['gzip_bytes']:,} B",
                      f"{m['parity']['max_abs']:.2g}", "-" if agreement is None else f"{agreement:.1%}",
                      str(result.folder))
    _console().print(table)


def print_benchmark(doc: dict) -> None:
    from benchmarks.reports import MD_COLUMNS, _md_cells, table_rows

    table = Table(title="Benchmark (median over interleaved rounds)")
    for column in MD_COLUMNS:
        table.add_column(column, justify="left" if column in ("target", "precision") else "right")
    for row in table_rows(doc):
        table.add_row(*_md_cells(row))
    _console().print(table)
