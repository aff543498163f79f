"""Claim timing inside ``bench.scale``'s worker processes.

The workers are the real ``feedhook run`` console script. ``bench.scale`` puts a
``sitecustomize.py`` of its own on their ``PYTHONPATH`` that calls :func:`install` when
``FEEDHOOK_BENCH_CLAIM_LOG`` is set; nothing else changes in them. :func:`install` wraps
``claim_due_sources`` and ``claim_deliveries`` of the store: each call that returns adds a
line ``KIND START SECONDS ROWS`` (``S`` sources / ``D`` deliveries, ``time.monotonic()`` at
the start, which on Linux compares across processes, wall seconds the awaited call took,
rows or jobs claimed) to ``<FEEDHOOK_BENCH_CLAIM_LOG>.<pid>``, written in blocks and at exit
(``feedhook run`` exits normally on SIGTERM).

The duration is what the poller waits for its claim: the statement's round trip plus any
wait for a pooled connection or for the event loop, which a busy worker adds.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable
from typing import Any

_FLUSH_EVERY = 2000


def install(path_prefix: str) -> None:
    from bot.storage.outbox import OutboxMixin
    from bot.storage.sources import SourcesMixin

    path = f"{path_prefix}.{os.getpid()}"
    lines: list[str] = []

    def flush() -> None:
        if lines:
            with open(path, "a", encoding="ascii") as out:
                out.writelines(lines)
            lines.clear()

    atexit.register(flush)

    def wrap(owner: type, name: str, kind: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        async def timed(self: object, *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            rows = await original(self, *args, **kwargs)
            lines.append(f"{kind} {started:.6f} {time.monotonic() - started:.6f} {len(rows)}\n")
            if len(lines) >= _FLUSH_EVERY:
                flush()
            return rows

        setattr(owner, name, timed)

    wrap(SourcesMixin, "claim_due_sources", "S")
    wrap(OutboxMixin, "claim_deliveries", "D")


SITECUSTOMIZE = """\
import os

if os.environ.get("FEEDHOOK_BENCH_CLAIM_LOG"):
    import bench.scale_hook

    bench.scale_hook.install(os.environ["FEEDHOOK_BENCH_CLAIM_LOG"])
"""
