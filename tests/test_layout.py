"""The boundaries the design depends on, checked on the source itself."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from bot.discord.client import extension_names

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_every_extension_is_discovered_and_loads() -> None:
    names = extension_names()
    assert "cogs.feed" in names
    assert len(names) == len(list((ROOT / "cogs").glob("[!_]*.py")))
    for name in names:
        assert callable(importlib.import_module(name).setup)


def test_cogs_never_touch_storage_or_sql() -> None:
    for path in (ROOT / "cogs").glob("*.py"):
        for module in imported_modules(path):
            assert not module.startswith(("bot.storage", "sqlmodel", "sqlalchemy")), (path, module)


def test_only_bot_discord_imports_discord_py() -> None:
    for path in (ROOT / "bot").rglob("*.py"):
        if "discord" in path.relative_to(ROOT / "bot").parts[:1]:
            continue
        modules = imported_modules(path)
        assert not any(m == "discord" or m.startswith("discord.") for m in modules), path
