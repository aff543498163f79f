"""Item -> Discord webhook request body, within Discord's limits. Pure: no I/O.

Limits (Discord API, execute webhook): content 2000; 10 embeds; embed title 256,
description 4096, 25 fields (name 256, value 1024), footer 2048, author name 256,
6000 characters over all the embeds of one message; username 1-80, without
"discord"/"clyde" and not "everyone"/"here"; http(s) URLs of at most 2048.

Unit: every length here is counted in UTF-16 code units (``utf16_len``), not in
Python code points. Discord documents its limits in "characters" and parts of
its stack (the JavaScript client among them) count UTF-16 units, where an emoji
outside the Basic Multilingual Plane counts 2. A UTF-16 count is never smaller
than the code-point count, so text that fits in UTF-16 units fits whichever way
Discord counts. The price is that astral characters use two units of budget.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.models import FeedInfo, Item, SocialPost

CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
# A long description drowns the channel; Discord allows 4096, we show a preview.
DESCRIPTION_PREVIEW = 700
# Shorter previews in a batch so that ten embeds fit Discord's 6000-unit total.
BATCH_DESCRIPTION_PREVIEW = 300
FOOTER_MAX = 2048
# The footer is the source's title; a longer one is junk and eats the batch total.
FOOTER_PREVIEW = 256
AUTHOR_MAX = 256
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
USERNAME_MAX = 80
EMBED_TOTAL_MAX = 6000
EMBEDS_MAX = 10
FORUM_TITLE_MAX = 100  # a forum post's (thread's) name
URL_MAX = 2048
EMBED_COLOUR = 0x5865F2
ELLIPSIS = "…"  # one UTF-16 unit
UNTITLED = "(untitled)"
FALLBACK_USERNAME = "feedhook"
# In the text style a link longer than this leaves too little room for the title.
_MIN_TEXT_TITLE = 32

# Markdown links: ``[text](url)``, ``[text](url "title")``, images ``![alt](src)``, and
# autolinks ``<https://...>``. Every part is bounded and no two alternatives can match
# the same character, so matching stays fast on hostile input (summaries come from
# untrusted feeds); a "link" past these bounds is no link Discord would show either.
_MD_LINK = re.compile(
    r"!?\[(?:\\.|[^\[\]\n\\]){0,500}\]"
    r"\([^()\s]{0,2048}(?:\([^()\s]{0,200}\)[^()\s]{0,200})?(?:[ \t]{1,10}\"[^\"\n]{0,300}\")?\)"
    r"|<https?://[^<>\s]{1,2048}>",
    re.IGNORECASE,
)
# Longer than any match of _MD_LINK: a link that starts before a cut ends within this.
_LINK_LOOKAHEAD = 4096

# Discord markdown delimiters whose unclosed opener would run to the end of the text.
_CODE_DELIMITERS = ("```", "``", "`")  # a block, then inline code
_SPAN_DELIMITERS = ("**", "__", "~~", "||")
_MARKDOWN_TOKEN = re.compile(r"`+|\\|\*\*|__|~~|\|\|")
_BACKTICK_RUN = re.compile(r"`+")

# Control characters (but tab and newline) and lone surrogates: JSON can carry them,
# Discord may reject or garble them, and no feed means them.
_JUNK = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

# Default-ignorable code points outside category Cf (Cf is removed separately):
# invisible in a name, and the kind of thing a server-side sanitiser strips.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_FORBIDDEN_NAME = re.compile(r"discord|clyde", re.IGNORECASE)
_RESERVED_NAMES = frozenset({"everyone", "here"})
_TEXT_ESCAPE = re.compile(r"([\\*_~|`\[\]])")


# -- lengths and cleaning -----------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units: the unit of every limit in this module."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _clean(text: str) -> str:
    return _JUNK.sub("", text)


def _inline(text: str | None) -> str:
    """One line: junk removed, runs of whitespace (newlines too) as one space."""
    return " ".join(_clean(text or "").split())


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})


def _visible(text: str) -> bool:
    """Whether ``text`` shows anything (not just spaces, joiners and marks)."""
    return any(
        not ch.isspace()
        and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        and not _IGNORABLE.match(ch)
        for ch in text
    )


# -- truncation ----------------------------------------------------------------------


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-16 units, at a word boundary, with "…".

    Text that fits is returned unchanged. A cut text ends with ``ELLIPSIS`` and,
    before it, is a prefix of ``text`` plus, possibly, closing markdown delimiters:

    - lengths are UTF-16 units (see the module docstring), and a cut never splits
      a code point, nor (as far as cheaply known) a grapheme: combining marks,
      zero-width joiner sequences, skin tones, variation selectors, flag pairs;
    - it backs up to the last whitespace when that costs at most 40% of the text
      (a very long word, or text without spaces, is cut hard);
    - never inside a markdown link ``[text](url)`` or ``<https://...>``: the cut
      moves before the link;
    - never leaves a trailing backslash, which would escape the ellipsis (a cut
      in ``\\*`` drops the backslash, never the escaped character alone);
    - an opener of ``**``/``__``/``~~``/``||``/`` ` ``/```` ``` ```` left unclosed by
      the cut is dropped when nothing follows it, and otherwise closed, so the span
      ends before the ellipsis instead of swallowing it. (Single ``*``/``_``
      italics are too ambiguous to track and are left alone.)
    """
    return _truncate(text, limit, markdown=True)


