"""The measured passes. Each runs in a fresh process of its own (see ``bench.poll``), so its
CPU time (``time.process_time``: all threads of that process, including feedhook's parser
thread and its database thread) and its peak RSS belong to that pass alone. The feed server
runs in yet another process and is never counted.

Every pass replays the server's cycles itself: ``POST /cycle/0`` then the warm-up (first
poll), then ``POST /cycle/k`` and one measured cycle for k = 1..N. Setting the cycle, counting
rows and ``gc.collect()`` happen outside the measured region.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import re
import resource
import sqlite3
import time
import tracemalloc
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bench.server import source_class, source_path


@dataclass
class CycleStats:
    label: str
    wall: float
    cpu: float
    n: int  # sources polled / GETs made / documents parsed
    statuses: dict[str, int] = field(default_factory=dict)
    new_items: int = 0
    queued: int = 0
    outbox_delta: int | None = None
    maxrss_mb: float = 0.0
    traced_peak_mb: float | None = None
    # With delivery: the poll alone (wall, CPU) and what was sent to the fake Discord.
    poll_wall: float | None = None
    poll_cpu: float | None = None
    sent_messages: int | None = None

    @property
    def cpu_per_source_ms(self) -> float:
        return 1000.0 * self.cpu / self.n if self.n else float("nan")


@dataclass
class PassResult:
    name: str
    setup_s: float = 0.0
    warmup: CycleStats | None = None
    cycles: list[CycleStats] = field(default_factory=list)
    extra: list[CycleStats] = field(default_factory=list)  # informational rows
    notes: list[str] = field(default_factory=list)


class Meter:
    """Wall time, process CPU and peak memory around one measured region."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        if trace:
            tracemalloc.start()
        self._wall = 0.0
        self._cpu = 0.0

    def start(self) -> None:
        gc.collect()
        if self.trace:
            tracemalloc.reset_peak()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        """Wall and CPU seconds since start(), without stopping."""
        return time.perf_counter() - self._wall, time.process_time() - self._cpu

    def stop(self, label: str, n: int, **kw: object) -> CycleStats:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if self.trace else None
        # ru_maxrss is in KiB on Linux: the process's high-water mark so far.
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return CycleStats(label, wall, cpu, n, maxrss_mb=maxrss, traced_peak_mb=traced, **kw)  # type: ignore[arg-type]


def gc_like_the_app() -> None:
    """Garbage collector settings of `feedhook run` (bot.app.settle_heap): frozen heap,
    young collections every 10 000 allocations. Every pass (feedhook's, the floors',
    reader's, bench.deliver's) calls it before its first cycle: like for like."""
    from bot.app import settle_heap

    settle_heap()


def urls_for(base_url: str, indexes: Sequence[int]) -> list[str]:
    return [base_url + source_path(i) for i in indexes]


async def set_cycle(session: aiohttp.ClientSession, base_url: str, cycle: int) -> None:
    async with session.post(f"{base_url}/cycle/{cycle}") as resp:
        resp.raise_for_status()


