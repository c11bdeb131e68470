"""How long a stage of repeated steps has left, for progress lines (``3/9, about 40 s left``),
and libraries' own progress prints kept out of the toolkit's output."""

from __future__ import annotations

import contextlib
import io
import time


def time_left(started: float, done: int, total: int, now: float | None = None) -> str:
    """", about 40 s left" from the mean time of the ``done`` steps so far (``started``: a
    ``time.perf_counter()``), "" before the first one ends or after the last."""
    if not done or done >= total:
        return ""
    elapsed = (time.perf_counter() if now is None else now) - started
    seconds = elapsed / done * (total - done)
    return f", about {seconds / 60:.0f} min left" if seconds >= 120 else f", about {seconds:.0f} s left"


def off_stdout():
    """A context in which a library's own prints (ONNX Runtime's calibration progress, the LiteRT
    Quantizer's summary, pycocotools' tables) go nowhere: stdout carries the CLI's --json document."""
    return contextlib.redirect_stdout(io.StringIO())
