"""The rows and lines every report shows, from the results document alone: the main table, the
budget, the search's tries, the sensitive layers, per-output and per-head figures, what to ship,
and the notes under the table."""

from __future__ import annotations

from compressor.metrics.loss import loss_text, row_within, task_texts


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table_rows(doc: dict) -> list[dict]:
    """One flat row per measured model, in the order shown everywhere."""
    rows = []
    for r in doc["results"]:
        rows.append({
            "target": r["name"], "kind": r.get("kind", "artifact"), "runtime": r["runtime"],
            "precision": r["precision"],
            "size_bytes": r["size"].get("bytes"), "gzip_bytes": r["size"].get("gzip_bytes"),
            "p50_ms": r["latency"]["p50_ms"], "p90_ms": r["latency"]["p90_ms"], "p99_ms": r["latency"]["p99_ms"],
            "throughput_per_s": r["latency"]["throughput_per_s"],
            "speedup_vs_float": r.get("speedup_vs_reference"),
            "speedup_vs_runtime_fp32": r.get("speedup_vs_runtime_fp32"),
            "top1": r["accuracy"].get("top1"), "top1_drop_pp": r["accuracy_drop_pp"].get("top1"),
            "agreement": r["fidelity"].get("agreement"),
            "snr_db": r.get("worst_snr_db"),
            "peak_memory_mb": r["memory"].get("peak_above_baseline_mb"),
            "device_class": r.get("device_class"), "cpu_class": r.get("cpu_class"),
            "gops": (r.get("roofline") or {}).get("gops"),
            "peak_fraction": (r.get("roofline") or {}).get("fraction"),
            **_task_cells(r.get("task_metric")),
        })
    return rows


def _task_cells(task: dict | None) -> dict:
    """The task metric's name, value and drop in a row (None where it has none)."""
    if not task:
        return {"task_name": None, "task_value": None, "task_drop_pp": None, "task_unit": None, "task_text": None,
                "task_drop_text": None}
    return {"task_name": task["name"], "task_value": task["value"].get(task["name"]),
            "task_drop_pp": task.get("drop_pp"), "task_unit": task.get("unit"),
            **dict(zip(("task_text", "task_drop_text"), task_texts(task)))}


NOISE_Z = 1.96  # the 95 % interval of a proportion


BUDGET_PP = 1.0  # top-1 points an artifact may lose and still be recommended


MIN_SNR_DB = 30.0  # without class scores: the SNR (worst judged output) an artifact must keep to be recommended


OFF_DEVICE = {  # device classes whose artifacts this host measures without their hardware
    "microcontroller": "on this host with TFLite Micro's reference kernels, not on a microcontroller",
    "Edge TPU": "on this host's CPU, not on an Edge TPU",
    "mobile GPU": "on this host's CPU (float32 compute from fp16 weights), not on a mobile GPU",
    "Intel GPU": "on this host's CPU, not on an Intel GPU",
}


def noise_pp(doc: dict) -> float | None:
    """Half-width, in top-1 points, of the 95 % interval of the reference's top-1 on this many
    samples: accuracy differences below it are sampling noise, not gains or losses."""
    reference = next((r for r in doc["results"] if r["name"] == doc.get("reference")), None)
    top1 = None if reference is None else reference["accuracy"].get("top1")
    samples = doc["dataset"].get("samples") or 0
    if top1 is None or not samples:
        return None
    return 100 * NOISE_Z * (max(top1 * (1 - top1), 0.25 / samples) / samples) ** 0.5


def _drop_text(row: dict, noise: float | None) -> str:
    if row.get("task_name") is not None:
        return row["task_drop_text"]
    drop = row["top1_drop_pp"]
    if drop is None:
        return "-"
    return f"≈{drop:+.2f}" if noise is not None and abs(drop) < noise else f"{drop:+.2f}"


def _within(r: dict, budget: float, min_snr_db: float) -> bool:
    """A row within the budget: its task metric's drop, its top-1 drop, its top-1 disagreement, or
    its SNR (the export's predicate, ``compressor.metrics.loss``); a row with none of them is not."""
    drop = r["task_drop_pp"] if r.get("task_drop_pp") is not None else r["top1_drop_pp"]
    if drop is None and r["agreement"] is None and r["snr_db"] is None:
        return False
    return row_within(drop, r["agreement"], r["snr_db"], budget, min_snr_db)


def _loss_order(r: dict) -> tuple:
    """Least loss first (a task metric's drop, top-1 drop, or the highest SNR), then the fastest."""
    drop = r.get("task_drop_pp") if r.get("task_drop_pp") is not None else r["top1_drop_pp"]
    return (round(drop, 6) if drop is not None else -r["snr_db"] if r["snr_db"] is not None else 1e9, r["p50_ms"])


