"""bot.render: Discord's limits hold for any item, and truncation keeps markdown intact.

``check_discord_limits`` recomputes every limit itself (UTF-16 units, URL rules,
username rules) instead of trusting render's helpers.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.models import FeedInfo, Item, SocialPost
from bot.render import (
    EMBED_COLOUR,
    Message,
    render_batch,
    render_embed,
    render_item,
    safe_url,
    social_username,
    text_line,
    truncate,
    webhook_username,
)
from bot.sources.bluesky import parse_author_feed
from bot.sources.mastodon import parse_statuses
from tests.fakes.fake_discord import FakeDiscord, _Errors, _validate_payload

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- an independent model of Discord's rules ------------------------------------------

MARKERS = set("*_~|`")
# The simplest markdown link: what truncation must never cut through.
LINK = re.compile(r"\[[^\[\]\n\\]*\]\([^()\s]*\)")
# Default-ignorable code points outside Cf that a sanitiser may strip from a name.
IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def u16(text: str) -> int:
    """UTF-16 code units, counted by hand."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def check_url(url: Any) -> None:
    assert isinstance(url, str)
    assert u16(url) <= 2048
    assert re.match(r"(?i)https?://[^/?#\s]+", url), url
    assert not any(ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in url)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in url)


def check_text(value: Any, limit: int, *, required: bool = False) -> int:
    assert isinstance(value, str)
    assert u16(value) <= limit, (u16(value), limit)
    if required:
        assert value.strip()
    return u16(value)


def check_username(name: Any) -> None:
    assert isinstance(name, str)
    assert 1 <= u16(name) <= 80
    bare = "".join(ch for ch in IGNORABLE.sub("", name) if unicodedata.category(ch) != "Cf")
    folded = unicodedata.normalize("NFKC", bare).casefold()
    assert "discord" not in folded, name
    assert "clyde" not in folded, name
    assert folded.strip().lstrip("@") not in ("everyone", "here"), name
    assert bare.strip(), name


def check_discord_limits(body: dict[str, Any]) -> None:
    """Everything Discord checks on an execute-webhook body that render can get wrong."""
    assert body["allowed_mentions"] == {"parse": []}
    check_username(body["username"])
    if "avatar_url" in body:
        check_url(body["avatar_url"])
    content = body.get("content")
    if content is not None:
        check_text(content, 2000)
    embeds = body.get("embeds") or []
    assert isinstance(embeds, list)
    assert len(embeds) <= 10
    assert (content or "").strip() or embeds, "an empty message"
    total = 0
    urls = [e["url"] for e in embeds if "url" in e]
    assert len(urls) == len(set(urls)), "Discord merges embeds that share a url"
    for embed in embeds:
        assert embed, "an empty embed"
        if "title" in embed:
            total += check_text(embed["title"], 256)
        if "description" in embed:
            total += check_text(embed["description"], 4096)
        fields = embed.get("fields", [])
        assert len(fields) <= 25
        for field in fields:
            total += check_text(field["name"], 256, required=True)
            total += check_text(field["value"], 1024, required=True)
        if "footer" in embed:
            total += check_text(embed["footer"]["text"], 2048, required=True)
            if "icon_url" in embed["footer"]:
                check_url(embed["footer"]["icon_url"])
        if "author" in embed:
            total += check_text(embed["author"]["name"], 256, required=True)
            for key in ("url", "icon_url"):
                if key in embed["author"]:
                    check_url(embed["author"][key])
        for key in ("image", "thumbnail"):
            if key in embed:
                check_url(embed[key]["url"])
        if "url" in embed:
            check_url(embed["url"])
        if "timestamp" in embed:
            stamp = datetime.fromisoformat(embed["timestamp"])
            assert stamp.utcoffset() == timedelta(0)
        color = embed.get("color", 0)
        assert isinstance(color, int)
        assert 0 <= color <= 0xFFFFFF
    assert total <= 6000, total


def scan_unclosed(text: str) -> list[str]:
    """Markdown delimiters left open in ``text``, read the way Discord reads them:
    "```" opens a block that the next "```" closes; a run of one or two backticks opens
    inline code that only a run of exactly that many closes; nothing counts inside
    code; outside it, backslash escapes and ``**``/``__``/``~~``/``||`` toggle."""
    opened: list[str] = []
    code: str | None = None
    tokens = [m.group() for m in re.finditer(r"`+|\\.|\*\*|__|~~|\|\||.", text, re.DOTALL)]
    while tokens:
        token = tokens.pop(0)
        if token.startswith("`"):
            if code == "```" and len(token) >= 3:
                opened.pop()
                code = None
                if len(token) > 3:
                    tokens.insert(0, token[3:])
            elif code is not None:
                if token == code:
                    opened.pop()
                    code = None
            else:
                code = token if len(token) < 3 else "```"
                opened.append(code)
                if len(token) > 3:
                    tokens.insert(0, token[3:])
        elif code is not None:
            if token.startswith("\\") and token.endswith("`"):  # no escapes inside code
                if tokens and tokens[0].startswith("`"):
                    tokens[0] = "`" + tokens[0]
                else:
                    tokens.insert(0, "`")
        elif token in ("**", "__", "~~", "||"):
            if token in opened:
                del opened[len(opened) - 1 - opened[::-1].index(token)]
            else:
                opened.append(token)
    return opened


