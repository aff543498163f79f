"""Delivery benchmark: feedhook's outbox worker against a rate-limited fake Discord.

    python -m bench.deliver [--run 1|2|all] [--quick] [--run2-items N] [--driver due|app]
                            [--concurrency N] [--rows-per-claim N] [--global-rate R]
                            [--tracemalloc] [--timeline] [--timeout S]

The fake Discord (``tests/fakes/fake_discord.py``) runs in a process of its own (see
``bench/deliver_fake.py``) and enforces 5 requests per 2 s per webhook, 30 messages per
minute per channel and 50 requests per second overall, with Discord's headers and 429s.

Each run queues realistic items (60-character titles, 500-character markdown summaries) in a
temporary SQLite database, one feed and one subscription (embeds, batching on) per webhook,
exactly as the poller would, then drives ``Deliverer.deliver_due()`` until the outbox is
empty (``--driver app``: ``tick()`` every 0.5 s, as ``bot.app`` runs it), in a fresh process
so its CPU time and peak memory are its own. Exit status 1 when a target is missed.

1. 200 webhooks in 200 channels x 10 items: bound by the overall limit (feedhook's own
   ``delivery.global_rate``, 45/s, sits under Discord's 50/s);
2. 4 channels x 2 webhooks x 100 items: meant to be bound by the channel limit; with
   batching (10 items a message) its 20 messages per channel fit in one 30-per-minute
   window, which the output says; ``--run2-items 400`` spans three windows (about 2 min).

Targets: accepted requests/s >= 90% of the ceiling, 429s < 0.5% of requests, and in run 2
items/s >= 5x requests/s. The diagnosis lines under each run show where time went: gaps in
the request log and the claims running during them, the limiter's waits by reason, and the
wall time of the store and render calls.

Rates are taken from the fake's request log: requests/s = (requests - 1) / (last request
start - first request start); items/s = requests/s x items per request. The ceiling is the
same rate for the ideal schedule of this run's requests: every request sent as early as the
fake's windows and feedhook's own pace allow (a greedy simulation of the same fixed-window
rules), so a burst that a first window allows counts, and a short run is not held against a
steady-state rate it never reaches. The steady-state ceiling and its binding limit are
printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.deliver_fake import serve
from bench.passes import gc_like_the_app
from bot import delivery as delivery_module
from bot.delivery import ERROR_WINDOW, Deliverer, DeliverySettings, RateLimiter
from bot.models import Item, WebhookTarget
from bot.storage.db import Database
from bot.storage.store import ConfigFeed, FeedMeta, PollOutcome, Store

# The fake's limits: (requests, per seconds), fixed windows.
LIMITS: dict[str, tuple[int, float]] = {
    "webhook": (5, 2.0),
    "channel": (30, 60.0),
    "global": (50, 1.0),
}
REQUEST_TARGET = 0.90  # of the ceiling
LIMITED_TARGET = 0.005  # 429s per request
BATCH_TARGET = 5.0  # items/s per request/s, channel-bound run
DEFAULTS = DeliverySettings(api_base="", user_agent="")


@dataclass(frozen=True)
class Shape:
    key: str
    channels: int
    webhooks_per_channel: int
    items_per_webhook: int
    meant_bound: str

    @property
    def webhooks(self) -> int:
        return self.channels * self.webhooks_per_channel

    @property
    def title(self) -> str:
        if self.webhooks_per_channel == 1:
            return (
                f"{self.webhooks} webhooks in {self.channels} channels"
                f" x {self.items_per_webhook} items"
            )
        return (
            f"{self.channels} channels x {self.webhooks_per_channel} webhooks"
            f" x {self.items_per_webhook} items"
        )

    def channel_ids(self) -> list[int]:
        """The channel of each webhook, in webhook order."""
        return [1000 + c for c in range(self.channels) for _ in range(self.webhooks_per_channel)]


def shapes(quick: bool, run2_items: int | None) -> dict[str, Shape]:
    if quick:
        one = Shape("1", 60, 1, 10, "overall")
        two = Shape("2", 2, 2, run2_items or 60, "channel")
    else:
        one = Shape("1", 200, 1, 10, "overall")
        two = Shape("2", 4, 2, run2_items or 100, "channel")
    return {"1": one, "2": two}


# ---------------------------------------------------------------------------- items

_TEXT = (
    "release kernel update security patch network storage driver cluster memory scheduler "
    "compiler runtime database index query cache latency throughput backup migration deploy "
    "container registry service gateway proxy certificate rotation incident outage review "
    "roadmap community maintainers benchmark regression profile allocator parser renderer "
    "webhook channel stream archive mirror upstream downstream package version stable beta"
)
_WORDS = _TEXT.split()


def _words(rng: random.Random, length: int) -> str:
    """Random words, capitalised, about ``length`` characters long (whole words only)."""
    out: list[str] = []
    size = -1
    while True:
        word = rng.choice(_WORDS)
        if out and size + 1 + len(word) > length:
            break
        out.append(word)
        size += 1 + len(word)
    text = " ".join(out)
    return text[:1].upper() + text[1:]


def make_item(rng: random.Random, feed_no: int, n: int, published: datetime) -> Item:
    """One realistic entry: a ~60-character title and a ~500-character markdown summary."""
    link = f"https://news{feed_no}.example.com/{published:%Y/%m}/{n}-{rng.randrange(10**6)}"
    summary = (
        f"**{_words(rng, 40)}.** {_words(rng, 170)}.\n\n"
        f"- {_words(rng, 55)}\n- {_words(rng, 55)}\n\n"
        f"{_words(rng, 110)}, see [the announcement]({link}#details) and "
        f"`{rng.choice(_WORDS)}-{rng.randrange(100)}.{rng.randrange(10)}`."
    )
    return Item(
        key=f"urn:bench:{feed_no}:{n}",
        title=_words(rng, 60),
        link=link,
        summary=summary,
        author=f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
        published=published,
        image=None,
        categories=(rng.choice(_WORDS), rng.choice(_WORDS)),
        link_norm=link,
    )


# ---------------------------------------------------------------------------- feedhook side


class WatchedLimiter(RateLimiter):
    """feedhook's limiter, plus where its waiting went (for the diagnosis lines).

    ``acquire`` sleeps exactly what ``delay`` returns while it is positive, then sleeps for
    its pace slot; so the positive ``delay`` values, by reason, plus the pace waits add up to
    all of its sleeping. All in task-seconds (concurrent waits add up)."""

    def __init__(self, **kwargs: Any) -> None:
        self.waits: dict[str, float] = {}
        self.slept = 0.0
        self.seen_429: list[tuple[float, int, str, float]] = []
        super().__init__(sleep=self._sleep, **kwargs)

    async def _sleep(self, seconds: float) -> None:
        self.slept += seconds
        await asyncio.sleep(seconds)

    def delay(self, webhook_id: int, channel_key: int) -> float:
        wait = super().delay(webhook_id, channel_key)
        if wait > 0:
            reason = self._reason(webhook_id, channel_key)
            self.waits[reason] = self.waits.get(reason, 0.0) + wait
        return wait

    def _reason(self, webhook_id: int, channel_key: int) -> str:
        """Which of ``delay``'s waits is the longest (private state: a bench may peek)."""
        now = self.clock()
        bucket = getattr(self, "_buckets", {}).get(webhook_id)
        errors: Sequence[float] = getattr(self, "_errors", ())
        waits = {
            "global 429 pause": getattr(self, "_global_until", 0.0) - now,
            "channel (shared) 429 pause": getattr(self, "_paused_channels", {}).get(
                channel_key, 0.0
            )
            - now,
            "webhook bucket (headers)": bucket.reset_at - now if bucket is not None else 0.0,
            "error budget": errors[0] + ERROR_WINDOW - now
            if len(errors) >= self.error_budget
            else 0.0,
        }
        return max(waits, key=lambda k: waits[k])

    def on_429(self, webhook_id: int, channel_key: int, retry_after: float, scope: str) -> None:
        self.seen_429.append((self.clock(), webhook_id, scope or "user", retry_after))
        super().on_429(webhook_id, channel_key, retry_after, scope)


