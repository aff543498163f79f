"""``feedhook run / check / status / db upgrade``.

Exit codes: 0 success, 1 the operation failed (bad source, database down),
2 bad usage or configuration. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from bot import __version__
from bot.app import (
    DEAD_AFTER_SECONDS,
    HEARTBEAT_SECONDS,
    ROLES,
    App,
    BotError,
    net_settings,
    source_resolver,
)
from bot.config import Config, ConfigError, load_config
from bot.demo import run_demo
from bot.hooks import is_hook
from bot.http import parse_listen
from bot.logs import setup_logging
from bot.models import Item, SourceHealth, SubscriptionState
from bot.net import Fetcher, FetchError
from bot.opml import OpmlError, parse_opml, write_opml
from bot.opml_io import ImportResult, export_entries, import_outlines, unique_outlines
from bot.poller import build_items, link_counts
from bot.render import render_item, webhook_username
from bot.services import BOT_REMOVED, FeedService, ServiceSettings
from bot.shaping import Shape, render_message
from bot.sources.feed import ParsedFeed, ParseError
from bot.sources.forms import SourceFormError, ensure_usable, parse_source
from bot.sources.resolve import fetch_source, parse_off_loop
from bot.staleness import WINDOW, stale_message, with_stale
from bot.storage.db import Database, DatabaseError, head_revision
from bot.storage.filelock import running_relay, sqlite_path
from bot.storage.store import REMOVED_FROM_CONFIG, ProcessInfo, PushState, Store
from bot.webhooks import WebhookURLError, parse_webhook_url
from bot.websub import discover

log = logging.getLogger("feedhook")


class CommandError(Exception):
    """A command failed in a way the user can act on; the message is the one line shown."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedhook", description="Relay RSS, Atom and social feeds into Discord channels."
    )
    parser.add_argument(
        "--version",
        action=_PrintVersion,
        nargs=0,
        help="show feedhook's version and its main libraries' versions, then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="PATH",
            help="configuration file (default: ./config.toml when it exists)",
        )
        return p

    run = with_config(sub.add_parser("run", help="poll sources and relay new items until stopped"))
    run.add_argument(
        "--role",
        type=parse_roles,
        default=None,
        metavar="ROLES",
        help="what this process does: a comma-separated subset of poller, delivery, bot, "
        "or all (the default); several processes on one PostgreSQL database can split the work",
    )
    run.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here (overrides http.listen and "
        "FEEDHOOK_HTTP_LISTEN; several processes sharing one config need a port each)",
    )
    check = with_config(sub.add_parser("check", help="fetch and parse one source; store nothing"))
    check.add_argument(
        "source",
        nargs="?",
        help="a feed URL, a web page that links its feed, or x:handle, bsky:handle, "
        "@user@instance, a YouTube or Reddit URL (with --as-feed: default, that entry's url)",
    )
    check.add_argument("--json", action="store_true", help="print webhook request bodies as JSON")
    check.add_argument(
        "--as-feed",
        type=int,
        default=None,
        metavar="N",
        help="render with the settings of the config's [[feeds]] entry N (0-based): its "
        "templates, filters and mentions",
    )
    status = with_config(sub.add_parser("status", help="show each source's health"))
    status.add_argument(
        "--subscription",
        type=int,
        default=None,
        metavar="ID",
        help="show that subscription's latest delivery attempts (the delivery log) instead",
    )
    importer = with_config(
        sub.add_parser("import", help="subscribe a webhook to every feed of an OPML file")
    )
    importer.add_argument("file", metavar="FILE.opml", help="an OPML file a feed reader exported")
    importer.add_argument(
        "--webhook", required=True, metavar="URL", help="the Discord webhook to post them to"
    )
    importer.add_argument("--dry-run", action="store_true", help="check every feed, store nothing")
    exporter = with_config(
        sub.add_parser("export", help="write the subscriptions as OPML 2.0 to stdout")
    )
    exporter.add_argument(
        "--guild", type=int, default=None, metavar="ID", help="only this server's subscriptions"
    )
    demo = sub.add_parser(
        "demo", help="watch items travel from a local feed to a local stand-in for Discord"
    )
    demo.add_argument("--items", type=int, default=5, help="stop after N messages (0: never)")
    demo.add_argument("--every", type=float, default=3.0, help="seconds between new items")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply schema migrations"))
    return parser


