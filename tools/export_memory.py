"""One export's peak memory, each in a fresh process: the process's own high-water mark (Linux
``VmHWM``, read as it exits) and its largest child's, per target, optionally for several source
trees side by side (the same commands, alternated, e.g. a checkout of an earlier revision).

Usage: python -m tools.export_memory MODEL -t TARGET [-t ...] [--tree DIR ...] [--json OUT]
       [-- EXPORT OPTIONS]
The export options go to ``compressor export`` as they are (data, metric, ``--max-drop``);
``--max-drop 100`` measures one export rather than the accuracy budget's search.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child: the CLI, with the process's own peak and its children's printed as it exits.
CHILD = """
import atexit, resource, sys
if sys.path and sys.path[0] == "":  # python -c puts the working directory first: the tree's code, not it
    sys.path.pop(0)
def report():
    hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"PEAK-MB {hwm} {children}", file=sys.stderr)
atexit.register(report)
from compressor.app.cli import main
sys.argv[0] = "compressor"
main()
"""


def measure(model: str, target: str, tree: Path, options: list[str]) -> dict:
    """Export ``model`` to ``target`` with the code of ``tree`` in a fresh process: exit code,
    wall seconds, peak MB of the process and of its largest child."""
    with tempfile.TemporaryDirectory(prefix="export-memory.") as out:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, "export", model, "-t", target, "-o", out, *options],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
        seconds = time.perf_counter() - started
    peaks = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("PEAK-MB ")]
    own, child = (int(v) for v in peaks[-1]) if peaks else (None, None)
    return {"target": target, "tree": str(tree), "exit": done.returncode, "seconds": round(seconds, 1),
            "peak_mb": own, "child_peak_mb": child}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("-t", "--target", action="append", required=True)
    parser.add_argument("--tree", action="append", type=Path, help="source trees to compare (default: this one)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.tree] if args.tree else [Path(__file__).resolve().parents[1]]
    rows = []
    for target in args.target:
        for tree in trees:  # alternated, so a busy spell of the machine falls on both
            rows.append(measure(args.model, target, tree, options))
            row = rows[-1]
            print(f"{target:20s} {tree.name:12s} exit {row['exit']}  {row['seconds']:7.1f} s  "
                  f"peak {row['peak_mb']} MB  child {row['child_peak_mb']} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
