"""Feed parsing: fixtures in tests/fixtures/feeds/ -> ParsedFeed / Item."""

from __future__ import annotations

import io
import threading
import time
import xml.sax
import xml.sax.handler
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import feedparser.api
import pytest
from bs4 import BeautifulSoup, Tag
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from bot.models import FeedInfo, Item
from bot.sources.feed import (
    ParsedFeed,
    ParseError,
    _converter,
    _ParentLookupTag,
    build_item,
    find_feed_links,
    html_to_markdown,
    looks_like_html,
    normalise_link,
    parse_feed,
)
from bot.sources.saxdriver import BufferedTextExpatParser

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(name: str, url: str, headers: dict[str, str] | None = None) -> ParsedFeed:
    return parse_feed(load(name), url=url, headers=headers or {})


def items(feed: ParsedFeed) -> list[Item]:
    counts = Counter(e.link_norm for e in feed.entries if e.link_norm)
    return [
        build_item(feed, e, link_is_unique=counts[e.link_norm or ""] <= 1) for e in feed.entries
    ]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --------------------------------------------------------------------------- RSS 2.0


def test_rss20_feed_info() -> None:
    feed = parse("rss20.xml", "https://harbour.example/feed.xml")
    assert feed.info == FeedInfo(
        title="Harbour Lights & Co.",
        link="https://harbour.example/",
        icon="https://harbour.example/img/logo.png",
        kind="rss",
    )
    assert feed.base_url == "https://harbour.example/feed.xml"
    assert feed.author == "Mara Quill"


def test_rss20_items() -> None:
    feed = parse("rss20.xml", "https://harbour.example/feed.xml")
    assert items(feed) == [
        Item(
            key="harbour-post-7",
            title="Tides & Times: the captain\u2019s log",
            link="https://harbour.example/posts/tides?utm_source=rss&id=7#top",
            summary=(
                "The **spring tide** arrives early. Read the "
                "[tide charts](https://harbour.example/charts/spring.html) first.\n\n"
                "After the image.\n\n"
                "Fish & chips cost <5 coins — a\\_bargain \\*really\\*.\n\n"
                "- one\n- two"
            ),
            author="Ada Skipper",
            published=utc(2025, 3, 4, 8, 30),
            image="https://harbour.example/media/tide-large.jpg",  # enclosure beats <img>
            categories=("Boats", "Weather"),
            link_norm="https://harbour.example/posts/tides?id=7",
        ),
        Item(
            key="https://harbour.example/posts/aboard",
            title="Everyone aboard",
            link="https://harbour.example/posts/aboard",
            summary="Calling @everyone and @here: the ferry leaves at *noon*.",
            author="Ada Skipper",
            published=utc(2025, 3, 5, 18, 0),
            image="https://cdn.harbour.example/thumbs/aboard.jpg",  # media:thumbnail
            categories=(),
            link_norm="https://harbour.example/posts/aboard",
        ),
        Item(
            key="https://harbour.example/gallery/nets/",
            title="Gallery: nets",
            link="https://harbour.example/gallery/nets/",
            summary="Photos of nets.",
            author="Mara Quill",  # the channel's managingEditor
            published=None,
            image="https://harbour.example/gallery/nets.jpg",  # media:content, gravatar skipped
            categories=(),
            link_norm="https://harbour.example/gallery/nets",
        ),
        Item(
            key="harbour-post-9",
            title="Inline picture only",
            link="https://harbour.example/posts/picture",
            summary=(
                "## Heading\n\n**Small heading**\n\nLine one\nline two\n\n"
                "bad link mail [crew](https://harbour.example/posts/picture#crew)"
            ),
            author="Mara Quill",
            published=utc(2025, 3, 6, 12, 15),
            image="https://harbour.example/pics/boat.png",  # data: URI skipped, relative resolved
            categories=(),
            link_norm="https://harbour.example/posts/picture",
        ),
    ]


def test_rss20_drops_script_style_iframe_and_images_from_text() -> None:
    feed = parse("rss20.xml", "https://harbour.example/feed.xml")
    summary = build_item(feed, feed.entries[0]).summary
    for unwanted in ("alert", "color: red", "player text", "tide.jpg", "![", "\n\n\n"):
        assert unwanted not in summary


