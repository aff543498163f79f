"""What a subscription's settings make of an item: its message, whether it is posted at
all, whom it pings. Pure: no I/O.

A subscription's ``options`` (a JSON object in storage; a ``[[feeds]]`` entry's keys; the
``/feed format``, ``filter``, ``mention`` and ``options`` commands) are read by
:func:`parse_settings` into a :class:`Shape`, which refuses anything that could not be
rendered (an unknown placeholder, a bad regex) with one sentence naming the key.
:func:`render_message` and :func:`render_messages` then build webhook bodies from the
templates on top of :mod:`bot.render`'s default look, which an unset template leaves
exactly as it was; whatever a template produces is cut to Discord's limits, and a
rendering that comes out empty is replaced by the default look (never a 50006).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bot.filters import FilterError, ItemFilter, Term, matches_any, parse_terms
from bot.models import FeedInfo, Item
from bot.render import (
    AUTHOR_MAX,
    BATCH_DESCRIPTION_PREVIEW,
    CONTENT_MAX,
    DESCRIPTION_MAX,
    DESCRIPTION_PREVIEW,
    EMBED_COLOUR,
    EMBED_TOTAL_MAX,
    EMBEDS_MAX,
    FOOTER_MAX,
    FORUM_TITLE_MAX,
    TITLE_MAX,
    UNTITLED,
    Message,
    embed_length,
    fit_embed,
    render_batch,
    render_embed,
    render_item,
    render_social_embeds,
    safe_url,
    social_text,
    text_line,
    truncate,
    truncate_plain,
    utf16_len,
    visible,
    webhook_username,
)
from bot.templates import Template, TemplateError, compile_template, item_values

EMBED_KEYS = (
    "title",
    "description",
    "url",
    "color",
    "author",
    "author_icon",
    "author_url",
    "footer",
    "footer_icon",
    "image",
    "thumbnail",
    "timestamp",
)
# Every key a subscription's settings may hold; "style" and "batch" predate this module.
SETTING_KEYS = (
    "style",
    "batch",
    "forum",
    "content",
    "embed",
    "username",
    "avatar_url",
    "include",
    "exclude",
    "mention_roles",
    "mention_when",
    "thread_title",
    "forum_tags",
    "follow_edits",
)
# What /feed format sets (and its reset removes).
FORMAT_KEYS = ("content", "embed", "username", "avatar_url")
MAX_MENTION_ROLES = 10  # more pings than any channel wants; keeps the content's room
MAX_FORUM_TAGS = 5  # Discord's limit on a forum post's applied tags
DEFAULT_THREAD_TITLE = "{title}"
_SNOWFLAKE = re.compile(r"[0-9]{1,20}")
_DISCORD_TIMESTAMP = re.compile(r"<t:(-?[0-9]{1,12})(?::[tTdDfFR])?>")
_HEX_COLOUR = re.compile(r"(?:#|0x)?([0-9a-fA-F]{6})")


class SettingError(ValueError):
    """A setting that cannot be used; ``str(e)`` is one sentence naming the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Shape:
    """A subscription's message settings, checked. The defaults are today's look."""

    embed: bool = True
    batch: bool = True
    forum: bool = False
    content: Template | None = None
    # embed key -> template; a key left out keeps the default embed's value
    embed_templates: Mapping[str, Template] = field(default_factory=dict)
    username: Template | None = None
    avatar_url: Template | None = None
    filter: ItemFilter = field(default_factory=ItemFilter)
    mention_roles: tuple[int, ...] = ()
    mention_when: tuple[Term, ...] = ()
    thread_title: Template | None = None
    forum_tags: tuple[int, ...] = ()
    follow_edits: bool = False

    @property
    def style(self) -> str:
        return "embed" if self.embed else "text"

    @property
    def custom_look(self) -> bool:
        """Whether any template changes what the default look would post."""
        return bool(self.content or self.embed_templates or self.username or self.avatar_url)

    def mentions(self, item: Item) -> tuple[int, ...]:
        """The roles this item pings: none unless it matches ``mention_when`` (if set)."""
        if not self.mention_roles:
            return ()
        if self.mention_when and not matches_any(self.mention_when, item):
            return ()
        return self.mention_roles

    def stands_alone(self, item: Item) -> bool:
        """A pinging item, or one whose message is followed for edits, is never batched:
        a ping belongs to its item, and an edit rewrites one item's message."""
        return self.follow_edits or bool(self.mentions(item))

    def to_options(self) -> dict[str, object]:
        """The JSON object stored in ``subscriptions.options``."""
        out: dict[str, object] = {}
        # "style" as older versions read it, unless embed templates say more
        if self.embed_templates and self.embed:
            out["embed"] = {k: t.source for k, t in self.embed_templates.items()}
        else:
            out["style"] = self.style
        out["batch"] = self.batch
        if self.forum:
            out["forum"] = True
        if self.content is not None:
            out["content"] = self.content.source
        if self.username is not None:
            out["username"] = self.username.source
        if self.avatar_url is not None:
            out["avatar_url"] = self.avatar_url.source
        if self.filter.include:
            out["include"] = [t.text for t in self.filter.include]
        if self.filter.exclude:
            out["exclude"] = [t.text for t in self.filter.exclude]
        if self.mention_roles:
            # strings: a snowflake is past what JSON readers in other languages keep exact
            out["mention_roles"] = [str(r) for r in self.mention_roles]
        if self.mention_when:
            out["mention_when"] = [t.text for t in self.mention_when]
        if self.thread_title is not None:
            out["thread_title"] = self.thread_title.source
        if self.forum_tags:
            out["forum_tags"] = [str(t) for t in self.forum_tags]
        if self.follow_edits:
            out["follow_edits"] = True
        return out

    def describe(self) -> list[str]:
        """Short labels of what differs from the default (for ``/feed list``)."""
        labels = []
        if self.custom_look or not self.embed:
            labels.append("format")
        if not self.filter.empty:
            labels.append("filter")
        if self.mention_roles:
            labels.append(f"mentions {mention_prefix(self.mention_roles)}")
        if self.follow_edits:
            labels.append("edits")
        if self.forum_tags:
            labels.append("tags")
        return labels


