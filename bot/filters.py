"""Which items a subscription posts: include and exclude terms, pure logic.

Server admins type terms as one comma-separated string in Discord
(``release, title:"breaking news", /v\\d+\\.\\d+/i``) or as a TOML list in the config.
A term is an optional field prefix (``title:``, ``summary:``, ``author:``,
``category:``, ``link:``) then either ``/pattern/flags`` or a word or phrase,
optionally in double quotes. Phrases match whole words, ignoring case. Without a
prefix a term looks at the title, summary, author and each category (not the link).

An item passes when it matches at least one include term (or there are none) and
no exclude term. Matching runs with the ``regex`` package and a time bound per
search, so a pathological regex typed in Discord cannot stall the poller: a search
that runs out of time counts as no match.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import regex

from bot.models import Item

log = logging.getLogger(__name__)

FIELDS = ("title", "summary", "author", "category", "link")

MATCH_TIMEOUT = 0.05  # seconds per search
MAX_TERM_LENGTH = 300
MAX_TERMS = 50
# Each searched field is cut to this many characters: the work per search stays
# bounded whatever a feed sends (a 5 MB summary), and the time bound above is then
# only reached by patterns that are pathological on ordinary text.
MAX_FIELD_CHARS = 20_000
# The regex package unrolls the mandatory part of counted repeats when it compiles
# ((?:a{100}){100} becomes 10,000 nodes; (?:a{1000}){1000} takes half a second and
# 270 MB), and the search time bound cannot help there. A pattern's length times the
# product of the minimum counts of all its {m,n} repeats bounds that unrolling
# whatever their nesting, so patterns over this limit are refused.
MAX_EXPANSION = 10_000

_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
_PREFIX = regex.compile(r"(title|summary|author|category|link):\s*", regex.IGNORECASE)
# A quoted phrase ends at a double quote followed by a comma or the end of the text,
# so a phrase may itself hold quotes ("say "hi"") and commas ("hello, world").
_QUOTE_END = regex.compile(r'"(?=\s*(?:,|\Z))')
_REPEAT = regex.compile(r"\{\s*(\d*)\s*(?:,\s*\d*\s*)?\}")
_WORD_CHAR = regex.compile(r"\w")
_SHOWN = 60  # characters of a term quoted in an error message

_timed_out: set[tuple[str, int]] = set()  # (pattern, flags) already logged
_timed_out_lock = threading.Lock()


class FilterError(ValueError):
    """A term cannot be used; ``str(e)`` is one sentence for a server admin."""


@dataclass(frozen=True, slots=True)
class Term:
    """One include or exclude term.

    ``text`` is the term as typed with whitespace normalised and the prefix in lower
    case; it is what is shown and stored, and ``parse_terms`` turns it back into an
    equal term. Build terms with ``parse_terms``; ``Term(text, field)`` also works
    when ``text`` is already normalised.
    """

    text: str
    field: str | None
    pattern: regex.Pattern[str] | None = dataclass_field(default=None, compare=False, repr=False)
    is_regex: bool = dataclass_field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            return
        parsed = _parse_term(self.text)
        if parsed is None or parsed.text != self.text or parsed.field != self.field:
            raise FilterError(
                f"{_show(self.text)} is not a normalised term for field {self.field!r}."
            )
        object.__setattr__(self, "pattern", parsed.pattern)
        object.__setattr__(self, "is_regex", parsed.is_regex)

    def matches(self, item: Item, *, timeout: float = MATCH_TIMEOUT) -> bool:
        pattern = self.pattern
        assert pattern is not None  # set by __post_init__
        for value in _values(item, self.field):
            found = _search(pattern, value, timeout, self.text)
            if found is None:
                # Timed out: no match, and the other fields are not tried either, as
                # each would likely take the whole time bound again.
                return False
            if found:
                return True
        return False


def split_terms(text: str) -> list[str]:
    """Split a comma-separated list of terms.

    A comma inside a ``/regex/`` or a quoted phrase (each possibly after a field
    prefix) does not split. Pieces are stripped; empty ones are dropped.
    """
    pieces: list[str] = []
    n = len(text)
    start = 0
    while start <= n:
        pos = start
        while pos < n and text[pos].isspace():
            pos += 1
        prefix = _PREFIX.match(text, pos)
        if prefix is not None:
            pos = prefix.end()
        protected_end: int | None = None
        if text.startswith("/", pos):
            protected_end = _regex_end(text, pos)
        elif text.startswith('"', pos):
            quote = _QUOTE_END.search(text, pos + 1)
            protected_end = quote.end() if quote is not None else None
        comma = text.find(",", protected_end if protected_end is not None else pos)
        if comma == -1:
            comma = n
        piece = text[start:comma].strip()
        if piece:
            pieces.append(piece)
        start = comma + 1
    return pieces


def parse_terms(value: str | Sequence[str]) -> tuple[Term, ...]:
    """Terms from what an admin typed (split with ``split_terms``) or a TOML list
    (one term per element). Duplicates are dropped; raises ``FilterError``."""
    raw = split_terms(value) if isinstance(value, str) else [str(v).strip() for v in value]
    raw = [r for r in raw if r]
    if len(raw) > MAX_TERMS:
        raise FilterError(
            f"There are {len(raw)} terms but at most {MAX_TERMS} are allowed, "
            f"so {_show(raw[MAX_TERMS])} and the ones after it are too many."
        )
    terms: list[Term] = []
    for piece in raw:
        term = _parse_term(piece)
        if term is not None and term not in terms:
            terms.append(term)
    return tuple(terms)


def format_terms(terms: Sequence[Term]) -> str:
    """The terms as one string, which ``parse_terms`` turns back into equal terms."""
    return ", ".join(t.text for t in terms)


def matches_any(terms: Sequence[Term], item: Item, *, timeout: float = MATCH_TIMEOUT) -> bool:
    return any(t.matches(item, timeout=timeout) for t in terms)


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """A subscription's filter: ``include`` (empty: everything) minus ``exclude``."""

    include: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()

    def passes(self, item: Item, *, timeout: float = MATCH_TIMEOUT) -> bool:
        if self.include and not matches_any(self.include, item, timeout=timeout):
            return False
        return not matches_any(self.exclude, item, timeout=timeout)

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude

    @property
    def has_regex(self) -> bool:
        return any(t.is_regex for t in (*self.include, *self.exclude))


