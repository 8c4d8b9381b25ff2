"""A real browser (Debian's Chromium, headless, driven by Playwright) on the app: the Classify tab comes
first and says what serves; click Retrain, wait for the job to finish in the page, type a tweet in the
chat and see a sentiment reply, the probability bars and the Why highlights (one model call), save a
correction and see it waiting in the Train tab. Screenshots of each tab go to pytest's tmp folder
(SCREENSHOTS=folder keeps them elsewhere). Skips where /usr/bin/chromium is absent (`apt-get install chromium`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from finetune import corrections
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


def test_retrain_then_chat_in_the_browser(browser, tiny_model, tiny_dataset, runs_dir, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    shots = Path(os.environ.get("SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(3)
        assert [t.strip() for t in tabs.all_inner_texts()] == ["Classify", "Train", "Runs"]
        expect(page.get_by_text("base model, not fine-tuned yet: retrain in the Train tab")).to_be_visible(
            timeout=30_000)  # the first thing a visitor sees: what serves and how good it is
        page.screenshot(path=str(shots / "first.png"), full_page=True)

        run_id = retrain(page, browser, backend, url, shots)
        label = chat(page, backend, run_id, shots, monkeypatch)
        correct(page, label, runs_dir, shots)

        page.get_by_role("tab", name="Classify").click()
        box = page.get_by_placeholder("Type a tweet and press Enter")
        box.fill("   ")
        box.press("Enter")
        expect(page.get_by_text("the text is empty")).to_be_visible()

        page.get_by_role("tab", name="Runs").click()
        expect(page.get_by_role("grid", name="Runs (newest first)")).to_contain_text(run_id)
        page.screenshot(path=str(shots / "runs.png"), full_page=True)


def retrain(page, browser, backend, url, shots) -> str:
    """Train tab: Retrain, the job line until done, its results; the note "started: …" gone once it ended;
    another browser tab sees the same job. → the run's id."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name=re.compile("Retrain")).click()
    expect(page.get_by_text(re.compile("started: training"))).to_be_visible(timeout=15_000)
    expect(page.locator(".job-line")).to_contain_text("done", timeout=120_000)
    run_id = backend.job.status()["run_id"]
    expect(page.locator(".job-line")).to_contain_text(run_id)
    expect(page.get_by_text("Confusion matrix (rows: true label)")).to_be_visible()
    expect(page.get_by_text(re.compile("started: training"))).to_have_count(0, timeout=15_000)
    page.screenshot(path=str(shots / "train.png"), full_page=True)

    second = browser.new_page()  # another browser tab: the state lives in the server, not the page
    second.goto(url)
    second.get_by_role("tab", name="Train").click()
    expect(second.locator(".job-line")).to_contain_text(f"done · run {run_id}", timeout=30_000)
    second.close()
    return run_id


TWEET = "<b>so happy</b> today, love it"


