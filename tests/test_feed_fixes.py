"""Shapes seen in real feeds: HTML tables, emphasis that touches, wrong encoding labels.

Every document here is written for these tests (synthetic copies of the shapes).
"""

from __future__ import annotations

import re

import pytest

from bot.sources.feed import ParseError, build_item, html_to_markdown, parse_feed
from bot.sources.incremental import parse_changed
from bot.sources.split import split_entries

BASE = "https://feed.example/"


def md(html: str) -> str:
    return html_to_markdown(html, base=BASE)[0]


def stray_asterisks(markdown: str) -> list[str]:
    """Runs of three or more unescaped asterisks."""
    return re.findall(r"(?<!\\)\*{3,}", markdown)


# --------------------------------------------------------------------------- tables

REDDIT = (
    '<table> <tr><td> <a href="https://www.reddit.com/r/pics/comments/abc/sunset/">'
    ' <img src="https://preview.redd.it/sunset.jpg?width=640" alt="Sunset" title="Sunset" />'
    " </a> </td><td> &#32; submitted by &#32;"
    ' <a href="https://www.reddit.com/user/someone"> /u/someone </a> <br/>'
    ' <span><a href="https://i.redd.it/sunset.jpg">[link]</a></span> &#32;'
    ' <span><a href="https://www.reddit.com/r/pics/comments/abc/sunset/">[comments]</a></span>'
    " </td></tr></table>"
)


def test_a_reddit_link_post_is_one_plain_line() -> None:
    markdown, image = html_to_markdown(REDDIT, base="https://www.reddit.com/r/pics/.rss")
    assert markdown == (
        "submitted by [/u/someone](https://www.reddit.com/user/someone)"
        " [[link]](https://i.redd.it/sunset.jpg)"
        " [[comments]](https://www.reddit.com/r/pics/comments/abc/sunset/)"
    )
    assert image == "https://preview.redd.it/sunset.jpg?width=640"


def test_a_data_table_becomes_one_line_per_row() -> None:
    html = (
        "<p>Models:</p><table><thead><tr><th>Year</th><th>Name</th></tr></thead>"
        '<tbody><tr><td>1982</td><td><a href="/vic">VICMODEM</a></td></tr>'
        "<tr><td></td><td>no year</td></tr></tbody></table><p>After.</p>"
    )
    assert md(html) == (
        "Models:\n\n"
        "Year · Name\n"
        "1982 · [VICMODEM](https://feed.example/vic)\n"
        "no year\n\n"  # empty cells are skipped
        "After."
    )


def test_a_layout_table_with_an_image_and_a_caption_keeps_the_caption() -> None:
    html = (
        '<table class="tr-caption-container"><tbody>'
        '<tr><td><a href="/big.jpg"><img src="/small.jpg"></a></td></tr>'
        '<tr><td class="tr-caption">In Memoriam</td></tr></tbody></table>'
    )
    markdown, image = html_to_markdown(html, base=BASE)
    assert markdown == "In Memoriam"
    assert image == "https://feed.example/small.jpg"


def test_block_content_and_line_breaks_in_a_cell_stay_on_the_row_line() -> None:
    html = (
        "<table><tr><td><p>para 1</p><p>para 2</p></td><td>Nagging<br>From</td>"
        "<td><ul><li>x</li><li>y</li></ul></td></tr></table>"
    )
    assert md(html) == "para 1 para 2 · Nagging From · - x - y"


def test_a_table_in_a_cell_stays_on_its_line() -> None:
    html = (
        "<table><tr><td>outer <table><tr><td>in 1</td><td>in 2</td></tr></table></td>"
        "<td>last</td></tr><tr><td>second row</td></tr></table>"
    )
    assert md(html) == "outer in 1 · in 2 · last\nsecond row"


@pytest.mark.parametrize(
    "html",
    [
        REDDIT,
        "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>",
        "<table><tr><td></td></tr><tr><td>only</td></tr></table>",
        "<table><caption>Cap</caption><tr><td colspan='2'>wide</td></tr></table>",
    ],
)
def test_no_markdown_table_syntax_is_left(html: str) -> None:
    markdown = md(html)
    assert "|" not in markdown
    assert "---" not in markdown
    assert "\ufdd4" not in markdown


def test_a_reddit_item_through_parse_feed_and_build_item() -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>r/pics</title>'
        "<entry><id>t3_abc</id><title>Sunset</title>"
        '<link href="https://www.reddit.com/r/pics/comments/abc/sunset/"/>'
        '<content type="html">'
        + REDDIT.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        + "</content></entry></feed>"
    ).encode()
    feed = parse_feed(doc, url="https://www.reddit.com/r/pics/.rss", headers={})
    item = build_item(feed, feed.entries[0])
    assert item.summary.startswith("submitted by [/u/someone](https://www.reddit.com/user/someone)")
    assert "|" not in item.summary
    assert item.image == "https://preview.redd.it/sunset.jpg?width=640"