DEFAULT_SHAPE = Shape()


# -- reading settings ----------------------------------------------------------------


def _template(key: str, value: object) -> Template | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingError(key, "expected a template (a string)")
    if not value.strip():
        return None  # an empty template means "the default"
    try:
        return compile_template(value)
    except TemplateError as exc:
        raise SettingError(key, str(exc)) from None


def _bool(key: str, value: object, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SettingError(key, "expected true or false")
    return value


def _terms(key: str, value: object) -> tuple[Term, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        text: str | list[str] = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        text = list(value)
    else:
        raise SettingError(key, "expected a list of terms or one comma-separated string")
    try:
        return parse_terms(text)
    except FilterError as exc:
        raise SettingError(key, str(exc)) from None


def _ids(key: str, value: object, *, limit: int, what: str) -> tuple[int, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list | tuple) else [value]
    out: list[int] = []
    for one in values:
        if isinstance(one, bool):
            raise SettingError(key, f"expected {what} ids (numbers), got {one!r}")
        if isinstance(one, int) and one > 0:
            out.append(one)
        elif isinstance(one, str) and _SNOWFLAKE.fullmatch(one.strip()):
            out.append(int(one.strip()))
        else:
            raise SettingError(key, f"expected {what} ids (numbers), got {one!r}")
    if len(out) > limit:
        raise SettingError(key, f"at most {limit} {what}s")
    return tuple(dict.fromkeys(out))


def _embed(value: object) -> tuple[bool, dict[str, Template]]:
    if value is None or value is True:
        return True, {}
    if value is False:
        return False, {}
    if not isinstance(value, Mapping):
        raise SettingError("embed", "expected false or a table of embed templates")
    templates: dict[str, Template] = {}
    for key, raw in value.items():
        if key not in EMBED_KEYS:
            known = ", ".join(EMBED_KEYS)
            raise SettingError(f"embed.{key}", f"unknown embed key; the keys are {known}")
        if key == "color" and isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)  # TOML's color = 0xff0000
        template = _template(f"embed.{key}", raw)
        if template is not None:
            templates[str(key)] = template
    return True, templates


def parse_settings(raw: Mapping[str, object], *, strict: bool = True) -> Shape:
    """A subscription's settings, checked; :class:`SettingError` names the first bad key.

    ``strict`` (config files, commands) also refuses unknown keys and ``style`` set
    together with ``embed``; stored options are read without it.
    """
    if strict:
        for key in raw:
            if key not in SETTING_KEYS:
                raise SettingError(key, "unknown setting")
        if "style" in raw and "embed" in raw:
            raise SettingError(
                "style", 'set either style or embed, not both (style = "text" is embed = false)'
            )
    style = raw.get("style")
    if style is not None and style not in ("embed", "text"):
        raise SettingError("style", 'expected "embed" or "text"')
    embed, embed_templates = _embed(raw.get("embed"))
    if style == "text":
        embed = False
    return Shape(
        embed=embed,
        batch=_bool("batch", raw.get("batch"), True),
        forum=_bool("forum", raw.get("forum"), False),
        content=_template("content", raw.get("content")),
        embed_templates=embed_templates,
        username=_template("username", raw.get("username")),
        avatar_url=_template("avatar_url", raw.get("avatar_url")),
        filter=ItemFilter(
            include=_terms("include", raw.get("include")),
            exclude=_terms("exclude", raw.get("exclude")),
        ),
        mention_roles=_ids(
            "mention_roles", raw.get("mention_roles"), limit=MAX_MENTION_ROLES, what="role"
        ),
        mention_when=_terms("mention_when", raw.get("mention_when")),
        thread_title=_template("thread_title", raw.get("thread_title")),
        forum_tags=_ids("forum_tags", raw.get("forum_tags"), limit=MAX_FORUM_TAGS, what="tag"),
        follow_edits=_bool("follow_edits", raw.get("follow_edits"), False),
    )


@functools.lru_cache(maxsize=1024)
def _cached_shape(options_json: str) -> Shape:
    return parse_settings(json.loads(options_json), strict=False)


def shape_of(options: Mapping[str, object]) -> Shape:
    """The shape of stored options. A stored setting that no longer parses (written by
    another version) falls back to the default look, never to a failed delivery."""
    try:
        return _cached_shape(json.dumps(dict(options), sort_keys=True, default=str))
    except (SettingError, TypeError, ValueError):
        try:
            kept = {k: v for k, v in options.items() if k in ("style", "batch", "forum")}
            return parse_settings(kept, strict=False)
        except SettingError:
            return DEFAULT_SHAPE


# -- rendering -----------------------------------------------------------------------


def _values(item: Item, feed: FeedInfo, preview: int) -> dict[str, Any]:
    values: dict[str, Any] = item_values(item, feed)
    summary = values.get("summary")
    if isinstance(summary, str):
        # As today: an embed shows a preview of the text, not the whole article.
        values["summary"] = truncate(summary, preview)
    return values


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _colour(text: str) -> int | None:
    text = text.strip()
    if text.isdigit():
        number = int(text)
        return number if number <= 0xFFFFFF else None
    match = _HEX_COLOUR.fullmatch(text)
    return int(match.group(1), 16) if match else None


def _iso_timestamp(text: str) -> str | None:
    text = text.strip()
    match = _DISCORD_TIMESTAMP.fullmatch(text)
    raw: str | None = match.group(1) if match else (text if text.lstrip("-").isdigit() else None)
    try:
        if raw is not None:
            when = datetime.fromtimestamp(int(raw), UTC)
        else:
            when = datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None


def _apply_embed_templates(
    embed: dict[str, Any], templates: Mapping[str, Template], values: Mapping[str, Any]
) -> None:
    """Put what each template renders in ``embed`` (in place), within Discord's rules:
    text cut to its limit, URLs only when http(s), an empty result leaves the part out."""
    for key, template in templates.items():
        text = template.render(values)
        if key == "title":
            title = _one_line(text)
            if visible(title):
                embed["title"] = truncate(title, TITLE_MAX)
            else:
                embed.pop("title", None)
        elif key == "description":
            if visible(text):
                embed["description"] = truncate(text.strip(), DESCRIPTION_MAX)
            else:
                embed.pop("description", None)
        elif key == "url":
            if url := safe_url(text):
                embed["url"] = url
            else:
                embed.pop("url", None)
        elif key == "color":
            colour = _colour(text)
            embed["color"] = EMBED_COLOUR if colour is None else colour
        elif key == "author":
            name = _one_line(text)
            if visible(name):
                author = dict(embed.get("author") or {})
                author["name"] = truncate_plain(name, AUTHOR_MAX)
                embed["author"] = author
            else:
                embed.pop("author", None)
        elif key == "footer":
            footer_text = _one_line(text)
            if visible(footer_text):
                footer = dict(embed.get("footer") or {})
                footer["text"] = truncate_plain(footer_text, FOOTER_MAX)
                embed["footer"] = footer
            else:
                embed.pop("footer", None)
        elif key == "timestamp":
            if stamp := _iso_timestamp(text):
                embed["timestamp"] = stamp
            else:
                embed.pop("timestamp", None)
        elif key in ("image", "thumbnail"):
            if url := safe_url(text):
                embed[key] = {"url": url}
            else:
                embed.pop(key, None)
    # The URL parts of author and footer go with their text, applied after it.
    for key, part, holder in (
        ("author_icon", "icon_url", "author"),
        ("author_url", "url", "author"),
        ("footer_icon", "icon_url", "footer"),
    ):
        if key not in templates or holder not in embed:
            continue
        if url := safe_url(templates[key].render(values)):
            embed[holder][part] = url
        else:
            embed[holder].pop(part, None)
    fit_embed(embed)


_SHOWN_PARTS = ("title", "description", "author", "footer", "image", "thumbnail", "fields")


def _shows_something(embed: Mapping[str, Any]) -> bool:
    return any(embed.get(part) for part in _SHOWN_PARTS)


def _embeds(item: Item, feed: FeedInfo, shape: Shape, preview: int) -> list[dict[str, Any]]:
    if item.social is not None:
        embeds = render_social_embeds(item, feed, preview=preview)
    else:
        embeds = [render_embed(item, feed, preview=preview)]
    if shape.embed_templates:
        _apply_embed_templates(embeds[0], shape.embed_templates, _values(item, feed, preview))
        if not _shows_something(embeds[0]):
            return []
    return embeds


def _content(item: Item, feed: FeedInfo, shape: Shape, preview: int) -> str:
    if shape.content is not None:
        text = shape.content.render(_values(item, feed, preview)).strip()
        return text if visible(text) else ""
    if shape.embed:
        return ""
    # embed = false without a content template: today's text style.
    return social_text(item) if item.social is not None else text_line(item)


def _identity(
    item: Item, feed: FeedInfo, shape: Shape, default: Mapping[str, Any]
) -> dict[str, Any]:
    envelope = {k: v for k, v in default.items() if k in ("username", "avatar_url")}
    if shape.username is not None or shape.avatar_url is not None:
        values = _values(item, feed, DESCRIPTION_PREVIEW)
        if shape.username is not None:
            name = _one_line(shape.username.render(values))
            if visible(name):
                envelope["username"] = webhook_username(name)
        if shape.avatar_url is not None and (url := safe_url(shape.avatar_url.render(values))):
            envelope["avatar_url"] = url
    return envelope


def mention_prefix(roles: Sequence[int]) -> str:
    return " ".join(f"<@&{role}>" for role in roles)


def _allowed_mentions(roles: Sequence[int]) -> dict[str, Any]:
    # Only the listed roles: @everyone, @here, users and other roles written inside an
    # item still ping nobody.
    return {"parse": [], "roles": [str(r) for r in roles]} if roles else {"parse": []}


def _with_mentions(content: str, roles: Sequence[int]) -> str:
    if not roles:
        return truncate(content, CONTENT_MAX) if content else ""
    prefix = mention_prefix(roles)
    room = CONTENT_MAX - utf16_len(prefix) - 1
    return f"{prefix}\n{truncate(content, room)}" if content else prefix


_DEFAULT_THREAD_TITLE = compile_template(DEFAULT_THREAD_TITLE)


def thread_name(item: Item, feed: FeedInfo, shape: Shape) -> str:
    """A forum post's title: ``thread_title`` (default ``{title}``), else the feed's title."""
    template = shape.thread_title or _DEFAULT_THREAD_TITLE
    for candidate in (template.render(_values(item, feed, DESCRIPTION_PREVIEW)), feed.title):
        name = _one_line(candidate or "")
        if visible(name):
            return truncate_plain(name, FORUM_TITLE_MAX)
    return UNTITLED


# FeedInfo.kind of an inbound hook's source: its items are messages already rendered.
HOOK_KIND = "hook"


def _hook_message(item: Item, feed: FeedInfo, shape: Shape) -> dict[str, Any]:
    """An inbound hook's post: its content as the hook's template rendered it when the
    request came in, with the subscription's mentions and webhook identity."""
    roles = shape.mentions(item)
    body = _identity(item, feed, shape, {})
    body["content"] = _with_mentions(item.summary.strip() or item.title, roles)
    body["allowed_mentions"] = _allowed_mentions(roles)
    if shape.forum:
        # the post's title: its thread_title, else the message's first line
        first = _one_line(next(iter(item.summary.strip().splitlines()), ""))
        body["thread_name"] = (
            thread_name(item, feed, shape)
            if shape.thread_title is not None or not visible(first)
            else truncate_plain(first, FORUM_TITLE_MAX)
        )
    return body


def render_message(
    item: Item, feed: FeedInfo, shape: Shape = DEFAULT_SHAPE, *, preview: int = DESCRIPTION_PREVIEW
) -> dict[str, Any]:
    """The webhook body of one item posted alone, with the subscription's settings."""
    if feed.kind == HOOK_KIND:
        return _hook_message(item, feed, shape)
    default = render_item(item, feed, style=shape.style)
    roles = shape.mentions(item)
    if not shape.custom_look and not roles:
        body = default
    else:
        body = _identity(item, feed, shape, default)
        content = _content(item, feed, shape, preview)
        embeds = _embeds(item, feed, shape, preview) if shape.embed else []
        if embeds:
            body["embeds"] = embeds
        if not embeds and not content:
            # Nothing to show (a template of empty fields): the default look, never a 50006.
            body = {**body, **{k: v for k, v in default.items() if k in ("content", "embeds")}}
            content = default.get("content", "")
        body["content"] = _with_mentions(content, roles)
        if not body["content"]:
            del body["content"]
        body["allowed_mentions"] = _allowed_mentions(roles)
    if shape.forum:
        body["thread_name"] = thread_name(item, feed, shape)
        if shape.forum_tags:
            body["applied_tags"] = [str(t) for t in shape.forum_tags]
    return body


def render_messages(
    items: Sequence[Item], feed: FeedInfo, shape: Shape = DEFAULT_SHAPE
) -> list[Message]:
    """Pack ``items`` (oldest first, none of which stands alone) into as few messages
    as Discord allows. The default look is :func:`bot.render.render_batch`'s; with
    templates each item's embed and content are rendered with them and packed the same
    way: up to 10 embeds and 6000 embed units, 2000 units of content, one identity
    (webhook name and avatar) per message, no two embeds with the same ``url``."""
    if feed.kind == HOOK_KIND:
        # one message per request: each is an event of its own
        return [Message(_hook_message(item, feed, shape), 1) for item in items]
    if not shape.custom_look:
        return render_batch(items, feed, style=shape.style)
    preview = DESCRIPTION_PREVIEW if len(items) == 1 else BATCH_DESCRIPTION_PREVIEW
    quiet = replace(shape, mention_roles=())  # batched items never ping (they stand alone)
    messages: list[Message] = []
    envelope: dict[str, Any] | None = None
    contents: list[str] = []
    embeds: list[dict[str, Any]] = []
    urls: set[str] = set()
    total = count = content_total = 0

    def flush() -> None:
        nonlocal contents, embeds, urls, total, count, content_total
        if count:
            body: dict[str, Any] = dict(envelope or {})
            if embeds:
                body["embeds"] = embeds
            if contents:
                body["content"] = "\n\n".join(contents)
            body["allowed_mentions"] = {"parse": []}
            messages.append(Message(body, count))
        contents, embeds, urls, total, count, content_total = [], [], set(), 0, 0, 0

    for item in items:
        single = render_message(item, feed, quiet, preview=preview)
        identity: dict[str, Any] = {k: single[k] for k in ("username", "avatar_url") if k in single}
        group = list(single.get("embeds") or [])
        content = single.get("content") or ""
        size = sum(embed_length(e) for e in group)
        content_size = utf16_len(content) + (2 if contents else 0)
        url = group[0].get("url") if group else None
        if count and (
            identity != envelope
            or len(embeds) + len(group) > EMBEDS_MAX
            or total + size > EMBED_TOTAL_MAX
            or (url is not None and url in urls)
            or content_total + content_size > CONTENT_MAX
        ):
            flush()
        envelope = identity
        embeds += group
        if url is not None:
            urls.add(url)
        if content:
            contents.append(content)
            content_total += content_size
        total += size
        count += 1
    flush()
    return messages


def edit_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an edit of a posted message may change: its content and embeds (a webhook
    message keeps the name, avatar and thread it was posted with)."""
    out = {k: v for k, v in body.items() if k in ("content", "embeds", "allowed_mentions")}
    out.setdefault("content", "")
    out.setdefault("embeds", [])
    return out


__all__ = [
    "DEFAULT_SHAPE",
    "EMBED_KEYS",
    "SETTING_KEYS",
    "SettingError",
    "Shape",
    "edit_body",
    "mention_prefix",
    "parse_settings",
    "render_message",
    "render_messages",
    "shape_of",
    "thread_name",
]
