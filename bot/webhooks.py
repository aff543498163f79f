"""Discord webhook URLs: parse what users paste, build what we post to."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from bot.models import WebhookTarget

_HOSTS = frozenset(
    {
        "discord.com",
        "discordapp.com",
        "ptb.discord.com",
        "canary.discord.com",
        "ptb.discordapp.com",
        "canary.discordapp.com",
    }
)
_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(\d{1,20})/([A-Za-z0-9_\-.]{1,200})/?$")


class WebhookURLError(ValueError):
    """The text is not a Discord webhook URL."""


def parse_webhook_url(url: str) -> WebhookTarget:
    """Parse ``https://discord.com/api/webhooks/{id}/{token}[?thread_id=N]``.

    The error message never repeats the URL: it holds the webhook token.
    """
    expected = (
        "expected a Discord webhook URL like https://discord.com/api/webhooks/ID/TOKEN "
        "(Channel settings > Integrations > Webhooks > Copy Webhook URL)"
    )
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or (parts.hostname or "") not in _HOSTS:
        raise WebhookURLError(expected)
    match = _PATH.match(parts.path)
    if match is None:
        raise WebhookURLError(expected)
    thread_id: int | None = None
    thread_values = parse_qs(parts.query).get("thread_id")
    if thread_values:
        if not thread_values[0].isdigit():
            raise WebhookURLError("thread_id in the webhook URL must be a number")
        thread_id = int(thread_values[0])
    return WebhookTarget(webhook_id=int(match.group(1)), token=match.group(2), thread_id=thread_id)


def message_url(
    api_base: str, target: WebhookTarget, message_id: int, thread_id: int | None = None
) -> str:
    """The URL of a message the webhook posted (to edit it); contains the token."""
    url = (
        f"{api_base.rstrip('/')}/webhooks/{target.webhook_id}/{target.token}/messages/{message_id}"
    )
    if thread_id is not None:
        url += f"?thread_id={thread_id}"
    return url


def execute_url(api_base: str, target: WebhookTarget) -> str:
    """The URL feedhook posts to; contains the token, so never log it."""
    url = f"{api_base.rstrip('/')}/webhooks/{target.webhook_id}/{target.token}?wait=true"
    if target.thread_id is not None:
        url += f"&thread_id={target.thread_id}"
    return url
