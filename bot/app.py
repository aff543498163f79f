"""Wire config, storage, fetcher and poller together; APScheduler owns the timers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import __version__
from bot.config import Config, ConfigError
from bot.delivery import Deliverer, DeliverySettings
from bot.hooks import hash_token
from bot.http import OpsServer, Readiness
from bot.metrics import Metrics
from bot.models import SendError
from bot.net import Fetcher, NetSettings
from bot.notices import NoticeKind, notice_body, notice_text
from bot.poller import Clock, Poller, PollSettings, utcnow
from bot.push import SUBSCRIBER_TICK_SECONDS, PushEndpoints, WebSubSubscriber
from bot.services import FeedService, ServiceSettings
from bot.sources.resolve import SourceResolver
from bot.staleness import WINDOW, StaleWatch
from bot.storage.db import Database, DatabaseError
from bot.storage.filelock import DatabaseFileLock, sqlite_path
from bot.storage.gateway_lock import CHECK_INTERVAL as GATEWAY_CHECK_INTERVAL
from bot.storage.gateway_lock import TAKEOVER_DELAY, GatewayLock
from bot.storage.store import ConfigFeed, ConfigHook, NoticeTarget, Pruned, Store

if TYPE_CHECKING:
    from bot.discord.client import FeedhookBot

log = logging.getLogger(__name__)


# Objects a container allocation count must reach before a young-generation
# collection (CPython's default is 700). Parsing allocates in bulk: at 700 a bench
# cycle ran ~150 collections, at 10 000 it runs ~8, and the cyclic garbage that
# waits longer (BeautifulSoup trees) is a few MB at most.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Tune the garbage collector for a long-running relay, set up but not yet polling.

    Everything alive now (modules, SQLAlchemy metadata, discord.py) lives as long
    as the process: freezing it keeps full collections from walking it again
    (60 ms each in the bench, twice a cycle). Then collections run less often.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class BotError(Exception):
    """The Discord bot cannot start; ``str(e)`` says what to do."""


class BotUnreachable(BotError):
    """Discord could not be reached to log in: worth trying again later."""


def _log_bot_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("the Discord bot stopped: %s", error, exc_info=error)


USER_AGENT = f"feedhook/{__version__} (+https://github.com/feedhook/feedhook)"
# How often the scheduler looks for due sources; polls themselves follow each
# source's own interval, so this only bounds how late a due poll can start: on average
# half of it is added to the time an item waits for its poll (make bench-latency).
MAX_TICK_SECONDS = 2.0
DELIVERY_TICK_SECONDS = 0.5
STALE_CHECK_SECONDS = 600.0
# Notices (failing for a day, working again, stale) are judged in hours: a look every
# five minutes posts them soon enough without a staleness query each tick.
NOTICE_CHECK_SECONDS = 300.0
# Every process beats this often; one silent for DEAD_AFTER_SECONDS is taken for dead
# and its claims are freed, so its work resumes elsewhere well within 30 s of a crash.
HEARTBEAT_SECONDS = 3.0
DEAD_AFTER_SECONDS = 15.0
# A sender stops this long before the others could take its process for dead.
FENCE_MARGIN = 5.0
ROLES: Final = frozenset({"poller", "delivery", "bot"})
# Retention runs hourly, the first time a few minutes after start.
PRUNE_EVERY_SECONDS = 3600.0
PRUNE_FIRST_AFTER_SECONDS = 300.0
# How often a relay on SQLite checks that its database file is still there.
DATABASE_FILE_CHECK_SECONDS = 2.0
STOP_TIMEOUT = 8.0


def net_settings(config: Config) -> NetSettings:
    polling = config.polling
    return NetSettings(
        user_agent=USER_AGENT,
        total_timeout=polling.timeout,
        connect_timeout=min(10.0, polling.timeout),
        max_body_bytes=polling.max_body_bytes,
        allow_private_addresses=polling.allow_private_addresses,
        # X bridges usually run on the LAN: their hosts pass the SSRF guard like allowed_hosts.
        allowed_hosts=frozenset(polling.allowed_hosts) | config.sources.bridge_hosts(),
        per_host_concurrency=polling.per_host_concurrency,
        max_server_delay=polling.max_interval,
    )


def source_resolver(config: Config) -> SourceResolver:
    """Fetching state for every source kind; one per process (it remembers working bridges)."""
    return SourceResolver(config.sources.settings())


def poll_settings(config: Config) -> PollSettings:
    polling = config.polling
    return PollSettings(
        interval=polling.interval,
        max_interval=polling.max_interval,
        max_new_per_poll=polling.max_new_per_poll,
        jitter=polling.jitter,
        concurrency=polling.concurrency,
        claim_lease=max(300.0, polling.timeout * 4),
        # push is on only where hubs can reach us
        push_safety_interval=polling.push_safety_interval if config.http.public_url else None,
    )


def delivery_settings(config: Config) -> DeliverySettings:
    delivery = config.delivery
    return DeliverySettings(
        api_base=config.discord.api_base,
        user_agent=USER_AGENT,
        global_rate=delivery.global_rate,
        batch_threshold=delivery.batch_threshold,
        concurrency=delivery.concurrency,
        timeout=delivery.timeout,
        lease=delivery.lease,
        max_age=delivery.max_age,
        error_budget=delivery.error_budget,
        bot_token=config.discord.token,
    )


def config_feeds(
    config: Config, tag_ids: Mapping[int, Sequence[int]] | None = None
) -> list[ConfigFeed]:
    """The [[feeds]] entries as subscriptions; ``tag_ids``: entry index -> its forum_tags
    given by name, resolved (:func:`resolve_forum_tag_names`)."""
    tag_ids = tag_ids or {}
    return [
        ConfigFeed(
            url=f.url,
            target=f.target,
            backfill=f.backfill,
            options=f.shape(tag_ids.get(index)).to_options(),
        )
        for index, f in enumerate(config.feeds)
    ]


async def resolve_forum_tag_names(config: Config) -> dict[int, tuple[int, ...]]:
    """Per [[feeds]] entry with forum_tags given by name, the tag ids: the webhook names its
    channel, and the bot reads that forum's tags. An unknown name, an unknown webhook or a
    channel the bot cannot read as a forum is a :class:`ConfigError` naming the key; Discord
    not answering now (a timeout, 429, 5xx) is logged, and the entry's posts carry only the
    tags given by id until the next start."""
    wanted = {i: f for i, f in enumerate(config.feeds) if f.forum_tag_names()}
    if not wanted:
        return {}
    api = config.discord.api_base.rstrip("/")
    headers = {"Authorization": f"Bot {config.discord.token}", "User-Agent": USER_AGENT}
    resolved: dict[int, tuple[int, ...]] = {}
    timeout = aiohttp.ClientTimeout(total=config.delivery.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index, entry in wanted.items():
            key = f"feeds[{index}].forum_tags"
            ids = [int(t) for t in entry.forum_tags or () if str(t).strip().isdigit()]
            resolved[index] = tuple(ids)
            target = entry.target
            try:
                async with session.get(
                    f"{api}/webhooks/{target.webhook_id}/{target.token}"
                ) as resp:
                    status = resp.status
                    hook = await resp.json(content_type=None) if status == 200 else None
                if status in (401, 404):
                    raise ConfigError(
                        f"{key}: Discord does not know the entry's webhook (HTTP {status}); "
                        "check its URL"
                    )
                channel_id = hook.get("channel_id") if isinstance(hook, dict) else None
                channel = None
                if channel_id is not None:
                    async with session.get(f"{api}/channels/{channel_id}", headers=headers) as resp:
                        status = resp.status
                        channel = await resp.json(content_type=None) if status == 200 else None
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, channel = 0, None
                log.warning("%s: %s", key, str(exc) or type(exc).__name__)
            if status in (0, 429) or status >= 500:
                log.warning(
                    "%s: Discord did not answer (HTTP %s); posts carry only the tags given "
                    "by id until the next start",
                    key,
                    status or "none",
                )
                continue
            if not isinstance(channel, dict) or "available_tags" not in channel:
                raise ConfigError(
                    f"{key}: the bot cannot read the webhook's channel as a forum (HTTP "
                    f"{status}); is it a forum channel the bot can see?"
                )
            by_name = {
                str(t.get("name", "")).casefold(): int(t["id"])
                for t in channel["available_tags"]
                if isinstance(t, dict) and "id" in t
            }
            for name in entry.forum_tag_names():
                if name.casefold() not in by_name:
                    names = ", ".join(str(t.get("name")) for t in channel["available_tags"])
                    raise ConfigError(
                        f"{key}: the forum has no tag named {name!r}; its tags: {names or 'none'}"
                    )
                ids.append(by_name[name.casefold()])
            resolved[index] = tuple(dict.fromkeys(ids))
    return resolved


class App:
    """The running relay: poller on a timer, until :meth:`stop`."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utcnow,
        bot_options: Mapping[str, Any] | None = None,
        roles: Iterable[str] = ROLES,
    ) -> None:
        self.config = config
        self.roles = frozenset(roles)
        self.process_id: int | None = None
        # monotonic time since this process's heartbeats have been going through
        self._beating_since: float | None = None
        # Extra discord.py Client options (tests shorten guild_ready_timeout).
        self.bot_options = dict(bot_options or {})
        self.clock = clock
        self.db = Database(config.database.url)
        self.store = Store(self.db)
        self.fetcher = Fetcher(net_settings(config))
        self.sources = source_resolver(config)
        # This process's counters; /metrics shows them when http.listen is set.
        self.metrics = Metrics(__version__)
        self.poller = Poller(
            self.store,
            self.fetcher,
            poll_settings(config),
            clock=clock,
            sources=self.sources,
            metrics=self.metrics,
        )
        self.deliverer = Deliverer(
            self.store, delivery_settings(config), clock=clock, metrics=self.metrics
        )
        # Pushed items: WebSub callbacks and inbound hooks (routes on the HTTP server),
        # and the subscriber that asks hubs to push (only where hubs can reach us).
        self.push = PushEndpoints(
            self.store,
            self.poller,
            hook_rate_per_minute=config.http.hook_rate_per_minute,
            max_push_bytes=config.polling.max_body_bytes,
            clock=clock,
            metrics=self.metrics,
            # only a process that delivers takes what it queued at once
            queued=self.deliverer.wake if "delivery" in self.roles else None,
        )
        if "delivery" in self.roles:
            self.poller.queued = self.deliverer.wake
        self.websub = (
            WebSubSubscriber(
                self.store, self.fetcher, public_url=config.http.public_url, clock=clock
            )
            if config.http.public_url
            else None
        )
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.stale_watch = StaleWatch()
        # The operator endpoints (bot.http), on http.listen (or `run --listen`).
        self.http: OpsServer | None = None
        self.bot: FeedhookBot | None = None
        self._bot_task: asyncio.Task[None] | None = None
        # PostgreSQL: the processes with the bot role take turns holding the gateway.
        self.gateway_lock: GatewayLock | None = None
        self._gateway_task: asyncio.Task[None] | None = None
        database_file = sqlite_path(config.database.url)
        self.file_lock = DatabaseFileLock(database_file) if database_file else None
        # Set when the relay must stop on its own (its database file vanished);
        # run_until_signalled then stops and raises it.
        self.fatal: str | None = None
        self._stop_requested = asyncio.Event()
        self._started = False
        self._stopped = False

    async def start(self, *, settle: bool = False) -> None:
        """Open everything and start the timers; ``settle`` (``feedhook run``) tunes
        the garbage collector first (:func:`settle_heap`), before any poll runs.

        On SQLite it first takes the database file's lock (one relay per file) and
        raises :class:`DatabaseError` naming the process that holds it."""
        if self.file_lock is not None:
            self.file_lock.acquire()
        await self.db.upgrade()
        if self.file_lock is not None:
            self.file_lock.remember_database()
        if self.db.dialect == "sqlite":
            # One process per SQLite file: claims still set were left by a crash.
            released = await self.store.release_claims()
            in_doubt = await self.store.release_deliveries(now=self.clock())
            if released or in_doubt:
                log.info(
                    "released claims left by an earlier run sources=%d deliveries_in_doubt=%d",
                    released,
                    in_doubt,
                )
            # and so are the process rows it left
            await self.store.forget_processes()
        tag_ids = await resolve_forum_tag_names(self.config)
        hook_urls = await self.store.sync_config_hooks(
            [ConfigHook(hash_token(h.token), h.template) for h in self.config.hooks],
            now=self.clock(),
        )
        await self.store.sync_config_feeds(
            config_feeds(self.config, tag_ids)
            + [
                ConfigFeed(
                    url=url,
                    target=hook.target,
                    options={"batch": False, "forum": True} if hook.forum else {"batch": False},
                )
                for url, hook in zip(hook_urls, self.config.hooks, strict=True)
            ],
            now=self.clock(),
        )
        if self.config.http.public_url and not self.config.http.listen:
            log.warning(
                "http.public_url is set but this process does not listen (http.listen is "
                "empty): WebSub hubs and hook senders must reach another feedhook process "
                "at that URL"
            )
        elif self.config.hooks and not self.config.http.listen:
            log.warning(
                "[[hooks]] are configured but http.listen is empty: nothing receives their "
                "requests; set http.listen (and put a reverse proxy in front of it)"
            )
        await self._register()
        await self.fetcher.__aenter__()
        self.deliverer.open()
        # Heartbeats, the others' takeover, the delivery share: every few seconds.
        self._every(self.beat, HEARTBEAT_SECONDS, "heartbeat", first=self.clock())
        if "poller" in self.roles:
            self._every(
                self.poller.scheduled_tick,
                min(MAX_TICK_SECONDS, max(0.2, self.config.polling.interval / 4)),
                "poll-tick",
                first=self.clock(),
            )
            # Staleness is judged in hours and days: a look every few minutes is plenty.
            self._every(self.check_staleness, STALE_CHECK_SECONDS, "stale-check")
            if self.websub is not None:
                self._every(self.websub.tick, SUBSCRIBER_TICK_SECONDS, "websub", first=self.clock())
        if "delivery" in self.roles:
            # Delivery checks the outbox often: a new item should reach Discord within
            # a second or two of being found.
            self._every(
                self.deliverer.tick, DELIVERY_TICK_SECONDS, "deliver-tick", first=self.clock()
            )
            # Notices about failing or stale sources: judged in hours and days.
            self._every(self.send_notices, NOTICE_CHECK_SECONDS, "notices")
        # Retention: every process has the job; the oldest live one does the pruning.
        self._every(
            self.prune,
            PRUNE_EVERY_SECONDS,
            "prune",
            first=self.clock() + timedelta(seconds=PRUNE_FIRST_AFTER_SECONDS),
        )
        if self.file_lock is not None:
            self._every(
                self.check_database_file, DATABASE_FILE_CHECK_SECONDS, "database-file-check"
            )
        if settle:
            settle_heap()
        self.scheduler.start()
        if self.config.http.listen:
            self.http = OpsServer(
                self.config.http.listen,
                metrics=self.metrics,
                refresh=self.refresh_metrics,
                alive=lambda: bool(self.scheduler.running),
                readiness=self.readiness,
            )
            self.push.add_routes(self.http.app)
            try:
                await self.http.start()
            except OSError as exc:
                self.http = None
                raise DatabaseError(
                    f"cannot listen on {self.config.http.listen} (http.listen): "
                    f"{exc.strerror or exc}; pick a free port, or `run --listen HOST:PORT`"
                ) from None
        if self.config.discord.token and "bot" in self.roles:
            if self.db.dialect == "postgresql":
                self.gateway_lock = GatewayLock(self.config.database.url)
                self._gateway_task = asyncio.create_task(
                    self._hold_gateway(self.gateway_lock), name="gateway-lock"
                )
                self._gateway_task.add_done_callback(_log_bot_exit)
            else:
                await self._start_bot()
        self._started = True
        log.info(
            "feedhook started version=%s feeds=%d roles=%s process=%s",
            __version__,
            len(self.config.feeds),
            ",".join(sorted(self.roles)),
            self.process_id,
        )
        if (
            not self.config.feeds
            and not self.config.discord.token
            and not (await self.store.counts())["subscriptions"]
        ):
            log.warning(
                "nothing to relay: add [[feeds]] tables to the config file "
                "(see config.example.toml) or set discord.token"
            )

    def _every(
        self,
        job: Callable[[], Awaitable[object]],
        seconds: float,
        job_id: str,
        *,
        first: datetime | None = None,
    ) -> None:
        """Run ``job`` every ``seconds`` (from ``first``, else one period from now),
        never overlapping itself; missed runs collapse into one."""
        self.scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **({"next_run_time": first} if first is not None else {}),
        )

    async def _start_bot(self) -> None:
        # Imported here: the relay runs without discord.py's gateway machinery.
        from bot.discord.client import FeedhookBot, LoginError, point_at

        discord_config = self.config.discord
        point_at(discord_config.api_base, discord_config.gateway_url)
        services = FeedService(
            self.store,
            self.fetcher,
            ServiceSettings(
                max_subscriptions_per_guild=discord_config.max_subscriptions_per_guild,
                min_interval=self.config.polling.min_interval,
                public_url=self.config.http.public_url,
            ),
            # without the delivery role, /feed test goes through the delivery processes
            send_now=self.deliverer.send_now if "delivery" in self.roles else None,
            clock=self.clock,
            sources=self.sources,
        )
        self.bot = FeedhookBot(services, guild_ids=discord_config.guild_ids, **self.bot_options)
        try:
            await self.bot.log_in(discord_config.token)
        except LoginError as exc:
            raise (BotError if exc.refused else BotUnreachable)(str(exc)) from None
        self._bot_task = asyncio.create_task(self.bot.connect(reconnect=True), name="discord-bot")
        self._bot_task.add_done_callback(_log_bot_exit)

    async def _close_bot(self) -> None:
        bot, self.bot = self.bot, None
        task, self._bot_task = self._bot_task, None
        if bot is not None:
            await bot.close()
        if task is not None and not task.done():
            # connect() returns once the client is closed; give it a moment, then stop it
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)

    async def _hold_gateway(self, lock: GatewayLock) -> None:
        """Take the gateway lock when it is free and connect the bot while holding it;
        close the session the moment the lock is lost (see bot.storage.gateway_lock)."""
        last_good = time.monotonic()
        while True:
            if lock.held:
                started = time.monotonic()
                # A check that came back late (a stalled event loop) counts as lost too:
                # meanwhile another process may have taken over.
                held = await lock.still_held() and started - last_good < TAKEOVER_DELAY - 3
                if held and self._bot_task is not None and self._bot_task.done():
                    log.warning("the gateway session ended; handing the gateway lock on")
                    held = False
                if held:
                    last_good = started
                else:
                    log.warning("lost the gateway lock: closing this process's gateway session")
                    await self._give_up_gateway(lock)
            elif await lock.try_acquire():
                await self._mark_gateway(holds=True)
                # The previous holder may not have noticed yet that it lost the lock.
                log.info("took the gateway lock; connecting in %.0fs", TAKEOVER_DELAY)
                await asyncio.sleep(TAKEOVER_DELAY)
                if await lock.still_held():
                    last_good = time.monotonic()
                    try:
                        await self._start_bot()
                    except BotUnreachable as exc:
                        log.warning("%s; trying again shortly", exc)
                        await self._give_up_gateway(lock)
                    except BotError as exc:
                        self.fatal = str(exc)
                        self._stop_requested.set()
                        return
                    continue
                await self._mark_gateway(holds=False)
            await asyncio.sleep(GATEWAY_CHECK_INTERVAL)

    async def _give_up_gateway(self, lock: GatewayLock) -> None:
        await self._close_bot()
        await lock.release()
        await self._mark_gateway(holds=False)

    async def _mark_gateway(self, *, holds: bool) -> None:
        if self.process_id is not None:
            with suppress(Exception):  # status only; the lock is what counts
                await self.store.set_gateway_holder(self.process_id, holds)

    async def _register(self) -> None:
        self.process_id = await self.store.register_process(
            host=socket.gethostname(), pid=os.getpid(), roles=sorted(self.roles), now=self.clock()
        )
        self.poller.process_id = self.deliverer.process_id = self.process_id

    async def beat(self) -> None:
        """Say this process is alive, take over the claims of processes that stopped
        beating, and take this process's share of the deployment's delivery limits."""
        if self.process_id is None:
            return
        started = time.monotonic()
        now = self.clock()
        dead_after = timedelta(seconds=DEAD_AFTER_SECONDS)
        try:
            if not await self.store.heartbeat(self.process_id, now=now):
                # Taken for dead (a long pause, a network cut): its claims were freed
                # and may be worked on by others. What it still holds is dropped, and
                # claims from now on carry a new id.
                log.warning(
                    "this process was taken for dead by the others; registering again process=%d",
                    self.process_id,
                )
                self.deliverer.claims_valid_until = 0.0
                self._beating_since = None
                await self._register()
        except Exception:
            log.exception("heartbeat failed")
            self._beating_since = None
            return
        postgres = self.db.dialect == "postgresql"
        if postgres:
            # Others take this process for dead DEAD_AFTER after this beat: its senders
            # must stop before, or they would send rows someone else now holds.
            self.deliverer.claims_valid_until = started + DEAD_AFTER_SECONDS - FENCE_MARGIN
        if self._beating_since is None:
            self._beating_since = started
        try:
            # Only a process that has itself been beating for DEAD_AFTER may judge the
            # others: after a database outage, everyone's last beat is old.
            if postgres and started - self._beating_since >= DEAD_AFTER_SECONDS:
                reaped = await self.store.reap_dead_processes(now=now, dead_after=dead_after)
                if reaped.processes:
                    log.warning(
                        "took over from processes that stopped beating processes=%s "
                        "sources=%d deliveries=%d",
                        list(reaped.processes),
                        reaped.sources,
                        reaped.deliveries,
                    )
            live = await self.store.live_processes(now=now, dead_after=dead_after)
        except Exception as exc:
            log.warning("taking over from silent processes failed: %s", exc)
            return
        senders = sum("delivery" in p.roles for p in live)
        self.deliverer.limiter.share(senders or 1)

    async def prune(self) -> Pruned | None:
        """Prune rows older than ``retention.max_age``, when this is the oldest live
        process (one pruner per deployment); None when another one does it."""
        now = self.clock()
        try:
            live = await self.store.live_processes(
                now=now, dead_after=timedelta(seconds=DEAD_AFTER_SECONDS)
            )
            if not live or min(p.id for p in live) != self.process_id:
                return None
            pruned = await self.store.prune(
                now=now, max_age=timedelta(seconds=self.config.retention.max_age)
            )
        except Exception:
            log.exception("pruning old rows failed")
            return None
        if pruned.items or pruned.deliveries:
            log.info(
                "pruned rows older than retention.max_age items=%d deliveries=%d",
                pruned.items,
                pruned.deliveries,
            )
        return pruned

    async def check_staleness(self) -> set[int]:
        """Log a warning for each source that turned stale since the last look."""
        try:
            health = await self.store.source_health()
            times = await self.store.recent_item_times(per_source=WINDOW)
        except Exception:
            log.exception("staleness check failed")
            return set()
        return self.stale_watch.update(health, times, self.clock())

    async def refresh_metrics(self) -> None:
        """The gauges /metrics reads from the database (and this process's gateway)."""
        self.metrics.gateway_connected.set(1 if self._gateway_connected() else 0)
        self.metrics.set_database_gauges(
            outbox_pending=await self.store.outbox_pending(),
            sources=await self.store.source_health_counts(self.stale_watch.stale),
        )

    def _gateway_connected(self) -> bool:
        return self.bot is not None and self.bot.gateway_open()

    async def readiness(self) -> Readiness:
        """Ready when the database answers and, for a process that should run the bot, the
        gateway is connected here or held by another live process."""
        missing: list[str] = []
        try:
            await self.store.ping()
        except Exception as exc:
            missing.append(f"database: {type(exc).__name__}")
        wants_bot = bool(self.config.discord.token) and "bot" in self.roles
        if wants_bot and not self._gateway_connected():
            held = False
            if not missing and self.db.dialect == "postgresql":
                held = await self.store.gateway_holder_alive(
                    now=self.clock(), dead_after=timedelta(seconds=DEAD_AFTER_SECONDS)
                )
            if not held:
                missing.append("gateway: not connected here and no other live process holds it")
        return Readiness(ready=not missing, missing=tuple(missing))

    async def send_notices(self) -> int:
        """Post the notices owed (bot.notices): a source failing for longer than
        polling.notify_after (once a day while it fails), working again, turned stale.
        Each is claimed in the database first, so no process posts one twice; one that
        cannot be posted is released and tried at the next look. Returns how many went out."""
        now = self.clock()
        # the same look the stale-check job takes (it also keeps /metrics' stale count)
        await self.check_staleness()
        stale = self.stale_watch.stale
        try:
            owed: list[tuple[NoticeKind, list[NoticeTarget]]] = [
                (
                    "failing",
                    await self.store.claim_failure_notices(
                        now=now, notify_after=timedelta(seconds=self.config.polling.notify_after)
                    ),
                ),
                ("recovered", await self.store.claim_recovery_notices()),
                ("stale", await self.store.claim_stale_notices(stale, now=now)),
            ]
        except Exception:
            log.exception("notice check failed")
            return 0
        posted = 0
        for kind, notices in owed:
            for notice in notices:
                body = notice_body(kind, notice)
                try:
                    message_id = await self.deliverer.send_now(notice.target, body)
                except SendError as exc:
                    await self.store.release_notice(notice, kind)
                    log.warning(
                        "notice not posted subscription=%d kind=%s error=%s",
                        notice.subscription_id,
                        kind,
                        exc,
                    )
                    continue
                posted += 1
                await self.store.log_notice(
                    notice.subscription_id,
                    reason=f"{kind}: {notice_text(kind, notice)}",
                    message_id=message_id,
                    channel_id=notice.target.thread_id or notice.channel_id,
                    now=now,
                )
                log.info(
                    "notice posted subscription=%d kind=%s url=%s",
                    notice.subscription_id,
                    kind,
                    notice.source_url,
                )
        return posted

    async def check_database_file(self) -> None:
        """Stop the relay when its SQLite file (or its lock file) was removed or replaced
        under it. A coroutine so that APScheduler runs it on the event loop: the stop
        event is not thread-safe."""
        assert self.file_lock is not None
        if self.fatal is not None:
            return
        # One line, printed by the CLI as the run ends (a log line as well would say it twice).
        if reason := self.file_lock.database_gone():
            self.fatal = (
                f"{reason}; stopped so that nothing is posted twice: restore the file and "
                "start again, or start afresh (a new database counts what feeds show now as seen)"
            )
        elif reason := self.file_lock.lock_gone():
            self.fatal = (
                f"{reason}; stopped so that two relays never share it: start again once no "
                "other feedhook run uses the database"
            )
        else:
            return
        self._stop_requested.set()

    async def stop(self) -> None:
        if self._stopped:
            return  # a second stop (a test's teardown after the test stopped it) is a no-op
        self._stopped = True
        if self._gateway_task is not None:
            self._gateway_task.cancel()
            with suppress(asyncio.CancelledError, Exception):  # logged by its callback
                await self._gateway_task
        await self._close_bot()
        if self.gateway_lock is not None:
            await self.gateway_lock.release()
        if self.scheduler.running:
            # No new ticks; the ones running finish inside the stops below (shutting
            # the scheduler down first would cancel them halfway through a query).
            self.scheduler.pause()
        # They all stop claiming at once; requests in flight get the grace period.
        await asyncio.gather(
            self.poller.stop(grace=STOP_TIMEOUT - 3),
            self.deliverer.stop(grace=STOP_TIMEOUT - 3),
            *([self.websub.stop(grace=STOP_TIMEOUT - 3)] if self.websub is not None else []),
        )
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self.fetcher.close()
        await self.deliverer.close()
        if self.process_id is not None:
            with suppress(Exception):  # the others forget it after DEAD_AFTER_SECONDS anyway
                await self.store.deregister_process(self.process_id, now=self.clock())
        await self.db.dispose()
        if self.file_lock is not None:
            self.file_lock.release()
        if self._started:  # a start that failed says why in its own line
            log.info("feedhook stopped")

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = self._stop_requested
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.start(settle=True)
        except BaseException:
            await self.stop()
            raise
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await asyncio.wait_for(self.stop(), timeout=STOP_TIMEOUT)
        if self.fatal is not None:
            raise DatabaseError(self.fatal)
