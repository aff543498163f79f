"""Inbound webhooks: the pure parts of bot/hooks.py (tokens, template names, rendering,
delivery ids, the item a request becomes), the ``[[hooks]]`` config entries, and
``POST /hooks/{token}`` through the real App (tests/relay.py) on the fake Discord."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.config import ConfigError, load_config
from bot.hooks import (
    DEFAULT_TEMPLATE,
    MAX_BODY_BYTES,
    compile_hook_template,
    delivery_id,
    hash_token,
    hook_item,
    is_request_name,
    new_token,
    render_hook,
)
from bot.render import CONTENT_MAX, utf16_len
from bot.storage.db import Database
from bot.storage.store import ConfigHook, Store
from bot.templates import TemplateError
from bot.webhooks import parse_webhook_url
from tests.conftest import POSTGRES_URL, T0
from tests.relay import Relay
from tests.test_push import delivered, free_port, push_config
from tests.test_websub import status_of

TOKEN = "ci-hook-token-" + "k" * 30  # 44 characters, letters, digits and "-"
OTHER_TOKEN = "other-hook-token-" + "q" * 30
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/s3cr3t-T0ken_x"
FENCE = "```"

needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="set FEEDHOOK_TEST_POSTGRES_URL to run several processes"
)


def render(template: str, body: Any, headers: Mapping[str, str] | None = None) -> str:
    return render_hook(compile_hook_template(template), body, headers or {})


# -- A. pure: tokens, names, rendering, delivery ids, items ---------------------------------


def test_new_tokens_are_43_url_safe_characters_and_distinct() -> None:
    tokens = [new_token() for _ in range(50)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)
    assert len(set(tokens)) == len(tokens)


def test_hash_token_is_the_sha256_hex_of_the_token() -> None:
    assert hash_token(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token(TOKEN))
    assert hash_token(TOKEN) != hash_token(OTHER_TOKEN)


@pytest.mark.parametrize(
    "template",
    [
        "{body}",
        "{body.a.b}",
        "{body.list.0.x}",
        "{headers.X-Thing}",
        "{headers.x-github-event} {body.repository.full_name}",
        "{body.text|body.message}",
    ],
)
def test_request_names_are_accepted(template: str) -> None:
    compile_hook_template(template)


@pytest.mark.parametrize("template", ["{title}", "{body..x}", "{headers}", "{body.}", "{summary}"])
def test_other_names_are_refused_with_a_hint_at_body(template: str) -> None:
    with pytest.raises(TemplateError, match=re.escape("{body}")):
        compile_hook_template(template)


def test_an_empty_template_is_refused() -> None:
    with pytest.raises(TemplateError, match=re.escape("{body}")):
        compile_hook_template("   ")


def test_is_request_name() -> None:
    assert is_request_name("body")
    assert is_request_name("body.commits.0.message")
    assert is_request_name("headers.X-GitHub-Event")
    assert not is_request_name("headers")
    assert not is_request_name("body..x")
    assert not is_request_name("title")


def test_nested_paths_list_indexes_and_scalars() -> None:
    body = {
        "a": {"b": "deep"},
        "list": [{"x": "first"}, {"x": "second"}],
        "n": 42,
        "f": 1.5,
        "yes": True,
        "no": False,
        "nothing": None,
    }
    assert render("{body.a.b}", body) == "deep"
    assert render("{body.list.1.x}", body) == "second"
    assert render("[{body.list.5.x}]", body) == "[]"  # out of range: nothing
    assert render("[{body.a.b.c}]", body) == "[]"  # a string has no fields
    assert render("{body.n} {body.f} {body.yes} {body.no}", body) == "42 1.5 true false"
    assert render("[{body.nothing}]", body) == "[]"
    assert render("{body.list.0.x}", body) == "first"


def test_an_object_renders_as_a_json_code_block() -> None:
    content = render("{body.a}", {"a": {"b": [1, "two"]}})
    assert content.startswith("```json\n")
    assert content.endswith("\n```")
    assert json.loads(content.removeprefix("```json\n").removesuffix("\n```")) == {"b": [1, "two"]}


def test_headers_are_looked_up_case_insensitively() -> None:
    headers = {"x-thing": "lower", "X-GitHub-Event": "push"}
    assert render("{headers.X-Thing} {headers.x-github-event}", {}, headers) == "lower push"
    assert render("[{headers.missing}]", {}, headers) == "[]"


def test_fallbacks_take_the_first_field_not_blank() -> None:
    assert render("{body.text|body.message}", {"message": "m"}) == "m"
    assert render("{body.text|body.message}", {"text": "", "message": "m"}) == "m"
    assert render("{body.text|body.message}", {"text": "t", "message": "m"}) == "t"
    assert render("{body.text|body.message}", {}) == ""


def test_content_is_cut_to_discords_limit_in_utf16_units() -> None:
    ascii_text = render("{body.text}", {"text": "word " * 1000})
    assert utf16_len(ascii_text) <= CONTENT_MAX
    assert ascii_text.endswith("…")
    # astral characters count twice: a cut by code points would be 2x too long
    emoji = render("{body.text}", {"text": "😀 " * 1500})
    assert utf16_len(emoji) <= CONTENT_MAX
    assert utf16_len(emoji) > CONTENT_MAX - 20
    big = render("{body}", {"k": "😀" * 3000})
    assert utf16_len(big) <= CONTENT_MAX
    assert big.count(FENCE) == 2  # the cut still closes the block


def test_backticks_in_an_object_do_not_end_the_code_block() -> None:
    content = render("{body}", {"k": "a```b"})
    assert content.count(FENCE) == 2
    assert content.startswith(FENCE)
    assert content.endswith(FENCE)


@pytest.mark.parametrize("run", ["````", "``````", "a`````b"])
def test_longer_backtick_runs_in_an_object_do_not_end_the_code_block(run: str) -> None:
    content = render("{body}", {"k": run})
    assert content.count(FENCE) == 2, content


def test_delivery_id_header_precedence() -> None:
    assert (
        delivery_id({"X-GitHub-Delivery": "g", "X-Request-Id": "r", "Idempotency-Key": "k"}) == "g"
    )
    # a proxy may stamp a fresh X-Request-Id on each try: the sender's key wins
    assert delivery_id({"X-Request-Id": "r", "Idempotency-Key": "k"}) == "k"
    assert delivery_id({"idempotency-key": "k"}) == "k"
    assert delivery_id({"x-github-delivery": "  ", "X-Request-Id": "r"}) == "r"
    assert delivery_id({"X-Other": "o"}) is None
    assert delivery_id({}) is None


def test_long_delivery_ids_are_hashed() -> None:
    exact = "i" * 200
    assert delivery_id({"X-Request-Id": exact}) == exact
    long = "i" * 201
    hashed = delivery_id({"X-Request-Id": long})
    assert hashed == "sha256:" + hashlib.sha256(long.encode()).hexdigest()
    assert delivery_id({"Idempotency-Key": long}) == hashed


def test_hook_item_keys_and_titles() -> None:
    item = hook_item("hello", {"X-GitHub-Delivery": "d-1"}, received_at=T0, hook_id=7)
    assert item.key == "delivery:d-1"
    assert item.title == "POST to hook:7"
    assert item.summary == "hello"
    assert item.published == T0
    first = hook_item("x", {}, received_at=T0, hook_id=7)
    second = hook_item("x", {}, received_at=T0, hook_id=7)
    assert first.key.startswith("post:")
    assert second.key.startswith("post:")
    assert first.key != second.key
    assert hook_item("x", {"X-GitHub-Event": "push"}, received_at=T0, hook_id=7).title == "push"
    gitlab = hook_item("x", {"x-gitlab-event": "Push Hook"}, received_at=T0, hook_id=7)
    assert gitlab.title == "Push Hook"


# -- B. [[hooks]] in the config file --------------------------------------------------------


def write_hooks(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "config.toml"
    tables = "".join(f'[[hooks]]\nwebhook = "{WEBHOOK}"\n{e}\n' for e in entries)
    path.write_text(tables, encoding="utf-8")
    return path


def test_a_valid_hook_entry_loads(tmp_path: Path) -> None:
    config = load_config(write_hooks(tmp_path, f'token = "{TOKEN}"'), environ={})
    (hook,) = config.hooks
    assert hook.token == TOKEN
    assert hook.template == DEFAULT_TEMPLATE
    assert hook.target.webhook_id == 123456789012345678
    assert TOKEN not in repr(config)
    custom = load_config(
        write_hooks(tmp_path, f'token = "{TOKEN}"\ntemplate = "{{body.text}}"'), environ={}
    )
    assert custom.hooks[0].template == "{body.text}"


def test_a_short_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    short = "tooShortTokenValue12345"
    with pytest.raises(ConfigError) as raised:
        load_config(write_hooks(tmp_path, f'token = "{short}"'), environ={})
    assert "hooks[0].token" in str(raised.value)
    assert "at least 32" in str(raised.value)
    assert short not in str(raised.value)


def test_a_token_with_a_slash_is_refused_without_showing_it(tmp_path: Path) -> None:
    slashed = "a" * 20 + "/" + "b" * 20
    with pytest.raises(ConfigError) as raised:
        load_config(write_hooks(tmp_path, f'token = "{slashed}"'), environ={})
    assert "hooks[0].token" in str(raised.value)
    assert slashed not in str(raised.value)


def test_a_bad_template_names_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("hooks[0].template")):
        load_config(write_hooks(tmp_path, f'token = "{TOKEN}"\ntemplate = "{{title}}"'), environ={})


def test_two_entries_with_the_same_token_are_refused(tmp_path: Path) -> None:
    entry = f'token = "{TOKEN}"'
    with pytest.raises(ConfigError) as raised:
        load_config(write_hooks(tmp_path, entry, entry), environ={})
    assert "hooks[1].token" in str(raised.value)
    assert TOKEN not in str(raised.value)


# -- C. POST /hooks/{token} through the real App -------------------------------------------

Start = Callable[..., Awaitable[tuple[Relay, int]]]


@pytest.fixture
def start_hooks(relay: Callable[..., Any]) -> Start:
    """A relay with a [[feeds]] entry and the given [[hooks]] entries (name -> TOML
    lines), listening on a free port; returns it and the port."""

    async def start(
        inbound: dict[str, str], *, rate: int = 30, database_url: str | None = None
    ) -> tuple[Relay, int]:
        port = free_port()
        made: Relay = await relay(
            {"news": ""},
            config_extra=push_config(port, f"hook_rate_per_minute = {rate}\n"),
            inbound=inbound,
            database_url=database_url,
        )
        return made, port

    return start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as made:
        yield made


def entry(token: str, template: str | None = None) -> str:
    lines = f'token = "{token}"'
    if template is not None:
        lines += f"\ntemplate = {json.dumps(template)}"
    return lines


async def post(
    session: aiohttp.ClientSession, port: int, token: str = TOKEN, **kwargs: Any
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with session.post(f"http://127.0.0.1:{port}/hooks/{token}", **kwargs) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, resp.headers


async def exactly(r: Relay, name: str, count: int) -> list[Any]:
    """The messages of ``name`` once ``count`` are there, after one more round that
    would have posted a duplicate."""
    await delivered(r, name, count)
    await r.app.poller.flush()
    await r.app.deliverer.deliver_due()
    messages = r.messages(name)
    assert len(messages) == count, [m.content for m in messages]
    return messages


async def another_app(r: Relay, port: int, **updates: Any) -> App:
    """A second App of the relay's config (``updates`` replace top-level keys), listening
    on ``port``; its scheduler paused, like the harness's."""
    config = r.app.config
    http = config.http.model_copy(
        update={"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"}
    )
    app = App(config.model_copy(update={"http": http, **updates}), clock=r.clock, roles=())
    await app.start()
    app.scheduler.pause()
    return app


