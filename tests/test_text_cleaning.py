"""Messy real-world text: entities escaped twice, markup escaped twice, WordPress shortcodes.

Fixtures in tests/fixtures/feeds/ (escaped_twice.json, text_summary_entities.xml,
shortcodes.xml) were written for these tests; they copy the shapes seen in real feeds.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from bot.cli import check_source
from bot.config import Config, PollingConfig
from bot.models import Item
from bot.poller import build_items, link_counts
from bot.render import render_item
from bot.sources.feed import (
    ParsedFeed,
    decode_entities,
    drop_shortcodes,
    escaped_markup,
    html_to_markdown,
    parse_feed,
    short_title,
    text_body_to_markdown,
)
from tests.conftest import Doc, FeedServer

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"


def parse(name: str, url: str) -> ParsedFeed:
    return parse_feed((FIXTURES / name).read_bytes(), url=url, headers={})


def items(feed: ParsedFeed) -> list[Item]:
    return build_items(feed, feed.entries, link_counts(feed.entries))


def json_feed(*entries: dict[str, object]) -> bytes:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": list(entries)}
    return json.dumps(doc).encode()


# --------------------------------------------------------------------------- JSON Feed


def test_json_feed_html_escaped_twice_gives_way_to_content_text() -> None:
    feed = parse("escaped_twice.json", "https://quarry.example/feed.json")
    glazes = items(feed)[0]
    assert glazes.summary == (
        "[Cone charts](https://quarry.example/cones/) tell you when to stop the kiln.\n\n"
        "## Mixing\n\n"
        "```shell\nmix --ratio 3:1 &amp;& fire\n```\n\n"  # code keeps its entities
        "Fire it slowly."
    )
    assert "<" not in glazes.summary
    assert glazes.key == "https://quarry.example/notes/glazes/"


def test_json_feed_html_escaped_twice_without_text_is_decoded_and_converted() -> None:
    feed = parse("escaped_twice.json", "https://quarry.example/feed.json")
    wedging = items(feed)[1]
    assert wedging.summary == (
        "Wedge the clay *before* throwing; see "
        "[ram's head](https://quarry.example/notes/ram-head/).\n\n"
        "Air pockets & lumps go."
    )


def test_json_feed_html_that_converts_to_nothing_gives_way_to_text() -> None:
    feed = parse("escaped_twice.json", "https://quarry.example/feed.json")
    photo = items(feed)[2]
    assert photo.summary == "A bowl, fresh out of the kiln."
    assert photo.image == "https://quarry.example/img/bowl.jpg"


def test_json_feed_text_fields_are_decoded() -> None:
    feed = parse("escaped_twice.json", "https://quarry.example/feed.json")
    assert feed.info.title == "Quarry & Kiln Notes"
    assert feed.author == "Odile & Bram"
    glazes = items(feed)[0]
    assert glazes.title == "Glazes & slips"
    assert glazes.author == "Odile & Bram"
    assert glazes.categories == ("Clay & Glaze", "Kilns")


def test_json_feed_keys_do_not_change() -> None:
    """An item without id, url or title is keyed by its raw title text, date and HTML."""
    html_body = "&lt;p&gt;Kiln &amp;amp; wheel&lt;/p&gt;&lt;p&gt;More&lt;/p&gt;"
    entry = {"content_html": html_body, "date_published": "2025-03-01T09:00:00Z"}
    feed = parse_feed(json_feed(entry), url="https://quarry.example/feed.json", headers={})
    (item,) = items(feed)
    parts = (short_title(html_body, html_text=True), "2025-03-01T09:00:00Z", html_body)
    expected = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    assert parts[0] == "<p>Kiln &amp; wheel</p><p>More</p>"  # what keys were made of
    assert item.key == "sha256:" + expected
    assert item.title == "Kiln & wheel More"
    assert item.summary == "Kiln & wheel\n\nMore"


def test_long_html_escaped_twice_is_never_cut_inside_a_tag() -> None:
    paragraph = "&lt;p&gt;&lt;a href=&quot;https://quarry.example/x&quot;&gt;Clay&lt;/a&gt; "
    html_body = (paragraph + "word " * 300 + "&lt;/p&gt;\n") * 60  # > 64 KiB once decoded
    feed = parse_feed(
        json_feed({"id": "1", "title": "Long", "content_html": html_body}),
        url="https://quarry.example/feed.json",
        headers={},
    )
    (item,) = items(feed)
    assert item.summary.endswith(" …")
    assert "<" not in item.summary
    assert "&lt;" not in item.summary
    description = render_item(item, feed.info)["embeds"][0]["description"]
    assert "<" not in description
    assert description.startswith("[Clay](https://quarry.example/x) word word")


# --------------------------------------------------------------------------- Atom / RSS


def test_text_summary_entities_are_decoded() -> None:
    feed = parse("text_summary_entities.xml", "https://moth.example/feeds/posts/summary")
    night = items(feed)[0]
    assert night.summary == "Moths & lamps, a short list.\xa0\xa0Bring a torch\xa0!\n—Wren"
    assert "&" not in night.summary.replace("Moths & lamps", "")
    assert feed.info.title == "Moth & Lamp"


def test_text_summary_that_decodes_to_markup_is_converted() -> None:
    feed = parse("text_summary_entities.xml", "https://moth.example/feeds/posts/summary")
    markup = items(feed)[1]
    assert markup.summary == "Lamps **draw** moths, see [lamps](https://moth.example/lamps)."


def test_placeholders_in_angle_brackets_are_not_markup() -> None:
    feed = parse("text_summary_entities.xml", "https://moth.example/feeds/posts/summary")
    firewall = items(feed)[2]
    assert firewall.summary == (
        "Open it with iptables -p <tcp/udp> --dport <port>, "
        "then cryptsetup open /dev/<partition> & mount."
    )


@pytest.mark.parametrize(
    "text",
    [
        "iptables -p &lt;tcp/udp&gt; --dport &lt;port&gt;",
        "cryptsetup open /dev/&lt;partition&gt;",
        "Why &lt;div&gt; and &lt;/div&gt; differ",
        "As a &lt;user type&gt;, I want &lt;a goal&gt;",
        "<p>Real markup with &lt;p&gt; shown&lt;/p&gt;</p>",
        "no escapes at all",
    ],
)
def test_escaped_markup_is_conservative(text: str) -> None:
    assert escaped_markup(text) is None


def test_escaped_markup_is_decoded() -> None:
    assert escaped_markup("&lt;p&gt;Hi &amp;amp; bye&lt;/p&gt;") == "<p>Hi &amp; bye</p>"
    assert escaped_markup(" &lt;div&gt;&lt;a href=&quot;/x&quot;&gt;x&lt;/a&gt;&lt;/div&gt;")


def test_rss_cdata_categories_are_decoded() -> None:
    feed = parse("shortcodes.xml", "https://tideline.example/feed/")
    assert items(feed)[0].categories == ("Food & Drink", "Harbour")


def test_wordpress_shortcodes_are_dropped_from_summaries() -> None:
    feed = parse("shortcodes.xml", "https://tideline.example/feed/")
    (item,) = items(feed)
    assert item.summary == (
        "The harbour wall is fixed, [read more here](https://tideline.example/wall).\n\n"
        "Crews worked for [n] weeks on stones matching [a-z] labels.\n\n"
        "The new coping stones\n\n"
        "Tides are logged daily.\n\n"
        '```\n[a=1 b=2] [tide-gauge level="high"] x &amp; y\n```\n\n'
        "Use `&amp;` in the log and mind the weather.\n\n"
        "### Contact us"
    )
    assert item.title == "Harbour wall repaired"


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\n\n[time-brightcove not-tgx=”true”]\n\nb", "a\n\n\nb"),
        ('a [video id=oL9X8h53 autostart="viewable" vertical video\\_text=Some words] b', "a b"),
        ("[video id=b6uDpLSv]", ""),
        ("x\n[contact-form]\ny", "x\ny"),
        ("[vc\\_row][vc\\_column]Text[/vc\\_column][/vc\\_row]", "Text"),
        ("[caption id='c1' align=left]A photo[/caption] after", "A photo after"),
        ("word [a x=1] [b y=2] word", "word word"),
        ("see [here](https://x.example/?a=b) and [n], [a-z], [yt-dlp] or [/x]", None),
        ("[link x=1](https://x.example/)", None),
        ('[expires: 2019-06-29] [numberto "0.0.2"] [i 0 s 0]', None),
        ("```\n[a=1 b=2]\n[contact-form]\n```", None),
        ("`[video id=x]` stays", None),
        ("no brackets at all", None),
    ],
)
def test_drop_shortcodes(text: str, expected: str | None) -> None:
    assert drop_shortcodes(text) == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Food &amp; Drink", "Food & Drink"),
        ("&nbsp;&mdash;&#8220;x&#x201D;", "\xa0—“x”"),
        ("&amp;lt;p&amp;gt;", "&lt;p&gt;"),  # once, not until nothing is left
        ("see `a &amp;&amp; b` &amp; ```\n&lt;\n```", "see `a &amp;&amp; b` & ```\n&lt;\n```"),
        ("```\n&amp;\n```\n\n&amp;", "```\n&amp;\n```\n\n&"),
        ("R&D, ?a=1&copy=2, &self; &str;", "R&D, ?a=1&copy=2, &self; &str;"),
    ],
)
def test_decode_entities(text: str, expected: str) -> None:
    assert decode_entities(text) == expected


def test_text_without_ampersands_or_brackets_is_returned_as_is() -> None:
    text = "Plain words.\n\nMore plain words." * 50
    assert decode_entities(text) is text
    assert drop_shortcodes(text) is text


def test_converters_clean_what_they_convert() -> None:
    summary, _ = html_to_markdown(
        "<p>Merck &amp;amp; Co.</p><p>[time-brightcove not-tgx=&#8221;true&#8221;]</p><p>End</p>",
        base="https://x.example/",
    )
    assert summary == "Merck & Co.\n\nEnd"
    text, image = text_body_to_markdown(
        "&lt;p&gt;&lt;img src=&quot;/a.png&quot;&gt;Hi&lt;/p&gt;", base="https://x.example/"
    )
    assert (text, image) == ("Hi", "https://x.example/a.png")


# --------------------------------------------------------------------------- check --json


async def test_check_json_posts_clean_text(feed_server: FeedServer) -> None:
    feed_server.docs["/feed.json"] = Doc(
        (FIXTURES / "escaped_twice.json").read_bytes(), content_type="application/feed+json"
    )
    feed_server.docs["/feed.xml"] = Doc((FIXTURES / "shortcodes.xml").read_bytes())
    config = Config(polling=PollingConfig(allow_private_addresses=True))

    out = io.StringIO()
    await check_source(config, feed_server.url("/feed.json"), as_json=True, out=out)
    embeds = [body["embeds"][0] for body in json.loads(out.getvalue())]
    assert [e["title"] for e in embeds] == ["Glazes & slips", "Wedging", "A photo"]
    assert embeds[0]["description"].startswith("[Cone charts](https://quarry.example/cones/) ")
    assert embeds[0]["footer"]["text"] == "Quarry & Kiln Notes"
    for embed in embeds:
        assert "<p>" not in embed["description"]
        assert "&lt;" not in embed["description"]

    out = io.StringIO()
    await check_source(config, feed_server.url("/feed.xml"), as_json=True, out=out)
    (body,) = json.loads(out.getvalue())
    description = body["embeds"][0]["description"]
    assert "time-brightcove" not in description
    assert "[video" not in description
    assert "[contact-form]" not in description
    assert "vc\\_row" not in description
    assert "[n] weeks" in description
    assert "`&amp;`" in description
