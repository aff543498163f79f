"""X (Twitter) accounts through Nitter or RSSHub bridges: RSS -> social posts.

A bridge serves an account's posts as RSS: Nitter at ``/{handle}/rss``,
RSSHub at ``/twitter/user/{handle}``. Whatever the bridge, an item is keyed
``x:<status id>`` and linked to ``https://x.com/<handle>/status/<id>``, so the
same post read through two bridges is one item, and no link or image points at
a bridge (they are often on a private network Discord cannot reach).

Shapes read (both real formats):

* Nitter: channel title ``Name / @handle``; item titles ``RT by @handle: text``
  (a repost; ``dc:creator`` is the original author) and ``R to @other: text``
  (a reply; RSSHub: ``Re @other: text``); links
  ``https://nitter.example/handle/status/123#m``; images
  ``https://nitter.example/pic/media%2FABC.jpg``.
* RSSHub: channel title ``Twitter @Name``; item titles ``RT @orig: text``;
  links ``https://x.com/handle/status/123``.
* A quote is a post whose description links another status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup

from bot.models import FeedInfo, Item, PostKind, SocialPost
from bot.sources.feed import (
    EntryRef,
    ParsedEntry,
    ParsedFeed,
    build_item,
    html_to_markdown,
    normalise_link,
    parse_feed,
    short_title,
)

__all__ = ["bridge_urls", "parse_bridge_feed", "status_id"]

MAX_IMAGES: Final = 4
_STATUS: Final = re.compile(r"^/([A-Za-z0-9_]{1,15})/status(?:es)?/(\d{1,25})(?:/|$)")
_NITTER_TITLE: Final = re.compile(r"^(?P<name>.*?)\s*/\s*@(?P<handle>[A-Za-z0-9_]{1,15})\s*$")
_RSSHUB_TITLE: Final = re.compile(r"^Twitter @(?P<name>.+?)\s*$")
_REPOST: Final = re.compile(r"^RT by @(?P<by>[A-Za-z0-9_]{1,15}):\s*")
_RSSHUB_REPOST: Final = re.compile(r"^RT (?P<who>@?[^:\n]{1,60}):\s*")
_REPLY: Final = re.compile(r"^(?:R to|Re) @(?P<to>[A-Za-z0-9_]{1,15}):\s*")


def bridge_urls(bridge: str, handle: str) -> dict[str, str]:
    """The account's feed on a bridge, by bridge kind (tried in this order)."""
    base = bridge.rstrip("/")
    return {"nitter": f"{base}/{handle}/rss", "rsshub": f"{base}/twitter/user/{handle}"}


def status_id(link: str | None) -> tuple[str, str] | None:
    """(handle, status id) of a status link on X or on any bridge."""
    if not link:
        return None
    try:
        path = urlsplit(link).path
    except ValueError:
        return None
    match = _STATUS.match(path)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True, slots=True)
class _Post:
    html: str  # the description with links moved off the bridge
    images: tuple[str, ...]  # as written (still on the bridge)
    links: tuple[str, ...]


def _unbridge_link(href: str, bridge_host: str) -> str:
    """A link into the bridge (a profile, a status, a search) -> the same page on x.com."""
    try:
        parts = urlsplit(href)
    except ValueError:
        return href
    if (parts.netloc or "").lower() != bridge_host:
        return href
    query = f"?{parts.query}" if parts.query else ""
    return f"https://x.com{parts.path}{query}"


def _read_post(description: str, bridge_host: str) -> _Post:
    soup = BeautifulSoup(description, "html.parser")
    images: list[str] = []
    links: list[str] = []
    for img in soup.find_all("img"):
        src = img.get("src")
        if isinstance(src, str) and src.strip():
            images.append(src.strip())
    for anchor in soup.find_all("a"):
        href = anchor.get("href")
        if not isinstance(href, str) or not href.strip():
            continue
        moved = _unbridge_link(href.strip(), bridge_host)
        links.append(moved)
        if moved != href.strip():
            anchor["href"] = moved
            shown = anchor.get_text()
            if shown.startswith(bridge_host):  # Nitter shows quote links as host/path#m
                anchor.string = "x.com" + shown[len(bridge_host) :].removesuffix("#m")
    return _Post(str(soup), tuple(images), tuple(links))


def _unbridge_media(url: str, bridge_host: str) -> str:
    """A bridge's image proxy URL -> the image on X's CDN (Discord cannot reach a LAN bridge)."""
    parts = urlsplit(url)
    if (parts.netloc or "").lower() != bridge_host or not parts.path.startswith("/pic/"):
        return url
    target = unquote(parts.path[len("/pic/") :])
    target = target.removeprefix("orig/")
    if target.startswith(("http://", "https://")):
        return "https://" + target.split("://", 1)[1]
    if target.startswith(("pbs.twimg.com/", "video.twimg.com/", "abs.twimg.com/")):
        return f"https://{target}"
    query = f"?{unquote(parts.query)}" if parts.query else ""
    return f"https://pbs.twimg.com/{target}{query}"


def _account(feed: ParsedFeed, handle: str) -> tuple[str, str]:
    """(display name, handle) of the account the feed is about."""
    title = feed.info.title
    if match := _NITTER_TITLE.match(title):
        return match.group("name") or match.group("handle"), match.group("handle")
    if match := _RSSHUB_TITLE.match(title):
        return match.group("name"), handle
    return title or handle, handle


