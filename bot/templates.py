"""Message templates that server admins type: a small, safe placeholder language.

Pure: no I/O. A template is scanned once, left to right, into literal text and
placeholders; nothing in it is ever evaluated, so there is no code execution, no
attribute or index access (``str.format`` allows ``{0.__class__}``, hence a
scanner of our own).

Syntax
------
``{name}``
    The value of ``name``; a missing or blank value renders as nothing.
``{name:format}``
    The format is everything after the *first* colon, so it may hold colons
    (``{published:%H:%M}``). Only date names (``{published}``) take one:

    - no format: a Discord timestamp ``<t:UNIX:f>``, shown in each reader's zone;
    - one of Discord's styles ``t T d D f F R``: ``<t:UNIX:style>``
      (``{published:R}`` is "3 hours ago");
    - anything else: ``datetime.strftime`` in UTC (``{published:%Y-%m-%d}``); a
      format strftime refuses renders as nothing.
``{a|b|c}``
    Fallbacks: the first name whose value is not blank wins; a format applies
    to whichever wins when it is a date (a text value ignores it).
    Whitespace around names is allowed: ``{ title | link }``.
``{{`` and ``}}``
    A literal ``{`` and ``}``.

Names are made of ``A-Z a-z 0-9 _ . -`` (room for dotted names such as
``body.repository.full_name``). Any other character inside braces, a ``{``
inside a placeholder, an unclosed ``{``, a lone ``}``, an unknown name or a
format on a name that takes none is a ``TemplateError`` whose message is one
sentence for the admin who typed it, with the 1-based position.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.models import FeedInfo, Item
from bot.render import inline, safe_url, visible

Value = str | datetime | None
# The allowed names: a set, or a predicate for open-ended ones (dotted paths).
NameCheck = Callable[[str], bool] | Collection[str]

TEMPLATE_MAX = 4000
DISCORD_STYLES = frozenset("tTdDfFR")
DEFAULT_STYLE = "f"

# The item placeholders, in the order an admin reads them in error messages: most used first.
ITEM_ORDER = (
    "title",
    "link",
    "summary",
    "author",
    "published",
    "source_title",
    "source_link",
    "categories",
    "image",
    "id",
    "handle",
    "display_name",
)
ITEM_NAMES: frozenset[str] = frozenset(ITEM_ORDER)
DATE_NAMES: frozenset[str] = frozenset({"published"})
_NAME_ORDER = {name: rank for rank, name in enumerate(ITEM_ORDER)}

_BRACE = re.compile(r"[{}]")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
# Error messages quote what was typed; a 3000-character name would drown the sentence.
_QUOTE_MAX = 40


class TemplateError(ValueError):
    """A template that cannot be compiled; ``str(e)`` is one sentence for a person."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{a|b:format}``: the fallback names in order, and the format if any."""

    names: tuple[str, ...]
    format: str | None
    position: int  # 1-based, of the opening "{"


