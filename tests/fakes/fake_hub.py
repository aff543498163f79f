"""A loopback fake of a W3C WebSub hub (https://www.w3.org/TR/websub/), for tests.

``FakeHub`` serves the hub endpoint (``url``, ``http://127.0.0.1:PORT/hub``) with an
``aiohttp.web`` app on 127.0.0.1 (port 0) and plays the hub's side of the protocol::

    hub = FakeHub(max_lease=3600)
    await hub.start()
    # the subscriber POSTs hub.mode=subscribe&hub.topic=...&hub.callback=... to hub.url
    subscription = await hub.wait_for_subscription(topic)
    statuses = await hub.publish(topic, b"<feed .../>")   # POSTed to each callback
    await hub.close()                                     # later requests: connection refused

What it does (the spec's sections 5 to 8):

* Subscription requests (POST, ``application/x-www-form-urlencoded``): ``hub.mode``
  (``subscribe`` or ``unsubscribe``), ``hub.topic``, ``hub.callback`` (an absolute http(s)
  URL), optional ``hub.secret`` (under 200 bytes) and ``hub.lease_seconds`` (a non-negative
  integer). Every request's fields are recorded in ``requests``, valid or not. A missing or
  invalid field is a 400 with a short text body; otherwise 202, and the hub verifies intent
  afterwards in a task of its own (the 202 is written out before that task starts).
* Switches a test may flip at any time: ``fail`` (500), ``refuse`` (400 "refused") and
  ``deny``: a subscribe request is accepted, then denied with a GET carrying
  ``hub.mode=denied``, ``hub.topic`` and ``hub.reason`` (recorded in ``denials``); a
  subscription the denied pair had is dropped. ``deny`` does not apply to unsubscribe
  requests (the spec defines denial for subscriptions only).
* Verification of intent, ``verify_delay`` seconds after the request: a GET of the callback
  URL (its own query string kept) with ``hub.mode``, ``hub.topic``, ``hub.challenge`` and,
  to subscribe, ``hub.lease_seconds``: the requested lease, 864000 when none was asked
  for, at most ``max_lease``. Only a 2xx answer whose body is exactly the challenge counts.
  A verified subscribe stores or replaces the (topic, callback) subscription (secret and
  lease included: that is a renewal); a verified unsubscribe removes it; a failed
  verification changes nothing. Each GET is recorded in ``verifications``. Requests for the
  same (topic, callback) are verified one after the other, in the order they came.
* Content distribution, ``publish``: a POST of the body to every active (verified, lease not
  ended) subscription of the topic, with ``Content-Type``, ``Link: <hub>; rel="hub",
  <topic>; rel="self"`` and, when signing and there is a secret,
  ``X-Hub-Signature: method=hex HMAC``.

Outbound calls go through one ``ClientSession`` (5 s total timeout, no redirects followed)
and only to loopback hosts: a callback on any other host is recorded as unreachable
(status 0) without a connection being made, like a callback whose server refuses or times
out. An unexpected error inside a background task is kept in ``errors`` and raised again
by ``close()``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from tests.fakes.loopback import start_app

HUB_PATH = "/hub"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_LEASE = 864_000
MAX_SECRET_BYTES = 200  # hub.secret "MUST be less than 200 bytes"
SIGNATURE_ALGORITHMS = frozenset({"sha1", "sha256", "sha384", "sha512"})
OUTBOUND_TIMEOUT = 5.0
DENIAL_REASON = "denied by the fake hub"

_LEASE = re.compile(r"[0-9]{1,10}")
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass
class Verification:
    """One GET the hub made to a callback: a verification of intent (mode ``subscribe`` or
    ``unsubscribe``) or, in ``denials``, a denial (mode ``denied``, ``echoed`` False).
    ``status`` 0 means the callback could not be reached."""

    mode: str
    topic: str
    callback: str
    status: int
    echoed: bool


@dataclass
class Subscription:
    """A verified subscription; ``expires_at`` is on the ``time.monotonic()`` clock (set
    it in the past to end the lease early)."""

    topic: str
    callback: str
    secret: str | None
    lease_seconds: int
    expires_at: float

    @property
    def active(self) -> bool:
        return self.expires_at > time.monotonic()


@dataclass(frozen=True)
class _Pending:
    """An accepted request waiting for its verification (or denial)."""

    mode: str
    topic: str
    callback: str
    secret: str | None
    lease_seconds: int


class FakeHub:
    """A WebSub hub on loopback; see the module docstring."""

    def __init__(self, *, max_lease: int | None = None, verify_delay: float = 0.0) -> None:
        self.max_lease = max_lease
        self.verify_delay = verify_delay
        self.refuse = False
        self.fail = False
        self.deny = False
        self.requests: list[dict[str, str]] = []
        self.verifications: list[Verification] = []
        self.denials: list[Verification] = []
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.errors: list[BaseException] = []
        self._base: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on 127.0.0.1 with a port the OS picks."""
        if self._runner is not None:
            raise RuntimeError("FakeHub already started")
        app = web.Application()
        app.router.add_post(HUB_PATH, self._handle_request)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=OUTBOUND_TIMEOUT))
        self._runner, self._base = await start_app(app)

    async def close(self) -> None:
        """Stop serving (later connections are refused), cancel the verifications still
        pending, close the outbound session. Raises the first background error, if any."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self.errors:
            raise self.errors[0]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The hub endpoint, ``http://127.0.0.1:PORT/hub``."""
        if self._base is None:
            raise RuntimeError("FakeHub not started")
        return f"{self._base}{HUB_PATH}"

    # -- waiting ---------------------------------------------------------------------------

    def active(self, topic: str) -> list[Subscription]:
        """The topic's subscriptions whose lease has not ended, oldest first."""
        return [s for s in self.subscriptions.values() if s.topic == topic and s.active]

    async def wait_for_subscription(
        self,
        topic: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Subscription:
        """The first active subscription of ``topic`` (any callback), once there is one."""
        await self._wait(lambda: bool(self.active(topic)), timeout, f"a subscription to {topic}")
        return self.active(topic)[0]

    async def wait_for_requests(
        self,
        count: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        await self._wait(lambda: len(self.requests) >= count, timeout, f"{count} requests")

    async def wait_for_verifications(
        self,
        count: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Until ``count`` verification GETs were made (and their outcome applied)."""
        await self._wait(
            lambda: len(self.verifications) >= count, timeout, f"{count} verifications"
        )

    async def wait_for_denials(
        self,
        count: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        await self._wait(lambda: len(self.denials) >= count, timeout, f"{count} denials")

    async def _wait(self, done: Callable[[], bool], within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within):
                while not done():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"FakeHub: no {what} within {within} s") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- content distribution --------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        content_type: str = "application/atom+xml",
        algorithm: str | None = "sha256",
        secret: str | None = None,
    ) -> list[int]:
        """POST ``body`` to each active subscription of ``topic``, one after the other;
        the callbacks' statuses in that order (0: unreachable). ``secret`` signs instead of
        each subscription's own; ``algorithm=None`` sends no signature."""
        if algorithm is not None and algorithm not in SIGNATURE_ALGORITHMS:
            raise ValueError(f"unknown signature algorithm {algorithm!r}")
        statuses: list[int] = []
        for subscription in self.active(topic):
            headers = {
                "Content-Type": content_type,
                "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
            }
            key = secret if secret is not None else subscription.secret
            if algorithm is not None and key is not None:
                digest = hmac.new(key.encode(), body, algorithm).hexdigest()
                headers["X-Hub-Signature"] = f"{algorithm}={digest}"
            status, _ = await self._call("POST", subscription.callback, headers=headers, body=body)
            statuses.append(status)
        return statuses

    # -- subscription requests -------------------------------------------------------------

    async def _handle_request(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, str] = {}
        if request.content_type == FORM_CONTENT_TYPE:
            for name, value in (await request.post()).items():
                if isinstance(value, str):
                    fields.setdefault(name, value)
        self.requests.append(fields)
        self._notify()
        if self.fail:
            return web.Response(status=500, text="hub failure")
        if self.refuse:
            return web.Response(status=400, text="refused")
        if request.content_type != FORM_CONTENT_TYPE:
            return web.Response(status=400, text=f"expected {FORM_CONTENT_TYPE}")
        pending = self._parse(fields)
        if isinstance(pending, str):
            return web.Response(status=400, text=pending)
        # Out on the wire before the verification starts, as a subscriber would expect.
        response = web.Response(status=202, text="accepted")
        await response.prepare(request)
        await response.write_eof()
        if self.deny and pending.mode == "subscribe":
            self._spawn(self._send_denial(pending))
        else:
            self._spawn(self._verify(pending))
        return response

    def _parse(self, fields: dict[str, str]) -> _Pending | str:
        """The request, or what is wrong with it."""
        mode = fields.get("hub.mode")
        if mode not in ("subscribe", "unsubscribe"):
            return "hub.mode must be subscribe or unsubscribe"
        topic = fields.get("hub.topic", "")
        if not topic:
            return "hub.topic is missing"
        callback = fields.get("hub.callback", "")
        if not _is_http_url(callback):
            return "hub.callback must be an absolute http(s) URL"
        secret = fields.get("hub.secret")
        if secret is not None and len(secret.encode()) >= MAX_SECRET_BYTES:
            return f"hub.secret must be less than {MAX_SECRET_BYTES} bytes"
        raw_lease = fields.get("hub.lease_seconds")
        if raw_lease is None:
            lease = DEFAULT_LEASE
        elif _LEASE.fullmatch(raw_lease):
            lease = int(raw_lease)
        else:
            return "hub.lease_seconds must be a non-negative integer"
        if self.max_lease is not None:
            lease = min(lease, self.max_lease)
        return _Pending(mode, topic, callback, secret or None, lease)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.errors.append(error)
            self._notify()

    async def _verify(self, pending: _Pending) -> None:
        key = (pending.topic, pending.callback)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self.verify_delay > 0:
                await asyncio.sleep(self.verify_delay)
            challenge = secrets.token_urlsafe(24)
            query = {
                "hub.mode": pending.mode,
                "hub.topic": pending.topic,
                "hub.challenge": challenge,
            }
            if pending.mode == "subscribe":
                query["hub.lease_seconds"] = str(pending.lease_seconds)
            status, answer = await self._call("GET", _with_query(pending.callback, query))
            echoed = answer == challenge.encode()
            if 200 <= status < 300 and echoed:
                if pending.mode == "subscribe":
                    self.subscriptions[key] = Subscription(
                        topic=pending.topic,
                        callback=pending.callback,
                        secret=pending.secret,
                        lease_seconds=pending.lease_seconds,
                        expires_at=time.monotonic() + pending.lease_seconds,
                    )
                else:
                    self.subscriptions.pop(key, None)
            self.verifications.append(
                Verification(pending.mode, pending.topic, pending.callback, status, echoed)
            )
            self._notify()

    async def _send_denial(self, pending: _Pending) -> None:
        key = (pending.topic, pending.callback)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self.verify_delay > 0:
                await asyncio.sleep(self.verify_delay)
            query = {"hub.mode": "denied", "hub.topic": pending.topic, "hub.reason": DENIAL_REASON}
            status, _ = await self._call("GET", _with_query(pending.callback, query))
            self.subscriptions.pop(key, None)
            self.denials.append(
                Verification("denied", pending.topic, pending.callback, status, echoed=False)
            )
            self._notify()

    async def _call(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of a request to a loopback callback; (0, b"") when it cannot be
        made or answered."""
        if self._session is None:
            raise RuntimeError("FakeHub not started")
        if not _is_loopback(url):
            return 0, b""
        try:
            async with self._session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, b""


def _is_http_url(url: str) -> bool:
    if not url.isascii() or _UNSAFE_URL_CHARS.search(url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad one
    except ValueError:  # a bad port or IPv6 literal
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _with_query(callback: str, query: dict[str, str]) -> str:
    """``callback`` (fragment dropped) with ``query`` appended to the query it has."""
    base = callback.partition("#")[0]
    if "?" not in base:
        base += "?"
    elif not base.endswith(("?", "&")):
        base += "&"
    return base + urlencode(query)
