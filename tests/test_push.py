"""WebSub push and inbound hooks through the real App: a local hub (tests/fakes/fake_hub.py),
the loopback feed server and the fake Discord. The App's HTTP server listens on a free
loopback port, which is also its http.public_url."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.models import FeedInfo
from bot.net import Fetcher, FetchError, NetSettings
from bot.sources.jsonfeed import parse_json_feed
from bot.websub import discover, parse_link_header, signature_matches
from tests.conftest import FeedServer
from tests.fakes.fake_hub import FakeHub
from tests.relay import ENTRIES, Relay, feed

TOKEN = "t" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    made = FakeHub()
    await made.start()
    yield made
    await made.close()


def push_config(port: int, extra: str = "") -> str:
    return f'[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n{extra}'


def announce(feed_server: FeedServer, hub: FakeHub, entries: list[tuple[str, str, str]]) -> str:
    """Serve the feed with Link headers naming the hub; returns the topic URL."""
    topic = feed_server.url("/news.xml")
    doc = feed(entries)
    doc.headers["Link"] = f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'
    feed_server.docs["/news.xml"] = doc
    return topic


async def subscribed(relay: Relay, hub: FakeHub, topic: str) -> None:
    """The subscriber asks the hub, which verifies through the App's callback."""
    assert relay.app.websub is not None
    assert await relay.app.websub.tick() == 1
    await hub.wait_for_subscription(topic)


async def delivered(relay: Relay, name: str, count: int) -> list[Any]:
    for _ in range(100):
        await relay.app.poller.flush()
        await relay.app.deliverer.deliver_due()
        messages = relay.messages(name)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.02)
    return relay.messages(name)


def atom(topic: str, entries: list[tuple[str, str]]) -> bytes:
    parts = "".join(
        f"<entry><id>{key}</id><title>{title}</title>"
        f'<link href="https://example.com/{key}"/><updated>2026-12-01T10:00:00Z</updated>'
        f"<summary>pushed</summary></entry>"
        for key, title in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>Harbour News</title><link rel="self" href="{topic}"/>{parts}</feed>'
    ).encode()


async def test_a_pushed_item_is_posted_once_even_when_a_poll_finds_it_too(
    relay: Callable[..., Any], feed_server: FeedServer, hub: FakeHub
) -> None:
    port = free_port()
    r: Relay = await relay({"news": ""}, config_extra=push_config(port))
    topic = announce(feed_server, hub, [("a3", "Third story", "New"), *ENTRIES])
    await r.poll_and_deliver()  # a changed document: its hub is discovered
    await subscribed(r, hub, topic)
    request = hub.requests[-1]
    assert request["hub.mode"] == "subscribe"
    assert request["hub.callback"].startswith(f"http://127.0.0.1:{port}/websub/")
    assert len(request["hub.secret"]) >= 32

    statuses = await hub.publish(topic, atom(topic, [("a4", "Pushed story")]))
    assert statuses == [202]
    messages = await delivered(r, "news", 2)
    assert [m.embeds[0]["title"] for m in messages] == ["Third story", "Pushed story"]

    # the safety poll finds the same item in the feed: no second post
    announce(
        feed_server, hub, [("a4", "Pushed story", "pushed"), ("a3", "Third story", "New"), *ENTRIES]
    )
    await r.poll_and_deliver()
    assert len(r.messages("news")) == 2


async def test_a_bad_or_missing_signature_is_acknowledged_and_ignored(
    relay: Callable[..., Any], feed_server: FeedServer, hub: FakeHub
) -> None:
    port = free_port()
    r: Relay = await relay({"news": ""}, config_extra=push_config(port))
    topic = announce(feed_server, hub, [("a3", "Third story", "New"), *ENTRIES])
    await r.poll_and_deliver()
    await subscribed(r, hub, topic)
    body = atom(topic, [("a9", "Forged story")])
    assert await hub.publish(topic, body, secret="not-the-secret") == [202]
    assert await hub.publish(topic, body, algorithm=None) == [202]
    assert len(await delivered(r, "news", 2)) == 1
    assert (await r.app.store.counts())["items"] == 3


