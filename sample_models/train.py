"""Train the sample models and print their test accuracy.

Usage: python -m sample_models.train [NAME ...] [--seed N] [--force]
"""

from __future__ import annotations

import argparse
import time

import sample_models


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(sample_models.SAMPLE_MODELS))
    parser.add_argument("--seed", type=int, default=sample_models.DEFAULT_SEED)
    parser.add_argument("--force", action="store_true", help="retrain even when cached")
    args = parser.parse_args(argv)
    for name in args.names:
        start = time.perf_counter()
        if args.force:
            sample_models.forget(name, seed=args.seed)
        path = sample_models.path(name, seed=args.seed)
        accuracy = sample_models.recorded_accuracy(name, seed=args.seed)
        print(f"{name:14s} test accuracy {accuracy:.4f}  ({time.perf_counter() - start:.1f} s)  {path}")


if __name__ == "__main__":
    main()
