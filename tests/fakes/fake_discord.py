"""An in-process fake of Discord: webhook execution, plus the gateway, application commands,
interactions and the REST routes a feed bot uses, enough for the real discord.py client.

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
  220001/220002/220003 for the wrong combinations. ``add_channel(..., tags=[...])`` /
  ``set_forum_tags`` give a forum ``available_tags``; ``applied_tags`` (at most 5 ids of that
  forum's tags, else a 50035 form error) are recorded on the thread and the message.
* ``PATCH /webhooks/{id}/{token}/messages/{message_id}`` (``thread_id``) edits a message the
  webhook posted: validated like an execute, sharing the webhook's rate limit window;
  404/10015 unknown webhook or wrong token, 404/10008 unknown, deleted (``delete_message``),
  foreign or other-thread message. Edits are in ``message_edits()`` and on the message.
* Mentions: each message records what it actually pings under ``allowed_mentions``
  (``mentioned_role_ids``: listed or parsed roles that exist; ``parse`` and ``roles`` both
  naming roles is a 400).
* 404/10015 unknown (or deleted) webhook, 401/50027 wrong token, 403/50013 forbidden.
* Rate limits (see ``RateLimit``): per webhook, shared per channel, and global, with Discord's
  headers and 429 bodies.
* ``GET /channels/{id}/messages`` (bot token auth) newest first, with ``limit``, ``before``
  and ``after``; ``GET /webhooks/{id}/{token}`` returns the webhook object.
* Every body is JSON sent with ``Content-Type: application/json`` exactly (no charset);
  unknown routes and methods answer ``{"message": "404: Not Found", "code": 0}`` and the like.

Running the real discord.py 2.7 client against it (no mocks)::

    fake.add_guild(GUILD)
    fake.add_channel(CHANNEL, guild_id=GUILD, name="news")        # type=5 / 15 for others
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)  # REST and webhooks
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(fake.gateway_url))                # must be a yarl.URL
    bot = commands.Bot(..., guild_ready_timeout=0.1)               # else on_ready waits 2 s
    await bot.login(fake.bot_token)        # GET /users/@me, GET /oauth2/applications/@me
    task = asyncio.create_task(bot.connect(reconnect=False))
    await fake.wait_until_connected(); await bot.wait_until_ready()
    await bot.tree.sync(guild=discord.Object(GUILD))
    record = await fake.invoke(GUILD, CHANNEL, USER, "feed", "add", {"url": "https://..."})
    message = await record.wait_for_response()                     # .content, .ephemeral
    ...
    await bot.close(); await task           # close the bot before the fake

Notes on what discord.py does (2.7.1): ``Client.connect`` never calls ``GET /gateway/bot``;
it connects to ``DEFAULT_GATEWAY`` with ``?v=10&encoding=json&compress=zlib-stream`` (or
``zstd-stream`` when ``zstandard``/``compression.zstd`` is importable), with no option to
turn compression off, so the gateway speaks both (and plain JSON without ``compress``).
Resumes go to READY's ``resume_gateway_url`` (this fake's URL). Interaction callbacks are
posted with ``?with_response=1`` and parsed as an InteractionCallbackResponse
(``{"interaction": {...}, "resource": {"type", "message"}}``).

Gateway (``/gateway``): HELLO, HEARTBEAT_ACK, IDENTIFY (token must equal ``bot_token``; else
close 4004) -> READY + one GUILD_CREATE per guild (with the GUILDS intent), RESUME with replay
of missed events (else INVALID_SESSION), RECONNECT on request; events are filtered by intents.
Several sessions of the bot (several clients with the same token, unsharded) are all
served as Discord serves them: every identified session gets every dispatch, GUILD_CREATE,
CHANNEL_DELETE, ..., and INTERACTION_CREATE alike, each numbered by its own sequence; the
first callback to an interaction wins, the others get 400/40060. For tests that need at most
one session at a time: ``open_sessions``, ``open_session_ids``, ``max_concurrent_sessions``,
``identify_count``/``resume_count``, ``session_log`` (``GatewaySessionSpan``: monotonic open
and close times) with ``session_overlaps()``, ``wait_for_open_sessions(n)`` and
``wait_for_open_sessions_at_most(n)``; command overwrites are in ``command_syncs``
(``command_sync_count``, ``wait_for_command_syncs``).
Interactions: ``invoke``/``autocomplete`` build INTERACTION_CREATE from the *synced* command
definition and check options like Discord's client does; ``FakeInteraction`` collects every
callback (3 s deadline -> 404/10062; a second ack -> 400/40060), followup (the first after a
deferral fills the "thinking" message) and edit. A type 9 callback (modal: ACTION_ROW-wrapped
TEXT_INPUTs as discord.py's ``Modal`` sends them, or LABEL/TEXT_DISPLAY components) is
validated and kept as ``interaction.modal``; ``submit_modal`` fills it in and sends the
MODAL_SUBMIT back over the gateway (callbacks 4, 5, 6, 7). ``add_role`` adds guild roles
(role and mentionable options resolve to them). Bot REST: users/@me, application, gateway,
command bulk overwrite, channels, guilds, roles, webhooks (15 per channel -> 30007,
``deny_manage_webhooks`` -> 403/50013; creating or deleting one sends WEBHOOKS_UPDATE).
Interaction endpoints skip the global rate limit, as on Discord.

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
import copy
import hashlib
import importlib
import json
import math
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, WSMsgType, web

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
MAX_APPLIED_TAGS = 5
MAX_FORUM_TAGS = 20
MAX_TAG_NAME = 20
MAX_ROLE_NAME = 100

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE_MENTION = re.compile(r"@(?:everyone|here)")
_WEBHOOK_PATH = re.compile(r"^(/api/v\d+/(?:webhooks|interactions)/\d+)/[^/]+")
_MENTION_TYPES = ("roles", "users", "everyone")

# Interaction types and the callback types Discord accepts for each.
APPLICATION_COMMAND = 2
APPLICATION_COMMAND_AUTOCOMPLETE = 4
MODAL_SUBMIT = 5
_CALLBACK_TYPES = {
    APPLICATION_COMMAND: (4, 5, 9),
    APPLICATION_COMMAND_AUTOCOMPLETE: (8,),
    MODAL_SUBMIT: (4, 5, 6, 7),
}

# Component types a modal may hold (https://discord.com/developers/docs/components/reference).
ACTION_ROW = 1
TEXT_INPUT = 4
TEXT_DISPLAY = 10
LABEL = 18
# What a LABEL may wrap besides a text input: selects, file upload, radio/checkbox groups.
_LABEL_CHILD_TYPES = (3, TEXT_INPUT, 5, 6, 7, 8, 19, 21, 22, 23)
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 45
MAX_LABEL_DESCRIPTION = 100
MAX_TEXT_INPUT = 4000
MAX_PLACEHOLDER = 100

# Interaction message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7
INTERACTION_SETTABLE_FLAGS = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MANAGE_WEBHOOKS
    | SEND_MESSAGES_IN_THREADS
)

# Channel types.
GUILD_TEXT = 0
GUILD_ANNOUNCEMENT = 5
PUBLIC_THREAD = 11
GUILD_FORUM = 15
_WEBHOOK_CHANNEL_TYPES = (GUILD_TEXT, GUILD_ANNOUNCEMENT, GUILD_FORUM)

# Gateway.
GATEWAY_PATH = "/gateway"
GATEWAY_VERSION = 10
DEFAULT_HEARTBEAT_INTERVAL_MS = 41_250
DEFAULT_BOT_USER_ID = 1_180_000_000_000_000_001
DEFAULT_OWNER_ID = 1_180_000_000_000_000_002
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_WEBHOOKS = 1 << 5
INTENT_GUILD_MESSAGES = 1 << 9
# Which intent an event needs; events not listed are always sent.
_EVENT_INTENTS = {
    **dict.fromkeys(
        (
            "GUILD_CREATE",
            "GUILD_UPDATE",
            "GUILD_DELETE",
            "GUILD_ROLE_CREATE",
            "GUILD_ROLE_UPDATE",
            "GUILD_ROLE_DELETE",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE",
            "CHANNEL_PINS_UPDATE",
            "THREAD_CREATE",
            "THREAD_UPDATE",
            "THREAD_DELETE",
            "THREAD_LIST_SYNC",
            "THREAD_MEMBER_UPDATE",
        ),
        INTENT_GUILDS,
    ),
    **dict.fromkeys(
        ("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE"), INTENT_GUILD_MEMBERS
    ),
    "WEBHOOKS_UPDATE": INTENT_GUILD_WEBHOOKS,
    **dict.fromkeys(
        ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"),
        INTENT_GUILD_MESSAGES,
    ),
}
_BACKLOG = 1000  # dispatched events kept per session for RESUME
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")

_T = TypeVar("_T")


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
class GatewaySessionSpan:
    """One stretch of time during which a gateway session was open: identified (READY
    sent) or resumed (RESUMED sent) on a live websocket, until that websocket closed or
    another connection resumed the session. Times are ``time.monotonic()`` (CLOCK_MONOTONIC,
    comparable with other processes on the same machine), not ``FakeDiscord.clock``.

    A session that reconnects and RESUMEs gets a new span with the same ``session_id`` and
    ``how == "resume"``; spans of one session never count as an overlap."""

    session_id: str
    how: str
    """``"identify"`` or ``"resume"``."""
    opened_at: float
    closed_at: float | None = None
    """``None`` while open."""
    close_code: int | None = None
    """The websocket close code (1000 from ``Client.close()``, 1006/``None`` when the peer
    vanished, 4000 "Session resumed elsewhere.", ...); ``None`` while open."""
    peer: str | None = None
    """``"host:port"`` of the client's end of the websocket."""

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def overlaps(self, other: GatewaySessionSpan) -> bool:
        """Whether the two spans were open at the same time (touching ends do not count)."""
        end = math.inf if self.closed_at is None else self.closed_at
        other_end = math.inf if other.closed_at is None else other.closed_at
        return self.opened_at < other_end and other.opened_at < end


class CommandSync(NamedTuple):
    """One ``PUT /applications/{id}/commands`` (``guild_id None``) or
    ``PUT /applications/{id}/guilds/{guild_id}/commands`` request, accepted or not."""

    at: float
    """``time.monotonic()`` when it was answered."""
    guild_id: int | None
    names: tuple[str, ...]
    """The command names in the body (empty for an empty overwrite or a bad body)."""
    status: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class MessageEdit(NamedTuple):
    """One accepted ``PATCH /webhooks/{id}/{token}/messages/{message_id}`` of a webhook's
    message (see ``FakeDiscord.message_edits``)."""

    at: float
    """``wall_clock()`` when it was applied (the message's ``edited_timestamp``)."""
    message_id: int
    webhook_id: int
    thread_id: int | None
    body: dict[str, Any]
    """The request body exactly as received (after JSON decoding)."""


@dataclass
class StoredMessage:
    """A message a webhook created. ``channel_id`` is always the webhook's channel; a message
    in a thread (``thread_id`` query or a forum ``thread_name``) also has ``thread_id``.

    Mentions: ``mention_everyone``, ``mentioned_user_ids`` and ``mentioned_role_ids`` are what
    the content actually pings under ``allowed_mentions`` (roles only when the role exists in
    a guild the fake knows; ``<@&guild_id>`` never pings). An edit rebuilds them from the new
    content (with the edit's ``allowed_mentions``, else default parsing) but never notifies
    anyone: ``mentions_would_ping`` stays what the creation did."""

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
    applied_tags: list[int] = field(default_factory=list)
    """Forum tag ids a forum post (``thread_name`` + ``applied_tags``) was created with."""
    edited_at: float | None = None
    """``wall_clock()`` of the last accepted edit (``edited_timestamp``)."""
    edits: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of the accepted edits, oldest first (the creation's body is ``body``)."""
    deleted: bool = False
    """``FakeDiscord.delete_message``: gone from the channel; edits answer 10008."""

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
            "edited_timestamp": None if self.edited_at is None else _iso(self.edited_at),
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
    application_id: int | None = None
    """Set for webhooks a bot created (``POST /channels/{id}/webhooks``)."""
    creator_id: int | None = None
    """The user who created it: the bot user, or ``None`` for "a member" (``add_webhook``)."""
    avatar: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The object ``GET /webhooks/{id}/{token}`` returns (no ``user``)."""
        return {
            "application_id": None if self.application_id is None else str(self.application_id),
            "avatar": self.avatar,
            "channel_id": str(self.channel_id),
            "guild_id": None if self.guild_id is None else str(self.guild_id),
            "id": str(self.id),
            "name": self.name,
            "type": 1,
            "token": self.token,
        }


@dataclass(frozen=True)
class ForumTag:
    """A tag of a forum channel's ``available_tags`` (``set_forum_tags``)."""

    id: int
    name: str
    moderated: bool = False
    emoji_id: int | None = None
    emoji_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "moderated": self.moderated,
            "emoji_id": None if self.emoji_id is None else str(self.emoji_id),
            "emoji_name": self.emoji_name,
        }


@dataclass
class FakeChannel:
    id: int
    guild_id: int | None
    forum: bool = False
    parent_id: int | None = None
    """Set for threads: the channel the thread lives in."""
    name: str | None = None
    kind: int = GUILD_TEXT
    """0 text or 5 announcement; ``forum`` and ``parent_id`` take precedence (see ``type``)."""
    position: int = 0
    topic: str | None = None
    manage_webhooks_denied: bool = False
    """``deny_manage_webhooks``: a channel overwrite denies the bot MANAGE_WEBHOOKS."""
    available_tags: list[ForumTag] = field(default_factory=list)
    """Forums: the tags posts may carry (``set_forum_tags``)."""
    applied_tags: list[int] = field(default_factory=list)
    """Threads (forum posts): the ids of the forum tags applied to it."""

    @property
    def type(self) -> int:
        if self.parent_id is not None:
            return PUBLIC_THREAD
        if self.forum:
            return GUILD_FORUM
        return self.kind

    @property
    def is_thread(self) -> bool:
        return self.parent_id is not None


@dataclass
class FakeMember:
    """A guild member as interactions show them. ``permissions`` ``None``: @everyone's."""

    user_id: int
    username: str
    permissions: int | None = None
    global_name: str | None = None
    joined_at: float = 0.0


