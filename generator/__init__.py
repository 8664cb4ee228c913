"""Text-to-image generation with VQGAN+CLIP, a Taming Transformers prior and ESRGAN upscaling.

The command line (``python -m generator``) and the web UI (``app.py``) are thin sinks over
the Python API defined here.
"""

from generator.errors import (
    CheckpointError,
    ConfigError,
    GeneratorError,
    InputError,
    OutOfMemoryError,
    OutputError,
    UnsafeCheckpointError,
    WeightsError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "GeneratorError",
    "InputError",
    "OutOfMemoryError",
    "OutputError",
    "UnsafeCheckpointError",
    "WeightsError",
]
