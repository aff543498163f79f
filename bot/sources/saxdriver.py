"""The xml.sax driver feedparser parses with: expat, delivering text in one piece.

feedparser asks ``xml.sax.make_parser`` for the modules in
``feedparser.api.PREFERRED_XML_PARSERS``; :mod:`bot.sources.feed` names this one.
Plain expat reports character data in a new callback at every entity and line
break, and feedparser's handler for each one costs a FeedParserDict lookup: an
escaped HTML description (``&lt;p&gt;...``) is a hundred callbacks per item,
about a fifth of parsing a changed feed's new entries. ``buffer_text`` makes
expat join adjacent text into one callback; it hands the buffer over before any
other event (start, end, skipped entity), so feedparser sees the same text in
the same order. A document that fails the strict parse is parsed again from the
start by feedparser's loose parser, so text still buffered at an error is not lost.
"""

from __future__ import annotations

from typing import Any
from xml.sax.expatreader import ExpatParser

# Large enough that an item's description arrives whole; expat flushes earlier when full.
_TEXT_BUFFER_BYTES = 64 * 1024


class BufferedTextExpatParser(ExpatParser):
    def reset(self) -> None:
        super().reset()
        parser: Any = self._parser  # type: ignore[attr-defined]
        parser.buffer_size = _TEXT_BUFFER_BYTES
        parser.buffer_text = True


def create_parser(*args: Any, **kwargs: Any) -> BufferedTextExpatParser:
    """The entry point ``xml.sax.make_parser`` calls on a driver module."""
    return BufferedTextExpatParser(*args, **kwargs)
