"""The WebSub subscriber end to end: the real App (clock injected, scheduler paused) on
the loopback feed server and the fake Discord, a FakeHub (tests/fakes/fake_hub.py) verifying
through the App's own callback routes. The test drives every tick."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from bot.app import config_feeds
from bot.push import _backoff
from bot.storage._common import sources, subscriptions, websub
from bot.storage.store import ConfigFeed, PushState, Store
from bot.websub import (
    REQUESTED_LEASE,
    RETRY_FIRST,
    VERIFY_TIMEOUT,
    renew_margin,
    retry_delay,
    signature_matches,
)
from tests.conftest import POSTGRES_URL, T0, FeedServer, Subscribe
from tests.fakes.fake_hub import FakeHub
from tests.relay import ENTRIES, Relay, feed
from tests.test_push import announce, atom, delivered, free_port, push_config

HOUR = 3600.0
NEWS = [("a3", "Third story", "New"), *ENTRIES]


@dataclasses.dataclass
class Pushed:
    """A relay whose one source announces ``hub``; ``port`` is its http.listen port."""

    r: Relay
    hub: FakeHub
    topic: str
    port: int
    source_id: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/websub/"

    async def state(self) -> PushState:
        return (await self.r.app.store.push_states([self.source_id]))[self.source_id]

    async def source(self) -> tuple[datetime, datetime | None]:
        """The source's (next_poll_at, push_until)."""
        async with self.r.app.store.db.read() as conn:
            row = (
                await conn.execute(
                    select(sources.c.next_poll_at, sources.c.push_until).where(
                        sources.c.id == self.source_id
                    )
                )
            ).one()
        return row[0], row[1]

    async def tick(self) -> int:
        assert self.r.app.websub is not None
        return await self.r.app.websub.tick()

    async def poll(self, seconds: float = 0.0) -> int:
        """Advance the clock, poll what is due, deliver; returns the sources polled."""
        self.r.clock.advance(seconds)
        polled = await self.r.app.poller.poll_due()
        await self.r.app.deliverer.deliver_due()
        return len(polled)

    async def subscribe(self) -> None:
        """One tick: the subscribe request goes out and the hub verifies it."""
        before = len(self.hub.verifications)
        assert await self.tick() == 1
        await self.hub.wait_for_verifications(before + 1)
        assert self.hub.verifications[-1].echoed
        assert self.hub.verifications[-1].status == 200

    def callback(self) -> str:
        return self.hub.requests[0]["hub.callback"]


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[..., Any]]:
    made: list[FakeHub] = []

    async def start(**kwargs: Any) -> FakeHub:
        hub = FakeHub(**kwargs)
        await hub.start()
        made.append(hub)
        return hub

    yield start
    for hub in made:
        await hub.close()


@pytest.fixture
def pushed(
    relay: Callable[..., Any], feed_server: FeedServer, hubs: Callable[..., Any]
) -> Callable[..., Any]:
    """A relay polling every hour (no jitter), pushed sources every 3 h, whose feed
    announces a fresh hub since its second poll (the one made here)."""

    async def start(
        *, polling: str = "", max_lease: int | None = None, database_url: str | None = None
    ) -> Pushed:
        port = free_port()
        extra = f'jitter = 0.0\npush_safety_interval = "3h"\n{polling}\n' + push_config(port)
        r: Relay = await relay({"news": ""}, config_extra=extra, database_url=database_url)
        hub = await hubs(max_lease=max_lease)
        topic = announce(feed_server, hub, NEWS)
        await r.poll_and_deliver()  # a changed document: its hub is discovered
        assert [m.embeds[0]["title"] for m in r.messages("news")] == ["Third story"]
        [health] = await r.app.store.source_health()
        return Pushed(r, hub, topic, port, health.source_id)

    return start


def titles(p: Pushed) -> list[str]:
    return [m.embeds[0]["title"] for m in p.r.messages("news")]


async def get(url: str, **query: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, params=query) as resp:
        return resp.status, await resp.text()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status


