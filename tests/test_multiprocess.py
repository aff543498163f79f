"""Several `feedhook` processes on one PostgreSQL database: real subprocesses, each test
with a database of its own (advisory locks are per database)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.storage.db import head_revision
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.skipif(
    POSTGRES_URL is None, reason="set FEEDHOOK_TEST_POSTGRES_URL to run several processes"
)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    assert POSTGRES_URL is not None
    name = f"feedhook_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.split("?", 1)[0].rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def pg_config(tmp_path: Path, url: str, *extra: str) -> Path:
    path = tmp_path / "config.toml"
    lines = ["[database]", f'url = "{url}"', *extra]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def run_cli(*args: str, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_migrations_started_together_all_come_up(tmp_path: Path, pg_database: str) -> None:
    config = pg_config(tmp_path, pg_database)
    results = await asyncio.gather(
        *(run_cli("db", "upgrade", "--config", str(config)) for _ in range(5))
    )
    for code, _out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    outs = sorted(out.strip() for _, out, _ in results)
    head = head_revision()
    # one of them migrated; the others waited, then found nothing to do
    assert outs == [f"database already at revision {head}"] * 4 + [
        f"database upgraded from empty to {head}"
    ]
