"""Bluesky: the JSON of ``app.bsky.feed.getAuthorFeed`` -> :class:`ParsedFeed`. Pure: no I/O.

The response is ``{"feed": [FeedViewPost...], "cursor": ...}``; each FeedViewPost has
``post`` (a PostView: ``uri``, ``author``, ``record`` with the text and its facets, the
hydrated ``embed`` view, ``indexedAt``), and optionally ``reason`` (a repost) and
``reply`` (the parent and root PostViews).

Reposts. The message is posted under the *profile owner's* identity (the reposter)
and the text starts with "🔁 reposted **Original Author** (@handle)". A channel that
follows @alice then always shows Alice's name and avatar, as on her Bluesky profile,
where her reposts sit among her posts marked "Reposted by Alice"; showing Bob's
avatar in Alice's channel would read as if Bob posted there himself. The original
author is named in the marker (``SocialPost.context_*``), the link goes to the
original post, and the text shown is the original's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from bot.models import FeedInfo, Item, PostKind, SocialPost
from bot.sources.feed import ParsedFeed, ParseError, _md_url, normalise_link
from bot.sources.posts import (
    MAX_IMAGES,
    build_feed,
    escape_markdown,
    load_json,
    mapping,
    parse_time,
    quote_block,
    sequence,
    shorten,
    text,
    title_from,
)

__all__ = ["parse_author_feed", "post_url", "profile_link"]

_WHAT: Final = "a Bluesky author feed"
_APP: Final = "https://bsky.app"
_POST_COLLECTION: Final = "app.bsky.feed.post"
_REPOST: Final = "app.bsky.feed.defs#reasonRepost"
_QUOTE_PREVIEW: Final = 280

_IMAGES: Final = "app.bsky.embed.images#view"
_EXTERNAL: Final = "app.bsky.embed.external#view"
_RECORD: Final = "app.bsky.embed.record#view"
_RECORD_WITH_MEDIA: Final = "app.bsky.embed.recordWithMedia#view"
_VIDEO: Final = "app.bsky.embed.video#view"
_VIEW_RECORD: Final = "app.bsky.embed.record#viewRecord"

_LINK: Final = "app.bsky.richtext.facet#link"
_MENTION: Final = "app.bsky.richtext.facet#mention"
_TAG: Final = "app.bsky.richtext.facet#tag"


def profile_link(actor: str) -> str:
    """The bsky.app page of a handle or DID."""
    return f"{_APP}/profile/{quote(actor, safe=':.')}"


def post_url(uri: str, handle: str) -> str | None:
    """``at://did/app.bsky.feed.post/rkey`` -> ``https://bsky.app/profile/handle/post/rkey``."""
    if not uri.startswith("at://"):
        return None
    parts = uri[len("at://") :].split("/")
    if len(parts) != 3 or parts[1] != _POST_COLLECTION or not parts[0] or not parts[2]:
        return None
    return f"{profile_link(handle or parts[0])}/post/{quote(parts[2], safe='')}"


# -- people ---------------------------------------------------------------------------


def _handle(author: dict[str, Any]) -> str:
    return text(author.get("handle")).strip() or text(author.get("did")).strip()


def _name(author: dict[str, Any]) -> str:
    return " ".join(text(author.get("displayName")).split()) or _handle(author)


def _at(author: dict[str, Any]) -> str:
    handle = _handle(author)
    return f"@{handle}" if handle else ""


def _http(url: Any) -> str | None:
    value = text(url).strip()
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


# -- rich text ------------------------------------------------------------------------


def _is_boundary(data: bytes, index: int) -> bool:
    """Whether a byte offset falls between two UTF-8 characters."""
    return index == len(data) or (0 <= index < len(data) and data[index] & 0xC0 != 0x80)


def _facet_target(features: list[Any]) -> str | None:
    for feature in features:
        feature = mapping(feature)
        kind = text(feature.get("$type"))
        if kind == _LINK and (uri := _http(feature.get("uri"))):
            return uri
        if kind == _MENTION and (did := text(feature.get("did")).strip()):
            return profile_link(did)
        if kind == _TAG and (tag := text(feature.get("tag")).strip().lstrip("#")):
            return f"{_APP}/hashtag/{quote(tag, safe='')}"
    return None


