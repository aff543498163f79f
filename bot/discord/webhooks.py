"""The bot's own webhook in a channel: reuse it, or create one."""

from __future__ import annotations

import discord

from bot.models import WebhookTarget
from bot.services import ServiceError

WEBHOOK_NAME = "feedhook"
MAX_WEBHOOKS_ERROR = 30007

PostTarget = discord.TextChannel | discord.ForumChannel | discord.Thread


def _home(channel: PostTarget) -> discord.TextChannel | discord.ForumChannel:
    """Webhooks live on the channel; a thread posts through its parent's webhook."""
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        if not isinstance(parent, discord.TextChannel | discord.ForumChannel):
            raise ServiceError(f"{channel.mention} has no parent channel feedhook can post to.")
        return parent
    return channel


async def ensure_webhook(channel: PostTarget, bot_user_id: int) -> WebhookTarget:
    """A webhook of this bot in ``channel`` (created when missing), as a target."""
    home = _home(channel)
    try:
        existing = await home.webhooks()
        own = next(
            (
                hook
                for hook in existing
                if hook.user is not None and hook.user.id == bot_user_id and hook.token
            ),
            None,
        )
        if own is None:
            own = await home.create_webhook(name=WEBHOOK_NAME, reason="feedhook subscriptions")
    except discord.Forbidden:
        raise ServiceError(
            f"I need the **Manage Webhooks** permission in {home.mention} to post there. "
            "Give my role that permission in the channel settings, then try again."
        ) from None
    except discord.HTTPException as exc:
        if exc.code == MAX_WEBHOOKS_ERROR:
            raise ServiceError(
                f"{home.mention} already has 15 webhooks, Discord's maximum. Delete one in "
                "Channel settings > Integrations > Webhooks, then try again."
            ) from None
        raise
    assert own.token is not None
    thread_id = channel.id if isinstance(channel, discord.Thread) else None
    return WebhookTarget(webhook_id=own.id, token=own.token, thread_id=thread_id)
