from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Update, bindparam, insert, select, text, update
from sqlalchemy.exc import (
    IntegrityError,
    MultipleResultsFound,
    NoResultFound,
    ResourceClosedError,
)

from bot.models import Item, WebhookTarget
from bot.storage.db import Database, DatabaseError, driver_url, head_revision, redact_url
from bot.storage.store import (
    REMOVED_FROM_CONFIG,
    ConfigFeed,
    PollOutcome,
    Store,
    items,
    outbox,
    sources,
    subscriptions,
)
from bot.storage.tables import SQLModel

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def item(key: str, *, link: str | None = None, published: datetime | None = None) -> Item:
    return Item(
        key=key,
        title=f"title {key}",
        link=link,
        summary="summary",
        author=None,
        published=published,
        image=None,
        categories=("a", "b"),
        link_norm=link,
    )


def ok(source_id: int, *, at: datetime = NOW) -> PollOutcome:
    return PollOutcome(
        source_id,
        at,
        at + timedelta(minutes=10),
        ok=True,
        etag='"v1"',
        last_modified=None,
        body_hash="h1",
        keep_validators=False,
    )


async def test_migrations_match_the_models(db: Database) -> None:
    diff = await db.run_sync(
        lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
    )
    assert diff == []
    assert await db.current_revision() == head_revision()


async def test_upgrade_is_idempotent(db: Database) -> None:
    await db.upgrade()
    assert await db.current_revision() == head_revision()


async def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    await db.upgrade()
    async with db.read() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
    await db.dispose()
    assert mode == "wal"


