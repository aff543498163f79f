"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1) -> :class:`ParsedFeed`.

feedparser does not read JSON, so this builds every :class:`~bot.models.Item`
up front (``ParsedEntry.item``); JSON feeds are small and parsing them is cheap.
HTML goes through the same Discord markdown converter as RSS and Atom.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bot.models import FeedInfo, Item
from bot.sources.feed import (
    ParsedFeed,
    ParseError,
    _header,
    _split_content_type,
    absolute_url,
    decode_entities,
    escaped_markup,
    html_to_markdown,
    normalise_link,
    short_title,
    text_body_to_markdown,
)
from bot.sources.posts import build_feed, parse_time

__all__ = ["looks_like_json_feed", "parse_json_feed"]

_HINT: Final = "check the URL points at an RSS, Atom or JSON feed"
_VERSION_PREFIXES: Final = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
_MAX_KEY_LEN: Final = 500


def looks_like_json_feed(body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether ``body`` should be read as a JSON Feed (cheap; no JSON decoding).

    ``application/feed+json`` says so; otherwise a JSON object naming a
    ``jsonfeed.org/version/`` does, whatever the Content-Type (often
    ``application/json`` or ``text/plain``).
    """
    mime, _ = _split_content_type(_header(headers, "content-type"))
    if mime == "application/feed+json":
        return True
    head = body[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b"jsonfeed.org/version/" in head.replace(b"\\/", b"/")


def _fail(reason: str) -> ParseError:
    return ParseError(f"not a feed: {reason}; {_HINT}")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _authors(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """1.1's ``authors`` array, else 1.0's single ``author``."""
    found = obj.get("authors")
    if isinstance(found, list):
        return [a for a in found if isinstance(a, Mapping)]
    single = obj.get("author")
    return [single] if isinstance(single, Mapping) else []


def _author_name(obj: Mapping[str, Any]) -> str | None:
    names = [_text(a.get("name")) for a in _authors(obj)]
    joined = ", ".join(n for n in names if n)
    return decode_entities(joined) or None


def _key(item: Mapping[str, Any], link: str | None, index_parts: tuple[str, ...]) -> str:
    raw = item.get("id")
    if isinstance(raw, bool):
        raw = None
    key = str(raw).strip() if isinstance(raw, str | int | float) else ""
    if not key:
        # The spec requires an id; without one, the URL, else a content hash.
        key = link or ""
    if not key:
        digest = hashlib.sha256("\x1f".join(index_parts).encode("utf-8", "replace"))
        return "sha256:" + digest.hexdigest()
    if len(key) > _MAX_KEY_LEN:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return key


def _attachments(item: Mapping[str, Any], base: str) -> tuple[str | None, list[str]]:
    """(first image attachment, markdown lines for the other attachments)."""
    image: str | None = None
    lines: list[str] = []
    found = item.get("attachments")
    for attachment in found if isinstance(found, list) else ():
        if not isinstance(attachment, Mapping):
            continue
        url = absolute_url(base, _text(attachment.get("url")))
        if not url:
            continue
        mime = _text(attachment.get("mime_type")).lower()
        if mime.startswith("image/"):
            image = image or url
            continue
        label = _text(attachment.get("title")) or mime or "attachment"
        lines.append(f"[{label}]({url.replace(' ', '%20').replace(')', '%29')})")
    return image, lines


def _summary(
    html_body: str, text_body: str, summary_text: str, base: str, link: str | None
) -> tuple[str, str | None]:
    """(markdown, inline image) of an item: content_html, else content_text, else summary.

    content_html that is escaped once too often (``&lt;p&gt;...``) or converts to nothing
    gives way to content_text or summary; without those, it is decoded and converted.
    """
    summary, inline_image = "", None
    escaped = escaped_markup(html_body) if html_body else None
    if html_body and escaped is None:
        summary, inline_image = html_to_markdown(html_body, base=base, page=link)
        if summary:
            return summary, inline_image
    for text in (text_body, summary_text):
        if text.strip():
            markdown, image = text_body_to_markdown(text, base=base, page=link)
            return markdown, inline_image or image
    if escaped is not None:
        return html_to_markdown(escaped, base=base, page=link)
    return summary, inline_image


def _display_title(title: str, html_body: str, text_body: str, summary_text: str) -> str:
    """The item's title as posted: entities left in it decoded, else one from its text."""
    if title:
        return decode_entities(title)
    if text_body.strip() or summary_text:
        text = text_body or summary_text
        markup = escaped_markup(text)
        if markup is None:
            return short_title(decode_entities(text))
        return decode_entities(short_title(markup, html_text=True))
    return decode_entities(short_title(escaped_markup(html_body) or html_body, html_text=True))


def _item(item: Mapping[str, Any], base: str, feed_author: str | None, now: datetime) -> Item:
    link = absolute_url(base, _text(item.get("url"))) or absolute_url(
        base, _text(item.get("external_url"))
    )
    html_body = _text(item.get("content_html"))
    content_text = item.get("content_text")
    text_body: str = content_text if isinstance(content_text, str) else ""
    summary_text = _text(item.get("summary"))
    summary, inline_image = _summary(html_body, text_body, summary_text, base, link)
    title = _text(item.get("title"))
    # The key's title is the one items were always keyed by: identity must not change.
    key_title = title
    if not key_title:
        if text_body.strip() or summary_text:
            key_title = short_title(text_body or summary_text)
        else:
            key_title = short_title(html_body, html_text=True)
    image_attachment, attachment_lines = _attachments(item, base)
    if attachment_lines:
        summary = "\n\n".join(part for part in (summary, "\n".join(attachment_lines)) if part)
    image = (
        absolute_url(base, _text(item.get("image")))
        or absolute_url(base, _text(item.get("banner_image")))
        or image_attachment
        or inline_image
    )
    tags = item.get("tags")
    categories: dict[str, None] = {}
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, str) and tag.strip():
            categories.setdefault(decode_entities(tag.strip()), None)
    published = parse_time(item.get("date_published"), now) or parse_time(
        item.get("date_modified"), now
    )
    key = _key(item, link, (key_title, _text(item.get("date_published")), html_body or text_body))
    return Item(
        key=key,
        title=_display_title(title, html_body, text_body, summary_text),
        link=link,
        summary=summary,
        author=_author_name(item) or feed_author,
        published=published,
        image=image,
        categories=tuple(categories),
        link_norm=normalise_link(link) if link else None,
    )


