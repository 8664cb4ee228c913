"""Tiny upscaler files saved as Real-ESRGAN releases are, shared by the upscaler tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.upscaler_factories import compact_state, rrdb_state, save_upscaler


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upscalers")
    return {
        "compact": save_upscaler(compact_state(), root / "compact.pth", "params"),
        "compact16": save_upscaler(compact_state(num_feat=16, num_conv=4), root / "compact16.pth", "params"),
        "rrdb": save_upscaler(rrdb_state(), root / "rrdb.pth", "params_ema"),
        "rrdb_x2": save_upscaler(rrdb_state(scale=2), root / "rrdb_x2.pth", "params_ema"),
        "rrdb_bare": save_upscaler(rrdb_state(), root / "rrdb_bare.safetensors", None),
        "rrdb_plain": save_upscaler(rrdb_state(), root / "rrdb_plain.pth", None),
    }