def recommendations(doc: dict, budget_pp: float | None = None) -> list[str]:
    """Per device class, the artifact to ship: the fastest within the accuracy budget (ties
    within 3 % of the fastest go to the smaller file), with why, in one line each."""
    budget = doc.get("budget_pp", BUDGET_PP) if budget_pp is None else budget_pp
    rows = [r for r in table_rows(doc) if r["device_class"]]
    lines = []
    for device in dict.fromkeys(r["device_class"] for r in rows):
        candidates = [r for r in rows if r["device_class"] == device]
        fit = [r for r in candidates if _within(r, budget, doc.get("min_snr_db", MIN_SNR_DB))]
        where = f"; latency measured {OFF_DEVICE[device]}" if device in OFF_DEVICE else ""
        if not fit:  # the least loss, and the fastest artifact at it
            closest = min(candidates, key=_loss_order)
            loss = (f"{closest['task_drop_pp']:+.2f} {closest['task_unit']}" if closest.get("task_drop_pp") is not None
                    else f"{_fmt(closest['top1_drop_pp'], '+.2f')} pt" if closest["top1_drop_pp"] is not None or
                    closest["snr_db"] is None else f"{closest['snr_db']:.1f} dB SNR")
            lines.append(f"{device}: nothing within {budget:g} pt of the float model; closest {closest['target']} "
                         f"({loss}, the fastest at that loss){where}")
            continue
        fastest = min(r["p50_ms"] for r in fit)
        best = min((r for r in fit if r["p50_ms"] <= fastest * 1.03), key=lambda r: (r["size_bytes"] or 0))
        speed = f", {best['speedup_vs_float']:.2f}× the float model" if best["speedup_vs_float"] else ""
        drop = (f"{best['task_drop_pp']:+.2f} {best['task_unit']}" if best.get("task_drop_pp") is not None
                else f"{_fmt(best['top1_drop_pp'], '+.2f')} pt top-1" if best["top1_drop_pp"] is not None
                else f"{best['agreement']:.1%} agreement" if best["agreement"] is not None
                else f"{_fmt(best['snr_db'], '.1f')} dB SNR on its worst output")
        limit = f"{budget:g} {best['task_unit']}" if best.get("task_drop_pp") is not None else \
            f"{budget:g} pt" if best["top1_drop_pp"] is not None or best["agreement"] is not None else \
            f"{doc.get('min_snr_db', MIN_SNR_DB):g} dB SNR"
        lines.append(f"{device}: ship {best['target']}: fastest within {limit} ({best['p50_ms']:.3f} ms{speed}, "
                     f"{drop}, {(best['size_bytes'] or 0) / 1024:,.1f} KiB){where}")
    return lines


def report_title(doc: dict) -> str:
    return f"Benchmark report: {doc['title']}" if doc.get("title") else "Benchmark report"


REFUSED_COLUMNS = ("target", "exit", "reason")


def refused_rows(doc: dict) -> list[list[str]]:
    return [[r["target"], str(r["exit_code"]), r["reason"]] for r in doc.get("refused") or []]


MD_COLUMNS = ("target", "precision", "size", "gzip", "p50 ms", "p90 ms", "p99 ms", "inf/s", "× float",
              "× runtime fp32", "top-1", "drop pp", "agreement", "memory MB", "GOP/s", "% peak")


def md_cells(row: dict, noise: float | None = None, host_class: str | None = None) -> list[str]:
    kb = lambda b: "-" if b is None else f"{b / 1024:,.1f} KiB"  # noqa: E731
    name = row["target"] + (" †" if row.get("device_class") in OFF_DEVICE else "") + (
        " ‡" if row.get("cpu_class") and host_class and row["cpu_class"] != host_class else "")
    return [name, row["precision"], kb(row["size_bytes"]), kb(row["gzip_bytes"]),
            _fmt(row["p50_ms"], ".3f"), _fmt(row["p90_ms"], ".3f"), _fmt(row["p99_ms"], ".3f"),
            _fmt(row["throughput_per_s"], ",.0f"), _fmt(row["speedup_vs_float"], ".2f", "×"),
            _fmt(row["speedup_vs_runtime_fp32"], ".2f", "×"),
            _accuracy_text(row), _drop_text(row, noise), _agreement_text(row),
            _fmt(row["peak_memory_mb"], ".1f"), _fmt(row.get("gops"), ".1f"),
            _fmt(None if row.get("peak_fraction") is None else row["peak_fraction"] * 100, ".0f", " %")]


def _accuracy_text(row: dict) -> str:
    """Top-1, or the task metric the export was judged by (``mAP 45.10``, ``cer 3.20``)."""
    if row.get("task_name") is not None:
        return row["task_text"]
    return _fmt(None if row["top1"] is None else row["top1"] * 100, ".2f", " %")


