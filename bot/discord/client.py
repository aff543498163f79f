"""The discord.py bot: started by ``feedhook run`` when a token is configured."""

from __future__ import annotations

import logging
import pkgutil
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

import cogs
from bot.services import FeedService

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
APOLOGY = (
    "Sorry, something went wrong on feedhook's side. It has been logged; "
    "please try again in a moment."
)


class LoginError(Exception):
    """The bot cannot log in; ``str(e)`` says what to do. ``refused``: Discord said no
    to the token (trying again cannot help); else Discord could not be reached."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def point_at(api_base: str, gateway_url: str) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a proxy, a test fake).

    discord.py keeps these as class attributes, so this is process-wide.
    """
    if api_base and api_base.rstrip("/") != DEFAULT_API_BASE:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def extension_names() -> list[str]:
    """Every module in the ``cogs`` package: extensions are discovered, not listed."""
    return [f"{cogs.__name__}.{module.name}" for module in pkgutil.iter_modules(cogs.__path__)]


class FeedhookBot(commands.Bot):
    def __init__(self, services: FeedService, *, guild_ids: tuple[int, ...] = (), **options: Any):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.webhooks = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.services = services
        self.sync_guild_ids = guild_ids
        self.tree.error(self.on_app_command_error)

    async def log_in(self, token: str) -> None:
        """``login`` with the failures translated into one sentence each."""
        try:
            await self.login(token)
        except discord.LoginFailure:
            await self.close()
            raise LoginError(
                "Discord refused the bot token (discord.token or FEEDHOOK_DISCORD_TOKEN); "
                "copy it again from the Developer Portal, Bot > Reset Token",
                refused=True,
            ) from None
        except (discord.HTTPException, OSError) as exc:
            await self.close()
            raise LoginError(
                f"cannot reach Discord to log in ({exc}); is the network up?", refused=False
            ) from None

    def gateway_open(self) -> bool:
        """Connected to the gateway now (``is_ready`` stays true through a reconnect)."""
        ws = self.ws
        return self.is_ready() and not self.is_closed() and ws is not None and ws.open

    async def setup_hook(self) -> None:
        for name in extension_names():
            await self.load_extension(name)
        if self.sync_guild_ids:
            # Guild commands appear at once; global ones can take an hour to spread.
            for guild_id in self.sync_guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        log.info("slash commands synced guilds=%s", list(self.sync_guild_ids) or "global")

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("bot connected user=%s guilds=%d", self.user, len(self.guilds))

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Expected refusals are answered by the commands; this is the last resort."""
        if isinstance(error, app_commands.MissingPermissions | app_commands.NoPrivateMessage):
            message = "You need the **Manage Webhooks** permission to manage feeds."
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error(
                "command failed command=%s guild=%s user=%s",
                command,
                interaction.guild_id,
                interaction.user.id,
                exc_info=error,
            )
            message = APOLOGY
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
