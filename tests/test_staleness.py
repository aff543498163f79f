"""The staleness rule (pure), its store query on SQLite and PostgreSQL, the log-once watch,
and where admins and operators see it (services, `feedhook status`)."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import print_status
from bot.config import load_config
from bot.discord.replies import describe, status_lines
from bot.models import Item, SourceHealth, SubscriptionView, WebhookTarget
from bot.services import GuildStatus
from bot.staleness import (
    MIN_AGE,
    StaleWatch,
    is_stale,
    stale_advice,
    stale_message,
    stale_threshold,
    with_stale,
)
from bot.storage.db import Database
from bot.storage.store import FeedMeta, PollOutcome, Store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def every(gap: timedelta, count: int, *, newest: datetime) -> list[datetime]:
    return [newest - gap * n for n in range(count)]


# -- the rule -------------------------------------------------------------------------


def test_too_few_times_are_never_stale() -> None:
    old = NOW - 365 * DAY
    assert not is_stale([], NOW)
    assert not is_stale([old], NOW)
    assert not is_stale([old, old - HOUR], NOW)  # one gap is no rhythm
    assert not is_stale([old, old, old], NOW)  # one distinct time
    assert stale_threshold([old, old - HOUR]) is None
    assert is_stale([old, old - HOUR, old - 2 * HOUR], NOW)


def test_a_busy_source_is_stale_after_two_days() -> None:
    hourly = every(HOUR, 20, newest=NOW - 2 * DAY + timedelta(minutes=1))
    assert stale_threshold(hourly) == MIN_AGE  # 10 hours is less than two days
    assert not is_stale(hourly, NOW)
    assert is_stale(hourly, NOW + timedelta(minutes=2))


def test_a_daily_source_is_stale_after_ten_days() -> None:
    daily = every(DAY, 20, newest=NOW - 9 * DAY)
    assert stale_threshold(daily) == 10 * DAY
    assert not is_stale(daily, NOW)
    assert not is_stale(daily, NOW + DAY)  # exactly ten days: not yet
    assert is_stale(daily, NOW + DAY + timedelta(seconds=1))


def test_the_median_ignores_one_long_pause() -> None:
    times = [*every(HOUR, 10, newest=NOW - 3 * DAY), NOW - 60 * DAY]
    assert stale_threshold(times) == MIN_AGE
    assert is_stale(times, NOW)


def test_only_the_newest_twenty_count_and_order_does_not_matter() -> None:
    recent = every(HOUR, 20, newest=NOW - 3 * DAY)
    ancient = every(30 * DAY, 50, newest=NOW - 100 * DAY)  # a slow past is forgotten
    times = ancient + recent
    times.reverse()
    assert stale_threshold(times) == MIN_AGE
    assert is_stale(times, NOW)


def test_duplicate_times_count_once() -> None:
    # first seen in one poll (a feed without dates), then two more polls a day apart
    batch = [NOW - 5 * DAY] * 15
    times = [*batch, NOW - 4 * DAY, NOW - 3 * DAY]
    assert stale_threshold(times) == 10 * DAY
    assert not is_stale(times, NOW)


def test_a_future_newest_item_is_not_stale() -> None:
    assert not is_stale([NOW + DAY, NOW - DAY, NOW - 2 * DAY], NOW)


TIMES = st.lists(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(TIMES, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)))
def test_stale_properties(times: list[datetime], later: timedelta) -> None:
    if is_stale(times, NOW):
        assert NOW - max(times) > MIN_AGE  # never within two days
        assert is_stale(times, NOW + later)  # stays stale as time passes
        assert is_stale(list(reversed(times)), NOW)
    if len(set(times)) < 3:
        assert not is_stale(times, NOW + later)


def test_message_says_what_to_do() -> None:
    text = stale_message("Some Account", "https://x.com/someone", NOW - 12 * DAY, NOW)
    assert text.startswith("Some Account has brought nothing new for much longer than usual")
    assert "(newest item 12 days old)" in text
    assert text.endswith("try another bridge or check the account.")


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("https://x.com/someone", "its bridge may be serving old content; try another bridge"),
        ("https://blog.example/atom.xml", "the site may have stopped publishing or moved its feed"),
        (
            "https://www.youtube.com/feeds/videos.xml?channel_id=UC0123456789abcdefghijkl",
            "the channel may have stopped publishing; check it on YouTube",
        ),
        ("https://bsky.app/profile/alice.bsky.social", "the account may have stopped posting"),
        ("https://mastodon.social/@alice", "the account may have stopped posting"),
        ("https://www.reddit.com/r/python/.rss", "the site may have stopped publishing"),
    ],
)
def test_advice_follows_the_kind_of_source(url: str, advice: str) -> None:
    assert stale_advice(url).startswith(advice)
    # only X is read through a bridge
    assert ("bridge" in stale_advice(url)) == url.startswith("https://x.com/")


# -- the watch ------------------------------------------------------------------------


def health(source_id: int, *, failures: int = 0) -> SourceHealth:
    return SourceHealth(
        source_id=source_id,
        url=f"https://bridge.example/{source_id}.rss",
        title=f"Feed {source_id}",
        last_success_at=NOW,
        last_polled_at=NOW,
        consecutive_failures=failures,
        failing_since=None,
        last_error=None,
        newest_item_at=None,
        next_poll_at=None,
        subscriptions=1,
    )


def test_failing_sources_are_failing_not_stale() -> None:
    old = every(HOUR, 5, newest=NOW - 5 * DAY)
    marked = with_stale([health(1), health(2, failures=3), health(3)], {1: old, 2: old}, NOW)
    assert [h.stale for h in marked] == [True, False, False]


def test_watch_warns_once_per_turn(caplog: pytest.LogCaptureFixture) -> None:
    watch = StaleWatch()
    old = every(HOUR, 5, newest=NOW - 5 * DAY)
    fresh = every(HOUR, 5, newest=NOW)
    caplog.set_level(logging.WARNING, logger="bot.staleness")
    assert watch.update([health(1), health(2)], {1: old, 2: fresh}, NOW) == {1}
    assert watch.update([health(1), health(2)], {1: old, 2: fresh}, NOW + HOUR) == set()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "source turned stale source=1 url=https://bridge.example/1.rss" in warnings[0]
    assert "the site may have stopped publishing or moved its feed; check the site" in warnings[0]
    # it recovers (a new item), then goes stale again: warned again
    assert watch.update([health(1)], {1: [NOW + HOUR, *old]}, NOW + HOUR) == set()
    assert watch.update([health(1)], {1: old}, NOW + 2 * HOUR) == {1}
    assert len(caplog.records) == 2


# -- storage --------------------------------------------------------------------------


def item(key: str, published: datetime | None) -> Item:
    return Item(
        key=key,
        title=key,
        link=f"https://e.com/{key}",
        summary="",
        author=None,
        published=published,
        image=None,
    )


async def record(store: Store, source_id: int, items: list[Item], at: datetime) -> None:
    await store.record_items(
        source_id,
        items,
        to_queue=set(),
        outcome=PollOutcome(source_id, at, at + HOUR, ok=True, keep_validators=False),
        meta=FeedMeta("Feed", None, None, "rss"),
        first_poll=True,
    )


async def test_recent_item_times_per_source_in_one_query(store: Store) -> None:
    busy = await store.add_source("https://e.com/busy.xml", now=NOW)
    small = await store.add_source("https://e.com/small.xml", now=NOW)
    empty = await store.add_source("https://e.com/empty.xml", now=NOW)
    dated = [item(f"b{n}", NOW - n * HOUR) for n in range(25)]
    undated = [item("u1", None), item("u2", None)]  # first seen at NOW + 30 min
    await record(store, busy, [*dated, *undated], NOW + timedelta(minutes=30))
    await record(store, small, [item("s1", NOW - DAY)], NOW)
    times = await store.recent_item_times()
    assert set(times) == {busy, small}
    assert empty not in times
    assert times[busy][:2] == [NOW + timedelta(minutes=30)] * 2  # first_seen stands in
    assert times[busy][2:] == [NOW - n * HOUR for n in range(18)]
    assert len(times[busy]) == 20
    assert all(t.tzinfo is not None for t in times[busy])
    assert times[small] == [NOW - DAY]
    assert await store.recent_item_times([small], per_source=5) == {small: [NOW - DAY]}
    assert await store.recent_item_times([]) == {}
    assert len((await store.recent_item_times(per_source=3))[busy]) == 3


async def test_guild_item_times_by_subscription(store: Store) -> None:
    source = await store.add_source("https://e.com/f.xml", now=NOW)
    await record(store, source, [item(f"k{n}", NOW - n * DAY) for n in range(4)], NOW)
    ids = []
    for channel, webhook in ((1, 11), (2, 22)):
        sub = await store.create_subscription(
            source_url="https://e.com/f.xml",
            guild_id=5,
            channel_id=channel,
            target=WebhookTarget(webhook, "tok"),
            backfill=0,
            options={},
            min_interval=300,
            now=NOW,
        )
        assert sub is not None
        ids.append(sub)
    times = await store.guild_item_times(5)
    assert set(times) == set(ids)
    assert times[ids[0]] == [NOW - n * DAY for n in range(4)]
    assert await store.guild_item_times(6) == {}


# -- what people see ------------------------------------------------------------------


async def test_feedhook_status_shows_stale_sources(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[database]\nurl = "{url}"\n')
    db = Database(url)
    await db.upgrade()
    store = Store(db)
    now = datetime.now(UTC)
    stale = await store.add_source("https://bridge.example/old.rss", now=now)
    fresh = await store.add_source("https://e.com/fresh.xml", now=now)
    await record(store, stale, [item(f"o{n}", now - 5 * DAY - n * HOUR) for n in range(5)], now)
    await record(store, fresh, [item(f"f{n}", now - n * HOUR) for n in range(5)], now)
    await db.dispose()
    out = io.StringIO()
    await print_status(load_config(config_path), out=out)
    text = out.getvalue()
    assert text.startswith("2 sources (1 stale), 10 items seen")
    old_block, fresh_block = text.split("\n[")[1:]
    assert "STALE: Feed has brought nothing new for much longer than usual" in old_block
    assert "(newest item 5 days old)" in old_block
    assert "the site may have stopped publishing or moved its feed; check the site" in old_block
    assert "STALE" not in fresh_block


def view() -> SubscriptionView:
    return SubscriptionView(
        id=7,
        guild_id=1,
        channel_id=2,
        thread_id=None,
        webhook_id=3,
        source_url="https://bridge.example/x.rss",
        source_title="Bridge",
        enabled=True,
        paused=False,
        disabled_reason=None,
        consecutive_failures=0,
        failing_since=None,
        last_error=None,
        newest_item_at=None,
        last_delivery_at=None,
    )


def test_replies_show_stale_with_advice() -> None:
    line = describe(replace(view(), stale=True, newest_item_at=NOW - 5 * DAY))
    assert "⚠️ stale: nothing new since <t:" in line
    assert stale_advice("https://bridge.example/x.rss") in line
    assert "check the site" in line
    assert "· ok" not in line
    assert "· ok, last post" in describe(view())


def test_status_lines_list_stale_subscriptions() -> None:
    stale = replace(view(), stale=True, newest_item_at=NOW - 5 * DAY)
    lines = status_lines(
        GuildStatus(
            total=2,
            ok=2,
            paused=0,
            failing=(),
            disabled=(),
            stale=(stale,),
            last_delivery_at=None,
        )
    )
    assert lines[0] == "**2** subscriptions: 2 ok (1 stale), 0 paused, 0 failing, 0 disabled."
    assert "**Stale** (polls work, but nothing new for much longer than usual)" in lines
    assert any("moved its feed; check the site" in line for line in lines)