def chat(page, backend, run_id, shots, monkeypatch) -> str:
    """Classify tab: what serves, a tweet typed and sent; the reply, the Why highlights and the probability
    bars give one label, from one model call. → that label."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Classify").click()
    accuracy = backend.model_info()["test_accuracy"]
    expect(page.get_by_text(f"test accuracy {accuracy:.1%}")).to_be_visible(timeout=15_000)
    calls = count_model_calls(backend, monkeypatch)
    box = page.get_by_placeholder("Type a tweet and press Enter")
    box.fill(TWEET)
    box.press("Enter")
    reply = page.locator(".message-row").filter(has_text=run_id).last
    expect(reply).to_contain_text(re.compile("negative|neutral|positive"), timeout=30_000)
    expect(page.get_by_test_id("user").get_by_text(TWEET)).to_be_visible()  # as text, not markup
    label = re.search("negative|neutral|positive", reply.inner_text()).group()
    why = page.get_by_test_id("highlighted-text")  # the Why panel: the same label, each word highlighted
    expect(why.get_by_test_id("block-label")).to_contain_text(f"Why {label}: “", timeout=15_000)
    words = why.get_by_test_id("highlighted-text:textfield").locator("span.highlighted")
    expect(words).to_have_count(len(TWEET.split()))  # each word has its colour
    expect(words.filter(has_text="happy")).to_have_count(1)
    expect(page.locator(".output-class")).to_have_text(label)  # the probability bars: the same answer
    assert calls == [1], f"one chat message ran the model {calls} times"
    page.screenshot(path=str(shots / "classify.png"), full_page=True)
    return label


def correct(page, label, runs_dir, shots) -> None:
    """Another label picked and saved: the chat confirms it, the Train tab counts it, the file holds it."""
    from playwright.sync_api import expect

    other = next(l for l in ("negative", "neutral", "positive") if l != label)
    page.get_by_role("radio", name=other, exact=True).check()
    page.get_by_role("button", name="Save the correction").click()
    expect(page.get_by_text(f"this tweet is {other}")).to_be_visible(timeout=15_000)
    page.get_by_role("tab", name="Train").click()
    expect(page.get_by_text(re.compile(r"1\s*correction\(s\) from the chat are waiting"))).to_be_visible(
        timeout=15_000)
    page.screenshot(path=str(shots / "correction.png"), full_page=True)
    [saved] = corrections.load(runs_dir)
    assert (saved.text, saved.model_label, saved.corrected_label) == (TWEET, label, other)


def count_model_calls(backend, monkeypatch) -> list[int]:
    """[n]: how many times the serving model was asked (classify or classify_variants) from now on."""
    model, calls = backend.server.model, [0]
    for name in ("classify", "classify_variants"):
        real = getattr(model, name)

        def counted(*args, _real=real, **kwargs):
            calls[0] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(model, name, counted)
    return calls


def test_own_file_preview_and_label_review_in_the_browser(browser, tiny_model, tiny_dataset, runs_dir, tmp_path):
    """A person uploads a Latin-1 CSV with its own column names and sees its rows, balance and report; then,
    back on the app's dataset, asks for likely label errors and excludes one: the exclusion list has it."""
    from playwright.sync_api import expect

    from finetune import exclusions
    from tests.web.test_dataview import latin1_csv

    shots = Path(os.environ.get("SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    csv = latin1_csv(tmp_path / "my tweets.csv")
    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Data: train on your own file, preview it").click()
        expect(page.get_by_text("A single file needs at least 10 rows")).to_be_visible()  # the limits, stated
        page.locator("input[type=file]").first.set_input_files(str(csv))
        expect(page.get_by_text(re.compile(r"60 rows"))).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile("negative 20, neutral 20, positive 20"))).to_be_visible()
        grid = page.get_by_role("grid", name="First rows")
        expect(grid).to_contain_text("café")  # read from Latin-1
        expect(page.get_by_label("text column")).to_have_value("tweet")  # guessed from the file's own columns
        expect(page.get_by_label("label column")).to_have_value("sentiment")
        page.get_by_label("label column").fill("id")  # a wrong pick is refused in words
        page.get_by_label("label column").press("Enter")
        expect(page.get_by_text(re.compile("not sentiments|unknown labels|cannot"))).to_be_visible(timeout=30_000)
        page.screenshot(path=str(shots / "data-wrong-column.png"), full_page=True)
        page.screenshot(path=str(shots / "data.png"), full_page=True)

        page.get_by_label("dataset").fill(str(tiny_dataset))  # back to the app's own dataset: review its rows
        page.get_by_label("dataset").press("Enter")
        expect(page.get_by_label("text column")).to_have_value("text", timeout=30_000)  # its own columns
        expect(page.get_by_text(re.compile(r"300 rows"))).to_be_visible()
        page.get_by_text("Review data: likely label errors").click()
        page.get_by_role("button", name=re.compile("Find likely label errors")).click()
        expect(page.get_by_text(re.compile("look mislabelled"))).to_be_visible(timeout=60_000)
        first = exclusions.open_suspects(runs_dir)[0]["text"]
        page.get_by_label("Pick a suspect").click()
        page.get_by_role("option").first.click()
        page.get_by_role("button", name="Exclude it from training").click()
        expect(page.get_by_text("excluded: the next retrain leaves this tweet out")).to_be_visible(timeout=15_000)
        page.screenshot(path=str(shots / "review.png"), full_page=True)
        assert exclusions.excluded(runs_dir) == {" ".join(first.lower().split())}
