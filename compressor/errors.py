"""The project's typed errors. The CLI maps each class to its exit code.

Exit codes:
    0  success
    1  internal error (a bug: please report it)
    2  usage error (unknown option, missing argument; raised by click)
    3  bad input (missing/corrupt file, unsafe model, bad data, bad recipe)
    4  unsupported model or failed conversion (an op a target cannot take)
    5  parity failure (an artifact's outputs disagree with its source model) or accuracy budget
       missed (no setting kept the drop within --max-drop)
"""

from __future__ import annotations


class CompressorError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code = 1


class BadInputError(CompressorError):
    """A file, dataset, option or recipe given by the user cannot be used."""

    exit_code = 3


class UsageError(BadInputError):
    """A name the command does not know (a target, a built-in recipe): a usage error, like an
    unknown option, found before any work."""

    exit_code = 2


class UnsafeModelError(BadInputError):
    """A model would execute code (Lambda, custom objects) and the user did not opt in."""


class UnsupportedModelError(CompressorError):
    """The model uses a layer or op that a step or target cannot take."""

    exit_code = 4


class ConversionError(CompressorError):
    """A converter failed or produced something unusable."""

    exit_code = 4


class ParityError(CompressorError):
    """An artifact's outputs disagree with its source model beyond the allowed tolerance."""

    exit_code = 5


class AccuracyBudgetError(ParityError):
    """No setting of a quantized target kept its accuracy drop within the user's budget."""


def one_line(exc: BaseException, *, prefer: str | None = None, limit: int = 300) -> str:
    """The informative line of a library's exception, for a one-line error message.

    ``prefer``: a phrase whose line is taken over the first one (some libraries start
    with a source location and state the problem further down).
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if prefer:
        for line in lines:
            if prefer in line.lower():
                return line.lstrip("- ")[:limit]
    return lines[0][:limit] if lines else type(exc).__name__


EXIT_CODES = {
    "success": 0,
    "internal error": CompressorError.exit_code,
    "usage error": 2,
    "bad input": BadInputError.exit_code,
    "unsupported model or conversion failure": UnsupportedModelError.exit_code,
    "parity failure or accuracy budget missed": ParityError.exit_code,
}
