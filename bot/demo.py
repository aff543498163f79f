"""``feedhook demo``: the real pipeline against local stand-ins, no account, no network.

A local feed gains an item every few seconds; feedhook (scheduler, poller,
SQLite in a temporary folder, delivery worker) polls it and posts each new item
to a local stand-in for Discord's webhook endpoint, which prints every message
as a person would see it in the channel.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import tempfile
import textwrap
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape

from aiohttp import web

from bot.app import App
from bot.config import Config

DEMO_WEBHOOK_ID = 100000000000000001
DEMO_CHANNEL_ID = 200000000000000002
DEMO_TOKEN = "demo-token"  # noqa: S105 - a stand-in's token, not a secret

_STORIES = [
    (
        "Volunteers restore the old lighthouse lamp",
        "After two years of weekend work the lamp "
        "turns again. <b>Visitors</b> can climb the tower on Saturdays.",
    ),
    (
        "Library opens a tool-lending corner",
        "Drills, ladders and a sewing machine can now be "
        "borrowed with a library card. <a href='/tools'>See the list</a>.",
    ),
    (
        "@everyone: the council moves the market",
        "The Thursday market moves to the harbour square "
        "from next month. (This title tries to ping everyone; feedhook never lets it.)",
    ),
    (
        "Night buses return to the coast line",
        "Three late services run again on Fridays and Saturdays, with a stop at the station.",
    ),
    (
        "School garden wins a regional prize",
        "Pupils grew 40 kinds of vegetables this year; the prize money buys a greenhouse.",
    ),
    ("Harbour swim draws a record 600 people", "The water was 14 °C. <i>Nobody complained.</i>"),
]


class DemoFeed:
    """An RSS feed that gains an item every ``every`` seconds."""

    def __init__(self, every: float, *, clock: Any = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.started = clock()
        self.base_time = datetime.now(UTC).replace(microsecond=0)

    def count(self) -> int:
        return 2 + int((self.clock() - self.started) / self.every)

    def document(self, base_url: str) -> bytes:
        entries = []
        for n in range(self.count(), 0, -1):
            title, body = _STORIES[(n - 1) % len(_STORIES)]
            published = self.base_time + timedelta(seconds=n * self.every)
            entries.append(
                f"<item><guid isPermaLink='false'>demo-{n}</guid>"
                f"<title>{escape(title)} (#{n})</title>"
                f"<link>{base_url}/news/{n}</link>"
                f"<pubDate>{format_datetime(published)}</pubDate>"
                f"<description>{escape(body)}</description></item>"
            )
        return (
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            "<title>Harbour Town News</title>"
            f"<link>{base_url}/</link><description>A feed that grows while you watch"
            f"</description>{''.join(entries)}</channel></rss>"
        ).encode()


class DiscordStandIn:
    """Answers webhook executions like Discord does and prints each message."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.received = 0
        self.arrived = asyncio.Event()
        self._ids = itertools.count(1)

    async def execute(self, request: web.Request) -> web.Response:
        if (
            request.match_info["webhook_id"] != str(DEMO_WEBHOOK_ID)
            or request.match_info["token"] != DEMO_TOKEN
        ):
            return _json({"code": 10015, "message": "Unknown Webhook"}, status=404)
        body = await request.json()
        self.received += 1
        self.print_message(body)
        self.arrived.set()
        message_id = 300000000000000000 + next(self._ids)
        return _json(
            {
                "id": str(message_id),
                "channel_id": str(DEMO_CHANNEL_ID),
                "webhook_id": str(DEMO_WEBHOOK_ID),
                "content": body.get("content", ""),
                "embeds": body.get("embeds", []),
                "timestamp": datetime.now(UTC).isoformat(),
            }
        )

    def print_message(self, body: dict[str, Any]) -> None:
        now = datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - shown in local time
        lines = [f"{body.get('username', 'webhook')}  [BOT]  {now}"]
        if body.get("content"):
            lines += body["content"].splitlines()
        for embed in body.get("embeds", []):
            if "author" in embed:
                lines.append(embed["author"]["name"])
            lines.append(f"{embed.get('title', '')}")
            if "url" in embed:
                lines.append(f"  -> {embed['url']}")
            for paragraph in (embed.get("description") or "").splitlines():
                lines += textwrap.wrap(paragraph, 72) or [""]
            if "footer" in embed:
                lines.append(f"-- {embed['footer']['text']}")
        pings = body.get("allowed_mentions") == {"parse": []}
        lines.append("(mentions: none can ping)" if pings else "(mentions: MAY PING)")
        self.out.write("\n+" + "-" * 76 + "\n")
        for line in lines:
            self.out.write(f"| {line}\n")
        self.out.write("+" + "-" * 76 + "\n")
        self.out.flush()


def _json(data: Any, status: int = 200) -> web.Response:
    # Discord answers exactly "application/json" (no charset); clients check it.
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


async def run_demo(*, items: int, every: float, out: TextIO = sys.stdout) -> int:
    """Run until ``items`` messages have arrived (0 = until Ctrl-C). Returns how many did."""
    feed = DemoFeed(every)
    stand_in = DiscordStandIn(out)
    app = web.Application()

    async def serve_feed(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.Response(body=feed.document(base), content_type="application/rss+xml")

    app.router.add_get("/feed.xml", serve_feed)
    app.router.add_post("/api/v10/webhooks/{webhook_id}/{token}", stand_in.execute)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory(prefix="feedhook-demo-") as folder:
        config = Config.model_validate(
            {
                "discord": {"api_base": f"{base}/api/v10"},
                "database": {"url": f"sqlite:///{Path(folder) / 'demo.db'}"},
                "polling": {"interval": every / 2, "jitter": 0, "allowed_hosts": ["127.0.0.1"]},
                "logging": {"level": "WARNING"},
                "feeds": [
                    {
                        "url": f"{base}/feed.xml",
                        "webhook": "https://discord.com/api/webhooks/"
                        f"{DEMO_WEBHOOK_ID}/{DEMO_TOKEN}",
                        "backfill": 1,
                    }
                ],
            }
        )
        newest = feed.count()
        out.write(
            f"feedhook demo: a local feed ({base}/feed.xml) gains an item every {every:g} s.\n"
            "feedhook polls it and posts each new item to a local stand-in for Discord,\n"
            "which prints what the channel would show. "
            + (f"Stops after {items} messages; " if items else "")
            + "Ctrl-C stops it.\n"
            f"The feed starts with items #1 to #{newest}. As for any new source, the first\n"
            "poll marks what is already there as seen, so nothing old floods the channel;\n"
            f"this demo's feed has backfill = 1, so #{newest} (the newest) is posted at "
            "once,\nthen each new item as it appears.\n"
        )
        out.flush()
        relay = App(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await relay.start()
        try:
            while not stop.is_set() and (items == 0 or stand_in.received < items):
                stand_in.arrived.clear()
                waiter = asyncio.create_task(stand_in.arrived.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
        finally:
            await relay.stop()
            await runner.cleanup()
    out.write(f"\n{stand_in.received} message(s) delivered; demo finished.\n")
    return stand_in.received
