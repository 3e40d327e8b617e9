"""The status page at ``GET /`` in a real browser (headless Chromium via selenium).

`pua serve` publishes through a SIPp UAS that answers every PUBLISH 200 with a
SIP-ETag.  The page must show the publication, then follow the event stream:
a second presentity appears and the removed one disappears without a reload.

With a real Kamailio presence server: the page as served already holds the
records, counts and recent events; a subscription shows its last NOTIFY; the
history survives a reload; bodies show on demand; refresh, unpublish and
unsubscribe work from the page; everything from the wire is escaped; and
with a token set, nothing is shown or done without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
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
        return {id: row.dataset.id, kind: text('.c-kind .badge'), source: text('.c-source'),
                pres: text('.c-pres .uri'),
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
    assert alice["source"] == "MI_PUBLISH"
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


# -- the page rendered by the server, last NOTIFY, history, bodies, actions ------

BOB = "sip:bob@example.com"
# What a hostile caller or notifier may put in what the page shows: markup
# in a record id, in a PIDF note (XML-escaped in the document, markup once
# parsed), quotes and ampersands in a URI, and text shaped like the page
# template's own markers.
HOSTILE_ID = '<img src=x onerror="window.__pwned=1"></script>@@INITIAL@@'
HOSTILE_NOTE = "<script>window.__pwned=2</script> & back"
HOSTILE_URI = "sip:o'hara&co@example.com"


def _http(svc: RunningService, method: str, path: str, *, token: str | None = None,
          data: Any = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the API: (status, headers, body), errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(svc.api_url + path, data=body, headers=headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _json_of(svc: RunningService, path: str, token: str | None = None) -> Any:
    status, _, body = _http(svc, "GET", path, token=token)
    assert status == 200, (path, status, body)
    return json.loads(body)


def _sub_row(driver: Any, watcher: str) -> dict[str, str] | None:
    """The texts of the page's subscription row of ``watcher``."""
    found: dict[str, str] | None = driver.execute_script(
        """
        const row = Array.from(document.querySelectorAll('#rows tr[data-kind="subscription"]'))
            .find(r => (r.querySelector('.c-watcher .uri') || {}).textContent === arguments[0]);
        if (!row) return null;
        const text = sel => (row.querySelector(sel) || {}).textContent || '';
        return {id: row.dataset.id, state: row.dataset.state, pres: text('.c-pres .uri'),
                notify: text('.c-notify'), notify_state: text('.c-notify-state'),
                summary: text('.c-notify-summary')};
        """,
        watcher,
    )
    return found


def _click(driver: Any, row_id: str, action: str) -> None:
    driver.find_element("css selector", f'#rows tr[data-id="{row_id}"] .act-{action}').click()


