"""Run the ``compressor`` command line in-process, as a user would from a shell."""

import pytest


def run_cli(args, capsys):
    """``(exit code, stdout, stderr)`` of ``compressor ARGS``."""
    from compressor.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def write_model_and_data(folder, model, datasets):
    """``folder`` with ``tiny.keras`` and ``train.npz`` / ``test.npz`` (x, y): what a user hands the CLI."""
    import numpy as np

    model.save(folder / "tiny.keras")
    for name, dataset in zip(("train", "test"), datasets):
        np.savez(folder / f"{name}.npz", x=dataset.x, y=dataset.y)
    return folder
