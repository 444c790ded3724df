"""Signed-in roles in headless chromium (issue 33): an editor labels a shot and finds it in the audit log;
a viewer sees no label buttons and a label request forged from the page is refused."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fill_store, write_keyframes
from test_user_concepts_e2e import _click, _click_button, _on
from test_web_e2e import ServerThread, _wait, browser  # noqa: F401 (browser is a fixture)
from vidconcept.api import Index
from vidconcept.concepts import add_concept
from vidconcept.index.store import Store
from vidconcept.web import create_app

pytestmark = pytest.mark.slow
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("accounts-web") / "index"
    store = Store.open(root)
    fill_store(store, 3, 4)
    write_keyframes(store, (40, 200, 120))
    store.close()
    with Index(root) as index:
        add_concept(index, "mine", positive=[1, 2], negative=[3])
        index.add_user("ed", PASSWORD, "editor")
        index.add_user("vi", PASSWORD, "viewer")
    with ServerThread(create_app(Path(root), load_model=False)) as url:
        yield url


def _sign_in(browser, base_url: str, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(base_url + "/?q=mine")
    _wait(browser, lambda d: "/signin" in d.current_url, "not sent to the sign-in page")
    _on(browser, "#user", lambda e: e.send_keys(user), "no user name box")
    _on(browser, "#password", lambda e: e.send_keys(PASSWORD, Keys.ENTER), "no password box")
    _wait(browser, lambda d: "q=mine" in d.current_url and "/signin" not in d.current_url, "not back on the page")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#account .who").text.startswith(user), "not signed in")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card"), "no result cards")


def test_editor_labels_and_sees_it_in_the_audit_log(browser, base_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    _sign_in(browser, base_url, "ed")
    shot = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card")[-1].get_attribute("data-shot"), "no card")
    _click(browser, f'.card[data-shot="{shot}"] .thumb-up')
    _wait(browser, lambda d: _click_button(d, "Retrain"), "no Retrain")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".label-counts").text == "✓ 0 · ✗ 0", "not retrained")
    _click(browser, "#audit-toggle")
    row = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '#audit-rows tr[data-action="concept-refine"]'),
                "the label is not in the audit log")
    assert "ed" in row.text and "mine" in row.text and shot in row.text
    _click(browser, "#sign-out")
    _wait(browser, lambda d: "/signin" in d.current_url, "not signed out")


def test_viewer_has_no_label_buttons_and_a_forged_label_is_refused(browser, base_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    _sign_in(browser, base_url, "vi")
    assert not browser.find_elements(By.CSS_SELECTOR, ".thumb-up, .thumb-down")
    assert not browser.find_elements(By.CSS_SELECTOR, "#toolbar-extra button")
    assert not browser.find_elements(By.ID, "audit-toggle")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/concepts/mine/labels', {method: 'POST', headers: {'content-type': 'application/json'},"
        " body: JSON.stringify({positive: [5]})}).then(r => done(r.status));")
    assert status == 403
    expected = ("status of 401", "status of 403")  # the page before sign-in, and the forged request
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and not any(x in e["message"] for x in expected)]
    assert not errors, errors
