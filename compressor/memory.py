"""The process's peak memory (resident set), per stage where the system allows measuring it.

Linux keeps a high-water mark (``VmHWM``) that writing "5" to ``/proc/self/clear_refs`` resets,
so one process can measure each export's own peak; elsewhere the peak is the process's since it
started (``resource.getrusage``), which :func:`reset_peak` says by returning False.
"""

from __future__ import annotations

import ctypes
import gc
import resource
from pathlib import Path

STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new high-water mark here; False where the system cannot (the peak then counts from
    the process's start)."""
    try:
        CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """The resident-set high-water mark in MB (since :func:`reset_peak`, or since the start)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def children_peak_mb() -> float:
    """The largest resident set of any finished child process (benchmark workers), in MB."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def release() -> None:
    """Hand the heap memory Python has freed back to the system. glibc keeps freed blocks under
    its mmap threshold (which grows to 32 MB as large buffers come and go) for reuse, so after a
    stage that held a model's copies the process stays that large and the next stage starts from
    there. A no-op where the C library has no ``malloc_trim``."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def settle() -> None:
    """Collect what a stage left behind and hand the freed heap back (:func:`release`): a
    converter's traced graphs hold reference cycles, so without a collection the next stage
    (running the artifact, the source's reference outputs) would start from the converter's peak."""
    gc.collect()
    release()


BATCH_INPUT_BYTES = 4 << 20  # the inputs of one inference batch; its activations are some multiple


def batch_for(feeds, most: int = 64) -> int:
    """How many samples of ``feeds`` (one array per input, first axis = samples) one inference
    batch takes: as many as fit :data:`BATCH_INPUT_BYTES` of inputs, at least 1 and at most
    ``most``. A runtime holds a batch's activations (ONNX Runtime's arena keeps the largest it
    has seen), so images of 320×320 go 3 at a time and digits of 28×28 64 at a time."""
    sample = sum(array[:1].nbytes for array in feeds)
    return max(1, min(most, BATCH_INPUT_BYTES // max(1, sample)))
