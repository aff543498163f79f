"""The one HTTP fetcher every feed source goes through.

Everything that touches the network for feeds lives here so that the safety rules (SSRF guard,
size cap, timeouts, redirect limits, per-host politeness) are enforced in exactly one place.

``Fetcher.fetch`` only ever raises :class:`FetchError`; its message is a single sentence meant
to be shown to the person who configured the feed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Literal, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.resolver import DefaultResolver
from yarl import URL

__all__ = ["FetchError", "FetchErrorKind", "FetchResult", "Fetcher", "NetSettings"]

logger = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)

FetchErrorKind = Literal[
    "blocked", "timeout", "too_large", "http", "redirects", "connection", "scheme"
]

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})
_CHUNK_SIZE = 64 * 1024
_CONNECTOR_LIMIT = 100
_DNS_CACHE_TTL = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Well-known NAT64 prefix (RFC 6052): a gateway translates these to the embedded IPv4 address,
# so 64:ff9b::a9fe:a9fe reaches 169.254.169.254 and must be judged by that address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Deprecated IPv4-compatible addresses (::a.b.c.d); some stacks still route them over IPv4.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class NetSettings:
    user_agent: str
    connect_timeout: float = 10.0
    total_timeout: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    allow_private_addresses: bool = False
    # Lower-case host names or IP literals that may be fetched even though they are private.
    allowed_hosts: frozenset[str] = frozenset()
    per_host_concurrency: int = 2
    # Cap for Retry-After and Cache-Control max-age, in seconds: a hostile or broken server
    # must not be able to park a feed for weeks.
    max_server_delay: float = 6 * 3600


class FetchError(Exception):
    """A fetch failed.

    ``str(error)`` is one sentence for a human saying what went wrong and what to do about it.
    URLs in the message have their query string and credentials removed, since private feed
    URLs often carry tokens there.

    Attributes:
        kind: one of "blocked", "timeout", "too_large", "http", "redirects", "connection",
            "scheme".
        status: the HTTP status when ``kind == "http"``, else None.
        retry_after: seconds the server asked us to wait (Retry-After on 429/503, capped at
            ``NetSettings.max_server_delay``), else None.
    """

    kind: FetchErrorKind
    status: int | None
    retry_after: float | None

    def __init__(
        self,
        kind: FetchErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments would otherwise be lost when pickling/copying the exception.
        return (_rebuild_fetch_error, (self.kind, str(self), self.status, self.retry_after))


def _rebuild_fetch_error(
    kind: FetchErrorKind, message: str, status: int | None, retry_after: float | None
) -> FetchError:
    return FetchError(kind, message, status=status, retry_after=retry_after)


@dataclass(frozen=True)
class FetchResult:
    """A successful fetch.

    Attributes:
        url: final URL after redirects.
        permanent_url: the final URL when every redirect in the chain was permanent (301/308);
            store it instead of the old one. None when there was no redirect or any hop was
            temporary.
        status: the 2xx status the server sent (practically always 200), or 304.
        body: the (decompressed) body; b"" for 304.
        headers: the response headers as aiohttp's ``CIMultiDictProxy``: look-ups are
            case-insensitive (``headers.get("content-type")``) and repeated headers are kept
            (``headers.getall(...)``).
        etag / last_modified: validators to send next time. On 304 they fall back to the ones
            we sent when the server does not repeat them.
        max_age: Cache-Control max-age in seconds (capped at ``max_server_delay``); None when
            absent or when no-store/no-cache is present.
    """

    url: str
    permanent_url: str | None
    status: int
    body: bytes
    headers: Mapping[str, str]
    etag: str | None
    last_modified: str | None
    max_age: float | None


# --------------------------------------------------------------------------------------------
# Address policy


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv4 address that traffic to ``ip`` actually ends up at, for the transition formats."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched by default (e.g. "loopback"), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if ip.ipv4_mapped is not None and embedded is not None:
            # A mapped address is just the IPv4 address in disguise: judge only that, so
            # ::ffff:8.8.8.8 is allowed even though the ::ffff:0:0/96 block itself is "private".
            return _non_public_reason(embedded)
        if embedded is not None and (reason := _non_public_reason(embedded)) is not None:
            return reason
    # Order matters only for the wording: the most specific description first.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        # e.g. 100.64.0.0/10 (carrier-grade NAT) is neither "private" nor globally reachable.
        return "private"
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


# Called for every request with the same few thousand hosts; ip_address() on a
# host name costs a raised and caught ValueError each time.
@functools.lru_cache(maxsize=16384)
def _host_key(host: str) -> str:
    """Normal form used to compare hosts against ``allowed_hosts`` and key semaphores."""
    host = host.strip("[]").rstrip(".").lower()
    ip = _parse_ip(host)
    return str(ip) if ip is not None else host


def _looks_like_ip_literal(host: str) -> bool:
    # Mirrors aiohttp.helpers.is_ip_address: these hosts never reach the resolver (see
    # TCPConnector._resolve_host), so they have to be checked before the request instead.
    return ":" in host or host.replace(".", "").isdigit()


class _BlockedAddressError(OSError):
    """Raised inside the resolver. An OSError so aiohttp wraps it in ClientConnectorDNSError
    (TCPConnector._create_direct_connection only wraps OSError) and we can unwrap it."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to a {reason} address ({address})")
        self.host = host
        self.address = address
        self.reason = reason


