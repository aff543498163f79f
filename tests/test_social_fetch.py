"""The Bluesky and Mastodon fetch plans (bot/sources/resolve.py) with the real parsers
(bot/sources/bluesky.py, mastodon.py) against the loopback AppView / instance
(tests/fakes/fake_social.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.net import Fetcher, NetSettings
from bot.sources.feed import build_item
from bot.sources.forms import SourceSettings, parse_source
from bot.sources.resolve import SourceResolver, fetch_source, parse_off_loop
from tests.fakes import fake_social
from tests.test_cli import feedhook


@pytest.fixture
async def social() -> AsyncIterator[Any]:
    async with fake_social.FakeSocial() as fake:
        yield fake


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    settings = NetSettings(
        user_agent="feedhook-test", allowed_hosts=frozenset({"127.0.0.1"}), total_timeout=2.0
    )
    async with Fetcher(settings) as f:
        yield f


async def test_bluesky_through_the_real_parser(fetcher: Fetcher, social: Any) -> None:
    sources = SourceResolver(SourceSettings(bluesky_api_base=social.base_url))
    ref = parse_source("bsky:alice")
    fetched = await fetch_source(fetcher, ref.url, sources=sources)
    assert social.requests == ["/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social&limit=30"]
    feed = await parse_off_loop(fetched)
    assert feed.entries
    items = [build_item(feed, entry) for entry in feed.entries]
    assert all(item.social is not None and item.social.network == "bluesky" for item in items)
    # replies are left out by default (include_replies = false)
    assert all(item.social is not None and item.social.kind != "reply" for item in items)


async def test_mastodon_through_the_real_parsers(fetcher: Fetcher, social: Any) -> None:
    sources = SourceResolver()
    ref = parse_source(f"{social.base_url}/@alice")
    assert ref.kind == "mastodon"
    feed = await parse_off_loop(await fetch_source(fetcher, ref.url, sources=sources))
    items = [build_item(feed, entry) for entry in feed.entries]
    assert items
    assert all(item.social is not None and item.social.network == "mastodon" for item in items)
    await fetch_source(fetcher, ref.url, sources=sources)
    assert social.hits["/api/v1/accounts/lookup"] == 1  # the account id is cached
    # An instance that locks its API: the profile's RSS instead.
    social.api_unauthorized = True
    fetched = await fetch_source(fetcher, ref.url, sources=sources)
    assert fetched.result.url == social.url("/@alice.rss")
    assert (await parse_off_loop(fetched)).entries


async def test_check_a_bluesky_account(tmp_path: Path, social: Any) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[polling]\nallowed_hosts = ["127.0.0.1"]\ntimeout = "5s"\n'
        f'[sources.bluesky]\napi_base = "{social.base_url}"\n',
        encoding="utf-8",
    )
    code, out, err = await feedhook("check", "--config", str(config), "@alice.bsky.social")
    assert code == 0, err
    assert "https://bsky.app/profile/alice.bsky.social/post/" in out