Part = str | Placeholder


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template; build one with ``compile_template``."""

    source: str  # the text as typed
    # Literal strings and placeholders, in order; no two literals in a row.
    parts: tuple[Part, ...] = field(repr=False, compare=False)

    def render(self, values: Mapping[str, Value]) -> str:
        """The text with every placeholder replaced; a missing name renders as ""."""
        return "".join(
            part if isinstance(part, str) else _render_placeholder(part, values)
            for part in self.parts
        )

    @property
    def names(self) -> frozenset[str]:
        """Every name the template uses, fallbacks included."""
        return frozenset(
            name for part in self.parts if isinstance(part, Placeholder) for name in part.names
        )

    @property
    def is_constant(self) -> bool:
        """Whether the template has no placeholder (it renders the same every time)."""
        return not any(isinstance(part, Placeholder) for part in self.parts)


# -- compiling -----------------------------------------------------------------------


def compile_template(
    text: str,
    *,
    names: NameCheck = ITEM_NAMES,
    date_names: Collection[str] = DATE_NAMES,
) -> Template:
    """Parse ``text`` into a ``Template``, or raise ``TemplateError`` saying what is wrong.

    ``names`` is the set of allowed names, or a predicate for open-ended ones
    (then no "did you mean" suggestion is made); ``date_names`` are the names
    that take a format.
    """
    if len(text) > TEMPLATE_MAX:
        raise TemplateError(
            f"the template is {len(text)} characters long; the limit is {TEMPLATE_MAX}"
        )
    parts: list[Part] = []
    literal: list[str] = []
    index, size = 0, len(text)
    while index < size:
        match = _BRACE.search(text, index)
        if match is None:
            literal.append(text[index:])
            break
        brace = match.start()
        literal.append(text[index:brace])
        doubled = brace + 1 < size and text[brace + 1] == text[brace]
        if doubled:
            literal.append(text[brace])
            index = brace + 2
            continue
        if text[brace] == "}":
            raise TemplateError(f'single "}}" {_at(text, brace)}: write "}}}}" for a literal brace')
        end = _BRACE.search(text, brace + 1)
        if end is None:
            raise TemplateError(
                f'unclosed "{{" {_at(text, brace)}: write "{{{{" for a literal brace'
            )
        if text[end.start()] == "{":
            raise TemplateError(
                f'"{{" {_at(text, end.start())} is inside the placeholder opened '
                f'{_at(text, brace)}: close that one with "}}" first, '
                f'or write "{{{{" for a literal brace'
            )
        placeholder = _placeholder(text, brace, end.start(), names, date_names)
        if any(literal):
            parts.append("".join(literal))
        literal.clear()
        parts.append(placeholder)
        index = end.start() + 1
    if any(literal):
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def _placeholder(
    text: str,
    opening: int,
    closing: int,
    allowed: NameCheck,
    date_names: Collection[str],
) -> Placeholder:
    """The placeholder ``text[opening : closing + 1]``, checked."""
    body = text[opening + 1 : closing]
    typed = _quote(text[opening : closing + 1])
    colon = body.find(":")
    head = body if colon < 0 else body[:colon]
    fmt = None if colon < 0 else body[colon + 1 :]
    if not head.strip():
        hint = ': put a name before ":"' if fmt is not None else ""
        raise TemplateError(f'empty placeholder "{typed}" {_at(text, opening)}{hint}')

    found: list[str] = []
    offset = opening + 1
    for segment in head.split("|"):
        name = segment.strip()
        if not name:
            raise TemplateError(
                f'empty name between "|" in {typed} {_at(text, opening)}: '
                "write {a|b}, not {a||b}"
            )
        bad = _NOT_NAME_CHAR.search(name)
        if bad is not None:
            where = offset + (len(segment) - len(segment.lstrip())) + bad.start()
            raise TemplateError(
                f"{_describe(bad.group())} is not allowed in a placeholder name "
                f'{_at(text, where)}: names use letters, digits, "_", "." and "-"'
            )
        found.append(name)
        offset += len(segment) + 1

    for name in found:
        if not _is_allowed(name, allowed):
            raise TemplateError(_unknown(text, opening, name, allowed))

    if fmt is not None:
        if not any(name in date_names for name in found):
            shown = "|".join(found)
            raise TemplateError(
                f"{typed} {_at(text, opening)}: {_quote('{' + shown + '}')} takes no format "
                f"({_date_hint(allowed, date_names)})"
            )
        if not fmt.strip():
            raise TemplateError(
                f'empty format after ":" in {typed} {_at(text, opening)}: remove the ":" '
                "or write a format such as R (relative time) or %Y-%m-%d"
            )
    return Placeholder(tuple(found), fmt, opening + 1)


def _is_allowed(name: str, allowed: NameCheck) -> bool:
    if callable(allowed):
        return bool(allowed(name))
    return name in allowed


def _known(allowed: Collection[str]) -> list[str]:
    return sorted(allowed, key=lambda name: (_NAME_ORDER.get(name, len(_NAME_ORDER)), name))


def _unknown(text: str, opening: int, name: str, allowed: NameCheck) -> str:
    message = f"unknown placeholder {_quote('{' + name + '}')} {_at(text, opening)}"
    if callable(allowed):
        return message
    known = _known(allowed)
    listed = ", ".join(f"{{{candidate}}}" for candidate in known)
    # Case first: "Title" is plainly "title", whatever the similarity ratio says.
    folded = [candidate for candidate in known if candidate.casefold() == name.casefold()]
    close = folded or difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{message}; did you mean {{{close[0]}}}? Known: {listed}"
    return f"{message}; known: {listed}" if known else message


def _date_hint(allowed: NameCheck, date_names: Collection[str]) -> str:
    dated = list(date_names) if callable(allowed) else [n for n in date_names if n in allowed]
    if not dated:
        return "no placeholder does"
    listed = ", ".join(f"{{{name}}}" for name in _known(dated))
    return f"only {listed} {'does' if len(dated) == 1 else 'do'}"


def _at(text: str, index: int) -> str:
    """``at position N`` (1-based), with line and column once the text has several lines."""
    where = f"at position {index + 1}"
    line = text.count("\n", 0, index)
    if not line:
        return where
    column = index - text.rfind("\n", 0, index)
    return f"{where} (line {line + 1}, column {column})"


def _quote(typed: str) -> str:
    """What was typed, on one line and short enough to keep the sentence readable."""
    typed = inline(typed)
    return typed if len(typed) <= _QUOTE_MAX else typed[: _QUOTE_MAX - 1] + "…"


def _describe(char: str) -> str:
    """A character as an admin can recognise it in a message, invisible ones included."""
    if char == " ":
        return "a space"
    if char == '"':
        return "a double quote"
    if char == "\t":
        return "a tab"
    if char in "\r\n":
        return "a line break"
    if char.isprintable() and not char.isspace():
        return f'"{char}"'
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character').lower()})"


# -- rendering -----------------------------------------------------------------------


def _render_placeholder(placeholder: Placeholder, values: Mapping[str, Value]) -> str:
    for name in placeholder.names:
        value = values.get(name)
        if isinstance(value, datetime):
            return _format_date(value, placeholder.format)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _format_date(when: datetime, fmt: str | None) -> str:
    """``when`` as a Discord timestamp or through strftime in UTC; "" if it cannot be."""
    try:
        if when.tzinfo is None or when.utcoffset() is None:
            when = when.replace(tzinfo=UTC)
        if fmt is None or fmt.strip() in DISCORD_STYLES:
            style = DEFAULT_STYLE if fmt is None else fmt.strip()
            return f"<t:{math.floor(when.timestamp())}:{style}>"
        return when.astimezone(UTC).strftime(fmt)
    # strftime refuses some formats (a lone surrogate, platform specifics) and a date
    # at the edge of the calendar can overflow when moved to UTC: render nothing.
    except (ValueError, OverflowError):
        return ""


# -- values of a feed item -----------------------------------------------------------


def item_values(item: Item, feed: FeedInfo) -> dict[str, Value]:
    """The value of every name of ``ITEM_NAMES`` for ``item`` of ``feed``."""
    social = item.social
    author = _line(item.author)
    if not author and social is not None:
        author = _line(social.author_name)
    image = safe_url(item.image)
    if image is None and social is not None:
        image = next((url for url in map(safe_url, social.images) if url), None)
    return {
        "title": _line(item.title),
        "link": safe_url(item.link) or "",
        # Already Discord markdown: only the surrounding blank lines go.
        "summary": item.summary.strip(),
        "author": author,
        "published": item.published,
        "source_title": _line(feed.title),
        "source_link": safe_url(feed.link) or "",
        "categories": ", ".join(filter(None, map(_line, item.categories))),
        "image": image or "",
        "id": item.key,
        "handle": _line(social.author_handle) if social is not None else "",
        "display_name": _line(social.author_name) if social is not None else "",
    }


def _line(text: str | None) -> str:
    """``text`` on one line (whitespace runs as one space), or "" if nothing shows."""
    line = inline(text)
    return line if visible(line) else ""