async def test_hook_requests_are_relayed_once_per_delivery_id(
    relay: Callable[..., Any], feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    template = (
        "**{headers.x-github-event}** on {body.repository.full_name}: {body.head_commit.message}"
    )
    r: Relay = await relay(
        {"news": ""},
        config_extra=push_config(port),
        inbound={"ci": f'token = "{TOKEN}"\ntemplate = "{template}"'},
    )
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    payload = {"repository": {"full_name": "feedhook/feedhook"}, "head_commit": {"message": "fix"}}
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(url, json=payload, headers=headers) as resp:
                assert resp.status == 202
        async with session.post(url + "x", json=payload) as resp:
            assert resp.status == 404
        async with session.post(url, data=b"{not json") as resp:
            assert resp.status == 400
        async with session.post(url, data=b"[" + b" " * (300 * 1024) + b"]") as resp:
            assert resp.status == 413
    messages = await delivered(r, "ci", 1)
    assert [m.content for m in messages] == ["**push** on feedhook/feedhook: fix"]
    assert TOKEN not in caplog.text


def test_link_headers_and_document_links_name_the_hub_and_topic() -> None:
    links = parse_link_header(
        '<https://hub.example/>; rel="hub", </feed>; rel=self', base="https://e.com/x"
    )
    assert links == [
        ("https://hub.example/", frozenset({"hub"})),
        ("https://e.com/feed", frozenset({"self"})),
    ]
    info = FeedInfo("t", None, None, "atom", hub="https://doc-hub/", self_url="https://e.com/a")
    found = discover({}, info, url="https://e.com/fetched")
    assert (found.hub, found.topic) == ("https://doc-hub/", "https://e.com/a")
    headers = {"Link": '<https://header-hub/>; rel="hub"'}
    found = discover(headers, info, url="https://e.com/fetched")
    assert (found.hub, found.topic) == ("https://header-hub/", "https://e.com/a")


@pytest.mark.parametrize("method", ["sha1", "sha256", "sha384", "sha512"])
def test_signatures_of_every_method_the_spec_names(method: str) -> None:
    body = b"<feed/>"
    digest = hmac.new(b"s3cret", body, getattr(hashlib, method)).hexdigest()
    assert signature_matches("s3cret", body, f"{method}={digest}")
    assert not signature_matches("other", body, f"{method}={digest}")
    assert not signature_matches("s3cret", body + b" ", f"{method}={digest}")
    assert not signature_matches("s3cret", body, None)
    assert not signature_matches("s3cret", body, f"md5={digest}")


async def test_pushed_requests_are_counted_in_metrics(
    relay: Callable[..., Any], feed_server: FeedServer
) -> None:
    port = free_port()
    r: Relay = await relay(
        {"news": ""},
        config_extra=push_config(port),
        inbound={"ci": f'token = "{TOKEN}"\ntemplate = "{{body.text}}"'},
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for body in ({"text": "one"}, {"text": "two"}):
            async with session.post(f"{base}/hooks/{TOKEN}", json=body) as resp:
                assert resp.status == 202
        async with session.post(f"{base}/hooks/{'u' * 40}", json={}) as resp:
            assert resp.status == 404
        async with session.post(f"{base}/websub/nobody", data=b"<feed/>") as resp:
            assert resp.status == 410
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "feedhook_push_requests"
    ]
    counted = {
        (s.labels["kind"], s.labels["outcome"]): s.value
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counted == {("hook", "accepted"): 2.0, ("hook", "unknown"): 1.0}
    assert [m.content for m in await delivered(r, "ci", 2)] == ["one", "two"]


def test_a_json_feed_names_its_websub_hub_and_topic() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Harbour Notes",
        "feed_url": "https://harbour.example/feed.json",
        "hubs": [
            {"type": "rssCloud", "url": "https://cloud.example/"},
            {"type": "WebSub", "url": "https://hub.example/"},
        ],
        "items": [],
    }
    info = parse_json_feed(
        json.dumps(doc).encode(), url="https://harbour.example/feed.json", headers={}
    ).info
    assert (info.hub, info.self_url) == (
        "https://hub.example/",
        "https://harbour.example/feed.json",
    )


async def test_a_hub_that_moved_is_followed_through_307_and_308_within_the_guard() -> None:
    seen: list[dict[str, str]] = []

    async def moved(request: web.Request) -> web.Response:
        status = 307 if request.path == "/old" else 308
        target = "/hub" if request.path == "/newer" else "/newer"
        return web.Response(status=status, headers={"Location": target})

    async def hub_endpoint(request: web.Request) -> web.Response:
        seen.append({k: str(v) for k, v in (await request.post()).items()})
        return web.Response(status=202, text="accepted")

    async def elsewhere(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "http://10.1.2.3/hub"})

    app = web.Application()
    app.router.add_post("/old", moved)
    app.router.add_post("/newer", moved)
    app.router.add_post("/hub", hub_endpoint)
    app.router.add_post("/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = NetSettings(user_agent="t", allowed_hosts=frozenset({"127.0.0.1"}), total_timeout=5)
    try:
        async with Fetcher(settings) as fetcher:
            form = {"hub.mode": "subscribe", "hub.topic": "https://e.com/feed"}
            assert await fetcher.post_form(f"http://127.0.0.1:{port}/old", form) == (
                202,
                "accepted",
            )
            assert seen == [form]  # the method and the body went along
            with pytest.raises(FetchError) as refused:
                await fetcher.post_form(f"http://127.0.0.1:{port}/elsewhere", form)
            assert "private" in str(refused.value) or "refused" in str(refused.value)
    finally:
        await runner.cleanup()


async def test_a_hub_named_only_in_the_headers_of_an_unchanged_feed_is_found(
    relay: Callable[..., Any], feed_server: FeedServer, hub: FakeHub
) -> None:
    port = free_port()
    r: Relay = await relay({"news": ""}, config_extra=push_config(port))
    topic = announce(feed_server, hub, ENTRIES)  # the same bytes, now with a Link header
    await r.poll_and_deliver()
    await subscribed(r, hub, topic)
    assert r.messages("news") == []


async def test_wakes_that_come_together_run_one_tick_and_one_more_round(
    relay: Callable[..., Any], feed_server: FeedServer
) -> None:
    r: Relay = await relay({"news": ""})
    deliverer = r.app.deliverer
    rounds = 0
    original = deliverer._tick

    async def counted() -> list[Any]:
        nonlocal rounds
        rounds += 1
        await asyncio.sleep(0.01)
        return await original()

    deliverer._tick = counted  # type: ignore[method-assign]
    for _ in range(5):  # a group commit resolving many polls at once
        deliverer.wake()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not deliverer._wakes and not deliverer._tick_lock.locked():
            break
    assert rounds == 2