async def test_a_json_post_becomes_the_templates_message_and_pings_nobody(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    template = "**{headers.x-github-event}** on {body.repository.full_name}: {body.text}"
    r, port = await start_hooks({"ci": entry(TOKEN, template)})
    text = "@everyone @here <@123> <@&456> shipped"
    payload = {"repository": {"full_name": "feedhook/feedhook"}, "text": text}
    status, body, headers = await post(
        session, port, json=payload, headers={"X-GitHub-Event": "push"}
    )
    assert (status, body) == (202, {"status": "accepted"})
    assert headers["Cache-Control"] == "no-store"
    (message,) = await exactly(r, "ci", 1)
    assert message.content == f"**push** on feedhook/feedhook: {text}"
    assert message.allowed_mentions == {"parse": []}
    assert not message.mention_everyone
    assert not message.mentions_would_ping
    assert message.mentioned_user_ids == []
    assert message.mentioned_role_ids == []
    assert message.embeds == []


async def test_unknown_tokens_and_removed_hooks_answer_404(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN)})
    status, body, _ = await post(session, port, OTHER_TOKEN, json={"text": "x"})
    assert (status, body) == (404, {"status": "not found"})
    status, _, _ = await post(session, port, TOKEN + "x", json={"text": "x"})
    assert status == 404
    assert (await post(session, port, json={"text": "before"}))[0] == 202
    await exactly(r, "ci", 1)

    # restarted with the [[hooks]] entry gone: its token no longer reaches anything
    await r.app.stop()
    port = free_port()
    app = await another_app(r, port, hooks=())
    try:
        status, body, _ = await post(session, port, json={"text": "after"})
        assert (status, body) == (404, {"status": "not found"})
    finally:
        await app.stop()
    assert [m.content for m in r.messages("ci")] == ["before"]