def _time_calls(
    obj: object,
    names: Sequence[str],
    into: dict[str, list[float]],
    events: list[tuple[str, float, float, int]],
) -> None:
    """Wrap coroutine methods of ``obj`` to add up their wall time ([calls, seconds]) and
    log each claim as (name, start, end, jobs) in ``time.monotonic()`` time."""
    for name in names:
        original = getattr(obj, name)

        def bind(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            async def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.monotonic()
                result = None
                try:
                    result = await original(*args, **kwargs)
                    return result
                finally:
                    ended = time.monotonic()
                    slot = into.setdefault(name, [0, 0.0])
                    slot[0] += 1
                    slot[1] += ended - started
                    if name == "claim_deliveries":
                        events.append((name, started, ended, len(result or ())))

            return timed

        setattr(obj, name, bind(name, original))


def _time_renders(into: dict[str, list[float]]) -> None:
    """Time the renderer as the deliverer calls it: it runs on the event loop, so its CPU
    time is time in which no other job can send (this process only; the bench's own)."""
    for name in ("render_messages", "render_message"):
        original = getattr(delivery_module, name)

        def bind(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    slot = into.setdefault(name, [0, 0.0])
                    slot[0] += 1
                    slot[1] += time.perf_counter() - started

            return timed

        setattr(delivery_module, name, bind(name, original))


@dataclass
class PassParams:
    api_base: str
    hooks: list[tuple[int, str, int]]  # (webhook id, token, channel id)
    items_per_webhook: int
    global_rate: float
    concurrency: int
    rows_per_claim: int
    trace: bool
    timeout: float
    driver: str = "due"


@dataclass
class PassResult:
    queued: int
    setup_s: float
    started: float  # time.monotonic() when delivery began
    ended: float
    cpu_s: float
    rss_before_mb: float
    maxrss_mb: float
    traced_peak_mb: float | None
    counts: dict[str, int]
    stats: dict[str, int]
    waits: dict[str, float]
    pace_wait: float
    seen_429: list[tuple[float, int, str, float]]
    store_time: dict[str, list[float]]
    claims: list[tuple[str, float, float, int]]
    timed_out: bool
    settings: dict[str, Any] = field(default_factory=dict)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _left(store: Store) -> int:
    counts = await store.counts()
    return counts.get("outbox_pending", 0) + counts.get("outbox_sending", 0)


async def _drive_with_deliver_due(deliverer: Deliverer, store: Store, deadline: float) -> bool:
    """``deliver_due()`` until the outbox is empty; False on timeout."""
    while True:
        await deliverer.deliver_due()
        if not await _left(store):
            return True
        if time.monotonic() > deadline:
            return False
        # Rows put back for later (a retry's backoff): come back for them.
        await asyncio.sleep(0.05)


async def drive_like_the_app(
    deliverer: Deliverer,
    *,
    tick_seconds: float,
    deadline: float = float("inf"),
    left: Callable[[], Awaitable[int]] | None = None,
) -> bool:
    """What ``bot.app`` does: ``tick()`` every DELIVERY_TICK_SECONDS, never overlapping
    itself (APScheduler with max_instances=1 and coalesce: runs due while a tick is still
    going collapse into the next one). Done when nothing runs and ``left()`` counts no row
    (without ``left``: when a tick starts nothing); False on timeout."""
    running: set[asyncio.Task[None]] = set()
    next_run = time.monotonic()
    while True:
        started = await deliverer.tick()
        running = {t for t in running if not t.done()} | set(started)
        if not running and (not started if left is None else not await left()):
            return True
        if time.monotonic() > deadline:
            return False
        now = time.monotonic()
        while next_run <= now:
            next_run += tick_seconds
        await asyncio.sleep(next_run - now)


def feedhook_pass(params: PassParams) -> PassResult:
    """Process entry point (spawned): queue the items, deliver them all, measure."""
    return asyncio.run(_feedhook_pass(params))


async def _feedhook_pass(p: PassParams) -> PassResult:
    setup_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="feedhook-bench-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await db.upgrade()
        store = Store(db)
        now = datetime.now(UTC)
        feeds = [
            ConfigFeed(
                f"https://news{n}.example.com/feed.xml",
                WebhookTarget(hook_id, token),
                options={"style": "embed", "batch": True},
            )
            for n, (hook_id, token, _channel) in enumerate(p.hooks)
        ]
        await store.sync_config_feeds(feeds, now=now)
        rng = random.Random(20261127)
        queued = 0
        for n, feed in enumerate(feeds):
            source_id = await store.add_source(feed.url, now=now)
            outcome = PollOutcome(
                source_id, now, now + timedelta(minutes=10), ok=True, keep_validators=False
            )
            meta = FeedMeta(
                title=f"{_words(rng, 24)} News",
                site_link=f"https://news{n}.example.com/",
                icon_url=f"https://news{n}.example.com/favicon.png",
                kind="rss",
            )
            await store.record_items(
                source_id, [], to_queue=set(), outcome=outcome, meta=meta, first_poll=True
            )
            count = p.items_per_webhook
            items = [make_item(rng, n, i, now - timedelta(minutes=count - i)) for i in range(count)]
            queued += await store.record_items(
                source_id,
                items,
                to_queue={i.key for i in items},
                outcome=outcome,
                meta=meta,
                first_poll=False,
            )
        setup_s = time.perf_counter() - setup_started

        settings = DeliverySettings(
            api_base=p.api_base,
            user_agent="feedhook-bench/0.1",
            global_rate=p.global_rate,
            concurrency=p.concurrency,
            rows_per_claim=p.rows_per_claim,
        )
        limiter = WatchedLimiter(
            global_rate=settings.global_rate, error_budget=settings.error_budget
        )
        deliverer = Deliverer(store, settings, limiter=limiter)
        store_time: dict[str, list[float]] = {}
        claims: list[tuple[str, float, float, int]] = []
        _time_calls(
            store,
            ("claim_deliveries", "extend_lease", "mark_sent", "learn_channel", "reschedule"),
            store_time,
            claims,
        )
        tick_seconds: float | None = None
        if p.driver == "app":
            # Imported before measuring: the real process has bot.app (and discord.py) loaded.
            from bot.app import DELIVERY_TICK_SECONDS

            tick_seconds = DELIVERY_TICK_SECONDS
        _time_renders(store_time)
        gc_like_the_app()
        rss_before = _rss_mb()
        if p.trace:
            tracemalloc.start()
        cpu_started = time.process_time()
        started = time.monotonic()
        deliverer.open()
        try:
            deadline = started + p.timeout
            if tick_seconds is None:
                done = await _drive_with_deliver_due(deliverer, store, deadline)
            else:
                done = await drive_like_the_app(
                    deliverer,
                    tick_seconds=tick_seconds,
                    deadline=deadline,
                    left=lambda: _left(store),
                )
            timed_out = not done
        finally:
            await deliverer.close()
        ended = time.monotonic()
        cpu_s = time.process_time() - cpu_started
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if p.trace else None
        if p.trace:
            tracemalloc.stop()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        counts = await store.counts()
        await db.dispose()
    return PassResult(
        queued=queued,
        setup_s=setup_s,
        started=started,
        ended=ended,
        cpu_s=cpu_s,
        rss_before_mb=rss_before,
        maxrss_mb=maxrss,
        traced_peak_mb=traced,
        counts=counts,
        stats=asdict(deliverer.stats),
        waits=limiter.waits,
        pace_wait=limiter.slept - sum(limiter.waits.values()),
        seen_429=limiter.seen_429,
        store_time=store_time,
        claims=claims,
        timed_out=timed_out,
        settings={
            "global_rate": settings.global_rate,
            "concurrency": settings.concurrency,
            "rows_per_claim": settings.rows_per_claim,
            "batch_threshold": settings.batch_threshold,
        },
    )


# ---------------------------------------------------------------------------- the ceiling


@dataclass
class _Window:
    ends: float = -math.inf
    count: int = 0

    def ready(self, rule: tuple[int, float], t: float) -> float:
        return t if t >= self.ends or self.count < rule[0] else self.ends

    def take(self, rule: tuple[int, float], t: float) -> None:
        if t >= self.ends:
            self.count, self.ends = 0, t + rule[1]
        self.count += 1


def ideal_schedule(
    per_hook: Mapping[int, int], channel_of: Mapping[int, int], pace: float
) -> list[float]:
    """Start times of ``per_hook[h]`` requests per webhook, each as early as the fake's fixed
    windows (same rules) and a process-wide pace of ``pace``/s allow; round-robin on ties."""
    hook_w = {h: _Window() for h in per_hook}
    chan_w = {c: _Window() for c in set(channel_of.values())}
    glob = _Window()
    left = {h: n for h, n in per_hook.items() if n > 0}
    order = list(left)
    times: list[float] = []
    slot = 0.0
    turn = 0
    while left:
        best_t, best_i = math.inf, -1
        for k in range(len(order)):
            i = (turn + k) % len(order)
            hook = order[i]
            if not left.get(hook):
                continue
            t = slot
            while True:
                later = max(
                    hook_w[hook].ready(LIMITS["webhook"], t),
                    chan_w[channel_of[hook]].ready(LIMITS["channel"], t),
                    glob.ready(LIMITS["global"], t),
                )
                if later <= t:
                    break
                t = later
            if t < best_t:
                best_t, best_i = t, i
            if t <= slot:
                break  # nothing can go earlier than the pace allows
        hook = order[best_i]
        hook_w[hook].take(LIMITS["webhook"], best_t)
        chan_w[channel_of[hook]].take(LIMITS["channel"], best_t)
        glob.take(LIMITS["global"], best_t)
        times.append(best_t)
        slot = best_t + 1.0 / pace
        left[hook] -= 1
        if not left[hook]:
            del left[hook]
        turn = best_i + 1
    return times


def steady_ceiling(shape: Shape, pace: float) -> tuple[float, str]:
    """The long-run requests/s the limits allow for this shape, and which limit binds."""

    def rate(rule: tuple[int, float]) -> float:
        return rule[0] / rule[1]

    options = [
        (rate(LIMITS["global"]), f"Discord's overall {LIMITS['global'][0]}/s"),
        (pace, f"feedhook's own delivery.global_rate {pace:g}/s"),
        (
            shape.webhooks * rate(LIMITS["webhook"]),
            f"per webhook: {shape.webhooks} x {LIMITS['webhook'][0]}/{LIMITS['webhook'][1]:g} s",
        ),
        (
            shape.channels * rate(LIMITS["channel"]),
            f"per channel: {shape.channels} x {LIMITS['channel'][0]}/{LIMITS['channel'][1]:g} s",
        ),
    ]
    return min(options)


# ---------------------------------------------------------------------------- one run


def run_isolated(fn: Callable[[PassParams], PassResult], params: PassParams) -> PassResult:
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, params).result()


def run_one(shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    fake = ctx.Process(
        target=serve, args=(child, shape.channel_ids(), LIMITS), name="fake-discord", daemon=True
    )
    fake.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("the fake Discord did not start within 60 s")
        hello = parent.recv()
        hooks = [(int(h), str(t), int(c)) for h, t, c in hello["webhooks"]]
        result = run_isolated(
            feedhook_pass,
            PassParams(
                api_base=hello["api_base"],
                hooks=hooks,
                items_per_webhook=shape.items_per_webhook,
                global_rate=args.global_rate,
                concurrency=args.concurrency,
                rows_per_claim=args.rows_per_claim,
                trace=args.tracemalloc,
                timeout=args.timeout,
                driver=args.driver,
            ),
        )
        parent.send("stats")
        seen = parent.recv()
        parent.send("stop")
    finally:
        fake.join(10)
        if fake.is_alive():
            fake.terminate()
            fake.join()
        parent.close()
    return analyse(shape, args, hooks, result, seen)


def _rate(n: int, span: float) -> float:
    if n <= 1:
        return float("nan")
    return (n - 1) / span if span > 0 else math.inf


def analyse(
    shape: Shape,
    args: argparse.Namespace,
    hooks: Sequence[tuple[int, str, int]],
    result: PassResult,
    seen: Mapping[str, Any],
) -> dict[str, Any]:
    requests = sorted(seen["requests"])
    statuses = Counter(status for _t, _m, status, _h in requests)
    accepted = sum(n for status, n in statuses.items() if 200 <= status < 300)
    limited = statuses.get(429, 0)
    times = [t for t, *_ in requests]
    span = times[-1] - times[0] if times else 0.0
    per_hook = {int(h): int(v[0]) for h, v in seen["messages"].items()}
    items_sent = sum(int(v[1]) for v in seen["messages"].values())
    channel_of = {h: c for h, _t, c in hooks}
    ideal = ideal_schedule(per_hook, channel_of, result.settings["global_rate"])
    ideal_span = ideal[-1] - ideal[0] if ideal else 0.0
    per_channel = Counter(channel_of[h] for h, n in per_hook.items() for _ in range(n))
    return {
        "shape": shape,
        "result": result,
        "seen": seen,
        "requests": requests,
        "total": len(requests),
        "statuses": dict(statuses),
        "accepted": accepted,
        "limited": limited,
        "span": span,
        "first": times[0] if times else result.started,
        "items": items_sent,
        "per_hook": per_hook,
        "per_channel": per_channel,
        "ideal_span": ideal_span,
        "rate": _rate(accepted, span),
        "rate_all": _rate(len(requests), span),
        "ceiling": _rate(len(ideal), ideal_span),
        "steady": steady_ceiling(shape, result.settings["global_rate"]),
    }


# ---------------------------------------------------------------------------- output


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(run: dict[str, Any], args: argparse.Namespace) -> list[bool]:
    shape: Shape = run["shape"]
    res: PassResult = run["result"]
    total, accepted, limited = run["total"], run["accepted"], run["limited"]
    per_request = run["items"] / accepted if accepted else 0.0
    items_rate = run["rate"] * per_request
    share = run["rate"] / run["ceiling"] if run["ceiling"] else float("nan")
    limited_share = limited / total if total else 0.0
    steady_rate, steady_why = run["steady"]
    other = {s: n for s, n in run["statuses"].items() if s != 429 and not 200 <= s < 300}

    print(f"\nrun {shape.key}: {shape.title} (meant to be bound by the {shape.meant_bound} limit)")
    print(
        f"  queued            {res.queued} outbox rows for {shape.webhooks} subscriptions"
        f" in {shape.channels} channels (setup {res.setup_s:.1f} s, not measured)"
    )
    print(
        f"  requests          {total}: {accepted} accepted, {limited} x 429"
        + (f", other {other}" if other else "")
    )
    print(
        f"  duration          {run['span']:.2f} s from first request to last"
        f" (feedhook wall {res.ended - res.started:.2f} s incl. claiming and the final writes)"
    )
    print(
        f"  requests/s        {run['rate']:.2f} accepted ({run['rate_all']:.2f} incl. 429s)"
        f"  vs ceiling {run['ceiling']:.2f} = {100 * share:.1f}%"
    )
    print(
        f"  ceiling           {run['ceiling']:.2f}/s: the ideal schedule of these {accepted}"
        f" requests takes {run['ideal_span']:.2f} s;"
        f" steady state {steady_rate:.2f}/s, bound by {steady_why}"
    )
    for line in _bound_notes(run):
        print(f"                    {line}")
    print(
        f"  items             {run['items']} delivered of {res.queued} queued,"
        f" {per_request:.2f} per request"
    )
    print(
        f"  items/s           {items_rate:.1f} = {items_rate / run['rate']:.2f}x requests/s"
        if accepted > 1
        else "  items/s           n/a"
    )
    print(f"  429s              {limited} = {100 * limited_share:.2f}% of requests")
    traced = (
        f"{res.traced_peak_mb:.1f} MB"
        if res.traced_peak_mb is not None
        else "not measured (--tracemalloc)"
    )
    print(
        f"  peak memory       {res.maxrss_mb:.1f} MB RSS (ru_maxrss of the feedhook process;"
        f" {res.rss_before_mb:.1f} MB before delivery); tracemalloc peak during delivery {traced}"
    )
    print(
        f"  feedhook CPU      {res.cpu_s:.2f} s during delivery"
        f" ({1000 * res.cpu_s / max(1, total):.2f} ms per request);"
        f" machine load average {os.getloadavg()[0]:.2f} after the run"
    )
    if res.timed_out:
        print(f"  TIMED OUT after {args.timeout:g} s with rows still queued: {res.counts}")
    if run["seen"]["internal_errors"]:
        print(f"  fake Discord internal errors: {run['seen']['internal_errors'][:3]}")

    checks: list[tuple[str, bool]] = [
        (
            f"requests/s >= {100 * REQUEST_TARGET:.0f}% of the ceiling ({100 * share:.1f}%)",
            share >= REQUEST_TARGET,
        ),
        (
            f"429s < {100 * LIMITED_TARGET:.1f}% of requests ({100 * limited_share:.2f}%)",
            limited_share < LIMITED_TARGET,
        ),
    ]
    if shape.meant_bound == "channel":
        ratio = items_rate / run["rate"] if accepted > 1 else 0.0
        checks.append(
            (f"items/s >= {BATCH_TARGET:g}x requests/s ({ratio:.2f}x)", ratio >= BATCH_TARGET)
        )
    checks.append((f"every queued item delivered ({run['items']}/{res.queued})", _all_sent(run)))
    for text, ok in checks:
        print(f"  {_verdict(ok)}  {text}")
    _diagnose(run, args)
    return [ok for _text, ok in checks]


def _all_sent(run: dict[str, Any]) -> bool:
    res: PassResult = run["result"]
    return run["items"] == res.queued and res.counts.get("outbox_sent", 0) == res.queued


def _bound_notes(run: dict[str, Any]) -> list[str]:
    """Say plainly which limits this run's requests could even reach."""
    shape: Shape = run["shape"]
    notes: list[str] = []
    climit, cper = LIMITS["channel"]
    wlimit, wper = LIMITS["webhook"]
    busiest = max(run["per_channel"].values(), default=0)
    windows = math.ceil(busiest / climit) if busiest else 0
    if windows <= 1:
        notes.append(
            f"the busiest channel needs {busiest} messages: all fit in its first"
            f" {climit}-per-{cper:g} s window, so the channel limit never binds here"
        )
    else:
        notes.append(
            f"the busiest channel needs {busiest} messages = {windows} windows of"
            f" {climit}/{cper:g} s: at least {(windows - 1) * cper:g} s however fast the rest is"
        )
    heaviest = max(run["per_hook"].values(), default=0)
    hook_windows = math.ceil(heaviest / wlimit) if heaviest else 0
    if hook_windows > 1:
        notes.append(
            f"the busiest webhook needs {heaviest} requests = {hook_windows} windows of"
            f" {wlimit}/{wper:g} s: at least {(hook_windows - 1) * wper:g} s"
        )
    if shape.meant_bound == "channel" and windows <= 1:
        notes.append(
            "=> NOT channel-bound: batching packs 10 items per message; try --run2-items 400"
            " for a run that spans several channel windows"
        )
    return notes


def _diagnose(run: dict[str, Any], args: argparse.Namespace) -> None:
    res: PassResult = run["result"]
    requests = run["requests"]
    first = run["first"]
    pace = 1.0 / res.settings["global_rate"]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(requests)]
    idle = [g for g in gaps if g > 3 * pace]
    print("  diagnosis")
    print(
        f"    start lag       first request {first - res.started:.3f} s after delivery began;"
        f" last answer to done {res.ended - requests[-1][0]:.3f} s"
        if requests
        else "    no requests"
    )
    print(
        f"    gaps            {len(idle)} gaps > {3 * pace * 1000:.0f} ms between request starts,"
        f" {sum(idle):.2f} s in all (largest {max(gaps, default=0):.2f} s);"
        f" median gap {sorted(gaps)[len(gaps) // 2] * 1000 if gaps else 0:.1f} ms"
    )
    big = sorted(
        ((b[0] - a[0], a[0], b[0]) for a, b in itertools.pairwise(requests)), reverse=True
    )[: min(len(idle), 6)]
    for gap, start, end in sorted(big, key=lambda g: g[1]):
        overlapping = [c for c in res.claims if c[2] > start and c[1] < end]
        inside = [
            f"claim {c_start - first:.3f}-{c_end - first:.3f} s ({c_jobs} jobs)"
            for _n, c_start, c_end, c_jobs in overlapping[:3]
        ]
        if len(overlapping) > 3:
            inside.append(
                f"{len(overlapping) - 3} more claims,"
                f" {sum(1 for c in overlapping[3:] if not c[3])} of them finding nothing due"
            )
        print(
            f"      gap {start - first:7.3f}-{end - first:7.3f} s ({gap * 1000:4.0f} ms):"
            f" {', '.join(inside) or 'no claim running'}"
        )
    waits = ", ".join(f"{k} {v:.1f}" for k, v in sorted(res.waits.items())) or "none"
    print(
        f"    limiter waits   pace {res.pace_wait:.1f}, {waits} (task-seconds;"
        f" pace = delivery.global_rate slots)"
    )
    store = ", ".join(
        f"{name} {int(calls)}x {secs:.2f} s" for name, (calls, secs) in res.store_time.items()
    )
    print(f"    timed calls     {store} (wall time, concurrent calls add up)")
    stats = ", ".join(f"{k}={v}" for k, v in res.stats.items() if v)
    print(f"    deliverer       {stats}")
    if run["seen"]["limited"]:
        scopes = Counter(scope for _t, scope, _r in run["seen"]["limited"])
        print(f"    429s by scope   {dict(scopes)} (fake's view)")
        for t, scope, retry in run["seen"]["limited"][:12]:
            print(f"      t={t - first:8.3f} s  scope={scope:<7} retry_after={retry:.3f} s")
    print(f"    per second      {_histogram(requests, first, run['span'])}")
    if args.timeline:
        print("    timeline (t from first request, status, webhook)")
        for t, method, status, hook in requests:
            print(f"      {t - first:9.3f}  {method} {status}  {hook}")


def _histogram(requests: Sequence[Sequence[Any]], first: float, span: float) -> str:
    """Accepted requests per second of the run ('+' marks a second with a 429)."""
    if not requests:
        return "-"
    seconds = int(span) + 1
    ok = [0] * seconds
    hit = [False] * seconds
    for t, _m, status, _h in requests:
        i = min(seconds - 1, int(t - first))
        if status == 429:
            hit[i] = True
        elif 200 <= status < 300:
            ok[i] += 1
    cells = [f"{n}{'+' if h else ''}" for n, h in zip(ok, hit, strict=True)]
    if len(cells) > 40:  # long runs: collapse runs of empty seconds
        out: list[str] = []
        empty = 0
        for cell in cells:
            if cell == "0":
                empty += 1
                continue
            if empty:
                out.append(f"(0 x{empty})" if empty > 1 else "0")
                empty = 0
            out.append(cell)
        if empty:
            out.append(f"(0 x{empty})")
        cells = out
    return " ".join(cells)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deliver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--run", choices=("1", "2", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="scaled-down shapes, a smoke test")
    parser.add_argument(
        "--run2-items",
        type=int,
        default=None,
        help="items per webhook in run 2 (default 100; 400 makes it span 3 channel windows)",
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULTS.concurrency)
    parser.add_argument("--rows-per-claim", type=int, default=DEFAULTS.rows_per_claim)
    parser.add_argument(
        "--global-rate",
        type=float,
        default=DEFAULTS.global_rate,
        help="feedhook's delivery.global_rate (default: feedhook's default)",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report the tracemalloc peak"
    )
    parser.add_argument(
        "--driver",
        choices=("due", "app"),
        default="due",
        help="due: deliver_due() in a loop (default); app: tick() every 0.5 s like bot.app",
    )
    parser.add_argument("--timeline", action="store_true", help="print every request")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a run after")
    args = parser.parse_args(argv)

    runs = shapes(args.quick, args.run2_items)
    chosen = list(runs) if args.run == "all" else [args.run]
    print(
        f"feedhook delivery benchmark{' (quick)' if args.quick else ''}:"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()},"
        f" load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        "fake Discord (own process): "
        + ", ".join(f"{k} {n}/{per:g} s" for k, (n, per) in LIMITS.items())
        + f"; feedhook: global_rate {args.global_rate:g}/s, concurrency {args.concurrency},"
        f" rows_per_claim {args.rows_per_claim}, batch_threshold {DEFAULTS.batch_threshold},"
        " SQLite; driven by "
        + ("deliver_due() in a loop" if args.driver == "due" else "tick() every 0.5 s (bot.app)")
    )
    if args.tracemalloc:
        print(
            "note: tracemalloc slows feedhook's CPU work several times over: its rates are"
            " not representative; run without --tracemalloc for throughput"
        )
    verdicts: list[bool] = []
    for key in chosen:
        verdicts += report(run_one(runs[key], args), args)
    print(f"\n{'all targets met' if all(verdicts) else 'some targets missed'}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
