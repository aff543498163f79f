"""A relay-mode harness: the real App (scheduler paused) on an injected clock, reading a
loopback feed and posting to the fake Discord's webhooks, one [[feeds]] entry per webhook.
The ``relay`` fixture (tests/conftest.py) starts one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from bot.app import App
from bot.config import load_config
from bot.hooks import is_hook
from tests.conftest import T0, Clock, Doc, FeedServer
from tests.fakes.fake_discord import FakeDiscord, StoredMessage

GUILD = 9100


def feed(entries: list[tuple[str, str, str]]) -> Doc:
    """RSS 2.0 of (guid, title, description) entries, newest first, a minute apart."""
    parts = []
    for index, (guid, title, text) in enumerate(entries):
        parts.append(
            f"<item><guid>{guid}</guid><title>{title}</title>"
            f"<link>https://example.com/{guid}</link>"
            f"<pubDate>{format_datetime(T0 - timedelta(minutes=index))}</pubDate>"
            f"<author>desk@example.com (News Desk)</author>"
            f"<description>{text}</description></item>"
        )
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Harbour News</title><link>https://example.com/</link>{''.join(parts)}"
        "</channel></rss>"
    )
    return Doc(body.encode())


@dataclass
class Relay:
    app: App
    fake: FakeDiscord
    feeds: FeedServer
    hooks: dict[str, tuple[int, str]]
    clock: Clock

    async def poll_and_deliver(self) -> None:
        """Two hours later: one poll of the source and the deliveries (and edits) it queued."""
        self.clock.advance(2 * 3600)  # past the 1h interval and its jitter
        await self.app.poller.poll_due()
        await self.app.poller.flush()
        await self.app.deliverer.deliver_due()

    def messages(self, name: str) -> list[StoredMessage]:
        return self.fake.messages(webhook_id=self.hooks[name][0])


ENTRIES = [("a2", "Second story", "Old news"), ("a1", "First story", "Older news")]


async def relay_harness(
    tmp_path: Path, feed_server: FeedServer
) -> AsyncIterator[Callable[..., Any]]:
    """Start an App whose [[feeds]] are the given name -> extra TOML lines, each on a
    webhook of its own in the fake Discord; the name "forum" gets a forum channel with the
    tags News and Sport, and ``{news_tag}`` in its lines becomes the News tag's id. The
    scheduler is paused: the test drives polls and deliveries on its own clock."""
    apps: list[App] = []
    fake = FakeDiscord(webhook_limit=None)
    await fake.start()
    fake.add_guild(GUILD)

    async def start(
        entries: dict[str, str],
        *,
        config_extra: str = "",
        database_url: str | None = None,
        inbound: dict[str, str] | None = None,
    ) -> Relay:
        """``inbound``: name -> the lines of a [[hooks]] entry posting to a webhook of its
        own (``relay.hooks[name]``), besides the [[feeds]] of ``entries``."""
        feed_server.docs["/news.xml"] = feed(ENTRIES)
        hooks, tables = {}, []
        for n, (name, lines) in enumerate((inbound or {}).items()):
            channel = fake.add_channel(7500 + n, guild_id=GUILD, forum=name.startswith("forum"))
            hooks[name] = fake.add_webhook(channel.id, guild_id=GUILD)
            hook_id, token = hooks[name]
            tables.append(
                f'[[hooks]]\nwebhook = "https://discord.com/api/webhooks/{hook_id}/{token}"\n'
                f"{lines}\n"
            )
        for n, (name, extra) in enumerate(entries.items()):
            channel = fake.add_channel(7000 + n, guild_id=GUILD, forum=name == "forum")
            lines = extra
            if name == "forum":
                tags = fake.set_forum_tags(channel.id, ["News", "Sport"])
                lines = extra.replace("{news_tag}", str(tags[0]))
            hooks[name] = fake.add_webhook(channel.id, guild_id=GUILD)
            hook_id, token = hooks[name]
            tables.append(
                f'[[feeds]]\nurl = "{feed_server.url("/news.xml")}"\n'
                f'webhook = "https://discord.com/api/webhooks/{hook_id}/{token}"\n{lines}\n'
            )
        config = tmp_path / "config.toml"
        url = database_url or f"sqlite:///{tmp_path / 'relay.db'}"
        config.write_text(
            f'[discord]\napi_base = "{fake.api_base}"\n'
            f'[database]\nurl = "{url}"\n'
            '[polling]\nallow_private_addresses = true\ninterval = "1h"\n'
            f"{config_extra}\n\n" + "\n".join(tables),
            encoding="utf-8",
        )
        clock = Clock()
        # no roles: no poll or delivery tick of its own races the test's (it drives them)
        app = App(load_config(config, environ={}), clock=clock, roles=())
        apps.append(app)
        await app.start()
        app.scheduler.pause()
        made = Relay(app, fake, feed_server, hooks, clock)
        # the first poll (what is there counts as seen), by the scheduler or by us
        for _ in range(100):
            await made.poll_and_deliver()
            health = await app.store.source_health()
            # an inbound hook's source is never polled
            if all(h.last_polled_at for h in health if not is_hook(h.url)):
                break
            await asyncio.sleep(0.05)
        return made

    yield start
    for app in apps:
        await app.stop()
    await fake.close()
    assert fake.internal_errors == []