async def test_a_disabled_config_subscription_answers_404(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN)})
    assert (await post(session, port, json={"text": "x"}))[0] == 202
    await r.app.store.sync_config_feeds([], now=r.clock())
    assert (await post(session, port, json={"text": "x"}))[0] == 404


async def test_bodies_not_json_or_not_utf8_are_refused_with_400(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN)})
    items = (await r.app.store.counts())["items"]
    for data, reason in [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"text": "caf\xe9"}', "not UTF-8"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
    ]:
        status, body, _ = await post(session, port, data=data)
        assert (status, body) == (400, {"status": f"the body is {reason}"}), data
    assert (await r.app.store.counts())["items"] == items
    assert r.messages("ci") == []


async def test_bodies_over_256kb_are_refused_with_413_with_a_length_or_chunked(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN, "{body.n}")})
    too_large = {"status": "too large", "limit_bytes": MAX_BODY_BYTES}
    over = b'"' + b"a" * (MAX_BODY_BYTES - 1) + b'"'
    assert len(over) == MAX_BODY_BYTES + 1
    status, body, _ = await post(session, port, data=over)
    assert (status, body) == (413, too_large)

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"n": 1, "pad": "'
        for _ in range(5):
            yield b"a" * (64 * 1024)
        yield b'"}'

    status, body, _ = await post(session, port, data=chunked())
    assert (status, body) == (413, too_large)

    # exactly the limit is fine, chunked or not
    pad = MAX_BODY_BYTES - len(b'{"n": 2, "pad": ""}')
    at_limit = b'{"n": 2, "pad": "' + b"a" * pad + b'"}'
    assert len(at_limit) == MAX_BODY_BYTES
    assert (await post(session, port, data=at_limit))[0] == 202

    async def chunked_at_limit() -> AsyncIterator[bytes]:
        yield at_limit.replace(b'"n": 2', b'"n": 3')

    assert (await post(session, port, data=chunked_at_limit()))[0] == 202
    assert sorted(m.content for m in await exactly(r, "ci", 2)) == ["2", "3"]


