"""The worker thread the storage layer and the parser run their blocking calls in."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest

from bot.app import GC_YOUNG_THRESHOLD, App, settle_heap
from bot.config import load_config
from bot.tasks import WorkerThread, in_cpu_thread


async def test_calls_run_in_order_off_the_event_loop_and_errors_come_back() -> None:
    worker = WorkerThread("test-worker")
    seen: list[tuple[int, str]] = []

    def record(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * n

    def fail() -> None:
        raise ValueError("bad row")

    try:
        results = await asyncio.gather(*(worker.run(lambda n=n: record(n)) for n in range(20)))
        with pytest.raises(ValueError, match="bad row"):
            await worker.run(fail)
        assert await worker.run(lambda: record(99)) == 99 * 99  # still working after an error
    finally:
        worker.stop()
    assert results == [n * n for n in range(20)]
    assert [n for n, _ in seen] == [*range(20), 99]
    assert {name for _, name in seen} == {"test-worker"}


def test_a_closed_event_loop_does_not_stop_the_thread() -> None:
    worker = WorkerThread("test-worker")
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    async def submit_and_leave() -> None:
        worker.run(slow)  # nobody awaits it: its loop closes first
        await asyncio.to_thread(started.wait, 10)

    asyncio.run(submit_and_leave())
    release.set()

    async def later() -> str:
        return await asyncio.wait_for(worker.run(lambda: "next"), 5)

    try:
        assert asyncio.run(later()) == "next"
    finally:
        worker.stop()


async def test_cpu_work_runs_in_the_one_parser_thread() -> None:
    names = await asyncio.gather(
        *(in_cpu_thread(lambda: threading.current_thread().name) for _ in range(5))
    )
    assert set(names) == {"feedhook-parse"}


def test_settle_heap_freezes_what_lives_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        long_lived = [object()]  # alive at start-up, like the modules and metadata
        settle_heap()
        # Frozen objects are out of every generation: no collection walks them again.
        assert not any(obj is long_lived for obj in gc.get_objects())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert before[0] < GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_the_relay_settles_the_heap_before_its_first_poll_only_when_asked(
    tmp_path: Path,
) -> None:
    """`feedhook run` starts with settle=True; tests and the demo leave the collector alone."""
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "r.db"}"\n', encoding="utf-8")
    before = gc.get_threshold()
    try:
        for settle in (False, True):
            app = App(load_config(config_file, environ={}))
            await app.start(settle=settle)
            try:
                assert (gc.get_threshold()[0] == GC_YOUNG_THRESHOLD) is settle
            finally:
                await app.stop()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
