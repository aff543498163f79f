"""/feed log, /feed import and /feed export through the real discord.py bot and the fake
Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FeedServer
from tests.test_bot import ADMIN, GUILD, NEWS, World, running_world
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


async def test_import_and_export_through_discord(world: World) -> None:
    from tests.test_bot_shaping import news

    for n in range(4):
        world.feeds.docs[f"/f{n}.xml"] = news([(f"x{n}", f"Story {n}")])
    opml = (
        '<?xml version="1.0"?><opml version="1.0"><head><title>Mine</title></head><body>'
        '<outline text="Tech">'
        + "".join(
            f'<outline type="rss" text="F{n}" xmlUrl="{world.feeds.url(f"/f{n}.xml")}"/>'
            for n in range(4)
        )
        + f'<outline type="rss" text="Gone" xmlUrl="{world.feeds.url("/gone.xml")}"/>'
        "</outline></body></opml>"
    ).encode()
    text = await world.run("import", file=("mine.opml", opml))
    lines = text.splitlines()
    assert lines[0] == f"Imported mine.opml into <#{NEWS}>:"
    assert lines[1] == "added 4, already there 0, failed 1"
    assert "/gone.xml: The source could not be fetched: HTTP 404" in lines[2]
    again = await world.run("import", file=("mine.opml", opml))
    assert "added 0, already there 4, failed 1" in again
    bad = await world.run("import", file=("notes.txt", b"just text"))
    assert bad.startswith("notes.txt: not")
    assert bad.endswith("Nothing was added.")

    interaction = await world.fake.invoke(GUILD, NEWS, ADMIN, "feed", "export", {})
    message = await interaction.wait_for_response(within=10)
    assert message.content == "4 feeds, in a file any feed reader imports:"
    exported = message.files["feeds.opml"]
    assert b'<outline text="#news" title="#news">' in exported
    assert exported.count(b"xmlUrl=") == 4
    assert b"webhooks" not in exported


async def test_readiness_follows_the_gateway(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_world(
        tmp_path, feed_server, monkeypatch, http_listen="127.0.0.1:0"
    ) as world:
        assert world.app.http is not None
        base = f"http://127.0.0.1:{world.app.http.port}"

        async def probe() -> tuple[int, dict[str, object], float]:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/readyz") as resp:
                    ready = resp.status, await resp.json()
                async with session.get(f"{base}/metrics") as resp:
                    text = await resp.text()
            (family,) = [
                f
                for f in text_string_to_metric_families(text)
                if f.name == "feedhook_gateway_connected"
            ]
            return ready[0], ready[1], family.samples[0].value

        assert await probe() == (200, {"status": "ready"}, 1.0)
        await world.fake.gateway_outage()
        for _ in range(100):
            status, body, connected = await probe()
            if status == 503:
                break
            await asyncio.sleep(0.1)
        assert status == 503
        assert body == {
            "status": "not ready",
            "missing": ["gateway: not connected here and no other live process holds it"],
        }
        assert connected == 0
        await world.fake.gateway_outage(down=False)
        for _ in range(300):  # discord.py reconnects with a backoff of its own
            if (await probe())[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert await probe() == (200, {"status": "ready"}, 1.0)
