"""The fake Discord behaves like Discord: real HTTP on loopback, no mocks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.fakes.fake_discord import (
    DISCORD_EPOCH_MS,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    FakeDiscord,
    ForumTag,
    ModalInput,
    RateLimit,
)

CHANNEL = 111_111_111_111_111_111
OTHER_CHANNEL = 222_222_222_222_222_222
GUILD = 999_999_999_999_999_999
BOT_TOKEN = "bot-token-for-tests"


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_token=BOT_TOKEN, clock=clock) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


async def execute(
    session: aiohttp.ClientSession,
    fake: FakeDiscord,
    webhook_id: int,
    payload: Any = None,
    *,
    wait: bool = True,
    thread_id: int | None = None,
    token: str | None = None,
    data: Any = None,
    headers: dict[str, str] | None = None,
    client_timeout: float | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """POST to the webhook; returns (status, decoded JSON body or None, headers)."""
    hook = fake.webhooks[webhook_id]
    url = f"{fake.api_base}/webhooks/{webhook_id}/{token or hook.token}"
    params = {"wait": "true"} if wait else {}
    if thread_id is not None:
        params["thread_id"] = str(thread_id)
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if payload is not None:
        kwargs["json"] = payload
    if data is not None:
        kwargs["data"] = data
    if client_timeout is not None:
        kwargs["timeout"] = aiohttp.ClientTimeout(total=client_timeout)
    async with session.post(url, **kwargs) as resp:
        raw = await resp.read()
        body = None
        if raw:
            assert resp.headers["Content-Type"] == "application/json"
            body = json.loads(raw)
        return resp.status, body, dict(resp.headers)


def form_error(errors: dict[str, Any]) -> dict[str, Any]:
    return {"code": 50035, "message": "Invalid Form Body", "errors": errors}


def err(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def too_long(n: int) -> dict[str, Any]:
    return err("BASE_TYPE_MAX_LENGTH", f"Must be {n} or fewer in length.")


BAD_URL = err("URL_TYPE_INVALID_URL", "Not a well formed URL.")


# --------------------------------------------------------------------------- basics


async def test_wait_true_returns_the_created_message(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL, guild_id=GUILD, name="News")
    embed = {"title": "Hello", "url": "https://example.com/a", "color": 0x5865F2}
    status, body, headers = await execute(
        session, fake, webhook_id, {"content": "hi", "embeds": [embed], "flags": 4096}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body["content"] == "hi"
    assert body["channel_id"] == str(CHANNEL)
    assert body["webhook_id"] == str(webhook_id)
    assert body["author"] == {
        "id": str(webhook_id),
        "username": "News",
        "avatar": None,
        "discriminator": "0000",
        "public_flags": 0,
        "flags": 0,
        "bot": True,
        "global_name": None,
    }
    assert body["embeds"] == [{"type": "rich", **embed}]
    assert body["flags"] == SUPPRESS_NOTIFICATIONS
    assert isinstance(body["id"], str)
    assert body["id"].isdigit()
    created_ms = (int(body["id"]) >> 22) + DISCORD_EPOCH_MS
    assert abs(created_ms / 1000 - time.time()) < 60
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
    assert body["edited_timestamp"] is None

    [stored] = fake.messages(channel_id=CHANNEL)
    assert stored.id == int(body["id"])
    assert stored.webhook_id == webhook_id
    assert stored.content == "hi"
    assert stored.embeds == [embed]
    assert stored.thread_id is None
    assert stored.flags == SUPPRESS_NOTIFICATIONS
    assert stored.to_json() == body


async def test_without_wait_answers_204_without_body(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, body, headers = await execute(
        session, fake, webhook_id, {"content": "quiet"}, wait=False
    )
    assert status == 204
    assert body is None
    assert "X-RateLimit-Remaining" in headers
    assert [m.content for m in fake.messages(webhook_id=webhook_id)] == ["quiet"]


async def test_wait_for_messages(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    with pytest.raises(TimeoutError):
        await fake.wait_for_messages(1, within=0.05)
    posting = asyncio.create_task(
        execute(session, fake, webhook_id, {"content": "later"}, wait=False)
    )
    [message] = await fake.wait_for_messages(1, channel_id=CHANNEL, within=2)
    assert message.content == "later"
    await posting


async def test_username_and_avatar_override(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    payload = {"content": "x", "username": "Blog", "avatar_url": "https://example.com/a.png"}
    status, body, _ = await execute(session, fake, webhook_id, payload)
    assert status == 200
    assert body["author"]["username"] == "Blog"
    [stored] = fake.messages()
    assert (stored.username, stored.avatar_url) == ("Blog", "https://example.com/a.png")


async def test_registry_ids_tokens_and_urls(fake: FakeDiscord) -> None:
    first, token = fake.add_webhook(CHANNEL)
    second, _ = fake.add_webhook(CHANNEL)
    assert second > first > 0
    assert len(token) == 68
    assert fake.webhook_url(first) == f"https://discord.com/api/webhooks/{first}/{token}"
    assert fake.add_webhook(OTHER_CHANNEL, webhook_id=42, token="tok") == (42, "tok")
    assert fake.webhook_url(42, thread_id=7).endswith("/42/tok?thread_id=7")
    assert fake.api_base == f"http://127.0.0.1:{fake.port}/api/v10"
    assert fake.add_thread(CHANNEL) > second
    with pytest.raises(ValueError, match="already exists"):
        fake.add_webhook(CHANNEL, webhook_id=42)


async def test_get_webhook_with_token(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, token = fake.add_webhook(CHANNEL, guild_id=GUILD, name="Feeds")
    async with session.get(f"{fake.api_base}/webhooks/{webhook_id}/{token}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        data = await resp.json()
    assert data["id"] == str(webhook_id)
    assert data["channel_id"] == str(CHANNEL)
    assert data["guild_id"] == str(GUILD)
    assert data["name"] == "Feeds"
    assert data["type"] == 1


async def test_unknown_route_and_method_are_json(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{fake.api_base}/nope") as resp:
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "404: Not Found", "code": 0}
    webhook_id, token = fake.add_webhook(CHANNEL)
    async with session.delete(f"{fake.api_base}/webhooks/{webhook_id}/{token}") as resp:
        assert resp.status == 405
        assert resp.headers["Content-Type"] == "application/json"
        assert (await resp.json())["message"] == "405: Method Not Allowed"


async def test_request_log_never_holds_tokens(
    fake: FakeDiscord, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    webhook_id, token = fake.add_webhook(CHANNEL)
    await execute(session, fake, webhook_id, {"content": "a"})
    await execute(session, fake, webhook_id, {"content": "b"}, token="wrong-token")
    assert [r.status for r in fake.requests] == [200, 401]
    assert fake.count_status(401) == 1
    record = fake.requests[0]
    assert record.method == "POST"
    assert record.time == clock.now
    assert record.path == f"/api/v10/webhooks/{webhook_id}/:token?wait=true"
    assert token not in repr(fake.requests)
    assert "wrong-token" not in repr(fake.requests)


# --------------------------------------------------------------------------- validation


def _embed_total_over_6000() -> list[dict[str, Any]]:
    return [{"title": "t" * 200, "description": "d" * 4000} for _ in range(2)]


VALIDATION_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("content", {"content": "x" * 2001}, {"content": too_long(2000)}),
    ("embed count", {"embeds": [{"title": "t"}] * 11}, {"embeds": too_long(10)}),
    ("title", {"embeds": [{"title": "t" * 257}]}, {"embeds": {"0": {"title": too_long(256)}}}),
    (
        "description",
        {"embeds": [{"title": "ok"}, {"description": "d" * 4097}]},
        {"embeds": {"1": {"description": too_long(4096)}}},
    ),
    (
        "field count",
        {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
        {"embeds": {"0": {"fields": too_long(25)}}},
    ),
    (
        "field name",
        {"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]},
        {"embeds": {"0": {"fields": {"0": {"name": too_long(256)}}}}},
    ),
    (
        "field value",
        {"embeds": [{"fields": [{"name": "n", "value": "v"}, {"name": "n", "value": "v" * 1025}]}]},
        {"embeds": {"0": {"fields": {"1": {"value": too_long(1024)}}}}},
    ),
    (
        "field missing value",
        {"embeds": [{"fields": [{"name": "n"}]}]},
        {
            "embeds": {
                "0": {
                    "fields": {"0": {"value": err("BASE_TYPE_REQUIRED", "This field is required")}}
                }
            }
        },
    ),
    (
        "footer text",
        {"embeds": [{"footer": {"text": "f" * 2049}}]},
        {"embeds": {"0": {"footer": {"text": too_long(2048)}}}},
    ),
    (
        "author name",
        {"embeds": [{"author": {"name": "a" * 257}}]},
        {"embeds": {"0": {"author": {"name": too_long(256)}}}},
    ),
    (
        "embed total",
        {"embeds": _embed_total_over_6000()},
        {"embeds": err("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")},
    ),
    (
        "username too long",
        {"content": "x", "username": "u" * 81},
        {"username": err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.")},
    ),
    (
        "username empty",
        {"content": "x", "username": ""},
        {"username": err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.")},
    ),
    (
        "username discord",
        {"content": "x", "username": "My DisCord Feed"},
        {"username": err("USERNAME_INVALID_CONTAINS", 'Username cannot contain "discord"')},
    ),
    (
        "username clyde",
        {"content": "x", "username": "Clyde"},
        {"username": err("USERNAME_INVALID_CONTAINS", 'Username cannot contain "clyde"')},
    ),
    ("avatar url", {"content": "x", "avatar_url": "javascript:alert(1)"}, {"avatar_url": BAD_URL}),
    (
        "embed url",
        {"embeds": [{"title": "t", "url": "ftp://example.com"}]},
        {"embeds": {"0": {"url": BAD_URL}}},
    ),
    (
        "image url",
        {"embeds": [{"image": {"url": "not a url"}}]},
        {"embeds": {"0": {"image": {"url": BAD_URL}}}},
    ),
    (
        "thumbnail url",
        {"embeds": [{"thumbnail": {"url": "//example.com/x.png"}}]},
        {"embeds": {"0": {"thumbnail": {"url": BAD_URL}}}},
    ),
    (
        "author icon url",
        {"embeds": [{"author": {"name": "a", "icon_url": "example.com/i.png"}}]},
        {"embeds": {"0": {"author": {"icon_url": BAD_URL}}}},
    ),
    (
        "footer icon url",
        {"embeds": [{"footer": {"text": "f", "icon_url": "file:///etc/passwd"}}]},
        {"embeds": {"0": {"footer": {"icon_url": BAD_URL}}}},
    ),
    (
        "several at once",
        {"content": "x" * 2001, "embeds": [{"title": "t" * 257}]},
        {"content": too_long(2000), "embeds": {"0": {"title": too_long(256)}}},
    ),
    (
        "allowed_mentions exclusive",
        {"content": "<@1>", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
        {
            "allowed_mentions": err(
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                "parse:[\"users\"] and users: ['1'] are mutually exclusive.",
            )
        },
    ),
]


@pytest.mark.parametrize(
    ("payload", "errors"),
    [pytest.param(p, e, id=name) for name, p, e in VALIDATION_CASES],
)
async def test_validation_errors(
    fake: FakeDiscord,
    session: aiohttp.ClientSession,
    payload: dict[str, Any],
    errors: dict[str, Any],
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, body, headers = await execute(session, fake, webhook_id, payload)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert body == form_error(errors)
    assert fake.messages() == []


async def test_limits_are_inclusive(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    fake.webhook_limit = None
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fields = [{"name": "n" * 10, "value": "v" * 10}] * 25
    payloads: list[dict[str, Any]] = [
        {"content": "x" * 2000, "username": "u" * 80},
        {"embeds": [{"title": "t"}] * 10},
        {"embeds": [{"title": "t" * 256, "description": "d" * 4096}]},
        {"embeds": [{"fields": fields, "footer": {"text": "f"}, "author": {"name": "a"}}]},
        # exactly 6000 in total
        {"embeds": [{"description": "d" * 4000}, {"description": "d" * 1744, "title": "t" * 256}]},
        {
            "content": "urls",
            "avatar_url": "http://example.com/a.png",
            "embeds": [
                {
                    "url": "https://example.com/",
                    "image": {"url": "https://example.com/i.png"},
                    "thumbnail": {"url": "attachment://thumb.png"},
                    "author": {"name": "a", "icon_url": "https://example.com/i.png"},
                    "footer": {"text": "f", "icon_url": "https://example.com/i.png"},
                    "timestamp": "2024-05-01T12:00:00Z",
                }
            ],
        },
    ]
    for payload in payloads:
        status, body, _ = await execute(session, fake, webhook_id, payload)
        assert status == 200, body
    assert len(fake.messages()) == len(payloads)


@pytest.mark.parametrize(
    "payload",
    [{}, {"content": ""}, {"content": "   \n"}, {"content": None, "embeds": []}],
)
async def test_empty_message(
    fake: FakeDiscord, session: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, body, _ = await execute(session, fake, webhook_id, payload)
    assert status == 400
    assert body == {"code": 50006, "message": "Cannot send an empty message"}


async def test_invalid_json(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, body, _ = await execute(
        session,
        fake,
        webhook_id,
        data=b'{"content": "x",',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert body == {"code": 50109, "message": "The request body contains invalid JSON."}


async def test_multipart_with_payload_json_and_file(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps({"username": "Files"}))
    form.add_field("files[0]", b"hello", filename="a.txt", content_type="text/plain")
    status, body, _ = await execute(session, fake, webhook_id, data=form)
    assert status == 200, body
    assert body["attachments"][0]["filename"] == "a.txt"
    assert body["attachments"][0]["size"] == 5
    assert fake.messages()[0].username == "Files"


# --------------------------------------------------------------------------- auth errors


async def test_unknown_and_deleted_webhook(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, token = fake.add_webhook(CHANNEL)
    async with session.post(
        f"{fake.api_base}/webhooks/{webhook_id + 1}/{token}?wait=true", json={"content": "x"}
    ) as resp:
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"code": 10015, "message": "Unknown Webhook"}
    fake.delete_webhook(webhook_id)
    status, body, _ = await execute(session, fake, webhook_id, {"content": "x"})
    assert (status, body) == (404, {"code": 10015, "message": "Unknown Webhook"})
    assert fake.messages() == []


async def test_wrong_token(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, body, _ = await execute(session, fake, webhook_id, {"content": "x"}, token="nope")
    assert (status, body) == (401, {"code": 50027, "message": "Invalid Webhook Token"})
    assert fake.messages() == []


async def test_forbidden_webhook(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.forbid_webhook(webhook_id)
    status, body, _ = await execute(session, fake, webhook_id, {"content": "x"})
    assert (status, body) == (403, {"code": 50013, "message": "Missing Permissions"})
    assert fake.messages() == []


# --------------------------------------------------------------------------- threads


async def test_thread_id_posts_into_the_thread(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    thread_id = fake.add_thread(CHANNEL)
    status, body, _ = await execute(
        session, fake, webhook_id, {"content": "t"}, thread_id=thread_id
    )
    assert status == 200
    assert body["channel_id"] == str(thread_id)
    [stored] = fake.messages(channel_id=CHANNEL)
    assert stored.thread_id == thread_id
    assert fake.messages(channel_id=thread_id) == [stored]

    other_thread = fake.add_thread(OTHER_CHANNEL)
    for bad in (thread_id + 12345, other_thread):
        status, body, _ = await execute(session, fake, webhook_id, {"content": "t"}, thread_id=bad)
        assert (status, body) == (404, {"code": 10003, "message": "Unknown Channel"})
    assert len(fake.messages()) == 1


async def test_forum_thread_name(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    forum_hook, _ = fake.add_webhook(CHANNEL, forum=True)
    text_hook, _ = fake.add_webhook(OTHER_CHANNEL)

    status, body, _ = await execute(
        session, fake, forum_hook, {"content": "post", "thread_name": "New post"}
    )
    assert status == 200
    assert body["channel_id"] == body["id"]  # a forum post's thread id is its message id
    [stored] = fake.messages(channel_id=CHANNEL)
    assert stored.thread_name == "New post"
    assert stored.thread_id == int(body["id"])

    status, body, _ = await execute(session, fake, forum_hook, {"content": "no thread"})
    assert (status, body["code"]) == (400, 220001)
    status, body, _ = await execute(
        session, fake, text_hook, {"content": "x", "thread_name": "nope"}
    )
    assert (status, body) == (
        400,
        {"code": 220003, "message": "Webhooks can only create threads in forum channels"},
    )
    status, body, _ = await execute(
        session, fake, forum_hook, {"content": "x", "thread_name": "t"}, thread_id=stored.thread_id
    )
    assert (status, body["code"]) == (400, 220002)
    # and replying into the created thread works
    status, _, _ = await execute(
        session, fake, forum_hook, {"content": "reply"}, thread_id=stored.thread_id
    )
    assert status == 200
    assert [m.content for m in fake.messages(channel_id=stored.thread_id)] == ["post", "reply"]


# --------------------------------------------------------------------------- mentions


@pytest.mark.parametrize(
    ("content", "allowed", "pings"),
    [
        ("plain text", None, False),
        ("hey @everyone", None, True),
        ("hey @here", None, True),
        ("hey <@123>", None, True),
        ("hey @everyone", {"parse": []}, False),
        ("hey @here", {"parse": ["users", "roles"]}, False),
        ("hey @here", {"parse": ["everyone"]}, True),
        ("hey <@123>", {"parse": ["users"]}, True),
        ("hey <@!123>", {"parse": []}, False),
        ("hey <@123>", {"users": ["999"]}, False),
        ("hey <@123>", {"users": ["123"]}, True),
        ("hey <@&55>", {"parse": ["users"]}, False),
        ("hey <@&55>", {"parse": ["roles"]}, True),
        ("hey <@&55>", {"roles": ["55"]}, True),
        ("hey <@&55>", {"roles": ["56"], "parse": ["users", "everyone"]}, False),
    ],
)
async def test_mentions_would_ping(
    fake: FakeDiscord,
    session: aiohttp.ClientSession,
    content: str,
    allowed: dict[str, Any] | None,
    pings: bool,
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    payload: dict[str, Any] = {"content": content}
    if allowed is not None:
        payload["allowed_mentions"] = allowed
    status, body, _ = await execute(session, fake, webhook_id, payload)
    assert status == 200, body
    [stored] = fake.messages()
    assert stored.allowed_mentions == allowed
    assert stored.mentions_would_ping is pings
    assert body["mention_everyone"] is (pings and ("@everyone" in content or "@here" in content))


async def test_mentions_in_embeds_never_ping(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    status, _, _ = await execute(
        session, fake, webhook_id, {"embeds": [{"description": "@everyone <@1> <@&2>"}]}
    )
    assert status == 200
    assert fake.messages()[0].mentions_would_ping is False


# --------------------------------------------------------------------------- rate limits


async def test_webhook_rate_limit_headers_and_429(
    fake: FakeDiscord, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    other_hook, _ = fake.add_webhook(OTHER_CHANNEL)
    buckets = set()
    for i, expected_remaining in enumerate((4, 3, 2, 1, 0)):
        status, _, headers = await execute(session, fake, webhook_id, {"content": "x"})
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "5"
        assert headers["X-RateLimit-Remaining"] == str(expected_remaining)
        reset_after = 2.0 - 0.1 * i  # one fixed window, opened by the first request
        assert headers["X-RateLimit-Reset-After"] == f"{reset_after:.3f}"
        reset = float(headers["X-RateLimit-Reset"])
        assert abs(reset - (time.time() + reset_after)) < 5
        buckets.add(headers["X-RateLimit-Bucket"])
        clock.advance(0.1)
    assert len(buckets) == 1

    status, body, headers = await execute(session, fake, webhook_id, {"content": "6th"})
    assert status == 429
    assert headers["Content-Type"] == "application/json"
    assert body == {"message": "You are being rate limited.", "retry_after": 1.5, "global": False}
    assert headers["Retry-After"] == "2"
    assert headers["Via"] == "1.1 google"
    assert headers["X-RateLimit-Scope"] == "user"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset-After"] == "1.500"
    assert headers["X-RateLimit-Bucket"] in buckets
    assert len(fake.messages()) == 5
    assert fake.count_status(429) == 1

    # Other webhooks have their own window.
    status, _, headers = await execute(session, fake, other_hook, {"content": "y"})
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")

    clock.advance(1.5)  # the window opened 2.0 s ago
    status, _, headers = await execute(session, fake, webhook_id, {"content": "again"})
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")


async def test_channel_limit_is_shared_by_webhooks_of_a_channel(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDiscord(clock=clock, channel_limit=RateLimit(3, 60.0)) as fake:
        first, _ = fake.add_webhook(CHANNEL)
        second, _ = fake.add_webhook(CHANNEL)
        elsewhere, _ = fake.add_webhook(OTHER_CHANNEL)
        thread_id = fake.add_thread(CHANNEL)
        for hook, thread in ((first, None), (second, None), (first, thread_id)):
            status, _, _ = await execute(session, fake, hook, {"content": "x"}, thread_id=thread)
            assert status == 200
        status, body, headers = await execute(session, fake, second, {"content": "x"})
        assert status == 429
        assert body == {
            "message": "You are being rate limited.",
            "retry_after": 60.0,
            "global": False,
        }
        assert headers["X-RateLimit-Scope"] == "shared"
        assert headers["Retry-After"] == "60"
        assert headers["Via"] == "1.1 google"
        assert headers["X-RateLimit-Remaining"] == "4"  # the webhook's own bucket is fine
        status, _, _ = await execute(session, fake, elsewhere, {"content": "x"})
        assert status == 200
        assert len(fake.messages(channel_id=CHANNEL)) == 3

        clock.advance(60.0)
        status, _, _ = await execute(session, fake, second, {"content": "x"})
        assert status == 200


async def test_global_limit(clock: FakeClock, session: aiohttp.ClientSession) -> None:
    async with FakeDiscord(clock=clock, webhook_limit=None, global_limit=RateLimit(3, 1.0)) as fake:
        hooks = [fake.add_webhook(CHANNEL + i)[0] for i in range(4)]
        for hook in hooks[:3]:
            status, _, headers = await execute(session, fake, hook, {"content": "x"})
            assert status == 200
            assert "X-RateLimit-Limit" not in headers  # per-webhook limit disabled
        status, body, headers = await execute(session, fake, hooks[3], {"content": "x"})
        assert status == 429
        assert body == {
            "message": "You are being rate limited.",
            "retry_after": 1.0,
            "global": True,
        }
        assert headers["X-RateLimit-Scope"] == "global"
        assert headers["X-RateLimit-Global"] == "true"
        assert headers["Retry-After"] == "1"
        assert headers["Via"] == "1.1 google"
        assert len(fake.messages()) == 3
        clock.advance(1.0)
        status, _, _ = await execute(session, fake, hooks[3], {"content": "x"})
        assert status == 200


async def test_limits_can_be_disabled(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord(webhook_limit=None, channel_limit=None, global_limit=None) as fake:
        webhook_id, _ = fake.add_webhook(CHANNEL)
        for i in range(60):
            status, _, _ = await execute(session, fake, webhook_id, {"content": str(i)}, wait=False)
            assert status == 204
        assert len(fake.messages()) == 60


# --------------------------------------------------------------------------- faults


async def test_fail_next(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    other, _ = fake.add_webhook(OTHER_CHANNEL)
    fake.fail_next(webhook_id, count=2)
    fake.fail_next(status=502)
    status, _, _ = await execute(session, fake, other, {"content": "x"})
    assert status == 502  # the catch-all fault, other webhook's 500s are not its own
    for _ in range(2):
        status, body, headers = await execute(session, fake, webhook_id, {"content": "x"})
        assert status == 500
        assert headers["Content-Type"] == "application/json"
        assert body == {"message": "500: Internal Server Error", "code": 0}
    status, _, _ = await execute(session, fake, webhook_id, {"content": "x"})
    assert status == 200
    assert [m.webhook_id for m in fake.messages()] == [webhook_id]
    assert fake.count_status(500) == 2


async def test_hang_next_then_answers(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.hang_next(seconds=0.2)
    started = time.monotonic()
    status, _, _ = await execute(session, fake, webhook_id, {"content": "slow"})
    assert status == 200
    assert time.monotonic() - started >= 0.2
    assert len(fake.messages()) == 1


async def test_hang_next_client_timeout_creates_nothing(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.hang_next(webhook_id, seconds=0.2)
    with pytest.raises(TimeoutError):
        await execute(session, fake, webhook_id, {"content": "x"}, client_timeout=0.05)
    await fake.wait_for_requests(1)  # the handler gives up after 0.2 s
    assert [r.status for r in fake.requests] == [0]  # no answer was sent
    assert fake.messages() == []


async def test_hang_next_store_first_creates_the_message(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.hang_next(webhook_id, seconds=2.0, store_first=True)
    with pytest.raises(TimeoutError):
        await execute(session, fake, webhook_id, {"content": "in doubt"}, client_timeout=0.5)
    # Stored although the client gave up (on a loaded machine the store may lag the timeout).
    stored = await fake.wait_for_messages(1, within=2.0)
    assert [m.content for m in stored] == ["in doubt"]


async def test_close_does_not_wait_for_hung_requests(session: aiohttp.ClientSession) -> None:
    fake = FakeDiscord()
    await fake.start()
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.hang_next(seconds=30)
    request = asyncio.create_task(execute(session, fake, webhook_id, {"content": "x"}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await fake.close()
    assert time.monotonic() - started < 2
    with pytest.raises(aiohttp.ClientError):
        await request
    assert fake.messages() == []


async def test_accept_then_drop(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    webhook_id, _ = fake.add_webhook(CHANNEL)
    fake.accept_then_drop(webhook_id)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await execute(session, fake, webhook_id, {"content": "accepted"})
    assert [m.content for m in fake.messages()] == ["accepted"]
    assert fake.count_status(0) == 1
    status, _, _ = await execute(session, fake, webhook_id, {"content": "next"})
    assert status == 200


# --------------------------------------------------------------------------- channel messages


async def get_messages(
    session: aiohttp.ClientSession,
    fake: FakeDiscord,
    channel_id: int,
    auth: str | None,
    **query: str,
) -> tuple[int, Any]:
    headers = {"Authorization": auth} if auth is not None else {}
    async with session.get(
        f"{fake.api_base}/channels/{channel_id}/messages", params=query, headers=headers
    ) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json()


async def test_channel_messages_auth(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    fake.add_webhook(CHANNEL)
    unauthorized = {"code": 0, "message": "401: Unauthorized"}
    assert await get_messages(session, fake, CHANNEL, None) == (401, unauthorized)
    assert await get_messages(session, fake, CHANNEL, BOT_TOKEN) == (401, unauthorized)
    assert await get_messages(session, fake, CHANNEL, "Bot wrong") == (401, unauthorized)
    assert await get_messages(session, fake, CHANNEL, f"Bot {BOT_TOKEN}") == (200, [])
    status, body = await get_messages(session, fake, OTHER_CHANNEL, f"Bot {BOT_TOKEN}")
    assert (status, body) == (404, {"code": 10003, "message": "Unknown Channel"})


async def test_channel_messages_newest_first(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDiscord(bot_token=BOT_TOKEN, clock=clock, webhook_limit=None) as fake:
        fake.channel_limit = None  # limits can also be changed at run time
        fake.global_limit = None
        first, _ = fake.add_webhook(CHANNEL)
        second, _ = fake.add_webhook(CHANNEL)
        thread_id = fake.add_thread(CHANNEL)
        for i in range(55):
            status, _, _ = await execute(
                session, fake, first if i % 2 else second, {"content": str(i)}, wait=False
            )
            assert status == 204
        await execute(session, fake, first, {"content": "in thread"}, thread_id=thread_id)
        auth = f"Bot {BOT_TOKEN}"

        status, body = await get_messages(session, fake, CHANNEL, auth)
        assert status == 200
        assert [m["content"] for m in body] == [str(i) for i in range(54, 4, -1)]  # default 50
        assert body[0]["author"]["bot"] is True
        assert body == [m.to_json() for m in reversed(fake.messages(channel_id=CHANNEL)[5:55])]

        status, body = await get_messages(session, fake, CHANNEL, auth, limit="3")
        assert [m["content"] for m in body] == ["54", "53", "52"]
        ids = [int(m["id"]) for m in body]
        assert ids == sorted(ids, reverse=True)

        status, body = await get_messages(
            session, fake, CHANNEL, auth, limit="2", after=str(ids[2])
        )
        assert [m["content"] for m in body] == ["54", "53"]

        status, body = await get_messages(
            session, fake, CHANNEL, auth, limit="2", before=str(ids[2])
        )
        assert [m["content"] for m in body] == ["51", "50"]

        status, body = await get_messages(session, fake, thread_id, auth)
        assert [m["content"] for m in body] == ["in thread"]

        status, body = await get_messages(session, fake, CHANNEL, auth, limit="101")
        assert status == 400
        assert body["code"] == 50035
        assert body["errors"]["limit"]["_errors"][0]["code"] == "NUMBER_TYPE_MAX"


# --------------------------------------------------------------------------- roles, modals (bot)

FORUM = 333_333_333_333_333_333
USER = 444_444_444_444_444_444
READERS = 555_555_555_555_555_555
STAFF = 555_555_555_555_555_556


class FeedModal(discord.ui.Modal, title="New feed"):
    """Three text inputs, laid out the older way (each in an ACTION_ROW, labelled itself) or
    the newer way (a TEXT_DISPLAY, then each input in a LABEL)."""

    def __init__(self, bot: ModalBot, layout: str, answer: str) -> None:
        super().__init__(custom_id=f"new-feed-{layout}")
        self.bot, self.answer = bot, answer
        row = layout == "row"
        self.url_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Feed URL" if row else None,
            custom_id="url",
            max_length=100,
            placeholder="https://",
        )
        self.name_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Name" if row else None, custom_id="name", default="News", required=False
        )
        self.notes_input: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Notes" if row else None,
            custom_id="notes",
            style=discord.TextStyle.paragraph,
            required=False,
        )
        if row:
            for item in (self.url_input, self.name_input, self.notes_input):
                self.add_item(item)
        else:
            self.add_item(discord.ui.TextDisplay("Tell us about the feed"))
            self.add_item(
                discord.ui.Label(
                    text="Feed URL", description="Where it lives", component=self.url_input
                )
            )
            self.add_item(discord.ui.Label(text="Name", component=self.name_input))
            self.add_item(discord.ui.Label(text="Notes", component=self.notes_input))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        values = {
            "url": self.url_input.value,
            "name": self.name_input.value,
            "notes": self.notes_input.value,
        }
        self.bot.submitted.append(values)
        if self.answer == "defer":
            await interaction.response.defer()  # type 6 for a modal submit
            await interaction.followup.send("saved", ephemeral=True)
        else:
            text = " ".join(f"{key}={value}" for key, value in values.items())
            await interaction.response.send_message(text, ephemeral=True)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        self.bot.errors.append(error)


class ModalBot(commands.Bot):
    """A tiny real discord.py bot: /ask answers with ``FeedModal``, /pick echoes a role
    option and a mentionable option, /noop never answers."""

    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            guild_ready_timeout=0.1,
        )
        self.submitted: list[dict[str, str]] = []
        self.errors: list[Exception] = []

        @app_commands.command(description="Describe a feed")
        async def ask(interaction: discord.Interaction, layout: str, answer: str = "text") -> None:
            await interaction.response.send_modal(FeedModal(self, layout, answer))

        @app_commands.command(description="Echo a role")
        async def pick(
            interaction: discord.Interaction,
            role: discord.Role,
            target: discord.Member | discord.Role | None = None,
        ) -> None:
            text = f"Role {role.id} {role.name} mentionable={role.mentionable}"
            if isinstance(target, discord.Role):
                text += f"; Role {target.id} {target.name} mentionable={target.mentionable}"
            elif target is not None:
                text += f"; {type(target).__name__} {target.id}"
            await interaction.response.send_message(text)

        @app_commands.command(description="Never answers")
        async def noop(interaction: discord.Interaction) -> None:
            return None

        for command in (ask, pick, noop):
            self.tree.add_command(command, guild=discord.Object(GUILD))


@pytest.fixture
async def modal_bot(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModalBot]:
    """A connected, synced ``ModalBot`` in GUILD (CHANNEL, a FORUM with two tags, and the
    roles READERS (mentionable) and STAFF added before it connected)."""
    fake.add_guild(GUILD, name="Feeds HQ")
    fake.add_channel(CHANNEL, guild_id=GUILD, name="news")
    fake.add_channel(FORUM, guild_id=GUILD, name="posts", forum=True, tags=["News", "Release"])
    fake.add_role(GUILD, name="Readers", mentionable=True, role_id=READERS)
    fake.add_role(GUILD, name="Staff", role_id=STAFF)
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    client = ModalBot()
    await client.login(BOT_TOKEN)
    runner = asyncio.create_task(client.connect(reconnect=False))
    try:
        await fake.wait_until_connected(within=5)
        await asyncio.wait_for(client.wait_until_ready(), 5)
        await client.tree.sync(guild=discord.Object(GUILD))
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)
    assert runner.exception() is None
    assert client.errors == []


async def bot_get(session: aiohttp.ClientSession, fake: FakeDiscord, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {BOT_TOKEN}"}
    async with session.get(f"{fake.api_base}{path}", headers=headers) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json()


async def post_json(
    session: aiohttp.ClientSession, url: str, payload: Any, **params: str
) -> tuple[int, Any]:
    async with session.post(url, json=payload, params=params) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def test_roles_reach_the_guild_and_resolve_in_role_options(
    fake: FakeDiscord, modal_bot: ModalBot, session: aiohttp.ClientSession
) -> None:
    # GUILD_CREATE carried them: the real client's cache has the roles and the forum's tags.
    guild = modal_bot.get_guild(GUILD)
    assert guild is not None
    readers, staff = guild.get_role(READERS), guild.get_role(STAFF)
    assert readers is not None
    assert staff is not None
    assert (readers.name, readers.mentionable, staff.name, staff.mentionable) == (
        "Readers",
        True,
        "Staff",
        False,
    )
    forum = guild.get_channel(FORUM)
    assert isinstance(forum, discord.ForumChannel)
    assert [tag.name for tag in forum.available_tags] == ["News", "Release"]

    status, body = await bot_get(session, fake, f"/guilds/{GUILD}")
    assert status == 200
    by_name = {role["name"]: role for role in body["roles"]}
    assert list(by_name) == ["@everyone", "feedhook", "Readers", "Staff"]
    assert by_name["Readers"] == fake.role_json(GUILD, READERS)
    assert (by_name["Readers"]["id"], by_name["Readers"]["mentionable"]) == (str(READERS), True)
    assert by_name["Staff"]["mentionable"] is False
    assert by_name["Readers"]["managed"] is False
    assert await bot_get(session, fake, f"/guilds/{GUILD}/roles") == (200, body["roles"])

    record = await fake.invoke(
        GUILD, CHANNEL, USER, "pick", options={"role": READERS, "target": STAFF}
    )
    message = await record.wait_for_response()
    assert message.content == (
        f"Role {READERS} Readers mentionable=True; Role {STAFF} Staff mentionable=False"
    )
    resolved = record.payload["data"]["resolved"]
    assert resolved["roles"] == {
        str(READERS): fake.role_json(GUILD, READERS),
        str(STAFF): fake.role_json(GUILD, STAFF),
    }
    assert record.payload["data"]["options"] == [
        {"name": "role", "type": 8, "value": str(READERS)},
        {"name": "target", "type": 9, "value": str(STAFF)},
    ]

    record = await fake.invoke(
        GUILD, CHANNEL, USER, "pick", options={"role": STAFF, "target": USER}
    )
    message = await record.wait_for_response()
    assert message.content == f"Role {STAFF} Staff mentionable=False; Member {USER}"
    assert set(record.payload["data"]["resolved"]) == {"roles", "users", "members"}

    with pytest.raises(ValueError, match="not in guild"):
        await fake.invoke(GUILD, CHANNEL, USER, "pick", options={"role": 4242})
    with pytest.raises(ValueError, match="already exists"):
        fake.add_role(GUILD, name="Again", role_id=READERS)
    with pytest.raises(KeyError):
        fake.role_json(GUILD, 4242)


def _modal_expectations(layout: str, values: dict[str, str]) -> tuple[list[ModalInput], Any]:
    """The inputs ``FeedModal`` shows, and the ``data.components`` Discord submits back."""
    row = layout == "row"
    container = 1 if row else 18
    ids = {"url": 2, "name": 4, "notes": 6} if row else {"url": 3, "name": 5, "notes": 7}
    inputs = [
        ModalInput(
            custom_id="url", label="Feed URL", style=1, value=None, required=True,
            min_length=None, max_length=100, placeholder="https://", id=ids["url"],
            container=container, description=None if row else "Where it lives",
        ),
        ModalInput(
            custom_id="name", label="Name", style=1, value="News", required=False,
            min_length=None, max_length=None, placeholder=None, id=ids["name"],
            container=container,
        ),
        ModalInput(
            custom_id="notes", label="Notes", style=2, value=None, required=False,
            min_length=None, max_length=None, placeholder=None, id=ids["notes"],
            container=container,
        ),
    ]  # fmt: skip

    def text_input(custom_id: str) -> dict[str, Any]:
        return {"type": 4, "id": ids[custom_id], "custom_id": custom_id, "value": values[custom_id]}

    if row:
        submitted = [
            {"type": 1, "id": ids[key] - 1, "components": [text_input(key)]}
            for key in ("url", "name", "notes")
        ]
    else:
        submitted = [
            {"type": 10, "id": 1},
            *(
                {"type": 18, "id": ids[key] - 1, "component": text_input(key)}
                for key in ("url", "name", "notes")
            ),
        ]
    return inputs, submitted


@pytest.mark.parametrize("layout", ["row", "label"])
async def test_modal_round_trip_with_a_real_bot(
    fake: FakeDiscord, modal_bot: ModalBot, layout: str
) -> None:
    record = await fake.invoke(GUILD, CHANNEL, USER, "ask", options={"layout": layout})
    modal = await record.wait_for_modal()
    assert (modal.custom_id, modal.title, record.response_type) == (
        f"new-feed-{layout}",
        "New feed",
        9,
    )
    [callback] = record.responses
    assert (callback.kind, callback.type, callback.status) == ("callback", 9, 200)
    # What discord.py 2.7.1 sends (no ids: Discord assigns them).
    sent_first = callback.body["data"]["components"][0]
    if layout == "row":
        assert sent_first == {
            "type": 1,
            "components": [
                {
                    "type": 4,
                    "style": 1,
                    "label": "Feed URL",
                    "custom_id": "url",
                    "required": True,
                    "placeholder": "https://",
                    "max_length": 100,
                }
            ],
        }
    else:
        assert sent_first == {"type": 10, "content": "Tell us about the feed"}
        assert callback.body["data"]["components"][1] == {
            "type": 18,
            "label": "Feed URL",
            "description": "Where it lives",
            "component": {
                "type": 4,
                "style": 1,
                "label": None,
                "custom_id": "url",
                "required": True,
                "placeholder": "https://",
                "max_length": 100,
            },
        }
    values = {"url": "https://example.com/feed.xml", "name": "News", "notes": "line 1\nline 2"}
    inputs, submitted = _modal_expectations(layout, values)
    assert modal.inputs == inputs

    # What Discord's client would not let the user submit.
    with pytest.raises(ValueError, match="no input 'Title'"):
        await fake.submit_modal(record, {"Title": "x"})
    with pytest.raises(ValueError, match="'Feed URL' is required"):
        await fake.submit_modal(record, {"Name": "x"})
    with pytest.raises(ValueError, match="at most 100"):
        await fake.submit_modal(record, {"Feed URL": "h" * 101})
    with pytest.raises(ValueError, match="one line"):
        await fake.submit_modal(record, {"Feed URL": "a\nb"})
    assert record.submissions == []

    # By label, or by custom_id; "Name" keeps its prefilled value.
    submission = await fake.submit_modal(
        record, {"Feed URL": "https://example.com/feed.xml", "notes": "line 1\nline 2"}
    )
    message = await submission.wait_for_response()
    assert message.content == "url=https://example.com/feed.xml name=News notes=line 1\nline 2"
    assert message.ephemeral
    assert modal_bot.submitted == [values]
    assert submission.type == 5
    assert submission.payload["type"] == 5
    assert submission.source is record
    assert record.submissions == [submission]
    assert submission.values == values
    assert submission.payload["data"] == {"custom_id": modal.custom_id, "components": submitted}
    assert submission.delivered_to
    [reply] = submission.responses
    assert (reply.kind, reply.type, reply.status) == ("callback", 4, 200)
    with pytest.raises(RuntimeError, match="closed"):
        await fake.submit_modal(record, {})


async def test_modal_submit_deferred_update_then_followup(
    fake: FakeDiscord, modal_bot: ModalBot
) -> None:
    record = await fake.invoke(
        GUILD, CHANNEL, USER, "ask", options={"layout": "label", "answer": "defer"}
    )
    await record.wait_for_modal()
    submission = await fake.submit_modal(record, {"Feed URL": "https://a.example/"})
    message = await submission.wait_for_response()
    assert message.content == "saved"
    assert [(r.kind, r.type, r.status) for r in submission.responses] == [
        ("callback", 6, 200),
        ("followup", None, 200),
    ]
    assert submission.response_type == 6
    assert modal_bot.submitted[0]["url"] == "https://a.example/"


async def test_modal_callback_validation_and_modal_submit_callbacks(
    fake: FakeDiscord, modal_bot: ModalBot, session: aiohttp.ClientSession
) -> None:
    record = await fake.invoke(GUILD, CHANNEL, USER, "noop")  # the test answers for the bot
    callback = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    bad = {
        "type": 9,
        "data": {
            "custom_id": "m",
            "title": "t" * 46,
            "components": [
                {"type": 1, "components": [{"type": 2, "custom_id": "b", "style": 1}]},
                {"type": 18, "label": "A", "component": {"type": 4, "custom_id": "a", "style": 3}},
                {
                    "type": 18,
                    "label": "Again",
                    "component": {"type": 4, "custom_id": "a", "style": 1, "max_length": 0},
                },
                {"type": 9},
            ],
        },
    }
    status, body = await post_json(session, callback, bad)
    assert (status, body) == (
        400,
        form_error(
            {
                "data": {
                    "title": err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."),
                    "components": {
                        "0": {
                            "components": {
                                "0": err(
                                    "UNION_TYPE_CHOICES",
                                    'Value of field "type" must be one of (4,).',
                                )
                            }
                        },
                        "1": {
                            "component": {
                                "style": err("BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
                            }
                        },
                        "2": {
                            "component": {
                                "max_length": err(
                                    "NUMBER_TYPE_MIN",
                                    "int value should be greater than or equal to 1.",
                                ),
                                "custom_id": err(
                                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                                    "Component custom id cannot be duplicated",
                                ),
                            }
                        },
                        "3": err(
                            "UNION_TYPE_CHOICES",
                            'Value of field "type" must be one of (1, 10, 18).',
                        ),
                    },
                }
            }
        ),
    )
    assert record.modal is None
    text_input = {"type": 4, "id": 1, "custom_id": "topic", "style": 1, "label": "Topic"}
    modal = {
        "custom_id": "m",
        "title": "Topic",
        "components": [{"type": 1, "components": [{**text_input, "max_length": 5}]}],
    }
    assert await post_json(session, callback, {"type": 9, "data": modal}) == (204, None)
    assert record.modal is not None
    # The bot's id 1 is kept; the row gets the next free one.
    assert record.modal.components == [
        {"type": 1, "id": 2, "components": [{**text_input, "max_length": 5}]}
    ]

    # discord.py discards these (it never stored modal "m"): nobody answers, so the modal
    # stays open and may be submitted again.
    first = await fake.submit_modal(record, {"Topic": "rss"})
    again = await fake.submit_modal(record, {"Topic": "atom"})
    assert record.submissions == [first, again]
    submitted = {"type": 4, "id": 1, "custom_id": "topic", "value": "atom"}
    assert again.payload["data"] == {
        "custom_id": "m",
        "components": [{"type": 1, "id": 2, "components": [submitted]}],
    }
    with pytest.raises(ValueError, match="at most 5"):
        await fake.submit_modal(record, {"Topic": "abcdef"})

    def callback_of(interaction: Any) -> str:
        return f"{fake.api_base}/interactions/{interaction.id}/{interaction.token}/callback"

    not_allowed = form_error(
        {"type": err("BASE_TYPE_CHOICES", "Value must be one of {4, 5, 6, 7}.")}
    )
    status, body = await post_json(session, callback_of(again), {"type": 9, "data": modal})
    assert (status, body) == (400, not_allowed)
    status, body = await post_json(
        session, callback_of(again), {"type": 8, "data": {"choices": []}}
    )
    assert (status, body) == (400, not_allowed)
    status, body = await post_json(
        session, callback_of(first), {"type": 7, "data": {"content": "x" * 2001}}
    )
    assert (status, body) == (400, form_error({"data": {"content": too_long(2000)}}))
    status, body = await post_json(
        session, callback_of(first), {"type": 7, "data": {"content": "updated"}}
    )
    assert (status, body) == (204, None)
    assert first.response_type == 7
    status, body = await post_json(session, callback_of(again), {"type": 6}, with_response="true")
    assert status == 200
    assert body == {
        "interaction": {"id": str(again.id), "type": 5},
        "resource": {"type": 6},
    }
    assert (again.response_type, again.original) == (6, None)
    status, body = await post_json(
        session, callback_of(again), {"type": 4, "data": {"content": "x"}}
    )
    assert (status, body["code"]) == (400, 40060)
    followup = f"{fake.api_base}/webhooks/{fake.application_id}/{again.token}"
    status, body = await post_json(session, followup, {"content": "saved"}, wait="true")
    assert status == 200
    assert body["interaction_metadata"]["type"] == 5
    assert body["interaction_metadata"]["triggering_interaction_metadata"]["id"] == str(record.id)
    latest = again.latest_message()
    assert latest is not None
    assert latest.content == "saved"
    with pytest.raises(RuntimeError, match="closed"):
        await fake.submit_modal(record, {"Topic": "late"})


async def test_submit_modal_needs_a_modal(fake: FakeDiscord, modal_bot: ModalBot) -> None:
    record = await fake.invoke(GUILD, CHANNEL, USER, "pick", options={"role": READERS})
    await record.wait_for_response()
    with pytest.raises(RuntimeError, match="not answered with a modal"):
        await fake.submit_modal(record, {})


# --------------------------------------------------------------------------- webhook message edits


async def patch_message(
    session: aiohttp.ClientSession,
    fake: FakeDiscord,
    webhook_id: int,
    message_id: int | str,
    payload: Any,
    *,
    token: str | None = None,
    thread_id: int | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """PATCH /webhooks/{id}/{token}/messages/{message_id}; (status, JSON body, headers)."""
    if token is None:
        token = fake.webhooks[webhook_id].token
    url = f"{fake.api_base}/webhooks/{webhook_id}/{token}/messages/{message_id}"
    params = {} if thread_id is None else {"thread_id": str(thread_id)}
    async with session.patch(url, json=payload, params=params) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json(), dict(resp.headers)


UNKNOWN_WEBHOOK = (404, {"code": 10015, "message": "Unknown Webhook"})
UNKNOWN_MESSAGE = (404, {"code": 10008, "message": "Unknown Message"})


async def test_edit_webhook_message(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    fake.webhook_limit = None
    hook, _ = fake.add_webhook(CHANNEL)
    status, created, _ = await execute(
        session, fake, hook, {"content": "first", "embeds": [{"title": "T"}]}
    )
    assert status == 200
    assert created["edited_timestamp"] is None
    message_id = int(created["id"])
    edit = {"content": "second", "flags": SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS}
    status, body, _ = await patch_message(session, fake, hook, message_id, edit)
    assert status == 200
    assert (body["id"], body["content"], body["embeds"]) == (
        created["id"],
        "second",
        created["embeds"],
    )
    assert body["flags"] == SUPPRESS_EMBEDS  # an edit may only toggle SUPPRESS_EMBEDS
    assert body["edited_timestamp"] is not None
    datetime.fromisoformat(body["edited_timestamp"])
    stored = fake.message(message_id)
    assert (stored.content, stored.edits) == ("second", [edit])
    assert stored.edited_at is not None
    [record] = fake.message_edits(hook)
    assert (record.message_id, record.webhook_id, record.thread_id, record.body) == (
        message_id,
        hook,
        None,
        edit,
    )
    assert fake.message_edits(hook + 1) == []
    assert fake.message_edits(message_id=message_id) == [record]

    status, body, _ = await patch_message(session, fake, hook, message_id, {"embeds": None})
    assert (status, body["content"], body["embeds"]) == (200, "second", [])
    status, body, _ = await patch_message(session, fake, hook, message_id, {"content": None})
    assert (status, body) == (400, {"code": 50006, "message": "Cannot send an empty message"})
    status, body, _ = await patch_message(
        session, fake, hook, message_id, {"content": "x" * 2001, "embeds": [{"title": "t" * 257}]}
    )
    assert (status, body) == (
        400,
        form_error({"content": too_long(2000), "embeds": {"0": {"title": too_long(256)}}}),
    )
    assert len(stored.edits) == 2
    status, listed = await get_messages(session, fake, CHANNEL, f"Bot {BOT_TOKEN}")
    assert [(m["content"], m["edited_timestamp"] is not None) for m in listed] == [("second", True)]


async def test_edit_webhook_message_unknown_webhook_or_message(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    fake.webhook_limit = None
    hook, token = fake.add_webhook(CHANNEL)
    other, _ = fake.add_webhook(CHANNEL)
    _, created, _ = await execute(session, fake, hook, {"content": "mine"})
    mine = int(created["id"])
    _, created, _ = await execute(session, fake, other, {"content": "theirs"})
    theirs = int(created["id"])
    edit = {"content": "x"}

    async def outcome(webhook_id: int, message_id: int | str, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await patch_message(session, fake, webhook_id, message_id, edit, **kwargs)
        return status, body

    assert await outcome(hook, mine, token="wrong-token") == UNKNOWN_WEBHOOK
    assert await outcome(12345, mine, token=token) == UNKNOWN_WEBHOOK
    assert await outcome(hook, theirs) == UNKNOWN_MESSAGE  # another webhook's message
    assert await outcome(hook, mine + 1) == UNKNOWN_MESSAGE
    assert await outcome(hook, "@original") == UNKNOWN_MESSAGE

    assert fake.delete_message(mine).deleted
    assert await outcome(hook, mine) == UNKNOWN_MESSAGE
    status, listed = await get_messages(session, fake, CHANNEL, f"Bot {BOT_TOKEN}")
    assert (status, [m["content"] for m in listed]) == (200, ["theirs"])
    assert [m.content for m in fake.messages()] == ["mine", "theirs"]  # the delivery record

    fake.delete_webhook(other)
    assert await outcome(other, theirs) == UNKNOWN_WEBHOOK
    assert fake.message_edits() == []
    assert [m.content for m in fake.messages()] == ["mine", "theirs"]
    with pytest.raises(KeyError):
        fake.delete_message(4242)


async def test_edit_webhook_message_in_a_thread_needs_its_thread_id(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    fake.webhook_limit = None
    hook, _ = fake.add_webhook(CHANNEL)
    thread = fake.add_thread(CHANNEL)
    other_thread = fake.add_thread(CHANNEL)
    _, created, _ = await execute(session, fake, hook, {"content": "t"}, thread_id=thread)
    in_thread = int(created["id"])
    _, created, _ = await execute(session, fake, hook, {"content": "c"})
    in_channel = int(created["id"])
    edit = {"content": "edited"}

    async def outcome(message_id: int, thread_id: int | None) -> tuple[int, Any]:
        status, body, _ = await patch_message(
            session, fake, hook, message_id, edit, thread_id=thread_id
        )
        return status, body

    assert await outcome(in_thread, None) == UNKNOWN_MESSAGE
    assert await outcome(in_thread, other_thread) == UNKNOWN_MESSAGE
    assert await outcome(in_channel, thread) == UNKNOWN_MESSAGE
    unknown_channel = (404, {"code": 10003, "message": "Unknown Channel"})
    assert await outcome(in_thread, fake.add_thread(OTHER_CHANNEL)) == unknown_channel
    assert fake.message_edits() == []

    status, body = await outcome(in_thread, thread)
    assert status == 200
    assert (body["content"], body["channel_id"]) == ("edited", str(thread))
    status, body = await outcome(in_channel, None)
    assert (status, body["channel_id"]) == (200, str(CHANNEL))
    assert [(e.message_id, e.thread_id) for e in fake.message_edits(hook)] == [
        (in_thread, thread),
        (in_channel, None),
    ]


async def test_edit_webhook_message_shares_the_webhook_rate_limit(
    fake: FakeDiscord, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    hook, _ = fake.add_webhook(CHANNEL)  # 5 requests per 2 s
    status, created, headers = await execute(session, fake, hook, {"content": "0"})
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")
    bucket = headers["X-RateLimit-Bucket"]
    for remaining in ("3", "2", "1"):
        status, _, headers = await patch_message(
            session, fake, hook, created["id"], {"content": remaining}
        )
        assert (status, headers["X-RateLimit-Remaining"]) == (200, remaining)
        assert headers["X-RateLimit-Bucket"] == bucket
    # A refused edit (unknown message) counts too, as a 400 execute does.
    status, body, headers = await patch_message(session, fake, hook, 1, {"content": "x"})
    assert ((status, body), headers["X-RateLimit-Remaining"]) == (UNKNOWN_MESSAGE, "0")
    status, body, headers = await patch_message(
        session, fake, hook, created["id"], {"content": "too many"}
    )
    assert status == 429
    assert headers["X-RateLimit-Scope"] == "user"
    assert body["global"] is False
    status, _, _ = await execute(session, fake, hook, {"content": "blocked too"})
    assert status == 429
    clock.advance(2.0)
    status, body, _ = await patch_message(session, fake, hook, created["id"], {"content": "ok"})
    assert (status, body["content"]) == (200, "ok")
    assert len(fake.message_edits(hook)) == 4


# --------------------------------------------------------------------------- forum tags


async def test_forum_tags_applied_to_a_post(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    fake.webhook_limit = None
    fake.add_guild(GUILD)
    forum = fake.add_channel(CHANNEL, guild_id=GUILD, forum=True, tags=["News", "Release", "Fix"])
    news, release, fix = (tag.id for tag in forum.available_tags)
    assert forum.available_tags[0] == ForumTag(id=news, name="News")
    hook, _ = fake.add_webhook(CHANNEL)
    tags_json = [
        {"id": str(tag), "name": name, "moderated": False, "emoji_id": None, "emoji_name": None}
        for tag, name in ((news, "News"), (release, "Release"), (fix, "Fix"))
    ]
    status, body = await bot_get(session, fake, f"/channels/{CHANNEL}")
    assert (status, body["type"], body["available_tags"]) == (200, 15, tags_json)
    status, body = await bot_get(session, fake, f"/guilds/{GUILD}/channels")
    assert [c["available_tags"] for c in body] == [tags_json]
    assert fake.guild_json(GUILD)["channels"][0]["available_tags"] == tags_json  # GUILD_CREATE

    post = {"content": "v2 is out", "thread_name": "Release 2"}
    status, body, _ = await execute(
        session, fake, hook, {**post, "applied_tags": [str(release), str(news)]}
    )
    assert status == 200, body
    [stored] = fake.messages()
    assert stored.thread_id is not None
    assert stored.applied_tags == [release, news]
    assert fake.channels[stored.thread_id].applied_tags == [release, news]
    status, body = await bot_get(session, fake, f"/channels/{stored.thread_id}")
    assert (status, body["applied_tags"]) == (200, [str(release), str(news)])

    choices = f"{{'{news}', '{release}', '{fix}'}}"
    status, body, _ = await execute(
        session, fake, hook, {**post, "applied_tags": [str(news), "123"]}
    )
    unknown = err("BASE_TYPE_CHOICES", f"Value must be one of {choices}.")
    assert (status, body) == (400, form_error({"applied_tags": {"1": unknown}}))
    status, body, _ = await execute(session, fake, hook, {**post, "applied_tags": [str(news)] * 6})
    assert (status, body) == (400, form_error({"applied_tags": too_long(5)}))
    status, body, _ = await execute(session, fake, hook, {**post, "applied_tags": ["abc"]})
    not_snowflake = err("NUMBER_TYPE_COERCE", 'Value "abc" is not snowflake.')
    assert (status, body) == (400, form_error({"applied_tags": {"0": not_snowflake}}))
    assert len(fake.messages()) == 1

    assert fake.set_forum_tags(CHANNEL, ["Fix", "Docs"])[0] == fix  # a kept name keeps its id
    with pytest.raises(ValueError, match="not a forum"):
        fake.set_forum_tags(stored.thread_id, ["x"])
    with pytest.raises(ValueError, match="duplicate"):
        fake.set_forum_tags(CHANNEL, ["A", "A"])
    with pytest.raises(ValueError, match="1 to 20"):
        fake.set_forum_tags(CHANNEL, ["x" * 21])


# --------------------------------------------------------------------------- role mentions


async def test_allowed_mentions_roles_ping_only_listed_existing_roles(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> None:
    fake.webhook_limit = None
    fake.add_guild(GUILD)
    readers = fake.add_role(GUILD, name="Readers")
    staff = fake.add_role(GUILD, name="Staff", mentionable=True)
    hook, _ = fake.add_webhook(CHANNEL, guild_id=GUILD)
    both = f"<@&{readers}> <@&{staff}>"
    cases: list[tuple[str, dict[str, Any] | None, list[int]]] = [
        (both, {"parse": [], "roles": [str(readers)]}, [readers]),
        (f"<@&{staff}>", {"parse": [], "roles": [str(readers)]}, []),
        (both, {"parse": ["roles"]}, [readers, staff]),
        (both, {"parse": ["users", "everyone"]}, []),
        (f"<@&{staff}> <@&424242> <@&{GUILD}>", None, [staff]),  # unknown and @everyone's id
    ]
    for content, allowed, pinged in cases:
        payload: dict[str, Any] = {"content": content}
        if allowed is not None:
            payload["allowed_mentions"] = allowed
        status, body, _ = await execute(session, fake, hook, payload)
        assert status == 200, body
        stored = fake.messages()[-1]
        assert stored.mentioned_role_ids == pinged, content
        assert body["mention_roles"] == [str(role) for role in pinged]
        assert stored.mentions_would_ping is bool(pinged)

    exclusive = {"parse": ["roles"], "roles": [str(readers)]}
    status, body, _ = await execute(
        session, fake, hook, {"content": both, "allowed_mentions": exclusive}
    )
    message = f'parse:["roles"] and roles: {[str(readers)]} are mutually exclusive.'
    expected = form_error(
        {"allowed_mentions": err("MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", message)}
    )
    assert (status, body) == (400, expected)

    # An edit rebuilds the mentions from the new content (default parsing without
    # allowed_mentions) but pings nobody.
    quiet = fake.messages()[1]
    status, body, _ = await patch_message(session, fake, hook, quiet.id, {"content": both})
    assert (status, body["mention_roles"]) == (200, [str(readers), str(staff)])
    assert (quiet.mentioned_role_ids, quiet.mentions_would_ping) == ([readers, staff], False)
    status, body, _ = await patch_message(
        session, fake, hook, quiet.id, {"content": both, "allowed_mentions": {"parse": []}}
    )
    assert (status, body["mention_roles"]) == (200, [])
    status, body, _ = await patch_message(
        session, fake, hook, quiet.id, {"content": both, "allowed_mentions": exclusive}
    )
    assert (status, body) == (400, expected)