def _text_of(raw: Any) -> str:
    value = dict.get(raw, "title")
    return value if isinstance(value, str) else ""


def _creator(raw: Any) -> str | None:
    author = dict.get(raw, "author")
    if isinstance(author, str) and author.strip().startswith("@"):
        return author.strip().lstrip("@")
    return None


def _classify(
    raw: Any, own: tuple[str, str] | None, links: list[str], owner: str, owner_name: str
) -> tuple[PostKind, str | None, str | None, str]:
    """(kind, context name, context handle, title without the bridge's prefix)."""
    title = _text_of(raw)
    # RSSHub names the original author of a repost in the item's <author>
    author = dict.get(raw, "author")
    other_name = (
        author.strip()
        if isinstance(author, str) and author.strip() and not author.strip().startswith("@")
        else None
    )
    if other_name == owner_name:
        other_name = None
    if match := _REPOST.match(title):
        original = _creator(raw) or (own[0] if own else None)
        return "repost", None, f"@{original}" if original else None, title[match.end() :]
    if match := _REPLY.match(title):
        return "reply", None, f"@{match.group('to')}", title[match.end() :]
    if match := _RSSHUB_REPOST.match(title):
        who = match.group("who").strip()
        if who.startswith("@"):
            return "repost", other_name, who, title[match.end() :]
        return "repost", who, None, title[match.end() :]
    creator = _creator(raw)
    if creator and creator.lower() != owner.lower():
        return "repost", None, f"@{creator}", title
    for link in links:
        quoted = status_id(link)
        if quoted and (own is None or quoted[1] != own[1]):
            return "quote", None, f"@{quoted[0]}", title
    return "post", None, None, title


def parse_bridge_feed(
    body: bytes, *, url: str, headers: Mapping[str, str], handle: str
) -> ParsedFeed:
    """Parse a bridge's RSS for the X account ``handle`` into social posts.

    Every entry's :class:`Item` is built here (bridges send ~20 short posts),
    so keys, links and ``Item.social`` never depend on which bridge answered.
    Raises :class:`ParseError` as :func:`parse_feed` does.
    """
    parsed = parse_feed(body, url=url, headers=headers)
    bridge_host = (urlsplit(url).netloc or "").lower()
    name, shown_handle = _account(parsed, handle)
    avatar = _unbridge_media(parsed.info.icon, bridge_host) if parsed.info.icon else None
    profile = f"https://x.com/{shown_handle}"
    entries: list[ParsedEntry] = []
    refs: list[EntryRef] = []
    seen: set[str] = set()
    for entry in parsed.entries:
        raw = entry.raw
        own = status_id(entry.link) or status_id(dict.get(raw, "id"))
        base_item = build_item(parsed, entry)
        post = _read_post(str(dict.get(raw, "summary") or ""), bridge_host)
        kind, context_name, context_handle, text_title = _classify(
            raw, own, list(post.links), shown_handle, name
        )
        images: list[str] = []
        for src in post.images:
            image = _unbridge_media(src, bridge_host)
            if image.startswith(("http://", "https://")) and image not in images:
                images.append(image)
        if own is not None:
            key = f"x:{own[1]}"
            link: str | None = f"https://x.com/{own[0]}/status/{own[1]}"
        else:
            key, link = entry.key, entry.link
        summary, _ = html_to_markdown(post.html, base=parsed.base_url, page=link)
        item = Item(
            key=key,
            title=short_title(text_title) if text_title.strip() else base_item.title,
            link=link,
            summary=summary,
            author=name,
            published=base_item.published,
            image=images[0] if images else None,
            categories=base_item.categories,
            link_norm=normalise_link(link) if link else None,
            social=SocialPost(
                author_name=name,
                author_handle=f"@{shown_handle}",
                author_avatar=avatar,
                author_url=profile,
                images=tuple(images[:MAX_IMAGES]),
                kind=kind,
                context_name=context_name,
                context_handle=context_handle,
                network="x",
            ),
        )
        refs.append((item.key, item.link_norm))
        if item.key in seen:
            continue
        seen.add(item.key)
        entries.append(replace(entry, key=item.key, link=link, link_norm=item.link_norm, item=item))
    # raw_refs must describe every entry feedparser found, duplicates included
    if len(parsed.raw_refs) != len(parsed.entries):
        refs = _all_refs(parsed, refs)
    return ParsedFeed(
        info=FeedInfo(
            title=f"{name} (@{shown_handle})", link=profile, icon=avatar, kind=parsed.info.kind
        ),
        entries=tuple(entries),
        base_url=parsed.base_url,
        author=name,
        raw_refs=tuple(refs),
    )


def _all_refs(parsed: ParsedFeed, unique_refs: list[EntryRef]) -> list[EntryRef]:
    """Refs for every raw entry (duplicates included), mapped through the new keys."""
    by_old = {entry.key: ref for entry, ref in zip(parsed.entries, unique_refs, strict=True)}
    return [by_old.get(old_key, (old_key, link_norm)) for old_key, link_norm in parsed.raw_refs]
