"""The page's user-concept controls (issue 10) in headless chromium, over a synthetic index.

Thumbs up/down on result cards, "New concept" from a search, then retrain and suggest.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fill_store, folder_of, write_keyframes
from test_web_e2e import ServerThread, _wait, browser  # noqa: F401 (browser is a fixture)
from vidconcept.index.store import Store
from vidconcept.web import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts-web") / "index"
    store = Store.open(root)
    fill_store(store, 3, 4)
    write_keyframes(store, (40, 120, 200))
    store.close()
    with ServerThread(create_app(Path(root), load_model=False)) as url:
        yield url


def _on(browser, css: str, act, what: str) -> None:
    """``act`` on the element ``css`` finds, found again if the page replaced it meanwhile (a stale
    element raises before the click or the keys reach it, so a retry never acts twice)."""
    from selenium.webdriver.common.by import By

    def attempt(d) -> bool:
        act(d.find_element(By.CSS_SELECTOR, css))
        return True

    _wait(browser, attempt, what)


def _click(browser, css: str) -> None:
    _on(browser, css, lambda e: e.click(), f"could not click {css}")


def _click_button(browser, text: str) -> bool:
    """Click the toolbar button showing ``text`` if it is there and enabled; whether it was clicked."""
    from selenium.webdriver.common.by import By

    for button in browser.find_elements(By.CSS_SELECTOR, "#toolbar-extra button"):
        if button.text == text and button.is_displayed() and button.is_enabled():
            button.click()
            return True
    return False


def test_thumbs_new_concept_retrain_suggest(browser, base_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(base_url + "/?q=person")
    shots = _wait(browser, lambda d: [c.get_attribute("data-shot") for c in d.find_elements(By.CSS_SELECTOR, ".card")],
                  "no result cards")
    _click(browser, f'.card[data-shot="{shots[0]}"] .thumb-up')
    _click(browser, f'.card[data-shot="{shots[1]}"] .thumb-up')
    _click(browser, f'.card[data-shot="{shots[-1]}"] .thumb-down')
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".label-counts").text == "✓ 2 · ✗ 1",
          "the label counts did not follow the clicks")  # each click is a request: wait, on a loaded machine
    _click(browser, "#toolbar-extra button")  # "New concept" shows the name box
    _on(browser, "#toolbar-extra input", lambda e: e.send_keys("mine", Keys.ENTER), "no name box")
    _wait(browser, lambda d: "q=mine" in d.current_url, "the new concept was not searched")
    _wait(browser, lambda d: "match" in d.find_element(By.ID, "status").text, "no results for the new concept")
    first = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".card").get_attribute("data-shot"), "no card")
    _click(browser, f'.card[data-shot="{first}"] .thumb-down')
    _wait(browser, lambda d: _click_button(d, "Retrain"), "no Retrain")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".label-counts").text == "✓ 0 · ✗ 0", "not retrained")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".card").get_attribute("data-shot") != first,
          "the ranking did not update after a thumbs down on the top shot")
    _wait(browser, lambda d: _click_button(d, "Suggest"), "no Suggest")
    _wait(browser, lambda d: "Label these" in d.find_element(By.ID, "status").text, "no suggestions")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_new_videos_get_user_concept_scores_at_ingest(photo_videos, tmp_path):
    """A user concept trained before a video is ingested scores that video's shots too."""
    from vidconcept.api import Index
    from vidconcept.concepts import add_concept, rescore

    first = folder_of(tmp_path / "first", {"a.mp4": photo_videos / "a.mp4"})
    with Index(tmp_path / "idx", create=True) as index:
        index.ingest([first])
        cat = index.search("tabby OR tiger_cat OR egyptian_cat", top=1)[0].shot_id
        add_concept(index, "kitty", positive=[cat])
        index.ingest([photo_videos])  # b.mp4 is new
        at_ingest = {r.shot_id: r.score for r in index.search("kitty", top=50)}
        rescore(index, "kitty")
        rescored = {r.shot_id: r.score for r in index.search("kitty", top=50)}
    assert len(at_ingest) >= 5 and at_ingest.keys() == rescored.keys()  # the new video is scored
    for k in at_ingest:
        assert at_ingest[k] == pytest.approx(rescored[k], abs=1e-5)
