"""Helpers shared by the social-network parsers (``bluesky``, ``mastodon``). Pure: no I/O.

A social post becomes an :class:`~bot.models.Item` whose ``social`` field carries the
author's identity; the item is built while parsing (``ParsedEntry.item``), because the
JSON APIs give everything at once and there is no expensive HTML step to put off
(Mastodon's HTML is short: one post).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.models import FeedInfo, Item
from bot.sources.feed import EntryRef, ParsedEntry, ParsedFeed, ParseError

MAX_IMAGES: Final = 4
_TITLE_LEN: Final = 80
_MIN_YEAR: Final = 1990
_MAX_FUTURE: Final = timedelta(days=366)
# Plain post text goes into Discord markdown: these characters would format it.
_MARKDOWN_CHARS: Final = re.compile(r"([\\*_~|`\[\]<])")
_LINE_START: Final = re.compile(r"(?m)^([ \t]*)([#>])")


def load_json(body: bytes, *, what: str) -> Any:
    """The decoded JSON document, or a :class:`ParseError` naming what was expected."""
    if not body.strip():
        raise ParseError(f"not {what}: the response body is empty")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "it is not UTF-8 text"
        raise ParseError(f"not {what}: the response is not valid JSON ({reason})") from None


def text(value: Any) -> str:
    """A string field, or "" for anything else (null, numbers, objects)."""
    return value if isinstance(value, str) else ""


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_time(value: Any, now: datetime) -> datetime | None:
    """An ISO 8601 timestamp as aware UTC, or None when missing or absurd."""
    raw = text(value).strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.year < _MIN_YEAR or moment > now + _MAX_FUTURE:
        return None
    return moment


def escape_markdown(plain: str) -> str:
    """Plain text (a Bluesky post) shown literally in Discord markdown."""
    return _LINE_START.sub(r"\1\\\2", _MARKDOWN_CHARS.sub(r"\\\1", plain))


def title_from(plain: str, fallback: str) -> str:
    """A one-line title (forum thread names, logs): the start of the post's text."""
    line = " ".join(plain.split())
    if not line:
        return fallback
    if len(line) <= _TITLE_LEN:
        return line
    cut = line[:_TITLE_LEN].rsplit(" ", 1)[0] or line[:_TITLE_LEN]
    return cut.rstrip(" ,.;:-") + "…"


def shorten(plain: str, limit: int) -> str:
    """At most ``limit`` characters of ``plain``, cut at a word, with "…"."""
    if len(plain) <= limit:
        return plain
    cut = plain[:limit].rsplit(" ", 1)[0] or plain[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def quote_block(markdown: str) -> str:
    """``markdown`` as a Discord block quote ("> " on every line)."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in markdown.splitlines())


def build_feed(
    info: FeedInfo,
    items: Sequence[tuple[Item, bool]],
    *,
    base_url: str,
    author: str | None = None,
) -> ParsedFeed:
    """A :class:`ParsedFeed` of prebuilt items, in document order.

    ``items`` pairs each item with whether it is kept (False: filtered out by the
    subscription's flags). Every kept item gives a ref, duplicates included, as
    ``parse_feed`` does; the first of a duplicate key is the entry.
    """
    entries: list[ParsedEntry] = []
    refs: list[EntryRef] = []
    seen: set[str] = set()
    for item, kept in items:
        if not kept:
            continue
        refs.append((item.key, item.link_norm))
        if item.key in seen:
            continue
        seen.add(item.key)
        entries.append(
            ParsedEntry(
                key=item.key,
                link=item.link,
                link_norm=item.link_norm,
                published=item.published,
                raw=None,
                item=item,
            )
        )
    return ParsedFeed(
        info=info, entries=tuple(entries), base_url=base_url, author=author, raw_refs=tuple(refs)
    )