@dataclass(frozen=True, slots=True)
class RoleChoice:
    """``--role``: what the process does, and which roles were named one by one."""

    roles: frozenset[str]
    named: frozenset[str]


class _PrintVersion(argparse.Action):
    """``--version``, printed as lines (argparse's own action re-wraps the text)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """feedhook's version and those of the libraries whose behaviour it depends on most."""
    parts = [f"feedhook {__version__}"]
    for name in ("discord.py", "aiohttp", "feedparser", "SQLAlchemy"):
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return "\n".join(parts)


def parse_roles(text: str) -> RoleChoice:
    """``--role``: "all", or a comma-separated subset of poller, delivery, bot."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    if names == {"all"}:
        return RoleChoice(ROLES, named=frozenset())
    unknown = names - ROLES
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(sorted(unknown)) or 'nothing'} is not a role; give a comma-separated "
            "subset of poller, delivery, bot, or all"
        )
    return RoleChoice(frozenset(names), named=frozenset(names))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        # The demo is self-contained: it ignores any config.toml lying around.
        setup_logging(Config().logging.model_copy(update={"level": "WARNING"}))
        try:
            asyncio.run(run_demo(items=args.items, every=args.every))
        except KeyboardInterrupt:
            return 130
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"feedhook: {exc}", file=sys.stderr)
        return 2
    logging_config = config.logging
    if args.command != "run" and logging_config.level == "INFO":
        # One-shot commands answer on stdout/stderr themselves; INFO lines would only
        # bury that answer. An explicit DEBUG still shows everything.
        logging_config = logging_config.model_copy(update={"level": "WARNING"})
    setup_logging(logging_config)
    try:
        if args.command == "run":
            roles: RoleChoice = args.role or RoleChoice(ROLES, named=frozenset())
            # "bot" named (not only implied by "all", the default) without a token
            if "bot" in roles.named and not config.discord.token:
                print(
                    "feedhook: --role bot answers slash commands, which needs a bot token: set "
                    "discord.token in the config file or FEEDHOOK_DISCORD_TOKEN",
                    file=sys.stderr,
                )
                return 2
            if args.listen is not None:
                try:
                    parse_listen(args.listen)
                except ValueError as exc:
                    print(f"feedhook: --listen {args.listen}: {exc}", file=sys.stderr)
                    return 2
                config = config.model_copy(
                    update={"http": config.http.model_copy(update={"listen": args.listen})}
                )
            asyncio.run(App(config, roles=roles.roles).run_until_signalled())
        elif args.command == "check":
            source, shape = args.source, None
            if args.as_feed is not None:
                count = len(config.feeds)
                if not 0 <= args.as_feed < count:
                    entries = f"{count} [[feeds]] entr{'y' if count == 1 else 'ies'}"
                    print(
                        f"feedhook: --as-feed {args.as_feed}: the config has {entries}"
                        + (f"; give 0 to {count - 1}" if count else ""),
                        file=sys.stderr,
                    )
                    return 2
                entry = config.feeds[args.as_feed]
                source, shape = source or entry.url, entry.shape()
            if source is None:
                print("feedhook: check needs a SOURCE (or --as-feed N)", file=sys.stderr)
                return 2
            asyncio.run(
                check_source(config, source, as_json=args.json, out=sys.stdout, shape=shape)
            )
        elif args.command == "status":
            require_sqlite_file(config.database.url)
            if args.subscription is not None:
                asyncio.run(print_delivery_log(config, args.subscription, out=sys.stdout))
            else:
                asyncio.run(print_status(config, out=sys.stdout))
        elif args.command == "db":
            asyncio.run(upgrade_database(config))
        elif args.command == "import":
            try:
                data = Path(args.file).read_bytes()
            except OSError as exc:
                raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from None
            return asyncio.run(
                import_opml(config, args.file, data, args.webhook, dry_run=args.dry_run)
            )
        elif args.command == "export":
            asyncio.run(export_opml(config, guild_id=args.guild, out=sys.stdout))
    except ConfigError as exc:  # found at start: forum tag names Discord does not know
        print(f"feedhook: config error in {args.config or 'config.toml'}: {exc}", file=sys.stderr)
        return 2
    except (CommandError, DatabaseError, BotError) as exc:
        print(f"feedhook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


# -- check ---------------------------------------------------------------------------


async def check_source(
    config: Config, source: str, *, as_json: bool, out: TextIO, shape: Shape | None = None
) -> None:
    """Show every entry of ``source`` as it would be posted; with ``shape`` (``--as-feed``)
    with those settings, leaving out (on stderr) the entries its filters drop."""
    sources = source_resolver(config)
    try:
        ref = parse_source(source, sources.settings)
        ensure_usable(ref, sources.settings)
    except SourceFormError as exc:
        raise CommandError(str(exc)) from None
    url = ref.url
    try:
        async with Fetcher(net_settings(config)) as fetcher:
            fetched = await fetch_source(fetcher, url, sources=sources)
            parsed = await parse_off_loop(fetched)
    except (FetchError, ParseError) as exc:
        raise CommandError(f"{url}: {exc}") from None
    built = build_items(parsed, parsed.entries, link_counts(parsed.entries))
    if fetched.moved_to:
        print(f"note: the feed lives at {fetched.moved_to}", file=sys.stderr)
    found = discover(fetched.result.headers, parsed.info, url=fetched.result.url)
    if found.pushable:
        print(
            f"note: this source offers WebSub push (hub {found.hub}): "
            + (
                "feedhook subscribes to it after the first poll, so new items arrive within seconds"
                if config.http.public_url
                else "set http.public_url (and http.listen behind a reverse proxy) to get "
                "new items within seconds instead of at the next poll"
            ),
            file=sys.stderr,
        )
    bodies: list[tuple[Item, dict[str, Any]]] = []
    for item in built:
        if shape is None:
            bodies.append((item, render_item(item, parsed.info)))
        elif shape.filter.passes(item):
            bodies.append((item, render_message(item, parsed.info, shape)))
        else:
            print(f"filtered out: {item.title or item.link or item.key}", file=sys.stderr)
    if as_json:
        json.dump([body for _, body in bodies], out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    _print_human(parsed, bodies, total=len(built), out=out)


def _print_human(
    parsed: ParsedFeed, bodies: list[tuple[Item, dict[str, Any]]], *, total: int, out: TextIO
) -> None:
    info = parsed.info
    shown = f"{len(bodies)} of {total} entries pass the filters" if len(bodies) < total else ""
    out.write(f"{info.title} ({info.kind}, {shown or f'{total} entries'})\n")
    if info.link:
        out.write(f"  site: {info.link}\n")
    for item, body in bodies:
        out.write("\n" + "-" * 72 + "\n")
        if body.get("thread_name"):
            out.write(f"[forum post] {body['thread_name']}\n")
        if body.get("username") and body["username"] != webhook_username(info.title):
            out.write(f"[as {body['username']}]\n")
        if body.get("content"):
            out.write(body["content"] + "\n")
        for embed in (body.get("embeds") or [])[:1]:
            _print_embed(item, embed, out)


def _print_embed(item: Item, embed: dict[str, Any], out: TextIO) -> None:
    if embed.get("title"):
        out.write(f"{embed['title']}\n")
    if "url" in embed:
        out.write(f"  {embed['url']}\n")
    meta = [
        embed.get("author", {}).get("name", ""),
        embed.get("timestamp", ""),
        ", ".join(item.categories),
    ]
    if any(meta):
        out.write("  " + " | ".join(m for m in meta if m) + "\n")
    if "image" in embed:
        out.write(f"  image: {embed['image']['url']}\n")
    if "thumbnail" in embed:
        out.write(f"  thumbnail: {embed['thumbnail']['url']}\n")
    if embed.get("description"):
        out.write("\n" + embed["description"] + "\n")
    if embed.get("footer", {}).get("text"):
        out.write(f"  — {embed['footer']['text']}\n")


# -- OPML ------------------------------------------------------------------------


async def import_opml(
    config: Config, path: str, data: bytes, webhook: str, *, dry_run: bool
) -> int:
    """``feedhook import``: 0 when every outline was added or already there, 1 when some
    failed (the others are kept). A progress bar on a terminal; the summary on stdout."""
    try:
        target = parse_webhook_url(webhook)
    except WebhookURLError as exc:
        raise CommandError(f"--webhook: {exc}") from None
    try:
        outlines = parse_opml(data)
    except OpmlError as exc:
        raise CommandError(f"{path}: {exc}; nothing was added") from None
    feeds = unique_outlines(outlines)
    if not feeds:
        print(f"{path} lists no feeds; nothing to import")
        return 0
    db = Database(config.database.url)
    try:
        await db.upgrade()  # as `run` does: the database is made when it does not exist
        store = Store(db)
        async with Fetcher(net_settings(config)) as fetcher:
            service = FeedService(
                store,
                fetcher,
                ServiceSettings(
                    max_subscriptions_per_guild=config.discord.max_subscriptions_per_guild,
                    min_interval=config.polling.min_interval,
                ),
                sources=source_resolver(config),
            )
            console = Console(stderr=True)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                disable=not console.is_terminal,
            ) as progress:
                task = progress.add_task("checking feeds", total=len(feeds))

                def advance(result: ImportResult) -> None:
                    progress.update(
                        task, advance=1, description=f"{result.status}: {result.url}"[:60]
                    )

                summary = await import_outlines(
                    service,
                    feeds,
                    target=target,
                    guild_id=None,
                    channel_id=None,
                    dry_run=dry_run,
                    progress=advance,
                )
    finally:
        await db.dispose()
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


async def export_opml(config: Config, *, guild_id: int | None, out: TextIO) -> None:
    """``feedhook export``: OPML 2.0 on ``out``, a folder per channel (or webhook)."""
    db = Database(config.database.url)
    try:
        await db.upgrade()
        entries = await export_entries(Store(db), guild_id=guild_id)
    finally:
        await db.dispose()
    out.write(write_opml(entries, created=datetime.now(UTC)))


# -- status ----------------------------------------------------------------------


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def require_sqlite_file(url: str) -> None:
    """Opening a missing SQLite file would create an empty one; say where we looked instead."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise CommandError(
            f"no database at {url.removeprefix('sqlite:///')}; run `feedhook run` "
            "(or pass the --config that names your database)"
        )


