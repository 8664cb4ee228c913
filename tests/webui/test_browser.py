"""The web UI in a real browser: Playwright drives Debian's chromium against ``python app.py``
started with tiny official-format weights. Skipped only when chromium is missing and CI is not
set; under CI=true a missing browser fails the run."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.webui.app_process import ROOT, running_app

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / ".pytest_artifacts"))


@dataclass
class App:
    url: str
    outputs: Path


def require_chromium() -> None:
    """Skip when Debian's chromium is missing; under CI=true, fail (browser tests must run there)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but /usr/bin/chromium is missing; .ci/run installs it with apt-get.")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")


def tiny_preset(folder: Path, **config: object) -> Path:
    """A preset file for the tiny models (32x32, 4 cutouts) with ``config`` on top, in ``folder``."""
    path = folder / "tiny.json"
    path.write_text(json.dumps({"description": "tiny models in tests",
                                "config": {"size": [32, 32], "cutouts": {"cutn": 4}, **config}}))
    return path


@pytest.fixture(scope="module")
def app(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_chromium()
    folder = tmp_path_factory.mktemp("app")
    preset = tiny_preset(folder, steps=40, output={"save_every": 4, "video": True})
    with running_app(tiny_files, folder, "--preset", str(preset), lazy=False) as (url, outputs):
        yield App(url, outputs)


@pytest.fixture(scope="module")
def browser(app: App):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_page(context, url: str):
    """A new page of ``context`` at ``url``, once the form is there, and the list of server
    errors (5xx answers) it meets."""
    page = context.new_page()
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    page.goto(url)
    page.locator("#generate").wait_for(timeout=60_000)
    return page, failures


def _open(browser, app: App, width: int = 1400, height: int = 1100):
    context = browser.new_context(viewport={"width": width, "height": height})
    page, failures = open_page(context, app.url)
    return context, page, failures


@pytest.fixture(scope="module")
def context(browser):
    """One browser (its local storage: one owner in the gallery) for the tests of this module."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    yield context
    context.close()


@pytest.fixture
def page(context, app: App):
    page, failures = open_page(context, app.url)
    yield page
    page.close()
    assert not failures, f"the server answered with errors: {failures}"


def _prompt(page):
    return page.locator("#prompt textarea, #prompt input").first


def _set_steps(page, steps: int) -> None:
    field = page.locator("#steps input[type=number]")
    field.fill(str(steps))
    field.press("Enter")


def _status(page) -> str:
    return page.locator("#status").inner_text()


def _runs(app: App) -> list[Path]:
    return sorted(p for p in app.outputs.iterdir() if p.is_dir()) if app.outputs.is_dir() else []


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _grab(image) -> bytes | None:
    """A screenshot of ``image``, or None when it is hidden or replaced while being taken."""
    from playwright.sync_api import Error

    try:
        return image.screenshot(timeout=2000) if image.is_visible() else None
    except Error:
        return None


def _uncovered(page, selector: str) -> bool:
    """True when the topmost element at the centre of ``selector`` belongs to it (no overlay)."""
    return page.evaluate("""(selector) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
        return !!top && !!top.closest(selector);
    }""", selector)


def test_the_preview_is_visible_and_changes_during_a_run_then_stop_offers_the_work(page, app: App) -> None:
    from playwright.sync_api import expect

    assert not page.locator("#preview").is_visible()  # no empty preview box before a run
    _prompt(page).fill("a very long walk")
    _set_steps(page, 2000)
    before = len(_runs(app))
    page.locator("#generate").click()
    preview = page.locator("#preview img").first
    expect(preview).to_be_visible(timeout=120_000)
    page.wait_for_timeout(500)
    first = preview.screenshot()
    assert _uncovered(page, "#preview img")
    expect(page.locator("#status .status-bar")).to_be_visible()
    page.wait_for_timeout(2500)
    second = preview.screenshot()
    assert _uncovered(page, "#preview img")
    assert first != second  # the image forms while the user watches
    _shot(page, "ui-running.png")
    page.keyboard.press("Escape")  # Esc stops
    expect(page.locator("#status")).to_contain_text("Stopped at step", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("Kept in")
    expect(page.locator("#result img").first).to_be_visible(timeout=30_000)
    files = page.locator("#files")
    expect(files).to_contain_text(re.compile(r"frames\s*\.zip"), timeout=30_000)
    expect(files).to_contain_text(re.compile(r"video\s*\.mp4"))
    runs = _runs(app)
    assert len(runs) == before + 1
    record = json.loads((runs[-1] / "run.json").read_text())
    config = json.loads((runs[-1] / "config.json").read_text())
    assert record["status"] == "stopped" and 0 < record["step"] < 2000 and config["steps"] == record["step"]


def test_esc_that_closes_a_dropdown_during_a_run_does_not_stop_it(page, app: App) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("a run that a closed menu leaves alone")
    _set_steps(page, 300)
    page.locator("#generate").click()
    expect(page.locator("#status .status-bar")).to_be_visible(timeout=120_000)
    menu = page.locator("#preset input")
    menu.click()
    options = page.get_by_role("listbox").or_(page.locator("ul.options"))
    expect(options.first).to_be_visible(timeout=10_000)
    _shot(page, "ui-esc-menu-open.png")
    page.keyboard.press("Escape")  # closes the menu, and only the menu
    expect(options.first).to_be_hidden(timeout=10_000)
    page.wait_for_timeout(1500)
    assert "Stop" not in _status(page)
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    _shot(page, "ui-esc-menu-closed-run-done.png")
    record = json.loads((_runs(app)[-1] / "run.json").read_text())
    assert record["status"] == "done" and record["step"] == 300


def test_enter_then_click_starts_one_run_and_the_seed_comes_back(page, app: App) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("one run only")
    before = len(_runs(app))
    _prompt(page).press("Enter")
    page.locator("#generate").click()
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    assert page.locator("#status .status-error").count() == 0
    page.wait_for_timeout(1000)
    assert len(_runs(app)) == before + 1  # Enter and the click made one run
    info = page.locator("#info").inner_text()
    seed = json.loads((_runs(app)[-1] / "config.json").read_text())["seed"]
    assert f"seed {seed}" in info and "one run only" in info and "32x32" in info and "40 steps" in info
    assert page.locator("#seed input").input_value() == "-1"
    page.locator("#reuse-seed").click()
    expect(page.locator("#seed input")).to_have_value(str(seed))
    assert not page.locator("#preview").is_visible() and page.locator("#result img").first.is_visible()


def test_continue_adds_steps_in_a_new_folder_that_names_its_parent(page, app: App) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("continue me")
    page.keyboard.press("Control+Enter")  # Ctrl+Enter generates
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    parent = max(_runs(app), key=lambda folder: folder.stat().st_mtime)
    page.locator("#more-steps input").fill("8")
    page.locator("#continue").click()
    expect(page.locator("#info")).to_contain_text("8 steps", timeout=180_000)
    child = max(_runs(app), key=lambda folder: folder.stat().st_mtime)
    assert child != parent
    record = json.loads((child / "run.json").read_text())
    assert record["parent"] == str(parent) and record["step"] == 8
    assert json.loads((child / "config.json").read_text())["init"]["init_latent"] == str(parent)


def test_errors_stay_in_the_status_line_and_no_button_gives_a_server_error(page) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("")
    page.locator("#generate").click()
    expect(page.locator("#status .status-error")).to_contain_text("The prompt is empty", timeout=60_000)
    page.wait_for_timeout(11_000)  # longer than a toast lives
    said = page.locator("#status .status-error").inner_text()
    assert said.startswith("The prompt is empty") and "error:" not in _status(page)  # the page's, not the CLI's
    _shot(page, "ui-error.png")
    # a model that is not installed is a hint (advice), not an error, and names no server folder
    page.get_by_text("Advanced", exact=True).first.click()
    page.locator("#vqgan input").first.fill("vqgan_gumbel_f8")
    page.keyboard.press("Enter")
    hint = page.locator("#model-hint .status-hint")
    expect(hint).to_be_visible(timeout=30_000)
    assert page.locator("#model-hint .status-error").count() == 0 and "error:" not in hint.inner_text()
    _shot(page, "ui-hint.png")
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#load-settings").click()  # nothing selected
    expect(page.locator("#gallery-status")).to_contain_text(re.compile("select a run in the gallery first", re.I),
                                                            timeout=30_000)


def test_a_preset_sets_only_what_it_names_and_says_what_it_is(page) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("my own prompt")
    page.locator("#seed input").fill("1234")
    page.locator("#preset input").fill("fast")
    page.keyboard.press("Enter")
    expect(page.locator("#preset-info")).to_contain_text("A quick sketch", timeout=30_000)
    expect(page.locator("#steps input[type=number]")).to_have_value("100")
    assert _prompt(page).input_value() == "my own prompt"  # the prompt is the user's
    assert page.locator("#seed input").input_value() == "1234"  # fast names no seed


def test_gallery_lists_the_runs_and_loads_their_settings(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Gallery").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#gallery img").first).to_be_visible(timeout=30_000)
    assert page.locator("#gallery img").count() >= 2
    page.locator("#gallery img").last.click()  # the oldest: the stopped run of the first test
    expect(page.get_by_text("a very long walk").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Load these settings").click()
    expect(_prompt(page)).to_have_value("a very long walk", timeout=30_000)
    # the stopped run recorded the step it reached, so its settings repeat the kept image
    steps = page.locator("#steps input[type=number]")
    expect(steps).not_to_have_value("2000")
    assert 1 <= int(steps.input_value()) < 2000


def test_on_a_phone_the_title_is_short_and_generate_is_in_view(browser, app: App) -> None:
    context, page, failures = _open(browser, app, width=375, height=740)
    try:
        title = page.locator("#title h2")
        line = float(page.evaluate("(el) => parseFloat(getComputedStyle(el).lineHeight)", title.element_handle()))
        assert title.bounding_box()["height"] <= 2 * line + 2
        for selector in ("#prompt", "#generate"):
            box = page.locator(selector).bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= 740, selector
        assert not page.locator("#preview").is_visible()
        _shot(page, "ui-phone.png")
    finally:
        context.close()
    assert not failures


def test_the_animate_tab_grows_a_video_preview_and_writes_an_animation(page, app: App) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Animate").click()
    page.locator("#animate-prompt textarea").fill("a slow zoom")
    for selector, value in (("#frames input", "8"), ("#first-steps input", "2"), ("#steps-per-frame input", "1"),
                            ("#zoom textarea, #zoom input", "1.1")):
        page.locator(selector).first.fill(value)
    page.locator("#animate").click()
    sources: set[str] = set()
    deadline = time.monotonic() + 240
    while "done in" not in page.locator("#animate-status").inner_text() and time.monotonic() < deadline:
        video = page.locator("#animate-video video")
        if video.count():
            sources.add(video.first.get_attribute("src") or "")
        page.wait_for_timeout(150)
    expect(page.locator("#animate-status")).to_contain_text("done in", timeout=5_000)
    assert len(sources - {""}) >= 2  # the preview video was replaced as frames arrived
    folder = max(_runs(app), key=lambda path: path.stat().st_mtime)
    lines = (folder / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[-1])["zoom"] == 1.1
    _shot(page, "ui-animate.png")


def test_the_animate_tab_plots_motion_that_follows_an_uploaded_sound(page, tmp_path: Path) -> None:
    import numpy as np
    from playwright.sync_api import expect

    from tests.animate.test_audio import RATE, tone, write_wav

    sound = write_wav(tmp_path / "beat.wav", np.concatenate([np.zeros(RATE // 2), tone(0.5, 60.0)]))  # bass from 0.5 s
    page.get_by_role("tab", name="Animate").click()
    page.locator("#frames input").first.fill("12")
    page.locator("#zoom textarea, #zoom input").first.fill("1 + 0.04*bass")
    page.get_by_text("Sound: motion that follows the music").click()
    page.locator("#animate-audio input[type=file]").set_input_files(str(sound))
    expect(page.locator("#animate-audio audio, #animate-audio .waveform-container, #animate-audio wave").first
           ).to_be_attached(timeout=30_000)
    page.locator("#animate-plot-button").click()
    plot = page.locator("#animate-plot")
    expect(plot).to_be_visible(timeout=30_000)
    expect(plot.locator("canvas, svg").first).to_be_visible(timeout=30_000)
    expect(page.locator("#animate-sound-plot canvas, #animate-sound-plot svg").first).to_be_visible(timeout=30_000)
    assert page.locator("#animate-status .status-error").count() == 0
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    _shot(page, "ui-animate-sound.png")
    # a bad expression is one sentence in the status line, not a server error
    page.locator("#zoom textarea, #zoom input").first.fill("1 + __import__('os')")
    page.locator("#animate-plot-button").click()
    expect(page.locator("#animate-status")).to_contain_text("--zoom", timeout=30_000)


def test_the_grid_panel_makes_a_labelled_3x2_grid_with_a_live_preview(page, app: App) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("a lighthouse at dusk")
    _set_steps(page, 16)
    page.get_by_text("X/Y grid", exact=True).first.click()
    page.locator("#grid-x input").first.fill("seed")
    page.keyboard.press("Enter")
    page.locator("#grid-x-values textarea, #grid-x-values input").first.fill("1, 2, 3")
    page.locator("#grid-y input").first.fill("cutn")
    page.keyboard.press("Enter")
    page.locator("#grid-y-values textarea, #grid-y-values input").first.fill("2, 4")
    before = set(_runs(app))
    page.locator("#grid-run").click()
    preview = page.locator("#preview img").first
    expect(preview).to_be_visible(timeout=120_000)
    expect(page.locator("#status")).to_contain_text("cell", timeout=60_000)
    shots = []
    for _ in range(40):  # the preview follows the cells as they are made
        if "grid done" in _status(page):
            break
        shots.append(_grab(preview))
        if len(shots) == 2:
            _shot(page, "ui-grid-running.png")
        page.wait_for_timeout(250)
    seen = [shot for shot in shots if shot is not None]
    assert len(set(seen)) >= 2, "the preview never changed during the grid"
    expect(page.locator("#status")).to_contain_text("grid done: 6 of 6 cells", timeout=180_000)
    result = page.locator("#result img").first
    expect(result).to_be_visible(timeout=30_000)
    assert not page.locator("#continue").is_visible()  # a grid is not one image to continue
    (folder,) = set(_runs(app)) - before
    plain = json.loads((folder / "grid.json").read_text())
    assert [c["labels"] for c in plain["cells"]][:2] == [["seed=1", "cutn=2"], ["seed=2", "cutn=2"]]
    assert all(c["status"] == "done" for c in plain["cells"]) and len(plain["cells"]) == 6
    expect(page.locator("#files")).to_contain_text(re.compile(r"grid\s*\.png"))
    width, height = (int(v) for v in result.evaluate("img => [img.naturalWidth, img.naturalHeight]"))
    with Image.open(folder / "grid.png") as drawn:
        assert (width, height) == drawn.size  # the grid itself is shown, not a cell
    _shot(page, "ui-grid.png")


def test_another_browser_sees_none_of_these_runs_in_its_gallery(browser, app: App) -> None:
    assert len(_runs(app)) >= 3
    context, page, failures = _open(browser, app)
    try:
        page.get_by_role("tab", name="Gallery").click()
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(2000)
        assert page.locator("#gallery img").count() == 0
    finally:
        context.close()
    assert not failures


def test_readme_screenshot(page) -> None:
    """Regenerates docs/ui.png, the README's picture of the page after a run."""
    from playwright.sync_api import expect

    _prompt(page).fill("city at night | neon:0.5")
    page.locator("#generate").click()
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    expect(page.locator("#result img").first).to_be_visible()
    page.wait_for_timeout(500)
    path = ROOT / "docs" / "ui.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000
