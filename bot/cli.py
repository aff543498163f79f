"""``feedhook run / check / status / db upgrade``.

Exit codes: 0 success, 1 the operation failed (bad source, database down),
2 bad usage or configuration. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bot import __version__
from bot.app import App, BotError, net_settings, source_resolver
from bot.config import Config, ConfigError, load_config
from bot.demo import run_demo
from bot.logs import setup_logging
from bot.models import Item
from bot.net import Fetcher, FetchError
from bot.poller import build_items, link_counts
from bot.render import render_item
from bot.sources.feed import ParsedFeed, ParseError
from bot.sources.forms import SourceFormError, ensure_usable, parse_source
from bot.sources.resolve import fetch_source, parse_off_loop
from bot.staleness import WINDOW, stale_message, with_stale
from bot.storage.db import Database, DatabaseError, head_revision
from bot.storage.store import Store

log = logging.getLogger("feedhook")


class CommandError(Exception):
    """A command failed in a way the user can act on; the message is the one line shown."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedhook", description="Relay RSS, Atom and social feeds into Discord channels."
    )
    parser.add_argument("--version", action="version", version=f"feedhook {__version__}")
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

    with_config(sub.add_parser("run", help="poll sources and relay new items until stopped"))
    check = with_config(sub.add_parser("check", help="fetch and parse one source; store nothing"))
    check.add_argument(
        "source",
        help="a feed URL, a web page that links its feed, or x:handle, bsky:handle, "
        "@user@instance, a YouTube or Reddit URL",
    )
    check.add_argument("--json", action="store_true", help="print webhook request bodies as JSON")
    with_config(sub.add_parser("status", help="show each source's health"))
    demo = sub.add_parser(
        "demo", help="watch items travel from a local feed to a local stand-in for Discord"
    )
    demo.add_argument("--items", type=int, default=5, help="stop after N messages (0: never)")
    demo.add_argument("--every", type=float, default=3.0, help="seconds between new items")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply schema migrations"))
    return parser


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
            asyncio.run(App(config).run_until_signalled())
        elif args.command == "check":
            asyncio.run(check_source(config, args.source, as_json=args.json, out=sys.stdout))
        elif args.command == "status":
            require_sqlite_file(config.database.url)
            asyncio.run(print_status(config, out=sys.stdout))
        elif args.command == "db":
            asyncio.run(upgrade_database(config))
    except (CommandError, DatabaseError, BotError) as exc:
        print(f"feedhook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


# -- check ---------------------------------------------------------------------------


async def check_source(config: Config, source: str, *, as_json: bool, out: TextIO) -> None:
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
    if as_json:
        json.dump(
            [render_item(item, parsed.info) for item in built], out, ensure_ascii=False, indent=2
        )
        out.write("\n")
        return
    _print_human(parsed, built, out)


def _print_human(parsed: ParsedFeed, built: list[Item], out: TextIO) -> None:
    info = parsed.info
    out.write(f"{info.title} ({info.kind}, {len(built)} entries)\n")
    if info.link:
        out.write(f"  site: {info.link}\n")
    for item in built:
        body = render_item(item, info)
        embed: dict[str, Any] = body["embeds"][0]
        out.write("\n" + "-" * 72 + "\n")
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
        if embed.get("description"):
            out.write("\n" + embed["description"] + "\n")


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


async def print_status(config: Config, *, out: TextIO) -> None:
    db = Database(config.database.url)
    try:
        if await db.current_revision() is None:
            raise CommandError(
                "the database has no feedhook tables yet; "
                "run `feedhook db upgrade` or `feedhook run`"
            )
        store = Store(db)
        health = await store.source_health()
        counts = await store.counts()
        times = await store.recent_item_times(per_source=WINDOW)
    finally:
        await db.dispose()
    now = datetime.now(UTC)
    health = with_stale(health, times, now)
    queued = counts.get("outbox_pending", 0)
    stale = sum(source.stale for source in health)
    out.write(
        f"{len(health)} sources{f' ({stale} stale)' if stale else ''}, {counts['items']} items "
        f"seen, {queued} deliveries queued\n"
    )
    for source in health:
        state = (
            "ok"
            if source.consecutive_failures == 0
            else (f"FAILING x{source.consecutive_failures} since {_ago(source.failing_since, now)}")
        )
        if source.last_polled_at is None:
            state = "not polled yet"
        out.write(f"\n[{source.source_id}] {source.title or source.url}\n")
        out.write(f"  url: {source.url}\n")
        out.write(
            f"  {state}; last success {_ago(source.last_success_at, now)}; "
            f"newest item {_ago(source.newest_item_at, now)}; "
            f"next poll {_ago(source.next_poll_at, now)}; "
            f"{source.subscriptions} active subscription(s)\n"
        )
        if source.last_error:
            out.write(f"  last error: {source.last_error}\n")
        if source.stale:
            newest = max(times[source.source_id])
            out.write(f"  STALE: {stale_message(source.title or source.url, newest, now)}\n")


# -- db ------------------------------------------------------------------------


async def upgrade_database(config: Config) -> None:
    db = Database(config.database.url)
    try:
        before = await db.current_revision()
        await db.upgrade()
    finally:
        await db.dispose()
    head = head_revision()
    if before == head:
        print(f"database already at revision {head}")
    else:
        print(f"database upgraded from {before or 'empty'} to {head}")
