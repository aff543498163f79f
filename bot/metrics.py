"""Prometheus metrics for one process, in a registry of its own.

Counters and histograms count what this process did. The database gauges
(``feedhook_outbox_pending``, ``feedhook_sources``) are read from the shared
database on each scrape, so every process reports the same values: aggregate them
with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series (a Unix time per counter and histogram) double what a scrape
# returns and say nothing an operator asks; prometheus_client only turns them off for
# the whole process, which is ours.
disable_created_metrics()  # type: ignore[no-untyped-call]

POLL_OUTCOMES: Final = ("not_modified", "unchanged", "changed", "error")
DELIVERY_OUTCOMES: Final = ("sent", "retried", "rate_limited", "failed", "filtered")
SOURCE_HEALTH: Final = ("ok", "failing", "stale", "paused")

# Fetches end at the polling timeout (30 s by default, a few minutes at most).
FETCH_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# Parsing one document: milliseconds, a few seconds for a huge one.
PARSE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# From an item's first sight to Discord accepting it: 0.1 s up to a day (an outage).
DELAY_BUCKETS: Final = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
)


PUSH_OUTCOMES = (
    "accepted",
    "duplicate",
    "bad_signature",
    "not_a_feed",
    "not_json",
    "too_large",
    "rate_limited",
    "unknown",
)


def _check(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}: expected one of {', '.join(allowed)}")


class Metrics:
    """One process's metrics in its OWN CollectorRegistry (not the global one: tests make
    many Apps)."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.polls = Counter(
            "feedhook_polls",
            "Polls of a source by this process, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            "feedhook_fetch_seconds",
            "Time this process spent fetching a source, in seconds.",
            buckets=FETCH_BUCKETS,
            registry=registry,
        )
        self.parse_seconds = Histogram(
            "feedhook_parse_seconds",
            "Time this process spent parsing a fetched document, in seconds.",
            buckets=PARSE_BUCKETS,
            registry=registry,
        )
        self.items_new = Counter(
            "feedhook_items_new",
            "New items this process found in polled sources.",
            registry=registry,
        )
        self.deliveries = Counter(
            "feedhook_deliveries",
            "Delivery attempts to Discord by this process, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.delivery_delay = Histogram(
            "feedhook_delivery_delay_seconds",
            "Seconds from an item's first sight to Discord accepting it, for items this "
            "process delivered.",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "feedhook_outbox_pending",
            "Messages waiting in the outbox, read from the database: the same in every process.",
            registry=registry,
        )
        self.sources = Gauge(
            "feedhook_sources",
            "Sources by health, read from the database: the same in every process.",
            ["health"],
            registry=registry,
        )
        self.gateway_connected = Gauge(
            "feedhook_gateway_connected",
            "Whether this process holds a connected Discord gateway session (1) or not (0).",
            registry=registry,
        )
        self.build_info = Gauge(
            "feedhook_build_info",
            "The feedhook version this process runs, as a label; the value is always 1.",
            ["version"],
            registry=registry,
        )
        self.pushes = Counter(
            "feedhook_push_requests",
            "Requests pushed to this process (kind websub: a hub's content distribution, "
            "kind hook: an inbound webhook), by outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)
        for health in SOURCE_HEALTH:
            self.sources.labels(health)
        self.build_info.labels(version).set(1)

    def poll(
        self,
        outcome: str,
        *,
        fetch: float | None = None,
        parse: float | None = None,
        new_items: int = 0,
    ) -> None:
        """Count one poll; ``fetch``/``parse``: its durations in seconds, when it got that far."""
        _check("poll outcome", outcome, POLL_OUTCOMES)
        self.polls.labels(outcome).inc()
        if fetch is not None:
            self.fetch_seconds.observe(fetch)
        if parse is not None:
            self.parse_seconds.observe(parse)
        if new_items:
            self.items_new.inc(new_items)

    def push(self, kind: str, outcome: str) -> None:
        """Count one pushed request of ``kind`` ("websub" or "hook") by ``outcome``."""
        _check("push kind", kind, ("websub", "hook"))
        _check("push outcome", outcome, PUSH_OUTCOMES)
        self.pushes.labels(kind, outcome).inc()

    def delivery(self, outcome: str, count: int = 1) -> None:
        """Count ``count`` deliveries (messages) that ended with ``outcome``."""
        _check("delivery outcome", outcome, DELIVERY_OUTCOMES)
        self.deliveries.labels(outcome).inc(count)

    def delivered(self, delays: Iterable[float]) -> None:
        """Observe each delivered item's delay from first sight to Discord accepting it."""
        for delay in delays:
            self.delivery_delay.observe(delay)

    def set_database_gauges(self, *, outbox_pending: int, sources: Mapping[str, int]) -> None:
        """Set the gauges read from the database; a health missing from ``sources`` is 0."""
        for health in sources:
            _check("source health", health, SOURCE_HEALTH)
        self.outbox_pending.set(outbox_pending)
        for health in SOURCE_HEALTH:
            self.sources.labels(health).set(sources.get(health, 0))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
