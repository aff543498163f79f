"""Importing an OPML file's feeds as subscriptions, and exporting subscriptions as OPML
entries: what ``feedhook import / export`` and ``/feed import / export`` call.

``bot.opml`` reads and writes the documents; this module connects them to the service
and the store. Nothing here knows about discord.py or the terminal: the callers show
``ImportSummary.lines()`` and the progress they get through ``progress``.

Where an import goes:

- from a server (``/feed import``): ``guild_id`` and ``channel_id`` given, the webhook
  the bot made in that channel as ``target``; origin "discord", so they are ordinary
  ``/feed`` subscriptions (listed, paused, removed like the ones ``/feed add`` makes);
- from the CLI (``feedhook import --webhook URL``): ``guild_id`` and ``channel_id``
  None, the pasted webhook as ``target``; origin "import".

Neither is origin "config": the config sync disables config subscriptions its file does
not list, so imported ones would stop at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.hooks import is_hook
from bot.models import SubscriptionState, WebhookTarget
from bot.opml import ExportEntry, Outline
from bot.services import FeedService, ServiceError, SourcePreview
from bot.storage.store import FeedMeta, Store

__all__ = [
    "DEFAULT_OPTIONS",
    "DRY_RUN",
    "NO_ROOM",
    "ImportResult",
    "ImportStatus",
    "ImportSummary",
    "export_entries",
    "free_slots",
    "import_outlines",
    "unique_outlines",
]

log = logging.getLogger(__name__)

ImportStatus = Literal["added", "already", "failed", "skipped"]

# The reason of an outline left out because the server is at its subscription limit.
NO_ROOM = "the server has no room left (discord.max_subscriptions_per_guild)"
# The start of the reason of an outline a dry run would have added.
DRY_RUN = "dry run: would add"
# The settings of an imported subscription, as ``/feed add`` gives a text channel.
DEFAULT_OPTIONS: Mapping[str, object] = {"style": "embed", "batch": True}
# Said of an outline whose source feedhook failed on in an unforeseen way (logged).
_UNEXPECTED = "feedhook could not read it (an unexpected error, logged)"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What became of one outline."""

    url: str  # the outline's URL as given
    # added; already (the target has that source); failed (unreadable); skipped (no room
    # left, or a dry run)
    status: ImportStatus
    # failed / skipped: the one-sentence reason; added: the feed's title; already: ""
    # or, when that subscription is disabled, "disabled: <why>"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """Every outline's result, in the order of the (deduplicated) outlines."""

    results: tuple[ImportResult, ...]
    dry_run: bool = False

    def _with(self, status: ImportStatus) -> list[ImportResult]:
        return [r for r in self.results if r.status == status]

    @property
    def added(self) -> list[ImportResult]:
        return self._with("added")

    @property
    def already(self) -> list[ImportResult]:
        return self._with("already")

    @property
    def failed(self) -> list[ImportResult]:
        return self._with("failed")

    @property
    def skipped(self) -> list[ImportResult]:
        """Left out for want of room, and (in a dry run) the ones it would add."""
        return self._with("skipped")

    @property
    def would_add(self) -> list[ImportResult]:
        """A dry run's outlines that a real import would add."""
        return [r for r in self.skipped if r.reason.startswith(DRY_RUN)]

    def lines(self) -> list[str]:
        """For a person: the counts, then one indented ``<url>: <reason>`` line per
        failed or skipped outline (and per one already there but disabled)."""
        would = len(self.would_add)
        no_room = len(self.skipped) - would
        counts = [
            f"would add {would}" if self.dry_run else f"added {len(self.added)}",
            f"already there {len(self.already)}",
            f"failed {len(self.failed)}",
        ]
        if no_room:
            counts.append(f"skipped {no_room}")
        head = ", ".join(counts)
        out = [f"dry run, nothing was added: {head}" if self.dry_run else head]
        out += [
            f"  {r.url}: {r.reason}"
            for r in self.results
            if r.status in ("failed", "skipped") or (r.status == "already" and r.reason)
        ]
        return out


def unique_outlines(outlines: Sequence[Outline]) -> list[Outline]:
    """``outlines`` without repeated URLs (the first kept): what ``import_outlines``
    reports on, one result each (a progress bar's total)."""
    seen: set[str] = set()
    unique: list[Outline] = []
    for outline in outlines:
        if outline.url not in seen:
            seen.add(outline.url)
            unique.append(outline)
    return unique


async def free_slots(service: FeedService, guild_id: int) -> int:
    """How many more subscriptions the server may have (never below 0)."""
    count = await service.store.guild_subscription_count(guild_id)
    return max(0, service.settings.max_subscriptions_per_guild - count)