def _shot(driver: Any, name: str) -> None:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT_DIR / name
    shot.unlink(missing_ok=True)
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.interop
def test_status_page_shows_records_history_notify_and_acts(
    browser: Any, service: Start, kamailio: Any
) -> None:
    """With a real Kamailio presence server: the page as served already holds
    the records, counts and history (a browser that runs no script shows
    them); a subscription shows its last NOTIFY, escaped; the history
    survives a reload; a body shows on demand; refresh now, unpublish and
    unsubscribe work from the page."""
    svc = service("--outbound-proxy", kamailio.uri, token=TOKEN)
    alice = svc.rpc("pua.publish", {
        "pres_uri": ALICE, "expires": 600, "content_type": "application/pidf+xml",
        "id": HOSTILE_ID,
        "body": pidf(ALICE, HOSTILE_NOTE.replace("&", "&amp;").replace("<", "&lt;")),
    })
    assert "result" in alice, alice
    carol = svc.rpc("pua.publish", {"pres_uri": CAROL, "expires": 600,
                                    "content_type": "application/pidf+xml",
                                    "body": pidf(CAROL, "in a meeting")})
    assert "result" in carol, carol
    carol_id = carol["result"]["record"]["id"]
    carol_etag = carol["result"]["record"]["etag"]
    subscribed = svc.rpc("pua.subscribe", {"pres_uri": ALICE, "watcher_uri": BOB,
                                           "expires": 600})
    sub_id = subscribed["result"]["record"]["id"]

    # The page as served: records, counts and history in the HTML itself.
    status, _, raw = _http(svc, "GET", "/", token=TOKEN)
    page = raw.decode()
    assert status == 200
    assert 'id="count-pub">2<' in page and 'id="count-sub">1<' in page
    for uri in (ALICE, CAROL, BOB):
        assert f'<span class="mono uri">{uri}</span>' in page
    assert f'data-id="{sub_id}"' in page and f'data-id="{carol_id}"' in page
    assert "publication.succeeded" in page and carol_etag in page
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;&lt;/script&gt;" in page
    assert "<img src=x" not in page and TOKEN not in page

    # A browser that runs no script sees them at once.
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.get(f"{svc.api_url}/?token={TOKEN}")
    _shot(browser, "status-page-first-load.png")
    assert browser.find_element("id", "count-pub").text == "2"
    assert browser.find_element("id", "count-sub").text == "1"
    rows = browser.find_element("id", "rows").text
    assert ALICE in rows and CAROL in rows and BOB in rows
    assert "No publications or subscriptions yet" not in rows
    assert "publication.succeeded" in browser.find_element("id", "log-rows").text
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})

    # With the script: the rows are there right after the load, no fetch awaited.
    browser.get(f"{svc.api_url}/?token={TOKEN}")
    first = _row(browser, CAROL)
    assert first is not None and first["etag"] == carol_etag, first
    assert _sub_row(browser, BOB) is not None
    assert browser.find_element("id", "count-pub").text == "2"

    # The last NOTIFY of the subscription (Kamailio's, with Alice's note).
    notified = _wait(browser, lambda d: (r := _sub_row(d, BOB)) and "& back" in r["summary"] and r,
                     "the subscription's last NOTIFY")
    assert notified["notify_state"] == "active"
    assert HOSTILE_NOTE in notified["summary"]
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements("css selector", "#rows img, #rows script, #log-rows script")
    view = _json_of(svc, f"/subscriptions/{sub_id}", TOKEN)
    assert view["last_notify"]["state"] == "active"
    assert HOSTILE_NOTE in view["last_notify"]["summary"]
    assert _json_of(svc, f"/publications/{carol_id}", TOKEN).get("last_notify") is None
    _wait(browser, lambda d: d.find_element("id", "conn").get_attribute("data-state") == "live",
          "the live event stream")

    # The history survives a reload; it is what /events/recent serves.
    recent = _json_of(svc, "/events/recent", TOKEN)["events"]
    assert [e["type"] for e in recent].count("publication.succeeded") >= 2
    assert any(e["type"] == "notify" and e["watcher_uri"] == BOB for e in recent)
    browser.refresh()
    log = browser.find_element("id", "log-rows").text
    assert "publication.succeeded" in log and "notify" in log and HOSTILE_NOTE in log
    assert "Waiting for events" not in log
    notified = _sub_row(browser, BOB)
    assert notified is not None and HOSTILE_NOTE in notified["summary"]  # from the server

    # Bodies on demand: the NOTIFY's, shown as text in the page.
    _click(browser, sub_id, "body")
    shown = _wait(browser, lambda d: (t := d.find_element("id", "body-text").text) and t,
                  "the NOTIFY body")
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in shown and "<presence" in shown
    assert browser.execute_script("return window.__pwned") is None
    status, headers, body = _http(svc, "GET", f"/publications/{carol_id}/body", token=TOKEN)
    assert status == 200 and b"in a meeting" in body
    assert headers["Content-Type"].startswith("application/pidf+xml")
    assert headers["X-Content-Type-Options"] == "nosniff"

    # Refresh now: Kamailio answers the refresh with a new ETag.
    _click(browser, carol_id, "refresh")
    refreshed = _wait(browser, lambda d: (r := _row(d, CAROL)) and r["etag"] != carol_etag
                      and r["state"] == "published" and r, "carol's refreshed ETag")
    assert [r["etag"] for r in kamailio.presentity_rows(username="carol", domain="example.com")] \
        == [refreshed["etag"]]

    # Unpublish and unsubscribe from the page (two clicks: arm, confirm).
    _click(browser, carol_id, "remove")
    _click(browser, carol_id, "remove")
    _wait(browser, lambda d: _row(d, CAROL) is None, "carol's publication removed")
    assert _http(svc, "GET", f"/publications/{carol_id}", token=TOKEN)[0] == 404
    assert kamailio.presentity_rows(username="carol", domain="example.com") == []
    _click(browser, sub_id, "remove")
    _click(browser, sub_id, "remove")
    _wait(browser, lambda d: _sub_row(d, BOB) is None, "bob's subscription ended")
    assert browser.find_element("id", "count-pub").text == "1"
    assert browser.find_element("id", "count-sub").text == "0"
    assert _http(svc, "GET", f"/subscriptions/{sub_id}/body", token=TOKEN)[0] == 404
    _shot(browser, "status-page-after-actions.png")


def test_status_page_and_actions_need_the_token(service: Start) -> None:
    """With a token set, / without it shows no record and never the token;
    an action (refresh, remove) or a body without it is refused 401, with it
    it is carried out.  Hostile ids and URIs come out escaped."""
    svc = service("--outbound-proxy", "sip:127.0.0.1:9", token=TOKEN)
    created = []
    for uri, ident in ((HOSTILE_URI, HOSTILE_ID), (ALICE, "")):
        status, _, body = _http(svc, "POST", "/publications", token=TOKEN, data={
            "pres_uri": uri, "id": ident, "wait": False,
            "content_type": "application/pidf+xml",
            "body": pidf(uri.replace("&", "&amp;"), "here"),
        })
        assert status == 201, body
        created.append(json.loads(body)["id"])
    hostile_id, alice_id = created

    status, _, raw = _http(svc, "GET", "/")
    page = raw.decode()
    assert status == 200
    assert "example.com" not in page and TOKEN not in page
    assert 'data-state="unauthorized"' in page and 'id="count-pub">0<' in page

    status, _, raw = _http(svc, "GET", "/", token=TOKEN)
    page = raw.decode()
    assert 'id="count-pub">2<' in page and TOKEN not in page
    assert "sip:o&#x27;hara&amp;co@example.com" in page and HOSTILE_URI not in page
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;&lt;/script&gt;@@INITIAL@@" in page
    assert "<img src" not in page
    # The initial state in the page's <script> cannot close it.
    assert page.count("</script>") == 2
    assert "\\u003cimg src=x" in page

    for method, path in (("POST", f"/publications/{alice_id}/refresh"),
                         ("DELETE", f"/publications/{alice_id}"),
                         ("GET", f"/publications/{alice_id}/body"),
                         ("GET", "/events/recent")):
        assert _http(svc, method, path)[0] == 401, path
        assert _http(svc, method, path, token="wrong")[0] == 401, path
    status, _, body = _http(svc, "POST", f"/publications/{alice_id}/refresh", token=TOKEN)
    assert status == 202, body
    status, _, body = _http(svc, "GET", f"/publications/{hostile_id}/body", token=TOKEN)
    # Nothing was accepted by a server yet (no one listens): no body is held.
    assert status == 404, body
    assert _http(svc, "POST", "/subscriptions/not-an-id/refresh", token=TOKEN)[0] == 404
