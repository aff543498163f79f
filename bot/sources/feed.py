"""Parse RSS, RDF and Atom documents into :class:`~bot.models.Item` objects.

Two stages, because most polls bring nothing new:

* :func:`parse_feed` runs feedparser once and computes, per entry, only what
  the poller needs to spot new entries (key, link, normalised link, date).
* :func:`build_item` does the expensive part (HTML to Discord markdown, image
  lookup) and is called only for entries the poller has never seen.

Nothing here touches the network or the file system: feedparser is only ever
given the bytes we already fetched, wrapped in :class:`io.BytesIO`.
"""

from __future__ import annotations

import bisect
import calendar
import codecs
import hashlib
import html
import io
import re
import threading
import time
import unicodedata
import xml.sax
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, Final, Protocol
from urllib.parse import unquote_plus, urljoin, urlsplit, urlunsplit

import feedparser  # type: ignore[import-untyped, unused-ignore]
from bs4 import BeautifulSoup, Tag
from markdownify import ATX, MarkdownConverter

from bot.models import FeedInfo, Item
from bot.sources import saxdriver

__all__ = [
    "DocumentParser",
    "ParseError",
    "ParsedEntry",
    "ParsedFeed",
    "absolute_url",
    "build_item",
    "decode_entities",
    "drop_shortcodes",
    "escaped_markup",
    "find_feed_links",
    "html_to_markdown",
    "looks_like_html",
    "normalise_link",
    "parse_feed",
    "short_title",
    "text_body_to_markdown",
    "text_to_markdown",
]

_HINT: Final = "check the URL points at an RSS, Atom or JSON feed"
_MAX_KEY_LEN: Final = 500
_MIN_YEAR: Final = 1990  # feeds use 1970-01-01 / 0001-01-01 as "no date"
_MAX_FUTURE: Final = timedelta(days=366)
_UNTITLED: Final = "(untitled)"
_TITLE_FROM_TEXT_LEN: Final = 80
# HTML beyond this is not converted: a Discord embed shows 4096 characters,
# and markdownify runs at ~1 MB/s (a 300 KB post would take ~1 s of CPU).
_MAX_HTML_CHARS: Final = 65_536
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})


# feedparser asks xml.sax for "drv_libxml2" first on every parse: a module that is
# not installed, so each parse paid for a failed import (a search of sys.path under
# the import lock, contended by the parsing threads). Our driver is expat, which every
# test runs on, with its text buffered (see bot.sources.saxdriver).
feedparser.api.PREFERRED_XML_PARSERS = [saxdriver.__name__]


class ParseError(Exception):
    """The document is not a feed we can read.

    ``str(e)`` is one sentence meant for the person who added the source, e.g.
    ``not a feed: the document is malformed XML (mismatched tag at line 3);
    check the URL points at an RSS, Atom or JSON feed``.
    """


@dataclass(frozen=True)
class ParsedEntry:
    """What the poller needs about an entry to decide whether it is new."""

    key: str
    link: str | None
    link_norm: str | None
    published: datetime | None
    # the feedparser entry, read by build_item(); left out of ==, hash() and repr()
    raw: Any = field(compare=False, repr=False)
    # Sources parsed without feedparser (JSON APIs) build their Item up front;
    # build_item() then returns it as is, apart from the link-uniqueness rule.
    item: Item | None = field(default=None, compare=False, repr=False)


EntryRef = tuple[str, str | None]


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed document: entries in document order, duplicate keys dropped."""

    info: FeedInfo
    entries: tuple[ParsedEntry, ...]
    base_url: str
    author: str | None = None  # feed-level author: build_item's fallback for entries
    # (key, link_norm) of every entry feedparser found, in document order, duplicates
    # included: lets the poller reason about entries it did not parse again.
    raw_refs: tuple[EntryRef, ...] = ()


class DocumentParser(Protocol):
    """Parses one fetched document (:func:`parse_feed` is one). CPU-bound: run it in a thread."""

    def __call__(self, body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed: ...


# --------------------------------------------------------------------------- headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup for a plain dict or a CIMultiDictProxy."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, val in headers.items():
        if key.lower() == wanted:
            return val
    return None


def _split_content_type(value: str | None) -> tuple[str, str | None]:
    """``"text/html; charset=UTF-8"`` -> ``("text/html", "utf-8")``."""
    if not value:
        return "", None
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'").lower() or None
    return mime.strip().lower(), charset


def _document_base(url: str, content_location: str | None) -> str:
    if content_location and content_location.strip():
        base = urljoin(url, content_location.strip())
        if urlsplit(base).scheme in ("http", "https"):
            return base
    return url


# --------------------------------------------------------------------------- sniffing

_BOMS: Final = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _sniff(body: bytes, limit: int = 2048) -> tuple[bytes, bytes]:
    """(doctype, first element) at the start of ``body``, each lower-cased.

    Skips a BOM, whitespace, an XML declaration / processing instructions and
    comments, so ``<?xml ...?><!-- x --><!DOCTYPE html><html>`` gives
    ``(b"<!doctype html>", b"<html>...")``. Either may be ``b""``.
    """
    head = body[:limit]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    doctype = b""
    for _ in range(16):
        head = head.lstrip()
        if head.startswith(b"<?"):
            end = head.find(b"?>")
            head = head[end + 2 :] if end >= 0 else b""
        elif head.startswith(b"<!--"):
            end = head.find(b"-->")
            head = head[end + 3 :] if end >= 0 else b""
        elif head[:9].lower() == b"<!doctype" and not doctype:
            end = head.find(b">")
            doctype = head[: end + 1 if end >= 0 else 64][:64].lower()
            head = head[end + 1 :] if end >= 0 else b""
        else:
            break
    return doctype, head[:32].lower()


_FEED_STARTS: Final = (b"<rss", b"<feed", b"<rdf:rdf", b"<rdf", b"<channel", b"{", b"[")


def _is_html_document(body: bytes) -> bool | None:
    """True / False when the body's start settles it, None when it does not."""
    doctype, element = _sniff(body)
    if element.startswith(b"<html"):
        return True
    if element.startswith(_FEED_STARTS):  # even after a stray <!DOCTYPE html>
        return False
    if doctype.startswith(b"<!doctype html"):
        return True
    return None


def _is_json_type(value: str | None) -> bool:
    mime, _ = _split_content_type(value)
    return mime in ("application/json", "application/feed+json") or mime.endswith("+json")


def looks_like_html(body: bytes, headers: Mapping[str, str]) -> bool:
    """True for a web page rather than a feed.

    A body starting with ``<!doctype html`` or ``<html`` (after an XML
    declaration / comments) is HTML whatever the headers say, unless the
    doctype is followed by a feed's root element (some generators emit
    ``<!DOCTYPE html><feed ...>``). ``Content-Type: text/html`` counts too,
    *unless* the body plainly starts as a feed (``<rss``, ``<feed``,
    ``<rdf:RDF``, JSON): many servers send real feeds as text/html, and those
    must still be parsed.
    """
    sniffed = _is_html_document(body)
    if sniffed is not None:
        return sniffed
    mime, _ = _split_content_type(_header(headers, "content-type"))
    return mime == "text/html"


