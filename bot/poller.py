"""Decide which sources are due, poll them, record new items and their deliveries.

The decisions (when to poll next, which entries are new, what to queue) are
pure functions of their inputs and ``now``; :class:`Poller` does the I/O.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol, TypeVar

from bot.metrics import Metrics
from bot.models import FeedInfo, Item
from bot.net import Fetcher, FetchError
from bot.sources.feed import (
    DocumentParser,
    ParsedEntry,
    ParsedFeed,
    ParseError,
    build_item,
    parse_feed,
)
from bot.sources.incremental import ChangedDocument, SeenEntries, parse_changed
from bot.sources.resolve import SourceResolver, fetch_source
from bot.storage.store import (
    DueSource,
    FeedMeta,
    PollOutcome,
    PollRecord,
    PushTarget,
    RecordedPoll,
    Store,
)
from bot.tasks import GroupCommit, finish_or_cancel, in_cpu_thread, running_elsewhere
from bot.websub import Discovery, discover

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T_MIN = datetime.min.replace(tzinfo=UTC)


# PollResult.status -> the outcome label of feedhook_polls_total (a parsed change is
# "changed" whether or not it brought new items).
_METRIC_OUTCOMES: Final = {
    "new": "changed",
    "unchanged": "unchanged",
    "not_modified": "not_modified",
    "failed": "error",
}


# A pushed entry dated this long before the source's newest item is an edit of an old
# one (hubs push updates too), not a new item.
PUSH_BACKDATE_SLACK: Final = timedelta(days=1)


# What discover() reads of a document that was not parsed: nothing.
_NO_DOCUMENT: Final = FeedInfo(title="", link=None, icon=None, kind="")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval: float = 600.0
    max_interval: float = 6 * 3600.0
    max_new_per_poll: int = 25
    jitter: float = 0.1
    concurrency: int = 64
    # How long a claim keeps other pollers away; longer than any fetch can take.
    claim_lease: float = 300.0
    # Outcomes without new items are written in batches of this size.
    outcome_batch: int = 200
    # Changed sources are committed together ("group commit"): a batch is written
    # when it holds this many polls or its oldest has waited record_delay seconds.
    record_batch: int = 32
    record_delay: float = 0.05
    # A partially parsed document with at most this many unseen entries has them
    # built right away and checked against storage inside the write; with more
    # (a feed that rewrites every entry each time), what is known is read first.
    build_before_check: int = 5
    # A source a WebSub hub pushes is still polled this often, to catch missed pushes;
    # None: push is off (http.public_url empty), every source polls at its interval.
    push_safety_interval: float | None = None


# -- pure decisions ---------------------------------------------------------------


def next_poll_delay(
    *,
    interval: float,
    failures: int,
    max_interval: float,
    retry_after: float | None = None,
    max_age: float | None = None,
    jitter: float = 0.0,
    rnd: float = 0.5,
) -> float:
    """Seconds until the next poll.

    ``failures`` counts consecutive failures including this poll's: each one
    doubles the interval (capped at ``max_interval``), a success resets it.
    The server's ``Retry-After`` or ``Cache-Control: max-age`` can only push the
    poll later (they are capped by the fetcher). ``rnd`` in [0, 1) spreads polls
    by +-``jitter`` so sources added together do not poll in lockstep.
    """
    delay = interval * (2 ** min(failures - 1, 20)) if failures > 0 else interval
    delay = min(delay, max(max_interval, interval))
    for server_hint in (retry_after, max_age):
        if server_hint is not None:
            delay = max(delay, server_hint)
    return max(1.0, delay * (1.0 + jitter * (2.0 * rnd - 1.0)))


def link_counts(entries: Sequence[ParsedEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        if entry.link_norm:
            counts[entry.link_norm] = counts.get(entry.link_norm, 0) + 1
    return counts


def select_new(
    entries: Sequence[ParsedEntry],
    known_keys: set[str],
    known_links: set[str],
    counts: dict[str, int] | None = None,
) -> list[ParsedEntry]:
    """Entries not seen before, oldest first.

    The normalised-link guard catches a publisher changing ids or moving to
    https; it only applies to links unique within the document (``counts``,
    by default those of ``entries``), because some feeds give every entry the
    same link.
    """
    if counts is None:
        counts = link_counts(entries)
    new = [
        entry
        for entry in entries
        if entry.key not in known_keys
        and not (
            entry.link_norm and counts[entry.link_norm] == 1 and entry.link_norm in known_links
        )
    ]
    return oldest_first(new)


class _Dated(Protocol):
    @property
    def published(self) -> datetime | None: ...


D = TypeVar("D", bound=_Dated)


def oldest_first(entries: Sequence[D]) -> list[D]:
    """By date when every entry has one; else reverse document order (feeds list newest first)."""
    if entries and all(entry.published is not None for entry in entries):
        return sorted(entries, key=lambda entry: entry.published or T_MIN)
    return list(reversed(entries))


def choose_new(
    items_in_document_order: Sequence[Item],
    known_keys: set[str],
    known_links: set[str],
    *,
    cap: int,
    first_poll: bool,
) -> tuple[list[Item], set[str]]:
    """The items not seen before (oldest first) and the keys to deliver.

    Same rule as :func:`select_new` (an item's ``link_norm`` is only set when
    the link is unique in the document) and :func:`keys_to_queue`; a first
    poll delivers nothing, it only learns what exists.
    """
    new = oldest_first(
        [
            item
            for item in items_in_document_order
            if item.key not in known_keys and not (item.link_norm and item.link_norm in known_links)
        ]
    )
    return new, set() if first_poll else keys_to_queue(new, cap)


def build_items(
    parsed: ParsedFeed, entries: Sequence[ParsedEntry], counts: dict[str, int]
) -> list[Item]:
    """Full items for ``entries``; a shared link is no duplicate guard (``link_norm`` None)."""
    return [
        build_item(parsed, entry, link_is_unique=counts.get(entry.link_norm or "", 0) == 1)
        for entry in entries
    ]


def keys_to_queue(new_oldest_first: Sequence[ParsedEntry | Item], cap: int) -> set[str]:
    """The keys to deliver: all new ones, or the newest ``cap`` on a flood."""
    return {entry.key for entry in new_oldest_first[-cap:]} if cap > 0 else set()


def _parse_for_poll(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    previous: SeenEntries | None,
    build_limit: int,
    parse: DocumentParser | None,
) -> tuple[ChangedDocument, list[Item] | None]:
    """Parse (in a worker thread) and, when only a few entries are unseen, build them too."""
    document = parse_changed(body, url=url, headers=headers, previous=previous, parse=parse)
    parsed = document.parsed
    if parsed is None or not document.reduced or len(document.candidates) > build_limit:
        return document, None
    return document, build_items(parsed, document.candidates, document.link_counts)


# -- the poller ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll did; one bad source never stops the others."""

    source_id: int
    url: str
    status: Literal["new", "unchanged", "not_modified", "failed"]
    new_items: int = 0
    queued: int = 0
    error: str | None = None
    # the document's bytes changed and were parsed (new items or not)
    changed: bool = False


