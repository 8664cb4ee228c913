"""The Train tab in a real browser (Debian's chromium through Playwright): upload a few images,
train a tiny VQGAN for 30 steps, and see the loss plot drawn and the reconstruction grid; then
stop a long run and resume it.
Skipped only when chromium is missing and CI is not set; under CI=true a missing browser fails."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.train.vqgan_helpers import write_images
from tests.webui.app_process import running_app
from tests.webui.test_browser import CHROMIUM, CHROMIUM_FLAGS, App, _shot, _uncovered, open_page, require_chromium

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_chromium()
    folder = tmp_path_factory.mktemp("train-app")
    with running_app(tiny_files, folder, "--threads", "1") as (url, outputs):  # tiny convolutions: one thread
        yield App(url, outputs)


def first_run_name(app: App) -> str:
    """The folder name of the first VQGAN the page trained."""
    (run,) = [p.name for p in app.outputs.iterdir() if re.fullmatch(r"train-vqgan-my-vqgan-\d{8}-\d{6}", p.name)]
    return run


def _colours(png: bytes) -> int:
    """How many distinct colours a screenshot holds (a drawn chart has its lines' colours)."""
    with Image.open(io.BytesIO(png)) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_training_draws_the_loss_plot_and_the_reconstructions(app: App, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    images = sorted(write_images(tmp_path / "images", count=8, size=48).glob("*.png"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page, failures = open_page(context, app.url)
        page.get_by_role("tab", name="Train").click()
        plot = page.locator("#train-loss")
        expect(plot).to_be_visible(timeout=30_000)
        empty = _colours(plot.screenshot())
        page.locator("#train-images input[type=file]").set_input_files([str(path) for path in images])
        expect(page.locator("#train-images")).to_contain_text(re.compile(r"007\s*\.png"), timeout=30_000)
        for field, value in (("#train-size", "32"), ("#train-steps", "30"), ("#train-lr", "0.001")):
            page.locator(f"{field} input").fill(value)
        page.locator("#train").click()
        status = page.locator("#train-status")
        expect(status).to_contain_text("Done: the VQGAN my-vqgan trained to step 30", timeout=120_000)
        assert page.locator("#train-status .status-error").count() == 0
        expect(plot.locator("canvas, svg").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1000)  # the last redraw
        drawn = plot.screenshot()
        assert _colours(drawn) > empty + 20, "the loss plot shows no curves"
        assert _uncovered(page, "#train-loss canvas, #train-loss svg")
        grid = page.locator("#train-samples img").first
        expect(grid).to_be_visible(timeout=30_000)
        assert _uncovered(page, "#train-samples img")
        path = _shot(page, "ui-train.png")
        assert path.stat().st_size > 10_000
        for kind in ("total", "L1", "codebook"):  # the legend names the curves
            expect(plot).to_contain_text(kind)

        # the model's files, to download: the official .ckpt and its .yaml
        files = page.locator("#train-files")
        expect(files).to_contain_text(re.compile(r"last\s*\.ckpt"), timeout=30_000)  # the name, its suffix apart
        expect(files).to_contain_text(re.compile(r"last\s*\.yaml"))
        link = files.get_by_role("row", name=re.compile(r"last\s*\.ckpt")).locator("a").first
        fetched = page.request.get(link.get_attribute("href"))
        assert fetched.status == 200 and len(fetched.body()) > 10_000
        assert (app.outputs / first_run_name(app) / "last.ckpt").read_bytes() == fetched.body()

        # the trained model is in another tab's menu as soon as it is opened, without a reload
        page.get_by_role("tab", name="Reconstruct").click()
        page.locator("#reconstruct-vqgan input").click()
        options = page.get_by_role("listbox").or_(page.locator("ul.options"))
        expect(options.first).to_contain_text("my-vqgan.ckpt", timeout=10_000)
        _shot(page, "ui-train-menu.png")
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="Train").click()

        # a long run, stopped after a few steps and resumed from where it stopped
        page.locator("#train-steps input").fill("5000")
        page.locator("#train").click()
        page.wait_for_function("() => Number(document.querySelector('#train-status .status-progress')"
                               "?.dataset.step) >= 10", timeout=60_000)
        page.locator("#train-stop").click()
        expect(status).to_contain_text("Stopped at step", timeout=60_000)
        said = status.inner_text()
        stopped = int(re.search(r"Stopped at step (\d+) of 5000: train-vqgan-my-vqgan-2-", said)[1])
        assert "the VQGAN so far is in the weights folder as my-vqgan-2" in said and 10 <= stopped < 5000
        page.locator("#train-steps input").fill(str(stopped + 10))
        page.locator("#train-resume").click()
        expect(status).to_contain_text(f"Done: the VQGAN my-vqgan-2 trained on to step {stopped + 10} (10 more steps",
                                       timeout=60_000)
        page.close()
        context.close()
        browser.close()
    assert not failures, f"the server answered with errors: {failures}"
    first = [p for p in app.outputs.iterdir() if re.fullmatch(r"train-vqgan-my-vqgan-\d{8}-\d{6}", p.name)]
    second = [p for p in app.outputs.iterdir() if p.name.startswith("train-vqgan-my-vqgan-2-")]
    assert len(first) == len(second) == 1 and (first[0] / "recon-000030.png").is_file()
    assert (second[0] / "last.ckpt").is_file()
