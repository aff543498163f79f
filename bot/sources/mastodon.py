"""Mastodon: the JSON of ``/api/v1/accounts/lookup`` and ``/api/v1/accounts/:id/statuses``.

Pure: no I/O. A status's ``content`` is HTML; it goes through the same converter as
feed HTML (``bot.sources.feed._markdown``: markdownify tuned for Discord).

Boosts are posted under the profile owner's identity (the booster) with the text
"🔁 reposted **Original Author** (@user@instance)", the boosted status's text and a
link to it: the channel follows one account and keeps its face, as the profile
page on Mastodon does (see ``bot.sources.bluesky`` for the same choice).

Content warnings: the warning is shown and the text hidden in a Discord spoiler
(``||...||``). Images of a status marked ``sensitive`` are not shown as embeds
(Discord cannot blur an embed's image); they become spoilered links in the text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from bot.models import FeedInfo, Item, PostKind, SocialPost
from bot.sources.feed import (
    ParsedFeed,
    ParseError,
    _html_to_text,
    _markdown,
    _md_url,
    normalise_link,
)
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

__all__ = ["parse_account_id", "parse_statuses"]

_PUBLIC: Final = frozenset({"public", "unlisted"})
_QUOTE_PREVIEW: Final = 280


def _error(document: Any) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])[:200]
    return None


def parse_account_id(body: bytes) -> str:
    """The account id in the JSON of ``/api/v1/accounts/lookup?acct=user``."""
    what = "a Mastodon account"
    document = load_json(body, what=what)
    if (error := _error(document)) is not None:
        raise ParseError(f"not {what}: the server answered with an error ({error})")
    if not isinstance(document, dict):
        raise ParseError(f"not {what}: the JSON is not an account object")
    account_id = document.get("id")
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = str(account_id)
    if not isinstance(account_id, str) or not account_id.strip().isalnum():
        raise ParseError(f"not {what}: the JSON has no account id")
    return account_id.strip()


# -- people ---------------------------------------------------------------------------


def _http(url: Any) -> str | None:
    value = text(url).strip()
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _full_handle(acct: str, url: str | None) -> str:
    """``@user@instance``: a local account's ``acct`` has no domain; its URL has."""
    acct = acct.strip().lstrip("@")
    if not acct:
        return ""
    if "@" not in acct and url and (host := urlsplit(url).hostname):
        acct = f"{acct}@{host}"
    return f"@{acct}"


def _person(account: dict[str, Any]) -> tuple[str, str]:
    """(display name, ``@user@instance``) of an Account or a Mention."""
    url = _http(account.get("url"))
    handle = _full_handle(text(account.get("acct")) or text(account.get("username")), url)
    name = " ".join(text(account.get("display_name")).split())
    return (name or text(account.get("username")).strip() or handle.lstrip("@")), handle


# -- one status -----------------------------------------------------------------------


def _media(status: dict[str, Any]) -> list[str]:
    images: list[str] = []
    for attachment in sequence(status.get("media_attachments")):
        attachment = mapping(attachment)
        kind = text(attachment.get("type"))
        if kind == "image":
            url = _http(attachment.get("url")) or _http(attachment.get("preview_url"))
        elif kind in ("gifv", "video"):
            url = _http(attachment.get("preview_url"))
        else:
            url = None
        if url:
            images.append(url)
    if not images:
        card = mapping(status.get("card"))
        if image := _http(card.get("image")):
            images.append(image)
    return images[:MAX_IMAGES]


def _body(status: dict[str, Any], link: str | None, base: str) -> str:
    markdown, _ = _markdown({"value": text(status.get("content")), "type": "text/html"}, base, link)
    return markdown


def _quoted(status: dict[str, Any]) -> dict[str, Any] | None:
    """The quoted status of a Mastodon 4.4+ quote, when the server shows it."""
    quote = mapping(status.get("quote"))
    quoted = mapping(quote.get("quoted_status"))
    if text(quote.get("state")) == "accepted" and quoted:
        return quoted
    return None


def _quote_text(quoted: dict[str, Any]) -> str:
    name, _ = _person(mapping(quoted.get("account")))
    plain = _html_to_text(text(quoted.get("content")))
    if spoiler := " ".join(text(quoted.get("spoiler_text")).split()):
        plain = f"CW: {spoiler}"  # the warning, never the hidden text
    body = escape_markdown(shorten(plain, _QUOTE_PREVIEW))
    link = _http(quoted.get("url")) or _http(quoted.get("uri"))
    signature = f"— [{escape_markdown(name)}]({_md_url(link)})" if link else f"— {name}"
    return quote_block(f"{body}\n{signature}" if body else signature)


