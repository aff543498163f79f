"""Fetch a source and turn it into a parsed feed, following an HTML page to its feed.

Shared by the poller and ``feedhook check`` so both see a source the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.net import Fetcher, FetchError, FetchResult
from bot.sources.feed import ParsedFeed, ParseError, find_feed_links, looks_like_html, parse_feed


@dataclass(frozen=True, slots=True)
class FetchedSource:
    """The document fetched for a source, after any HTML-page discovery."""

    result: FetchResult
    # The URL to store for the source when it differs from the one asked for:
    # a permanent redirect, or the feed an HTML page pointed at.
    moved_to: str | None


async def fetch_source(
    fetcher: Fetcher, url: str, *, etag: str | None = None, last_modified: str | None = None
) -> FetchedSource:
    """Fetch ``url``; an HTML page is searched for its feed, which is fetched instead.

    Raises :class:`FetchError` or :class:`ParseError` (an HTML page without a feed).
    """
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


async def parse_off_loop(result: FetchResult) -> ParsedFeed:
    """Parse in a worker thread: feedparser is CPU-bound and would stall the event loop."""
    return await asyncio.to_thread(parse_feed, result.body, url=result.url, headers=result.headers)
