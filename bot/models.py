"""Domain types shared by every layer. Frozen dataclasses: no I/O, no ORM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

PostKind = Literal["post", "repost", "reply", "quote"]


@dataclass(frozen=True, slots=True)
class SocialPost:
    """What makes an item a post of a social network (X, Bluesky, Mastodon).

    The message is posted under the author's identity (name, avatar) and shows
    the post text with up to four images; ``kind`` and ``context_*`` say whose
    post a repost, reply or quote refers to.
    """

    author_name: str
    author_handle: str  # "@alice.bsky.social", "@user@instance", "@handle"
    author_avatar: str | None = None
    author_url: str | None = None
    images: tuple[str, ...] = ()  # at most four, in the post's order
    kind: PostKind = "post"
    context_name: str | None = None  # the original author (repost, quote) or the one replied to
    context_handle: str | None = None
    network: str = ""  # "x", "bluesky", "mastodon"


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a source, ready to be stored and rendered.

    ``key`` is stable across polls (guid/id, else link, else a content hash);
    ``link_norm`` is the normalised link used as a second duplicate guard, or
    ``None`` when the feed gives the same link to several entries.
    """

    key: str
    title: str
    link: str | None
    summary: str
    author: str | None
    published: datetime | None
    image: str | None
    categories: tuple[str, ...] = ()
    link_norm: str | None = None
    social: SocialPost | None = None


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What a parsed document says about itself."""

    title: str
    link: str | None
    icon: str | None
    kind: str  # "rss", "atom", "rdf", "json"; "hook" for an inbound webhook's posts
    # WebSub: the hub the document announces (<atom:link rel="hub">, JSON Feed "hubs")
    # and its own URL (rel="self", "feed_url"), the topic to subscribe to.
    hub: str | None = None
    self_url: str | None = None


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """Health of one source as operators and admins see it."""

    source_id: int
    url: str
    title: str | None
    last_success_at: datetime | None
    last_polled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    last_error: str | None
    newest_item_at: datetime | None
    next_poll_at: datetime | None
    subscriptions: int
    # polls succeed but nothing new arrives for far longer than usual (bot.staleness)
    stale: bool = False


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where a subscription posts. The token is a secret: never log it."""

    webhook_id: int
    token: str = field(repr=False)
    thread_id: int | None = None

    @property
    def redacted(self) -> str:
        thread = f"?thread_id={self.thread_id}" if self.thread_id else ""
        return f"webhook {self.webhook_id}{thread}"


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A subscription as a server admin sees it in ``/feed list``."""

    id: int
    guild_id: int | None
    channel_id: int | None
    thread_id: int | None
    webhook_id: int
    source_url: str
    source_title: str | None
    enabled: bool
    paused: bool
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: datetime | None
    last_error: str | None
    newest_item_at: datetime | None
    last_delivery_at: datetime | None
    # polls succeed but nothing new arrives for far longer than usual (bot.staleness)
    stale: bool = False
    # its message settings (bot.shaping reads them) and how many items its filters left out
    options: Mapping[str, object] = field(default_factory=dict)
    filtered: int = 0

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.paused:
            return "paused"
        if self.consecutive_failures:
            return "failing"
        return "ok"

    @property
    def label(self) -> str:
        return self.source_title or self.source_url


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """Where a subscription posts and whether it runs, for ``feedhook status``."""

    id: int
    source_id: int
    origin: str  # "config" ([[feeds]]), "discord" (/feed add, /feed import) or "import" (CLI)
    webhook_id: int
    thread_id: int | None
    guild_id: int | None
    channel_id: int | None
    enabled: bool
    paused: bool
    disabled_reason: str | None
    # since when; None while running, and for rows disabled before this was recorded
    disabled_at: datetime | None
    paused_at: datetime | None

    @property
    def active(self) -> bool:
        return self.enabled and not self.paused


class SendError(Exception):
    """A message could not be posted now; ``str(e)`` says why, for a person."""
