"""Latency benchmark: from an item's publication to the fake Discord accepting its message.

    python -m bench.latency [--quick] [--seed N] [--verbose]      (or: make bench-latency)

One asyncio process on 127.0.0.1 runs a feed server (Atom documents the bench changes), the
local WebSub hub of the tests (``tests/fakes/fake_hub.py``), the fake Discord
(``tests/fakes/fake_discord.py``, one webhook in a channel of its own per feed and per hook,
no per-webhook limit) and the real ``bot.app.App`` started from a config file in a temporary
directory (SQLite), its scheduler running in real time: the poll tick, the delivery tick and
the WebSub subscriber tick of ``feedhook run``. A sample's latency runs from its publication
(wall clock) to the ``created_at`` the fake gives the message carrying its marker.

Scenarios (they run side by side, as in a relay that has all three; push and hooks one after
the other, inside the polling window):

* polling: 400 feeds (40 with ``--quick``) without a hub, ``[polling] interval = 60`` and
  the default jitter. A feed's polls are what decides the wait, so samples are drawn
  against them, with no knowledge of the schedule: at each of a feed's first two polls (one
  with ``--quick``) the bench draws a publication time up to B seconds later (B bounds a
  poll gap: interval x (1 + jitter) + the poll tick + 10 s). If the feed is polled again
  before that time, the draw is dropped; else a new entry appears in the document at that
  time. What is kept is a publication time uniform over the whole timeline of the feed's
  polls, as for an item published at a random moment (all feeds' first polls happen
  together at start, so plain random times in a short window would be skewed by that one
  cohort). The draw offsets follow a shifted golden-ratio sequence (stratified) to cut the
  sampling noise of p50. About 620 samples (30 with ``--quick``); the first poll only
  records what exists. Even so, the p50 of a run is itself spread by about +-0.5 s (a
  simulation of the draws with the same gaps), so a p50 within a second of its goal can
  land on either side of it.
* WebSub push: 10 feeds announcing the hub (``Link: <hub>; rel="hub", <topic>;
  rel="self"``). After their first polls the bench runs the subscriber's tick once (rather
  than waiting up to 30 s for the scheduled one) and waits for the hub's verified
  subscriptions; then 50 samples 0.2-0.5 s apart, round-robin over the feeds:
  ``hub.publish(topic, <an Atom document with only the new entry>)``, then the entry is
  added to the feed's document too (after the push is recorded: a poll that found it
  first would count as a missed push).
* inbound webhook: 5 ``[[hooks]]`` (template ``{body.text}``, ``http.hook_rate_per_minute``
  raised), 50 POSTs of ``{"text": <marker>}`` 0.2 s apart, round-robin; latency from the
  start of the POST.

Per-channel budgets (30 messages a minute in feedhook and in the fake) never bind: no channel
gets more than 10 samples. Goals (from the issue): polling p50 <= interval/2 + 2 s, push p95
<= 2 s, inbound p95 <= 1 s. The table gives each p50 and p95 also as a ratio of its
scenario's goal; the lines under it split the latencies (publish -> fetch or record, then ->
accepted) and, for polling, what the observed poll gaps alone imply. Exit status 1 when a
goal is missed. Takes about 2.5 minutes (about 80 s with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.app import DELIVERY_TICK_SECONDS, MAX_TICK_SECONDS, App
from bot.config import Config, load_config
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_hub import FakeHub
from tests.fakes.loopback import start_app

GUILD = 4242
INTERVAL = 60.0
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
PUSH_GOAL = 2.0  # p95, seconds
HOOK_GOAL = 1.0  # p95, seconds
POLL_SLACK = 2.0  # polling p50 <= interval / 2 + this
KEEP_ENTRIES = 20
MARKER = re.compile(r"m[PWH]\d{4}x[0-9a-f]{6}")
# After the last sample of a scenario, how long a message may take before it counts as lost.
PUSH_HOOK_WAIT = 30.0


@dataclass(frozen=True)
class Plan:
    poll_feeds: int
    poll_draws: int  # draws per polling feed: at its first N polls
    push_feeds: int
    push_samples: int
    hooks: int
    hook_samples: int


# 400 polling feeds: the p50 of ~600 waits spread over a minute is known to about +-0.5 s
# (with 100 feeds, +-1.5 s: as wide as the goal's margin).
FULL = Plan(poll_feeds=400, poll_draws=2, push_feeds=10, push_samples=50, hooks=5, hook_samples=50)
QUICK = Plan(poll_feeds=40, poll_draws=1, push_feeds=10, push_samples=20, hooks=5, hook_samples=20)


@dataclass
class Sample:
    marker: str
    published: float  # time.time()
    # polling: the feed's next fetch; push: hub.publish returned (the callback answered
    # 202); hook: the POST's 202 read back
    middle: float | None = None
    accepted: float | None = None  # the fake's StoredMessage.created_at (time.time())

    @property
    def latency(self) -> float:
        return math.inf if self.accepted is None else self.accepted - self.published


# ---------------------------------------------------------------------------- feeds


@dataclass
class Entry:
    marker: str
    title: str
    link: str
    updated: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def atom(title: str, self_url: str, site: str, entries: Iterable[Entry]) -> bytes:
    parts = "".join(
        f"<entry><id>urn:feedhook-bench:{e.marker}</id><title>{escape(e.title)}</title>"
        f'<link href="{e.link}"/><updated>{e.updated}</updated>'
        f"<author><name>Bench Desk</name></author>"
        f"<summary>{escape(e.title)}: what changed, in two sentences. See the post.</summary>"
        "</entry>"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>{site}</id>"
        f'<link rel="self" href="{self_url}"/><link href="{site}"/>'
        f"<updated>{_iso(time.time())}</updated>{parts}</feed>"
    ).encode()


@dataclass
class Feed:
    number: int
    path: str
    url: str = ""
    hub: str | None = None
    entries: list[Entry] = field(default_factory=list)  # newest first
    version: int = 0
    gets: list[float] = field(default_factory=list)  # time.time() of each GET
    _body: bytes | None = None

    @property
    def title(self) -> str:
        return f"Bench feed {self.number}"

    @property
    def site(self) -> str:
        return f"https://feed{self.number}.example.com/"

    def new_entry(self, marker: str, now: float) -> Entry:
        return Entry(marker, f"Release notes {marker}", f"{self.site}posts/{marker}", _iso(now))

    def add(self, entry: Entry) -> None:
        self.entries = [entry, *self.entries][:KEEP_ENTRIES]
        self.version += 1
        self._body = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = atom(self.title, self.url, self.site, self.entries)
        return self._body


class FeedServer:
    """The feeds on loopback: ETag per document version (304 when it matches)."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self.on_get: Callable[[Feed, float], None] = lambda _feed, _now: None
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}.xml", self._get)
        self._runner, self.base = await start_app(app)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def add(self, number: int, *, hub: str | None = None) -> Feed:
        path = f"/{'push' if hub else 'poll'}{number}.xml"
        feed = Feed(number, path, f"{self.base}{path}", hub)
        start = time.time() - 86400
        for n in range(3):  # what the first poll finds (and only records)
            feed.add(feed.new_entry(f"old{number}-{n}", start + 3600 * n))
        self.feeds[path] = feed
        return feed

    async def _get(self, request: web.Request) -> web.Response:
        feed = self.feeds.get(request.path)
        if feed is None:
            raise web.HTTPNotFound()
        now = time.time()
        feed.gets.append(now)
        self.on_get(feed, now)  # may publish nothing, but sees the fetch first
        headers = {"ETag": f'"v{feed.version}"', "Cache-Control": "no-cache"}
        if feed.hub is not None:
            headers["Link"] = f'<{feed.hub}>; rel="hub", <{feed.url}>; rel="self"'
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=feed.body(), headers=headers, content_type="application/atom+xml")


