"""Security of a gateway that holds the upstream key, one test per property (docs/reliability.md §4)."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from proxy.audit_kafka import KafkaAuditSink
from proxy.auth import KeyRing, hash_key
from proxy.config import AuditConfig, ClientKey, Settings
from proxy.demo_upstream import DemoUpstream
from proxy.upstream import FORWARDED_REQUEST_HEADERS
from tests import services
from tests.conftest import keyword_settings
from tests.netfault import TcpRelay
from tests.proxy_harness import ProxyHarness
from tests.test_audit_kafka import make_event
from tests.test_cache_redis import _make_tls_files

ROOT = Path(__file__).resolve().parents[1]
CHAT = "/v1/chat/completions"


def ask(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def post(url: str, body: Any = None, headers: dict[str, str] | None = None, *, raw: bytes | None = None,
               method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, json=body if raw is None else None, data=raw, headers=headers) as r:
            return r.status, dict(r.headers), await r.read()


# -- client keys ---------------------------------------------------------------------------------------
def test_client_keys_are_stored_hashed_and_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"client-key-{i}" for i in range(5)]
    ring = KeyRing([ClientKey(sha256=hash_key(k), tenant=f"t{i}") for i, k in enumerate(keys)])
    assert not any(k.encode() in repr(vars(ring)).encode() for k in keys)  # only digests are held
    with pytest.raises(ValidationError):  # the config takes digests, never a key in clear
        ClientKey(sha256="client-key-0")
    calls: list[int] = []
    real = hmac.compare_digest
    monkeypatch.setattr("proxy.auth.hmac.compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for token, tenant in [(keys[0], "t0"), (keys[4], "t4"), ("wrong", None)]:
        calls.clear()
        principal = ring.authenticate(f"Bearer {token}")
        assert (principal.tenant if principal else None) == tenant
        assert len(calls) == len(keys)  # every stored digest compared, wherever (or whether) the key matches
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "bearer\tx"):
        assert ring.authenticate(bad) is None


def test_each_key_gets_its_tenant_and_policy(tmp_path: Path) -> None:
    base = keyword_settings(tmp_path)
    strict = base.policies["default"].model_dump()
    lenient = {**strict, "actions": {"secret": "flag", "pii": "flag", "default": "flag"}}
    settings = Settings.model_validate({
        **base.model_dump(), "policies": {"strict": strict, "lenient": lenient},
        "client_keys": [{"sha256": hash_key("key-acme"), "tenant": "acme", "policy": "strict"},
                        {"sha256": hash_key("key-globex"), "tenant": "globex", "policy": "lenient"}]})
    h = ProxyHarness(settings).start()
    try:
        results = {key: h.call(post(h.base_url + CHAT, ask("hunter2 please"), {"authorization": f"Bearer {key}"}))
                   for key in ("key-acme", "key-globex", "key-unknown")}
        h.call(h.state.audit.close())
    finally:
        h.stop()
    assert results["key-acme"][0] == 400 and json.loads(results["key-acme"][2])["error"]["code"] == "content_filter"
    assert results["key-globex"][0] == 200
    assert results["key-unknown"][0] == 401
    events = [json.loads(x) for x in Path(settings.audit.jsonl_path).read_text().splitlines()]
    seen = {(e["tenant"], e["policy"], e["stage"], e["action"]) for e in events}
    assert ("acme", "strict", "input", "block") in seen and ("globex", "lenient", "input", "flag") in seen
    assert {e["tenant"] for e in events} == {"acme", "globex"}


# -- the upstream key ----------------------------------------------------------------------------------
UPSTREAM_KEY = "sk-upstream-LEAKCHECK-7f3a9c21d8"


class HostileUpstream(DemoUpstream):
    """An upstream that echoes the Authorization header it received into its answers, by model name."""

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        model, auth = body.get("model"), request.headers.get("authorization", "")
        if model == "echo-401":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {auth}",
                                                "type": "invalid_request_error", "param": None,
                                                "code": "invalid_api_key"}}, status=401,
                                     headers={"x-echo": auth, "www-authenticate": auth})
        if model == "echo-200":
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": f"key: {auth}"}}]})
        if model == "redirect":
            raise web.HTTPTemporaryRedirect(f"http://evil.invalid/?k={auth}", text=f"go {auth}")
        if model == "slow":
            await asyncio.sleep(2)
        if model == "cut":
            assert request.transport is not None
            request.transport.close()
        if model == "leaky-answer":
            self.answer = lambda b: "the password is hunter2"
        return await super()._generate(request, chat) if model != "echo-401" else web.Response()


def test_upstream_key_never_leaks(tmp_path: Path) -> None:
    """Every error path driven with a recognisable upstream key; the key is in no response, log line
    (debug level), audit event or error, although the upstream received it and echoed it back."""
    upstream = HostileUpstream()
    loop = asyncio.new_event_loop()
    import threading

    threading.Thread(target=loop.run_forever, daemon=True).start()
    runner, up_url = asyncio.run_coroutine_threadsafe(upstream.start(), loop).result(10)
    port = services.free_port()
    config = tmp_path / "guardstream.yaml"
    config.write_text(f"""