@dataclass
class FakeRole:
    """A role ``add_role`` created (besides @everyone and the bot's managed role)."""

    id: int
    name: str
    mentionable: bool = False
    permissions: int = 0
    color: int = 0
    hoist: bool = False
    position: int = 2


@dataclass
class FakeGuild:
    """A guild the bot is in. Roles: @everyone (id == guild id), the bot's managed role and
    the ``roles`` added with ``FakeDiscord.add_role``."""

    id: int
    name: str
    owner_id: int
    bot_role_id: int
    everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS
    bot_permissions: int = DEFAULT_BOT_PERMISSIONS
    locale: str = "en-US"
    joined_at: float = 0.0
    members: dict[int, FakeMember] = field(default_factory=dict)
    roles: dict[int, FakeRole] = field(default_factory=dict)

    @property
    def role_ids(self) -> list[int]:
        """Every role id: @everyone, the bot's role, then the added ones."""
        return [self.id, self.bot_role_id, *self.roles]


@dataclass
class InteractionMessage:
    """A message an interaction created: the original response or a followup.

    The fake keeps these on the ``FakeInteraction``, not in ``messages()`` (which holds what
    webhooks posted)."""

    id: int
    channel_id: int
    original: bool
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    created_at: float = 0.0
    edited_at: float | None = None
    deleted: bool = False
    body: dict[str, Any] = field(default_factory=dict)
    """The last request body that set this message."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Files uploaded with it, by filename."""

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response nobody has filled yet ("Bot is thinking...")."""
        return bool(self.flags & LOADING)


@dataclass(frozen=True)
class InteractionReply:
    """One request the bot made about an interaction, accepted or not.

    ``kind``: ``"callback"`` (``POST /interactions/{id}/{token}/callback``; ``type`` is the
    callback type: 4 message, 5 deferred, 6 deferred update, 7 update, 8 autocomplete result,
    9 modal), ``"followup"``,
    ``"edit"``, ``"get"`` or ``"delete"`` (``/webhooks/{app_id}/{token}/...``)."""

    kind: str
    status: int
    type: int | None
    body: Any
    at: float
    elapsed: float
    """Seconds since the interaction was created (``FakeDiscord.clock``)."""
    message_id: int | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def flags(self) -> int:
        body = self.body if isinstance(self.body, dict) else {}
        data = body.get("data") if self.kind == "callback" else body
        flags = data.get("flags") if isinstance(data, dict) else None
        return flags if isinstance(flags, int) else 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass(frozen=True)
class ModalInput:
    """One TEXT_INPUT of a modal the bot sent."""

    custom_id: str
    label: str | None
    """The LABEL component's text, else the text input's own label (the older shape: a text
    input in an ACTION_ROW carries its label itself)."""
    style: int
    """1 short (one line) or 2 paragraph."""
    value: str | None
    """The prefilled value (``TextInput(default=...)``), ``None`` when there is none."""
    required: bool
    min_length: int | None
    max_length: int | None
    placeholder: str | None
    id: int
    """The component id (the bot's, else the one Discord assigned)."""
    container: int
    """1 when the input sits in an ACTION_ROW, 18 when in a LABEL."""
    description: str | None = None
    """The LABEL's description, if any."""


@dataclass(frozen=True)
class FakeModal:
    """A modal the bot answered an interaction with (callback type 9)."""

    custom_id: str
    title: str
    components: list[dict[str, Any]]
    """The top-level components as sent, every component's ``id`` filled in the way Discord
    fills missing ones (sequentially, in order, skipping ids the bot set)."""
    inputs: list[ModalInput]
    """The text inputs, in the order shown."""

    def input(self, key: str) -> ModalInput:
        """The text input labelled ``key`` (else the one whose custom_id is ``key``);
        ``ValueError`` when none is, or when several carry that label."""
        by_label = [i for i in self.inputs if i.label == key]
        if len(by_label) > 1:
            raise ValueError(f"several inputs are labelled {key!r}: use their custom_id")
        if by_label:
            return by_label[0]
        by_id = [i for i in self.inputs if i.custom_id == key]
        if not by_id:
            labels = [i.label or i.custom_id for i in self.inputs]
            raise ValueError(f"modal {self.title!r} has no input {key!r}; it has {labels}")
        return by_id[0]


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake sent (``invoke``/``autocomplete``/``submit_modal``) and what the
    bot did with it."""

    id: int
    token: str
    type: int
    """2 APPLICATION_COMMAND, 4 APPLICATION_COMMAND_AUTOCOMPLETE or 5 MODAL_SUBMIT."""
    guild_id: int
    channel_id: int
    user_id: int
    command: str
    """The full name, e.g. ``"feed add"`` (a modal submit: the command that opened it)."""
    payload: dict[str, Any]
    """The INTERACTION_CREATE data as sent."""
    created_at: float
    _fake: FakeDiscord = field(repr=False)
    responses: list[InteractionReply] = field(default_factory=list)
    original: InteractionMessage | None = None
    followups: list[InteractionMessage] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    response_type: int | None = None
    """The accepted callback's type, ``None`` until the bot acknowledged."""
    delivered_to: list[str] = field(default_factory=list)
    """Ids of the gateway sessions INTERACTION_CREATE reached over a live websocket, in the
    order sent (every open session of the bot gets it, as on Discord; only the first callback
    is accepted, later ones get 40060). Sessions waiting for a RESUME get it in their replay
    but are not listed."""
    modal: FakeModal | None = None
    """The modal the bot answered with (callback type 9), ``None`` otherwise."""
    submissions: list[FakeInteraction] = field(default_factory=list)
    """The MODAL_SUBMIT interactions ``submit_modal`` sent for ``modal``, oldest first."""
    source: FakeInteraction | None = None
    """For a MODAL_SUBMIT: the interaction whose modal was submitted."""
    values: dict[str, str] = field(default_factory=dict)
    """For a MODAL_SUBMIT: what was submitted, by the inputs' custom_id."""

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type == 5

    @property
    def messages(self) -> list[InteractionMessage]:
        """Original response (once filled) and followups that were not deleted."""
        found = [self.original] if self.original is not None else []
        return [m for m in found + self.followups if not m.deleted and not m.loading]

    def latest_message(self) -> InteractionMessage | None:
        """The last visible message: the newest followup, else the filled original."""
        visible = self.messages
        return visible[-1] if visible else None

    async def wait_for_replies(self, count: int = 1, within: float = 5.0) -> list[InteractionReply]:
        """Wait until the bot made ``count`` requests about this interaction (accepted or
        not) and return them all; ``TimeoutError`` after ``within`` seconds."""

        def enough() -> list[InteractionReply] | None:
            return list(self.responses) if len(self.responses) >= count else None

        return await self._fake._wait_until(enough, within, f"{count} replies to /{self.command}")

    async def wait_for_callback(self, within: float = 5.0) -> InteractionReply:
        """The accepted callback (initial response); ``TimeoutError`` after ``within``."""

        def accepted() -> InteractionReply | None:
            return next((r for r in self.responses if r.kind == "callback" and r.ok), None)

        return await self._fake._wait_until(accepted, within, f"no callback for /{self.command}")

    async def wait_for_modal(self, within: float = 5.0) -> FakeModal:
        """The modal of an accepted type 9 callback; ``TimeoutError`` after ``within``."""
        return await self._fake._wait_until(
            lambda: self.modal, within, f"no modal for /{self.command}"
        )

    async def wait_for_response(self, within: float = 5.0) -> InteractionMessage:
        """The message the user sees: after a type 4 response, or once a deferred response
        was filled by an edit or a followup. ``TimeoutError`` after ``within``."""
        return await self._fake._wait_until(
            self.latest_message, within, f"no visible response to /{self.command}"
        )


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


class _Encoder:
    """Turns gateway payloads into websocket messages: JSON text, or binary frames of one
    compression stream per connection (``compress=zlib-stream``: each message ends with a
    Z_SYNC_FLUSH; ``zstd-stream``: each message is a flushed block)."""

    def __init__(self, compress: str | None, stream: Callable[[bytes], bytes] | None = None):
        self.compress = compress
        self._stream = stream

    @classmethod
    def create(cls, compress: str | None) -> _Encoder | None:
        """``None`` for a compression the fake cannot produce."""
        if compress is None:
            return cls(None)
        if compress == "zlib-stream":
            compressor = zlib.compressobj()
            return cls(
                compress, lambda raw: compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
            )
        if compress == "zstd-stream":
            stream = _zstd_stream()
            return None if stream is None else cls(compress, stream)
        return None

    def encode(self, text: str) -> str | bytes:
        return text if self._stream is None else self._stream(text.encode())


def _zstd_stream() -> Callable[[bytes], bytes] | None:
    """A zstd stream compressor from the module discord.py would decompress with (it asks
    for zstd-stream only when ``zstandard`` or ``compression.zstd`` is importable)."""
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        try:
            stdlib: Any = importlib.import_module("compression.zstd")
        except ImportError:
            return None
        compressor = stdlib.ZstdCompressor()
        flush_block = stdlib.ZstdCompressor.FLUSH_BLOCK
        return lambda raw: bytes(compressor.compress(raw, mode=flush_block))
    stream = zstandard.ZstdCompressor().compressobj()
    flag = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return lambda raw: bytes(stream.compress(raw) + stream.flush(flag))


class _GatewayConnection:
    """One websocket. Sends are serialised: compressed frames must arrive in order."""

    def __init__(
        self, ws: web.WebSocketResponse, encoder: _Encoder, peer: str | None = None
    ) -> None:
        self.ws = ws
        self.encoder = encoder
        self.peer = peer
        self.session: _GatewaySession | None = None
        self.span: GatewaySessionSpan | None = None
        """Set while this connection holds its session open (see ``session_log``)."""
        self._lock = asyncio.Lock()

    async def send(self, payload: Mapping[str, Any]) -> bool:
        async with self._lock:
            if self.ws.closed:
                return False
            message = self.encoder.encode(json.dumps(payload))
            try:
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                else:
                    await self.ws.send_str(message)
            except (ConnectionError, RuntimeError):
                return False
            return True

    async def close(self, code: int, message: bytes = b"") -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)