def rich_text(plain: str, facets: Any) -> str:
    """Post text as Discord markdown: link facets become ``[text](url)``, mentions link
    to the profile, hashtags to the tag's page; everything else is escaped.

    Facet offsets count UTF-8 *bytes* of the text. A facet that overlaps another,
    falls outside the text or cuts a character in two is ignored (the text stays).
    """
    data = plain.encode("utf-8")
    spans: list[tuple[int, int, str]] = []
    for facet in sequence(facets):
        facet = mapping(facet)
        index = mapping(facet.get("index"))
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end:
            continue
        if end > len(data) or not (_is_boundary(data, start) and _is_boundary(data, end)):
            continue
        target = _facet_target(sequence(facet.get("features")))
        if target:
            spans.append((start, end, target))
    spans.sort()
    out: list[str] = []
    position = 0
    for start, end, target in spans:
        if start < position:
            continue  # overlaps the previous facet
        label = escape_markdown(data[start:end].decode("utf-8"))
        if not label.strip():
            continue
        out.append(escape_markdown(data[position:start].decode("utf-8")))
        out.append(f"[{label}]({_md_url(target)})")
        position = end
    out.append(escape_markdown(data[position:].decode("utf-8")))
    return "".join(out).strip()


# -- embeds ---------------------------------------------------------------------------


def _media(view: dict[str, Any]) -> tuple[list[str], str | None]:
    """(image URLs, an extra markdown line) of an images / video / external view."""
    kind = text(view.get("$type"))
    if kind == _IMAGES:
        images = [_http(mapping(i).get("fullsize")) for i in sequence(view.get("images"))]
        return [i for i in images if i], None
    if kind == _VIDEO:
        thumb = _http(view.get("thumbnail"))
        return ([thumb] if thumb else []), None
    if kind == _EXTERNAL:
        external = mapping(view.get("external"))
        uri = _http(external.get("uri"))
        if uri is None:
            return [], None
        title = " ".join(text(external.get("title")).split()) or uri
        thumb = _http(external.get("thumb"))
        line = f"🔗 [{escape_markdown(shorten(title, 200))}]({_md_url(uri)})"
        return ([thumb] if thumb else []), line
    return [], None


def _quoted(view: dict[str, Any]) -> dict[str, Any] | None:
    """The quoted post's viewRecord in a record#view, if visible."""
    record = mapping(view.get("record"))
    if text(record.get("$type")) == _VIEW_RECORD and record.get("uri"):
        return record
    return None


def _quote_text(record: dict[str, Any]) -> str:
    author = mapping(record.get("author"))
    value = mapping(record.get("value"))
    body = escape_markdown(shorten(" ".join(text(value.get("text")).split()), _QUOTE_PREVIEW))
    link = post_url(text(record.get("uri")), _handle(author))
    signature = f"— {escape_markdown(_name(author))}"
    if link:
        signature = f"— [{escape_markdown(_name(author))}]({_md_url(link)})"
    return quote_block(f"{body}\n{signature}" if body else signature)


# -- one post -------------------------------------------------------------------------


