"""Scale benchmark: several ``feedhook run`` processes sharing one PostgreSQL database.

    python -m bench.scale [--sources N] [--seconds S] [--warmup S] [--workers 1,2]
                          [--postgres-url URL] [--batch-threshold N] [--concurrency N]
                          [--role ROLES] [--drain-timeout S] [--passes a,b] [--keep]

Set-up (not measured):

* the feed server of ``make bench`` (``bench/server.py``, its own process): ``--sources``
  feeds, 60% answering 304 to their validators (class A), 20% the same body without
  validators (B), 20% gaining 1-3 items per cycle (C);
* a fake Discord (``tests/fakes/fake_discord.py`` with the 429 log of
  ``bench/deliver_fake.py``, its own process) with two webhooks per source, each in a channel
  of its own, and its rate limits raised far above what feedhook sends, so it never 429s;
* a fresh database ``feedhook_bench_<random>`` on the local PostgreSQL (``--postgres-url``
  is the admin connection that creates and drops it), brought to the newest schema by
  ``feedhook db upgrade``, then filled with COPY: the sources with what a previous poll
  stored (the validators and body hash the feed server sends, read with one GET per source;
  ``initialized``), two subscriptions per source (as made from Discord, guild and channel
  known), and for class C the items of the current cycle, read with feedhook's own
  ``parse_feed``, so no poll here is a first poll and only new entries are new.

Then, for each worker count, real ``feedhook run --config ... --role poller,delivery``
processes (the installed console script; a ``sitecustomize`` on their ``PYTHONPATH`` times
their claims, see ``bench/scale_hook.py``) pointed at the feed server
(``polling.allowed_hosts = ["127.0.0.1"]``, jitter 0, ``polling.concurrency`` and
``per_host_concurrency`` ``--concurrency``: every feed is on one host here) and the fake
(``discord.api_base``; ``delivery.global_rate`` 50, its maximum), in two passes:

(a) saturation: ``polling.interval = "1s"`` (a source is due again a second after its poll,
    while a round over all sources takes far longer), so every source is always due. After
    ``--warmup`` seconds, ``--seconds`` are measured. No source changes (the server stays at
    its cycle), so polls are 304s (A, C) and unchanged bodies (B).
(b) one steady cycle: ``polling.interval = "60s"``; the feed server moves to the next cycle
    (class C gains 1-3 items), every source is made due, the workers start, and the pass
    lasts until every source was polled and the outbox has no pending or sending row.

How each number is measured:

* polls/s: (a) responses the feed server sent in the window (``GET /stats``) / window;
  (b) sources / (the moment every source's ``last_polled_at`` is past the launch - the
  workers' first claim).
* CPU ms/poll/worker: ``utime + stime`` of the worker process (``/proc/PID/stat``, all its
  threads) over the window / the polls that worker started in it (the rows its
  ``claim_due_sources`` calls claimed in the window, from the claim log). The goal compares
  all workers' CPU / all polls with the single process's.
* shares: each worker's part of the polls, as above. Also printed: how ``sources.claimed_by``
  splits the sources polled in the window (each source's last claimer).
* peak RSS: ``VmHWM`` of ``/proc/PID/status`` at the end of the pass.
* claim ms: wall time of ``claim_due_sources`` inside the workers (p50/p95 over the pass).
  Also printed: the same claim statement (64 rows, ``FOR UPDATE SKIP LOCKED``) run from this
  process once a second and rolled back, which is the database's part alone.
* drain s: from the workers' launch (the cycle already advanced) until every source was polled
  and no outbox row is pending or sending.
* deliveries/s: items (embeds) the fake received / (last message - first message).
* dups: (webhook, item link) pairs the fake received more than once in the pass.
* lost: item deliveries expected (the server's new items x the source's 2 webhooks) that never
  reached the fake; outbox rows left pending, sending or failed are printed too.

Each pass also prints what explains its numbers: the workers' resident set (``VmRSS``) at the
window's start and end, the database sessions by state and any lock waits (sampled from
``pg_stat_activity``), CPU by process group (workers, feed server, fake, PostgreSQL, other
processes by name: the machine must be otherwise idle), and the warnings and errors in the
workers' logs.

``delivery.global_rate`` is a deployment-wide ceiling (the delivery processes split it), so a
cycle's drain time is at least messages / 50 s whatever the worker count; the default
``--batch-threshold 1`` (feedhook's default is 3) posts a subscription's 2-3 new items as one
message, which halves the messages and keeps the run within about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
from sqlalchemy import create_engine

from bench.deliver_fake import _RecordingDiscord
from bench.passes import set_cycle_sync
from bench.poll import _machine_busy
from bench.scale_hook import SITECUSTOMIZE
from bench.server import FeedBank, ServerSpec, serve, source_class, source_path
from bot.sources.feed import parse_feed
from bot.storage.db import driver_url
from bot.storage.sources import _claim_sources_stmt
from tests.fakes.fake_discord import FakeChannel, RateLimit

ROOT = Path(__file__).resolve().parent.parent
SUBS_PER_SOURCE = 2
GUILD = 4242
FIRST_CHANNEL = 10_000
RSS_LIMIT_MB = 150.0
CPU_GOAL = 1.10  # CPU per poll with N workers within 10% of one process
PROBE_ROWS = 64
GLOBAL_RATE = 50.0  # delivery.global_rate: the highest the config accepts
# "Raised" limits: far above what feedhook sends (it paces itself at GLOBAL_RATE).
FAKE_LIMITS = {
    "webhook": RateLimit(1000, 1.0),
    "channel": RateLimit(1000, 1.0),
    "global": RateLimit(100_000, 1.0),
}
OPTIONS = json.dumps({"style": "embed", "batch": True})
STOP_WAIT = 20.0  # feedhook run gives itself 8 s to stop
_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")


class BenchError(Exception):
    """The bench cannot go on; ``str(e)`` says why."""


_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------- helpers


def _status_mb(pid: int, key: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the resident set's high-water mark) of a live process, in MiB."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float | None:
    """VmRSS (the resident set now) of a live process, in MiB."""
    return _status_mb(pid, "VmRSS:")


_TICKS = float(os.sysconf("SC_CLK_TCK"))


def all_cpu() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds so far (utime + stime, /proc/PID/stat)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        rest = text.rpartition(")")[2].split()
        out[int(entry)] = (name, (int(rest[11]) + int(rest[12])) / _TICKS)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt_ms(values: Sequence[float]) -> str:
    """p50/p95 of durations in seconds, as milliseconds."""
    if not values:
        return "n/a"
    return f"{1000 * percentile(values, 0.5):.1f}/{1000 * percentile(values, 0.95):.1f}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _die_with_parent() -> None:
    """In the worker before exec: SIGTERM it if this bench dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def summarize_logs(paths: Iterable[Path]) -> tuple[Counter[str], int]:
    """Warnings and errors in worker logs, grouped by their message's first words."""
    found: Counter[str] = Counter()
    tracebacks = 0
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            match = _LOG_LINE.match(line)
            if match:
                level, logger, message = match.groups()
                head = re.split(r" \w+=", message, maxsplit=1)[0][:70]
                found[f"{level} {logger}: {head}"] += 1
    return found, tracebacks