def _agreement_text(row: dict) -> str:
    """Top-1 agreement with the float model; without class scores, the SNR of the worst output
    that computes something (pass-through outputs left out)."""
    if row["agreement"] is not None:
        return f"{row['agreement'] * 100:.1f} %"
    return "-" if row.get("snr_db") is None or row["kind"] == "source" else f"{row['snr_db']:.1f} dB SNR"


def machine_line(doc: dict) -> str:
    m, c = doc["machine"], doc["config"]
    cpu_class = f"class {m['cpu_class']}; " if m.get("cpu_class") else ""
    return (f"{m['cpu']} ({cpu_class}{m['cores']} cores; {', '.join(m['flags']) or 'no SIMD flags read'}; int8 dot "
            f"product: {'yes' if m['int8_dot_product'] else 'no'}), batch {c['batch']}, {c['threads']} thread(s), "
            f"{c['rounds']} interleaved round(s) of ≥ {c['min_runs']} runs and ≥ {c['min_seconds']} s; "
            f"data: {doc['dataset']['name']} ({doc['dataset']['samples']} samples); "
            f"reference: {doc['reference']}")


OUTPUT_COLUMNS = ("target", "output", "top-1 agreement", "SNR dB", "cosine", "max abs diff")


def output_rows(doc: dict) -> list[list[str]]:
    """Export parity per output, for models with several outputs (class scores by agreement, others by SNR)."""
    rows = []
    for r in doc["results"]:
        outputs = r.get("parity_outputs") or []
        if len(outputs) < 2:
            continue
        for o in outputs:
            if o.get("passthrough"):  # no computation to judge: its equality was checked at export
                rows.append([r["name"], o["name"], f"pass-through ({o['passthrough']}), equal", "-", "-",
                             _fmt(o["max_abs"], ".3g")])
                continue
            rows.append([r["name"], o["name"], _fmt(None if o["agreement"] is None else o["agreement"] * 100, ".1f",
                                                    " %"), _fmt(o["snr_db"], ".1f"), _fmt(o["cosine"], ".4f"),
                         _fmt(o["max_abs"], ".3g")])
    return rows


BUDGET_COLUMNS = ("target", "budget", "full int8", "layers in float", "at export", "candidates measured", "search s")


def budget_rows(doc: dict) -> list[list[str]]:
    """Per quantized artifact: the accuracy budget, what full int8 lost, and what was kept in float."""
    rows = []
    for r in doc["results"]:
        budget = r.get("budget")
        if not budget:
            continue
        found = budget.get("recovery") or {}
        layers = found.get("float_nodes") or []
        snr_floor = budget.get("min_snr_db")
        limit = f"{budget['max_drop_pp']:g} pt" if snr_floor is None else f"≥ {snr_floor:g} dB"
        if found.get("full_int8_drop_pp") is not None or found.get("full_int8_snr_db") is not None:
            full = loss_text(found.get("full_int8_drop_pp"), found.get("full_int8_snr_db"))
        else:
            full = "refused (parity floor)" if found else loss_text(budget.get("drop_pp"), budget.get("snr_db"))
        rows.append([r["name"], limit, full,
                     f"{len(layers)}: " + ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "") if layers
                     else "0 (full int8 met it)", loss_text(budget.get("drop_pp"), budget.get("snr_db")),
                     str(found.get("candidates", "-")), _fmt(found.get("seconds"), ".0f")])
    return rows


TRIED_COLUMNS = ("target", "layers in float", "loss", "agreement", "p50 ms", "vs full int8")


TRIED_TITLE = ("Budget search: each number of layers tried in float (whole validation set; p50 on one sample, "
               "1 thread, in the search's process; edited: from full int8 without quantizing again, before the "
               "one that holds is quantized for real)")


def tried_rows(doc: dict) -> list[list[str]]:
    """Per target whose full int8 missed the budget: full int8, then each k the search tried,
    its loss and its latency beside full int8's: what each layer kept in float costs."""
    rows = []
    for r in doc["results"]:
        found = (r.get("budget") or {}).get("recovery") or {}
        if not found.get("tried"):
            continue
        full_ms = found.get("full_int8_p50_ms")
        full_loss = loss_text(found.get("full_int8_drop_pp"), found.get("full_int8_snr_db"), missing="refused")
        rows.append([r["name"], "0 (full int8)", full_loss, "-", _fmt(full_ms, ".3f"), "1.00x" if full_ms else "-"])
        for t in found["tried"]:
            ms = t.get("p50_ms")
            k = f"{t['k']} (edited)" if t.get("edited") else str(t["k"])
            rows.append([r["name"], k, loss_text(t.get("drop_pp"), t.get("snr_db")),
                         _fmt(None if t.get("agreement") is None else t["agreement"] * 100, ".1f", " %"),
                         _fmt(ms, ".3f"), f"{ms / full_ms:.2f}x" if ms and full_ms else "-"])
    return rows