# -- strategies -----------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and controls included
TOKENS = st.sampled_from(
    [
        "**",
        "__",
        "~~",
        "||",
        "`",
        "```",
        "```py\n",
        "\\",
        "\\*",
        "\\\\",
        "[a link](https://example.com/a)",
        "[x](https://e.com/y_(z))",
        "<https://example.com/auto>",
        "![img](https://e.com/i.png)",
        "😀",
        "👨‍👩‍👧",
        "🇫🇷",
        "👍🏽",
        "e\u0301",
        "\u200b",
        " ",
        "  ",
        "\n",
        "\n\n",
        "@everyone",
        "@here",
        "<@123>",
        "<@&456>",
        "discord",
        "Clyde",
    ]
)
WORDS = st.text(alphabet=st.sampled_from("abcdefgh"), min_size=1, max_size=12)
LONG = st.builds(
    lambda part, n: part * n, st.text(ANY_CHAR, min_size=1, max_size=8), st.integers(1, 600)
)
TEXT = st.one_of(
    st.lists(st.one_of(TOKENS, WORDS, st.text(ANY_CHAR, max_size=5)), max_size=80).map("".join),
    st.text(ANY_CHAR, max_size=300),
    LONG,
)
URLS = st.one_of(
    st.none(),
    st.just(""),
    st.builds(lambda p: f"https://example.com/{p}", st.text("abc/_-.%()", max_size=40)),
    st.builds(lambda n: "https://example.com/" + "a" * n, st.integers(2020, 2100)),
    st.sampled_from(
        [
            "http://example.com",
            "HTTPS://EXAMPLE.COM/x",
            " https://example.com/padded ",
            "https://exa mple.com/",
            "https://example.com/\n",
            "javascript:alert(1)",
            "ftp://example.com/f",
            "//example.com/x",
            "https://",
            "http://[::1",
            "http://example.com:99999/",
            "http://example.com:x/",
            "mailto:a@b.c",
            "https://例え.jp/パス",
        ]
    ),
    st.text(ANY_CHAR, max_size=30),
)
TIMEZONES = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    ),
)
DATES = st.one_of(st.none(), st.datetimes(timezones=TIMEZONES))
ITEMS = st.builds(
    Item,
    key=st.text(max_size=5),
    title=TEXT,
    link=URLS,
    summary=TEXT,
    author=st.none() | TEXT,
    published=DATES,
    image=URLS,
)
FEEDS = st.builds(FeedInfo, title=TEXT, link=URLS, icon=URLS, kind=st.sampled_from(["rss", "atom"]))


def make_item(n: int = 1, **overrides: Any) -> Item:
    values: dict[str, Any] = {
        "key": f"item-{n}",
        "title": f"Story {n}",
        "link": f"https://example.com/story/{n}",
        "summary": f"What happened in story **{n}**.",
        "author": "Reporter",
        "published": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(minutes=n),
        "image": None,
    }
    values.update(overrides)
    return Item(**values)


FEED = FeedInfo(
    title="Example News",
    link="https://example.com/",
    icon="https://example.com/icon.png",
    kind="rss",
)


# -- truncate: properties -------------------------------------------------------------


def check_truncated(text: str, limit: int, result: str) -> None:
    assert u16(result) <= max(limit, 0)
    assert len(result) <= max(limit, 0)
    if u16(text) <= limit:
        assert result == text
        return
    if limit <= 0:
        assert result == ""
        return
    assert result.endswith("…")
    body = result[:-1]
    assert not body.endswith("\\"), "a lone backslash would escape the ellipsis"
    # body = a prefix of text, then only closing delimiters
    kept = 0
    while kept < len(body) and kept < len(text) and body[kept] == text[kept]:
        kept += 1
    assert set(body[kept:]) <= MARKERS, (text, body)
    for link in LINK.finditer(text):
        assert not link.start() < kept < link.end(), f"cut inside {link.group()!r}"
    assert scan_unclosed(body) == [], body
    if 0 < kept == len(body) < len(text):  # cut between two code points of text
        nxt = text[kept]
        assert unicodedata.category(nxt) not in ("Mn", "Me"), "a combining mark left behind"
        assert nxt != "\u200d"
        assert not 0x1F3FB <= ord(nxt) <= 0x1F3FF
        assert not 0xFE00 <= ord(nxt) <= 0xFE0F


@PROPERTY
@given(TEXT, st.integers(-2, 400))
def test_truncate_properties(text: str, limit: int) -> None:
    check_truncated(text, limit, truncate(text, limit))


@PROPERTY
@given(st.lists(st.one_of(TOKENS, WORDS), max_size=120).map("".join), st.integers(1, 120))
def test_truncate_markdown_heavy_text(text: str, limit: int) -> None:
    check_truncated(text, limit, truncate(text, limit))


@PROPERTY
@given(st.text(ANY_CHAR, min_size=1, max_size=3000), st.integers(1, 2100))
def test_truncate_long_words_without_spaces(text: str, limit: int) -> None:
    check_truncated(text, limit, truncate(text, limit))


# -- truncate: examples ---------------------------------------------------------------


