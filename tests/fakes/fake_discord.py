"""An in-process fake of Discord's REST API (webhook execution for now).

``FakeDiscord`` owns an ``aiohttp.web.Application`` served with ``AppRunner``/``TCPSite`` on
127.0.0.1 (port 0 by default), so it works inside pytest and inside a benchmark alike::

    async with FakeDiscord(bot_token="bot-token") as fake:
        webhook_id, token = fake.add_webhook(channel_id=111)
        # point feedhook's ``discord.api_base`` at ``fake.api_base`` and post to it
        assert fake.messages(channel_id=111)[0].content == "hello"

What it reproduces (as documented by Discord, plus observed behaviour where noted):

* ``POST /webhooks/{id}/{token}`` with ``wait`` and ``thread_id`` query parameters, JSON,
  form-urlencoded or multipart (``payload_json`` + files) bodies; the message object on
  ``wait=true`` (200), else 204 with no body.
* Form validation with Discord's nested ``{"code": 50035, "errors": ...}`` shape, collecting
  every violation at once like Discord does; 50006 for empty messages, 50109 for bad JSON.
* Forum channels: ``thread_name`` creates a thread whose id is the starter message's id;
  220001/220002/220003 for the wrong combinations.
* 404/10015 unknown (or deleted) webhook, 401/50027 wrong token, 403/50013 forbidden.
* Rate limits (see ``RateLimit``): per webhook, shared per channel, and global, with Discord's
  headers and 429 bodies.
* ``GET /channels/{id}/messages`` (bot token auth) newest first, with ``limit``, ``before``
  and ``after``; ``GET /webhooks/{id}/{token}`` returns the webhook object.
* Every body is JSON sent with ``Content-Type: application/json`` exactly (no charset);
  unknown routes and methods answer ``{"message": "404: Not Found", "code": 0}`` and the like.

Rate limit algorithm: fixed windows. A window opens with the first counted request after the
previous one ended and lasts ``per`` seconds; up to ``limit`` requests are admitted in it.
This is what Discord's headers describe: ``X-RateLimit-Remaining`` counts down to 0 and
everything comes back at once at ``X-RateLimit-Reset``. What counts where:

* global: every API request (including 4xx and 429 ones) from anyone;
* per webhook (scope ``user``): every authenticated execute request that was not itself
  answered 429, including ones later rejected with 400;
* per channel (scope ``shared``, all webhooks of a channel and its threads): only messages
  actually created.

Lengths are counted with ``len()`` (Python code points). Discord counts some limits in UTF-16
code units, so text with characters outside the BMP (emoji) may pass here and fail there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
JSON_CONTENT_TYPE = "application/json"

# Message flags a webhook may set: SUPPRESS_EMBEDS and SUPPRESS_NOTIFICATIONS.
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
WEBHOOK_SETTABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_EMBED_TOTAL = 6000
MAX_URL = 2048
MAX_THREAD_NAME = 100
USERNAME_MIN, USERNAME_MAX = 1, 80

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE_MENTION = re.compile(r"@(?:everyone|here)")
_WEBHOOK_PATH = re.compile(r"^(/api/v\d+/webhooks/\d+)/[^/]+")
_MENTION_TYPES = ("roles", "users", "everyone")


class RateLimit(NamedTuple):
    """``limit`` requests per fixed window of ``per`` seconds."""

    limit: int
    per: float


DEFAULT_WEBHOOK_LIMIT = RateLimit(5, 2.0)
DEFAULT_CHANNEL_LIMIT = RateLimit(30, 60.0)
DEFAULT_GLOBAL_LIMIT = RateLimit(50, 1.0)


class RequestRecord(NamedTuple):
    """One request as the fake saw it. ``path`` has the webhook token replaced by
    ``:token`` (the query string is kept); ``status`` is 0 when no response was sent."""

    time: float
    method: str
    path: str
    status: int


@dataclass
class StoredMessage:
    """A message a webhook created. ``channel_id`` is always the webhook's channel; a message
    in a thread (``thread_id`` query or a forum ``thread_name``) also has ``thread_id``."""

    id: int
    channel_id: int
    thread_id: int | None
    webhook_id: int
    content: str
    embeds: list[dict[str, Any]]
    username: str | None
    avatar_url: str | None
    allowed_mentions: dict[str, Any] | None
    mentions_would_ping: bool
    thread_name: str | None
    created_at: float
    flags: int = 0
    tts: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    author_name: str = "feedhook"
    guild_id: int | None = None
    mention_everyone: bool = False
    mentioned_user_ids: list[int] = field(default_factory=list)
    mentioned_role_ids: list[int] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)
    """The request body exactly as received (after JSON decoding)."""

    @property
    def location_id(self) -> int:
        """The channel the message is visible in: its thread, else its channel."""
        return self.thread_id if self.thread_id is not None else self.channel_id

    def to_json(self) -> dict[str, Any]:
        """The message object Discord returns for it."""
        data: dict[str, Any] = {
            "type": 0,
            "channel_id": str(self.location_id),
            "content": self.content,
            "attachments": [dict(a) for a in self.attachments],
            "embeds": [_embed_out(e) for e in self.embeds],
            "timestamp": _iso(self.created_at),
            "edited_timestamp": None,
            "flags": self.flags,
            "components": [],
            "id": str(self.id),
            "author": {
                "id": str(self.webhook_id),
                "username": self.author_name,
                "avatar": None,
                "discriminator": "0000",
                "public_flags": 0,
                "flags": 0,
                "bot": True,
                "global_name": None,
            },
            "mentions": [
                {
                    "id": str(uid),
                    "username": f"user{uid}",
                    "discriminator": "0",
                    "global_name": None,
                    "avatar": None,
                    "public_flags": 0,
                    "flags": 0,
                }
                for uid in self.mentioned_user_ids
            ],
            "mention_roles": [str(rid) for rid in self.mentioned_role_ids],
            "pinned": False,
            "mention_everyone": self.mention_everyone,
            "tts": self.tts,
            "webhook_id": str(self.webhook_id),
        }
        if self.thread_id is not None:
            data["position"] = 0
        return data


@dataclass
class FakeWebhook:
    id: int
    token: str
    channel_id: int
    guild_id: int | None
    name: str
    deleted: bool = False
    forbidden: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "application_id": None,
            "avatar": None,
            "channel_id": str(self.channel_id),
            "guild_id": None if self.guild_id is None else str(self.guild_id),
            "id": str(self.id),
            "name": self.name,
            "type": 1,
            "token": self.token,
        }


@dataclass
class FakeChannel:
    id: int
    guild_id: int | None
    forum: bool = False
    parent_id: int | None = None
    """Set for threads: the channel the thread lives in."""
    name: str | None = None


@dataclass
class _Window:
    """State of one fixed window; the rule is passed in so limits can change at runtime."""

    count: int = 0
    ends_at: float = -math.inf

    def remaining(self, rule: RateLimit, now: float) -> int:
        if now >= self.ends_at:
            return rule.limit
        return max(0, rule.limit - self.count)

    def reset_after(self, rule: RateLimit, now: float) -> float:
        if now >= self.ends_at:
            return rule.per
        return self.ends_at - now

    def take(self, rule: RateLimit, now: float) -> None:
        if now >= self.ends_at:
            self.count = 0
            self.ends_at = now + rule.per
        self.count += 1


@dataclass
class _Fault:
    kind: str  # "fail", "drop" or "hang"
    webhook_id: int | None
    remaining: int
    status: int = 500
    seconds: float = 0.0
    store_first: bool = False


class _Dropped(Exception):
    """Raised inside a handler to close the connection without answering."""


class FakeDiscord:
    """A fake Discord REST API on 127.0.0.1. See the module docstring."""

    def __init__(
        self,
        *,
        bot_token: str | None = None,
        webhook_limit: RateLimit | None = DEFAULT_WEBHOOK_LIMIT,
        channel_limit: RateLimit | None = DEFAULT_CHANNEL_LIMIT,
        global_limit: RateLimit | None = DEFAULT_GLOBAL_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        bucket_hash_per_webhook: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.bot_token = bot_token
        # Limits may be changed (or set to None to disable) at any time.
        self.webhook_limit = webhook_limit
        self.channel_limit = channel_limit
        self.global_limit = global_limit
        self.clock = clock
        self.wall_clock = wall_clock
        # Discord's X-RateLimit-Bucket names the route, not the webhook: every webhook shares
        # one hash and clients key buckets by hash + webhook id. True gives one per webhook.
        self.bucket_hash_per_webhook = bucket_hash_per_webhook
        self.host = host
        self.port = port

        self.requests: list[RequestRecord] = []
        self.internal_errors: list[BaseException] = []
        self.webhooks: dict[int, FakeWebhook] = {}
        self.channels: dict[int, FakeChannel] = {}
        self._messages: list[StoredMessage] = []
        self._last_id = 0
        self._faults: list[_Fault] = []
        self._webhook_windows: dict[int, _Window] = {}
        self._channel_windows: dict[int, _Window] = {}
        self._global_window = _Window()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self.app = web.Application(middlewares=[self._middleware])
        self._add_routes()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._closing.clear()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def close(self) -> None:
        if self._runner is None:
            return
        self._closing.set()  # wake hung handlers so shutdown is quick
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What feedhook's ``discord.api_base`` should be set to."""
        return f"{self.base_url}{API_PREFIX}"

    # ------------------------------------------------------------------ registry

    def next_snowflake(self) -> int:
        """A new id shaped like Discord's: milliseconds since 2015 << 22, always increasing."""
        ms = max(0, int(self.wall_clock() * 1000) - DISCORD_EPOCH_MS)
        candidate = ms << 22
        if candidate <= self._last_id:
            candidate = self._last_id + 1
        self._last_id = candidate
        return candidate

    def add_channel(
        self, channel_id: int, *, guild_id: int | None = None, forum: bool = False
    ) -> FakeChannel:
        """Register a channel (``add_webhook`` does it for you); ``forum`` makes it a forum."""
        channel = self.channels.get(channel_id)
        if channel is None:
            channel = FakeChannel(id=channel_id, guild_id=guild_id, forum=forum)
            self.channels[channel_id] = channel
        else:
            channel.forum = forum
            if guild_id is not None:
                channel.guild_id = guild_id
        return channel

    def add_webhook(
        self,
        channel_id: int,
        *,
        guild_id: int | None = None,
        name: str = "feedhook",
        webhook_id: int | None = None,
        token: str | None = None,
        forum: bool | None = None,
    ) -> tuple[int, str]:
        """Create a channel webhook; returns ``(webhook_id, token)``."""
        channel = self.channels.get(channel_id)
        if channel is None:
            channel = self.add_channel(channel_id, guild_id=guild_id, forum=bool(forum))
        elif forum is not None:
            channel.forum = forum
        if channel.parent_id is not None:
            raise ValueError("webhooks belong to channels, not threads")
        if webhook_id is None:
            webhook_id = self.next_snowflake()
        if webhook_id in self.webhooks:
            raise ValueError(f"webhook {webhook_id} already exists")
        if token is None:
            token = secrets.token_urlsafe(51)  # 68 characters, like Discord's
        self.webhooks[webhook_id] = FakeWebhook(
            id=webhook_id,
            token=token,
            channel_id=channel_id,
            guild_id=guild_id if guild_id is not None else channel.guild_id,
            name=name,
        )
        return webhook_id, token

    def add_thread(self, channel_id: int, *, name: str = "thread") -> int:
        """Create a thread in a (registered or new) channel; returns its id."""
        parent = self.channels.get(channel_id) or self.add_channel(channel_id)
        thread_id = self.next_snowflake()
        self.channels[thread_id] = FakeChannel(
            id=thread_id, guild_id=parent.guild_id, parent_id=channel_id, name=name
        )
        return thread_id

    def delete_webhook(self, webhook_id: int) -> None:
        """From now on the webhook answers 404 / 10015 Unknown Webhook."""
        self.webhooks[webhook_id].deleted = True

    def forbid_webhook(self, webhook_id: int, forbidden: bool = True) -> None:
        """From now on the webhook answers 403 / 50013 Missing Permissions."""
        self.webhooks[webhook_id].forbidden = forbidden

    def webhook_url(self, webhook_id: int, *, thread_id: int | None = None) -> str:
        """The URL a user would paste (real Discord host; contains the token)."""
        hook = self.webhooks[webhook_id]
        url = f"https://discord.com/api/webhooks/{hook.id}/{hook.token}"
        if thread_id is not None:
            url += f"?thread_id={thread_id}"
        return url

    def execute_url(self, webhook_id: int) -> str:
        """The URL of this fake that executes the webhook (no query string)."""
        hook = self.webhooks[webhook_id]
        return f"{self.api_base}/webhooks/{hook.id}/{hook.token}"

    def messages(
        self, channel_id: int | None = None, webhook_id: int | None = None
    ) -> list[StoredMessage]:
        """Created messages, oldest first. ``channel_id`` matches the webhook's channel or a
        thread id (then only that thread's messages)."""
        return [
            m
            for m in self._messages
            if (channel_id is None or channel_id in (m.channel_id, m.thread_id))
            and (webhook_id is None or m.webhook_id == webhook_id)
        ]

    async def wait_for_messages(
        self,
        count: int = 1,
        *,
        channel_id: int | None = None,
        webhook_id: int | None = None,
        within: float = 5.0,
    ) -> list[StoredMessage]:
        """Wait until ``messages(channel_id, webhook_id)`` holds at least ``count`` messages
        and return them; ``TimeoutError`` after ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                changed = self._changed
                found = self.messages(channel_id=channel_id, webhook_id=webhook_id)
                if len(found) >= count:
                    return found
                await changed.wait()

    async def wait_for_requests(self, count: int = 1, *, within: float = 5.0) -> None:
        """Wait until at least ``count`` requests have been answered (or dropped);
        ``TimeoutError`` after ``within`` seconds."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def count_status(self, status: int) -> int:
        return sum(1 for r in self.requests if r.status == status)

    def reset_rate_limits(self) -> None:
        self._webhook_windows.clear()
        self._channel_windows.clear()
        self._global_window = _Window()

    # ------------------------------------------------------------------ fault injection
    # Faults apply to webhook execute requests only (``webhook_id=None``: any webhook), are
    # consumed in the order they were added, and bypass rate limiting.

    def fail_next(self, webhook_id: int | None = None, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status`` and a Discord-style JSON body,
        creating nothing."""
        self._faults.append(_Fault("fail", webhook_id, count, status=status))

    def hang_next(
        self,
        webhook_id: int | None = None,
        count: int = 1,
        seconds: float = 30.0,
        *,
        store_first: bool = False,
    ) -> None:
        """Delay the next ``count`` requests by ``seconds``.

        By default the fake waits first and then handles the request, unless the client has
        hung up meanwhile (then nothing is created: the timed-out delivery did not happen).
        With ``store_first=True`` the request is handled (message created) first and only
        the answer is delayed: the timed-out delivery did happen.
        """
        self._faults.append(
            _Fault("hang", webhook_id, count, seconds=seconds, store_first=store_first)
        )

    def accept_then_drop(self, webhook_id: int | None = None, count: int = 1) -> None:
        """Handle the next ``count`` requests normally (creating the message when valid), then
        close the connection without an answer."""
        self._faults.append(_Fault("drop", webhook_id, count))

    def _take_fault(self, kinds: Iterable[str], webhook_id: int) -> _Fault | None:
        wanted = set(kinds)
        for fault in self._faults:
            if fault.kind in wanted and fault.webhook_id in (None, webhook_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ HTTP plumbing

    def _add_routes(self) -> None:
        r = self.app.router
        r.add_post(API_PREFIX + r"/webhooks/{webhook_id:\d+}/{token}", self._execute_webhook)
        r.add_get(API_PREFIX + r"/webhooks/{webhook_id:\d+}/{token}", self._get_webhook)
        r.add_get(API_PREFIX + r"/channels/{channel_id:\d+}/messages", self._channel_messages)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = self.clock()
        path = _WEBHOOK_PATH.sub(r"\1/:token", request.path)
        if request.query_string:
            path += "?" + request.query_string
        status = 0
        try:
            response = await handler(request)
        except _Dropped:
            if request.transport is not None:
                request.transport.close()
            response = web.Response(status=204)  # never reaches the client
        except web.HTTPException as exc:
            status = exc.status
            response = _json_response({"message": f"{exc.status}: {exc.reason}", "code": 0}, status)
        except Exception as exc:  # a bug in the fake: make it visible to the test
            self.internal_errors.append(exc)
            status = 500
            response = _json_response({"message": "500: Internal Server Error", "code": 0}, 500)
        else:
            status = response.status
        self.requests.append(RequestRecord(started, request.method, path, status))
        self._notify()
        return response

    def _bucket_hash(self, webhook_id: int) -> str:
        route = "POST /webhooks/{webhook_id}/{webhook_token}"
        if self.bucket_hash_per_webhook:
            route += f" {webhook_id}"
        return hashlib.sha256(route.encode()).hexdigest()[:32]

    def _webhook_headers(self, hook: FakeWebhook, now: float) -> dict[str, str]:
        rule = self.webhook_limit
        if rule is None:
            return {}
        window = self._webhook_windows.setdefault(hook.id, _Window())
        reset_after = window.reset_after(rule, now)
        return {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Remaining": str(window.remaining(rule, now)),
            "X-RateLimit-Reset": f"{self.wall_clock() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self._bucket_hash(hook.id),
        }

    def _too_many(self, retry_after: float, scope: str, headers: Mapping[str, str]) -> web.Response:
        retry_after = max(retry_after, 0.001)
        out = dict(headers)
        out["Retry-After"] = str(math.ceil(retry_after))
        out["Via"] = "1.1 google"
        out["X-RateLimit-Scope"] = scope
        is_global = scope == "global"
        if is_global:
            out["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": is_global,
        }
        return _json_response(body, 429, out)

    def _check_global(self, now: float, headers: Mapping[str, str]) -> web.Response | None:
        """Count the request globally; a 429 when the global window is full."""
        rule = self.global_limit
        if rule is None:
            return None
        window = self._global_window
        if window.remaining(rule, now) <= 0:
            return self._too_many(window.reset_after(rule, now), "global", headers)
        window.take(rule, now)
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def _client_gone(self, request: web.Request) -> bool:
        transport = request.transport
        return self._closing.is_set() or transport is None or transport.is_closing()

    # ------------------------------------------------------------------ routes

    async def _execute_webhook(self, request: web.Request) -> web.StreamResponse:
        webhook_id = int(request.match_info["webhook_id"])
        hang = self._take_fault(("hang",), webhook_id)
        if hang is not None and not hang.store_first:
            await self._pause(hang.seconds)
            if self._client_gone(request):
                raise _Dropped
        outcome = self._take_fault(("fail", "drop"), webhook_id)
        if outcome is not None and outcome.kind == "fail":
            response = _json_response(
                {"message": f"{outcome.status}: {_reason(outcome.status)}", "code": 0},
                outcome.status,
            )
        else:
            response = await self._handle_execute(request, webhook_id)
            if outcome is not None:  # accept_then_drop
                raise _Dropped
        if hang is not None and hang.store_first:
            await self._pause(hang.seconds)
            if self._client_gone(request):
                raise _Dropped
        return response

    async def _handle_execute(self, request: web.Request, webhook_id: int) -> web.Response:
        now = self.clock()
        hook = self.webhooks.get(webhook_id)
        headers = {}
        if hook is not None and not hook.deleted:
            headers = self._webhook_headers(hook, now)
        limited = self._check_global(now, headers)
        if limited is not None:
            return limited
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        if not secrets.compare_digest(hook.token, request.match_info["token"]):
            return _error(401, 50027, "Invalid Webhook Token")
        if hook.forbidden:
            return _error(403, 50013, "Missing Permissions")

        rule = self.webhook_limit
        window = self._webhook_windows.setdefault(hook.id, _Window())
        if rule is not None and window.remaining(rule, now) <= 0:
            return self._too_many(window.reset_after(rule, now), "user", headers)
        channel_rule = self.channel_limit
        channel_window = self._channel_windows.setdefault(hook.channel_id, _Window())
        if channel_rule is not None and channel_window.remaining(channel_rule, now) <= 0:
            return self._too_many(channel_window.reset_after(channel_rule, now), "shared", headers)
        if rule is not None:
            window.take(rule, now)
        headers = self._webhook_headers(hook, now)

        # Query string.
        errors = _Errors()
        wait = _parse_bool(request.query.get("wait", "false"))
        if wait is None:
            errors.add(
                ("wait",), "BOOLEAN_TYPE_COERCE", f'Value "{request.query["wait"]}" is not bool.'
            )
        thread_id: int | None = None
        raw_thread = request.query.get("thread_id")
        if raw_thread is not None:
            if raw_thread.isdigit():
                thread_id = int(raw_thread)
            else:
                errors.add(
                    ("thread_id",), "NUMBER_TYPE_COERCE", f'Value "{raw_thread}" is not snowflake.'
                )

        # Body.
        try:
            body, files = await _read_body(request)
        except _InvalidJSON:
            return _error(400, 50109, "The request body contains invalid JSON.", headers)
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return _form_error(errors, headers)
        _validate_payload(body, errors)
        if errors:
            return _form_error(errors, headers)

        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        if not content.strip() and not embeds and not files:
            return _error(400, 50006, "Cannot send an empty message", headers)

        # Threads and forums.
        channel = self.channels[hook.channel_id]
        thread_name = body.get("thread_name")
        if thread_id is not None and thread_name is not None:
            return _error(
                400,
                220002,
                "Webhooks posted to forum channels cannot have both a thread_name and thread_id",
                headers,
            )
        if thread_id is not None:
            thread = self.channels.get(thread_id)
            if thread is None or thread.parent_id != channel.id:
                return _error(404, 10003, "Unknown Channel", headers)
        elif thread_name is not None:
            if not channel.forum:
                return _error(
                    400, 220003, "Webhooks can only create threads in forum channels", headers
                )
        elif channel.forum:
            return _error(
                400,
                220001,
                "Webhooks posted to forum channels must have a thread_name or thread_id",
                headers,
            )

        # Create the message.
        if channel_rule is not None:
            channel_window.take(channel_rule, now)
        message_id = self.next_snowflake()
        if thread_name is not None:
            thread_id = message_id  # a forum post's id is its starter message's id
            self.channels[thread_id] = FakeChannel(
                id=thread_id, guild_id=channel.guild_id, parent_id=channel.id, name=thread_name
            )
        allowed = body.get("allowed_mentions")
        everyone, users, roles = _mentions(content, allowed)
        message = StoredMessage(
            id=message_id,
            channel_id=channel.id,
            thread_id=thread_id,
            webhook_id=hook.id,
            content=content,
            embeds=[dict(e) for e in embeds],
            username=body.get("username"),
            avatar_url=body.get("avatar_url"),
            allowed_mentions=allowed,
            mentions_would_ping=bool(everyone or users or roles),
            thread_name=thread_name,
            created_at=self.wall_clock(),
            flags=(body.get("flags") or 0) & WEBHOOK_SETTABLE_FLAGS,
            tts=bool(body.get("tts")),
            attachments=[
                {
                    "id": str(self.next_snowflake()),
                    "filename": name,
                    "size": size,
                    "content_type": ctype,
                    "url": f"https://cdn.discordapp.com/attachments/{channel.id}/{message_id}/{name}",
                    "proxy_url": f"https://media.discordapp.net/attachments/{channel.id}/{message_id}/{name}",
                }
                for name, size, ctype in files
            ],
            author_name=body.get("username") or hook.name,
            guild_id=hook.guild_id,
            mention_everyone=everyone,
            mentioned_user_ids=users,
            mentioned_role_ids=roles,
            body=body,
        )
        self._messages.append(message)
        self._notify()
        if wait:
            return _json_response(message.to_json(), 200, headers)
        return web.Response(status=204, headers=headers)

    async def _get_webhook(self, request: web.Request) -> web.Response:
        hook = self.webhooks.get(int(request.match_info["webhook_id"]))
        limited = self._check_global(self.clock(), {})
        if limited is not None:
            return limited
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        if not secrets.compare_digest(hook.token, request.match_info["token"]):
            return _error(401, 50027, "Invalid Webhook Token")
        return _json_response(hook.to_json(), 200)

    async def _channel_messages(self, request: web.Request) -> web.Response:
        limited = self._check_global(self.clock(), {})
        if limited is not None:
            return limited
        auth = request.headers.get("Authorization", "")
        if self.bot_token is None or not secrets.compare_digest(auth, f"Bot {self.bot_token}"):
            return _error(401, 0, "401: Unauthorized")
        channel_id = int(request.match_info["channel_id"])
        if channel_id not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        errors = _Errors()
        limit = 50
        raw_limit = request.query.get("limit")
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                errors.add(("limit",), "NUMBER_TYPE_COERCE", f'Value "{raw_limit}" is not int.')
            else:
                if limit < 1:
                    errors.add(
                        ("limit",),
                        "NUMBER_TYPE_MIN",
                        "int value should be greater than or equal to 1.",
                    )
                elif limit > 100:
                    errors.add(
                        ("limit",),
                        "NUMBER_TYPE_MAX",
                        "int value should be less than or equal to 100.",
                    )
        bounds: dict[str, int] = {}
        for key in ("before", "after"):
            raw = request.query.get(key)
            if raw is None:
                continue
            if raw.isdigit():
                bounds[key] = int(raw)
            else:
                errors.add((key,), "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
        if errors:
            return _form_error(errors, {})
        found = [m for m in self._messages if m.location_id == channel_id]  # oldest first
        if "before" in bounds:
            found = [m for m in found if m.id < bounds["before"]]
        if "after" in bounds:
            # The ``limit`` messages right after ``after``, still returned newest first.
            found = [m for m in found if m.id > bounds["after"]][:limit]
        else:
            found = found[-limit:]
        return _json_response([m.to_json() for m in reversed(found)], 200)


# ---------------------------------------------------------------------- helpers


def _json_response(
    data: Any, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    out = dict(headers or {})
    out["Content-Type"] = JSON_CONTENT_TYPE
    return web.Response(status=status, body=json.dumps(data).encode(), headers=out)


def _error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json_response({"code": code, "message": message}, status, headers)


def _form_error(errors: _Errors, headers: Mapping[str, str]) -> web.Response:
    body = {"code": 50035, "errors": errors.tree, "message": "Invalid Form Body"}
    return _json_response(body, 400, headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


def _embed_out(embed: Mapping[str, Any]) -> dict[str, Any]:
    out = {"type": "rich", **embed}
    if "fields" in out:
        out["fields"] = [{"inline": False, **f} for f in out["fields"]]
    return out


def _parse_bool(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    return None


class _InvalidJSON(Exception):
    pass


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, int, str]]]:
    """The payload and any files as ``(filename, size, content_type)``.

    JSON, ``multipart/form-data`` (``payload_json`` or plain fields, plus files) and
    form-urlencoded bodies are understood; anything else counts as an empty payload.
    """
    ctype = request.content_type
    files: list[tuple[str, int, str]] = []
    if ctype == "multipart/form-data":
        payload: Any = {}
        fields: dict[str, str] = {}
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            if part.filename:
                files.append((part.filename, len(data), part.headers.get("Content-Type", "")))
            elif part.name == "payload_json":
                payload = _loads(data)
            elif part.name:
                fields[part.name] = data.decode("utf-8", "replace")
        if payload == {} and fields:
            payload = fields
        return payload, files
    if ctype == "application/x-www-form-urlencoded":
        return dict((await request.post()).items()), files
    raw = await request.read()
    if ctype != JSON_CONTENT_TYPE or not raw.strip():
        return {}, files
    return _loads(raw), files


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise _InvalidJSON from exc


class _Errors:
    """Collects validation errors into Discord's nested ``{"path": {"_errors": [...]}}``."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.tree)

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})


