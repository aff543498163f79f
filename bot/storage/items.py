"""Items and poll recording: which entries a source has already seen, inserting the
new ones, queueing them for the subscriptions, and item times for staleness."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update

from bot.models import Item
from bot.storage._common import (
    MAX_STORED_SUMMARY,
    StoreBase,
    _chunks,
    _dialect_insert,
    _item_values,
    items,
    outbox,
    sources,
    subscriptions,
)
from bot.storage.db import DbConnection
from bot.storage.sources import _NEW_VALIDATORS, PollOutcome, _healthy_update


@dataclass(frozen=True, slots=True)
class FeedMeta:
    title: str
    site_link: str | None
    icon_url: str | None
    kind: str
    # WebSub discovery (bot.websub.discover): kept on the source for the subscriber
    hub_url: str | None = None
    topic_url: str | None = None


Chooser = Callable[[set[str], set[str]], tuple[list[Item], set[str]]]


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One changed source's poll, for :meth:`Store.record_polls`."""

    source_id: int
    items: Sequence[Item]
    outcome: PollOutcome
    meta: FeedMeta | None
    first_poll: bool
    # Given the item keys and unique links the source already has (read inside the
    # transaction), which items are new, oldest first, and which keys to queue.
    # None: insert ``items`` as they are and queue ``to_queue``.
    choose: Chooser | None = None
    to_queue: frozenset[str] = frozenset()
    # Every item key of the document (sources.last_keys, kept from pruning); None keeps
    # what is stored.
    keys: Sequence[str] | None = None
    # Items a WebSub hub pushed (or an inbound hook's post): the source row keeps its
    # poll schedule, validators and health; only its newest item time moves.
    pushed: bool = False


@dataclass(frozen=True, slots=True)
class RecordedPoll:
    new_items: int  # items inserted (another process may have inserted some first)
    queued: int  # outbox rows queued
    chosen: int  # items ``choose`` found new