# -- parsing ----------------------------------------------------------------------------


def _parse_term(raw: str) -> Term | None:
    """One term from its text, or None for a blank one."""
    text = raw.strip()
    if not text:
        return None
    prefix = _PREFIX.match(text)
    field_name = prefix.group(1).lower() if prefix is not None else None
    body = text[prefix.end() :] if prefix is not None else text
    lead = f"{field_name}:" if field_name else ""
    if body.startswith("/"):
        term = _regex_term(lead + body, field_name, body)
    else:
        term = _phrase_term(lead, field_name, body)
    # A term must read back as itself when joined with others by format_terms.
    if split_terms(term.text) != [term.text]:
        raise FilterError(
            f"{_show(term.text)} mixes double quotes and commas so that it reads as "
            "several terms; remove the comma or the quote before it."
        )
    return term


def _regex_term(text: str, field_name: str | None, body: str) -> Term:
    _check_length(text)
    end = _regex_end(body, 0)
    if end is None:
        raise FilterError(
            f"{_show(text)} starts a regex with / but has no closing /; "
            'put a phrase that starts with / in double quotes, like "/r/python".'
        )
    source, flag_text = body[1 : end - 1], body[end:]
    if not source:
        raise FilterError(f"{_show(text)} is an empty regex.")
    flags = 0
    for flag in flag_text:
        if flag not in _FLAGS:
            what = "an unknown regex flag" if flag.isalpha() else "text after the regex"
            raise FilterError(
                f"{_show(text)} has {what} ({flag!r}); the flags after the closing / "
                "can be i, m, s and x."
            )
        flags |= _FLAGS[flag]
    if _expansion(source) > MAX_EXPANSION:
        raise FilterError(
            f"{_show(text)} repeats too much to compile safely; "
            "lower the counts in its {n} repeats."
        )
    try:
        pattern = regex.compile(source, flags)
    except (regex.error, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise FilterError(f"{_show(text)} is not a valid regex: {exc}.") from None
    return Term(text, field_name, pattern, True)


def _phrase_term(lead: str, field_name: str | None, body: str) -> Term:
    body = " ".join(body.split())
    quoted = len(body) >= 2 and body.startswith('"') and body.endswith('"')
    if body.startswith('"') and not quoted:
        raise FilterError(
            f"{_show(lead + body)} opens a double quote it does not close; quote the whole phrase."
        )
    phrase = body[1:-1].strip() if quoted else body
    if not phrase:
        raise FilterError(f"{_show(lead + body)} has nothing to match.")
    # A comma would split the phrase when the terms are joined (format_terms).
    shown = f'"{phrase}"' if quoted or "," in phrase else phrase
    text = lead + shown
    _check_length(text)
    core = r"\s+".join(regex.escape(word) for word in phrase.split())
    if _WORD_CHAR.fullmatch(phrase[0]):
        core = r"(?<!\w)" + core
    if _WORD_CHAR.fullmatch(phrase[-1]):
        core += r"(?!\w)"
    return Term(text, field_name, regex.compile(core, regex.IGNORECASE), False)


def _regex_end(text: str, start: int) -> int | None:
    """Index after the unescaped / closing the regex that opens at ``start``."""
    pos = start + 1
    n = len(text)
    while pos < n:
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "/":
            return pos + 1
        pos += 1
    return None


def _expansion(source: str) -> int:
    """An upper bound of how far compiling unrolls the pattern's counted repeats.

    Every ``{m}``, ``{m,}``, ``{m,n}`` text counts, even one that is no repeat (in a
    character class, after an escape): that only overestimates.
    """
    product = 1
    for repeat in _REPEAT.finditer(source):
        low = repeat.group(1)
        product *= max(int(low), 1) if low else 1
        if product > MAX_EXPANSION:  # keep the numbers small
            break
    return len(source) * product


def _check_length(text: str) -> None:
    if len(text) > MAX_TERM_LENGTH:
        raise FilterError(
            f"{_show(text)} is {len(text)} characters long; "
            f"a term can have at most {MAX_TERM_LENGTH}."
        )


def _show(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")


# -- matching ---------------------------------------------------------------------------


def _values(item: Item, field_name: str | None) -> Iterator[str]:
    """The texts a term with this field prefix looks at, in order."""
    if field_name in (None, "title"):
        yield item.title
    if field_name in (None, "summary"):
        yield item.summary
    if field_name in (None, "author"):
        yield from _authors(item)
    if field_name in (None, "category"):
        yield from item.categories
    if field_name == "link" and item.link is not None:
        yield item.link


def _authors(item: Item) -> Iterator[str]:
    """The author, plus a social post's name and handle where the author lacks them
    (an X item's author is the display name only)."""
    author = item.author or ""
    if author:
        yield author
    if item.social is not None:
        for extra in (item.social.author_name, item.social.author_handle):
            if extra and extra not in author:
                yield extra


def _search(pattern: regex.Pattern[str], value: str, timeout: float, term: str) -> bool | None:
    """Whether the pattern occurs in the value; None when the search timed out."""
    try:
        return pattern.search(value[:MAX_FIELD_CHARS], timeout=timeout) is not None
    except TimeoutError:
        key = (pattern.pattern, pattern.flags)
        with _timed_out_lock:
            first = key not in _timed_out
            _timed_out.add(key)
        if first:
            log.warning(
                "filter term %r took longer than %.3fs on an item and counts as no match "
                "(logged once per pattern)",
                term,
                timeout,
            )
        return None