def _first_poll_note(queued: int) -> str:
    """Why a new source's first poll posts (almost) nothing: said where people look."""
    if queued:
        return f" (first poll: {queued} queued as backfill, the rest count as seen)"
    return " (first poll: what the source has now counts as seen; later items are posted)"


class Poller:
    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        settings: PollSettings,
        *,
        clock: Clock = utcnow,
        rng: Callable[[], float] = random.random,
        sources: SourceResolver | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.sources = sources or SourceResolver()
        self.metrics = metrics
        self.store = store
        self.fetcher = fetcher
        self.settings = settings
        self.clock = clock
        self.rng = rng
        # This process's row in `processes` (set by the app): claims carry it, so the
        # others free them as soon as this process stops beating.
        self.process_id: int | None = None
        # Called when a poll or a push queued deliveries (the app wakes its deliverer).
        self.queued: Callable[[], None] = lambda: None
        self._in_flight: dict[int, asyncio.Task[PollResult]] = {}
        # Outcomes without new items, written in batches by flush().
        self._outcomes: list[PollOutcome] = []
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._ticking: asyncio.Task[object] | None = None
        # Per source, the entries of the last document this process handled: the
        # next changed body is parsed without them (bot.sources.incremental).
        self._seen: dict[int, SeenEntries] = {}
        # Changed sources are written together, a handful of statements per group.
        self._records: GroupCommit[PollRecord, RecordedPoll] = GroupCommit(
            store.record_polls,
            size=settings.record_batch,
            delay=settings.record_delay,
            name="poll-records",
        )

    # -- scheduling ----------------------------------------------------------------

    async def tick(self, *, keep: bool = True) -> list[asyncio.Task[PollResult]]:
        """:meth:`_tick`; while it runs, :meth:`stop` knows to wait for it."""
        self._ticking = asyncio.current_task()
        try:
            return await self._tick(keep=keep)
        finally:
            self._ticking = None

    async def _tick(self, *, keep: bool = True) -> list[asyncio.Task[PollResult]]:
        """Claim due sources while there is room and start polling them.

        Returns the polls it started (``keep``), once nothing more is due; polls
        still running finish on their own, so a slow server holds one slot, never
        the whole tick. The app's timer passes ``keep=False``: when sources are
        always due the tick never returns, and a list of every poll it started
        grew by ~9 MB per 10,000 polls (``make bench-scale``).
        """
        started: list[asyncio.Task[PollResult]] = []
        while not self._stopping:
            free = self.settings.concurrency - len(self._in_flight)
            if free <= 0:
                await asyncio.wait(
                    list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED
                )
                continue
            due = await self.store.claim_due_sources(
                now=self.clock(),
                limit=free,
                lease=timedelta(seconds=self.settings.claim_lease),
                exclude=self._in_flight.keys(),
                process=self.process_id,
            )
            if not due or self._stopping:
                # Stopped while claiming: leave these; the claims lapse (SQLite
                # releases them at the next start).
                break
            for source in due:
                task = asyncio.create_task(self._poll_and_log(source), name=f"poll-{source.id}")
                self._in_flight[source.id] = task
                task.add_done_callback(functools.partial(self._forget, source.id))
                if keep:
                    started.append(task)
        await self.flush()
        return started

    async def scheduled_tick(self) -> None:
        """:meth:`tick` for the app's timer: keeps nothing of the polls it starts."""
        await self.tick(keep=False)

    def _forget(self, source_id: int, task: asyncio.Task[PollResult]) -> None:
        if self._in_flight.get(source_id) is task:
            del self._in_flight[source_id]

    async def poll_due(self) -> list[PollResult]:
        """Poll everything due now and wait for all of it (tests, benchmarks, `demo`)."""
        results: list[PollResult] = []
        while started := await self.tick():
            results.extend(await asyncio.gather(*started))
        await self.flush()
        return results

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let running polls finish (up to ``grace``), write what is buffered."""
        self._stopping = True
        await finish_or_cancel(self._in_flight.values(), grace)
        # A tick waiting for a free slot wakes up once the polls above end, sees
        # the stop flag and returns; wait for it so nothing touches a closed pool.
        if tick := running_elsewhere(self._ticking):
            await asyncio.wait(tick, timeout=grace)
        await self.flush()

    async def flush(self) -> None:
        """Write buffered outcomes and any changed sources waiting for their group commit."""
        await self._records.drain()
        async with self._flush_lock:
            outcomes, self._outcomes = self._outcomes, []
            await self.store.record_outcomes(outcomes)

    async def _poll_and_log(self, source: DueSource) -> PollResult:
        try:
            result = await self.poll_source(source)
        except Exception as exc:  # a bug must not kill the poller: log and back off
            log.exception("poll crashed url=%s source=%d", source.url, source.id)
            result = await self._failed(source, f"internal error: {type(exc).__name__}", None)
        if self.metrics is not None:
            self.metrics.poll(
                _METRIC_OUTCOMES[result.status] if not result.changed else "changed",
                new_items=result.new_items,
            )
        if len(self._outcomes) >= self.settings.outcome_batch:
            await self.flush()
        return result

    # -- one source ----------------------------------------------------------------

    async def poll_source(self, source: DueSource) -> PollResult:
        now = self.clock()
        started = time.perf_counter()
        try:
            fetched = await fetch_source(
                self.fetcher,
                source.url,
                etag=source.etag,
                last_modified=source.last_modified,
                sources=self.sources,
            )
        except FetchError as exc:
            return await self._failed(source, str(exc), exc.retry_after)
        except ParseError as exc:
            return await self._failed(source, str(exc), None)
        finally:
            if self.metrics is not None:
                self.metrics.fetch_seconds.observe(time.perf_counter() - started)
        result = fetched.result
        if fetched.moved_to and await self.store.move_source(source.id, fetched.moved_to):
            log.info(
                "source moved from=%s to=%s source=%d", source.url, fetched.moved_to, source.id
            )
        next_at = self._next_poll(source, 0, None, result.max_age)
        if result.status == 304:
            self._outcomes.append(
                PollOutcome(source.id, now, next_at, ok=True, keep_validators=True)
            )
            return PollResult(source.id, source.url, "not_modified")
        body_hash = hashlib.sha256(result.body).hexdigest()
        outcome = PollOutcome(
            source.id,
            now,
            next_at,
            ok=True,
            etag=result.etag,
            last_modified=result.last_modified,
            body_hash=body_hash,
            keep_validators=False,
        )
        if body_hash == source.body_hash:
            # Same bytes as last time: skip parsing entirely; the server just
            # does not support validators (or changed them without content).
            self._outcomes.append(outcome)
            await self._note_header_hub(source, result.headers, result.url)
            return PollResult(source.id, source.url, "unchanged")
        # Only trust what this process remembers about a source it has seen
        # initialised: a first poll must look at (and store) every entry.
        previous = self._seen.get(source.id) if source.initialized else None
        started = time.perf_counter()
        try:
            document, built = await in_cpu_thread(
                _parse_for_poll,
                result.body,
                url=result.url,
                headers=result.headers,
                previous=previous,
                build_limit=self.settings.build_before_check,
                parse=fetched.parse,
            )
        except ParseError as exc:
            return await self._failed(source, str(exc), None)
        finally:
            if self.metrics is not None:
                self.metrics.parse_seconds.observe(time.perf_counter() - started)
        if document.parsed is None:
            # The bytes changed but no entry did (a build date, say): nothing to parse.
            self._outcomes.append(outcome)
            self._remember(source.id, document)
            await self._note_header_hub(source, result.headers, result.url)
            return PollResult(source.id, source.url, "unchanged")
        found = discover(result.headers, document.parsed.info, url=result.url)
        polled = await self._record(source, document.parsed, document, built, outcome, found)
        self._remember(source.id, document)
        return polled

    async def _note_header_hub(
        self, source: DueSource, headers: Mapping[str, str], url: str
    ) -> None:
        """A document not parsed again may still name a new hub in its ``Link`` headers
        (a changed document's hub is recorded with its items)."""
        found = discover(headers, _NO_DOCUMENT, url=url)
        if found.hub is not None and found.hub != source.hub_url:
            await self.store.set_hub(source.id, found.hub, found.topic)

    def _remember(self, source_id: int, document: ChangedDocument) -> None:
        if document.seen is None:
            self._seen.pop(source_id, None)
        else:
            self._seen[source_id] = document.seen

    async def _record(
        self,
        source: DueSource,
        parsed: ParsedFeed,
        document: ChangedDocument,
        built: list[Item] | None,
        outcome: PollOutcome,
        found: Discovery,
    ) -> PollResult:
        counts = document.link_counts
        first_poll = not source.initialized
        if built is None:
            # Many candidates: read what is known first, so only new entries pay
            # for HTML-to-markdown (a first poll can take seconds otherwise).
            entries = document.candidates
            unique_links = [
                e.link_norm for e in entries if e.link_norm and counts[e.link_norm] == 1
            ]
            known_keys, known_links = await self.store.known_items(
                source.id, [e.key for e in entries], unique_links
            )
            new_keys = {e.key for e in select_new(entries, known_keys, known_links, counts)}
            if not first_poll and known_keys and await self.store.follows_edits(source.id):
                # Entries already stored whose bytes changed: built too, so that the
                # write can compare their title and summary with what was posted.
                new_keys |= {e.key for e in entries if e.key in known_keys}
            new_entries = [e for e in entries if e.key in new_keys]
            built = (
                await in_cpu_thread(build_items, parsed, new_entries, counts) if new_entries else []
            )
        cap = self.settings.max_new_per_poll
        info = parsed.info
        recorded = await self._records.submit(
            PollRecord(
                source.id,
                built,
                outcome=outcome,
                meta=FeedMeta(info.title, info.link, info.icon, info.kind, found.hub, found.topic),
                first_poll=first_poll,
                choose=functools.partial(choose_new, built, cap=cap, first_poll=first_poll),
                # keys and normalised links: an entry whose guid changed matches its
                # stored item by link, which must stay as long as the feed shows it
                keys=(*document.keys, *document.link_counts) or None,
            )
        )
        if recorded.queued:
            self.queued()
        if not first_poll and recorded.chosen > cap:
            log.warning(
                "flood cap url=%s source=%d new=%d posting=%d reason=%s",
                source.url,
                source.id,
                recorded.chosen,
                cap,
                "more new items than polling.max_new_per_poll; the publisher may have "
                "rewritten its ids; the rest are marked seen",
            )
        if recorded.new_items:
            log.info(
                "new items url=%s title=%s source=%d new=%d queued=%d first_poll=%s%s",
                source.url,
                json.dumps(info.title, ensure_ascii=False),
                source.id,
                recorded.new_items,
                recorded.queued,
                first_poll,
                _first_poll_note(recorded.queued) if first_poll else "",
            )
        # Items the hub should have brought: it stopped delivering. Poll at the normal
        # interval again; the subscriber asks the hub again.
        if (
            recorded.new_items
            and not first_poll
            and self._pushed(source)
            and await self.store.websub_missed(
                source.id,
                now=self.clock(),
                poll_at=self.clock()
                + timedelta(seconds=source.interval_seconds or self.settings.interval),
                settled=timedelta(seconds=self.settings.push_safety_interval or 0),
            )
        ):
            log.warning(
                "push missed items url=%s source=%d new=%d reason=%s",
                source.url,
                source.id,
                recorded.new_items,
                "a poll found items the WebSub hub did not push; polling at the normal "
                "interval and subscribing again",
            )
        status: Literal["new", "unchanged"] = "new" if recorded.new_items else "unchanged"
        return PollResult(
            source.id, source.url, status, recorded.new_items, recorded.queued, changed=True
        )

    async def _failed(self, source: DueSource, error: str, retry_after: float | None) -> PollResult:
        failures = source.consecutive_failures + 1
        next_at = self._next_poll(source, failures, retry_after, None)
        self._outcomes.append(PollOutcome(source.id, self.clock(), next_at, ok=False, error=error))
        log.warning(
            "poll failed url=%s source=%d failures=%d next_in=%ds error=%s",
            source.url,
            source.id,
            failures,
            (next_at - self.clock()).total_seconds(),
            error,
        )
        return PollResult(source.id, source.url, "failed", error=error)

    def _next_poll(
        self, source: DueSource, failures: int, retry_after: float | None, max_age: float | None
    ) -> datetime:
        interval = float(source.interval_seconds or self.settings.interval)
        if self._pushed(source) and self.settings.push_safety_interval is not None:
            interval = max(interval, self.settings.push_safety_interval)
        delay = next_poll_delay(
            interval=interval,
            failures=failures,
            max_interval=self.settings.max_interval,
            retry_after=retry_after,
            max_age=max_age,
            jitter=self.settings.jitter,
            rnd=self.rng(),
        )
        return self.clock() + timedelta(seconds=delay)

    def _pushed(self, source: DueSource) -> bool:
        """Whether a verified WebSub subscription pushes the source's items now."""
        return (
            self.settings.push_safety_interval is not None
            and source.push_until is not None
            and source.push_until > self.clock()
        )

    async def record_push(self, target: PushTarget, body: bytes, headers: Mapping[str, str]) -> int:
        """Items a WebSub hub pushed for ``target``'s source: parsed, checked against what
        the source has and queued exactly as a poll's (an item that arrives by push and
        by poll is posted once). Returns the items queued; raises ParseError for a body
        that is not a feed.

        Parsed against the source's own URL (not the topic's) so that an entry without a
        guid gets the key a poll gives it. A pushed document holds only some entries, so
        whether a link is shared by several entries of the feed cannot be told: pushed
        items are matched by key alone. Entries dated well before the newest item the
        source had are updates of old ones (YouTube's hub pushes edits): left to polls."""
        parsed = await in_cpu_thread(parse_feed, body, url=target.source_url, headers=headers)
        entries = list(parsed.entries)
        if target.newest_item_at is not None:
            oldest = target.newest_item_at - PUSH_BACKDATE_SLACK
            entries = [e for e in entries if e.published is None or e.published >= oldest]
        built = await in_cpu_thread(build_items, parsed, entries, {}) if entries else []
        first_poll = not target.initialized
        now = self.clock()
        recorded = await self._records.submit(
            PollRecord(
                target.source_id,
                built,
                outcome=PollOutcome(target.source_id, now, now, ok=True),
                meta=None,
                first_poll=first_poll,
                choose=functools.partial(
                    choose_new, built, cap=self.settings.max_new_per_poll, first_poll=first_poll
                ),
                pushed=True,
            )
        )
        if recorded.queued:
            self.queued()
        if recorded.new_items:
            log.info(
                "new items url=%s source=%d new=%d queued=%d via=websub",
                target.source_url,
                target.source_id,
                recorded.new_items,
                recorded.queued,
            )
        return recorded.queued
