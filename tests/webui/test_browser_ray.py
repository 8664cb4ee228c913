"""The web UI with its jobs on a Ray pool (``python app.py --ray``), in a real browser: one job
made by a Ray worker while the live preview changes, then its result and downloads; a Stop
that cancels the remote job and offers what it kept. Under CI=true it must run, not skip."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webui.app_process import running_app
from tests.webui.test_browser import CHROMIUM, CHROMIUM_FLAGS, App, _grab, _shot, _uncovered

pytestmark = pytest.mark.browser

try:
    import ray  # noqa: F401 - app.py --ray imports it in its own process
except ImportError:  # CI installs the ray extra (make test), so there it must run
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Ray is not installed (pip install .[ray])", allow_module_level=True)


@pytest.fixture(scope="module")
def app(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but /usr/bin/chromium is missing; .ci/run installs it with apt-get.")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    folder = tmp_path_factory.mktemp("ray-app")
    preset = folder / "tiny.json"
    preset.write_text(json.dumps({"description": "tiny models in tests",
                                  "config": {"size": [32, 32], "steps": 40, "cutouts": {"cutn": 4},
                                             "output": {"save_every": 2}}}))
    with running_app(tiny_files, folder, "--preset", str(preset), "--ray", "--ray-workers", "1", "--ray-threads", "1",
                     lazy=False) as (url, outputs):
        yield App(url, outputs)


@pytest.fixture(scope="module")
def page(app: App):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        failures: list[str] = []
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        page.goto(app.url)
        page.locator("#generate").wait_for(timeout=60_000)
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
