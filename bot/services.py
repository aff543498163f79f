"""What slash commands (and later the CLI) ask for, with answers a person can act on.

Every failure is a :class:`ServiceError` whose message is one or two sentences
saying what went wrong and what to do. Nothing here knows about discord.py:
the bot translates interactions into these calls and back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.hooks import DEFAULT_TEMPLATE as DEFAULT_HOOK_TEMPLATE
from bot.hooks import MAX_TEMPLATE as MAX_HOOK_TEMPLATE
from bot.hooks import compile_hook_template, hash_token, is_hook
from bot.hooks import new_token as new_hook_token
from bot.models import FeedInfo, Item, SendError, SubscriptionView, WebhookTarget
from bot.net import Fetcher, FetchError
from bot.poller import build_items, link_counts
from bot.render import render_item
from bot.shaping import (
    FORMAT_KEYS,
    SettingError,
    Shape,
    parse_settings,
    render_message,
    shape_of,
)
from bot.sources.feed import ParseError
from bot.sources.forms import SourceFormError, ensure_usable, parse_source
from bot.sources.resolve import SourceResolver, fetch_source, parse_off_loop
from bot.staleness import WINDOW, is_stale
from bot.storage.store import FeedMeta, LogEntry, Store
from bot.templates import TemplateError

# The reason a server's subscriptions are disabled when the bot leaves it (status
# advises inviting it back).
BOT_REMOVED = "the bot was removed from the server"

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Posts one webhook body now (the delivery module's sender); returns Discord's message id.
SendNow = Callable[[WebhookTarget, dict[str, Any]], Awaitable[int | None]]


# How long /feed test waits for the delivery processes before saying "queued".
TEST_QUEUE_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class FeedTestResult:
    """What ``/feed test`` did: posted, or queued for the delivery processes."""

    view: SubscriptionView
    sent: bool


class ServiceError(Exception):
    """A request that cannot be done; ``str(e)`` is the answer to show."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    max_subscriptions_per_guild: int = 100
    min_interval: float = 300.0
    # http.public_url: where hubs and hook senders reach feedhook ("" = push off)
    public_url: str = ""


@dataclass(frozen=True, slots=True)
class HookCreated:
    """A new inbound hook: its endpoint (with the token: shown once, never stored)."""

    subscription_id: int
    source_url: str  # hook:N
    endpoint: str
    template: str


@dataclass(frozen=True, slots=True)
class SourcePreview:
    """A fetched, parsed source: what ``/feed add`` and ``/feed preview`` show."""

    url: str  # the feed's own URL (after following an HTML page or a redirect)
    feed: FeedInfo
    item_count: int
    newest: Item | None

    def body(self) -> dict[str, Any] | None:
        """The newest item as it will be posted."""
        return render_item(self.newest, self.feed) if self.newest else None


@dataclass(frozen=True, slots=True)
class SettingsResult:
    """A subscription's settings after a change, with what they now make of its items."""

    view: SubscriptionView
    shape: Shape
    # the newest (passing) item as it will now be posted; None: no item to show
    preview: dict[str, Any] | None
    # of the source's current items: how many the filters let through, out of how many
    passing: int = 0
    total: int = 0


# Typed in a slash option to clear a side ("-"): Discord sends no empty string.
CLEAR = "-"


@dataclass(frozen=True, slots=True)
class GuildStatus:
    total: int
    ok: int
    paused: int
    failing: tuple[SubscriptionView, ...]
    disabled: tuple[SubscriptionView, ...]
    stale: tuple[SubscriptionView, ...]
    last_delivery_at: datetime | None
    filtered: int = 0  # items the subscriptions' filters left out (kept for the log)
    # WebSub: subscriptions whose source announces a hub, how many of them a hub pushes
    # now, and those it should but does not (with why); push_on: http.public_url is set
    offer_hub: int = 0
    pushed: int = 0
    push_problems: tuple[tuple[SubscriptionView, str], ...] = ()
    push_on: bool = False


def _not_a_hook(view: SubscriptionView) -> None:
    if is_hook(view.source_url):
        raise ServiceError(
            f"**{view.label}** is an inbound hook: its messages come from the template it "
            "was made with. To change it, make a new one with `/feed hook` and remove this one."
        )


