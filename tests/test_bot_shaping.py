"""/feed format, filter, mention and options through the real discord.py bot and the fake
Discord: the modal round trip (callback type 9, then MODAL_SUBMIT), role options, forum
tags, and what the next post looks like."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Doc, FeedServer
from tests.fakes.fake_discord import StoredMessage
from tests.test_bot import ADMIN, FORUM, GUEST, GUILD, NEWS, World, rss_at, running_world


@pytest.fixture
async def world(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    async with running_world(tmp_path, feed_server, monkeypatch) as running:
        yield running


def news(entries: list[tuple[str, str]]) -> Doc:
    """Harbour News with (guid, title) entries, newest first, dated now a minute apart."""
    return Doc(
        rss_at(entries, title="Harbour News", newest=datetime.now(UTC), gap=timedelta(minutes=1))
    )


START = [("b", "Second story"), ("a", "First story")]


async def subscribe(world: World, *, channel: int = NEWS) -> str:
    """/feed add the test feed (in ``channel``) and let its first poll store the items."""
    world.feeds.docs["/f.xml"] = news(START)
    answer = await world.run("add", source=world.feeds.url("/f.xml"), channel=channel)
    assert "Subscribed" in answer, answer
    views = await world.app.store.guild_subscriptions(GUILD)
    for _ in range(100):
        if await world.app.store.recent_items(views[-1].id):
            found = await world.app.store.recent_items(views[-1].id)
            if found and found[0]:
                break
        await asyncio.sleep(0.05)
    return str(views[-1].id)


async def next_post(world: World, title: str, *, channel: int = NEWS) -> StoredMessage:
    """Publish ``title`` as the feed's newest entry and wait for its post."""
    before = len(world.fake.messages(channel_id=channel))
    world.feeds.docs["/f.xml"] = news([("c", title), *START])
    posted = await world.fake.wait_for_messages(before + 1, channel_id=channel, within=10)
    return posted[before]


async def test_format_opens_a_modal_and_saves_what_is_submitted(world: World) -> None:
    sub = await subscribe(world)
    opened = await world.fake.invoke(GUILD, NEWS, ADMIN, "feed", "format", {"subscription": sub})
    modal = await opened.wait_for_modal()
    assert [i.label for i in modal.inputs] == [
        "Content",
        "Embed title",
        "Embed description",
        "Username",
        "Avatar URL",
    ]
    assert all(not i.required and not i.value for i in modal.inputs)  # defaults: all empty

    # a bad template is refused with its position, and nothing is saved
    bad = await world.fake.submit_modal(opened, {"Embed title": "{title"})
    answer = await bad.wait_for_response(within=10)
    assert answer.ephemeral
    assert "Nothing was saved: Embed title: unclosed" in answer.content
    assert (await world.app.store.guild_subscriptions(GUILD))[0].options.get("embed") is None

    again = await world.fake.invoke(GUILD, NEWS, ADMIN, "feed", "format", {"subscription": sub})
    modal = await again.wait_for_modal()
    done = await world.fake.submit_modal(
        again,
        {
            "Content": "New on {source_title}: {link}",
            "Embed title": "📰 {title}",
            "Username": "Harbour bot",
        },
    )
    answer = await done.wait_for_response(within=10)
    assert "Saved the format for **Harbour News**" in answer.content
    assert "> New on Harbour News: https://example.com/b" in answer.content  # the preview
    assert [e["title"] for e in answer.embeds] == ["📰 Second story"]

    # the modal now opens with what was saved
    third = await world.fake.invoke(GUILD, NEWS, ADMIN, "feed", "format", {"subscription": sub})
    modal = await third.wait_for_modal()
    assert modal.input("Embed title").value == "📰 {title}"
    assert modal.input("Username").value == "Harbour bot"

    posted = await next_post(world, "Third story")
    assert posted.content == "New on Harbour News: https://example.com/c"
    assert posted.embeds[0]["title"] == "📰 Third story"
    assert posted.username == "Harbour bot"
    assert "· format" in await world.run("list")

    reset = await world.run("format", subscription=sub, reset=True)
    assert "Back to the default look" in reset
    assert "· format" not in await world.run("list")