def _check_string(
    errors: _Errors,
    path: tuple[str | int, ...],
    value: Any,
    *,
    max_len: int,
    min_len: int = 0,
    required: bool = False,
) -> bool:
    """Validate an optional (or required) string; True when it is a usable string."""
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return False
    if not isinstance(value, str):
        errors.add(path, "BASE_TYPE_STRING", f'Could not interpret "{value!r}" as string.')
        return False
    if required and not value.strip():
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return False
    if min_len and not min_len <= len(value) <= max_len:
        errors.add(
            path, "BASE_TYPE_BAD_LENGTH", f"Must be between {min_len} and {max_len} in length."
        )
        return False
    if len(value) > max_len:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {max_len} or fewer in length.")
        return False
    return True


def _check_url(
    errors: _Errors, path: tuple[str | int, ...], value: Any, *, attachment: bool = False
) -> None:
    if not _check_string(errors, path, value, max_len=MAX_URL):
        return
    schemes = ("http", "https", "attachment") if attachment else ("http", "https")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in schemes
        or not parts.netloc
        or any(c.isspace() for c in value)
    ):
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def _check_dict(errors: _Errors, path: tuple[str | int, ...], value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return False
    return True


def _check_list(errors: _Errors, path: tuple[str | int, ...], value: Any, max_len: int) -> bool:
    if value is None:
        return False
    if not isinstance(value, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return False
    if len(value) > max_len:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {max_len} or fewer in length.")
        return False
    return True


def _validate_payload(body: dict[str, Any], errors: _Errors) -> None:
    _check_string(errors, ("content",), body.get("content"), max_len=MAX_CONTENT)

    username: Any = body.get("username")
    if _check_string(errors, ("username",), username, min_len=USERNAME_MIN, max_len=USERNAME_MAX):
        lowered = username.lower()
        for word in ("discord", "clyde"):
            if word in lowered:
                errors.add(
                    ("username",), "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{word}"'
                )
        if lowered.strip() in ("everyone", "here"):
            errors.add(("username",), "USERNAME_INVALID", f'Username cannot be "{lowered.strip()}"')
    if body.get("avatar_url") is not None:
        _check_url(errors, ("avatar_url",), body["avatar_url"])
    if body.get("thread_name") is not None:
        _check_string(
            errors, ("thread_name",), body["thread_name"], min_len=1, max_len=MAX_THREAD_NAME
        )
    flags = body.get("flags")
    if flags is not None and (not isinstance(flags, int) or isinstance(flags, bool)):
        errors.add(("flags",), "NUMBER_TYPE_COERCE", f'Value "{flags}" is not int.')

    embeds: Any = body.get("embeds")
    if _check_list(errors, ("embeds",), embeds, MAX_EMBEDS):
        total = 0
        for index, embed in enumerate(embeds):
            total += _validate_embed(errors, ("embeds", index), embed)
        if total > MAX_EMBED_TOTAL:
            errors.add(
                ("embeds",),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
            )

    allowed: Any = body.get("allowed_mentions")
    if _check_dict(errors, ("allowed_mentions",), allowed):
        _validate_allowed_mentions(errors, allowed)


def _validate_embed(errors: _Errors, path: tuple[str | int, ...], embed: Any) -> int:
    """Validate one embed; returns the characters it counts towards the 6000 total."""
    if not _check_dict(errors, path, embed):
        if embed is None:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return 0
    size = 0

    def text(sub: tuple[str | int, ...], value: Any, max_len: int, required: bool = False) -> None:
        nonlocal size
        if _check_string(errors, path + sub, value, max_len=max_len, required=required):
            size += len(value)

    text(("title",), embed.get("title"), MAX_EMBED_TITLE)
    text(("description",), embed.get("description"), MAX_EMBED_DESCRIPTION)
    if embed.get("url") is not None:
        _check_url(errors, (*path, "url"), embed["url"])
    timestamp = embed.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            errors.add(
                (*path, "timestamp"),
                "DATE_TYPE_PARSE",
                f"Could not parse {timestamp}. Should be ISO8601.",
            )
    color = embed.get("color")
    if color is not None and (
        not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= 0xFFFFFF
    ):
        errors.add((*path, "color"), "NUMBER_TYPE_COERCE", f'Value "{color}" is not int.')

    footer = embed.get("footer")
    if _check_dict(errors, (*path, "footer"), footer):
        text(("footer", "text"), footer.get("text"), MAX_FOOTER_TEXT, required=True)
        if footer.get("icon_url") is not None:
            _check_url(errors, (*path, "footer", "icon_url"), footer["icon_url"], attachment=True)
    author = embed.get("author")
    if _check_dict(errors, (*path, "author"), author):
        text(("author", "name"), author.get("name"), MAX_AUTHOR_NAME, required=True)
        if author.get("url") is not None:
            _check_url(errors, (*path, "author", "url"), author["url"])
        if author.get("icon_url") is not None:
            _check_url(errors, (*path, "author", "icon_url"), author["icon_url"], attachment=True)
    for key in ("image", "thumbnail"):
        media = embed.get(key)
        if _check_dict(errors, (*path, key), media):
            if media.get("url") is None:
                errors.add((*path, key, "url"), "BASE_TYPE_REQUIRED", "This field is required")
            else:
                _check_url(errors, (*path, key, "url"), media["url"], attachment=True)

    fields = embed.get("fields")
    if _check_list(errors, (*path, "fields"), fields, MAX_EMBED_FIELDS):
        for index, item in enumerate(fields):
            if not _check_dict(errors, (*path, "fields", index), item):
                continue
            text(("fields", index, "name"), item.get("name"), MAX_FIELD_NAME, required=True)
            text(("fields", index, "value"), item.get("value"), MAX_FIELD_VALUE, required=True)
    return size


def _validate_allowed_mentions(errors: _Errors, allowed: dict[str, Any]) -> None:
    base = ("allowed_mentions",)
    parse: Any = allowed.get("parse")
    parse_list: list[Any] = []
    if _check_list(errors, (*base, "parse"), parse, len(_MENTION_TYPES)):
        parse_list = parse
        for index, kind in enumerate(parse_list):
            if kind not in _MENTION_TYPES:
                errors.add(
                    (*base, "parse", index),
                    "BASE_TYPE_CHOICES",
                    f"Value must be one of {set(_MENTION_TYPES)}.",
                )
    for key in ("users", "roles"):
        ids: Any = allowed.get(key)
        if not _check_list(errors, (*base, key), ids, 100):
            continue
        for index, value in enumerate(ids):
            if not str(value).isdigit():
                errors.add(
                    (*base, key, index), "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.'
                )
        if ids and key in parse_list:
            errors.add(
                base,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{key}"] and {key}: {ids} are mutually exclusive.',
            )


def _mentions(content: str, allowed: dict[str, Any] | None) -> tuple[bool, list[int], list[int]]:
    """What the content would actually ping: (@everyone/@here, user ids, role ids).

    Without ``allowed_mentions`` Discord parses everything in the content; with it, a type
    pings only when listed in ``parse``, and single users/roles when listed by id. Embeds
    never ping. (SUPPRESS_NOTIFICATIONS does not change what is parsed.)
    """
    if allowed is None:
        parse = set(_MENTION_TYPES)
        allowed_users: set[str] = set()
        allowed_roles: set[str] = set()
    else:
        parse = set(allowed.get("parse") or [])
        allowed_users = {str(u) for u in allowed.get("users") or []}
        allowed_roles = {str(r) for r in allowed.get("roles") or []}
    everyone = "everyone" in parse and _EVERYONE_MENTION.search(content) is not None
    users = _unique(
        int(u) for u in _USER_MENTION.findall(content) if "users" in parse or u in allowed_users
    )
    roles = _unique(
        int(r) for r in _ROLE_MENTION.findall(content) if "roles" in parse or r in allowed_roles
    )
    return everyone, users, roles


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))
