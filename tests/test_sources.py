"""Source forms, JSON Feed, X bridges and the fetch plan of every kind, against
loopback stand-ins of the real services (tests/fakes/fake_services.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.app import net_settings
from bot.config import Config, ConfigError, load_config
from bot.models import FeedInfo, Item, SocialPost, WebhookTarget
from bot.net import Fetcher, FetchError, NetSettings
from bot.poller import Poller, PollSettings
from bot.sources.feed import ParsedEntry, ParsedFeed, ParseError, build_item, parse_feed
from bot.sources.forms import (
    NO_BRIDGES,
    SourceFormError,
    SourceSettings,
    ensure_usable,
    kind_of,
    parse_source,
)
from bot.sources.jsonfeed import parse_json_feed
from bot.sources.resolve import SocialParsers, SourceResolver, fetch_source, parse_off_loop
from bot.sources.xbridge import parse_bridge_feed
from bot.storage.store import ConfigFeed, PollOutcome, Store, items
from tests.conftest import Doc, FeedServer
from tests.fakes.fake_services import (
    CHANNEL_ID,
    PLAYLIST_ID,
    Account,
    FakeServices,
    Tweet,
    json_feed_10,
    json_feed_11,
    nitter_rss,
    rsshub_rss,
)
from tests.fakes.loopback import start_app

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# -- forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "kind", "url"),
    [
        ("x:jack", "x", "https://x.com/jack"),
        ("x:@Jack", "x", "https://x.com/jack"),
        ("twitter:jack_2", "x", "https://x.com/jack_2"),
        ("TWITTER:@jack", "x", "https://x.com/jack"),
        ("https://x.com/Jack", "x", "https://x.com/jack"),
        ("https://twitter.com/jack/", "x", "https://x.com/jack"),
        ("https://www.twitter.com/jack", "x", "https://x.com/jack"),
        ("https://mobile.twitter.com/jack", "x", "https://x.com/jack"),
        ("http://www.x.com/jack", "x", "https://x.com/jack"),
        ("bsky:alice.bsky.social", "bluesky", "https://bsky.app/profile/alice.bsky.social"),
        ("bsky:alice", "bluesky", "https://bsky.app/profile/alice.bsky.social"),
        ("bsky:@Alice.example.com", "bluesky", "https://bsky.app/profile/alice.example.com"),
        ("@alice.bsky.social", "bluesky", "https://bsky.app/profile/alice.bsky.social"),
        ("@news.example.org", "bluesky", "https://bsky.app/profile/news.example.org"),
        (
            "https://bsky.app/profile/alice.bsky.social",
            "bluesky",
            "https://bsky.app/profile/alice.bsky.social",
        ),
        (
            "https://bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6tvur",
            "bluesky",
            "https://bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6tvur",
        ),
        ("@Gargron@mastodon.social", "mastodon", "https://mastodon.social/@gargron"),
        ("https://Mastodon.Social/@Gargron", "mastodon", "https://mastodon.social/@gargron"),
        ("https://fosstodon.org/@alice/", "mastodon", "https://fosstodon.org/@alice"),
        ("https://mastodon.social/@bob@hachyderm.io", "mastodon", "https://hachyderm.io/@bob"),
        (
            f"https://www.youtube.com/channel/{CHANNEL_ID}",
            "youtube",
            f"https://www.youtube.com/feeds/videos.xml?channel_id={CHANNEL_ID}",
        ),
        (
            f"https://m.youtube.com/channel/{CHANNEL_ID}/videos",
            "youtube",
            f"https://www.youtube.com/feeds/videos.xml?channel_id={CHANNEL_ID}",
        ),
        (
            f"https://youtube.com/playlist?list={PLAYLIST_ID}",
            "youtube",
            f"https://www.youtube.com/feeds/videos.xml?playlist_id={PLAYLIST_ID}",
        ),
        (
            f"https://www.youtube.com/watch?v=abc&list={PLAYLIST_ID}",
            "youtube",
            f"https://www.youtube.com/feeds/videos.xml?playlist_id={PLAYLIST_ID}",
        ),
        ("https://www.youtube.com/@SomeName", "youtube", "https://www.youtube.com/@SomeName"),
        (
            f"https://www.youtube.com/feeds/videos.xml?channel_id={CHANNEL_ID}",
            "youtube",
            f"https://www.youtube.com/feeds/videos.xml?channel_id={CHANNEL_ID}",
        ),
        ("https://www.reddit.com/r/python", "reddit", "https://www.reddit.com/r/python/.rss"),
        ("https://old.reddit.com/r/python/", "reddit", "https://www.reddit.com/r/python/.rss"),
        ("https://reddit.com/r/python/.rss", "reddit", "https://www.reddit.com/r/python/.rss"),
        ("https://www.reddit.com/user/spez", "reddit", "https://www.reddit.com/user/spez/.rss"),
        ("https://www.reddit.com/u/spez", "reddit", "https://www.reddit.com/user/spez/.rss"),
        ("https://example.com/feed.xml", "feed", "https://example.com/feed.xml"),
        ("  https://example.com/blog/  ", "feed", "https://example.com/blog/"),
        ("https://medium.com/@writer", "feed", "https://medium.com/@writer"),
        ("https://shop.example/@sale+now", "feed", "https://shop.example/@sale+now"),
        # a profile's own RSS stays the feed it is
        (
            "https://bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6tvur/rss",
            "feed",
            "https://bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6tvur/rss",
        ),
        ("https://mastodon.social/@Gargron.rss", "feed", "https://mastodon.social/@Gargron.rss"),
        ("https://example.com/feed.json", "feed", "https://example.com/feed.json"),
    ],
)
def test_every_form_parses_to_its_canonical_url(typed: str, kind: str, url: str) -> None:
    ref = parse_source(typed)
    assert (ref.kind, ref.url) == (kind, url)
    # The canonical URL is a form of its own, of the same source: kind_of reads it back.
    again = kind_of(ref.url)
    assert (again.kind, again.url, again.identity) == (ref.kind, ref.url, ref.identity)


def test_configured_bases_are_recognised() -> None:
    settings = SourceSettings(
        youtube_base="http://127.0.0.1:8001", reddit_base="http://127.0.0.1:8002"
    )
    assert parse_source(f"http://127.0.0.1:8001/channel/{CHANNEL_ID}", settings).url == (
        f"http://127.0.0.1:8001/feeds/videos.xml?channel_id={CHANNEL_ID}"
    )
    # A youtube.com link is stored against the configured base (one source either way).
    assert parse_source(f"https://www.youtube.com/channel/{CHANNEL_ID}", settings).url == (
        f"http://127.0.0.1:8001/feeds/videos.xml?channel_id={CHANNEL_ID}"
    )
    assert parse_source("https://www.reddit.com/r/python", settings).url == (
        "http://127.0.0.1:8002/r/python/.rss"
    )


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("bsky:", "`bsky:` is missing the Bluesky handle: write bsky:alice.bsky.social"),
        ("x:@", "`x:@` is missing the X handle: after x: give 1 to 15 letters"),
        ("x:", "`x:` is missing the X handle"),
        ("@@x", "`@@x` is not a handle: write @alice.bsky.social for Bluesky"),
        ("x:bad handle!", "`x:bad handle!` is not an X handle: after x: give 1 to 15"),
        ("x:waytoolonghandle_123", "is not an X handle"),
        ("bsky:bad_handle!", "is not a Bluesky handle"),
        ("@jack", "does not say which network: write x:jack for X, bsky:jack for Bluesky"),
        ("@a@b@c", "is not a handle"),
        ("@alice@bad host", "is not a Mastodon account: write @user@instance"),
        ("https://x.com/jack/status/123", "is not an X profile"),
        ("https://bsky.app/", "is not a Bluesky profile"),
        ("just words", "is not a feed URL or a source form feedhook knows"),
        ("ftp://example.com/feed", "is not a feed URL"),
        ("", "No source given"),
        ("https://example.com:99999/feed", "is not a valid URL"),
    ],
)
def test_malformed_forms_get_one_clear_sentence(typed: str, sentence: str) -> None:
    with pytest.raises(SourceFormError) as info:
        parse_source(typed)
    message = str(info.value)
    assert sentence in message
    assert "\n" not in message
    assert message.endswith(".")
    assert isinstance(info.value, ValueError)


def test_x_without_bridges_is_refused_with_how_to_configure_one() -> None:
    ref = parse_source("x:jack")
    with pytest.raises(SourceFormError, match=r"none is configured") as info:
        ensure_usable(ref, SourceSettings())
    assert '[sources.x] bridges = ["https://nitter.example"]' in str(info.value)
    ensure_usable(ref, SourceSettings(x_bridges=("https://nitter.example",)))
    ensure_usable(parse_source("bsky:alice"), SourceSettings())


# -- JSON Feed -------------------------------------------------------------------------

BASE = "https://harbour.example"


def built(feed: ParsedFeed) -> list[Item]:
    return [build_item(feed, entry) for entry in feed.entries]


def test_json_feed_1_1() -> None:
    feed = parse_json_feed(json_feed_11(BASE), url=f"{BASE}/feed-1.1.json", headers={})
    assert feed.info == FeedInfo(
        title="Harbour Notes",
        link=f"{BASE}/blog/",
        icon=f"{BASE}/icon.png",
        kind="json",
        self_url=f"{BASE}/feed-1.1.json",  # its feed_url: the WebSub topic
    )
    first, second = built(feed)
    assert first.key == "https://harbour.example/posts/2"
    assert first.link == f"{BASE}/blog/posts/2"  # relative to home_page_url
    assert first.title == "Second post"
    assert first.summary == f"Hello **world** and [a link]({BASE}/x)."
    assert first.image == f"{BASE}/img/hero.png"
    assert first.author == "Ann, Bob"
    assert first.categories == ("news", "boats")
    assert first.published == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert first.link_norm == f"{BASE}/blog/posts/2"

    assert second.key == "1"  # a numeric id is coerced to a string
    assert second.link == "https://elsewhere.example/story"  # external_url
    assert second.title == "Just text."
    assert second.summary.startswith("Just text.\nSecond line.")
    assert f"[Episode 1]({BASE}/audio/1.mp3)" in second.summary
    assert second.image == f"{BASE}/img/cover.jpg"  # the image attachment
    assert second.author == "Harbour Team"  # the feed's authors
    assert second.published == datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
    assert [e.key for e in feed.entries] == [first.key, second.key]
    assert feed.raw_refs == ((first.key, first.link_norm), (second.key, second.link_norm))


def test_json_feed_1_0() -> None:
    feed = parse_json_feed(json_feed_10(BASE), url=f"{BASE}/feed-1.0.json", headers={})
    assert feed.info.title == "Old Style"
    assert feed.info.icon == f"{BASE}/favicon.ico"
    (only,) = built(feed)  # the duplicate id is one item
    assert len(feed.raw_refs) == 2
    assert only.key == "a1"
    assert only.summary == "Body & soul"
    assert only.image == f"{BASE}/old/banner.jpg"
    assert only.author == "Solo Writer"  # 1.0's single author
    assert only.published == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "content_type", ["application/feed+json", "application/json", "text/plain", None]
)
def test_parse_feed_reads_json_feed_by_content(content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    feed = parse_feed(json_feed_11(BASE), url=f"{BASE}/feed.json", headers=headers)
    assert feed.info.kind == "json"
    assert len(feed.entries) == 2


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', {}, "malformed JSON"),
        (b"{oops", {"Content-Type": "application/feed+json"}, "malformed JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', {}, "has no items list"),
        (b'{"title": "x", "items": []}', {"Content-Type": "application/feed+json"}, "no jsonf"),
        (b'{"data": [1, 2]}', {"Content-Type": "application/json"}, "the document is JSON"),
    ],
)
def test_broken_json_feeds_say_what_is_wrong(
    body: bytes, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        parse_feed(body, url=f"{BASE}/feed.json", headers=headers)
    assert str(info.value).startswith("not a feed: ")


# -- X bridges: parsing ------------------------------------------------------------------


def account() -> Account:
    return Account(
        handle="jack",
        name="Jack Example",
        tweets=[
            Tweet(105, "Quoting this", quoted=("other", 77), minutes=5),
            Tweet(104, "I agree", reply_to="alice", minutes=4),
            Tweet(103, "Original words", author="orig", author_name="Orig Inal", minutes=3),
            Tweet(102, "Two pictures & a line\nsecond line", images=("AAA", "BBB"), minutes=2),
            Tweet(101, "Hello world", minutes=1),
        ],
    )


def test_nitter_rss_becomes_social_posts() -> None:
    base = "http://10.0.0.5:8080"
    feed = parse_bridge_feed(
        nitter_rss(base, account()), url=f"{base}/jack/rss", headers={}, handle="jack"
    )
    assert feed.info.title == "Jack Example (@jack)"
    assert feed.info.link == "https://x.com/jack"
    avatar = "https://pbs.twimg.com/profile_images/1/avatar_400x400.jpg"
    assert feed.info.icon == avatar
    posts = {item.key: item for item in built(feed)}
    assert list(posts) == ["x:105", "x:104", "x:103", "x:102", "x:101"]

    hello = posts["x:101"]
    assert hello.link == "https://x.com/jack/status/101"
    assert hello.title == "Hello world"
    assert hello.summary == "Hello world"
    assert hello.social == SocialPost(
        author_name="Jack Example",
        author_handle="@jack",
        author_avatar=avatar,
        author_url="https://x.com/jack",
        network="x",
    )
    pictures = posts["x:102"]
    assert pictures.title == "Two pictures & a line"
    assert pictures.social is not None
    assert pictures.social.images == (
        "https://pbs.twimg.com/media/AAA.jpg",
        "https://pbs.twimg.com/media/BBB.jpg",
    )
    assert pictures.image == "https://pbs.twimg.com/media/AAA.jpg"

    repost = posts["x:103"]
    assert repost.link == "https://x.com/orig/status/103"
    assert repost.title == "Original words"
    assert repost.social is not None
    assert (repost.social.kind, repost.social.context_handle) == ("repost", "@orig")
    assert repost.social.author_handle == "@jack"

    reply = posts["x:104"]
    assert reply.social is not None
    assert (reply.social.kind, reply.social.context_handle) == ("reply", "@alice")
    assert reply.title == "I agree"

    quote = posts["x:105"]
    assert quote.social is not None
    assert (quote.social.kind, quote.social.context_handle) == ("quote", "@other")
    # Links into the bridge point at x.com instead, the quote link's text too.
    assert quote.summary == (
        "Quoting this\n\n---\n\n[x.com/other/status/77](https://x.com/other/status/77)"
    )
    assert all("10.0.0.5" not in item.summary for item in posts.values())


def test_rsshub_rss_becomes_the_same_posts() -> None:
    base = "http://10.0.0.6:1200"
    nitter = built(
        parse_bridge_feed(
            nitter_rss("http://10.0.0.5", account()),
            url="http://10.0.0.5/jack/rss",
            headers={},
            handle="jack",
        )
    )
    rsshub_feed = parse_bridge_feed(
        rsshub_rss(base, account()), url=f"{base}/twitter/user/jack", headers={}, handle="jack"
    )
    assert rsshub_feed.info.title == "Jack Example (@jack)"
    rsshub = built(rsshub_feed)
    assert [(i.key, i.link, i.title) for i in rsshub] == [(i.key, i.link, i.title) for i in nitter]
    kinds = [
        (i.social.kind, i.social.context_name, i.social.context_handle) for i in rsshub if i.social
    ]
    assert kinds == [
        ("quote", None, "@other"),
        ("reply", None, "@alice"),
        ("repost", "Orig Inal", "@orig"),  # RSSHub names the original author
        ("post", None, None),
        ("post", None, None),
    ]
    assert rsshub[3].social is not None
    assert rsshub[3].social.images == (
        "https://pbs.twimg.com/media/AAA.jpg",
        "https://pbs.twimg.com/media/BBB.jpg",
    )


def test_at_most_four_images() -> None:
    many = Account(tweets=[Tweet(1, "pics", images=("A", "B", "C", "D", "E"))])
    feed = parse_bridge_feed(
        nitter_rss("http://n.example", many),
        url="http://n.example/jack/rss",
        headers={},
        handle="jack",
    )
    (post,) = built(feed)
    assert post.social is not None
    assert len(post.social.images) == 4


# -- fetching ------------------------------------------------------------------------------


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    settings = NetSettings(
        user_agent="feedhook-test", allowed_hosts=frozenset({"127.0.0.1"}), total_timeout=1.0
    )
    async with Fetcher(settings) as f:
        yield f


@pytest.fixture
async def services() -> AsyncIterator[Callable[..., Any]]:
    started: list[FakeServices] = []

    async def start(**kwargs: Any) -> FakeServices:
        fake = await FakeServices(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()


def resolver(*bridges: FakeServices, **settings: Any) -> SourceResolver:
    return SourceResolver(SourceSettings(x_bridges=tuple(b.base for b in bridges), **settings))


@pytest.mark.parametrize("failure", ["down", "slow"])
async def test_bridge_failover_remembers_the_bridge_that_worked(
    fetcher: Fetcher, services: Callable[..., Any], failure: str
) -> None:
    bad = await services(bridge=failure)
    good = await services(bridge="nitter")
    good.accounts["jack"] = account()
    sources = resolver(bad, good)
    fetched = await fetch_source(fetcher, "https://x.com/jack", sources=sources)
    assert fetched.source_url == "https://x.com/jack"  # never the bridge's URL
    assert fetched.moved_to is None
    assert fetched.kind == "x"
    assert fetched.result.url == good.url("/jack/rss")
    assert bad.hits == ["/jack/rss"]  # a 500 or a timeout: next bridge, not the other path
    feed = await parse_off_loop(fetched)
    assert [e.key for e in feed.entries] == ["x:105", "x:104", "x:103", "x:102", "x:101"]
    # The bridge that worked is tried first next time.
    assert sources.x_preferred == good.base
    await fetch_source(fetcher, "https://x.com/jack", sources=sources)
    assert bad.hits == ["/jack/rss"]
    assert good.hits == ["/jack/rss", "/jack/rss"]


async def test_nitter_404_means_rsshub_on_the_same_bridge(
    fetcher: Fetcher, services: Callable[..., Any]
) -> None:
    hub = await services(bridge="rsshub")
    hub.accounts["jack"] = account()
    sources = resolver(hub)
    fetched = await fetch_source(fetcher, "https://x.com/jack", sources=sources)
    assert hub.hits == ["/jack/rss", "/twitter/user/jack"]
    feed = await parse_off_loop(fetched)
    assert [e.key for e in feed.entries][-1] == "x:101"
    # Known as RSSHub now: straight to its path.
    await fetch_source(fetcher, "https://x.com/jack", sources=sources)
    assert hub.hits[2:] == ["/twitter/user/jack"]


async def test_no_bridge_answering_is_one_fetch_error(
    fetcher: Fetcher, services: Callable[..., Any]
) -> None:
    down = await services(bridge="down")
    unknown = await services(bridge="nitter")
    with pytest.raises(FetchError, match="no X bridge could fetch @nobody"):
        await fetch_source(fetcher, "https://x.com/nobody", sources=resolver(down, unknown))
    # Every bridge up and saying 404 on both paths: it is the handle that is wrong.
    with pytest.raises(FetchError, match=r"no X bridge knows @nobody .* check the handle"):
        await fetch_source(fetcher, "https://x.com/nobody", sources=resolver(unknown))
    with pytest.raises(FetchError) as info:
        await fetch_source(fetcher, "https://x.com/jack", sources=resolver())
    assert str(info.value) == NO_BRIDGES


async def test_conditional_get_through_a_bridge(
    fetcher: Fetcher, services: Callable[..., Any]
) -> None:
    bridge = await services(bridge="nitter")
    sources = resolver(bridge)
    first = await fetch_source(fetcher, "https://x.com/jack", sources=sources)
    again = await fetch_source(
        fetcher, "https://x.com/jack", etag=first.result.etag, sources=sources
    )
    assert again.result.status == 304


async def test_youtube_handle_page_leads_to_the_channel_feed(
    fetcher: Fetcher, services: Callable[..., Any]
) -> None:
    yt = await services()
    settings = SourceSettings(youtube_base=yt.base)
    ref = parse_source("https://www.youtube.com/@SomeName", settings)
    assert ref.url == yt.url("/@SomeName")
    fetched = await fetch_source(fetcher, ref.url, sources=SourceResolver(settings))
    feed_url = yt.url(f"/feeds/videos.xml?channel_id={CHANNEL_ID}")
    assert fetched.source_url == feed_url == fetched.moved_to
    assert kind_of(feed_url, settings).kind == "youtube"
    feed = await parse_off_loop(fetched)
    assert feed.info.title == "Example Channel"
    newest = build_item(feed, feed.entries[0])
    assert newest.key == "yt:video:vidAAAAAAA1"
    assert newest.title == "Video 1 & more"
    assert newest.link == "https://www.youtube.com/watch?v=vidAAAAAAA1"
    assert newest.image == "https://i1.ytimg.com/vi/vidAAAAAAA1/hqdefault.jpg"
    playlist = parse_source(f"https://www.youtube.com/playlist?list={PLAYLIST_ID}", settings)
    fetched = await fetch_source(fetcher, playlist.url)
    assert len((await parse_off_loop(fetched)).entries) == 2


async def test_reddit_subreddit_and_user(fetcher: Fetcher, services: Callable[..., Any]) -> None:
    fake = await services()
    settings = SourceSettings(reddit_base=fake.base)
    for typed, path in (
        ("https://www.reddit.com/r/python", "/r/python/.rss"),
        ("https://old.reddit.com/u/spez/", "/user/spez/.rss"),
    ):
        ref = parse_source(typed, settings)
        assert (ref.kind, ref.url) == ("reddit", fake.url(path))
        fetched = await fetch_source(fetcher, ref.url, sources=SourceResolver(settings))
        feed = await parse_off_loop(fetched)
        (post,) = built(feed)
        assert post.key == "t3_abc123"
        assert post.title == "Tried 3.14?"
        assert post.summary.startswith("Has anyone tried **3.14**?")
        assert post.image == "https://b.thumbs.redditmedia.com/abc.jpg"


async def test_json_feed_from_a_server(fetcher: Fetcher, services: Callable[..., Any]) -> None:
    fake = await services()
    for path in ("/feed-1.1.json", "/feed-1.0.json"):
        fetched = await fetch_source(fetcher, fake.url(path))
        feed = await parse_off_loop(fetched)
        assert feed.info.kind == "json"
        assert all(isinstance(e.item, Item) for e in feed.entries)


async def test_a_page_linking_only_a_json_feed(fetcher: Fetcher, feed_server: FeedServer) -> None:
    feed_server.docs["/blog/"] = Doc(
        b'<html><head><link rel="alternate" type="application/feed+json" href="feed.json">'
        b"</head><body>blog</body></html>",
        content_type="text/html",
    )
    feed_server.docs["/blog/feed.json"] = Doc(json_feed_11(BASE), content_type="application/json")
    fetched = await fetch_source(fetcher, feed_server.url("/blog/"))
    assert fetched.source_url == feed_server.url("/blog/feed.json")
    feed = await parse_off_loop(fetched)
    assert (feed.info.title, len(feed.entries)) == ("Harbour Notes", 2)


async def test_the_poller_reads_json_feeds(
    store: Store, fetcher: Fetcher, feed_server: FeedServer
) -> None:
    doc = json.loads(json_feed_10(BASE))
    feed_server.docs["/f.json"] = Doc(json.dumps(doc).encode(), content_type="application/json")
    await store.sync_config_feeds(
        [ConfigFeed(feed_server.url("/f.json"), WebhookTarget(1, "token"))], now=T0
    )
    now = [T0]
    poller = Poller(store, fetcher, PollSettings(jitter=0.0), clock=lambda: now[0], rng=lambda: 0.5)
    (first,) = await poller.poll_due()
    assert (first.status, first.new_items) == ("new", 1)
    doc["items"].insert(0, {"id": "a2", "url": f"{BASE}/old/a2", "content_text": "Fresh"})
    feed_server.docs["/f.json"] = Doc(json.dumps(doc).encode(), content_type="application/json")
    now[0] += timedelta(minutes=11)
    (second,) = await poller.poll_due()
    assert (second.status, second.new_items, second.queued) == ("new", 1, 1)
    assert [key for _, key, _ in await store.outbox_items()] == ["a2"]


# -- Bluesky and Mastodon fetch plans (stand-in parsers; the real ones parse the JSON) ------


def _stand_in_feed(body: bytes, profile_url: str, note: str = "") -> ParsedFeed:
    posts = json.loads(body)
    entries = tuple(
        ParsedEntry(
            key=str(p["id"]),
            link=f"{profile_url}/post/{p['id']}",
            link_norm=None,
            published=None,
            raw=None,
            item=Item(str(p["id"]), p["text"] + note, None, p["text"], None, None, None),
        )
        for p in posts
    )
    return ParsedFeed(
        info=FeedInfo(profile_url, profile_url, None, "json"),
        entries=entries,
        base_url=profile_url,
        raw_refs=tuple((e.key, None) for e in entries),
    )


def stand_in_parsers(calls: list[dict[str, Any]]) -> SocialParsers:
    def author_feed(
        body: bytes, *, profile_url: str, include_reposts: bool, include_replies: bool
    ) -> ParsedFeed:
        calls.append(
            {"profile_url": profile_url, "reposts": include_reposts, "replies": include_replies}
        )
        return _stand_in_feed(body, profile_url)

    def account_id(body: bytes) -> str:
        return str(json.loads(body)["id"])

    def statuses(body: bytes, *, profile_url: str) -> ParsedFeed:
        calls.append({"profile_url": profile_url})
        return _stand_in_feed(body, profile_url)

    return SocialParsers(author_feed, account_id, statuses)


@pytest.fixture
async def social_api() -> AsyncIterator[tuple[str, list[str], dict[str, bool]]]:
    hits: list[str] = []
    state = {"locked": False}
    posts = json.dumps([{"id": 2, "text": "second"}, {"id": 1, "text": "first"}])

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        if request.path == "/xrpc/app.bsky.feed.getAuthorFeed":
            return web.json_response(text=posts)
        if request.path.startswith("/api/v1/") and state["locked"]:
            return web.json_response({"error": "locked"}, status=403)
        if request.path == "/api/v1/accounts/lookup":
            return web.json_response({"id": "42", "acct": request.query["acct"]})
        if request.path == "/api/v1/accounts/42/statuses":
            return web.json_response(text=posts)
        if request.path == "/@alice.rss":
            body = (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>alice</title>'
                "<item><guid>https://m.example/@alice/9</guid><title>via rss</title></item>"
                "</channel></rss>"
            )
            return web.Response(text=body, content_type="application/rss+xml")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner, base = await start_app(app)
    yield base, hits, state
    await runner.cleanup()


async def test_bluesky_fetch_plan(
    fetcher: Fetcher, social_api: tuple[str, list[str], dict[str, bool]]
) -> None:
    base, hits, _ = social_api
    calls: list[dict[str, Any]] = []
    sources = SourceResolver(
        SourceSettings(bluesky_api_base=base, bluesky_include_replies=True),
        parsers=stand_in_parsers(calls),
    )
    ref = parse_source("bsky:alice")
    fetched = await fetch_source(fetcher, ref.url, sources=sources)
    assert hits == [
        "/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social&limit=30",
    ]
    assert fetched.source_url == "https://bsky.app/profile/alice.bsky.social"
    feed = await parse_off_loop(fetched)
    assert [e.key for e in feed.entries] == ["2", "1"]
    assert calls == [
        {
            "profile_url": "https://bsky.app/profile/alice.bsky.social",
            "reposts": True,
            "replies": True,
        }
    ]


async def test_mastodon_fetch_plan_caches_the_account_and_falls_back_to_rss(
    fetcher: Fetcher, social_api: tuple[str, list[str], dict[str, bool]]
) -> None:
    base, hits, state = social_api
    calls: list[dict[str, Any]] = []
    sources = SourceResolver(parsers=stand_in_parsers(calls))
    ref = parse_source(f"{base}/@alice")
    assert (ref.kind, ref.url) == ("mastodon", f"{base}/@alice")
    fetched = await fetch_source(fetcher, ref.url, sources=sources)
    feed = await parse_off_loop(fetched)
    assert [e.key for e in feed.entries] == ["2", "1"]
    assert calls == [{"profile_url": f"{base}/@alice"}]
    await fetch_source(fetcher, ref.url, sources=sources)
    assert hits == [
        "/api/v1/accounts/lookup?acct=alice",
        "/api/v1/accounts/42/statuses?limit=30",
        "/api/v1/accounts/42/statuses?limit=30",  # the id is looked up once
    ]
    state["locked"] = True
    fetched = await fetch_source(fetcher, ref.url, sources=sources)
    assert hits[-2:] == ["/api/v1/accounts/42/statuses?limit=30", "/@alice.rss"]
    assert fetched.source_url == f"{base}/@alice"
    feed = await parse_off_loop(fetched)
    assert [e.key for e in feed.entries] == ["https://m.example/@alice/9"]


# -- the poller: one post through two bridges is one item -------------------------------------


async def test_the_same_post_via_two_bridges_is_posted_once(
    store: Store, fetcher: Fetcher, services: Callable[..., Any]
) -> None:
    nitter = await services(bridge="nitter")
    hub = await services(bridge="rsshub")
    jack = account()
    nitter.accounts["jack"] = hub.accounts["jack"] = jack
    url = parse_source("x:@Jack").url
    await store.sync_config_feeds([ConfigFeed(url, WebhookTarget(1, "token"))], now=T0)
    now = [T0]
    sources = resolver(nitter, hub)
    poller = Poller(
        store,
        fetcher,
        PollSettings(interval=600.0, jitter=0.0),
        clock=lambda: now[0],
        rng=lambda: 0.5,
        sources=sources,
    )
    (first,) = await poller.poll_due()
    assert (first.status, first.new_items, first.queued) == ("new", 5, 0)  # first poll
    assert nitter.hits == ["/jack/rss"]
    assert hub.hits == []

    # Nitter goes down; RSSHub serves the same posts and one new one.
    nitter.bridge = "down"
    jack.tweets.insert(0, Tweet(106, "Brand new", minutes=6))
    now[0] += timedelta(minutes=11)
    (second,) = await poller.poll_due()
    assert (second.status, second.new_items, second.queued) == ("new", 1, 1)
    assert hub.hits == ["/jack/rss", "/twitter/user/jack"]
    assert [key for _, key, _ in await store.outbox_items()] == ["x:106"]
    assert sources.x_preferred == hub.base

    # And back: the bridge order changes again, nothing is posted twice.
    nitter.bridge = "nitter"
    sources.x_preferred = nitter.base
    now[0] += timedelta(minutes=11)
    (third,) = await poller.poll_due()
    assert (third.status, third.new_items) == ("unchanged", 0)
    assert [key for _, key, _ in await store.outbox_items()] == ["x:106"]

    # The social post is stored with the item.
    async with store.db.read() as conn:
        social = (
            await conn.execute(select(items.c.social).where(items.c.item_key == "x:103"))
        ).scalar_one()
    assert social["kind"] == "repost"
    assert social["context_handle"] == "@orig"


async def test_social_post_round_trips_through_storage(store: Store) -> None:
    await store.sync_config_feeds(
        [ConfigFeed("https://x.com/jack", WebhookTarget(1, "tok"), backfill=1)], now=T0
    )
    (due,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    post = SocialPost(
        author_name="Jack",
        author_handle="@jack",
        author_avatar="https://pbs.twimg.com/a.jpg",
        author_url="https://x.com/jack",
        images=("https://pbs.twimg.com/1.jpg", "https://pbs.twimg.com/2.jpg"),
        kind="quote",
        context_name="Other",
        context_handle="@other",
        network="x",
    )
    plain = Item("x:1", "t", "https://x.com/jack/status/1", "s", "Jack", T0, None)
    social = Item("x:2", "t", "https://x.com/jack/status/2", "s", "Jack", T0, None, social=post)
    outcome = PollOutcome(due.id, T0, T0 + timedelta(minutes=10), ok=True, keep_validators=False)
    await store.record_items(
        due.id, [plain, social], to_queue=set(), outcome=outcome, meta=None, first_poll=True
    )
    job = await store.claim_deliveries(
        now=T0 + timedelta(seconds=1), limit=10, batch=10, lease=timedelta(minutes=1)
    )
    (delivery,) = job
    (entry,) = delivery.entries
    assert entry.item.social == post
    assert entry.item == social
    async with store.db.read() as conn:  # a plain item stores SQL NULL
        plain_keys = (
            await conn.execute(select(items.c.item_key).where(items.c.social.is_(None)))
        ).scalars()
        assert list(plain_keys) == ["x:1"]


# -- config, settings ---------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


HOOK = "https://discord.com/api/webhooks/1/token"


def test_config_feeds_take_any_form_and_store_the_canonical_url(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f"""
[sources.x]
bridges = ["http://nitter.lan:8080/", "https://rsshub.example"]
[sources.youtube]
base_url = "https://yt.example"
[[feeds]]
url = "bsky:alice"
webhook = "{HOOK}"
[[feeds]]
url = "x:@Jack"
webhook = "{HOOK}"
[[feeds]]
url = "https://www.youtube.com/channel/{CHANNEL_ID}"
webhook = "{HOOK}"
""",
    )
    config = load_config(path, environ={})
    assert [f.url for f in config.feeds] == [
        "https://bsky.app/profile/alice.bsky.social",
        "https://x.com/jack",
        f"https://yt.example/feeds/videos.xml?channel_id={CHANNEL_ID}",
    ]
    assert config.sources.x.bridges == ("http://nitter.lan:8080", "https://rsshub.example")
    # Bridges are usually on the LAN: they pass the SSRF guard like polling.allowed_hosts.
    assert {"nitter.lan", "rsshub.example"} <= net_settings(config).allowed_hosts


@pytest.mark.parametrize(
    ("feed_url", "extra", "expected"),
    [
        ("x:jack", "", "feeds[0].url: X has no public feed"),
        ("x:@", '[sources.x]\nbridges = ["https://n.example"]\n', "feeds[0].url: `x:@` is missing"),
        ("bsky:", "", "feeds[0].url: `bsky:` is missing the Bluesky handle"),
    ],
)
def test_config_source_errors_are_one_line_naming_the_key(
    tmp_path: Path, feed_url: str, extra: str, expected: str
) -> None:
    path = _config(tmp_path, f'{extra}[[feeds]]\nurl = "{feed_url}"\nwebhook = "{HOOK}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"config error in {path}: {expected}")
    assert "\n" not in message
    if feed_url == "x:jack":
        assert '[sources.x] bridges = ["https://nitter.example"]' in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[sources.x]\nbridges = ["ftp://n"]\n', "sources.x.bridges: expected an http(s) base URL"),
        ("[sources.bluesky]\ninclude_replies = 3\n", "sources.bluesky.include_replies"),
        ('[sources.reddit]\nbase = "x"\n', "unknown key 'sources.reddit.base'"),
        (  # the bad bridge is the problem, not the X feed that needs one
            f'[sources.x]\nbridges = ["ftp://n"]\n[[feeds]]\nurl = "x:jack"\nwebhook = "{HOOK}"\n',
            "sources.x.bridges: expected an http(s) base URL",
        ),
    ],
)
def test_sources_settings_are_validated(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="config error") as info:
        load_config(_config(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_default_source_settings() -> None:
    settings = Config().sources.settings()
    assert settings == SourceSettings()
    assert settings.bluesky_api_base == "https://public.api.bsky.app"
    assert (settings.bluesky_include_reposts, settings.bluesky_include_replies) == (True, False)
