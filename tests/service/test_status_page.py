"""The status page at ``GET /`` in a real browser (headless Chromium via selenium).

`pua serve` publishes through a SIPp UAS that answers every PUBLISH 200 with a
SIP-ETag.  The page must show the publication, then follow the event stream:
a second presentity appears and the removed one disappears without a reload.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.peers.sipp import SippUAS

from .running import RunningService

ALICE = "sip:alice@example.com"
CAROL = "sip:carol@example.com"
TOKEN = "status-page-secret"
WAIT_SECONDS = 15.0
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1440,720",
)

Start = Callable[..., RunningService]


def pidf(entity: str, note: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
        f"<tuple id=\"t1\"><status><basic>open</basic></status><note>{note}</note></tuple>"
        "</presence>"
    )


def _missing(what: str) -> None:
    """A missing browser fails in CI and is skipped elsewhere."""
    if IN_CI:
        pytest.fail(f"browser missing in CI: {what}", pytrace=False)
    pytest.skip(f"browser missing (install with scripts/install-debian-deps.sh): {what}")


def _find(env: str, names: tuple[str, ...]) -> str | None:
    given = os.environ.get(env)
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in names:
        found = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver, with a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("the selenium package (pip install -e '.[dev]')")
    chromium = _find("CHROMIUM_BIN", ("/usr/bin/chromium", "chromium", "chromium-browser"))
    driver_bin = _find("CHROMEDRIVER_BIN", ("/usr/bin/chromedriver", "chromedriver"))
    if chromium is None or driver_bin is None:
        _missing("chromium and chromedriver (Debian packages chromium, chromium-driver)")
    profile = tempfile.mkdtemp(prefix="pua-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which would go online) is not used.
    service = Service(executable_path=driver_bin)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise AssertionError(f"headless Chromium did not start: {exc.msg}") from exc
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _row(driver: Any, pres_uri: str) -> dict[str, str] | None:
    """The texts of the page's row for ``pres_uri`` (None when there is none)."""
    found: dict[str, str] | None = driver.execute_script(
        """
        const row = Array.from(document.querySelectorAll('#rows tr[data-id]'))
            .find(r => r.dataset.presUri === arguments[0]);
        if (!row) return null;
        const text = sel => (row.querySelector(sel) || {}).textContent || '';
        return {id: row.dataset.id, kind: text('.c-kind'), pres: text('.c-pres .uri'),
                event: text('.c-event'), state: row.dataset.state,
                state_text: text('.c-state .badge'), expires: text('.c-expires'),
                answer: text('.c-answer'), etag: text('.c-etag')};
        """,
        pres_uri,
    )
    return found


def _seconds(text: str) -> int:
    """Seconds from the page's countdown ("1h 02m 03s", "59m 58s", "7s")."""
    match = re.fullmatch(r"(?:(\d+)h )?(?:(\d+)m )?(\d+)s", text.strip())
    assert match, f"not a countdown: {text!r}"
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(condition)
    except TimeoutException:
        html = driver.execute_script("return document.body.innerText")
        raise AssertionError(f"the page did not show {what} within {WAIT_SECONDS}s:\n{html}") from None


@pytest.mark.interop
def test_status_page_follows_the_event_stream(
    browser: Any, service: Start, sipp_uas: Callable[[str], SippUAS]
) -> None:
    uas = sipp_uas("publish_200")
    svc = service("--outbound-proxy", uas.uri, token=TOKEN)
    first = svc.rpc(
        "pua.publish",
        {"pres_uri": ALICE, "expires": 600, "content_type": "application/pidf+xml",
         "body": pidf(ALICE, "at the desk")},
    )
    assert "result" in first, first
    alice_etag = first["result"]["record"]["etag"]
    assert alice_etag

    # The token goes in the query: the page must pass it on to /records and /events.
    browser.get(f"{svc.api_url}/?token={TOKEN}")
    alice = _wait(
        browser,
        lambda d: (r := _row(d, ALICE)) and r["state"] == "published" and r,
        "alice's publication",
    )
    assert alice["pres"] == ALICE
    assert alice["kind"] == "publication"
    assert alice["event"] == "presence"
    assert alice["state_text"] == "published"
    assert alice["etag"] == alice_etag
    assert alice["answer"].startswith("200")
    # The server's Expires (3600) counts down in the browser.
    assert 3500 < _seconds(alice["expires"]) <= 3600, alice["expires"]
    _wait(browser, lambda d: d.find_element("id", "conn").get_attribute("data-state") == "live",
          "the live event stream")
    assert browser.find_element("id", "count-pub").text == "1"

    # A mark that a reload would wipe out, and the page's own id from its load.
    browser.execute_script("window.__statusTestMark = 'still here';")
    page_id = browser.execute_script("return window.puaStatus.pageId")

    second = svc.rpc(
        "pua.publish",
        {"pres_uri": CAROL, "expires": 900, "content_type": "application/pidf+xml",
         "body": pidf(CAROL, "in a meeting")},
    )
    assert "result" in second, second
    carol_etag = second["result"]["record"]["etag"]
    assert carol_etag and carol_etag != alice_etag
    assert svc.rpc("pua.unpublish", {"pres_uri": ALICE})["result"] == {"removed": True}

    carol = _wait(
        browser,
        lambda d: (r := _row(d, CAROL)) and r["state"] == "published" and _row(d, ALICE) is None
        and r,
        "carol's publication with alice's gone",
    )
    assert carol["etag"] == carol_etag
    assert browser.find_element("id", "count-pub").text == "1"
    assert browser.find_element("id", "count-sub").text == "0"
    # Changed in place: no navigation happened.
    assert browser.execute_script("return window.__statusTestMark") == "still here"
    assert browser.execute_script("return window.puaStatus.pageId") == page_id
    assert browser.execute_script(
        "return performance.getEntriesByType('navigation').map(e => e.type)"
    ) == ["navigate"]
    # The countdown ticks in the browser, with no event in between.
    reading = _seconds(carol["expires"])
    assert 3500 < reading <= 3600, carol["expires"]
    _wait(browser, lambda d: (r := _row(d, CAROL)) and _seconds(r["expires"]) < reading,
          "carol's expiry counting down")
    log = browser.find_element("id", "log-rows").text
    assert "publication.succeeded" in log and "publication.removed" in log

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT_DIR / "status-page.png"
    shot.unlink(missing_ok=True)
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC)