class ItemsMixin(StoreBase):
    """Item queries: what a source has seen, recording polls, queueing new items."""

    async def known_items(
        self, source_id: int, keys: Sequence[str], links: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Which of ``keys`` and normalised ``links`` this source has already seen."""
        known_keys: set[str] = set()
        known_links: set[str] = set()
        async with self.db.read() as conn:
            for chunk in _chunks(keys, 500):
                result = await conn.execute(
                    select(items.c.item_key).where(
                        items.c.source_id == source_id, items.c.item_key.in_(chunk)
                    )
                )
                known_keys.update(r[0] for r in result)
            for chunk in _chunks(links, 500):
                result = await conn.execute(
                    select(items.c.link_norm).where(
                        items.c.source_id == source_id, items.c.link_norm.in_(chunk)
                    )
                )
                known_links.update(r[0] for r in result)
        return known_keys, known_links

    async def record_items(
        self,
        source_id: int,
        new_items: Sequence[Item],
        *,
        to_queue: set[str],
        outcome: PollOutcome,
        meta: FeedMeta | None,
        first_poll: bool,
    ) -> int:
        """One source's :meth:`record_polls`: insert ``new_items`` (oldest first),
        queue the keys in ``to_queue``, store the outcome. Returns the rows queued."""
        record = PollRecord(
            source_id,
            new_items,
            outcome=outcome,
            meta=meta,
            first_poll=first_poll,
            to_queue=frozenset(to_queue),
        )
        (recorded,) = await self.record_polls([record])
        return recorded.queued

    async def record_polls(self, records: Sequence[PollRecord]) -> list[RecordedPoll]:
        """In ONE transaction, for each changed source: insert its new items as seen,
        queue an outbox row per active subscription for the chosen keys, and store
        the poll outcome. A handful of statements serve the whole batch.

        A crash before the commit records nothing (the next polls find the items
        again); after it, they are both seen and queued. Items another process
        inserted meanwhile are skipped by the unique constraint.
        """
        if not records:
            return []
        async with self.db.write() as conn:
            known_keys, known_links = await self._known_in_batch(
                conn, [r for r in records if r.choose is not None and r.items]
            )
            plans: list[tuple[PollRecord, list[Item], set[str]]] = []
            for record in records:
                if record.choose is None:
                    plans.append((record, list(record.items), set(record.to_queue)))
                else:
                    new, queue = record.choose(
                        known_keys.get(record.source_id, set()),
                        known_links.get(record.source_id, set()),
                    )
                    plans.append((record, new, queue))

            inserted: dict[tuple[int, str], int] = {}
            item_rows = [
                _item_values(record.source_id, item, record.outcome.polled_at)
                for record, new, _ in plans
                for item in new
            ]
            if item_rows:
                # executemany + RETURNING runs as batched multi-row INSERTs
                # ("insertmanyvalues") on both SQLite and psycopg.
                result = await conn.execute(_insert_items_stmt(self.db.dialect), item_rows)
                inserted = {(int(sid), str(key)): int(iid) for iid, sid, key in result.all()}

            wanting = sorted({r.source_id for r, _, queue in plans if queue and not r.first_poll})
            subs = await self._active_subscriptions_of(conn, wanting)
            outbox_rows: list[dict[str, Any]] = []
            results: list[RecordedPoll] = []
            for record, new, queue in plans:
                sid, now = record.source_id, record.outcome.polled_at
                fresh = sum(1 for item in new if (sid, item.key) in inserted)
                if record.first_poll:
                    queued = await self._queue_backfill(conn, sid, now)
                else:
                    ids = [
                        inserted[(sid, item.key)]
                        for item in new
                        if item.key in queue and (sid, item.key) in inserted
                    ]
                    rows = _outbox_values(subs.get(sid, ()), ids, now)
                    outbox_rows.extend(rows)
                    queued = len(rows)
                results.append(RecordedPoll(new_items=fresh, queued=queued, chosen=len(new)))
            if outbox_rows:
                await conn.execute(_queue_stmt(self.db.dialect), outbox_rows)
            await self._note_edits(conn, plans, known_keys)
            await self._record_changed(
                conn, [(record, new) for record, new, _ in plans if not record.pushed]
            )
            for record, new, _ in plans:
                if record.pushed:
                    await self._record_pushed(conn, record, new)
        return results

    async def _record_pushed(
        self, conn: DbConnection, record: PollRecord, new: Sequence[Item]
    ) -> None:
        newest = max((i.published for i in new if i.published), default=None)
        if newest is not None:
            await conn.execute(
                update(sources)
                .where(
                    sources.c.id == record.source_id,
                    or_(sources.c.newest_item_at.is_(None), sources.c.newest_item_at < newest),
                )
                .values(newest_item_at=newest)
            )

    async def follows_edits(self, source_id: int) -> bool:
        """Whether an active subscription of the source follows its edits (the poller then
        builds changed entries it already knows, to compare them)."""
        async with self.db.read() as conn:
            return bool(await self._edit_followers(conn, [source_id]))

    async def _edit_followers(
        self, conn: DbConnection, source_ids: Sequence[int]
    ) -> dict[int, list[int]]:
        """Per source, its active subscriptions with ``follow_edits`` set."""
        found: dict[int, list[int]] = {}
        for chunk in _chunks(source_ids, 500):
            result = await conn.execute(_SUBSCRIPTION_OPTIONS, {"b_sources": chunk})
            for sid, sub_id, options in result:
                if isinstance(options, dict) and options.get("follow_edits") is True:
                    found.setdefault(int(sid), []).append(int(sub_id))
        return found

    async def _note_edits(
        self,
        conn: DbConnection,
        plans: Sequence[tuple[PollRecord, list[Item], set[str]]],
        known_keys: dict[int, set[str]],
    ) -> None:
        """Items a poll saw again with another title or summary: store the new text and,
        for subscriptions that follow edits, mark their messages of the last 7 days as
        due an edit. Only entries whose bytes changed reach here (the rest are skipped
        before parsing), so a steady feed costs nothing."""
        seen_again: dict[int, dict[str, Item]] = {}
        for record, new, _ in plans:
            if record.first_poll or record.choose is None:
                continue
            fresh = {item.key for item in new}
            known = known_keys.get(record.source_id, set())
            again = {i.key: i for i in record.items if i.key in known and i.key not in fresh}
            if again:
                seen_again[record.source_id] = again
        if not seen_again:
            return
        followers = await self._edit_followers(conn, sorted(seen_again))
        other = outbox.alias("other")
        for sid, subs in followers.items():
            again = seen_again[sid]
            stored = await conn.execute(
                select(items.c.id, items.c.item_key, items.c.title, items.c.summary).where(
                    items.c.source_id == sid, items.c.item_key.in_(sorted(again))
                )
            )
            now = next(r.outcome.polled_at for r, _, _ in plans if r.source_id == sid)
            for item_id, key, title, summary in stored.all():
                item = again[str(key)]
                new_summary = item.summary[:MAX_STORED_SUMMARY]
                if item.title == title and new_summary == summary:
                    continue
                await conn.execute(
                    update(items)
                    .where(items.c.id == item_id)
                    .values(
                        title=item.title,
                        summary=new_summary,
                        link=item.link,
                        author=item.author,
                        image_url=item.image,
                        categories=list(item.categories),
                    )
                )
                # Only a message that carries this item alone: a batch posted before
                # follow_edits was set would lose its other items to the edit.
                shared = (
                    select(other.c.id)
                    .where(
                        other.c.message_id == outbox.c.message_id,
                        other.c.id != outbox.c.id,
                    )
                    .exists()
                )
                await conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.item_id == item_id,
                        outbox.c.subscription_id.in_(subs),
                        outbox.c.state == "sent",
                        outbox.c.message_id.is_not(None),
                        outbox.c.sent_at >= now - EDIT_WINDOW,
                        ~shared,
                    )
                    .values(edit_due_at=now)
                )

    async def _known_in_batch(
        self, conn: DbConnection, records: Sequence[PollRecord]
    ) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
        """Per source, which of the records' item keys and unique links it already has."""
        known_keys: dict[int, set[str]] = {}
        known_links: dict[int, set[str]] = {}
        if not records:
            return known_keys, known_links
        source_ids = sorted({r.source_id for r in records})
        keys = sorted({item.key for r in records for item in r.items})
        links = sorted({item.link_norm for r in records for item in r.items if item.link_norm})
        for stmt, values, into in (
            (_KNOWN_KEYS, keys, known_keys),
            (_KNOWN_LINKS, links, known_links),
        ):
            for chunk in _chunks(values, 500):
                result = await conn.execute(stmt, {"b_sources": source_ids, "b_values": chunk})
                for sid, value in result:
                    into.setdefault(int(sid), set()).add(str(value))
        return known_keys, known_links

    async def _active_subscriptions_of(
        self, conn: DbConnection, source_ids: Sequence[int]
    ) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for chunk in _chunks(source_ids, 500):
            result = await conn.execute(_ACTIVE_SUBSCRIPTIONS, {"b_sources": chunk})
            for sid, sub_id in result:
                found.setdefault(int(sid), []).append(int(sub_id))
        return found

    async def _record_changed(
        self, conn: DbConnection, done: Sequence[tuple[PollRecord, Sequence[Item]]]
    ) -> None:
        """The outcome (and feed metadata) of each changed source: one executemany."""
        for with_meta, group in (
            (True, [(r, new) for r, new in done if r.meta is not None]),
            (False, [(r, new) for r, new in done if r.meta is None]),
        ):
            if not group:
                continue
            params = []
            for record, new in group:
                outcome = record.outcome
                row: dict[str, Any] = {
                    "b_id": record.source_id,
                    "b_polled": outcome.polled_at,
                    "b_next": outcome.next_poll_at,
                    "b_etag": outcome.etag,
                    "b_lm": outcome.last_modified,
                    "b_hash": outcome.body_hash,
                    "b_newest": max((i.published for i in new if i.published), default=None),
                    "b_keys": list(record.keys) if record.keys is not None else None,
                }
                if record.meta is not None:
                    row.update(
                        b_title=record.meta.title,
                        b_site=record.meta.site_link,
                        b_icon=record.meta.icon_url,
                        b_kind=record.meta.kind,
                        b_hub=record.meta.hub_url,
                        b_topic=record.meta.topic_url,
                    )
                params.append(row)
            await conn.execute(_record_changed_stmt(self.db.dialect, with_meta), params)

    async def _queue(
        self, conn: DbConnection, sub_ids: Sequence[int], item_ids: Sequence[int], now: datetime
    ) -> int:
        rows = _outbox_values(sub_ids, item_ids, now)
        if not rows:
            return 0
        await conn.execute(_queue_stmt(self.db.dialect), rows)
        return len(rows)

    async def _queue_backfill(self, conn: DbConnection, source_id: int, now: datetime) -> int:
        """Queue the newest N stored items for subscriptions that asked for a backfill."""
        wanting = (
            await conn.execute(
                select(subscriptions.c.id, subscriptions.c.backfill).where(
                    subscriptions.c.source_id == source_id,
                    subscriptions.c.enabled.is_(True),
                    subscriptions.c.paused.is_(False),
                    subscriptions.c.backfill > 0,
                )
            )
        ).all()
        queued = 0
        for sub_id, count in wanting:
            newest = (
                await conn.execute(
                    select(items.c.id)
                    .where(items.c.source_id == source_id)
                    .order_by(items.c.id.desc())
                    .limit(int(count))
                )
            ).all()
            # Oldest first, so the channel reads in publication order.
            queued += await self._queue(conn, [sub_id], sorted(int(r[0]) for r in newest), now)
            await conn.execute(
                update(subscriptions).where(subscriptions.c.id == sub_id).values(backfill=0)
            )
        return queued

    # -- reporting -----------------------------------------------------------------

    async def recent_item_times(
        self, source_ids: Sequence[int] | None = None, *, per_source: int = 20
    ) -> dict[int, list[datetime]]:
        """Each source's newest ``per_source`` item times, newest first, in one query.

        An item's time is its published time, else when it was first seen. A window
        function (``ROW_NUMBER() OVER (PARTITION BY source_id ...)``, SQLite >= 3.25 and
        PostgreSQL) ranks the items per source; ``source_ids`` narrows the scan to those
        sources (a guild's), None means every source. Sources without items are absent.
        """
        when = func.coalesce(items.c.published_at, items.c.first_seen_at)
        rank = (
            func.row_number()
            .over(partition_by=items.c.source_id, order_by=(when.desc(), items.c.id.desc()))
            .label("rank")
        )
        ranked = select(items.c.source_id, when.label("at"), rank)
        if source_ids is not None:
            wanted = sorted(set(source_ids))
            if not wanted:
                return {}
            ranked = ranked.where(items.c.source_id.in_(wanted))
        inner = ranked.subquery()
        stmt = (
            select(inner.c.source_id, inner.c.at)
            .where(inner.c.rank <= per_source)
            .order_by(inner.c.source_id, inner.c.rank)
        )
        out: dict[int, list[datetime]] = {}
        async with self.db.read() as conn:
            for source_id, at in await conn.execute(stmt):
                out.setdefault(int(source_id), []).append(at)
        return out

    async def guild_item_times(
        self, guild_id: int, *, per_source: int = 20
    ) -> dict[int, list[datetime]]:
        """For each subscription of ``guild_id``: its source's newest item times
        (:meth:`recent_item_times`), keyed by subscription id."""
        stmt = select(subscriptions.c.id, subscriptions.c.source_id).where(
            subscriptions.c.guild_id == guild_id
        )
        async with self.db.read() as conn:
            pairs = [(int(sub), int(src)) for sub, src in await conn.execute(stmt)]
        times = await self.recent_item_times([src for _, src in pairs], per_source=per_source)
        return {sub: times.get(src, []) for sub, src in pairs}


def _outbox_values(
    sub_ids: Sequence[int], item_ids: Sequence[int], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "subscription_id": s,
            "item_id": i,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for s in sub_ids
        for i in item_ids
    ]


# -- statements built once (why: see _common.py) ---------------------------------------


@functools.cache
def _record_changed_stmt(dialect: str, with_meta: bool) -> Any:
    newest_param = bindparam("b_newest", type_=sources.c.newest_item_at.type)
    larger = func.max if dialect == "sqlite" else func.greatest
    meta: dict[str, Any] = (
        {
            "title": bindparam("b_title"),
            "site_link": bindparam("b_site"),
            "icon_url": bindparam("b_icon"),
            "kind": bindparam("b_kind"),
            "hub_url": bindparam("b_hub"),
            "topic_url": bindparam("b_topic"),
        }
        if with_meta
        else {}
    )
    return _healthy_update(
        **_NEW_VALIDATORS,
        **meta,
        initialized=True,
        last_keys=func.coalesce(
            bindparam("b_keys", type_=sources.c.last_keys.type), sources.c.last_keys
        ),
        # SQLite's max() is NULL if either side is; PostgreSQL's greatest() skips NULLs.
        newest_item_at=func.coalesce(
            larger(sources.c.newest_item_at, newest_param),
            newest_param,
            sources.c.newest_item_at,
        ),
    )


@functools.cache
def _insert_items_stmt(dialect: str) -> Any:
    return (
        _dialect_insert(dialect, items)
        .on_conflict_do_nothing(index_elements=["source_id", "item_key"])
        .returning(items.c.id, items.c.source_id, items.c.item_key)
    )


@functools.cache
def _queue_stmt(dialect: str) -> Any:
    return _dialect_insert(dialect, outbox).on_conflict_do_nothing(
        index_elements=["subscription_id", "item_id"]
    )


def _known_stmt(column: Any) -> Any:
    return select(items.c.source_id, column).where(
        items.c.source_id.in_(bindparam("b_sources", expanding=True)),
        column.in_(bindparam("b_values", expanding=True)),
    )


_KNOWN_KEYS = _known_stmt(items.c.item_key)
_KNOWN_LINKS = _known_stmt(items.c.link_norm)
# A posted message follows its item's edits for this long (issue 14: 7 days).
EDIT_WINDOW = timedelta(days=7)
_SUBSCRIPTION_OPTIONS = select(
    subscriptions.c.source_id, subscriptions.c.id, subscriptions.c.options
).where(
    subscriptions.c.source_id.in_(bindparam("b_sources", expanding=True)),
    subscriptions.c.enabled.is_(True),
    subscriptions.c.paused.is_(False),
)
_ACTIVE_SUBSCRIPTIONS = (
    select(subscriptions.c.source_id, subscriptions.c.id)
    .where(
        subscriptions.c.source_id.in_(bindparam("b_sources", expanding=True)),
        subscriptions.c.enabled.is_(True),
        subscriptions.c.paused.is_(False),
    )
    .order_by(subscriptions.c.id)
)