def test_truncate_leaves_fitting_text_alone() -> None:
    assert truncate("short **unclosed", 100) == "short **unclosed"
    assert truncate("", 0) == ""


def test_truncate_cuts_at_a_word_with_an_ellipsis() -> None:
    assert truncate("hello world this is a test", 12) == "hello world…"
    assert truncate("hello world", 6) == "hello…"  # the cut already falls on a space


def test_truncate_tiny_limits() -> None:
    assert truncate("hello", 0) == ""
    assert truncate("hello", 1) == "…"
    assert truncate("hello", 2) == "h…"
    assert truncate("hello", -5) == ""


def test_truncate_cuts_a_long_word_hard() -> None:
    assert truncate("a" * 50, 10) == "a" * 9 + "…"


def test_truncate_counts_utf16_units() -> None:
    # each emoji is 2 units: 2 emoji + "…" = 5 units
    assert truncate("😀" * 10, 5) == "😀😀…"
    assert truncate("😀" * 10, 6) == "😀😀…"
    assert truncate("😀" * 3, 6) == "😀😀😀"
    assert truncate("😀" * 3, 5) == "😀😀…"


def test_truncate_keeps_graphemes_whole() -> None:
    assert truncate("ab🇫🇷🇩🇪", 7) == "ab🇫🇷…"  # not one half of the German flag
    assert truncate("x👍🏽y", 4) == "x…"  # the skin tone stays with its thumb
    assert truncate("cafe\u0301s", 5) == "caf…"  # the accent stays with its e
    assert truncate("a👨‍👩‍👧", 6) == "a…"


def test_truncate_never_leaves_a_lone_backslash() -> None:
    assert truncate("abcd\\*efgh", 6) == "abcd…"
    assert truncate("ab\\\\\\\\cdefgh", 6) == "ab…"


def test_truncate_never_cuts_inside_a_markdown_link() -> None:
    text = "see [the link](https://example.com/x) and more"
    assert truncate(text, 20) == "see…"
    assert truncate(text, 40) == "see [the link](https://example.com/x)…"
    assert truncate("[whole](https://example.com/very/long/path) tail", 10) == "…"
    assert truncate("go <https://example.com/auto/link> now", 20) == "go…"


def test_truncate_balances_markdown() -> None:
    assert truncate("**bold text here and more**", 15) == "**bold text**…"
    assert truncate("~~gone and forgotten~~", 12) == "~~gone~~…"  # "~~gone and~~…" is 13
    assert truncate("`code with spaces in it`", 12) == "`code with`…"
    assert truncate("```py\ncode code code code```", 18) == "```py\ncode```…"
    assert truncate("||spoiler goes here||", 14) == "||spoiler||…"
    assert truncate("**a ~~b c d e f~~**", 12) == "**a ~~b~~**…"  # closers need room
    # escaped markers are not markers
    assert truncate("\\*\\* literal words here", 14) == "\\*\\* literal…"
    # inside code, ** means nothing
    assert truncate("`a ** b` and more words", 10) == "`a ** b`…"


def test_truncate_drops_an_opener_with_nothing_after_it() -> None:
    assert truncate("words **", 7) == "words…"
    assert truncate("words **bold and more**", 9) == "words…"
    assert truncate("x ```\ncode", 6) == "x…"


def test_truncate_never_closes_code_on_a_backtick_inside() -> None:
    result = truncate("``a`bcdefgh``", 6)
    assert u16(result) <= 6
    assert scan_unclosed(result[:-1]) == []


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?b=c#d", "https://example.com/a?b=c#d"),
        ("http://example.com", "http://example.com"),
        ("  https://example.com/x  ", "https://example.com/x"),
        ("HTTPS://example.com/", "HTTPS://example.com/"),
        ("https://example.com/" + "a" * 2028, "https://example.com/" + "a" * 2028),
        ("https://example.com/" + "a" * 2029, None),
        ("https://example.com/" + "😀" * 1014, "https://example.com/" + "😀" * 1014),
        ("https://example.com/" + "😀" * 1015, None),  # 1035 code points, 2050 units
        (None, None),
        ("", None),
        ("   ", None),
        ("javascript:alert(1)", None),
        ("ftp://example.com/f", None),
        ("mailto:a@example.com", None),
        ("//example.com/x", None),
        ("/relative/path", None),
        ("https://", None),
        ("https://:80/", None),
        ("http://[::1", None),
        ("http://example.com:99999/", None),
        ("http://example.com:port/", None),
        ("https://exa mple.com/", None),
        ("https://example.com/a\nb", None),
        ("https://example.com/\x00", None),
    ],
)
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert safe_url(url) == expected


def test_bad_urls_are_left_out_of_the_body() -> None:
    item = make_item(link="javascript:alert(1)", image="data:image/png;base64,xx")
    feed = FeedInfo(title="F", link=None, icon="ftp://example.com/i.png", kind="rss")
    body = render_item(item, feed)
    (embed,) = body["embeds"]
    assert "url" not in embed
    assert "image" not in embed
    assert "icon_url" not in embed["footer"]
    assert "avatar_url" not in body
    assert text_line(item) == "**Story 1**"