def parse_json_feed(body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed:
    """Parse a JSON Feed 1.0 / 1.1 document.

    Relative URLs resolve against ``home_page_url``, else ``feed_url``, else the
    document's URL. Raises :class:`ParseError` for broken JSON or a document
    that is not a JSON Feed.
    """
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _fail("the JSON Feed is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(
            f"the JSON Feed is malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise _fail("the document is JSON but not a JSON Feed object")
    version = _text(doc.get("version"))
    if not version.startswith(_VERSION_PREFIXES):
        raise _fail("the JSON document has no jsonfeed.org version, so it is not a JSON Feed")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise _fail("the JSON Feed has no items list")

    home = absolute_url(url, _text(doc.get("home_page_url")))
    feed_url = absolute_url(url, _text(doc.get("feed_url")))
    base = home or feed_url or url
    feed_author = _author_name(doc)
    now = datetime.now(UTC)
    items = [
        (_item(raw, base, feed_author, now), True) for raw in raw_items if isinstance(raw, Mapping)
    ]
    icon = absolute_url(base, _text(doc.get("icon"))) or absolute_url(
        base, _text(doc.get("favicon"))
    )
    title = decode_entities(_text(doc.get("title"))) or (home or url)
    hub = next(
        (
            absolute_url(url, _text(h.get("url")))
            for h in doc.get("hubs") or ()
            if isinstance(h, Mapping) and str(h.get("type") or "").lower() == "websub"
        ),
        None,
    )
    return build_feed(
        FeedInfo(title=title, link=home, icon=icon, kind="json", hub=hub, self_url=feed_url),
        items,
        base_url=base,
        author=feed_author,
    )
