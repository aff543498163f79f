"""Text of the bot's replies: short, plain, with what to do next."""

from __future__ import annotations

from datetime import datetime

from bot.models import SubscriptionView
from bot.services import GuildStatus, HookCreated, SettingsResult
from bot.shaping import shape_of
from bot.staleness import stale_advice
from bot.storage.store import LogEntry

PAGE_LIMIT = 1900


def when(moment: datetime | None) -> str:
    """A Discord timestamp each reader sees in their own time zone."""
    return f"<t:{int(moment.timestamp())}:R>" if moment else "never"


def where(view: SubscriptionView) -> str:
    return f"<#{view.thread_id or view.channel_id}>"


def settings_label(view: SubscriptionView) -> str:
    """ " · format, filter, mentions @Role, edits" for what differs from the default."""
    labels = shape_of(view.options).describe()
    return f" · {', '.join(labels)}" if labels else ""


def settings_answer(result: SettingsResult, head: str, note: str | None = None) -> str:
    """What a settings command answers: what was saved, the filter's effect on the
    source's current items, and the newest item as it will now look."""
    view, shape = result.view, result.shape
    lines = [f"{head} for **{view.label}** in {where(view)}."]
    if note:
        lines.append(note)
    filtered = not shape.filter.empty and result.total
    if filtered:
        lines.append(
            f"{result.passing} of the source's {result.total} current items pass the filter."
        )
    if result.preview is None:
        if not result.total:
            lines.append("It has no items to show yet.")
    else:
        which = "newest item that passes" if filtered else "newest item"
        lines.append(f"The {which} will look like this:")
        content = result.preview.get("content")
        if content:
            lines += ["> " + line for line in content.splitlines()[:10]]
    return "\n".join(lines)[:PAGE_LIMIT]


def describe(view: SubscriptionView) -> str:
    head = f"`#{view.id}` **{view.label}** → {where(view)}{settings_label(view)}"
    if view.state == "disabled":
        return f"{head} · disabled: {view.disabled_reason}"
    if view.state == "paused":
        return f"{head} · paused"
    if view.state == "failing":
        error = (view.last_error or "unknown error")[:200]
        return f"{head} · failing since {when(view.failing_since)}: {error}"
    if view.stale:
        return (
            f"{head} · ⚠️ stale: nothing new since {when(view.newest_item_at)}, "
            f"much longer than usual; {stale_advice(view.source_url)}"
        )
    return f"{head} · ok, last post {when(view.last_delivery_at)}"


def pages(lines: list[str], limit: int = PAGE_LIMIT) -> list[str]:
    """Lines packed into messages of at most ``limit`` characters."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def status_lines(status: GuildStatus) -> list[str]:
    lines = [
        f"**{status.total}** subscriptions: {status.ok} ok"
        + (f" ({len(status.stale)} stale)" if status.stale else "")
        + f", {status.paused} paused, {len(status.failing)} failing, "
        f"{len(status.disabled)} disabled.",
        f"Last post: {when(status.last_delivery_at)}."
        + (
            f" {status.filtered} item{'s' if status.filtered != 1 else ''} left out by filters."
            if status.filtered
            else ""
        ),
    ]
    if status.offer_hub and not status.push_on:
        n = status.offer_hub
        lines.append(
            f"{n} feed{'s' if n != 1 else ''} here offer{'' if n != 1 else 's'} WebSub push "
            "(a hub that sends new items the moment they are published); the bot's operator "
            "can turn it on by setting `http.public_url`. Until then they are polled."
        )
    elif status.offer_hub:
        lines.append(
            f"Pushed by their WebSub hub: {status.pushed} of the {status.offer_hub} feeds "
            "that offer it (the others are polled)."
        )
    if status.push_problems:
        lines.append("**Push not working** (polled at the normal interval meanwhile)")
        lines += [
            f"`#{v.id}` **{v.label}** → {where(v)} · {error[:200]}"
            for v, error in status.push_problems
        ]
    if status.failing:
        lines.append("**Failing**")
        lines += [describe(v) for v in status.failing]
    if status.stale:
        lines.append("**Stale** (polls work, but nothing new for much longer than usual)")
        lines += [describe(v) for v in status.stale]
    if status.disabled:
        lines.append("**Disabled**")
        lines += [describe(v) for v in status.disabled]
    return lines


_OUTCOME_MARKS = {
    "sent": "✅ sent",
    "filtered": "🚫 filtered out",
    "retried": "🔁 retried",
    "failed": "❌ failed",
    "disabled": "⛔ disabled",
    "notice": "📣 notice posted",
}


def log_line(entry: LogEntry) -> str:
    """One delivery attempt: when, what came of it, which item, and why or where."""
    mark = _OUTCOME_MARKS.get(entry.outcome, entry.outcome)
    item = ""
    if entry.item_title or entry.item_link:
        title = (entry.item_title or entry.item_link or "").replace("]", ")")[:120]
        item = f" [{title}](<{entry.item_link}>)" if entry.item_link else f" {title}"
    line = f"{when(entry.at)} {mark}{item}"
    if (entry.outcome == "sent" and entry.jump_url) or (
        entry.outcome == "notice" and entry.jump_url
    ):
        line += f" → {entry.jump_url}"
    if entry.reason and entry.outcome != "sent":
        line += f": {entry.reason[:200]}"
    return line


def log_lines(view: SubscriptionView, entries: list[LogEntry]) -> list[str]:
    if not entries:
        return [f"**{view.label}** in {where(view)} has no delivery attempts yet."]
    return [
        f"The latest {len(entries)} delivery attempts of **{view.label}** in {where(view)}, "
        "newest first:",
        *(log_line(e) for e in entries),
    ]


def hook_created(made: HookCreated, channel: str) -> str:
    """The one answer that shows a hook's URL (its token is stored only hashed)."""
    template = made.template.replace("`", "ˋ")
    return (
        f"Made an inbound hook posting in {channel} (`#{made.subscription_id}`, listed as "
        f"**{made.source_url}**). Services POST JSON to this URL; it is shown only now, and "
        "anyone who has it can post here, so keep it secret:\n"
        f"```\n{made.endpoint}\n```\n"
        f"Message template: `{template}`\n"
        "GitHub: the repository's Settings → Webhooks → Add webhook, paste the URL as the "
        "Payload URL, Content type `application/json`. `/feed remove` deletes the hook (the "
        "URL then answers 404)."
    )