# -- usernames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Example News", "Example News"),
        ("Discord Blog", "Blog"),
        ("The DISCORD engineering blog", "The engineering blog"),
        ("Clyde's Kitchen", "'s Kitchen"),
        ("r/discordapp", "r/app"),
        ("disdiscordcord", "feedhook"),  # removing one occurrence makes another
        ("dis\u200bcord news", "news"),  # Discord strips the zero-width space, so do we
        ("cly\u00adde news", "news"),  # soft hyphen
        ("ｄｉｓｃｏｒｄ ｎｅｗｓ", "news"),  # fullwidth folds to "discord" under NFKC
        ("Discord", "feedhook"),
        ("", "feedhook"),
        ("   \n\t ", "feedhook"),
        ("\u200b\u200b", "feedhook"),
        ("everyone", "everyone feed"),
        ("HERE", "HERE feed"),
        ("@everyone", "@everyone feed"),
        ("Everyone's news", "Everyone's news"),
        ("Where we go", "Where we go"),
        ("  many   spaces\nand lines ", "many spaces and lines"),
    ],
)
def test_webhook_username(title: str, expected: str) -> None:
    name = webhook_username(title)
    assert name == expected
    check_username(name)


def test_webhook_username_is_at_most_80_units() -> None:
    assert webhook_username("x" * 100) == "x" * 79 + "…"
    assert u16(webhook_username("😀" * 100)) <= 80
    name = webhook_username("word " * 40)
    assert u16(name) <= 80
    assert name.endswith("word…")


def test_webhook_username_does_not_use_zero_width_spaces() -> None:
    # Discord's sanitiser removes them before it checks, so they prove nothing.
    assert "\u200b" not in webhook_username("Discord Clyde Updates")


@PROPERTY
@given(TEXT)
def test_webhook_username_always_valid(title: str) -> None:
    check_username(webhook_username(title))


# -- mentions -------------------------------------------------------------------------


def test_nothing_pings() -> None:
    item = make_item(title="@everyone <@123> <@&456>", summary="@here <@!789>", author="@everyone")
    bodies = [render_item(item, FEED), render_item(item, FEED, style="text")]
    bodies += [m.body for m in render_batch([item, make_item(2)], FEED)]
    bodies += [m.body for m in render_batch([item, make_item(2)], FEED, style="text")]
    for body in bodies:
        assert body["allowed_mentions"] == {"parse": []}
    assert "@everyone <@123> <@&456>" in bodies[1]["content"]


def test_allowed_mentions_is_not_shared_between_bodies() -> None:
    first = render_item(make_item(1), FEED)
    first["allowed_mentions"]["parse"].append("everyone")
    assert render_item(make_item(2), FEED)["allowed_mentions"] == {"parse": []}


# -- one item -------------------------------------------------------------------------


def test_render_item_embed_exactly() -> None:
    item = Item(
        key="k",
        title="Hello world",
        link="https://example.com/hello",
        summary="Some **bold** text with [a link](https://example.com/l).",
        author="Ann Author",
        published=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        image="https://example.com/hello.png",
    )
    assert render_item(item, FEED) == {
        "username": "Example News",
        "allowed_mentions": {"parse": []},
        "avatar_url": "https://example.com/icon.png",
        "embeds": [
            {
                "type": "rich",
                "color": EMBED_COLOUR,
                "title": "Hello world",
                "url": "https://example.com/hello",
                "description": "Some **bold** text with [a link](https://example.com/l).",
                "author": {"name": "Ann Author"},
                "image": {"url": "https://example.com/hello.png"},
                "timestamp": "2024-01-02T03:04:05+00:00",
                "footer": {"text": "Example News", "icon_url": "https://example.com/icon.png"},
            }
        ],
    }


def test_render_item_text_exactly() -> None:
    assert render_item(make_item(1), FEED, style="text") == {
        "username": "Example News",
        "allowed_mentions": {"parse": []},
        "avatar_url": "https://example.com/icon.png",
        "content": "**Story 1**\nhttps://example.com/story/1",
    }


def test_render_item_minimal() -> None:
    item = Item(key="k", title="", link=None, summary="", author=None, published=None, image=None)
    feed = FeedInfo(title="", link=None, icon=None, kind="rss")
    body = render_item(item, feed)
    assert body == {
        "username": "feedhook",
        "allowed_mentions": {"parse": []},
        "embeds": [{"type": "rich", "color": EMBED_COLOUR, "title": "(untitled)"}],
    }
    assert render_item(item, feed, style="text")["content"] == "**(untitled)**"
    check_discord_limits(body)


def test_blank_fields_are_left_out() -> None:
    item = make_item(title=" \n\u200b ", summary="  \n ", author=" \t ")
    feed = FeedInfo(title="\u200b", link=None, icon="https://example.com/i.png", kind="rss")
    (embed,) = render_item(item, feed)["embeds"]
    assert embed["title"] == "(untitled)"
    assert "description" not in embed
    assert "author" not in embed
    assert "footer" not in embed  # a footer needs text, an icon alone is refused


def test_text_is_cleaned() -> None:
    item = make_item(title="A\x00 title\r\nover lines", summary="x\x07y\ud800z", author="A\x1bB")
    (embed,) = render_item(item, FEED)["embeds"]
    assert embed["title"] == "A title over lines"
    assert embed["description"] == "xyz"
    assert embed["author"] == {"name": "AB"}


