"""``/feed``: thin translation from interactions to :mod:`bot.services` calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import replies
from bot.discord.webhooks import PostTarget, ensure_webhook
from bot.services import ServiceError

if TYPE_CHECKING:
    from bot.discord.client import FeedhookBot

NO_PERMISSION = "You need the **Manage Webhooks** permission to manage feeds."
Interaction = discord.Interaction[Any]


async def _allowed(interaction: Interaction) -> bool:
    # default_permissions is only a hint to the client; enforce it here too.
    if interaction.guild_id is not None and interaction.permissions.manage_webhooks:
        return True
    await interaction.response.send_message(NO_PERMISSION, ephemeral=True)
    return False


async def _answer(interaction: Interaction, text: str, **kwargs: Any) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **kwargs)
    else:
        await interaction.response.send_message(text, ephemeral=True, **kwargs)


def _embeds(body: dict[str, Any] | None) -> list[discord.Embed]:
    return [discord.Embed.from_dict(embed) for embed in (body or {}).get("embeds", [])]


class Feeds(commands.Cog):
    feed = app_commands.Group(
        name="feed",
        description="Relay feeds into this server's channels",
        guild_only=True,
        default_permissions=discord.Permissions(manage_webhooks=True),
    )

    def __init__(self, bot: FeedhookBot) -> None:
        self.bot = bot
        self.services = bot.services

    @feed.command(name="add", description="Post a feed's new items in a channel")
    @app_commands.describe(
        source="Feed or page URL, x:handle, bsky:handle, @user@instance, a YouTube or Reddit URL",
        channel="Where to post (default: this channel)",
        backfill="Also post the newest N items now (0-10)",
    )
    async def add(
        self,
        interaction: Interaction,
        source: str,
        channel: discord.TextChannel | discord.ForumChannel | discord.Thread | None = None,
        backfill: app_commands.Range[int, 0, 10] = 0,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        assert self.bot.user is not None
        target_channel = channel or interaction.channel
        if not isinstance(target_channel, PostTarget):
            await _answer(interaction, "Pick a text, announcement, forum or thread channel.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await self.services.check_room(interaction.guild_id)
            preview = await self.services.preview(source)
            if await self.services.already_subscribed(
                interaction.guild_id, target_channel.id, preview.url
            ):
                raise ServiceError(
                    f"{target_channel.mention} already gets **{preview.feed.title}**. "
                    "See `/feed list`."
                )
            target = await ensure_webhook(target_channel, self.bot.user.id)
            forum = isinstance(target_channel, discord.ForumChannel)
            sub_id = await self.services.subscribe(
                guild_id=interaction.guild_id,
                channel_id=target_channel.id,
                target=target,
                preview=preview,
                backfill=backfill,
                options={"style": "embed", "batch": not forum, "forum": forum},
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        newest = " Here is the newest item as it will look:" if preview.newest else ""
        await _answer(
            interaction,
            f"Subscribed {target_channel.mention} to **{preview.feed.title}** "
            f"(`#{sub_id}`, {preview.item_count} items in the feed). New items will be posted "
            f"there as they appear.{newest}",
            embeds=_embeds(preview.body()),
        )

    @feed.command(name="list", description="This server's feed subscriptions")
    @app_commands.describe(channel="Only this channel's subscriptions")
    async def list_(
        self,
        interaction: Interaction,
        channel: discord.TextChannel | discord.ForumChannel | discord.Thread | None = None,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        views = await self.services.subscriptions(
            interaction.guild_id, channel_id=channel.id if channel else None
        )
        if not views:
            await _answer(interaction, "No feed subscriptions yet. Add one with `/feed add`.")
            return
        for page in replies.pages([replies.describe(v) for v in views]):
            await _answer(interaction, page)

    async def _change(self, interaction: Interaction, subscription: str, action: str) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        guild_id = interaction.guild_id
        try:
            if action == "remove":
                view = await self.services.remove(guild_id, subscription)
                text = f"Removed **{view.label}** from {replies.where(view)}."
            elif action in ("pause", "resume"):
                view = await self.services.set_paused(
                    guild_id, subscription, paused=action == "pause"
                )
                text = (
                    f"Paused **{view.label}** in {replies.where(view)}; `/feed resume` restarts it."
                    if action == "pause"
                    else f"Resumed **{view.label}** in {replies.where(view)}."
                )
            else:
                await interaction.response.defer(ephemeral=True, thinking=True)
                test = await self.services.send_test(guild_id, subscription)
                view = test.view
                text = (
                    f"Posted the newest item of **{view.label}** in {replies.where(view)}."
                    if test.sent
                    else f"Queued the newest item of **{view.label}** for "
                    f"{replies.where(view)}; the delivery processes post it shortly."
                )
        except ServiceError as exc:
            text = str(exc)
        await _answer(interaction, text)

    @feed.command(name="remove", description="Stop posting a feed")
    @app_commands.describe(subscription="The subscription to remove")
    async def remove(self, interaction: Interaction, subscription: str) -> None:
        await self._change(interaction, subscription, "remove")

    @feed.command(name="pause", description="Stop posting a feed for now")
    @app_commands.describe(subscription="The subscription to pause")
    async def pause(self, interaction: Interaction, subscription: str) -> None:
        await self._change(interaction, subscription, "pause")

    @feed.command(name="resume", description="Post a paused feed again")
    @app_commands.describe(subscription="The subscription to resume")
    async def resume(self, interaction: Interaction, subscription: str) -> None:
        await self._change(interaction, subscription, "resume")

    @feed.command(name="test", description="Post a feed's newest item now")
    @app_commands.describe(subscription="The subscription to test")
    async def test(self, interaction: Interaction, subscription: str) -> None:
        await self._change(interaction, subscription, "test")

    @remove.autocomplete("subscription")
    @pause.autocomplete("subscription")
    @resume.autocomplete("subscription")
    @test.autocomplete("subscription")
    async def subscription_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_webhooks:
            return []
        return [
            app_commands.Choice(name=label, value=value)
            for label, value in await self.services.autocomplete(interaction.guild_id, current)
        ]

    @feed.command(name="preview", description="See how a feed's newest item would look")
    @app_commands.describe(
        source="Feed or page URL, x:handle, bsky:handle, @user@instance, a YouTube or Reddit URL"
    )
    async def preview(self, interaction: Interaction, source: str) -> None:
        if not await _allowed(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            found = await self.services.preview(source)
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        if found.newest is None:
            await _answer(interaction, f"**{found.feed.title}** is a feed, but it has no items.")
            return
        await _answer(
            interaction,
            f"**{found.feed.title}** ({found.item_count} items). Its newest item would look like "
            "this (nothing was saved):",
            embeds=_embeds(found.body()),
        )

    @feed.command(name="status", description="Health of this server's feeds")
    async def status(self, interaction: Interaction) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        health = await self.services.status(interaction.guild_id)
        for page in replies.pages(replies.status_lines(health)):
            await _answer(interaction, page)

    # -- lifecycle -----------------------------------------------------------------

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.services.channel_deleted(channel.id)

    @commands.Cog.listener()
    async def on_thread_delete(self, thread: discord.Thread) -> None:
        await self.services.channel_deleted(thread.id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.services.guild_left(guild.id)

    @commands.Cog.listener()
    async def on_webhooks_update(self, channel: discord.abc.GuildChannel) -> None:
        if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
            return
        try:
            hooks = await channel.webhooks()
        except discord.HTTPException:
            return  # without Manage Webhooks we cannot tell; delivery will find out
        await self.services.webhooks_changed(channel.id, {hook.id for hook in hooks})


async def setup(bot: FeedhookBot) -> None:
    await bot.add_cog(Feeds(bot))