def _setting_problem(exc: SettingError) -> str:
    names = {
        "content": "Content",
        "embed.title": "Embed title",
        "embed.description": "Embed description",
        "username": "Username",
        "avatar_url": "Avatar URL",
        "include": "include",
        "exclude": "exclude",
        "mention_when": "when",
    }
    return f"{names.get(exc.key, exc.key)}: {exc.problem}"


def resolve_forum_tags(typed: str, available: Sequence[tuple[int, str]]) -> tuple[int, ...]:
    """Tag names typed as one comma-separated string -> the forum's tag ids (case does not
    matter); an unknown name is refused with the forum's tag names listed."""
    by_name = {name.casefold(): tag_id for tag_id, name in available}
    ids: list[int] = []
    for name in (part.strip() for part in typed.split(",")):
        if not name or name == CLEAR:
            continue
        tag_id = by_name.get(name.casefold())
        if tag_id is None:
            names = ", ".join(f"`{n}`" for _, n in available) or "none"
            raise ServiceError(f"This forum has no tag named `{name}`. Its tags: {names}.")
        ids.append(tag_id)
    return tuple(dict.fromkeys(ids))


def _fetch_problem(exc: FetchError) -> str:
    if exc.kind == "blocked":
        return (
            f"feedhook refuses that address: {exc} "
            "Private and local addresses are blocked unless the bot's operator allows them."
        )
    if exc.kind == "timeout":
        return f"The source took too long to answer ({exc}). Try again later or check the URL."
    if exc.kind in ("connection", "http", "redirects"):
        return f"The source could not be fetched: {exc}"
    return f"That URL cannot be used: {exc}"