# A source this late (or later) is overdue rather than "due now": polls start within a
# tick (5 s) of being due, and one being polled keeps its old due time until it ends.
OVERDUE_AFTER = 60.0


def _seconds_since(when: datetime, now: datetime) -> int:
    return max(0, int((now - when).total_seconds()))


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _next_poll(source: SourceHealth, running: bool | None, now: datetime) -> str:
    """When the source is polled next, as it really is: a source nobody subscribes
    to is never polled, and nothing is polled while feedhook is stopped."""
    if source.subscriptions == 0:
        return "not polled: no active subscription"
    wait = 0 if source.next_poll_at is None else (source.next_poll_at - now).total_seconds()
    if wait >= 1:
        when = f"due in {_span(int(wait))}"
    elif wait > -OVERDUE_AFTER:  # a tick away, or being polled
        when = "due now"
    else:
        when = f"overdue by {_span(int(-wait))}"
    if running is False:
        return f"next poll {when} (feedhook is not running)"
    return f"next poll {when}"


def _push_line(push: PushState, push_on: bool, now: datetime) -> str:
    """What WebSub does for a source whose feed names a hub."""
    hub = push.hub_url
    if not push_on:
        return f"  push: offers WebSub (hub {hub}); set http.public_url to be pushed its items\n"
    if push.subscribed_until is not None and push.subscribed_until > now:
        last = f", last push {_ago(push.last_push_at, now)}" if push.last_push_at else ""
        renewing = "; renewing" if push.pending_mode else ""
        return (
            f"  push: subscribed at {hub}, lease ends in "
            f"{_span(int((push.subscribed_until - now).total_seconds()))}{last}{renewing}\n"
        )
    if push.pending_mode:
        return f"  push: waiting for {hub} to verify the {push.pending_mode} request\n"
    if push.last_error:
        return f"  push: not working ({push.last_error}); polled at the normal interval\n"
    return f"  push: hub {hub}, subscribing shortly\n"