# ---------------------------------------------------------------------------- processes


def _feed_server(spec: ServerSpec, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops it
    serve(spec, conn)


def _fake_discord(conn: Connection, hooks: int) -> None:
    """Process entry point: the fake Discord with ``hooks`` webhooks, one channel each.

    Answers over the pipe: ``"mark"`` -> how many messages, requests and 429s so far;
    ``("since", mark)`` -> what came after the mark; anything else (or EOF) stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_fake_discord_main(conn, hooks))


async def _fake_discord_main(conn: Connection, hooks: int) -> None:
    fake = _RecordingDiscord(
        webhook_limit=FAKE_LIMITS["webhook"],
        channel_limit=FAKE_LIMITS["channel"],
        global_limit=FAKE_LIMITS["global"],
    )
    await fake.start()
    try:
        made = []
        for n in range(hooks):
            channel = FIRST_CHANNEL + n
            # Registered directly: add_channel numbers a new channel by counting the
            # others, which for 40,000 channels is quadratic.
            fake.channels[channel] = FakeChannel(id=channel, guild_id=GUILD, name=f"feed-{n}")
            webhook_id, token = fake.add_webhook(channel)
            made.append((webhook_id, token, channel))
        conn.send({"api_base": fake.api_base, "hooks": made})
        loop = asyncio.get_running_loop()
        while True:
            try:
                command = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                break
            if command == "mark":
                conn.send((len(fake.messages()), len(fake.requests), len(fake.limited)))
            elif isinstance(command, tuple) and command[0] == "since":
                messages, requests, limited = command[1]
                conn.send(
                    {
                        "messages": [
                            (m.created_at, m.webhook_id, tuple(e.get("url") for e in m.embeds))
                            for m in fake.messages()[messages:]
                        ],
                        "statuses": dict(Counter(r.status for r in fake.requests[requests:])),
                        "limited": len(fake.limited) - limited,
                        "internal_errors": [repr(e) for e in fake.internal_errors],
                    }
                )
            else:
                break
    finally:
        await fake.close()
        conn.close()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    claims_prefix: Path
    process_id: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def claims(self) -> list[tuple[str, float, float, int]]:
        """(kind, start, seconds, rows) of every claim the hook logged (at the worker's exit)."""
        path = Path(f"{self.claims_prefix}.{self.pid}")
        out = []
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                kind, start, took, rows = line.split()
                out.append((kind, float(start), float(took), int(rows)))
        return out


# ---------------------------------------------------------------------------- seeding


async def survey(base_url: str, count: int, concurrency: int = 64) -> list[dict[str, Any]]:
    """What a poll of every source would store: class A asked with ``If-None-Match: *``
    (its validators come back with a 304, no body built), B and C fetched whole."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    out: list[dict[str, Any]] = [{} for _ in range(count)]
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            url = base_url + source_path(i)
            headers = {"If-None-Match": "*"} if source_class(i) == "A" else {}
            async with sem, session.get(url, headers=headers) as resp:
                body = await resp.read()
                if resp.status not in (200, 304):
                    raise BenchError(f"{url}: HTTP {resp.status}")
                out[i] = {
                    "url": url,
                    "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified"),
                    "body_hash": hashlib.sha256(body).hexdigest() if resp.status == 200 else None,
                    "body": body if source_class(i) == "C" else None,
                    "headers": dict(resp.headers),
                }

        await asyncio.gather(*(one(i) for i in range(count)))
    return out


def parse_items(
    batch: Sequence[tuple[int, str, bytes, dict[str, str]]],
) -> list[tuple[int, list[tuple[str, str | None, str | None, str, datetime | None]]]]:
    """With feedhook's parser: each document's entries as (key, link, link_norm, title,
    published), what the poller compares new documents against."""
    out = []
    for i, url, body, headers in batch:
        parsed = parse_feed(body, url=url, headers=headers)
        out.append(
            (
                i,
                [
                    (e.key, e.link, e.link_norm, str(e.raw.get("title") or e.key), e.published)
                    for e in parsed.entries
                ],
            )
        )
    return out


# ---------------------------------------------------------------------------- results


@dataclass
class PassRow:
    workers: int
    name: str
    polls_per_s: float | None = None
    cpu_ms_per_poll: list[float | None] = field(default_factory=list)
    total_cpu_ms_per_poll: float | None = None
    shares: list[float] = field(default_factory=list)
    rss_mb: list[float | None] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)
    drain_s: float | None = None
    deliveries_per_s: float | None = None
    dups: int | None = None
    lost: int | None = None
    timed_out: bool = False


def _slash(values: Sequence[float | None], fmt: str) -> str:
    return "/".join("?" if v is None else format(v, fmt) for v in values) or "-"


def _opt(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


# ---------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n = args.sources
        self.workdir = Path(tempfile.mkdtemp(prefix="feedhook-bench-scale-"))
        self.hook_dir = self.workdir / "hook"
        self.ctx = mp.get_context("spawn")
        self.server: Any = None
        self.fake: Any = None
        self.fake_pipe: Connection | None = None
        self.db_name: str | None = None
        self.db_url = ""
        self.pg: psycopg.Connection[Any] | None = None
        self.engine: Any = None
        self.workers: list[Worker] = []
        self.base_url = ""
        self.api_base = ""
        self.hooks: list[tuple[int, str, int]] = []
        self.bank = FeedBank(ServerSpec(args.sources, len(args.worker_counts)))
        self.rows: list[PassRow] = []
        self.source_ids: list[int] = []
        self.rss_all: list[float] = []
        # what the worker logs and the fake showed: message -> {pass tag: count}
        self.findings: dict[str, dict[str, float]] = {}
        feedhook = Path(sys.executable).parent / "feedhook"
        if not feedhook.exists():
            raise BenchError(f"{feedhook} not found: install the project first (make)")
        self.feedhook = str(feedhook)

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        load = os.getloadavg()[0]
        print(
            f"feedhook scale benchmark: {self.n} sources, {SUBS_PER_SOURCE * self.n} "
            f"subscriptions, workers {','.join(map(str, args.worker_counts))}; "
            f"{os.cpu_count()} CPUs, load average {load:.2f} at start"
            + ("  <- busy machine: numbers will be inflated" if load > 0.5 else ""),
            flush=True,
        )
        self.start_servers()
        self.create_database()
        self.seed()
        for k, count in enumerate(args.worker_counts, start=1):
            if "a" in args.passes:
                self.rows.append(self.saturation(count))
            if "b" in args.passes:
                self.rows.append(self.cycle(count, k))
        self.summary()

    def cleanup(self) -> None:
        if self.workers:
            with contextlib.suppress(Exception):
                self.stop_workers(list(self.workers))
        if self.fake_pipe is not None:
            with contextlib.suppress(Exception):
                self.fake_pipe.send("stop")
        for proc in (self.fake, self.server):
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.join(3)
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(5)
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.dispose()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.close()
        if self.db_name is not None:
            try:
                with psycopg.connect(self.args.postgres_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                say(f"dropped database {self.db_name}")
            except Exception as exc:
                print(f"could not drop database {self.db_name}: {exc}", file=sys.stderr)
        if self.args.keep:
            say(f"kept worker logs and configs in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- set-up ----------------------------------------------------------------------

    def start_servers(self) -> None:
        parent, child = self.ctx.Pipe()
        spec = ServerSpec(self.n, len(self.args.worker_counts))
        self.server = self.ctx.Process(
            target=_feed_server, args=(spec, child), daemon=True, name="bench-feeds"
        )
        self.server.start()
        child.close()
        if not parent.poll(120):
            raise BenchError("the feed server did not start")
        self.base_url = f"http://127.0.0.1:{parent.recv()}"
        parent.close()

        hooks = SUBS_PER_SOURCE * self.n
        pipe, child = self.ctx.Pipe()
        self.fake = self.ctx.Process(
            target=_fake_discord, args=(child, hooks), daemon=True, name="bench-discord"
        )
        self.fake.start()
        child.close()
        self.fake_pipe = pipe
        if not pipe.poll(300):
            raise BenchError("the fake Discord did not start")
        hello = pipe.recv()
        self.api_base = hello["api_base"]
        self.hooks = [(int(h), str(t), int(c)) for h, t, c in hello["hooks"]]
        say(
            f"feed server on {self.base_url} (pid {self.server.pid}); fake Discord on "
            f"{self.api_base} with {len(self.hooks)} webhooks (pid {self.fake.pid}), limits "
            + ", ".join(f"{k} {v.limit}/{v.per:g} s" for k, v in FAKE_LIMITS.items())
        )

    def fake_call(self, command: object) -> Any:
        assert self.fake_pipe is not None
        self.fake_pipe.send(command)
        if not self.fake_pipe.poll(120):
            raise BenchError("the fake Discord stopped answering")
        return self.fake_pipe.recv()

    def create_database(self) -> None:
        name = f"feedhook_bench_{secrets.token_hex(4)}"
        try:
            with psycopg.connect(self.args.postgres_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
                version = admin.execute("SHOW server_version").fetchone()
        except psycopg.Error as exc:
            raise BenchError(
                f"cannot create a database through {self.args.postgres_url}: {exc}"
            ) from None
        self.db_name = name
        self.db_url = with_database(self.args.postgres_url, name)
        config = self.write_config("upgrade", interval="600s")
        done = subprocess.run(
            [self.feedhook, "db", "upgrade", "--config", str(config)],
            capture_output=True,
            text=True,
            env=self.worker_env(None),
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"feedhook db upgrade failed: {done.stderr.strip()}")
        self.pg = psycopg.connect(self.db_url, autocommit=True)
        self.engine = create_engine(driver_url(self.db_url), pool_size=1)
        say(
            f"created database {name} on PostgreSQL {version[0] if version else '?'}: "
            f"{done.stdout.strip()}"
        )

    def seed(self) -> None:
        started = time.monotonic()
        found = asyncio.run(survey(self.base_url, self.n))
        say(f"read every source once for its validators ({time.monotonic() - started:.1f} s)")
        batches: list[list[tuple[int, str, bytes, dict[str, str]]]] = [[]]
        for i, row in enumerate(found):
            if row["body"] is not None:
                if len(batches[-1]) >= 100:
                    batches.append([])
                batches[-1].append((i, row["url"], row["body"], row["headers"]))
                row["body"] = None
        entries: dict[int, list[Any]] = {}
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=self.ctx) as pool:
            for part in pool.map(parse_items, batches):
                entries.update(part)
        now = datetime.now(UTC)
        assert self.pg is not None
        with self.pg.cursor() as cur:
            with cur.copy(
                "COPY sources (url, kind, etag, last_modified, body_hash, initialized, "
                "next_poll_at, consecutive_failures, created_at) FROM STDIN"
            ) as copy:
                for row in found:
                    copy.write_row(
                        (
                            row["url"],
                            "feed",
                            row["etag"],
                            row["last_modified"],
                            row["body_hash"],
                            True,
                            now,
                            0,
                            now,
                        )
                    )
            ids = {url: int(sid) for url, sid in cur.execute("SELECT url, id FROM sources")}
            self.source_ids = [ids[row["url"]] for row in found]
            with cur.copy(
                "COPY subscriptions (source_id, webhook_id, webhook_token, thread_id, guild_id, "
                "channel_id, origin, enabled, paused, backfill, options, created_at) FROM STDIN"
            ) as copy:
                for i, sid in enumerate(self.source_ids):
                    for webhook_id, token, channel in self.hooks_of(i):
                        copy.write_row(
                            (
                                sid,
                                webhook_id,
                                token,
                                0,
                                GUILD,
                                channel,
                                "discord",
                                True,
                                False,
                                0,
                                OPTIONS,
                                now,
                            )
                        )
            items = 0
            with cur.copy(
                "COPY items (source_id, item_key, link_norm, title, link, summary, "
                "published_at, categories, first_seen_at) FROM STDIN"
            ) as copy:
                for i, rows in entries.items():
                    for key, link, link_norm, title, published in rows:
                        copy.write_row(
                            (
                                self.source_ids[i],
                                key,
                                link_norm,
                                title,
                                link,
                                "",
                                published,
                                "[]",
                                now,
                            )
                        )
                        items += 1
            cur.execute("ANALYZE")
        by_class = Counter(source_class(i) for i in range(self.n))
        say(
            f"seeded {self.n} sources (A={by_class['A']} B={by_class['B']} C={by_class['C']}), "
            f"{SUBS_PER_SOURCE * self.n} subscriptions, {items} items of class C "
            f"({time.monotonic() - started:.1f} s)"
        )

    def hooks_of(self, i: int) -> list[tuple[int, str, int]]:
        return self.hooks[SUBS_PER_SOURCE * i : SUBS_PER_SOURCE * (i + 1)]

    # -- workers ---------------------------------------------------------------------

    def write_config(self, tag: str, *, interval: str) -> Path:
        args = self.args
        path = self.workdir / f"{tag}.toml"
        path.write_text(
            "[database]\n"
            f"url = {json.dumps(self.db_url)}\n\n"
            "[discord]\n"
            f"api_base = {json.dumps(self.api_base or 'http://127.0.0.1:9/api/v10')}\n\n"
            "[polling]\n"
            f'interval = "{interval}"\n'
            "jitter = 0.0\n"
            'allowed_hosts = ["127.0.0.1"]\n'
            f"concurrency = {args.concurrency}\n"
            f"per_host_concurrency = {min(100, args.concurrency)}\n\n"
            "[delivery]\n"
            f"global_rate = {GLOBAL_RATE:g}\n"
            f"batch_threshold = {args.batch_threshold}\n\n"
            "[logging]\n"
            'level = "INFO"\n',
            encoding="utf-8",
        )
        return path

    def worker_env(self, claims: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDHOOK_")}
        if claims is not None:
            self.hook_dir.mkdir(exist_ok=True)
            (self.hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
            path = [str(self.hook_dir), str(ROOT)]
            if os.environ.get("PYTHONPATH"):
                path.append(os.environ["PYTHONPATH"])
            env["PYTHONPATH"] = os.pathsep.join(path)
            env["FEEDHOOK_BENCH_CLAIM_LOG"] = str(claims)
        return env

    def start_workers(self, config: Path, count: int, tag: str) -> list[Worker]:
        # Rows a worker that did not stop cleanly left behind would be reaped by the new
        # ones; a clean start makes every pass begin alike.
        assert self.pg is not None
        left = self.pg.execute("DELETE FROM processes").rowcount
        if left:
            self.note(tag, "processes rows left by earlier workers", left)
        started = []
        for n in range(count):
            log = self.workdir / f"{tag}-w{n + 1}.log"
            claims = self.workdir / f"{tag}-w{n + 1}.claims"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [self.feedhook, "run", "--config", str(config), "--role", self.args.role],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.worker_env(claims),
                    cwd=self.workdir,
                    start_new_session=True,  # Ctrl-C reaches the bench, which stops them
                    preexec_fn=_die_with_parent,
                )
            worker = Worker(proc, log, claims)
            started.append(worker)
            self.workers.append(worker)
        return started

    def wait_registered(self, workers: Sequence[Worker], within: float = 90.0) -> None:
        """Until every worker has its row in ``processes`` (it then polls at once)."""
        assert self.pg is not None
        deadline = time.monotonic() + within
        while True:
            rows = dict(self.pg.execute("SELECT pid, id FROM processes").fetchall())
            for w in workers:
                w.process_id = rows.get(w.pid)
            if all(w.process_id is not None for w in workers):
                return
            self.check_alive(workers)
            if time.monotonic() > deadline:
                raise BenchError(f"workers did not register within {within:g} s")
            time.sleep(0.1)

    def check_alive(self, workers: Sequence[Worker]) -> None:
        for w in workers:
            code = w.proc.poll()
            if code is not None:
                tail = "\n".join(w.log.read_text(errors="replace").splitlines()[-15:])
                raise BenchError(f"worker pid {w.pid} exited with status {code}:\n{tail}")

    def stop_workers(self, workers: Sequence[Worker]) -> dict[int, int | None]:
        """SIGTERM (feedhook's graceful stop), SIGKILL whatever is still there after a while."""
        for w in workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        codes: dict[int, int | None] = {}
        for w in workers:
            try:
                codes[w.pid] = w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
                codes[w.pid] = None  # killed
        self.workers = [w for w in self.workers if w not in workers]
        return codes

    # -- measuring -------------------------------------------------------------------

    def reset_sources(self) -> None:
        """Every source due now and unclaimed."""
        assert self.pg is not None
        self.pg.execute(
            "UPDATE sources SET next_poll_at = now(), claimed_until = NULL, claimed_by = NULL"
        )

    def server_stats(self, *, reset: bool) -> Counter[str]:
        return Counter(get_json(f"{self.base_url}/stats{'?reset=1' if reset else ''}"))

    def probe_claim(self) -> float:
        """feedhook's claim statement for 64 rows, from this process, rolled back."""
        now = datetime.now(UTC)
        params = {
            "b_now": now,
            "b_until": now + timedelta(minutes=5),
            "b_limit": PROBE_ROWS,
            "b_exclude": [],
            "b_process": None,
        }
        with self.engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(_claim_sources_stmt("postgresql"), params).all()
            took = time.perf_counter() - started
            conn.rollback()
        return took

    def sample_waits(self, into: Counter[str]) -> None:
        """Count the sessions of the bench's database waiting for a lock right now, by
        statement (what ``pg_stat_activity`` shows)."""
        assert self.pg is not None
        into["(samples)"] += 1
        for state, count in self.pg.execute(
            "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1"
        ):
            into[f"(state) {state}"] += int(count)
        for (query,) in self.pg.execute(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state = 'active' "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ):
            into[str(query)] += 1

    def print_waits(self, tag: str, waits: Counter[str]) -> None:
        samples = waits.pop("(samples)", 0)
        states = {
            k.removeprefix("(state) "): waits.pop(k) for k in list(waits) if k[:8] == "(state) "
        }
        if samples:
            print(
                "    database sessions of the bench's database (mean over samples, the bench's "
                "own excluded): "
                + ", ".join(f"{k} {v / samples:.1f}" for k, v in sorted(states.items()))
            )
        total = sum(waits.values())
        if not total:
            print(f"    lock waits: none seen in {samples} samples of pg_stat_activity")
            return
        print(
            f"    lock waits: {total} sessions waiting on a lock over {samples} samples of "
            "pg_stat_activity; by statement:"
        )
        for query, n in waits.most_common(4):
            print(f"      {n:5d} x {query}")
        self.note(tag, "sessions seen waiting on a PostgreSQL lock", total)

    def cpu_snapshot(self, workers: Sequence[Worker]) -> dict[str, Any]:
        procs = all_cpu()
        return {
            "workers": {w.pid: procs.get(w.pid, ("", 0.0))[1] for w in workers},
            "procs": procs,
            "machine": _machine_busy(),
        }

    def cpu_groups(
        self, before: dict[str, Any], after: dict[str, Any]
    ) -> tuple[dict[str, float], Counter[str]]:
        """CPU seconds by group between two snapshots, and the other processes by name."""

        def delta(pid: int) -> float:
            return after["procs"][pid][1] - before["procs"].get(pid, ("", 0.0))[1]

        own = {"feed server": self.server.pid, "fake Discord": self.fake.pid, "bench": os.getpid()}
        out = {"workers": sum(delta(p) for p in before["workers"] if p in after["procs"])}
        out.update({k: delta(p) if p in after["procs"] else 0.0 for k, p in own.items()})
        known = set(before["workers"]) | set(own.values())
        out["PostgreSQL"] = 0.0
        others: Counter[str] = Counter()
        for pid, (name, _cpu) in after["procs"].items():
            if pid in known:
                continue
            if name == "postgres":
                out["PostgreSQL"] += delta(pid)
            elif (used := delta(pid)) > 0:
                others[name] += used
        out["other processes"] = sum(others.values())
        if before["machine"] is not None and after["machine"] is not None:
            out["machine"] = after["machine"] - before["machine"]
        return out, others

    def print_cpu_groups(
        self, tag: str, measured: tuple[dict[str, float], Counter[str]], seconds: float
    ) -> None:
        groups, others = measured
        parts = [f"{k} {v / seconds:.2f}" for k, v in groups.items() if k != "machine"]
        machine = groups.get("machine")
        total = ""
        if machine:
            rest = machine - sum(v for k, v in groups.items() if k != "machine")
            total = (
                f", kernel and exited processes {max(0.0, rest) / seconds:.2f}; "
                f"whole machine {machine / seconds:.2f} of {os.cpu_count()} CPUs"
            )
        print(f"    CPUs busy (CPU-s per s): {', '.join(parts)}{total}")
        if groups["other processes"] / seconds > 0.1:
            top = ", ".join(f"{name} {cpu / seconds:.2f}" for name, cpu in others.most_common(3))
            print(f"    CONTENDED: other processes on this machine used CPU meanwhile ({top})")
            self.note(
                tag,
                "other processes used the CPUs during a pass (CPU-s per s, summed)",
                round(groups["other processes"] / seconds, 2),
            )

    def note(self, tag: str, what: str, count: float = 1) -> None:
        tags = self.findings.setdefault(what, {})
        tags[tag] = tags.get(tag, 0) + count

    def print_logs(self, tag: str, workers: Sequence[Worker], codes: dict[int, int | None]) -> None:
        found, tracebacks = summarize_logs(w.log for w in workers)
        bad_exits = {pid: code for pid, code in codes.items() if code != 0}
        if bad_exits:
            text = ", ".join(
                f"pid {pid}: {'killed after ' + str(STOP_WAIT) + ' s' if c is None else c}"
                for pid, c in bad_exits.items()
            )
            print(f"    worker exits not clean: {text}")
            self.note(tag, f"unclean worker exits ({text})")
        if not found and not tracebacks:
            print("    worker logs: no warnings or errors")
            return
        print(f"    worker logs: {sum(found.values())} warnings/errors, {tracebacks} tracebacks")
        for line, n in found.most_common(6):
            print(f"      {n:6d} x {line}")
            self.note(tag, line, n)
        if tracebacks:
            self.note(tag, "tracebacks in worker logs", tracebacks)

    # -- pass (a) --------------------------------------------------------------------

    def saturation(self, count: int) -> PassRow:
        args = self.args
        tag = f"sat{count}"
        say(f"== {count} worker(s), pass (a) saturation: interval 1s, every source always due")
        self.reset_sources()
        workers = self.start_workers(self.write_config(tag, interval="1s"), count, tag)
        try:
            self.wait_registered(workers)
            say(
                f"workers up (pids {', '.join(str(w.pid) for w in workers)}); "
                f"warm-up {args.warmup:g} s"
            )
            self.sleep_checking(workers, args.warmup)
            self.server_stats(reset=True)
            before = self.cpu_snapshot(workers)
            window_wall = datetime.now(UTC)
            start = time.monotonic()
            end = start + args.seconds
            probes: list[float] = []
            waits: Counter[str] = Counter()
            rss_start = [rss_mb(w.pid) for w in workers]
            next_print = start + 10
            while (now := time.monotonic()) < end:
                probes.append(self.probe_claim())
                self.sample_waits(waits)
                if now >= next_print:
                    polls = sum(self.server_stats(reset=False).values())
                    say(f"  {now - start:4.0f} s: {polls / (now - start):7.1f} polls/s so far")
                    next_print += 10
                self.check_alive(workers)
                time.sleep(max(0.0, min(1.0, end - time.monotonic())))
            stop = time.monotonic()
            stats = self.server_stats(reset=True)
            after = self.cpu_snapshot(workers)
            rss = [peak_rss_mb(w.pid) for w in workers]
            rss_end = [rss_mb(w.pid) for w in workers]
            assert self.pg is not None
            last_claimer = dict(
                self.pg.execute(
                    "SELECT claimed_by, count(*) FROM sources WHERE last_polled_at >= %s "
                    "GROUP BY claimed_by",
                    (window_wall,),
                ).fetchall()
            )
        finally:
            codes = self.stop_workers(workers)
        seconds = stop - start
        polls = sum(stats.values())
        per_worker = []
        for w in workers:
            claims = [c for c in w.claims() if c[0] == "S" and start <= c[1] < stop]
            per_worker.append(
                {
                    "polls": sum(c[3] for c in claims) if claims else None,
                    "claims": [c[2] for c in claims],
                    "cpu": after["workers"][w.pid] - before["workers"][w.pid],
                    "idle_delivery_claims": [
                        c[2] for c in w.claims() if c[0] == "D" and start <= c[1] < stop
                    ],
                }
            )
        hooked = all(p["polls"] is not None for p in per_worker)
        if not hooked:
            # No claim log (a worker was killed): split by sources.claimed_by instead.
            total = sum(last_claimer.values()) or 1
            for w, p in zip(workers, per_worker, strict=True):
                p["polls"] = polls * last_claimer.get(w.process_id, 0) / total
        attributed = sum(p["polls"] for p in per_worker) or 1
        row = PassRow(count, "(a) saturation")
        row.polls_per_s = polls / seconds
        row.cpu_ms_per_poll = [
            1000 * p["cpu"] / p["polls"] if p["polls"] else None for p in per_worker
        ]
        row.total_cpu_ms_per_poll = 1000 * sum(p["cpu"] for p in per_worker) / max(1, polls)
        row.shares = [p["polls"] / attributed for p in per_worker]
        row.rss_mb = rss
        row.claims = [t for p in per_worker for t in p["claims"]]
        self.rss_all += [r for r in rss if r is not None]

        print(f"  result, {count} worker(s), saturation, {seconds:.1f} s measured:")
        print(
            f"    polls: {polls} = {row.polls_per_s:.1f}/s at the feed server ("
            + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()))
            + ")"
        )
        for n, (w, p, r) in enumerate(zip(workers, per_worker, rss, strict=True), start=1):
            rows_per_claim = p["polls"] / len(p["claims"]) if p["claims"] else float("nan")
            print(
                f"    worker {n} (pid {w.pid}, process {w.process_id}): {p['polls']:.0f} polls "
                f"({100 * p['polls'] / attributed:.1f}%), CPU {p['cpu']:.2f} s = "
                f"{p['cpu'] / seconds:.2f} of a CPU, "
                f"{_opt(1000 * p['cpu'] / p['polls'] if p['polls'] else None, '.3f')} ms/poll; "
                f"peak RSS {_opt(r, '.1f')} MB; {len(p['claims'])} source claims "
                f"({rows_per_claim:.1f} rows each) p50/p95 {fmt_ms(p['claims'])} ms; "
                f"idle delivery claims p50/p95 {fmt_ms(p['idle_delivery_claims'])} ms"
            )
        if not hooked:
            print("    (no claim log from a worker: polls split by sources.claimed_by instead)")
        growth = []
        for n, (a, b, p) in enumerate(zip(rss_start, rss_end, per_worker, strict=True), start=1):
            if a is None or b is None:
                growth.append("?")
                continue
            per_10k = 10_000 * (b - a) / p["polls"] if p["polls"] else float("nan")
            growth.append(f"{a:.1f} -> {b:.1f} MB ({per_10k:+.2f} MB per 10,000 polls)")
            if per_10k > 1.0:
                self.note(
                    f"{tag} w{n}",
                    "resident set grew during saturation, MB per 10,000 polls",
                    per_10k,
                )
        print(f"    resident set (VmRSS) at the window's start -> end: {'; '.join(growth)}")
        self.print_waits(tag, waits)
        total_last = sum(last_claimer.values()) or 1
        print(
            "    sources polled in the window by their last claimer (sources.claimed_by): "
            + ", ".join(
                f"worker {n} {100 * last_claimer.get(w.process_id, 0) / total_last:.1f}%"
                for n, w in enumerate(workers, start=1)
            )
        )
        print(
            f"    claim probe from the bench ({PROBE_ROWS} rows, same statement, rolled back, "
            f"{len(probes)} runs): p50/p95 {fmt_ms(probes)} ms"
        )
        self.print_cpu_groups(tag, self.cpu_groups(before, after), seconds)
        self.print_logs(tag, workers, codes)
        return row

    def sleep_checking(self, workers: Sequence[Worker], seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.check_alive(workers)
            time.sleep(min(0.5, left))

    # -- pass (b) --------------------------------------------------------------------

    def cycle_state(self, since: datetime) -> tuple[int, dict[str, int]]:
        assert self.pg is not None
        polled = self.pg.execute(
            "SELECT count(*) FROM sources WHERE last_polled_at >= %s", (since,)
        ).fetchone()
        states = dict(
            self.pg.execute(
                "SELECT state, count(*) FROM outbox WHERE created_at >= %s GROUP BY state",
                (since,),
            ).fetchall()
        )
        return int(polled[0] if polled else 0), {str(k): int(v) for k, v in states.items()}

    def cycle(self, count: int, k: int) -> PassRow:
        args = self.args
        tag = f"cycle{count}"
        c_sources = [i for i in range(self.n) if source_class(i) == "C"]
        expected = {i: self.bank.new_items_at(i, k) for i in c_sources}
        expected_rows = SUBS_PER_SOURCE * sum(expected.values())
        timeout = args.drain_timeout or 120.0 + 2.0 * expected_rows / GLOBAL_RATE
        say(
            f"== {count} worker(s), pass (b) one cycle: interval 60s; the server moves to cycle "
            f"{k}: {sum(expected.values())} new items in {len(c_sources)} sources = "
            f"{expected_rows} deliveries (time limit {timeout:.0f} s)"
        )
        set_cycle_sync(self.base_url, k)
        self.reset_sources()
        mark = self.fake_call("mark")
        self.server_stats(reset=True)
        config = self.write_config(tag, interval="60s")
        since = datetime.now(UTC)
        start = time.monotonic()
        workers = self.start_workers(config, count, tag)
        polled_at = drained_at = None
        timed_out = False
        try:
            self.wait_registered(workers)
            registered = time.monotonic()
            before = self.cpu_snapshot(workers)
            say(f"workers up after {registered - start:.1f} s")
            probes: list[float] = []
            waits: Counter[str] = Counter()
            next_print = start + 10
            while True:
                polled, states = self.cycle_state(since)
                now = time.monotonic()
                busy = states.get("pending", 0) + states.get("sending", 0)
                if polled_at is None and polled >= self.n:
                    polled_at = now
                if polled_at is not None and busy == 0:
                    drained_at = now
                    break
                if now - start > timeout:
                    timed_out = True
                    say(f"  time limit reached: {busy} outbox rows still pending or sending")
                    break
                if now >= next_print:
                    say(
                        f"  {now - start:4.0f} s: polled {polled}/{self.n}, outbox "
                        + ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
                    )
                    next_print += 10
                if len(probes) < (now - registered) / 2:
                    probes.append(self.probe_claim())
                self.sample_waits(waits)
                self.check_alive(workers)
                time.sleep(0.5)
            stop = time.monotonic()
            after = self.cpu_snapshot(workers)
            rss = [peak_rss_mb(w.pid) for w in workers]
            rss_end = [rss_mb(w.pid) for w in workers]
        finally:
            codes = self.stop_workers(workers)
        seen = self.fake_call(("since", mark))
        polls = sum(self.server_stats(reset=True).values())
        assert self.pg is not None
        first_poll, last_poll = self.pg.execute(
            "SELECT min(last_polled_at), max(last_polled_at) FROM sources "
            "WHERE last_polled_at >= %s",
            (since,),
        ).fetchone() or (None, None)
        _, final = self.cycle_state(since)
        found_links: dict[int, set[str]] = {}
        new_items: set[tuple[int, str]] = set()
        for webhook_id, source_id, link in self.pg.execute(
            "SELECT s.webhook_id, s.source_id, i.link FROM items i "
            "JOIN subscriptions s ON s.source_id = i.source_id WHERE i.first_seen_at >= %s",
            (since,),
        ):
            found_links.setdefault(int(webhook_id), set()).add(str(link))
            new_items.add((int(source_id), str(link)))
        sent_by = dict(
            self.pg.execute(
                "SELECT claimed_by, count(*) FROM outbox WHERE created_at >= %s AND state = 'sent' "
                "GROUP BY claimed_by",
                (since,),
            ).fetchall()
        )

        # What reached the fake.
        messages = seen["messages"]
        received: Counter[tuple[int, str | None]] = Counter()
        for _t, webhook_id, urls in messages:
            for url in urls:
                received[(webhook_id, url)] += 1
        got: dict[int, set[str | None]] = {}
        for webhook_id, url in received:
            got.setdefault(webhook_id, set()).add(url)
        dups = sum(n - 1 for n in received.values() if n > 1)
        lost = 0
        for i, n_new in expected.items():
            for webhook_id, _token, _channel in self.hooks_of(i):
                want = found_links.get(webhook_id, set())
                lost += max(0, n_new - len(got.get(webhook_id, set()) & want))
        unexpected = sum(
            len(urls - found_links.get(webhook_id, set())) for webhook_id, urls in got.items()
        )
        items_received = sum(len(urls) for _t, _w, urls in messages)
        times = sorted(t for t, _w, _u in messages)
        span = times[-1] - times[0] if len(times) > 1 else 0.0

        per_worker = []
        for w in workers:
            claims = w.claims()
            per_worker.append(
                {
                    "polls": sum(c[3] for c in claims if c[0] == "S"),
                    "claims": [c[2] for c in claims if c[0] == "S"],
                    "delivery_claims": [c[2] for c in claims if c[0] == "D"],
                    "cpu": after["workers"][w.pid] - before["workers"][w.pid],
                    "sent": sent_by.get(w.process_id, 0),
                }
            )
        attributed = sum(p["polls"] for p in per_worker) or 1
        row = PassRow(count, "(b) cycle 60s")
        # From the first claim to the moment every source had been polled (sampled every
        # half second); last_polled_at alone would miss sources polled twice (a round
        # longer than the 60 s interval).
        first_claim = min(
            (c[1] for w in workers for c in w.claims() if c[0] == "S"), default=registered
        )
        if polled_at is not None and polled_at > first_claim:
            row.polls_per_s = self.n / (polled_at - first_claim)
        row.shares = [p["polls"] / attributed for p in per_worker]
        row.rss_mb = rss
        row.claims = [t for p in per_worker for t in p["claims"]]
        row.drain_s = None if drained_at is None else drained_at - start
        row.deliveries_per_s = (items_received - 1) / span if span > 0 else None
        row.dups = dups
        row.lost = lost
        row.timed_out = timed_out
        self.rss_all += [r for r in rss if r is not None]

        wall = stop - registered
        all_polled = None if polled_at is None else polled_at - start
        poll_span = (
            (last_poll - first_poll).total_seconds()
            if first_poll is not None and last_poll is not None
            else None
        )
        print(f"  result, {count} worker(s), one cycle:")
        print(
            f"    polls: every source polled after {_opt(all_polled, '.1f')} s "
            f"(from the first claim {_opt(row.polls_per_s, '.1f')}/s; {polls} responses served; "
            f"last_polled_at spans {_opt(poll_span, '.1f')} s); "
            f"new items found {len(new_items)} of {sum(expected.values())} the server "
            f"added"
        )
        print(
            f"    outbox: {expected_rows} deliveries expected, rows by state "
            + ", ".join(f"{s} {n}" for s, n in sorted(final.items()))
            + f"; drained after {_opt(row.drain_s, '.1f')} s"
            + (" (TIMED OUT)" if timed_out else "")
        )
        print(
            f"    fake Discord: {len(messages)} messages with {items_received} items "
            f"({len(received)} distinct (webhook, item) pairs) in {span:.1f} s = "
            f"{_opt(row.deliveries_per_s, '.1f')} items/s, "
            f"{_opt((len(messages) - 1) / span if span > 0 else None, '.1f')} messages/s; "
            f"requests by status {seen['statuses']}, 429s {seen['limited']}"
            + (
                f", internal errors {seen['internal_errors'][:3]}"
                if seen["internal_errors"]
                else ""
            )
        )
        print(
            f"    duplicates {dups}, lost {lost} (expected pairs never received), "
            f"unexpected {unexpected} (received pairs not among this cycle's new items)"
        )
        for n, (w, p, r) in enumerate(zip(workers, per_worker, rss, strict=True), start=1):
            print(
                f"    worker {n} (pid {w.pid}, process {w.process_id}): {p['polls']} polls "
                f"({100 * p['polls'] / attributed:.1f}%), {p['sent']} deliveries, "
                f"CPU {p['cpu']:.2f} s ({p['cpu'] / wall:.2f} of a CPU); peak RSS "
                f"{_opt(r, '.1f')} MB; source claims p50/p95 {fmt_ms(p['claims'])} ms "
                f"({len(p['claims'])}), delivery claims p50/p95 "
                f"{fmt_ms(p['delivery_claims'])} ms ({len(p['delivery_claims'])})"
            )
        print(
            f"    claim probe from the bench ({PROBE_ROWS} rows, rolled back, {len(probes)} runs): "
            f"p50/p95 {fmt_ms(probes)} ms"
        )
        print(
            "    resident set (VmRSS) at the end: "
            + ", ".join(f"{_opt(r, '.1f')} MB" for r in rss_end)
        )
        self.print_waits(tag, waits)
        self.print_cpu_groups(tag, self.cpu_groups(before, after), wall)
        self.print_logs(tag, workers, codes)
        if dups:
            self.note(tag, "duplicate deliveries at the fake Discord", dups)
        if unexpected:
            self.note(tag, "unexpected deliveries at the fake Discord", unexpected)
        return row

    # -- summary ---------------------------------------------------------------------

    def summary(self) -> None:
        header = (
            f"{'workers':>7} | {'pass':<15} | {'polls/s':>8} | {'CPU ms/poll/worker':>18} | "
            f"{'shares %':>11} | {'peak RSS MB/worker':>18} | {'claim ms p50/p95':>16} | "
            f"{'drain s':>7} | {'deliveries/s':>12} | {'dups':>4} | {'lost':>5}"
        )
        print("\n== summary")
        print(header)
        print("-" * len(header))
        for row in self.rows:
            shares = _slash([100 * s for s in row.shares], ".0f")
            drain = "timeout" if row.timed_out else _opt(row.drain_s, ".1f")
            print(
                f"{row.workers:>7} | {row.name:<15} | {_opt(row.polls_per_s, '.1f'):>8} | "
                f"{_slash(row.cpu_ms_per_poll, '.3f'):>18} | {shares:>11} | "
                f"{_slash(row.rss_mb, '.1f'):>18} | {fmt_ms(row.claims):>16} | {drain:>7} | "
                f"{_opt(row.deliveries_per_s, '.1f'):>12} | {_opt(row.dups, 'd'):>4} | "
                f"{_opt(row.lost, 'd'):>5}"
            )
        print(
            "  CPU ms/poll/worker: worker CPU in the window / its polls; claim ms: "
            "claim_due_sources inside the workers; pass (b) rows: polls/s from the first claim "
            "until every source was polled, drain from launch"
        )
        sat = {r.workers: r for r in self.rows if r.name.startswith("(a)")}
        cycles = [r for r in self.rows if r.name.startswith("(b)")]
        checks: list[tuple[str, str, bool | None]] = []
        one = sat.get(1)
        cpus = os.cpu_count() or 1
        for count, row in sorted(sat.items()):
            if count == 1 or one is None or not one.polls_per_s or row.polls_per_s is None:
                continue
            note = (
                f"ratio only: {cpus} CPUs shared by the workers, PostgreSQL and the feed server"
                if cpus < 4
                else "ratio only"
            )
            checks.append(
                (
                    f"polls/s, {count} workers vs 1",
                    f"{row.polls_per_s:.1f} / {one.polls_per_s:.1f} = "
                    f"{row.polls_per_s / one.polls_per_s:.2f}x ({note})",
                    None,
                )
            )
        for count, row in sorted(sat.items()):
            if count == 1 or one is None or not one.total_cpu_ms_per_poll:
                continue
            if row.total_cpu_ms_per_poll is None:
                continue
            ratio = row.total_cpu_ms_per_poll / one.total_cpu_ms_per_poll
            checks.append(
                (
                    f"CPU per poll, {count} workers vs 1 process, within 10%",
                    f"{row.total_cpu_ms_per_poll:.3f} / {one.total_cpu_ms_per_poll:.3f} ms = "
                    f"{100 * (ratio - 1):+.1f}%",
                    ratio <= CPU_GOAL,
                )
            )
        if self.rss_all:
            worst = max(self.rss_all)
            checks.append(
                (
                    f"peak RSS <= {RSS_LIMIT_MB:.0f} MB per worker",
                    f"highest {worst:.1f} MB",
                    worst <= RSS_LIMIT_MB,
                )
            )
        if cycles:
            dups = sum(r.dups or 0 for r in cycles)
            lost = sum(r.lost or 0 for r in cycles)
            checks.append(("0 duplicates", str(dups), dups == 0))
            checks.append(("0 lost", str(lost), lost == 0 and not any(r.timed_out for r in cycles)))
        width = max(len(c[0]) for c in checks) if checks else 0
        print()
        for name, value, ok in checks:
            mark = "info" if ok is None else ("PASS" if ok else "FAIL")
            print(f"  [{mark:>4}] {name:<{width}}  {value}")
        if self.findings:
            print("\n  noticed (count by pass):")
            for what, tags in self.findings.items():
                counts = ", ".join(
                    f"{t} {n:g}" if isinstance(n, int) else f"{t} {n:.2f}" for t, n in tags.items()
                )
                print(f"    {what}  [{counts}]")
        sys.stdout.flush()


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="saturation window")
    parser.add_argument("--warmup", type=float, default=10.0, help="before the window")
    parser.add_argument(
        "--workers",
        default=None,
        help='worker counts, e.g. "1,2" (default: 1,2, and 4 on a machine with 4+ CPUs)',
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin connection: creates and drops the bench's database",
    )
    parser.add_argument(
        "--batch-threshold",
        type=int,
        default=1,
        help="delivery.batch_threshold (feedhook's default: 3; see above)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="polling.concurrency and polling.per_host_concurrency (at most 100)",
    )
    parser.add_argument("--role", default="poller,delivery", help="feedhook run --role")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=0.0,
        help="give up on a cycle after this many seconds (default: from its deliveries)",
    )
    parser.add_argument(
        "--passes", default="a,b", help="which passes to run per worker count (default a,b)"
    )
    parser.add_argument("--keep", action="store_true", help="keep worker logs and configs")
    args = parser.parse_args(argv)
    if args.workers is None:
        counts = [1, 2] + ([4] if (os.cpu_count() or 1) >= 4 else [])
    else:
        try:
            counts = [int(part) for part in args.workers.split(",") if part.strip()]
        except ValueError:
            parser.error("--workers takes numbers, e.g. 1,2")
        if not counts or min(counts) < 1:
            parser.error("--workers takes numbers >= 1")
    args.worker_counts = counts
    args.passes = {part.strip() for part in args.passes.split(",") if part.strip()}
    if not args.passes or args.passes - {"a", "b"}:
        parser.error("--passes takes a, b or a,b")
    if args.sources < 10 or args.seconds <= 0 or args.warmup < 0:
        parser.error("need --sources >= 10, --seconds > 0, --warmup >= 0")
    if not 1 <= args.batch_threshold <= 100 or not 1 <= args.concurrency <= 1000:
        parser.error("--batch-threshold 1..100, --concurrency 1..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    bench: Bench | None = None
    try:
        bench = Bench(args)
        bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping workers and dropping the database", flush=True)
        return 130
    except BenchError as exc:
        print(f"bench-scale: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if bench is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
            bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
