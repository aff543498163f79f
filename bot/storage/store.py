"""Every query feedhook runs. Nothing outside ``bot.storage`` touches SQL.

Hot paths (claiming due sources, recording poll outcomes, inserting items)
use SQLAlchemy Core statements: a cycle over thousands of sources must stay
well under a millisecond of CPU per source.

The queries live by concern, each a class over ``_common.StoreBase`` (which
holds the database): ``sources.py``, ``items.py`` (items and poll recording),
``subscriptions.py``, ``outbox.py`` (deliveries), ``processes.py`` (heartbeats,
taking over a dead process's claims) and ``retention.py`` (pruning old rows).
:class:`Store` combines them; the names callers use are re-exported here.
"""

from __future__ import annotations

from sqlalchemy import func, select

from bot.storage._common import (
    MAX_ERROR_TEXT,
    MAX_STORED_SUMMARY,
    REMOVED_FROM_CONFIG,
    items,
    outbox,
    sources,
    subscriptions,
)
from bot.storage.deliverylog import KEEP_PER_SUBSCRIPTION, LogEntry
from bot.storage.health import HealthMixin
from bot.storage.hooks import ConfigHook, HookInfo, HooksMixin
from bot.storage.items import Chooser, FeedMeta, ItemsMixin, PollRecord, RecordedPoll
from bot.storage.notices import NoticesMixin, NoticeTarget
from bot.storage.outbox import DeliveryJob, EditJob, OutboxEntry, OutboxMixin, SentMark
from bot.storage.processes import ProcessesMixin, ProcessInfo, Reaped
from bot.storage.retention import Pruned, RetentionMixin
from bot.storage.sources import DueSource, PollOutcome, SourcesMixin
from bot.storage.subscriptions import ConfigFeed, SubscriptionsMixin
from bot.storage.websub import PushState, PushTarget, WebSubMixin, WebSubRequest

__all__ = [
    "KEEP_PER_SUBSCRIPTION",
    "MAX_ERROR_TEXT",
    "MAX_STORED_SUMMARY",
    "REMOVED_FROM_CONFIG",
    "Chooser",
    "ConfigFeed",
    "ConfigHook",
    "DeliveryJob",
    "DueSource",
    "EditJob",
    "FeedMeta",
    "HookInfo",
    "LogEntry",
    "NoticeTarget",
    "OutboxEntry",
    "PollOutcome",
    "PollRecord",
    "ProcessInfo",
    "Pruned",
    "PushState",
    "PushTarget",
    "Reaped",
    "RecordedPoll",
    "SentMark",
    "Store",
    "WebSubRequest",
    "items",
    "outbox",
    "sources",
    "subscriptions",
]


class Store(
    SubscriptionsMixin,
    HooksMixin,
    ItemsMixin,
    SourcesMixin,
    OutboxMixin,
    ProcessesMixin,
    RetentionMixin,
    NoticesMixin,
    HealthMixin,
    WebSubMixin,
):
    """The storage API: every concern's queries over one :class:`~bot.storage.db.Database`.

    ``SubscriptionsMixin`` builds on ``ItemsMixin`` and ``SourcesMixin`` (a new
    subscription ensures its source and queues its backfill); ``OutboxMixin`` and
    those two stand on the shared base alone.
    """

    # -- reporting -----------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Row counts by table and outbox state, for status output and tests."""
        async with self.db.read() as conn:
            out = {
                "sources": (
                    await conn.execute(select(func.count()).select_from(sources))
                ).scalar_one(),
                "subscriptions": (
                    await conn.execute(select(func.count()).select_from(subscriptions))
                ).scalar_one(),
                "items": (await conn.execute(select(func.count()).select_from(items))).scalar_one(),
            }
            for state, count in await conn.execute(
                select(outbox.c.state, func.count()).group_by(outbox.c.state)
            ):
                out[f"outbox_{state}"] = int(count)
        return {k: int(v) for k, v in out.items()}