async def import_outlines(
    service: FeedService,
    outlines: Sequence[Outline],
    *,
    target: WebhookTarget,
    guild_id: int | None,
    channel_id: int | None,
    dry_run: bool = False,
    room: int | None = None,
    progress: Callable[[ImportResult], None] | None = None,
    concurrency: int = 4,
    options: Mapping[str, object] | None = None,
) -> ImportSummary:
    """Subscribe ``target`` to every feed of ``outlines`` that it does not have yet.

    Each distinct URL is read as ``/feed add`` reads a source (``service.preview``: the
    page's feed, a redirect followed), ``concurrency`` at a time; its feed's own URL is
    what gets subscribed. Subscriptions are made one at a time in the outlines' order,
    so with ``room`` (at most that many added: the server's free slots) the first ones
    get in and the rest are "skipped"; once the room is used up, the outlines not read
    yet are not fetched (only their URL as given is looked up, to say "already").
    ``room`` None: with a ``guild_id``, the server's free slots now (``free_slots``);
    without, no limit. A dry run reads every feed and checks what is there, but stores
    nothing: what it would add is "skipped" with a reason starting ``DRY_RUN``.

    ``progress`` is called with each outline's result as it is settled, in order.
    ``options``: the new subscriptions' settings (default ``DEFAULT_OPTIONS``; a forum
    channel needs ``{"style": "embed", "batch": False, "forum": True}`` as ``/feed add``
    gives it). Store errors (the database down) propagate; the import stops there,
    keeping what it added.
    """
    if guild_id is not None and channel_id is None:
        raise ValueError("an import into a server needs the channel it posts to")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    origin = "discord" if guild_id is not None else "import"
    if room is None and guild_id is not None:
        room = await free_slots(service, guild_id)
    options = dict(options if options is not None else DEFAULT_OPTIONS)
    todo = unique_outlines(outlines)
    gate = asyncio.Semaphore(concurrency)
    added = 0

    def full() -> bool:
        return room is not None and added >= room

    async def read(outline: Outline) -> SourcePreview | ImportResult | None:
        async with gate:
            if full():  # no room left: it could only be "already" or skipped
                return None
            try:
                return await service.preview(outline.url)
            except ServiceError as exc:
                return ImportResult(outline.url, "failed", str(exc))
            except Exception:
                log.exception("import: reading a source failed unexpectedly url=%s", outline.url)
                return ImportResult(outline.url, "failed", _UNEXPECTED)

    # Reading runs ahead (``concurrency`` at a time); results are settled in order.
    tasks = [asyncio.create_task(read(outline)) for outline in todo]
    results: list[ImportResult] = []
    try:
        for outline, task in zip(todo, tasks, strict=True):
            read_result = await task
            if isinstance(read_result, ImportResult):
                result = read_result
            else:
                result = await _settle(
                    service,
                    outline,
                    read_result,
                    target=target,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    origin=origin,
                    options=options,
                    dry_run=dry_run,
                    full=full(),
                )
                if result.status == "added" or result.reason.startswith(DRY_RUN):
                    added += 1
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ImportSummary(tuple(results), dry_run=dry_run)


async def _settle(
    service: FeedService,
    outline: Outline,
    preview: SourcePreview | None,
    *,
    target: WebhookTarget,
    guild_id: int | None,
    channel_id: int | None,
    origin: str,
    options: Mapping[str, object],
    dry_run: bool,
    full: bool,
) -> ImportResult:
    """Subscribe one read source (or, in a dry run, say whether it would be). ``preview``
    None: not read, the room being used up; only the URL as given is looked up."""
    store = service.store
    existing = await store.existing_subscription(
        outline.url if preview is None else preview.url,
        target=target,
        guild_id=guild_id,
        channel_id=channel_id,
    )
    if existing is not None:
        return _already(outline, existing)
    if full or preview is None:
        return ImportResult(outline.url, "skipped", NO_ROOM)
    title = preview.feed.title or preview.url
    if dry_run:
        return ImportResult(outline.url, "skipped", f"{DRY_RUN} {title}")
    sub_id = await store.create_subscription(
        source_url=preview.url,
        guild_id=guild_id,
        channel_id=channel_id,
        target=target,
        backfill=0,
        options=options,
        min_interval=service.settings.min_interval,
        now=service.clock(),
        meta=FeedMeta(preview.feed.title, preview.feed.link, preview.feed.icon, preview.feed.kind),
        origin=origin,
    )
    if sub_id is None:  # made between the check and now (another import, /feed add)
        existing = await store.existing_subscription(
            preview.url, target=target, guild_id=guild_id, channel_id=channel_id
        )
        return _already(outline, existing)
    log.info(
        "subscription imported guild=%s channel=%s subscription=%d %s url=%s",
        guild_id,
        channel_id,
        sub_id,
        target.redacted,
        preview.url,
    )
    return ImportResult(outline.url, "added", title)


def _already(outline: Outline, existing: SubscriptionState | None) -> ImportResult:
    if existing is None or existing.enabled:
        return ImportResult(outline.url, "already")
    reason = existing.disabled_reason or "no reason recorded"
    return ImportResult(outline.url, "already", f"disabled: {reason}")


async def export_entries(
    store: Store,
    *,
    guild_id: int | None = None,
    channel_names: Mapping[int, str] | None = None,
) -> list[ExportEntry]:
    """Every enabled subscription (paused ones too; not the disabled) of ``guild_id``,
    or of every server and webhook when None, as ``write_opml`` entries.

    One folder per channel: ``channel_names[channel_id]`` when given (the cog passes
    "#name"), else "channel <id>"; a subscription whose channel is unknown (a webhook
    from the config file or ``feedhook import`` that has not posted yet) goes in
    "webhook <id>" (", thread <id>" added for a thread). Never the webhook's token or
    URL. Title: the source's title, else its URL; url: the source's own (canonical) URL;
    site: its site link. A feed listed twice in one folder is written once; inbound
    hooks are left out.
    """
    names = channel_names or {}
    entries: list[ExportEntry] = []
    seen: set[tuple[str, str]] = set()
    for channel_id, thread_id, webhook_id, url, title, site in await store.export_rows(guild_id):
        if channel_id is not None:
            folder = names.get(channel_id) or f"channel {channel_id}"
        else:
            thread = f", thread {thread_id}" if thread_id else ""
            folder = f"webhook {webhook_id}{thread}"
        if (folder, url) in seen or is_hook(url):
            continue  # a hook is no feed: a feed reader could not read hook:N
        seen.add((folder, url))
        entries.append(ExportEntry(folder=folder, title=title or url, url=url, site=site))
    return entries
