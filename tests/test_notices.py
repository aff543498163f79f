"""Never silent: notices in the channel when a source fails for long, works again or turns
stale, each once (recorded in the database), and the delivery log that shows them with
every other attempt. Relay mode on an injected clock, through the fake Discord."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import Doc
from tests.relay import ENTRIES, Relay, feed


async def fail_for(r: Relay, hours: float) -> None:
    """Keep the source failing (HTTP 500) through polls spanning ``hours``."""
    r.feeds.docs["/news.xml"] = Doc(b"boom", status=500)
    for _ in range(int(hours // 2) + 1):
        await r.poll_and_deliver()


async def test_a_source_failing_for_a_day_gets_one_notice_a_day_then_a_recovery(
    relay: Any,
) -> None:
    r: Relay = await relay({"news": ""})
    await fail_for(r, 20)
    assert await r.app.send_notices() == 0  # not a day yet
    await fail_for(r, 6)
    assert await r.app.send_notices() == 1
    (notice,) = r.messages("news")
    assert notice.username == "feedhook"
    assert notice.allowed_mentions == {"parse": []}
    assert notice.content.startswith("⚠️ feedhook cannot read **Harbour News** (<http://")
    assert "HTTP 500" in notice.content
    assert "fix or remove its [[feeds]] entry" in notice.content
    assert await r.app.send_notices() == 0  # once a day while it fails

    # a second process (another App on the same database) never repeats it
    await fail_for(r, 10)
    assert await r.app.send_notices() == 0
    await fail_for(r, 16)
    assert await r.app.send_notices() == 1  # a day later: the next one
    assert len(r.messages("news")) == 2

    r.feeds.docs["/news.xml"] = feed(ENTRIES)
    for _ in range(4):  # past the failure backoff (polling.max_interval, 6 h)
        await r.poll_and_deliver()
    assert await r.app.send_notices() == 1
    recovered = r.messages("news")[-1]
    assert recovered.content.startswith("✅ **Harbour News**")
    assert "works again" in recovered.content
    assert await r.app.send_notices() == 0

    log = await r.app.store.delivery_log(1)
    assert [e.outcome for e in log] == ["notice", "notice", "notice"]
    assert log[0].message_id == recovered.id
    assert log[0].reason is not None
    assert log[0].reason.startswith("recovered:")


async def test_a_notice_that_cannot_be_posted_is_tried_again(relay: Any) -> None:
    r: Relay = await relay({"news": ""})
    await fail_for(r, 26)
    r.fake.fail_next(r.hooks["news"][0], count=1, status=500)
    assert await r.app.send_notices() == 0
    assert r.messages("news") == []
    assert await r.app.send_notices() == 1  # released, so the next look posts it
    assert len(r.messages("news")) == 1


async def test_a_stale_source_gets_one_notice(relay: Any) -> None:
    r: Relay = await relay({"news": ""})
    hourly = [(f"h{n}", f"Hourly {n}", "tick") for n in range(8)]
    r.feeds.docs["/news.xml"] = feed(hourly)
    await r.poll_and_deliver()
    r.clock.advance(timedelta(days=5).total_seconds())
    await r.poll_and_deliver()
    before = len(r.messages("news"))
    assert await r.app.send_notices() == 1
    notice = r.messages("news")[-1]
    assert len(r.messages("news")) == before + 1
    assert notice.content.startswith("💤 **Harbour News**")
    assert "the site may have stopped publishing" in notice.content
    assert await r.app.send_notices() == 0


async def test_the_delivery_log_records_each_attempt(relay: Any) -> None:
    r: Relay = await relay({"news": 'exclude = ["title:sponsored"]'})
    r.feeds.docs["/news.xml"] = feed(
        [("a4", "Sponsored post", "Ad"), ("a3", "Storm warning", "Winds"), *ENTRIES]
    )
    r.fake.fail_next(r.hooks["news"][0], count=1, status=503)
    await r.poll_and_deliver()
    r.clock.advance(60)
    await r.app.deliverer.deliver_due()
    r.fake.delete_webhook(r.hooks["news"][0])
    r.feeds.docs["/news.xml"] = feed(
        [
            ("a5", "Calm again", "Sun"),
            ("a4", "Sponsored post", "Ad"),
            ("a3", "Storm warning", "Winds"),
            *ENTRIES,
        ]
    )
    await r.poll_and_deliver()
    log = await r.app.store.delivery_log(1)
    outcomes = [(e.outcome, e.item_title) for e in reversed(log)]
    assert outcomes == [
        ("filtered", "Sponsored post"),
        ("retried", "Storm warning"),
        ("sent", "Storm warning"),
        ("disabled", None),
    ]
    _filtered, retried, sent, disabled = reversed(log)
    assert retried.reason is not None
    assert "503" in retried.reason
    assert sent.message_id == r.messages("news")[0].id
    assert sent.jump_url is None  # a [[feeds]] webhook: feedhook does not know the server
    assert disabled.reason is not None
    assert "webhook was deleted" in disabled.reason
