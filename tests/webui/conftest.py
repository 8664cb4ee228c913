"""Fixtures of the web UI tests: a studio on the tiny models, and the app served from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.webui.studio import Studio
from tests.served_app import served_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def studio(tiny_pipeline, tmp_path: Path) -> Studio:
    """A studio whose text-to-image models are the session's tiny ones, writing into ``tmp_path``."""
    return Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)


@pytest.fixture
def served(studio: Studio):
    """The app of ``studio`` served on 127.0.0.1 (as ``python app.py`` serves it), closed afterwards."""
    with served_app(studio, preset=str(ROOT / "presets" / "fast.json")) as demo:
        yield demo
