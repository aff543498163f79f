"""Items that arrive by push: the WebSub subscriber (requests to hubs, their
verifications and content distributions) and inbound webhooks (``POST /hooks/{token}``).

Both answer on the operator server (:mod:`bot.http`) under ``http.public_url``. What
several processes must agree on (pending verifications, secrets, rate counters, delivery
ids) is in the database, so a hub or sender may reach any process behind the proxy.
Tokens never reach a log line: the paths carrying them are logged as ``/hooks/…``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final

from aiohttp import web

from bot.hooks import (
    DEFAULT,
    MAX_BODY_BYTES,
    RequestBodyError,
    compile_hook_template,
    hash_token,
    hook_item,
    request_content,
)
from bot.metrics import Metrics
from bot.net import Fetcher, FetchError
from bot.poller import Clock, Poller
from bot.sources.feed import ParseError
from bot.storage.store import Store, WebSubRequest
from bot.tasks import finish_or_cancel, running_elsewhere
from bot.templates import Template, TemplateError
from bot.websub import (
    MAX_LEASE,
    REQUESTED_LEASE,
    VERIFY_TIMEOUT,
    callback_url,
    new_callback_id,
    new_secret,
    renew_margin,
    retry_delay,
    signature_matches,
)

log = logging.getLogger(__name__)

# How often the subscriber looks for subscriptions to make, renew or end.
SUBSCRIBER_TICK_SECONDS: Final = 30.0
# New WebSub subscriptions started per look (the rest wait for the next one).
NEW_PER_TICK: Final = 50
# Requests to hubs in flight at once.
HUB_CONCURRENCY: Final = 8


def _backoff(failures: int) -> timedelta:
    return timedelta(seconds=retry_delay(failures))


class WebSubSubscriber:
    """Subscribes sources that announce a hub, renews their leases, unsubscribes
    sources nobody follows any more; each request is claimed in the database first."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        public_url: str,
        clock: Clock,
        lease_seconds: int = REQUESTED_LEASE,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.public_url = public_url
        self.clock = clock
        self.lease_seconds = lease_seconds
        self._stopping = False
        self._ticking: asyncio.Task[object] | None = None

    async def stop(self, grace: float) -> None:
        """No new looks; a look making requests gets ``grace`` seconds to finish them (the
        fetcher and the database close after this)."""
        self._stopping = True
        await finish_or_cancel(running_elsewhere(self._ticking), grace)

    async def tick(self) -> int:
        """One look; returns the requests made. Errors are logged, never raised."""
        if self._stopping:
            return 0
        self._ticking = asyncio.current_task()
        try:
            return await self._tick()
        finally:
            self._ticking = None

    async def _tick(self) -> int:
        try:
            now = self.clock()
            await self.store.websub_sweep(
                now=now, new_ids=[(new_callback_id(), new_secret()) for _ in range(NEW_PER_TICK)]
            )
            requests = await self.store.claim_websub_requests(
                now=now, verify_timeout=timedelta(seconds=VERIFY_TIMEOUT), retry=_backoff
            )
        except Exception:
            log.exception("websub: looking for subscriptions to make failed")
            return 0
        limit = asyncio.Semaphore(HUB_CONCURRENCY)

        async def one(request: WebSubRequest) -> None:
            async with limit:
                await self._request(request)

        await asyncio.gather(*(one(r) for r in requests))
        return len(requests)

    async def _request(self, request: WebSubRequest) -> None:
        form = {
            "hub.mode": request.mode,
            "hub.topic": request.topic_url,
            "hub.callback": callback_url(self.public_url, request.callback_id),
        }
        if request.mode == "subscribe":
            form["hub.secret"] = request.secret
            form["hub.lease_seconds"] = str(self.lease_seconds)
        try:
            status, text = await self.fetcher.post_form(request.hub_url, form)
        except FetchError as exc:
            error = str(exc)
        except Exception as exc:
            if self._stopping:
                return  # the fetcher closed under it: the row's verify timeout retries it
            log.exception("websub: the request to the hub failed hub=%s", request.hub_url)
            error = f"internal error: {type(exc).__name__}"
        else:
            if 200 <= status < 300:
                log.info(
                    "websub %s requested hub=%s topic=%s%s",
                    request.mode,
                    request.hub_url,
                    request.topic_url,
                    " (renewal)" if request.renewal else "",
                )
                return
            # the hub's text may echo the form: never its secret
            text = text.replace(request.secret, "…")
            error = f"the hub answered HTTP {status}" + (f": {text}" if text else "")
        log.warning(
            "websub %s failed hub=%s topic=%s error=%s%s",
            request.mode,
            request.hub_url,
            request.topic_url,
            error,
            "; polling at the normal interval" if request.mode == "subscribe" else "",
        )
        try:
            await self.store.websub_request_failed(request, error, now=self.clock(), retry=_backoff)
        except Exception:
            log.exception("websub: recording a failed request failed")


