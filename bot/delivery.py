"""The outbox worker: post queued items to Discord webhooks, once, in order.

Per subscription, rows go out oldest first and one sender works on a
subscription at a time; subscriptions are independent, so a slow or limited
webhook holds up only itself. Every response is handled on purpose:

- 2xx: mark sent with Discord's message id;
- 429: wait as told (``global`` and ``X-RateLimit-Scope`` respected), send again;
- 5xx, timeouts, connection errors: retry with exponential backoff and jitter,
  mark failed once the row is older than ``delivery.max_age``;
- 404 / 401: the webhook is gone: disable every subscription using it, keep rows;
- 403: disable with the reason;
- 400: the payload was wrong: mark that row failed with Discord's error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp

from bot.metrics import Metrics
from bot.models import FeedInfo, SendError, WebhookTarget
from bot.render import Message
from bot.shaping import Shape, edit_body, render_message, render_messages, shape_of
from bot.storage.store import DeliveryJob, EditJob, OutboxEntry, SentMark, Store
from bot.tasks import GroupCommit, finish_or_cancel, running_elsewhere
from bot.webhooks import execute_url, message_url

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# Discord bans an IP after 10,000 401/403/429 responses in 10 minutes.
ERROR_WINDOW = 600.0
# Discord limits messages per channel (about 30 a minute, shared by all its
# webhooks) but announces it in no header: only a 429 with scope "shared" tells.
# Keeping our own budget avoids learning it from 429s every window; the window
# is a little longer than a minute to absorb clock edges.
CHANNEL_BUDGET = 30
CHANNEL_WINDOW = 61.0
MAX_RETRY_DELAY = 3600.0
_URL_IN_TEXT = re.compile(r"https?://[^\s<>()\[\]]+")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    api_base: str
    user_agent: str
    global_rate: float = 45.0
    batch_threshold: int = 3
    concurrency: int = 32
    timeout: float = 15.0
    lease: float = 60.0
    max_age: float = 24 * 3600.0
    error_budget: int = 2000
    bot_token: str = field(default="", repr=False)
    rows_per_claim: int = 10


# How long a posted message's sent mark waits for others to share its transaction.
# At the 45/s pace messages are ~22 ms apart: 20 ms grouped nothing (a transaction
# per message, about half the database thread's delivery work), 100 ms groups ~4.
# The wait is part of the window in which a hard crash leaves a row in doubt, which
# already spans the POST's round trip (100-300 ms to Discord); a graceful stop
# writes pending marks at once (GroupCommit.drain).
SENT_GROUP_WINDOW = 0.1


# -- rate limits ----------------------------------------------------------------------


@dataclass
class _Bucket:
    remaining: int | None = None  # None until Discord has told us
    reset_at: float = 0.0


class RateLimiter:
    """Waits before a request that Discord would refuse.

    Buckets come from Discord's headers (``X-RateLimit-Remaining`` and
    ``-Reset-After``) per webhook, never from hard-coded numbers; a 429 pauses
    its scope (the webhook, the whole channel for ``shared``, everything for
    ``global``). On top, a process-wide pace (``delivery.global_rate``) and an
    error budget: too many 401/403/429 in ten minutes pause all sending long
    before Discord's ban line.
    """

    def __init__(
        self,
        *,
        global_rate: float,
        error_budget: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.global_rate = global_rate
        self.full_error_budget = error_budget
        self.interval = 1.0 / global_rate
        self.error_budget = error_budget
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[int, _Bucket] = {}
        self._paused_channels: dict[int, float] = {}
        self._global_until = 0.0
        self._next_slot = 0.0
        self._errors: deque[float] = deque()
        self._channel_sends: dict[int, deque[float]] = {}

    def _bucket(self, webhook_id: int) -> _Bucket:
        return self._buckets.setdefault(webhook_id, _Bucket())

    def delay(self, webhook_id: int, channel_key: int) -> float:
        """Seconds to wait before this webhook may be used; 0 when it may go now."""
        now = self.clock()
        bucket = self._bucket(webhook_id)
        waits = [self._global_until - now, self._paused_channels.get(channel_key, 0.0) - now]
        if bucket.remaining is not None and bucket.remaining <= 0:
            waits.append(bucket.reset_at - now)
        window = self._channel_window(channel_key)
        if len(window) >= CHANNEL_BUDGET:
            waits.append(window[0] + CHANNEL_WINDOW - now)
        while self._errors and self._errors[0] <= now - ERROR_WINDOW:
            self._errors.popleft()
        if len(self._errors) >= self.error_budget:
            waits.append(self._errors[0] + ERROR_WINDOW - now)
        return max(0.0, *waits)

    def exhausted(self, webhook_id: int) -> bool:
        bucket = self._bucket(webhook_id)
        return (
            bucket.remaining is not None
            and bucket.remaining <= 0
            and (bucket.reset_at > self.clock())
        )

    async def acquire(self, webhook_id: int, channel_key: int) -> None:
        while True:
            if (wait := self.delay(webhook_id, channel_key)) > 0:
                await self.sleep(wait)
                continue
            now = self.clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
            if slot > now:
                await self.sleep(slot - now)
                # A 429 elsewhere may have paused this channel while we waited.
                if self.delay(webhook_id, channel_key) > 0:
                    continue
            break
        # Reserve with no await since the last check, so concurrent senders see it.
        bucket = self._bucket(webhook_id)
        if bucket.remaining is not None:
            bucket.remaining -= 1
        self._channel_window(channel_key).append(self.clock())

    def _channel_window(self, channel_key: int) -> deque[float]:
        window = self._channel_sends.setdefault(channel_key, deque())
        cutoff = self.clock() - CHANNEL_WINDOW
        while window and window[0] <= cutoff:
            window.popleft()
        return window

    def learn_channel(self, webhook_id: int, channel_id: int) -> None:
        """The webhook turned out to post in ``channel_id``: what it sent so far
        counts against that channel's budget, shared with its other webhooks."""
        provisional = self._channel_sends.pop(-webhook_id, None)
        if provisional:
            merged = sorted([*self._channel_window(channel_id), *provisional])
            self._channel_sends[channel_id] = deque(merged)
        paused = self._paused_channels.pop(-webhook_id, None)
        if paused is not None:
            self._paused_channels[channel_id] = max(
                paused, self._paused_channels.get(channel_id, 0.0)
            )

    def update(self, webhook_id: int, headers: Mapping[str, str]) -> None:
        remaining = headers.get("X-RateLimit-Remaining")
        reset_after = headers.get("X-RateLimit-Reset-After")
        if remaining is None or reset_after is None:
            return
        try:
            bucket = self._bucket(webhook_id)
            bucket.remaining = int(remaining)
            bucket.reset_at = self.clock() + float(reset_after)
        except ValueError:
            log.debug("ignoring malformed rate limit headers webhook=%d", webhook_id)

    def share(self, senders: int) -> None:
        """Take a 1/``senders`` share of ``delivery.global_rate`` and of the error
        budget: Discord limits the bot and the IP, not one process, so the delivery
        processes of a deployment split them (their count comes from the heartbeats)."""
        senders = max(1, senders)
        self.interval = senders / self.global_rate
        self.error_budget = max(1, self.full_error_budget // senders)

    def record_error(self) -> None:
        self._errors.append(self.clock())

    def on_429(self, webhook_id: int, channel_key: int, retry_after: float, scope: str) -> None:
        self.record_error()
        until = self.clock() + max(0.0, retry_after)
        if scope == "global":
            self._global_until = max(self._global_until, until)
        elif scope == "shared":
            self._paused_channels[channel_key] = max(
                self._paused_channels.get(channel_key, 0), until
            )
        else:
            bucket = self._bucket(webhook_id)
            bucket.remaining = 0
            bucket.reset_at = max(bucket.reset_at, until)


# -- responses ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostResult:
    # "missing": an edit's message no longer exists (404, code 10008)
    kind: Literal["sent", "rate_limited", "retry", "gone", "forbidden", "bad_request", "missing"]
    message_id: int | None = None
    channel_id: int | None = None
    error: str = ""
    # The request may have reached Discord (timeout, dropped connection).
    maybe_sent: bool = False


def retry_delay(attempts: int, rnd: float) -> float:
    """Exponential backoff with jitter: 5 s, 10 s, 20 s ... capped at an hour."""
    base: float = min(MAX_RETRY_DELAY, 5.0 * 2.0 ** min(attempts, 20))
    return base * (0.5 + rnd)


def _error_code(data: Any) -> int | None:
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, int) else None


