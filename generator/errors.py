"""Errors a user can act on.

``str(error)`` is one sentence that says what is wrong and what to do. The CLI prints it as
``error: <sentence>`` and exits non-zero; the web UI shows the same sentence.
"""

from __future__ import annotations


class GeneratorError(Exception):
    """Base class for every error the user can fix."""


class ConfigError(GeneratorError, ValueError):
    """A configuration value, preset or flag is invalid."""


class InputError(GeneratorError, ValueError):
    """A user-supplied file or value (image, prompt, size) cannot be used."""


class WeightsError(GeneratorError):
    """Weights are missing, could not be downloaded, or failed their checksum."""


class CheckpointError(GeneratorError):
    """A checkpoint cannot be read or does not fit the model it is meant for."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle tries to run code; nothing from it was executed."""


class OutputError(GeneratorError):
    """An output could not be written (disk full, no permission); what was written is kept."""


class OutOfMemoryError(GeneratorError):
    """The GPU (or the machine) ran out of memory; what was produced so far is kept."""


class NonFiniteError(GeneratorError):
    """A loss, an image or logits stopped being numbers (a half-precision overflow, bad weights)."""


def summary(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for quoting in a sentence."""
    lines = str(error).strip().splitlines()
    return (lines[0][:200] if lines else "") or type(error).__name__
