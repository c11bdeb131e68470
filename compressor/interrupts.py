"""Ctrl-C and SIGTERM unwind the same way, and the code on the way out can tell.

A signal handler raises KeyboardInterrupt wherever the process is; inside a library
(an import, a native call) it can surface as another exception ("ImportError:
initialization failed"). Code that isolates failures (one target's export from the
others) asks :func:`interrupted` before treating an exception as that target's own. Where
the interpreter swallowed it (a weakref callback, a destructor), :func:`check` between steps
raises it again.
"""

from __future__ import annotations

import signal
import threading

_received: list[int] = []


def _unwind(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt and be remembered (main thread only)."""
    _received.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _unwind)
        signal.signal(signal.SIGINT, _unwind)


def interrupted(exc: BaseException | None = None) -> bool:
    """Whether a signal arrived, or ``exc`` was caused by an interrupt somewhere in its chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return bool(_received)


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived and was swallowed on its way out: Python
    ignores an exception raised in a weakref callback (an import's module lock) or a
    destructor, so the long-running loops ask here between their steps."""
    if _received:
        raise KeyboardInterrupt
