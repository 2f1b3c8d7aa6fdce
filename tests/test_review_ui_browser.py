"""The review UI in headless Chromium (Playwright + Debian's chromium), end to end:

events on the real broker -> `guardstream review` (consumer + UI) -> log in, filter, label with the
keyboard -> the labels are in the store. Screenshots go to test-artifacts/.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and the `playwright` package; never
`playwright install` (no downloads: the system Chromium is used).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.review_support import event_message, make_event, produce
from tests.services import free_port

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SECRET = "correct horse battery staple"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

try:
    import playwright.sync_api  # noqa: F401
    HAVE_PLAYWRIGHT = True
except ImportError:
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} absent: `apt-get install -y chromium` (Debian) to run the browser test"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright not installed (pip install -e '.[test]')"),
]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.cli", *args], cwd=ROOT, input=stdin, text=True,
                          capture_output=True, timeout=60, check=True)


def wait_for_events(port: int, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if json.load(resp)["store"]["events"] >= n:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"review UI on :{port} never saw {n} events")


def test_review_in_a_real_browser(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from consumers.store import open_store

    db = str(tmp_path / "review.db")
    cli("review", "add-reviewer", "alice", "--secret-stdin", "--db", db, stdin=SECRET + "\n")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    at = lambda i: (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")  # noqa: E731
    events = [make_event(tenant="acme", stage="input", categories=("pii",), content_mode="redacted", ts=at(0)),
              make_event(tenant="globex", stage="input", categories=("S10",), ts=at(1)),
              make_event(tenant="acme", stage="output", categories=("S2",), completion="Step one: <b>x</b>", ts=at(2)),
              make_event(tenant="acme", stage="input", categories=("S1",), ts=at(3)),
              make_event(tenant="globex", stage="output", categories=("S9",), ts=at(4))]
    produce(kafka_bootstrap, topic, [event_message(e) for e in events])
    acme_newest_first = [e["event_id"] for e in reversed(events) if e["tenant"] == "acme"]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "review", "--bootstrap", kafka_bootstrap, "--topic", topic,
         "--group", f"{topic}-ui", "--db", db, "--port", str(port), "--session-timeout-ms", "2000",
         "--max-poll-interval-ms", "2500"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        wait_for_events(port, len(events))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page).to_have_url(f"http://127.0.0.1:{port}/login?next=/")
            page.fill("#name", "alice")
            page.fill("#secret", SECRET)
            page.click("#login")
            expect(page.locator("#who")).to_have_text("alice")

            # filter: tenant acme, unreviewed (the default status)
            page.select_option("select[name=tenant]", "acme")
            page.click("#apply")
            rows = page.locator("#queue tbody tr[data-event-id]")
            expect(rows).to_have_count(3)
            assert [rows.nth(i).get_attribute("data-event-id") for i in range(3)] == acme_newest_first
            expect(rows.nth(0)).to_have_class("selected")

            # keyboard triage in the queue: j moves down, u labels the selected row unsafe in place
            page.keyboard.press("j")
            expect(rows.nth(1)).to_have_class("selected")
            page.keyboard.press("u")
            expect(rows.nth(1).locator(".my-label")).to_have_text("confirmed unsafe")
            expect(rows.nth(2)).to_have_class("selected")
            page.screenshot(path=str(ARTIFACTS / "review_queue.png"), full_page=True)

            # open the next one (o), write a note (/), mark it a false positive (f)
            page.keyboard.press("o")
            expect(page.locator("body")).to_have_attribute("data-page", "event")
            assert acme_newest_first[2] in page.url
            expect(page.locator("#content-mode")).to_contain_text("Stored redacted")
            page.keyboard.press("/")
            page.keyboard.type("only an email address, fine")
            page.keyboard.press("Escape")
            page.screenshot(path=str(ARTIFACTS / "review_event.png"), full_page=True)
            page.keyboard.press("f")
            page.wait_for_url(lambda url: acme_newest_first[2] not in url)

            # a ticked category checkbox keeps focus, and u still labels (with the categories ticked);
            # Esc with nothing focused stays on the page (q is "back")
            page.goto(f"http://127.0.0.1:{port}/events/{acme_newest_first[0]}")
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press("Escape")
            assert acme_newest_first[0] in page.url
            expect(page.locator("body")).to_have_attribute("data-page", "event")
            page.keyboard.press("?")
            expect(page.locator("#help")).to_be_visible()
            page.keyboard.press("Escape")  # closes the help, nothing else
            expect(page.locator("#help")).to_be_hidden()
            assert acme_newest_first[0] in page.url
            page.check("input[name=categories][value=S10]")
            assert page.evaluate("document.activeElement.value") == "S10"  # focus stays on the checkbox
            page.keyboard.press("u")
            page.wait_for_url(lambda url: acme_newest_first[0] not in url)
            browser.close()
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert server.returncode == 0, out.decode()[-2000:]

    store = open_store(db)
    first = store.get_event(acme_newest_first[1])
    second = store.get_event(acme_newest_first[2])
    third = store.get_event(acme_newest_first[0])
    store.dispose()
    assert [(lab.reviewer, lab.label, lab.categories) for lab in first.labels] == [("alice", "unsafe", ["S2"])]
    assert [(lab.reviewer, lab.label, lab.note) for lab in second.labels] == [
        ("alice", "safe", "only an email address, fine")]
    assert [(lab.label, lab.categories) for lab in third.labels] == [("unsafe", ["S1", "S10"])]
    assert (ARTIFACTS / "review_queue.png").stat().st_size > 10_000
