"""The review UI over HTTP (aiohttp test server, real store): auth, CSRF, escaping, labels, content modes."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.review_ui import create_app
from tests.review_support import make_event
from tests.test_review_store import incoming

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SECRET = "correct horse battery staple"


@pytest.fixture
def seeded(store) -> dict[str, Any]:
    events = {
        "xss": make_event(tenant='"><b>evil</b>', messages=[{"role": "user", "content": XSS}]),
        "redacted": make_event(stage="output", messages=[{"role": "user", "content": "mail me"}],
                               completion="write to [EMAIL]", content_mode="redacted", categories=("pii",)),
        "hashed": make_event(content_mode="hash"),
    }
    store.write_batch([incoming(e, i) for i, e in enumerate(events.values())])
    store.add_reviewer("alice", SECRET)
    return {k: v["event_id"] for k, v in events.items()}


@pytest.fixture
async def client(store, seeded) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(store))) as c:
        yield c


async def login(client: TestClient, secret: str = SECRET) -> Any:
    page = await client.get("/login")
    token = re.search(r'name="login_token" value="([0-9a-f]+)"', await page.text()).group(1)
    return await client.post("/login", data={"name": "alice", "secret": secret, "login_token": token, "next": "/"},
                             allow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html).group(1)


async def test_login_required_and_session_cookie(client: TestClient) -> None:
    redirect = await client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert redirect.status == 303 and redirect.headers["Location"].startswith("/login?next=/")
    api = await client.get("/")
    assert api.status == 401 and "Basic" in api.headers["WWW-Authenticate"]
    assert (await login(client, "wrong secret here")).status == 401
    ok = await login(client)
    assert ok.status == 303
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "alice" not in cookie.split(";")[0]
    page = await client.get("/")
    assert page.status == 200 and 'id="who">alice<' in await page.text()
    assert (await client.get("/healthz")).status == 200


async def test_login_form_needs_its_token(client: TestClient) -> None:
    await client.get("/login")
    forged = await client.post("/login", data={"name": "alice", "secret": SECRET, "login_token": "0" * 64},
                               allow_redirects=False)
    assert forged.status == 403


async def test_basic_auth(client: TestClient) -> None:
    auth = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert (await client.get("/", headers={"Authorization": auth})).status == 200
    bad = "Basic " + base64.b64encode(b"alice:nope").decode()
    assert (await client.get("/", headers={"Authorization": bad})).status == 401


async def test_content_is_escaped_and_csp_set(client: TestClient, seeded) -> None:
    await login(client)
    queue = await client.get("/?status=all")
    html = await queue.text()
    assert "<b>evil</b>" not in html and "&#34;&gt;&lt;b&gt;evil&lt;/b&gt;" in html
    assert "script-src 'self'" in queue.headers["Content-Security-Policy"]
    page = await client.get(f"/events/{seeded['xss']}")
    html = await page.text()
    assert XSS not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<script>" not in html.replace('<script src="/static/review.js', "")  # the only script is ours


async def test_content_modes_are_shown_as_such(client: TestClient, seeded, store) -> None:
    await login(client)
    hashed = await (await client.get(f"/events/{seeded['hashed']}")).text()
    sha = store.get_event(seeded["hashed"]).payload["content"]["sha256"]
    assert "Stored as a hash only" in hashed and sha in hashed
    redacted = await (await client.get(f"/events/{seeded['redacted']}")).text()
    assert "Stored redacted" in redacted and "write to [EMAIL]" in redacted


async def test_labels_need_csrf_and_same_origin(client: TestClient, seeded, store) -> None:
    await login(client)
    event_id = seeded["redacted"]
    page = await client.get(f"/events/{event_id}")
    token = csrf_of(await page.text())
    url = f"/events/{event_id}/labels?status=all"
    form = {"label": "unsafe", "categories": "pii", "note": "confirmed"}
    assert (await client.post(url, data=form, allow_redirects=False)).status == 403
    assert (await client.post(url, data={**form, "csrf_token": "f" * 64}, allow_redirects=False)).status == 403
    cross = await client.post(url, data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"},
                              allow_redirects=False)
    assert cross.status == 403
    assert store.get_event(event_id).labels == []
    ok = await client.post(url, data={**form, "csrf_token": token}, allow_redirects=False)
    assert ok.status == 303  # on to the next event in the queue
    api = await client.post(f"/events/{event_id}/labels", data={"label": "not_sure"},
                            headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert api.status == 200 and (await api.json())["label"] == "not_sure"
    bad = await client.post(f"/events/{event_id}/labels", data={"label": "bogus"},
                            headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert bad.status == 400
    labels = store.get_event(event_id).labels
    assert [(lab.reviewer, lab.label, lab.categories, lab.note) for lab in labels] == [
        ("alice", "unsafe", ["pii"], "confirmed"), ("alice", "not_sure", [], "")]
    history = await (await client.get(f"/events/{event_id}")).text()
    assert "confirmed unsafe" in history and "not sure" in history


async def test_open_redirect_refused(client: TestClient) -> None:
    page = await client.get("/login")
    token = re.search(r'name="login_token" value="([0-9a-f]+)"', await page.text()).group(1)
    resp = await client.post("/login", data={"name": "alice", "secret": SECRET, "login_token": token,
                                             "next": "//evil.example/"}, allow_redirects=False)
    assert resp.headers["Location"] == "/"


async def test_dead_letters_page(client: TestClient, store) -> None:
    from consumers.store import DeadLetter, Position

    store.write_batch([], [DeadLetter(Position("audit", 0, 5), None, b"<i>raw</i>", "malformed JSON: x")])
    await login(client)
    html = await (await client.get("/dead-letters")).text()
    assert "malformed JSON: x" in html and "&lt;i&gt;raw&lt;/i&gt;" in html
    health = json.loads(await (await client.get("/healthz")).text())
    assert health["store"]["dead_letters"] == 1


async def test_failed_logins_are_throttled(client: TestClient) -> None:
    for _ in range(5):
        assert (await login(client, "wrong secret here")).status == 401
    assert (await login(client)).status == 429  # even the right secret waits now


async def test_hostile_query_path_and_form_values_never_500(client: TestClient, seeded: dict[str, Any]) -> None:
    """Found by probing: a huge page number overflowed the OFFSET, and NUL characters in a filter, an event
    id or a label's note made PostgreSQL fail the query: 500s. Now: the page is capped, NUL gets a 400."""
    await login(client)
    html = {"Accept": "text/html"}
    csrf = csrf_of(await (await client.get("/", headers=html)).text())
    event = seeded["xss"]
    for path in ("/?page=99999999999999999999999", "/?page=-3", "/?page=x", "/?since=9999-99-99",
                 "/dead-letters?page=99999999999999999999"):
        response = await client.get(path, headers=html)
        assert response.status == 200, path
    for path in ("/?tenant=a%00b", "/?category=%00", f"/events/{event}?tenant=%00", "/events/%00"):
        response = await client.get(path, headers=html)
        assert response.status == 400, path
    label = await client.post(f"/events/{event}/labels", headers=html,
                              data={"label": "safe", "note": "a\x00b", "csrf_token": csrf})
    assert label.status == 400
    ok = await client.post(f"/events/{event}/labels", headers={"Accept": "application/json", "X-CSRF-Token": csrf},
                           data={"label": "safe", "note": "fine"})
    assert ok.status == 200
