"""Every source form of issue 5 in ``[[feeds]]``, relayed without a bot token by the real
App (scheduler, poller, delivery) to the fake Discord's webhooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app import App
from bot.config import load_config
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import CHANNEL_ID, Account, FakeServices, Tweet
from tests.fakes.fake_social import FakeSocial


async def test_each_form_in_feeds_is_relayed_to_its_webhook(tmp_path: Path) -> None:
    services = await FakeServices(bridge="rsshub").start()
    services.accounts["jack"] = Account(tweets=[Tweet(41, "Hello through RSSHub")])
    try:
        async with FakeSocial() as social, FakeDiscord(webhook_limit=None) as discord:
            forms = {
                "twitter:jack": "Jack",
                "@alice.bsky.social": "Alice Liddell 🐇 (@alice.bsky.social)",
                f"{social.base_url}/@alice": "Alice ✨ (@alice@social.example)",
                f"https://m.youtube.com/channel/{CHANNEL_ID}": "Example Channel",
                "https://old.reddit.com/r/python/": "python",
                services.url("/feed-1.0.json"): None,  # whatever the document calls itself
            }
            hooks: dict[str, int] = {}
            tables = []
            for n, form in enumerate(forms):
                hook_id, token = discord.add_webhook(5000 + n, guild_id=1)
                hooks[form] = hook_id
                tables.append(
                    f'[[feeds]]\nurl = "{form}"\n'
                    f'webhook = "https://discord.com/api/webhooks/{hook_id}/{token}"\n'
                    "backfill = 1\n"
                )
            config_file = tmp_path / "config.toml"
            config_file.write_text(
                f'[discord]\napi_base = "{discord.api_base}"\n'
                f'[database]\nurl = "sqlite:///{tmp_path / "relay.db"}"\n'
                '[polling]\nallowed_hosts = ["127.0.0.1"]\ninterval = "60s"\ntimeout = "5s"\n'
                f'[sources.x]\nbridges = ["{services.base}"]\n'
                f'[sources.bluesky]\napi_base = "{social.base_url}"\n'
                f'[sources.youtube]\nbase_url = "{services.base}"\n'
                f'[sources.reddit]\nbase_url = "{services.base}"\n\n' + "\n".join(tables),
                encoding="utf-8",
            )
            app = App(load_config(config_file, environ={}))
            await app.start()
            try:
                messages = await discord.wait_for_messages(len(forms), within=20)
            finally:
                await app.stop()
            by_hook: dict[int, list[Any]] = {}
            for message in messages:
                by_hook.setdefault(message.webhook_id, []).append(message)
            for form, name in forms.items():
                (message,) = by_hook[hooks[form]]
                if name is not None:
                    assert message.username.startswith(name), (form, message.username)
                assert message.allowed_mentions == {"parse": []}
            (tweet,) = by_hook[hooks["twitter:jack"]]
            assert tweet.embeds[0]["url"] == "https://x.com/jack/status/41"
            assert "Hello through RSSHub" in tweet.embeds[0]["description"]
    finally:
        await services.close()
