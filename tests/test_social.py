"""Bluesky and Mastodon parsers (pure) and the fake servers other tests fetch them from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.models import Item
from bot.sources.bluesky import parse_author_feed, post_url, rich_text
from bot.sources.feed import ParsedFeed, ParseError, build_item, normalise_link, parse_feed
from bot.sources.mastodon import parse_account_id, parse_statuses
from tests.fakes.fake_social import FakeSocial

FIXTURES = Path(__file__).parent / "fixtures" / "social"
BSKY_PROFILE = "https://bsky.app/profile/alice.bsky.social"
MASTO_PROFILE = "https://social.example/@alice"
ALICE_DID = "did:plc:a7r3bz2kq6xw4yj5nvm2c8dp"


def bluesky(**flags: bool) -> ParsedFeed:
    body = (FIXTURES / "bluesky_author_feed.json").read_bytes()
    options = {"include_reposts": True, "include_replies": True, **flags}
    return parse_author_feed(body, profile_url=BSKY_PROFILE, **options)


def mastodon() -> ParsedFeed:
    body = (FIXTURES / "mastodon_statuses.json").read_bytes()
    return parse_statuses(body, profile_url=MASTO_PROFILE)


def items(feed: ParsedFeed) -> list[Item]:
    out = []
    for entry in feed.entries:
        assert entry.item is not None
        assert entry.raw is None
        assert build_item(feed, entry) is entry.item
        out.append(entry.item)
    return out


def by_rkey(feed: ParsedFeed, rkey: str) -> Item:
    return next(i for i in items(feed) if i.key.endswith(f"/{rkey}"))


# -- Bluesky --------------------------------------------------------------------------


def test_bluesky_feed_info_and_entries_in_document_order() -> None:
    feed = bluesky()
    assert feed.info.title == "Alice Liddell 🐇 (@alice.bsky.social) on Bluesky"
    assert feed.info.kind == "bluesky"
    assert feed.info.link == BSKY_PROFILE
    assert feed.info.icon is not None
    assert "bafkreialiceavatar" in feed.info.icon
    rkeys = [e.key.rsplit("/", 1)[1] for e in feed.entries]
    assert rkeys == [
        "3lplain0001",
        "3limages0002",
        "3lbobpost0003",
        "3lreply0004",
        "3lquote0005",
        "3lrwm0006",
        "3lexternal0007",
    ]
    assert feed.raw_refs == tuple((e.key, e.link_norm) for e in feed.entries)
    for entry in feed.entries:
        assert entry.key.startswith("at://")
        assert entry.link is not None
        assert entry.link_norm == normalise_link(entry.link)
        assert entry.published is not None
        assert entry.published.tzinfo is not None
        assert entry.item is not None
        assert entry.item.social is not None
        assert entry.item.social.network == "bluesky"


def test_bluesky_plain_post_facets_use_utf8_byte_offsets() -> None:
    post = by_rkey(bluesky(), "3lplain0001")
    assert post.link == "https://bsky.app/profile/alice.bsky.social/post/3lplain0001"
    assert post.key == f"at://{ALICE_DID}/app.bsky.feed.post/3lplain0001"
    # the emoji before the link are 7 bytes but 2 code points: offsets are bytes
    assert "[example.com/tea-party…](https://example.com/tea-party?utm_source=bsky)" in post.summary
    assert "[@carol.bsky.social](https://bsky.app/profile/did:plc:c4r0lz8y2x6w4v2u0t8s6r4q)" in (
        post.summary
    )
    assert "[\\#MadHatter](https://bsky.app/hashtag/MadHatter)" in post.summary
    assert "\\*not\\* a drill" in post.summary  # plain text is not markdown
    assert post.published == datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert post.social is not None
    assert post.social.kind == "post"
    assert post.social.author_name == "Alice Liddell 🐇"
    assert post.social.author_handle == "@alice.bsky.social"
    assert post.social.author_url == BSKY_PROFILE
    assert post.social.images == ()
    assert post.title.startswith("Tea party")


def test_bluesky_four_images_are_the_fullsize_ones() -> None:
    post = by_rkey(bluesky(), "3limages0002")
    assert post.social is not None
    assert len(post.social.images) == 4
    assert all("/feed_fullsize/" in url for url in post.social.images)
    assert [u.rsplit("/", 1)[1] for u in post.social.images] == [
        f"bafkreiimg{n}@jpeg" for n in range(1, 5)
    ]
    assert post.image == post.social.images[0]


def test_bluesky_repost_keeps_the_reposter_and_names_the_original_author() -> None:
    post = by_rkey(bluesky(), "3lbobpost0003")
    assert post.social is not None
    assert post.social.kind == "repost"
    assert post.social.author_name == "Alice Liddell 🐇"  # the profile owner
    assert post.social.context_name == "Bob Builder"
    assert post.social.context_handle == "@bob.example.com"
    assert post.link == "https://bsky.app/profile/bob.example.com/post/3lbobpost0003"
    assert post.summary == "New bridge design is up: sturdier, cheaper, greener."
    assert post.published == datetime(2025, 3, 10, 10, tzinfo=UTC)  # when reposted


def test_bluesky_reply_names_the_parent_author() -> None:
    post = by_rkey(bluesky(), "3lreply0004")
    assert post.social is not None
    assert post.social.kind == "reply"
    assert (post.social.context_name, post.social.context_handle) == ("Carol", "@carol.bsky.social")


def test_bluesky_quote_shows_the_quoted_text_briefly() -> None:
    post = by_rkey(bluesky(), "3lquote0005")
    assert post.social is not None
    assert post.social.kind == "quote"
    # Dave has an empty display name: his handle stands in
    assert post.social.context_name == "dave.bsky.social"
    assert post.summary.startswith("Absolutely not.\n\n> Unpopular opinion: tea is better cold.")
    assert "(https://bsky.app/profile/dave.bsky.social/post/3ldave0005)" in post.summary


def test_bluesky_record_with_media_has_images_and_the_quote() -> None:
    post = by_rkey(bluesky(), "3lrwm0006")
    assert post.social is not None
    assert post.social.kind == "quote"
    assert post.social.context_name == "Bob Builder"
    assert len(post.social.images) == 2
    assert "> New bridge design is up" in post.summary


def test_bluesky_external_card_is_a_link_line_and_its_thumbnail() -> None:
    post = by_rkey(bluesky(), "3lexternal0007")
    assert post.social is not None
    assert "🔗 [Tea prices soar](https://news.example.org/story)" in post.summary
    assert post.social.images == (post.image,)


def test_bluesky_flags_leave_out_reposts_and_replies() -> None:
    rkeys = {e.key.rsplit("/", 1)[1] for e in bluesky(include_reposts=False).entries}
    assert "3lbobpost0003" not in rkeys
    assert "3lreply0004" in rkeys
    rkeys = {e.key.rsplit("/", 1)[1] for e in bluesky(include_replies=False).entries}
    assert "3lreply0004" not in rkeys
    assert "3lbobpost0003" in rkeys
    feed = bluesky(include_reposts=False, include_replies=False)
    assert len(feed.entries) == 5
    assert feed.raw_refs == tuple((e.key, e.link_norm) for e in feed.entries)


def test_bluesky_duplicate_keys_are_dropped_but_counted_in_refs() -> None:
    document = json.loads((FIXTURES / "bluesky_author_feed.json").read_text())
    document["feed"].append(document["feed"][0])
    feed = parse_author_feed(
        json.dumps(document).encode(),
        profile_url=BSKY_PROFILE,
        include_reposts=True,
        include_replies=True,
    )
    assert len(feed.entries) == 7
    assert len(feed.raw_refs) == 8


def test_bluesky_empty_feed_takes_its_title_from_the_url() -> None:
    feed = parse_author_feed(
        b'{"feed": []}', profile_url=BSKY_PROFILE, include_reposts=True, include_replies=True
    )
    assert feed.entries == ()
    assert feed.info.title == "@alice.bsky.social on Bluesky"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"<html><body>hi</body></html>", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "not an object"),
        (b'{"error": "InvalidRequest", "message": "Profile not found"}', "Profile not found"),
        (b'{"feed": "nope"}', "no feed list"),
        (b'{"posts": []}', "no feed list"),
    ],
)
def test_bluesky_not_an_author_feed_is_one_sentence(body: bytes, words: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_author_feed(
            body, profile_url=BSKY_PROFILE, include_reposts=True, include_replies=True
        )
    message = str(caught.value)
    assert message.startswith("not a Bluesky author feed")
    assert words in message
    assert "\n" not in message


def test_bluesky_odd_entries_are_skipped_not_fatal() -> None:
    document = {
        "feed": [
            None,
            {"post": None},
            {"post": {"uri": "https://not-at-uri"}},
            {"post": {"uri": "at://did:plc:x/app.bsky.feed.like/3l", "author": {}}},
            {
                "post": {
                    "uri": f"at://{ALICE_DID}/app.bsky.feed.post/3lok",
                    "author": {"did": ALICE_DID, "handle": "alice.bsky.social"},
                    "record": {"text": 5, "createdAt": "garbage", "facets": "x"},
                    "embed": {"$type": "app.bsky.embed.images#view", "images": [None, {"x": 1}]},
                    "indexedAt": "2025-01-01T00:00:00Z",
                }
            },
        ]
    }
    feed = parse_author_feed(
        json.dumps(document).encode(),
        profile_url=BSKY_PROFILE,
        include_reposts=True,
        include_replies=True,
    )
    (item,) = items(feed)
    assert item.published == datetime(2025, 1, 1, tzinfo=UTC)
    assert item.title == "Post by alice.bsky.social"
    assert feed.info.title == "@alice.bsky.social on Bluesky"


def link(start: int, end: int, uri: str = "https://e.com/") -> dict[str, Any]:
    return {
        "index": {"byteStart": start, "byteEnd": end},
        "features": [{"$type": "app.bsky.richtext.facet#link", "uri": uri}],
    }


def test_rich_text_ignores_bad_facets() -> None:
    text = "héllo world"  # "é" is two bytes
    assert rich_text(text, [link(0, 6)]) == "[héllo](https://e.com/)" + " world"
    assert rich_text(text, [link(0, 2)]) == text  # cuts "é" in two
    assert rich_text(text, [link(7, 99)]) == text  # past the end
    assert rich_text(text, [link(3, 3)]) == text  # empty
    assert rich_text(text, [link(0, 6, "javascript:alert(1)")]) == text
    overlapping = rich_text(text, [link(0, 6), link(3, 12)])
    assert overlapping == "[héllo](https://e.com/) world"
    assert rich_text("a b", [link(1, 2)]) == "a b"  # a blank label links nothing


def test_rich_text_escapes_markdown_and_link_parens() -> None:
    text = "see [this](x) *now* (http://e.com/a_(b))"
    start = text.encode().index(b"http")
    out = rich_text(text, [link(start, len(text.encode()) - 1, "http://e.com/a_(b)")])
    assert out.startswith("see \\[this\\](x) \\*now\\* ([http://e.com/a\\_(b)](")
    assert "(http://e.com/a_%28b%29)" in out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=60),
    st.lists(st.tuples(st.integers(-5, 80), st.integers(-5, 80)), max_size=6),
)
def test_rich_text_never_fails(text: str, spans: list[tuple[int, int]]) -> None:
    out = rich_text(text, [link(a, b) for a, b in spans])
    assert isinstance(out, str)


def test_post_url() -> None:
    assert post_url(f"at://{ALICE_DID}/app.bsky.feed.post/3abc", "a.b") == (
        "https://bsky.app/profile/a.b/post/3abc"
    )
    assert post_url(f"at://{ALICE_DID}/app.bsky.feed.post/3abc", "") == (
        f"https://bsky.app/profile/{ALICE_DID}/post/3abc"
    )
    assert post_url(f"at://{ALICE_DID}/app.bsky.feed.repost/3abc", "a.b") is None
    assert post_url("https://bsky.app/x", "a.b") is None


# -- Mastodon -------------------------------------------------------------------------


def status(feed: ParsedFeed, status_id: str) -> Item:
    return next(i for i in items(feed) if i.key.endswith(f"/{status_id}"))


def test_mastodon_account_id() -> None:
    assert parse_account_id((FIXTURES / "mastodon_lookup.json").read_bytes()) == (
        "109345678901234567"
    )
    assert parse_account_id(b'{"id": 42}') == "42"


@pytest.mark.parametrize(
    "body",
    [b"", b"nope", b"[]", b'{"error": "Record not found"}', b'{"id": null}', b'{"id": "a/b"}'],
)
def test_mastodon_account_id_errors(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^not a Mastodon account"):
        parse_account_id(body)


def test_mastodon_feed_info_and_entries() -> None:
    feed = mastodon()
    assert feed.info.title == "Alice ✨ (@alice@social.example) on Mastodon"
    assert feed.info.kind == "mastodon"
    assert feed.info.icon is not None
    assert feed.info.icon.endswith("avatar.png")
    ids = [e.key.rsplit("/", 1)[1] for e in feed.entries]
    # the followers-only status (…002) is never relayed
    assert ids == [
        "113000000000000007",
        "112999999999999999",
        "113000000000000005",
        "113000000000000004",
        "113000000000000003",
        "113000000000000001",
    ]
    assert feed.raw_refs == tuple((e.key, e.link_norm) for e in feed.entries)
    for item in items(feed):
        assert item.social is not None
        assert item.social.network == "mastodon"
        assert item.social.author_handle == "@alice@social.example"


def test_mastodon_html_becomes_discord_markdown() -> None:
    post = status(mastodon(), "113000000000000007")
    assert post.key == "https://social.example/users/alice/statuses/113000000000000007"
    assert post.link == "https://social.example/@alice/113000000000000007"
    assert "https://example.com/tea-party" in post.summary
    assert "[@carol](https://third.example/@carol)" in post.summary
    assert "[#MadHatter](https://social.example/tags/MadHatter)" in post.summary
    assert "& **bold** claims" in post.summary
    assert "<p>" not in post.summary
    assert "<span" not in post.summary
    assert post.social is not None
    assert post.social.images == (
        "https://files.social.example/cache/preview_cards/images/000/tea.jpg",
    )


def test_mastodon_boost_is_a_repost_of_the_original() -> None:
    post = status(mastodon(), "112999999999999999")
    assert post.key == "https://other.example/users/bob/statuses/112999999999999999"
    assert post.link == "https://other.example/@bob/112999999999999999"
    assert post.summary == "New bridge design is up: sturdier, cheaper, greener."
    assert post.published == datetime(2025, 3, 10, 11, tzinfo=UTC)  # the boost's time
    assert post.social is not None
    assert post.social.kind == "repost"
    assert post.social.author_name == "Alice ✨"
    assert (post.social.context_name, post.social.context_handle) == ("Bob", "@bob@other.example")
    assert len(post.social.images) == 1


def test_mastodon_reply_names_the_mentioned_account() -> None:
    post = status(mastodon(), "113000000000000005")
    assert post.social is not None
    assert post.social.kind == "reply"
    assert post.social.context_handle == "@carol@third.example"
    assert post.social.context_name == "carol"


def test_mastodon_reply_to_self_names_the_owner() -> None:
    statuses = json.loads((FIXTURES / "mastodon_statuses.json").read_text())
    reply = statuses[2]
    reply["in_reply_to_account_id"] = reply["account"]["id"]
    reply["mentions"] = []
    feed = parse_statuses(json.dumps([reply]).encode(), profile_url=MASTO_PROFILE)
    (post,) = items(feed)
    assert post.social is not None
    assert (post.social.kind, post.social.context_name) == ("reply", "Alice ✨")


def test_mastodon_content_warning_hides_text_and_images() -> None:
    post = status(mastodon(), "113000000000000004")
    assert post.summary.startswith("⚠️ **CW: Book spoilers**\n||The ending of the book")
    assert "||[image 1](https://files.social.example/" in post.summary
    assert post.title == "CW: Book spoilers"  # the hidden text stays out of thread names
    assert post.social is not None
    assert post.social.images == ()  # an embed cannot blur a sensitive picture
    assert post.image is None


def test_mastodon_media_up_to_four_with_previews_for_video() -> None:
    post = status(mastodon(), "113000000000000003")
    assert post.social is not None
    assert len(post.social.images) == 4
    assert post.social.images[0].endswith("/113000000000000301/original/file.jpg")
    assert post.social.images[2].endswith("/113000000000000303/small/file.png")  # video
    assert post.social.images[3].endswith("/113000000000000304/small/file.png")  # gifv
    assert post.summary == "Garden photos\nand a video"


def test_mastodon_quote() -> None:
    post = status(mastodon(), "113000000000000001")
    assert post.social is not None
    assert post.social.kind == "quote"
    assert post.social.context_name == "Dave D."
    assert "> Unpopular opinion: tea is better cold." in post.summary


def test_mastodon_unknown_fields_and_odd_values() -> None:
    odd = [
        None,
        {"visibility": "public"},  # no uri
        {"visibility": "direct", "uri": "https://x/1"},
        {"visibility": "public", "uri": "https://x/2", "content": None, "account": "?"},
    ]
    feed = parse_statuses(json.dumps(odd).encode(), profile_url=MASTO_PROFILE)
    (post,) = items(feed)
    assert post.key == "https://x/2"
    assert feed.info.title == "@alice@social.example on Mastodon"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"<rss/>", "not valid JSON"),
        (b"{}", "not a list"),
        (b'{"error": "This API requires an authenticated user"}', "authenticated user"),
    ],
)
def test_mastodon_statuses_errors(body: bytes, words: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_statuses(body, profile_url=MASTO_PROFILE)
    assert str(caught.value).startswith("not a Mastodon status list")
    assert words in str(caught.value)


# -- the fake servers -----------------------------------------------------------------


async def test_fake_social_serves_the_real_paths() -> None:
    async with FakeSocial() as social, aiohttp.ClientSession() as http:
        path = "/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social&limit=30"
        async with http.get(social.url(path)) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            feed = parse_author_feed(
                await response.read(),
                profile_url=BSKY_PROFILE,
                include_reposts=True,
                include_replies=True,
            )
        assert len(feed.entries) == 7
        path = "/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social&filter=posts_no_replies"
        async with http.get(social.url(path)) as response:
            assert len((await response.json())["feed"]) == 6
        async with http.get(
            social.url(f"/xrpc/app.bsky.feed.getAuthorFeed?actor={ALICE_DID}")
        ) as r:
            assert r.status == 200
        async with http.get(social.url("/xrpc/app.bsky.feed.getAuthorFeed?actor=nobody")) as r:
            assert r.status == 400
            assert (await r.json())["message"] == "Profile not found"

        async with http.get(social.url("/api/v1/accounts/lookup?acct=alice")) as response:
            account_id = parse_account_id(await response.read())
        assert account_id == social.mastodon_account_id
        async with http.get(social.url("/api/v1/accounts/lookup?acct=nobody")) as response:
            assert response.status == 404
        path = f"/api/v1/accounts/{account_id}/statuses?limit=40&exclude_reblogs=true"
        async with http.get(social.url(path)) as response:
            feed = parse_statuses(await response.read(), profile_url=MASTO_PROFILE)
        assert all(i.social and i.social.kind != "repost" for i in items(feed))
        assert len(feed.entries) == 5

        async with http.get(social.url("/@alice.rss")) as response:
            assert response.status == 200
            body, etag = await response.read(), response.headers["ETag"]
            rss = parse_feed(body, url=social.url("/@alice.rss"), headers=dict(response.headers))
        assert rss.info.title == "Alice ✨"
        assert len(rss.entries) == 4  # no boosts, replies or private posts
        async with http.get(social.url("/@alice.rss"), headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        assert social.hits["/@alice.rss"] == 2


async def test_fake_social_api_can_demand_authentication() -> None:
    async with FakeSocial() as social, aiohttp.ClientSession() as http:
        social.api_unauthorized = True
        for path in (
            "/xrpc/app.bsky.feed.getAuthorFeed?actor=alice.bsky.social",
            "/api/v1/accounts/lookup?acct=alice",
            f"/api/v1/accounts/{social.mastodon_account_id}/statuses",
        ):
            async with http.get(social.url(path)) as response:
                assert response.status == 401, path
                assert "error" in await response.json()
        async with http.get(social.url("/@alice.rss")) as response:
            assert response.status == 200  # the RSS fallback still works
