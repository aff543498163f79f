"""The delivery worker against the fake Discord: every response branch, on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.delivery import Deliverer, DeliverySettings, RateLimiter, retry_delay
from bot.models import Item, WebhookTarget
from bot.storage.db import Database
from bot.storage.store import ConfigFeed, FeedMeta, PollOutcome, Store
from tests.fakes.fake_discord import FakeDiscord, RateLimit

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHANNEL = 555
FEED = FeedMeta(title="Example News", site_link="https://example.com/", icon_url=None, kind="rss")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make_item(n: int, **overrides: object) -> Item:
    values: dict[str, object] = {
        "key": f"item-{n}",
        "title": f"Story {n}",
        "link": f"https://example.com/story/{n}",
        "summary": f"What happened in story **{n}**.",
        "author": "Reporter",
        "published": T0 + timedelta(minutes=n),
        "image": None,
        "categories": (),
        "link_norm": f"https://example.com/story/{n}",
    }
    values.update(overrides)
    return Item(**values)  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_token="bot-token") as discord:
        yield discord
    assert discord.internal_errors == []


@pytest.fixture
def clock() -> Clock:
    return Clock()


Queue = Callable[..., Awaitable[int]]


@pytest.fixture
def queue(store: Store) -> Queue:
    """Subscribe ``target`` to a feed and queue items for it, as the poller would."""
    subscribed: list[ConfigFeed] = []

    async def add(
        target: WebhookTarget,
        items: list[Item],
        *,
        url: str = "https://example.com/feed",
        **options: object,
    ) -> int:
        subscribed.append(ConfigFeed(url, target, options={"style": "embed", **options}))
        await store.sync_config_feeds(subscribed, now=T0)
        source_id = await store.add_source(url, now=T0)
        outcome = PollOutcome(
            source_id, T0, T0 + timedelta(hours=1), ok=True, keep_validators=False
        )
        await store.record_items(
            source_id, [], to_queue=set(), outcome=outcome, meta=FEED, first_poll=True
        )
        return await store.record_items(
            source_id,
            items,
            to_queue={i.key for i in items},
            outcome=outcome,
            meta=FEED,
            first_poll=False,
        )

    return add


def settings(fake: FakeDiscord, **overrides: object) -> DeliverySettings:
    values: dict[str, object] = {
        "api_base": fake.api_base,
        "user_agent": "feedhook-test",
        "timeout": 2.0,
        "lease": 30.0,
    }
    values.update(overrides)
    return DeliverySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def deliverer_factory(
    store: Store, fake: FakeDiscord, clock: Clock
) -> AsyncIterator[Callable[..., Deliverer]]:
    made: list[Deliverer] = []

    def make(**overrides: object) -> Deliverer:
        deliverer = Deliverer(store, settings(fake, **overrides), clock=clock, rng=lambda: 0.5)
        deliverer.open()
        made.append(deliverer)
        return deliverer

    yield make
    for deliverer in made:
        await deliverer.close()


def target(fake: FakeDiscord, channel: int = CHANNEL) -> WebhookTarget:
    webhook_id, token = fake.add_webhook(channel, guild_id=1)
    return WebhookTarget(webhook_id, token)


async def states(store: Store) -> list[str]:
    return [state for _, _, state in await store.outbox_items()]


# -- the happy path ----------------------------------------------------------------------


async def test_items_arrive_once_in_order_and_ping_nobody(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    hook = target(fake)
    items = [make_item(1, title="@everyone big news <@&123>"), make_item(2), make_item(3)]
    await queue(hook, items, batch=False)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    messages = fake.messages(channel_id=CHANNEL)
    assert [m.embeds[0]["title"] for m in messages] == [i.title for i in items]
    assert all(m.allowed_mentions == {"parse": []} for m in messages)
    assert not any(m.mentions_would_ping for m in messages)
    assert messages[0].username == "Example News"
    assert messages[0].embeds[0]["url"] == "https://example.com/story/1"
    assert await states(store) == ["sent"] * 3
    await deliverer.deliver_due()  # nothing is sent twice
    assert len(fake.messages()) == 3
    summary = await store.subscriptions_summary()
    assert summary[0]["channel_id"] == CHANNEL  # learned from Discord's reply


async def test_a_backlog_is_batched_into_few_messages(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    hook = target(fake)
    items = [make_item(n) for n in range(1, 26)]
    await queue(hook, items)
    await deliverer_factory().deliver_due()
    messages = fake.messages()
    assert [len(m.embeds) for m in messages] == [10, 10, 5]
    titles = [e["title"] for m in messages for e in m.embeds]
    assert titles == [i.title for i in items]
    assert await states(store) == ["sent"] * 25


async def test_batching_can_be_turned_off(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    await queue(target(fake), [make_item(n) for n in range(1, 8)], batch=False)
    fake.webhook_limit = None
    await deliverer_factory().deliver_due()
    assert [len(m.embeds) for m in fake.messages()] == [1] * 7


async def test_text_style(
    fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    await queue(target(fake), [make_item(1)], style="text")
    await deliverer_factory().deliver_due()
    (message,) = fake.messages()
    assert message.content == "**Story 1**\nhttps://example.com/story/1"
    assert message.embeds == []


async def test_one_slow_webhook_does_not_hold_up_another(
    fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    slow, quick = target(fake, 1), target(fake, 2)
    await queue(slow, [make_item(1)], url="https://a.example/feed")
    await queue(quick, [make_item(2)], url="https://b.example/feed")
    fake.hang_next(webhook_id=slow.webhook_id, seconds=1.5)
    deliverer = deliverer_factory(timeout=5.0)
    tasks = await deliverer.tick()
    await fake.wait_for_messages(1, channel_id=2, within=1.0)
    assert fake.messages(channel_id=1) == []
    for task in tasks:
        await task
    assert len(fake.messages(channel_id=1)) == 1


# -- rate limits -------------------------------------------------------------------------


async def test_rate_limit_headers_are_followed_without_429s(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    fake.webhook_limit = RateLimit(2, 0.5)
    await queue(target(fake), [make_item(n) for n in range(1, 8)], batch=False)
    await deliverer_factory().deliver_due()
    assert len(fake.messages()) == 7
    assert fake.count_status(429) == 0


async def test_a_429_is_waited_out_never_a_failure(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    # Two webhooks in one channel share the channel limit, which no header announces.
    fake.channel_limit = RateLimit(2, 0.6)
    a, b = target(fake), target(fake)
    await queue(a, [make_item(1), make_item(2)], url="https://a.example/feed", batch=False)
    await queue(b, [make_item(3), make_item(4)], url="https://b.example/feed", batch=False)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    assert len(fake.messages()) == 4
    assert fake.count_status(429) >= 1
    assert deliverer.stats.rate_limited == fake.count_status(429)
    assert await states(store) == ["sent"] * 4


async def test_limiter_pauses_everything_on_a_global_429_and_near_the_error_budget() -> None:
    now = [100.0]
    limiter = RateLimiter(global_rate=1000, error_budget=3, clock=lambda: now[0])
    assert limiter.delay(1, 1) == 0
    limiter.on_429(1, 1, 2.5, "global")
    assert limiter.delay(2, 2) == pytest.approx(2.5)
    now[0] += 3
    limiter.on_429(1, 7, 4.0, "shared")
    assert limiter.delay(9, 7) == pytest.approx(4.0)  # another webhook in that channel
    assert limiter.delay(9, 8) == 0
    limiter.record_error()
    assert limiter.delay(9, 8) > 500  # three errors in ten minutes: stop sending
    now[0] += 601
    assert limiter.delay(9, 8) == 0


def test_retry_delay_grows_with_jitter_and_caps() -> None:
    assert [retry_delay(n, 0.5) for n in range(4)] == [5, 10, 20, 40]
    assert retry_delay(50, 0.5) == 3600
    assert retry_delay(0, 0.0) == 2.5
    assert retry_delay(0, 0.999) < 7.5


# -- failures --------------------------------------------------------------------------


async def test_server_errors_back_off_then_succeed(
    store: Store,
    fake: FakeDiscord,
    queue: Queue,
    deliverer_factory: Callable[..., Deliverer],
    clock: Clock,
) -> None:
    await queue(target(fake), [make_item(1), make_item(2)], batch=False)
    fake.fail_next(count=1, status=502)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    assert fake.messages() == []
    assert await states(store) == ["pending", "pending"]
    await deliverer.deliver_due()  # not due yet: backing off
    assert fake.messages() == []
    clock.now += timedelta(seconds=6)
    await deliverer.deliver_due()
    assert [m.embeds[0]["title"] for m in fake.messages()] == ["Story 1", "Story 2"]


async def test_rows_older_than_max_age_fail_with_the_reason(
    store: Store,
    fake: FakeDiscord,
    queue: Queue,
    deliverer_factory: Callable[..., Deliverer],
    clock: Clock,
) -> None:
    await queue(target(fake), [make_item(1)])
    clock.now += timedelta(hours=25)
    fake.fail_next(count=1, status=503)
    await deliverer_factory().deliver_due()
    assert await states(store) == ["failed"]


async def test_a_timeout_is_retried_and_checked_in_the_channel_first(
    store: Store,
    fake: FakeDiscord,
    queue: Queue,
    deliverer_factory: Callable[..., Deliverer],
    clock: Clock,
) -> None:
    await queue(target(fake), [make_item(1)])
    # Discord stores the message but the answer never comes in time.
    fake.hang_next(count=1, seconds=3, store_first=True)
    deliverer = deliverer_factory(timeout=0.5, bot_token="bot-token")
    await deliverer.deliver_due()
    assert len(fake.messages()) == 1
    clock.now += timedelta(minutes=5)
    await deliverer.deliver_due()
    assert len(fake.messages()) == 1  # found in the channel, not sent again
    assert deliverer.stats.in_doubt_found == 1
    assert await states(store) == ["sent"]


async def test_without_a_bot_token_in_doubt_rows_are_resent_and_counted(
    store: Store,
    fake: FakeDiscord,
    queue: Queue,
    deliverer_factory: Callable[..., Deliverer],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await queue(target(fake), [make_item(1), make_item(2)], batch=False)
    fake.accept_then_drop(count=1)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    clock.now += timedelta(minutes=5)
    await deliverer.deliver_due()
    titles = [m.embeds[0]["title"] for m in fake.messages()]
    assert titles == ["Story 1", "Story 1", "Story 2"]  # at-least-once for the lost answer only
    assert deliverer.stats.in_doubt_resent == 1
    assert "re-sending in-doubt deliveries" in caplog.text


@pytest.mark.parametrize("break_it", ["delete", "forbid"])
async def test_a_gone_webhook_disables_its_subscriptions_and_keeps_the_rows(
    store: Store,
    fake: FakeDiscord,
    queue: Queue,
    deliverer_factory: Callable[..., Deliverer],
    break_it: str,
) -> None:
    gone, fine = target(fake, 1), target(fake, 2)
    await queue(gone, [make_item(1), make_item(2)], url="https://a.example/feed")
    await queue(gone, [make_item(3)], url="https://b.example/feed")
    await queue(fine, [make_item(4)], url="https://c.example/feed")
    if break_it == "delete":
        fake.delete_webhook(gone.webhook_id)
    else:
        fake.forbid_webhook(gone.webhook_id)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    await deliverer.deliver_due()
    assert [m.embeds[0]["title"] for m in fake.messages()] == ["Story 4"]
    summary = {row["id"]: row for row in await store.subscriptions_summary()}
    disabled = [row for row in summary.values() if not row["enabled"]]
    assert len(disabled) == 2
    expected = "deleted" if break_it == "delete" else "403"
    assert all(expected in row["disabled_reason"] for row in disabled)
    assert sorted(await states(store)) == ["pending", "pending", "pending", "sent"]
    # Only one request went to the dead webhook: nothing more is sent to it.
    dead = [r for r in fake.requests if f"/webhooks/{gone.webhook_id}/" in r.path]
    assert len(dead) == 1


async def test_a_rejected_payload_fails_alone(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    await queue(target(fake), [make_item(1), make_item(2), make_item(3)], batch=False)
    fake.fail_next(count=1, status=400)
    deliverer = deliverer_factory()
    await deliverer.deliver_due()
    await deliverer.deliver_due()
    assert [m.embeds[0]["title"] for m in fake.messages()] == ["Story 2", "Story 3"]
    assert await states(store) == ["failed", "sent", "sent"]
    assert fake.count_status(400) == 1  # never retried in a loop


async def test_a_rejected_batch_is_split_so_good_items_still_go(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    await queue(target(fake), [make_item(n) for n in range(1, 6)])
    fake.fail_next(count=1, status=400)
    await deliverer_factory().deliver_due()
    assert [len(m.embeds) for m in fake.messages()] == [1] * 5
    assert await states(store) == ["sent"] * 5


async def test_stop_puts_unsent_rows_back(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    fake.webhook_limit = RateLimit(1, 5.0)
    await queue(target(fake), [make_item(n) for n in range(1, 4)], batch=False)
    deliverer = deliverer_factory()
    tasks = await deliverer.tick()
    await fake.wait_for_messages(1)
    await deliverer.stop(grace=2.0)
    for task in tasks:
        assert task.done()
    assert await states(store) == ["sent", "pending", "pending"]


async def test_two_senders_never_send_a_row_twice_and_keep_order(
    db_url: str, store: Store, fake: FakeDiscord, queue: Queue, clock: Clock
) -> None:
    if store.db.dialect == "sqlite":
        pytest.skip("several processes share a database only on PostgreSQL")
    fake.webhook_limit = None
    fake.channel_limit = None
    hooks = [target(fake, channel) for channel in range(1, 7)]
    for n, hook in enumerate(hooks):
        items = [make_item(n * 100 + i) for i in range(1, 6)]
        await queue(hook, items, url=f"https://example.com/{n}", batch=False)
    # Two processes: each with its own engine on the same database.
    other_db = Database(db_url)
    other = Store(other_db)
    senders = [Deliverer(s, settings(fake, concurrency=2), clock=clock) for s in (store, other)]
    for sender in senders:
        sender.open()
    try:
        await asyncio.gather(*(sender.deliver_due() for sender in senders))
    finally:
        for sender in senders:
            await sender.close()
        await other_db.dispose()
    for n, hook in enumerate(hooks):
        titles = [m.embeds[0]["title"] for m in fake.messages(webhook_id=hook.webhook_id)]
        assert titles == [f"Story {n * 100 + i}" for i in range(1, 6)]
    assert sum(s.stats.sent_items for s in senders) == 30


async def test_limiter_keeps_a_channel_budget_no_header_announces() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(global_rate=1000, error_budget=100, clock=lambda: now[0], sleep=sleep)
    for webhook in range(30):  # thirty different webhooks, one channel
        await limiter.acquire(webhook, 7)
    assert limiter.delay(99, 7) == pytest.approx(61.0 - now[0])
    assert limiter.delay(99, 8) == 0  # other channels are unaffected
    await limiter.acquire(99, 7)
    assert now[0] >= 61.0


async def test_sends_before_the_channel_was_known_count_against_it() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(global_rate=1000, error_budget=100, clock=lambda: now[0], sleep=sleep)
    for _ in range(20):  # channel not known yet: counted under the webhook
        await limiter.acquire(1, -1)
    for _ in range(10):
        await limiter.acquire(2, -2)
    limiter.learn_channel(1, 7)
    limiter.learn_channel(2, 7)
    assert limiter.delay(3, 7) > 60  # thirty already went to channel 7


async def test_a_sender_whose_process_may_be_taken_for_dead_sends_nothing(
    store: Store, fake: FakeDiscord, queue: Queue, deliverer_factory: Callable[..., Deliverer]
) -> None:
    webhook_id, token = fake.add_webhook(1)
    await queue(WebhookTarget(webhook_id, token), [make_item(1), make_item(2)])
    deliverer = deliverer_factory()
    deliverer.process_id = 7
    (job,) = await store.claim_deliveries(
        now=T0, limit=5, batch=10, lease=timedelta(seconds=30), process=7
    )
    # its last heartbeat is too old: the others may have taken its claims
    deliverer.claims_valid_until = time.monotonic() - 1
    assert not await deliverer.run_job(job)
    assert fake.messages() == []
    # the rows are left as they are, for whoever holds them now
    assert [state for _, _, state in await store.outbox_items()] == ["sending", "sending"]
    # registered again since the claim: the same
    deliverer.claims_valid_until = time.monotonic() + 60
    deliverer.process_id = 8
    assert not await deliverer.run_job(job)
    assert fake.messages() == []
    # its own, fresh claim goes out
    deliverer.process_id = 7
    assert await deliverer.run_job(job)
    assert len(fake.messages()) == 2
