"""The fake Discord behaves like Discord: real HTTP on loopback, no mocks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from tests.fakes.fake_discord import (
    DISCORD_EPOCH_MS,
    SUPPRESS_NOTIFICATIONS,
    FakeDiscord,
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