def test_the_converters_parent_lookup_answers_like_beautifulsoup() -> None:
    """The converter's tags answer find_parent("name") by walking up (see
    _ParentLookupTag); for every tag and name it must find what bs4 itself finds."""
    html = (
        "<div><pre><code>x<b>y</b></code></pre><p>a <em>b <b>c</b></em></p>"
        "<ul><li><pre>z</pre></li></ul></div><b>out</b>"
    )
    ours = BeautifulSoup(html, "html.parser", element_classes={Tag: _ParentLookupTag})
    plain = BeautifulSoup(html, "html.parser")
    ours_tags, plain_tags = ours.find_all(True), plain.find_all(True)
    assert all(isinstance(tag, _ParentLookupTag) for tag in ours_tags)
    for mine, theirs in zip(ours_tags, plain_tags, strict=True):
        for name in ("pre", "code", "em", "li", "div", "table", "[document]"):
            found, expected = mine.find_parent(name), theirs.find_parent(name)
            assert (found is None) == (expected is None), (mine, name)
            if found is not None and expected is not None:
                assert found.decode() == expected.decode()


class _TextRecorder(xml.sax.handler.ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def characters(self, content: str) -> None:
        self.texts.append(content)


def test_feedparser_gets_an_elements_text_in_one_piece() -> None:
    """Plain expat reports text in a new callback at each entity (a hundred per escaped
    HTML description); the driver feedparser is given buffers it into one."""
    parser = xml.sax.make_parser(feedparser.api.PREFERRED_XML_PARSERS)
    assert isinstance(parser, BufferedTextExpatParser)
    recorder = _TextRecorder()
    parser.setContentHandler(recorder)
    parser.parse(io.BytesIO(b"<d>&lt;p&gt;fish &amp;amp; chips&lt;/p&gt;\nline two</d>"))
    assert recorder.texts == ["<p>fish &amp; chips</p>\nline two"]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
@pytest.mark.parametrize("cut", [None, 0.5])
def test_buffered_text_parses_like_plain_expat(
    name: str, cut: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fixture, whole and cut off in the middle (the strict parse fails and the
    loose parser takes over): feedparser's result is the same with plain expat."""
    body = load(name)
    if cut is not None:
        body = body[: int(len(body) * cut)]

    def result() -> str:
        r = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
        fields = ("feed", "entries", "bozo", "version", "encoding", "namespaces")
        return repr([r.get(f) for f in fields] + [repr(r.get("bozo_exception"))])

    buffered = result()
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", [])
    assert not isinstance(xml.sax.make_parser([]), BufferedTextExpatParser)
    assert buffered == result()


def test_the_reused_converter_carries_nothing_from_one_item_to_the_next() -> None:
    """One converter per thread is reused: each item gets its own base, page and image."""
    first = html_to_markdown(
        '<img src="/a.png"><a href="/x">x</a> <a href="#top">top</a>',
        base="https://one.example/feed",
        page="https://one.example/post",
    )
    second = html_to_markdown(
        '<a href="/y">y</a> <a href="#top">top</a>', base="https://two.example/"
    )
    assert first == (
        "[x](https://one.example/x) [top](https://one.example/post#top)",
        "https://one.example/a.png",
    )
    assert second == ("[y](https://two.example/y) top", None)


def test_threads_convert_with_converters_of_their_own() -> None:
    def convert(n: int) -> tuple[str, str | None]:
        return html_to_markdown(
            f'<p><img src="/{n}.png"><a href="/p/{n}">post {n}</a></p>' * 20,
            base=f"https://s{n}.example/",
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(convert, range(40)))
    for n, (markdown, image) in enumerate(results):
        assert image == f"https://s{n}.example/{n}.png"
        assert markdown.count(f"[post {n}](https://s{n}.example/p/{n})") == 20


def test_each_thread_has_one_converter_of_its_own() -> None:
    both_here = threading.Barrier(2)

    def converters() -> tuple[object, object]:
        both_here.wait()  # the two threads are alive at once: no reuse of a finished one
        return _converter(), _converter()

    with ThreadPoolExecutor(max_workers=2) as pool:
        (a1, a2), (b1, b2) = pool.map(lambda _: converters(), range(2))
    assert a1 is a2
    assert b1 is b2
    assert a1 is not b1


def test_the_converters_per_tag_cache_stays_bounded() -> None:
    """A feed can invent any number of tag names; the thread's converter outlives it."""
    invented = "".join(f"<x-tag{i}>t</x-tag{i}>" for i in range(1000))
    for _ in range(3):
        html_to_markdown(invented, base="https://a.example/")
        html_to_markdown("<p>next item</p>", base="https://a.example/")
        assert len(vars(_converter())["convert_fn_cache"]) <= 256


def test_buffered_text_parses_like_plain_expat_past_the_buffer_and_around_markup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Text longer than the 64 KiB buffer, comments, CDATA, processing instructions and
    XHTML content: feedparser's result is the same with plain expat."""
    long_text = "fish &amp; chips &lt;b&gt;x&lt;/b&gt; " * 4000  # ~150 KB of escaped text
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>T<!-- c -->itle</title>'
        '<entry><id>1</id><title type="html"><![CDATA[<b>bold</b>]]> &amp; more</title>'
        f'<summary type="html">{long_text}</summary>'
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">\n  <p>a<?pi x?>b'
        "<!-- note --> c &amp; d</p>\n</div></content></entry></feed>"
    ).encode()

    def result() -> str:
        r = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
        return repr([r.get("feed"), r.get("entries"), r.get("bozo"), r.get("version")])

    buffered = result()
    assert "fish & chips" in buffered
    assert "<b>bold</b> & more" in buffered
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", [])
    assert buffered == result()


def test_inline_image_skips_tracking_pixels() -> None:
    body = load("rss20.xml").replace(
        b'<media:content url="/gallery/nets.jpg" medium="image"/>', b""
    )
    feed = parse_feed(body, url="https://harbour.example/feed.xml", headers={})
    assert build_item(feed, feed.entries[2]).image == "https://cdn.harbour.example/nets-small.jpg"


# --------------------------------------------------------------------------- other formats


def test_rss091() -> None:
    feed = parse("rss091.xml", "http://lighthouse.example.net/rss.xml")
    assert feed.info == FeedInfo(
        title="Lighthouse Keeper",
        link="http://lighthouse.example.net/",
        icon="http://lighthouse.example.net/lamp.gif",
        kind="rss",
    )
    assert items(feed) == [
        Item(
            key="http://lighthouse.example.net/log/1",
            title="Lamp lit",
            link="http://lighthouse.example.net/log/1",
            summary="The lamp was lit at dusk.",
            author=None,
            published=None,
            image=None,
            link_norm="https://lighthouse.example.net/log/1",
        ),
        Item(
            key="http://lighthouse.example.net/log/2",
            title="Fog horn at the café",  # &eacute; from the RSS 0.91 DTD
            link="http://lighthouse.example.net/log/2",
            summary="Fog rolled in & the horn sounded.",
            author=None,
            published=None,
            image=None,
            link_norm="https://lighthouse.example.net/log/2",
        ),
    ]


def test_rss10_rdf() -> None:
    feed = parse("rss10.rdf", "https://orchard.example/index.rdf")
    assert feed.info == FeedInfo(
        title="Orchard Bulletin", link="https://orchard.example/", icon=None, kind="rdf"
    )
    assert items(feed) == [
        Item(
            key="https://orchard.example/b/1",
            title="Apples ripen",
            link="https://orchard.example/b/1",
            summary="Early **russets** are ready.",
            author="Pip Orchard",
            published=utc(2024, 9, 15, 7, 45),
            image=None,
            categories=("harvest",),
            link_norm="https://orchard.example/b/1",
        ),
        Item(
            key="https://orchard.example/b/2",
            title="Pears next",
            link="https://orchard.example/b/2",
            summary="Patience.",
            author=None,
            published=utc(2024, 9, 20, 16, 0),
            image=None,
            link_norm="https://orchard.example/b/2",
        ),
    ]


def test_atom03() -> None:
    feed = parse("atom03.xml", "http://mill.example.com/atom.xml")
    assert feed.info == FeedInfo(
        title="Old Mill Diary", link="http://mill.example.com/", icon=None, kind="atom"
    )
    assert items(feed) == [
        Item(
            key="tag:mill.example.com,2004:grinding",
            title="Grinding season",
            link="http://mill.example.com/2004/05/grinding",
            summary="The *wheel* turns.",
            author="The Miller",
            published=utc(2004, 5, 1, 14, 0),  # <issued> wins over <modified>
            image=None,
            link_norm="https://mill.example.com/2004/05/grinding",
        ),
        Item(
            key="tag:mill.example.com,2004:quiet",
            title="Quiet week",
            link="http://mill.example.com/2004/04/quiet",
            summary="Nothing to report.",
            author="The Miller",
            published=utc(2004, 4, 20, 12, 0),  # only <modified>
            image=None,
            link_norm="https://mill.example.com/2004/04/quiet",
        ),
    ]


def test_atom10_xml_base_and_relative_links() -> None:
    feed = parse("atom10.xml", "https://blog.example.org/feed")
    assert feed.info == FeedInfo(
        title="Lantern Journal",  # type="html" title made plain text
        link="https://blog.example.org/journal/",
        icon="https://blog.example.org/favicon.ico",
        kind="atom",
        self_url="https://blog.example.org/journal/atom.xml",  # rel="self": the WebSub topic
    )
    assert items(feed) == [
        Item(
            key="tag:blog.example.org,2025:1",
            title="Relative everything",
            link="https://blog.example.org/journal/posts/relative",
            summary=(
                "See [the first picture](https://static.example.net/assets/pics/one.html) "
                "and the [comments](https://blog.example.org/journal/posts/relative#comments)."
            ),
            author="Iris Lantern",  # feed-level author
            published=utc(2025, 1, 9, 6, 0),
            image="https://static.example.net/assets/pics/one.png",  # content's own xml:base
            categories=("notes", "web"),
            link_norm="https://blog.example.org/journal/posts/relative",
        ),
        Item(
            key="https://blog.example.org/archive/old-post",  # no <id>: the link
            title="Old post, no id",
            link="https://blog.example.org/archive/old-post",  # entry xml:base="/archive/"
            summary="An **archived** post, see [about](https://blog.example.org/about).",
            author="Guest Writer",
            published=utc(2024, 12, 31, 23, 59, 59),  # only <updated>
            image=None,
            link_norm="https://blog.example.org/archive/old-post",
        ),
        Item(
            key="tag:blog.example.org,2025:3",
            title="Plain *stars* & <angle> text, kept as is.",  # no title: summary's start
            link="https://blog.example.org/notes/3",
            summary="Plain *stars* & <angle> text,\nkept   as is.",  # text/plain: untouched
            author="Iris Lantern",
            published=utc(2025, 1, 11, 0, 0),
            image=None,
            link_norm="https://blog.example.org/notes/3",
        ),
    ]


# --------------------------------------------------------------------------- keys and links


def test_key_fallbacks_and_duplicates() -> None:
    feed = parse("keys.xml", "https://keys.example/feed")
    keys = [e.key for e in feed.entries]
    assert keys[:3] == ["k-1", "k-2", "https://keys.example/items/three/"]
    assert keys[3].startswith("sha256:")
    assert len(keys[3]) == len("sha256:") + 64
    assert keys[4].startswith("sha256:")
    assert keys[5:] == ["k-7", "https://keys.example/blank-guid"]  # blank guid -> link
    assert "Duplicate of k-1" not in [build_item(feed, e).title for e in feed.entries]
    assert len(set(keys)) == len(keys)


def test_hash_keys_are_stable_across_parses_and_urls() -> None:
    first = parse("keys.xml", "https://keys.example/feed")
    second = parse("keys.xml", "https://mirror.example/other", {"Content-Type": "text/xml"})
    hashed = [e.key for e in first.entries if e.key.startswith("sha256:")]
    assert len(hashed) == 2
    assert hashed == [e.key for e in second.entries if e.key.startswith("sha256:")]


def test_entry_without_title_uses_start_of_summary() -> None:
    feed = parse("keys.xml", "https://keys.example/feed")
    item = build_item(feed, feed.entries[4])
    assert item.title == (
        "No title at all: the first words of this fairly long description become the…"
    )
    assert item.link is None
    assert item.link_norm is None


def test_untitled_entry() -> None:
    body = b"""<rss version="2.0"><channel><title>T</title>
      <item><guid>g</guid></item></channel></rss>"""
    feed = parse_feed(body, url="https://t.example/", headers={})
    assert build_item(feed, feed.entries[0]).title == "(untitled)"


def test_shared_links_are_not_used_as_duplicate_guard() -> None:
    feed = parse("keys.xml", "https://keys.example/feed")
    first, second = feed.entries[0], feed.entries[1]
    assert first.link_norm == second.link_norm == "https://keys.example/shared"
    assert build_item(feed, first, link_is_unique=False).link_norm is None
    assert build_item(feed, first).link_norm == "https://keys.example/shared"
    assert [i.link_norm for i in items(feed)][:2] == [None, None]


def test_absurd_and_far_future_dates_are_dropped() -> None:
    feed = parse("keys.xml", "https://keys.example/feed")
    assert feed.entries[0].published == utc(2025, 1, 6, 10, 0)
    assert feed.entries[5].published is None  # 1970-01-01
    future = (datetime.now(UTC) + timedelta(days=800)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    body = f"""<rss version="2.0"><channel><title>T</title><item><guid>a</guid>
      <pubDate>{future}</pubDate></item></channel></rss>""".encode()
    assert parse_feed(body, url="https://t.example/", headers={}).entries[0].published is None


def test_long_keys_are_hashed() -> None:
    guid = "x" * 600
    body = f"""<rss version="2.0"><channel><title>T</title>
      <item><guid isPermaLink="false">{guid}</guid></item></channel></rss>""".encode()
    (entry,) = parse_feed(body, url="https://t.example/", headers={}).entries
    assert entry.key.startswith("sha256:")
    assert len(entry.key) == 71


def test_content_location_is_the_base() -> None:
    feed = parse(
        "keys.xml",
        "https://keys.example/feed",
        {"Content-Location": "https://cdn.keys.example/mirror/feed.xml"},
    )
    assert feed.base_url == "https://cdn.keys.example/mirror/feed.xml"
    assert feed.entries[2].link == "https://cdn.keys.example/items/three/"


def test_relative_guid_key_does_not_depend_on_the_feed_url() -> None:
    body = b"""<rss version="2.0"><channel><title>T</title>
      <item><guid>12345</guid><link>/p/1</link></item></channel></rss>"""
    a = parse_feed(body, url="https://a.example/feed", headers={}).entries[0]
    b = parse_feed(body, url="https://b.example/rss", headers={}).entries[0]
    assert a.key == b.key == "12345"
    assert (a.link, b.link) == ("https://a.example/p/1", "https://b.example/p/1")


# --------------------------------------------------------------------------- encodings


def test_iso_8859_1_declared_in_prolog() -> None:
    feed = parse("iso-8859-1.xml", "https://patisserie.example/rss", {"Content-Type": "text/xml"})
    assert feed.info.title == "Pâtisserie Française"
    (item,) = items(feed)
    assert item.title == "Crème brûlée à la façon de grand-mère"
    assert item.summary == "Ärger über Öl? Nein: «beurre» ½ livre."
    assert item.categories == ("Desserts sucrés",)
    assert item.published == utc(2025, 2, 1, 11, 0)


def test_windows_1251_declared_only_in_http_header() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict({"Content-Type": "application/rss+xml; charset=windows-1251"})
    )
    feed = parse_feed(load("windows-1251.xml"), url="https://novosti.example/rss", headers=headers)
    assert feed.info.title == "Новости дня"
    (item,) = items(feed)
    assert item.title == "Погода в Москве: снег"
    assert item.summary == "Ожидается сильный снегопад."
    assert item.published == utc(2025, 2, 10, 3, 0)


def test_shift_jis() -> None:
    feed = parse("shift_jis.xml", "https://nyuusu.example/rss")
    assert feed.info.title == "日本語のニュース"
    (item,) = items(feed)
    assert item.title == "東京の天気は晴れ"
    assert item.summary == "明日も晴れるでしょう。"


def test_wrong_declared_encoding_is_recovered() -> None:
    body = load("iso-8859-1.xml").replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"')
    feed = parse_feed(body, url="https://patisserie.example/rss", headers={})
    assert build_item(feed, feed.entries[0]).title == "Crème brûlée à la façon de grand-mère"


def test_header_names_are_case_insensitive() -> None:
    for name in ("content-type", "CONTENT-TYPE", "Content-Type"):
        feed = parse(
            "windows-1251.xml",
            "https://novosti.example/rss",
            {name: "text/xml; charset=windows-1251"},
        )
        assert feed.info.title == "Новости дня"


# --------------------------------------------------------------------------- bozo and failures


def test_recoverable_bozo_feed_keeps_its_items() -> None:
    feed = parse("bozo_entity.xml", "https://cafe.example/rss")
    assert feed.info.title == "Café Notes"
    assert [(i.key, i.title, i.summary) for i in items(feed)] == [
        ("https://cafe.example/menu", "Menu changes © 2025", "Crème brûlée is back."),  # &nbsp;
        ("https://cafe.example/hours", "Opening hours", "Open daily."),
    ]


def test_empty_feed_has_no_entries() -> None:
    feed = parse("empty.xml", "https://quiet.example/rss")
    assert feed.entries == ()
    assert feed.info == FeedInfo(
        title="Quiet Channel", link="https://quiet.example/", icon=None, kind="rss"
    )


def test_malformed_xml_raises_a_clear_error() -> None:
    with pytest.raises(ParseError) as info:
        parse("malformed.xml", "https://x.example/feed")
    assert str(info.value) == (
        "not a feed: the document is malformed XML (mismatched tag at line 3); "
        "check the URL points at an RSS, Atom or JSON feed"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the response body is empty"),
        (b"  \n\t ", "the response body is empty"),
        (b"<!DOCTYPE html><html><head><title>Hi</title></head></html>", "HTML web page"),
        (b"\xef\xbb\xbf<html lang='en'><body>hello</body></html>", "HTML web page"),
        (b'{"version": "2.0", "items": []}', "the document is JSON, not RSS or Atom XML"),
        (b'{"data": [1, 2]}', "the document is JSON, not RSS or Atom XML"),
        (b"just some words, no markup", "plain text"),
        (b"<?xml version='1.0'?><catalog><book>x</book></catalog>", "no RSS or Atom"),
        (b"http://127.0.0.1:9/feed.xml", "plain text"),
    ],
)
def test_not_a_feed(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_feed(body, url="https://x.example/feed", headers={})


def test_body_looking_like_a_path_is_not_opened() -> None:
    path = str(FIXTURES / "rss20.xml").encode()
    with pytest.raises(ParseError):  # would parse fine if feedparser opened the file
        parse_feed(path, url="https://x.example/feed", headers={})


def test_feed_served_as_text_html_is_still_parsed() -> None:
    headers = {"Content-Type": "text/html; charset=utf-8"}
    body = load("rss20.xml")
    assert not looks_like_html(body, headers)
    assert len(parse_feed(body, url="https://harbour.example/feed.xml", headers=headers).entries)


def test_stray_html_doctype_before_atom_root() -> None:
    body = load("atom10.xml").replace(b"?>\n", b"?>\n<!DOCTYPE html>", 1)
    assert not looks_like_html(body, {})
    assert len(parse_feed(body, url="https://blog.example.org/feed", headers={}).entries) == 3


def test_multi_megabyte_feed() -> None:
    paragraph = "<p>Lorem <b>ipsum</b> dolor sit amet, <a href='/x'>link</a>. </p>" * 12
    parts = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Big</title>']
    for n in range(3000):
        parts.append(
            f"<item><title>Post {n}</title><link>/posts/{n}</link><guid>id-{n}</guid>"
            f"<pubDate>Mon, 06 Jan 2025 10:00:00 GMT</pubDate>"
            f"<description><![CDATA[{paragraph}]]></description></item>"
        )
    parts.append("</channel></rss>")
    body = "".join(parts).encode()
    assert len(body) > 2_500_000
    started = time.perf_counter()
    feed = parse_feed(body, url="https://big.example/feed", headers={})
    elapsed = time.perf_counter() - started
    assert len(feed.entries) == 3000
    assert feed.entries[-1].link == "https://big.example/posts/2999"
    assert "[link](https://big.example/x)" in build_item(feed, feed.entries[-1]).summary
    assert elapsed < 10  # generous: ~0.5 s on a laptop; catches accidental quadratic work


def test_huge_html_content_is_truncated() -> None:
    html = "<p>word <i>word</i></p>" * 5_000  # ~115 KB
    body = f"""<rss version="2.0"><channel><title>T</title><item><guid>g</guid>
      <description><![CDATA[{html}]]></description></item></channel></rss>""".encode()
    feed = parse_feed(body, url="https://t.example/", headers={})
    summary = build_item(feed, feed.entries[0]).summary
    assert summary.endswith(" …")
    assert 10_000 < len(summary) < 100_000


# --------------------------------------------------------------------------- normalise_link


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Example.COM/a/b/", "https://example.com/a/b"),
        ("HTTPS://example.com:443/", "https://example.com/"),
        ("http://example.com:80", "https://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/x#section", "https://example.com/x"),
        (
            "https://example.com/p?utm_source=rss&utm_Medium=feed&id=3&fbclid=z&gclid=1"
            "&dclid=2&msclkid=3&mc_eid=4&b=c",
            "https://example.com/p?id=3&b=c",
        ),
        ("https://example.com/p?b=2&a=1", "https://example.com/p?b=2&a=1"),
        ("https://example.com/p?utm_campaign=x", "https://example.com/p"),
        ("https://example.com/p?q=a%20b&x", "https://example.com/p?q=a%20b&x"),
        ("  https://example.com/x/  ", "https://example.com/x"),
        ("https://User@Example.com/", "https://User@example.com/"),
        ("http://[2001:DB8::1]:80/a/", "https://[2001:db8::1]/a"),
        ("https://example.com/A/Case", "https://example.com/A/Case"),
    ],
)
def test_normalise_link(url: str, expected: str) -> None:
    assert normalise_link(url) == expected


