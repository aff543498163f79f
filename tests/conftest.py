"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when
FEEDHOOK_TEST_POSTGRES_URL is set) and a loopback feed server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from aiohttp import web

from bot.models import WebhookTarget
from bot.net import Fetcher, NetSettings
from bot.poller import Poller, PollSettings
from bot.storage.db import Database
from bot.storage.store import ConfigFeed, Store
from tests.fakes.loopback import start_app

POSTGRES_URL = os.environ.get("FEEDHOOK_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL no other test run can see; dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedhook.db'}"
        return
    assert POSTGRES_URL is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = POSTGRES_URL.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture
async def store(db: Database) -> Store:
    return Store(db)


@dataclass
class Doc:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FeedServer:
    """A loopback HTTP server whose documents tests change between polls."""

    base: str
    docs: dict[str, Doc]
    hits: dict[str, int]

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    docs: dict[str, Doc] = {}
    hits: dict[str, int] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        doc = docs.get(request.path)
        if doc is None:
            return web.Response(status=404, text="not found")
        headers = dict(doc.headers)
        if doc.etag:
            headers["ETag"] = doc.etag
            if request.headers.get("If-None-Match") == doc.etag:
                return web.Response(status=304, headers=headers)
        if doc.last_modified:
            headers["Last-Modified"] = doc.last_modified
            if request.headers.get("If-Modified-Since") == doc.last_modified:
                return web.Response(status=304, headers=headers)
        headers["Content-Type"] = doc.content_type
        return web.Response(status=doc.status, body=doc.body, headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner, base = await start_app(app)
    yield FeedServer(base, docs, hits)
    await runner.cleanup()


# -- polling: a clock, a fetcher for loopback servers, a poller, config subscriptions --

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    settings = NetSettings(
        user_agent="feedhook-test",
        allowed_hosts=frozenset({"127.0.0.1"}),
        total_timeout=5,
        per_host_concurrency=4,
    )
    async with Fetcher(settings) as f:
        yield f


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_poller(store: Store, fetcher: Fetcher, clock: Clock) -> Callable[..., Poller]:
    def make(**overrides: object) -> Poller:
        settings = PollSettings(**{"interval": 600.0, "jitter": 0.0, **overrides})  # type: ignore[arg-type]
        return Poller(store, fetcher, settings, clock=clock, rng=lambda: 0.5)

    return make


Subscribe = Callable[..., Awaitable[None]]


@pytest.fixture
def subscribe(store: Store) -> Subscribe:
    """Add a config subscription, keeping the ones added before (a config sync disables
    whatever the file no longer lists)."""
    feeds: list[ConfigFeed] = []

    async def add(url: str, *, backfill: int = 0, hook: int = 1) -> None:
        feeds.append(ConfigFeed(url, WebhookTarget(hook, "token"), backfill=backfill))
        await store.sync_config_feeds(feeds, now=T0)

    return add


@pytest.fixture
async def relay(tmp_path: Path, feed_server: FeedServer) -> AsyncIterator[Callable[..., Any]]:
    """Starts relay-mode Apps on the fake Discord (tests/relay.py)."""
    from tests.relay import relay_harness

    async for start in relay_harness(tmp_path, feed_server):
        yield start


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    assert POSTGRES_URL is not None
    name = f"feedhook_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.split("?", 1)[0].rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
