"""A loopback stand-in for a Bluesky AppView and a Mastodon instance, at the real paths.

Serves the fixtures in ``tests/fixtures/social`` (or whatever a test puts in
``bluesky_feeds`` / ``mastodon_statuses``) on 127.0.0.1::

    async with FakeSocial() as social:
        social.url("/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social")
        social.url("/api/v1/accounts/lookup?acct=alice")
        social.url(f"/api/v1/accounts/{social.mastodon_account_id}/statuses")
        social.url("/@alice.rss")                     # Mastodon's public RSS
        social.api_unauthorized = True                 # the API answers 401: use the RSS

Routes and answers follow the real servers:

* ``GET /xrpc/app.bsky.feed.getAuthorFeed?actor=&limit=&filter=`` -> ``{"feed": [...],
  "cursor": ...}``; an unknown actor is 400 ``{"error": "InvalidRequest", "message":
  "Profile not found"}``; ``filter=posts_no_replies`` drops replies as Bluesky does.
* ``GET /api/v1/accounts/lookup?acct=`` -> the Account; unknown: 404 ``{"error": "Record
  not found"}``.
* ``GET /api/v1/accounts/:id/statuses?limit=&exclude_replies=&exclude_reblogs=`` -> a JSON
  list; an unknown id is 404.
* ``GET /@user.rss`` -> Mastodon's RSS (no boosts, no replies), with ETag and
  Last-Modified and 304 on a match.
* ``api_unauthorized = True``: both APIs answer 401 the way servers that require
  authentication do (Mastodon's ``DISALLOW_UNAUTHENTICATED_API_ACCESS``, an AppView
  demanding auth); the RSS keeps working.

``hits`` counts requests per path; ``requests`` keeps every request's path and query.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.loopback import start_app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "social"
JSON = "application/json"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeSocial:
    def __init__(self) -> None:
        account = load_fixture("mastodon_lookup.json")
        self.mastodon_account: dict[str, Any] = account
        self.mastodon_account_id: str = str(account["id"])
        # handle -> getAuthorFeed document; acct -> account; account id -> statuses
        self.bluesky_feeds: dict[str, dict[str, Any]] = {
            "alice.bsky.social": load_fixture("bluesky_author_feed.json")
        }
        self.mastodon_accounts: dict[str, dict[str, Any]] = {str(account["acct"]): account}
        self.mastodon_statuses: dict[str, list[dict[str, Any]]] = {
            self.mastodon_account_id: load_fixture("mastodon_statuses.json")
        }
        self.rss: dict[str, bytes] = {
            str(account["acct"]): (FIXTURES / "mastodon_alice.rss").read_bytes()
        }
        self.api_unauthorized = False
        self.hits: dict[str, int] = {}
        self.requests: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/xrpc/app.bsky.feed.getAuthorFeed", self._author_feed)
        app.router.add_get("/api/v1/accounts/lookup", self._lookup)
        app.router.add_get("/api/v1/accounts/{id}/statuses", self._statuses)
        app.router.add_get("/{user:@[^/]+}.rss", self._rss)
        app.middlewares.append(self._count)
        self._runner, self.base_url = await start_app(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSocial:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.requests.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    # -- Bluesky ----------------------------------------------------------------------

    async def _author_feed(self, request: web.Request) -> web.Response:
        if self.api_unauthorized:
            return _json({"error": "AuthMissing", "message": "Authentication Required"}, 401)
        actor = request.query.get("actor", "").lstrip("@")
        if not actor:
            return _json(
                {
                    "error": "InvalidRequest",
                    "message": 'Error: Params must have the property "actor"',
                },
                400,
            )
        document = self.bluesky_feeds.get(actor)
        if document is None:
            # an actor may be given by DID as well
            document = next(
                (
                    doc
                    for doc in self.bluesky_feeds.values()
                    if any(
                        e.get("post", {}).get("author", {}).get("did") == actor
                        for e in doc.get("feed", [])
                    )
                ),
                None,
            )
        if document is None:
            return _json({"error": "InvalidRequest", "message": "Profile not found"}, 400)
        document = copy.deepcopy(document)
        if request.query.get("filter") == "posts_no_replies":
            document["feed"] = [
                e for e in document["feed"] if "reply" not in e.get("post", {}).get("record", {})
            ]
        limit = _int(request.query.get("limit"), 50, 1, 100)
        document["feed"] = document["feed"][:limit]
        return _json(document, 200)

    # -- Mastodon ---------------------------------------------------------------------

    async def _lookup(self, request: web.Request) -> web.Response:
        if self.api_unauthorized:
            return _json({"error": "This API requires an authenticated user"}, 401)
        acct = request.query.get("acct", "").lstrip("@")
        host = request.url.host or ""
        acct = acct.removesuffix(f"@{host}").removesuffix("@social.example")
        account = self.mastodon_accounts.get(acct)
        if account is None:
            return _json({"error": "Record not found"}, 404)
        return _json(account, 200)

    async def _statuses(self, request: web.Request) -> web.Response:
        if self.api_unauthorized:
            return _json({"error": "This API requires an authenticated user"}, 401)
        statuses = self.mastodon_statuses.get(request.match_info["id"])
        if statuses is None:
            return _json({"error": "Record not found"}, 404)
        if _flag(request.query.get("exclude_replies")):
            statuses = [s for s in statuses if s.get("in_reply_to_id") is None]
        if _flag(request.query.get("exclude_reblogs")):
            statuses = [s for s in statuses if s.get("reblog") is None]
        limit = _int(request.query.get("limit"), 20, 1, 40)
        return _json(statuses[:limit], 200)

    async def _rss(self, request: web.Request) -> web.Response:
        user = request.match_info["user"].lstrip("@")
        body = self.rss.get(user)
        if body is None:
            return web.Response(status=404, text="Not Found")
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
        modified = "Mon, 10 Mar 2025 12:00:00 GMT"
        headers = {"ETag": etag, "Last-Modified": modified}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = "application/rss+xml; charset=utf-8"
        return web.Response(status=200, body=body, headers=headers)


def _json(document: Any, status: int) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document, ensure_ascii=False).encode(),
        headers={"Content-Type": f"{JSON}; charset=utf-8"},
    )


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))