# --------------------------------------------------------------------------- emphasis

EMPHASIS = [
    # em + strong holding only punctuation and a no-break space + em
    ("<p><em>a</em><strong>.&nbsp;</strong><em>b</em></p>", "*a*.\u00a0*b*"),
    # strong holding only a no-break space
    ("<p>Hello <strong>&nbsp;</strong> world</p>", "Hello \u00a0 world"),
    # <b> holding a space: the space stays
    ("<p>a<b> </b>b</p>", "a b"),
    ("<p><b> </b>x</p>", "x"),
    # punctuation-only emphasis is dropped, its text kept
    ("<p><em>,</em> <strong>!!</strong> <b>=&gt;</b></p>", ", !! =>"),
    (
        "<p><em>series </em><em>“</em><a href='/s'><em>My guide</em></a><em>”</em></p>",
        "*series* “[*My guide*](https://feed.example/s)”",
    ),
    # nested em / strong sharing an edge: italics take "_"
    ("<p><strong><em>both</em></strong> and</p>", "**_both_** and"),
    ("<p><em><strong>both</strong></em> and</p>", "_**both**_ and"),
    ("<p><em>x <strong>y</strong></em> z</p>", "_x **y**_ z"),
    ("<p><strong><em>Title</em> (2021)</strong> text</p>", "**_Title_ (2021)** text"),
    # adjacent spans of different kinds
    ("<p><strong>bold</strong><em>ital</em></p>", "**bold**_ital_"),
    ("<p><em>ital</em><strong>bold</strong>.</p>", "_ital_**bold**."),
    # "_" needs a non-word character outside it: the italics go
    ("<p><strong>bold</strong><em>ital</em>word</p>", "**bold**italword"),
    # adjacent spans of one kind merge
    ("<p><em>one</em><em>two</em></p>", "*onetwo*"),
    ("<p><b>one</b><strong>two</strong></p>", "**onetwo**"),
    (
        "<p><em><strong>a</strong></em><em><strong>b</strong></em></p>",
        "_**ab**_",
    ),
    # a span inside one of its own kind is dropped
    ("<p><em><em><em>triple</em></em></em></p>", "*triple*"),
    ("<p><b>Listen to this <b>post</b>:</b></p>", "**Listen to this post:**"),
    ("<p><b><strong>x</strong></b> <i><em>y</em></i></p>", "**x** *y*"),
    ("<h4><strong>Sub</strong> head</h4>", "**Sub head**"),
    # unchanged shapes
    ("<p>word<strong>bold</strong>word</p>", "word**bold**word"),
    ("<p><strong>x</strong>, <em>y</em>.</p>", "**x**, *y*."),
    ("<p><b>a<br>b</b></p>", "**a\nb**"),
    (
        '<p><a href="/p"><strong>Subscribe to <em>In the Loop</em></strong></a></p>',
        "[**Subscribe to _In the Loop_**](https://feed.example/p)",
    ),
]


@pytest.mark.parametrize(("html", "expected"), EMPHASIS)
def test_emphasis_leaves_no_stray_delimiters(html: str, expected: str) -> None:
    markdown = md(html)
    assert markdown == expected
    assert stray_asterisks(markdown) == []
    assert not re.search("[\ufdd0-\ufdd4]", markdown)


def test_literal_asterisks_and_code_are_left_alone() -> None:
    assert md("<p>2 * 3 = <b>6</b></p>") == "2 \\* 3 = **6**"
    assert md("<p><b>a*</b></p>") == "**a\\***"
    assert md("<pre><b>code</b> <em>x</em></pre><p><code><em>c</em></code></p>") == (
        "```\ncode x\n```\n\n`c`"
    )


def test_the_converters_placeholders_in_the_input_are_dropped() -> None:
    assert md("<p>a\ufdd0b\ufdd3c <em>d</em>\ufdd4</p>") == "abc *d*"


def test_an_underscore_in_a_link_keeps_asterisk_italics() -> None:
    """Italics with "_" would end at the URL's "_": nested ones fall back to "*"."""
    markdown = md('<p><em><a href="https://x.example/a_b">l</a> <strong>b</strong></em></p>')
    assert markdown == "*[l](https://x.example/a_b) **b***"


# --------------------------------------------------------------------------- encodings


def mislabelled(*, even: bool, declared: str = "UTF-16", body_encoding: str = "utf-8") -> bytes:
    """An RSS document declaring ``declared`` but encoded in ``body_encoding``."""
    text = (
        f'<?xml version="1.0" encoding="{declared}"?>\n'
        '<rss version="2.0"><channel><title>Café ☕</title>'
        "<link>https://cafe.example/</link>"
        "<item><guid>https://cafe.example/1</guid><title>Crème brûlée 🎉</title>"
        "<description>Déjà vu, naïve façade</description></item>"
        "</channel></rss>\n"
    )
    if body_encoding != "utf-8":
        text = text.replace(" ☕", "").replace(" 🎉", "")
    doc = text.encode(body_encoding)
    if (len(doc) % 2 == 0) != even:
        doc += b"\n"
    assert (len(doc) % 2 == 0) == even
    return doc


