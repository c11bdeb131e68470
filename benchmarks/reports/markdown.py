"""The Markdown report (``report.md``)."""

from __future__ import annotations

from benchmarks.reports import writer
from benchmarks.reports.tables import (BUDGET_COLUMNS, BUDGET_TITLE, HEAD_COLUMNS, MD_COLUMNS, OUTPUT_COLUMNS,
                                       REFUSED_COLUMNS, SENSITIVITY_COLUMNS, SENSITIVITY_TITLE, TRIED_COLUMNS,
                                       TRIED_TITLE, budget_rows, head_rows, md_cells, md_table, noise_pp, output_rows,
                                       recommendations, refused_rows, report_title, sensitivity_rows, table_notes,
                                       table_rows, tried_rows)


@writer("md", "report.md")
def to_markdown(doc: dict) -> str:
    noise = noise_pp(doc)
    lines = [f"# {report_title(doc)}", ""]
    advice = recommendations(doc)
    if advice:
        lines += ["What to ship, per device class:", ""] + [f"- {line}" for line in advice] + [""]
    lines += ["| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    for row in table_rows(doc):
        lines.append("| " + " | ".join(md_cells(row, noise, doc["machine"].get("cpu_class"))) + " |")
    notes = "\n" + "\n\n".join(table_notes(doc)) + "\n"
    refused = refused_rows(doc)
    if refused:
        notes += md_table("Refused targets (nothing was written for them)", REFUSED_COLUMNS, refused)
    per_output = output_rows(doc)
    if per_output:
        notes += md_table("Parity per output (export check against the source, validation samples)",
                           OUTPUT_COLUMNS, per_output)
    per_head = head_rows(doc)
    if per_head:
        notes += md_table("Accuracy per labelled output (eval data, labels y_<output>)", HEAD_COLUMNS, per_head)
    budget = budget_rows(doc)
    if budget:
        notes += md_table(BUDGET_TITLE, BUDGET_COLUMNS, budget)
    tried = tried_rows(doc)
    if tried:
        notes += md_table(TRIED_TITLE, TRIED_COLUMNS, tried)
    sensitive = sensitivity_rows(doc)
    if sensitive:
        notes += md_table(SENSITIVITY_TITLE, SENSITIVITY_COLUMNS, sensitive)
    return "\n".join(lines) + "\n" + notes

