"""Item -> Discord webhook request body, within Discord's limits. Pure: no I/O.

Limits (Discord API, execute webhook): content 2000; embed title 256,
description 4096, footer 2048, author name 256, 25 fields, 6000 characters
over all embeds; username 1-80 without "discord"/"clyde"; http(s) URLs only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.models import FeedInfo, Item

CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
# A long description drowns the channel; Discord allows 4096, we show a preview.
DESCRIPTION_PREVIEW = 700
FOOTER_MAX = 2048
AUTHOR_MAX = 256
USERNAME_MAX = 80
EMBED_TOTAL_MAX = 6000
EMBEDS_MAX = 10
BATCH_DESCRIPTION_PREVIEW = 300
URL_MAX = 2048
EMBED_COLOUR = 0x5865F2
ELLIPSIS = "…"

# Nothing in a feed may ping anyone: Discord parses no mention kind at all.
NO_MENTIONS: dict[str, list[str]] = {"parse": []}

_MD_LINK = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)")
_FORBIDDEN_NAME = re.compile(r"discord|clyde", re.IGNORECASE)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a word boundary, with an ellipsis.

    Never splits a surrogate pair (Python strings hold code points, so that is
    automatic), a backslash escape, or a markdown link ``[text](url)``.
    """
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = limit - len(ELLIPSIS)
    # Never end inside a markdown link: back up to where the link starts.
    for match in _MD_LINK.finditer(text, 0, min(len(text), cut + 2048)):
        if match.start() < cut < match.end():
            cut = match.start()
            break
        if match.start() >= cut:
            break
    head = text[:cut]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= cut * 0.6:
        head = head[:space]
    # A lone trailing backslash would escape our ellipsis.
    while head.endswith("\\"):
        head = head[:-1]
    return head.rstrip() + ELLIPSIS


def safe_url(url: str | None) -> str | None:
    """An http(s) URL Discord will accept, else None (Discord rejects the whole message)."""
    if not url or len(url) > URL_MAX:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def webhook_username(title: str) -> str:
    """The source title as a webhook name Discord accepts (1-80, no "discord"/"clyde")."""
    name = _FORBIDDEN_NAME.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], title)
    name = " ".join(name.split()) or "feedhook"
    return truncate(name, USERNAME_MAX)


def _embed_length(embed: dict[str, Any]) -> int:
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    total += len(embed.get("author", {}).get("name", ""))
    for item in embed.get("fields", []):
        total += len(item.get("name", "")) + len(item.get("value", ""))
    return total


def render_embed(
    item: Item, feed: FeedInfo, *, preview: int = DESCRIPTION_PREVIEW
) -> dict[str, Any]:
    embed: dict[str, Any] = {"type": "rich", "color": EMBED_COLOUR}
    embed["title"] = truncate(item.title or "(untitled)", TITLE_MAX)
    if link := safe_url(item.link):
        embed["url"] = link
    if item.summary:
        embed["description"] = truncate(item.summary, min(preview, DESCRIPTION_MAX))
    if item.author:
        embed["author"] = {"name": truncate(item.author, AUTHOR_MAX)}
    if image := safe_url(item.image):
        embed["image"] = {"url": image}
    if item.published is not None:
        embed["timestamp"] = item.published.isoformat()
    footer: dict[str, Any] = {"text": truncate(feed.title, FOOTER_MAX)}
    if icon := safe_url(feed.icon):
        footer["icon_url"] = icon
    embed["footer"] = footer
    overflow = _embed_length(embed) - EMBED_TOTAL_MAX
    if overflow > 0 and "description" in embed:
        embed["description"] = truncate(
            embed["description"], max(1, len(embed["description"]) - overflow)
        )
    return embed


def _envelope(feed: FeedInfo) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": webhook_username(feed.title),
        "allowed_mentions": NO_MENTIONS,
    }
    if avatar := safe_url(feed.icon):
        body["avatar_url"] = avatar
    return body


def text_line(item: Item) -> str:
    """The plain-text style: bold title, then the bare link so Discord unfurls it."""
    link = safe_url(item.link)
    title = truncate(item.title or "(untitled)", TITLE_MAX)
    return f"**{title}**\n{link}" if link else f"**{title}**"


def render_item(item: Item, feed: FeedInfo, *, style: str = "embed") -> dict[str, Any]:
    """The JSON body of one ``POST /webhooks/{id}/{token}`` for ``item``."""
    body = _envelope(feed)
    if style == "text":
        body["content"] = truncate(text_line(item), CONTENT_MAX)
    else:
        body["embeds"] = [render_embed(item, feed)]
    return body


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook request body and how many of the given items it carries."""

    body: dict[str, Any]
    count: int


def render_batch(items: Sequence[Item], feed: FeedInfo, *, style: str = "embed") -> list[Message]:
    """Pack ``items`` (oldest first) into as few messages as Discord allows:
    up to 10 embeds and 6000 embed characters, or 2000 characters of text."""
    messages: list[Message] = []
    if style == "text":
        lines: list[str] = []
        for item in items:
            line = truncate(text_line(item), CONTENT_MAX)
            if lines and len("\n\n".join([*lines, line])) > CONTENT_MAX:
                messages.append(
                    Message({**_envelope(feed), "content": "\n\n".join(lines)}, len(lines))
                )
                lines = []
            lines.append(line)
        if lines:
            messages.append(Message({**_envelope(feed), "content": "\n\n".join(lines)}, len(lines)))
        return messages
    # Shorter previews in a batch so ten embeds fit Discord's 6000-character total.
    preview = DESCRIPTION_PREVIEW if len(items) == 1 else BATCH_DESCRIPTION_PREVIEW
    embeds: list[dict[str, Any]] = []
    total = 0
    for item in items:
        embed = render_embed(item, feed, preview=preview)
        size = _embed_length(embed)
        if embeds and (len(embeds) == EMBEDS_MAX or total + size > EMBED_TOTAL_MAX):
            messages.append(Message({**_envelope(feed), "embeds": embeds}, len(embeds)))
            embeds, total = [], 0
        embeds.append(embed)
        total += size
    if embeds:
        messages.append(Message({**_envelope(feed), "embeds": embeds}, len(embeds)))
    return messages
