"""The machine-readable reports: the results document as JSON (``results.json``) and one CSV row per artifact."""

from __future__ import annotations

import csv
import io
import json

from benchmarks.reports import writer
from benchmarks.reports.tables import table_rows


@writer("json", "results.json")
def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@writer("csv", "results.csv")
def to_csv(doc: dict) -> str:
    rows = table_rows(doc)
    buffer = io.StringIO()
    out = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
    return buffer.getvalue()

