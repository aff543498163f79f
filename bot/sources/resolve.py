"""Fetch a source and turn it into a parsed feed, whatever kind of source it is.

Shared by the poller, ``feedhook check`` and ``/feed add`` so all three see a
source the same way. The source's canonical URL says its kind
(:func:`bot.sources.forms.kind_of`); :class:`SourceResolver` holds what the
kinds need between polls (the X bridge that worked, Mastodon account ids) and
:func:`fetch_source` dispatches:

=============================  ==========================================================
feed, YouTube, Reddit          GET the URL; an HTML page is searched for its feed
                               (``<link rel=alternate>``), which is fetched instead
X                              each bridge in turn (the last one that worked first):
                               Nitter's ``/{handle}/rss``, on 404 RSSHub's
                               ``/twitter/user/{handle}``; 5xx / timeouts -> next bridge
Bluesky                        ``GET {api_base}/xrpc/app.bsky.feed.getAuthorFeed``
Mastodon                       ``/api/v1/accounts/lookup`` (cached) then
                               ``/api/v1/accounts/{id}/statuses``; a locked API
                               (401/403/404) -> the profile's RSS ``/@user.rss``
=============================  ==========================================================

The :class:`FetchedSource` carries the parser for its document
(:class:`DocumentParser`): RSS / Atom / JSON Feed go through
:func:`~bot.sources.feed.parse_feed`, bridges through
:func:`~bot.sources.xbridge.parse_bridge_feed`, the JSON APIs through the
Bluesky / Mastodon parsers (:class:`SocialParsers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import quote, urlsplit

from bot.net import Fetcher, FetchError, FetchResult
from bot.sources import bluesky, mastodon
from bot.sources.feed import (
    DocumentParser,
    ParsedFeed,
    ParseError,
    find_feed_links,
    looks_like_html,
    parse_feed,
)
from bot.sources.forms import NO_BRIDGES, SourceKind, SourceSettings, kind_of
from bot.sources.xbridge import bridge_urls, parse_bridge_feed
from bot.tasks import in_cpu_thread

__all__ = [
    "DocumentParser",
    "FetchedSource",
    "SocialParsers",
    "SourceResolver",
    "fetch_source",
    "parse_off_loop",
]

BLUESKY_LIMIT = 30
MASTODON_LIMIT = 30
# Answers of a Mastodon instance that locks its API ("authorized fetch", limited federation).
_API_LOCKED = frozenset({401, 403, 404})


class BlueskyFeedParser(Protocol):
    def __call__(
        self, body: bytes, *, profile_url: str, include_reposts: bool, include_replies: bool
    ) -> ParsedFeed: ...


class MastodonStatusesParser(Protocol):
    def __call__(self, body: bytes, *, profile_url: str) -> ParsedFeed: ...


@dataclass(frozen=True, slots=True)
class SocialParsers:
    """The parsers of the JSON social APIs (``bot/sources/bluesky.py``, ``mastodon.py``)."""

    bluesky_author_feed: BlueskyFeedParser
    mastodon_account_id: Callable[[bytes], str]
    mastodon_statuses: MastodonStatusesParser


def default_social_parsers() -> SocialParsers:
    return SocialParsers(
        bluesky_author_feed=bluesky.parse_author_feed,
        mastodon_account_id=mastodon.parse_account_id,
        mastodon_statuses=mastodon.parse_statuses,
    )


@dataclass(frozen=True, slots=True)
class FetchedSource:
    """The document fetched for a source, after any HTML-page discovery."""

    result: FetchResult
    # The URL to store for the source when it differs from the one asked for:
    # a permanent redirect, or the feed an HTML page pointed at.
    moved_to: str | None
    # What to store as the source's URL: its canonical URL for social sources (never
    # the bridge or API URL that answered), else the feed's own URL.
    source_url: str = ""
    kind: SourceKind = "feed"
    # How to parse result.body (called with url= and headers= as parse_feed is);
    # None: an RSS / Atom / RDF document or a JSON Feed, read by parse_feed.
    parse: DocumentParser | None = None


BridgeStyle = Literal["nitter", "rsshub"]


@dataclass
class SourceResolver:
    """Settings and per-process memory for fetching sources of every kind."""

    settings: SourceSettings = field(default_factory=SourceSettings)
    parsers: SocialParsers = field(default_factory=default_social_parsers)
    # The X bridge that answered last, tried first next time; and each bridge's kind.
    x_preferred: str | None = None
    x_styles: dict[str, BridgeStyle] = field(default_factory=dict)
    # (instance base URL, user) -> account id, looked up once per process.
    mastodon_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def x_bridge_order(self) -> list[str]:
        bridges = [b.rstrip("/") for b in self.settings.x_bridges]
        if self.x_preferred in bridges:
            bridges.remove(self.x_preferred)
            bridges.insert(0, self.x_preferred)
        return bridges


async def fetch_source(
    fetcher: Fetcher,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    sources: SourceResolver | None = None,
) -> FetchedSource:
    """Fetch the source stored (or typed, in canonical form) as ``url``.

    Raises :class:`FetchError` or :class:`ParseError` (an HTML page without a feed).
    """
    sources = sources or SourceResolver()
    ref = kind_of(url, sources.settings)
    if ref.kind == "x":
        return await _fetch_x(fetcher, sources, ref.identity, ref.url, etag, last_modified)
    if ref.kind == "bluesky":
        return await _fetch_bluesky(fetcher, sources, ref.identity, ref.url, etag, last_modified)
    if ref.kind == "mastodon":
        return await _fetch_mastodon(fetcher, sources, ref.url, etag, last_modified)
    fetched = await _fetch_feed(fetcher, url, etag=etag, last_modified=last_modified)
    return FetchedSource(
        result=fetched.result,
        moved_to=fetched.moved_to,
        source_url=fetched.moved_to or fetched.result.url,
        kind=ref.kind,
    )


async def _fetch_feed(
    fetcher: Fetcher, url: str, *, etag: str | None = None, last_modified: str | None = None
) -> FetchedSource:
    """Fetch ``url``; an HTML page is searched for its feed, which is fetched instead."""
    result = await fetcher.fetch(url, etag=etag, last_modified=last_modified)
    moved_to = result.permanent_url
    if result.status == 200 and looks_like_html(result.body, result.headers):
        links = find_feed_links(result.body, base_url=result.url, headers=result.headers)
        if not links:
            raise ParseError(
                "not a feed: the page is HTML and links no RSS, Atom or JSON feed; "
                "give the feed's own URL"
            )
        last_error: FetchError | None = None
        for link in links[:3]:
            try:
                result = await fetcher.fetch(link)
            except FetchError as exc:
                last_error = exc
                continue
            moved_to = result.permanent_url or result.url
            break
        else:
            assert last_error is not None
            raise last_error
    return FetchedSource(result=result, moved_to=moved_to if moved_to != url else None)


# --------------------------------------------------------------------------- X


def _x_parser(handle: str) -> DocumentParser:
    def parse(body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed:
        return parse_bridge_feed(body, url=url, headers=headers, handle=handle)

    return parse


async def _fetch_x(
    fetcher: Fetcher,
    sources: SourceResolver,
    handle: str,
    canonical: str,
    etag: str | None,
    last_modified: str | None,
) -> FetchedSource:
    bridges = sources.x_bridge_order()
    if not bridges:
        raise FetchError("scheme", NO_BRIDGES)
    last_error: FetchError | None = None
    only_not_found = True  # every bridge said 404 on both paths: the account, not the bridges
    for bridge in bridges:
        urls = bridge_urls(bridge, handle)
        styles: list[BridgeStyle] = ["nitter", "rsshub"]
        if sources.x_styles.get(bridge) == "rsshub":
            styles.reverse()
        for style in styles:
            try:
                result = await fetcher.fetch(urls[style], etag=etag, last_modified=last_modified)
            except FetchError as exc:
                last_error = exc
                if exc.kind == "http" and exc.status == 404:
                    continue  # not this kind of bridge (or no such account): the other path
                only_not_found = False
                break  # the bridge is down or slow: the next bridge
            if result.status == 200 and looks_like_html(result.body, result.headers):
                only_not_found = False
                last_error = FetchError(
                    "http", f"the X bridge {bridge} answered with a web page, not RSS"
                )
                continue
            sources.x_preferred = bridge
            sources.x_styles[bridge] = style
            return FetchedSource(
                result=result,
                moved_to=None,
                source_url=canonical,
                kind="x",
                parse=_x_parser(handle),
            )
    assert last_error is not None
    if only_not_found:
        raise FetchError(
            "http",
            f"no X bridge knows @{handle} (each of {len(bridges)} answered 404 on Nitter's and "
            "RSSHub's paths): check the handle is right and the account exists and is public",
            status=404,
        )
    raise FetchError(
        last_error.kind,
        f"no X bridge could fetch @{handle} (tried {len(bridges)}); the last said: {last_error}",
        status=last_error.status,
        retry_after=last_error.retry_after,
    )


# --------------------------------------------------------------------------- Bluesky


async def _fetch_bluesky(
    fetcher: Fetcher,
    sources: SourceResolver,
    actor: str,
    canonical: str,
    etag: str | None,
    last_modified: str | None,
) -> FetchedSource:
    parsers = sources.parsers
    settings = sources.settings
    api = settings.bluesky_api_base.rstrip("/")
    url = (
        f"{api}/xrpc/app.bsky.feed.getAuthorFeed?actor={quote(actor, safe=':.')}"
        f"&limit={BLUESKY_LIMIT}"
    )
    result = await fetcher.fetch(url, etag=etag, last_modified=last_modified)
    author_feed = parsers.bluesky_author_feed
    reposts, replies = settings.bluesky_include_reposts, settings.bluesky_include_replies

    def parse(body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed:
        return author_feed(
            body, profile_url=canonical, include_reposts=reposts, include_replies=replies
        )

    return FetchedSource(
        result=result, moved_to=None, source_url=canonical, kind="bluesky", parse=parse
    )


# --------------------------------------------------------------------------- Mastodon


async def _fetch_mastodon(
    fetcher: Fetcher,
    sources: SourceResolver,
    canonical: str,
    etag: str | None,
    last_modified: str | None,
) -> FetchedSource:
    parsers = sources.parsers
    parts = urlsplit(canonical)
    base = f"{parts.scheme}://{parts.netloc}"
    user = parts.path.removeprefix("/@")
    cache_key = (base, user)
    try:
        account_id = sources.mastodon_ids.get(cache_key)
        if account_id is None:
            lookup = await fetcher.fetch(
                f"{base}/api/v1/accounts/lookup?acct={quote(user, safe='@.')}"
            )
            account_id = await in_cpu_thread(parsers.mastodon_account_id, lookup.body)
            sources.mastodon_ids[cache_key] = account_id
        result = await fetcher.fetch(
            f"{base}/api/v1/accounts/{quote(account_id, safe='')}/statuses?limit={MASTODON_LIMIT}",
            etag=etag,
            last_modified=last_modified,
        )
    except FetchError as exc:
        if not (exc.kind == "http" and exc.status in _API_LOCKED):
            raise
        # A locked API (or an account id gone stale): the profile's public RSS.
        sources.mastodon_ids.pop(cache_key, None)
        result = await fetcher.fetch(
            f"{base}/@{quote(user, safe='')}.rss", etag=etag, last_modified=last_modified
        )
        return FetchedSource(result=result, moved_to=None, source_url=canonical, kind="mastodon")
    statuses = parsers.mastodon_statuses

    def parse(body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed:
        return statuses(body, profile_url=canonical)

    return FetchedSource(
        result=result, moved_to=None, source_url=canonical, kind="mastodon", parse=parse
    )


# --------------------------------------------------------------------------- parsing


async def parse_off_loop(fetched: FetchedSource) -> ParsedFeed:
    """Parse in a worker thread: parsing is CPU-bound and would stall the event loop."""
    result = fetched.result
    parse = fetched.parse or parse_feed
    return await in_cpu_thread(parse, result.body, url=result.url, headers=result.headers)
