"""The Edit tab without a browser: the editor's value as files, the job on the tiny models, the
gallery loading an edit back into the editor, and the paths a visitor may not name."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from generator.config import GenerationConfig
from generator.edit.editor_values import (
    ALPHA_NOTE,
    NO_IMAGE,
    NOTHING_IN_SECOND,
    NOTHING_PAINTED,
    editor_files,
    loaded_editor,
)
from generator.edit.mode import EDIT
from generator.edit.tab import LOADED, NAMES, edit_config, edit_updates, loaded_values
from generator.errors import InputError
from generator.io.masks import ALPHA
from generator.webui.forms import to_form
from generator.webui.paths import PathPolicy
from generator.webui.studio import Studio
from generator.webui.tabs.page import Page
from generator.webui.visitors import VISITOR_COOKIE, new_secret, visitor_of
from tests.factories import tiny_run_config

SQUARE = (slice(8, 20), slice(10, 24))  # rows, columns painted


@pytest.fixture
def studio(tiny_pipeline, tmp_path: Path) -> Studio:
    return Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)


@pytest.fixture
def page(studio: Studio, tiny_files, tmp_path: Path) -> Page:
    """A page served to a network: paths are checked against what each visitor may read."""
    policy = PathPolicy.for_server("0.0.0.0", False, weights_dir=tmp_path / "weights", models=tiny_files.models())
    assert not policy.open
    return Page(studio, policy, 0)


def _request(session: str = "one") -> SimpleNamespace:
    return SimpleNamespace(cookies={VISITOR_COOKIE: new_secret()}, session_hash=session)


def _picture(size: tuple[int, int] = (32, 32), alpha: bool = False) -> Image.Image:
    values = np.random.default_rng(7).integers(0, 256, (size[1], size[0], 4 if alpha else 3), dtype=np.uint8)
    if alpha:
        values[..., 3] = 255
        values[:6, :6, 3] = 0  # a transparent corner
    return Image.fromarray(values, "RGBA" if alpha else "RGB")


def _stroke(size: tuple[int, int] = (32, 32)) -> Image.Image:
    """A layer as the editor gives it: transparent, with a square painted in white."""
    layer = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    layer[SQUARE] = 255
    return Image.fromarray(layer, "RGBA")


def _form(tiny_files, image: dict, **changes) -> tuple[dict, dict]:
    """(base, form): the preset's form values and the tab's widget values."""
    base = to_form(tiny_run_config(tiny_files, steps=3))
    form = {name: base[name] for name in ("prompts", "mask_fill", "vqgan", "vqgan_config", "clip_models")}
    form |= {"image": image, "region_prompt": "", "change": "inpaint", "outpaint_left": 0, "outpaint_top": 0,
             "outpaint_right": 128, "outpaint_bottom": 0, "mask_blur": 0, "steps": 3, "seed": 5, **changes}
    return base, form


def _run(page: Page, base: dict, form: dict, request) -> list:
    return list(edit_updates(page, base, form, request, page.studio.session(request)))


def test_pixels_outside_the_painted_part_are_the_input_exactly(page: Page, tiny_files) -> None:
    picture = _picture()
    base, form = _form(tiny_files, {"background": picture.convert("RGBA"), "layers": [_stroke()], "composite": None})
    request = _request()
    scratch_before = set(Path(tempfile.gettempdir()).glob("vqgan-studio-edit-*"))
    updates = _run(page, base, form, request)
    final = updates[-1]
    assert final.status.startswith("done in") and sum(u.preview is not None for u in updates) == 0  # 3 steps < 10
    result = np.asarray(Image.open(final.result).convert("RGB"))
    painted = np.zeros((32, 32), dtype=bool)
    painted[SQUARE] = True
    assert result.shape == (32, 32, 3)
    assert np.array_equal(result[~painted], np.asarray(picture)[~painted])  # mask blur 0: kept exactly
    assert not np.array_equal(result[painted], np.asarray(picture)[painted])  # the painted part changed
    folder = Path(final.result).parent
    assert json.loads((folder / "run.json").read_text())["mode"] == EDIT.name
    config = json.loads((folder / "config.json").read_text())
    assert config["init"]["init_image"] == "edit-image.png" and config["edit"]["mask"] == "edit-mask.png"
    assert config["size"] == [32, 32] and config["edit"]["mask_blur"] == 0  # the image's own size
    kept_mask = np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127
    assert np.array_equal(kept_mask, painted)
    assert {Path(f).name for f in final.files} >= {"final.png"}
    # the run is the visitor's: its gallery lists it as an edit
    (listed,) = page.studio.runs_for(visitor_of(request))
    assert listed.mode == EDIT.name and listed.folder == folder
    # the private copies of the editor's image and mask are gone once the run ended
    assert set(Path(tempfile.gettempdir()).glob("vqgan-studio-edit-*")) <= scratch_before


def test_the_gallery_loads_an_edit_back_into_the_editor(page: Page, tiny_files, tmp_path: Path) -> None:
    picture = _picture()
    base, form = _form(tiny_files, {"background": picture, "layers": [_stroke()], "composite": None},
                       mask_blur=2.5, mask_fill="random", prompts="a red square")
    request = _request()
    _run(page, base, form, request)
    (listed,) = page.studio.runs_for(visitor_of(request))
    values = to_form(GenerationConfig.from_dict(listed.config))
    loaded, note = loaded_values(page.paths, values, page.studio.may_read(request))
    assert note == "Its mask is painted in white; paint to add to it."
    assert loaded["prompts"] == "a red square" and loaded["mask_blur"] == 2.5 and loaded["mask_fill"] == "random"
    assert loaded["steps"] == 3 and loaded["seed"] == 5 and loaded["change"] == "inpaint"
    painted = np.zeros((32, 32), dtype=bool)
    painted[SQUARE] = True
    # the editor shows the image with its mask painted in white (it draws no layer it is sent)
    shown = np.asarray(loaded["image"]["background"].convert("RGB"))
    assert np.array_equal(shown[~painted], np.asarray(picture)[~painted]) and (shown[painted] == 255).all()
    remembered = loaded[LOADED]
    assert remembered.image == str(listed.folder / "edit-image.png")
    assert remembered.mask == str(listed.folder / "edit-mask.png")
    # while the editor shows that picture, the run edits the image behind it with its mask ...
    files = editor_files(loaded["image"], tmp_path / "again", outpaint=False, loaded=remembered)
    assert np.array_equal(np.asarray(Image.open(files.image)), np.asarray(picture))
    assert np.array_equal(np.asarray(Image.open(files.mask)) > 127, painted)
    # ... plus what was painted since
    more = np.zeros((32, 32, 4), dtype=np.uint8)
    more[25:30, 2:6] = 255
    files = editor_files(loaded["image"] | {"layers": [Image.fromarray(more, "RGBA")]}, tmp_path / "more",
                         outpaint=False, loaded=remembered)
    grown = painted.copy()
    grown[25:30, 2:6] = True
    assert np.array_equal(np.asarray(Image.open(files.mask)) > 127, grown)
    # another picture in the editor (an upload, a sent result) is edited as it is
    with pytest.raises(InputError, match="nothing is painted"):
        editor_files({"background": _picture((32, 32), alpha=False).rotate(90), "layers": []}, tmp_path / "other",
                     outpaint=False, loaded=remembered)
    # through the tab's job, the loaded edit repeats the run's image and mask
    final = _run(page, base, form | {"image": loaded["image"], LOADED: remembered}, request)[-1]
    folder = Path(final.result).parent
    assert np.array_equal(np.asarray(Image.open(folder / "edit-image.png")), np.asarray(picture))
    assert np.array_equal(np.asarray(Image.open(folder / "edit-mask.png")) > 127, painted)
    # another visitor may not read this run's files: nothing is read, the note says why
    loaded, note = loaded_values(page.paths, values, page.studio.may_read(_request("other")))
    assert "image" not in loaded and LOADED not in loaded
    assert note.startswith("The image was not loaded: the image to edit field takes")
    with pytest.raises(InputError, match="the image to edit field takes an upload"):
        _run(page, base, form | {"image": loaded_editor(remembered.image, remembered.mask)[0], LOADED: remembered},
             _request("other"))


def test_a_second_prompt_takes_the_magenta_part(page: Page, tiny_files) -> None:
    picture = _picture()
    layer = np.asarray(_stroke()).copy()  # the white square, and a magenta one beside it
    layer[24:30, 2:12] = (255, 0, 255, 255)
    layer[24, 2] = (255, 0, 255, 90)  # a soft brush edge is still magenta
    magenta = np.zeros((32, 32), dtype=bool)
    magenta[24:30, 2:12] = True
    white = np.zeros((32, 32), dtype=bool)
    white[SQUARE] = True
    base, form = _form(tiny_files, {"background": picture, "layers": [Image.fromarray(layer, "RGBA")],
                                    "composite": None}, prompts="a red sky:1.5 ^ clouds", region_prompt="a lake")
    request = _request()
    final = _run(page, base, form, request)[-1]
    folder = Path(final.result).parent
    config = json.loads((folder / "config.json").read_text())
    # each story phrase scores the first prompt on the white part and the second on the magenta one
    assert config["prompts"] == ("a red sky:1.5 @ region-1.png | a lake @ region-2.png ^ "
                                 "clouds @ region-1.png | a lake @ region-2.png")
    assert np.array_equal(np.asarray(Image.open(folder / "region-1.png").convert("L")) > 127, white)
    assert np.array_equal(np.asarray(Image.open(folder / "region-2.png").convert("L")) > 127, magenta)
    assert np.array_equal(np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127, white | magenta)
    result = np.asarray(Image.open(final.result).convert("RGB"))
    assert np.array_equal(result[~(white | magenta)], np.asarray(picture)[~(white | magenta)])
    assert not np.array_equal(result[magenta], np.asarray(picture)[magenta])
    # loaded back, the regions stay in the prompt (the run's kept masks), the second box is empty
    (listed,) = page.studio.runs_for(visitor_of(request))
    loaded, _ = loaded_values(page.paths, to_form(GenerationConfig.from_dict(listed.config)),
                              page.studio.may_read(request))
    assert loaded["region_prompt"] == "" and f"a lake @ {folder / 'region-2.png'}" in loaded["prompts"]
    # a second prompt with nothing magenta is one sentence; painting only magenta leaves the
    # first prompt the whole image
    base, form = _form(tiny_files, {"background": picture, "layers": [_stroke()], "composite": None},
                       region_prompt="a lake")
    with pytest.raises(InputError) as refused:
        _run(page, base, form, request)
    assert str(refused.value) == NOTHING_IN_SECOND
    only_magenta = np.zeros((32, 32, 4), dtype=np.uint8)
    only_magenta[magenta] = (255, 0, 255, 255)
    form["image"] = {"background": picture, "layers": [Image.fromarray(only_magenta, "RGBA")]}
    final = _run(page, base, form | {"prompts": "dusk"}, request)[-1]
    config = json.loads((Path(final.result).parent / "config.json").read_text())
    assert config["prompts"] == "dusk | a lake @ region-1.png"


def test_an_outpaint_grows_the_image_and_keeps_it_exactly(page: Page, tiny_files) -> None:
    picture = _picture()
    base, form = _form(tiny_files, {"background": picture, "layers": [], "composite": None}, change="outpaint",
                       outpaint_right=16, outpaint_bottom=0)
    request = _request()
    final = _run(page, base, form, request)[-1]
    result = np.asarray(Image.open(final.result).convert("RGB"))
    assert result.shape == (32, 48, 3)
    assert np.array_equal(result[:, :32], np.asarray(picture))
    config = json.loads((Path(final.result).parent / "config.json").read_text())
    assert config["edit"]["outpaint"] == [0, 0, 16, 0] and config["edit"]["mask"] is None
    (listed,) = page.studio.runs_for(visitor_of(request))
    loaded, note = loaded_values(page.paths, to_form(GenerationConfig.from_dict(listed.config)),
                                 page.studio.may_read(request))
    assert note is None and loaded["change"] == "outpaint" and loaded[LOADED].mask is None
    assert [loaded[f"outpaint_{side}"] for side in ("left", "top", "right", "bottom")] == [0, 0, 16, 0]


def test_nothing_painted_is_one_sentence_and_transparency_is_the_mask(page: Page, tiny_files, tmp_path) -> None:
    base, form = _form(tiny_files, {"background": _picture(), "layers": [_stroke().point(lambda _: 0)],
                                    "composite": None})
    with pytest.raises(InputError) as refused:
        _run(page, base, form, _request())
    assert str(refused.value) == NOTHING_PAINTED
    with pytest.raises(InputError, match="there is no image to edit"):
        _run(page, base, form | {"image": None}, _request())
    assert NO_IMAGE.count(".") == 1
    with pytest.raises(InputError, match="an outpaint adds pixels"):
        _run(page, base, form | {"change": "outpaint", "outpaint_right": 0}, _request())
    # an image with transparent pixels and nothing painted changes where it is transparent
    files = editor_files({"background": _picture(alpha=True), "layers": []}, tmp_path / "alpha", outpaint=False)
    assert files.mask == ALPHA and files.note == ALPHA_NOTE
    assert Image.open(files.image).mode == "RGBA"
    config = edit_config(PathPolicy(tmp_path, open=True), base, form, files, None, lambda path: False)
    assert config.edit.mask == ALPHA and config.init.init == "image" and config.size is None


def test_paths_the_visitor_was_not_given_are_refused(page: Page, tiny_files, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    _picture().save(secret)
    request = _request()
    refusal = re.escape("the image field takes an upload, one of your results or an http(s) address")
    for path in (str(secret), "/etc/passwd", "https://example.com/a.png", "../../secret.png"):
        with pytest.raises(InputError, match=refusal):
            page.sent_image(path, request)  # "Edit this image" sends only what the visitor may read
    page.studio.served.grant(visitor_of(request), secret)  # as the gate does for what it sent or was sent
    assert page.sent_image(str(secret), request) == str(secret.resolve())
    with pytest.raises(InputError, match=refusal):
        page.sent_image(str(secret), _request("someone else"))
    # settings naming another file (a crafted PNG's text) load without reading it
    values = to_form(tiny_run_config(tiny_files, init={"init": "image", "init_image": "/etc/passwd"},
                                     edit={"mask": str(tmp_path / "mask.png")}))
    loaded, note = loaded_values(page.paths, values, page.studio.may_read(_request("other")))
    assert "image" not in loaded and "takes an upload" in note
    # a region prompt's mask is a path too
    base, form = _form(tiny_files, {"background": _picture(), "layers": [_stroke()], "composite": None},
                       prompts=f"a red sky @ {secret} | a calm sea")
    with pytest.raises(Exception, match="the region mask field takes an upload"):
        _run(page, base, form, _request("third"))
    assert not list(page.studio.outputs_dir.glob("*/final.png"))


def test_the_edit_endpoint_through_gradio_client(studio: Studio, tiny_files, tmp_path: Path) -> None:
    """The tab's handler as the page calls it: files uploaded through the gate, named parameters."""
    from gradio_client import Client, handle_file

    import app
    from generator.webui.serving import launch_options

    picture, stroke = tmp_path / "picture.png", tmp_path / "stroke.png"
    _picture().save(picture)
    _stroke().save(stroke)
    demo = app.build_demo(studio=studio)
    demo.launch(**launch_options(studio, prevent_thread_lock=True, quiet=True))
    try:
        client = Client(demo.local_url, verbose=False)
        base, form = _form(tiny_files, {"background": handle_file(str(picture)), "layers": [handle_file(str(stroke))],
                                        "composite": None})
        status, preview, result, files, info = client.predict(**{name: form[name] for name in NAMES},
                                                              api_name=f"/{EDIT.api}")
    finally:
        demo.close()
    assert "done in" in status and "seed 5" in info
    painted = np.zeros((32, 32), dtype=bool)
    painted[SQUARE] = True
    produced = np.asarray(Image.open(result).convert("RGB"))
    assert np.array_equal(produced[~painted], np.asarray(_picture())[~painted])