def _truncate(text: str, limit: int, *, markdown: bool) -> str:
    if utf16_len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - utf16_len(ELLIPSIS)
    if budget <= 0:
        return ELLIPSIS
    cut = _fitting_prefix(text, budget)
    while True:
        head = _head(text, cut, markdown=markdown)
        closers = _closers(head) if markdown else ""
        over = utf16_len(head) + utf16_len(closers) - budget
        if over <= 0:
            return head + closers + ELLIPSIS
        # Only the closers can overflow; give up that much more text and retry.
        cut = max(0, len(head) - over)


def _fitting_prefix(text: str, budget: int) -> int:
    """The largest ``cut`` with ``utf16_len(text[:cut]) <= budget``.

    Each code point is one or two units, so the answer lies in
    [budget // 2, budget]: a binary search with C-speed encodes beats a loop
    over every character.
    """
    low, high = min(len(text), budget // 2), min(len(text), budget)
    while low < high:
        middle = (low + high + 1) // 2
        if utf16_len(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _head(text: str, cut: int, *, markdown: bool) -> str:
    """``text[:k]`` for the best ``k <= cut``: at a boundary, with the end trimmed."""
    cut = _grapheme_boundary(text, cut)
    if markdown:
        cut = _outside_links(text, cut)
    cut = _word_boundary(text, cut)
    if markdown:
        cut = _outside_links(text, cut)
    cut = _grapheme_boundary(text, cut)
    head = text[:cut]
    while True:
        before = head
        head = head.rstrip().rstrip("\\")
        if markdown:
            unclosed = _unclosed(head)
            if unclosed:
                start, delimiter = unclosed[-1]
                rest = head[start + len(delimiter) :]
                if not rest.strip():
                    head = head[:start]  # an opener with nothing after it
                elif delimiter in _CODE_DELIMITERS:
                    # "``a`" + "``" would close early and open anew on the last "`".
                    head = head.rstrip("`")
        if head == before:
            return head


def _is_extender(ch: str) -> bool:
    """A code point that belongs with the one before it."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or cp == 0x200D  # zero-width joiner
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tones
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= cp <= 0xE01EF
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _grapheme_boundary(text: str, cut: int) -> int:
    while 0 < cut < len(text) and (_is_extender(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    if 0 < cut < len(text) and _is_regional_indicator(text[cut]):
        run = 0
        while run < cut and _is_regional_indicator(text[cut - 1 - run]):
            run += 1
        if run % 2:
            cut -= 1  # do not split a flag's pair
    return cut


def _outside_links(text: str, cut: int) -> int:
    """``cut``, or the start of the markdown link it falls inside."""
    end = min(len(text), cut + _LINK_LOOKAHEAD)
    for match in _MD_LINK.finditer(text, 0, end):
        if match.start() >= cut:
            break
        if cut < match.end():
            return match.start()
    return cut


def _word_boundary(text: str, cut: int) -> int:
    if cut <= 0 or cut >= len(text) or text[cut].isspace() or text[cut - 1].isspace():
        return cut
    floor = int(cut * 0.6)
    for index in range(cut - 1, floor - 1, -1):
        if text[index].isspace():
            return index
    return cut


def _unclosed(text: str) -> list[tuple[int, str]]:
    """Markdown openers left open at the end of ``text``, as (position, delimiter).

    As Discord reads them: a run of three or more backticks opens a code block that
    the next "```" closes; a run of one or two opens inline code that only a run of
    exactly as many backticks closes; inside code nothing else counts; outside it a
    backslash escapes the next character and ``**``/``__``/``~~``/``||`` toggle.
    """
    opened: list[tuple[int, str]] = []
    code: str | None = None  # the delimiter of the open code span or block
    index, size = 0, len(text)
    while index < size:
        # Jump from one token to the next with a regex: a per-character Python
        # loop made rendering a batch cost milliseconds.
        match = (_BACKTICK_RUN if code is not None else _MARKDOWN_TOKEN).search(text, index)
        if match is None:
            break
        index, token = match.start(), match.group()
        if token[0] == "`":
            end = match.end()
            while index < end:  # one run of backticks, maybe several delimiters
                run = end - index
                if code == "```" and run >= 3:
                    opened.pop()
                    code = None
                    index += 3
                elif code is not None:
                    if run == len(code):
                        opened.pop()
                        code = None
                    index = end
                else:
                    code = "```" if run >= 3 else "`" * run
                    opened.append((index, code))
                    index += len(code)
            continue
        if token == "\\":  # noqa: S105 - a backslash, not a password
            index += 2  # an escape: the next character is literal
            continue
        for back in range(len(opened) - 1, -1, -1):
            if opened[back][1] == token:
                del opened[back]
                break
        else:
            opened.append((index, token))
        index += len(token)
    return opened


def _closers(text: str) -> str:
    return "".join(delimiter for _, delimiter in reversed(_unclosed(text)))


# -- URLs and names ------------------------------------------------------------------


# Whitespace (what str.isspace() calls so), control characters (Cc) and lone
# surrogates (Cs): one regex scan instead of a Python-level test per character,
# since every message checks several URLs.
_URL_BREAKER = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def safe_url(url: str | None) -> str | None:
    """An http(s) URL Discord will accept, else None (Discord rejects the whole message).

    Surrounding whitespace is dropped; whitespace or control characters inside,
    another scheme, no host, a bad port or more than 2048 units mean None.
    """
    if not url:
        return None
    url = url.strip()
    if not url or utf16_len(url) > URL_MAX:
        return None
    if _URL_BREAKER.search(url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not parts.hostname:
        return None
    return url


# Every message of a feed asks for the same name; the answer is a pure function of
# the title (a str, so safe to share).
@functools.lru_cache(maxsize=4096)
def webhook_username(title: str) -> str:
    """The source title as a webhook name Discord accepts.

    1-80 units, no "discord"/"clyde" anywhere (case-insensitive), not
    "everyone"/"here".

    The forbidden words are *dropped*, not disguised. A zero-width space inside the
    word proves nothing: Discord's data sanitiser strips zero-width characters (a
    name of zero-width spaces only is taken as no name at all, discord-api-docs
    issue 4218), and a check after that sees "discord" again, so the request fails
    with 400 and the item is lost. A lookalike letter (Cyrillic "о") passes today
    but fails the day Discord folds confusables. A name without the word passes
    however Discord normalises it, and every embed's footer still shows the full
    title. To stay ahead of normalising, invisible characters are removed and the
    check runs on the NFKC form (fullwidth "ｄｉｓｃｏｒｄ" counts), repeated until
    clean ("disdiscordcord" leaves "discord" behind).
    """
    name = "".join(
        ch for ch in _inline(_IGNORABLE.sub("", title)) if unicodedata.category(ch) != "Cf"
    )
    name = " ".join(name.split())
    while True:
        folded = unicodedata.normalize("NFKC", name)
        if not _FORBIDDEN_NAME.search(folded):
            break
        name = " ".join(_FORBIDDEN_NAME.sub("", folded).split())
    if not _visible(name):
        name = FALLBACK_USERNAME
    if name.casefold().lstrip("@") in _RESERVED_NAMES:
        name = f"{name} feed"
    # Cutting only shortens and appends "…": it cannot make a forbidden word.
    return _truncate(name, USERNAME_MAX, markdown=False)


# -- embeds --------------------------------------------------------------------------


def embed_length(embed: dict[str, Any]) -> int:
    """What ``embed`` counts towards the 6000-unit total of its message."""
    total = utf16_len(embed.get("title", "")) + utf16_len(embed.get("description", ""))
    total += utf16_len(embed.get("footer", {}).get("text", ""))
    total += utf16_len(embed.get("author", {}).get("name", ""))
    for item in embed.get("fields", []):
        total += utf16_len(item.get("name", "")) + utf16_len(item.get("value", ""))
    return total


def _timestamp(when: datetime) -> str | None:
    """ISO 8601 in UTC (a naive time is taken as UTC), or None if it cannot be."""
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC).isoformat()
    except (OverflowError, ValueError):
        return None


def _title(item: Item) -> str:
    title = _inline(item.title)
    return title if _visible(title) else UNTITLED


def render_embed(
    item: Item, feed: FeedInfo, *, preview: int = DESCRIPTION_PREVIEW
) -> dict[str, Any]:
    """One embed for ``item``; on its own it always fits a message (<= 6000 units)."""
    embed: dict[str, Any] = {"type": "rich", "color": EMBED_COLOUR}
    embed["title"] = truncate(_title(item), TITLE_MAX)
    if link := safe_url(item.link):
        embed["url"] = link
    summary = _clean(item.summary or "").strip()
    if _visible(summary):
        description = truncate(summary, max(0, min(preview, DESCRIPTION_MAX)))
        if description:
            embed["description"] = description
    author = _inline(item.author)
    if _visible(author):
        embed["author"] = {"name": _truncate(author, AUTHOR_MAX, markdown=False)}
    if image := safe_url(item.image):
        embed["image"] = {"url": image}
    if item.published is not None and (stamp := _timestamp(item.published)):
        embed["timestamp"] = stamp
    source = _inline(feed.title)
    if _visible(source):  # a footer needs text; an icon alone is refused
        footer: dict[str, Any] = {
            "text": _truncate(source, min(FOOTER_PREVIEW, FOOTER_MAX), markdown=False)
        }
        if icon := safe_url(feed.icon):
            footer["icon_url"] = icon
        embed["footer"] = footer
    _fit_embed(embed, EMBED_TOTAL_MAX)
    return embed


def _fit_embed(embed: dict[str, Any], budget: int) -> None:
    """Shrink ``embed`` in place until ``embed_length(embed) <= budget``."""
    for key in ("description", "footer", "author", "title"):
        over = embed_length(embed) - budget
        if over <= 0:
            return
        if key == "description" and key in embed:
            text = truncate(embed[key], max(0, utf16_len(embed[key]) - over))
            if text:
                embed[key] = text
            else:
                del embed[key]
        elif key in ("footer", "author") and key in embed:
            part = "text" if key == "footer" else "name"
            text = _truncate(embed[key][part], utf16_len(embed[key][part]) - over, markdown=False)
            if text:
                embed[key][part] = text
            else:
                del embed[key]
        elif key == "title":
            embed[key] = truncate(embed[key], max(1, utf16_len(embed[key]) - over))


# -- bodies --------------------------------------------------------------------------


def _envelope(feed: FeedInfo) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": webhook_username(feed.title),
        # Nothing in a feed may ping anyone: Discord parses no mention kind at all.
        # A fresh dict per body, so that no caller can change it for every other.
        "allowed_mentions": {"parse": []},
    }
    if avatar := safe_url(feed.icon):
        body["avatar_url"] = avatar
    return body


def _not_empty(body: dict[str, Any]) -> dict[str, Any]:
    """Discord refuses a message with neither content nor embeds."""
    if not body.get("embeds") and not _visible(body.get("content") or ""):
        body.pop("embeds", None)
        body["content"] = UNTITLED
    return body


def text_line(item: Item) -> str:
    """The plain-text style: bold title, then the bare link so Discord unfurls it.

    At most ``CONTENT_MAX`` units. The title is markdown-escaped, since it sits
    between ``**`` (a title ending in a backslash or holding ``**`` would break
    them); a link too long to leave the title some room is left out.
    """
    link = safe_url(item.link)
    room = CONTENT_MAX - 4  # the two "**"
    if link:
        with_link = room - 1 - utf16_len(link)  # "\n" + link
        if with_link >= _MIN_TEXT_TITLE:
            room = with_link
        else:
            link = None
    title = truncate(_TEXT_ESCAPE.sub(r"\\\1", _title(item)), min(TITLE_MAX, room))
    return f"**{title}**\n{link}" if link else f"**{title}**"


def render_item(item: Item, feed: FeedInfo, *, style: str = "embed") -> dict[str, Any]:
    """The JSON body of one ``POST /webhooks/{id}/{token}`` for ``item``."""
    if item.social is not None:
        return _social_body(item, item.social, feed, style=style, preview=DESCRIPTION_PREVIEW)
    body = _envelope(feed)
    if style == "text":
        body["content"] = truncate(text_line(item), CONTENT_MAX)
    else:
        body["embeds"] = [render_embed(item, feed)]
    return _not_empty(body)


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook request body and how many of the given items it carries."""

    body: dict[str, Any]
    count: int


def render_batch(items: Sequence[Item], feed: FeedInfo, *, style: str = "embed") -> list[Message]:
    """Pack ``items`` (oldest first) into as few messages as Discord allows, in order:
    up to 10 embeds and 6000 embed units, or 2000 units of text.

    Each message carries a run of consecutive items; filling each message before
    starting the next is optimal for runs. Two embeds with the same ``url`` never
    share a message: Discord merges such embeds into one (an image gallery), which
    would hide the second item.

    Social posts are posted under their author's name and avatar, and a message has
    one identity: only consecutive posts of the same author (same webhook name and
    avatar) share a message, so a repost-heavy account still batches (reposts keep
    the profile owner's identity) while a change of author starts a new message.
    """
    preview = DESCRIPTION_PREVIEW if len(items) == 1 else BATCH_DESCRIPTION_PREVIEW
    messages: list[Message] = []
    start = 0
    while start < len(items):
        identity = _identity(items[start])
        end = start + 1
        while end < len(items) and _identity(items[end]) == identity:
            end += 1
        run = items[start:end]
        if identity is None:
            messages += _feed_batch(run, feed, style=style, preview=preview)
        else:
            messages += _social_batch(run, feed, style=style, preview=preview)
        start = end
    return messages


def _feed_batch(
    items: Sequence[Item], feed: FeedInfo, *, style: str, preview: int
) -> list[Message]:
    messages: list[Message] = []
    if style == "text":
        lines: list[str] = []
        size = 0
        for item in items:
            line = truncate(text_line(item), CONTENT_MAX)
            extra = utf16_len(line) + (2 if lines else 0)  # "\n\n" between lines
            if lines and size + extra > CONTENT_MAX:
                messages.append(_text_message(_envelope(feed), lines))
                lines, size, extra = [], 0, utf16_len(line)
            lines.append(line)
            size += extra
        if lines:
            messages.append(_text_message(_envelope(feed), lines))
        return messages
    embeds: list[dict[str, Any]] = []
    urls: set[str] = set()
    total = 0
    for item in items:
        embed = render_embed(item, feed, preview=preview)
        size = embed_length(embed)
        if embeds and (
            len(embeds) == EMBEDS_MAX or total + size > EMBED_TOTAL_MAX or embed.get("url") in urls
        ):
            messages.append(Message(_not_empty({**_envelope(feed), "embeds": embeds}), len(embeds)))
            embeds, urls, total = [], set(), 0
        embeds.append(embed)
        if "url" in embed:
            urls.add(embed["url"])
        total += size
    if embeds:
        messages.append(Message(_not_empty({**_envelope(feed), "embeds": embeds}), len(embeds)))
    return messages


def _text_message(envelope: dict[str, Any], lines: list[str], count: int | None = None) -> Message:
    body = _not_empty({**envelope, "content": "\n\n".join(lines)})
    return Message(body, len(lines) if count is None else count)


# -- social posts --------------------------------------------------------------------

# Discord shows up to four embeds that share a ``url`` as one post with an image gallery.
GALLERY_MAX = 4
_NETWORKS = {"bluesky": "Bluesky", "mastodon": "Mastodon", "x": "X"}
_KIND_TITLES = {"post": "Post", "repost": "Repost", "reply": "Reply", "quote": "Quote"}
_CONTEXT_NAME_MAX = 100
# Room kept for the post's text in the text style when image links compete for it.
_MIN_SOCIAL_TEXT = 200


def _identity(item: Item) -> tuple[str, str | None] | None:
    """Who a message is posted as: None for feed items (the feed's own identity)."""
    if item.social is None:
        return None
    return social_username(item.social), safe_url(item.social.author_avatar)


def _display(name: str | None, handle: str | None) -> str:
    """ "Name (@handle)", or whichever of the two exists, on one line."""
    name, handle = _inline(name), _inline(handle)
    if not _visible(name) or name == handle.lstrip("@"):
        name = ""
    if not _visible(handle):
        handle = ""
    if name and handle:
        return f"{name} ({handle})"
    return name or handle


def social_username(post: SocialPost) -> str:
    """The webhook name for a post: "Display Name (@handle)" when it fits Discord's 80
    units, else the display name alone, else the handle, cut if it must be; always
    through :func:`webhook_username` (no "discord"/"clyde", not "everyone"/"here")."""
    for candidate in (
        _display(post.author_name, post.author_handle),
        _display(post.author_name, None),
        _display(None, post.author_handle),
    ):
        if candidate and utf16_len(candidate) <= USERNAME_MAX:
            return webhook_username(candidate)
    return webhook_username(_display(post.author_name, post.author_handle))


def _escape_text(text: str) -> str:
    return _TEXT_ESCAPE.sub(r"\\\1", text)


def social_marker(post: SocialPost) -> str:
    """The line that says whose post a repost, reply or quote refers to ("" for a post)."""
    name = _truncate(_inline(post.context_name), _CONTEXT_NAME_MAX, markdown=False)
    handle = _truncate(_inline(post.context_handle), _CONTEXT_NAME_MAX, markdown=False)
    if not _visible(name) or name == handle.lstrip("@"):
        name = ""
    if not _visible(handle):
        handle = ""
    who = ""
    if name:
        who = f"**{_escape_text(name)}**" + (f" ({_escape_text(handle)})" if handle else "")
    elif handle:
        who = f"**{_escape_text(handle)}**"
    if post.kind == "repost":
        return f"🔁 reposted {who}" if who else "🔁 reposted"
    if post.kind == "reply":
        return f"↩️ replying to {who}" if who else "↩️ replying"
    if post.kind == "quote":
        return f"💬 quoting {who}" if who else "💬 quoting"
    return ""


def _social_envelope(post: SocialPost, feed: FeedInfo) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": social_username(post),
        "allowed_mentions": {"parse": []},  # as for feeds: nothing pings
    }
    if avatar := safe_url(post.author_avatar) or safe_url(feed.icon):
        body["avatar_url"] = avatar
    return body


