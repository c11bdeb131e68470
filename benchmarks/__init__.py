"""Measurement of exported artifacts and the reports made from it.

Example:
    >>> doc = benchmarks.measure(["out"], eval_data=test, source="model.keras")
    >>> benchmarks.write_reports(doc, "out")
"""


def measure(paths, **options):
    """See :func:`benchmarks.harness.measure`."""
    from benchmarks.harness import measure as _measure

    return _measure(paths, **options)


def write_reports(doc, out_dir, formats=None):
    """See :func:`benchmarks.reports.write_reports`."""
    from benchmarks.reports import WRITERS, write_reports as _write

    return _write(doc, out_dir, tuple(formats or WRITERS))


__all__ = ["measure", "write_reports"]
