"""How long a stage of repeated steps has left, for progress lines (``3/9, about 40 s left``)."""

from __future__ import annotations

import time


def time_left(started: float, done: int, total: int, now: float | None = None) -> str:
    """", about 40 s left" from the mean time of the ``done`` steps so far (``started``: a
    ``time.perf_counter()``), "" before the first one ends or after the last."""
    if not done or done >= total:
        return ""
    elapsed = (time.perf_counter() if now is None else now) - started
    seconds = elapsed / done * (total - done)
    return f", about {seconds / 60:.0f} min left" if seconds >= 120 else f", about {seconds:.0f} s left"