def set_cycle_sync(base_url: str, cycle: int) -> None:
    req = urllib.request.Request(f"{base_url}/cycle/{cycle}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


# ---------------------------------------------------------------------------- feedhook


@dataclass
class FeedhookParams:
    name: str
    base_url: str
    indexes: list[int]
    cycles: int
    concurrency: int
    interval: float
    workdir: str
    t0: datetime
    trace: bool = False
    # Start from this snapshot (taken after the first poll) instead of a fresh database.
    db_file: str | None = None
    # After the first poll, write one snapshot per class with only that class subscribed.
    snapshot_classes: bool = False
    # Also deliver every queued item to a fake Discord (its own process), inside the cycle.
    deliver: bool = False
    # The first N cycles are a warm-up (a new process remembers no entries: see
    # bot.sources.incremental), reported apart from the measured ones.
    warm_cycles: int = 0


class _LogTally(logging.Handler):
    """Counts feedhook's warnings instead of printing them; the pass reports a summary."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname} {record.name}"
        self.counts[key] += 1
        self.examples.setdefault(key, record.getMessage().splitlines()[0][:200])

    def notes(self) -> list[str]:
        return [
            f"{n} log records {key}, e.g. {self.examples[key]!r}"
            for key, n in self.counts.most_common()
        ]


def feedhook_pass(params: FeedhookParams) -> PassResult:
    tally = _LogTally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally])
    result = asyncio.run(_feedhook_pass(params))
    result.notes.extend(tally.notes())
    return result


async def _outbox_rows(store: object) -> int:
    counts = await store.counts()  # type: ignore[attr-defined]
    return sum(v for k, v in counts.items() if k.startswith("outbox_"))


async def _feedhook_pass(p: FeedhookParams) -> PassResult:
    from bot.models import WebhookTarget
    from bot.net import Fetcher, NetSettings
    from bot.poller import Poller, PollSettings
    from bot.storage.db import Database
    from bot.storage.store import ConfigFeed, Store

    result = PassResult(p.name)
    now = p.t0

    def clock() -> datetime:
        return now

    fresh = p.db_file is None
    db_path = p.db_file or os.path.join(p.workdir, f"{p.name}.db")
    urls = urls_for(p.base_url, p.indexes)
    meter = Meter(p.trace)

    started = time.perf_counter()
    db = Database(f"sqlite:///{db_path}")
    await db.upgrade()
    store = Store(db)
    discord = _FakeDiscordProcess(len(p.indexes)) if p.deliver else None
    if fresh:
        targets = (
            [WebhookTarget(webhook_id=hook_id, token=token) for hook_id, token in discord.hooks]
            if discord is not None
            else [WebhookTarget(webhook_id=10**9 + i, token=f"tok{i:06d}" * 8) for i in p.indexes]
        )
        feeds = [
            ConfigFeed(url=url, target=target) for url, target in zip(urls, targets, strict=True)
        ]
        await store.sync_config_feeds(feeds, now=now)
    result.setup_s = time.perf_counter() - started
    deliverer = None
    if discord is not None:
        # bot.app imported before measuring: the real process has it and discord.py loaded.
        from bench.deliver import drive_like_the_app
        from bot.app import DELIVERY_TICK_SECONDS
        from bot.delivery import Deliverer, DeliverySettings

        deliverer = Deliverer(
            store,
            DeliverySettings(api_base=discord.api_base, user_agent="feedhook-bench/0.1"),
            clock=clock,
        )
        deliverer.open()

    settings = PollSettings(interval=p.interval, jitter=0.0, concurrency=p.concurrency)
    net = NetSettings(
        user_agent="feedhook-bench/0.1",
        allowed_hosts=frozenset({"127.0.0.1"}),
        per_host_concurrency=p.concurrency,
        total_timeout=120.0,
    )
    async with aiohttp.ClientSession() as control, Fetcher(net) as fetcher:
        poller = Poller(store, fetcher, settings, clock=clock)
        gc_like_the_app()

        async def one_cycle(label: str, *, deliver: bool = True) -> CycleStats:
            before = await _outbox_rows(store)
            meter.start()
            results = await poller.poll_due()
            poll_wall, poll_cpu = meter.lap()
            sent_before = deliverer.stats.sent_messages if deliverer else 0
            if deliverer is not None and deliver:
                await drive_like_the_app(deliverer, tick_seconds=DELIVERY_TICK_SECONDS)
            stats = meter.stop(
                label,
                len(results),
                statuses=dict(Counter(r.status for r in results)),
                new_items=sum(r.new_items for r in results),
                queued=sum(r.queued for r in results),
            )
            if deliverer is not None and deliver:
                stats.poll_wall, stats.poll_cpu = poll_wall, poll_cpu
                stats.sent_messages = deliverer.stats.sent_messages - sent_before
            stats.outbox_delta = await _outbox_rows(store) - before
            failed = [r for r in results if r.status == "failed"]
            if failed:
                result.notes.append(f"{label}: {len(failed)} failed, e.g. {failed[0].error}")
            return stats

        if fresh:
            await set_cycle(control, p.base_url, 0)
            result.warmup = await one_cycle("first poll")
            if p.snapshot_classes:
                _write_class_snapshots(db_path, p.workdir, p.name)
        for k in range(1, p.cycles + 1):
            await set_cycle(control, p.base_url, k)
            now += timedelta(seconds=p.interval + 1)
            if k <= p.warm_cycles:
                result.warmup = await one_cycle(f"cycle {k} (new process: nothing remembered)")
            else:
                result.cycles.append(await one_cycle(f"cycle {k}"))
    if deliverer is not None:
        await deliverer.close()
        pending = await _outbox_pending(store)
        if pending:
            result.notes.append(f"{pending} outbox rows were left undelivered")
    if discord is not None:
        discord.stop()
    await db.dispose()
    return result


async def _outbox_pending(store: object) -> int:
    counts = await store.counts()  # type: ignore[attr-defined]
    return int(counts.get("outbox_pending", 0)) + int(counts.get("outbox_sending", 0))


class _FakeDiscordProcess:
    """The fake Discord of bench.deliver (Discord's real rate limits), in a process of its
    own so its CPU does not count: one webhook, in a channel of its own, per source."""

    def __init__(self, n: int) -> None:
        import multiprocessing as mp

        from bench.deliver import LIMITS
        from bench.deliver_fake import serve

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=serve, args=(child, [7_000_000 + i for i in range(n)], LIMITS), daemon=True
        )
        self._proc.start()
        hello = self._conn.recv()
        self.api_base: str = hello["api_base"]
        self.hooks: list[tuple[int, str]] = [(int(h), str(t)) for h, t, _ in hello["webhooks"]]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()


_INDEX = re.compile(r"/s/(\d+)\.xml$")


def snapshot_path(workdir: str, name: str, cls: str) -> str:
    return os.path.join(workdir, f"{name}-only-{cls}.db")


def _write_class_snapshots(db_path: str, workdir: str, name: str) -> None:
    """Copy the database as it is after the first poll, once per class, with the other
    classes' subscriptions disabled, so only that class's sources come due."""
    src = sqlite3.connect(db_path)
    try:
        ids = {
            cls: [
                sid
                for sid, url in src.execute("SELECT id, url FROM sources")
                if (m := _INDEX.search(url)) and source_class(int(m.group(1))) == cls
            ]
            for cls in ("A", "B", "C")
        }
        for cls in ("A", "B", "C"):
            dst = sqlite3.connect(snapshot_path(workdir, name, cls))
            try:
                src.backup(dst)
                others = [(sid,) for other, lst in ids.items() if other != cls for sid in lst]
                dst.executemany("UPDATE subscriptions SET enabled = 0 WHERE source_id = ?", others)
                dst.commit()
            finally:
                dst.close()
    finally:
        src.close()


# ---------------------------------------------------------------------------- fetch floor


@dataclass
class RawParams:
    base_url: str
    indexes: list[int]
    cycles: int
    concurrency: int
    trace: bool = False


async def conditional_get(
    session: aiohttp.ClientSession, url: str, validators: dict[str, dict[str, str]]
) -> int:
    """GET ``url`` with the validators of its previous 200 (kept in ``validators``); the body
    is read and dropped. The status."""
    async with session.get(url, headers=validators.get(url)) as resp:
        await resp.read()
        if resp.status == 200:
            sent: dict[str, str] = {}
            if etag := resp.headers.get("ETag"):
                sent["If-None-Match"] = etag
            if modified := resp.headers.get("Last-Modified"):
                sent["If-Modified-Since"] = modified
            validators[url] = sent
        return resp.status


def raw_fetch_pass(params: RawParams) -> PassResult:
    return asyncio.run(_raw_fetch_pass(params))


async def _raw_fetch_pass(p: RawParams) -> PassResult:
    """Plain aiohttp: one session, conditional GETs with the validators of the previous
    response, at the same concurrency; the body is read and dropped."""
    result = PassResult("aiohttp conditional GET (fetch floor)")
    urls = urls_for(p.base_url, p.indexes)
    validators: dict[str, dict[str, str]] = {}
    meter = Meter(p.trace)
    connector = aiohttp.TCPConnector(limit=p.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(p.concurrency)
        gc_like_the_app()

        async def get(url: str) -> int:
            async with sem:
                return await conditional_get(session, url, validators)

        async def one_cycle(label: str) -> CycleStats:
            meter.start()
            statuses = await asyncio.gather(*(get(url) for url in urls))
            return meter.stop(label, len(urls), statuses=dict(Counter(map(str, statuses))))

        await set_cycle(session, p.base_url, 0)
        result.warmup = await one_cycle("first GET")
        for k in range(1, p.cycles + 1):
            await set_cycle(session, p.base_url, k)
            result.cycles.append(await one_cycle(f"cycle {k}"))
    return result


# ---------------------------------------------------------------------------- parse floor


@dataclass
class ParseParams:
    base_url: str
    indexes: list[int]  # the changing (class C) sources
    cycles: int
    trace: bool = False


def parse_floor_pass(params: ParseParams) -> PassResult:
    return asyncio.run(_parse_floor_pass(params))


async def _fetch_all(
    session: aiohttp.ClientSession, urls: Sequence[str]
) -> list[tuple[str, bytes, dict[str, str]]]:
    sem = asyncio.Semaphore(32)

    async def get(url: str) -> tuple[str, bytes, dict[str, str]]:
        async with sem, session.get(url) as resp:
            return url, await resp.read(), dict(resp.headers)

    return list(await asyncio.gather(*(get(u) for u in urls)))


async def _parse_floor_pass(p: ParseParams) -> PassResult:
    """``feedparser.parse(body)`` (default options) of each cycle's changed bodies alone,
    one after another in this process. Fetching them is not measured."""
    import feedparser

    from bot.sources.feed import ParseError, parse_feed

    result = PassResult("feedparser.parse of the changed bodies (parse floor)")
    meter = Meter(p.trace)
    urls = urls_for(p.base_url, p.indexes)
    gc_like_the_app()
    async with aiohttp.ClientSession() as session:
        for k in range(1, p.cycles + 1):
            await set_cycle(session, p.base_url, k)
            docs = await _fetch_all(session, urls)
            meter.start()
            bozo = 0
            for _url, body, _headers in docs:
                bozo += bool(feedparser.parse(body).get("bozo"))
            stats = meter.stop(f"cycle {k}", len(docs))
            stats.statuses = {"bytes": sum(len(b) for _u, b, _h in docs), "bozo": bozo}
            result.cycles.append(stats)
            if k == 1:
                # Informational: the options feedhook uses, and feedhook's whole parse stage.
                meter.start()
                for _url, body, _headers in docs:
                    feedparser.parse(
                        io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False
                    )
                result.extra.append(
                    meter.stop("cycle 1: feedparser, sanitize/resolve off", len(docs))
                )
                failed = 0
                meter.start()
                for url, body, headers in docs:
                    try:
                        parse_feed(body, url=url, headers=headers)
                    except ParseError:
                        failed += 1
                stats = meter.stop("cycle 1: bot.sources.feed.parse_feed", len(docs))
                stats.statuses = {"ParseError": failed}
                result.extra.append(stats)
    return result


# ---------------------------------------------------------------------------- stack floor


@dataclass
class StackParams:
    base_url: str
    indexes: list[int]  # every source
    cycles: int
    concurrency: int
    trace: bool = False


# feedhook's own pace (DeliverySettings.global_rate): under Discord's 50/s.
STACK_POST_RATE = 45.0


def stack_floor_pass(params: StackParams) -> PassResult:
    return asyncio.run(_stack_floor_pass(params))


async def _new_entry_documents(
    session: aiohttp.ClientSession, base_url: str, urls: Sequence[str], cycle: int
) -> dict[str, tuple[bytes, str]]:
    """Per changed URL, its cycle-``cycle`` document holding only the entries that were not in
    its cycle ``cycle - 1`` document, and its Content-Type (prepared outside the measured
    region)."""
    from bot.sources.split import split_entries

    await set_cycle(session, base_url, cycle - 1)
    before = {url: body for url, body, _h in await _fetch_all(session, urls)}
    await set_cycle(session, base_url, cycle)
    out: dict[str, tuple[bytes, str]] = {}
    for url, body, headers in await _fetch_all(session, urls):
        old = split_entries(before[url])
        new = split_entries(body)
        if old is None or new is None:
            raise RuntimeError(f"{url}: the stack floor needs documents split_entries can split")
        seen = set(old.fingerprints())
        fresh = {i for i, fp in enumerate(new.fingerprints()) if fp not in seen}
        if fresh:
            out[url] = (new.keeping(fresh), headers.get("Content-Type", "application/xml"))
    return out


async def _stack_floor_pass(p: StackParams) -> PassResult:
    """What the chosen libraries alone cost for one cycle's work, with no feedhook code: the
    conditional GETs (aiohttp), ``feedparser.parse`` of each changed body reduced to its new
    entries (feedhook's options), markdownify of each new entry's HTML (one converter, reused),
    and one aiohttp POST per new entry to the fake Discord (an embed, ``?wait=true``, answer
    read), paced at 45/s like feedhook. No database, no rendering rules, no error handling:
    a floor no relay built on these libraries can go under."""
    import feedparser
    from markdownify import MarkdownConverter

    result = PassResult("the chosen libraries' own work (stack floor)")
    urls = urls_for(p.base_url, p.indexes)
    changed = urls_for(p.base_url, [i for i in p.indexes if source_class(i) == "C"])
    discord = _FakeDiscordProcess(len(changed))  # a webhook per changed source
    api_base = discord.api_base.rstrip("/")
    hooks = dict(zip(changed, discord.hooks, strict=True))
    validators: dict[str, dict[str, str]] = {}
    converter = MarkdownConverter()
    meter = Meter(p.trace)
    connector = aiohttp.TCPConnector(limit=p.concurrency)
    try:
        async with (
            aiohttp.ClientSession() as control,
            aiohttp.ClientSession(connector=connector) as session,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as discord_session,
        ):
            sem = asyncio.Semaphore(p.concurrency)
            gc_like_the_app()

            async def get(url: str) -> tuple[str, int]:
                async with sem:
                    return url, await conditional_get(session, url, validators)

            slot = 0.0

            async def post(url: str, embed: dict[str, Any]) -> int:
                nonlocal slot
                now = time.monotonic()
                slot = max(slot, now) + 1 / STACK_POST_RATE
                await asyncio.sleep(slot - now)
                hook_id, token = hooks[url]
                async with discord_session.post(
                    f"{api_base}/webhooks/{hook_id}/{token}?wait=true",
                    json={"embeds": [embed], "allowed_mentions": {"parse": []}},
                ) as resp:
                    await resp.json(content_type=None)
                    return resp.status

            await set_cycle(control, p.base_url, 0)
            await asyncio.gather(*(get(url) for url in urls))  # validators, not measured
            for k in range(1, p.cycles + 1):
                reduced = await _new_entry_documents(control, p.base_url, changed, k)
                # A webhook gets at most 3 posts a cycle: with its 5-per-2-s window clear
                # at the start of each cycle, the floor never runs into Discord's 429s.
                await asyncio.sleep(2.1)
                meter.start()
                statuses = Counter(status for _u, status in await asyncio.gather(*map(get, urls)))
                posts = []
                for url, (doc, content_type) in reduced.items():
                    parsed = feedparser.parse(
                        io.BytesIO(doc),
                        response_headers={"content-type": content_type},
                        sanitize_html=False,
                        resolve_relative_uris=False,
                    )
                    for entry in parsed.entries:
                        text = converter.convert(entry.get("summary", ""))
                        embed = {"title": entry.get("title", ""), "url": entry.get("link")}
                        posts.append(post(url, embed | {"description": text[:4096]}))
                sent = Counter(map(str, await asyncio.gather(*posts)))
                stats = meter.stop(f"cycle {k}", len(urls))
                stats.new_items = len(posts)
                stats.statuses = {f"GET {s}": n for s, n in statuses.items()} | {
                    f"POST {s}": n for s, n in sent.items()
                }
                result.cycles.append(stats)
    finally:
        discord.stop()
    return result


# ---------------------------------------------------------------------------- reader (peer)


@dataclass
class ReaderParams:
    base_url: str
    indexes: list[int]
    cycles: int
    concurrency: int
    workdir: str
    trace: bool = False


def _sgmllib_shim() -> str | None:
    """reader vendors a feedparser that does ``import sgmllib`` (the sgmllib3k package), but
    depends on a feedparser (6.0.12+) that ships the same module as ``feedparser_sgmllib``,
    so a fresh ``pip install reader`` cannot import its parser. Alias it in this process only
    (the reader pass runs in a process of its own)."""
    import importlib
    import sys

    try:
        importlib.import_module("sgmllib")
    except ImportError:
        sys.modules["sgmllib"] = importlib.import_module("feedparser_sgmllib")
        return (
            "sgmllib is not installed; aliased feedparser_sgmllib as sgmllib for reader's "
            "vendored feedparser (installing sgmllib3k would do the same)"
        )
    return None


def reader_pass(p: ReaderParams) -> PassResult:
    """lemon24/reader updating the same feeds: ``update_feeds_iter(scheduled=False,
    workers=concurrency)`` (``update_feeds`` is a loop over it; iterating lets us count)."""
    tally = _LogTally()
    logging.basicConfig(level=logging.WARNING, handlers=[tally])
    logging.captureWarnings(True)  # reader warns (warnings.warn) about entries it skips
    shim = _sgmllib_shim()
    import reader as reader_lib
    from reader import UpdatedFeed, make_reader

    result = PassResult(f"reader {reader_lib.__version__} (peer)")
    if shim:
        result.notes.append(shim)
    meter = Meter(p.trace)
    urls = urls_for(p.base_url, p.indexes)
    started = time.perf_counter()
    rdr = make_reader(os.path.join(p.workdir, "reader.sqlite"))
    try:
        # reader's requests session keeps 10 connections per host by default; with one host
        # and `concurrency` worker threads that would churn connections, so give it as many
        # as there are workers (private API: reader._parser, best effort).
        from reader._parser.http import TimeoutHTTPAdapter

        retriever: Any = rdr._parser.get_retriever(urls[0])
        adapter = TimeoutHTTPAdapter(
            retriever.timeout, pool_connections=4, pool_maxsize=p.concurrency
        )
        retriever.session.mount("http://", adapter)
        result.notes.append(f"requests pool_maxsize set to {p.concurrency} (default 10)")
    except Exception as exc:
        result.notes.append(f"could not resize reader's connection pool: {exc!r}")
    for url in urls:
        rdr.add_feed(url)
    result.setup_s = time.perf_counter() - started
    gc_like_the_app()

    def one_cycle(label: str) -> CycleStats:
        statuses: Counter[str] = Counter()
        new = 0
        meter.start()
        for res in rdr.update_feeds_iter(scheduled=False, workers=p.concurrency):
            value = res.value
            if isinstance(value, UpdatedFeed):
                new += value.new
                statuses["new" if value.new else "modified" if value.modified else "unchanged"] += 1
            elif value is None:
                statuses["not_modified"] += 1
            else:
                statuses["error"] += 1
        return meter.stop(label, len(urls), statuses=dict(statuses), new_items=new)

    set_cycle_sync(p.base_url, 0)
    result.warmup = one_cycle("first update")
    for k in range(1, p.cycles + 1):
        set_cycle_sync(p.base_url, k)
        result.cycles.append(one_cycle(f"cycle {k}"))
    rdr.close()
    result.notes.extend(tally.notes())
    return result
