"""What feedhook posts into a channel about the source behind it: failing for long,
working again, turned stale. Pure: the texts and webhook bodies; ``App.send_notices``
claims and posts them. A notice pings nobody."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from bot.render import CONTENT_MAX, FORUM_TITLE_MAX, truncate, truncate_plain
from bot.staleness import stale_advice
from bot.storage.store import NoticeTarget

NoticeKind = Literal["failing", "recovered", "stale"]
NOTICE_USERNAME = "feedhook"


def _stamp(when: datetime | None) -> str:
    return f"<t:{int(when.timestamp())}:f> (<t:{int(when.timestamp())}:R>)" if when else "a while"


def _name(notice: NoticeTarget) -> str:
    return notice.source_title or notice.source_url


def _what_to_do(notice: NoticeTarget) -> str:
    if notice.origin == "config":
        return (
            "If the feed moved or is gone, fix or remove its [[feeds]] entry in feedhook's "
            "config file; feedhook keeps trying in the meantime."
        )
    if notice.origin == "import":
        return (
            "If the feed moved, feedhook's operator can import the new address "
            "(`feedhook import`); feedhook keeps trying in the meantime."
        )
    return (
        "If the feed moved or is gone, `/feed remove` this subscription and `/feed add` the "
        "new address; feedhook keeps trying in the meantime."
    )


def notice_text(kind: NoticeKind, notice: NoticeTarget) -> str:
    """The notice as a person reads it in the channel."""
    name, url = _name(notice), notice.source_url
    if kind == "failing":
        error = (notice.last_error or "no answer").rstrip(".")
        return (
            f"⚠️ feedhook cannot read **{name}** (<{url}>) since {_stamp(notice.failing_since)}: "
            f"{error}. New items from it cannot be posted here until it works again. "
            + _what_to_do(notice)
        )
    if kind == "recovered":
        return f"✅ **{name}** (<{url}>) works again: its new items are posted here as before."
    return (
        f"💤 **{name}** (<{url}>) has posted nothing new since "
        f"{_stamp(notice.newest_item_at)}, much longer than usual; {stale_advice(url)}."
    )


def notice_body(kind: NoticeKind, notice: NoticeTarget) -> dict[str, Any]:
    """The webhook body of a notice: under feedhook's own name, pinging nobody; in a
    forum, a post of its own."""
    body: dict[str, Any] = {
        "username": NOTICE_USERNAME,
        "content": truncate(notice_text(kind, notice), CONTENT_MAX),
        "allowed_mentions": {"parse": []},
    }
    if notice.options.get("forum"):
        titles = {
            "failing": "feedhook cannot read",
            "recovered": "works again:",
            "stale": "nothing new from",
        }
        body["thread_name"] = truncate_plain(f"{titles[kind]} {_name(notice)}", FORUM_TITLE_MAX)
    return body