# ---------------------------------------------------------------------------- markers


class Markers:
    """Unique markers, and when the fake Discord accepted the message carrying each."""

    def __init__(self, fake: FakeDiscord, rng: random.Random) -> None:
        self.fake = fake
        self.rng = rng
        self.count = 0
        self.accepted: dict[str, float] = {}
        self._scanned = 0

    def new(self, kind: str) -> str:
        self.count += 1
        return f"m{kind}{self.count:04d}x{self.rng.randrange(16**6):06x}"

    def scan(self) -> None:
        messages = self.fake.messages()
        for message in messages[self._scanned :]:
            for marker in MARKER.findall(json.dumps(message.body)):
                self.accepted.setdefault(marker, message.created_at)
        self._scanned = len(messages)

    async def settle(self, samples: Sequence[Sample], deadline: float) -> None:
        """Until every sample's message is accepted or ``deadline`` (time.monotonic())."""
        while True:
            self.scan()
            for sample in samples:
                if sample.accepted is None and sample.marker in self.accepted:
                    sample.accepted = self.accepted[sample.marker]
            if all(s.accepted is not None for s in samples) or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------- polling


@dataclass
class _PollState:
    draws: int = 0
    pending: asyncio.Task[None] | None = None
    unfetched: list[Sample] = field(default_factory=list)


