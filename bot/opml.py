"""OPML subscription lists: reading and writing, pure (no I/O).

``parse_opml`` turns the bytes of an OPML file, as Feedly, Inoreader, NetNewsWire,
FreshRSS, Thunderbird and most other readers export it, into a flat list of
``Outline`` (one per feed outline, in document order, duplicates kept: removing them
is the caller's business). ``write_opml`` builds an OPML 2.0 document from
``ExportEntry`` rows, one folder outline per distinct folder.

What counts as what when reading:

- an ``<outline>`` with a non-blank ``xmlUrl`` attribute (name matched ignoring case,
  some exporters write ``xmlurl``) is a feed; its ``text`` (else ``title``) is its
  title. If it has child outlines they are read too, in the same folder as the feed;
- an ``<outline>`` without one is a folder: its ``text`` (else ``title``) is added to
  the folder path of the outlines inside it. A folder with no title adds nothing, an
  empty folder or a childless non-feed outline yields nothing;
- outlines are looked for in ``<body>`` (or straight under ``<opml>``, which some
  broken exporters write); ``<head>`` is ignored, and so are namespaced attributes
  (``frss:...``, ``fz:...``), which are not checked against their declarations.

Safety: the file is parsed with expat (the parser under ``xml.etree``) directly, with
a handler that refuses any ``<!DOCTYPE>`` as soon as it starts, so no entity can be
declared (no "billion laughs", no external entities). Files over ``MAX_BYTES`` and
files with more than ``MAX_OUTLINES`` outlines are refused. The document is read as a
stream of events, so no tree is kept and nesting depth costs no recursion.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.parsers import expat

__all__ = [
    "MAX_BYTES",
    "MAX_OUTLINES",
    "ExportEntry",
    "OpmlError",
    "Outline",
    "parse_opml",
    "write_opml",
]

MAX_BYTES = 5 * 1024 * 1024
MAX_OUTLINES = 10_000

# Characters XML 1.0 cannot carry, even as character references: C0 controls other
# than tab, newline and carriage return, lone surrogates, U+FFFE and U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LOOKS_LIKE_HTML = re.compile(rb"<(?:!doctype\s+html|html[\s>])", re.IGNORECASE)
_SNIFF_BYTES = 2048
_ENCODING_DECL = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']"
)


class OpmlError(ValueError):
    """The input cannot be read as OPML; ``str(e)`` is one line for a person."""


@dataclass(frozen=True, slots=True)
class Outline:
    """One feed found in an OPML file."""

    url: str  # the xmlUrl, stripped
    title: str  # text or title attribute (text preferred), "" if none
    folder: tuple[str, ...]  # titles of the enclosing folder outlines, outermost first
    site: str | None = None  # htmlUrl if any


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One feed to write; entries sharing ``folder`` go into one folder outline."""

    folder: str  # e.g. "#news" or "webhook 1234"; "" puts the feed at the top level
    title: str
    url: str
    site: str | None = None


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _first_nonblank(attrs: dict[str, str], *names: str) -> str:
    for name in names:
        value = attrs.get(name, "").strip()
        if value:
            return value
    return ""


def _local(name: str) -> str:
    return name.rpartition(":")[2].lower()


class _Reader:
    """expat handlers collecting feed outlines as the document streams by."""

    def __init__(self) -> None:
        self.outlines: list[Outline] = []
        self.count = 0
        self.root_seen = False
        # One entry per open element: its local name, and for an outline whether it
        # added a segment to the folder path (so its end tag knows to remove it).
        self.stack: list[tuple[str, bool]] = []
        self.folder: list[str] = []

    def doctype(
        self, name: str | None, _sysid: str | None, _pubid: str | None, _internal: int
    ) -> None:
        if name and name.lower() == "html":
            raise OpmlError("not an OPML file: it is an HTML page (<!DOCTYPE html>)")
        raise OpmlError(
            "refused: the file has a <!DOCTYPE> declaration, which OPML never needs "
            "and which can declare entities that attack the parser"
        )

    def entity(self, *_args: object) -> None:
        # Unreachable while every DOCTYPE is refused, kept as a second lock.
        raise OpmlError("refused: the file declares XML entities")

    def external_entity(
        self, _context: str, _base: str | None, _sysid: str | None, _pubid: str | None
    ) -> int:
        raise OpmlError("refused: the file refers to an external XML entity")

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = _local(name)
        if not self.root_seen:
            self.root_seen = True
            if local != "opml":
                raise OpmlError(f"not an OPML file: the root element is <{name}>, expected <opml>")
            self.stack.append((local, False))
            return
        parent = self.stack[-1][0]
        if local != "outline" or parent not in ("body", "outline", "opml"):
            self.stack.append((local, False))
            return
        self.count += 1
        if self.count > MAX_OUTLINES:
            raise OpmlError(
                f"too many outlines: the file has more than {MAX_OUTLINES:,}, "
                f"the most feedhook reads"
            )
        attrs = {key.lower(): value for key, value in attributes.items()}
        title = _first_nonblank(attrs, "text", "title")
        url = attrs.get("xmlurl", "").strip()
        if url:
            site = attrs.get("htmlurl", "").strip() or None
            self.outlines.append(Outline(url, title, tuple(self.folder), site))
            self.stack.append((local, False))
        elif title:
            self.folder.append(title)
            self.stack.append((local, True))
        else:
            self.stack.append((local, False))

    def end(self, _name: str) -> None:
        _, pushed = self.stack.pop()
        if pushed:
            self.folder.pop()


