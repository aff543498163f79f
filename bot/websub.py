"""WebSub (W3C Recommendation) as a subscriber sees it: discovery, signatures, leases.

Pure: no I/O. :mod:`bot.push` does the requests and answers the hub's calls.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

from bot.models import FeedInfo

# What we ask hubs for (they may grant less): ten days, the common hubs' own default.
REQUESTED_LEASE: Final = 864_000
# The longest lease taken as granted (a hub's "ten years" would keep a dead one).
MAX_LEASE: Final = 365 * 86_400
# A hub that has not verified a request this long after it was sent never will.
VERIFY_TIMEOUT: Final = 300.0
# Retries of a refused or failed request: 5 minutes, doubling, at most a day apart.
RETRY_FIRST: Final = 300.0
RETRY_MAX: Final = 86_400.0
# X-Hub-Signature methods the spec names (sha1 for older hubs).
SIGNATURE_METHODS: Final = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

_LINK_VALUE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$&+.^_`|~-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


@dataclass(frozen=True, slots=True)
class Discovery:
    """The hub and topic a fetched feed announces (either may be missing)."""

    hub: str | None
    topic: str | None

    @property
    def pushable(self) -> bool:
        return self.hub is not None and self.topic is not None


def parse_link_header(value: str, *, base: str = "") -> list[tuple[str, frozenset[str]]]:
    """``Link: <url>; rel="hub self", ...`` (RFC 8288) -> [(absolute url, rels)]."""
    found: list[tuple[str, frozenset[str]]] = []
    for match in _LINK_VALUE.finditer(value):
        url = urljoin(base, match.group(1).strip()) if base else match.group(1).strip()
        rels: set[str] = set()
        for name, quoted, bare in _PARAM.findall(match.group(2)):
            if name.lower() == "rel":
                rels.update((quoted or bare).lower().split())
        if rels and urlsplit(url).scheme in ("http", "https"):
            found.append((url, frozenset(rels)))
    return found


def discover(headers: Mapping[str, str], info: FeedInfo, *, url: str) -> Discovery:
    """The hub and topic of a feed fetched from ``url``: HTTP ``Link`` headers first (the
    spec's order), then the document's links. Without a self link the fetched URL is the
    topic only when the hub came with it."""
    hub = topic = None
    values = headers.getall("Link", []) if hasattr(headers, "getall") else []
    if not values and (single := headers.get("Link") or headers.get("link")):
        values = [single]
    for value in values:
        for link, rels in parse_link_header(value, base=url):
            if "hub" in rels and hub is None:
                hub = link
            if "self" in rels and topic is None:
                topic = link
    hub = hub or info.hub
    topic = topic or info.self_url
    if hub is not None and topic is None:
        topic = url
    return Discovery(hub, topic)


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature: method=hex`` is the HMAC of ``body`` with ``secret``
    (compared in constant time); False when absent, malformed or of an unknown method."""
    if not header or "=" not in header:
        return False
    method, _, given = header.strip().partition("=")
    digest = SIGNATURE_METHODS.get(method.strip().lower())
    if digest is None:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest().encode()
    # bytes: compare_digest refuses str holding anything but ASCII (a hostile header)
    return hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace"))


def new_secret() -> str:
    """A hub.secret: 32 random bytes (the spec allows up to 200 bytes)."""
    return secrets.token_hex(32)


def new_callback_id() -> str:
    """The opaque last segment of a callback URL: nothing about the source shows in it."""
    return secrets.token_urlsafe(24)


def callback_url(public_url: str, callback_id: str) -> str:
    return f"{public_url.rstrip('/')}/websub/{callback_id}"


def renew_margin(lease_seconds: float) -> float:
    """How long before a lease ends to renew it: a tenth of it, at least half of it up
    to an hour (a ten-day lease is renewed a day early, a one-minute one 30 s early)."""
    return max(lease_seconds / 10, min(3600.0, lease_seconds / 2))


def retry_delay(failures: int) -> float:
    """Seconds before trying a hub again after ``failures`` (>= 1) failed requests."""
    return float(min(RETRY_FIRST * 2 ** min(max(failures - 1, 0), 20), RETRY_MAX))