def test_timestamps_are_utc_iso8601() -> None:
    naive = make_item(published=datetime(2024, 5, 6, 7, 8, 9))
    assert render_embed(naive, FEED)["timestamp"] == "2024-05-06T07:08:09+00:00"
    paris = make_item(published=datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))))
    assert render_embed(paris, FEED)["timestamp"] == "2024-05-06T07:08:09+00:00"
    odd = timezone(timedelta(minutes=19, seconds=32))  # Amsterdam in 1900: not ISO 8601
    assert render_embed(make_item(published=datetime(1900, 1, 1, tzinfo=odd)), FEED)[
        "timestamp"
    ] == ("1899-12-31T23:40:28+00:00")
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert "timestamp" not in render_embed(make_item(published=too_early), FEED)


def test_description_is_a_preview() -> None:
    item = make_item(summary="word " * 2000)
    description = render_embed(item, FEED)["description"]
    assert u16(description) <= 700
    assert description.endswith("word…")
    assert u16(render_embed(item, FEED, preview=300)["description"]) <= 300


def test_an_embed_alone_fits_in_6000_units() -> None:
    item = make_item(title="t" * 5000, summary="s" * 10000, author="a" * 5000)
    feed = FeedInfo(title="f" * 5000, link=None, icon=None, kind="rss")
    embed = render_embed(item, feed, preview=10_000)
    body = render_item(item, feed)
    check_discord_limits(body)
    check_discord_limits({**body, "embeds": [embed]})
    assert u16(embed["description"]) <= 4096


def test_text_line_escapes_the_title() -> None:
    item = make_item(title="C:\\ **not bold** __x__ [y](z) `c`")
    assert text_line(item) == (
        "**C:\\\\ \\*\\*not bold\\*\\* \\_\\_x\\_\\_ \\[y\\](z) \\`c\\`**"
        "\nhttps://example.com/story/1"
    )


def test_text_line_fits_2000_units() -> None:
    long_link = "https://example.com/" + "a" * 1900
    line = text_line(make_item(title="t " * 500, link=long_link))
    assert u16(line) <= 2000
    assert line.endswith("\n" + long_link)
    too_long = "https://example.com/" + "a" * 1990
    line = text_line(make_item(title="title", link=too_long))
    assert line == "**title**"  # no room for both: the title wins


@PROPERTY
@given(ITEMS, FEEDS)
def test_render_item_is_always_acceptable(item: Item, feed: FeedInfo) -> None:
    for style in ("embed", "text"):
        body = render_item(item, feed, style=style)
        check_discord_limits(body)
        if style == "embed":
            assert len(body["embeds"]) == 1
            assert "content" not in body
        else:
            assert "embeds" not in body


# -- batches --------------------------------------------------------------------------


def test_batch_of_25_is_three_messages() -> None:
    items = [make_item(n) for n in range(1, 26)]
    messages = render_batch(items, FEED)
    assert [m.count for m in messages] == [10, 10, 5]
    assert [len(m.body["embeds"]) for m in messages] == [10, 10, 5]
    titles = [e["title"] for m in messages for e in m.body["embeds"]]
    assert titles == [f"Story {n}" for n in range(1, 26)]
    for message in messages:
        check_discord_limits(message.body)


def test_batch_respects_the_6000_unit_total() -> None:
    items = [
        make_item(n, title="t" * 250, summary="s " * 1000, author="a" * 250) for n in range(10)
    ]
    messages = render_batch(items, FEED)
    assert sum(m.count for m in messages) == 10
    assert len(messages) > 1
    for message in messages:
        check_discord_limits(message.body)


def test_batch_of_one_uses_the_long_preview() -> None:
    (message,) = render_batch([make_item(summary="word " * 400)], FEED)
    assert u16(message.body["embeds"][0]["description"]) > 300


def test_batch_keeps_embeds_with_the_same_url_apart() -> None:
    same = "https://example.com/same"
    items = [make_item(1, link=same), make_item(2, link=same), make_item(3)]
    messages = render_batch(items, FEED)
    assert [m.count for m in messages] == [1, 2]
    assert [e["title"] for m in messages for e in m.body["embeds"]] == [
        "Story 1",
        "Story 2",
        "Story 3",
    ]


def test_batch_text_packs_lines_into_2000_units() -> None:
    items = [make_item(n, title="x" * 200) for n in range(30)]
    messages = render_batch(items, FEED, style="text")
    assert sum(m.count for m in messages) == 30
    assert len(messages) < 30
    for message in messages:
        check_discord_limits(message.body)
        assert len(message.body["content"].split("\n\n")) == message.count
        assert "embeds" not in message.body


def test_empty_batch() -> None:
    assert render_batch([], FEED) == []
    assert render_batch([], FEED, style="text") == []


def numbered(items: list[Item]) -> list[Item]:
    return [
        Item(
            key=str(n),
            title=f"#{n} {item.title}",
            link=item.link,
            summary=item.summary,
            author=item.author,
            published=item.published,
            image=item.image,
        )
        for n, item in enumerate(items)
    ]