server: {{max_body_bytes: 5000}}
upstream: {{read_timeout_s: 0.5}}
client_keys: [{{sha256: {hash_key("client-key")}, tenant: acme}}]
evaluators:
  secrets: {{type: "tests.keyword_evaluator:create", on_error: fail_closed,
            options: {{words: [hunter2], category: secret}}}}
policies:
  default: {{input: {{evaluators: [secrets]}}, output: {{evaluators: [secrets]}}}}
audit: {{jsonl_path: {tmp_path / "audit.jsonl"}, content: full, sample_allowed: 1.0}}
""")
    env = {**os.environ, "UPSTREAM_KEY": UPSTREAM_KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--upstream", up_url,
                             "--config", str(config), "--upstream-key-env", "UPSTREAM_KEY", "--log-level", "debug"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    good = {"authorization": "Bearer client-key"}
    responses: list[tuple[int, dict[str, str], bytes]] = []
    try:
        services.wait_for_port(port, timeout=20)

        async def drive() -> None:
            calls = [
                post(base + CHAT, ask("hi"), {"authorization": "Bearer wrong"}),  # 401
                post(base + CHAT, ask("hi"), {"authorization": f"Bearer {UPSTREAM_KEY}"}),  # the key as a client key
                post(base + CHAT, None, good, raw=b"{not json"),  # 400
                post(base + CHAT, {"model": 1, "messages": []}, good),  # 400 validation
                post(base + CHAT, ask("x" * 6000), good),  # 413
                post(base + "/v1/nope", ask("hi"), good),  # 404
                post(base + CHAT, None, good, method="GET"),  # 405
                post(base + CHAT, ask("hunter2"), good),  # input blocked
                post(base + CHAT, {**ask("tell me"), "model": "leaky-answer"}, good),  # output blocked
                post(base + CHAT, {**ask("hi"), "model": "echo-401"}, good),  # upstream 401 echoing the key
                post(base + CHAT, {**ask("hi"), "model": "echo-200"}, good),  # an answer echoing the key
                post(base + CHAT, {**ask("hi"), "model": "redirect"}, good),  # 307 with the key in Location
                post(base + CHAT, {**ask("hi"), "model": "error-503"}, good),  # upstream 5xx
                post(base + CHAT, {**ask("hi"), "model": "garbage"}, good),  # 502 bad response
                post(base + CHAT, {**ask("hi"), "model": "slow"}, good),  # 504
                post(base + CHAT, {**ask("hi"), "model": "cut"}, good),  # 502 disconnected
                post(base + CHAT, {**ask("hi"), "model": "cut-stream", "stream": True}, good),  # stream cut
                post(base + CHAT, {**ask("hi"), "stream": True}, good),  # a normal stream
                post(base + "/v1/models", None, good, method="GET"),
                post(base + "/readyz", None, method="GET"),
                post(base + "/metrics", None, method="GET"),
                post(base + "/openapi.json", None, method="GET"),
            ]
            for call in calls:
                responses.append(await call)
            await runner.cleanup()  # the upstream goes away
            responses.append(await post(base + CHAT, ask("hi"), good))  # 502 unreachable

        asyncio.run_coroutine_threadsafe(drive(), loop).result(60)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
    statuses = [r[0] for r in responses]
    assert statuses == [401, 401, 400, 400, 413, 404, 405, 400, 200, 401, 200, 307, 503, 502, 504, 502, 200, 200,
                        200, 200, 200, 200, 502], statuses
    assert any(UPSTREAM_KEY in r["headers"].get("Authorization", "") for r in upstream.requests)  # it was used
    key = UPSTREAM_KEY.encode()
    for status, headers, body in responses:
        assert key not in body and key not in json.dumps(headers).encode(), (status, body[:300])
    assert UPSTREAM_KEY not in out.decode() and UPSTREAM_KEY not in err.decode()
    audit = (tmp_path / "audit.jsonl").read_text()
    assert audit.count("\n") >= 5 and UPSTREAM_KEY not in audit
    assert b"[upstream key redacted]" in responses[9][2]  # what the 401 echo became


# -- the upstream URL ----------------------------------------------------------------------------------
class Recorder:
    """Any HTTP server a client might try to aim the proxy at: records what reaches it."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    async def start(self) -> tuple[web.AppRunner, int]:
        async def any_request(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path_qs}")
            return web.json_response({"evil": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_request)
        runner = web.AppRunner(app)
        await runner.setup()
        port = services.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, port


def test_clients_cannot_choose_the_upstream(tmp_path: Path) -> None:
    h = ProxyHarness(keyword_settings(tmp_path)).start()
    evil = Recorder()
    try:
        evil_runner, evil_port = h.call(evil.start())
        target = f"127.0.0.1:{evil_port}"
        url = f"http://{target}"
        headers = {"Host": target, "X-Forwarded-Host": target, "X-Forwarded-Proto": "http", "X-Upstream": url,
                   "Forwarded": f"host={target};proto=http", "X-Original-URL": url + CHAT, "X-Rewrite-URL": CHAT,
                   "X-Forwarded-Server": target, "X-Host": target, "X-Real-IP": "127.0.0.1",
                   "X-Forwarded-Port": str(evil_port), "X-Forwarded-Prefix": url}
        body = ask("hi", base_url=url, api_base=url, upstream=url, url=url, endpoint=url)
        results = [h.call(post(h.base_url + CHAT, body, headers)),
                   h.call(post(h.base_url + CHAT, {**body, "stream": True}, headers)),
                   h.call(post(h.base_url + "/v1/models", None, headers, method="GET"))]
        # absolute-form request target naming the other host
        with socket.create_connection(("127.0.0.1", int(h.base_url.rsplit(":", 1)[1]))) as sock:
            payload = json.dumps(body).encode()
            sock.sendall(f"POST {url}{CHAT} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        h.call(evil_runner.cleanup())
    finally:
        h.stop()
    assert [r[0] for r in results] == [200, 200, 200] and answer.startswith(b"HTTP/1.1 200")
    assert evil.hits == []  # nothing reached the host the client named
    assert len(h.upstream.requests) == 4  # everything went to the configured upstream
    forwarded = [r for r in h.upstream.requests if r["body"]]
    assert all(r["body"]["base_url"] == url for r in forwarded)  # body fields are the upstream's to ignore
    assert all(r["headers"]["Host"] == h.upstream_url.removeprefix("http://") for r in h.upstream.requests)


def test_request_headers_are_forwarded_by_allow_list(tmp_path: Path) -> None:
    settings = keyword_settings(tmp_path, client_keys=[{"sha256": hash_key("client-key")}])
    h = ProxyHarness(settings).start()
    sent = {"authorization": "Bearer client-key", "cookie": "session=abc", "proxy-authorization": "Basic xyz",
            "x-api-key": "client-secret", "api-key": "client-secret", "x-forwarded-for": "10.0.0.1",
            "x-forwarded-host": "evil", "x-forwarded-proto": "https", "x-real-ip": "10.0.0.2",
            "openai-organization": "org-1", "openai-project": "proj-1", "user-agent": "tester/1",
            "x-stainless-lang": "python", "x-custom": "nope", "te": "trailers", "upgrade": "h2c",
            "x-request-id": "req-allow-list-1"}
    try:
        for body in (ask("hi"), ask("hi", stream=True)):
            assert h.call(post(h.base_url + CHAT, body, sent))[0] == 200
    finally:
        h.stop()
    allowed = set(FORWARDED_REQUEST_HEADERS) | {"content-type", "content-length", "x-request-id", "authorization",
                                                "host", "accept-encoding"}
    for request in h.upstream.requests:
        got = {k.lower(): v for k, v in request["headers"].items()}
        assert set(got) <= allowed, set(got) - allowed
        assert got["authorization"] == "Bearer sk-upstream-SECRET-0000"  # ours, never the client's
        assert got["openai-organization"] == "org-1" and got["user-agent"] == "tester/1"
        assert got["x-request-id"] == "req-allow-list-1"
        for name in ("cookie", "proxy-authorization", "x-api-key", "api-key", "x-forwarded-for", "x-forwarded-host",
                     "x-forwarded-proto", "x-real-ip", "x-custom", "upgrade"):
            assert name not in got


# -- limits --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", ask("hi", n=5), "n"),
    ("/v1/completions", {"model": "m", "prompt": "hi", "n": 5}, "n"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}] * 11}, "messages"),
])
def test_limits_on_n_and_messages(tmp_path: Path, path: str, body: dict, param: str) -> None:
    h = ProxyHarness(keyword_settings(tmp_path, server={"max_n": 4, "max_messages": 10})).start()
    try:
        status, _, raw = h.call(post(h.base_url + path, body))
    finally:
        h.stop()
    assert status == 400 and json.loads(raw)["error"]["param"] == param and h.upstream.requests == []


