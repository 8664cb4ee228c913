"""The web UI with its jobs on a Ray pool (``python app.py --ray``), in a real browser: one job
made by a Ray worker while the live preview changes, then its result and downloads; a Stop
that cancels the remote job and offers what it kept. Under CI=true it must run, not skip."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.ray_cluster import needs_ray
from tests.webui.app_process import running_app
from tests.webui.test_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    App,
    _grab,
    _shot,
    _uncovered,
    open_page,
    require_chromium,
    tiny_preset,
)

pytestmark = [pytest.mark.browser, needs_ray]  # app.py --ray imports Ray in its own process


@pytest.fixture(scope="module")
def app(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_chromium()
    folder = tmp_path_factory.mktemp("ray-app")
    preset = tiny_preset(folder, steps=40, output={"save_every": 2})
    with running_app(tiny_files, folder, "--preset", str(preset), "--ray", "--ray-workers", "1", "--ray-threads", "1",
                     lazy=False) as (url, outputs):
        yield App(url, outputs)


@pytest.fixture(scope="module")
def page(app: App):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page, failures = open_page(context, app.url)
        yield page
        context.close()
        browser.close()
        assert not failures, f"the server answered with errors: {failures}"


def test_a_job_made_by_a_ray_worker_shows_a_live_preview_then_its_result(page, app: App) -> None:
    from playwright.sync_api import expect

    page.locator("#prompt textarea, #prompt input").first.fill("a harbour made by a worker")
    page.locator("#generate").click()
    preview = page.locator("#preview img").first
    expect(preview).to_be_visible(timeout=120_000)
    shots = []
    for _ in range(60):
        if "done in" in page.locator("#status").inner_text():
            break
        shots.append(_grab(preview))
        if len(shots) == 3:
            assert _uncovered(page, "#preview img")
            _shot(page, "ui-ray-running.png")
        page.wait_for_timeout(200)
    assert len({shot for shot in shots if shot is not None}) >= 2, "the preview never changed"
    expect(page.locator("#status")).to_contain_text("done in", timeout=120_000)
    expect(page.locator("#result img").first).to_be_visible(timeout=30_000)
    (folder,) = [p for p in app.outputs.iterdir() if (p / "final.png").is_file()]
    assert json.loads((folder / "run.json").read_text())["status"] == "done"
    log = (app.outputs.parent / "app.log").read_text()
    assert "Ray worker" in log  # made by the pool, not by the web server
    _shot(page, "ui-ray-done.png")


def test_stop_cancels_the_remote_job_and_offers_what_it_kept(page, app: App) -> None:
    from playwright.sync_api import expect

    field = page.locator("#steps input[type=number]")
    field.fill("2000")
    field.press("Enter")
    page.locator("#generate").click()
    expect(page.locator("#status .status-bar")).to_be_visible(timeout=120_000)
    page.wait_for_timeout(1500)
    page.locator("#stop").click()
    expect(page.locator("#status")).to_contain_text("Stopped at step", timeout=60_000)
    expect(page.locator("#result img").first).to_be_visible(timeout=30_000)
    stopped = [p for p in app.outputs.iterdir() if (p / "run.json").is_file()
               and json.loads((p / "run.json").read_text())["status"] == "stopped"]
    assert len(stopped) == 1 and (stopped[0] / "final.png").is_file()
    _shot(page, "ui-ray-stopped.png")
