"""Inbound webhooks: tokens, the request's placeholders and the item a POST becomes.

Pure: no I/O. A hook's template uses the template language of :mod:`bot.templates`
with names that read the request: ``{body}``, ``{body.repository.full_name}``,
``{body.commits.0.message}`` (a digit segment indexes a list) and
``{headers.x-github-event}`` (case-insensitive).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Final

from bot.models import Item
from bot.render import CONTENT_MAX, inline, truncate
from bot.templates import Template, TemplateError, Value, compile_template

# Bytes of randomness in a token made by /feed hook (the issue: at least 32).
TOKEN_BYTES: Final = 32
# A token an operator writes in [[hooks]]: at least this many characters.
MIN_CONFIG_TOKEN: Final = 32
MAX_BODY_BYTES: Final = 256 * 1024
# A hook's template: room for a rich message, and for the answer that shows it.
MAX_TEMPLATE: Final = 1000
# Slack's and Discord's own payloads carry their text in these; anything else shows
# as JSON until the admin writes a template.
DEFAULT_TEMPLATE: Final = "{body.content|body.text|body.message|body}"
# Headers whose value identifies one delivery: a sender's retry carries the same one.
# (Idempotency-Key before X-Request-Id: a proxy may stamp a new request id on each try.)
DELIVERY_ID_HEADERS: Final = ("X-GitHub-Delivery", "Idempotency-Key", "X-Request-Id")
# Headers naming the kind of event (the item's title, in the delivery log).
EVENT_HEADERS: Final = ("X-GitHub-Event", "X-Gitlab-Event", "X-Event-Key", "X-Event-Type")
SOURCE_PREFIX: Final = "hook:"
_MAX_ID = 200
_NAME = re.compile(r"body(?:\.[A-Za-z0-9_-]+)*|headers\.[A-Za-z0-9_-]+")
# JSON shown by {body} or a {body.x} holding an object: room for the code fence.
_JSON_ROOM = CONTENT_MAX - 20
_FENCE = re.compile("`{3,}")


def new_token() -> str:
    """A fresh hook token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What is stored and looked up: the token's SHA-256 (hex). Tokens are random and
    long, so a plain hash is enough; no salt is needed to stop guessing."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_request_name(name: str) -> bool:
    """Whether ``name`` is a placeholder a hook template may use."""
    return _NAME.fullmatch(name) is not None


def compile_hook_template(text: str) -> Template:
    """A hook template, or :class:`~bot.templates.TemplateError` saying what is wrong."""
    if not text.strip():
        raise TemplateError("the template is empty: write what the message says, such as {body}")
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(
            f"the template is {len(text)} characters long; a hook's may have {MAX_TEMPLATE}"
        )
    try:
        return compile_template(text, names=is_request_name, date_names=())
    except TemplateError as exc:
        if "unknown placeholder" in str(exc):
            raise TemplateError(
                f"{exc}; a hook's placeholders read the request: {{body}}, "
                "{body.repository.full_name}, {headers.x-github-event}"
            ) from None
        raise


def is_hook(source_url: str) -> bool:
    """Whether a source is an inbound hook's (``hook:N``): its items are requests, not a
    feed's entries (never polled, never stale, no feed look)."""
    return source_url.startswith(SOURCE_PREFIX)


class RequestValues(Mapping[str, Value]):
    """A request's placeholder values, looked up as the template asks for them."""

    def __init__(self, body: Any, headers: Mapping[str, str]) -> None:
        self._body = body
        self._headers = {k.lower(): v for k, v in headers.items()}

    def __getitem__(self, name: str) -> Value:
        if name.startswith("headers."):
            value = self._headers.get(name[len("headers.") :].lower())
            if value is None:
                raise KeyError(name)
            return value
        node = self._body
        for segment in name.split(".")[1:]:
            if isinstance(node, Mapping) and segment in node:
                node = node[segment]
            elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
            else:
                raise KeyError(name)
        return _shown(node)

    def __iter__(self) -> Iterator[str]:
        return iter(())  # names are open-ended; the template asks for each

    def __len__(self) -> int:
        return 0


def _shown(node: Any) -> str | None:
    if node is None:
        return None
    if isinstance(node, str):
        return node
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, int | float):
        return json.dumps(node)
    try:
        text = json.dumps(node, ensure_ascii=False, indent=2)
    except RecursionError:
        return "(nested too deeply to show)"
    if len(text) > _JSON_ROOM:
        text = text[: _JSON_ROOM - 1] + "…"
    # a run of three or more backticks inside the JSON would end the block early
    return "```json\n" + _FENCE.sub(lambda m: "\u200b".join(m.group()), text) + "\n```"


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (JSON's "\\ud800", a header's undecodable bytes)
    replaced by U+FFFD: they cannot be stored or sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def render_hook(template: Template, body: Any, headers: Mapping[str, str]) -> str:
    """The message content a request maps to, within Discord's limit ("" if blank)."""
    text = valid_text(template.render(RequestValues(body, headers))).strip()
    return truncate(text, CONTENT_MAX) if text else ""


DEFAULT: Final = compile_template(DEFAULT_TEMPLATE, names=is_request_name, date_names=())


class RequestBodyError(ValueError):
    """A request body that cannot be read; ``str(e)`` completes "the body is ..."."""


def request_content(raw: bytes, template: Template, headers: Mapping[str, str]) -> str:
    """The message a request's body maps to through ``template``; one for which it renders
    nothing at all (none of its fields are there) is relayed with the default template.
    Raises RequestBodyError for a body that is not UTF-8 JSON (or nests too deeply)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestBodyError("not UTF-8") from None
    except RecursionError:
        raise RequestBodyError("nested too deeply") from None
    except ValueError:
        raise RequestBodyError("not JSON") from None
    return render_hook(template, body, headers) or render_hook(DEFAULT, body, headers)


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The sender's id of this delivery (its retries repeat it), if it gives one."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in DELIVERY_ID_HEADERS:
        value = (lowered.get(name.lower()) or "").strip()
        if value:
            if len(value) > _MAX_ID:
                return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
            return value
    return None


def hook_item(
    content: str, headers: Mapping[str, str], *, received_at: datetime, hook_id: int
) -> Item:
    """The item a request becomes: keyed by its delivery id (a retry is the same item),
    else unique; its summary is the message content (as :func:`render_hook` made it)."""
    given = delivery_id(headers)
    key = f"delivery:{valid_text(given)}" if given else f"post:{uuid.uuid4().hex}"
    lowered = {k.lower(): v for k, v in headers.items()}
    event = next((lowered[h.lower()] for h in EVENT_HEADERS if lowered.get(h.lower())), "")
    title = valid_text(inline(event))[:100] if event else f"POST to hook:{hook_id}"
    return Item(
        key=key,
        title=title,
        link=None,
        summary=content,
        author=None,
        published=received_at,
        image=None,
    )