def _process_line(process: ProcessInfo, now: datetime) -> str:
    gateway = "; holds the Discord gateway" if process.gateway else ""
    silent = _seconds_since(process.heartbeat_at, now)
    if silent > 2 * HEARTBEAT_SECONDS:
        gateway += f"; silent: taken for dead at {DEAD_AFTER_SECONDS:g}s"
    return (
        f"process {process.id}: {','.join(process.roles) or 'no role'} on {process.host} "
        f"pid {process.pid}, up {_span(_seconds_since(process.started_at, now))}, "
        f"last heartbeat {_ago(process.heartbeat_at, now)}{gateway}\n"
    )


def _subscription_advice(sub: SubscriptionState) -> str:
    """What an operator does about a subscription that is not posting."""
    if sub.paused and sub.enabled:
        return "resume it with /feed resume in Discord"
    if sub.disabled_reason == REMOVED_FROM_CONFIG:
        return "nothing, unless you want it back: then add its [[feeds]] entry to the config file"
    if sub.disabled_reason == BOT_REMOVED:
        return "invite the bot back to the server, then /feed remove it and /feed add it again"
    if sub.origin == "config":
        return (
            "put a working webhook URL in its [[feeds]] entry of the config file and "
            "restart feedhook"
        )
    if sub.origin == "import":
        return (
            "import its feeds again to a working webhook: feedhook import FILE.opml --webhook URL"
        )
    return "remove it with /feed remove and add it again with /feed add in Discord"


