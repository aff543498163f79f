"""The fake WebSub hub behaves like a hub: real HTTP on loopback to a real callback server."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.fake_hub import DEFAULT_LEASE, FakeHub
from tests.fakes.loopback import start_app

TOPIC = "https://example.com/feed.xml"
OTHER_TOPIC = "https://example.com/other.xml"
SECRET = "callback-secret"


@dataclass
class Delivery:
    """A content distribution POST as the callback received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: not signed


class Callback:
    """A subscriber's callback endpoint at ``/cb/{name}`` (any other path answers 404). It
    answers verifications as ``answer`` says and checks the signature of what is posted
    with ``secret``, answering 2xx either way as the spec asks."""

    def __init__(self) -> None:
        self.answer: Literal["echo", "wrong"] = "echo"
        self.post_status: dict[str, int] = {}  # name -> status of its POST answers (200)
        self.gets: list[dict[str, str]] = []
        self.deliveries: list[Delivery] = []
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/cb/{name}", self._verify)
        app.router.add_post("/cb/{name}", self._deliver)
        self._runner, self.base = await start_app(app)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, name: str = "a") -> str:
        return f"{self.base}/cb/{name}"

    async def _verify(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.gets.append(query)
        challenge = query.get("hub.challenge", "")
        if self.answer == "wrong":
            return web.Response(text=challenge + "-not")
        return web.Response(text=challenge)

    async def _deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("X-Hub-Signature")
        ok: bool | None = None
        if header is not None:
            method, _, given = header.partition("=")
            expected = hmac.new(SECRET.encode(), body, method).hexdigest()
            ok = hmac.compare_digest(expected, given)
        self.deliveries.append(
            Delivery(request.path, dict(request.query), dict(request.headers), body, ok)
        )
        return web.Response(status=self.post_status.get(request.match_info["name"], 200))


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    async with FakeHub() as fake:
        yield fake
        assert fake.errors == []


@pytest.fixture
async def callback() -> AsyncIterator[Callback]:
    server = Callback()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def ask(
    client: aiohttp.ClientSession,
    hub: FakeHub,
    callback: str,
    *,
    mode: str = "subscribe",
    topic: str = TOPIC,
    secret: str | None = None,
    lease: int | None = None,
) -> tuple[int, str]:
    """A subscription request as a subscriber sends it: (status, body)."""
    fields = {"hub.mode": mode, "hub.topic": topic, "hub.callback": callback}
    if secret is not None:
        fields["hub.secret"] = secret
    if lease is not None:
        fields["hub.lease_seconds"] = str(lease)
    async with client.post(hub.url, data=fields) as response:
        return response.status, await response.text()


async def test_subscribe_verify_and_publish_signed(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    assert hub.url.startswith("http://127.0.0.1:")
    assert hub.url.endswith("/hub")
    assert await ask(client, hub, callback.url(), secret=SECRET, lease=3600) == (202, "accepted")
    subscription = await hub.wait_for_subscription(TOPIC)

    assert hub.requests == [
        {
            "hub.mode": "subscribe",
            "hub.topic": TOPIC,
            "hub.callback": callback.url(),
            "hub.secret": SECRET,
            "hub.lease_seconds": "3600",
        }
    ]
    [query] = callback.gets
    assert query["hub.mode"] == "subscribe"
    assert query["hub.topic"] == TOPIC
    assert query["hub.lease_seconds"] == "3600"
    assert len(query["hub.challenge"]) >= 16
    [verification] = hub.verifications
    assert (verification.mode, verification.topic, verification.callback) == (
        "subscribe",
        TOPIC,
        callback.url(),
    )
    assert (verification.status, verification.echoed) == (200, True)
    assert subscription.secret == SECRET
    assert subscription.lease_seconds == 3600
    assert 3590 < subscription.expires_at - time.monotonic() <= 3600
    assert hub.subscriptions == {(TOPIC, callback.url()): subscription}

    body = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>t</title></feed>"
    assert await hub.publish(TOPIC, body) == [200]
    [delivery] = callback.deliveries
    assert delivery.body == body
    assert delivery.headers["Content-Type"] == "application/atom+xml"
    assert delivery.headers["Link"] == f'<{hub.url}>; rel="hub", <{TOPIC}>; rel="self"'
    signature = delivery.headers["X-Hub-Signature"]
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert delivery.signature_ok is True


async def test_default_lease_and_callback_query_kept(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    url = callback.url() + "?feed=7&x=a%2Fb"
    assert (await ask(client, hub, url))[0] == 202
    subscription = await hub.wait_for_subscription(TOPIC)
    assert subscription.lease_seconds == DEFAULT_LEASE == 864_000
    assert subscription.secret is None
    [query] = callback.gets
    assert query["feed"] == "7"
    assert query["x"] == "a/b"
    assert query["hub.lease_seconds"] == "864000"
    assert query["hub.topic"] == TOPIC

    assert await hub.publish(TOPIC, b"{}", content_type="application/json") == [200]
    [delivery] = callback.deliveries
    assert delivery.query == {"feed": "7", "x": "a/b"}
    assert delivery.headers["Content-Type"] == "application/json"
    assert "X-Hub-Signature" not in delivery.headers  # no secret, nothing to sign with


async def test_wrong_challenge_leaves_no_subscription(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    callback.answer = "wrong"
    assert (await ask(client, hub, callback.url(), secret=SECRET))[0] == 202
    await hub.wait_for_verifications(1)
    [verification] = hub.verifications
    assert (verification.status, verification.echoed) == (200, False)
    assert hub.subscriptions == {}
    assert await hub.publish(TOPIC, b"x") == []
    assert callback.deliveries == []
    with pytest.raises(TimeoutError):
        await hub.wait_for_subscription(TOPIC, timeout=0.05)


async def test_renewal_replaces_secret_and_lease(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url(), secret="first", lease=100)
    await hub.wait_for_verifications(1)
    await ask(client, hub, callback.url(), secret=SECRET, lease=200)
    await hub.wait_for_verifications(2)
    [subscription] = hub.subscriptions.values()
    assert (subscription.secret, subscription.lease_seconds) == (SECRET, 200)
    await hub.publish(TOPIC, b"renewed")
    assert callback.deliveries[0].signature_ok is True


async def test_failed_renewal_keeps_the_subscription(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url(), secret=SECRET, lease=100)
    before = await hub.wait_for_subscription(TOPIC)
    callback.answer = "wrong"
    await ask(client, hub, callback.url(), secret="other", lease=200)
    await hub.wait_for_verifications(2)
    assert hub.verifications[1].echoed is False
    assert hub.subscriptions == {(TOPIC, callback.url()): before}
    assert (before.secret, before.lease_seconds) == (SECRET, 100)


async def test_unsubscribe_removes(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url(), secret=SECRET)
    await hub.wait_for_subscription(TOPIC)
    assert await ask(client, hub, callback.url(), mode="unsubscribe") == (202, "accepted")
    await hub.wait_for_verifications(2)
    query = callback.gets[1]
    assert query["hub.mode"] == "unsubscribe"
    assert query["hub.topic"] == TOPIC
    assert "hub.challenge" in query
    assert "hub.lease_seconds" not in query
    assert hub.verifications[1].mode == "unsubscribe"
    assert hub.verifications[1].echoed is True
    assert hub.subscriptions == {}
    assert await hub.publish(TOPIC, b"gone") == []


async def test_failed_unsubscribe_keeps_the_subscription(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url())
    await hub.wait_for_subscription(TOPIC)
    callback.answer = "wrong"
    await ask(client, hub, callback.url(), mode="unsubscribe")
    await hub.wait_for_verifications(2)
    assert list(hub.subscriptions) == [(TOPIC, callback.url())]


async def test_refuse_answers_400(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    hub.refuse = True
    assert await ask(client, hub, callback.url()) == (400, "refused")
    await hub.wait_for_requests(1)
    assert hub.requests[0]["hub.callback"] == callback.url()
    hub.refuse = False
    assert (await ask(client, hub, callback.url()))[0] == 202
    await hub.wait_for_verifications(1)
    assert len(callback.gets) == 1  # only the accepted request was verified


async def test_fail_answers_500(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    hub.fail = True
    status, _ = await ask(client, hub, callback.url())
    assert status == 500
    await hub.wait_for_requests(1)
    assert hub.verifications == []
    assert hub.subscriptions == {}


async def test_deny_sends_a_denial(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    hub.deny = True
    assert await ask(client, hub, callback.url(), secret=SECRET) == (202, "accepted")
    await hub.wait_for_denials(1)
    [query] = callback.gets
    assert query["hub.mode"] == "denied"
    assert query["hub.topic"] == TOPIC
    assert query["hub.reason"]
    assert "hub.challenge" not in query
    [denial] = hub.denials
    assert (denial.mode, denial.topic, denial.callback, denial.status) == (
        "denied",
        TOPIC,
        callback.url(),
        200,
    )
    assert hub.verifications == []
    assert hub.subscriptions == {}


async def test_deny_drops_an_existing_subscription(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url())
    await hub.wait_for_subscription(TOPIC)
    hub.deny = True
    await ask(client, hub, callback.url())
    await hub.wait_for_denials(1)
    assert hub.subscriptions == {}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"hub.topic": TOPIC, "hub.callback": "CALLBACK"},
        {"hub.mode": "list", "hub.topic": TOPIC, "hub.callback": "CALLBACK"},
        {"hub.mode": "subscribe", "hub.callback": "CALLBACK"},
        {"hub.mode": "subscribe", "hub.topic": "", "hub.callback": "CALLBACK"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "/cb/a"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "ftp://127.0.0.1/cb"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://127.0.0.1:x/"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://h/a b"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "CALLBACK",
         "hub.lease_seconds": "-5"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "CALLBACK",
         "hub.lease_seconds": "soon"},
        {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "CALLBACK",
         "hub.secret": "s" * 200},
    ],
)  # fmt: skip
async def test_invalid_requests_answer_400(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession, fields: dict[str, str]
) -> None:
    sent = {k: callback.url() if v == "CALLBACK" else v for k, v in fields.items()}
    async with client.post(hub.url, data=sent) as response:
        assert response.status == 400
        assert (await response.text()).strip()
    assert hub.requests == [sent]
    assert hub.verifications == []
    assert callback.gets == []


async def test_not_a_form_answers_400(hub: FakeHub, client: aiohttp.ClientSession) -> None:
    async with client.post(hub.url, json={"hub.mode": "subscribe"}) as response:
        assert response.status == 400
    assert hub.requests == [{}]


async def test_max_lease_caps(callback: Callback, client: aiohttp.ClientSession) -> None:
    async with FakeHub(max_lease=600) as hub:
        await ask(client, hub, callback.url("long"), lease=3600)
        await ask(client, hub, callback.url("short"), lease=100)
        await ask(client, hub, callback.url("default"))
        await hub.wait_for_verifications(3)
        leases = {q["hub.lease_seconds"] for q in callback.gets}
        assert leases == {"600", "100"}
        granted = {cb: s.lease_seconds for (_, cb), s in hub.subscriptions.items()}
        assert granted == {
            callback.url("long"): 600,
            callback.url("short"): 100,
            callback.url("default"): 600,
        }
        assert hub.requests[0]["hub.lease_seconds"] == "3600"  # as asked


async def test_publish_unsigned(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url(), secret=SECRET)
    await hub.wait_for_subscription(TOPIC)
    assert await hub.publish(TOPIC, b"plain", algorithm=None) == [200]
    [delivery] = callback.deliveries
    assert "X-Hub-Signature" not in delivery.headers
    assert delivery.signature_ok is None
    assert delivery.body == b"plain"


@pytest.mark.parametrize("algorithm", ["sha1", "sha384", "sha512"])
async def test_publish_signs_with_the_algorithm(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession, algorithm: str
) -> None:
    await ask(client, hub, callback.url(), secret=SECRET)
    await hub.wait_for_subscription(TOPIC)
    body = b"<rss/>"
    assert await hub.publish(TOPIC, body, algorithm=algorithm) == [200]
    [delivery] = callback.deliveries
    method, _, given = delivery.headers["X-Hub-Signature"].partition("=")
    assert method == algorithm
    assert len(given) == 2 * hashlib.new(algorithm).digest_size
    assert given == hmac.new(SECRET.encode(), body, algorithm).hexdigest()
    assert delivery.signature_ok is True


async def test_publish_rejects_an_unknown_algorithm(hub: FakeHub) -> None:
    with pytest.raises(ValueError, match="md5"):
        await hub.publish(TOPIC, b"x", algorithm="md5")


async def test_publish_with_a_wrong_secret(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url(), secret=SECRET)
    await hub.wait_for_subscription(TOPIC)
    assert await hub.publish(TOPIC, b"forged", secret="not-the-secret") == [200]
    [delivery] = callback.deliveries
    assert delivery.headers["X-Hub-Signature"].startswith("sha256=")
    assert delivery.signature_ok is False


async def test_publish_reaches_each_callback_of_the_topic_in_order(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    callback.post_status["b"] = 410
    await ask(client, hub, callback.url("a"))
    await ask(client, hub, callback.url("b"))
    await ask(client, hub, callback.url("c"), topic=OTHER_TOPIC)
    await hub.wait_for_verifications(3)
    assert await hub.publish(TOPIC, b"news") == [200, 410]
    assert [d.path for d in callback.deliveries] == ["/cb/a", "/cb/b"]
    assert await hub.publish(OTHER_TOPIC, b"other") == [200]
    assert callback.deliveries[2].headers["Link"].endswith(f'<{OTHER_TOPIC}>; rel="self"')


async def test_an_ended_lease_gets_nothing(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    await ask(client, hub, callback.url())
    subscription = await hub.wait_for_subscription(TOPIC)
    subscription.expires_at = time.monotonic() - 1
    assert await hub.publish(TOPIC, b"late") == []
    assert callback.deliveries == []


async def test_callback_answering_404_is_verified_and_fails(
    hub: FakeHub, callback: Callback, client: aiohttp.ClientSession
) -> None:
    missing = f"{callback.base}/nowhere"
    assert (await ask(client, hub, missing))[0] == 202
    await hub.wait_for_verifications(1)
    [verification] = hub.verifications
    assert (verification.callback, verification.status, verification.echoed) == (
        missing,
        404,
        False,
    )
    assert hub.subscriptions == {}


async def test_unreachable_callback_is_status_0(
    hub: FakeHub, client: aiohttp.ClientSession
) -> None:
    runner, base = await start_app(web.Application())
    await runner.cleanup()  # nothing listens there any more
    assert (await ask(client, hub, f"{base}/cb/a"))[0] == 202
    await hub.wait_for_verifications(1)
    assert (hub.verifications[0].status, hub.verifications[0].echoed) == (0, False)
    assert hub.subscriptions == {}


async def test_verify_delay(callback: Callback, client: aiohttp.ClientSession) -> None:
    async with FakeHub(verify_delay=0.2) as hub:
        started = time.monotonic()
        assert (await ask(client, hub, callback.url()))[0] == 202
        assert callback.gets == []
        await hub.wait_for_subscription(TOPIC)
        assert time.monotonic() - started >= 0.2


async def test_close_cancels_pending_verifications(
    callback: Callback, client: aiohttp.ClientSession
) -> None:
    hub = FakeHub(verify_delay=30)
    await hub.start()
    assert (await ask(client, hub, callback.url()))[0] == 202
    started = time.monotonic()
    await hub.close()
    assert time.monotonic() - started < 2
    assert callback.gets == []
    assert hub.verifications == []


async def test_after_close_the_hub_is_gone(hub: FakeHub, callback: Callback) -> None:
    url = hub.url
    await hub.close()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await fresh.post(url, data={"hub.mode": "subscribe", "hub.topic": TOPIC})
    assert hub.requests == []


async def test_wait_for_requests_times_out(hub: FakeHub) -> None:
    with pytest.raises(TimeoutError):
        await hub.wait_for_requests(1, timeout=0.05)