def _social_images(post: SocialPost) -> list[str]:
    return [url for url in (safe_url(image) for image in post.images) if url][:GALLERY_MAX]


def _social_description(item: Item, post: SocialPost, budget: int) -> str:
    marker = social_marker(post)
    summary = _clean(item.summary or "").strip()
    if not _visible(summary):
        return marker
    if not marker:
        return truncate(summary, budget)
    text = truncate(summary, max(0, budget - utf16_len(marker) - 1))
    return f"{marker}\n{text}" if text else marker


def render_social_embeds(
    item: Item, feed: FeedInfo, *, preview: int = DESCRIPTION_PREVIEW
) -> list[dict[str, Any]]:
    """A post as 1-4 embeds: the first carries the text, author, time and link; each
    further image is an embed with only the same ``url`` and the image, which Discord
    shows as one gallery. Without a link there is nothing to group by: one image."""
    post = item.social
    assert post is not None
    network = _NETWORKS.get(post.network, "")
    embed: dict[str, Any] = {"type": "rich", "color": EMBED_COLOUR}
    kind = _KIND_TITLES.get(post.kind, "Post")
    embed["title"] = f"{kind} on {network}" if network else kind
    link = safe_url(item.link)
    if link:
        embed["url"] = link
    description = _social_description(item, post, max(0, min(preview, DESCRIPTION_MAX)))
    if _visible(description):
        embed["description"] = description
    author_name = _display(post.author_name, post.author_handle)
    if author_name:
        author: dict[str, Any] = {"name": _truncate(author_name, AUTHOR_MAX, markdown=False)}
        if author_url := safe_url(post.author_url):
            author["url"] = author_url
        if icon := safe_url(post.author_avatar):
            author["icon_url"] = icon
        embed["author"] = author
    images = _social_images(post)
    if images:
        embed["image"] = {"url": images[0]}
    if item.published is not None and (stamp := _timestamp(item.published)):
        embed["timestamp"] = stamp
    footer = network or _inline(feed.title)
    if _visible(footer):
        embed["footer"] = {"text": _truncate(footer, FOOTER_PREVIEW, markdown=False)}
    _fit_embed(embed, EMBED_TOTAL_MAX)
    if not link:
        return [embed]
    return [embed, *({"url": link, "image": {"url": image}} for image in images[1:])]


