"""Candidates quantized ahead, in a helper process beside this one.

The converter's quantizer (``mlir_quantize``) runs single-threaded and holds the GIL: 0.4-0.5 s a
candidate on EfficientNetB0, about half of LiteRT's budget search. The sensitivity ranking
knows a batch of candidates at a time (the runs it opens), none depending on another's result,
so a helper process quantizes them from the front of the batch while this process, waiting for
one, quantizes the others from the back: two cores' worth with one more process. Same
function, same calibrated model: the bytes are those of quantizing here (a test compares them).

No thread in this process: the quantizer holds the GIL, so requests are sent and results
collected whenever this process asks for a candidate, two requests ahead so the helper is never
idle while this process quantizes; results go through files in the search's own folder.

A helper costs a process with TensorFlow loaded (717 MB peak on EfficientNetB0) and a few
seconds to start; it is started only when the candidates would take long to quantize here,
and never when this process has a single core.
"""

from __future__ import annotations

import os
from pathlib import Path

from compressor.errors import ConversionError

DEPTH = 2  # requests the helper holds: the next one is waiting when it finishes one


def serve(fd: int) -> int:
    """The helper's side (``python -m targets.runtimes.litert --ahead FD``): quantize each requested
    set of float ops, write it to a file in the search's folder, say which."""
    from multiprocessing.connection import Connection
    from types import SimpleNamespace

    from targets.runtimes.litert.convert import quantized_content

    connection = Connection(fd)
    try:
        start = connection.recv()
        calibrated, profile, folder = start["calibrated"], SimpleNamespace(**start["profile"]), Path(start["folder"])
        while (request := connection.recv()) is not None:
            index, float_nodes = request
            try:
                path = folder / f"ahead-{index}.tflite"
                path.write_bytes(quantized_content(calibrated, profile, float_nodes))
                connection.send((index, True, str(path)))
            except ConversionError as exc:
                connection.send((index, False, str(exc)))
    except (EOFError, OSError, KeyboardInterrupt):  # the export's process is gone or stopping
        pass
    return 0


class Helper:
    """A process that quantizes ``calibrated`` with given ops in float, ahead of being asked;
    ``quantize_here(float_nodes)``: the same in this process."""

    def __init__(self, calibrated: bytes, profile, quantize_here, folder: Path) -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        # a process of its own, as the converter's (a fork would copy TensorFlow's threads' locks in
        # whatever state they are; multiprocessing's spawn would run the caller's main module again)
        ours, theirs = socket.socketpair()
        root = Path(__file__).resolve().parents[3]
        env = dict(os.environ, COMPRESSOR_QUIET="1", TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "targets.runtimes.litert", "--ahead", str(theirs.fileno())]
        self._process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        self._connection = Connection(ours.detach())
        self._connection.send({"calibrated": calibrated, "folder": str(folder),
                               "profile": {k: getattr(profile, k) for k in ("name", "precision", "input_type",
                                                                            "output_type")}})
        self._here = quantize_here
        self._count = 0
        self._waiting: dict[tuple, int] = {}  # asked ahead, not sent yet (in order)
        self._sent: dict[int, tuple] = {}  # sent to the helper, not back yet
        self._made: dict[tuple, bytes | ConversionError] = {}  # quantized, not taken yet

    def submit(self, float_node_sets) -> None:
        for nodes in float_node_sets:
            key = tuple(nodes)
            if key not in self._waiting and key not in self._made and key not in self._sent.values():
                self._count += 1
                self._waiting[key] = self._count
        self._pump()

    def take(self, float_nodes) -> bytes | None:
        """The content of ``float_nodes``'s quantization if it was asked ahead (raising what
        it raised), else None: the caller quantizes it."""
        key = tuple(float_nodes)
        self._pump()
        if key in self._waiting:  # the helper has not started it: here, now
            del self._waiting[key]
            return None
        while key not in self._made and key in self._sent.values():
            if self._waiting:  # the helper is on it: meanwhile, the last one it has not started
                other = next(reversed(self._waiting))
                del self._waiting[other]
                try:
                    self._made[other] = self._here(list(other))
                except ConversionError as exc:
                    self._made[other] = exc
                self._pump()
            else:
                self._pump(block=True)
        if key not in self._made:
            return None
        made = self._made.pop(key)
        if isinstance(made, ConversionError):
            raise made
        return made

    def _pump(self, block: bool = False) -> None:
        """Collect what the helper finished (waiting for one with ``block``) and keep it
        ``DEPTH`` requests ahead."""
        if self._process is None:
            return
        try:
            while self._sent and self._connection.poll(None if block else 0):
                block = False
                index, ok, content = self._connection.recv()
                key = self._sent.pop(index)
                if ok:
                    path = Path(content)
                    self._made[key] = path.read_bytes()
                    path.unlink()
                else:
                    self._made[key] = ConversionError(content)
            while self._waiting and len(self._sent) < DEPTH:
                key = next(iter(self._waiting))
                index = self._waiting.pop(key)
                self._connection.send((index, list(key)))
                self._sent[index] = key
        except (EOFError, OSError):  # the helper died (killed, out of memory): the rest here
            self._stop()

    def close(self) -> None:
        self._stop()
        self._waiting.clear()
        self._made.clear()

    def _stop(self) -> None:
        import subprocess

        if self._process is None:
            return
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        try:
            self._process.wait(timeout=10)  # at most the one it is quantizing
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._connection.close()
        self._process, self._sent = None, {}
