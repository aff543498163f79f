"""Tests for bot.net against real aiohttp servers on 127.0.0.1 (no mocks, no internet)."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot.net import (
    ACCEPT,
    Fetcher,
    FetchError,
    FetchResult,
    NetSettings,
    _BlockedAddressError,
    _GuardedResolver,
    _non_public_reason,
    _parse_ip,
)

UA = "feedhook/0.1.0 (+https://github.com/feedhook/feedhook)"
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
FEED_BODY = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
LOOPBACK_OK = frozenset({"127.0.0.1"})


@dataclass
class Server:
    port: int
    hits: list[str] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    stream_finished: bool = False

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _build_app(state: Server) -> web.Application:
    routes = web.RouteTableDef()

    def other(request: web.Request, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{request.url.port}{path}"

    @routes.get("/feed")
    async def feed(request: web.Request) -> web.Response:
        return web.Response(
            body=FEED_BODY,
            headers={
                "Content-Type": "application/rss+xml; charset=utf-8",
                "Content-Language": "en",
                "ETag": ETAG,
                "Last-Modified": LAST_MODIFIED,
            },
        )

    @routes.get("/cond")
    async def cond(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        if request.headers.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304)
        return web.Response(body=FEED_BODY, headers={"ETag": ETAG})

    @routes.get("/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    def redirect(status: int, location: str) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    @routes.get("/p1")
    async def p1(request: web.Request) -> web.Response:
        return redirect(301, other(request, "/p2"))

    @routes.get("/p2")
    async def p2(request: web.Request) -> web.Response:
        return redirect(308, other(request, "/feed"))

    @routes.get("/t1")
    async def t1(request: web.Request) -> web.Response:
        return redirect(301, other(request, "/t2"))

    @routes.get("/t2")
    async def t2(request: web.Request) -> web.Response:
        return redirect(302, other(request, "/feed"))

    @routes.get("/rel/a/start")
    async def rel_start(request: web.Request) -> web.Response:
        return redirect(302, "../b/end?x=1")

    @routes.get("/rel/b/end")
    async def rel_end(request: web.Request) -> web.Response:
        return web.Response(body=b"relative ok")

    @routes.get("/loop/a")
    async def loop_a(request: web.Request) -> web.Response:
        return redirect(302, "/loop/b")

    @routes.get("/loop/b")
    async def loop_b(request: web.Request) -> web.Response:
        return redirect(302, "/loop/a")

    @routes.get("/chain/{n}")
    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=b"end of chain")
        return redirect(307, f"/chain/{n - 1}")

    @routes.get("/to-ftp")
    async def to_ftp(request: web.Request) -> web.Response:
        return redirect(302, "ftp://example.com/feed.xml")

    @routes.get("/to-localhost")
    async def to_localhost(request: web.Request) -> web.Response:
        return redirect(302, other(request, "/feed", host="localhost"))

    @routes.get("/to-literal")
    async def to_literal(request: web.Request) -> web.Response:
        return redirect(302, other(request, "/feed"))

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2000)

    @routes.get("/lying-length")
    async def lying_length(request: web.Request) -> web.StreamResponse:
        # Declares a huge body but sends almost nothing: only an early Content-Length check
        # fails fast; a reader that streamed would sit here until the timeout.
        resp = web.StreamResponse()
        resp.content_length = 50_000_000
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await asyncio.sleep(5)
        return resp

    @routes.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b"y" * 65536
        for _ in range(4000):  # 256 MiB: only finishes if the client never stops reading
            await resp.write(chunk)
        state.stream_finished = True
        return resp

    @routes.get("/gzip")
    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b"\0" * 1_000_000),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/xml"},
        )

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(body=b"too late")

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        headers = {}
        if "ra" in request.query:
            headers["Retry-After"] = request.query["ra"]
        if "ra_in" in request.query:
            when = datetime.now(UTC) + timedelta(seconds=int(request.query["ra_in"]))
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        return web.Response(status=int(request.match_info["code"]), headers=headers)

    @routes.get("/cache")
    async def cache(request: web.Request) -> web.Response:
        headers = {}
        if "cc" in request.query:
            headers["Cache-Control"] = request.query["cc"]
        return web.Response(body=b"cached", headers=headers)

    @routes.get("/count")
    async def count(request: web.Request) -> web.Response:
        state.in_flight += 1
        state.peak = max(state.peak, state.in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            state.in_flight -= 1
        return web.Response(body=b"counted")

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        state.hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(port=0)
    # handler_cancellation: slow/streaming handlers stop as soon as the client goes away,
    # so tearing the server down never waits for them.
    runner = web.AppRunner(_build_app(state), handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = runner.addresses
    state.port = sockets[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


MakeFetcher = Callable[..., Awaitable[Fetcher]]


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    opened: list[Fetcher] = []

    async def make(**overrides: Any) -> Fetcher:
        fetcher = Fetcher(NetSettings(user_agent=UA, **overrides))
        await fetcher.__aenter__()
        opened.append(fetcher)
        return fetcher

    yield make
    for fetcher in opened:
        await fetcher.close()


@pytest.fixture
async def fetcher(make_fetcher: MakeFetcher) -> Fetcher:
    """The usual test fetcher: default settings except that loopback's IP literal is allowed."""
    return await make_fetcher(allowed_hosts=LOOPBACK_OK)


