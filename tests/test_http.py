"""The operators' HTTP server: a real server on loopback, scraped with aiohttp."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.http import OpsServer, Readiness, parse_listen
from bot.metrics import Metrics


@dataclass
class Probe:
    """What the server's callables return; tests change it between requests."""

    alive: bool = True
    readiness: Readiness = field(default_factory=lambda: Readiness(True, ()))
    refresh_error: Exception | None = None
    outbox_pending: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    hang: bool = False
    refreshes: int = 0


@dataclass
class Served:
    server: OpsServer
    metrics: Metrics
    probe: Probe
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def get(self, path: str, method: str = "GET") -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.base + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json(), response
            return response.status, await response.text(), response

    async def scrape(self) -> dict[str, Any]:
        status, text, response = await self.get("/metrics")
        assert status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        return {family.name: family for family in text_string_to_metric_families(text)}


def make_server(metrics: Metrics, probe: Probe, ready_timeout: float = 3.0) -> OpsServer:
    async def refresh() -> None:
        probe.refreshes += 1
        if probe.hang:
            await asyncio.sleep(3600)
        if probe.refresh_error is not None:
            raise probe.refresh_error
        metrics.set_database_gauges(outbox_pending=probe.outbox_pending, sources=probe.sources)

    async def readiness() -> Readiness:
        if probe.hang:
            await asyncio.sleep(3600)
        return probe.readiness

    return OpsServer(
        "127.0.0.1:0",
        metrics=metrics,
        refresh=refresh,
        alive=lambda: probe.alive,
        readiness=readiness,
        ready_timeout=ready_timeout,
    )


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = Metrics("1.2.3")
    probe = Probe()
    server = make_server(metrics, probe, ready_timeout=0.2)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield Served(server, metrics, probe, session)
    await server.stop()


def samples(family: Any) -> list[Sample]:
    return list(family.samples)


def value(families: dict[str, Any], name: str, sample: str | None = None, **labels: str) -> float:
    sample = sample or name
    found = [s.value for s in samples(families[name]) if s.name == sample and s.labels == labels]
    assert len(found) == 1, (name, sample, labels, samples(families[name]))
    return float(found[0])


# -- metrics --


async def test_every_metric_is_exposed_with_its_type_and_labels(served: Served) -> None:
    families = await served.scrape()
    # The parser names counter families without _total; the samples carry it.
    expected_types = {
        "feedhook_polls": "counter",
        "feedhook_fetch_seconds": "histogram",
        "feedhook_parse_seconds": "histogram",
        "feedhook_items_new": "counter",
        "feedhook_deliveries": "counter",
        "feedhook_delivery_delay_seconds": "histogram",
        "feedhook_outbox_pending": "gauge",
        "feedhook_sources": "gauge",
        "feedhook_gateway_connected": "gauge",
        "feedhook_build_info": "gauge",
    }
    for name, kind in expected_types.items():
        assert families[name].type == kind, name
        assert families[name].documentation, name
    assert {s.labels["outcome"] for s in samples(families["feedhook_polls"])} == {
        "not_modified",
        "unchanged",
        "changed",
        "error",
    }
    assert {s.labels["outcome"] for s in samples(families["feedhook_deliveries"])} == {
        "sent",
        "retried",
        "rate_limited",
        "failed",
        "filtered",
    }
    assert {s.labels["health"] for s in samples(families["feedhook_sources"])} == {
        "ok",
        "failing",
        "stale",
        "paused",
    }
    for outcome in ("not_modified", "unchanged", "changed", "error"):
        assert value(families, "feedhook_polls", "feedhook_polls_total", outcome=outcome) == 0
    assert value(families, "feedhook_build_info", version="1.2.3") == 1
    assert value(families, "feedhook_gateway_connected") == 0
    assert value(families, "feedhook_items_new", "feedhook_items_new_total") == 0
    for help_of in ("feedhook_outbox_pending", "feedhook_sources"):
        assert "read from the database: the same in every process" in (
            families[help_of].documentation
        )


async def test_exposed_sample_names_are_exact(served: Served) -> None:
    status, text, _ = await served.get("/metrics")
    assert status == 200
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for name in (
        "feedhook_polls_total",
        "feedhook_items_new_total",
        "feedhook_deliveries_total",
        "feedhook_build_info",
        "feedhook_outbox_pending",
        "feedhook_sources",
        "feedhook_gateway_connected",
        "feedhook_fetch_seconds_bucket",
        "feedhook_parse_seconds_count",
        "feedhook_delivery_delay_seconds_sum",
    ):
        assert name in names, name
    assert "# TYPE feedhook_build_info gauge" in text