# --------------------------------------------------------------------------- links


_TRACKING_PARAMS: Final = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_eid"})
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def _is_tracking_param(segment: str) -> bool:
    name = unquote_plus(segment.partition("=")[0]).strip().lower()
    return name.startswith("utm_") or name in _TRACKING_PARAMS


_C0_AND_SPACE: Final = "".join(map(chr, range(33)))


def _strip_url(url: str) -> str:
    """Strip Unicode whitespace and C0 controls (what urlsplit strips) until stable."""
    while True:
        stripped = url.strip().strip(_C0_AND_SPACE)
        if stripped == url:
            return url
        url = stripped


def normalise_link(url: str) -> str:
    """A canonical form of ``url`` to compare links, not to fetch them.

    http becomes https, scheme and host are lower-cased, the default port,
    the fragment, a trailing slash and tracking parameters (``utm_*``,
    ``fbclid``, ...) are dropped; the root path is always ``/``. Other query
    parameters keep their order and spelling. Idempotent.
    """
    url = _strip_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if netloc:
        userinfo, at, hostport = netloc.rpartition("@")
        hostport = hostport.rstrip(":")  # "host:" has no port
        host, port = hostport, ""
        if hostport.startswith("["):  # IPv6 literal
            close = hostport.find("]")
            if close >= 0 and hostport[close + 1 : close + 2] == ":":
                host, port = hostport[: close + 1], hostport[close + 2 :]
        else:
            head, colon, tail = hostport.rpartition(":")
            if colon and tail.isdigit():
                host, port = head, tail
        host = host.lower()
        if port and (port == _DEFAULT_PORTS.get(scheme) or (scheme == "http" and port == "443")):
            port = ""
        netloc = f"{userinfo}{at}{host}{':' if port else ''}{port}"
    if scheme == "http":
        scheme = "https"
    path = parts.path
    if netloc or scheme in ("http", "https"):
        path = path.rstrip("/") or "/"
    query = "&".join(seg for seg in parts.query.split("&") if seg and not _is_tracking_param(seg))
    return _strip_url(urlunsplit((scheme, netloc, path, query, "")))


def _absolute_http(base: str, ref: str | None) -> str | None:
    """``ref`` made absolute against ``base``; None unless it is http(s)."""
    if not ref:
        return None
    ref = ref.strip()
    if not ref:
        return None
    scheme, colon, rest = ref.partition(":")
    if colon and rest.startswith("///") and scheme.lower() in ("http", "https"):
        ref = f"{scheme}://{rest.lstrip('/')}"  # "https:///host/x", as browsers read it
    try:
        absolute = urljoin(base, ref)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return absolute


# --------------------------------------------------------------------------- text helpers

_BLOCK_TAGS: Final = frozenset(
    {
        "br",
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "tr",
        "td",
        "th",
        "hr",
        "pre",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "figure",
        "figcaption",
    }
)
_SKIP_TAGS: Final = frozenset({"script", "style", "iframe", "noscript", "template", "svg"})
_ENTITY: Final = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_MANY_NEWLINES: Final = re.compile(r"\n{3,}")
_TRAILING_SPACE: Final = re.compile(r"[ \t\u00a0]+\n")


