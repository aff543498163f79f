"""The ways a person can name a source, and the one canonical URL each is stored as.

``parse_source("x:@Jack")`` and ``parse_source("https://twitter.com/jack")`` both
give ``SourceRef(kind="x", identity="jack", url="https://x.com/jack")``: the
canonical URL is what ``sources.url`` holds, so a source typed two ways is one
source. The kind of a stored source is read back from that URL
(:func:`kind_of`), so no column records it.

A malformed form raises :class:`SourceFormError`; ``str(e)`` is one sentence
saying what was expected. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qs, quote, urlsplit

from bot.webhooks import WebhookURLError, parse_webhook_url

__all__ = [
    "NO_BRIDGES",
    "SourceFormError",
    "SourceKind",
    "SourceRef",
    "SourceSettings",
    "ensure_usable",
    "kind_of",
    "parse_source",
]

SourceKind = Literal["feed", "x", "bluesky", "mastodon", "youtube", "reddit"]


class SourceFormError(ValueError):
    """A source typed in a form feedhook cannot read; ``str(e)`` is the sentence to show."""


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where the services behind the social sources live (``[sources.*]`` in the config)."""

    x_bridges: tuple[str, ...] = ()
    bluesky_api_base: str = "https://public.api.bsky.app"
    bluesky_include_reposts: bool = True
    bluesky_include_replies: bool = False
    youtube_base: str = "https://www.youtube.com"
    reddit_base: str = "https://www.reddit.com"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A parsed source: its kind, who or what it is, and the URL it is stored as.

    ``identity`` is the X handle (lower case), the Bluesky handle or DID, ``user@instance``
    for Mastodon, ``channel:ID`` / ``playlist:ID`` / ``@name`` for YouTube,
    ``r/name`` / ``user/name`` for Reddit, and the URL itself for a plain feed.
    """

    kind: SourceKind
    identity: str
    url: str


NO_BRIDGES: Final = (
    "X has no public feed: feedhook reads X accounts through a Nitter or RSSHub bridge, "
    "and none is configured; the bot's operator can add one to the config file as "
    '[sources.x] bridges = ["https://nitter.example"].'
)
_FORMS_HINT: Final = (
    "give an http(s) URL of a feed or web page, or x:handle, bsky:handle, "
    "@name.bsky.social or @user@instance"
)

_X_HANDLE: Final = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_DOMAIN: Final = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_DID: Final = re.compile(r"^did:(plc|web):[a-z0-9._:%-]{1,2000}$")
_MASTODON_USER: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_HOST: Final = re.compile(r"^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$")
_YT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
_YT_HANDLE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_REDDIT_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{2,32}$")

_X_HOSTS: Final = frozenset({"x.com", "twitter.com"})
_X_PATHS_NOT_ACCOUNTS: Final = frozenset(
    {"home", "explore", "search", "i", "settings", "messages", "notifications", "intent", "share"}
)
_YOUTUBE_HOSTS: Final = frozenset({"youtube.com"})
_REDDIT_HOSTS: Final = frozenset({"reddit.com"})
# Sites with /@user pages that are not Mastodon (their pages link their own feeds).
_NOT_MASTODON: Final = frozenset({"bsky.app", "medium.com", "tiktok.com", "threads.net"})
_FEED_SUFFIXES: Final = (".rss", ".atom", ".xml", ".json")
_HOST_PREFIXES: Final = ("www.", "mobile.", "m.", "old.", "new.")


def _bare_host(host: str) -> str:
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix):
            return host[len(prefix) :]
    return host


def _shown(text: str) -> str:
    return f"`{text[:100]}`"


# --------------------------------------------------------------------------- one form each


def _x(handle: str, typed: str) -> SourceRef:
    handle = handle.strip()
    if handle.startswith("@"):
        handle = handle[1:]
    if not _X_HANDLE.match(handle):
        what = "is missing the X handle" if not handle else "is not an X handle"
        raise SourceFormError(
            f"{_shown(typed)} {what}: after x: give 1 to 15 letters, digits or underscores, "
            "such as x:jack or x:@jack."
        )
    handle = handle.lower()
    return SourceRef("x", handle, f"https://x.com/{handle}")


def _bluesky_actor(actor: str) -> str | None:
    """The canonical handle or DID, or None when ``actor`` is neither."""
    actor = actor.strip()
    if actor.startswith("did:"):
        return actor if _DID.match(actor) else None
    actor = actor.lower()
    if actor and "." not in actor:
        actor = f"{actor}.bsky.social"
    return actor if _DOMAIN.match(actor) else None


def _bluesky(actor: str, typed: str) -> SourceRef:
    raw = actor.strip().removeprefix("@")
    canonical = _bluesky_actor(raw)
    if canonical is None:
        what = "is missing the Bluesky handle" if not raw else "is not a Bluesky handle"
        raise SourceFormError(
            f"{_shown(typed)} {what}: write bsky:alice.bsky.social, bsky:alice "
            "(for alice.bsky.social) or a did:plc: identifier."
        )
    return SourceRef("bluesky", canonical, f"https://bsky.app/profile/{canonical}")


def _mastodon(user: str, instance: str, typed: str, *, scheme: str = "https") -> SourceRef:
    instance = instance.strip().lower().rstrip("/")
    if not _MASTODON_USER.match(user) or not instance or not _HOST.match(instance):
        raise SourceFormError(
            f"{_shown(typed)} is not a Mastodon account: write @user@instance, "
            "such as @gargron@mastodon.social, or the profile's address "
            "https://mastodon.social/@gargron."
        )
    user = user.lower()  # Mastodon usernames are case-insensitive: one source either way
    return SourceRef("mastodon", f"{user}@{instance}", f"{scheme}://{instance}/@{user}")


def _at_form(text: str) -> SourceRef:
    """``@name.domain`` (Bluesky) or ``@user@instance`` (Mastodon)."""
    parts = text[1:].split("@")
    if len(parts) == 2 and parts[0] and parts[1]:
        return _mastodon(parts[0], parts[1], text)
    if len(parts) == 1 and "." in parts[0]:
        return _bluesky(parts[0], text)
    if len(parts) == 1 and parts[0] and _X_HANDLE.match(parts[0]):
        raise SourceFormError(
            f"{_shown(text)} does not say which network: write x:{parts[0]} for X, "
            f"bsky:{parts[0]} for Bluesky or @{parts[0]}@instance for Mastodon."
        )
    raise SourceFormError(
        f"{_shown(text)} is not a handle: write @alice.bsky.social for Bluesky "
        "or @user@instance for Mastodon."
    )


def _youtube(path: str, query: str, base: str, typed: str) -> SourceRef:
    params = parse_qs(query)
    segments = [s for s in path.split("/") if s]
    if path.rstrip("/") == "/feeds/videos.xml":
        for name, label in (("channel_id", "channel"), ("playlist_id", "playlist")):
            value = (params.get(name) or [""])[0]
            if _YT_ID.match(value):
                return SourceRef(
                    "youtube", f"{label}:{value}", f"{base}/feeds/videos.xml?{name}={value}"
                )
    playlist = (params.get("list") or [""])[0]
    if playlist:
        if not _YT_ID.match(playlist):
            raise SourceFormError(f"{_shown(typed)} has no valid YouTube playlist id after list=.")
        return SourceRef(
            "youtube", f"playlist:{playlist}", f"{base}/feeds/videos.xml?playlist_id={playlist}"
        )
    if len(segments) >= 2 and segments[0] == "channel":
        if not _YT_ID.match(segments[1]):
            raise SourceFormError(
                f"{_shown(typed)} has no valid YouTube channel id after /channel/."
            )
        channel = segments[1]
        return SourceRef(
            "youtube", f"channel:{channel}", f"{base}/feeds/videos.xml?channel_id={channel}"
        )
    if segments and segments[0].startswith("@"):
        handle = segments[0][1:]
        if not _YT_HANDLE.match(handle):
            raise SourceFormError(f"{_shown(typed)} has no valid YouTube handle after /@.")
        # The channel page links its feed; fetching resolves it (HTML discovery).
        return SourceRef("youtube", f"@{handle}", f"{base}/@{quote(handle)}")
    return SourceRef("feed", typed, typed)


def _reddit(path: str, base: str, typed: str) -> SourceRef:
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 2 and segments[0] in ("r", "u", "user"):
        if len(segments) > 3 or (len(segments) == 3 and segments[2] != ".rss"):
            return SourceRef("feed", typed, typed)  # a post or a sorted listing: as typed
        name = segments[1].removesuffix(".rss")
        if not _REDDIT_NAME.match(name):
            raise SourceFormError(f"{_shown(typed)} has no valid subreddit or user name.")
        section = "r" if segments[0] == "r" else "user"
        return SourceRef("reddit", f"{section}/{name}", f"{base}/{section}/{name}/.rss")
    return SourceRef("feed", typed, typed)


def _host_of(base: str) -> str:
    return (urlsplit(base).netloc or "").lower()


def _url_form(text: str, settings: SourceSettings) -> SourceRef:
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise SourceFormError(f"{_shown(text)} is not a valid URL; {_FORMS_HINT}.") from None
    del port
    netloc = parts.netloc.lower()
    host = (parts.hostname or "").lower()
    if not host:
        raise SourceFormError(f"{_shown(text)} has no host name; {_FORMS_HINT}.")
    bare = _bare_host(host)
    path = parts.path or "/"
    segments = [s for s in path.split("/") if s]

    if bare in _X_HOSTS:
        if len(segments) == 1 and segments[0].lower() not in _X_PATHS_NOT_ACCOUNTS:
            return _x(segments[0], text)
        raise SourceFormError(
            f"{_shown(text)} is not an X profile: give the account's address, "
            "such as https://x.com/jack, or x:jack."
        )
    if bare == "bsky.app":
        if len(segments) == 2 and segments[0] == "profile":
            return _bluesky(segments[1], text)
        if len(segments) == 3 and segments[0] == "profile" and segments[2] == "rss":
            return SourceRef("feed", text, text)  # the profile's own RSS, asked for as such
        raise SourceFormError(
            f"{_shown(text)} is not a Bluesky profile: give its address, such as "
            "https://bsky.app/profile/alice.bsky.social, or bsky:alice.bsky.social."
        )
    youtube_base = settings.youtube_base.rstrip("/")
    if bare in _YOUTUBE_HOSTS or netloc == _host_of(youtube_base):
        ref = _youtube(path, parts.query, youtube_base, text)
        if ref.kind != "feed":
            return ref
    reddit_base = settings.reddit_base.rstrip("/")
    if bare in _REDDIT_HOSTS or netloc == _host_of(reddit_base):
        ref = _reddit(path, reddit_base, text)
        if ref.kind != "feed":
            return ref
    if bare in _YOUTUBE_HOSTS | _REDDIT_HOSTS:
        return SourceRef("feed", text, text)
    if (
        len(segments) == 1
        and segments[0].startswith("@")
        and not segments[0].lower().endswith(_FEED_SUFFIXES)  # /@user.rss is a plain feed
        and not parts.query
        and bare not in _NOT_MASTODON
    ):
        user, at, remote = segments[0][1:].partition("@")
        if _MASTODON_USER.match(user):  # else some other site's page: a feed or HTML page
            # instance/@user@remote is a remote account seen from another server
            return _mastodon(user, remote if at else netloc, text, scheme=parts.scheme.lower())
    return SourceRef("feed", text, text)


# --------------------------------------------------------------------------- entry points


def _is_webhook_url(url: str) -> bool:
    try:
        parse_webhook_url(url)
    except WebhookURLError:
        return False
    return True


def parse_source(text: str, settings: SourceSettings | None = None) -> SourceRef:
    """The kind and canonical URL of a source as a person typed it.

    Raises :class:`SourceFormError` with the sentence to show.
    """
    settings = settings or SourceSettings()
    typed = text.strip()
    if not typed:
        raise SourceFormError(f"No source given; {_FORMS_HINT}.")
    scheme, colon, rest = typed.partition(":")
    scheme = scheme.lower()
    if colon and scheme in ("x", "twitter"):
        return _x(rest, typed)
    if colon and scheme in ("bsky", "bluesky"):
        return _bluesky(rest, typed)
    if typed.startswith("@"):
        return _at_form(typed)
    if colon and scheme in ("http", "https") and rest.startswith("//"):
        if _is_webhook_url(typed):
            # Never echoed: it holds the webhook's token.
            raise SourceFormError(
                "That is a Discord webhook URL, where feedhook posts, not a source to read; "
                "give the feed's address as the source (in the config file the webhook URL "
                "goes in `webhook`)."
            )
        return _url_form(typed, settings)
    raise SourceFormError(
        f"{_shown(typed)} is not a feed URL or a source form feedhook knows; {_FORMS_HINT}."
    )


# Every poll asks this of the same few thousand URLs; parsing them again each
# time cost about a tenth of a 304 poll's CPU. Both arguments and the result are
# immutable, so sharing cached answers is safe.
@functools.lru_cache(maxsize=16384)
def kind_of(url: str, settings: SourceSettings | None = None) -> SourceRef:
    """How to fetch a stored source: its canonical URL says what it is.

    Never raises: a URL that is no canonical form of a social source is a feed.
    """
    try:
        return parse_source(url, settings)
    except SourceFormError:
        return SourceRef("feed", url, url)


def ensure_usable(ref: SourceRef, settings: SourceSettings) -> None:
    """Refuse a source this installation cannot fetch (X without a bridge)."""
    if ref.kind == "x" and not settings.x_bridges:
        raise SourceFormError(NO_BRIDGES)
