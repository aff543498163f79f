"""Storage benchmark: what one transaction and one delivery claim cost, against baselines
measured in the same run.

    python -m bench.storage [--transactions N] [--subscriptions N] [--history N]

1. a one-statement write transaction (UPDATE) and read transaction (SELECT) through
   ``Database`` (SQLite, the bot's own path), against the same statements on a plain
   ``sqlite3`` connection and on SQLAlchemy's synchronous engine;
2. ``Store.claim_deliveries`` (16 subscriptions x up to 10 rows) with ``--subscriptions``
   subscriptions that have each sent 0 and ``--history`` rows before: a claim should not get
   slower as the bot's history grows.

CPU is ``time.process_time()`` (all threads of this process); run it on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, select, update

from bot.models import WebhookTarget
from bot.storage.db import Database
from bot.storage.store import ConfigFeed, Store, sources

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
STAMP = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")


def per_call_ms(n: int, started: float) -> float:
    return 1000.0 * (time.process_time() - started) / n


async def timed_async(n: int, call: Callable[[], Awaitable[object]]) -> float:
    started = time.process_time()
    for _ in range(n):
        await call()
    return per_call_ms(n, started)


def timed(n: int, call: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(n):
        call()
    return per_call_ms(n, started)


async def transactions(workdir: Path, n: int) -> None:
    path = workdir / "tx.db"
    db = Database(f"sqlite:///{path}")
    await db.upgrade()
    store = Store(db)
    source = await store.add_source("https://example.com/feed", now=NOW)
    write_stmt = update(sources).where(sources.c.id == source).values(consecutive_failures=0)
    read_stmt = select(sources.c.id).where(sources.c.id == source)

    async def write() -> None:
        async with db.write() as conn:
            await conn.execute(write_stmt)

    async def read() -> None:
        async with db.read() as conn:
            (await conn.execute(read_stmt)).all()

    ours = (await timed_async(n, write), await timed_async(n, read))
    await db.dispose()

    engine = create_engine(f"sqlite:///{path}")

    def sync_write() -> None:
        with engine.begin() as conn:
            conn.execute(write_stmt)

    def sync_read() -> None:
        with engine.connect() as conn:
            conn.execute(read_stmt).all()

    sync = (timed(n, sync_write), timed(n, sync_read))
    engine.dispose()

    plain = sqlite3.connect(path)
    plain.execute("PRAGMA journal_mode=WAL")
    plain.execute("PRAGMA synchronous=NORMAL")

    def raw_write() -> None:
        with plain:
            plain.execute("UPDATE sources SET consecutive_failures = 0 WHERE id = ?", (source,))

    def raw_read() -> None:
        plain.execute("SELECT id FROM sources WHERE id = ?", (source,)).fetchall()

    raw = (timed(n, raw_write), timed(n, raw_read))
    plain.close()

    print(f"\n== one-statement transactions ({n} each), ms CPU per transaction")
    print(f"  {'':<40}{'write':>10}{'read':>10}")
    print(f"  {'plain sqlite3 (floor)':<40}{raw[0]:>10.3f}{raw[1]:>10.3f}")
    print(f"  {'SQLAlchemy synchronous engine':<40}{sync[0]:>10.3f}{sync[1]:>10.3f}")
    print(f"  {'feedhook Database (event loop + thread)':<40}{ours[0]:>10.3f}{ours[1]:>10.3f}")
    print(
        f"  feedhook / synchronous engine: write {ours[0] / sync[0]:.1f}x, "
        f"read {ours[1] / sync[1]:.1f}x (the rest is crossing into the database thread)"
    )


async def claim_cost(workdir: Path, subscriptions: int, history: int) -> float:
    """ms CPU per claim_deliveries with ``history`` sent rows per subscription."""
    path = workdir / f"claim-{history}.db"
    db = Database(f"sqlite:///{path}")
    await db.upgrade()
    feeds = [
        ConfigFeed(
            url=f"https://site{i}.example.com/feed",
            target=WebhookTarget(webhook_id=10**9 + i, token="t" * 68),
        )
        for i in range(subscriptions)
    ]
    await Store(db).sync_config_feeds(feeds, now=NOW)
    await db.dispose()
    # Bulk rows straight into the file: the store's own writes would take minutes here.
    conn = sqlite3.connect(path)
    subs = conn.execute("SELECT id, source_id FROM subscriptions").fetchall()
    per_source = history + 10
    conn.executemany(
        "INSERT INTO items (source_id, item_key, title, summary, categories, first_seen_at) "
        "VALUES (?, ?, 't', 's', '[]', ?)",
        [(src, f"k{k}", STAMP) for _, src in subs for k in range(per_source)],
    )
    item_ids: dict[int, list[int]] = {}
    for item_id, src in conn.execute("SELECT id, source_id FROM items ORDER BY id"):
        item_ids.setdefault(src, []).append(item_id)
    conn.executemany(
        "INSERT INTO outbox (subscription_id, item_id, state, attempts, next_attempt_at, "
        "created_at) VALUES (?, ?, ?, 0, ?, ?)",
        [
            (sub, item_id, "sent" if k < history else "pending", STAMP, STAMP)
            for sub, src in subs
            for k, item_id in enumerate(item_ids[src])
        ],
    )
    conn.commit()
    conn.close()
    db = Database(f"sqlite:///{path}")
    store = Store(db)
    rounds = 20
    started = time.process_time()
    for _ in range(rounds):
        await store.claim_deliveries(
            now=NOW + timedelta(minutes=1), limit=16, batch=10, lease=timedelta(minutes=5)
        )
    cost = per_call_ms(rounds, started)
    await db.dispose()
    return cost


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="feedhook-bench-storage-") as tmp:
        workdir = Path(tmp)
        await transactions(workdir, args.transactions)
        fresh = await claim_cost(workdir, args.subscriptions, 0)
        old = await claim_cost(workdir, args.subscriptions, args.history)
    print(f"\n== delivery claims, {args.subscriptions} subscriptions, 16 claimed x <= 10 rows")
    print(f"  no sent history (baseline)          {fresh:8.2f} ms CPU per claim")
    print(f"  {args.history} sent rows per subscription   {old:8.2f} ms CPU per claim")
    print(f"  ratio {old / fresh:.2f}x (flat is the goal: claims must not slow down with age)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--history", type=int, default=200)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