_segment = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="/?#&=", min_codepoint=33), max_size=6
)
_urls = st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}/{'/'.join(path)}{query}{frag}"
    ),
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp"]),
    st.from_regex(r"[A-Za-z0-9]{1,8}(\.[A-Za-z0-9]{1,8}){0,2}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    st.lists(_segment, max_size=4),
    st.lists(
        st.tuples(
            st.sampled_from(["utm_source", "fbclid", "id", "q", "UTM_x", "mc_eid"]), _segment
        ),
        max_size=4,
    ).map(lambda kv: ("?" + "&".join(f"{k}={v}" for k, v in kv)) if kv else ""),
    st.sampled_from(["", "#", "#frag"]),
)


@given(_urls)
def test_normalise_link_is_idempotent_on_urls(url: str) -> None:
    once = normalise_link(url)
    assert normalise_link(once) == once
    # tracking parameters go; a path segment may well be called "UTM_"
    assert "utm_" not in urlsplit(once).query.lower()
    assert "#" not in once


@given(st.text(max_size=60))
def test_normalise_link_is_idempotent_on_any_text(text: str) -> None:
    once = normalise_link(text)
    assert normalise_link(once) == once


# --------------------------------------------------------------------------- discovery


def test_find_feed_links_uses_meta_charset_and_base() -> None:
    links = find_feed_links(load("page.html"), base_url="https://harbour.example/", headers={})
    assert links == [
        "https://harbour.example/blog/rss.xml",
        "https://harbour.example/atom.xml",
        "https://harbour.example/flux/été.xml",
        "https://harbour.example/index.rdf",
        "https://harbour.example/blog/feed.json",  # JSON after RSS/Atom/RDF
    ]