def _subscription_line(sub: SubscriptionState, now: datetime) -> str:
    thread = f", thread {sub.thread_id}" if sub.thread_id else ""
    if sub.origin == "config":
        where = f"webhook {sub.webhook_id}{thread}, from the config file"
    elif sub.origin == "import":
        where = f"webhook {sub.webhook_id}{thread}, from feedhook import"
    elif sub.channel_id is not None:
        where = f"channel {sub.channel_id}{thread} in server {sub.guild_id}, from /feed"
    else:
        where = f"webhook {sub.webhook_id}{thread}, from /feed"
    if not sub.enabled:
        since = f" for {_span(_seconds_since(sub.disabled_at, now))}" if sub.disabled_at else ""
        reason = sub.disabled_reason or "no reason recorded"
        state = f"DISABLED{since}: {reason}"
    else:
        since = f" for {_span(_seconds_since(sub.paused_at, now))}" if sub.paused_at else ""
        state = f"PAUSED{since}"
    return (
        f"  subscription {sub.id} ({where}) {state}\n    what to do: {_subscription_advice(sub)}\n"
    )


async def _readable(db: Database) -> None:
    """Refuse a database without feedhook's tables, or at another revision."""
    revision = await db.current_revision()
    if revision is None:
        raise CommandError(
            "the database has no feedhook tables yet; run `feedhook db upgrade` or `feedhook run`"
        )
    if revision != head_revision():
        raise CommandError(
            f"the database is at revision {revision}, this feedhook reads "
            f"{head_revision()}; run `feedhook db upgrade` (or restart `feedhook run`, "
            "which upgrades it)"
        )


async def print_delivery_log(config: Config, subscription_id: int, *, out: TextIO) -> None:
    """``status --subscription ID``: the subscription's latest delivery attempts."""
    db = Database(config.database.url)
    try:
        await _readable(db)
        store = Store(db)
        states = {s.id: s for s in await store.subscription_states()}
        if subscription_id not in states:
            known = ", ".join(str(i) for i in sorted(states)) or "none"
            raise CommandError(
                f"there is no subscription {subscription_id}; the subscriptions are: {known}"
            )
        entries = await store.delivery_log(subscription_id)
        health = {h.source_id: h for h in await store.source_health()}
    finally:
        await db.dispose()
    state = states[subscription_id]
    source = health.get(state.source_id)
    name = (source.title or source.url) if source else f"source {state.source_id}"
    out.write(
        f"subscription {subscription_id}: {name} -> webhook {state.webhook_id}"
        f" ({'running' if state.active else 'stopped'})\n"
    )
    if not entries:
        out.write("  no delivery attempts yet\n")
        return
    out.write(f"  the latest {len(entries)} delivery attempts, newest first:\n")
    for entry in entries:
        when = entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        shown = entry.item_title or entry.item_link
        item = f" {shown}" if shown else ""
        detail = ""
        if entry.message_id is not None:
            detail = f" message={entry.message_id}"
            if entry.jump_url:
                detail += f" {entry.jump_url}"
        if entry.reason and entry.outcome != "sent":
            detail += f": {entry.reason}"
        out.write(f"  {when}  {entry.outcome:<8}{item}{detail}\n")