async def test_counters_and_histograms_move(served: Served) -> None:
    m = served.metrics
    m.poll("changed", fetch=0.3, parse=0.02, new_items=4)
    m.poll("not_modified", fetch=0.1)
    m.poll("error")
    m.delivery("sent", 3)
    m.delivery("rate_limited")
    m.delivered([0.5, 42.0, 90_000.0])
    m.gateway_connected.set(1)

    families = await served.scrape()
    total = "feedhook_polls_total"
    assert value(families, "feedhook_polls", total, outcome="changed") == 1
    assert value(families, "feedhook_polls", total, outcome="not_modified") == 1
    assert value(families, "feedhook_polls", total, outcome="error") == 1
    assert value(families, "feedhook_polls", total, outcome="unchanged") == 0
    assert value(families, "feedhook_items_new", "feedhook_items_new_total") == 4
    deliveries = "feedhook_deliveries_total"
    assert value(families, "feedhook_deliveries", deliveries, outcome="sent") == 3
    assert value(families, "feedhook_deliveries", deliveries, outcome="rate_limited") == 1
    assert value(families, "feedhook_deliveries", deliveries, outcome="failed") == 0
    fetch = "feedhook_fetch_seconds"
    assert value(families, fetch, f"{fetch}_count") == 2
    assert value(families, fetch, f"{fetch}_sum") == pytest.approx(0.4)
    parse = "feedhook_parse_seconds"
    assert value(families, parse, f"{parse}_count") == 1
    delay = "feedhook_delivery_delay_seconds"
    assert value(families, delay, f"{delay}_count") == 3
    assert value(families, delay, f"{delay}_bucket", le="0.1") == 0
    assert value(families, delay, f"{delay}_bucket", le="1.0") == 1
    assert value(families, delay, f"{delay}_bucket", le="86400.0") == 2
    assert value(families, delay, f"{delay}_bucket", le="+Inf") == 3
    assert value(families, "feedhook_gateway_connected") == 1


async def test_refresh_sets_database_gauges_on_each_scrape(served: Served) -> None:
    served.probe.outbox_pending = 7
    served.probe.sources = {"ok": 5, "failing": 2}
    families = await served.scrape()
    assert value(families, "feedhook_outbox_pending") == 7
    assert value(families, "feedhook_sources", health="ok") == 5
    assert value(families, "feedhook_sources", health="failing") == 2
    assert value(families, "feedhook_sources", health="paused") == 0

    # A health absent from the next reading drops to 0 rather than keeping its count.
    served.probe.sources = {"ok": 7}
    served.probe.outbox_pending = 0
    families = await served.scrape()
    assert value(families, "feedhook_sources", health="failing") == 0
    assert value(families, "feedhook_sources", health="ok") == 7
    assert value(families, "feedhook_outbox_pending") == 0
    assert served.probe.refreshes == 2


