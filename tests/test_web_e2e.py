"""End to end: ingest ``sample_videos/``, serve the app, drive headless Debian chromium.

Selenium talks to Debian's ``chromium-driver`` (``.ci/run`` installs both), so no
browser is downloaded. The screenshot's path is printed as a CI artifact; set
``VIDCONCEPT_ARTIFACTS`` to keep it somewhere else than pytest's temporary folder.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from vidconcept.api import Index
from vidconcept.web import create_app

from conftest import SAMPLE_VIDEOS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1366,820", "--autoplay-policy=no-user-gesture-required"]
WAIT_S = 30

pytestmark = pytest.mark.slow


def _need(ok: bool, reason: str) -> None:
    """Skip on a developer machine without the prerequisite; in CI a missing one is a failure."""
    if not ok:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory) -> Path:
    videos = sorted(SAMPLE_VIDEOS.glob("*.mp4"))
    _need(bool(videos), f"no sample videos in {SAMPLE_VIDEOS} (generate them with sample_videos/make_samples.py)")
    root = tmp_path_factory.mktemp("web") / "index"
    with Index(root, create=True, device="cpu") as index:
        summary = index.ingest(SAMPLE_VIDEOS).to_dict()
    assert summary["videos"] == len(videos) and not summary["failed"], summary
    return root


class ServerThread:
    """uvicorn in a daemon thread on a free loopback port (port 0: the OS picks)."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)


@pytest.fixture(scope="module")
def base_url(sample_index) -> Iterator[str]:
    with ServerThread(create_app(sample_index, load_model=False)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
    except ImportError:
        _need(False, "selenium is not installed (pip install -e '.[test]')")
    _need(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
          "Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _artifact_dir(tmp_path_factory) -> Path:
    path = Path(os.environ.get("VIDCONCEPT_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _best_concept(index_dir: Path) -> str:
    """The query: the concept of the highest score any shot has, so it surely finds shots."""
    with Index(index_dir) as index:
        tops = [index.store.top_concepts(int(shot), 1) for shot in index.store.shot_ids()]
    return max((score, name) for top in tops for name, score in top.items())[1]


def _wait(browser, condition, what: str):
    """Poll ``condition`` until it is truthy; an element the page re-rendered meanwhile is looked up again.

    The page replaces its result cards whenever a request returns (a thumbs click, a retrain), so an
    element found in one poll can be gone by the next call on it: that poll is retried, not failed.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: condition(d), message=what)


def test_browser_query_thumbnails_and_play(browser, base_url, sample_index, tmp_path_factory, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    concept = _best_concept(sample_index)
    browser.get(base_url + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys(concept, Keys.ENTER)
    _wait(browser, lambda d: "q=" in d.current_url, "the query is not in the URL")
    thumbs = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card .thumb img"), "no thumbnails")
    _wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"),
        "thumbnails did not load")
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    shot = httpx.get(f"{base_url}/api/shots/{card.get_attribute('data-shot')}").json()
    thumbs[0].click()
    t = _wait(browser, lambda d: d.execute_script(
        "const v = document.getElementById('video-el');"
        "return v.readyState >= 2 && !v.seeking && v.currentTime > 0 ? v.currentTime : null;"),
        "the video did not seek to the shot (can this chromium decode H.264?)")
    assert shot["start_s"] <= t <= shot["end_s"] + 0.1, (t, shot)
    time.sleep(0.5)  # let it play a little, for the screenshot
    _save_screenshot(browser, tmp_path_factory, capsys)
    end = _wait(browser, lambda d: d.execute_script(
        "const v = document.getElementById('video-el'); return v.paused ? v.currentTime : null;"),
        "the player did not stop at the end of the shot")
    assert shot["start_s"] <= end <= shot["end_s"] + 0.1, (end, shot)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, errors


def test_browser_shows_query_errors(browser, base_url):
    from selenium.webdriver.common.by import By

    browser.get(base_url + "/?q=dgo%20AND%20(")
    status = browser.find_element(By.ID, "status")
    _wait(browser, lambda d: "error" in status.get_attribute("class"), "no error shown for a malformed query")
    assert status.text and "Internal" not in status.text


def _save_screenshot(browser, tmp_path_factory, capsys) -> None:
    path = _artifact_dir(tmp_path_factory) / "web-e2e.png"
    browser.save_screenshot(str(path))
    with capsys.disabled():
        print(f"\n[artifact] web UI screenshot: {path}")


def test_image_upload_finds_its_own_shot(sample_index):
    """POST /api/similar with a keyframe of the index: that shot comes first (real model, real vectors)."""
    from fastapi.testclient import TestClient

    with Index(sample_index) as index:
        hit = index.search(_best_concept(sample_index), top=1)[0]
    with TestClient(create_app(sample_index), base_url="http://localhost") as client:
        with open(hit.keyframe, "rb") as f:
            r = client.post("/api/similar", files={"image": ("frame.jpg", f, "image/jpeg")}, params={"top": 3})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["shot_id"] == hit.shot_id
