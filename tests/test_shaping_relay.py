"""[[feeds]] message settings end to end in relay mode: the real App (poller, delivery) reads
a loopback feed and posts to the fake Discord's webhooks; templates, filters, mentions,
forum posts with tags, and edits that follow the source."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import load_config
from bot.shaping import shape_of
from tests.fakes.fake_discord import FakeDiscord
from tests.relay import ENTRIES, GUILD, Relay, feed

NEW_ENTRIES = [
    ("a5", "Weekly notes", "Nothing much"),
    ("a4", "Sponsored: buy a boat", "Advert"),
    ("a3", "Version 2 release", "It is out"),
    *ENTRIES,
]


async def test_templates_filters_and_mentions_in_relay_mode(relay: Any) -> None:
    r: Relay = await relay(
        {
            "compact": 'embed = false\ncontent = "📰 **{title}** by {author} <{link}>"\n'
            'exclude = ["title:sponsored"]',
            "pings": 'mention_roles = [4242]\nmention_when = ["release"]\n'
            'embed = { title = "[{source_title}] {title}" }',
            "forum": 'forum = true\nthread_title = "{author}: {title}"\nforum_tags = [{news_tag}]',
        }
    )
    r.fake.add_role(GUILD, name="releases", role_id=4242, mentionable=True)
    news_tag = r.fake.channels[7002].available_tags[0].id
    r.feeds.docs["/news.xml"] = feed(NEW_ENTRIES)
    await r.poll_and_deliver()

    compact = [m.content for m in r.messages("compact")]
    assert compact == [
        "📰 **Version 2 release** by News Desk <https://example.com/a3>",
        "📰 **Weekly notes** by News Desk <https://example.com/a5>",
    ]
    filtered = [key for _, key, state in await r.app.store.outbox_items() if state == "filtered"]
    assert filtered == ["a4"]  # kept, never sent, for the delivery log

    pings = r.messages("pings")
    release = [m for m in pings if m.mentioned_role_ids]
    assert len(release) == 1
    assert release[0].content == "<@&4242>"
    assert release[0].allowed_mentions == {"parse": [], "roles": ["4242"]}
    assert len(release[0].embeds) == 1  # a ping is a message of its own
    assert release[0].embeds[0]["title"] == "[Harbour News] Version 2 release"
    others = [e["title"] for m in pings if not m.mentioned_role_ids for e in m.embeds]
    assert sorted(others) == ["[Harbour News] Sponsored: buy a boat", "[Harbour News] Weekly notes"]

    posts = r.messages("forum")
    assert sorted(m.thread_name or "" for m in posts) == [
        "News Desk: Sponsored: buy a boat",
        "News Desk: Version 2 release",
        "News Desk: Weekly notes",
    ]
    assert all(m.applied_tags == [news_tag] for m in posts)


async def test_edits_follow_the_source(relay: Any) -> None:
    r: Relay = await relay(
        {"edits": "follow_edits = true", "forum": "forum = true\nfollow_edits = true"}
    )
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds of 80 km/h"), *ENTRIES])
    await r.poll_and_deliver()
    (first,) = r.messages("edits")
    (post,) = r.messages("forum")
    assert first.embeds[0]["title"] == "Storm warning"

    # the publisher fixes the title and the text: one edit of each message, no new post
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning lifted", "Calm again"), *ENTRIES])
    await r.poll_and_deliver()
    await r.poll_and_deliver()  # nothing changed since: no second edit
    assert len(r.messages("edits")) == 1
    assert len(r.messages("forum")) == 1
    (edit,) = r.fake.message_edits(r.hooks["edits"][0])
    assert edit.message_id == first.id
    assert edit.body["embeds"][0]["title"] == "Storm warning lifted"
    assert edit.body["embeds"][0]["description"] == "Calm again"
    (forum_edit,) = r.fake.message_edits(r.hooks["forum"][0])
    assert forum_edit.thread_id == post.thread_id  # the edit names the forum post's thread

    # someone deleted the message: the next change ends the following quietly
    r.fake.delete_message(first.id)
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm over", "Calm again"), *ENTRIES])
    await r.poll_and_deliver()
    assert len(r.fake.message_edits(r.hooks["edits"][0])) == 1
    outbox = await r.app.store.outbox_items()
    assert all(state == "sent" for _, _, state in outbox)
    views = await r.app.store.subscription_states()
    assert all(v.enabled for v in views)


async def test_an_edit_to_a_deleted_webhook_disables_the_subscription(relay: Any) -> None:
    r: Relay = await relay({"edits": "follow_edits = true"})
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES])
    await r.poll_and_deliver()
    r.fake.delete_webhook(r.hooks["edits"][0])
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning lifted", "Calm"), *ENTRIES])
    await r.poll_and_deliver()
    (state,) = await r.app.store.subscription_states()
    assert not state.enabled
    assert "webhook was deleted" in (state.disabled_reason or "")


async def test_a_steady_feed_costs_no_edit(relay: Any) -> None:
    r: Relay = await relay({"edits": "follow_edits = true"})
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES])
    await r.poll_and_deliver()
    for _ in range(2):
        r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES])
        await r.poll_and_deliver()
    await asyncio.sleep(0)
    assert r.fake.message_edits(r.hooks["edits"][0]) == []


async def test_edits_are_noticed_when_many_entries_change_at_once(relay: Any) -> None:
    """More than a handful of changed entries take the poller's other path (known keys
    read first, then only what is needed built): edits must be seen there too."""
    older = [(f"b{n}", f"Archive {n}", "Old") for n in range(8)]
    r: Relay = await relay({"edits": "follow_edits = true"})
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES, *older])
    await r.poll_and_deliver()
    rewritten = [(key, f"{title} (updated)", text) for key, title, text in older]
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning lifted", "Calm"), *ENTRIES, *rewritten])
    await r.poll_and_deliver()
    posted = {m.id: m.body["embeds"][0]["title"] for m in r.messages("edits")}
    assert len(posted) == 9  # an item followed for edits is a message of its own
    edited = {e.message_id: e.body["embeds"][0]["title"] for e in r.fake.message_edits()}
    assert edited == {
        message_id: "Storm warning lifted" if title.startswith("Storm") else f"{title} (updated)"
        for message_id, title in posted.items()
    }


async def test_forum_tag_names_in_feeds_are_read_from_discord(tmp_path: Path) -> None:
    from bot.app import config_feeds, resolve_forum_tag_names
    from bot.config import ConfigError

    async with FakeDiscord(bot_token="bot-token", webhook_limit=None) as fake:
        fake.add_guild(GUILD)
        forum = fake.add_channel(7100, guild_id=GUILD, forum=True)
        news_tag, sport_tag = fake.set_forum_tags(forum.id, ["News", "Sport"])
        hook_id, token = fake.add_webhook(forum.id, guild_id=GUILD)

        def config(tags: str, *, bot: bool = True) -> Path:
            path = tmp_path / "config.toml"
            path.write_text(
                f'[discord]\napi_base = "{fake.api_base}"\n'
                + ('token = "bot-token"\n' if bot else "")
                + f'[[feeds]]\nurl = "https://example.com/feed.xml"\n'
                f'webhook = "https://discord.com/api/webhooks/{hook_id}/{token}"\n'
                f"forum = true\nforum_tags = {tags}\n",
                encoding="utf-8",
            )
            return path

        loaded = load_config(config(f'["sport", {news_tag}]'), environ={})
        resolved = await resolve_forum_tag_names(loaded)
        assert resolved == {0: (news_tag, sport_tag)}
        (feed_options,) = [f.options for f in config_feeds(loaded, resolved)]
        assert feed_options["forum_tags"] == [str(news_tag), str(sport_tag)]

        with pytest.raises(ConfigError) as unknown:
            await resolve_forum_tag_names(load_config(config('["Weather"]'), environ={}))
        assert str(unknown.value) == (
            "feeds[0].forum_tags: the forum has no tag named 'Weather'; its tags: News, Sport"
        )
        with pytest.raises(ConfigError) as no_bot:
            load_config(config('["News"]', bot=False), environ={})
        assert "feeds[0].forum_tags: tag names need discord.token" in str(no_bot.value)


async def test_a_deleted_forum_post_ends_its_edits_quietly(relay: Any) -> None:
    r: Relay = await relay({"forum": "forum = true\nfollow_edits = true"})
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning", "Winds"), *ENTRIES])
    await r.poll_and_deliver()
    (post,) = r.messages("forum")
    assert post.thread_id is not None
    await r.fake.delete_channel(post.thread_id)  # a moderator deletes the forum post
    r.feeds.docs["/news.xml"] = feed([("a3", "Storm warning lifted", "Calm"), *ENTRIES])
    await r.poll_and_deliver()
    (state,) = await r.app.store.subscription_states()
    assert state.enabled  # the webhook is fine: only that post is gone
    assert r.fake.message_edits() == []


async def test_a_batch_posted_before_edits_were_followed_is_never_edited(
    relay: Any, tmp_path: Path
) -> None:
    """Five items went out as one message; follow_edits was set afterwards: a change of one
    of them must not replace the whole message by that one item."""
    r: Relay = await relay({"news": ""})
    five = [(f"b{n}", f"Batch {n}", "Text") for n in range(5)]
    r.feeds.docs["/news.xml"] = feed([*five, *ENTRIES])
    await r.poll_and_deliver()
    (batch,) = r.messages("news")
    assert len(batch.embeds) == 5
    await r.app.stop()
    config = tmp_path / "config.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'webhook = "', 'follow_edits = true\nwebhook = "', 1
        ),
        encoding="utf-8",
    )
    app = App(load_config(config, environ={}), clock=r.clock, roles=())
    await app.start()
    try:
        found = await app.store.newest_item(1)
        assert found is not None
        assert shape_of(found[3]).follow_edits
        r.feeds.docs["/news.xml"] = feed([("b0", "Batch 0 fixed", "Text"), *five[1:], *ENTRIES])
        r.clock.advance(2 * 3600)
        await app.poller.poll_due()
        await app.poller.flush()
        await app.deliverer.deliver_due()
    finally:
        await app.stop()
    assert r.fake.message_edits() == []