# -- subscribing ------------------------------------------------------------------------


async def check_subscription_and_push(p: Pushed) -> None:
    await p.subscribe()
    [request] = p.hub.requests
    assert request["hub.mode"] == "subscribe"
    assert request["hub.topic"] == p.topic == p.r.feeds.url("/news.xml")
    assert request["hub.callback"].startswith(p.base)
    assert len(request["hub.callback"]) > len(p.base) + 16
    assert len(request["hub.secret"]) >= 32
    assert request["hub.lease_seconds"] == "864000" == str(REQUESTED_LEASE)
    subscription = p.hub.active(p.topic)[0]
    assert subscription.callback == request["hub.callback"]
    assert subscription.secret == request["hub.secret"]

    now = p.r.clock()
    state = await p.state()
    assert state.hub_url == p.hub.url
    assert state.subscribed_until == now + timedelta(seconds=REQUESTED_LEASE)
    assert (state.pending_mode, state.last_error) == (None, None)
    assert await p.r.app.store.websub_counts(now=now) == {"active": 1, "pending": 0}
    next_poll, push_until = await p.source()
    assert push_until == now + timedelta(seconds=REQUESTED_LEASE)
    assert next_poll == now + timedelta(hours=1)  # set by the poll before the subscription

    # the next poll is the last at the normal interval: pushed, the source waits 3 h
    assert await p.poll(HOUR) == 1
    [health] = await p.r.app.store.source_health()
    assert health.next_poll_at == p.r.clock() + timedelta(hours=3)
    assert await p.poll(2 * HOUR) == 0
    assert await p.poll(HOUR) == 1
    assert (await p.source())[0] == p.r.clock() + timedelta(hours=3)

    assert await p.hub.publish(p.topic, atom(p.topic, [("a4", "Pushed story")])) == [202]
    assert [m.embeds[0]["title"] for m in await delivered(p.r, "news", 2)] == [
        "Third story",
        "Pushed story",
    ]
    state = await p.state()
    assert state.last_push_at == p.r.clock()


async def test_subscription_fields_verification_and_the_safety_interval(
    pushed: Callable[..., Any],
) -> None:
    await check_subscription_and_push(await pushed())


@pytest.mark.skipif(POSTGRES_URL is None, reason="set FEEDHOOK_TEST_POSTGRES_URL")
async def test_subscription_and_push_on_postgresql(
    pushed: Callable[..., Any], pg_database: str
) -> None:
    await check_subscription_and_push(await pushed(database_url=pg_database))