def check_batch(items: list[Item], feed: FeedInfo, style: str, messages: list[Message]) -> None:
    assert sum(m.count for m in messages) == len(items)
    assert all(m.count >= 1 for m in messages)
    seen: list[int] = []
    for message in messages:
        check_discord_limits(message.body)
        if style == "text":
            assert "embeds" not in message.body
            lines = message.body["content"].split("\n\n")
            assert len(lines) == message.count
            for line in lines:
                found = re.match(r"\*\*#(\d+)", line)
                assert found, line
                seen.append(int(found.group(1)))
        else:
            assert "content" not in message.body
            embeds = message.body["embeds"]
            assert len(embeds) == message.count
            for embed in embeds:
                found = re.match(r"#(\d+)", embed["title"])
                assert found, embed["title"]
                seen.append(int(found.group(1)))
    assert seen == list(range(len(items))), "reordered, lost or repeated"
    # Greedy and therefore minimal: the next message's first item did not fit.
    for before, after in itertools.pairwise(messages):
        if style == "text":
            first = after.body["content"].split("\n\n")[0]
            assert u16(before.body["content"]) + 2 + u16(first) > 2000
        else:
            embeds = before.body["embeds"]
            nxt = after.body["embeds"][0]
            total = sum(embed_units(e) for e in embeds)
            assert (
                len(embeds) == 10
                or total + embed_units(nxt) > 6000
                or ("url" in nxt and nxt["url"] in {e.get("url") for e in embeds})
            )


def embed_units(embed: dict[str, Any]) -> int:
    return (
        u16(embed.get("title", ""))
        + u16(embed.get("description", ""))
        + u16(embed.get("footer", {}).get("text", ""))
        + u16(embed.get("author", {}).get("name", ""))
        + sum(u16(f["name"]) + u16(f["value"]) for f in embed.get("fields", []))
    )


@PROPERTY
@given(st.lists(ITEMS, max_size=25), FEEDS, st.sampled_from(["embed", "text"]))
def test_render_batch_is_always_acceptable(items: list[Item], feed: FeedInfo, style: str) -> None:
    items = numbered(items)
    check_batch(items, feed, style, render_batch(items, feed, style=style))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.builds(
            make_item,
            st.integers(0, 5),
            title=st.text(max_size=300),
            summary=st.text(min_size=200, max_size=1200),
            author=st.text(min_size=1, max_size=300),
            link=st.sampled_from(["https://example.com/a", "https://example.com/b", None]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["embed", "text"]),
)
def test_render_batch_with_big_items(items: list[Item], style: str) -> None:
    items = numbered(items)
    check_batch(items, FEED, style, render_batch(items, FEED, style=style))


# -- social posts ---------------------------------------------------------------------

SOCIAL_KINDS = st.sampled_from(["post", "repost", "reply", "quote"])
SOCIAL_POSTS = st.builds(
    SocialPost,
    author_name=TEXT,
    author_handle=st.one_of(TEXT, st.builds(lambda h: f"@{h}.bsky.social", WORDS)),
    author_avatar=URLS,
    author_url=URLS,
    images=st.lists(URLS, max_size=6).map(tuple),
    kind=SOCIAL_KINDS,
    context_name=st.none() | TEXT,
    context_handle=st.none() | TEXT,
    network=st.sampled_from(["bluesky", "mastodon", "x", ""]),
)
SOCIAL_ITEMS = st.builds(
    Item,
    key=st.text(max_size=5),
    title=TEXT,
    link=URLS,
    summary=TEXT,
    author=st.none() | TEXT,
    published=DATES,
    image=st.none(),
    social=SOCIAL_POSTS,
)
ALICE = SocialPost(
    author_name="Alice Liddell",
    author_handle="@alice.bsky.social",
    author_avatar="https://cdn.example/alice.jpg",
    author_url="https://bsky.app/profile/alice.bsky.social",
    network="bluesky",
)
BOB = SocialPost(
    author_name="Bob", author_handle="@bob@other.example", network="mastodon", kind="post"
)


def social_item(n: int = 1, post: SocialPost = ALICE, **overrides: Any) -> Item:
    values: dict[str, Any] = {
        "key": f"at://did:plc:x/app.bsky.feed.post/{n}",
        "title": f"Post {n}",
        "link": f"https://bsky.app/profile/alice.bsky.social/post/{n}",
        "summary": f"Hello from post **{n}**",
        "author": "Alice",
        "published": datetime(2025, 3, 10, 12, tzinfo=UTC) + timedelta(minutes=n),
        "image": None,
        "social": post,
    }
    values.update(overrides)
    return Item(**values)


