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


def print_cpu_classes(classes, profiles, host_class: str) -> None:
    """Each CPU class, and the settings the profiles choose for it (--cpu-class)."""
    table = Table(title="CPU classes (--cpu-class; default: this host's)")
    for column in ("class", "int8 dot product", "description", "settings chosen for it"):
        table.add_column(column)
    for c in classes:
        settings = [f"{p.name}: " + ", ".join(f"{k}={v}" for k, v in p.for_cpu(c.name).options.items())
                    for p in profiles if p.cpu_options]
        table.add_row(c.name + (" (this host)" if c.name == host_class else ""), "yes" if c.int8_dot_product else "no",
                      c.description, "; ".join(settings))
    _console().print(table)


def print_exports(results) -> None:
    table = Table(title="Exported artifacts (parity checked on validation samples)")
    for column in ("target", "precision", "size", "gzip", "max abs diff", "top-1 agreement", "bound", "folder"):
        table.add_column(column)
    for result in results:
        m = result.manifest
        agreement = m["parity"]["agreement"]
        table.add_row(m["target"], m["precision"], f"{m['size']['bytes']:,} B", f"{m['size']['gzip_bytes']:,} B",
                      f"{m['parity']['max_abs']:.2g}", "-" if agreement is None else f"{agreement:.1%}",
                      _parity_bound(m["parity"]), str(result.folder))
    _console().print(table)


def _parity_bound(parity: dict) -> str:
    """The bound the artifact was held to: the float tolerance, top-1 agreement where an output
    holds class scores, else the SNR floor (the task metric's floor of broken conversions)."""
    bounds = [f"diff <= {parity['tolerance']:.2g}"] if parity.get("tolerance") is not None else []
    if parity.get("min_agreement") is not None and parity.get("agreement") is not None:
        bounds.append(f"agreement >= {parity['min_agreement']:.0%}")
    elif parity.get("min_snr_db") is not None:
        bounds.append(f"SNR >= {parity['min_snr_db']:g} dB")
    by = {"user": " (user)", "task metric": " (task metric)"}.get(parity.get("rule_set_by"), "")
    return ", ".join(bounds) + by


def print_benchmark(doc: dict) -> None:
    from benchmarks.reports import MD_COLUMNS, md_cells, table_rows

    table = Table(title="Benchmark (median over interleaved rounds)")
    for column in MD_COLUMNS:
        table.add_column(column, justify="left" if column in ("target", "precision") else "right")
    for row in table_rows(doc):
        table.add_row(*md_cells(row, host_class=doc["machine"].get("cpu_class")))
    _console().print(table)


def print_recipes(recipes) -> None:
    table = Table(title="Built-in recipes")
    for column in ("name", "steps", "targets", "description"):
        table.add_column(column)
    for r in recipes:
        steps = " → ".join(step.type for step in r.steps) or "(none)"
        table.add_row(r.name, steps, ", ".join(r.targets), r.description)
    _console().print(table)


def _top1(accuracy: dict) -> str:
    """Top-1 when labels measured it; never a made-up 0 % for unlabelled data or outputs without classes."""
    return "not measured" if accuracy.get("top1") is None else f"{accuracy['top1']:.2%}"


def _accuracy(row: dict) -> str:
    """The task metric the export was judged by, else top-1."""
    if row.get("task_metric"):
        from compressor.metrics.loss import task_texts

        return task_texts(row["task_metric"])[0]
    return _top1(row["accuracy"])


def _drop(row: dict) -> str:
    """The task metric's points lost, else top-1 points lost; without class scores, the SNR of
    the worst output that computes something."""
    if row.get("task_metric"):
        from compressor.metrics.loss import task_texts

        return task_texts(row["task_metric"])[1]
    drops, snr = row["accuracy_drop_pp"], row.get("worst_snr_db")
    if drops.get("top1") is not None:
        return f"{drops['top1']:+.2f}"
    return f"{snr:.1f} dB SNR" if snr is not None and "agreement" not in (row.get("fidelity") or {}) else "-"


