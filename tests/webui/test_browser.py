"""The web UI in a real browser: Playwright drives Debian's chromium against ``python app.py``
started with tiny official-format weights. Skipped only when chromium is missing and CI is not
set; under CI=true a missing browser fails the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / ".pytest_artifacts"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but /usr/bin/chromium is missing; .ci/run installs it with apt-get.")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    folder = tmp_path_factory.mktemp("app")
    preset = folder / "tiny.json"
    preset.write_text(json.dumps({"description": "tiny models in tests",
                                  "config": {"size": [32, 32], "steps": 40, "cutouts": {"cutn": 4},
                                             "output": {"save_every": 4, "video": True}}}))
    port = _free_port()
    command = [sys.executable, "app.py", "--port", str(port), "--out", str(folder / "outputs"), "--preset", str(preset),
               "--device", "cpu", *tiny_files.cli_args()]
    log = (folder / "app.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"app.py did not start:\n{(folder / 'app.log').read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(app_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.goto(app_url)
    page.locator("#generate").wait_for(timeout=60_000)
    yield page
    context.close()


def _prompt(page):
    return page.locator("#prompt textarea, #prompt input").first


def test_generate_shows_a_preview_then_the_final_image(page) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("city at night")
    _prompt(page).press("Enter")  # Enter starts a run
    expect(page.locator("#preview img").first).to_be_visible(timeout=120_000)
    expect(page.locator("#status")).to_contain_text("done in", timeout=180_000)
    expect(page.locator("#result img").first).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-generate.png"), full_page=True)
    assert (ARTIFACTS / "ui-generate.png").stat().st_size > 10_000


def test_stop_ends_a_long_run_and_keeps_the_last_image(page) -> None:
    from playwright.sync_api import expect

    _prompt(page).fill("a very long walk")
    steps = page.locator("#steps input[type=number]")
    steps.fill("2000")
    steps.press("Enter")
    page.locator("#generate").click()
    expect(page.locator("#preview img").first).to_be_visible(timeout=120_000)
    started = time.monotonic()
    page.locator("#stop").click()
    expect(page.locator("#status")).to_contain_text("Stopped", timeout=60_000)
    assert time.monotonic() - started < 60
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-stopped.png"), full_page=True)
    expect(page.locator("#status")).to_contain_text("Kept in")
    expect(page.locator("#result img").first).to_be_visible(timeout=30_000)


def test_gallery_lists_the_runs_and_loads_their_settings(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Gallery").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#gallery img").first).to_be_visible(timeout=30_000)
    assert page.locator("#gallery img").count() >= 2  # the two runs of the tests above
    page.locator("#gallery img").first.click()
    expect(page.get_by_text("a very long walk").first).to_be_visible(timeout=30_000)  # newest first
    page.get_by_role("button", name="Load these settings").click()
    expect(_prompt(page)).to_have_value("a very long walk", timeout=30_000)
    # the stopped run recorded the step it reached, so its settings repeat the kept image
    steps = page.locator("#steps input[type=number]")
    expect(steps).not_to_have_value("2000")
    assert 1 <= int(steps.input_value()) < 2000
