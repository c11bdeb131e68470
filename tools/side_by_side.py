"""Two ways of running the same artifacts, timed side by side on a shared, noisy machine.

Used by :mod:`tools.fidelity` (harness vs benchmark_app) and
:mod:`tools.openvino_batch` (static vs dynamic batch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from compressor.errors import BadInputError


def alternate(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call two timers alternately, ``rounds`` times each, in ABBA order (A B, B A, A B...),
    so that drift of the machine lands on both; returns each timer's values in call order."""
    if rounds < 1:
        raise BadInputError("rounds must be at least 1")
    first, second = timers
    values: dict[str, list[float]] = {first: [], second: []}
    for index in range(rounds):
        for name in (first, second) if index % 2 == 0 else (second, first):
            values[name].append(timers[name]())
    return values


def main(argv, *, description: str, compare: Callable[..., dict], seconds: float,
         passed: Callable[[dict], bool] = lambda result: True) -> int:
    """Command line: ``compare`` each artifact folder, print the results as JSON; exit 1
    unless every result ``passed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = [compare(f, threads=args.threads, seconds=args.seconds, rounds=args.rounds) for f in args.folders]
    print(json.dumps(results, indent=2))
    return 0 if all(passed(r) for r in results) else 1
