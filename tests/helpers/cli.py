"""Run the ``compressor`` command line in-process, as a user would from a shell."""

import pytest


def run_cli(args, capsys):
    """``(exit code, stdout, stderr)`` of ``compressor ARGS``."""
    from compressor.app.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err
