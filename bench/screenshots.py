"""python -m bench.screenshots RUNS_DIR [--base-model M] [--dataset D] [--out docs/screenshots]

The README's pictures, taken as a person uses the page: `python app.py` serving a copy of RUNS_DIR (e.g. the
runs `python -m bench.clicks` leaves), driven in headless Chromium (Debian's `chromium`, through Playwright).
The app runs in a scratch folder where the base model and the dataset are links with short names, and the
copied runs name them so, as they would read on anyone's machine (no path of this one in the pictures).
Classify: a tweet typed into the chat and its reply; Train: the tab with its settings open; Runs: the table
and the accuracy-per-click plot.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from . import ROOT, STAND_IN, default_dataset
from .http import start_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TWEET = "Finally got tickets for the show tonight, so happy!"


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        box = page.get_by_placeholder("Type a tweet and press Enter")
        box.fill(TWEET)
        box.press("Enter")
        expect(page.locator(".message-row").last).to_contain_text("%", timeout=60_000)
        expect(page.get_by_test_id("highlighted-text")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(out / "classify.png"), full_page=True)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Settings", exact=True).click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "train.png"), full_page=True)
        page.get_by_role("tab", name="Runs").click()
        expect(page.get_by_role("grid", name="Runs (newest first)")).to_be_visible(timeout=15_000)
        page.wait_for_timeout(3000)  # the plot draws
        page.screenshot(path=str(out / "runs.png"), full_page=True)
        browser.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs_dir", type=Path)
    p.add_argument("--base-model", default=str(STAND_IN))
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="screenshots-"))
    model, dataset = Path(args.base_model).expanduser().resolve(), Path(args.dataset).expanduser().resolve()
    (scratch / model.name).symlink_to(model)
    (scratch / dataset.name).symlink_to(dataset)
    shutil.copytree(args.runs_dir, scratch / "runs", ignore=shutil.ignore_patterns("serving", "_checkpoints"))
    for report in (scratch / "runs").rglob("*.json"):
        report.write_text(report.read_text().replace(str(model), model.name).replace(str(dataset), dataset.name))
    args.out.mkdir(parents=True, exist_ok=True)
    app, url = start_app(model.name, "runs", dataset=dataset.name, cwd=scratch)
    try:
        shoot(url, args.out)
    finally:
        app.terminate()
        app.wait(timeout=30)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