def test_find_feed_links_header_charset_wins_over_meta() -> None:
    page = load("page.html").replace(b"windows-1252", b"utf-8")  # meta now lies
    headers = {"content-type": "text/html; charset=windows-1252"}
    links = find_feed_links(page, base_url="https://harbour.example/", headers=headers)
    assert "https://harbour.example/flux/été.xml" in links


def test_find_feed_links_without_base_or_feeds() -> None:
    page = b"""<html><head><link rel="alternate" type="application/atom+xml" href="a.xml">
      </head></html>"""
    assert find_feed_links(page, base_url="https://s.example/dir/page", headers={}) == [
        "https://s.example/dir/a.xml"
    ]
    assert (
        find_feed_links(b"<html><p>none</p></html>", base_url="https://s.example/", headers={})
        == []
    )


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"<!doctype html><html></html>", {}, True),
        (b"\xef\xbb\xbf  \n<!DOCTYPE HTML PUBLIC '-//W3C//DTD HTML 4.01//EN'>", {}, True),
        (b"<HTML><body>x</body></HTML>", {}, True),
        (
            b"<?xml version='1.0'?>\n<!-- hi -->\n<html xmlns='http://www.w3.org/1999/xhtml'>",
            {},
            True,
        ),
        (b"<p>fragment</p>", {"Content-Type": "text/html; charset=utf-8"}, True),
        (b"<p>fragment</p>", {}, False),
        (b"<?xml version='1.0'?><rss version='2.0'></rss>", {}, False),
        (b"<?xml version='1.0'?><rss version='2.0'></rss>", {"content-type": "text/html"}, False),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", {"CONTENT-TYPE": "text/html"}, False),
        (b"", {}, False),
    ],
)
def test_looks_like_html(body: bytes, headers: dict[str, str], expected: bool) -> None:
    assert looks_like_html(body, headers) is expected