class FeedService:
    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        settings: ServiceSettings,
        *,
        send_now: SendNow | None = None,
        clock: Clock = utcnow,
        sources: SourceResolver | None = None,
    ) -> None:
        self.sources = sources or SourceResolver()
        self.store = store
        self.fetcher = fetcher
        self.settings = settings
        self.send_now = send_now
        self.clock = clock

    # -- sources -------------------------------------------------------------------

    async def preview(self, source: str) -> SourcePreview:
        """Fetch and parse ``source`` (a URL or a form such as ``x:jack``); store nothing."""
        try:
            ref = parse_source(source, self.sources.settings)
            ensure_usable(ref, self.sources.settings)
        except SourceFormError as exc:
            raise ServiceError(str(exc)) from None
        try:
            fetched = await fetch_source(self.fetcher, ref.url, sources=self.sources)
            parsed = await parse_off_loop(fetched)
        except FetchError as exc:
            raise ServiceError(_fetch_problem(exc)) from None
        except ParseError as exc:
            raise ServiceError(f"That is not a feed feedhook can read: {exc}") from None
        newest_entries = (
            sorted(
                parsed.entries,
                key=lambda e: e.published.timestamp() if e.published else float("-inf"),
                reverse=True,
            )[:1]
            or parsed.entries[:1]
        )
        newest = (
            build_items(parsed, newest_entries, link_counts(parsed.entries))[0]
            if newest_entries
            else None
        )
        return SourcePreview(
            url=fetched.source_url,
            feed=parsed.info,
            item_count=len(parsed.entries),
            newest=newest,
        )

    # -- subscriptions --------------------------------------------------------------

    async def check_room(self, guild_id: int) -> None:
        """Refuse before any webhook is made when the server is at its limit."""
        count = await self.store.guild_subscription_count(guild_id)
        if count >= self.settings.max_subscriptions_per_guild:
            raise ServiceError(
                f"This server already has {count} feed subscriptions, the most this bot allows. "
                "Remove one with `/feed remove` first."
            )

    async def subscribe(
        self,
        *,
        guild_id: int,
        channel_id: int,
        target: WebhookTarget,
        preview: SourcePreview,
        backfill: int = 0,
        options: Mapping[str, object] | None = None,
    ) -> int:
        await self.check_room(guild_id)
        sub_id = await self.store.create_subscription(
            source_url=preview.url,
            guild_id=guild_id,
            channel_id=channel_id,
            target=target,
            backfill=backfill,
            options=options or {"style": "embed", "batch": True},
            min_interval=self.settings.min_interval,
            now=self.clock(),
            meta=FeedMeta(
                preview.feed.title, preview.feed.link, preview.feed.icon, preview.feed.kind
            ),
        )
        if sub_id is None:
            raise ServiceError(
                f"<#{target.thread_id or channel_id}> already gets **{preview.feed.title}**. "
                "See `/feed list`."
            )
        log.info(
            "subscription added guild=%d channel=%d subscription=%d url=%s",
            guild_id,
            channel_id,
            sub_id,
            preview.url,
        )
        return sub_id

    async def already_subscribed(self, guild_id: int, channel_id: int, url: str) -> bool:
        return any(
            v.source_url == url and channel_id in (v.channel_id, v.thread_id)
            for v in await self.store.guild_subscriptions(guild_id)
        )

    async def subscriptions(
        self, guild_id: int, *, channel_id: int | None = None
    ) -> list[SubscriptionView]:
        views = await self.store.guild_subscriptions(guild_id, channel_id=channel_id)
        return await self._mark_stale(guild_id, views)

    async def _mark_stale(
        self, guild_id: int, views: list[SubscriptionView]
    ) -> list[SubscriptionView]:
        """``views`` with ``stale`` set (bot.staleness); only subscriptions that are
        otherwise ok can be stale: a failing source is reported as failing."""
        if not views:
            return views
        times = await self.store.guild_item_times(guild_id, per_source=WINDOW)
        now = self.clock()
        return [
            replace(
                v,
                stale=v.state == "ok"
                and not is_hook(v.source_url)
                and is_stale(times.get(v.id, []), now),
            )
            for v in views
        ]

    async def get(self, guild_id: int, subscription: str) -> SubscriptionView:
        """The subscription an admin picked (autocomplete sends its id as text)."""
        try:
            sub_id = int(subscription.strip().lstrip("#"))
        except ValueError:
            sub_id = -1
        view = await self.store.guild_subscription(guild_id, sub_id)
        if view is None:
            raise ServiceError(
                "No such subscription on this server. Pick one from the list as you type, "
                "or see `/feed list`."
            )
        return view

    async def remove(self, guild_id: int, subscription: str) -> SubscriptionView:
        view = await self.get(guild_id, subscription)
        await self.store.delete_subscription(guild_id, view.id)
        if is_hook(view.source_url):
            # its token must stop working: the hook goes with its last subscription
            await self.store.delete_orphan_hook(view.source_url)
        log.info("subscription removed guild=%d subscription=%d", guild_id, view.id)
        return view

    def hook_template(self, template: str | None) -> str:
        """The template a new hook will use (the default when none is given); refused
        with the reason while hooks are off or when it does not compile. Called before a
        channel webhook is made for the hook."""
        if not self.settings.public_url:
            raise ServiceError(
                "Inbound hooks are off: the bot's operator has not set `http.public_url` "
                "(the address senders reach feedhook at). Ask them to set it, then try again."
            )
        text = (template or "").strip() or DEFAULT_HOOK_TEMPLATE
        if len(text) > MAX_HOOK_TEMPLATE:
            raise ServiceError(
                f"That template is {len(text)} characters long; a hook's template may have "
                f"{MAX_HOOK_TEMPLATE} at most."
            )
        try:
            compile_hook_template(text)
        except TemplateError as exc:
            raise ServiceError(f"That template does not work: {exc}.") from None
        return text

    async def create_hook(
        self,
        *,
        guild_id: int,
        channel_id: int,
        target: WebhookTarget,
        template: str | None,
        forum: bool = False,
    ) -> HookCreated:
        """An inbound webhook posting to ``target``: a fresh token (stored hashed) and the
        endpoint with it, to show once."""
        text = self.hook_template(template)
        await self.check_room(guild_id)
        token = new_hook_token()
        now = self.clock()
        url = await self.store.create_hook(
            token_hash=hash_token(token), template=text, origin="discord", now=now
        )
        sub_id = await self.store.create_subscription(
            source_url=url,
            guild_id=guild_id,
            channel_id=channel_id,
            target=target,
            backfill=0,
            # one message per request; nothing else of a feed's settings applies
            options={"batch": False, "forum": True} if forum else {"batch": False},
            min_interval=self.settings.min_interval,
            now=now,
        )
        if sub_id is None:  # a new source cannot have subscriptions; never leave a live token
            await self.store.delete_orphan_hook(url)
            raise ServiceError("Could not make the hook; try again.")
        log.info(
            "hook added guild=%d channel=%d subscription=%d source=%s",
            guild_id,
            channel_id,
            sub_id,
            url,
        )
        return HookCreated(
            subscription_id=sub_id,
            source_url=url,
            endpoint=f"{self.settings.public_url}/hooks/{token}",
            template=text,
        )

    async def set_paused(
        self, guild_id: int, subscription: str, *, paused: bool
    ) -> SubscriptionView:
        view = await self.get(guild_id, subscription)
        if not view.enabled:
            raise ServiceError(
                f"**{view.label}** is disabled: {view.disabled_reason}. "
                "Remove it and add it again to start over."
            )
        await self.store.set_paused(guild_id, view.id, paused=paused, now=self.clock())
        return view

    async def send_test(self, guild_id: int, subscription: str) -> FeedTestResult:
        """Post the subscription's newest item now, with its settings: outside the queue in
        a process that delivers, else through the delivery processes (waiting a little for
        them). Right after ``/feed add`` nothing is stored yet: the source is read now."""
        view = await self.get(guild_id, subscription)
        found = await self.store.newest_item(view.id)
        if found is None and is_hook(view.source_url):
            raise ServiceError(
                f"**{view.label}** has had no request yet: `/feed test` posts the newest one "
                "again once a service has sent it one."
            )
        if self.send_now is None:
            if found is None:
                raise ServiceError(
                    f"**{view.label}** has no items yet; feedhook reads it within a few "
                    "minutes of adding it. Try again shortly."
                )
            # No delivery here (`--role` without it): the delivery processes post it.
            return await self._queue_test(view)
        if found is None:
            fresh = await self.preview(view.source_url)
            if fresh.newest is None:
                raise ServiceError(f"**{view.label}** has no items to post yet.")
            target = await self.store.subscription_target(view.id)
            if target is None:
                raise ServiceError("That subscription was just removed.")
            item, feed = fresh.newest, fresh.feed
        else:
            item, feed, target, _options = found
        body = render_message(item, feed, shape_of(view.options))
        # A test shows the mentions but pings nobody: nothing new happened.
        body["allowed_mentions"] = {"parse": []}
        try:
            await self.send_now(target, body)
        except SendError as exc:
            raise ServiceError(f"The test post failed: {exc}") from None
        return FeedTestResult(view, sent=True)

    async def delivery_log(
        self, guild_id: int, subscription: str, *, limit: int = 10
    ) -> tuple[SubscriptionView, list[LogEntry]]:
        """``/feed log``: the subscription's latest delivery attempts, newest first."""
        view = await self.get(guild_id, subscription)
        return view, await self.store.delivery_log(view.id, limit=limit)

    # -- message settings (/feed format, filter, mention, options) -------------------

    async def _save(self, view: SubscriptionView, changes: Mapping[str, object | None]) -> Shape:
        """Check the subscription's settings with ``changes`` (None removes a key) and
        store them; a bad setting raises ServiceError and nothing is saved."""
        options = dict(view.options)
        for key, value in changes.items():
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        if "embed" in changes:
            options.pop("style", None)  # embed replaces the older style key
        try:
            shape = parse_settings(options)
        except SettingError as exc:
            raise ServiceError(f"Nothing was saved: {_setting_problem(exc)}") from None
        stored = shape.to_options()
        if not await self.store.set_options(view.guild_id or 0, view.id, stored):
            raise ServiceError("That subscription was just removed.")
        log.info("subscription settings changed subscription=%d keys=%s", view.id, sorted(changes))
        return shape

    async def _result(self, view: SubscriptionView, shape: Shape) -> SettingsResult:
        found = await self.store.recent_items(view.id)
        items, feed = found if found else ([], None)

        def check() -> list[Item]:
            return [i for i in items if shape.filter.passes(i)]

        # as in delivery: a filter with regexes runs off the event loop
        passing = await asyncio.to_thread(check) if shape.filter.has_regex else check()
        preview = render_message(passing[0], feed, shape) if passing and feed is not None else None
        return SettingsResult(
            replace(view, options=shape.to_options()), shape, preview, len(passing), len(items)
        )

    async def format_settings(
        self, guild_id: int, subscription: str
    ) -> tuple[SubscriptionView, dict[str, str]]:
        """The five texts ``/feed format`` shows: content, embed title and description,
        username, avatar URL (empty when default)."""
        view = await self.get(guild_id, subscription)
        _not_a_hook(view)
        options = view.options
        embed = options.get("embed")
        embed_texts = embed if isinstance(embed, Mapping) else {}
        values = {
            "content": options.get("content"),
            "title": embed_texts.get("title"),
            "description": embed_texts.get("description"),
            "username": options.get("username"),
            "avatar_url": options.get("avatar_url"),
        }
        return view, {k: v if isinstance(v, str) else "" for k, v in values.items()}

    async def set_format(
        self, guild_id: int, subscription: str, texts: Mapping[str, str]
    ) -> SettingsResult:
        """``/feed format``'s modal: ``texts`` keyed content, title, description, username,
        avatar_url; an empty text means the default."""
        view = await self.get(guild_id, subscription)
        _not_a_hook(view)
        embed = view.options.get("embed")
        old_texts = dict(embed) if isinstance(embed, Mapping) else {}
        embed_texts = dict(old_texts)
        for key in ("title", "description"):
            text = texts.get(key, "").strip()
            if text:
                embed_texts[key] = text
            else:
                embed_texts.pop(key, None)
        changes: dict[str, object | None] = {
            "content": texts.get("content", "").strip() or None,
            "username": texts.get("username", "").strip() or None,
            "avatar_url": texts.get("avatar_url", "").strip() or None,
        }
        if embed_texts != old_texts:
            # Typing an embed part asks for the embed (a text-style subscription gets it
            # back); otherwise embeds stay as they are, on or off.
            changes["embed"] = embed_texts or None
        shape = await self._save(view, changes)
        return await self._result(view, shape)

    async def reset_format(self, guild_id: int, subscription: str) -> SettingsResult:
        view = await self.get(guild_id, subscription)
        _not_a_hook(view)
        shape = await self._save(view, dict.fromkeys((*FORMAT_KEYS, "style")))
        return await self._result(view, shape)

    async def set_filter(
        self, guild_id: int, subscription: str, *, include: str | None, exclude: str | None
    ) -> SettingsResult:
        """``/feed filter``: each side replaced by the typed terms, ``-`` clears it, None
        leaves it as it is."""
        view = await self.get(guild_id, subscription)
        changes: dict[str, object | None] = {}
        for key, typed in (("include", include), ("exclude", exclude)):
            if typed is not None:
                changes[key] = None if typed.strip() == CLEAR else typed
        shape = await self._save(view, changes)
        return await self._result(view, shape)

    async def set_mention(
        self, guild_id: int, subscription: str, *, role_id: int | None, when: str | None
    ) -> SettingsResult:
        """``/feed mention``: the role replaces the subscription's roles (None: stop
        mentioning); ``when`` limits it to matching items (``-`` clears, None keeps)."""
        view = await self.get(guild_id, subscription)
        changes: dict[str, object | None] = {
            "mention_roles": [str(role_id)] if role_id is not None else None
        }
        if role_id is None:
            changes["mention_when"] = None
        elif when is not None:
            changes["mention_when"] = None if when.strip() == CLEAR else when
        shape = await self._save(view, changes)
        return await self._result(view, shape)

    async def set_options(
        self,
        guild_id: int,
        subscription: str,
        *,
        embed: bool | None = None,
        follow_edits: bool | None = None,
        thread_title: str | None = None,
        forum_tags: Sequence[int] | None = None,
    ) -> SettingsResult:
        """``/feed options``; each option given replaces its setting (a thread title of
        ``-`` goes back to the default, no tags clears them)."""
        view = await self.get(guild_id, subscription)
        if is_hook(view.source_url) and (embed is not None or follow_edits is not None):
            raise ServiceError(
                f"**{view.label}** is an inbound hook: its messages are its template's text, "
                "never edited, so `embed` and `follow_edits` do not apply to it."
            )
        changes: dict[str, object | None] = {}
        if embed is not None:
            embed_now = view.options.get("embed")
            if embed:
                changes["embed"] = embed_now if isinstance(embed_now, Mapping) else None
            else:
                changes["embed"] = False
        if follow_edits is not None:
            changes["follow_edits"] = follow_edits or None
        if thread_title is not None:
            changes["thread_title"] = None if thread_title.strip() == CLEAR else thread_title
        if forum_tags is not None:
            changes["forum_tags"] = [str(t) for t in forum_tags] or None
        if not changes:
            return await self._result(view, shape_of(view.options))
        shape = await self._save(view, changes)
        return await self._result(view, shape)

    async def _queue_test(self, view: SubscriptionView) -> FeedTestResult:
        outbox_id = await self.store.queue_test(view.id, now=self.clock())
        if outbox_id is None:
            raise ServiceError(f"**{view.label}** has no items yet. Try again shortly.")
        # A delivery process picks it up within a second or two; the command was
        # deferred, so waiting a little is fine.
        for _ in range(int(TEST_QUEUE_WAIT / 0.25)):
            state = await self.store.delivery_state(outbox_id)
            if state == "sent":
                return FeedTestResult(view, sent=True)
            if state == "failed":
                raise ServiceError(
                    f"The test post of **{view.label}** failed; `/feed log` shows why."
                )
            if state == "filtered":
                raise ServiceError(
                    f"The newest item of **{view.label}** is left out by its filters, so "
                    "nothing was posted; `/feed filter` shows and changes them."
                )
            await asyncio.sleep(0.25)
        return FeedTestResult(view, sent=False)

    async def autocomplete(self, guild_id: int, typed: str) -> list[tuple[str, str]]:
        """(label, value) pairs of this server's subscriptions matching ``typed``."""
        needle = typed.strip().lower()
        choices = []
        for view in await self.store.guild_subscriptions(guild_id):
            label = f"#{view.id} {view.label}"
            if needle and needle not in label.lower() and needle not in view.source_url.lower():
                continue
            choices.append((label[:100], str(view.id)))
        return choices[:25]

    async def status(self, guild_id: int) -> GuildStatus:
        views = await self.subscriptions(guild_id)
        stale = tuple(v for v in views if v.stale)
        deliveries = [v.last_delivery_at for v in views if v.last_delivery_at]
        push = await self.store.guild_push_states(guild_id)
        now = self.clock()
        pushed = {i for i, p in push.items() if p.subscribed_until and p.subscribed_until > now}
        problems = tuple(
            (v, push[v.id].last_error or "")
            for v in views
            if v.id in push and v.id not in pushed and push[v.id].last_error and v.state == "ok"
        )
        return GuildStatus(
            offer_hub=len(push),
            pushed=len(pushed),
            push_problems=problems if self.settings.public_url else (),
            push_on=bool(self.settings.public_url),
            total=len(views),
            ok=sum(v.state == "ok" for v in views),
            paused=sum(v.state == "paused" for v in views),
            failing=tuple(v for v in views if v.state == "failing"),
            disabled=tuple(v for v in views if v.state == "disabled"),
            stale=stale,
            last_delivery_at=max(deliveries, default=None),
            filtered=sum(v.filtered for v in views),
        )

    # -- lifecycle events -----------------------------------------------------------

    async def channel_deleted(self, channel_id: int) -> list[int]:
        return await self.store.disable_where(
            reason="the channel was deleted", channel_id=channel_id, now=self.clock()
        )

    async def guild_left(self, guild_id: int) -> list[int]:
        return await self.store.disable_where(
            reason=BOT_REMOVED, guild_id=guild_id, now=self.clock()
        )

    async def webhooks_changed(self, channel_id: int, existing: set[int]) -> list[int]:
        """After a WEBHOOKS_UPDATE: disable subscriptions whose webhook is gone."""
        gone: list[int] = []
        for webhook_id in await self.store.channel_webhook_ids(channel_id):
            if webhook_id not in existing:
                gone += await self.store.disable_webhook(
                    webhook_id,
                    reason="its webhook was deleted in the channel settings; "
                    "remove the subscription and add it again",
                    now=self.clock(),
                )
        return gone