# -- TLS to Kafka --------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make test certificates")
async def test_kafka_audit_over_tls(tmp_path: Path, topic: str) -> None:
    """A TLS listener (tests/netfault.TcpRelay terminating TLS) in front of a tansu broker that advertises it:
    the producer verifies the broker against `ssl_cafile`; an unknown CA is refused and events stay logged."""
    ca, crt, key = _make_tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    relay_port = services.free_port()
    broker = services.start_kafka(advertised_port=relay_port)
    relay = TcpRelay(broker.port, relay_port, ssl=context).start()
    bootstrap = f"127.0.0.1:{relay_port}"
    try:
        sink = KafkaAuditSink.from_config(AuditConfig(kafka_bootstrap=bootstrap, topic=topic, spool_dir=str(tmp_path / "a"),
                                                      security_protocol="SSL", ssl_cafile=str(ca)))
        await sink.start()
        events = [make_event(i) for i in range(5)]
        for event in events:
            sink.emit(event)
        while sink.counts["sent"] + sink.counts["replayed"] < 5:
            await asyncio.sleep(0.05)
        assert sink._producer.config["security_protocol"] == "SSL"
        await sink.close()

        (tmp_path / "other").mkdir()
        other_ca, _, _ = _make_tls_files(tmp_path / "other")
        untrusted = KafkaAuditSink(bootstrap, topic, spool_dir=tmp_path / "b", security_protocol="SSL",
                                   ssl_cafile=str(other_ca), flush_timeout_s=0.5)
        await untrusted.start()
        untrusted.emit(make_event(99))
        for _ in range(100):  # the bootstrap gives up after 2 s
            if untrusted.state()["last_error"]:
                break
            await asyncio.sleep(0.05)
        state = untrusted.state()
        assert not state["broker_up"] and state["spool_depth"] == 1 and state["last_error"]  # handshake refused
        await untrusted.close()

        from kafka import KafkaConsumer

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=str(ca),
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
        got = {json.loads(m.value)["event_id"] for m in consumer}
        consumer.close()
        assert got == {e["event_id"] for e in events}
    finally:
        relay.stop()
        broker.stop()