SENSITIVITY_COLUMNS = ("target", "layer", "noise vs full int8", "agreement (subset)")


TOP_SENSITIVE = 8


def sensitivity_rows(doc: dict) -> list[list[str]]:
    """The layers whose quantization cost the most, as measured: each quantized alone (every other
    layer float), its output noise as a share of full int8's, and its top-1 agreement."""
    rows = []
    for r in doc["results"]:
        found = (r.get("budget") or {}).get("recovery") or {}
        for s in [s for s in found.get("sensitivity", []) if "noise_share" in s][:TOP_SENSITIVE]:
            rows.append([r["name"], s["node"], f"{100 * s['noise_share']:.0f} %",
                         _fmt(None if s.get("agreement") is None else s["agreement"] * 100, ".1f", " %")])
    return rows


HEAD_COLUMNS = ("target", "output", "metric", "value", "drop pp")


def head_rows(doc: dict) -> list[list[str]]:
    """Accuracy of every labelled head of a multi-head model (labels y_<output>): top-1 for
    class scores, the decision at 0.5 for one sigmoid unit."""
    rows = []
    for r in doc["results"]:
        for name, record in (r.get("accuracy_per_output") or {}).items():
            for metric in ("top1", "binary"):
                if metric in record["accuracy"]:
                    rows.append([r["name"], name, metric, _fmt(record["accuracy"][metric] * 100, ".2f", " %"),
                                 _fmt(record["accuracy_drop_pp"].get(metric), "+.2f")])
    return rows


def md_table(title: str, columns, rows) -> str:
    return (f"\n{title}:\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
            + "".join("| " + " | ".join(cells) + " |\n" for cells in rows))


SLOWER_MARGIN = 0.97  # below this x runtime fp32, an int8 artifact is slower than its fp32 (not noise)


def slower_than_fp32(doc: dict) -> list[str]:
    """One line per quantized artifact measured slower than its runtime's fp32, with why."""
    host_class, dot_product = doc["machine"].get("cpu_class") or "unknown", doc["machine"].get("int8_dot_product")
    lines = []
    for r in doc["results"]:
        ratio = r.get("speedup_vs_runtime_fp32")
        if r["precision"] in ("fp32", "fp16") or ratio is None or ratio >= SLOWER_MARGIN:
            continue
        why = r.get("speed_caveat") or (
            f"this host's CPU class ({host_class}) has no int8 dot product: int8 pairs are summed in int16, "
            "which costs what int8 saves" if dot_product is False
            else f"not this host's class ({host_class}, which has an int8 dot "
            "product): on small layers the quantize and dequantize steps around each op can cost more than the "
            "int8 arithmetic saves")
        lines.append(f"{r['name']} is slower than its runtime's fp32 here ({ratio:.2f}×): {why}.")
    return lines


def table_notes(doc: dict) -> list[str]:
    """The lines under the table: how to read it, what is noise, what was not measured on its device."""
    notes = [f"{machine_line(doc)}. Latency: median over rounds of each round's percentile. "
             "× float: the reference's p50 / this p50; × runtime fp32: the same runtime's fp32 artifact's p50 / "
             "this p50 (above 1 = faster). drop pp: top-1 points lost against the reference."]
    noise = noise_pp(doc)
    if noise is not None:
        notes.append(f"95 % interval of a top-1 on {doc['dataset']['samples']} samples: ±{noise:.2f} pt; "
                     "≈ marks a drop (or gain) within it: sampling noise, not a difference.")
    off = sorted({r["device_class"] for r in table_rows(doc)} & set(OFF_DEVICE))
    if off:
        notes.append("† latency measured " + "; ".join(f"{d}: {OFF_DEVICE[d]}" for d in off) + ".")
    host_class = doc["machine"].get("cpu_class")
    elsewhere = sorted({r["cpu_class"] for r in table_rows(doc) if r["cpu_class"] and host_class
                        and r["cpu_class"] != host_class})
    if elsewhere:
        notes.append(f"‡ built for CPU class {', '.join(elsewhere)} but measured on this host's class {host_class}: "
                     "its settings are right for its class, its latency here is not that class's.")
    notes += slower_than_fp32(doc)
    roof = doc["machine"].get("peak")
    if roof:
        notes.append("GOP/s: 2 × MACs × batch / p50; % peak: of this host's ceiling for the artifact's arithmetic "
                     f"(integer kernels: int8; others: fp32): {roof['formula']}.")
    return notes


BUDGET_TITLE = "Accuracy budget (int8 targets; drops measured at export on the validation samples)"


SENSITIVITY_TITLE = ("Layers that cost accuracy (each quantized alone, every other layer float: its output noise "
                     "against the float model as a share of full int8's)")