async def test_unreachable_database_is_one_clear_error() -> None:
    db = Database("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(DatabaseError) as info:
        await db.upgrade()
    await db.dispose()
    assert "secret" not in str(info.value)
    assert "check database.url" in str(info.value)


def test_database_urls_map_to_their_drivers() -> None:
    assert driver_url("sqlite:///x.db") == "sqlite+pysqlite:///x.db"
    assert driver_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert redact_url("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


async def test_a_cancelled_write_rolls_back_and_gives_its_connection_back(store: Store) -> None:
    source = await store.add_source("https://example.com/feed", now=NOW)
    inside = asyncio.Event()

    async def write_then_hang() -> None:
        async with store.db.write() as conn:
            await conn.execute(sources_update(source, 7))
            inside.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(write_then_hang())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await failures_of(store, source) == 0  # rolled back
    async with store.db.write() as conn:  # and the write lock and connection are free
        assert (await conn.execute(sources_update(source, 2))).rowcount == 1


async def test_more_open_transactions_than_the_pool_holds_all_finish(store: Store) -> None:
    """Many polls hold read transactions across awaits at once: none may wait forever
    for a connection (SQLite's pool lives in the one database thread)."""
    source = await store.add_source("https://example.com/feed", now=NOW)

    async def reader() -> int:
        async with store.db.read() as conn:
            first = (await conn.execute(select(sources.c.id))).scalar_one()
            await asyncio.sleep(0.01)
            second = (await conn.execute(select(sources.c.id))).scalar_one()
        return int(first) + int(second)

    results = await asyncio.wait_for(asyncio.gather(*(reader() for _ in range(40))), 30)
    assert results == [2 * source] * 40


async def test_rows_answer_like_sqlalchemy_results(store: Store) -> None:
    await store.add_source("https://example.com/a", now=NOW)
    await store.add_source("https://example.com/b", now=NOW)
    async with store.db.read() as conn:
        many = await conn.execute(select(sources.c.url).order_by(sources.c.url))
        none = await conn.execute(select(sources.c.url).where(sources.c.id < 0))
        changed = await conn.execute(sources_update(-1, 1))
    assert many.scalars() == ["https://example.com/a", "https://example.com/b"]
    assert [tuple(r) for r in many] == [("https://example.com/a",), ("https://example.com/b",)]
    assert none.first() is None
    assert none.scalar_one_or_none() is None
    assert changed.rowcount == 0
    with pytest.raises(MultipleResultsFound):
        many.one()
    with pytest.raises(NoResultFound):
        none.scalar_one()
    with pytest.raises(ResourceClosedError):
        changed.all()


async def test_write_one_commits_and_a_failed_statement_changes_nothing(store: Store) -> None:
    source = await store.add_source("https://example.com/feed", now=NOW)
    changed = await store.db.write_one(
        update(sources)
        .where(sources.c.id == source)
        .values(consecutive_failures=3)
        .returning(sources.c.consecutive_failures)
    )
    assert changed.scalar_one() == 3
    # Half of an executemany fails on the unique URL: the whole statement is rolled back.
    duplicate = (
        update(sources)
        .where(sources.c.id == bindparam("b_id"))
        .values(url=bindparam("b_url"), consecutive_failures=bindparam("b_n"))
    )
    other = await store.add_source("https://example.com/other", now=NOW)
    with pytest.raises(IntegrityError):
        await store.db.write_one(
            duplicate,
            [
                {"b_id": source, "b_url": "https://example.com/feed", "b_n": 5},
                {"b_id": other, "b_url": "https://example.com/feed", "b_n": 5},
            ],
        )
    async with store.db.read() as conn:
        rows = (
            await conn.execute(
                select(sources.c.url, sources.c.consecutive_failures).order_by(sources.c.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("https://example.com/feed", 3),
        ("https://example.com/other", 0),
    ]
    # The connection that failed went back usable, and so did the write lock.
    assert (await store.db.write_one(sources_update(other, 1))).rowcount == 1


async def test_a_cancelled_write_one_still_commits_in_turn(store: Store) -> None:
    """Its statement is already queued for the database thread: it runs, and the
    writes queued after it see it committed."""
    if store.db.dialect != "sqlite":
        pytest.skip("PostgreSQL cancels a statement with its caller")
    source = await store.add_source("https://example.com/feed", now=NOW)
    task = asyncio.create_task(store.db.write_one(sources_update(source, 4)))
    await asyncio.sleep(0)  # it holds the write lock and has queued its statement
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await failures_of(store, source) == 4


async def failures_of(store: Store, source_id: int) -> int:
    async with store.db.read() as conn:
        return int(
            (
                await conn.execute(
                    select(sources.c.consecutive_failures).where(sources.c.id == source_id)
                )
            ).scalar_one()
        )


def sources_update(source_id: int, failures: int) -> Update:
    return update(sources).where(sources.c.id == source_id).values(consecutive_failures=failures)


async def test_item_key_is_unique_per_source(store: Store) -> None:
    source = await store.add_source("https://example.com/feed", now=NOW)
    row = {
        "source_id": source,
        "item_key": "k",
        "title": "t",
        "summary": "",
        "categories": [],
        "first_seen_at": NOW,
    }
    async with store.db.write() as conn:
        await conn.execute(insert(items).values(**row))
    with pytest.raises(IntegrityError):
        async with store.db.write() as conn:
            await conn.execute(insert(items).values(**row))


async def test_outbox_is_unique_per_subscription_and_item(store: Store) -> None:
    await store.sync_config_feeds(
        [ConfigFeed("https://example.com/feed", WebhookTarget(1, "tok"))], now=NOW
    )
    claimed = await store.claim_due_sources(now=NOW, limit=10, lease=timedelta(minutes=5))
    await store.record_items(
        claimed[0].id,
        [item("a")],
        to_queue=set(),
        outcome=ok(claimed[0].id),
        meta=None,
        first_poll=True,
    )
    async with store.db.read() as conn:
        item_id = (await conn.execute(select(items.c.id))).scalar_one()
        sub_id = (await conn.execute(select(subscriptions.c.id))).scalar_one()
    row = {
        "subscription_id": sub_id,
        "item_id": item_id,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    async with store.db.write() as conn:
        await conn.execute(insert(outbox).values(**row))
    with pytest.raises(IntegrityError):
        async with store.db.write() as conn:
            await conn.execute(insert(outbox).values(**row))


async def test_first_poll_records_items_and_queues_nothing(store: Store) -> None:
    await store.sync_config_feeds(
        [ConfigFeed("https://example.com/feed", WebhookTarget(1, "tok"))], now=NOW
    )
    (due,) = await store.claim_due_sources(now=NOW, limit=10, lease=timedelta(minutes=5))
    assert not due.initialized
    queued = await store.record_items(
        due.id,
        [item("a"), item("b")],
        to_queue={"a", "b"},
        outcome=ok(due.id),
        meta=None,
        first_poll=True,
    )
    assert queued == 0
    counts = await store.counts()
    assert counts["items"] == 2
    assert "outbox_pending" not in counts


async def test_backfill_queues_the_newest_items_oldest_first(store: Store) -> None:
    await store.sync_config_feeds(
        [ConfigFeed("https://example.com/feed", WebhookTarget(1, "tok"), backfill=2)], now=NOW
    )
    (due,) = await store.claim_due_sources(now=NOW, limit=10, lease=timedelta(minutes=5))
    await store.record_items(
        due.id,
        [item("old"), item("mid"), item("new")],
        to_queue=set(),
        outcome=ok(due.id),
        meta=None,
        first_poll=True,
    )
    assert [key for _, key, _ in await store.outbox_items()] == ["mid", "new"]


async def test_new_items_queue_one_row_per_active_subscription(store: Store) -> None:
    url = "https://example.com/feed"
    await store.sync_config_feeds(
        [
            ConfigFeed(url, WebhookTarget(1, "a")),
            ConfigFeed(url, WebhookTarget(2, "b")),
            ConfigFeed(url, WebhookTarget(2, "b", thread_id=99)),
        ],
        now=NOW,
    )
    (due,) = await store.claim_due_sources(now=NOW, limit=10, lease=timedelta(minutes=5))
    await store.record_items(
        due.id, [item("a")], to_queue=set(), outcome=ok(due.id), meta=None, first_poll=True
    )
    queued = await store.record_items(
        due.id,
        [item("b"), item("c")],
        to_queue={"b", "c"},
        outcome=ok(due.id),
        meta=None,
        first_poll=False,
    )
    assert queued == 6
    # The same items again (another process got there first) queue nothing more.
    again = await store.record_items(
        due.id,
        [item("b"), item("c")],
        to_queue={"b", "c"},
        outcome=ok(due.id),
        meta=None,
        first_poll=False,
    )
    assert again == 0
    assert (await store.counts())["outbox_pending"] == 6


async def test_config_sync_upserts_and_disables_removed_entries(store: Store) -> None:
    a = ConfigFeed("https://example.com/a", WebhookTarget(1, "tok"))
    b = ConfigFeed("https://example.com/b", WebhookTarget(1, "tok"))
    await store.sync_config_feeds([a, b], now=NOW)
    await store.sync_config_feeds([a, b], now=NOW)
    assert (await store.counts())["subscriptions"] == 2
    await store.sync_config_feeds([a], now=NOW)
    async with store.db.read() as conn:
        rows = (
            await conn.execute(
                select(subscriptions.c.enabled, subscriptions.c.disabled_reason).order_by(
                    subscriptions.c.id
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [(True, None), (False, REMOVED_FROM_CONFIG)]
    # A source without an active subscription is not polled.
    due = await store.claim_due_sources(now=NOW, limit=10, lease=timedelta(minutes=5))
    assert [d.url for d in due] == ["https://example.com/a"]
    # Putting the entry back re-enables it.
    await store.sync_config_feeds([a, b], now=NOW)
    async with store.db.read() as conn:
        enabled = (await conn.execute(select(subscriptions.c.enabled))).scalars()
    assert enabled == [True, True]


async def test_claims_are_exclusive_and_expire(store: Store) -> None:
    feeds = [ConfigFeed(f"https://example.com/{i}", WebhookTarget(1, "t")) for i in range(40)]
    await store.sync_config_feeds(feeds, now=NOW)
    lease = timedelta(minutes=5)
    first, second = await asyncio.gather(
        store.claim_due_sources(now=NOW, limit=25, lease=lease),
        store.claim_due_sources(now=NOW, limit=25, lease=lease),
    )
    ids = [d.id for d in first + second]
    assert len(ids) == len(set(ids)) == 40
    assert await store.claim_due_sources(now=NOW, limit=100, lease=lease) == []
    later = NOW + lease + timedelta(seconds=1)
    assert len(await store.claim_due_sources(now=later, limit=100, lease=lease)) == 40


async def test_failures_count_up_and_success_resets(store: Store) -> None:
    await store.sync_config_feeds(
        [ConfigFeed("https://example.com/feed", WebhookTarget(1, "tok"))], now=NOW
    )
    (due,) = await store.claim_due_sources(now=NOW, limit=1, lease=timedelta(minutes=5))
    for n in range(3):
        at = NOW + timedelta(minutes=n)
        await store.record_outcomes([PollOutcome(due.id, at, at, ok=False, error=f"HTTP 500 #{n}")])
    (health,) = await store.source_health()
    assert health.consecutive_failures == 3
    assert health.failing_since == NOW
    assert health.last_error == "HTTP 500 #2"
    await store.record_outcomes([ok(due.id, at=NOW + timedelta(hours=1))])
    (health,) = await store.source_health()
    assert (health.consecutive_failures, health.failing_since, health.last_error) == (0, None, None)
    assert health.last_success_at == NOW + timedelta(hours=1)


async def test_move_source_refuses_a_url_another_source_has(store: Store) -> None:
    a = await store.add_source("https://example.com/a", now=NOW)
    await store.add_source("https://example.com/b", now=NOW)
    assert not await store.move_source(a, "https://example.com/b")
    assert await store.move_source(a, "https://example.com/c")
    assert {h.url for h in await store.source_health()} == {
        "https://example.com/b",
        "https://example.com/c",
    }