async def test_refresh_failing_still_serves_process_counters(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.metrics.poll("changed", new_items=2)
    served.probe.refresh_error = RuntimeError("postgresql://user:secret@db/feedhook is down")
    with caplog.at_level(logging.WARNING, logger="bot.http"):
        families = await served.scrape()
        await served.scrape()
    assert value(families, "feedhook_polls", "feedhook_polls_total", outcome="changed") == 1
    assert value(families, "feedhook_items_new", "feedhook_items_new_total") == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not on every scrape
    assert "database gauges" in warnings[0].getMessage()


async def test_refresh_hanging_still_serves_within_the_timeout(served: Served) -> None:
    served.metrics.delivery("sent")
    served.probe.hang = True
    families = await asyncio.wait_for(served.scrape(), 5)
    assert value(families, "feedhook_deliveries", "feedhook_deliveries_total", outcome="sent") == 1


def test_two_metrics_instances_do_not_clash() -> None:
    one, two = Metrics("1"), Metrics("2")
    one.poll("changed", new_items=3)
    assert one.items_new._value.get() == 3
    assert two.items_new._value.get() == 0
    assert b'feedhook_build_info{version="1"} 1.0' in one.exposition()
    assert b'version="1"' not in two.exposition()


def test_unknown_labels_are_refused() -> None:
    metrics = Metrics("1")
    with pytest.raises(ValueError, match="poll outcome"):
        metrics.poll("exploded")
    with pytest.raises(ValueError, match="delivery outcome"):
        metrics.delivery("lost")
    with pytest.raises(ValueError, match="source health"):
        metrics.set_database_gauges(outbox_pending=0, sources={"zombie": 1})


# -- health and readiness --


async def test_healthz(served: Served) -> None:
    assert (await served.get("/healthz"))[:2] == (200, {"status": "ok"})
    served.probe.alive = False
    status, body, _ = await served.get("/healthz")
    assert status == 503
    assert body["status"] == "down"
    assert body["missing"]


async def test_readyz(served: Served) -> None:
    assert (await served.get("/readyz"))[:2] == (200, {"status": "ready"})
    missing = (
        "database: connection refused",
        "gateway: not connected here and no other live process holds it",
    )
    served.probe.readiness = Readiness(False, missing)
    assert (await served.get("/readyz"))[:2] == (
        503,
        {"status": "not ready", "missing": list(missing)},
    )


async def test_readyz_times_out_on_a_hung_check(served: Served) -> None:
    served.probe.hang = True
    status, body, _ = await asyncio.wait_for(served.get("/readyz"), 5)
    assert status == 503
    assert body == {"status": "not ready", "missing": ["database: did not answer within 0.2 s"]}


# -- routing and errors --


async def test_head_works_and_other_methods_or_paths_do_not(served: Served) -> None:
    status, _, _ = await served.get("/healthz", method="HEAD")
    assert status == 200
    status, body, _ = await served.get("/nope")
    assert (status, body) == (404, {"status": "not found"})
    status, body, response = await served.get("/metrics", method="POST")
    assert status == 405
    assert body == {"status": "method not allowed"}
    assert "GET" in response.headers["Allow"]
    status, body, _ = await served.get("/nope", method="DELETE")
    assert status == 404


async def test_failing_checks_answer_500_without_their_text(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "https://discord.com/api/webhooks/1/SECRET-TOKEN"

    def alive() -> bool:
        raise RuntimeError(secret)

    async def readiness() -> Readiness:
        raise RuntimeError(secret)

    served.server._alive = alive
    served.server._readiness = readiness
    with caplog.at_level(logging.ERROR, logger="bot.http"):
        for path in ("/healthz", "/readyz"):
            async with served.session.get(served.base + path) as response:
                assert response.status == 500
                text = await response.text()
                assert "SECRET" not in text
                assert await response.json() == {"status": "error"}
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


async def test_routes_added_before_start_are_served() -> None:
    server = make_server(Metrics("1"), Probe())

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    server.app.router.add_get("/extra", hello)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/extra") as response,
        ):
            assert await response.json() == {"hello": "world"}
    finally:
        await server.stop()


async def test_port_in_use_raises_oserror() -> None:
    first = make_server(Metrics("1"), Probe())
    await first.start()
    try:
        second = OpsServer(
            f"127.0.0.1:{first.port}",
            metrics=Metrics("1"),
            refresh=_noop,
            alive=lambda: True,
            readiness=_ready,
        )
        with pytest.raises(OSError):  # noqa: PT011 - the errno differs between systems
            await second.start()
        with pytest.raises(RuntimeError):
            _ = second.port
    finally:
        await first.stop()


async def _noop() -> None:
    return None


async def _ready() -> Readiness:
    return Readiness(True, ())


# -- parse_listen --


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9308", ("127.0.0.1", 9308)),
        ("localhost:9308", ("localhost", 9308)),
        ("ops.example.internal:80", ("ops.example.internal", 80)),
        ("[::1]:9308", ("::1", 9308)),
        ("[::]:0", ("::", 0)),
        (":9308", ("0.0.0.0", 9308)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        (" 127.0.0.1:9308 ", ("127.0.0.1", 9308)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no port"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:", "no port"),
        ("[::1]", "no port"),
        ("[::1]:", "no port"),
        ("[::1:9308", "closing bracket"),
        ("[nope]:9308", "not an IPv6 address"),
        ("::1:9308", "brackets"),
        ("host:65536", "0 to 65535"),
        ("host:-1", "0 to 65535"),
        ("host:+80", "0 to 65535"),
        ("host:http", "0 to 65535"),
        ("host:9308x", "0 to 65535"),
        ("host:123456", "0 to 65535"),
        ("bad host:9308", "neither a name"),
        ("http://host:9308", "URL"),
        ("host:9308/metrics", "URL"),
        ("-host:9308", "neither a name"),
    ],
)
def test_parse_listen_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_listen(text)
    sentence = str(caught.value)
    assert sentence.endswith(".")
    assert sentence.count(". ") == 0  # one sentence


def test_bad_listen_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="no port"):
        make_server_at("localhost")


def make_server_at(listen: str) -> OpsServer:
    return OpsServer(
        listen, metrics=Metrics("1"), refresh=_noop, alive=lambda: True, readiness=_ready
    )
