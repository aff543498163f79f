"""Small helpers for the background tasks the poller and the deliverer own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")


class WorkerThread:
    """One thread that runs blocking calls for the event loop, in submission order.

    Leaner than ``loop.run_in_executor``: a queue put, and one
    ``call_soon_threadsafe`` to hand the result back. The storage layer crosses
    into its thread several thousand times per poll cycle, so this matters.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``fn``; the future settles with its result once it has run. Cancelling
        the future does not stop ``fn`` (it runs anyway, in order)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        return future

    def stop(self) -> None:
        """Let the thread end once what is queued has run."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            try:
                outcome: Any = fn()
            except BaseException as exc:  # handed to the awaiting task
                outcome = exc
            # RuntimeError: that event loop is closed, so nobody is waiting.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_settle, future, outcome)


# Parsing and HTML-to-markdown are pure Python: they hold the GIL, so a second
# thread only makes them take turns with the first and with the event loop. One
# thread does the same work with fewer GIL hand-offs (the bench measured 18% less
# CPU per changed source than asyncio.to_thread's pool of six).
@functools.cache
def _cpu_worker() -> WorkerThread:
    # Started on first use, not at import: `feedhook status` needs no parser thread.
    return WorkerThread("feedhook-parse")


async def in_cpu_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run CPU-bound ``fn`` off the event loop, in the one parser thread."""
    return await _cpu_worker().run(functools.partial(fn, *args, **kwargs))


def running_elsewhere(task: asyncio.Task[Any] | None) -> list[asyncio.Task[Any]]:
    """``task`` to wait for at a stop: none when it is absent, done, or the stopping
    task itself (waiting for itself would hang)."""
    if task is None or task.done() or task is asyncio.current_task():
        return []
    return [task]


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


class GroupCommit(Generic[R, T]):
    """Write requests from many tasks together: one transaction for a whole group.

    Each :meth:`submit` waits for its own result. A group is written when it holds
    ``size`` requests or its oldest has waited ``delay`` seconds. If the group's
    write fails, each request is written alone, so one bad request fails only
    its own submitter.
    """

    def __init__(
        self,
        write: Callable[[list[R]], Awaitable[Sequence[T]]],
        *,
        size: int,
        delay: float,
        name: str,
    ) -> None:
        self._write = write
        self._size = max(1, size)
        self._delay = delay
        self._name = name
        self._pending: list[tuple[R, asyncio.Future[T]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    async def submit(self, request: R) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self._size:
            self._start()
        elif self._timer is None:
            self._timer = loop.call_later(self._delay, self._start)
        return await future

    async def drain(self) -> None:
        """Write what is pending now and wait for every write under way."""
        self._start()
        if self._writes:
            await asyncio.wait(list(self._writes))

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._pending = self._pending, []
        if group:
            task = asyncio.create_task(self._write_group(group), name=self._name)
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write_group(self, group: list[tuple[R, asyncio.Future[T]]]) -> None:
        try:
            results = await self._write([request for request, _ in group])
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            for request, future in group:
                try:
                    (result,) = await self._write([request])
                except Exception as single:
                    _settle(future, single)
                else:
                    _settle(future, result)
            return
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    if future.done():  # its submitter was cancelled (a stop); what ran stands
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