def galleries(embeds: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Embeds grouped as Discord shows them: a rich embed and the image-only embeds
    after it that share its url."""
    groups: list[list[dict[str, Any]]] = []
    for embed in embeds:
        if set(embed) == {"url", "image"} and groups and groups[-1][0].get("url") == embed["url"]:
            groups[-1].append(embed)
        else:
            groups.append([embed])
    return groups


def check_social_body(body: dict[str, Any]) -> None:
    """Discord's rules, where embeds sharing a url form one post's gallery (<= 4 images)."""
    errors = _Errors()
    _validate_payload(body, errors)
    assert not errors, errors.tree
    embeds = body.get("embeds") or []
    firsts = []
    for group in galleries(embeds):
        assert len(group) <= 4
        for extra in group[1:]:
            check_url(extra["url"])
            check_url(extra["image"]["url"])
        firsts.append(group[0])
    check_discord_limits({**body, "embeds": firsts} if embeds else body)


def test_social_post_is_posted_as_its_author() -> None:
    body = render_item(social_item(), FEED)
    assert body["username"] == "Alice Liddell (@alice.bsky.social)"
    assert body["avatar_url"] == "https://cdn.example/alice.jpg"
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed["url"] == "https://bsky.app/profile/alice.bsky.social/post/1"
    assert embed["title"] == "Post on Bluesky"
    assert embed["description"] == "Hello from post **1**"
    assert embed["author"] == {
        "name": "Alice Liddell (@alice.bsky.social)",
        "url": "https://bsky.app/profile/alice.bsky.social",
        "icon_url": "https://cdn.example/alice.jpg",
    }
    assert embed["footer"] == {"text": "Bluesky"}
    assert embed["timestamp"] == "2025-03-10T12:01:00+00:00"
    check_social_body(body)


def test_social_post_without_avatar_uses_the_feed_icon() -> None:
    body = render_item(social_item(post=BOB), FEED)
    assert body["username"] == "Bob (@bob@other.example)"
    assert body["avatar_url"] == FEED.icon


@pytest.mark.parametrize(
    ("kind", "marker"),
    [
        ("repost", "🔁 reposted **Bob Builder** (@bob.example.com)"),
        ("reply", "↩️ replying to **Bob Builder** (@bob.example.com)"),
        ("quote", "💬 quoting **Bob Builder** (@bob.example.com)"),
    ],
)
def test_reposts_replies_and_quotes_name_the_original_author(kind: str, marker: str) -> None:
    post = replace(ALICE, kind=kind, context_name="Bob Builder", context_handle="@bob.example.com")
    item = social_item(post=post)
    (embed,) = render_item(item, FEED)["embeds"]
    assert embed["description"] == f"{marker}\nHello from post **1**"
    content = render_item(item, FEED, style="text")["content"]
    assert content.startswith(f"{marker}\nHello from post **1**\n")
    assert content.endswith(f"\n<{item.link}>")


def test_markers_escape_names_and_cope_without_them() -> None:
    post = replace(ALICE, kind="reply", context_name="**b_o|b**", context_handle=None)
    assert (
        "replying to **\\*\\*b\\_o\\|b\\*\\***"
        in render_item(social_item(post=post), FEED)["embeds"][0]["description"]
    )
    post = replace(ALICE, kind="repost", context_name=None, context_handle=None)
    assert render_item(social_item(post=post), FEED)["embeds"][0]["description"].startswith(
        "🔁 reposted\n"
    )
    post = replace(ALICE, kind="quote", context_name="dave", context_handle="@dave")
    assert render_item(social_item(post=post, summary=""), FEED)["embeds"][0]["description"] == (
        "💬 quoting **@dave**"
    )


def test_four_images_make_one_gallery() -> None:
    images = tuple(f"https://cdn.example/{n}.jpg" for n in range(1, 6))
    item = social_item(post=replace(ALICE, images=images))
    embeds = render_item(item, FEED)["embeds"]
    assert len(embeds) == 4
    assert embeds[0]["image"] == {"url": images[0]}
    assert embeds[1:] == [{"url": item.link, "image": {"url": u}} for u in images[1:4]]
    check_social_body(render_item(item, FEED))
    # text style: images as bare links (Discord unfurls them), the post's link in <>
    content = render_item(item, FEED, style="text")["content"]
    assert content.splitlines() == [
        "Hello from post **1**",
        *images[:4],
        f"<{item.link}>",
    ]


def test_images_without_a_link_cannot_group() -> None:
    item = social_item(post=replace(ALICE, images=("https://a/1.jpg", "https://a/2.jpg")))
    embeds = render_item(replace(item, link=None), FEED)["embeds"]
    assert len(embeds) == 1
    assert embeds[0]["image"] == {"url": "https://a/1.jpg"}


@pytest.mark.parametrize(
    ("name", "handle", "expected"),
    [
        ("Alice", "@alice", "Alice (@alice)"),
        ("alice", "@alice", "@alice"),
        ("", "@alice", "@alice"),
        ("A" * 70, "@alice.bsky.social", "A" * 70),
        ("A" * 90, "@alice.bsky.social", "@alice.bsky.social"),
        ("A" * 90, "@" + "b" * 90, "A" * 79 + "…"),
        ("Discord Fan", "@discordfan", "Fan (@fan)"),
        ("everyone", "", "everyone feed"),
        ("\u200b", "", "feedhook"),
    ],
)
def test_social_username(name: str, handle: str, expected: str) -> None:
    post = SocialPost(author_name=name, author_handle=handle)
    assert social_username(post) == expected
    check_username(social_username(post))


def test_long_social_text_keeps_marker_and_link() -> None:
    post = replace(ALICE, kind="repost", context_name="Bob", context_handle="@bob")
    images = tuple(f"https://cdn.example/{'x' * 400}/{n}.jpg" for n in range(4))
    item = social_item(post=replace(post, images=images), summary="word " * 1000)
    content = render_item(item, FEED, style="text")["content"]
    assert u16(content) <= 2000
    assert content.startswith("🔁 reposted **Bob** (@bob)\nword word")
    assert content.endswith(f"<{item.link}>")
    assert "…" in content
    (embed,) = render_item(replace(item, social=post), FEED)["embeds"]
    assert embed["description"].startswith("🔁 reposted **Bob** (@bob)\nword")
    assert u16(embed["description"]) <= 700


def test_mentions_never_ping_in_posts() -> None:
    item = social_item(summary="@everyone @here <@123> <@&456>")
    for style in ("embed", "text"):
        assert render_item(item, FEED, style=style)["allowed_mentions"] == {"parse": []}


@PROPERTY
@given(SOCIAL_ITEMS, FEEDS)
def test_render_social_item_is_always_acceptable(item: Item, feed: FeedInfo) -> None:
    for style in ("embed", "text"):
        body = render_item(item, feed, style=style)
        check_social_body(body)
        link = safe_url(item.link)
        if style == "embed":
            assert 1 <= len(body["embeds"]) <= 4
            assert body["embeds"][0].get("url") == link
        elif link and u16(link) <= 1000:
            assert f"<{link}>" in body["content"], "the link to the original is always there"


def check_social_batch(items: list[Item], messages: list[Message], style: str) -> None:
    assert sum(m.count for m in messages) == len(items)
    position = 0
    for message in messages:
        assert message.count >= 1
        check_social_body(message.body)
        run = items[position : position + message.count]
        position += message.count
        names = {social_username(i.social) for i in run if i.social}
        assert len(names) == 1, "one identity per message"
        assert message.body["username"] == names.pop()
        if style == "embed":
            groups = galleries(message.body["embeds"])
            assert len(groups) == message.count, "a post's gallery is never split"
            for group, item in zip(groups, run, strict=True):
                assert group[0].get("url") == safe_url(item.link)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from([ALICE, BOB]), SOCIAL_KINDS, TEXT, st.integers(0, 6)),
        max_size=25,
    ),
    st.sampled_from(["embed", "text"]),
)
def test_render_batch_of_posts(specs: list[tuple[SocialPost, str, str, int]], style: str) -> None:
    items = [
        social_item(
            n,
            post=replace(
                post, kind=kind, images=tuple(f"https://i.example/{n}/{k}" for k in range(images))
            ),
            summary=summary,
        )
        for n, (post, kind, summary, images) in enumerate(specs)
    ]
    check_social_batch(items, render_batch(items, FEED, style=style), style)


def test_batch_of_posts_groups_one_author_at_a_time() -> None:
    items = [social_item(1), social_item(2), social_item(3, post=BOB), social_item(4)]
    messages = render_batch(items, FEED)
    assert [m.count for m in messages] == [2, 1, 1]
    assert [m.body["username"] for m in messages] == [
        "Alice Liddell (@alice.bsky.social)",
        "Bob (@bob@other.example)",
        "Alice Liddell (@alice.bsky.social)",
    ]
    # galleries of four: two posts fill eight embeds, the third starts a new message
    four = tuple(f"https://cdn.example/{n}.jpg" for n in range(4))
    items = [social_item(n, post=replace(ALICE, images=four)) for n in range(3)]
    messages = render_batch(items, FEED)
    assert [m.count for m in messages] == [2, 1]
    assert [len(m.body["embeds"]) for m in messages] == [8, 4]
    text = render_batch(items, FEED, style="text")
    assert [m.count for m in text] == [3]


def test_feed_items_and_posts_in_one_batch() -> None:
    items = [make_item(1), social_item(2), make_item(3)]
    messages = render_batch(items, FEED)
    assert [m.count for m in messages] == [1, 1, 1]
    assert [m.body["username"] for m in messages] == [
        "Example News",
        "Alice Liddell (@alice.bsky.social)",
        "Example News",
    ]


async def test_fake_discord_accepts_every_rendered_post() -> None:
    fixtures = Path(__file__).parent / "fixtures" / "social"
    feeds = [
        parse_author_feed(
            (fixtures / "bluesky_author_feed.json").read_bytes(),
            profile_url="https://bsky.app/profile/alice.bsky.social",
            include_reposts=True,
            include_replies=True,
        ),
        parse_statuses(
            (fixtures / "mastodon_statuses.json").read_bytes(),
            profile_url="https://social.example/@alice",
        ),
    ]
    bodies: list[dict[str, Any]] = []
    for feed in feeds:
        posts = [e.item for e in feed.entries if e.item is not None]
        for style in ("embed", "text"):
            bodies += [render_item(p, feed.info, style=style) for p in posts]
            bodies += [m.body for m in render_batch(posts, feed.info, style=style)]
    async with (
        FakeDiscord(webhook_limit=None, channel_limit=None) as fake,
        aiohttp.ClientSession() as http,
    ):
        webhook_id, _ = fake.add_webhook(1234)
        for body in bodies:
            check_social_body(body)
            async with http.post(fake.execute_url(webhook_id) + "?wait=true", json=body) as r:
                assert r.status == 200, (await r.text(), body)
        stored = fake.messages(1234)
        assert len(stored) == len(bodies)
        assert {m.username for m in stored} == {
            "Alice Liddell 🐇 (@alice.bsky.social)",
            "Alice ✨ (@alice@social.example)",
        }
