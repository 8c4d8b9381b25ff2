"""A real browser (Debian's Chromium, headless, driven by Playwright) on the app: click Retrain, wait
for the job to finish in the page, type a tweet in the chat and see a sentiment reply. Screenshots of
each tab go to pytest's tmp folder. Skips where /usr/bin/chromium is absent (`apt-get install chromium`)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import serve, tiny_defaults

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


def test_retrain_then_chat_in_the_browser(browser, tiny_model, tiny_dataset, runs_dir, tmp_path):
    from playwright.sync_api import expect

    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)

        page.get_by_role("button", name=re.compile("Retrain")).click()
        expect(page.locator(".job-line")).to_contain_text("done", timeout=120_000)
        run_id = backend.job.status()["run_id"]
        expect(page.locator(".job-line")).to_contain_text(run_id)
        expect(page.get_by_text("Confusion matrix (rows: true label)")).to_be_visible()
        page.screenshot(path=str(tmp_path / "train.png"), full_page=True)

        second = browser.new_page()  # another browser tab: the state lives in the server, not the page
        second.goto(url)
        expect(second.locator(".job-line")).to_contain_text(f"done · run {run_id}", timeout=30_000)
        second.close()

        page.get_by_role("tab", name="Classify").click()
        box = page.get_by_placeholder("Type a tweet and press Enter")
        box.fill("<b>so happy</b> today, love it")
        box.press("Enter")
        reply = page.locator(".message-row").filter(has_text=run_id).last
        expect(reply).to_contain_text(re.compile("negative|neutral|positive"), timeout=30_000)
        expect(page.get_by_text("<b>so happy</b> today, love it")).to_be_visible()  # markup shown as text
        box.fill("   ")
        box.press("Enter")
        expect(page.get_by_text("the text is empty")).to_be_visible()
        page.screenshot(path=str(tmp_path / "classify.png"), full_page=True)

        page.get_by_role("tab", name="Runs").click()
        expect(page.get_by_role("grid", name="Runs (newest first)")).to_contain_text(run_id)
        page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