class _GuardedResolver(AbstractResolver):
    """Resolver that refuses non-public answers.

    Checking here rather than before the request means the addresses checked are exactly the
    ones aiohttp connects to, so a DNS server answering differently on a second lookup
    (DNS rebinding) cannot slip a private address past the check. aiohttp's DNS cache only
    stores answers that passed, since a refused lookup raises.
    """

    def __init__(self, inner: AbstractResolver, allowed_hosts: frozenset[str]) -> None:
        self._inner = inner
        self._allowed_hosts = allowed_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if _host_key(host) in self._allowed_hosts:
            return results
        for result in results:
            ip = _parse_ip(result["host"])
            # An answer we cannot parse cannot be vetted, so it is refused too.
            reason = "unrecognised" if ip is None else _non_public_reason(ip)
            if reason is not None:
                # Refuse the whole answer rather than filtering: a name that mixes public and
                # private addresses is suspicious, and a clear error beats a flaky feed.
                raise _BlockedAddressError(host, result["host"], reason)
        return results

    async def close(self) -> None:
        await self._inner.close()


# --------------------------------------------------------------------------------------------
# Header parsing


def _parse_max_age(values: list[str], cap: float) -> float | None:
    max_age: float | None = None
    for directive in ",".join(values).split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            # The server does not want the response reused, so there is no freshness to honour.
            return None
        if name == "max-age":
            arg = arg.strip().strip('"')
            if arg.isascii() and arg.isdigit():
                max_age = float(int(arg))
    return None if max_age is None else min(max_age, cap)


def _parse_retry_after(value: str | None, cap: float) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            # parsedate_to_datetime returns naive datetimes for "-0000"; HTTP dates are GMT.
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), cap)


# --------------------------------------------------------------------------------------------
# Message helpers