# -- audit content ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["redacted", "hash"])
def test_audit_events_can_be_stored_redacted_or_hashed(tmp_path: Path, mode: str) -> None:
    settings = keyword_settings(tmp_path, audit={"jsonl_path": str(tmp_path / "audit.jsonl"), "content": mode})
    h = ProxyHarness(settings).start()
    email, card = "jane.doe@example.com", "4111 1111 1111 1111"
    try:
        status, _, _ = h.call(post(h.base_url + CHAT, ask(f"mail {email}, card {card}")))  # pii: flagged
        h.call(h.state.audit.close())
    finally:
        h.stop()
    assert status == 200
    events = [json.loads(x) for x in Path(settings.audit.jsonl_path).read_text().splitlines()]
    assert events and all(email not in json.dumps(e) and card not in json.dumps(e) for e in events)
    content = events[0]["content"]
    assert len(content["sha256"]) == 64
    if mode == "hash":
        assert content == {"mode": "hash", "messages": None, "completion": None, "sha256": content["sha256"]}
    else:
        try:
            import evaluators.rules.pii  # noqa: F401
        except ImportError:  # no PII scanner installed: the recorder keeps only the digest rather than clear text
            assert content["mode"] == "hash" and content["messages"] is None
        else:
            assert content["mode"] == "redacted" and "mail [" in content["messages"][0]["content"]