async def test_filter_answers_with_what_passes_and_leaves_the_rest_out(world: World) -> None:
    sub = await subscribe(world)
    answer = await world.run("filter", subscription=sub, include="first, /third/i")
    assert "Saved the filter" in answer
    assert "1 of the source's 2 current items pass the filter." in answer
    bad = await world.run("filter", subscription=sub, exclude="/(unclosed/")
    assert "Nothing was saved: exclude:" in bad
    world.feeds.docs["/f.xml"] = news([("d", "Fourth story"), ("c", "Third story"), *START])
    (posted,) = await world.fake.wait_for_messages(1, channel_id=NEWS, within=10)
    assert posted.embeds[0]["title"] == "Third story"
    for _ in range(100):
        if "1 item left out by filters" in await world.run("status"):
            break
        await asyncio.sleep(0.05)
    assert "1 item left out by filters" in await world.run("status")
    assert "· filter" in await world.run("list")
    cleared = await world.run("filter", subscription=sub, include="-")
    assert "pass the filter" not in cleared
    assert "· filter" not in await world.run("list")


async def test_mention_pings_only_the_chosen_role(world: World) -> None:
    sub = await subscribe(world)
    quiet = world.fake.add_role(GUILD, name="quiet", mentionable=False)
    releases = world.fake.add_role(GUILD, name="releases", mentionable=True)
    for role in (quiet, releases):
        await world.fake.dispatch(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(GUILD), "role": world.fake.role_json(GUILD, role)},
        )
    warned = await world.run("mention", subscription=sub, role=quiet)
    assert f"Items will ping <@&{quiet}>" in warned
    assert "not mentionable" in warned
    answer = await world.run("mention", subscription=sub, role=releases, when="release")
    assert f"Items will ping <@&{releases}>" in answer
    assert "not mentionable" not in answer
    assert f"· mentions <@&{releases}>" in await world.run("list")

    posted = await next_post(world, "Version 2 release @everyone <@&1>")
    assert posted.content == f"<@&{releases}>"
    assert posted.allowed_mentions == {"parse": [], "roles": [str(releases)]}
    assert posted.mentioned_role_ids == [releases]
    assert not posted.mention_everyone

    stopped = await world.run("mention", subscription=sub)
    assert "Items will ping nobody" in stopped
    assert "mentions" not in await world.run("list")


async def test_options_resolve_forum_tags_by_name(world: World) -> None:
    news_tag, _sport = world.fake.set_forum_tags(FORUM, ["News", "Sport"])
    await world.fake.dispatch("CHANNEL_UPDATE", world.fake.channel_json(FORUM))
    await asyncio.sleep(0.1)
    sub = await subscribe(world, channel=FORUM)
    refused = await world.run("options", subscription=sub, forum_tags="news, Weather")
    assert "This forum has no tag named `Weather`. Its tags: `News`, `Sport`." in refused
    saved = await world.run(
        "options", subscription=sub, forum_tags="news", thread_title="[{source_title}] {title}"
    )
    assert "Saved the options" in saved
    posted = await next_post(world, "Harbour closed", channel=FORUM)
    assert posted.thread_name == "[Harbour News] Harbour closed"
    assert posted.applied_tags == [news_tag]
    not_forum = await subscribe_second(world)
    assert "only to a subscription in a forum" in await world.run(
        "options", subscription=not_forum, forum_tags="News"
    )


async def subscribe_second(world: World) -> str:
    world.feeds.docs["/g.xml"] = news([("x", "Elsewhere")])
    assert "Subscribed" in await world.run("add", source=world.feeds.url("/g.xml"))
    return str((await world.app.store.guild_subscriptions(GUILD))[-1].id)


async def test_test_right_after_add_reads_the_source_and_uses_the_settings(
    world: World,
) -> None:
    world.feeds.docs["/f.xml"] = news(START)
    assert "Subscribed" in await world.run("add", source=world.feeds.url("/f.xml"))
    sub = str((await world.app.store.guild_subscriptions(GUILD))[0].id)
    await world.run("options", subscription=sub, embed=False)
    assert "Posted the newest item" in await world.run("test", subscription=sub)
    (posted,) = await world.fake.wait_for_messages(1, channel_id=NEWS, within=10)
    assert posted.embeds == []
    assert posted.content.startswith("**Second story**")


async def test_settings_commands_need_manage_webhooks(world: World) -> None:
    sub = await subscribe(world)
    # Discord hides /feed from them; an admin may still grant it in the server settings
    for command in world.fake._commands[GUILD]:
        command["default_member_permissions"] = None
    for command, options in (
        ("format", {"subscription": sub}),
        ("filter", {"subscription": sub, "include": "x"}),
        ("mention", {"subscription": sub}),
        ("options", {"subscription": sub, "embed": False}),
    ):
        text = await world.run(command, user=GUEST, **options)
        assert text == "You need the **Manage Webhooks** permission to manage feeds.", command
    (view,) = await world.app.store.guild_subscriptions(GUILD)
    assert "include" not in view.options
    assert view.options.get("style") == "embed"
