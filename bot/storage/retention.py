"""Retention: items and finished deliveries older than ``retention.max_age`` go,
in small batches, so the database stops growing with every post.

Never pruned, whatever its age:
- an item still in its source's last recorded document (``sources.last_keys``: the
  document's item keys and normalised links, since an entry whose guid changed is
  matched to its stored item by link): pruned, it would count as new at the next poll
  and be posted again; a source with no recorded document yet keeps all its items;
- each source's newest :data:`KEEP_NEWEST` items: the staleness rule reads them, and
  ``/feed test`` posts the newest;
- an item a delivery still points at: queued or being sent, or finished within
  ``max_age`` (deleting the item would take that delivery's record with it).

Only one process prunes at a time (the app picks the oldest live process); every
batch is its own short transaction, so polling and delivery never wait long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select

from bot.storage._common import items, outbox, sources
from bot.storage.deliverylog import DeliveryLogMixin

# Each source's newest items kept (the staleness window).
KEEP_NEWEST = 20
# Rows deleted per transaction.
PRUNE_BATCH = 500
# Candidate items looked at per window, and windows per run: a run that cannot
# finish goes on at the next one.
MAX_CANDIDATES = 20_000
MAX_WINDOWS = 50


@dataclass(frozen=True, slots=True)
class Pruned:
    items: int = 0
    deliveries: int = 0
    log_rows: int = 0  # delivery log rows past each subscription's newest 50


class RetentionMixin(DeliveryLogMixin):
    """Pruning of old items and finished deliveries."""

    async def prune(self, *, now: datetime, max_age: timedelta, batch: int = PRUNE_BATCH) -> Pruned:
        cutoff = now - max_age
        deliveries = 0
        while True:
            done = await self._prune_deliveries(cutoff, batch)
            deliveries += done
            if done < batch:
                break
        pruned_items = 0
        after = 0
        # Windows of candidates by id, so that old items the feeds still show (kept,
        # and found again every run) never stop the pruning of the ones after them.
        for _ in range(MAX_WINDOWS):
            candidates, after = await self._prunable_items(cutoff, after)
            for start in range(0, len(candidates), batch):
                chunk = candidates[start : start + batch]
                result = await self.db.write_one(
                    _DELETE_ITEMS, {"b_ids": chunk, "b_cutoff": cutoff}
                )
                pruned_items += int(result.rowcount)
            if after == 0:
                break
        log_rows = await self.prune_delivery_log()
        return Pruned(items=pruned_items, deliveries=deliveries, log_rows=log_rows)

    async def _prune_deliveries(self, cutoff: datetime, batch: int) -> int:
        async with self.db.write() as conn:
            ids = [
                int(r[0])
                for r in await conn.execute(_OLD_DELIVERIES, {"b_cutoff": cutoff, "b_limit": batch})
            ]
            if not ids:
                return 0
            await conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))
        return len(ids)

    async def _prunable_items(self, cutoff: datetime, after: int) -> tuple[list[int], int]:
        """Old items past ``after`` (by id) outside each source's newest and outside its
        last document, and the id to start the next window from (0: no more)."""
        async with self.db.read() as conn:
            params = {
                "b_cutoff": cutoff,
                "b_keep": KEEP_NEWEST,
                "b_limit": MAX_CANDIDATES,
                "b_after": after,
            }
            rows = (await conn.execute(_OLD_ITEMS, params)).all()
            source_ids = sorted({int(r[1]) for r in rows})
            last_keys: dict[int, set[str] | None] = {}
            for start in range(0, len(source_ids), 500):
                chunk = source_ids[start : start + 500]
                for source_id, keys in await conn.execute(_LAST_KEYS, {"b_ids": chunk}):
                    # NULL: not recorded yet (a source last changed before migration 0006,
                    # then 304s): what its feed shows is unknown, so nothing of it goes
                    last_keys[int(source_id)] = set(keys) if keys is not None else None
        prunable = []
        for item_id, source_id, key, link_norm in rows:
            keep = last_keys.get(int(source_id))
            if keep is not None and key not in keep and (not link_norm or link_norm not in keep):
                prunable.append(int(item_id))
        next_after = int(rows[-1][0]) if len(rows) == MAX_CANDIDATES else 0
        return prunable, next_after


# -- statements built once (why: see _common.py) ---------------------------------------

_CUTOFF = bindparam("b_cutoff", type_=outbox.c.created_at.type)
_FINISHED_BEFORE_CUTOFF = and_(
    outbox.c.state.in_(("sent", "failed", "filtered")),
    func.coalesce(outbox.c.sent_at, outbox.c.created_at) < _CUTOFF,
)
_OLD_DELIVERIES = (
    select(outbox.c.id)
    .where(_FINISHED_BEFORE_CUTOFF)
    .order_by(outbox.c.id)
    .limit(bindparam("b_limit"))
)
# An item a delivery still needs: queued, being sent, or finished after the cutoff.
_STILL_POINTED_AT = exists().where(
    outbox.c.item_id == items.c.id,
    or_(
        outbox.c.state.in_(("pending", "sending")),
        func.coalesce(outbox.c.sent_at, outbox.c.created_at) >= _CUTOFF,
    ),
)
_RANKED = select(
    items.c.id,
    items.c.source_id,
    items.c.item_key,
    items.c.link_norm,
    items.c.first_seen_at,
    func.row_number()
    .over(
        partition_by=items.c.source_id,
        order_by=(
            func.coalesce(items.c.published_at, items.c.first_seen_at).desc(),
            items.c.id.desc(),
        ),
    )
    .label("rank"),
).subquery()
_OLD_ITEMS = (
    select(_RANKED.c.id, _RANKED.c.source_id, _RANKED.c.item_key, _RANKED.c.link_norm)
    .where(
        _RANKED.c.rank > bindparam("b_keep"),
        _RANKED.c.first_seen_at < _CUTOFF,
        _RANKED.c.id > bindparam("b_after"),
    )
    .order_by(_RANKED.c.id)
    .limit(bindparam("b_limit"))
)
_LAST_KEYS = select(sources.c.id, sources.c.last_keys).where(
    sources.c.id.in_(bindparam("b_ids", expanding=True))
)
# Checked again at delete time: a delivery may have been queued since the candidates
# were read (a backfill, /feed test).
_DELETE_ITEMS = delete(items).where(
    items.c.id.in_(bindparam("b_ids", expanding=True)), ~_STILL_POINTED_AT
)