class PollingScenario:
    """Draws made at a feed's polls (see the module docstring); armed before the App starts."""

    def __init__(self, feeds: Sequence[Feed], draws: int, bound: float, markers: Markers) -> None:
        self.feeds = list(feeds)
        self.draws = draws
        self.bound = bound
        self.markers = markers
        self.samples: list[Sample] = []
        self.dropped = 0
        self._offset = markers.rng.random()
        self._k = 0
        self._state = {feed.path: _PollState() for feed in feeds}

    def on_get(self, feed: Feed, now: float) -> None:
        state = self._state.get(feed.path)
        if state is None:
            return
        for sample in state.unfetched:
            sample.middle = now
        state.unfetched.clear()
        if state.pending is not None and not state.pending.done():
            # polled again before the drawn time: the draw fell past this gap
            state.pending.cancel()
            self.dropped += 1
        state.pending = None
        if state.draws < self.draws:
            state.draws += 1
            u = (self._offset + self._k * GOLDEN) % 1.0
            self._k += 1
            state.pending = asyncio.create_task(self._publish_after(feed, state, u * self.bound))

    async def _publish_after(self, feed: Feed, state: _PollState, delay: float) -> None:
        await asyncio.sleep(delay)
        now = time.time()
        marker = self.markers.new("P")
        feed.add(feed.new_entry(marker, now))
        sample = Sample(marker, now)
        self.samples.append(sample)
        state.unfetched.append(sample)

    def drawing_done(self) -> bool:
        return all(
            s.draws >= self.draws and (s.pending is None or s.pending.done())
            for s in self._state.values()
        )

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.drawing_done():
                break
            await asyncio.sleep(0.5)
        for state in self._state.values():
            if state.pending is not None and not state.pending.done():
                state.pending.cancel()
        # a sample published just before its feed's next poll: fetched, then delivered
        await self.markers.settle(self.samples, min(deadline, time.monotonic() + 60.0))

    def gaps(self) -> list[float]:
        return [b - a for feed in self.feeds for a, b in itertools.pairwise(feed.gets)]


# ---------------------------------------------------------------------------- push, hooks


async def _pace(started: float, spacing: float) -> None:
    await asyncio.sleep(max(0.0, started + spacing - time.monotonic()))


async def run_push(
    hub: FakeHub, feeds: Sequence[Feed], count: int, markers: Markers
) -> list[Sample]:
    samples: list[Sample] = []
    for i in range(count):
        started = time.monotonic()
        feed = feeds[i % len(feeds)]
        now = time.time()
        marker = markers.new("W")
        entry = feed.new_entry(marker, now)
        sample = Sample(marker, now)
        statuses = await hub.publish(feed.url, atom(feed.title, feed.url, feed.site, [entry]))
        sample.middle = time.time()
        if statuses != [202]:
            print(f"  push {marker}: the callback answered {statuses}", file=sys.stderr)
        feed.add(entry)  # the feed shows it too (after the push was recorded)
        samples.append(sample)
        await _pace(started, markers.rng.uniform(0.2, 0.5))
    await markers.settle(samples, time.monotonic() + PUSH_HOOK_WAIT)
    return samples


async def run_hooks(base: str, tokens: Sequence[str], count: int, markers: Markers) -> list[Sample]:
    samples: list[Sample] = []
    failures: list[str] = []

    async def post(session: aiohttp.ClientSession, token: str, sample: Sample) -> None:
        async with session.post(f"{base}/hooks/{token}", json={"text": sample.marker}) as resp:
            await resp.read()
            sample.middle = time.time()
            if resp.status != 202:
                failures.append(f"{sample.marker}: HTTP {resp.status}")

    async with aiohttp.ClientSession() as session:
        posts = []
        for i in range(count):
            started = time.monotonic()
            sample = Sample(markers.new("H"), time.time())
            samples.append(sample)
            posts.append(asyncio.create_task(post(session, tokens[i % len(tokens)], sample)))
            await _pace(started, 0.2)
        await asyncio.gather(*posts)
    for failure in failures:
        print(f"  hook {failure}", file=sys.stderr)
    await markers.settle(samples, time.monotonic() + PUSH_HOOK_WAIT)
    return samples