class _TextExtractor(HTMLParser):
    """HTML -> plain text (entities decoded, script/style dropped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _html_to_text(fragment: str) -> str:
    if "<" not in fragment and "&" not in fragment:
        return _collapse(fragment)
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    return _collapse("".join(parser.parts))


def _plain(value: Any, detail: Any = None) -> str:
    """A feedparser text construct as one line of plain text."""
    if not isinstance(value, str) or not value:
        return ""
    ctype = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if ctype in _HTML_TYPES:
        return decode_entities(_html_to_text(value))  # "&amp;amp;" in HTML: "&amp;" after
    if _ENTITY.search(value):  # double-escaped "&amp;amp;" is common in RSS titles
        value = html.unescape(value)
    return _collapse(value)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def _tidy_markdown(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_NEWLINES.sub("\n\n", text).strip()


# --------------------------------------------------------------------------- messy text
#
# Publishers escape twice: "&amp;nbsp;" in a Blogger <summary type="text">, CDATA
# categories holding "Food &amp; Drink", whole bodies of "&lt;p&gt;...". What is left
# escaped once the text is converted is decoded, except inside Markdown code (a tutorial
# may show "&amp;" in a code block); a body that decodes to markup is converted as HTML.

# Tag names that make "<...>" markup rather than a placeholder like "<port>".
_MARKUP_TAG: Final = re.compile(
    r"<(/?)(?:a|abbr|b|blockquote|br|cite|code|dd|div|dl|dt|em|figcaption|figure|h[1-6]|hr"
    r"|i|iframe|img|li|ol|p|pre|s|small|span|strong|sub|sup|table|tbody|td|th|thead|tr|u|ul"
    r"|video)(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_MARKUP_MIN_TAGS: Final = 4
# Markdown code: fenced blocks (to the closing fence, else to the end) and inline spans
# (within a paragraph).
_CODE: Final = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*(?:\n.*?(?:\n[ \t]*(?P=fence)[ \t]*$|\Z)|\Z)"
    r"|(?P<ticks>`+)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`)",
    re.MULTILINE | re.DOTALL,
)
# WordPress shortcodes: [name key=value ...] (straight, curly or no quotes), [/name], and
# attribute-less [name-x] / [name_x]. markdownify escapes underscores ("vc\_row").
_SC_NAME: Final = r"[A-Za-z][A-Za-z0-9]*(?:(?:-|\\?_)[A-Za-z0-9]+)*"
_SC_JOINED_NAME: Final = r"[A-Za-z][A-Za-z0-9]*(?:(?:-|\\?_)[A-Za-z0-9]+)+"
_JOINED: Final = re.compile(r"[-_]")
# Linear on any input: the attributes are one character class up to "]", and whether
# they hold a key=value is asked afterwards (a lazy scan for "key=" inside the brackets
# went quadratic on a long line with a "[" and no "]").
_SHORTCODE: Final = re.compile(
    rf"\[(?:(?P<open>{_SC_NAME})(?P<attrs>[ \t][^\[\]\n]*)"
    rf"|(?P<bare>{_SC_JOINED_NAME})"
    rf"|/(?P<close>{_SC_NAME}))\](?!\()"
)
_SC_ATTRIBUTE: Final = re.compile(rf"[ \t]{_SC_NAME}=")
_NEWLINE: Final = re.compile("\n")
_NON_SPACE: Final = re.compile(r"\S")


def _looks_like_markup(text: str) -> bool:
    """Conservative: known HTML tags, opening and closing, at the start or several of them.

    ``<p>Hi</p>`` and ``<a href="...">x</a> and more <b>y</b>`` are markup;
    ``iptables -p <tcp/udp> --dport <port>``, ``/dev/<partition>`` and
    ``Why <div> and </div> differ`` are not.
    """
    opening = closing = at_start = False
    start = len(text) - len(text.lstrip())
    for count, match in enumerate(_MARKUP_TAG.finditer(text), start=1):
        if count == 1:
            at_start = match.start() == start
        if match.group(1):
            closing = True
        else:
            opening = True
        if opening and closing and (at_start or count >= _MARKUP_MIN_TAGS):
            return True
    return False


def escaped_markup(text: str) -> str | None:
    """The markup ``text`` holds escaped (``&lt;p&gt;Hi&lt;/p&gt;``), decoded; else None.

    None when ``text`` has markup of its own or decodes to something that does not
    look like markup (see :func:`_looks_like_markup`).
    """
    if "&lt;" not in text or _MARKUP_TAG.search(text):
        return None
    decoded = html.unescape(text)
    return decoded if _looks_like_markup(decoded) else None


def _code_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _CODE.finditer(text)] if "`" in text or "~" in text else []


def _in_code(spans: list[tuple[int, int]], position: int) -> bool:
    index = bisect.bisect_right(spans, position, key=lambda span: span[0]) - 1
    return index >= 0 and position < spans[index][1]


def decode_entities(text: str) -> str:
    """``text`` with the entities left in it decoded once, except in Markdown code.

    For text already converted (or plain by nature): ``Food &amp; Drink`` becomes
    ``Food & Drink``; ``&amp;lt;`` becomes ``&lt;``. Only ``&name;`` / ``&#n;`` forms.
    """
    if "&" not in text or _ENTITY.search(text) is None:
        return text
    spans = _code_spans(text)

    def unescape(match: re.Match[str]) -> str:
        entity = match.group(0)
        return entity if _in_code(spans, match.start()) else html.unescape(entity)

    return _ENTITY.sub(unescape, text)


def _line_bounds(text: str, newlines: list[int], start: int, end: int) -> tuple[int, int] | None:
    """(line start, after the line's newline) if text[start:end] is alone on its line.

    ``newlines``: the positions of every newline in ``text``, so that a long line with
    many shortcodes costs a bisection per shortcode rather than a scan of the line."""
    before = bisect.bisect_left(newlines, start)
    line_start = newlines[before - 1] + 1 if before else 0
    after = bisect.bisect_left(newlines, end)
    line_end = newlines[after] if after < len(newlines) else len(text)
    # searched in place (no slices): a slice per shortcode of a long line is quadratic
    if _NON_SPACE.search(text, line_start, start) or _NON_SPACE.search(text, end, line_end):
        return None
    return line_start, min(line_end + 1, len(text))


def drop_shortcodes(text: str) -> str:
    """``text`` without WordPress shortcodes, outside Markdown code.

    Dropped: ``[name key=value ...]`` (at least one attribute), the ``[/name]`` that
    closes one, and an attribute-less ``[name-x]`` / ``[name_x]`` / ``[/name_x]`` alone on
    its line or closed later by ``[/name_x]``. A line left empty goes with it. Links
    ``[here](url)``, ``[n]``, ``[a-z]`` and brackets in code stay.
    """
    if "[" not in text:
        return text
    matches = list(_SHORTCODE.finditer(text))
    if not matches:
        return text
    spans = _code_spans(text)
    matches = [
        m
        for m in matches
        if not _in_code(spans, m.start())
        and (not m.group("open") or _SC_ATTRIBUTE.search(m.group("attrs")))
    ]
    closers = {m.group("close").replace("\\", "") for m in matches if m.group("close")}
    dropped: set[str] = set()
    cuts: list[tuple[int, int, bool]] = []  # (start, end, whole line)
    newlines = [m.start() for m in _NEWLINE.finditer(text)]
    for match in matches:
        start, end = match.span()
        line = _line_bounds(text, newlines, start, end)
        if match.group("open"):
            dropped.add(match.group("open").replace("\\", ""))
        elif match.group("bare"):
            name = match.group("bare").replace("\\", "")
            if line is None and name not in closers:
                continue
            dropped.add(name)
        else:
            name = match.group("close").replace("\\", "")
            if name not in dropped and (line is None or not _JOINED.search(name)):
                continue
        if line is not None:
            cuts.append((*line, True))
            continue
        while start > 0 and text[start - 1] in " \t":  # with the spaces around it
            start -= 1
        while end < len(text) and text[end] in " \t":
            end += 1
        if cuts and start <= cuts[-1][1] and not cuts[-1][2]:  # "[a x=1] [b y=2]"
            start = cuts.pop()[0]
        cuts.append((start, end, False))
    if not cuts:
        return text
    out: list[str] = []
    position = 0
    for start, end, whole_line in cuts:
        out.append(text[position:start])
        # between two words, one space stays: "see [a x=1] here" -> "see here"
        between_words = (
            not whole_line
            and start > 0
            and end < len(text)
            and text[start - 1] != "\n"
            and text[end] != "\n"
            and (text[start] in " \t" or text[end - 1] in " \t")
        )
        if between_words:
            out.append(" ")
        position = end
    out.append(text[position:])
    return "".join(out)


def _clean_markdown(markdown: str) -> str:
    """Converted text as it goes into a summary: entities left decoded, shortcodes dropped."""
    cleaned = drop_shortcodes(decode_entities(markdown))
    return markdown if cleaned is markdown else _tidy_markdown(cleaned)


# --------------------------------------------------------------------------- dates


def _to_datetime(value: Any, now: datetime) -> datetime | None:
    """feedparser's UTC struct_time -> aware UTC datetime, or None if absurd."""
    if not isinstance(value, time.struct_time):
        return None
    if not _MIN_YEAR <= value.tm_year <= now.year + 1:
        return None
    try:
        moment = datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if moment > now + _MAX_FUTURE:
        return None
    return moment


def _entry_date(raw: Any, now: datetime) -> datetime | None:
    # dict.get, not FeedParserDict.get: the latter maps a missing
    # "updated_parsed" to "published_parsed" with a DeprecationWarning.
    for name in ("published_parsed", "updated_parsed"):
        moment = _to_datetime(dict.get(raw, name), now)
        if moment is not None:
            return moment
    return None


# --------------------------------------------------------------------------- parse_feed

_KINDS: Final = {
    "rss090": "rdf",
    "rss10": "rdf",
    "rss091n": "rss",
    "rss091u": "rss",
    "rss092": "rss",
    "rss093": "rss",
    "rss094": "rss",
    "rss20": "rss",
    "rss": "rss",
    "cdf": "rss",
}


def _kind(version: str) -> str:
    if version.startswith("atom"):
        return "atom"
    return _KINDS.get(version, "rss")


def _bozo_reason(exc: Any) -> str:
    if isinstance(exc, xml.sax.SAXParseException):
        return f"the document is malformed XML ({exc.getMessage()} at line {exc.getLineNumber()})"
    if isinstance(exc, xml.sax.SAXException):
        return f"the document is malformed XML ({_shorten(_collapse(str(exc)), 120)})"
    if isinstance(exc, feedparser.CharacterEncodingUnknown):
        return "the document's character encoding could not be worked out"
    # NonXMLContentType / CharacterEncodingOverride alone don't explain a failure
    return "the XML document has no RSS or Atom elements"


def _failure(body: bytes, result: Any) -> ParseError:
    _, start = _sniff(body)
    if start.startswith((b"{", b"[")):
        reason = "the document is JSON, not RSS or Atom XML"
    elif not start.startswith(b"<"):
        reason = "the document is plain text, not XML"
    else:
        reason = _bozo_reason(result.get("bozo_exception"))
    return ParseError(f"not a feed: {reason}; {_HINT}")


def _body_values(raw: Any) -> list[Any]:
    """content[*] then summary_detail: feedparser dicts with value/type/base."""
    values: list[Any] = [c for c in dict.get(raw, "content") or () if isinstance(c, Mapping)]
    summary = dict.get(raw, "summary_detail")
    if isinstance(summary, Mapping):
        values.append(summary)
    elif isinstance(dict.get(raw, "summary"), str):
        values.append({"value": dict.get(raw, "summary"), "type": "text/html", "base": ""})
    return values


def _longest_body(raw: Any) -> Any:
    best: Any = None
    best_len = -1
    for value in _body_values(raw):
        text = value.get("value") or ""
        if isinstance(text, str) and len(text) > best_len:
            best, best_len = value, len(text)
    return best


def _hash_key(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()


def _entry_key(raw: Any, link: str | None) -> str:
    key = dict.get(raw, "id")
    key = key.strip() if isinstance(key, str) else ""
    if not key and link:
        key = link
    if not key:
        title = dict.get(raw, "title") or ""
        date = dict.get(raw, "published") or dict.get(raw, "updated") or ""
        body = _longest_body(raw)
        content = (body.get("value") or "") if body is not None else ""
        return _hash_key(str(title), str(date), str(content))
    if len(key) > _MAX_KEY_LEN:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return key


def _feed_info(feed: Any, version: str, url: str, base: str) -> FeedInfo:
    title = _plain(dict.get(feed, "title"), dict.get(feed, "title_detail"))
    if not title:
        title = urlsplit(url).hostname or url
    link = _absolute_http(base, dict.get(feed, "link"))
    icon = None
    image = dict.get(feed, "image")
    candidates = [
        image.get("href") if isinstance(image, Mapping) else None,
        dict.get(feed, "icon"),
        dict.get(feed, "logo"),
    ]
    for candidate in candidates:
        icon = _absolute_http(base, candidate if isinstance(candidate, str) else None)
        if icon:
            break
    hub, self_url = _websub_links(feed, base)
    return FeedInfo(
        title=title, link=link, icon=icon, kind=_kind(version), hub=hub, self_url=self_url
    )


def _websub_links(feed: Any, base: str) -> tuple[str | None, str | None]:
    """The first ``rel="hub"`` and ``rel="self"`` links of the feed element (WebSub)."""
    hub = self_url = None
    for link in dict.get(feed, "links") or ():
        if not isinstance(link, Mapping):
            continue
        rel = str(link.get("rel") or "").strip().lower()
        href = link.get("href")
        url = _absolute_http(base, href if isinstance(href, str) else None)
        if rel == "hub" and hub is None:
            hub = url
        elif rel == "self" and self_url is None:
            self_url = url
    return hub, self_url


def _feedparser_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers feedparser may see.

    Content-Type (charset and RFC 3023 rules) and Content-Language only. No
    Content-Location: feedparser would resolve relative ``<guid>`` values
    against it and item keys would change with the feed's URL. Links are
    resolved here instead: feedparser applies xml:base (absolute, or relative
    to nothing) and we urljoin the result onto the document base. feedparser defaults a document
    with headers but no Content-Type to ISO-8859-1, so an absent Content-Type
    is stood in for by application/xml (= XML declaration, else UTF-8).
    """
    out: dict[str, str] = {}
    ctype = _header(headers, "content-type")
    lang = _header(headers, "content-language")
    if lang:
        out["content-language"] = lang
    if ctype:
        out["content-type"] = ctype
    elif out:
        out["content-type"] = "application/xml"
    return out


# --------------------------------------------------------------------------- wrong encoding labels
#
# A label naming UTF-16 or UTF-32 (in the XML declaration or the Content-Type charset) on
# a document whose first bytes hold no NUL is wrong: in those encodings "<?xml" takes 10
# or 20 bytes, half or more of them NUL. feedparser believes the label, and decoding
# UTF-8 bytes as UTF-16 fails on an odd length (it then falls back to UTF-8) but
# "succeeds" on an even one, with CJK garbage and no feed. Such a label is replaced by
# the encoding the bytes show before feedparser sees the document.

_XML_ENCODING: Final = re.compile(
    rb"<\?xml[ \t\r\n][^>]*?\bencoding[ \t\r\n]*=[ \t\r\n]*"
    rb"(?P<q>[\"'])(?P<name>[^\"'<>]{0,40})(?P=q)"
)
# UTF-16/32 labels Python's codecs do not know (feedparser's list)
_WIDE_LABELS: Final = frozenset(
    {"ucs-2", "ucs-4", "iso-10646-ucs-2", "iso-10646-ucs-4", "csucs4", "csunicode"}
)


def _is_wide(label: str | None) -> bool:
    """True for a UTF-16 / UTF-32 encoding label."""
    if not label:
        return False
    label = label.strip().lower()
    if label in _WIDE_LABELS:
        return True
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return False
    return name.startswith(("utf-16", "utf-32"))


def _valid_xml_codec(label: str | None) -> str | None:
    try:
        return codecs.lookup(label).name if label else None
    except LookupError:
        return None


def _without_bom(body: bytes) -> tuple[int, bytes]:
    """(BOM length, body after it) for a UTF-8 BOM; (0, body) otherwise."""
    return (3, body[3:]) if body.startswith(codecs.BOM_UTF8) else (0, body)


def _decodes_as_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _relabel(body: bytes, headers: dict[str, str], encoding: str) -> tuple[bytes, dict[str, str]]:
    """``body`` and feedparser's ``headers`` saying ``encoding``, wherever they said one."""
    skip, data = _without_bom(body)
    match = _XML_ENCODING.match(data)
    if match is not None:
        start, end = match.span("name")
        body = body[: skip + start] + encoding.encode("ascii") + body[skip + end :]
    ctype = headers.get("content-type")
    if ctype:  # text/xml without a charset would mean us-ascii, whatever the declaration
        headers = {
            **headers,
            "content-type": f"{_split_content_type(ctype)[0]}; charset={encoding}",
        }
    return body, headers


def _fix_wide_label(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """``body`` and ``headers`` without a UTF-16/32 label the bytes contradict.

    The bytes' encoding: UTF-8 if they decode as UTF-8, else the XML declaration's
    encoding when only the Content-Type charset was wrong, else windows-1252
    (feedparser's own next guess). A real UTF-16/32 document (BOM, or NUL bytes at
    the start) is left alone.
    """
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return body, headers
    _, data = _without_bom(body)
    if b"\x00" in data[:4]:
        return body, headers
    match = _XML_ENCODING.match(data)
    declared = match.group("name").decode("ascii", "replace") if match else None
    charset = _split_content_type(headers.get("content-type"))[1]
    if not _is_wide(declared) and not _is_wide(charset):
        return body, headers
    if _decodes_as_utf8(data):
        encoding = "utf-8"
    elif not _is_wide(declared) and _valid_xml_codec(declared):
        encoding = str(declared).strip()
    else:
        encoding = "windows-1252"
    return _relabel(body, headers, encoding)


def _run_feedparser(body: bytes, headers: dict[str, str]) -> Any:
    # io.BytesIO, not the bytes themselves: feedparser.api._open_resource
    # read()s anything with a .read attribute and does nothing else, whereas
    # for bytes it first tries open(body) as a *file path*, and for a str it
    # would fetch http(s)/ftp/file URLs. A stream is never opened or fetched.
    return feedparser.parse(
        io.BytesIO(body),
        response_headers=headers,
        sanitize_html=False,  # we never render HTML, it becomes markdown
        resolve_relative_uris=False,  # done in build_item, for new entries only
    )


def _failed(result: Any) -> bool:
    """No entries, and no feed either (or an XML syntax error: e.g. a truncated document)."""
    return not result.get("entries") and (
        not result.get("version") or isinstance(result.get("bozo_exception"), xml.sax.SAXException)
    )


def _utf8_retry(body: bytes, headers: dict[str, str], result: Any) -> Any:
    """A failed parse done again as UTF-8 when feedparser decoded bytes that are valid
    UTF-8 as something else (a wrong label it believed); None when that is not the case
    or the retry fails too."""
    used = _valid_xml_codec(result.get("encoding"))
    _, data = _without_bom(body)
    if used in (None, "utf-8") or b"\x00" in data[:4] or not _decodes_as_utf8(data):
        return None
    relabelled, new_headers = _relabel(body, headers, "utf-8")
    if relabelled == body and new_headers == headers:
        return None  # no label to change: the failure is not the label's
    retry = _run_feedparser(relabelled, new_headers)
    return None if _failed(retry) else retry


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str]) -> ParsedFeed:
    """Parse an RSS / RDF / Atom document or a JSON Feed. CPU-bound: run it in a thread.

    Raises :class:`ParseError` when ``body`` is not a feed. A feed with
    recoverable errors (undefined entity, wrong declared encoding, ...) is
    parsed as far as feedparser gets.
    """
    if not body.strip():
        raise ParseError(f"not a feed: the response body is empty; {_HINT}")
    if _is_html_document(body):
        raise ParseError(
            f"not a feed: the document is an HTML web page, not RSS or Atom XML; {_HINT}"
        )
    if _sniff(body)[1].startswith(b"{") or _is_json_type(_header(headers, "content-type")):
        # JSON Feed: recognised by its content (a "version" of jsonfeed.org/version/...);
        # other JSON falls through to feedparser's verdict below.
        from bot.sources.jsonfeed import looks_like_json_feed, parse_json_feed

        if looks_like_json_feed(body, headers):
            return parse_json_feed(body, url=url, headers=headers)
    base = _document_base(url, _header(headers, "content-location"))

    document, fp_headers = _fix_wide_label(body, _feedparser_headers(headers))
    result = _run_feedparser(document, fp_headers)
    # No entries is fine for a well-formed (or merely mis-labelled) feed; with
    # an XML syntax error it means the document is broken, e.g. truncated.
    if _failed(result):
        result = _utf8_retry(document, fp_headers, result) or result
        if _failed(result):
            raise _failure(body, result)
    version: str = result.get("version") or ""
    raw_entries: list[Any] = list(result.get("entries") or ())
    feed = result.get("feed") or {}

    now = datetime.now(UTC)
    entries: list[ParsedEntry] = []
    refs: list[EntryRef] = []
    seen: set[str] = set()
    for raw in raw_entries:
        link = _absolute_http(base, dict.get(raw, "link"))
        key = _entry_key(raw, link)
        link_norm = normalise_link(link) if link else None
        refs.append((key, link_norm))
        if key in seen:
            continue
        seen.add(key)
        entries.append(
            ParsedEntry(
                key=key,
                link=link,
                link_norm=link_norm,
                published=_entry_date(raw, now),
                raw=raw,
            )
        )
    return ParsedFeed(
        info=_feed_info(feed, version, url, base),
        entries=tuple(entries),
        base_url=base,
        author=_author(feed),
        raw_refs=tuple(refs),
    )


# --------------------------------------------------------------------------- build_item


def _md_url(url: str) -> str:
    """Make a URL safe inside markdown ``[text](url)``."""
    return (
        url.replace(" ", "%20")
        .replace("(", "%28")
        .replace(")", "%29")
        .replace("<", "%3C")
        .replace(">", "%3E")
    )


def _is_pixel(el: Tag) -> bool:
    """1x1 tracking images (feedburner, wordpress stats) are not pictures."""
    for dim in ("width", "height"):
        val = el.get(dim)
        if isinstance(val, str) and val.strip().removesuffix("px") in ("0", "1"):
            return True
    return False


class _ParentLookupTag(Tag):
    """A bs4 tag whose ``find_parent("name")`` walks up comparing names.

    markdownify asks every tag ``find_parent("pre")``; bs4 builds a match filter
    for each call, which was 15% of converting a typical item.
    """

    def find_parent(self, name: Any = None, attrs: Any = None, **kwargs: Any) -> Any:
        if not isinstance(name, str) or attrs or kwargs:
            return super().find_parent(name, attrs, **kwargs)
        parent = self.parent
        while parent is not None:
            if parent.name == name:
                return parent
            parent = parent.parent
        return None


# Elements the converter drops with their content; one can only be in the HTML if
# its start tag is, which a regex finds without walking the tree.
_DROPPED: Final = ("script", "style", "iframe", "noscript", "template", "svg", "object", "embed")
_DROPPED_TAG: Final = re.compile(rf"<(?:{'|'.join(_DROPPED)})\b", re.IGNORECASE)


# --------------------------------------------------------------------------- emphasis
#
# markdownify writes <em>/<strong> as "*"/"**" around each element on its own, so spans
# that touch give "*a***b**", "**a****b**" or "***.***": Discord (and CommonMark) then
# show stray asterisks. The converter writes placeholders instead (Unicode
# noncharacters, removed from the input first) and _resolve_emphasis picks the
# delimiters once the whole item is converted and each span's neighbours are known.
_EM_OPEN: Final = "\ufdd0"
_EM_CLOSE: Final = "\ufdd1"
_STRONG_OPEN: Final = "\ufdd2"
_STRONG_CLOSE: Final = "\ufdd3"
_CELL: Final = "\ufdd4"  # starts each table cell's text, split again by convert_tr
_PLACEHOLDERS: Final = re.compile("[\ufdd0-\ufdd4]")
_EMPHASIS_MARK: Final = re.compile("([\ufdd0-\ufdd3])")
_CLOSING: Final = {_EM_OPEN: _EM_CLOSE, _STRONG_OPEN: _STRONG_CLOSE}
_STRONG_MARKS: Final = frozenset({_STRONG_OPEN, _STRONG_CLOSE})
_ASCII_WORD: Final = re.compile(r"[A-Za-z0-9_]")  # what \b means in Discord's (JS) regexes
_BARE_UNDERSCORE: Final = re.compile(r"(?<!\\)_")
_CELL_SEPARATOR: Final = " · "
_SPACE_RUN: Final = re.compile(" {2,}")


def _no_emphasis_needed(text: str) -> bool:
    """Only punctuation, symbols and invisible characters: nothing to see in bold or italics."""
    return all(unicodedata.category(char)[0] in "PSZC" for char in text)


def _emphasis(text: str, opening: str, closing: str, parent_tags: set[str]) -> str:
    """``text`` between the placeholders ``opening`` and ``closing``, whitespace outside.

    Like markdownify's inline conversion, but any Unicode space (``&nbsp;``) moves
    outside too, and text that is only whitespace or only punctuation and symbols gets
    no placeholders at all: ``a<b> </b>b`` is "a b" (markdownify dropped the space),
    ``<strong>.&nbsp;</strong>`` is ".&nbsp;".
    """
    if "_noformat" in parent_tags:
        return text
    core = text.strip()
    lead = text[: len(text) - len(text.lstrip())].replace("\n", "")
    trail = text[len(text.rstrip()) :].replace("\n", "")
    if not core:
        return lead or trail
    if _no_emphasis_needed(core):
        return f"{lead}{core}{trail}"
    return f"{lead}{opening}{core}{closing}{trail}"


def _unmarked(text: str) -> str:
    return _EMPHASIS_MARK.sub("", text)


def _em_delimiters(tokens: list[str], start: int, end: int) -> tuple[str, str]:
    """The delimiters of the italic span ``tokens[start]`` ... ``tokens[end]``.

    "*" unless a bold delimiter touches it. Then "_" (``**_a_**``, ``**a**_b_``), which
    Discord reads only with no word character outside it and no "_" left unescaped
    inside (a URL's); failing that, "*" for a span nested at the edge of a bold one
    (``***a***`` renders) and no italics at all for one beside a bold one
    (``**a***b*`` would not).
    """
    if end == start + 1:
        return "", ""
    before = tokens[start - 1] if start else ""
    after = tokens[end + 1] if end + 1 < len(tokens) else ""
    beside = before == _STRONG_CLOSE or after == _STRONG_OPEN
    nested = (
        before == _STRONG_OPEN
        or after == _STRONG_CLOSE
        or tokens[start + 1] in _STRONG_MARKS
        or tokens[end - 1] in _STRONG_MARKS
    )
    if not beside and not nested:
        return "*", "*"
    outside = (before[-1:] if before not in _STRONG_MARKS else "") + (
        after[:1] if after not in _STRONG_MARKS else ""
    )
    inside = "".join(tokens[start + 1 : end])
    if not _ASCII_WORD.search(outside) and not _BARE_UNDERSCORE.search(inside):
        return "_", "_"
    return ("", "") if beside else ("*", "*")


def _resolve_emphasis(text: str) -> str:
    """Converted text with its emphasis placeholders turned into Discord delimiters.

    A span inside one of its own kind is dropped (``<b><strong>x</strong></b>``), two
    of a kind that touch are merged (``*one**two*`` becomes ``*onetwo*``), and italics
    touching bold take "_" (see :func:`_em_delimiters`): no run of three or more
    asterisks is left that the text did not have.
    """
    tokens: list[str] = []
    stack: list[tuple[str, bool]] = []  # (opening placeholder, kept)
    depth = {_EM_OPEN: 0, _STRONG_OPEN: 0}
    for index, token in enumerate(_EMPHASIS_MARK.split(text)):
        if index % 2 == 0:
            if token:
                tokens.append(token)
        elif token in depth:
            kept = depth[token] == 0
            depth[token] += 1
            stack.append((token, kept))
            if kept:
                if tokens and tokens[-1] == _CLOSING[token]:
                    tokens.pop()  # "**a**" + "**b**": one span
                else:
                    tokens.append(token)
        else:
            if not stack or _CLOSING[stack[-1][0]] != token:
                return _unmarked(text)  # not nested properly: cannot happen from a tree
            opening, kept = stack.pop()
            depth[opening] -= 1
            if kept:
                tokens.append(token)
    if stack:
        return _unmarked(text)
    delimiters = {index: "**" for index, token in enumerate(tokens) if token in _STRONG_MARKS}
    opened: list[int] = []
    for index, token in enumerate(tokens):
        if token == _EM_OPEN:
            opened.append(index)
        elif token == _EM_CLOSE:
            start = opened.pop()
            delimiters[start], delimiters[index] = _em_delimiters(tokens, start, index)
    return "".join(delimiters.get(index, token) for index, token in enumerate(tokens))


def _table_cell(text: str) -> str:
    """A table cell's text on one line."""
    text = text.strip()
    if "\n" in text:
        text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if "`" in text else _SPACE_RUN.sub(" ", text)


class _DiscordConverter(MarkdownConverter):
    """markdownify tuned for Discord: absolute links, no inline images.

    One per thread (:func:`_converter`), reused: building one merges markdownify's
    option classes through ``dir()`` and starts an empty per-tag method cache,
    ~7% of converting a typical item. :meth:`convert_item` is the entry point: it
    sets the per-item state (markdownify's own ``convert`` is not used).
    """

    def __init__(self) -> None:
        super().__init__(
            heading_style=ATX,
            bullets="-",
            escape_asterisks=True,
            escape_underscores=True,
            escape_misc=False,
            autolinks=True,
        )
        self.base = ""
        self.page: str | None = None  # the entry's own link: what "#section" links point into
        self.first_image: str | None = None

    def convert_item(self, html: str, *, base: str, page: str | None) -> str:
        self.base, self.page, self.first_image = base, page, None
        # markdownify caches a method per tag name it meets (its stubs omit the
        # attribute); feeds can invent any number of names, and this converter
        # lives as long as its thread.
        per_tag: dict[str, Any] = vars(self)["convert_fn_cache"]
        if len(per_tag) > _MAX_CACHED_TAG_NAMES:
            per_tag.clear()
        if _PLACEHOLDERS.search(html):  # the converter's own markers
            html = _PLACEHOLDERS.sub("", html)
        # multi_valued_attributes=None: class="a b" stays one string instead of being
        # split into a list for every tag (nothing here reads it; 5% of an item).
        soup = BeautifulSoup(
            html,
            "html.parser",
            element_classes={Tag: _ParentLookupTag},
            multi_valued_attributes=None,
        )
        if _DROPPED_TAG.search(html):  # a tree walk saved for the many bodies without any
            for el in soup.find_all(_DROPPED):
                el.decompose()
        markdown = str(self.convert_soup(soup))
        if _PLACEHOLDERS.search(markdown):
            markdown = _resolve_emphasis(markdown.replace(_CELL, " "))
        return markdown

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        href = el.get("href")
        href = href.strip() if isinstance(href, str) else ""
        if href.startswith("#"):  # in-page anchor: into the entry's page, not the feed
            absolute = _absolute_http(self.page, href) if self.page else None
        else:
            absolute = _absolute_http(self.base, href)
        if absolute is None:
            return text
        el["href"] = _md_url(absolute)
        if "title" in el.attrs:
            del el["title"]
        return str(super().convert_a(el, text, parent_tags))  # type: ignore[misc]

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        if self.first_image is None and not _is_pixel(el):
            src = el.get("src")
            self.first_image = _absolute_http(self.base, src if isinstance(src, str) else None)
        return ""

    def convert_video(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        src = el.get("src")
        absolute = _absolute_http(self.base, src if isinstance(src, str) else None)
        return f"[video]({_md_url(absolute)})" if absolute else ""

    def convert_br(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        if "_inline" in parent_tags:  # a heading or a table cell: one line
            return " " if "td" in parent_tags or "th" in parent_tags else ""
        return "\n"

    def convert_hN(self, n: int, el: Tag, text: str, parent_tags: set[str]) -> str:
        if n <= 3:  # Discord renders #, ## and ### only
            return str(super().convert_hN(n, el, text, parent_tags))  # type: ignore[misc]
        text = text.strip()
        return f"\n\n{_STRONG_OPEN}{text}{_STRONG_CLOSE}\n\n" if text else ""

    # Emphasis: placeholders, turned into delimiters by _resolve_emphasis.

    def convert_em(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return _emphasis(text, _EM_OPEN, _EM_CLOSE, parent_tags)

    def convert_strong(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return _emphasis(text, _STRONG_OPEN, _STRONG_CLOSE, parent_tags)

    convert_i = convert_em
    convert_b = convert_strong

    # Tables: Discord renders no Markdown tables. Each row is a line, its non-empty
    # cells joined by " · " (a Reddit post's image cell and "submitted by" cell give
    # one line); a table inside a cell or heading stays on that one line.

    def convert_table(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        text = text.strip()
        if not text:
            return ""
        return f" {text} " if "_inline" in parent_tags else f"\n\n{text}\n\n"

    def convert_tr(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        cells = (_table_cell(cell) for cell in text.split(_CELL))
        line = _CELL_SEPARATOR.join(cell for cell in cells if cell)
        if not line:
            return ""
        return f" {line} " if "_inline" in parent_tags else f"{line}\n"

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return f"{_CELL}{text} "  # the space separates a cell found outside any row

    convert_th = convert_td


_CONVERTERS: Final = threading.local()
_MAX_CACHED_TAG_NAMES: Final = 256


def _converter() -> _DiscordConverter:
    """This thread's converter (parsing runs in the parser thread, ``check`` and
    the social sources elsewhere; a converter holds the item it is converting)."""
    converter: _DiscordConverter | None = getattr(_CONVERTERS, "converter", None)
    if converter is None:
        converter = _CONVERTERS.converter = _DiscordConverter()
    return converter


def _markdown(body: Any, fallback_base: str, page: str | None) -> tuple[str, str | None]:
    """(markdown, first image) of a feedparser content dict."""
    value = body.get("value") or ""
    if not isinstance(value, str) or not value.strip():
        return "", None
    base = fallback_base
    body_base = body.get("base")
    if isinstance(body_base, str) and body_base:
        base = urljoin(fallback_base, body_base)
    # HTML escaped once too often ("&lt;p&gt;..."), whatever the declared type, is
    # converted as the HTML it is rather than posted as raw tags.
    markup = escaped_markup(value)
    if markup is not None:
        value = markup
    elif body.get("type", "text/html") not in _HTML_TYPES:
        return _clean_markdown(_tidy_markdown(value)), None
    truncated = len(value) > _MAX_HTML_CHARS
    if truncated:
        value = value[:_MAX_HTML_CHARS]
        value = value[: value.rfind("<")] if "<" in value[-2048:] else value  # no half tag
    converter = _converter()
    markdown = _clean_markdown(_tidy_markdown(converter.convert_item(value, base=base, page=page)))
    return (markdown + " …" if truncated else markdown), converter.first_image


def html_to_markdown(html: str, *, base: str, page: str | None = None) -> tuple[str, str | None]:
    """(Discord markdown, first image) of an HTML fragment; links resolved against ``base``.

    The converter every source uses (markdownify tuned for Discord); for
    sources parsed without feedparser (JSON Feed, bridges, social APIs).
    """
    return _markdown({"value": html, "type": "text/html"}, base, page)


def text_to_markdown(text: str) -> str:
    """Plain text as it goes into a message (line endings and blank runs tidied)."""
    return _tidy_markdown(text)


def text_body_to_markdown(
    text: str, *, base: str, page: str | None = None
) -> tuple[str, str | None]:
    """(Discord markdown, first image) of a body that is text rather than HTML.

    Entities left in it are decoded (outside Markdown code) and WordPress shortcodes
    dropped; text that decodes to markup (``&lt;p&gt;...``) is converted as HTML.
    """
    return _markdown({"value": text, "type": "text/plain"}, base, page)


def short_title(text: str, *, html_text: bool = False) -> str:
    """A title from a post's text: its first line, collapsed and shortened."""
    if html_text:
        text = _html_to_text(text[:4096])
    first = next((line for line in text.splitlines() if line.strip()), "")
    return _shorten(_collapse(first), _TITLE_FROM_TEXT_LEN) or _UNTITLED


def absolute_url(base: str, ref: str | None) -> str | None:
    """``ref`` made absolute against ``base``; None unless it is http(s)."""
    return _absolute_http(base, ref)


def _is_avatar(url: str) -> bool:
    """WordPress.com lists the author's Gravatar as the entry's first media:content."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "gravatar.com" or host.endswith(".gravatar.com")


def _media_image(raw: Any, base: str) -> str | None:
    for link in dict.get(raw, "links") or ():
        if (
            isinstance(link, Mapping)
            and link.get("rel") == "enclosure"
            and str(link.get("type", "")).lower().startswith("image/")
        ):
            found = _absolute_http(base, link.get("href"))
            if found:
                return found
    for thumb in dict.get(raw, "media_thumbnail") or ():
        if isinstance(thumb, Mapping):
            found = _absolute_http(base, thumb.get("url"))
            if found:
                return found
    for media in dict.get(raw, "media_content") or ():
        if not isinstance(media, Mapping):
            continue
        medium = str(media.get("medium", "")).lower()
        mtype = str(media.get("type", "")).lower()
        if medium == "image" or mtype.startswith("image/"):
            found = _absolute_http(base, media.get("url"))
            if found and not _is_avatar(found):
                return found
    return None


def _author(raw: Any) -> str | None:
    """The author's name; for RSS's ``email (Name)`` form, the name.

    feedparser splits ``email (Name)`` itself, but its e-mail pattern allows
    only 2-4 letter TLDs and mangles ``a@b.example (Name)`` into ``ple (Name``.
    """
    author = dict.get(raw, "author")
    if isinstance(author, str):
        address, paren, name = author.strip().partition(" (")
        if paren and "@" in address and " " not in address and name.endswith(")"):
            return _plain(name[:-1]) or None
    detail = dict.get(raw, "author_detail")
    detail_name = detail.get("name") if isinstance(detail, Mapping) else None
    return _plain(detail_name) or _plain(author) or None


def _categories(raw: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in dict.get(raw, "tags") or ():
        term = tag.get("term") if isinstance(tag, Mapping) else None
        if isinstance(term, str) and term.strip():
            seen.setdefault(decode_entities(term.strip()), None)  # CDATA "Food &amp; Drink"
    return tuple(seen)


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def build_item(feed: ParsedFeed, entry: ParsedEntry, *, link_is_unique: bool = True) -> Item:
    """Turn a parsed entry into an :class:`Item` (HTML -> Discord markdown).

    ``link_is_unique=False`` (several entries of the document share the link)
    leaves ``link_norm`` empty so the link is not used as a duplicate guard.
    """
    if entry.item is not None:
        return entry.item if link_is_unique else replace(entry.item, link_norm=None)
    raw = entry.raw
    body = _longest_body(raw)
    summary, inline_image = (
        _markdown(body, feed.base_url, entry.link) if body is not None else ("", None)
    )

    title = _plain(dict.get(raw, "title"), dict.get(raw, "title_detail"))
    if not title and body is not None:
        value = body.get("value") or ""
        if isinstance(value, str):
            value = value[:4096]  # enough for a title, whatever the size of the post
            markup = escaped_markup(value)
            if markup is not None or body.get("type") in _HTML_TYPES:
                text = _html_to_text(markup or value)
            else:
                text = _collapse(value)
            title = _shorten(decode_entities(text), _TITLE_FROM_TEXT_LEN)
    title = title or _UNTITLED

    author = _author(raw) or feed.author
    entry_image = dict.get(raw, "image")
    image = _first(
        (
            _media_image(raw, feed.base_url),
            inline_image,
            _absolute_http(feed.base_url, entry_image.get("href"))
            if isinstance(entry_image, Mapping)
            else None,
        )
    )
    return Item(
        key=entry.key,
        title=title,
        link=entry.link,
        summary=summary,
        author=author,
        published=entry.published,
        image=image,
        categories=_categories(raw),
        link_norm=entry.link_norm if link_is_unique else None,
    )


# --------------------------------------------------------------------------- discovery

_FEED_TYPES: Final = {
    "application/rss+xml": 0,
    "application/atom+xml": 0,
    "application/rdf+xml": 0,
    "text/xml": 0,
    "application/feed+json": 1,
    "application/json": 1,
}


class _MetaCharsetSniffer(HTMLParser):
    """Finds ``<meta charset>`` / ``<meta http-equiv=content-type>`` in a page head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charset: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta" or self.charset:
            return
        found = {k.lower(): (v or "") for k, v in attrs}
        if found.get("charset"):
            self.charset = found["charset"].strip().lower()
        elif found.get("http-equiv", "").strip().lower() == "content-type":
            self.charset = _split_content_type(found.get("content"))[1]

    handle_startendtag = handle_starttag


def _valid_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # HTML: a utf-16 label found by an ASCII scan means the page is not utf-16
    return "utf-8" if codec.startswith("utf-16") else codec


def _decode_html(body: bytes, headers: Mapping[str, str]) -> str:
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace")
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", "replace")
    encoding = _valid_codec(_split_content_type(_header(headers, "content-type"))[1])
    if encoding is None:
        sniffer = _MetaCharsetSniffer()
        sniffer.feed(body[:4096].decode("latin-1"))
        encoding = _valid_codec(sniffer.charset)
    return body.decode(encoding or "utf-8", "replace")


class _FeedLinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.found: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href") or None
            return
        if tag != "link":
            return
        found = {k.lower(): (v or "") for k, v in attrs}
        rels = found.get("rel", "").lower().split()
        mime = _split_content_type(found.get("type"))[0]
        href = found.get("href", "").strip()
        if "alternate" in rels and mime in _FEED_TYPES and href:
            self.found.append((_FEED_TYPES[mime], href))

    handle_startendtag = handle_starttag


def find_feed_links(html: bytes, *, base_url: str, headers: Mapping[str, str]) -> list[str]:
    """Absolute URLs of the feeds an HTML page advertises, best first.

    ``<link rel="alternate" type="application/rss+xml" href="...">`` and the
    Atom, RDF, text/xml and JSON Feed types; RSS/Atom/RDF before JSON,
    otherwise in document order; resolved against ``<base href>`` or
    ``base_url``; duplicates and non-http(s) URLs dropped.
    """
    finder = _FeedLinkFinder()
    finder.feed(_decode_html(html, headers))
    finder.close()
    base = _absolute_http(base_url, finder.base) or base_url
    out: list[str] = []
    for _, href in sorted(finder.found, key=lambda pair: pair[0]):  # stable sort
        absolute = _absolute_http(base, href)
        if absolute and absolute not in out:
            out.append(absolute)
    return out