async def test_the_rate_limit_is_per_token_and_per_minute_on_the_apps_clock(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN), "other": entry(OTHER_TOKEN)}, rate=3)
    r.clock.advance(15)  # a quarter into the minute: 45 seconds of it left
    for n in range(3):
        assert (await post(session, port, json={"text": f"ci {n}"}))[0] == 202
    status, body, headers = await post(session, port, json={"text": "ci 3"})
    assert status == 429
    assert headers["Retry-After"] == "45"
    assert body == {"status": "rate limited", "retry_after": 45}
    # another token has a count of its own
    assert (await post(session, port, OTHER_TOKEN, json={"text": "other"}))[0] == 202
    r.clock.advance(44)
    status, _, headers = await post(session, port, json={"text": "ci 4"})
    assert (status, headers["Retry-After"]) == (429, "1")
    r.clock.advance(1)  # the next minute
    assert (await post(session, port, json={"text": "ci 5"}))[0] == 202
    assert [m.content for m in await exactly(r, "ci", 4)] == ["ci 0", "ci 1", "ci 2", "ci 5"]
    assert [m.content for m in await exactly(r, "other", 1)] == ["other"]


async def test_a_delivery_id_is_posted_once(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN, "{body.text}")})
    for header in ("X-GitHub-Delivery", "X-Request-Id", "Idempotency-Key"):
        answers = []
        for attempt in range(2):
            status, body, _ = await post(
                session,
                port,
                json={"text": f"{header} {attempt}"},
                headers={header: f"id-of-{header}"},
            )
            answers.append((status, body))
        assert answers == [
            (202, {"status": "accepted"}),
            (202, {"status": "accepted", "duplicate": True}),
        ], header
    # without an id, two identical requests are two events
    for _ in range(2):
        status, body, _ = await post(session, port, json={"text": "no id"})
        assert (status, body) == (202, {"status": "accepted"})
    contents = [m.content for m in await exactly(r, "ci", 5)]
    assert contents == [
        "X-GitHub-Delivery 0",
        "X-Request-Id 0",
        "Idempotency-Key 0",
        "no id",
        "no id",
    ]