def _item(entry: dict[str, Any], now: datetime) -> tuple[Item, bool, bool] | None:
    """(item, is a repost, is a reply), or None for an entry that is no post."""
    post = mapping(entry.get("post"))
    uri = text(post.get("uri")).strip()
    author = mapping(post.get("author"))
    link = post_url(uri, _handle(author))
    if link is None:
        return None
    record = mapping(post.get("record"))
    reason = mapping(entry.get("reason"))
    reply = mapping(entry.get("reply"))
    repost = text(reason.get("$type")) == _REPOST
    is_reply = bool(record.get("reply")) or bool(reply)

    summary = rich_text(text(record.get("text")), record.get("facets"))
    plain = " ".join(text(record.get("text")).split())
    images: list[str] = []
    extra: list[str] = []
    quoted: dict[str, Any] | None = None
    embed = mapping(post.get("embed"))
    kind_of_embed = text(embed.get("$type"))
    if kind_of_embed == _RECORD:
        quoted = _quoted(embed)
    elif kind_of_embed == _RECORD_WITH_MEDIA:
        quoted = _quoted(mapping(embed.get("record")))
        images, line = _media(mapping(embed.get("media")))
        extra += [line] if line else []
    else:
        images, line = _media(embed)
        extra += [line] if line else []
    if quoted is not None:
        extra.append(_quote_text(quoted))
    summary = "\n\n".join(part for part in (summary, *extra) if part)

    kind: PostKind = "post"
    context: dict[str, Any] = {}
    if repost:
        kind, context = "repost", author
        owner = mapping(reason.get("by")) or author
    else:
        owner = author
        if is_reply:
            kind = "reply"
            context = mapping(mapping(reply.get("parent")).get("author"))
        elif quoted is not None:
            kind, context = "quote", mapping(quoted.get("author"))

    name = _name(owner)
    title = title_from(plain, f"Post by {name}")
    # A repost dates from when it was reposted: that is when it reached the profile.
    published = (parse_time(reason.get("indexedAt"), now) if repost else None) or (
        parse_time(record.get("createdAt"), now) or parse_time(post.get("indexedAt"), now)
    )
    social = SocialPost(
        author_name=name,
        author_handle=_at(owner),
        author_avatar=_http(owner.get("avatar")),
        author_url=profile_link(_handle(owner)) if _handle(owner) else None,
        images=tuple(images[:MAX_IMAGES]),
        kind=kind,
        context_name=(_name(context) or None) if context else None,
        context_handle=(_at(context) or None) if context else None,
        network="bluesky",
    )
    item = Item(
        key=uri,
        title=title,
        link=link,
        summary=summary,
        author=f"{name} ({_at(owner)})" if _at(owner) else name,
        published=published,
        image=social.images[0] if social.images else None,
        link_norm=normalise_link(link),
        social=social,
    )
    return item, repost, is_reply


def _owner_from_url(profile_url: str) -> str:
    path = [p for p in urlsplit(profile_url).path.split("/") if p]
    return path[1] if len(path) >= 2 and path[0] == "profile" else (path[-1] if path else "")


def parse_author_feed(
    body: bytes, *, profile_url: str, include_reposts: bool, include_replies: bool
) -> ParsedFeed:
    """Parse one page of ``app.bsky.feed.getAuthorFeed``; entries newest first, as sent.

    Raises :class:`ParseError` (one sentence) when the JSON is not an author feed.
    Reposts and replies are left out when their flag is False.
    """
    document = load_json(body, what=_WHAT)
    if not isinstance(document, dict):
        raise ParseError(f"not {_WHAT}: the JSON is not an object with a feed list")
    if "feed" not in document and document.get("error"):
        message = text(document.get("message")) or text(document.get("error"))
        raise ParseError(f"not {_WHAT}: Bluesky answered with an error ({message[:200]})")
    feed = document.get("feed")
    if not isinstance(feed, list):
        raise ParseError(f"not {_WHAT}: the JSON has no feed list of posts")
    now = datetime.now(UTC)
    built: list[tuple[Item, bool]] = []
    owner: dict[str, Any] = {}
    for entry in feed:
        entry = mapping(entry)
        parsed = _item(entry, now)
        if parsed is None:
            continue
        item, repost, is_reply = parsed
        if not owner:
            reason = mapping(entry.get("reason"))
            post_author = mapping(mapping(entry.get("post")).get("author"))
            owner = mapping(reason.get("by")) if repost else post_author
        keep = (include_reposts or not repost) and (include_replies or repost or not is_reply)
        built.append((item, keep))
    handle = _handle(owner) or _owner_from_url(profile_url)
    name = _name(owner) if owner else ""
    if name and name != handle:
        title = f"{name} (@{handle}) on Bluesky"
    else:
        title = f"@{handle} on Bluesky" if handle else "Bluesky"
    info = FeedInfo(title=title, link=profile_url, icon=_http(owner.get("avatar")), kind="bluesky")
    return build_feed(info, built, base_url=profile_url)
