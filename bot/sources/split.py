"""Find the entry elements of a feed document without parsing it.

A poll of a changed feed usually brings one or two new entries among twenty
old ones, and feedparser costs the same for all of them. :func:`split_entries`
finds each ``<item>`` / ``<entry>`` element's byte range with one regex pass, so
the poller can give feedparser a document holding only the entries it has not
seen byte for byte before (the header and everything between entries stay as
they are, so namespaces, ``xml:base`` and channel data parse the same).

It is a pre-filter, never the judge: whatever it cannot vouch for (UTF-16,
ISO-2022 escapes, an entry inside an entry, an unclosed element) returns
``None`` and the whole document is parsed as usual.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

# Comments, CDATA sections and processing instructions are matched whole so an
# "<item>" inside them is never taken for a tag; entry tags may carry a prefix.
_TOKEN: Final = re.compile(
    rb"<!--.*?-->"
    rb"|<!\[CDATA\[.*?\]\]>"
    rb"|<\?.*?\?>"
    rb"|<(?P<close>/?)(?P<name>(?:[A-Za-z_][\w.\-]*:)?(?:item|entry))(?=[\s/>])[^>]*>",
    re.DOTALL,
)
_BOMS: Final = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


@dataclass(frozen=True, slots=True)
class SplitDocument:
    """A feed document and the byte span of each entry element, in document order."""

    body: bytes
    spans: tuple[tuple[int, int], ...]

    def fingerprints(self) -> list[bytes]:
        """A digest of each entry's exact bytes: equal bytes parse to an equal entry."""
        return [
            hashlib.blake2b(self.body[start:end], digest_size=16).digest()
            for start, end in self.spans
        ]

    def keeping(self, keep: Collection[int]) -> bytes:
        """The document with only the entries whose index is in ``keep``."""
        parts: list[bytes] = []
        cursor = 0
        for index, (start, end) in enumerate(self.spans):
            parts.append(self.body[cursor:start])
            if index in keep:
                parts.append(self.body[start:end])
            cursor = end
        parts.append(self.body[cursor:])
        return b"".join(parts)


def _ascii_compatible(body: bytes) -> bool:
    # '<' and '>' must be the bytes 0x3C / 0x3E wherever they occur: not so in
    # UTF-16/32 (NUL bytes) or ISO-2022 (ESC switches to a two-byte set).
    head = body[:4]
    return not (head.startswith(_BOMS) or b"\x00" in head or b"\x1b" in body)


def split_entries(body: bytes) -> SplitDocument | None:
    """The entry spans of ``body``, or ``None`` when it cannot be split safely."""
    if not _ascii_compatible(body):
        return None
    spans: list[tuple[int, int]] = []
    open_name: bytes | None = None
    open_at = 0
    for match in _TOKEN.finditer(body):
        name = match.group("name")
        if name is None:
            continue  # a comment, CDATA section or processing instruction
        tag = match.group(0)
        if match.group("close"):
            if open_name != name:
                return None  # a close without its open: not a document we understand
            spans.append((open_at, match.end()))
            open_name = None
        elif open_name is not None:
            return None  # an entry inside an entry
        elif tag.endswith(b"/>"):
            spans.append((match.start(), match.end()))
        else:
            open_name, open_at = name, match.start()
    if open_name is not None or not spans:
        return None
    return SplitDocument(body, tuple(spans))