async def test_a_template_that_finds_nothing_falls_back_to_the_default(
    start_hooks: Start, session: aiohttp.ClientSession
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN, "{body.status|headers.x-status}")})
    payload = {"build": {"number": 7, "ok": True}}
    assert (await post(session, port, json=payload))[0] == 202
    assert (await post(session, port, json={"message": "plain words"}))[0] == 202
    first, second = await exactly(r, "ci", 2)
    assert first.content.startswith("```json\n")
    assert first.content.endswith("\n```")
    assert json.loads(first.content[len("```json\n") : -len("\n```")]) == payload
    assert second.content == "plain words"  # the default template's body.message


async def test_tokens_never_reach_the_logs(
    start_hooks: Start, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r, port = await start_hooks({"ci": entry(TOKEN, "{body.text}")}, rate=3)
    statuses = [
        (await post(session, port, json={"text": "ok"}))[0],
        (await post(session, port, OTHER_TOKEN, json={"text": "?"}))[0],
        (await post(session, port, data=b"{not json"))[0],
        (await post(session, port, data=b"[" + b" " * MAX_BODY_BYTES + b"]"))[0],
        (await post(session, port, json={"text": "too many"}))[0],
    ]
    assert statuses == [202, 404, 400, 413, 429]
    await exactly(r, "ci", 1)
    await r.app.stop()
    assert "hook post accepted" in caplog.text  # the log was captured
    assert TOKEN not in caplog.text
    assert OTHER_TOKEN not in caplog.text


async def test_a_body_nested_too_deep_to_parse_is_refused_with_400(
    start_hooks: Start, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _r, port = await start_hooks({"ci": entry(TOKEN)})
    deep = b"[" * 100_000 + b"]" * 100_000  # valid JSON, 200 KB
    status, _, _ = await post(session, port, data=deep)
    assert TOKEN not in caplog.text
    assert status == 400


@needs_postgres
async def test_two_apps_on_one_database_share_delivery_ids_and_the_rate(
    start_hooks: Start, session: aiohttp.ClientSession, pg_database: str
) -> None:
    r, port = await start_hooks(
        {"ci": entry(TOKEN, "{body.text}")}, rate=3, database_url=pg_database
    )
    second_port = free_port()
    second = await another_app(r, second_port)
    try:
        # the same delivery through both processes at once: one message
        headers = {"X-GitHub-Delivery": "shared-1"}
        answers = await asyncio.gather(
            post(session, port, json={"text": "shared"}, headers=headers),
            post(session, second_port, json={"text": "shared"}, headers=headers),
        )
        assert [status for status, _, _ in answers] == [202, 202]
        assert sorted(body.get("duplicate", False) for _, body, _ in answers) == [False, True]
        # and one after the other
        status, body, _ = await post(session, second_port, json={"text": "x"}, headers=headers)
        assert (status, body) == (202, {"status": "accepted", "duplicate": True})
        # three requests counted so far, in either process: the fourth is one too many
        for target in (port, second_port):
            status, _, headers_back = await post(session, target, json={"text": "late"})
            assert status == 429
            assert int(headers_back["Retry-After"]) >= 1
        r.clock.advance(60)
        assert (await post(session, second_port, json={"text": "next minute"}))[0] == 202
        contents = [m.content for m in await exactly(r, "ci", 2)]
        assert contents == ["shared", "next minute"]
    finally:
        await second.stop()


@needs_postgres
async def test_processes_starting_together_make_a_new_config_hook_once(pg_database: str) -> None:
    """Two stores syncing the same new [[hooks]] entry at once (two processes starting):
    the config sync lock makes them take turns, so both find one hook."""
    for attempt in range(10):
        databases = [Database(pg_database) for _ in range(2)]
        try:
            await databases[0].upgrade()
            entry = ConfigHook(f"{attempt:064d}", "{body.text}")
            urls = await asyncio.gather(
                *(Store(db).sync_config_hooks([entry], now=T0) for db in databases)
            )
            assert urls[0] == urls[1]
        finally:
            for db in databases:
                await db.dispose()


async def test_undecodable_bytes_in_a_hook_request_are_posted_replaced(
    start_hooks: Start, caplog: pytest.LogCaptureFixture
) -> None:
    r, port = await start_hooks({"ci": entry(TOKEN, "{headers.x-github-event} {body.text}")})
    path = f"/hooks/{TOKEN}".encode()
    cases = (
        (b"X-GitHub-Event: \xff\r\n", b'{"text": "one"}'),
        (b"X-GitHub-Delivery: \xff\xfe\r\n", b'{"text": "two"}'),
        (b"", b'{"text": "cut \\ud800 emoji"}'),  # a lone surrogate, as JSON allows
    )
    for headers, body in cases:
        assert await status_of(port, b"POST", path, headers, body) == 202
    messages = await delivered(r, "ci", 3)
    assert [m.content for m in messages] == ["\ufffd one", "two", "cut \ufffd emoji"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_downgrading_below_hooks_drops_their_sources(db_url: str) -> None:
    """An older version would poll hook:N sources: the downgrade from 0009 takes them
    (with their subscriptions, deliveries and items) along with the hooks table."""
    from alembic import command
    from sqlalchemy import func, select

    from bot.storage._common import items, outbox, sources, subscriptions
    from bot.storage.db import alembic_config

    db = Database(db_url)
    try:
        await db.upgrade()
        store = Store(db)
        url = await store.create_hook(
            token_hash="h" * 64, template="{body}", origin="discord", now=T0
        )
        target = parse_webhook_url("https://discord.com/api/webhooks/1/tok")
        await store.create_subscription(
            source_url=url,
            guild_id=1,
            channel_id=2,
            target=target,
            backfill=0,
            options={},
            min_interval=300,
            now=T0,
        )
        (source_id,) = [h.source_id for h in await store.source_health()]
        item = hook_item("hello", {}, received_at=T0, hook_id=1)
        assert await store.record_hook_item(source_id, item, now=T0) == 1
        await store.add_source("https://example.com/feed.xml", now=T0)

        def downgrade(connection: Any) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0008")

        await db.run_sync(downgrade)
        async with db.read() as conn:
            counts = [
                (await conn.execute(select(func.count()).select_from(t))).scalar_one()
                for t in (sources, subscriptions, outbox, items)
            ]
        assert counts == [1, 0, 0, 0]  # the feed's source stays
    finally:
        await db.dispose()


async def test_old_hook_items_are_pruned_like_a_feeds(store: Store) -> None:
    """No document ever lists a hook's items: retention keeps the newest 20, not all."""
    await store.create_hook(token_hash="p" * 64, template="{body}", origin="config", now=T0)
    (source_id,) = [h.source_id for h in await store.source_health()]
    for n in range(30):
        at = T0 + timedelta(minutes=n)
        item = hook_item(f"request {n}", {"X-Request-Id": str(n)}, received_at=at, hook_id=1)
        await store.record_hook_item(source_id, item, now=at)
    pruned = await store.prune(now=T0 + timedelta(days=400), max_age=timedelta(days=30))
    assert pruned.items == 10
    assert (await store.counts())["items"] == 20


async def test_a_forum_hook_opens_a_post_titled_by_its_first_line(start_hooks: Start) -> None:
    r, port = await start_hooks(
        {"forum-ci": entry(TOKEN, "{body.title}\n{body.text}") + "\nforum = true"}
    )
    async with aiohttp.ClientSession() as session:
        status, _, _ = await post(
            session, port, json={"title": "Deploy 41 done", "text": "all green"}
        )
    assert status == 202
    (message,) = await delivered(r, "forum-ci", 1)
    assert message.content == "Deploy 41 done\nall green"
    assert message.thread_name == "Deploy 41 done"