@pytest.mark.parametrize("even", [True, False])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/rss+xml"},
        {"Content-Type": "text/xml"},
        {"Content-Type": "application/rss+xml; charset=utf-16"},  # the header is wrong too
        {"Content-Type": "text/xml; charset=UTF-16LE"},
    ],
)
def test_a_utf8_document_declared_utf16_parses_whatever_its_length(
    even: bool, headers: dict[str, str]
) -> None:
    feed = parse_feed(mislabelled(even=even), url="https://cafe.example/rss", headers=headers)
    assert feed.info.title == "Café ☕"
    (entry,) = feed.entries
    item = build_item(feed, entry)
    assert item.title == "Crème brûlée 🎉"
    assert item.summary == "Déjà vu, naïve façade"


@pytest.mark.parametrize("declared", ["utf-32", "UCS-2", "utf-16be", "iso-10646-ucs-2"])
def test_other_wide_labels_on_utf8_bytes(declared: str) -> None:
    for even in (True, False):
        feed = parse_feed(mislabelled(even=even, declared=declared), url=BASE, headers={})
        assert build_item(feed, feed.entries[0]).title == "Crème brûlée 🎉"


def test_latin1_bytes_declared_utf16_are_read_as_windows_1252() -> None:
    for even in (True, False):
        doc = mislabelled(even=even, body_encoding="latin-1")
        feed = parse_feed(doc, url=BASE, headers={})
        assert feed.info.title == "Café"
        assert build_item(feed, feed.entries[0]).title == "Crème brûlée"


def test_a_wrong_utf16_charset_gives_way_to_a_right_declaration() -> None:
    doc = mislabelled(even=True, declared="ISO-8859-1", body_encoding="latin-1")
    headers = {"Content-Type": "application/rss+xml; charset=utf-16"}
    feed = parse_feed(doc, url=BASE, headers=headers)
    assert build_item(feed, feed.entries[0]).summary == "Déjà vu, naïve façade"


def test_real_utf16_documents_still_parse() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-16"?><rss version="2.0"><channel><title>Café</title>'
        "<item><guid>1</guid><title>Crème 🎉</title></item></channel></rss>"
    )
    for doc in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        feed = parse_feed(doc, url=BASE, headers={})
        assert feed.info.title == "Café"
        assert build_item(feed, feed.entries[0]).title == "Crème 🎉"


def test_a_failed_parse_is_retried_as_utf8_when_a_label_was_wrong() -> None:
    # an EBCDIC label on UTF-8 bytes: feedparser decodes them "fine" and finds no XML
    doc = mislabelled(even=True, declared="ebcdic-cp-us")
    feed = parse_feed(doc, url=BASE, headers={})
    assert build_item(feed, feed.entries[0]).title == "Crème brûlée 🎉"


def test_a_broken_document_still_fails_after_the_retry() -> None:
    doc = mislabelled(even=False, declared="ISO-8859-1")
    cut = doc[: doc.index(b"<item>") + 3]  # no entry, and an XML error
    with pytest.raises(ParseError, match="malformed XML"):
        parse_feed(cut, url=BASE, headers={})


def _with_second_item(doc: bytes, *, reduced_even: bool) -> bytes:
    """``doc`` with a new first item, padded so the copy holding only it has the wanted parity."""
    new_item = (
        "<item><guid>https://cafe.example/2</guid><title>Tarte Tatin 🍎</title>"
        "<description>Pommes caramélisées</description></item>"
    ).encode()
    body = doc.replace(b"<item>", new_item + b"<item>", 1)
    split = split_entries(body)
    assert split is not None
    if (len(split.keeping({0})) % 2 == 0) != reduced_even:
        body += b" "
    return body


@pytest.mark.parametrize("even", [True, False])
def test_parse_changed_reads_a_mislabelled_document_whole_and_reduced(even: bool) -> None:
    first = mislabelled(even=even)
    whole = parse_changed(first, url="https://cafe.example/rss", headers={}, previous=None)
    assert whole.parsed is not None
    assert not whole.reduced
    assert whole.parsed.info.title == "Café ☕"
    assert [build_item(whole.parsed, e).title for e in whole.candidates] == ["Crème brûlée 🎉"]
    assert whole.seen is not None

    second = _with_second_item(first, reduced_even=even)
    changed = parse_changed(second, url="https://cafe.example/rss", headers={}, previous=whole.seen)
    assert changed.reduced  # only the new entry was parsed, and the parse succeeded
    assert changed.parsed is not None
    assert [build_item(changed.parsed, e).title for e in changed.candidates] == ["Tarte Tatin 🍎"]
    assert [build_item(changed.parsed, e).summary for e in changed.candidates] == [
        "Pommes caramélisées"
    ]
