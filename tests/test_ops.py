"""The operator endpoints of a running relay: /metrics scraped and parsed with
prometheus_client's own parser after polls and deliveries, /healthz, /readyz through a
database that goes away; `feedhook status --subscription`; `--version`."""

from __future__ import annotations

from typing import Any

import aiohttp
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_URL, Doc
from tests.relay import ENTRIES, Relay, feed
from tests.test_cli import feedhook

LISTEN = '[http]\nlisten = "127.0.0.1:0"'


async def scrape(r: Relay) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics as {sample name: {sorted labels: value}}."""
    assert r.app.http is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{r.app.http.port}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    assert "token" not in text.lower()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


async def get(r: Relay, path: str) -> tuple[int, Any]:
    assert r.app.http is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{r.app.http.port}{path}") as resp,
    ):
        return resp.status, await resp.json()


async def test_metrics_follow_polls_and_deliveries(relay: Any) -> None:
    r: Relay = await relay({"news": 'exclude = ["title:sponsored"]'}, config_extra=LISTEN)
    r.feeds.docs["/news.xml"] = feed(
        [("a4", "Sponsored post", "Ad"), ("a3", "Storm warning", "Winds"), *ENTRIES]
    )
    await r.poll_and_deliver()
    await r.poll_and_deliver()  # the same bytes again: unchanged
    r.feeds.docs["/news.xml"] = Doc(b"down", status=503)
    await r.poll_and_deliver()

    m = await scrape(r)
    polls = {dict(k)["outcome"]: v for k, v in m["feedhook_polls_total"].items()}
    assert polls["changed"] >= 2  # the first poll and the one with two new items
    assert polls["unchanged"] >= 1
    assert polls["error"] == 1
    assert polls["not_modified"] == 0
    assert m["feedhook_items_new_total"][()] == 4  # two seen first, two new
    deliveries = {dict(k)["outcome"]: v for k, v in m["feedhook_deliveries_total"].items()}
    assert deliveries["sent"] == 1
    assert deliveries["filtered"] == 1
    assert deliveries["failed"] == 0
    assert m["feedhook_delivery_delay_seconds_count"][()] == 1
    assert m["feedhook_fetch_seconds_count"][()] == sum(polls.values())
    assert m["feedhook_parse_seconds_count"][()] >= 2
    assert m["feedhook_outbox_pending"][()] == 0
    sources = {dict(k)["health"]: v for k, v in m["feedhook_sources"].items()}
    assert sources == {"ok": 0.0, "failing": 1.0, "stale": 0.0, "paused": 0.0}
    assert m["feedhook_gateway_connected"][()] == 0
    ((labels, value),) = m["feedhook_build_info"].items()
    assert dict(labels)["version"]
    assert value == 1


async def test_health_and_readiness(relay: Any) -> None:
    r: Relay = await relay({"news": ""}, config_extra=LISTEN)
    assert await get(r, "/healthz") == (200, {"status": "ok"})
    assert await get(r, "/readyz") == (200, {"status": "ready"})
    status, _body = await get(r, "/nothing")
    assert status == 404


@pytest.mark.skipif(POSTGRES_URL is None, reason="needs FEEDHOOK_TEST_POSTGRES_URL")
async def test_readiness_follows_a_database_that_goes_away(relay: Any, pg_database: str) -> None:
    r: Relay = await relay({"news": ""}, config_extra=LISTEN, database_url=pg_database)
    assert await get(r, "/readyz") == (200, {"status": "ready"})
    name = pg_database.rsplit("/", 1)[1]
    assert POSTGRES_URL is not None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        status, body = await get(r, "/readyz")
        assert status == 503
        assert body["status"] == "not ready"
        assert [m.split(":")[0] for m in body["missing"]] == ["database"]
        assert (await get(r, "/healthz"))[0] == 200  # alive, just not ready
        assert (await scrape(r))["feedhook_polls_total"]  # counters still answer
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    for _ in range(3):  # the pool replaces its dead connections
        status, body = await get(r, "/readyz")
        if status == 200:
            break
    assert (status, body) == (200, {"status": "ready"})


async def test_status_subscription_prints_the_delivery_log(relay: Any) -> None:
    r: Relay = await relay({"news": ""})
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES])
    await r.poll_and_deliver()
    config = r.app.config
    path = config.database.url.removeprefix("sqlite:///").rsplit("/", 1)[0] + "/config.toml"
    code, out, err = await feedhook("status", "--config", path, "--subscription", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("subscription 1: Harbour News -> webhook ")
    assert "  sent     Storm warning message=" in lines[2]
    code, _, err = await feedhook("status", "--config", path, "--subscription", "9")
    assert code == 1
    assert "there is no subscription 9; the subscriptions are: 1" in err


async def test_version_names_the_libraries() -> None:
    code, out, _ = await feedhook("--version")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["feedhook", "discord.py", "aiohttp", "feedparser", "SQLAlchemy"]