# ---------------------------------------------------------------------------- set-up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    path: Path,
    *,
    fake: FakeDiscord,
    database: Path,
    port: int,
    feeds: Sequence[Feed],
    hook_tokens: Sequence[str],
    channel: Iterable[int],
) -> Config:
    channels = iter(channel)
    tables = []
    for feed in feeds:
        hook_id, token = fake.add_webhook(next(channels), guild_id=GUILD)
        tables.append(
            f'[[feeds]]\nurl = "{feed.url}"\n'
            f'webhook = "https://discord.com/api/webhooks/{hook_id}/{token}"\n'
        )
    for token in hook_tokens:
        hook_id, hook_token = fake.add_webhook(next(channels), guild_id=GUILD)
        tables.append(
            f'[[hooks]]\nwebhook = "https://discord.com/api/webhooks/{hook_id}/{hook_token}"\n'
            f'token = "{token}"\ntemplate = "{{body.text}}"\n'
        )
    path.write_text(
        f'[discord]\napi_base = "{fake.api_base}"\n\n'
        f'[database]\nurl = "sqlite:///{database}"\n\n'
        f"[polling]\ninterval = {INTERVAL:g}\nallow_private_addresses = true\n\n"
        f'[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        "hook_rate_per_minute = 6000\n\n" + "\n".join(tables),
        encoding="utf-8",
    )
    return load_config(path, environ={})


async def wait_first_polls(app: App, urls: set[str], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        polled = {h.url for h in await app.store.source_health() if h.last_polled_at}
        if urls <= polled:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"the first polls did not all happen within {within:g} s")


@dataclass
class Outcome:
    polling: PollingScenario
    push: list[Sample]
    hooks: list[Sample]
    bound: float
    jitter: float
    subscribe_note: str
    wall_s: float
    errors: list[str]


async def run(plan: Plan, seed: int) -> Outcome:
    wall_started = time.monotonic()
    rng = random.Random(seed)
    fake = FakeDiscord(webhook_limit=None)
    await fake.start()
    fake.add_guild(GUILD)
    hub = FakeHub()
    await hub.start()
    server = FeedServer()
    await server.start()
    markers = Markers(fake, rng)
    poll_feeds = [server.add(n) for n in range(plan.poll_feeds)]
    push_feeds = [server.add(100_000 + n, hub=hub.url) for n in range(plan.push_feeds)]
    tokens = [secrets.token_urlsafe(32) for _ in range(plan.hooks)]
    port = free_port()
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="feedhook-latency-") as tmp:
        config = write_config(
            Path(tmp) / "config.toml",
            fake=fake,
            database=Path(tmp) / "latency.db",
            port=port,
            feeds=[*poll_feeds, *push_feeds],
            hook_tokens=tokens,
            channel=range(5000, 6000),
        )
        jitter = config.polling.jitter
        bound = INTERVAL * (1 + jitter) + MAX_TICK_SECONDS + 10.0
        polling = PollingScenario(poll_feeds, plan.poll_draws, bound, markers)
        server.on_get = polling.on_get
        app = App(config)
        try:
            await app.start(settle=True)
            await wait_first_polls(app, {f.url for f in [*poll_feeds, *push_feeds]}, 60.0)
            poll_deadline = time.monotonic() + plan.poll_draws * (bound + 10.0) + 30.0
            poll_task = asyncio.create_task(polling.run(poll_deadline))
            subscribing = time.monotonic()
            scheduled_requests = len(hub.requests)
            assert app.websub is not None
            await app.websub.tick()
            for feed in push_feeds:
                await hub.wait_for_subscription(feed.url, timeout=30.0)
            subscribe_s = time.monotonic() - subscribing
            subscribe_note = (
                f"{len(hub.requests)} subscribe requests, {scheduled_requests} of them by the "
                f"scheduled tick; verified {subscribe_s:.2f} s after the first polls"
            )
            push = await run_push(hub, push_feeds, plan.push_samples, markers)
            hooks = await run_hooks(f"http://127.0.0.1:{port}", tokens, plan.hook_samples, markers)
            await poll_task
        finally:
            await app.stop()
            await server.close()
            try:
                await hub.close()
            except Exception as exc:
                errors.append(f"fake hub: {exc!r}")
            await fake.close()
    errors += [f"fake Discord: {e!r}" for e in fake.internal_errors]
    return Outcome(
        polling,
        push,
        hooks,
        bound,
        jitter,
        subscribe_note,
        time.monotonic() - wall_started,
        errors,
    )


# ---------------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def residual_quantile(gaps: Sequence[float], q: float) -> float:
    """The ``q`` quantile of the wait until the next poll for an item published at a random
    moment, when polls are ``gaps`` apart: P(wait > w) = sum((g - w)+) / sum(g)."""
    if not gaps:
        return math.nan
    total = sum(gaps)
    low, high = 0.0, max(gaps)
    for _ in range(60):
        mid = (low + high) / 2
        if sum(max(0.0, g - mid) for g in gaps) / total > 1 - q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _s(value: float) -> str:
    if math.isinf(value):
        return "lost"
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def _cell(value: float, goal: float) -> str:
    if not math.isfinite(value):
        return _s(value)
    return f"{_s(value)} ({value / goal:.2f}x goal)"


