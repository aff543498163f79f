"""``/feed hook`` end to end: the real bot on the fake Discord, the App's HTTP server on a
loopback port, and requests POSTed to the URL the command shows."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Doc, FeedServer
from tests.test_bot import ADMIN, GUILD, NEWS, World, feed_url, running_world
from tests.test_poller import rss
from tests.test_push import free_port

URL = re.compile(r"```\n(http://\S+/hooks/(\S+))\n```")


@pytest.fixture
async def world(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    async with running_world(tmp_path, feed_server, monkeypatch) as running:
        yield running


@pytest.fixture
async def pushing(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    port = free_port()
    async with running_world(
        tmp_path,
        feed_server,
        monkeypatch,
        http_listen=f"127.0.0.1:{port}",
        public_url=f"http://127.0.0.1:{port}",
    ) as running:
        yield running


async def post(url: str, body: object) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status


async def test_hooks_are_refused_while_public_url_is_unset(world: World) -> None:
    answer = await world.run("hook")
    assert "Inbound hooks are off" in answer
    assert "`http.public_url`" in answer
    # refused before a webhook was made in the channel
    assert [h for h in world.fake.webhooks.values() if h.channel_id == NEWS] == []


async def test_a_hook_made_in_discord_posts_listed_and_removed(pushing: World) -> None:
    world = pushing
    answer = await world.run("hook", template="{headers.x-kind}: {body.text}")
    assert "Made an inbound hook posting in" in answer
    assert "shown only now" in answer
    match = URL.search(answer)
    assert match is not None, answer
    url, token = match.groups()
    assert len(token) >= 43  # 32 random bytes, URL-safe
    # the token is stored only hashed
    database = Path(world.app.config.database.url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert token.encode() not in stored

    async with aiohttp.ClientSession() as session:
        headers = {"X-Kind": "deploy"}
        async with session.post(url, json={"text": "v1.2 is live"}, headers=headers) as resp:
            assert resp.status == 202
    (message,) = await world.fake.wait_for_messages(1, channel_id=NEWS)
    assert message.content == "deploy: v1.2 is live"

    listed = await world.run("list")
    assert re.search(r"`#\d+` \*\*hook:\d+\*\* → <#" + str(NEWS) + ">", listed), listed
    choices = await world.fake.autocomplete(
        GUILD, NEWS, ADMIN, "feed", "remove", focused="subscription", value="hook"
    )
    assert len(choices) == 1
    assert "is an inbound hook" in await world.run("format", subscription=choices[0]["value"])
    assert "Removed **hook:" in await world.run("remove", subscription=choices[0]["value"])
    assert await post(url, {"text": "after removal"}) == 404
    assert (await world.app.store.counts())["sources"] == 0


async def test_hooks_count_toward_the_server_limit_and_bad_templates_are_explained(
    pushing: World,
) -> None:
    world = pushing
    answer = await world.run("hook", template="{title}")
    assert "That template does not work" in answer
    assert "{body}" in answer
    for _ in range(3):  # the limit in running_world is 3
        assert "Made an inbound hook" in await world.run("hook")
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "Only story")], title="Cat News"))
    assert "already has 3 feed subscriptions" in await world.run("add", source=feed_url(world))
    assert "already has 3 feed subscriptions" in await world.run("hook")


async def test_status_says_when_a_feed_offers_a_hub(world: World) -> None:
    body = rss([("a", "Only story")], title="Hubbed").replace(
        b"<channel>",
        b'<channel><atom:link xmlns:atom="http://www.w3.org/2005/Atom" rel="hub" '
        b'href="https://hub.example/"/>',
    )
    world.feeds.docs["/f.xml"] = Doc(body)
    await world.run("add", source=feed_url(world))
    for _ in range(100):  # the first poll records the hub
        if "offers WebSub push" in (status := await world.run("status")):
            break
        await asyncio.sleep(0.1)
    assert "1 feed here offers WebSub push" in status
    assert "`http.public_url`" in status


async def test_hook_commands_answer_what_applies_to_a_hook(pushing: World) -> None:
    world = pushing
    too_long = "{body.text} " * 100
    assert "1000 at most" in await world.run("hook", template=too_long)
    assert (await world.app.store.counts())["subscriptions"] == 0  # nothing made
    answer = await world.run("hook", template="{body.text}")
    match = URL.search(answer)
    assert match is not None, answer
    url = match.group(1)
    (choice,) = await world.fake.autocomplete(
        GUILD, NEWS, ADMIN, "feed", "test", focused="subscription", value="hook"
    )
    sub = choice["value"]
    assert "has had no request yet" in await world.run("test", subscription=sub)
    assert "do not apply to it" in await world.run("options", subscription=sub, embed=True)
    listed = await world.run("list")
    assert "format" not in listed  # nothing of a feed's look to show

    assert "Paused" in await world.run("pause", subscription=sub)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"text": "while paused"}) as resp:
            assert resp.status == 202
            assert await resp.json() == {"status": "accepted", "paused": True}
        assert "Resumed" in await world.run("resume", subscription=sub)
        async with session.post(url, json={"text": "after"}) as resp:
            assert await resp.json() == {"status": "accepted"}
    (message,) = await world.fake.wait_for_messages(1, channel_id=NEWS)
    assert message.content == "after"
    assert "Posted the newest item" in await world.run("test", subscription=sub)
