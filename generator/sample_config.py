"""The config of prior sampling (``python -m generator sample``), built like GenerationConfig."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from generator.config import (
    MAX_SIDE,
    PRECISIONS,
    OutputConfig,
    UpscaleConfig,
    build_config,
    check_sampling,
)
from generator.errors import ConfigError


@dataclass(frozen=True)
class SampleConfig:
    """Everything that decides a sampling run of a transformer prior.

    Attributes:
        model: a transformer registry name (``ffhq_transformer``, or just ``ffhq``) or a
            ``last.ckpt`` file.
        transformer_config: its project yaml (default: beside the checkpoint).
        n: images to sample.
        batch_size: images sampled together.
        size: (width, height) in pixels, or None for the model's training window (256x256
            for the released models); larger grids use the sliding window.
        top_k, top_p, temperature: how tokens are drawn (top_k 0: off).
        seed: the seed of every draw; None picks one (recorded).
        class_label: the ImageNet class for class-conditional models.
        condition: a segmentation or depth map for spatially conditioned models.
        complete: an image whose first ``keep`` fraction of tokens is kept (image completion).
        keep: the kept fraction for ``complete``.
        use_cache: incremental decoding with a key/value cache (off: recompute, same tokens).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast on CUDA).
        output: previews every ``save_every`` rows, video, gif, fps.
        upscale: the ESRGAN stage for the samples.
    """

    model: str = "ffhq_transformer"
    transformer_config: str | None = None
    n: int = 4
    batch_size: int = 4
    size: tuple[int, int] | None = None
    top_k: int = 250
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None
    class_label: int | None = None
    condition: str | None = None
    complete: str | None = None
    keep: float = 0.5
    use_cache: bool = True
    precision: str = "auto"
    output: OutputConfig = field(default_factory=OutputConfig)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)

    def __post_init__(self) -> None:
        def check(condition: bool, message: str) -> None:
            if not condition:
                raise ConfigError(message)

        check(bool(self.model.strip()), "model must name a transformer registry entry or a checkpoint file.")
        check(1 <= self.n <= 1024, f"n must be between 1 and 1024, not {self.n}.")
        check(1 <= self.batch_size <= 256, f"batch_size must be between 1 and 256, not {self.batch_size}.")
        check_sampling(self.top_k, self.top_p, self.temperature)
        check(self.seed is None or 0 <= self.seed < 2**63, f"seed must be a non-negative integer, not {self.seed}.")
        check(self.class_label is None or self.class_label >= 0, f"class must be 0 or more, not {self.class_label}.")
        check(0 <= self.keep < 1, f"keep must be in [0, 1), not {self.keep}.")
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        if self.size is not None:
            width, height = self.size
            check(16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE,
                  f"size {width}x{height} is out of range; each side must be between 16 and {MAX_SIDE} pixels.")

    def replace(self, **changes: Any) -> SampleConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleConfig:
        return build_config(cls, data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value