def print_run(outcome) -> None:
    """The summary at the end of a run: one row per requested target."""
    console = _console()
    compression = outcome.compression or {}
    base = compression.get("baseline") or {}
    for step in compression.get("steps", []):
        acc = "-" if step["accuracy"] is None else f"{step['accuracy']:.2%}"
        console.print(f"step {step['type']}: params {base.get('params', 0):,} → {step['params']:,}, "
                      f"MACs {base.get('macs', 0):,} → {step['macs']:,}, sparsity {step['sparsity']:.1%}, "
                      f"accuracy {acc}")
        for note in (step.get("details") or {}).get("notes", []):
            console.print(f"  note: {note}")
    rows = {r["name"]: r for r in (outcome.results or {}).get("results", [])}
    table = Table(title=f"Summary ({outcome.out_dir})")
    judged = next((r["task_metric"] for r in rows.values() if r.get("task_metric")), None)
    for column in ("target", "precision", "size", "p50 ms", "× float", "top-1" if judged is None else "metric",
                   "drop pp", "status"):
        table.add_column(column, justify="left" if column in ("target", "precision", "status") else "right")
    reference = next((r for r in rows.values() if r["kind"] == "source"), None)
    if reference:
        size = reference["size"]["bytes"]
        table.add_row(reference["name"], "fp32", "-" if size is None else f"{size / 1024:,.1f} KiB",
                      f"{reference['latency']['p50_ms']:.3f}", "1.00×",
                      _accuracy(reference), "-", "source")
    for result in outcome.exported:
        row = rows.get(result.target)
        if row is None:
            continue
        table.add_row(result.target, row["precision"], f"{row['size']['bytes'] / 1024:,.1f} KiB",
                      f"{row['latency']['p50_ms']:.3f}", f"{row['speedup_vs_reference'] or 0:.2f}×",
                      _accuracy(row), _drop(row), "ok")
    for failure in outcome.failed:
        bug = " (a bug: please report it with errors.log)" if failure.traceback else ""
        table.add_row(failure.target, "-", "-", "-", "-", "-", "-",
                      f"failed (exit {failure.exit_code}): {failure.message}{bug}")
    console.print(table)


def print_artifact(described: dict) -> None:
    """An exported artifact: what it is, its parity, its ops and the types they compute in."""
    console = _console()
    head = [f"{described['artifact']}: {described.get('target') or described['runtime']}"]
    if described.get("precision"):
        head.append(f"precision {described['precision']}")
    if described.get("cpu_class"):
        head.append(f"settings for CPU class {described['cpu_class']}")
    head.append(f"{described['size']['bytes']:,} bytes")
    console.print(", ".join(head))
    parity = described.get("parity")
    if parity:
        quality = (f"agreement {parity['agreement']:.1%}" if parity.get("agreement") is not None
                   else f"SNR {parity['snr_db']:.1f} dB" if parity.get("snr_db") is not None else "")
        console.print(f"parity: {'passed' if parity['passed'] else 'FAILED'} on {parity['samples']} samples, "
                      f"max abs {parity['max_abs']:.3g}{', ' + quality if quality else ''}")
    for kind in ("inputs", "outputs"):
        for tensor in described.get(kind, []):
            quant = f", scale {tensor['scale']:.4g} zero point {tensor['zero_point']}" if tensor.get("scale") else ""
            console.print(f"{kind[:-1]} {tensor['name']}: {tensor['dtype']} {tensor['shape']}{quant}")
    table = Table(title="Ops")
    for column in ("op", "count", "types"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for name, op in described.get("ops", {}).items():
        table.add_row(name, str(op["count"]), ", ".join(op.get("dtypes") or []))
    console.print(table)
    if described.get("constants"):
        console.print("weights/constants by type: " + ", ".join(f"{k} {v}" for k, v in described["constants"].items()))


def print_search(record: dict) -> None:
    """Every candidate of a search, and the one chosen per target."""
    table = Table(title=f"Search candidates (budget {record['config']['max_drop']:g} pt, objective "
                        f"{record['config']['objective']})")
    for column in ("target", "recipe", "drop pp", "p50 ms", "size", "layers in float", "within budget", "chosen"):
        table.add_column(column)
    for c in sorted(record["candidates"], key=lambda c: (c["target"], c["p50_ms"] or 1e9)):
        chosen = record["chosen"].get(c["target"], {}).get("folder") == c["folder"]
        table.add_row(c["target"], c["recipe"], "-" if c["drop_pp"] is None else f"{c['drop_pp']:+.2f}",
                      "-" if c["p50_ms"] is None else f"{c['p50_ms']:.3f}",
                      "-" if c["bytes"] is None else f"{c['bytes']:,} B", str(c["float_layers"]),
                      "yes" if c["within_budget"] else "no", "✓" if chosen else "")
    _console().print(table)
    for key, failure in record["refused"].items():
        _console().print(f"refused {key}: {failure['error']}")
    skipped = [t["recipe"] for t in record["trials"] if t.get("skipped")]
    if skipped:
        _console().print(f"not run (time budget): {', '.join(skipped)}")
    if not record["chosen"]:
        _console().print("Nothing met the budget on any target.")
