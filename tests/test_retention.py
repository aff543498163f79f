"""Retention: old items and finished deliveries are pruned; what must stay stays
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.config import ConfigError, load_config
from bot.models import Item
from bot.poller import Poller
from bot.storage.retention import KEEP_NEWEST
from bot.storage.store import PollRecord, Store, items, outbox, sources
from tests.conftest import T0, Doc, FeedServer, Subscribe
from tests.test_poller import rss
from tests.test_storage import ok

DAY = timedelta(days=1)
MAX_AGE = timedelta(days=30)


def item(key: str, age_days: int) -> Item:
    return Item(
        key=key,
        title=key,
        link=None,
        summary="",
        author=None,
        published=T0 - timedelta(days=age_days),
        image=None,
    )


async def record(store: Store, source_id: int, new: list[Item], *, keys: list[str]) -> None:
    """A poll that stores ``new`` (nothing queued) and says its document holds ``keys``."""
    await store.record_polls(
        [
            PollRecord(
                source_id,
                new,
                outcome=ok(source_id, at=T0),
                meta=None,
                first_poll=True,
                to_queue=frozenset(),
                keys=keys,
            )
        ]
    )


async def seen_long_ago(store: Store, keys: list[str], days: int) -> None:
    async with store.db.write() as conn:
        await conn.execute(
            update(items)
            .where(items.c.item_key.in_(keys))
            .values(first_seen_at=T0 - timedelta(days=days))
        )


async def stored_keys(store: Store) -> set[str]:
    async with store.db.read() as conn:
        return {str(r[0]) for r in await conn.execute(select(items.c.item_key))}


async def test_old_items_go_and_what_must_stay_stays(store: Store, subscribe: Subscribe) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    # 60 items, one a day; the feed itself still shows the newest 10 and an old one ("o-50")
    old = [item(f"o-{n}", n) for n in range(60)]
    document = [f"o-{n}" for n in range(10)] + ["o-50"]
    await record(store, source.id, list(reversed(old)), keys=document)
    await seen_long_ago(store, [i.key for i in old], days=90)
    # the store kept what the document holds
    async with store.db.read() as conn:
        stored = (
            await conn.execute(select(sources.c.last_keys).where(sources.c.id == source.id))
        ).scalar_one()
    assert stored == document

    pruned = await store.prune(now=T0, max_age=MAX_AGE, batch=7)
    kept = await stored_keys(store)
    # the newest 20 (staleness, /feed test) and the old one still in the feed
    assert kept == {f"o-{n}" for n in range(KEEP_NEWEST)} | {"o-50"}
    assert pruned.items == 60 - KEEP_NEWEST - 1
    # a second run has nothing left to do
    assert (await store.prune(now=T0, max_age=MAX_AGE)).items == 0


async def test_recent_items_and_queued_deliveries_are_kept(
    store: Store, subscribe: Subscribe
) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    fresh = [item(f"f-{n}", n) for n in range(25)]
    await record(store, source.id, list(reversed(fresh)), keys=[])
    # seen 10 days ago: within max_age, whatever their rank
    await seen_long_ago(store, [i.key for i in fresh], days=10)
    assert (await store.prune(now=T0, max_age=MAX_AGE)).items == 0

    # old ones, one of them still queued for delivery
    await seen_long_ago(store, [i.key for i in fresh], days=90)
    async with store.db.read() as conn:
        queued_id = (
            await conn.execute(select(items.c.id).where(items.c.item_key == "f-24"))
        ).scalar_one()
    (sub,) = await store.subscription_states()
    async with store.db.write() as conn:
        await conn.execute(
            outbox.insert().values(
                subscription_id=sub.id,
                item_id=queued_id,
                state="pending",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0 - 40 * DAY,
            )
        )
    pruned = await store.prune(now=T0, max_age=MAX_AGE)
    assert pruned.items == 25 - KEEP_NEWEST - 1
    assert "f-24" in await stored_keys(store)


async def test_finished_deliveries_past_max_age_go(store: Store, subscribe: Subscribe) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    await record(store, source.id, [item("x", 0)], keys=["x"])
    (sub,) = await store.subscription_states()
    rows = [
        ("sent", T0 - 40 * DAY),  # pruned
        ("failed", T0 - 31 * DAY),  # pruned
        ("sent", T0 - 5 * DAY),  # kept: recent
    ]
    async with store.db.write() as conn:
        for n, (state, sent_at) in enumerate(rows):
            # each row its own item: UNIQUE(subscription, item)
            extra = await conn.execute(
                items.insert()
                .values(
                    source_id=source.id,
                    item_key=f"d-{n}",
                    title="d",
                    summary="",
                    categories=[],
                    first_seen_at=T0,
                )
                .returning(items.c.id)
            )
            await conn.execute(
                outbox.insert().values(
                    subscription_id=sub.id,
                    item_id=extra.scalar_one(),
                    state=state,
                    attempts=1,
                    next_attempt_at=sent_at,
                    created_at=sent_at,
                    sent_at=sent_at if state == "sent" else None,
                )
            )
    pruned = await store.prune(now=T0, max_age=MAX_AGE, batch=1)
    assert pruned.deliveries == 2
    counts = await store.counts()
    assert sum(v for k, v in counts.items() if k.startswith("outbox_")) == 1


def test_retention_below_a_week_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[retention]\nmax_age = "3d"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert 'retention.max_age: expected a duration of at least "7d"' in str(refused.value)
    path.write_text('[retention]\nmax_age = "7d"\n', encoding="utf-8")
    assert load_config(path, environ={}).retention.max_age == 7 * 86400


async def test_a_source_without_a_recorded_document_keeps_everything(
    store: Store, subscribe: Subscribe
) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    old = [item(f"o-{n}", n) for n in range(50)]
    # recorded before sources.last_keys existed (migration 0006): NULL
    await record(store, source.id, list(reversed(old)), keys=[])
    async with store.db.write() as conn:
        await conn.execute(update(sources).values(last_keys=None))
    await seen_long_ago(store, [i.key for i in old], days=90)
    assert (await store.prune(now=T0, max_age=MAX_AGE)).items == 0
    assert len(await stored_keys(store)) == 50


async def test_items_the_feed_still_shows_never_stall_the_pruning_after_them(
    store: Store, subscribe: Subscribe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.storage import retention

    monkeypatch.setattr(retention, "MAX_CANDIDATES", 5)
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    old = [item(f"o-{n}", n) for n in range(60)]
    # the oldest 15 (lowest ids once stored oldest first) are still in the feed
    in_feed = [f"o-{n}" for n in range(45, 60)]
    await record(store, source.id, list(reversed(old)), keys=in_feed)
    await seen_long_ago(store, [i.key for i in old], days=90)
    pruned = await store.prune(now=T0, max_age=MAX_AGE)
    assert pruned.items == 60 - KEEP_NEWEST - len(in_feed)
    assert await stored_keys(store) == {f"o-{n}" for n in range(KEEP_NEWEST)} | set(in_feed)


async def test_an_item_the_feed_shows_under_a_new_guid_is_kept_by_its_link(
    store: Store, subscribe: Subscribe
) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    old = [
        replace(
            item(f"o-{n}", n), link=f"https://a.example/{n}", link_norm=f"https://a.example/{n}"
        )
        for n in range(30)
    ]
    # the publisher rewrote the guid of o-29: the document holds a new key, same link
    document = [f"o-{n}" for n in range(10)] + ["new-guid-29", "https://a.example/29"]
    await record(store, source.id, list(reversed(old)), keys=document)
    await seen_long_ago(store, [i.key for i in old], days=90)
    await store.prune(now=T0, max_age=MAX_AGE)
    kept = await stored_keys(store)
    assert "o-29" in kept  # its link is still in the feed: pruned, it would post again
    assert "o-28" not in kept


async def test_a_poll_records_what_its_document_holds(
    store: Store, subscribe: Subscribe, feed_server: FeedServer, make_poller: Callable[..., Poller]
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("b", "B"), ("a", "A")]))
    await subscribe(feed_server.url("/f.xml"))
    await make_poller().poll_due()
    async with store.db.read() as conn:
        recorded = (await conn.execute(select(sources.c.last_keys))).scalar_one()
    # the entries' keys and their normalised links
    assert set(recorded) == {"a", "b", "https://example.com/a", "https://example.com/b"}
