"""The Edit tab in a real browser (Debian's chromium through Playwright, tiny official-format
weights): upload, paint with the mouse, edit; "Edit this image" from a text-to-image result and
from the gallery; an edit's settings loaded back. Skipped only when chromium is missing and CI is
not set; under CI=true a missing browser fails the run."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.webui.app_process import running_app
from tests.webui.test_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    App,
    _shot,
    _uncovered,
    open_page,
    require_chromium,
    tiny_preset,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_chromium()
    folder = tmp_path_factory.mktemp("edit-app")
    preset = tiny_preset(folder, steps=20)
    with running_app(tiny_files, folder, "--preset", str(preset), lazy=False) as (url, outputs):
        yield App(url, outputs)


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96x96 gradient with no pure white in it (so white strokes stand out)."""
    ramp = np.linspace(0, 255, 96).astype(np.uint8)
    values = np.stack([np.tile(ramp, (96, 1)), np.tile(ramp[:, None], (1, 96)), np.full((96, 96), 90, np.uint8)], -1)
    path = tmp_path_factory.mktemp("pictures") / "gradient.png"
    Image.fromarray(values).save(path)
    return path


@pytest.fixture(scope="module")
def context(app: App):
    """One browser (one visitor: one gallery) for the tests of this module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        yield context
        context.close()
        browser.close()


@pytest.fixture
def page(context, app: App):
    page, failures = open_page(context, app.url)
    yield page
    page.close()
    assert not failures, f"the server answered with errors: {failures}"


def _newest(app: App) -> Path:
    return max((p for p in app.outputs.iterdir() if p.is_dir()), key=lambda folder: folder.stat().st_mtime)


def _count(app: App) -> int:
    return sum(p.is_dir() for p in app.outputs.iterdir()) if app.outputs.is_dir() else 0


def _edit_and_wait(page, app: App) -> Path:
    """Press Edit; wait for the new run folder and for the status to say it is done."""
    from playwright.sync_api import expect

    before = _count(app)
    page.locator("#edit").click()
    deadline = 180_000
    while _count(app) == before and deadline > 0:
        page.wait_for_timeout(200)
        deadline -= 200
        assert page.locator("#edit-status .status-error").count() == 0, page.locator("#edit-status").inner_text()
    expect(page.locator("#edit-status")).to_contain_text("done in", timeout=180_000)
    return _newest(app)


def _upload(page, picture: Path) -> None:
    """Upload ``picture`` into the editor and wait until it shows it. The tab's editor takes a
    moment to be ready after the tab is first opened; a file given before that is not taken (the
    editor still says "Upload an image"), so it is given again, as a person would."""
    from playwright.sync_api import expect

    editor = page.locator("#edit-image")
    expect(editor).to_be_visible(timeout=30_000)
    waiting = editor.get_by_text("Upload an image")
    for attempt in range(3):
        if attempt == 0:
            editor.locator("input[type=file]").set_input_files(str(picture))
        else:  # as a person does it: the editor's own upload button and the file chooser
            with page.expect_file_chooser(timeout=10_000) as chooser:
                waiting.click()
            chooser.value.set_files(str(picture))
        try:
            expect(waiting).to_be_hidden(timeout=10_000)
            break
        except AssertionError:
            continue
    expect(waiting).to_be_hidden(timeout=1_000)
    page.wait_for_timeout(500)


def _paint(page, dx: float = 0, dy: float = 0) -> None:
    """A stroke with the mouse from near the editor's centre (moved by ``dx``, ``dy``)."""
    box = page.locator("#edit-image canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2 - 50 + dx, box["y"] + box["height"] / 2 - 30 + dy
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + 5 * step, y + 2 * step)
    page.mouse.up()
    page.wait_for_timeout(300)


def test_paint_a_stroke_and_only_that_part_changes(page, app: App, picture: Path) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Edit").click()
    _upload(page, picture)
    canvas = page.locator("#edit-image canvas").first
    expect(canvas).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)
    _paint(page)  # the brush is the tool once an image is in
    page.locator("#edit-prompt textarea").fill("a red stripe")
    page.locator("#edit-mask-blur input").fill("0")
    page.locator("#edit-steps input[type=number]").fill("20")
    page.wait_for_timeout(500)
    _shot(page, "ui-edit-mask.png")
    folder = _edit_and_wait(page, app)
    result = page.locator("#edit-result img").first
    expect(result).to_be_visible(timeout=30_000)
    assert _uncovered(page, "#edit-result img") and not page.locator("#edit-preview").is_visible()
    expect(page.locator("#edit-files")).to_contain_text(re.compile(r"final\s*\.png"))
    page.wait_for_timeout(500)
    _shot(page, "ui-edit-result.png")
    assert json.loads((folder / "run.json").read_text())["mode"] == "edit"
    original = np.asarray(Image.open(picture).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(folder / "edit-image.png").convert("RGB")), original)  # as uploaded
    painted = np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127
    assert 0.02 < painted.mean() < 0.8  # the stroke, not nothing and not everything
    final = np.asarray(Image.open(folder / "final.png").convert("RGB"))
    assert np.array_equal(final[~painted], original[~painted])  # mask blur 0: the rest is the input exactly
    assert not np.array_equal(final[painted], original[painted])


