"""Small helpers for the background tasks the poller and the deliverer own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def finish_or_cancel(tasks: Iterable[asyncio.Task[object]], grace: float) -> None:
    """Give ``tasks`` up to ``grace`` seconds to finish, then cancel the rest and
    wait for them, so nothing runs on after its owner has shut down."""
    running = list(tasks)
    if not running:
        return
    _done, pending = await asyncio.wait(running, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