def _display(url: URL) -> str:
    """URL safe to put in messages and logs: no credentials, no query string."""
    try:
        return str(url.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return url.host or "the URL"


def _where(hop: _Hop) -> str:
    """The URL of a hop as an error message names it."""
    shown = _display(hop.url)
    return shown if hop.index == 0 else f"the redirect target {shown}"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


def _fmt_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MiB"
    if size >= 1024:
        return f"{size / 1024:.3g} KiB"
    return f"{size} bytes"


def _http_advice(status: int, retry_after: float | None) -> str:
    if status in (401, 403):
        return "the server refuses access; the feed may be private or block bots"
    if status == 404:
        return "check the URL"
    if status == 410:
        return "the feed was removed for good; delete the subscription"
    if status == 429:
        if retry_after is not None:
            return f"the server is rate-limiting us; it will be retried after {retry_after:.0f} s"
        return "the server is rate-limiting us; it will be retried later"
    if status >= 500:
        return "the server is having problems; it will be retried later"
    if 300 <= status < 400:
        return "the server sent a redirect we cannot follow; check the URL"
    return "the server rejected the request; check the URL"


# --------------------------------------------------------------------------------------------
# Fetcher


# Redirects a POST to a hub may take (307 / 308 only).
_POST_REDIRECTS = 3


@dataclass
class _Hop:
    """Per-fetch state shared by the redirect loop and the error translation."""

    url: URL
    index: int = 0


class Fetcher:
    """Fetches feed URLs with one shared aiohttp session.

    Use as ``async with Fetcher(settings) as fetcher: await fetcher.fetch(url)``. ``fetch`` may
    also be called without ``async with`` (the session is opened on first use); call
    ``close()`` at shutdown then.
    """

    def __init__(self, settings: NetSettings) -> None:
        self._settings = settings
        self._allowed_hosts = frozenset(_host_key(h) for h in settings.allowed_hosts)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: AbstractResolver | None = None
        self._closed = False
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("Fetcher is closed")
        if self._session is not None:
            return self._session
        settings = self._settings
        # Created here, not in __init__, because aiohttp objects bind to the running loop.
        inner: AbstractResolver = DefaultResolver()
        self._resolver = (
            inner
            if settings.allow_private_addresses
            else _GuardedResolver(inner, self._allowed_hosts)
        )
        connector = aiohttp.TCPConnector(
            limit=_CONNECTOR_LIMIT,
            ttl_dns_cache=_DNS_CACHE_TTL,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.total_timeout, sock_connect=settings.connect_timeout
            ),
            headers={"User-Agent": settings.user_agent, "Accept": ACCEPT},
            # Feeds are unrelated to each other; cookies set by one must not leak to another.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Proxies from the environment would connect on our behalf and bypass the
            # resolver check, so they are never used.
            trust_env=False,
        )
        return self._session

    async def close(self) -> None:
        """Close the session and resolver. Safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:
            # The connector does not own a resolver it was given, so it will not close it.
            await resolver.close()

    def _semaphore(self, host: str) -> asyncio.Semaphore:
        # One per host ever seen; the set of feed hosts is small and bounded by the config, so
        # the dict is never pruned. A limit below 1 would deadlock every fetch, hence max().
        sem = self._semaphores.get(host)
        if sem is None:
            limit = max(1, self._settings.per_host_concurrency)
            sem = self._semaphores[host] = asyncio.Semaphore(limit)
        return sem

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url``, following up to ``max_redirects`` redirects. Raises only FetchError."""
        session = self._open()
        settings = self._settings
        try:
            current = URL(url).with_fragment(None)
        except (ValueError, TypeError) as exc:
            # Only the part before any query string is echoed: it may hold an access token.
            shown = url.partition("?")[0]
            raise FetchError("scheme", f"{shown!r} is not a valid URL; check for typos") from exc

        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified

        hop = _Hop(current)
        seen = {str(current)}
        all_permanent = True
        # One time budget for the whole redirect chain, so five slow redirects cannot add up
        # to five times total_timeout. Time spent queueing on the per-host semaphore is not
        # charged: that wait is our own politeness, not the server's slowness.
        spent = 0.0
        loop = asyncio.get_running_loop()

        while True:
            self._check_url(hop)
            remaining = settings.total_timeout - spent
            if remaining <= 0:
                raise self._timeout_error(hop.url)
            client_timeout = aiohttp.ClientTimeout(
                total=remaining, sock_connect=settings.connect_timeout
            )
            host = _host_key(hop.url.raw_host or "")
            async with self._semaphore(host):
                started = loop.time()
                try:
                    outcome = await self._request(
                        session, hop, headers, client_timeout, etag, last_modified
                    )
                finally:
                    spent += loop.time() - started

            if isinstance(outcome, FetchResult):
                if hop.index > 0 and all_permanent:
                    outcome = dataclasses.replace(outcome, permanent_url=outcome.url)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "fetch done url=%s status=%d bytes=%d redirects=%d",
                        _display(hop.url),
                        outcome.status,
                        len(outcome.body),
                        hop.index,
                    )
                return outcome

            status, target = outcome
            all_permanent = all_permanent and status in _PERMANENT_REDIRECTS
            if str(target) in seen:
                raise FetchError(
                    "redirects",
                    f"redirect loop: {_display(hop.url)} redirects back to {_display(target)}; "
                    "the site is misconfigured, try again later or use a different URL",
                )
            if hop.index >= settings.max_redirects:
                raise FetchError(
                    "redirects",
                    f"too many redirects: {_display(current)} redirected more than "
                    f"{settings.max_redirects} times; subscribe to the final feed URL instead",
                )
            logger.debug(
                "fetch redirect status=%d from=%s to=%s",
                status,
                _display(hop.url),
                _display(target),
            )
            seen.add(str(target))
            hop.url = target
            hop.index += 1

    async def post_form(self, url: str, form: Mapping[str, str]) -> tuple[int, str]:
        """POST ``form`` (urlencoded) to ``url`` (a WebSub hub) through the same guard as
        fetches, without following redirects: (status, the first 300 characters of the
        answer). Raises only FetchError (invalid URL, blocked address, no connection,
        timeout)."""
        session = self._open()
        try:
            current = URL(url).with_fragment(None)
        except (ValueError, TypeError) as exc:
            raise FetchError("scheme", f"{url.partition('?')[0]!r} is not a valid URL") from exc
        try:
            # 307 and 308 keep the method and body (a hub that moved): followed, each hop
            # checked like a fetch's; anything else is the hub's answer.
            for index in range(_POST_REDIRECTS + 1):
                hop = _Hop(current, index)
                self._check_url(hop)
                async with session.post(current, data=dict(form), allow_redirects=False) as resp:
                    location = resp.headers.get("Location")
                    if resp.status in (307, 308) and location and index < _POST_REDIRECTS:
                        current = current.join(URL(location)).with_fragment(None)
                        continue
                    text = (await resp.content.read(2048)).decode("utf-8", "replace")
                    return resp.status, " ".join(text.split())[:300]
            raise AssertionError("unreachable: the last hop returns")
        except TimeoutError as exc:
            raise self._timeout_error(current) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            blocked = exc.os_error
            if isinstance(blocked, _BlockedAddressError):
                raise FetchError(
                    "blocked",
                    f"refused: {blocked.host} resolves to a {blocked.reason} address "
                    f"({blocked.address}); set polling.allow_private_addresses or add the host "
                    "to polling.allowed_hosts",
                ) from exc
            raise FetchError("connection", f"could not resolve host {current.host}") from exc
        except (aiohttp.ClientError, HttpProcessingError, OSError, ValueError) as exc:
            detail = str(exc) or type(exc).__name__
            raise FetchError(
                "connection", f"the request to {current.host} failed ({detail})"
            ) from exc

    def _check_url(self, hop: _Hop) -> None:
        """Scheme and IP-literal checks that must happen before every request."""
        url = hop.url
        host = url.raw_host
        if url.scheme not in _ALLOWED_SCHEMES:
            scheme = url.scheme or "(none)"
            raise FetchError(
                "scheme",
                f"unsupported URL scheme {scheme!r} in {_where(hop)}; "
                "only http and https can be fetched",
            )
        if not host:
            raise FetchError("scheme", f"{_where(hop)} has no host name; check the URL")
        if self._settings.allow_private_addresses or not _looks_like_ip_literal(host):
            return
        if _host_key(host) in self._allowed_hosts:
            return
        ip = _parse_ip(host)
        reason = "non-canonical" if ip is None else _non_public_reason(ip)
        if reason is not None:
            logger.info("fetch refused url=%s host=%s reason=%s", _display(url), host, reason)
            raise FetchError(
                "blocked",
                f"refused: {_where(hop)} points to a {reason} address ({host}); set "
                "polling.allow_private_addresses or add the host to polling.allowed_hosts",
            )

    async def _request(
        self,
        session: aiohttp.ClientSession,
        hop: _Hop,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | tuple[int, URL]:
        """One request: a result, or (redirect status, next URL). Translates all errors."""
        settings = self._settings
        url = hop.url
        try:
            async with session.get(
                url, headers=headers, allow_redirects=False, timeout=client_timeout
            ) as resp:
                status = resp.status
                if status in _REDIRECT_STATUSES:
                    location = resp.headers.get("Location")
                    if location is None:
                        raise FetchError(
                            "http",
                            f"HTTP {status} from {_display(url)} without a Location header; "
                            "the server is misconfigured, check the URL",
                            status=status,
                        )
                    try:
                        target = url.join(URL(location)).with_fragment(None)
                    except (ValueError, TypeError) as exc:
                        raise FetchError(
                            "redirects",
                            f"{_display(url)} redirects to an invalid URL; "
                            "the site is misconfigured, check the URL",
                        ) from exc
                    return status, target

                max_age = _parse_max_age(
                    resp.headers.getall("Cache-Control", []), settings.max_server_delay
                )
                if status == 304:
                    return FetchResult(
                        url=str(url),
                        permanent_url=None,
                        status=304,
                        body=b"",
                        headers=resp.headers,
                        etag=resp.headers.get("ETag") or etag,
                        last_modified=resp.headers.get("Last-Modified") or last_modified,
                        max_age=max_age,
                    )
                if not 200 <= status < 300:
                    raise self._http_error(resp, url)
                body = await self._read_body(resp, url)
                return FetchResult(
                    url=str(url),
                    permanent_url=None,
                    status=status,
                    body=body,
                    headers=resp.headers,
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                    max_age=max_age,
                )
        except FetchError:
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            raise FetchError(
                "timeout",
                f"could not connect to {url.host} within {_fmt_seconds(settings.connect_timeout)}; "
                "the server may be down or unreachable, it will be retried later",
            ) from exc
        except TimeoutError as exc:
            # aiohttp raises TimeoutError (asyncio.TimeoutError is the same class on 3.11) for
            # the total budget, including while the body is streaming.
            raise self._timeout_error(url) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            blocked = exc.os_error
            if isinstance(blocked, _BlockedAddressError):
                where = blocked.host if hop.index == 0 else f"the redirect target {blocked.host}"
                logger.info(
                    "fetch refused url=%s host=%s address=%s reason=%s",
                    _display(url),
                    blocked.host,
                    blocked.address,
                    blocked.reason,
                )
                raise FetchError(
                    "blocked",
                    f"refused: {where} resolves to a {blocked.reason} address "
                    f"({blocked.address}); set polling.allow_private_addresses or add the host "
                    "to polling.allowed_hosts",
                ) from exc
            raise FetchError(
                "connection",
                f"could not resolve host {url.host} ({blocked.strerror or blocked}); "
                "check the domain name in the URL",
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(
                "connection",
                f"the TLS certificate of {url.host} is not valid ({exc.certificate_error}); "
                "the site is misconfigured, or use the http:// URL if it has one",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or exc.os_error
            raise FetchError(
                "connection",
                f"could not connect to {exc.host}:{exc.port} ({reason}); "
                "the server may be down, it will be retried later",
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError(
                "scheme", f"{_display(url)} is not a valid URL ({exc}); check for typos"
            ) from exc
        except (aiohttp.ClientError, HttpProcessingError, OSError) as exc:
            # Everything else (disconnects mid-response, malformed HTTP, invalid URLs that
            # yarl/aiohttp reject) is a broken conversation with the server.
            detail = str(exc) or type(exc).__name__
            raise FetchError(
                "connection",
                f"the request to {url.host} failed ({detail}); it will be retried later",
            ) from exc
        except ValueError as exc:
            # yarl/idna reject some host names only when the request is built.
            raise FetchError(
                "scheme", f"{_display(url)} is not a valid URL ({exc}); check for typos"
            ) from exc

    async def _read_body(self, resp: aiohttp.ClientResponse, url: URL) -> bytes:
        cap = self._settings.max_body_bytes
        declared = resp.content_length
        if declared is not None and declared > cap:
            resp.close()
            raise self._too_large_error(url, f"is {_fmt_bytes(declared)}")
        body = bytearray()
        # resp.content yields decompressed data (aiohttp inflates gzip/deflate as it streams),
        # so this counts what we would actually hold in memory and catches compression bombs.
        async for chunk in resp.content.iter_chunked(_CHUNK_SIZE):
            body += chunk
            if len(body) > cap:
                # close(), not release(): returning the connection to the pool would mean
                # draining the rest of an oversized body first.
                resp.close()
                raise self._too_large_error(url, "is larger than that")
        return bytes(body)

    def _too_large_error(self, url: URL, what: str) -> FetchError:
        cap = _fmt_bytes(self._settings.max_body_bytes)
        return FetchError(
            "too_large",
            f"the response from {_display(url)} {what}, over the {cap} limit; raise "
            "polling.max_body_bytes if this feed really is that big",
        )

    def _timeout_error(self, url: URL) -> FetchError:
        return FetchError(
            "timeout",
            f"timed out after {_fmt_seconds(self._settings.total_timeout)} fetching "
            f"{_display(url)}; the server is too slow, it will be retried later",
        )

    def _http_error(self, resp: aiohttp.ClientResponse, url: URL) -> FetchError:
        status = resp.status
        retry_after = None
        if status in (429, 503):
            retry_after = _parse_retry_after(
                resp.headers.get("Retry-After"), self._settings.max_server_delay
            )
        reason = resp.reason
        if not reason:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        label = f"HTTP {status} {reason}".rstrip()
        logger.debug("fetch http error url=%s status=%d", _display(url), status)
        return FetchError(
            "http",
            f"{label} from {_display(url)}: {_http_advice(status, retry_after)}",
            status=status,
            retry_after=retry_after,
        )
