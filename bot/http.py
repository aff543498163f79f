"""The HTTP server: Prometheus metrics, liveness and readiness for operators, and the
routes of pushed items (bot.push adds them: WebSub callbacks, inbound hooks).

It shows only what its callables return: no configuration, no exception text (which
could hold a URL with a token). A handler that fails is logged and answered with a
generic 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from bot.metrics import Metrics

log = logging.getLogger(__name__)

READY_TIMEOUT: Final = 3.0
# What /healthz lists when alive() is False: the app's check is that its scheduler runs.
NOT_ALIVE: Final = "scheduler: not running"
# In-flight requests get this long to finish when the server stops.
SHUTDOWN_TIMEOUT: Final = 2.0
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - what ":PORT" asks for

_PORT = re.compile(r"[0-9]{1,5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_FORMS = "write HOST:PORT, such as 127.0.0.1:9308, [::1]:9308 or :9308 (all interfaces)"


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the process can do its work; ``missing``: one line per thing it lacks,
    such as ``"database: connection refused"``."""

    ready: bool
    missing: tuple[str, ...] = ()


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> (host, port). ``"[::1]:9308"`` gives ``("::1", 9308)`` and
    ``":9308"`` all IPv4 interfaces, ``("0.0.0.0", 9308)``. Port 0 lets the OS pick.
    Raises ValueError (one sentence) for anything else."""
    raw = text.strip()
    if "/" in raw:
        raise ValueError(f"listen address {text!r} looks like a URL: {_FORMS}.")
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"listen address {text!r} lacks the closing bracket: {_FORMS}.")
        host, rest = raw[1:end], raw[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"listen address {text!r} has {host!r} in brackets, which is not an IPv6 "
                f"address: {_FORMS}."
            ) from None
        if not rest.startswith(":"):
            raise ValueError(f"listen address {text!r} has no port: {_FORMS}.")
        port_text = rest[1:]
    else:
        host, colon, port_text = raw.rpartition(":")
        if not colon:
            raise ValueError(f"listen address {text!r} has no port: {_FORMS}.")
        if ":" in host:
            raise ValueError(
                f"listen address {text!r} is ambiguous: put an IPv6 address in brackets, "
                "such as [::1]:9308."
            )
        if not host:
            host = ALL_INTERFACES
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(
                f"listen address {text!r} has {host!r} for a host, which is neither a name "
                f"nor an IP address: {_FORMS}."
            )
    if not port_text:
        raise ValueError(f"listen address {text!r} has no port: {_FORMS}.")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(
            f"listen address {text!r} has {port_text!r} for a port, which must be a number "
            "from 0 to 65535."
        )
    return host, int(port_text)


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store", **headers})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Router errors as JSON; a failing handler logged and answered without its text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _json(404, {"status": "not found"})
    except web.HTTPMethodNotAllowed as e:
        return _json(
            405, {"status": "method not allowed"}, Allow=", ".join(sorted(e.allowed_methods))
        )
    except web.HTTPException:
        raise
    except Exception:
        # the path of a hook carries its token: never logged
        path = request.path
        for prefix in ("/hooks/", "/websub/"):
            if path.startswith(prefix):
                path = prefix + "…"
        log.exception("ops server: %s %s failed", request.method, path)
        return _json(500, {"status": "error"})


class OpsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``listen`` (``HOST:PORT``).

    ``refresh`` sets the database gauges before each scrape; ``alive`` says whether
    the process still works (the app's scheduler runs); ``readiness`` says what it
    lacks to work. ``refresh`` and ``readiness`` get ``ready_timeout`` seconds each.
    More routes may be added to :attr:`app` before :meth:`start`.
    """

    def __init__(
        self,
        listen: str,
        *,
        metrics: Metrics,
        refresh: Callable[[], Awaitable[None]],
        alive: Callable[[], bool],
        readiness: Callable[[], Awaitable[Readiness]],
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.host, self._listen_port = parse_listen(listen)
        self.metrics = metrics
        self._refresh = refresh
        self._alive = alive
        self._readiness = readiness
        self._ready_timeout = ready_timeout
        self._refresh_failing = False
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[_guard])
        self.app.router.add_get("/metrics", self._handle_metrics)
        self.app.router.add_get("/healthz", self._handle_healthz)
        self.app.router.add_get("/readyz", self._handle_readyz)

    async def start(self) -> None:
        """Bind and serve; OSError (address in use, permission denied) propagates as is."""
        if self._runner is not None:
            raise RuntimeError("the ops server is already started")
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._listen_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("ops server listening on %s port %d", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The bound port (the OS's pick when ``listen`` said port 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the ops server is not started")
        return int(self._runner.addresses[0][1])

    def _timed_out(self) -> str:
        return f"database: did not answer within {self._ready_timeout:g} s"

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self._ready_timeout):
                await self._refresh()
        except Exception as e:
            # Metrics must not fail with the database: serve this process's counters.
            reason = self._timed_out() if isinstance(e, TimeoutError) else type(e).__name__
            if not self._refresh_failing:
                log.warning(
                    "metrics: cannot read the database gauges (%s); serving this process's "
                    "own metrics, the database gauges keep their last values",
                    reason,
                    exc_info=not isinstance(e, TimeoutError),
                )
            else:
                log.debug("metrics: still cannot read the database gauges (%s)", reason)
            self._refresh_failing = True
        else:
            if self._refresh_failing:
                log.info("metrics: the database gauges are read again")
            self._refresh_failing = False
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        if self._alive():
            return _json(200, {"status": "ok"})
        return _json(503, {"status": "down", "missing": [NOT_ALIVE]})

    async def _handle_readyz(self, request: web.Request) -> web.Response:
        scope = asyncio.timeout(self._ready_timeout)
        try:
            async with scope:
                result = await self._readiness()
        except TimeoutError:
            if not scope.expired():
                raise  # the check's own timeout: a failure like any other
            result = Readiness(False, (self._timed_out(),))
        if result.ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "missing": list(result.missing)})
