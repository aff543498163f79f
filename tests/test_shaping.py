"""bot.shaping: settings checked once, messages built from templates within Discord's rules.

No I/O. Discord's rules are those of tests/test_render.py's independent model and the
fake Discord's own validator (the one the delivery tests post to).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.models import Item, SocialPost
from bot.render import render_batch, render_item
from bot.shaping import (
    DEFAULT_SHAPE,
    EMBED_KEYS,
    SettingError,
    parse_settings,
    render_message,
    render_messages,
    shape_of,
)
from tests.fakes.fake_discord import _Errors, _validate_payload
from tests.test_render import FEED, FEEDS, ITEMS, TEXT, check_discord_limits, make_item


def discord_accepts(body: dict[str, Any]) -> None:
    """The independent model of Discord's limits, and the fake Discord's validator."""
    roles = body["allowed_mentions"].get("roles", [])
    # A social post's gallery: further embeds with the post's url and an image only,
    # which Discord shows as one post (the one case where embeds share a url).
    embeds = [e for e in body.get("embeds") or [] if set(e) != {"url", "image"}]
    model = {**body, "allowed_mentions": {"parse": []}}
    if "embeds" in body:
        model["embeds"] = embeds
    check_discord_limits(model)
    assert body["allowed_mentions"]["parse"] == []
    assert all(re.fullmatch(r"[0-9]+", r) for r in roles)
    errors = _Errors()
    _validate_payload(body, errors)
    assert not errors.tree, errors.tree


SOCIAL = SocialPost(
    author_name="Alice",
    author_handle="@alice.bsky.social",
    author_avatar="https://cdn.example/alice.png",
    author_url="https://bsky.app/profile/alice.bsky.social",
    images=("https://cdn.example/1.jpg", "https://cdn.example/2.jpg"),
    network="bluesky",
)


# -- the defaults are today's look ------------------------------------------------------


def test_the_default_shape_renders_exactly_what_render_item_does() -> None:
    for item in (make_item(1), make_item(2, social=SOCIAL), make_item(3, summary="")):
        assert render_message(item, FEED, DEFAULT_SHAPE) == render_item(item, FEED)
        text = parse_settings({"style": "text"})
        assert render_message(item, FEED, text) == render_item(item, FEED, style="text")
    items = [make_item(n) for n in range(12)]
    assert render_messages(items, FEED, DEFAULT_SHAPE) == render_batch(items, FEED)


def test_stored_options_of_older_versions_read_as_before() -> None:
    shape = shape_of({"style": "embed", "batch": False, "forum": True})
    assert shape.embed
    assert not shape.batch
    assert shape.forum
    assert shape_of({"style": "text"}).style == "text"
    # something this version cannot read falls back to the default look, never fails
    assert shape_of({"content": "{nonsense}"}) == replace(DEFAULT_SHAPE)


def test_settings_round_trip_through_storage() -> None:
    raw: dict[str, object] = {
        "content": "**{title}** {link}",
        "embed": {"title": "{title}", "color": 0xFF0000, "footer": "{source_title}"},
        "username": "{source_title}",
        "avatar_url": "https://example.com/a.png",
        "include": ["release", "/v\\d+/i"],
        "exclude": "title:beta",
        "mention_roles": [123, "456"],
        "mention_when": "release",
        "forum": True,
        "thread_title": "{title} ({author})",
        "forum_tags": ["11", 12],
        "follow_edits": True,
    }
    shape = parse_settings(raw)
    again = parse_settings(shape.to_options())
    assert again.to_options() == shape.to_options()
    assert shape.mention_roles == (123, 456)
    assert shape.forum_tags == (11, 12)
    assert shape.to_options()["mention_roles"] == ["123", "456"]


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"content": "{titel}"}, "content", "{title}"),
        ({"embed": {"title": "{title"}}, "embed.title", "position"),
        ({"embed": {"colour": "red"}}, "embed.colour", "unknown embed key"),
        ({"style": "text", "embed": False}, "style", "either style or embed"),
        ({"include": "/(unclosed/"}, "include", "(unclosed"),
        ({"mention_roles": ["@mods"]}, "mention_roles", "role ids"),
        ({"mention_roles": [True]}, "mention_roles", "role ids"),
        ({"forum_tags": list(range(1, 8))}, "forum_tags", "at most 5"),
        ({"follow_edits": "yes"}, "follow_edits", "true or false"),
        ({"colour": 1}, "colour", "unknown setting"),
    ],
)
def test_a_bad_setting_names_its_key(raw: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(SettingError) as caught:
        parse_settings(raw)
    assert caught.value.key == key
    assert words in str(caught.value)


# -- templates --------------------------------------------------------------------------


def test_a_compact_one_line_format() -> None:
    shape = parse_settings({"content": "📰 **{title}** · <{link}>", "embed": False})
    body = render_message(make_item(7), FEED, shape)
    assert body["content"] == "📰 **Story 7** · <https://example.com/story/7>"
    assert "embeds" not in body
    discord_accepts(body)


def test_embed_templates_replace_only_their_parts() -> None:
    shape = parse_settings(
        {
            "embed": {
                "title": "[{source_title}] {title}",
                "description": "{summary} — {published:R}",
                "color": "#ff8800",
                "thumbnail": "{image|source_link}",
                "footer": "via {source_title}",
            }
        }
    )
    item = make_item(3)
    default = render_item(item, FEED)["embeds"][0]
    embed = render_message(item, FEED, shape)["embeds"][0]
    stamp = int(item.published.timestamp())  # type: ignore[union-attr]
    assert embed["title"] == "[Example News] Story 3"
    assert embed["description"] == f"What happened in story **3**. — <t:{stamp}:R>"
    assert embed["color"] == 0xFF8800
    assert embed["thumbnail"] == {"url": "https://example.com/"}
    assert embed["footer"]["text"] == "via Example News"
    # the footer's icon, the link, the author and the time stay as they were
    assert embed["footer"]["icon_url"] == default["footer"]["icon_url"]
    for key in ("url", "author", "timestamp"):
        assert embed[key] == default[key]


def test_a_bad_colour_or_timestamp_falls_back_without_failing() -> None:
    shape = parse_settings({"embed": {"color": "{title}", "timestamp": "{title}"}})
    embed = render_message(make_item(1), FEED, shape)["embeds"][0]
    assert embed["color"] == 0x5865F2
    assert "timestamp" not in embed
    shape = parse_settings({"embed": {"timestamp": "{published}"}})
    embed = render_message(make_item(1), FEED, shape)["embeds"][0]
    assert embed["timestamp"] == "2024-01-02T03:05:05+00:00"


def test_an_empty_rendering_goes_out_in_the_default_look() -> None:
    item = make_item(1, author=None)
    shape = parse_settings(
        {
            "content": "{author}",
            "embed": dict.fromkeys(("title", "description", "footer"), "{author}"),
        }
    )
    body = render_message(replace(item, image=None), FEED, shape)
    # every part came out empty except what the template did not touch: the embed
    # keeps its url and timestamp but shows nothing, so the default embed is sent
    assert body["embeds"] == render_item(item, FEED)["embeds"]
    discord_accepts(body)
    nothing = parse_settings({"content": "{author}", "embed": False})
    body = render_message(item, FEED, nothing)
    assert body["content"] == render_item(item, FEED, style="text")["content"]


def test_identity_templates() -> None:
    shape = parse_settings({"username": "{author} on Discord", "avatar_url": "{image}"})
    body = render_message(make_item(1, image="https://example.com/i.png"), FEED, shape)
    assert body["username"] == "Reporter on"  # "Discord" is refused in webhook names
    assert body["avatar_url"] == "https://example.com/i.png"
    body = render_message(make_item(1, image=None), FEED, shape)
    assert body["avatar_url"] == "https://example.com/icon.png"  # not a URL: the default


def test_social_posts_keep_their_gallery_under_templates() -> None:
    shape = parse_settings({"embed": {"title": "{display_name} ({handle})"}})
    body = render_message(make_item(1, social=SOCIAL), FEED, shape)
    assert body["embeds"][0]["title"] == "Alice (@alice.bsky.social)"
    assert len(body["embeds"]) == 2
    second = {"url": body["embeds"][0]["url"], "image": {"url": SOCIAL.images[1]}}
    assert body["embeds"][1] == second
    discord_accepts(body)


def test_batches_render_each_item_with_the_templates() -> None:
    shape = parse_settings({"embed": {"title": "★ {title}"}})
    items = [make_item(n) for n in range(15)]
    messages = render_messages(items, FEED, shape)
    assert sum(m.count for m in messages) == 15
    titles = [e["title"] for m in messages for e in m.body["embeds"]]
    assert titles == [f"★ Story {n}" for n in range(15)]
    for message in messages:
        discord_accepts(message.body)
    text = parse_settings({"content": "{title}: {link}", "embed": False})
    messages = render_messages(items, FEED, text)
    assert [m.count for m in messages] == [15]
    assert messages[0].body["content"].splitlines()[0] == "Story 0: https://example.com/story/0"


def test_forum_posts_are_titled_by_the_thread_title_and_tagged() -> None:
    shape = parse_settings({"forum": True, "thread_title": "{author}: {title}"})
    body = render_message(make_item(2), FEED, shape)
    assert body["thread_name"] == "Reporter: Story 2"
    shape = parse_settings({"forum": True, "forum_tags": [5, 6]})
    body = render_message(make_item(2, title=""), FEED, shape)
    assert body["thread_name"] == "Example News"  # no title: the feed's
    assert body["applied_tags"] == ["5", "6"]


# -- mentions ---------------------------------------------------------------------------


def test_mentions_lead_the_content_and_ping_only_the_listed_roles() -> None:
    shape = parse_settings({"mention_roles": [111, 222]})
    item = make_item(1, title="@everyone <@&999> <@5> release")
    body = render_message(item, FEED, shape)
    assert body["content"].startswith("<@&111> <@&222>")
    assert body["allowed_mentions"] == {"parse": [], "roles": ["111", "222"]}
    assert body["embeds"] == render_item(item, FEED)["embeds"]
    discord_accepts(body)


def test_mention_when_limits_the_ping_to_matching_items() -> None:
    shape = parse_settings({"mention_roles": [111], "mention_when": "release"})
    yes = render_message(make_item(1, title="v2 release"), FEED, shape)
    no = render_message(make_item(2, title="Weekly notes"), FEED, shape)
    assert yes["content"] == "<@&111>"
    assert yes["allowed_mentions"]["roles"] == ["111"]
    assert "content" not in no
    assert no["allowed_mentions"] == {"parse": []}
    assert shape.stands_alone(make_item(1, title="v2 release"))
    assert not shape.stands_alone(make_item(2, title="Weekly notes"))
    assert parse_settings({"follow_edits": True}).stands_alone(make_item(3))


# -- any template over any item ---------------------------------------------------------

TEMPLATE_PIECES = st.sampled_from(
    [
        "{title}",
        "{link}",
        "{summary}",
        "{author}",
        "{published}",
        "{published:R}",
        "{published:%Y-%m-%d %H:%M}",
        "{source_title}",
        "{source_link}",
        "{categories}",
        "{image}",
        "{id}",
        "{handle}",
        "{display_name}",
        "{summary|title}",
        "{author|source_title|id}",
        "{{",
        "}}",
        "@everyone ",
        "<@&1> ",
        "**",
        "`",
        " ",
        "\n",
        "https://",
        "#ff0000",
        "x" * 300,
    ]
)
TEMPLATES = st.lists(
    st.one_of(TEMPLATE_PIECES, TEXT.map(lambda t: t.replace("{", "").replace("}", ""))), max_size=12
).map("".join)
SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "content": TEMPLATES,
        "embed": st.one_of(
            st.just(False),
            st.dictionaries(st.sampled_from(EMBED_KEYS), TEMPLATES, max_size=len(EMBED_KEYS)),
        ),
        "username": TEMPLATES,
        "avatar_url": TEMPLATES,
        "mention_roles": st.lists(st.integers(1, 2**63), max_size=3),
        "forum": st.booleans(),
        "thread_title": TEMPLATES,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(SHAPES, ITEMS, FEEDS, st.booleans())
def test_any_template_over_any_item_gives_a_request_discord_accepts(
    raw: dict[str, Any], item: Item, feed: Any, social: bool
) -> None:
    try:
        shape = parse_settings(raw)
    except SettingError:
        return  # refused when set: never reaches delivery
    if social:
        item = replace(item, social=SOCIAL)
    body = render_message(item, feed, shape)
    discord_accepts(body)
    pinged = set(body["allowed_mentions"].get("roles", []))
    assert pinged <= {str(r) for r in shape.mention_roles}
    for message in render_messages([item, replace(item, key="b")], feed, shape):
        discord_accepts(message.body)
        assert message.body["allowed_mentions"] == {"parse": []}


def test_a_published_date_in_any_timezone_renders_in_utc() -> None:
    shape = parse_settings({"content": "{published:%Y-%m-%d %H:%M}"})
    item = make_item(1, published=datetime(2024, 5, 1, 23, 30, tzinfo=UTC))
    assert render_message(item, FEED, shape)["content"] == "2024-05-01 23:30"