@dataclass(eq=False)
class _GatewaySession:
    """An identified session; outlives its connection so that clients can RESUME."""

    id: str
    intents: int
    shard: tuple[int, int] | None
    connection: _GatewayConnection | None
    seq: int = 0
    ready_sent: bool = False
    """READY went out: from now on the session gets every dispatch."""
    ready: bool = False
    """READY and the initial GUILD_CREATEs went out."""
    backlog: list[dict[str, Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def covers(self, guild_id: int) -> bool:
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id

    def wants(self, event: str, data: Any) -> bool:
        needed = _EVENT_INTENTS.get(event, 0)
        if needed and not self.intents & needed:
            return False
        if self.shard is not None and isinstance(data, dict):
            raw = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
            if raw is not None and str(raw).isdigit():
                return self.covers(int(raw))
        return True


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
        bot_user_id: int = DEFAULT_BOT_USER_ID,
        application_id: int | None = None,
        bot_name: str = "feedhook",
        heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
    ) -> None:
        self.bot_token = bot_token
        self.bot_user_id = bot_user_id
        # Bots created since 2020 have the application id as user id; keep them equal.
        self.application_id = application_id if application_id is not None else bot_user_id
        self.bot_name = bot_name
        self.application_flags = 0
        self.heartbeat_interval = heartbeat_interval
        """Milliseconds, sent in HELLO. The fake never closes a session for missed beats."""
        self.interaction_deadline = 3.0
        """Seconds (``clock``) a bot has for the initial response; later: 404/10062."""
        self.interaction_token_lifetime = 900.0
        """Seconds the interaction token works for followups and edits."""
        self.attachment_size_limit = 10 * 1024 * 1024
        self.gateway_down = False
        """``gateway_outage``: gateway connections are refused."""
        self.uploads: dict[int, bytes] = {}
        """Files users attached to commands (attachment options), by attachment id."""
        self.max_webhooks_per_channel = 15
        self.allow_webhook_delete_with_token = False
        """``DELETE /webhooks/{id}/{token}`` answers 405 unless this is True (kept for
        compatibility with tests written when the fake did not implement it)."""
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
        self._message_edits: list[MessageEdit] = []
        self._last_id = 0
        self._faults: list[_Fault] = []
        self._webhook_windows: dict[int, _Window] = {}
        self._channel_windows: dict[int, _Window] = {}
        self._global_window = _Window()
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self.guilds: dict[int, FakeGuild] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._sessions: dict[str, _GatewaySession] = {}
        self._connections: set[_GatewayConnection] = set()
        self.gateway_queries: list[dict[str, str]] = []
        """The query string of every gateway connection (``v``, ``encoding``, ``compress``)."""
        self.gateway_received: list[dict[str, Any]] = []
        """Every payload clients sent on the gateway, tokens replaced by ``":token"``."""
        self.identify_count = 0
        """IDENTIFY (op 2) payloads received, accepted or not."""
        self.resume_count = 0
        """RESUME (op 6) payloads received, accepted or not."""
        self.session_log: list[GatewaySessionSpan] = []
        """When each gateway session was open, oldest first (see ``GatewaySessionSpan``)."""
        self.max_concurrent_sessions = 0
        """The most sessions that were open at once (``open_sessions``) over the fake's life."""
        self.command_syncs: list[CommandSync] = []
        """Every bulk overwrite of application commands (global or guild), in order."""

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
        await asyncio.gather(*(c.close(1001) for c in list(self._connections)))
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

    @property
    def gateway_url(self) -> str:
        """The websocket URL (what ``GET /gateway`` answers; discord.py adds the query)."""
        return f"ws://{self.host}:{self.port}{GATEWAY_PATH}"

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
        self,
        channel_id: int,
        *,
        guild_id: int | None = None,
        forum: bool = False,
        name: str | None = None,
        type: int | None = None,
        topic: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> FakeChannel:
        """Register a channel (``add_webhook`` does it for you).

        ``type``: 0 text (default), 5 announcement or 15 forum; ``forum=True`` is the same
        as ``type=15``. ``name`` defaults to ``"general"``. Calling it again for a known
        channel updates it (and, as before, resets ``forum`` unless given). ``tags``: a
        forum's tag names (``set_forum_tags``; the ids are in ``available_tags``)."""
        if type is not None and type not in _WEBHOOK_CHANNEL_TYPES:
            raise ValueError(f"channel type {type} is not 0, 5 or 15 (threads: add_thread)")
        is_forum = forum or type == GUILD_FORUM
        kind = type if type in (GUILD_TEXT, GUILD_ANNOUNCEMENT) else GUILD_TEXT
        channel = self.channels.get(channel_id)
        if channel is None:
            position = sum(
                1
                for c in self.channels.values()
                if guild_id is not None and c.guild_id == guild_id and not c.is_thread
            )
            channel = FakeChannel(
                id=channel_id,
                guild_id=guild_id,
                forum=is_forum,
                name=name or "general",
                kind=kind,
                position=position,
                topic=topic,
            )
            self.channels[channel_id] = channel
        else:
            channel.forum = is_forum
            if type is not None:
                channel.kind = kind
            if guild_id is not None:
                channel.guild_id = guild_id
            if name is not None:
                channel.name = name
            if topic is not None:
                channel.topic = topic
        if tags is not None:
            self.set_forum_tags(channel_id, tags)
        return channel

    def set_forum_tags(self, channel_id: int, names: Iterable[str]) -> list[int]:
        """Replace a forum's ``available_tags`` (at most 20 names of 1 to 20 characters, no
        duplicates) and return their ids in order. A name the forum already had keeps its id,
        as when a moderator edits the tags. (Connected bots see the change after
        ``dispatch("CHANNEL_UPDATE", channel_json(channel_id))``.)"""
        channel = self.channels[channel_id]
        if not channel.forum or channel.is_thread:
            raise ValueError(f"channel {channel_id} is not a forum: only forums have tags")
        wanted = list(names)
        if len(wanted) > MAX_FORUM_TAGS:
            raise ValueError(f"a forum has at most {MAX_FORUM_TAGS} tags, not {len(wanted)}")
        for name in wanted:
            if not isinstance(name, str) or not 1 <= len(name) <= MAX_TAG_NAME:
                raise ValueError(f"tag name {name!r} is not 1 to {MAX_TAG_NAME} characters")
        if len(set(wanted)) != len(wanted):
            raise ValueError(f"duplicate tag names in {wanted}")
        existing = {tag.name: tag for tag in channel.available_tags}
        channel.available_tags = [
            existing.get(name) or ForumTag(id=self.next_snowflake(), name=name) for name in wanted
        ]
        return [tag.id for tag in channel.available_tags]

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
        thread id (then only that thread's messages). Deleted messages stay listed (with
        ``deleted`` set): this is the record of what was delivered."""
        return [
            m
            for m in self._messages
            if (channel_id is None or channel_id in (m.channel_id, m.thread_id))
            and (webhook_id is None or m.webhook_id == webhook_id)
        ]

    def message(self, message_id: int) -> StoredMessage:
        """The message a webhook created with this id; ``KeyError`` when there is none."""
        for stored in self._messages:
            if stored.id == message_id:
                return stored
        raise KeyError(f"no webhook message {message_id}")

    def delete_message(self, message_id: int) -> StoredMessage:
        """A user deleted the message: it leaves the channel history and edits of it answer
        404/10008 Unknown Message. (Connected bots with the GUILD_MESSAGES intent would get
        ``dispatch("MESSAGE_DELETE", {"id": ..., "channel_id": ..., "guild_id": ...})``.)"""
        stored = self.message(message_id)
        stored.deleted = True
        self._notify()
        return stored

    def message_edits(
        self, webhook_id: int | None = None, *, message_id: int | None = None
    ) -> list[MessageEdit]:
        """Accepted edits of webhook messages (``PATCH .../messages/{id}``), oldest first."""
        return [
            edit
            for edit in self._message_edits
            if (webhook_id is None or edit.webhook_id == webhook_id)
            and (message_id is None or edit.message_id == message_id)
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

    # ------------------------------------------------------------------ guilds and members

    def add_guild(
        self,
        guild_id: int,
        *,
        name: str = "Test Server",
        owner_id: int = DEFAULT_OWNER_ID,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        locale: str = "en-US",
    ) -> FakeGuild:
        """A guild the bot is in. Sessions that identify later get it in READY and a
        GUILD_CREATE; ``join_guild`` also tells sessions already connected."""
        if guild_id in self.guilds:
            raise ValueError(f"guild {guild_id} already exists")
        guild = FakeGuild(
            id=guild_id,
            name=name,
            owner_id=owner_id,
            bot_role_id=self.next_snowflake(),
            everyone_permissions=everyone_permissions,
            bot_permissions=bot_permissions,
            locale=locale,
            joined_at=self.wall_clock(),
        )
        self.guilds[guild_id] = guild
        return guild

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        permissions: int | None = None,
        username: str | None = None,
        global_name: str | None = None,
    ) -> FakeMember:
        """A member for interactions: ``permissions`` is what ``member.permissions`` says
        (``None``: the guild's @everyone permissions; ADMINISTRATOR or owning the guild
        means every permission, as Discord computes it)."""
        guild = self.guilds[guild_id]
        member = FakeMember(
            user_id=user_id,
            username=username or f"user{user_id}",
            permissions=permissions,
            global_name=global_name,
            joined_at=self.wall_clock(),
        )
        guild.members[user_id] = member
        return member

    def add_role(
        self,
        guild_id: int,
        *,
        name: str,
        mentionable: bool = False,
        role_id: int | None = None,
        permissions: int = 0,
        color: int = 0,
    ) -> int:
        """Add a role to the guild and return its id. It is in the guild object (READY and
        GUILD_CREATE of sessions that identify later, ``GET /guilds/{id}``, ``GET
        /guilds/{id}/roles``), role and mentionable options of ``invoke`` resolve to it, and
        ``<@&id>`` in a webhook message pings it. Connected bots learn about it from
        ``dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role":
        role_json(guild_id, role_id)})``."""
        guild = self.guilds[guild_id]
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_ROLE_NAME:
            raise ValueError(f"role name {name!r} is not 1 to {MAX_ROLE_NAME} characters")
        if role_id is None:
            role_id = self.next_snowflake()
        if role_id in guild.role_ids:
            raise ValueError(f"role {role_id} already exists in guild {guild_id}")
        guild.roles[role_id] = FakeRole(
            id=role_id,
            name=name,
            mentionable=mentionable,
            permissions=permissions,
            color=color,
            position=len(guild.roles) + 2,
        )
        return role_id

    def role_json(self, guild_id: int, role_id: int) -> dict[str, Any]:
        """The role object (``KeyError`` for a role the guild does not have)."""
        guild = self.guilds[guild_id]
        if role_id not in guild.role_ids:
            raise KeyError(f"guild {guild_id} has no role {role_id}")
        return self._role_json(guild, role_id)

    def deny_manage_webhooks(self, channel_id: int, denied: bool = True) -> None:
        """A channel overwrite denies the bot MANAGE_WEBHOOKS: creating, listing, fetching
        and deleting the channel's webhooks answer 403/50013, interactions' ``app_permissions``
        lack the bit and the channel object carries the overwrite. (Connected bots only see
        the overwrite after a CHANNEL_UPDATE: ``dispatch("CHANNEL_UPDATE", channel_json(id))``.)
        """
        self.channels[channel_id].manage_webhooks_denied = denied

    def member_permissions(self, guild_id: int, user_id: int) -> int:
        """The member's permissions as interactions report them."""
        guild = self.guilds[guild_id]
        member = guild.members.get(user_id)
        base = guild.everyone_permissions
        if member is not None and member.permissions is not None:
            base = member.permissions
        return _effective(base, owner=user_id == guild.owner_id)

    def bot_permissions_in(self, channel_id: int) -> int:
        """The bot's permissions in a channel (``app_permissions`` of interactions)."""
        channel = self.channels[channel_id]
        if channel.guild_id is None or channel.guild_id not in self.guilds:
            return 0
        guild = self.guilds[channel.guild_id]
        perms = _effective(
            guild.everyone_permissions | guild.bot_permissions,
            owner=guild.owner_id == self.bot_user_id,
        )
        if self._webhook_channel(channel).manage_webhooks_denied:
            perms &= ~MANAGE_WEBHOOKS
        return perms

    def synced_commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """What the bot last synced (``PUT .../commands``), as the fake returned it: global
        commands, or ``guild_id``'s. Copies; ids are strings, as in the API."""
        return copy.deepcopy(self._commands.get(guild_id, []))

    def _webhook_channel(self, channel: FakeChannel) -> FakeChannel:
        """Threads have no webhooks of their own: their parent's apply."""
        if channel.parent_id is not None and channel.parent_id in self.channels:
            return self.channels[channel.parent_id]
        return channel

    # ------------------------------------------------------------------ JSON objects

    def _username(self, user_id: int, guild_id: int | None) -> tuple[str, str | None]:
        if user_id == self.bot_user_id:
            return self.bot_name, self.bot_name
        guilds = [self.guilds[guild_id]] if guild_id in self.guilds else []
        for guild in guilds or list(self.guilds.values()):
            member = guild.members.get(user_id)
            if member is not None:
                return member.username, member.global_name
        if user_id == DEFAULT_OWNER_ID:
            return "owner", "Owner"
        return f"user{user_id}", None

    def user_json(self, user_id: int, guild_id: int | None = None) -> dict[str, Any]:
        """A public user object (the bot user has ``bot: true``)."""
        username, global_name = self._username(user_id, guild_id)
        data: dict[str, Any] = {
            "id": str(user_id),
            "username": username,
            "discriminator": "0",
            "global_name": global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }
        if user_id == self.bot_user_id:
            data["bot"] = True
        return data

    def _bot_user_private(self) -> dict[str, Any]:
        """``GET /users/@me`` and READY's ``user``."""
        return {
            **self.user_json(self.bot_user_id),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
            "premium_type": 0,
        }

    def application_json(self) -> dict[str, Any]:
        owner = self.user_json(DEFAULT_OWNER_ID)
        install = {"scopes": ["bot", "applications.commands"], "permissions": "536870912"}
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(str(self.application_id).encode()).hexdigest(),
            "flags": self.application_flags,
            "owner": owner,
            "team": None,
            "bot": self.user_json(self.bot_user_id),
            "rpc_origins": [],
            "redirect_uris": [],
            "tags": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "install_params": install,
            "integration_types_config": {"0": {"oauth2_install_params": install}},
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "is_monetized": False,
        }

    def _role_json(self, guild: FakeGuild, role_id: int) -> dict[str, Any]:
        is_bot = role_id == guild.bot_role_id
        role = guild.roles.get(role_id)
        if role is None:
            role = FakeRole(
                id=role_id,
                name=self.bot_name if is_bot else "@everyone",
                permissions=guild.bot_permissions if is_bot else guild.everyone_permissions,
                position=1 if is_bot else 0,
            )
        data: dict[str, Any] = {
            "id": str(role_id),
            "name": role.name,
            "permissions": str(role.permissions),
            "position": role.position,
            "color": role.color,
            "colors": {
                "primary_color": role.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": role.hoist,
            "icon": None,
            "unicode_emoji": None,
            "managed": is_bot,
            "mentionable": role.mentionable,
            "flags": 0,
        }
        if is_bot:
            data["tags"] = {"bot_id": str(self.bot_user_id)}
        return data

    def _member_json(
        self, guild: FakeGuild, user_id: int, *, permissions: int | None = None
    ) -> dict[str, Any]:
        member = guild.members.get(user_id)
        joined = member.joined_at if member is not None else guild.joined_at
        data: dict[str, Any] = {
            "user": self.user_json(user_id, guild.id),
            "roles": [str(guild.bot_role_id)] if user_id == self.bot_user_id else [],
            "joined_at": _iso(joined),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "banner": None,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def channel_json(self, channel_id: int, *, permissions: int | None = None) -> dict[str, Any]:
        """The channel object (thread objects for threads); ``permissions`` adds the field
        interactions carry."""
        channel = self.channels[channel_id]
        located = [m for m in self._messages if m.location_id == channel_id]
        visible = [m for m in located if not m.deleted]
        data: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": None if channel.guild_id is None else str(channel.guild_id),
            "name": channel.name or "general",
            "flags": 0,
            "last_message_id": str(located[-1].id) if located else None,
            "rate_limit_per_user": 0,
        }
        if channel.is_thread:
            created = _iso(((channel.id >> 22) + DISCORD_EPOCH_MS) / 1000)
            data.update(
                parent_id=str(channel.parent_id),
                owner_id=str(self.bot_user_id),
                message_count=len(visible),
                total_message_sent=len(located),
                member_count=1,
                applied_tags=[str(tag) for tag in channel.applied_tags],
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": created,
                    "locked": False,
                    "create_timestamp": created,
                },
            )
        else:
            overwrites: list[dict[str, Any]] = []
            guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
            if channel.manage_webhooks_denied and guild is not None:
                overwrites.append(
                    {
                        "id": str(guild.bot_role_id),
                        "type": 0,
                        "allow": "0",
                        "deny": str(MANAGE_WEBHOOKS),
                    }
                )
            data.update(
                position=channel.position,
                permission_overwrites=overwrites,
                parent_id=None,
                topic=channel.topic,
                nsfw=False,
                default_auto_archive_duration=1440,
                default_thread_rate_limit_per_user=0,
            )
            if channel.forum:
                data.update(
                    available_tags=[tag.to_json() for tag in channel.available_tags],
                    default_reaction_emoji=None,
                    default_sort_order=None,
                    default_forum_layout=0,
                    template="",
                )
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def guild_json(self, guild_id: int, *, gateway: bool = True) -> dict[str, Any]:
        """The guild object: as GUILD_CREATE sends it (``gateway``: with channels, threads,
        the bot's member, ...), else as ``GET /guilds/{id}`` returns it."""
        guild = self.guilds[guild_id]
        data: dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self._role_json(guild, role_id) for role_id in guild.role_ids],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "nsfw_level": 0,
            "nsfw": False,
            "premium_progress_bar_enabled": False,
            "incidents_data": None,
        }
        if gateway:
            in_guild = [c for c in self.channels.values() if c.guild_id == guild.id]
            data.update(
                joined_at=_iso(guild.joined_at),
                large=False,
                unavailable=False,
                member_count=len({self.bot_user_id, guild.owner_id, *guild.members}),
                members=[self._member_json(guild, self.bot_user_id)],
                channels=[self.channel_json(c.id) for c in in_guild if not c.is_thread],
                threads=[self.channel_json(c.id) for c in in_guild if c.is_thread],
                voice_states=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
            )
        return data

    def webhook_json(self, webhook_id: int) -> dict[str, Any]:
        """The webhook as bot-authenticated routes return it: with ``user`` (its creator) and
        the token only when the bot created it."""
        hook = self.webhooks[webhook_id]
        data = hook.to_json()
        if hook.creator_id != self.bot_user_id:
            del data["token"]
        creator = hook.creator_id
        if creator is None:
            guild = self.guilds.get(hook.guild_id) if hook.guild_id is not None else None
            creator = guild.owner_id if guild is not None else DEFAULT_OWNER_ID
        data["user"] = self.user_json(creator, hook.guild_id)
        return data

    # ------------------------------------------------------------------ gateway: test API

    async def dispatch(self, event: str, data: Any) -> int:
        """Send ``{"op": 0, "t": event, "d": data}`` to every gateway session whose intents
        cover the event (GUILDS for GUILD_*/CHANNEL_*/THREAD_*, GUILD_WEBHOOKS for
        WEBHOOKS_UPDATE, ...; other events go to all), each with its own sequence number,
        as Discord does for an unsharded bot with several sessions. A session still being
        identified gets it after its READY and GUILD_CREATEs. Sessions that lost their
        connection but may RESUME keep it for the replay. Returns how many sessions got it."""
        sent = 0
        for session in list(self._sessions.values()):
            if session.wants(event, data):
                await self._send_dispatch(session, event, data)
                sent += 1
        return sent

    async def wait_until_connected(self, within: float = 10.0) -> None:
        """Return once a gateway session has identified and been sent READY and its
        GUILD_CREATEs; ``TimeoutError`` after ``within`` seconds."""

        def connected() -> bool | None:
            ready = any(s.ready and s.connection is not None for s in self._sessions.values())
            return True if ready else None

        await self._wait_until(connected, within, "no gateway session got READY")

    @property
    def connected_sessions(self) -> int:
        """Sessions with a websocket attached, identified completely or not (see
        ``open_sessions`` for the count issue-13 tests want)."""
        return sum(1 for s in self._sessions.values() if s.connection is not None)

    @property
    def open_sessions(self) -> int:
        """Gateway sessions open now: READY (or RESUMED) sent on a websocket that is still
        connected. A session whose websocket dropped without a clean close is not open,
        although ``dispatch`` keeps its events in case it RESUMEs."""
        return sum(1 for c in self._connections if c.span is not None)

    @property
    def open_session_ids(self) -> list[str]:
        """The ids (READY's ``session_id``) of the sessions open now."""
        return [c.span.session_id for c in self._connections if c.span is not None]

    def session_overlaps(self) -> list[tuple[GatewaySessionSpan, GatewaySessionSpan]]:
        """Pairs of ``session_log`` spans of *different* sessions that were open at the same
        time, earlier span first. Empty: no two sessions ever held the gateway at once."""
        spans = sorted(self.session_log, key=lambda span: span.opened_at)
        return [
            (first, second)
            for i, first in enumerate(spans)
            for second in spans[i + 1 :]
            if first.session_id != second.session_id and first.overlaps(second)
        ]

    async def wait_for_open_sessions(self, count: int = 1, *, within: float = 10.0) -> int:
        """Wait until at least ``count`` sessions are open (``open_sessions``) and return how
        many are; ``TimeoutError`` after ``within`` seconds."""

        def enough() -> int | None:
            now = self.open_sessions
            return now if now >= count else None

        return await self._wait_until(
            enough, within, f"{count} open gateway session(s) (open: {self.open_sessions})"
        )

    async def wait_for_open_sessions_at_most(self, count: int = 0, *, within: float = 10.0) -> int:
        """Wait until at most ``count`` sessions are open (e.g. after a client closed or a
        process died) and return how many are; ``TimeoutError`` after ``within`` seconds."""

        def few_enough() -> int | None:
            now = self.open_sessions
            return now if now <= count else None

        return await self._wait_until(
            few_enough, within, f"at most {count} open gateway session(s)"
        )

    @property
    def command_sync_count(self) -> int:
        """Accepted command overwrites so far, global and guild ones together (filter
        ``command_syncs`` for one scope)."""
        return sum(1 for sync in self.command_syncs if sync.ok)

    async def wait_for_command_syncs(
        self, count: int = 1, *, within: float = 10.0
    ) -> list[CommandSync]:
        """Wait until ``count`` command overwrites were accepted and return those accepted;
        ``TimeoutError`` after ``within`` seconds."""

        def enough() -> list[CommandSync] | None:
            accepted = [sync for sync in self.command_syncs if sync.ok]
            return accepted if len(accepted) >= count else None

        return await self._wait_until(enough, within, f"{count} command sync(s)")

    async def request_reconnect(self) -> int:
        """Send op 7 RECONNECT on every connection (clients then RESUME); returns how many."""
        count = 0
        for connection in list(self._connections):
            if connection.session is not None:
                await connection.send({"op": 7, "d": None, "s": None, "t": None})
                count += 1
        return count

    async def join_guild(self, guild_id: int, **kwargs: Any) -> FakeGuild:
        """``add_guild`` and send GUILD_CREATE to connected sessions (``on_guild_join``).

        A join's GUILD_CREATE has no ``unavailable`` key: ``"unavailable": false`` marks a
        guild coming back from an outage, which discord.py reports as ``on_guild_available``.
        """
        guild = self.add_guild(guild_id, **kwargs)
        data = self.guild_json(guild_id)
        del data["unavailable"]
        await self.dispatch("GUILD_CREATE", data)
        return guild

    async def remove_guild(self, guild_id: int) -> None:
        """The bot was removed from the guild: forget it and send GUILD_DELETE
        (``on_guild_remove``). Its channels and webhooks stay, as on Discord."""
        del self.guilds[guild_id]
        await self.dispatch("GUILD_DELETE", {"id": str(guild_id)})

    async def delete_channel(self, channel_id: int) -> None:
        """Delete a channel (and its threads and webhooks) and send CHANNEL_DELETE."""
        data = self.channel_json(channel_id)
        channel = self.channels.pop(channel_id)
        for other in [c for c in self.channels.values() if c.parent_id == channel_id]:
            del self.channels[other.id]
        for hook in self.webhooks.values():
            if hook.channel_id == channel_id:
                hook.deleted = True
        event = "THREAD_DELETE" if channel.is_thread else "CHANNEL_DELETE"
        await self.dispatch(event, data)

    # ------------------------------------------------------------------ interactions: test API

    async def invoke(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str = "feed",
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Send an APPLICATION_COMMAND interaction for the synced chat command ``name``
        (guild commands first, then global ones) as ``user_id`` in ``channel_id``.

        ``subcommand``: ``"add"`` or ``"group sub"``. ``options``: option name -> value
        (str, int, float, bool; channel/user/role options take the id). Values are checked
        against the synced definition the way Discord's client enforces it (types, required,
        min/max, lengths, choices, channel types): ``ValueError`` when no user could send
        them. ``PermissionError`` when ``default_member_permissions`` hides the command from
        this member. ``permissions``: the member's permissions (default: ``add_member``'s,
        else @everyone's). Returns the record that collects the bot's responses."""
        interaction = self._new_interaction(
            2, guild_id, channel_id, user_id, name, subcommand, options, None, None,
            permissions, locale,
        )  # fmt: skip
        await self._deliver(interaction)
        return interaction

    async def autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str = "feed",
        subcommand: str | None = None,
        *,
        focused: str,
        value: str = "",
        options: Mapping[str, Any] | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
        within: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Send an APPLICATION_COMMAND_AUTOCOMPLETE interaction while the user types
        ``value`` into option ``focused`` (other ``options`` as already filled in) and return
        the choices of the bot's type 8 callback (``[{"name": ..., "value": ...}]``)."""
        interaction = self._new_interaction(
            4, guild_id, channel_id, user_id, name, subcommand, options, focused, value,
            permissions, locale,
        )  # fmt: skip
        await self._deliver(interaction)
        await interaction.wait_for_callback(within)
        return copy.deepcopy(interaction.choices or [])

    async def submit_modal(
        self,
        interaction: FakeInteraction,
        values: Mapping[str, str],
        *,
        user_id: int | None = None,
    ) -> FakeInteraction:
        """The user fills in and submits the modal the bot answered ``interaction`` with:
        sends a MODAL_SUBMIT (type 5) interaction whose ``data`` is ``{"custom_id": <the
        modal's>, "components": [...]}`` in the shape Discord sends back for the modal's
        layout (ACTION_ROW -> ``{"type": 1, "id", "components": [{"type": 4, "id",
        "custom_id", "value"}]}``; LABEL -> ``{"type": 18, "id", "component": {"type": 4,
        "id", "custom_id", "value"}}``; TEXT_DISPLAY -> ``{"type": 10, "id"}``).

        ``values``: input label (else custom_id) -> text; inputs not given submit their
        prefilled value. ``ValueError`` for an unknown label and for what Discord's client
        would not let a user submit: a required input left empty, a value longer than
        ``max_length`` (or shorter than ``min_length``), a line break in a short input.
        ``RuntimeError`` when there is no modal, or when an earlier submission was already
        acknowledged (the modal closed then; an unanswered one stays open, as in Discord's
        client). ``user_id``: who submits (default: who got the modal). The returned record
        collects the bot's answer (callbacks 4, 5, 6 or 7, then followups and edits)."""
        modal = interaction.modal
        if modal is None:
            raise RuntimeError(
                f"/{interaction.command} was not answered with a modal "
                "(await interaction.wait_for_modal() first)"
            )
        if any(submission.acknowledged for submission in interaction.submissions):
            raise RuntimeError(f"the modal {modal.title!r} was submitted and closed already")
        unsupported = set(_LABEL_CHILD_TYPES) - {TEXT_INPUT}
        others = [c["type"] for _, c in _modal_items(modal.components) if c["type"] in unsupported]
        if others:
            raise NotImplementedError(f"the fake submits text inputs only, not types {others}")
        submitted = {item.custom_id: item.value or "" for item in modal.inputs}
        for key, value in values.items():
            target = modal.input(key)
            if not isinstance(value, str):
                raise TypeError(f"the value for {key!r} must be a str, not {value!r}")
            submitted[target.custom_id] = value
        for item in modal.inputs:
            value, name = submitted[item.custom_id], item.label or item.custom_id
            if item.required and not value:
                raise ValueError(f"input {name!r} is required")
            longest = min(item.max_length or MAX_TEXT_INPUT, MAX_TEXT_INPUT)
            if len(value) > longest:
                raise ValueError(f"input {name!r}: {len(value)} characters, at most {longest}")
            if value and item.min_length and len(value) < item.min_length:
                raise ValueError(f"input {name!r}: {len(value)} characters, {item.min_length}+")
            if item.style == 1 and "\n" in value:
                raise ValueError(f"input {name!r} is a short (one line) input")
        guild = self.guilds.get(interaction.guild_id)
        if guild is None:
            raise KeyError(f"unknown guild {interaction.guild_id}")
        submitter = interaction.user_id if user_id is None else user_id
        if submitter == interaction.user_id:
            perms = int(interaction.payload["member"]["permissions"])
        else:
            perms = self.member_permissions(guild.id, submitter)
        data = {
            "custom_id": modal.custom_id,
            "components": [_submitted(c, submitted) for c in modal.components],
        }
        submission = self._interaction(
            MODAL_SUBMIT, guild, interaction.channel_id, submitter, perms,
            str(interaction.payload.get("locale", "en-US")), data, interaction.command,
        )  # fmt: skip
        submission.source = interaction
        submission.values = submitted
        await self._deliver(submission)
        interaction.submissions.append(submission)
        self._notify()
        return submission

    def _find_command(self, name: str, guild_id: int) -> tuple[dict[str, Any], int | None]:
        for scope in (guild_id, None):
            for command in self._commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, scope
        raise LookupError(f"/{name} was not synced (globally or to guild {guild_id})")

    def _new_interaction(
        self,
        kind: int,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        subcommand: str | None,
        options: Mapping[str, Any] | None,
        focused: str | None,
        focused_value: str | None,
        permissions: int | None,
        locale: str,
    ) -> FakeInteraction:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise KeyError(f"unknown guild {guild_id}: add_guild() first")
        channel = self.channels.get(channel_id)
        if channel is None or channel.guild_id != guild_id:
            raise ValueError(f"channel {channel_id} is not a channel of guild {guild_id}")
        command, scope = self._find_command(name, guild_id)
        if permissions is None:
            perms = self.member_permissions(guild_id, user_id)
        else:
            perms = _effective(permissions, owner=user_id == guild.owner_id)
        if not _may_use(command, perms):
            raise PermissionError(
                f"Discord hides /{name} from user {user_id}: default_member_permissions "
                f"{command.get('default_member_permissions')} and member permissions {perms}"
            )
        path = subcommand.split() if subcommand else []
        resolved: dict[str, dict[str, Any]] = {}
        built = self._build_options(
            command.get("options") or [], path, dict(options or {}), focused, focused_value,
            guild, resolved, perms,
        )  # fmt: skip
        data: dict[str, Any] = {"id": command["id"], "name": command["name"], "type": 1}
        if scope is not None:
            data["guild_id"] = str(scope)
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        return self._interaction(
            kind, guild, channel_id, user_id, perms, locale, data, " ".join([name, *path])
        )

    def _interaction(
        self,
        kind: int,
        guild: FakeGuild,
        channel_id: int,
        user_id: int,
        perms: int,
        locale: str,
        data: dict[str, Any],
        command: str,
    ) -> FakeInteraction:
        """An INTERACTION_CREATE payload around ``data`` and its (undelivered) record."""
        interaction_id = self.next_snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(120)  # base64 "interaction:"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "channel_id": str(channel_id),
            "channel": self.channel_json(channel_id, permissions=perms),
            "member": self._member_json(guild, user_id, permissions=perms),
            "token": token,
            "version": 1,
            "app_permissions": str(self.bot_permissions_in(channel_id)),
            "locale": locale,
            "guild_locale": guild.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": self.attachment_size_limit,
        }
        return FakeInteraction(
            id=interaction_id,
            token=token,
            type=kind,
            guild_id=guild.id,
            channel_id=channel_id,
            user_id=user_id,
            command=command,
            payload=payload,
            created_at=self.clock(),
            _fake=self,
        )

    def _build_options(
        self,
        definitions: list[dict[str, Any]],
        path: list[str],
        values: dict[str, Any],
        focused: str | None,
        focused_value: str | None,
        guild: FakeGuild,
        resolved: dict[str, dict[str, Any]],
        perms: int,
    ) -> list[dict[str, Any]]:
        if path:
            head, rest = path[0], path[1:]
            for definition in definitions:
                if definition["name"] == head and definition["type"] in (1, 2):
                    inner = self._build_options(
                        definition.get("options") or [], rest, values, focused, focused_value,
                        guild, resolved, perms,
                    )  # fmt: skip
                    option: dict[str, Any] = {"name": head, "type": definition["type"]}
                    if inner:
                        option["options"] = inner
                    return [option]
            raise ValueError(f"no subcommand (group) {head!r}")
        if any(d["type"] in (1, 2) for d in definitions):
            names = [d["name"] for d in definitions if d["type"] in (1, 2)]
            raise ValueError(f"pick a subcommand: {names}")
        by_name = {d["name"]: d for d in definitions}
        unknown = [n for n in [*values, *([focused] if focused else [])] if n not in by_name]
        if unknown:
            raise ValueError(f"unknown options {unknown}; the command has {list(by_name)}")
        built: list[dict[str, Any]] = []
        for definition in definitions:
            name = definition["name"]
            if name == focused:
                if not definition.get("autocomplete"):
                    raise ValueError(f"option {name!r} has no autocomplete")
                built.append(
                    {
                        "name": name,
                        "type": definition["type"],
                        "value": focused_value or "",
                        "focused": True,
                    }
                )
            elif name in values:
                value = self._option_value(definition, values[name], guild, resolved, perms)
                built.append({"name": name, "type": definition["type"], "value": value})
            elif definition.get("required") and focused is None:
                raise ValueError(f"option {name!r} is required")
        return built

    def _option_value(
        self,
        definition: dict[str, Any],
        value: Any,
        guild: FakeGuild,
        resolved: dict[str, dict[str, Any]],
        perms: int,
    ) -> Any:
        name, kind = definition["name"], definition["type"]

        def fail(message: str) -> ValueError:
            return ValueError(f"option {name!r}: {message}")

        if kind == 3:
            if not isinstance(value, str):
                raise fail(f"expected a string, got {value!r}")
            if (
                not definition.get("min_length", 0)
                <= len(value)
                <= definition.get("max_length", 6000)
            ):
                raise fail(f"length {len(value)} is outside the allowed range")
        elif kind in (4, 10):
            numeric = (int,) if kind == 4 else (int, float)
            if not isinstance(value, numeric) or isinstance(value, bool):
                raise fail(f"expected {'an integer' if kind == 4 else 'a number'}, got {value!r}")
            low, high = definition.get("min_value"), definition.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise fail(f"{value} is outside [{low}, {high}]")
        elif kind == 5:
            if not isinstance(value, bool):
                raise fail(f"expected a bool, got {value!r}")
        elif kind in (6, 7, 8, 9):
            try:
                snowflake = int(value)
            except (TypeError, ValueError):
                raise fail(f"expected an id, got {value!r}") from None
            roles = guild.role_ids
            if kind == 7:
                channel = self.channels.get(snowflake)
                if channel is None or channel.guild_id != guild.id:
                    raise fail(f"channel {snowflake} is not in guild {guild.id}")
                allowed = definition.get("channel_types")
                if allowed and channel.type not in allowed:
                    raise fail(f"channel type {channel.type} is not one of {allowed}")
                resolved.setdefault("channels", {})[str(snowflake)] = self.channel_json(
                    snowflake, permissions=perms
                )
            elif kind == 8 or (kind == 9 and snowflake in roles):
                if snowflake not in roles:
                    raise fail(f"role {snowflake} is not in guild {guild.id}")
                resolved.setdefault("roles", {})[str(snowflake)] = self._role_json(guild, snowflake)
            else:
                resolved.setdefault("users", {})[str(snowflake)] = self.user_json(
                    snowflake, guild.id
                )
                member = self._member_json(
                    guild, snowflake, permissions=self.member_permissions(guild.id, snowflake)
                )
                del member["user"]
                resolved.setdefault("members", {})[str(snowflake)] = member
            return str(snowflake)
        elif kind == 11:
            # An attachment the user picked: (filename, bytes). Discord uploads it to its
            # CDN and sends its id, resolved with a URL the bot downloads it from.
            if not (
                isinstance(value, tuple)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], bytes)
            ):
                raise fail(f"expected (filename, bytes), got {value!r}")
            filename, data = value
            if len(data) > self.attachment_size_limit:
                raise fail(f"{len(data)} bytes is over the upload limit")
            attachment_id = self.next_snowflake()
            self.uploads[attachment_id] = data
            url = f"{self.base_url}/cdn/attachments/{attachment_id}/{filename}"
            resolved.setdefault("attachments", {})[str(attachment_id)] = {
                "id": str(attachment_id),
                "filename": filename,
                "size": len(data),
                "url": url,
                "proxy_url": url,
                "content_type": "text/x-opml; charset=utf-8",
                "ephemeral": True,
            }
            return str(attachment_id)
        else:
            raise NotImplementedError(f"option type {kind} is not supported by the fake")
        choices = definition.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise fail(f"{value!r} is not one of the choices")
        return value

    async def _deliver(self, interaction: FakeInteraction) -> None:
        """INTERACTION_CREATE to every identified session covering the guild (those waiting
        for a RESUME get it in their replay), as Discord does: with several sessions of one
        bot each gets the interaction, and only the first callback is accepted."""
        sessions = [
            s for s in self._sessions.values() if s.ready_sent and s.covers(interaction.guild_id)
        ]
        if not any(s.ready and s.connection is not None for s in sessions):
            raise RuntimeError(
                "no gateway session is connected: start the bot and await "
                "fake.wait_until_connected() first"
            )
        self.interactions[interaction.id] = interaction
        self._interactions_by_token[interaction.token] = interaction
        interaction.created_at = self.clock()
        for session in sessions:
            async with session.lock:
                if await self._emit(session, "INTERACTION_CREATE", interaction.payload):
                    interaction.delivered_to.append(session.id)
        self._notify()

    def _interaction_for(self, application_id: int, token: str) -> FakeInteraction | None:
        if application_id != self.application_id:
            return None
        return self._interactions_by_token.get(token)

    def _interaction_message_json(
        self, interaction: FakeInteraction, message: InteractionMessage
    ) -> dict[str, Any]:
        user = self.user_json(interaction.user_id, interaction.guild_id)
        return {
            "id": str(message.id),
            "type": 20 if message.original and interaction.type == APPLICATION_COMMAND else 0,
            "channel_id": str(message.channel_id),
            "content": message.content,
            "embeds": [_embed_out(e) for e in message.embeds],
            "attachments": [],
            "components": copy.deepcopy(message.components),
            "author": self.user_json(self.bot_user_id),
            "timestamp": _iso(message.created_at),
            "edited_timestamp": None if message.edited_at is None else _iso(message.edited_at),
            "flags": message.flags,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": self._interaction_metadata(interaction),
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "name": interaction.command,
                "user": user,
            },
        }

    def _interaction_metadata(self, interaction: FakeInteraction) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": self.user_json(interaction.user_id, interaction.guild_id),
            "authorizing_integration_owners": {"0": str(interaction.guild_id)},
        }
        if interaction.source is not None:  # a modal submit
            data["triggering_interaction_metadata"] = self._interaction_metadata(interaction.source)
        else:
            data.update(name=interaction.command, command_type=1)
        return data

    async def _wait_until(self, predicate: Callable[[], _T | None], within: float, what: str) -> _T:
        try:
            async with asyncio.timeout(within):
                while True:
                    changed = self._changed
                    found = predicate()
                    if found is not None:
                        return found
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{what} within {within} s") from None

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
        api = API_PREFIX
        r.add_post(api + r"/webhooks/{webhook_id:\d+}/{token}", self._execute_webhook)
        r.add_get(api + r"/webhooks/{webhook_id:\d+}/{token}", self._get_webhook)
        r.add_delete(api + r"/webhooks/{webhook_id:\d+}/{token}", self._delete_webhook_with_token)
        r.add_get(api + r"/channels/{channel_id:\d+}/messages", self._channel_messages)

        r.add_get(r"/cdn/attachments/{attachment_id:\d+}/{filename}", self._get_upload)
        r.add_get(GATEWAY_PATH, self._gateway)
        r.add_get(api + "/gateway", self._get_gateway)
        r.add_get(api + "/gateway/bot", self._get_gateway_bot)
        r.add_get(api + "/users/@me", self._get_me)
        r.add_get(api + "/oauth2/applications/@me", self._get_application)
        r.add_get(api + "/applications/@me", self._get_application)
        commands = api + r"/applications/{application_id:\d+}/commands"
        guild_commands = api + r"/applications/{application_id:\d+}/guilds/{guild_id:\d+}/commands"
        for path in (commands, guild_commands):
            r.add_get(path, self._get_commands)
            r.add_put(path, self._put_commands)
        r.add_get(api + r"/channels/{channel_id:\d+}", self._get_channel)
        r.add_get(api + r"/channels/{channel_id:\d+}/webhooks", self._list_channel_webhooks)
        r.add_post(api + r"/channels/{channel_id:\d+}/webhooks", self._create_channel_webhook)
        r.add_get(api + r"/guilds/{guild_id:\d+}", self._get_guild)
        r.add_get(api + r"/guilds/{guild_id:\d+}/channels", self._get_guild_channels)
        r.add_get(api + r"/guilds/{guild_id:\d+}/roles", self._get_guild_roles)
        r.add_get(api + r"/webhooks/{webhook_id:\d+}", self._get_webhook_bot)
        r.add_delete(api + r"/webhooks/{webhook_id:\d+}", self._delete_webhook_bot)
        message = api + r"/webhooks/{webhook_id:\d+}/{token}/messages/{message_id}"
        r.add_get(message, self._webhook_message)
        r.add_patch(message, self._webhook_message)
        r.add_delete(message, self._webhook_message)
        r.add_post(
            api + r"/interactions/{interaction_id:\d+}/{token}/callback",
            self._interaction_callback,
        )

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

    # ------------------------------------------------------------------ gateway

    async def gateway_outage(self, down: bool = True) -> None:
        """Drop every gateway connection and refuse new ones (503) while ``down``: a
        network cut between the bot and Discord, as its clients see it."""
        self.gateway_down = down
        if down:
            await asyncio.gather(*(c.close(1001) for c in list(self._connections)))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self._closing.is_set() or self.gateway_down:
            return _error(503, 0, "503: Service Unavailable")
        ws = web.WebSocketResponse(timeout=1.0, compress=False)
        if not ws.can_prepare(request).ok:
            return _error(400, 0, "400: Bad Request")
        query = dict(request.query)
        self.gateway_queries.append(query)
        await ws.prepare(request)
        encoder = _Encoder.create(query.get("compress"))
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else None
        connection = _GatewayConnection(ws, encoder or _Encoder(None), peer)
        self._connections.add(connection)
        try:
            if query.get("v", str(GATEWAY_VERSION)) != str(GATEWAY_VERSION):
                await connection.close(4012, b"Invalid API version.")
            elif query.get("encoding", "json") != "json":
                await connection.close(4000, b"The fake only speaks encoding=json.")
            elif encoder is None:
                await connection.close(4000, b"Unsupported compress value.")
            else:
                hello = {"heartbeat_interval": self.heartbeat_interval, "_trace": ["fake-discord"]}
                await connection.send({"op": 10, "d": hello, "s": None, "t": None})
                await self._gateway_loop(connection)
        except Exception as exc:  # a bug in the fake: make it visible to the test
            self.internal_errors.append(exc)
            await connection.close(4000, b"Unknown error.")
        finally:
            self._close_span(connection, ws.close_code)
            self._connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001):  # a clean close ends the session
                    self._sessions.pop(session.id, None)
            self._notify()
        return ws

    async def _gateway_loop(self, connection: _GatewayConnection) -> None:
        async for msg in connection.ws:
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    await connection.close(4002, b"Error while decoding payload.")
                    return
                continue
            try:
                payload = json.loads(msg.data)
                op = payload["op"]
            except (ValueError, KeyError, TypeError):
                await connection.close(4002, b"Error while decoding payload.")
                return
            self.gateway_received.append(_redact(payload))
            self._notify()
            data = payload.get("d")
            if op == 1:
                await connection.send({"op": 11, "d": None, "s": None, "t": None})
            elif op in (2, 6):
                if op == 2:
                    self.identify_count += 1
                else:
                    self.resume_count += 1
                if connection.session is not None:
                    await connection.close(4005, b"Already authenticated.")
                    return
                start = self._identify if op == 2 else self._resume
                if not await start(connection, data):
                    return
            elif connection.session is None:
                await connection.close(4003, b"Not authenticated.")
                return
            elif op not in (3, 4, 8):  # presence, voice state, request members: ignored
                await connection.close(4001, b"Unknown opcode.")
                return

    def _token_ok(self, token: Any) -> bool:
        if self.bot_token is None or not isinstance(token, str):
            return False
        return secrets.compare_digest(token.encode(), self.bot_token.encode())

    async def _identify(self, connection: _GatewayConnection, data: Any) -> bool:
        if not isinstance(data, dict):
            await connection.close(4002, b"Error while decoding payload.")
            return False
        if not self._token_ok(data.get("token")):
            await connection.close(4004, b"Authentication failed.")
            return False
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0:
            await connection.close(4013, b"Invalid intent(s).")
            return False
        shard: tuple[int, int] | None = None
        raw_shard = data.get("shard")
        if raw_shard is not None:
            if (
                not isinstance(raw_shard, list)
                or len(raw_shard) != 2
                or not all(isinstance(n, int) for n in raw_shard)
                or not 0 <= raw_shard[0] < raw_shard[1]
            ):
                await connection.close(4010, b"Invalid shard.")
                return False
            shard = (raw_shard[0], raw_shard[1])
        session = _GatewaySession(
            id=secrets.token_hex(16), intents=intents, shard=shard, connection=connection
        )
        connection.session = session
        self._sessions[session.id] = session
        guilds = [g for g in self.guilds.values() if session.covers(g.id)]
        ready: dict[str, Any] = {
            "v": GATEWAY_VERSION,
            "user": self._bot_user_private(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
            "_trace": ["fake-discord"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        # Held throughout: dispatches to this session wait until READY and its GUILD_CREATEs
        # went out, so they always follow them.
        async with session.lock:
            sent = await self._emit(session, "READY", ready)
            session.ready_sent = True
            if sent:
                self._open_span(connection, session, "identify")
            if intents & INTENT_GUILDS:
                for guild in guilds:
                    await self._emit(session, "GUILD_CREATE", self.guild_json(guild.id))
            session.ready = True
        self._notify()
        return True

    async def _resume(self, connection: _GatewayConnection, data: Any) -> bool:
        if not isinstance(data, dict):
            await connection.close(4002, b"Error while decoding payload.")
            return False
        if not self._token_ok(data.get("token")):
            await connection.close(4004, b"Authentication failed.")
            return False
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        oldest = session.backlog[0]["s"] if session is not None and session.backlog else 1
        if (
            session is None
            or not isinstance(seq, int)
            or isinstance(seq, bool)
            or seq < oldest - 1
            or seq > session.seq
        ):
            # Not resumable: the client has to identify anew.
            await connection.send({"op": 9, "d": False, "s": None, "t": None})
            return True
        async with session.lock:
            previous = session.connection
            if previous is not None and previous is not connection:
                self._close_span(previous, 4000)
            session.connection = connection
            connection.session = session
            for event in session.backlog:
                if event["s"] > seq:
                    await connection.send(event)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {"_trace": ["fake"]}}
            if await connection.send(resumed):
                self._open_span(connection, session, "resume")
        if previous is not None and previous is not connection:
            previous.session = None
            await previous.close(4000, b"Session resumed elsewhere.")
        self._notify()
        return True

    async def _send_dispatch(self, session: _GatewaySession, event: str, data: Any) -> None:
        async with session.lock:
            await self._emit(session, event, data)

    async def _emit(self, session: _GatewaySession, event: str, data: Any) -> bool:
        """Number, keep for RESUME and send one dispatch; the caller holds ``session.lock``.
        Whether it reached a websocket."""
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.backlog.append(payload)
        del session.backlog[:-_BACKLOG]
        if session.connection is None:
            return False
        return await session.connection.send(payload)

    def _open_span(
        self, connection: _GatewayConnection, session: _GatewaySession, how: str
    ) -> None:
        self._close_span(connection, None)
        span = GatewaySessionSpan(
            session_id=session.id, how=how, opened_at=time.monotonic(), peer=connection.peer
        )
        connection.span = span
        self.session_log.append(span)
        self.max_concurrent_sessions = max(self.max_concurrent_sessions, self.open_sessions)
        self._notify()

    def _close_span(self, connection: _GatewayConnection, code: int | None) -> None:
        span, connection.span = connection.span, None
        if span is not None:
            span.closed_at = time.monotonic()
            span.close_code = code
            self._notify()

    # ------------------------------------------------------------------ bot REST routes

    def _bot_auth(self, request: web.Request) -> web.Response | None:
        """Global rate limit, then ``Authorization: Bot <token>``."""
        limited = self._check_global(self.clock(), {})
        if limited is not None:
            return limited
        auth = request.headers.get("Authorization", "")
        if self.bot_token is None or not secrets.compare_digest(
            auth.encode(), f"Bot {self.bot_token}".encode()
        ):
            return _error(401, 0, "401: Unauthorized")
        return None

    async def _get_upload(self, request: web.Request) -> web.Response:
        """The CDN: an attachment's bytes (no auth, as Discord's signed CDN URLs need none)."""
        data = self.uploads.get(int(request.match_info["attachment_id"]))
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _get_me(self, request: web.Request) -> web.Response:
        return self._bot_auth(request) or _json_response(self._bot_user_private(), 200)

    async def _get_application(self, request: web.Request) -> web.Response:
        return self._bot_auth(request) or _json_response(self.application_json(), 200)

    async def _get_gateway(self, request: web.Request) -> web.Response:
        limited = self._check_global(self.clock(), {})
        return limited or _json_response({"url": self.gateway_url}, 200)

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        body = {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}
        return _json_response(body, 200)

    def _command_scope(self, request: web.Request) -> int | web.Response | None:
        if int(request.match_info["application_id"]) != self.application_id:
            return _error(404, 10002, "Unknown Application")
        raw_guild = request.match_info.get("guild_id")
        if raw_guild is None:
            return None
        if int(raw_guild) not in self.guilds:
            return _error(403, 50001, "Missing Access")
        return int(raw_guild)

    async def _get_commands(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        scope = self._command_scope(request)
        if isinstance(scope, web.Response):
            return scope
        return _json_response(self.synced_commands(scope), 200)

    async def _put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite, recorded in ``command_syncs`` whatever the outcome."""
        names: list[str] = []
        response = await self._overwrite_commands(request, names)
        raw_guild = request.match_info.get("guild_id")
        self.command_syncs.append(
            CommandSync(
                at=time.monotonic(),
                guild_id=None if raw_guild is None else int(raw_guild),
                names=tuple(names),
                status=response.status,
            )
        )
        self._notify()
        return response

    async def _overwrite_commands(self, request: web.Request, names: list[str]) -> web.Response:
        """``names`` gets the command names of a well-formed body."""
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        scope = self._command_scope(request)
        if isinstance(scope, web.Response):
            return scope
        try:
            body, _ = await _read_body(request)
        except _InvalidJSON:
            return _error(400, 50109, "The request body contains invalid JSON.")
        errors = _Errors()
        if not isinstance(body, list):
            errors.add((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            return _form_error(errors, {})
        names.extend(str(c.get("name")) for c in body if isinstance(c, dict))
        if len(body) > 100:
            errors.add((), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        seen: set[tuple[Any, Any]] = set()
        for index, command in enumerate(body):
            _check_command(errors, (index,), command)
            if isinstance(command, dict):
                key = (command.get("type", 1), command.get("name"))
                if key in seen:
                    errors.add(
                        (index, "name"),
                        "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        f"Application command names must be unique: {key[1]}",
                    )
                seen.add(key)
        if errors:
            return _form_error(errors, {})
        previous = {(c["type"], c["name"]): c for c in self._commands.get(scope, [])}
        stored = []
        for command in body:
            out = copy.deepcopy(command)
            out["type"] = command.get("type", 1)
            permissions = command.get("default_member_permissions")
            out["default_member_permissions"] = None if permissions is None else str(permissions)
            out.setdefault("description", "")
            out.setdefault("nsfw", False)
            out.setdefault("name_localizations", None)
            out.setdefault("description_localizations", None)
            if out.get("integration_types") is None:
                out["integration_types"] = [0]
            out.setdefault("contexts", None)
            out["application_id"] = str(self.application_id)
            if scope is not None:
                out["guild_id"] = str(scope)
            # Overwriting keeps a command's id; its version changes only when it changed.
            before = previous.get((out["type"], out["name"]))
            if before is None:
                out["id"] = out["version"] = str(self.next_snowflake())
            else:
                unchanged = {k: v for k, v in before.items() if k not in ("id", "version")} == out
                out["id"] = before["id"]
                out["version"] = before["version"] if unchanged else str(self.next_snowflake())
            stored.append(out)
        self._commands[scope] = stored
        self._notify()
        return _json_response(copy.deepcopy(stored), 200)

    async def _get_channel(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        channel_id = int(request.match_info["channel_id"])
        if channel_id not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        return _json_response(self.channel_json(channel_id), 200)

    async def _get_guild(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        guild_id = int(request.match_info["guild_id"])
        if guild_id not in self.guilds:
            return _error(404, 10004, "Unknown Guild")
        data = self.guild_json(guild_id, gateway=False)
        if _parse_bool(request.query.get("with_counts", "false")):
            guild = self.guilds[guild_id]
            data["approximate_member_count"] = len(
                {self.bot_user_id, guild.owner_id, *guild.members}
            )
            data["approximate_presence_count"] = 1
        return _json_response(data, 200)

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        guild_id = int(request.match_info["guild_id"])
        if guild_id not in self.guilds:
            return _error(404, 10004, "Unknown Guild")
        channels = [
            self.channel_json(c.id)
            for c in self.channels.values()
            if c.guild_id == guild_id and not c.is_thread
        ]
        return _json_response(channels, 200)

    async def _get_guild_roles(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        guild = self.guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            return _error(404, 10004, "Unknown Guild")
        return _json_response([self._role_json(guild, r) for r in guild.role_ids], 200)

    def _webhook_channel_check(self, channel: FakeChannel) -> web.Response | None:
        """403 when the bot may not manage this channel's webhooks."""
        if self._webhook_channel(channel).manage_webhooks_denied:
            return _error(403, 50013, "Missing Permissions")
        return None

    async def _list_channel_webhooks(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        channel = self.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        forbidden = self._webhook_channel_check(channel)
        if forbidden is not None:
            return forbidden
        hooks = [
            self.webhook_json(h.id)
            for h in self.webhooks.values()
            if h.channel_id == channel.id and not h.deleted
        ]
        return _json_response(hooks, 200)

    async def _create_channel_webhook(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        channel = self.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if channel.type not in _WEBHOOK_CHANNEL_TYPES:
            return _error(400, 50024, "Cannot execute action on this channel type")
        forbidden = self._webhook_channel_check(channel)
        if forbidden is not None:
            return forbidden
        try:
            body, _ = await _read_body(request)
        except _InvalidJSON:
            return _error(400, 50109, "The request body contains invalid JSON.")
        errors = _Errors()
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return _form_error(errors, {})
        name = body.get("name")
        valid = _check_string(errors, ("name",), name, min_len=1, max_len=80, required=True)
        if valid and isinstance(name, str):
            for word in ("discord", "clyde"):
                if word in name.lower():
                    errors.add(
                        ("name",), "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{word}"'
                    )
        avatar = body.get("avatar")
        if avatar is not None and (
            not isinstance(avatar, str) or not avatar.startswith("data:image/")
        ):
            errors.add(("avatar",), "IMAGE_INVALID", "Invalid image data")
        if errors:
            return _form_error(errors, {})
        existing = [
            h for h in self.webhooks.values() if h.channel_id == channel.id and not h.deleted
        ]
        if len(existing) >= self.max_webhooks_per_channel:
            limit = self.max_webhooks_per_channel
            return _error(400, 30007, f"Maximum number of webhooks reached ({limit})")
        webhook_id, _token = self.add_webhook(channel.id, name=str(name))
        hook = self.webhooks[webhook_id]
        hook.application_id = self.application_id
        hook.creator_id = self.bot_user_id
        if avatar is not None:
            hook.avatar = hashlib.md5(avatar.encode(), usedforsecurity=False).hexdigest()
        if hook.guild_id is not None:
            update = {"guild_id": str(hook.guild_id), "channel_id": str(channel.id)}
            await self.dispatch("WEBHOOKS_UPDATE", update)
        self._notify()
        return _json_response(self.webhook_json(webhook_id), 200)

    async def _get_webhook_bot(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        hook = self.webhooks.get(int(request.match_info["webhook_id"]))
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        channel = self.channels.get(hook.channel_id)
        forbidden = None if channel is None else self._webhook_channel_check(channel)
        return forbidden or _json_response(self.webhook_json(hook.id), 200)

    async def _delete_webhook_bot(self, request: web.Request) -> web.Response:
        denied = self._bot_auth(request)
        if denied is not None:
            return denied
        hook = self.webhooks.get(int(request.match_info["webhook_id"]))
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        channel = self.channels.get(hook.channel_id)
        forbidden = None if channel is None else self._webhook_channel_check(channel)
        if forbidden is not None:
            return forbidden
        return await self._remove_webhook(hook)

    async def _delete_webhook_with_token(self, request: web.Request) -> web.Response:
        if not self.allow_webhook_delete_with_token:
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        limited = self._check_global(self.clock(), {})
        if limited is not None:
            return limited
        hook = self.webhooks.get(int(request.match_info["webhook_id"]))
        if hook is None or hook.deleted:
            return _error(404, 10015, "Unknown Webhook")
        if not secrets.compare_digest(hook.token.encode(), request.match_info["token"].encode()):
            return _error(401, 50027, "Invalid Webhook Token")
        return await self._remove_webhook(hook)

    async def _remove_webhook(self, hook: FakeWebhook) -> web.Response:
        hook.deleted = True
        if hook.guild_id is not None:
            update = {"guild_id": str(hook.guild_id), "channel_id": str(hook.channel_id)}
            await self.dispatch("WEBHOOKS_UPDATE", update)
        self._notify()
        return web.Response(status=204)

    # ------------------------------------------------------------------ interaction routes
    # Interaction endpoints are not subject to the global rate limit (as on Discord).

    def _record_reply(
        self,
        interaction: FakeInteraction,
        kind: str,
        callback_type: int | None,
        body: Any,
        response: web.Response,
        now: float,
        message_id: int | None = None,
    ) -> web.Response:
        interaction.responses.append(
            InteractionReply(
                kind=kind,
                status=response.status,
                type=callback_type,
                body=body,
                at=now,
                elapsed=now - interaction.created_at,
                message_id=message_id,
            )
        )
        self._notify()
        return response

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        now = self.clock()
        interaction = self.interactions.get(int(request.match_info["interaction_id"]))
        token = request.match_info["token"]
        if interaction is None or not secrets.compare_digest(
            interaction.token.encode(), token.encode()
        ):
            return _error(404, 10062, "Unknown interaction")
        try:
            body, files = await _read_body(request)
        except _InvalidJSON:
            response = _error(400, 50109, "The request body contains invalid JSON.")
            return self._record_reply(interaction, "callback", None, None, response, now)
        raw_type = body.get("type") if isinstance(body, dict) else None
        callback_type = raw_type if isinstance(raw_type, int) else None

        def reply(response: web.Response, message_id: int | None = None) -> web.Response:
            return self._record_reply(
                interaction, "callback", callback_type, body, response, now, message_id
            )

        if interaction.acknowledged:
            return reply(_error(400, 40060, "Interaction has already been acknowledged."))
        if now - interaction.created_at > self.interaction_deadline:
            return reply(_error(404, 10062, "Unknown interaction"))
        errors = _Errors()
        with_response = _parse_bool(request.query.get("with_response", "false"))
        if with_response is None:
            value = request.query["with_response"]
            errors.add(("with_response",), "BOOLEAN_TYPE_COERCE", f'Value "{value}" is not bool.')
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return reply(_form_error(errors, {}))
        allowed = _CALLBACK_TYPES.get(interaction.type, ())
        if callback_type not in allowed or isinstance(raw_type, bool):
            errors.add(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {set(allowed)}.")
        data = body.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.add(
                ("data",), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
            data = {}
        modal: FakeModal | None = None
        if callback_type in (4, 5, 7):
            sub = _Errors()
            _validate_payload(data, sub)
            if sub.tree:
                errors.tree.setdefault("data", {}).update(sub.tree)
        elif callback_type == 8:
            _validate_choices(errors, data.get("choices"))
        elif callback_type == 9:
            sub = _Errors()
            modal = _parse_modal(sub, data)
            if sub.tree:
                errors.tree.setdefault("data", {}).update(sub.tree)
        if errors:
            return reply(_form_error(errors, {}))
        if callback_type == 4 and _is_empty(data, files):
            return reply(_error(400, 50006, "Cannot send an empty message"))

        assert callback_type is not None
        interaction.response_type = callback_type
        flags = data.get("flags") or 0
        message: InteractionMessage | None = None
        if callback_type == 4:
            message = InteractionMessage(
                id=self.next_snowflake(),
                channel_id=interaction.channel_id,
                original=True,
                content=data.get("content") or "",
                embeds=[dict(e) for e in data.get("embeds") or []],
                components=list(data.get("components") or []),
                flags=flags & INTERACTION_SETTABLE_FLAGS,
                created_at=self.wall_clock(),
                body=data,
                files=dict(request.get(_FILE_BYTES, {})),
            )
        elif callback_type == 5:
            message = InteractionMessage(
                id=self.next_snowflake(),
                channel_id=interaction.channel_id,
                original=True,
                flags=LOADING | (flags & EPHEMERAL),
                created_at=self.wall_clock(),
                body=data,
            )
        elif callback_type == 8:
            interaction.choices = copy.deepcopy(data["choices"])
        elif callback_type == 9:
            interaction.modal = modal
        # 6 (deferred update) and 7 (update): the fake's modals come from slash commands, so
        # there is no message of the bot's to update; the reply records what was asked.
        interaction.original = message
        if not with_response:
            response = web.Response(status=204)
        else:
            summary: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
            resource: dict[str, Any] = {"type": callback_type}
            if message is not None:
                summary.update(
                    response_message_id=str(message.id),
                    response_message_loading=message.loading,
                    response_message_ephemeral=message.ephemeral,
                )
                resource["message"] = self._interaction_message_json(interaction, message)
            response = _json_response({"interaction": summary, "resource": resource}, 200)
        return reply(response, None if message is None else message.id)

    def _token_expired(self, interaction: FakeInteraction, now: float) -> bool:
        return now - interaction.created_at > self.interaction_token_lifetime

    async def _interaction_followup(
        self, request: web.Request, interaction: FakeInteraction
    ) -> web.Response:
        now = self.clock()
        body: Any = None

        def reply(response: web.Response, message_id: int | None = None) -> web.Response:
            return self._record_reply(
                interaction, "followup", None, body, response, now, message_id
            )

        if self._token_expired(interaction, now):
            return reply(_error(401, 50027, "Invalid Webhook Token"))
        if not interaction.acknowledged:
            return reply(_error(404, 10015, "Unknown Webhook"))
        try:
            body, files = await _read_body(request)
        except _InvalidJSON:
            return reply(_error(400, 50109, "The request body contains invalid JSON."))
        errors = _Errors()
        wait = _parse_bool(request.query.get("wait", "false"))
        if wait is None:
            value = request.query["wait"]
            errors.add(("wait",), "BOOLEAN_TYPE_COERCE", f'Value "{value}" is not bool.')
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return reply(_form_error(errors, {}))
        _validate_payload(body, errors)
        if errors:
            return reply(_form_error(errors, {}))
        if _is_empty(body, files):
            return reply(_error(400, 50006, "Cannot send an empty message"))
        flags = (body.get("flags") or 0) & INTERACTION_SETTABLE_FLAGS
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first followup after a deferral fills the "thinking" message; its
            # ephemerality is the deferral's.
            message = original
            message.flags = (original.flags & EPHEMERAL) | (flags & ~EPHEMERAL)
        else:
            message = InteractionMessage(
                id=self.next_snowflake(),
                channel_id=interaction.channel_id,
                original=False,
                flags=flags,
                created_at=self.wall_clock(),
            )
            interaction.followups.append(message)
        message.content = body.get("content") or ""
        message.embeds = [dict(e) for e in body.get("embeds") or []]
        message.components = list(body.get("components") or [])
        message.body = body
        message.files = dict(request.get(_FILE_BYTES, {}))
        if wait:
            response = _json_response(self._interaction_message_json(interaction, message), 200)
        else:
            response = web.Response(status=204)
        return reply(response, message.id)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        """``GET/PATCH/DELETE /webhooks/{app_id}/{token}/messages/{id|@original}`` for
        interactions; ``PATCH`` with any other token edits an ordinary webhook's message
        (``_edit_webhook_message``). (GET and DELETE of ordinary webhooks' messages are not
        implemented: 404.)"""
        interaction = self._interaction_for(
            int(request.match_info["webhook_id"]), request.match_info["token"]
        )
        if interaction is None:
            if request.method == "PATCH":
                return await self._edit_webhook_message(request)
            raise web.HTTPNotFound()
        now = self.clock()
        kind = {"GET": "get", "PATCH": "edit", "DELETE": "delete"}[request.method]
        body: Any = None

        def reply(response: web.Response, message_id: int | None = None) -> web.Response:
            return self._record_reply(interaction, kind, None, body, response, now, message_id)

        if self._token_expired(interaction, now):
            return reply(_error(401, 50027, "Invalid Webhook Token"))
        wanted = request.match_info["message_id"]
        message = None
        for candidate in [interaction.original, *interaction.followups]:
            if candidate is None or candidate.deleted:
                continue
            if (wanted == "@original" and candidate.original) or wanted == str(candidate.id):
                message = candidate
        if message is None:
            return reply(_error(404, 10008, "Unknown Message"))
        if request.method == "GET":
            return reply(
                _json_response(self._interaction_message_json(interaction, message), 200),
                message.id,
            )
        if request.method == "DELETE":
            message.deleted = True
            return reply(web.Response(status=204), message.id)
        try:
            body, files = await _read_body(request)
        except _InvalidJSON:
            return reply(_error(400, 50109, "The request body contains invalid JSON."))
        errors = _Errors()
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return reply(_form_error(errors, {}))
        _validate_payload(body, errors)
        if errors:
            return reply(_form_error(errors, {}))
        content = (body.get("content") or "") if "content" in body else message.content
        embeds = [dict(e) for e in body.get("embeds") or []] if "embeds" in body else message.embeds
        components = (
            list(body.get("components") or []) if "components" in body else message.components
        )
        merged = {"content": content, "embeds": embeds, "components": components}
        if _is_empty(merged, files):
            return reply(_error(400, 50006, "Cannot send an empty message"))
        if not message.loading:
            message.edited_at = self.wall_clock()
        message.content, message.embeds, message.components = content, embeds, components
        flags = message.flags & ~LOADING
        if isinstance(body.get("flags"), int):
            flags = (flags & ~SUPPRESS_EMBEDS) | (body["flags"] & SUPPRESS_EMBEDS)
        message.flags = flags
        message.body = body
        return reply(
            _json_response(self._interaction_message_json(interaction, message), 200), message.id
        )

    # ------------------------------------------------------------------ routes

    async def _execute_webhook(self, request: web.Request) -> web.StreamResponse:
        webhook_id = int(request.match_info["webhook_id"])
        interaction = self._interaction_for(webhook_id, request.match_info["token"])
        if interaction is not None:  # a followup message (faults do not apply)
            return await self._interaction_followup(request, interaction)
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
        thread_id = _thread_query(request, errors)

        # Body.
        try:
            body, files = await _read_body(request)
        except _InvalidJSON:
            return _error(400, 50109, "The request body contains invalid JSON.", headers)
        if not isinstance(body, dict):
            errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            return _form_error(errors, headers)
        _validate_payload(body, errors)
        applied: Any = body.get("applied_tags")
        if _check_list(errors, ("applied_tags",), applied, MAX_APPLIED_TAGS):
            for index, value in enumerate(applied):
                if isinstance(value, bool) or not str(value).isdigit():
                    errors.add(
                        ("applied_tags", index),
                        "NUMBER_TYPE_COERCE",
                        f'Value "{value}" is not snowflake.',
                    )
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
            tag_ids = [tag.id for tag in channel.available_tags]
            choices = ", ".join(f"'{tag_id}'" for tag_id in tag_ids)
            for index, value in enumerate(applied or []):
                if int(value) not in tag_ids:
                    errors.add(
                        ("applied_tags", index),
                        "BASE_TYPE_CHOICES",
                        f"Value must be one of {{{choices}}}.",
                    )
            if errors:
                return _form_error(errors, headers)
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
        tags: list[int] = []
        if thread_name is not None:
            thread_id = message_id  # a forum post's id is its starter message's id
            tags = _unique(int(value) for value in applied or [])
            self.channels[thread_id] = FakeChannel(
                id=thread_id,
                guild_id=channel.guild_id,
                parent_id=channel.id,
                name=thread_name,
                applied_tags=list(tags),
            )
        allowed = body.get("allowed_mentions")
        everyone, users, roles = _mentions(content, allowed)
        roles = self._pingable_roles(hook.guild_id, roles)
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
            attachments=[self._attachment_json(channel.id, message_id, *file) for file in files],
            author_name=body.get("username") or hook.name,
            guild_id=hook.guild_id,
            mention_everyone=everyone,
            mentioned_user_ids=users,
            mentioned_role_ids=roles,
            body=body,
            applied_tags=tags,
        )
        self._messages.append(message)
        self._notify()
        if wait:
            return _json_response(message.to_json(), 200, headers)
        return web.Response(status=204, headers=headers)

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        """``PATCH /webhooks/{id}/{token}/messages/{message_id}`` (``?thread_id=``) of a
        channel webhook: edit a message the webhook posted. Counts against the webhook's own
        rate limit window, like executing it (not the channel's: nothing is created).

        404/10015 for an unknown or deleted webhook or a wrong token; 404/10008 for a message
        that does not exist, was deleted, was posted by another webhook, or lives in another
        thread than ``thread_id`` says (a message in a thread needs its ``thread_id``);
        404/10003 for a ``thread_id`` that is no thread of the webhook's channel. The body is
        validated like an execute's; given fields replace the message's (``null`` clears),
        ``flags`` may only toggle SUPPRESS_EMBEDS, and mentions are rebuilt from new content.
        """
        now = self.clock()
        hook = self.webhooks.get(int(request.match_info["webhook_id"]))
        if (
            hook is None
            or hook.deleted
            or not secrets.compare_digest(hook.token.encode(), request.match_info["token"].encode())
        ):
            hook = None
        headers = {} if hook is None else self._webhook_headers(hook, now)
        limited = self._check_global(now, headers)
        if limited is not None:
            return limited
        if hook is None:
            return _error(404, 10015, "Unknown Webhook")
        if hook.forbidden:
            return _error(403, 50013, "Missing Permissions")
        rule = self.webhook_limit
        window = self._webhook_windows.setdefault(hook.id, _Window())
        if rule is not None:
            if window.remaining(rule, now) <= 0:
                return self._too_many(window.reset_after(rule, now), "user", headers)
            window.take(rule, now)
        headers = self._webhook_headers(hook, now)

        errors = _Errors()
        thread_id = _thread_query(request, errors)
        if errors:
            return _form_error(errors, headers)
        if thread_id is not None:
            thread = self.channels.get(thread_id)
            if thread is None or thread.parent_id != hook.channel_id:
                return _error(404, 10003, "Unknown Channel", headers)
        raw_message = request.match_info["message_id"]
        message = None
        if raw_message.isdigit():
            message = next((m for m in self._messages if m.id == int(raw_message)), None)
        if (
            message is None
            or message.deleted
            or message.webhook_id != hook.id
            or message.thread_id != thread_id
        ):
            return _error(404, 10008, "Unknown Message", headers)

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
        content = (body.get("content") or "") if "content" in body else message.content
        embeds = [dict(e) for e in body.get("embeds") or []] if "embeds" in body else message.embeds
        attachments = message.attachments
        if "attachments" in body:
            kept = body.get("attachments") or []
            keep = {str(a.get("id")) for a in kept if isinstance(a, dict)}
            attachments = [a for a in message.attachments if a["id"] in keep]
        attachments = attachments + [
            self._attachment_json(hook.channel_id, message.id, *file) for file in files
        ]
        if not content.strip() and not embeds and not attachments:
            return _error(400, 50006, "Cannot send an empty message", headers)

        if "content" in body:
            everyone, users, roles = _mentions(content, body.get("allowed_mentions"))
            message.mention_everyone = everyone
            message.mentioned_user_ids = users
            message.mentioned_role_ids = self._pingable_roles(hook.guild_id, roles)
        message.content, message.embeds, message.attachments = content, embeds, attachments
        flags = body.get("flags")
        if isinstance(flags, int):
            message.flags = (message.flags & ~SUPPRESS_EMBEDS) | (flags & SUPPRESS_EMBEDS)
        message.edited_at = self.wall_clock()
        message.edits.append(body)
        self._message_edits.append(
            MessageEdit(
                at=message.edited_at,
                message_id=message.id,
                webhook_id=hook.id,
                thread_id=thread_id,
                body=body,
            )
        )
        self._notify()
        return _json_response(message.to_json(), 200, headers)

    def _attachment_json(
        self, channel_id: int, message_id: int, name: str, size: int, ctype: str
    ) -> dict[str, Any]:
        return {
            "id": str(self.next_snowflake()),
            "filename": name,
            "size": size,
            "content_type": ctype,
            "url": f"https://cdn.discordapp.com/attachments/{channel_id}/{message_id}/{name}",
            "proxy_url": f"https://media.discordapp.net/attachments/{channel_id}/{message_id}/{name}",
        }

    def _pingable_roles(self, guild_id: int | None, roles: list[int]) -> list[int]:
        """Of the mentioned roles, those that exist (when the fake knows the guild): a
        mention of a role the guild lacks, or of @everyone's id, pings nobody."""
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        if guild is None:
            return roles
        known = set(guild.role_ids) - {guild.id}
        return [role for role in roles if role in known]

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
        found = [m for m in self._messages if m.location_id == channel_id and not m.deleted]
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


# Uploaded files' contents, by filename, kept on the request for the handler.
_FILE_BYTES: web.RequestKey[dict[str, bytes]] = web.RequestKey("file_bytes", dict)


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
                request.setdefault(_FILE_BYTES, {})[part.filename] = bytes(data)
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


def _effective(permissions: int, *, owner: bool) -> int:
    """Owners and administrators have every permission."""
    if owner or permissions & ADMINISTRATOR:
        return ALL_PERMISSIONS
    return permissions


def _may_use(command: Mapping[str, Any], permissions: int) -> bool:
    """Whether Discord shows the command to a member (``default_member_permissions``)."""
    raw = command.get("default_member_permissions")
    if raw is None:
        return True
    required = int(raw)
    if permissions & ADMINISTRATOR:
        return True
    return required != 0 and permissions & required == required


def _is_empty(body: Mapping[str, Any], files: list[tuple[str, int, str]]) -> bool:
    content = body.get("content") or ""
    return not (
        content.strip() or body.get("embeds") or body.get("components") or body.get("poll") or files
    )


def _redact(payload: Any) -> Any:
    if isinstance(payload, dict) and isinstance(payload.get("d"), dict) and "token" in payload["d"]:
        return {**payload, "d": {**payload["d"], "token": ":token"}}
    return payload


def _validate_choices(errors: _Errors, choices: Any) -> None:
    path: tuple[str | int, ...] = ("data", "choices")
    if choices is None:
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not _check_list(errors, path, choices, 25):
        return
    for index, choice in enumerate(choices):
        if not _check_dict(errors, (*path, index), choice):
            continue
        _check_string(
            errors, (*path, index, "name"), choice.get("name"), min_len=1, max_len=100,
            required=True,
        )  # fmt: skip
        value = choice.get("value")
        if isinstance(value, str):
            _check_string(errors, (*path, index, "value"), value, max_len=100)
        elif not isinstance(value, int | float) or isinstance(value, bool):
            errors.add((*path, index, "value"), "BASE_TYPE_REQUIRED", "This field is required")


def _check_int(
    errors: _Errors, path: tuple[str | int, ...], value: Any, low: int, high: int
) -> None:
    """An optional integer in ``[low, high]``."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errors.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
    elif value < low:
        errors.add(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
    elif value > high:
        errors.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")


def _modal_items(
    components: list[Any], path: tuple[str | int, ...] = ("components",)
) -> Iterable[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every component of a modal with its path, in order: each top-level component, then
    the text input(s) of an ACTION_ROW or the component of a LABEL (well-formed dicts only)."""
    for index, component in enumerate(components):
        here = (*path, index)
        if not isinstance(component, dict):
            continue
        yield here, component
        if component.get("type") == ACTION_ROW and isinstance(component.get("components"), list):
            yield from _modal_items(component["components"], (*here, "components"))
        elif component.get("type") == LABEL and isinstance(component.get("component"), dict):
            yield (*here, "component"), component["component"]


def _check_text_input(
    errors: _Errors, path: tuple[str | int, ...], component: dict[str, Any], *, in_label: bool
) -> None:
    _check_string(
        errors, (*path, "custom_id"), component.get("custom_id"), min_len=1,
        max_len=MAX_CUSTOM_ID, required=True,
    )  # fmt: skip
    style = component.get("style")
    if style is None:
        errors.add((*path, "style"), "BASE_TYPE_REQUIRED", "This field is required")
    elif style not in (1, 2) or isinstance(style, bool):
        errors.add((*path, "style"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    label = component.get("label")
    if in_label:
        # discord.py sends ``"label": null`` for a TextInput inside a Label.
        _check_string(errors, (*path, "label"), label, max_len=MAX_LABEL)
    else:
        _check_string(errors, (*path, "label"), label, min_len=1, max_len=MAX_LABEL, required=True)
    _check_int(errors, (*path, "min_length"), component.get("min_length"), 0, MAX_TEXT_INPUT)
    _check_int(errors, (*path, "max_length"), component.get("max_length"), 1, MAX_TEXT_INPUT)
    _check_string(errors, (*path, "value"), component.get("value"), max_len=MAX_TEXT_INPUT)
    _check_string(
        errors, (*path, "placeholder"), component.get("placeholder"), max_len=MAX_PLACEHOLDER
    )
    required = component.get("required")
    if required is not None and not isinstance(required, bool):
        errors.add((*path, "required"), "BOOLEAN_TYPE_COERCE", f'Value "{required}" is not bool.')


def _check_modal_component(errors: _Errors, path: tuple[str | int, ...], component: Any) -> None:
    """One top-level component of a modal: an ACTION_ROW holding one TEXT_INPUT (the older
    layout), a LABEL wrapping one input, or a TEXT_DISPLAY."""
    if not _check_dict(errors, path, component):
        if component is None:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    kind = component.get("type")
    if kind == ACTION_ROW:
        children = component.get("components")
        where = (*path, "components")
        if children is None:
            errors.add(where, "BASE_TYPE_REQUIRED", "This field is required")
        elif _check_list(errors, where, children, 1):
            if not children:
                errors.add(where, "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
            for index, child in enumerate(children):
                if not _check_dict(errors, (*where, index), child):
                    continue
                if child.get("type") != TEXT_INPUT:
                    errors.add(
                        (*where, index),
                        "UNION_TYPE_CHOICES",
                        'Value of field "type" must be one of (4,).',
                    )
                else:
                    _check_text_input(errors, (*where, index), child, in_label=False)
    elif kind == LABEL:
        _check_string(
            errors, (*path, "label"), component.get("label"), min_len=1, max_len=MAX_LABEL,
            required=True,
        )  # fmt: skip
        _check_string(
            errors, (*path, "description"), component.get("description"),
            max_len=MAX_LABEL_DESCRIPTION,
        )  # fmt: skip
        child = component.get("component")
        where = (*path, "component")
        if child is None:
            errors.add(where, "BASE_TYPE_REQUIRED", "This field is required")
        elif _check_dict(errors, where, child):
            if child.get("type") == TEXT_INPUT:
                _check_text_input(errors, where, child, in_label=True)
            elif child.get("type") in _LABEL_CHILD_TYPES:
                _check_string(
                    errors, (*where, "custom_id"), child.get("custom_id"), min_len=1,
                    max_len=MAX_CUSTOM_ID, required=True,
                )  # fmt: skip
            else:
                choices = ", ".join(str(t) for t in _LABEL_CHILD_TYPES)
                message = f'Value of field "type" must be one of ({choices}).'
                errors.add(where, "UNION_TYPE_CHOICES", message)
    elif kind == TEXT_DISPLAY:
        _check_string(
            errors, (*path, "content"), component.get("content"), min_len=1,
            max_len=MAX_TEXT_INPUT, required=True,
        )  # fmt: skip
    else:
        errors.add(path, "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1, 10, 18).')


def _parse_modal(errors: _Errors, data: dict[str, Any]) -> FakeModal | None:
    """Validate a type 9 callback's ``data`` (paths relative to it) and read the modal."""
    custom_id: Any = data.get("custom_id")
    title: Any = data.get("title")
    _check_string(
        errors, ("custom_id",), custom_id, min_len=1, max_len=MAX_CUSTOM_ID, required=True
    )
    _check_string(errors, ("title",), title, min_len=1, max_len=MAX_MODAL_TITLE, required=True)
    components = data.get("components")
    if components is None:
        errors.add(("components",), "BASE_TYPE_REQUIRED", "This field is required")
    elif _check_list(errors, ("components",), components, MAX_MODAL_COMPONENTS):
        if not components:
            errors.add(("components",), "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
        for index, component in enumerate(components):
            _check_modal_component(errors, ("components", index), component)
        seen: set[Any] = set()
        for path, item in _modal_items(components):
            if "custom_id" not in item or item.get("type") in (ACTION_ROW, LABEL):
                continue
            if item["custom_id"] in seen:
                errors.add(
                    (*path, "custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(item["custom_id"])
    if errors or not isinstance(components, list):
        return None
    laid_out = copy.deepcopy(components)
    # Discord numbers components without an id sequentially, skipping ids already used.
    used = {c["id"] for _, c in _modal_items(laid_out) if isinstance(c.get("id"), int)}
    next_id = 1
    for _, item in _modal_items(laid_out):
        if not isinstance(item.get("id"), int):
            while next_id in used:
                next_id += 1
            item["id"] = next_id
            used.add(next_id)
    inputs: list[ModalInput] = []
    for component in laid_out:
        if component["type"] == ACTION_ROW:
            pairs = [(component, child) for child in component["components"]]
        elif component["type"] == LABEL and component["component"]["type"] == TEXT_INPUT:
            pairs = [(component, component["component"])]
        else:
            continue
        for container, child in pairs:
            in_label = container["type"] == LABEL
            inputs.append(
                ModalInput(
                    custom_id=child["custom_id"],
                    label=container["label"] if in_label else child["label"],
                    style=child["style"],
                    value=child.get("value") or None,
                    required=child.get("required", True) is not False,
                    min_length=child.get("min_length"),
                    max_length=child.get("max_length"),
                    placeholder=child.get("placeholder"),
                    id=child["id"],
                    container=container["type"],
                    description=container.get("description") if in_label else None,
                )
            )
    return FakeModal(custom_id=custom_id, title=title, components=laid_out, inputs=inputs)


def _submitted(component: dict[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A modal component as a MODAL_SUBMIT's ``data.components`` carries it back."""
    kind = component["type"]
    if kind == ACTION_ROW:
        children = [_submitted(child, values) for child in component["components"]]
        return {"type": kind, "id": component["id"], "components": children}
    if kind == LABEL:
        inner = _submitted(component["component"], values)
        return {"type": kind, "id": component["id"], "component": inner}
    if kind == TEXT_INPUT:
        return {
            "type": kind,
            "id": component["id"],
            "custom_id": component["custom_id"],
            "value": values[component["custom_id"]],
        }
    return {"type": kind, "id": component["id"]}


def _check_name(errors: _Errors, path: tuple[str | int, ...], name: Any, lower: bool) -> None:
    if (
        not isinstance(name, str)
        or not _COMMAND_NAME.match(name)
        or (lower and name != name.lower())
    ):
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_command(errors: _Errors, path: tuple[str | int, ...], command: Any) -> None:
    """Discord's main checks of an application command in a bulk overwrite."""
    if not _check_dict(errors, path, command):
        return
    kind = command.get("type", 1)
    if kind not in (1, 2, 3, 4):
        errors.add((*path, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.")
    _check_name(errors, path, command.get("name"), lower=kind == 1)
    if kind == 1:
        _check_string(
            errors, (*path, "description"), command.get("description"), min_len=1,
            max_len=100, required=True,
        )  # fmt: skip
        _check_options(errors, (*path, "options"), command.get("options"), depth=0)
    elif command.get("options"):
        errors.add((*path, "options"), "BASE_TYPE_MAX_LENGTH", "Must be 0 or fewer in length.")


def _check_options(errors: _Errors, path: tuple[str | int, ...], options: Any, depth: int) -> None:
    if options is None or not _check_list(errors, path, options, 25):
        return
    names: set[Any] = set()
    optional_seen = False
    kinds: set[bool] = set()
    for index, option in enumerate(options):
        here = (*path, index)
        if not _check_dict(errors, here, option):
            continue
        kind = option.get("type")
        if not isinstance(kind, int) or isinstance(kind, bool) or not 1 <= kind <= 11:
            errors.add((*here, "type"), "BASE_TYPE_CHOICES", "Value must be one of 1 to 11.")
            continue
        name = option.get("name")
        _check_name(errors, here, name, lower=True)
        if name in names:
            errors.add(
                (*here, "name"), "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Duplicate name"
            )
        names.add(name)
        _check_string(
            errors, (*here, "description"), option.get("description"), min_len=1, max_len=100,
            required=True,
        )  # fmt: skip
        is_sub = kind in (1, 2)
        kinds.add(is_sub)
        if is_sub:
            if (kind == 2 and depth > 0) or depth > 1:
                errors.add(
                    (*here, "type"),
                    "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                    "Sub-command groups and sub-commands cannot be nested this deep",
                )
            _check_options(errors, (*here, "options"), option.get("options"), depth + 1)
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    path,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices")
        if (
            choices is not None
            and _check_list(errors, (*here, "choices"), choices, 25)
            and option.get("autocomplete")
            and choices
        ):
            errors.add(
                (*here, "autocomplete"),
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be set if choices are present",
            )
    if len(kinds) > 1:
        errors.add(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-commands cannot be mixed with other option types",
        )


def _thread_query(request: web.Request, errors: _Errors) -> int | None:
    """The ``thread_id`` query parameter of a webhook request (a snowflake), if any."""
    raw_thread = request.query.get("thread_id")
    if raw_thread is None:
        return None
    if raw_thread.isdigit():
        return int(raw_thread)
    errors.add(("thread_id",), "NUMBER_TYPE_COERCE", f'Value "{raw_thread}" is not snowflake.')
    return None
