"""The fake Discord of ``bench.deliver``, served from a process of its own.

Its CPU time must not count against feedhook's, so ``bench.deliver`` starts ``serve`` in a
spawned process and talks to it over a ``multiprocessing`` pipe:

* the child creates the webhooks and sends ``{"api_base": ..., "webhooks": [[id, token,
  channel], ...]}`` once it listens;
* then it answers ``"stats"`` with everything the fake saw (a request log with
  ``time.monotonic()`` timestamps, which on Linux compare across processes, the 429s with
  their scope, and the messages per webhook) and stops on ``"stop"`` or when the pipe closes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from tests.fakes.fake_discord import FakeDiscord, RateLimit

_WEBHOOK_IN_PATH = re.compile(r"/webhooks/(\d+)/")


class _RecordingDiscord(FakeDiscord):
    """The fake, plus a log of every 429 with its scope (the request log has no scope)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limited: list[tuple[float, str, float]] = []

    def _too_many(self, retry_after: float, scope: str, headers: Mapping[str, str]) -> web.Response:
        self.limited.append((self.clock(), scope, retry_after))
        return super()._too_many(retry_after, scope, headers)


def serve(
    conn: Connection, channels: Sequence[int], limits: Mapping[str, tuple[int, float]]
) -> None:
    """Process entry point: one webhook per entry of ``channels`` (its channel id)."""
    asyncio.run(_serve(conn, channels, limits))


async def _serve(
    conn: Connection, channels: Sequence[int], limits: Mapping[str, tuple[int, float]]
) -> None:
    fake = _RecordingDiscord(
        webhook_limit=RateLimit(*limits["webhook"]),
        channel_limit=RateLimit(*limits["channel"]),
        global_limit=RateLimit(*limits["global"]),
    )
    await fake.start()
    try:
        hooks = [[*fake.add_webhook(channel, guild_id=1), channel] for channel in channels]
        conn.send({"api_base": fake.api_base, "webhooks": hooks})
        loop = asyncio.get_running_loop()
        while True:
            try:
                command = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                break
            if command == "stats":
                conn.send(_stats(fake))
            else:
                break
    finally:
        await fake.close()
        conn.close()


def _stats(fake: _RecordingDiscord) -> dict[str, Any]:
    requests = []
    for record in fake.requests:
        match = _WEBHOOK_IN_PATH.search(record.path)
        requests.append((record.time, record.method, record.status, int(match[1]) if match else 0))
    per_webhook: dict[int, list[int]] = {}
    for message in fake.messages():
        counts = per_webhook.setdefault(message.webhook_id, [0, 0])
        counts[0] += 1
        counts[1] += len(message.embeds)
    return {
        "requests": requests,
        "limited": list(fake.limited),
        "messages": per_webhook,
        "internal_errors": [repr(e) for e in fake.internal_errors],
    }