def parse_opml(data: bytes) -> list[Outline]:
    """The feed outlines of an OPML document, in document order.

    A well-formed OPML file without feeds gives ``[]``; anything that is not OPML
    (not XML, another root element, a DOCTYPE, too large) raises ``OpmlError``.
    """
    if len(data) > MAX_BYTES:
        raise OpmlError(
            f"the file is too large ({_megabytes(len(data))}); "
            f"OPML files up to {_megabytes(MAX_BYTES)} are accepted"
        )
    if not data.strip():
        raise OpmlError("the file is empty")
    try:
        return _parse(data)
    except LookupError:  # expat asked Python for a codec it does not know
        raise OpmlError(f"not valid XML: unknown encoding {_declared_encoding(data)!r}") from None
    except ValueError as exc:
        if isinstance(exc, OpmlError):
            raise
        if "multi-byte" not in str(exc):
            raise OpmlError(f"not valid XML: {exc}") from None
    # expat reads only single-byte legacy encodings itself; for the others (Shift_JIS,
    # GB2312, EUC-KR...) Python decodes and expat is handed text, its declaration ignored.
    encoding = _declared_encoding(data)
    try:
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        raise OpmlError(f"not valid XML: the file is not valid {encoding}") from None
    return _parse(text)


def _declared_encoding(data: bytes) -> str:
    found = _ENCODING_DECL.match(data)
    return found.group(1).decode("ascii") if found else "?"


def _parse(data: bytes | str) -> list[Outline]:
    reader = _Reader()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = reader.doctype
    parser.EntityDeclHandler = reader.entity
    parser.UnparsedEntityDeclHandler = reader.entity
    parser.ExternalEntityRefHandler = reader.external_entity
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        head = data[:_SNIFF_BYTES]
        sniff = head if isinstance(head, bytes) else head.encode("utf-8", "replace")
        if _LOOKS_LIKE_HTML.search(sniff):
            raise OpmlError("not an OPML file: it looks like an HTML page") from None
        message = expat.ErrorString(exc.code) or "malformed"
        raise OpmlError(
            f"not valid XML: {message} at line {exc.lineno}, column {exc.offset + 1}"
        ) from None
    return reader.outlines


def _clean(text: str) -> str:
    return _XML_FORBIDDEN.sub("", text)


def _rfc822(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment)


def write_opml(
    entries: Sequence[ExportEntry],
    *,
    title: str = "feedhook subscriptions",
    created: datetime | None = None,
) -> str:
    """An OPML 2.0 document (a str starting with an XML declaration for UTF-8).

    Each distinct folder becomes one ``<outline text= title=>`` in the order folders
    are first seen, holding its feeds in the order given; an entry whose folder is
    blank goes straight into ``<body>``. Folder names are stripped. Characters that
    XML 1.0 cannot carry (most C0 controls, lone surrogates, U+FFFE, U+FFFF) are
    dropped from every string. ``created`` becomes ``<dateCreated>`` in RFC 822 form
    (a naive datetime is taken as UTC). Encode the result as UTF-8.
    """
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = _clean(title)
    if created is not None:
        ET.SubElement(head, "dateCreated").text = _rfc822(created)
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for entry in entries:
        folder_name = _clean(entry.folder).strip()
        if folder_name:
            parent = folders.get(folder_name)
            if parent is None:
                parent = ET.SubElement(body, "outline", text=folder_name, title=folder_name)
                folders[folder_name] = parent
        else:
            parent = body
        feed_title = _clean(entry.title)
        feed = ET.SubElement(
            parent,
            "outline",
            type="rss",
            text=feed_title,
            title=feed_title,
            xmlUrl=_clean(entry.url),
        )
        site = _clean(entry.site).strip() if entry.site is not None else ""
        if site:
            feed.set("htmlUrl", site)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