def _reply_context(status: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    target = status.get("in_reply_to_account_id")
    if target is None:
        return {}
    if str(target) == str(owner.get("id")):
        return owner  # a thread of the owner's own posts
    for mention in sequence(status.get("mentions")):
        mention = mapping(mention)
        if str(mention.get("id")) == str(target):
            return mention
    return {}


def _item(status: dict[str, Any], base: str, now: datetime) -> Item | None:
    owner = mapping(status.get("account"))
    boosted = mapping(status.get("reblog"))
    shown = boosted or status  # the status whose text, media and link are shown
    key = text(shown.get("uri")).strip() or text(shown.get("url")).strip()
    link = _http(shown.get("url")) or _http(shown.get("uri"))
    if not key:
        return None

    body = _body(shown, link, base)
    plain = _html_to_text(text(shown.get("content")))
    spoiler = " ".join(text(shown.get("spoiler_text")).split())
    images = _media(shown)
    extra: list[str] = []
    if shown.get("sensitive") and images:
        # Discord shows an embed's image unblurred: hide the pictures behind spoilers.
        links = " ".join(f"||[image {n}]({_md_url(url)})||" for n, url in enumerate(images, 1))
        extra.append(f"🖼️ {links}")
        images = []
    quoted = _quoted(shown)
    if quoted is not None:
        extra.append(_quote_text(quoted))
    if spoiler:
        hidden = body.replace("||", "|\u200b|")  # a "||" inside would end the spoiler
        body = f"⚠️ **CW: {escape_markdown(spoiler)}**" + (f"\n||{hidden}||" if hidden else "")
        title = f"CW: {spoiler}"
    else:
        title = plain
    summary = "\n\n".join(part for part in (body, *extra) if part)

    kind: PostKind = "post"
    context: dict[str, Any] = {}
    if boosted:
        kind, context = "repost", mapping(boosted.get("account"))
    elif status.get("in_reply_to_id") is not None:
        kind, context = "reply", _reply_context(status, owner)
    elif quoted is not None:
        kind, context = "quote", mapping(quoted.get("account"))
    name, handle = _person(owner)
    context_name, context_handle = _person(context) if context else ("", "")
    social = SocialPost(
        author_name=name,
        author_handle=handle,
        author_avatar=_http(owner.get("avatar")) or _http(owner.get("avatar_static")),
        author_url=_http(owner.get("url")),
        images=tuple(images),
        kind=kind,
        context_name=context_name or None,
        context_handle=context_handle or None,
        network="mastodon",
    )
    return Item(
        key=key,
        title=title_from(title, f"Post by {name}"),
        link=link,
        summary=summary,
        author=f"{name} ({handle})" if handle else name,
        # a boost dates from the boost: that is when it reached the profile
        published=parse_time(status.get("created_at"), now),
        image=images[0] if images else None,
        link_norm=normalise_link(link) if link else None,
        social=social,
    )


def _owner_from_url(profile_url: str) -> str:
    parts = urlsplit(profile_url)
    user = next((p for p in parts.path.split("/") if p.startswith("@")), "")
    if not user:
        return ""
    return user if user.count("@") > 1 else f"{user}@{parts.hostname or ''}".rstrip("@")


def parse_statuses(body: bytes, *, profile_url: str) -> ParsedFeed:
    """Parse ``/api/v1/accounts/:id/statuses`` (newest first, as sent).

    Only public and unlisted statuses are kept. Raises :class:`ParseError` (one
    sentence) when the JSON is not a list of statuses.
    """
    what = "a Mastodon status list"
    document = load_json(body, what=what)
    if (error := _error(document)) is not None:
        raise ParseError(f"not {what}: the server answered with an error ({error})")
    if not isinstance(document, list):
        raise ParseError(f"not {what}: the JSON is not a list of statuses")
    now = datetime.now(UTC)
    built: list[tuple[Item, bool]] = []
    owner: dict[str, Any] = {}
    for status in document:
        status = mapping(status)
        if text(status.get("visibility")) not in _PUBLIC:
            continue
        item = _item(status, profile_url, now)
        if item is None:
            continue
        owner = owner or mapping(status.get("account"))
        built.append((item, True))
    if owner:
        name, handle = _person(owner)
        shown = f"{name} ({handle})" if name != handle.lstrip("@") else handle
        title = f"{shown} on Mastodon"
    else:
        handle = _owner_from_url(profile_url)
        title = f"{handle} on Mastodon" if handle else "Mastodon"
    info = FeedInfo(
        title=title,
        link=profile_url,
        icon=_http(owner.get("avatar")) or _http(owner.get("avatar_static")),
        kind="mastodon",
    )
    return build_feed(info, built, base_url=profile_url)
