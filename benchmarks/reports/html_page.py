"""The self-contained HTML report (``report.html``): the tables and the figures inlined."""

from __future__ import annotations

import html

from benchmarks.reports import writer
from benchmarks.reports.figures import figure_png, accuracy_latency_figure, sensitivity_figure
from benchmarks.reports.tables import (BUDGET_COLUMNS, BUDGET_TITLE, HEAD_COLUMNS, MD_COLUMNS, OUTPUT_COLUMNS,
                                       REFUSED_COLUMNS, SENSITIVITY_COLUMNS, SENSITIVITY_TITLE, TRIED_COLUMNS,
                                       TRIED_TITLE, budget_rows, head_rows, md_cells, noise_pp, output_rows,
                                       recommendations, refused_rows, report_title, sensitivity_rows, table_notes,
                                       table_rows, tried_rows)


def _plots(doc: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(doc)
    images = []
    fig = accuracy_latency_figure(doc)
    if fig is not None:
        images.append(("Accuracy vs latency (Pareto front dashed)", figure_png(fig)))
        plt.close(fig)
    fig = sensitivity_figure(doc)
    if fig is not None:
        images.append(("Layers that cost accuracy", figure_png(fig)))
        plt.close(fig)
    sized = [r for r in rows if r["size_bytes"]]
    if sized:
        fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(sized) + 1.2))
        names = [r["target"] for r in sized]
        ax.barh(names, [r["size_bytes"] / 1024 for r in sized], color="#88ccee", label="on disk")
        ax.barh(names, [(r["gzip_bytes"] or 0) / 1024 for r in sized], color="#117733", height=0.4, label="gzip")
        ax.set_xlabel("KiB")
        ax.invert_yaxis()
        ax.legend()
        ax.set_title("Artifact size")
        images.append(("Artifact size", figure_png(fig)))
        plt.close(fig)
    return images


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
         "font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
         "td:first-child,th:first-child{text-align:left}td{white-space:nowrap}img{max-width:100%}")


@writer("html", "report.html")
def to_html(doc: dict) -> str:
    figures = "".join(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
                      f'src="data:image/png;base64,{data}"/>' for title, data in _plots(doc))
    per_output = output_rows(doc)
    if per_output:
        figures = (_html_table("Parity per output", OUTPUT_COLUMNS, per_output)) + figures
    per_head = head_rows(doc)
    if per_head:
        figures = _html_table("Accuracy per labelled output", HEAD_COLUMNS, per_head) + figures
    sensitive = sensitivity_rows(doc)
    if sensitive:
        figures = _html_table(SENSITIVITY_TITLE, SENSITIVITY_COLUMNS, sensitive) + figures
    tried = tried_rows(doc)
    if tried:
        figures = _html_table(TRIED_TITLE, TRIED_COLUMNS, tried) + figures
    budget = budget_rows(doc)
    if budget:
        figures = _html_table(BUDGET_TITLE, BUDGET_COLUMNS, budget) + figures
    refused = refused_rows(doc)
    if refused:
        figures = _html_table("Refused targets (nothing was written for them)", REFUSED_COLUMNS, refused) + figures
    noise, title = noise_pp(doc), html.escape(report_title(doc))
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in recommendations(doc))
    advice = f"<h2>What to ship, per device class</h2><ul>{advice}</ul>" if advice else ""
    notes = "".join(f"<p>{html.escape(line)}</p>" for line in table_notes(doc))
    table = _html_table(None, MD_COLUMNS, [md_cells(row, noise, doc["machine"].get("cpu_class"))
                                           for row in table_rows(doc)])
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>{advice}{table}{notes}{figures}</body></html>\n")


def _html_table(title: str | None, columns, rows) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>" for cells in rows)
    heading = f"<h2>{html.escape(title)}</h2>" if title else ""
    return f"{heading}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

