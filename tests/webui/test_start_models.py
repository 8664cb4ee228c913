"""The models ``app.py`` is started with are listed, and chosen, in every tab's model menu."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import app
from generator.config import ModelsConfig
from generator.webui.studio import Studio


def _menus(demo: gr.Blocks, label: str) -> list[gr.Dropdown]:
    return [block for block in demo.blocks.values() if isinstance(block, gr.Dropdown) and block.label == label]


def test_a_vqgan_given_at_start_is_listed_and_chosen_in_every_vqgan_menu(tmp_path: Path) -> None:
    checkpoint = tmp_path / "elsewhere" / "mine.ckpt"  # outside the weights folder
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    studio = Studio(outputs_dir=tmp_path / "outputs", device="cpu", weights_dir=tmp_path / "weights",
                    models=ModelsConfig(vqgan=str(checkpoint)))
    menus = _menus(app.build_demo(studio=studio), "VQGAN")
    assert len(menus) >= 2  # Text to image, and the other tabs that take a VQGAN
    for menu in menus:
        values = [value for _, value in menu.choices]
        assert str(checkpoint) in values, menu.elem_id
        assert menu.value == str(checkpoint), menu.elem_id
        label = dict((value, label) for label, value in menu.choices)[str(checkpoint)]
        assert label.startswith("mine.ckpt")