@functools.lru_cache(maxsize=256)
def _hook_template(text: str) -> Template:
    try:
        return compile_hook_template(text)
    except TemplateError:
        # stored by an older version or edited by hand: the default still relays it
        return DEFAULT


class PayloadTooLarge(Exception):
    pass


async def _read_capped(request: web.Request, cap: int) -> bytes:
    """The request body, or PayloadTooLarge past ``cap`` bytes (never read further)."""
    if request.content_length is not None and request.content_length > cap:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, body: Mapping[str, Any], **headers: str) -> web.Response:
    return web.json_response(
        dict(body), status=status, headers={"Cache-Control": "no-store", **headers}
    )


class PushEndpoints:
    """The routes hubs and senders call: ``GET``/``POST /websub/{id}`` and
    ``POST /hooks/{token}``. ``queued`` is called when items were queued (the app
    runs its delivery tick at once instead of within half a second)."""

    def __init__(
        self,
        store: Store,
        poller: Poller,
        *,
        hook_rate_per_minute: int,
        max_push_bytes: int,
        clock: Clock,
        metrics: Metrics | None = None,
        queued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.poller = poller
        self.hook_rate_per_minute = hook_rate_per_minute
        self.max_push_bytes = max_push_bytes
        self.clock = clock
        self.metrics = metrics
        self._queued = queued or (lambda: None)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/websub/{callback_id}", self.verify)
        app.router.add_post("/websub/{callback_id}", self.distribute)
        app.router.add_post("/hooks/{token}", self.hook)

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.push(kind, outcome)

    # -- WebSub ---------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """The hub's verification of intent (or its denial)."""
        # (yarl decodes undecodable percent-escapes in the path and query as U+FFFD)
        callback_id = request.match_info["callback_id"]
        query = request.query
        mode = query.get("hub.mode", "")
        topic = query.get("hub.topic", "")
        now = self.clock()
        if mode == "denied":
            reason = " ".join(query.get("hub.reason", "no reason given").split())[:200]
            if await self.store.websub_denied(
                callback_id, topic=topic, reason=reason, now=now, retry=_backoff
            ):
                log.warning(
                    "websub denied topic=%s reason=%s; polling at the normal interval",
                    topic,
                    reason,
                )
                return web.Response(status=200, text="")
            return web.Response(status=404, text="")
        challenge = query.get("hub.challenge", "")
        lease_text = query.get("hub.lease_seconds", "")
        # isdigit() alone admits "²", which int() refuses
        digits = lease_text.isascii() and lease_text.isdigit() and len(lease_text) < 12
        lease = min(int(lease_text), MAX_LEASE) if digits else None
        if mode not in ("subscribe", "unsubscribe") or not topic or not challenge:
            return web.Response(status=404, text="")
        granted = lease or REQUESTED_LEASE
        if not await self.store.websub_verify(
            callback_id,
            mode=mode,
            topic=topic,
            lease_seconds=lease,
            now=now,
            default_lease=REQUESTED_LEASE,
            renew_margin=renew_margin(granted),
        ):
            log.info("websub verification refused mode=%s topic=%s (nothing pending)", mode, topic)
            return web.Response(status=404, text="")
        if mode == "subscribe":
            log.info("websub subscribed topic=%s lease=%ds", topic, granted)
        else:
            log.info("websub unsubscribed topic=%s", topic)
        return web.Response(status=200, text=challenge, content_type="text/plain")

    async def distribute(self, request: web.Request) -> web.Response:
        """A content distribution: a signed feed document with the new entries."""
        target = await self.store.push_target(request.match_info["callback_id"])
        if target is None:
            # 410: the hub may drop a subscription we no longer have
            return web.Response(status=410, text="")
        try:
            body = await _read_capped(request, self.max_push_bytes)
        except PayloadTooLarge:
            log.warning(
                "websub push refused url=%s reason=larger than polling.max_body_bytes",
                target.source_url,
            )
            self._count("websub", "too_large")
            return web.Response(status=413, text="")
        if not signature_matches(target.secret, body, request.headers.get("X-Hub-Signature")):
            # The spec: acknowledge (2xx), then ignore. Anyone can POST to a callback.
            log.warning(
                "websub push ignored url=%s reason=%s",
                target.source_url,
                "unsigned" if "X-Hub-Signature" not in request.headers else "bad signature",
            )
            self._count("websub", "bad_signature")
            return web.Response(status=202, text="")
        try:
            await self.poller.record_push(target, body, request.headers)
        except ParseError as exc:
            log.warning("websub push ignored url=%s reason=%s", target.source_url, exc)
            self._count("websub", "not_a_feed")
            return web.Response(status=202, text="")
        # anything else (the database) answers 500: the hub delivers it again later
        # (the poller's record path woke the deliverer when it queued something)
        await self.store.note_push(target.id, now=self.clock())
        self._count("websub", "accepted")
        return web.Response(status=202, text="")

    # -- inbound hooks --------------------------------------------------------------

    async def hook(self, request: web.Request) -> web.Response:
        # Looked up by hash: unknown tokens and known ones take the same path.
        info = await self.store.hook_by_token_hash(hash_token(request.match_info["token"]))
        if info is None:
            self._count("hook", "unknown")
            return _json(404, {"status": "not found"})
        now = self.clock()
        wait = await self.store.count_hook_request(
            info.id, now=now, per_minute=self.hook_rate_per_minute
        )
        if wait is not None:
            self._count("hook", "rate_limited")
            return _json(
                429,
                {"status": "rate limited", "retry_after": math.ceil(wait)},
                **{"Retry-After": str(math.ceil(wait))},
            )
        try:
            raw = await _read_capped(request, MAX_BODY_BYTES)
        except PayloadTooLarge:
            self._count("hook", "too_large")
            return _json(413, {"status": "too large", "limit_bytes": MAX_BODY_BYTES})
        try:
            # JSON of up to 256 KB and its rendering: a few ms of CPU, not on the event loop
            content = await asyncio.to_thread(
                request_content, raw, _hook_template(info.template), dict(request.headers)
            )
        except RequestBodyError as exc:
            self._count("hook", "not_json")
            return _json(400, {"status": f"the body is {exc}"})
        item = hook_item(content, request.headers, received_at=now, hook_id=info.id)
        queued = await self.store.record_hook_item(info.source_id, item, now=now)
        if queued is None:
            self._count("hook", "duplicate")
            return _json(202, {"status": "accepted", "duplicate": True})
        self._count("hook", "accepted")
        log.info("hook post accepted hook=%d item=%s queued=%d", info.id, item.key, queued)
        if not queued:
            # paused in Discord: kept, not posted (as a paused feed's items)
            return _json(202, {"status": "accepted", "paused": True})
        self._queued()
        return _json(202, {"status": "accepted"})