def _split(samples: Sequence[Sample]) -> tuple[list[float], list[float]]:
    first = [s.middle - s.published for s in samples if s.middle is not None]
    second = [
        s.accepted - s.middle for s in samples if s.middle is not None and s.accepted is not None
    ]
    return first, second


def _p(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {_s(percentile(values, 0.5))} p95 {_s(percentile(values, 0.95))}"


def report(outcome: Outcome) -> bool:
    poll_goal = INTERVAL / 2 + POLL_SLACK
    rows = [
        ("polling (60 s interval)", outcome.polling.samples, 0.5, poll_goal),
        ("WebSub push (local hub)", outcome.push, 0.95, PUSH_GOAL),
        ("inbound webhook", outcome.hooks, 0.95, HOOK_GOAL),
    ]
    header = f"{'scenario':<25} {'samples':>12}  {'p50':<22} {'p95':<22} {'goal':<14} result"
    print()
    print(header)
    print("-" * len(header))
    verdicts = []
    for name, samples, q, goal in rows:
        latencies = [s.latency for s in samples]
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        measured = p50 if q == 0.5 else p95
        ok = bool(samples) and measured <= goal
        verdicts.append(ok)
        lost = sum(1 for v in latencies if math.isinf(v))
        count = f"{len(samples)}" + (f" ({lost} lost)" if lost else "")
        label = f"p{round(q * 100)} <= {goal:g} s"
        print(
            f"{name:<25} {count:>12}  {_cell(p50, goal):<22} {_cell(p95, goal):<22} "
            f"{label:<14} {'met' if ok else 'MISSED'}"
        )
    print()
    polling = outcome.polling
    gaps = polling.gaps()
    fetch, after_fetch = _split(polling.samples)
    print("where the time goes")
    if gaps:
        print(
            f"  polling: {len(gaps)} poll gaps observed: mean {sum(gaps) / len(gaps):.1f} s, "
            f"min {min(gaps):.1f} s, max {max(gaps):.1f} s (interval {INTERVAL:g} s, jitter "
            f"{outcome.jitter:g}; the poll tick runs every "
            f"{min(MAX_TICK_SECONDS, max(0.2, INTERVAL / 4)):g} s)"
        )
        print(
            f"           those gaps alone put the wait for the next poll at p50 "
            f"{_s(residual_quantile(gaps, 0.5))} p95 {_s(residual_quantile(gaps, 0.95))} "
            f"(an item published at a random moment)"
        )
    print(f"           publish -> fetch {_p(fetch)}; fetch -> accepted {_p(after_fetch)}")
    print(
        f"           {len(polling.samples)} published, {polling.dropped} draws dropped "
        f"(the feed was polled again first; draws up to {outcome.bound:g} s after a poll)"
    )
    recorded, after = _split(outcome.push)
    print(
        f"  push:    hub.publish -> callback answered {_p(recorded)}; -> accepted {_p(after)}"
        f"\n           ({outcome.subscribe_note})"
    )
    answered, after = _split(outcome.hooks)
    print(f"  hooks:   POST -> 202 {_p(answered)}; -> accepted {_p(after)}")
    print(
        f"  the delivery tick runs every {DELIVERY_TICK_SECONDS:g} s; wall time "
        f"{outcome.wall_s:.0f} s"
    )
    for error in outcome.errors:
        print(f"  ERROR {error}")
    ok = all(verdicts) and not outcome.errors
    print(f"\n{'all goals met' if ok else 'some goals missed'}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, about 80 s")
    parser.add_argument("--seed", type=int, default=None, help="seed of the draws and markers")
    parser.add_argument("--verbose", action="store_true", help="feedhook's INFO log lines too")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    plan = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(
        f"feedhook latency benchmark{' (quick)' if args.quick else ''}:"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()},"
        f" load average {os.getloadavg()[0]:.2f} at start, seed {seed}"
    )
    print(
        f"polling: {plan.poll_feeds} feeds, {plan.poll_draws} draw(s) each; push: "
        f"{plan.push_samples} samples over {plan.push_feeds} feeds; hooks: "
        f"{plan.hook_samples} samples over {plan.hooks} hooks"
    )
    outcome = asyncio.run(run(plan, seed))
    return 0 if report(outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
