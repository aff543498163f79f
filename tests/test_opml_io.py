"""OPML import and export against the real store (SQLite, and PostgreSQL when
FEEDHOOK_TEST_POSTGRES_URL is set), with the readers' fixture files pointed at a
loopback feed server."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from bot.models import WebhookTarget
from bot.net import Fetcher, NetSettings
from bot.opml import Outline, parse_opml, write_opml
from bot.opml_io import (
    DRY_RUN,
    NO_ROOM,
    ImportResult,
    export_entries,
    import_outlines,
    unique_outlines,
)
from bot.services import FeedService, ServiceSettings
from bot.storage.db import Database
from bot.storage.store import ConfigFeed, Store
from tests.conftest import POSTGRES_URL, Doc, FeedServer
from tests.test_poller import rss

FIXTURES = Path(__file__).parent / "fixtures" / "opml"
OPML_FILES = sorted(p.name for p in FIXTURES.iterdir())
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, OTHER_CHANNEL = 10, 300, 301
TOKEN = "s3cret-Token_value.xyz"
HOOK = WebhookTarget(777, TOKEN)
HTML_PAGE = b"<html><body>not a feed</body></html>"


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(
        NetSettings(user_agent="t", allowed_hosts=frozenset({"127.0.0.1"}), total_timeout=2.0)
    ) as f:
        yield f


def make_service(store: Store, fetcher: Fetcher, *, limit: int = 100) -> FeedService:
    return FeedService(
        store,
        fetcher,
        ServiceSettings(max_subscriptions_per_guild=limit, min_interval=300),
        clock=lambda: T0,
    )


@pytest.fixture
def service(store: Store, fetcher: Fetcher) -> FeedService:
    return make_service(store, fetcher)


@pytest.fixture
async def empty_store(db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A second, empty database on the same backend as ``store``."""
    schema = None
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'second.db'}"
    else:
        assert POSTGRES_URL is not None
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    database = Database(url)
    try:
        await database.upgrade()
        yield Store(database)
    finally:
        await database.dispose()
        if schema is not None:
            assert POSTGRES_URL is not None
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


_XML_URL = re.compile(r'(xml[Uu]rl=")([^"]*)(")')


