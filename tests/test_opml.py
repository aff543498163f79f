"""bot.opml: reading the OPML that real feed readers export, refusing what is not
OPML (or is hostile), and writing OPML 2.0 that reads back the same."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.opml import (
    MAX_BYTES,
    MAX_OUTLINES,
    ExportEntry,
    OpmlError,
    Outline,
    parse_opml,
    write_opml,
)

FIXTURES = Path(__file__).parent / "fixtures" / "opml"
FIXTURE_NAMES = [
    "feedly.opml",
    "inoreader.xml",
    "netnewswire.opml",
    "freshrss.opml.xml",
    "thunderbird.opml",
]


def load(name: str) -> list[Outline]:
    return parse_opml((FIXTURES / name).read_bytes())


def opml(body: str, *, head: str = "<head><title>t</title></head>") -> bytes:
    return f'<?xml version="1.0"?>\n<opml version="2.0">{head}<body>{body}</body></opml>'.encode()


def error_of(data: bytes) -> str:
    with pytest.raises(OpmlError) as info:
        parse_opml(data)
    message = str(info.value)
    assert message
    assert "\n" not in message
    return message


# --- the fixtures: what real readers export ---------------------------------------------


def test_feedly() -> None:
    society = "https://news.example.net/rss/technology"
    assert load("feedly.opml") == [
        Outline(
            "https://blog.example.org/feed.xml",
            "Example Engineering Blog",
            ("Tech",),
            "https://blog.example.org/",
        ),
        Outline(
            "https://devnotes.example.com/atom.xml",
            "Dev Notes",
            ("Tech",),
            "https://devnotes.example.com",
        ),
        # Listed in two folders: both come back, deduplication is the caller's.
        Outline(society, "Tech & Society", ("Tech",), "https://news.example.net/technology"),
        Outline(
            "https://world.example.net/rss", "World Report", ("News",), "https://world.example.net"
        ),
        Outline(society, "Tech & Society", ("News",), "https://news.example.net/technology"),
        # The empty "Design" folder yields nothing.
        Outline(
            "https://cuisine.example.fr/flux.rss",
            "Cuisine à la française",
            ("Cuisine",),
            "https://cuisine.example.fr/",
        ),
    ]


def test_inoreader() -> None:
    assert load("inoreader.xml") == [
        Outline(
            "https://astro.example.org/rss.xml",
            "Astronomy Picture Notes",
            ("Science",),
            "https://astro.example.org/",
        ),
        # text only, no title and no htmlUrl
        Outline("https://lab.example.edu/news/feed", "Lab News", ("Science",), None),
        Outline(
            "https://comics.example.com/rss",
            "Daily Strip",
            ("Comics",),
            "https://comics.example.com",
        ),
        Outline(
            "https://manga.example.jp/feed",
            "漫画ニュース",
            ("Comics",),
            "https://manga.example.jp/",
        ),
        # "Saved searches" has neither xmlUrl nor children: skipped.
        Outline(
            "https://status.example.io/history.atom",
            "Service Status",
            (),
            "https://status.example.io",
        ),
    ]


def test_netnewswire() -> None:
    assert load("netnewswire.opml") == [
        Outline(
            "https://daring.example.com/feeds/main",
            "Daring Example",
            (),
            "https://daring.example.com/",
        ),
        Outline(
            "https://podcast.example.org/episodes.rss",
            "Weekly Café Podcast",
            (),
            "https://podcast.example.org/",
        ),
        # written with lowercase xmlurl / htmlurl
        Outline(
            "https://micro.example.blog/feed.json", "Micro Blog", (), "https://micro.example.blog/"
        ),
        # the type="link" outline (url=, no xmlUrl) is skipped
        Outline(
            "https://swift.example.org/blog/feed.xml",
            "Swift Example Blog",
            ("Apple",),
            "https://swift.example.org/blog/",
        ),
        Outline(
            "https://apps.example.com/feed/", "Indie Apps", ("Apple",), "https://apps.example.com/"
        ),
        Outline("https://jane.example.me/index.xml", "Jane's Weblog", ("Friends",), None),
    ]


def test_freshrss() -> None:
    outlines = load("freshrss.opml.xml")
    assert [(o.folder, o.title) for o in outlines] == [
        (("Uncategorized",), "Weather Alerts"),
        (("Sécurité",), "Security Advisories & Patches"),
        (("Sécurité",), "CVE Digest"),
        (("Web scraping",), "Shop news"),
    ]
    # Spaces around the URLs in the file are stripped.
    cve = outlines[2]
    assert cve.url == "https://cve.example.net/rss"
    assert cve.site == "https://cve.example.net/"
    # frss: attributes are ignored; an HTML+XPath source still has an xmlUrl.
    assert outlines[3].url == "https://shop.example.com/news"


def test_thunderbird() -> None:
    account = "Blogs & News Feeds"
    python = (account, "Open Source", "Python")
    assert load("thunderbird.opml") == [
        Outline(
            "https://python.example.org/news/rss",
            "Python Insider Example",
            python,
            "https://python.example.org/news/",
        ),
        Outline(
            "https://pypi.example.org/rss/updates.xml",
            "PyPI recent updates",
            python,
            "https://pypi.example.org/",
        ),
        Outline(
            "https://kernel.example.org/feeds/kdist.xml",
            "Kernel Releases",
            (account, "Open Source"),
            "https://kernel.example.org/",
        ),
        Outline(
            "https://blog.example.org/feed.xml",
            "Example Engineering Blog",
            (account, "Open Source"),
            "https://blog.example.org/",
        ),
        Outline(
            "https://photos.example.net/rss",
            "Fotografía diaria",
            (account,),
            "https://photos.example.net/",
        ),
    ]


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("feedly.opml", 6),
        ("inoreader.xml", 5),
        ("netnewswire.opml", 6),
        ("freshrss.opml.xml", 4),
        ("thunderbird.opml", 5),
    ],
)
def test_fixture_counts(name: str, count: int) -> None:
    outlines = load(name)
    assert len(outlines) == count
    for outline in outlines:
        assert outline.url == outline.url.strip()
        assert outline.url.startswith("https://")
        assert outline.title
        assert all(outline.folder)


def test_fixtures_hold_many_distinct_feeds() -> None:
    urls = {o.url for name in FIXTURE_NAMES for o in load(name)}
    assert len(urls) == 24


# --- shapes and edge cases ---------------------------------------------------------------


def test_no_feeds_is_an_empty_list() -> None:
    assert parse_opml(opml("")) == []
    assert parse_opml(b'<opml version="1.0"><head><title>x</title></head></opml>') == []
    assert parse_opml(b"<opml/>") == []
    assert parse_opml(opml('<outline text="Empty folder"/><outline text="Also"></outline>')) == []


def test_title_prefers_text_then_title_then_nothing() -> None:
    outlines = parse_opml(
        opml(
            '<outline text="T" title="Other" xmlUrl="https://a.example/"/>'
            '<outline text="  " title=" Title only " xmlUrl="https://b.example/"/>'
            '<outline xmlUrl="https://c.example/"/>'
        )
    )
    assert [o.title for o in outlines] == ["T", "Title only", ""]


def test_attribute_names_ignore_case() -> None:
    [outline] = parse_opml(
        opml('<outline TEXT="Loud" XMLURL="https://a.example/f" HtmlUrl="https://a.example/"/>')
    )
    assert outline == Outline("https://a.example/f", "Loud", (), "https://a.example/")


def test_blank_urls() -> None:
    # A blank xmlUrl is no feed; with children the outline is a folder.
    outlines = parse_opml(
        opml(
            '<outline text="Nothing" xmlUrl="  "/>'
            '<outline text="Folder" xmlUrl="" htmlUrl="https://x.example/">'
            '<outline text="F" xmlUrl="https://f.example/" htmlUrl="  "/></outline>'
        )
    )
    assert outlines == [Outline("https://f.example/", "F", ("Folder",), None)]


def test_untitled_folder_adds_no_segment() -> None:
    outlines = parse_opml(
        opml(
            '<outline text="A"><outline><outline text="F" xmlUrl="https://f.example/"/></outline></outline>'
        )
    )
    assert outlines == [Outline("https://f.example/", "F", ("A",))]


def test_outlines_inside_a_feed_keep_the_enclosing_folder() -> None:
    outlines = parse_opml(
        opml(
            '<outline text="A"><outline text="Parent" xmlUrl="https://p.example/">'
            '<outline text="Child" xmlUrl="https://c.example/"/></outline></outline>'
        )
    )
    assert [(o.title, o.folder) for o in outlines] == [("Parent", ("A",)), ("Child", ("A",))]


def test_outlines_outside_the_body_are_ignored() -> None:
    data = opml(
        '<outline text="F" xmlUrl="https://f.example/"/>',
        head='<head><outline text="H" xmlUrl="https://h.example/"/></head>',
    )
    assert [o.title for o in parse_opml(data)] == ["F"]
    nested = opml('<x><outline text="X" xmlUrl="https://x.example/"/></x>')
    assert parse_opml(nested) == []


def test_outlines_straight_under_opml_are_read() -> None:
    data = b'<opml version="1.0"><outline text="F" xmlUrl="https://f.example/"/></opml>'
    assert parse_opml(data) == [Outline("https://f.example/", "F", ())]


def test_namespaces_are_tolerated() -> None:
    default_ns = b'<opml xmlns="http://opml.org/spec2" version="2.0"><body><outline text="F" xmlUrl="https://f.example/"/></body></opml>'
    assert [o.url for o in parse_opml(default_ns)] == ["https://f.example/"]
    # An undeclared prefix (a sloppy exporter) does not sink the import.
    sloppy = opml('<outline text="F" fz:quickMode="false" xmlUrl="https://f.example/"/>')
    assert [o.url for o in parse_opml(sloppy)] == ["https://f.example/"]


def test_encodings() -> None:
    text = '<?xml version="1.0" encoding="{}"?><opml><body><outline text="Café" xmlUrl="https://c.example/"/></body></opml>'
    latin = text.format("ISO-8859-1").encode("latin-1")
    utf16 = text.format("UTF-16").encode("utf-16")  # with a BOM
    utf8_bom = b"\xef\xbb\xbf" + text.format("UTF-8").encode()
    for data in (latin, utf16, utf8_bom):
        assert parse_opml(data) == [Outline("https://c.example/", "Café", ())]


@pytest.mark.parametrize("encoding", ["Shift_JIS", "EUC-KR", "GB2312", "Big5"])
def test_multibyte_legacy_encodings(encoding: str) -> None:
    # expat reads only single-byte legacy encodings; these are decoded by Python.
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        '<opml><body><outline text="中" xmlUrl="https://c.example/"/></body></opml>'
    )
    assert parse_opml(text.encode(encoding)) == [Outline("https://c.example/", "中", ())]


def test_undecodable_legacy_encoding() -> None:
    data = b'<?xml version="1.0" encoding="Shift_JIS"?><opml a="\x81"/>'
    assert error_of(data) == "not valid XML: the file is not valid Shift_JIS"


def test_character_references() -> None:
    [outline] = parse_opml(
        opml(
            '<outline text="R&amp;D &#8212; caf&#xE9; &lt;3" xmlUrl="https://a.example/?a=1&amp;b=2"/>'
        )
    )
    assert outline.title == "R&D — café <3"
    assert outline.url == "https://a.example/?a=1&b=2"


def test_deep_nesting_needs_no_recursion() -> None:
    depth = 5_000
    body = '<outline text="d">' * depth + '<outline text="F" xmlUrl="https://f.example/"/>'
    body += "</outline>" * depth
    [outline] = parse_opml(opml(body))
    assert outline.folder == ("d",) * depth


def test_outline_limit() -> None:
    feed = '<outline text="F" xmlUrl="https://f.example/"/>'
    assert len(parse_opml(opml(feed * MAX_OUTLINES))) == MAX_OUTLINES
    # Folders count too.
    message = error_of(opml('<outline text="A">' + feed * MAX_OUTLINES + "</outline>"))
    assert "too many outlines" in message
    assert "10,000" in message


# --- what is refused ----------------------------------------------------------------------


def test_not_xml() -> None:
    assert error_of(b"this is not xml").startswith("not valid XML: syntax error at line 1")
    message = error_of(b'<opml version="2.0">\n<body>\n</opml>')
    assert message == "not valid XML: mismatched tag at line 3, column 3"
    assert "not valid XML" in error_of(opml('<outline text="&nbsp;" xmlUrl="https://a/"/>'))
    assert "not valid XML" in error_of(b"<opml><body></body></opml><opml/>")
    klingon = b'<?xml version="1.0" encoding="klingon"?><opml/>'
    assert error_of(klingon) == "not valid XML: unknown encoding 'klingon'"


def test_empty() -> None:
    assert error_of(b"") == "the file is empty"
    assert error_of(b" \n\t") == "the file is empty"


def test_other_xml_is_not_opml() -> None:
    rss = b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'
    assert error_of(rss) == "not an OPML file: the root element is <rss>, expected <opml>"
    atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>'
    assert error_of(atom) == "not an OPML file: the root element is <feed>, expected <opml>"
    html = b"<html><head><title>x</title></head><body/></html>"
    assert error_of(html) == "not an OPML file: the root element is <html>, expected <opml>"


def test_html_pages() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Log in</title></head><body><p>Hi</body></html>"
    assert "HTML page" in error_of(page)
    # Well-formed enough to reach the root element:
    simple = b"<html><head><title>x</title></head><body><br></body></html>"
    assert error_of(simple) == "not an OPML file: the root element is <html>, expected <opml>"
    # Broken before the root element is even read:
    broken = b"<html lang=en><head><title>x</title></head></html>"
    assert error_of(broken) == "not an OPML file: it looks like an HTML page"


def test_billion_laughs_is_refused_quickly() -> None:
    lol = ['<!ENTITY lol0 "lol">']
    lol += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    data = (
        '<?xml version="1.0"?>\n<!DOCTYPE opml [\n' + "\n".join(lol) + "\n]>\n"
        '<opml version="2.0"><body><outline text="&lol9;" xmlUrl="https://a.example/"/>'
        "</body></opml>"
    ).encode()
    started = time.monotonic()
    message = error_of(data)
    assert time.monotonic() - started < 1
    assert message.startswith("refused: the file has a <!DOCTYPE> declaration")


def test_external_entities_are_refused() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<opml><body><outline text="&xxe;" xmlUrl="https://a.example/"/></body></opml>'
    )
    assert error_of(data).startswith("refused:")
    plain = b'<!DOCTYPE opml SYSTEM "http://example.invalid/opml.dtd"><opml/>'
    assert error_of(plain).startswith("refused:")


def test_size_limit() -> None:
    feed = '<outline text="F" xmlUrl="https://f.example/"/>'
    padding = " " * (MAX_BYTES + 1)
    message = error_of(opml(feed + padding))
    assert message.startswith("the file is too large (5.0 MB)")
    assert "up to 5.0 MB" in message
    # Just under the limit is fine.
    data = opml(feed)
    data = data.replace(b"<body>", b"<body>" + b" " * (MAX_BYTES - len(data)))
    assert len(data) == MAX_BYTES
    assert len(parse_opml(data)) == 1


# --- writing ------------------------------------------------------------------------------


def test_write_shape() -> None:
    entries = [
        ExportEntry(
            "#news", "World Report", "https://world.example.net/rss", "https://world.example.net"
        ),
        ExportEntry("webhook 1234", "Dev Notes", "https://devnotes.example.com/atom.xml"),
        ExportEntry("#news", 'Tech & "Society" <daily>', "https://news.example.net/rss?a=1&b=2"),
    ]
    created = datetime(2024, 9, 10, 7, 45, 3, tzinfo=UTC)
    assert write_opml(entries, created=created) == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<opml version="2.0">\n'
        "  <head>\n"
        "    <title>feedhook subscriptions</title>\n"
        "    <dateCreated>Tue, 10 Sep 2024 07:45:03 +0000</dateCreated>\n"
        "  </head>\n"
        "  <body>\n"
        '    <outline text="#news" title="#news">\n'
        '      <outline type="rss" text="World Report" title="World Report"'
        ' xmlUrl="https://world.example.net/rss" htmlUrl="https://world.example.net" />\n'
        '      <outline type="rss" text="Tech &amp; &quot;Society&quot; &lt;daily&gt;"'
        ' title="Tech &amp; &quot;Society&quot; &lt;daily&gt;"'
        ' xmlUrl="https://news.example.net/rss?a=1&amp;b=2" />\n'
        "    </outline>\n"
        '    <outline text="webhook 1234" title="webhook 1234">\n'
        '      <outline type="rss" text="Dev Notes" title="Dev Notes"'
        ' xmlUrl="https://devnotes.example.com/atom.xml" />\n'
        "    </outline>\n"
        "  </body>\n"
        "</opml>\n"
    )


def test_write_head() -> None:
    no_date = ET.fromstring(write_opml([], title="Mine & yours"))
    assert no_date.get("version") == "2.0"
    assert no_date.findtext("head/title") == "Mine & yours"
    assert no_date.find("head/dateCreated") is None
    assert no_date.find("body") is not None
    paris = timezone(timedelta(hours=2))
    aware = ET.fromstring(write_opml([], created=datetime(2024, 1, 2, 3, 4, 5, tzinfo=paris)))
    assert aware.findtext("head/dateCreated") == "Tue, 02 Jan 2024 03:04:05 +0200"
    naive = ET.fromstring(write_opml([], created=datetime(2024, 1, 2, 3, 4, 5)))
    assert naive.findtext("head/dateCreated") == "Tue, 02 Jan 2024 03:04:05 +0000"


def test_write_blank_folder_goes_to_the_top_level() -> None:
    text = write_opml(
        [
            ExportEntry("", "Top", "https://top.example/"),
            ExportEntry(" a ", "In a", "https://a.example/"),
            ExportEntry("a", "Also in a", "https://a2.example/"),
        ]
    )
    body = ET.fromstring(text).find("body")
    assert body is not None
    assert [(o.get("text"), o.get("xmlUrl")) for o in body] == [
        ("Top", "https://top.example/"),
        ("a", None),
    ]
    assert parse_opml(text.encode()) == [
        Outline("https://top.example/", "Top", ()),
        Outline("https://a.example/", "In a", ("a",)),
        Outline("https://a2.example/", "Also in a", ("a",)),
    ]


def test_write_drops_characters_xml_cannot_carry() -> None:
    text = write_opml([ExportEntry("f\x00", "bell\x07 \ufffe\ud800ok", "https://a.example/\x1b")])
    text.encode()  # no lone surrogate left
    assert parse_opml(text.encode()) == [Outline("https://a.example/", "bell ok", ("f",))]


def test_write_then_parse_fixture() -> None:
    outlines = load("thunderbird.opml")
    entries = [ExportEntry(" / ".join(o.folder), o.title, o.url, o.site) for o in outlines]
    back = parse_opml(write_opml(entries).encode())
    assert [(o.url, o.title, o.site) for o in back] == [(o.url, o.title, o.site) for o in outlines]


_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
any_text = st.text(st.characters(exclude_categories=()), max_size=30)


def expected(entry: ExportEntry) -> tuple[tuple[str, ...], str, str, str | None]:
    folder = _FORBIDDEN.sub("", entry.folder).strip()
    site = _FORBIDDEN.sub("", entry.site).strip() if entry.site is not None else ""
    return (
        (folder,) if folder else (),
        _FORBIDDEN.sub("", entry.title).strip(),
        _FORBIDDEN.sub("", entry.url).strip(),
        site or None,
    )


entries_strategy = st.lists(
    st.builds(
        ExportEntry,
        folder=st.one_of(st.sampled_from(["#news", "webhook 1234", ""]), any_text),
        title=any_text,
        url=st.one_of(
            any_text.map(lambda s: "https://example.org/" + s),
            any_text.filter(lambda s: bool(_FORBIDDEN.sub("", s).strip())),
        ),
        site=st.none() | any_text,
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(entries=entries_strategy, title=any_text)
def test_round_trip(entries: list[ExportEntry], title: str) -> None:
    text = write_opml(entries, title=title, created=datetime(2024, 1, 1, tzinfo=UTC))
    back = parse_opml(text.encode())
    assert Counter((o.folder, o.title, o.url, o.site) for o in back) == Counter(
        expected(entry) for entry in entries
    )
