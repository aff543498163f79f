from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import text

from bot.models import WebhookTarget
from bot.poller import (
    Poller,
    keys_to_queue,
    next_poll_delay,
    oldest_first,
    select_new,
)
from bot.sources import incremental, resolve
from bot.sources.feed import ParsedEntry
from bot.storage.store import ConfigFeed, Store
from tests.conftest import T0, Clock, Doc, FeedServer, Subscribe


def rss(entries: list[tuple[str, str]], *, title: str = "Test feed") -> bytes:
    """RSS 2.0 with (guid, title) entries, newest first, dated a minute apart."""
    parts = []
    for index, (guid, item_title) in enumerate(entries):
        date = format_datetime(T0 - timedelta(minutes=index))
        parts.append(
            f"<item><guid>{guid}</guid><title>{item_title}</title>"
            f"<link>https://example.com/{guid}</link><pubDate>{date}</pubDate>"
            f"<description>&lt;p&gt;About &lt;b&gt;{item_title}&lt;/b&gt;&lt;/p&gt;</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/</link>{''.join(parts)}"
        "</channel></rss>"
    ).encode()


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every parse (the real parser still runs)."""
    calls: list[str] = []
    real = resolve.parse_feed

    def counting(body: bytes, **kwargs: object) -> object:
        calls.append(str(kwargs["url"]))
        return real(body, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve, "parse_feed", counting)
    monkeypatch.setattr(incremental, "parse_feed", counting)
    return calls


# -- pure decisions ------------------------------------------------------------------


def entry(key: str, *, link: str | None = None, minute: int | None = None) -> ParsedEntry:
    published = T0 + timedelta(minutes=minute) if minute is not None else None
    return ParsedEntry(key=key, link=link, link_norm=link, published=published, raw=None)


def test_backoff_doubles_and_caps_and_resets() -> None:
    delays = [next_poll_delay(interval=600, failures=n, max_interval=3600) for n in range(6)]
    assert delays == [600, 600, 1200, 2400, 3600, 3600]


def test_server_hints_only_push_later() -> None:
    assert next_poll_delay(interval=600, failures=0, max_interval=3600, max_age=1800) == 1800
    assert next_poll_delay(interval=600, failures=0, max_interval=3600, max_age=60) == 600
    assert next_poll_delay(interval=600, failures=1, max_interval=3600, retry_after=7200) == 7200


def test_jitter_spreads_within_bounds() -> None:
    low = next_poll_delay(interval=600, failures=0, max_interval=3600, jitter=0.1, rnd=0.0)
    high = next_poll_delay(interval=600, failures=0, max_interval=3600, jitter=0.1, rnd=0.999)
    assert low == pytest.approx(540)
    assert 659 < high <= 660


def test_select_new_uses_keys_and_unique_links() -> None:
    entries = [
        entry("k1", link="https://a/1"),
        entry("k2-rewritten", link="https://a/2"),  # same link as a known item: not new
        entry("k3", link="https://a/shared"),
        entry("k4", link="https://a/shared"),  # shared links never count as duplicates
        entry("k5"),
    ]
    new = select_new(
        entries, known_keys={"k1", "k2"}, known_links={"https://a/2", "https://a/shared"}
    )
    assert [e.key for e in new] == ["k5", "k4", "k3"]


def test_oldest_first_by_date_or_reverse_document_order() -> None:
    dated = [entry("b", minute=2), entry("a", minute=1), entry("c", minute=3)]
    assert [e.key for e in oldest_first(dated)] == ["a", "b", "c"]
    undated = [entry("new"), entry("mid", minute=1), entry("old")]
    assert [e.key for e in oldest_first(undated)] == ["old", "mid", "new"]


def test_flood_cap_keeps_the_newest() -> None:
    new = [entry(f"k{i}") for i in range(10)]
    assert keys_to_queue(new, 3) == {"k7", "k8", "k9"}
    assert keys_to_queue(new, 25) == {f"k{i}" for i in range(10)}


# -- polling real servers ---------------------------------------------------------


async def test_first_poll_posts_nothing_then_new_items_are_queued_once(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    url = feed_server.url("/feed.xml")
    feed_server.docs["/feed.xml"] = Doc(rss([("b", "B"), ("a", "A")]))
    await subscribe(url)
    poller = make_poller()

    (first,) = await poller.poll_due()
    assert (first.status, first.new_items, first.queued) == ("new", 2, 0)
    assert await store.outbox_items() == []
    assert await poller.poll_due() == []  # not due again yet

    feed_server.docs["/feed.xml"] = Doc(rss([("d", "D"), ("c", "C"), ("b", "B"), ("a", "A")]))
    clock.advance(601)
    (second,) = await poller.poll_due()
    assert (second.status, second.new_items, second.queued) == ("new", 2, 2)
    assert [key for _, key, _ in await store.outbox_items()] == ["c", "d"]

    clock.advance(601)
    (third,) = await poller.poll_due()
    assert third.status == "unchanged"
    assert len(await store.outbox_items()) == 2
    (health,) = await store.source_health()
    assert health.title == "Test feed"
    assert health.newest_item_at == T0
    assert health.last_success_at == clock.now


async def test_not_modified_and_unchanged_bodies_are_not_parsed(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    parse_calls: list[str],
    subscribe: Subscribe,
) -> None:
    body = rss([("a", "A")])
    feed_server.docs["/etag.xml"] = Doc(body, etag='"v1"')
    feed_server.docs["/lm.xml"] = Doc(body, last_modified="Fri, 27 Nov 2026 10:00:00 GMT")
    feed_server.docs["/plain.xml"] = Doc(body)
    for path in ("/etag.xml", "/lm.xml", "/plain.xml"):
        await subscribe(feed_server.url(path), hook=len(path))
    poller = make_poller()
    await poller.poll_due()
    assert len(parse_calls) == 3
    clock.advance(601)
    results = {r.url.rsplit("/", 1)[1]: r.status for r in await poller.poll_due()}
    assert results == {
        "etag.xml": "not_modified",
        "lm.xml": "not_modified",
        "plain.xml": "unchanged",
    }
    assert len(parse_calls) == 3


async def test_backoff_grows_on_failure_and_resets_on_success(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    url = feed_server.url("/flaky.xml")
    feed_server.docs["/flaky.xml"] = Doc(b"oops", status=500)
    await subscribe(url)
    poller = make_poller(max_interval=3000.0)
    gaps = []
    for _ in range(4):
        (result,) = await poller.poll_due()
        assert result.status == "failed"
        (health,) = await store.source_health()
        assert health.next_poll_at is not None
        gaps.append((health.next_poll_at - clock.now).total_seconds())
        clock.now = health.next_poll_at
    assert gaps == [600, 1200, 2400, 3000]
    assert health.consecutive_failures == 4
    assert health.last_error is not None
    assert "500" in health.last_error
    feed_server.docs["/flaky.xml"] = Doc(rss([("a", "A")]))
    (result,) = await poller.poll_due()
    assert result.status == "new"
    (health,) = await store.source_health()
    assert health.consecutive_failures == 0
    assert health.last_error is None
    assert (health.next_poll_at - clock.now).total_seconds() == 600


async def test_retry_after_pushes_the_next_poll(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/busy.xml"] = Doc(b"slow down", status=429, headers={"Retry-After": "5000"})
    await subscribe(feed_server.url("/busy.xml"))
    await make_poller().poll_due()
    (health,) = await store.source_health()
    assert health.next_poll_at == clock.now + timedelta(seconds=5000)


async def test_cache_control_max_age_pushes_the_next_poll(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/cached.xml"] = Doc(
        rss([("a", "A")]), headers={"Cache-Control": "public, max-age=1800"}
    )
    await subscribe(feed_server.url("/cached.xml"))
    await make_poller().poll_due()
    (health,) = await store.source_health()
    assert health.next_poll_at == clock.now + timedelta(seconds=1800)


async def test_flood_cap_posts_only_the_newest(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    await subscribe(feed_server.url("/f.xml"))
    poller = make_poller(max_new_per_poll=3)
    await poller.poll_due()
    feed_server.docs["/f.xml"] = Doc(rss([(f"n{i}", f"N{i}") for i in range(10)] + [("a", "A")]))
    clock.advance(601)
    (result,) = await poller.poll_due()
    assert (result.new_items, result.queued) == (10, 3)
    assert [key for _, key, _ in await store.outbox_items()] == ["n2", "n1", "n0"]
    assert "flood cap" in caplog.text
    # The capped items were recorded as seen: the next poll posts none of them.
    clock.advance(601)
    feed_server.docs["/f.xml"].body += b" "
    (again,) = await poller.poll_due()
    assert (again.new_items, again.queued) == (0, 0)


async def test_rewritten_ids_with_same_links_are_not_reposted(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A"), ("b", "B")]))
    await subscribe(feed_server.url("/f.xml"))
    poller = make_poller()
    await poller.poll_due()
    # Same links, new guids (a CMS migration) -> nothing new.
    body = rss([("a", "A"), ("b", "B")]).replace(b"<guid>a</guid>", b"<guid>x-a</guid>")
    feed_server.docs["/f.xml"] = Doc(body)
    clock.advance(601)
    (result,) = await poller.poll_due()
    assert result.new_items == 0


async def test_backfill_posts_the_newest_n_on_first_poll(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("c", "C"), ("b", "B"), ("a", "A")]))
    await subscribe(feed_server.url("/f.xml"), backfill=2)
    await make_poller().poll_due()
    assert [key for _, key, _ in await store.outbox_items()] == ["b", "c"]


async def test_a_broken_feed_fails_alone(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/good.xml"] = Doc(rss([("a", "A")]))
    feed_server.docs["/bad.xml"] = Doc(b"<rss><channel><title>x</titl", content_type="text/xml")
    await subscribe(feed_server.url("/good.xml"), hook=1)
    await subscribe(feed_server.url("/bad.xml"), hook=2)
    results = {r.url.rsplit("/", 1)[1]: r for r in await make_poller().poll_due()}
    assert results["good.xml"].status == "new"
    assert results["bad.xml"].status == "failed"
    assert results["bad.xml"].error


async def test_permanent_redirect_updates_the_stored_url(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/new.xml"] = Doc(rss([("a", "A")]))
    feed_server.docs["/old.xml"] = Doc(b"", status=301, headers={"Location": "/new.xml"})
    await subscribe(feed_server.url("/old.xml"))
    await make_poller().poll_due()
    (health,) = await store.source_health()
    assert health.url == feed_server.url("/new.xml")


async def test_an_html_page_leads_to_its_feed(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/blog/"] = Doc(
        b'<!doctype html><html><head><link rel="alternate" type="application/rss+xml" '
        b'href="/blog/feed.xml"></head><body>hi</body></html>',
        content_type="text/html; charset=utf-8",
    )
    feed_server.docs["/blog/feed.xml"] = Doc(rss([("a", "A")]))
    await subscribe(feed_server.url("/blog/"))
    (result,) = await make_poller().poll_due()
    assert result.status == "new"
    (health,) = await store.source_health()
    assert health.url == feed_server.url("/blog/feed.xml")


async def test_a_crash_inside_the_transaction_loses_nothing_and_reposts_nothing(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    await subscribe(feed_server.url("/f.xml"))
    poller = make_poller()
    await poller.poll_due()
    feed_server.docs["/f.xml"] = Doc(rss([("c", "C"), ("b", "B"), ("a", "A")]))
    # The outbox insert fails after the items were inserted in the same transaction.
    if store.db.dialect == "sqlite":
        statements = [
            "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END"
        ]
    else:
        statements = [
            "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER boom BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION boom()",
        ]
    async with store.db.write() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    clock.advance(601)
    (crashed,) = await poller.poll_due()
    assert crashed.status == "failed"
    assert (await store.counts())["items"] == 1
    async with store.db.write() as conn:
        drop = "DROP TRIGGER boom" + ("" if store.db.dialect == "sqlite" else " ON outbox")
        await conn.execute(text(drop))
    # The failure backed off; once due again the same items are found and queued once.
    (health,) = await store.source_health()
    assert health.next_poll_at is not None
    clock.now = health.next_poll_at
    (recovered,) = await poller.poll_due()
    assert (recovered.new_items, recovered.queued) == (2, 2)
    clock.advance(3600)
    await poller.poll_due()
    assert [key for _, key, _ in await store.outbox_items()] == ["b", "c"]


async def test_one_source_per_claim_even_with_two_pollers(
    store: Store, feed_server: FeedServer, make_poller: Callable[..., Poller]
) -> None:
    for i in range(12):
        feed_server.docs[f"/f{i}.xml"] = Doc(rss([(f"{i}", "A")]))
        await store.sync_config_feeds(
            [
                ConfigFeed(feed_server.url(f"/f{j}.xml"), WebhookTarget(1, "t"))
                for j in range(i + 1)
            ],
            now=T0,
        )
    a, b = make_poller(concurrency=3), make_poller(concurrency=3)
    results_a, results_b = await asyncio.gather(a.poll_due(), b.poll_due())
    polled = [r.url for r in results_a + results_b]
    assert sorted(polled) == sorted(feed_server.url(f"/f{i}.xml") for i in range(12))
    assert sum(feed_server.hits.values()) == 12
