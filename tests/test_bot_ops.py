"""/feed log, /feed import and /feed export through the real discord.py bot and the fake
Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import FeedServer
from tests.test_bot import GUILD, NEWS, World, running_world
from tests.test_bot_shaping import next_post, subscribe


@pytest.fixture
async def world(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    async with running_world(tmp_path, feed_server, monkeypatch, max_subscriptions=30) as w:
        yield w


async def test_log_shows_the_latest_attempts_with_jump_links(world: World) -> None:
    sub = await subscribe(world)
    assert "has no delivery attempts yet" in await world.run("log", subscription=sub)
    await world.run("filter", subscription=sub, exclude="title:sponsored")
    posted = await next_post(world, "Third story")
    world.fake.fail_next(posted.webhook_id, count=1, status=502)
    from tests.test_bot_shaping import news

    world.feeds.docs["/f.xml"] = news(
        [
            ("e", "Fifth story"),
            ("d", "Sponsored: boats"),
            ("c", "Third story"),
            ("b", "Second story"),
            ("a", "First story"),
        ]
    )
    await world.fake.wait_for_messages(2, channel_id=NEWS, within=20)
    for _ in range(50):  # the sent mark lands within 0.1 s of Discord's answer
        text = await world.run("log", subscription=sub)
        if "✅ sent [Fifth story]" in text:
            break
        await asyncio.sleep(0.1)
    lines = text.splitlines()
    assert lines[0].startswith("The latest 4 delivery attempts of **Harbour News**")
    fifth_sent, fifth_retried, filtered, third = lines[1:5]
    assert (
        "✅ sent [Fifth story](<https://example.com/e>) → https://discord.com/channels/"
        in fifth_sent
    )
    assert "🔁 retried [Fifth story]" in fifth_retried
    assert "502" in fifth_retried
    assert "🚫 filtered out [Sponsored: boats]" in filtered
    assert f"https://discord.com/channels/{GUILD}/{NEWS}/{posted.id}" in third
