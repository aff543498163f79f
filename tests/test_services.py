"""The services slash commands call, against real storage and a loopback feed server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.models import WebhookTarget
from bot.net import Fetcher, NetSettings
from bot.services import FeedService, ServiceError, ServiceSettings
from bot.sources.forms import SourceSettings
from bot.sources.resolve import SourceResolver
from bot.storage.store import Store
from tests.conftest import Doc, FeedServer
from tests.fakes.fake_services import Account, FakeServices, Tweet
from tests.test_poller import rss

GUILD, OTHER_GUILD, CHANNEL = 10, 20, 300
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(
        NetSettings(user_agent="t", allowed_hosts=frozenset({"127.0.0.1"}), total_timeout=1.0)
    ) as f:
        yield f


@pytest.fixture
def sent() -> list[tuple[WebhookTarget, dict[str, Any]]]:
    return []


@pytest.fixture
def service(
    store: Store, fetcher: Fetcher, sent: list[tuple[WebhookTarget, dict[str, Any]]]
) -> FeedService:
    async def send_now(target: WebhookTarget, body: dict[str, Any]) -> int:
        sent.append((target, body))
        return 1

    return FeedService(
        store,
        fetcher,
        ServiceSettings(max_subscriptions_per_guild=3, min_interval=300),
        send_now=send_now,
        clock=lambda: T0,
    )


async def add(
    service: FeedService,
    url: str,
    *,
    guild: int = GUILD,
    channel: int = CHANNEL,
    webhook: int = 1,
    backfill: int = 0,
) -> int:
    preview = await service.preview(url)
    return await service.subscribe(
        guild_id=guild,
        channel_id=channel,
        target=WebhookTarget(webhook, "tok"),
        preview=preview,
        backfill=backfill,
    )


async def test_preview_shows_the_newest_item(service: FeedService, feed_server: FeedServer) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("b", "Newest"), ("a", "Older")]))
    preview = await service.preview(feed_server.url("/f.xml"))
    assert (preview.feed.title, preview.item_count) == ("Test feed", 2)
    body = preview.body()
    assert body is not None
    assert body["embeds"][0]["title"] == "Newest"
    assert body["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("not a url", "is not a feed URL"),
        ("/missing.xml", "could not be fetched: HTTP 404"),
        ("/page.html", "not a feed feedhook can read"),
        ("/slow.xml", "took too long"),
    ],
)
async def test_preview_errors_say_what_to_do(
    service: FeedService, feed_server: FeedServer, path: str, expected: str
) -> None:
    feed_server.docs["/page.html"] = Doc(b"<html><body>hi</body></html>", content_type="text/html")
    url = path if not path.startswith("/") else feed_server.url(path)
    if path == "/slow.xml":
        url = "http://127.0.0.1:9/slow.xml"  # nothing listens: refused fast
        expected = "could not be fetched"
    with pytest.raises(ServiceError, match=expected):
        await service.preview(url)


async def test_private_addresses_are_refused_clearly(store: Store) -> None:
    async with Fetcher(NetSettings(user_agent="t")) as strict:
        service = FeedService(store, strict, ServiceSettings())
        with pytest.raises(ServiceError, match="refuses that address"):
            await service.preview("http://127.0.0.1:1/feed.xml")


async def test_subscribe_list_pause_resume_remove(
    service: FeedService, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    sub_id = await add(service, feed_server.url("/f.xml"))
    (view,) = await service.subscriptions(GUILD)
    assert (view.id, view.state, view.channel_id) == (sub_id, "ok", CHANNEL)
    await service.set_paused(GUILD, str(sub_id), paused=True)
    assert (await service.subscriptions(GUILD))[0].state == "paused"
    await service.set_paused(GUILD, f"#{sub_id}", paused=False)
    assert (await service.subscriptions(GUILD))[0].state == "ok"
    removed = await service.remove(GUILD, str(sub_id))
    assert removed.label == "Test feed"
    assert await service.subscriptions(GUILD) == []


async def test_already_subscribed_and_the_guild_limit(
    service: FeedService, feed_server: FeedServer
) -> None:
    for name in ("a", "b", "c", "d"):
        feed_server.docs[f"/{name}.xml"] = Doc(rss([(name, name)], title=f"Feed {name}"))
    await add(service, feed_server.url("/a.xml"))
    with pytest.raises(ServiceError, match="already gets \\*\\*Feed a\\*\\*"):
        await add(service, feed_server.url("/a.xml"), webhook=2)
    await add(service, feed_server.url("/b.xml"))
    await add(service, feed_server.url("/c.xml"))
    with pytest.raises(ServiceError, match="already has 3 feed subscriptions"):
        await add(service, feed_server.url("/d.xml"))
    # Another server has its own allowance.
    await add(service, feed_server.url("/d.xml"), guild=OTHER_GUILD, channel=999, webhook=9)


async def test_a_server_sees_and_touches_only_its_own(
    service: FeedService, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    mine = await add(service, feed_server.url("/f.xml"))
    assert await service.subscriptions(OTHER_GUILD) == []
    assert await service.autocomplete(OTHER_GUILD, "") == []
    for action in (
        service.remove(OTHER_GUILD, str(mine)),
        service.set_paused(OTHER_GUILD, str(mine), paused=True),
        service.send_test(OTHER_GUILD, str(mine)),
    ):
        with pytest.raises(ServiceError, match="No such subscription on this server"):
            await action
    assert (await service.subscriptions(GUILD))[0].state == "ok"


async def test_autocomplete_offers_matching_subscriptions(
    service: FeedService, feed_server: FeedServer
) -> None:
    feed_server.docs["/cats.xml"] = Doc(rss([("a", "A")], title="Cat News"))
    feed_server.docs["/dogs.xml"] = Doc(rss([("b", "B")], title="Dog Weekly"))
    cats = await add(service, feed_server.url("/cats.xml"))
    await add(service, feed_server.url("/dogs.xml"))
    assert await service.autocomplete(GUILD, "cat") == [(f"#{cats} Cat News", str(cats))]
    assert len(await service.autocomplete(GUILD, "")) == 2


async def test_sources_from_discord_poll_no_faster_than_min_interval(
    service: FeedService, store: Store, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    await add(service, feed_server.url("/f.xml"))
    async with store.db.read() as conn:
        from sqlalchemy import text

        interval = (await conn.execute(text("SELECT interval_seconds FROM sources"))).scalar_one()
    assert interval == 300


async def test_send_test_posts_the_newest_stored_item(
    service: FeedService,
    store: Store,
    feed_server: FeedServer,
    sent: list[tuple[WebhookTarget, dict[str, Any]]],
) -> None:
    from bot.models import Item
    from bot.storage.store import FeedMeta, PollOutcome

    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    sub_id = await add(service, feed_server.url("/f.xml"))
    # right after /feed add nothing is stored yet: the source is read now
    await service.send_test(GUILD, str(sub_id))
    ((target, body),) = sent
    assert body["embeds"][0]["title"] == "A"
    assert body["allowed_mentions"] == {"parse": []}
    sent.clear()
    source_id = await store.add_source(feed_server.url("/f.xml"), now=T0)
    items = [
        Item(
            key=k,
            title=f"Item {k}",
            link=f"https://e.com/{k}",
            summary="",
            author=None,
            published=T0 + timedelta(minutes=n),
            image=None,
        )
        for n, k in enumerate(["old", "new"])
    ]
    await store.record_items(
        source_id,
        items,
        to_queue=set(),
        outcome=PollOutcome(source_id, T0, T0, ok=True, keep_validators=False),
        meta=FeedMeta("Test feed", None, None, "rss"),
        first_poll=True,
    )
    await service.send_test(GUILD, str(sub_id))
    ((target, body),) = sent
    assert target.webhook_id == 1
    assert body["embeds"][0]["title"] == "Item new"


async def test_lifecycle_events_disable_with_a_reason(
    service: FeedService, feed_server: FeedServer
) -> None:
    for name in ("a", "b", "c"):
        feed_server.docs[f"/{name}.xml"] = Doc(rss([(name, name)], title=f"Feed {name}"))
    await add(service, feed_server.url("/a.xml"), channel=1, webhook=11)
    await add(service, feed_server.url("/b.xml"), channel=2, webhook=22)
    await add(service, feed_server.url("/c.xml"), channel=3, webhook=33)
    assert len(await service.channel_deleted(1)) == 1
    assert len(await service.webhooks_changed(2, existing={99})) == 1
    assert await service.webhooks_changed(3, existing={33}) == []
    reasons = {v.channel_id: v.disabled_reason for v in await service.subscriptions(GUILD)}
    assert reasons[1] == "the channel was deleted"
    assert "webhook was deleted" in str(reasons[2])
    assert reasons[3] is None
    assert len(await service.guild_left(GUILD)) == 1
    status = await service.status(GUILD)
    assert (status.total, status.ok, len(status.disabled)) == (3, 0, 3)
    with pytest.raises(ServiceError, match="is disabled"):
        await service.set_paused(GUILD, str(status.disabled[0].id), paused=True)


def test_long_lists_are_split_into_pages() -> None:
    from bot.discord.replies import pages

    lines = [f"line {n} " + "x" * 300 for n in range(20)]
    out = pages(lines, limit=1900)
    assert len(out) > 1
    assert all(len(page) <= 1900 for page in out)
    assert "\n".join(out).split("\n") == lines


# -- source forms --------------------------------------------------------------------


async def test_add_a_source_typed_as_a_form(store: Store, fetcher: Fetcher) -> None:
    bridge = await FakeServices(bridge="nitter").start()
    try:
        bridge.accounts["jack"] = Account(tweets=[Tweet(7, "Hello from X")])
        sources = SourceResolver(SourceSettings(x_bridges=(bridge.base,)))
        service = FeedService(store, fetcher, ServiceSettings(), clock=lambda: T0, sources=sources)
        preview = await service.preview("x:@Jack")
        assert preview.url == "https://x.com/jack"  # the canonical URL, not the bridge's
        assert preview.feed.title == "Jack Example (@jack)"
        assert preview.newest is not None
        assert preview.newest.link == "https://x.com/jack/status/7"
        assert preview.newest.social is not None
        await add(service, "x:jack")
        # The same account typed another way is the same source: already subscribed.
        with pytest.raises(ServiceError, match="already gets"):
            await add(service, "https://twitter.com/Jack")
        assert await service.already_subscribed(GUILD, CHANNEL, preview.url)
        (view,) = await service.subscriptions(GUILD)
        assert view.source_url == "https://x.com/jack"
    finally:
        await bridge.close()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x:jack", r'\[sources\.x\] bridges = \["https://nitter\.example"\]'),
        ("bsky:", "`bsky:` is missing the Bluesky handle"),
        ("x:bad handle!", "is not an X handle"),
    ],
)
async def test_unusable_forms_are_answered_clearly(
    service: FeedService, source: str, expected: str
) -> None:
    with pytest.raises(ServiceError, match=expected):
        await service.preview(source)


async def test_send_test_without_delivery_queues_for_the_delivery_processes(
    service: FeedService,
    store: Store,
    fetcher: Fetcher,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot import services as services_module
    from bot.models import Item
    from bot.storage.store import FeedMeta, PollOutcome, SentMark

    monkeypatch.setattr(services_module, "TEST_QUEUE_WAIT", 1.0)
    # a process started with --role bot (no delivery): no send_now
    bot_only = FeedService(
        store,
        fetcher,
        ServiceSettings(max_subscriptions_per_guild=3, min_interval=300),
        send_now=None,
        clock=lambda: T0,
    )
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    sub_id = await add(service, feed_server.url("/f.xml"))
    source_id = await store.add_source(feed_server.url("/f.xml"), now=T0)
    newest = Item(
        key="new",
        title="Item new",
        link="https://e.com/new",
        summary="",
        author=None,
        published=T0,
        image=None,
    )
    await store.record_items(
        source_id,
        [newest],
        to_queue=set(),
        outcome=PollOutcome(source_id, T0, T0, ok=True, keep_validators=False),
        meta=FeedMeta("Test feed", None, None, "rss"),
        first_poll=True,
    )
    # nobody delivers: answered "queued", one row in the queue, however often asked
    result = await bot_only.send_test(GUILD, str(sub_id))
    assert (result.view.id, result.sent) == (sub_id, False)
    await bot_only.send_test(GUILD, str(sub_id))
    assert await store.outbox_items(sub_id) == [(1, "new", "pending")]

    # a delivery process sends it while the command waits: answered "posted"
    async def deliver() -> None:
        await asyncio.sleep(0.3)
        (job,) = await store.claim_deliveries(
            now=T0, limit=1, batch=10, lease=timedelta(seconds=60)
        )
        await store.mark_sent_many([SentMark((job.entries[0].id,), 42, T0)])

    delivering = asyncio.create_task(deliver())
    # (the row is still pending: this asks again and waits for the sender)
    assert (await bot_only.send_test(GUILD, str(sub_id))).sent
    await delivering
    # asked again after it went out: the same row goes back to the queue
    assert not (await bot_only.send_test(GUILD, str(sub_id))).sent
    assert await store.outbox_items(sub_id) == [(1, "new", "pending")]


async def test_settings_commands_change_only_their_part(
    service: FeedService, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    sub = str(await add(service, feed_server.url("/f.xml")))
    await service.set_options(GUILD, sub, embed=False)
    # saving a username in the form keeps the text style; typing an embed title asks for embeds
    result = await service.set_format(GUILD, sub, {"username": "Harbour bot"})
    assert not result.shape.embed
    assert result.view.options["username"] == "Harbour bot"
    result = await service.set_format(GUILD, sub, {"title": "[{source_title}] {title}"})
    assert result.shape.embed
    assert result.view.options["embed"] == {"title": "[{source_title}] {title}"}
    assert "username" not in result.view.options  # the form sets all five: empty = default
    with pytest.raises(ServiceError, match=r"Nothing was saved: include: "):
        await service.set_filter(GUILD, sub, include="/[unclosed/", exclude=None)
    result = await service.set_filter(GUILD, sub, include="release, title:alpha", exclude=None)
    assert result.view.options["include"] == ["release", "title:alpha"]
    result = await service.set_filter(GUILD, sub, include="-", exclude=None)
    assert "include" not in result.view.options
    result = await service.set_mention(GUILD, sub, role_id=42, when="release")
    assert result.view.options["mention_roles"] == ["42"]
    assert result.view.options["mention_when"] == ["release"]
    result = await service.set_mention(GUILD, sub, role_id=None, when=None)
    assert "mention_roles" not in result.view.options
    assert "mention_when" not in result.view.options