def test_an_edit_loads_back_from_the_gallery_with_its_mask(page, app: App) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Gallery").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#gallery img").first).to_be_visible(timeout=30_000)
    page.locator("#gallery img").first.click()  # the newest: the edit of the test above
    expect(page.locator("#gallery-status")).to_contain_text("edit", timeout=30_000)
    edited = _newest(app)
    page.locator("#load-settings").click()
    expect(page.locator("#edit-prompt textarea")).to_have_value("a red stripe", timeout=30_000)
    expect(page.locator("#edit-mask-blur input")).to_have_value("0")
    expect(page.locator("#edit-image canvas").first).to_be_visible()
    page.wait_for_timeout(1500)
    _shot(page, "ui-edit-loaded.png")
    original = np.asarray(Image.open(edited / "edit-image.png").convert("RGB"))
    before = np.asarray(Image.open(edited / "edit-mask.png").convert("L")) > 127
    folder = _edit_and_wait(page, app)  # nothing painted anew: the loaded mask is the mask
    assert np.array_equal(np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127, before)
    assert np.array_equal(np.asarray(Image.open(folder / "edit-image.png").convert("RGB")), original)
    _paint(page, dx=-120, dy=120)  # a second stroke, away from the first: the mask grows
    folder = _edit_and_wait(page, app)
    after = np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127
    assert (after >= before).all() and after.sum() > before.sum()
    assert np.array_equal(np.asarray(Image.open(folder / "edit-image.png").convert("RGB")), original)


def test_edit_this_image_sends_a_result_to_the_edit_tab(page, app: App) -> None:
    from playwright.sync_api import expect

    page.locator("#prompt textarea, #prompt input").first.fill("a small house")
    page.locator("#generate").click()
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    made = _newest(app)
    page.locator("#send-to-edit").click()
    expect(page.locator("#edit-image canvas").first).to_be_visible(timeout=30_000)
    page.get_by_text("Outpaint: a new border").click()
    expect(page.locator("#edit-outpaint-right input")).to_have_value("128", timeout=10_000)
    page.locator("#edit-outpaint-right input").fill("32")
    page.locator("#edit-prompt textarea").fill("more of the house")
    page.wait_for_timeout(1000)
    _shot(page, "ui-edit-sent.png")
    folder = _edit_and_wait(page, app)
    sent = np.asarray(Image.open(made / "final.png").convert("RGB"))
    final = np.asarray(Image.open(folder / "final.png").convert("RGB"))
    assert final.shape == (32, 64, 3) and np.array_equal(final[:, :32], sent)  # the sent image, grown to the right
    # the gallery's "Edit this image" sends a run's image the same way
    page.get_by_role("tab", name="Gallery").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#gallery img").first).to_be_visible(timeout=30_000)
    page.locator("#gallery img").first.click()
    expect(page.locator("#gallery-status")).to_contain_text(folder.name, timeout=30_000)
    page.locator("#gallery-send").click()
    expect(page.locator("#edit-image canvas").first).to_be_visible(timeout=30_000)
    folder = _edit_and_wait(page, app)
    assert np.array_equal(np.asarray(Image.open(folder / "edit-image.png").convert("RGB")), final)


def test_a_second_prompt_for_a_part_painted_in_magenta(page, app: App, picture: Path) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Edit").click()
    _upload(page, picture)
    expect(page.locator("#edit-image canvas").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)
    _paint(page)  # white: the first prompt's part
    page.locator("#edit-image button[aria-label=Color]").click()
    page.locator("#edit-image menu.swatch button.color").nth(1).click()  # magenta
    page.locator("#edit-image button[aria-label=Color]").click()  # the swatches close
    page.wait_for_timeout(300)
    _paint(page, dx=-120, dy=120)  # magenta: the second prompt's part
    page.locator("#edit-prompt textarea").fill("a red stripe")
    page.locator("#edit-region-prompt textarea").fill("a blue stripe")
    page.locator("#edit-mask-blur input").fill("0")
    page.wait_for_timeout(500)
    _shot(page, "ui-edit-regions.png")
    folder = _edit_and_wait(page, app)
    config = json.loads((folder / "config.json").read_text())
    assert config["prompts"] == "a red stripe @ region-1.png | a blue stripe @ region-2.png"
    white = np.asarray(Image.open(folder / "region-1.png").convert("L")) > 127
    magenta = np.asarray(Image.open(folder / "region-2.png").convert("L")) > 127
    assert white.mean() > 0.01 and magenta.mean() > 0.01 and not (white & magenta).any()
    changed = np.asarray(Image.open(folder / "edit-mask.png").convert("L")) > 127
    assert np.array_equal(changed, white | magenta)
    original = np.asarray(Image.open(picture).convert("RGB"))
    final = np.asarray(Image.open(folder / "final.png").convert("RGB"))
    assert np.array_equal(final[~changed], original[~changed])
    expect(page.locator("#edit-result img").first).to_be_visible(timeout=30_000)