async def fetch_error(fetcher: Fetcher, url: str, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(url, **kwargs)
    return info.value


# --------------------------------------------------------------------------------------------
# Basic fetching


async def test_200_with_body_and_validators(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/feed"))
    assert isinstance(result, FetchResult)
    assert result.status == 200
    assert result.body == FEED_BODY
    assert result.url == server.url("/feed")
    assert result.permanent_url is None
    assert result.etag == ETAG
    assert result.last_modified == LAST_MODIFIED
    assert result.max_age is None
    # Header look-ups are case-insensitive.
    assert result.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert result.headers["Content-Language"] == "en"


async def test_user_agent_and_accept_sent(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/echo"))
    sent = json.loads(result.body)
    assert sent["User-Agent"] == UA
    assert sent["Accept"] == ACCEPT
    assert "gzip" in sent["Accept-Encoding"]
    assert "If-None-Match" not in sent
    assert "If-Modified-Since" not in sent


async def test_conditional_get_with_etag(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/cond"), etag=ETAG)
    assert result.status == 304
    assert result.body == b""
    assert result.etag == ETAG


async def test_conditional_get_with_last_modified(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/cond"), last_modified=LAST_MODIFIED)
    assert result.status == 304
    assert result.body == b""
    # The server did not repeat the validator, so the one we sent is kept.
    assert result.last_modified == LAST_MODIFIED


async def test_conditional_get_with_stale_validators(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(
        server.url("/cond"), etag='"old"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT"
    )
    assert result.status == 200
    assert result.body == FEED_BODY


# --------------------------------------------------------------------------------------------
# Redirects


async def test_permanent_redirect_chain_sets_permanent_url(
    fetcher: Fetcher, server: Server
) -> None:
    result = await fetcher.fetch(server.url("/p1"))
    assert result.status == 200
    assert result.body == FEED_BODY
    assert result.url == server.url("/feed")
    assert result.permanent_url == server.url("/feed")
    assert server.hits == ["/p1", "/p2", "/feed"]


async def test_temporary_hop_in_chain_clears_permanent_url(
    fetcher: Fetcher, server: Server
) -> None:
    result = await fetcher.fetch(server.url("/t1"))
    assert result.url == server.url("/feed")
    assert result.permanent_url is None


async def test_relative_location(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/rel/a/start"))
    assert result.body == b"relative ok"
    assert result.url == server.url("/rel/b/end?x=1")


async def test_redirect_loop(fetcher: Fetcher, server: Server) -> None:
    err = await fetch_error(fetcher, server.url("/loop/a"))
    assert err.kind == "redirects"
    assert "loop" in str(err)


async def test_five_redirects_allowed_six_refused(fetcher: Fetcher, server: Server) -> None:
    result = await fetcher.fetch(server.url("/chain/5"))
    assert result.body == b"end of chain"

    err = await fetch_error(fetcher, server.url("/chain/6"))
    assert err.kind == "redirects"
    assert "more than 5" in str(err)


async def test_redirect_to_non_http_scheme(fetcher: Fetcher, server: Server) -> None:
    err = await fetch_error(fetcher, server.url("/to-ftp"))
    assert err.kind == "scheme"
    assert "'ftp'" in str(err)


@pytest.mark.parametrize("url", ["ftp://example.com/feed.xml", "file:///etc/passwd", "feed"])
async def test_non_http_scheme_refused(fetcher: Fetcher, url: str) -> None:
    err = await fetch_error(fetcher, url)
    assert err.kind == "scheme"


# --------------------------------------------------------------------------------------------
# SSRF guard


async def test_loopback_literal_blocked_by_default(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher()
    err = await fetch_error(fetcher, server.url("/feed"))
    assert err.kind == "blocked"
    assert "loopback address (127.0.0.1)" in str(err)
    assert "polling.allowed_hosts" in str(err)
    assert server.hits == []


async def test_hostname_resolving_to_loopback_blocked(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher()
    err = await fetch_error(fetcher, server.url("/feed", host="localhost"))
    assert err.kind == "blocked"
    # The resolved address can only be known if the check ran on the resolver's answer.
    assert "localhost resolves to a loopback address (127.0.0.1)" in str(err)
    assert server.hits == []


async def test_legacy_numeric_host_forms_blocked(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher()
    for host in ("2130706433", "127.1", "0x7f.0.0.1"):
        err = await fetch_error(fetcher, server.url("/feed", host=host))
        assert err.kind == "blocked", host
    assert server.hits == []


async def test_ipv4_mapped_ipv6_literal_blocked(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher()
    err = await fetch_error(fetcher, server.url("/feed", host="[::ffff:127.0.0.1]"))
    assert err.kind == "blocked"
    assert server.hits == []


async def test_allowed_host_redirecting_to_private_host_blocked(
    fetcher: Fetcher, server: Server
) -> None:
    err = await fetch_error(fetcher, server.url("/to-localhost"))
    assert err.kind == "blocked"
    assert "redirect target localhost resolves to a loopback address" in str(err)
    assert server.hits == ["/to-localhost"]


async def test_allowed_hostname_redirecting_to_ip_literal_blocked(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher(allowed_hosts=frozenset({"localhost"}))
    # The allowed name itself works (through the resolver)...
    result = await fetcher.fetch(server.url("/feed", host="localhost"))
    assert result.body == FEED_BODY
    # ...but its redirect to an IP literal that is not allowed does not.
    err = await fetch_error(fetcher, server.url("/to-literal", host="localhost"))
    assert err.kind == "blocked"
    assert "127.0.0.1" in str(err)
    assert server.hits == ["/feed", "/to-literal"]


async def test_allow_private_addresses_lets_everything_through(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher(allow_private_addresses=True)
    for url in (server.url("/feed"), server.url("/feed", host="localhost")):
        result = await fetcher.fetch(url)
        assert result.body == FEED_BODY
    result = await fetcher.fetch(server.url("/to-localhost"))
    assert result.body == FEED_BODY


class _StaticResolver(AbstractResolver):
    """Stand-in DNS that answers every name with fixed addresses (to test DNS rebinding)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], ["93.184.216.34", "192.168.0.1"], ["::ffff:169.254.169.254"], ["fd00::1"]],
)
async def test_guarded_resolver_refuses_any_private_answer(addresses: list[str]) -> None:
    resolver = _GuardedResolver(_StaticResolver(addresses), frozenset())
    with pytest.raises(_BlockedAddressError):
        await resolver.resolve("feeds.example.com", 443)
    # ...unless that host is explicitly allowed.
    allowed = _GuardedResolver(_StaticResolver(addresses), frozenset({"feeds.example.com"}))
    assert len(await allowed.resolve("FEEDS.example.com.", 443)) == len(addresses)


async def test_guarded_resolver_passes_public_answers() -> None:
    resolver = _GuardedResolver(_StaticResolver(["93.184.216.34", "2606:4700::1111"]), frozenset())
    assert [r["host"] for r in await resolver.resolve("example.com", 80)] == [
        "93.184.216.34",
        "2606:4700::1111",
    ]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_address_classification(address: str, reason: str | None) -> None:
    ip = _parse_ip(address)
    assert ip == ipaddress.ip_address(address)
    assert _non_public_reason(ip) == reason


# --------------------------------------------------------------------------------------------
# Size cap


async def test_too_large_by_content_length(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_body_bytes=1000)
    err = await fetch_error(fetcher, server.url("/big"))
    assert err.kind == "too_large"
    assert "limit" in str(err)


async def test_too_large_content_length_fails_before_reading(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_body_bytes=1000, total_timeout=2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    err = await fetch_error(fetcher, server.url("/lying-length"))
    assert err.kind == "too_large"
    assert loop.time() - started < 1.0


async def test_too_large_while_streaming_chunked(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_body_bytes=100_000)
    err = await fetch_error(fetcher, server.url("/stream"))
    assert err.kind == "too_large"
    await asyncio.sleep(0.05)
    # The client hung up long before the server could send its 256 MiB.
    assert not server.stream_finished


async def test_too_large_after_gzip_inflation(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_body_bytes=100_000)
    err = await fetch_error(fetcher, server.url("/gzip"))
    assert err.kind == "too_large"


async def test_gzip_within_cap_is_inflated(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_body_bytes=2_000_000)
    result = await fetcher.fetch(server.url("/gzip"))
    assert result.body == b"\0" * 1_000_000


# --------------------------------------------------------------------------------------------
# Timeouts, statuses, connection errors


async def test_slow_server_times_out(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, total_timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    err = await fetch_error(fetcher, server.url("/slow"))
    assert err.kind == "timeout"
    assert str(err).startswith("timed out after 0.5 s")
    assert loop.time() - started < 1.5


async def test_404(fetcher: Fetcher, server: Server) -> None:
    err = await fetch_error(fetcher, server.url("/status/404"))
    assert err.kind == "http"
    assert err.status == 404
    assert err.retry_after is None
    assert str(err).startswith("HTTP 404 Not Found")
    assert "check the URL" in str(err)


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_seconds(fetcher: Fetcher, server: Server, code: int) -> None:
    err = await fetch_error(fetcher, server.url(f"/status/{code}?ra=120"))
    assert err.kind == "http"
    assert err.status == code
    assert err.retry_after == 120.0


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_http_date(fetcher: Fetcher, server: Server, code: int) -> None:
    err = await fetch_error(fetcher, server.url(f"/status/{code}?ra_in=120"))
    assert err.status == code
    assert err.retry_after is not None
    assert 115.0 <= err.retry_after <= 120.0


async def test_retry_after_capped_and_past_dates_clamped(
    make_fetcher: MakeFetcher, server: Server
) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_server_delay=600)
    err = await fetch_error(fetcher, server.url("/status/429?ra=999999"))
    assert err.retry_after == 600.0
    err = await fetch_error(fetcher, server.url("/status/503?ra_in=-3600"))
    assert err.retry_after == 0.0
    err = await fetch_error(fetcher, server.url("/status/503?ra=soon"))
    assert err.retry_after is None
    # Retry-After on other statuses is not honoured.
    err = await fetch_error(fetcher, server.url("/status/500?ra=60"))
    assert err.status == 500
    assert err.retry_after is None


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("public, max-age=600", 600.0),
        ('max-age="120"', 120.0),
        ("max-age=99999", 3600.0),
        ("no-store, max-age=60", None),
        ("max-age=60, no-cache", None),
        ("max-age=abc", None),
        (None, None),
    ],
)
async def test_cache_control_max_age(
    make_fetcher: MakeFetcher, server: Server, cache_control: str | None, expected: float | None
) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, max_server_delay=3600)
    url = URL(server.url("/cache"))
    if cache_control is not None:
        url = url.with_query(cc=cache_control)
    result = await fetcher.fetch(str(url))
    assert result.max_age == expected


async def test_connection_refused(make_fetcher: MakeFetcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket is closed now, so nothing listens on that port.
    fetcher = await make_fetcher(allow_private_addresses=True)
    err = await fetch_error(fetcher, f"http://127.0.0.1:{port}/feed")
    assert err.kind == "connection"
    assert f"127.0.0.1:{port}" in str(err)


def test_fetch_error_survives_pickling() -> None:
    err = FetchError("http", "HTTP 429 Too Many Requests", status=429, retry_after=5.0)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.kind, str(copy), copy.status, copy.retry_after) == (
        "http",
        "HTTP 429 Too Many Requests",
        429,
        5.0,
    )


# --------------------------------------------------------------------------------------------
# Per-host concurrency


async def test_per_host_concurrency_limit(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allowed_hosts=LOOPBACK_OK, per_host_concurrency=2)
    results = await asyncio.gather(*(fetcher.fetch(server.url("/count")) for _ in range(10)))
    assert all(r.body == b"counted" for r in results)
    assert server.peak == 2


async def test_concurrency_limit_is_per_host(make_fetcher: MakeFetcher, server: Server) -> None:
    fetcher = await make_fetcher(allow_private_addresses=True, per_host_concurrency=2)
    urls = [server.url("/count")] * 5 + [server.url("/count", host="localhost")] * 5
    await asyncio.gather(*(fetcher.fetch(url) for url in urls))
    # Two host names for the same server: each gets its own two slots.
    assert server.peak == 4


async def test_fetcher_usable_without_context_manager(server: Server) -> None:
    fetcher = Fetcher(NetSettings(user_agent=UA, allowed_hosts=LOOPBACK_OK))
    try:
        result = await fetcher.fetch(server.url("/feed"))
        assert result.status == 200
    finally:
        await fetcher.close()
        await fetcher.close()