async def print_status(config: Config, *, out: TextIO) -> None:
    db = Database(config.database.url)
    try:
        await _readable(db)
        store = Store(db)
        health = await store.source_health()
        states = await store.subscription_states()
        counts = await store.counts()
        times = await store.recent_item_times(per_source=WINDOW)
        now = datetime.now(UTC)
        live = await store.live_processes(now=now, dead_after=timedelta(seconds=DEAD_AFTER_SECONDS))
        push = await store.push_states([h.source_id for h in health])
    finally:
        await db.dispose()
    database_file = sqlite_path(config.database.url)
    # SQLite: the run's file lock says whether one runs (a crashed run's row lingers
    # until the next start). PostgreSQL: the processes that beat recently.
    holder = running_relay(database_file) if database_file else None
    running = (holder is not None) if database_file else bool(live)
    if database_file and holder is None:
        live = []
    health = with_stale(health, times, now)
    by_source: dict[int, list[SubscriptionState]] = {}
    for sub in states:
        by_source.setdefault(sub.source_id, []).append(sub)
    queued = counts.get("outbox_pending", 0)
    stale = sum(source.stale for source in health)
    out.write(
        f"{_plural(len(health), 'source')}{f' ({stale} stale)' if stale else ''}, "
        f"{_plural(counts['items'], 'item')} seen, "
        f"{_plural(queued, 'delivery', 'deliveries')} queued\n"
    )
    deliveries = sum(v for k, v in counts.items() if k.startswith("outbox_"))
    out.write(
        f"rows: {_plural(counts['items'], 'item')}, "
        f"{_plural(deliveries, 'delivery', 'deliveries')} "
        f"({counts.get('outbox_sent', 0)} sent, {counts.get('outbox_failed', 0)} failed); "
        f"retention.max_age {_span(int(config.retention.max_age))}\n"
    )
    if database_file:
        out.write(f"feedhook run: {'running, ' + holder if holder else 'not running'}\n")
    elif not live:
        out.write(
            f"feedhook run: none running (no heartbeat in the last {DEAD_AFTER_SECONDS:g}s)\n"
        )
    for process in live:
        out.write(_process_line(process, now))
    for source in health:
        subs = by_source.get(source.source_id, [])
        if source.last_polled_at is None:
            state = "not polled yet"
        elif source.consecutive_failures == 0:
            state = "ok"
        else:
            state = (
                f"FAILING x{source.consecutive_failures} since {_ago(source.failing_since, now)}"
            )
        active = sum(sub.active for sub in subs)
        paused = sum(sub.enabled and sub.paused for sub in subs)
        disabled = sum(not sub.enabled for sub in subs)
        tally = ", ".join(
            part
            for part in (
                _plural(active, "active subscription"),
                f"{paused} paused" if paused else "",
                f"{disabled} disabled" if disabled else "",
            )
            if part
        )
        out.write(f"\n[{source.source_id}] {source.title or source.url}\n")
        if is_hook(source.url):
            out.write(
                f"  inbound hook (POST {{http.public_url}}/hooks/{{token}}); last request "
                f"{_ago(source.newest_item_at, now)}; {tally}\n"
            )
            for sub in subs:
                if not sub.active:
                    out.write(_subscription_line(sub, now))
            continue
        out.write(f"  url: {source.url}\n")
        out.write(
            f"  {state}; last success {_ago(source.last_success_at, now)}; "
            f"newest item {_ago(source.newest_item_at, now)}; "
            f"{_next_poll(source, running, now)}; {tally}\n"
        )
        if source.last_error:
            out.write(f"  last error: {source.last_error}\n")
        if (state_of_push := push.get(source.source_id)) and state_of_push.hub_url:
            out.write(_push_line(state_of_push, bool(config.http.public_url), now))
        if source.stale:
            newest = max(times[source.source_id])
            label = source.title or source.url
            out.write(f"  STALE: {stale_message(label, source.url, newest, now)}\n")
        for sub in subs:
            if not sub.active:
                out.write(_subscription_line(sub, now))


# -- db ------------------------------------------------------------------------


async def upgrade_database(config: Config) -> None:
    db = Database(config.database.url)
    try:
        before = await db.upgrade()
    finally:
        await db.dispose()
    head = head_revision()
    if before == head:
        print(f"database already at revision {head}")
    else:
        print(f"database upgraded from {before or 'empty'} to {head}")