def loopback_opml(name: str, server: FeedServer) -> tuple[bytes, dict[str, str]]:
    """The fixture file with each xmlUrl replaced by a loopback URL (the same original
    URL, the same replacement), and the replacements {original: loopback}."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    mapping: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        original = match.group(2).strip()
        new = mapping.setdefault(original, server.url(f"/{name}/{len(mapping)}.xml"))
        return match.group(1) + new + match.group(3)

    return _XML_URL.sub(swap, text).encode("utf-8"), mapping


def serve(server: FeedServer, outlines: list[Outline]) -> tuple[str, str]:
    """Serve a small RSS feed for each distinct outline URL except the first (left a 404)
    and the second (an HTML page that is no feed); returns those two URLs."""
    urls = [o.url for o in unique_outlines(outlines)]
    missing, page = urls[0], urls[1]
    for index, url in enumerate(urls[2:], start=2):
        path = url.removeprefix(server.base)
        server.docs[path] = Doc(rss([(f"g{index}", f"Item {index}")], title=f"Feed {index}"))
    server.docs[page.removeprefix(server.base)] = Doc(HTML_PAGE, content_type="text/html")
    return missing, page


def feeds(n: int, server: FeedServer, prefix: str = "f") -> list[Outline]:
    outlines = []
    for index in range(n):
        path = f"/{prefix}{index}.xml"
        server.docs[path] = Doc(rss([(f"{prefix}{index}", "x")], title=f"{prefix} {index}"))
        outlines.append(Outline(server.url(path), f"{prefix} {index}", ()))
    return outlines


@pytest.mark.parametrize("name", OPML_FILES)
async def test_import_a_readers_export(
    name: str, service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    data, mapping = loopback_opml(name, feed_server)
    outlines = parse_opml(data)
    assert {o.url for o in outlines} == set(mapping.values())
    missing, page = serve(feed_server, outlines)
    unique = unique_outlines(outlines)
    seen: list[ImportResult] = []

    summary = await import_outlines(
        service, outlines, target=HOOK, guild_id=None, channel_id=None, progress=seen.append
    )

    assert list(summary.results) == seen  # progress: each result, in the outlines' order
    assert [r.url for r in summary.results] == [o.url for o in unique]
    first, second, *rest = summary.results
    assert (first.status, second.status) == ("failed", "failed")
    assert "could not be fetched: HTTP 404" in first.reason
    assert "not a feed feedhook can read" in second.reason
    assert [r.status for r in rest] == ["added"] * len(rest)
    assert [r.reason for r in rest] == [f"Feed {i}" for i in range(2, len(unique))]
    assert summary.lines() == [
        f"added {len(rest)}, already there 0, failed 2",
        f"  {missing}: {first.reason}",
        f"  {page}: {second.reason}",
    ]
    states = await store.subscription_states()
    assert len(states) == len(rest)
    assert {(s.origin, s.guild_id, s.channel_id, s.webhook_id) for s in states} == {
        ("import", None, None, HOOK.webhook_id)
    }
    assert all(s.enabled and not s.paused for s in states)

    # A second import of the same file adds nothing.
    again = await import_outlines(service, outlines, target=HOOK, guild_id=None, channel_id=None)
    assert [r.status for r in again.results] == ["failed", "failed"] + ["already"] * len(rest)
    assert again.lines()[0] == f"added 0, already there {len(rest)}, failed 2"
    assert len(await store.subscription_states()) == len(rest)


async def test_import_into_a_server_is_a_discord_subscription(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(3, feed_server)
    summary = await import_outlines(
        service, outlines, target=HOOK, guild_id=GUILD, channel_id=CHANNEL
    )
    assert [r.status for r in summary.results] == ["added"] * 3
    views = await service.subscriptions(GUILD)
    assert [(v.channel_id, v.source_url, v.source_title) for v in views] == [
        (CHANNEL, o.url, o.title) for o in outlines
    ]
    assert {s.origin for s in await store.subscription_states()} == {"discord"}
    # The channel already has them, whichever webhook of it a second import uses.
    again = await import_outlines(
        service, outlines, target=WebhookTarget(778, "other"), guild_id=GUILD, channel_id=CHANNEL
    )
    assert [r.status for r in again.results] == ["already"] * 3
    # Another channel of the server does not.
    other = await import_outlines(
        service,
        outlines[:1],
        target=WebhookTarget(779, "t"),
        guild_id=GUILD,
        channel_id=OTHER_CHANNEL,
    )
    assert [r.status for r in other.results] == ["added"]


async def test_the_feed_of_a_page_is_what_gets_subscribed(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    feed_server.docs["/feed.xml"] = Doc(rss([("a", "A")], title="Blog"))
    feed_server.docs["/blog"] = Doc(
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
        b"</head><body>blog</body></html>",
        content_type="text/html",
    )
    outlines = [
        Outline(feed_server.url("/blog"), "Blog (page)", ()),
        Outline(feed_server.url("/feed.xml"), "Blog", ()),
        Outline(feed_server.url("/blog"), "listed twice", ()),
    ]
    summary = await import_outlines(service, outlines, target=HOOK, guild_id=None, channel_id=None)
    assert [(r.url, r.status) for r in summary.results] == [
        (feed_server.url("/blog"), "added"),
        (feed_server.url("/feed.xml"), "already"),
    ]
    ((url, _),) = [(h.url, h.title) for h in await store.source_health()]
    assert url == feed_server.url("/feed.xml")


async def test_a_dry_run_adds_nothing(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(3, feed_server)
    outlines.append(Outline(feed_server.url("/gone.xml"), "gone", ()))
    await import_outlines(service, outlines[:1], target=HOOK, guild_id=None, channel_id=None)
    seen: list[ImportResult] = []

    summary = await import_outlines(
        service,
        outlines,
        target=HOOK,
        guild_id=None,
        channel_id=None,
        dry_run=True,
        progress=seen.append,
    )

    assert [r.status for r in summary.results] == ["already", "skipped", "skipped", "failed"]
    assert summary.results == tuple(seen)
    assert summary.added == []
    assert [r.reason for r in summary.would_add] == [f"{DRY_RUN} f 1", f"{DRY_RUN} f 2"]
    assert (
        summary.lines()[0] == "dry run, nothing was added: would add 2, already there 1, failed 1"
    )
    assert summary.lines()[1] == f"  {outlines[1].url}: {DRY_RUN} f 1"
    assert len(await store.subscription_states()) == 1
    # the room is counted as a real import would count it
    limited = await import_outlines(
        service, outlines, target=HOOK, guild_id=None, channel_id=None, dry_run=True, room=1
    )
    assert [r.reason for r in limited.skipped] == [f"{DRY_RUN} f 1", NO_ROOM]
    assert len(await store.subscription_states()) == 1


async def test_room_limits_the_adds(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(5, feed_server)
    outlines.insert(1, Outline(feed_server.url("/gone.xml"), "gone", ()))
    await import_outlines(service, outlines[2:3], target=HOOK, guild_id=None, channel_id=None)

    summary = await import_outlines(
        service, outlines, target=HOOK, guild_id=None, channel_id=None, room=2, concurrency=3
    )

    # failed and already-there outlines take no room; the first readable ones get it
    assert [r.status for r in summary.results] == [
        "added",
        "failed",
        "already",
        "added",
        "skipped",
        "skipped",
    ]
    assert {r.reason for r in summary.skipped} == {NO_ROOM}
    assert summary.lines()[0] == "added 2, already there 1, failed 1, skipped 2"
    assert f"  {outlines[4].url}: {NO_ROOM}" in summary.lines()
    assert len(await store.subscription_states()) == 3


async def test_a_server_import_gets_the_servers_free_slots(
    store: Store, fetcher: Fetcher, feed_server: FeedServer
) -> None:
    service = make_service(store, fetcher, limit=3)
    outlines = feeds(4, feed_server)
    await import_outlines(service, outlines[:1], target=HOOK, guild_id=GUILD, channel_id=CHANNEL)
    summary = await import_outlines(
        service, outlines, target=HOOK, guild_id=GUILD, channel_id=CHANNEL
    )
    assert [r.status for r in summary.results] == ["already", "added", "added", "skipped"]
    assert await store.guild_subscription_count(GUILD) == 3


async def test_an_existing_disabled_subscription_is_reported(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(1, feed_server)
    await import_outlines(service, outlines, target=HOOK, guild_id=None, channel_id=None)
    await store.disable_webhook(HOOK.webhook_id, reason="Discord refused the webhook", now=T0)
    summary = await import_outlines(service, outlines, target=HOOK, guild_id=None, channel_id=None)
    (result,) = summary.results
    assert (result.status, result.reason) == ("already", "disabled: Discord refused the webhook")
    assert summary.lines() == [
        "added 0, already there 1, failed 0",
        f"  {outlines[0].url}: disabled: Discord refused the webhook",
    ]


async def test_imports_to_different_webhooks_are_different_subscriptions(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(1, feed_server)
    for target in (HOOK, WebhookTarget(888, "t2"), WebhookTarget(888, "t2", thread_id=5)):
        summary = await import_outlines(
            service, outlines, target=target, guild_id=None, channel_id=None
        )
        assert [r.status for r in summary.results] == ["added"]
    states = await store.subscription_states()
    assert [(s.webhook_id, s.thread_id) for s in states] == [(777, None), (888, None), (888, 5)]


async def test_imported_subscriptions_survive_the_config_sync(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(2, feed_server)
    config_feed = ConfigFeed(outlines[0].url, WebhookTarget(1, "cfg"))
    await store.sync_config_feeds([config_feed], now=T0)
    await import_outlines(service, outlines, target=HOOK, guild_id=None, channel_id=None)
    await import_outlines(
        service, outlines, target=WebhookTarget(778, "t"), guild_id=GUILD, channel_id=CHANNEL
    )
    await store.sync_config_feeds([], now=T0)
    states = {(s.origin, s.webhook_id, s.source_id): s for s in await store.subscription_states()}
    assert len(states) == 5
    assert {key[0] for key, s in states.items() if s.enabled} == {"import", "discord"}
    assert sum(s.enabled for s in states.values()) == 4
    (config,) = [s for s in states.values() if s.origin == "config"]
    assert not config.enabled


async def test_export_folders_titles_and_states(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(4, feed_server)
    await store.sync_config_feeds([ConfigFeed(outlines[3].url, WebhookTarget(1, "cfg"))], now=T0)
    await import_outlines(service, outlines[:2], target=HOOK, guild_id=GUILD, channel_id=CHANNEL)
    await import_outlines(
        service,
        outlines[1:3],
        target=WebhookTarget(5, "t5"),
        guild_id=GUILD,
        channel_id=OTHER_CHANNEL,
    )
    bare = WebhookTarget(42, "t42")
    await import_outlines(service, outlines[:1], target=bare, guild_id=None, channel_id=None)
    views = {v.source_url: v for v in await service.subscriptions(GUILD)}
    await store.set_paused(GUILD, views[outlines[0].url].id, paused=True)
    await store.disable_where(reason="the channel was deleted", channel_id=OTHER_CHANNEL, now=T0)
    await import_outlines(
        service, outlines[2:3], target=WebhookTarget(6, "t6"), guild_id=GUILD, channel_id=302
    )

    named = await export_entries(store, guild_id=GUILD, channel_names={CHANNEL: "#news"})
    assert [(e.folder, e.title, e.url, e.site) for e in named] == [
        ("#news", "f 0", outlines[0].url, "https://example.com/"),  # paused: kept
        ("#news", "f 1", outlines[1].url, "https://example.com/"),
        ("channel 302", "f 2", outlines[2].url, "https://example.com/"),
    ]
    everything = await export_entries(store)
    assert [(e.folder, e.url) for e in everything] == [
        ("webhook 1", outlines[3].url),
        ("channel 300", outlines[0].url),
        ("channel 300", outlines[1].url),
        ("webhook 42", outlines[0].url),
        ("channel 302", outlines[2].url),
    ]
    assert await export_entries(store, guild_id=999) == []


async def test_round_trip_into_an_empty_database(
    service: FeedService,
    store: Store,
    empty_store: Store,
    fetcher: Fetcher,
    feed_server: FeedServer,
) -> None:
    outlines = feeds(4, feed_server)
    await import_outlines(service, outlines[:3], target=HOOK, guild_id=None, channel_id=None)
    await import_outlines(
        service,
        outlines[1:],
        target=WebhookTarget(55, "another-token"),
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    exported = await export_entries(store, channel_names={CHANNEL: "#news"})
    document = write_opml(exported, created=T0)
    assert TOKEN not in document
    assert "another-token" not in document
    assert "webhooks/" not in document

    read_back = parse_opml(document.encode("utf-8"))
    assert {o.folder for o in read_back} == {("webhook 777",), ("#news",)}
    target = WebhookTarget(900, "new-token")
    summary = await import_outlines(
        make_service(empty_store, fetcher),
        read_back,
        target=target,
        guild_id=None,
        channel_id=None,
    )
    assert [r.status for r in summary.results] == ["added"] * 4  # the duplicates merged
    again = await export_entries(empty_store)
    assert {e.url for e in again} == {e.url for e in exported} == {o.url for o in outlines}
    assert {e.folder for e in again} == {"webhook 900"}
    assert "new-token" not in write_opml(again)


async def test_a_failing_caller_stops_the_import_cleanly(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(6, feed_server)

    def progress(result: ImportResult) -> None:
        if result.url == outlines[1].url:
            raise RuntimeError("the terminal went away")

    with pytest.raises(RuntimeError, match="went away"):
        await import_outlines(
            service,
            outlines,
            target=HOOK,
            guild_id=None,
            channel_id=None,
            progress=progress,
            concurrency=2,
        )
    # what was added before stays; nothing after it was
    assert len(await store.subscription_states()) == 2


async def test_without_room_nothing_more_is_fetched(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    outlines = feeds(3, feed_server)
    await import_outlines(service, outlines[1:2], target=HOOK, guild_id=None, channel_id=None)
    feed_server.hits.clear()
    summary = await import_outlines(
        service, outlines, target=HOOK, guild_id=None, channel_id=None, room=0
    )
    assert [r.status for r in summary.results] == ["skipped", "already", "skipped"]
    assert feed_server.hits == {}
    assert len(await store.subscription_states()) == 1
