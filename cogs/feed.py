"""``/feed``: thin translation from interactions to :mod:`bot.services` calls."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import replies
from bot.discord.webhooks import PostTarget, ensure_webhook
from bot.opml import MAX_BYTES as MAX_OPML_BYTES
from bot.opml import OpmlError, parse_opml, write_opml
from bot.opml_io import export_entries, import_outlines
from bot.services import ServiceError, SettingsResult, resolve_forum_tags

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


async def _post_target(
    interaction: Interaction, channel: discord.abc.GuildChannel | discord.Thread | None
) -> PostTarget | None:
    """The channel a command posts to (default: where it was used); None, answered, when
    feedhook cannot post there."""
    target = channel or interaction.channel
    if isinstance(target, PostTarget):
        return target
    await _answer(interaction, "Pick a text, announcement, forum or thread channel.")
    return None


def _embeds(body: dict[str, Any] | None) -> list[discord.Embed]:
    return [discord.Embed.from_dict(embed) for embed in (body or {}).get("embeds", [])]


async def _show_settings(
    interaction: Interaction, result: SettingsResult, head: str, note: str | None = None
) -> None:
    """The answer to a settings command: what changed, and the newest item as it will
    now look (its content quoted, so that no role mention in it pings here)."""
    text = replies.settings_answer(result, head, note)
    await _answer(
        interaction,
        text,
        embeds=_embeds(result.preview),
        allowed_mentions=discord.AllowedMentions.none(),
    )


class FormatModal(discord.ui.Modal):
    """``/feed format``: five templates, prefilled with the subscription's."""

    def __init__(self, cog: Feeds, subscription: str, label: str, texts: dict[str, str]):
        super().__init__(title=f"Format: {label}"[:45])
        self.cog = cog
        self.subscription = subscription
        self.inputs: dict[str, discord.ui.TextInput[FormatModal]] = {}
        for key, name, style in (
            ("content", "Content", discord.TextStyle.paragraph),
            ("title", "Embed title", discord.TextStyle.short),
            ("description", "Embed description", discord.TextStyle.paragraph),
            ("username", "Username", discord.TextStyle.short),
            ("avatar_url", "Avatar URL", discord.TextStyle.short),
        ):
            field: discord.ui.TextInput[FormatModal] = discord.ui.TextInput(
                label=name,
                style=style,
                required=False,
                default=texts.get(key) or None,
                max_length=4000,
                placeholder="empty: the default look",
            )
            self.inputs[key] = field
            self.add_item(field)

    async def on_submit(self, interaction: Interaction) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        texts = {key: field.value for key, field in self.inputs.items()}
        try:
            result = await self.cog.services.set_format(
                interaction.guild_id, self.subscription, texts
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        await _show_settings(interaction, result, "Saved the format")


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

    async def _begin_posting(
        self,
        interaction: Interaction,
        channel: discord.abc.GuildChannel | discord.Thread | None,
    ) -> PostTarget | None:
        """For a command that sets up posting: the permission check, the channel to post
        in (None, answered, when there is none) and the deferred answer."""
        if not await _allowed(interaction):
            return None
        target_channel = await _post_target(interaction, channel)
        if target_channel is not None:
            await interaction.response.defer(ephemeral=True, thinking=True)
        return target_channel

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
        target_channel = await self._begin_posting(interaction, channel)
        if target_channel is None:
            return
        assert interaction.guild_id is not None
        assert self.bot.user is not None
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

    @feed.command(
        name="hook", description="Make a URL that services (GitHub, CI, monitoring) POST JSON to"
    )
    @app_commands.describe(
        channel="Where to post (default: this channel)",
        template="The message: {body.repository.full_name}, {headers.x-github-event}... "
        "(default: the body's text, else its JSON)",
    )
    async def hook(
        self,
        interaction: Interaction,
        channel: discord.TextChannel | discord.ForumChannel | discord.Thread | None = None,
        template: str | None = None,
    ) -> None:
        target_channel = await self._begin_posting(interaction, channel)
        if target_channel is None:
            return
        assert interaction.guild_id is not None
        assert self.bot.user is not None
        try:
            # refused (hooks off, a bad template, no room) before any webhook is made
            self.services.hook_template(template)
            await self.services.check_room(interaction.guild_id)
            target = await ensure_webhook(target_channel, self.bot.user.id)
            made = await self.services.create_hook(
                guild_id=interaction.guild_id,
                channel_id=target_channel.id,
                target=target,
                template=template,
                forum=isinstance(target_channel, discord.ForumChannel),
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        await _answer(
            interaction,
            replies.hook_created(made, target_channel.mention),
            allowed_mentions=discord.AllowedMentions.none(),
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

    @feed.command(name="log", description="A feed's latest delivery attempts and what came of them")
    @app_commands.describe(subscription="The subscription")
    async def log(self, interaction: Interaction, subscription: str) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        try:
            view, entries = await self.services.delivery_log(interaction.guild_id, subscription)
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        for page in replies.pages(replies.log_lines(view, entries)):
            await _answer(interaction, page, allowed_mentions=discord.AllowedMentions.none())

    @feed.command(name="import", description="Add every feed of an OPML file (from a feed reader)")
    @app_commands.describe(
        file="An OPML file your feed reader exported",
        channel="Where to post (default: this channel)",
    )
    async def import_(
        self,
        interaction: Interaction,
        file: discord.Attachment,
        channel: discord.TextChannel | discord.ForumChannel | discord.Thread | None = None,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        assert self.bot.user is not None
        target_channel = await _post_target(interaction, channel)
        if target_channel is None:
            return
        if file.size > MAX_OPML_BYTES:
            await _answer(interaction, "That file is larger than 5 MB; no OPML list is that long.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            outlines = parse_opml(await file.read())
        except OpmlError as exc:
            await _answer(interaction, f"{file.filename}: {exc}. Nothing was added.")
            return
        except discord.HTTPException:
            await _answer(interaction, "Discord did not give me the file; try again.")
            return
        try:
            target = await ensure_webhook(target_channel, self.bot.user.id)
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        forum = isinstance(target_channel, discord.ForumChannel)
        summary = await import_outlines(
            self.services,
            outlines,
            target=target,
            guild_id=interaction.guild_id,
            channel_id=target_channel.id,
            options={"style": "embed", "batch": not forum, "forum": forum},
        )
        lines = [f"Imported {file.filename} into {target_channel.mention}:", *summary.lines()]
        for page in replies.pages(lines):
            await _answer(interaction, page)

    @feed.command(name="export", description="This server's feeds as an OPML file")
    async def export(self, interaction: Interaction) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild is not None
        names = {c.id: f"#{c.name}" for c in interaction.guild.channels}
        names.update({t.id: f"#{t.name}" for t in interaction.guild.threads})
        entries = await export_entries(
            self.services.store, guild_id=interaction.guild.id, channel_names=names
        )
        if not entries:
            await _answer(interaction, "No feed subscriptions to export yet.")
            return
        data = write_opml(entries, title=f"{interaction.guild.name} feeds").encode()
        await _answer(
            interaction,
            f"{len(entries)} feeds, in a file any feed reader imports:",
            file=discord.File(io.BytesIO(data), filename="feeds.opml"),
        )

    # -- message settings ----------------------------------------------------------

    @feed.command(name="format", description="Change how a feed's items look")
    @app_commands.describe(
        subscription="The subscription to format",
        reset="Go back to the default look (no form)",
    )
    async def format(
        self, interaction: Interaction, subscription: str, reset: bool | None = None
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        try:
            if reset:
                result = await self.services.reset_format(interaction.guild_id, subscription)
                await _show_settings(interaction, result, "Back to the default look")
                return
            view, texts = await self.services.format_settings(interaction.guild_id, subscription)
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        await interaction.response.send_modal(FormatModal(self, subscription, view.label, texts))

    @feed.command(name="filter", description="Post only the items that match")
    @app_commands.describe(
        subscription="The subscription to filter",
        include="Post only items matching one of these (comma-separated; - clears)",
        exclude="Never post items matching one of these (comma-separated; - clears)",
    )
    async def filter(
        self,
        interaction: Interaction,
        subscription: str,
        include: str | None = None,
        exclude: str | None = None,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        try:
            result = await self.services.set_filter(
                interaction.guild_id, subscription, include=include, exclude=exclude
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        await _show_settings(interaction, result, "Saved the filter")

    @feed.command(name="mention", description="Ping a role when a feed posts")
    @app_commands.describe(
        subscription="The subscription",
        role="The role to ping (leave out to stop pinging)",
        when="Only for items matching these terms (comma-separated; - clears)",
    )
    async def mention(
        self,
        interaction: Interaction,
        subscription: str,
        role: discord.Role | None = None,
        when: str | None = None,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        try:
            result = await self.services.set_mention(
                interaction.guild_id,
                subscription,
                role_id=role.id if role else None,
                when=when,
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        head = f"Items will ping {role.mention}" if role else "Items will ping nobody"
        if role is not None and when not in (None, "-"):
            head += " when they match the terms"
        note = None
        if role is not None and not role.mentionable:
            note = (
                f"⚠️ {role.mention} is not mentionable, so the ping may not notify anyone: "
                "turn on *Allow anyone to @mention this role* in the role's settings."
            )
        await _show_settings(interaction, result, head, note)

    @feed.command(name="options", description="Embeds, edits and forum settings of a feed")
    @app_commands.describe(
        subscription="The subscription",
        embed="Post embeds (false: text only)",
        follow_edits="Edit posted messages when the source changes an item (within 7 days)",
        thread_title="Forum post title template (default {title}; - resets)",
        forum_tags="Forum tag names to apply, comma-separated (- clears)",
    )
    async def options(
        self,
        interaction: Interaction,
        subscription: str,
        embed: bool | None = None,
        follow_edits: bool | None = None,
        thread_title: str | None = None,
        forum_tags: str | None = None,
    ) -> None:
        if not await _allowed(interaction):
            return
        assert interaction.guild_id is not None
        try:
            tags = None
            if forum_tags is not None:
                view = await self.services.get(interaction.guild_id, subscription)
                forum = (
                    interaction.guild.get_channel(view.channel_id or 0)
                    if interaction.guild
                    else None
                )
                if not isinstance(forum, discord.ForumChannel):
                    raise ServiceError(
                        "Forum tags apply only to a subscription in a forum channel."
                    )
                tags = resolve_forum_tags(
                    forum_tags, [(tag.id, tag.name) for tag in forum.available_tags]
                )
            result = await self.services.set_options(
                interaction.guild_id,
                subscription,
                embed=embed,
                follow_edits=follow_edits,
                thread_title=thread_title,
                forum_tags=tags,
            )
        except ServiceError as exc:
            await _answer(interaction, str(exc))
            return
        await _show_settings(interaction, result, "Saved the options")

    @remove.autocomplete("subscription")
    @pause.autocomplete("subscription")
    @resume.autocomplete("subscription")
    @test.autocomplete("subscription")
    @format.autocomplete("subscription")
    @filter.autocomplete("subscription")
    @mention.autocomplete("subscription")
    @options.autocomplete("subscription")
    @log.autocomplete("subscription")
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