def social_text(item: Item) -> str:
    """The text style of a post: the marker, the text, the images as bare links (Discord
    unfurls them), and the post's link in ``<>`` (shown, not unfurled a second time).
    At most ``CONTENT_MAX`` units; image links give way to the text when room is short."""
    post = item.social
    assert post is not None
    link = safe_url(item.link)
    tail = [f"<{link}>"] if link and utf16_len(link) <= CONTENT_MAX // 2 else []
    images = [url for url in _social_images(post) if utf16_len(url) <= CONTENT_MAX // 4]
    head = social_marker(post)
    summary = _clean(item.summary or "").strip()
    while True:
        fixed = "\n".join([*images, *tail])
        used = utf16_len(head) + utf16_len(fixed) + 2  # two "\n"
        if not images or CONTENT_MAX - used >= _MIN_SOCIAL_TEXT:
            break
        images.pop()
    text = truncate(summary, max(0, CONTENT_MAX - used)) if _visible(summary) else ""
    parts = [part for part in (head, text, "\n".join([*images, *tail])) if part]
    return truncate("\n".join(parts), CONTENT_MAX)


def _social_body(
    item: Item, post: SocialPost, feed: FeedInfo, *, style: str, preview: int
) -> dict[str, Any]:
    body = _social_envelope(post, feed)
    if style == "text":
        body["content"] = social_text(item)
    else:
        body["embeds"] = render_social_embeds(item, feed, preview=preview)
    return _not_empty(body)


def _social_batch(
    items: Sequence[Item], feed: FeedInfo, *, style: str, preview: int
) -> list[Message]:
    """Posts of one author, packed like feed items: a post's gallery is never split."""
    post = items[0].social
    assert post is not None
    envelope = _social_envelope(post, feed)
    messages: list[Message] = []
    if style == "text":
        blocks: list[str] = []
        size = 0
        for item in items:
            block = social_text(item)
            extra = utf16_len(block) + (2 if blocks else 0)
            if blocks and size + extra > CONTENT_MAX:
                messages.append(_text_message(envelope, blocks))
                blocks, size, extra = [], 0, utf16_len(block)
            blocks.append(block)
            size += extra
        if blocks:
            messages.append(_text_message(envelope, blocks))
        return messages
    embeds: list[dict[str, Any]] = []
    urls: set[str] = set()
    total = count = 0
    for item in items:
        group = render_social_embeds(item, feed, preview=preview)
        size = sum(embed_length(e) for e in group)
        url = group[0].get("url")
        if embeds and (
            len(embeds) + len(group) > EMBEDS_MAX
            or total + size > EMBED_TOTAL_MAX
            or (url is not None and url in urls)
        ):
            messages.append(Message(_not_empty({**envelope, "embeds": embeds}), count))
            embeds, urls, total, count = [], set(), 0, 0
        embeds += group
        if url is not None:
            urls.add(url)
        total += size
        count += 1
    if embeds:
        messages.append(Message(_not_empty({**envelope, "embeds": embeds}), count))
    return messages


# -- for bot.shaping, which builds on the default look --------------------------------

visible = _visible
inline = _inline


def truncate_plain(text: str, limit: int) -> str:
    """:func:`truncate` for text that is not markdown (names, footers, thread titles)."""
    return _truncate(text, limit, markdown=False)


def fit_embed(embed: dict[str, Any]) -> None:
    """Shrink ``embed`` in place to Discord's 6000-unit total of one message."""
    _fit_embed(embed, EMBED_TOTAL_MAX)
