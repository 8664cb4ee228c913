"""``--deterministic``: refused with the augmentations that have no deterministic CUDA backward,
accepted without them, and a no-op on the CPU, where every run is reproducible."""

from __future__ import annotations

import pytest
import torch

from generator.errors import ConfigError
from generator.text_to_image.cli import build_parser, config_from_args
from generator.text_to_image.pipeline import check_reproducible
from tests.factories import tiny_run_config

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_a_deterministic_gpu_run_refuses_the_warping_augmentations_by_name(tiny_files) -> None:
    config = tiny_run_config(tiny_files, deterministic=True,
                             cutouts={"augments": ["affine", "jitter", "perspective", "noise"]})
    with pytest.raises(ConfigError) as caught:
        check_reproducible(config, CUDA)
    assert str(caught.value).startswith("--deterministic on a GPU cannot use the augmentations affine, perspective ")
    check_reproducible(config, CPU)  # the CPU is always reproducible
    check_reproducible(tiny_run_config(tiny_files, cutouts={"augments": ["affine"]}), CUDA)  # not asked for


def test_the_augmentations_it_suggests_are_accepted(tiny_files) -> None:
    config = tiny_run_config(tiny_files, deterministic=True,
                             cutouts={"augments": ["jitter", "erasing", "noise", "flip", "sharpness"]})
    assert check_reproducible(config, CUDA) is None  # accepted: no error about them


def test_the_flag_reaches_the_config() -> None:
    parser = build_parser("generator")
    assert config_from_args(parser.parse_args(["city", "--deterministic"])).deterministic is True
    assert config_from_args(parser.parse_args(["city"])).deterministic is False