async def test_verifications_the_subscriber_did_not_ask_for_are_refused(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed()
    await p.subscribe()
    callback = p.callback()
    challenge = {"hub.topic": p.topic, "hub.challenge": "c-123"}
    # verified already: nothing pending
    assert (await get(callback, **{"hub.mode": "subscribe"}, **challenge))[0] == 404
    # a renewal claimed (pending): only its own mode and topic, with a challenge, match
    p.r.clock.advance(REQUESTED_LEASE - renew_margin(REQUESTED_LEASE))
    claimed = await p.r.app.store.claim_websub_requests(
        now=p.r.clock(),
        verify_timeout=timedelta(seconds=VERIFY_TIMEOUT),
        retry=lambda n: timedelta(seconds=retry_delay(n)),
    )
    assert [(c.mode, c.renewal) for c in claimed] == [("subscribe", True)]
    assert (await p.state()).pending_mode == "subscribe"
    wrong = [
        (callback, {"hub.mode": "subscribe", "hub.topic": p.topic + "x", "hub.challenge": "c"}),
        (callback, {"hub.mode": "unsubscribe", **challenge}),
        (callback, {"hub.mode": "subscribe", "hub.topic": p.topic}),
        (callback, {"hub.mode": "nonsense", **challenge}),
        (p.base + "unknown-callback", {"hub.mode": "subscribe", **challenge}),
        (p.base + "unknown-callback", {"hub.mode": "denied", "hub.topic": p.topic}),
        (callback, {"hub.mode": "denied", "hub.topic": p.topic + "x"}),
    ]
    for url, query in wrong:
        assert (await get(url, **query))[0] == 404, query
    assert (await p.state()).pending_mode == "subscribe"
    assert await get(callback, **{"hub.mode": "subscribe"}, **challenge) == (200, "c-123")
    assert (await get(callback, **{"hub.mode": "subscribe"}, **challenge))[0] == 404


async def test_a_short_lease_is_renewed_before_it_ends(pushed: Callable[..., Any]) -> None:
    p: Pushed = await pushed(max_lease=600)
    await p.subscribe()
    first = (await p.state()).subscribed_until
    assert first == p.r.clock() + timedelta(seconds=600)
    assert renew_margin(600) == 300
    p.r.clock.advance(299)
    assert await p.tick() == 0
    p.r.clock.advance(2)
    await p.subscribe()
    assert [r["hub.mode"] for r in p.hub.requests] == ["subscribe", "subscribe"]
    assert p.hub.requests[1]["hub.callback"] == p.hub.requests[0]["hub.callback"]
    assert p.hub.requests[1]["hub.secret"] == p.hub.requests[0]["hub.secret"]
    state = await p.state()
    assert state.subscribed_until == p.r.clock() + timedelta(seconds=600) != first
    assert (await p.source())[1] == state.subscribed_until
    assert await p.r.app.store.websub_counts(now=p.r.clock()) == {"active": 1, "pending": 0}


@pytest.mark.parametrize(("switch", "status"), [("refuse", 400), ("fail", 500)])
async def test_a_refusing_or_failing_hub_leaves_the_source_polled_and_is_retried_later(
    pushed: Callable[..., Any], switch: str, status: int
) -> None:
    p: Pushed = await pushed()
    setattr(p.hub, switch, True)
    failed_at = p.r.clock()
    assert await p.tick() == 1
    state = await p.state()
    assert state.last_error is not None
    assert f"HTTP {status}" in state.last_error
    assert (state.subscribed_until, state.pending_mode) == (None, None)
    next_poll, push_until = await p.source()
    assert push_until is None
    assert next_poll <= failed_at + timedelta(hours=1)  # not pushed out
    # retried RETRY_FIRST after the failure, then after twice that
    assert RETRY_FIRST == 300
    p.r.clock.advance(299)
    assert await p.tick() == 0
    assert len(p.hub.requests) == 1
    p.r.clock.advance(2)
    assert await p.tick() == 1
    assert len(p.hub.requests) == 2
    p.r.clock.advance(599)
    assert await p.tick() == 0
    setattr(p.hub, switch, False)
    p.r.clock.advance(2)
    await p.subscribe()
    assert len(p.hub.requests) == 3
    state = await p.state()
    assert state.last_error is None
    assert state.subscribed_until == p.r.clock() + timedelta(seconds=REQUESTED_LEASE)


async def test_polls_between_failed_requests_keep_the_normal_interval(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed()
    p.hub.fail = True
    assert await p.tick() == 1
    await p.poll(HOUR)
    next_poll, push_until = await p.source()
    assert (next_poll, push_until) == (p.r.clock() + timedelta(hours=1), None)
    assert "HTTP 500" in ((await p.state()).last_error or "")


async def test_a_denied_renewal_sends_the_source_back_to_polling(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed(max_lease=7200)  # renewed an hour before it ends
    await p.subscribe()
    assert renew_margin(7200) == HOUR
    assert await p.poll(HOUR) == 1  # pushed: the next poll is 3 h away
    assert (await p.source())[0] == p.r.clock() + timedelta(hours=3)
    p.hub.deny = True
    assert await p.tick() == 1
    await p.hub.wait_for_denials(1)
    [denial] = p.hub.denials
    assert (denial.mode, denial.status, denial.topic) == ("denied", 200, p.topic)
    assert denial.callback == p.callback()
    state = await p.state()
    assert state.last_error is not None
    assert "denied by the fake hub" in state.last_error
    assert (state.subscribed_until, state.pending_mode) == (None, None)
    next_poll, push_until = await p.source()
    assert push_until is None
    assert next_poll <= p.r.clock()
    assert await p.poll() == 1
    assert (await p.source())[0] == p.r.clock() + timedelta(hours=1)
    assert await p.r.app.store.websub_counts(now=p.r.clock()) == {"active": 0, "pending": 0}


async def test_a_hub_that_went_away_hands_the_source_back_to_polling(
    pushed: Callable[..., Any], feed_server: FeedServer
) -> None:
    p: Pushed = await pushed(max_lease=7200)
    await p.subscribe()
    lease_end = p.r.clock() + timedelta(seconds=7200)
    assert await p.poll(HOUR) == 1  # pushed: the next poll is 3 h away
    await p.hub.close()
    assert await p.tick() == 1  # the renewal: connection refused
    state = await p.state()
    assert state.last_error is not None
    assert "failed" in state.last_error, state.last_error
    assert (state.pending_mode, state.subscribed_until) == (None, lease_end)
    assert (await p.source())[1] == lease_end  # the lease still runs
    # retried (5, 10, 20, 40 min apart); the first failure after the lease ended hands
    # the source back to polling
    requests = 1
    while (await p.source())[1] is not None:
        p.r.clock.advance(300)
        requests += await p.tick()
        assert p.r.clock() < lease_end + timedelta(hours=1)
    assert requests == 5
    assert p.r.clock() > lease_end
    assert (await p.source())[0] <= p.r.clock()
    announce(feed_server, p.hub, [("a4", "Fourth story", "Newer"), *NEWS])
    assert await p.poll() == 1
    assert titles(p) == ["Third story", "Fourth story"]
    assert (await p.source())[0] == p.r.clock() + timedelta(hours=1)


async def test_a_safety_poll_finding_an_unpushed_item_resubscribes(
    pushed: Callable[..., Any], feed_server: FeedServer
) -> None:
    p: Pushed = await pushed()
    await p.subscribe()
    assert await p.poll(HOUR) == 1
    announce(feed_server, p.hub, [("a4", "Fourth story", "Never pushed"), *NEWS])
    # (polled twice: websub_missed pulls next_poll_at back to now after the poll)
    assert await p.poll(3 * HOUR) >= 1
    assert titles(p) == ["Third story", "Fourth story"]
    state = await p.state()
    assert state.last_error == "a poll found items the hub did not push"
    assert state.subscribed_until is None
    next_poll, push_until = await p.source()
    assert push_until is None
    assert next_poll <= p.r.clock() + timedelta(hours=1)
    await p.subscribe()  # due at once: the hub is asked again
    assert [r["hub.mode"] for r in p.hub.requests] == ["subscribe", "subscribe"]
    assert (await p.state()).last_error is None
    assert await p.poll(HOUR) == 1
    assert (await p.source())[0] == p.r.clock() + timedelta(hours=3)  # pushed again
    assert titles(p) == ["Third story", "Fourth story"]


async def test_the_last_subscription_gone_unsubscribes_at_the_hub(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed()
    await p.subscribe()
    await p.r.app.store.sync_config_feeds([], now=p.r.clock())
    assert await p.tick() == 1
    await p.hub.wait_for_verifications(2)
    request = p.hub.requests[-1]
    assert request["hub.mode"] == "unsubscribe"
    assert request["hub.callback"] == p.callback()
    assert request["hub.topic"] == p.topic
    assert p.hub.verifications[-1].mode == "unsubscribe"
    assert p.hub.verifications[-1].echoed
    assert p.hub.active(p.topic) == []
    assert p.hub.subscriptions == {}
    assert await p.r.app.store.websub_counts(now=p.r.clock()) == {"active": 0, "pending": 0}
    state = await p.state()
    assert (state.subscribed_until, state.pending_mode, state.last_error) == (None, None, None)
    assert (await p.source())[1] is None
    assert await p.tick() == 0
    # the row is gone: a distribution to the old callback is refused
    assert await p.hub.publish(p.topic, atom(p.topic, [("a9", "Late")])) == []
    assert await post(p.callback(), atom(p.topic, [("a9", "Late")])) == 410


async def test_content_distributions_unknown_oversized_not_a_feed_and_signatures(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed(polling="max_body_bytes = 2048")
    await p.subscribe()
    secret = p.hub.requests[0]["hub.secret"]
    body = atom(p.topic, [("a5", "Fifth story")])
    assert await post(p.base + "no-such-callback", body) == 410

    big = atom(p.topic, [("a6", "Huge story" + "x" * 3000)])
    assert await p.hub.publish(p.topic, big) == [413]
    # no Content-Length (chunked): cut off while reading
    sig = "sha256=" + hmac.new(secret.encode(), big, hashlib.sha256).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    async with (
        aiohttp.ClientSession() as session,
        session.post(p.callback(), data=chunks(), headers={"X-Hub-Signature": sig}) as resp,
    ):
        assert resp.status == 413
    assert await p.hub.publish(p.topic, b"this is not a feed") == [202]
    assert await p.hub.publish(p.topic, b"", algorithm="sha512") == [202]
    assert titles(p) == ["Third story"]
    assert (await p.r.app.store.counts())["items"] == 3

    assert await p.hub.publish(p.topic, body, algorithm="sha1") == [202]
    assert await p.hub.publish(p.topic, atom(p.topic, [("a7", "Seventh")]), algorithm="sha512")
    messages = await delivered(p.r, "news", 3)
    assert [m.embeds[0]["title"] for m in messages] == ["Third story", "Fifth story", "Seventh"]
    assert (await p.r.app.store.counts())["items"] == 5


async def test_a_source_announcing_a_hub_from_its_first_poll_gets_only_new_items_pushed(
    pushed: Callable[..., Any], feed_server: FeedServer
) -> None:
    p: Pushed = await pushed()
    # a second source, never polled, whose very first document names the hub
    topic = feed_server.url("/hubbed.xml")
    doc = feed([("b2", "Hubbed two", "x"), ("b1", "Hubbed one", "y")])
    doc.headers["Link"] = f'<{p.hub.url}>; rel="hub", <{topic}>; rel="self"'
    feed_server.docs["/hubbed.xml"] = doc
    news = config_feeds(p.r.app.config)
    await p.r.app.store.sync_config_feeds(
        [*news, ConfigFeed(topic, news[0].target)], now=p.r.clock()
    )
    assert await p.tick() == 1  # the first source only: the new one has not been polled
    await p.hub.wait_for_verifications(1)
    assert [r["hub.topic"] for r in p.hub.requests] == [p.topic]
    assert await p.poll() == 1  # its first poll: what is there counts as seen
    assert titles(p) == ["Third story"]
    await p.subscribe()
    assert [r["hub.topic"] for r in p.hub.requests] == [p.topic, topic]
    entries = [("b3", "Hubbed three"), ("b2", "Hubbed two"), ("b1", "Hubbed one")]
    assert await p.hub.publish(topic, atom(topic, entries)) == [202]
    messages = await delivered(p.r, "news", 2)
    assert [m.embeds[0]["title"] for m in messages] == ["Third story", "Hubbed three"]


async def test_a_feed_that_moves_to_another_hub_is_subscribed_there(
    pushed: Callable[..., Any], hubs: Callable[..., Any], feed_server: FeedServer
) -> None:
    p: Pushed = await pushed(max_lease=7200)
    await p.subscribe()
    moved: FakeHub = await hubs()
    announce(feed_server, moved, [("a4", "Fourth story", "Moved"), *NEWS])
    # the poll finds the new hub (and an item the old hub never pushed); renewal is due
    assert await p.poll(HOUR) >= 1
    assert (await p.state()).hub_url == moved.url
    for _ in range(3):
        await p.tick()
        if moved.requests:
            break
    # bot/storage/websub.py keeps the hub_url/topic_url its row was created with
    to_old = [r["hub.mode"] for r in p.hub.requests[1:]]
    assert "subscribe" not in to_old, "subscribed again at the hub the feed no longer names"
    await moved.wait_for_subscription(p.topic)


async def test_a_malformed_lease_in_a_verification_is_refused(
    pushed: Callable[..., Any],
) -> None:
    p: Pushed = await pushed()
    query = {"hub.mode": "subscribe", "hub.topic": p.topic, "hub.challenge": "c"}
    assert (await get(p.base + "unknown", **query, **{"hub.lease_seconds": "x"}))[0] == 404
    # "²".isdigit() is True but int("²") raises
    assert (await get(p.base + "unknown", **query, **{"hub.lease_seconds": "²"}))[0] == 404


# -- edges found in review ---------------------------------------------------------


def atom_entry(topic: str, key: str, title: str, link: str, published: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>Harbour News</title><link rel="self" href="{topic}"/>'
        f'<entry><id>{key}</id><title>{title}</title><link href="{link}"/>'
        f"<published>{published}</published><updated>{published}</updated></entry></feed>"
    ).encode()


def raw_request(port: int, data: bytes) -> bytes:
    """One HTTP/1.1 exchange with bytes no client library would send."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


async def status_of(port: int, method: bytes, path: bytes, headers: bytes, body: bytes) -> int:
    request = (
        (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers)
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = await asyncio.to_thread(raw_request, port, request)
    return int(answer.split(b" ", 2)[1])


async def test_pushed_entries_sharing_a_link_are_each_posted(pushed: Callable[..., Any]) -> None:
    # a status page: every incident links the same page; a push holds one entry, so
    # whether the link is shared cannot be told from it
    p: Pushed = await pushed()
    await p.subscribe()
    for key, title in (("inc-1", "Incident 1"), ("inc-2", "Incident 2")):
        body = atom_entry(
            p.topic, key, title, "https://status.example.com/", "2026-12-01T10:00:00Z"
        )
        assert await p.hub.publish(p.topic, body) == [202]
    await delivered(p.r, "news", 3)
    assert titles(p) == ["Third story", "Incident 1", "Incident 2"]


async def test_a_pushed_edit_of_an_old_entry_is_not_posted(pushed: Callable[..., Any]) -> None:
    # YouTube's hub also pushes edits of old videos, with their first publication date
    p: Pushed = await pushed()
    await p.subscribe()
    old = atom_entry(
        p.topic, "yt:OLD", "Video from 2019", "https://e.com/o", "2019-01-01T00:00:00Z"
    )
    new = atom_entry(p.topic, "yt:NEW", "New video", "https://e.com/n", "2026-12-01T10:00:00Z")
    assert await p.hub.publish(p.topic, old) == [202]
    assert await p.hub.publish(p.topic, new) == [202]
    await delivered(p.r, "news", 2)
    assert titles(p) == ["Third story", "New video"]


@pytest.mark.parametrize("value", ["sha256=\xc3\xa9", "sha256=\xff", "sh\xc3\xa9=00", ""])
def test_a_signature_header_of_any_bytes_is_just_wrong(value: str) -> None:
    assert not signature_matches(
        "s3cret", b"<feed/>", value.encode("latin-1").decode("utf-8", "surrogateescape")
    )


async def test_hostile_signature_headers_are_acknowledged_not_500(
    pushed: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    p: Pushed = await pushed()
    await p.subscribe()
    path = b"/websub/" + p.callback().rsplit("/", 1)[1].encode()
    for header in (b"sha256=\xc3\xa9", b"sha256=\xff", b"sh\xc3\xa9=00", b""):
        line = b"X-Hub-Signature: " + header + b"\r\n"
        assert await status_of(p.port, b"POST", path, line, b"<feed/>") == 202
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failed_unsubscribe_waits_out_its_backoff(
    store: Store, subscribe: Subscribe
) -> None:
    """A hub that accepts unsubscribe requests but never verifies them is asked again
    only as the backoff allows, not at every look."""
    url = "https://example.com/feed.xml"
    await subscribe(url)
    async with store.db.write() as conn:
        await conn.execute(
            update(sources).values(hub_url="https://hub.example/", topic_url=url, initialized=True)
        )
    now = T0
    verify = timedelta(seconds=VERIFY_TIMEOUT)
    await store.websub_sweep(now=now, new_ids=[("cb1", "s" * 64)])
    (request,) = await store.claim_websub_requests(now=now, verify_timeout=verify, retry=_backoff)
    assert request.mode == "subscribe"
    assert await store.websub_verify(
        "cb1",
        mode="subscribe",
        topic=url,
        lease_seconds=864_000,
        now=now,
        default_lease=864_000,
        renew_margin=86_400,
    )
    async with store.db.write() as conn:
        await conn.execute(update(subscriptions).values(enabled=False))
    sent = 0
    for _ in range(120):  # an hour of looks 30 s apart
        now += timedelta(seconds=30)
        await store.websub_sweep(now=now, new_ids=[])
        claimed = await store.claim_websub_requests(now=now, verify_timeout=verify, retry=_backoff)
        sent += sum(r.mode == "unsubscribe" for r in claimed)
    # asked at once, then after each unverified try: 5 min to verify + 5, 10, 20 min waits
    assert sent == 4
    async with store.db.read() as conn:
        (failures,) = (await conn.execute(select(websub.c.failures))).one()
    assert failures == 4  # the fourth try's verification timed out too


async def test_items_a_poll_finds_right_after_subscribing_are_no_missed_push(
    store: Store, subscribe: Subscribe
) -> None:
    """What was published before the hub started pushing shows up in the first polls
    after subscribing: only a subscription older than the safety interval can miss."""
    url = "https://example.com/feed.xml"
    await subscribe(url)
    async with store.db.write() as conn:
        await conn.execute(
            update(sources).values(hub_url="https://hub.example/", topic_url=url, initialized=True)
        )
    verify = timedelta(seconds=VERIFY_TIMEOUT)
    await store.websub_sweep(now=T0, new_ids=[("cb1", "s" * 64)])
    await store.claim_websub_requests(now=T0, verify_timeout=verify, retry=_backoff)
    assert await store.websub_verify(
        "cb1",
        mode="subscribe",
        topic=url,
        lease_seconds=864_000,
        now=T0,
        default_lease=864_000,
        renew_margin=86_400,
    )
    hour = timedelta(hours=1)
    (source_id,) = [h.source_id for h in await store.source_health()]
    early = T0 + timedelta(minutes=10)
    assert not await store.websub_missed(source_id, now=early, poll_at=early, settled=hour)
    late = T0 + 2 * hour
    assert await store.websub_missed(source_id, now=late, poll_at=late, settled=hour)
    async with store.db.read() as conn:
        (push_until,) = (await conn.execute(select(sources.c.push_until))).one()
    assert push_until is None


async def test_verifications_with_undecodable_bytes_are_answered_not_500(
    pushed: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    p: Pushed = await pushed()
    await p.subscribe()
    path = "/websub/" + p.callback().rsplit("/", 1)[1]
    for query in (
        "hub.mode=subscribe&hub.topic=%ff&hub.challenge=x",
        "hub.mode=%ff&hub.topic=t&hub.challenge=x",
        "hub.mode=denied&hub.topic=%ed%a0%80&hub.reason=%ff",
    ):
        assert await status_of(p.port, b"GET", f"{path}?{query}".encode(), b"", b"") == 404
    assert await status_of(p.port, b"GET", b"/websub/%ff?hub.mode=subscribe", b"", b"") == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