def _error_text(status: int, data: Any) -> str:
    if isinstance(data, dict):
        return f"HTTP {status}: {json.dumps(data, separators=(',', ':'))[:400]}"
    return f"HTTP {status}"


def _links_in(message: Mapping[str, Any]) -> set[str]:
    links = set(_URL_IN_TEXT.findall(str(message.get("content") or "")))
    for embed in message.get("embeds") or ():
        if isinstance(embed, dict) and embed.get("url"):
            links.add(str(embed["url"]))
    return links


# -- the worker -----------------------------------------------------------------------


@dataclass
class DeliveryStats:
    sent_messages: int = 0
    sent_items: int = 0
    rate_limited: int = 0
    retried: int = 0
    failed_items: int = 0
    in_doubt_resent: int = 0
    in_doubt_found: int = 0
    filtered_items: int = 0
    edited_messages: int = 0


class Deliverer:
    def __init__(
        self,
        store: Store,
        settings: DeliverySettings,
        *,
        clock: Clock = utcnow,
        limiter: RateLimiter | None = None,
        rng: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._lease = timedelta(seconds=settings.lease)
        # This process's row in `processes` (see Poller.process_id).
        self.process_id: int | None = None
        # PostgreSQL: claims are this process's until then (time.monotonic()); past
        # it the others may have taken them (the heartbeat moves it on). None: always.
        self.claims_valid_until: float | None = None
        # Posted messages are recorded together: one transaction per group, not per post.
        self._sent: GroupCommit[SentMark, None] = GroupCommit(
            store.mark_sent_many,
            size=settings.concurrency,
            delay=SENT_GROUP_WINDOW,
            name="delivery-sent",
        )
        self.clock = clock
        self.rng = rng
        self.limiter = limiter or RateLimiter(
            global_rate=settings.global_rate, error_budget=settings.error_budget
        )
        self.stats = DeliveryStats()
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._ticking: asyncio.Task[object] | None = None
        self._tick_lock = asyncio.Lock()
        self._wake_again = False
        self._wakes: set[asyncio.Task[list[asyncio.Task[None]]]] = set()
        # One request at a time per webhook: Discord's bucket is per webhook anyway,
        # and a webhook found dead must not get a second request already in flight.
        self._webhook_locks: dict[int, asyncio.Lock] = {}
        self._dead_webhooks: dict[tuple[int, str], str] = {}

    async def __aenter__(self) -> Deliverer:
        self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                headers={"User-Agent": self.settings.user_agent},
                connector=aiohttp.TCPConnector(limit=max(10, self.settings.concurrency)),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- scheduling ------------------------------------------------------------------

    async def tick(self) -> list[asyncio.Task[None]]:
        """:meth:`_tick`, one at a time (the timer's and :meth:`wake`'s); while it runs,
        :meth:`stop` knows to wait for it. A wake that came during a tick runs one more."""
        async with self._tick_lock:
            if self._stopping:  # a wake that started after stop(): the database may be gone
                return []
            self._ticking = asyncio.current_task()
            try:
                started = await self._tick()
                while self._wake_again and not self._stopping:
                    self._wake_again = False
                    started += await self._tick()
                return started
            finally:
                self._ticking = None

    def wake(self) -> None:
        """Items were just queued in this process (a poll, a push, a hook): claim them now
        instead of at the next timer tick, up to half a second later."""
        if self._stopping or self._session is None:
            return
        if self._tick_lock.locked() or self._wakes:
            # a tick runs or is about to: it makes one more round
            self._wake_again = True
            return
        task = asyncio.create_task(self.tick(), name="deliver-wake")
        self._wakes.add(task)
        task.add_done_callback(self._woken)

    def _woken(self, task: asyncio.Task[list[asyncio.Task[None]]]) -> None:
        self._wakes.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("delivery tick failed: %s", error, exc_info=error)

    async def _tick(self) -> list[asyncio.Task[None]]:
        """Claim due deliveries while there is room and start sending them."""
        started: list[asyncio.Task[None]] = []
        while not self._stopping:
            free = self.settings.concurrency - len(self._in_flight)
            if free <= 0:
                break
            jobs = await self.store.claim_deliveries(
                now=self.clock(),
                limit=free,
                batch=self.settings.rows_per_claim,
                lease=timedelta(seconds=self.settings.lease),
                exclude=self._in_flight.keys(),
                process=self.process_id,
            )
            if self._stopping:
                # Stopped while claiming: nothing was sent now, so back to the queue
                # as they were (rows already in doubt stay in doubt).
                entries = [entry for job in jobs for entry in job.entries]
                for doubt in (False, True):
                    await self.store.reschedule(
                        [e.id for e in entries if e.in_doubt == doubt],
                        at=self.clock(),
                        error=None,
                        count_attempt=False,
                        in_doubt=doubt,
                    )
                break
            if not jobs:
                break
            log.debug(
                "claimed deliveries subscriptions=%s rows=%d",
                [job.subscription_id for job in jobs],
                sum(len(job.entries) for job in jobs),
            )
            for job in jobs:
                task = asyncio.create_task(
                    self._run_logged(job), name=f"deliver-{job.subscription_id}"
                )
                self._in_flight[job.subscription_id] = task
                task.add_done_callback(functools.partial(self._forget, job.subscription_id))
                started.append(task)
        started += await self._start_edits()
        return started

    async def _start_edits(self) -> list[asyncio.Task[None]]:
        """Claim messages due an edit with the slots sends left free; one task per
        subscription, so its sends and edits never run side by side."""
        free = self.settings.concurrency - len(self._in_flight)
        if self._stopping or free <= 0:
            return []
        edits = await self.store.claim_edits(
            now=self.clock(),
            limit=free * 4,
            lease=timedelta(seconds=self.settings.lease),
            exclude=self._in_flight.keys(),
        )
        by_subscription: dict[int, list[EditJob]] = {}
        for edit in edits:
            by_subscription.setdefault(edit.subscription_id, []).append(edit)
        started = []
        for sub_id, jobs in by_subscription.items():
            task = asyncio.create_task(self._run_edits(jobs), name=f"edit-{sub_id}")
            self._in_flight[sub_id] = task
            task.add_done_callback(functools.partial(self._forget, sub_id))
            started.append(task)
        return started

    async def _run_edits(self, jobs: Sequence[EditJob]) -> None:
        for job in jobs:
            try:
                if self._stopping:
                    await self.store.finish_edit(job, retry_at=self.clock())
                    continue
                await self._edit(job)
            except Exception:
                log.exception("edit crashed subscription=%d", job.subscription_id)
                # its claim runs out and the edit is tried again then

    async def _edit(self, job: EditJob) -> None:
        """PATCH a posted message with its item as it now is, paced like sends."""
        body = edit_body(render_message(job.item, job.feed, shape_of(job.options)))
        url = message_url(self.settings.api_base, job.target, job.message_id, job.thread_id)
        carrier = DeliveryJob(
            subscription_id=job.subscription_id,
            target=job.target,
            channel_id=None,
            options=job.options,
            feed=job.feed,
            entries=(),
            pending_total=0,
        )
        while True:
            async with self._webhook_locks.setdefault(job.target.webhook_id, asyncio.Lock()):
                result = await self._post(carrier, body, method="PATCH", url=url)
            if result.kind != "rate_limited":
                break
            self.stats.rate_limited += 1
        link = job.item.link or job.item.key
        if result.kind == "sent":
            self.stats.edited_messages += 1
            await self.store.finish_edit(job)
            log.info(
                "edited url=%s link=%s subscription=%d message=%d",
                job.source_url,
                link,
                job.subscription_id,
                job.message_id,
            )
        elif result.kind == "missing":
            # Someone deleted the message: nothing left to follow.
            await self.store.finish_edit(job)
            log.info(
                "edit skipped, the message was deleted url=%s link=%s subscription=%d",
                job.source_url,
                link,
                job.subscription_id,
            )
        elif result.kind in ("gone", "forbidden"):
            await self.store.finish_edit(job)
            await self._webhook_dead(job.target, result.error)
        elif result.kind == "bad_request":
            await self.store.finish_edit(job)
            log.warning(
                "edit rejected subscription=%d message=%d error=%s",
                job.subscription_id,
                job.message_id,
                result.error,
            )
        else:
            delay = retry_delay(1, self.rng())
            await self.store.finish_edit(job, retry_at=self.clock() + timedelta(seconds=delay))
            log.info(
                "edit retried subscription=%d in=%.0fs error=%s",
                job.subscription_id,
                delay,
                result.error,
            )

    async def _filter(
        self, job: DeliveryJob, shape: Shape, entries: list[OutboxEntry]
    ) -> list[OutboxEntry]:
        """Leave out the entries the subscription's filters reject: marked ``filtered``,
        never sent. Regexes run off the event loop (each search is time-bounded too)."""
        item_filter = shape.filter

        def verdicts() -> list[bool]:
            return [item_filter.passes(entry.item) for entry in entries]

        passing = await asyncio.to_thread(verdicts) if item_filter.has_regex else verdicts()
        dropped = [entry for entry, ok in zip(entries, passing, strict=True) if not ok]
        if dropped:
            await self.store.mark_filtered(
                [entry.id for entry in dropped],
                reason="left out by the subscription's filters",
                now=self.clock(),
            )
            self.stats.filtered_items += len(dropped)
            self._count("filtered", len(dropped))
            for entry in dropped:
                log.info(
                    "filtered url=%s link=%s subscription=%d",
                    job.source_url,
                    entry.item.link or entry.item.key,
                    job.subscription_id,
                )
        return [entry for entry, ok in zip(entries, passing, strict=True) if ok]

    def _forget(self, subscription_id: int, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(subscription_id) is task:
            del self._in_flight[subscription_id]

    async def deliver_due(self) -> None:
        """Send everything due now and wait for it (tests, the demo, benchmarks)."""
        running = set(await self.tick())
        while running:
            # Refill each freed slot at once instead of waiting for the slowest job.
            _done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running |= set(await self.tick())

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let requests in flight finish; what was not sent goes back
        to the queue (a request cut off after ``grace`` stays in doubt)."""
        self._stopping = True
        # A tick in the middle of claiming finishes first (it puts back what it
        # claimed): closing the database under it would hang the connection.
        if tick := running_elsewhere(self._ticking):
            await asyncio.wait(tick, timeout=grace)
        await finish_or_cancel(self._in_flight.values(), grace)
        # A sender cancelled while its post was being recorded: the record still lands.
        await self._sent.drain()

    async def _run_logged(self, job: DeliveryJob) -> None:
        try:
            current: DeliveryJob | None = job
            # Keep the subscription while it has due rows: its backlog then flows
            # at the webhook's pace instead of one batch per tick.
            while (
                current is not None
                and await self.run_job(current)
                and not self._stopping
                # What was claimed was all that was pending: rows queued since are
                # picked up by the next tick, without a claim that finds nothing.
                and current.pending_total > len(current.entries)
            ):
                current = await self.store.claim_subscription(
                    current.subscription_id,
                    now=self.clock(),
                    batch=self.settings.rows_per_claim,
                    lease=timedelta(seconds=self.settings.lease),
                    process=self.process_id,
                )
        except Exception:
            log.exception("delivery crashed subscription=%d", job.subscription_id)
            # Leave the claim to expire: the rows become in doubt and are checked.

    # -- one subscription's batch ----------------------------------------------------

    async def run_job(self, job: DeliveryJob) -> bool:
        """Send a claimed batch; False when the subscription must wait (retry
        later, webhook gone, stopping) rather than go on with its next rows."""
        entries = list(job.entries)
        doubtful = [e for e in entries if e.in_doubt]
        if doubtful:
            entries = await self._settle_in_doubt(job, entries, doubtful)
        if not entries:
            return True
        shape = shape_of(job.options)
        if not shape.filter.empty:
            entries = await self._filter(job, shape, entries)
            if not entries:
                return True
        # A forum channel gets one post (thread) per item, titled by the item.
        batching = (
            not shape.forum
            and shape.batch
            and (
                job.pending_total > self.settings.batch_threshold
                or self.limiter.exhausted(job.target.webhook_id)
            )
        )
        queue: deque[tuple[Message, list[OutboxEntry]]] = deque()
        run: list[OutboxEntry] = []

        def flush_run() -> None:
            start = 0
            for message in render_messages([e.item for e in run], job.feed, shape):
                queue.append((message, run[start : start + message.count]))
                start += message.count
            run.clear()

        for entry in entries:
            if batching and not shape.stands_alone(entry.item):
                run.append(entry)
                continue
            flush_run()
            queue.append((Message(render_message(entry.item, job.feed, shape), 1), [entry]))
        flush_run()
        lease_until = job.lease_until
        while queue:
            message, rows = queue[0]
            if self._stopping:
                await self._requeue(queue, error=None)
                return False
            if not self._claims_hold(job.claimed_by):
                # Others may own these rows now: touch nothing, send nothing.
                log.warning(
                    "dropping claimed deliveries: this process may have been taken for dead "
                    "subscription=%d rows=%d",
                    job.subscription_id,
                    sum(len(held) for _, held in queue),
                )
                return False
            if lease_until is None or lease_until - self.clock() < self._lease / 2:
                # Waiting on rate limits can outlast the claim: renew it for every
                # row still held, so no other process checks them as in doubt.
                lease_until = await self._keep_lease([r for _, held in queue for r in held])
            async with self._webhook_locks.setdefault(job.target.webhook_id, asyncio.Lock()):
                dead = self._dead_webhooks.get((job.target.webhook_id, job.target.token))
                result = (
                    PostResult("gone", error=dead) if dead else await self._post(job, message.body)
                )
            if result.kind == "rate_limited":
                self.stats.rate_limited += 1
                self._count("rate_limited", len(rows))
                await self.store.log_attempts(
                    [r.id for r in rows],
                    outcome="retried",
                    reason="Discord rate limited the webhook (429); sent again after the wait",
                    now=self.clock(),
                )
                continue  # the limiter now knows how long to wait
            queue.popleft()
            ids = [r.id for r in rows]
            if result.kind == "sent":
                # The thread it went to: the subscription's, or the forum post it opened.
                thread = job.target.thread_id or (result.channel_id if shape.forum else None)
                await self._sent.submit(
                    SentMark(tuple(ids), result.message_id, self.clock(), thread_id=thread)
                )
                for row in rows:
                    # Where to look when someone asks "why did this not show up?"; the
                    # source's URL names it (the webhook's token never reaches a log).
                    log.info(
                        "posted url=%s link=%s subscription=%d message=%s",
                        job.source_url,
                        row.item.link or row.item.key,
                        job.subscription_id,
                        result.message_id,
                    )
                self.stats.sent_messages += 1
                self.stats.sent_items += len(rows)
                self._count("sent", len(rows))
                if self.metrics is not None:
                    accepted = self.clock()
                    # queued in the poll that first saw the item: its first sight
                    self.metrics.delivered((accepted - r.created_at).total_seconds() for r in rows)
                if (
                    result.channel_id
                    and job.channel_id is None
                    and not job.target.thread_id
                    and not shape.forum  # a forum post answers with its new thread's id
                ):
                    self.limiter.learn_channel(job.target.webhook_id, result.channel_id)
                    await self.store.learn_channel(job.subscription_id, result.channel_id)
                    job = replace(job, channel_id=result.channel_id)
            elif result.kind == "bad_request" and len(rows) > 1:
                # One bad item must not sink its batch: send them one by one.
                singles = [(Message(render_message(r.item, job.feed, shape), 1), [r]) for r in rows]
                queue.extendleft(reversed(singles))
            elif result.kind == "bad_request":
                log.warning(
                    "delivery rejected subscription=%d outbox=%d error=%s",
                    job.subscription_id,
                    ids[0],
                    result.error,
                )
                await self.store.mark_failed(ids, error=result.error, now=self.clock())
                self.stats.failed_items += 1
                self._count("failed", 1)
            elif result.kind in ("gone", "forbidden"):
                await self._webhook_dead(job.target, result.error)
                queue.appendleft((message, rows))
                await self._requeue(queue, error=result.error)
                return False
            else:  # retry
                queue.appendleft((message, rows))
                await self._retry_later(queue, result.error, maybe_sent=result.maybe_sent)
                return False
        return True

    def _count(self, outcome: str, items: int) -> None:
        """feedhook_deliveries_total, counted in items (a batch of ten sent is ten)."""
        if self.metrics is not None and items:
            self.metrics.delivery(outcome, items)

    async def _webhook_dead(self, target: WebhookTarget, error: str) -> None:
        """Discord says the webhook is gone or refused: no more requests to it, and every
        subscription using it disabled with the reason."""
        self._dead_webhooks[(target.webhook_id, target.token)] = error
        disabled = await self.store.disable_webhook(
            target.webhook_id, reason=error, now=self.clock()
        )
        log.warning(
            "webhook disabled webhook=%d subscriptions=%s reason=%s",
            target.webhook_id,
            disabled,
            error,
        )

    def _claims_hold(self, claimed_as: int | None) -> bool:
        """Whether rows claimed as process ``claimed_as`` are still this process's."""
        if claimed_as != self.process_id:
            return False  # registered again since: the old claims were freed
        until = self.claims_valid_until
        return until is None or time.monotonic() < until

    async def send_now(self, target: WebhookTarget, body: dict[str, Any]) -> int | None:
        """Post one body outside the queue (``/feed test``); Discord's message id."""
        job = DeliveryJob(
            subscription_id=0,
            target=target,
            channel_id=None,
            options={},
            feed=FeedInfo(title="", link=None, icon=None, kind="rss"),
            entries=(),
            pending_total=0,
        )
        async with self._webhook_locks.setdefault(target.webhook_id, asyncio.Lock()):
            for _attempt in range(3):
                result = await self._post(job, body)
                if result.kind != "rate_limited":
                    break
        if result.kind == "sent":
            return result.message_id
        if result.kind in ("gone", "forbidden"):
            # as for queued posts: nothing more goes to it, its subscriptions stop
            await self._webhook_dead(target, result.error)
        raise SendError(result.error or "Discord is rate limiting this webhook; try again soon.")

    async def _settle_in_doubt(
        self, job: DeliveryJob, entries: list[OutboxEntry], doubtful: list[OutboxEntry]
    ) -> list[OutboxEntry]:
        """A lease ran out while sending: Discord may already have these. With a bot
        token, look in the channel; without one, send again (at-least-once)."""
        found = await self._find_in_channel(job, doubtful)
        for entry_id, message_id in found.items():
            await self.store.mark_sent([entry_id], message_id=message_id, now=self.clock())
        self.stats.in_doubt_found += len(found)
        resend = [e for e in doubtful if e.id not in found]
        if resend:
            self.stats.in_doubt_resent += len(resend)
            log.warning(
                "re-sending in-doubt deliveries subscription=%d count=%d reason=%s",
                job.subscription_id,
                len(resend),
                "a previous run may have posted them before it stopped"
                if not self.settings.bot_token
                else "not found in the channel's recent messages",
            )
        if found:
            log.info(
                "in-doubt deliveries already in the channel subscription=%d count=%d",
                job.subscription_id,
                len(found),
            )
        return [e for e in entries if e.id not in found]

    async def _find_in_channel(
        self, job: DeliveryJob, doubtful: Sequence[OutboxEntry]
    ) -> dict[int, int]:
        if not self.settings.bot_token:
            return {}
        channel = job.target.thread_id or job.channel_id or await self._webhook_channel(job)
        if channel is None:
            return {}
        assert self._session is not None
        url = f"{self.settings.api_base}/channels/{channel}/messages?limit=50"
        try:
            async with self._session.get(
                url, headers={"Authorization": f"Bot {self.settings.bot_token}"}
            ) as resp:
                if resp.status != 200:
                    log.warning(
                        "cannot read channel=%d status=%d to settle in-doubt rows",
                        channel,
                        resp.status,
                    )
                    return {}
                messages = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("cannot read channel=%d to settle in-doubt rows error=%s", channel, exc)
            return {}
        by_link: dict[str, int] = {}
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict) and str(message.get("webhook_id")) == str(
                job.target.webhook_id
            ):
                for link in _links_in(message):
                    by_link.setdefault(link, int(message["id"]))
        return {e.id: by_link[e.item.link] for e in doubtful if e.item.link in by_link}

    async def _webhook_channel(self, job: DeliveryJob) -> int | None:
        """Ask Discord which channel a webhook posts to (no bot permission needed)."""
        assert self._session is not None
        target = job.target
        url = f"{self.settings.api_base}/webhooks/{target.webhook_id}/{target.token}"
        try:
            async with self._session.get(url) as resp:
                info = await resp.json(content_type=None) if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            info = None
        if not isinstance(info, dict) or "channel_id" not in info:
            return None
        channel_id = int(info["channel_id"])
        await self.store.learn_channel(job.subscription_id, channel_id)
        return channel_id

    async def _keep_lease(self, rows: Sequence[OutboxEntry]) -> datetime:
        until = self.clock() + self._lease
        await self.store.extend_lease([r.id for r in rows], until=until)
        return until

    async def _requeue(
        self, queue: deque[tuple[Message, list[OutboxEntry]]], *, error: str | None
    ) -> None:
        ids = [r.id for _, rows in queue for r in rows]
        await self.store.reschedule(ids, at=self.clock(), error=error, count_attempt=False)

    async def _retry_later(
        self, queue: deque[tuple[Message, list[OutboxEntry]]], error: str, *, maybe_sent: bool
    ) -> None:
        now = self.clock()
        rows = [r for _, group in queue for r in group]
        expired = [
            r.id for r in rows if now - r.created_at > timedelta(seconds=self.settings.max_age)
        ]
        if expired:
            await self.store.mark_failed(
                expired, error=f"gave up after {self.settings.max_age / 3600:g} h: {error}", now=now
            )
            self.stats.failed_items += len(expired)
            self._count("failed", len(expired))
        retry = [r for r in rows if r.id not in set(expired)]
        if not retry:
            return
        delay = retry_delay(max(r.attempts for r in retry), self.rng())
        at = now + timedelta(seconds=delay)
        # Only the message that was on the wire may have reached Discord.
        posted = {r.id for r in queue[0][1]} if maybe_sent else set()
        for ids, doubt in (
            ([r.id for r in retry if r.id in posted], True),
            ([r.id for r in retry if r.id not in posted], False),
        ):
            await self.store.reschedule(
                ids, at=at, error=error, count_attempt=True, in_doubt=doubt, now=now
            )
        self.stats.retried += 1
        self._count("retried", len(retry))
        log.warning("delivery will retry count=%d in=%.0fs error=%s", len(retry), delay, error)

    async def _post(
        self,
        job: DeliveryJob,
        body: dict[str, Any],
        *,
        method: str = "POST",
        url: str | None = None,
    ) -> PostResult:
        """Execute the webhook with ``body`` (or, for an edit, ``method`` on ``url``),
        paced by the limiter; what Discord's answer means for the rows."""
        assert self._session is not None, "Deliverer used without open()"
        target = job.target
        channel_key = job.channel_id or -target.webhook_id
        await self.limiter.acquire(target.webhook_id, channel_key)
        try:
            async with self._session.request(
                method, url or execute_url(self.settings.api_base, target), json=body
            ) as resp:
                status = resp.status
                try:
                    data = await resp.json(content_type=None) if status != 204 else None
                except ValueError:
                    data = None
                self.limiter.update(target.webhook_id, resp.headers)
                scope = resp.headers.get("X-RateLimit-Scope", "")
        except TimeoutError:
            return PostResult(
                "retry",
                error=f"Discord did not answer within {self.settings.timeout:g} s",
                maybe_sent=True,
            )
        except aiohttp.ClientConnectorError as exc:
            return PostResult("retry", error=f"could not connect to Discord: {exc.os_error}")
        except aiohttp.ClientError as exc:
            return PostResult(
                "retry", error=f"Discord's answer was lost: {type(exc).__name__}", maybe_sent=True
            )
        if 200 <= status < 300:
            message = data if isinstance(data, dict) else {}
            return PostResult(
                "sent",
                message_id=int(message["id"]) if "id" in message else None,
                channel_id=int(message["channel_id"]) if "channel_id" in message else None,
            )
        if status == 429:
            info = data if isinstance(data, dict) else {}
            retry_after = float(info.get("retry_after", 1.0))
            if info.get("global"):
                scope = "global"
            self.limiter.on_429(target.webhook_id, channel_key, retry_after, scope)
            log.info(
                "rate limited webhook=%d scope=%s retry_after=%.2f",
                target.webhook_id,
                scope or "webhook",
                retry_after,
            )
            return PostResult("rate_limited")
        if status == 404 and method == "PATCH" and _error_code(data) in (10008, 10003):
            # the message, or the thread / forum post it was in, was deleted: only the
            # webhook's own 10015 (below) means the webhook is gone
            return PostResult("missing", error="the message was deleted")
        if status in (401, 404):
            self.limiter.record_error()
            return PostResult(
                "gone",
                error=f"the webhook was deleted or its token is wrong (HTTP {status}); "
                "create a new webhook and update the subscription",
            )
        if status == 403:
            self.limiter.record_error()
            return PostResult(
                "forbidden",
                error="Discord refused the webhook (HTTP 403 Missing Permissions); "
                "check the channel's permissions and re-create the webhook",
            )
        if 400 <= status < 500:
            return PostResult("bad_request", error=_error_text(status, data))
        return PostResult("retry", error=_error_text(status, data))
