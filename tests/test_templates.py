"""Message templates: syntax, errors for a person, rendering, values of an item."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.models import FeedInfo, Item, SocialPost
from bot.templates import (
    DATE_NAMES,
    ITEM_NAMES,
    TEMPLATE_MAX,
    Placeholder,
    Template,
    TemplateError,
    compile_template,
    item_values,
)

WHEN = datetime(2024, 3, 5, 14, 7, 9, tzinfo=UTC)
UNIX = int(WHEN.timestamp())

FEED = FeedInfo(title="Example\nBlog  ", link="https://blog.example/", icon=None, kind="rss")

ITEM = Item(
    key="urn:item:1",
    title="  Hello\n  world  ",
    link=" https://blog.example/hello ",
    summary="\n**Bold** summary\n\nsecond paragraph\n",
    author="Ann\tAuthor",
    published=WHEN,
    image="https://blog.example/hello.png",
    categories=("news", "  ", "release\nnotes"),
)

POST = Item(
    key="at://did:plc:alice/post/1",
    title="",
    link="https://bsky.app/profile/alice/post/1",
    summary="Hello from the sky",
    author=None,
    published=None,
    image=None,
    social=SocialPost(
        author_name="Alice  A.",
        author_handle="@alice.bsky.social",
        images=("javascript:alert(1)", "https://cdn.example/1.jpg", "https://cdn.example/2.jpg"),
        network="bluesky",
    ),
)


def render(text: str, **values: str | datetime | None) -> str:
    return compile_template(text, names=lambda _: True).render(values)


def error(
    text: str,
    names: Callable[[str], bool] | Collection[str] = ITEM_NAMES,
    date_names: Collection[str] = DATE_NAMES,
) -> str:
    with pytest.raises(TemplateError) as caught:
        compile_template(text, names=names, date_names=date_names)
    return str(caught.value)


# -- values of an item ---------------------------------------------------------------


def test_item_values_cover_every_name() -> None:
    values = item_values(ITEM, FEED)
    assert set(values) == ITEM_NAMES
    assert values == {
        "title": "Hello world",
        "link": "https://blog.example/hello",
        "summary": "**Bold** summary\n\nsecond paragraph",
        "author": "Ann Author",
        "published": WHEN,
        "source_title": "Example Blog",
        "source_link": "https://blog.example/",
        "categories": "news, release notes",
        "image": "https://blog.example/hello.png",
        "id": "urn:item:1",
        "handle": "",
        "display_name": "",
    }


def test_item_values_of_a_social_post() -> None:
    values = item_values(POST, FEED)
    assert values["title"] == ""
    assert values["author"] == "Alice A."  # no author: the display name
    assert values["display_name"] == "Alice A."
    assert values["handle"] == "@alice.bsky.social"
    assert values["image"] == "https://cdn.example/1.jpg"  # the first safe one
    assert values["published"] is None
    assert values["categories"] == ""
    assert values["id"] == "at://did:plc:alice/post/1"


def test_item_values_drop_unsafe_links_and_invisible_titles() -> None:
    item = Item(
        key="k",
        title="\u200b \u200d",
        link="javascript:alert(1)",
        summary="",
        author=None,
        published=None,
        image="ftp://example.org/a.png",
    )
    feed = FeedInfo(title="", link="not a url", icon=None, kind="atom")
    values = item_values(item, feed)
    assert values["title"] == ""
    assert values["link"] == ""
    assert values["image"] == ""
    assert values["source_link"] == ""
    assert values["author"] == ""


ITEM_RENDERED = {
    "title": "Hello world",
    "link": "https://blog.example/hello",
    "summary": "**Bold** summary\n\nsecond paragraph",
    "author": "Ann Author",
    "published": f"<t:{UNIX}:f>",
    "source_title": "Example Blog",
    "source_link": "https://blog.example/",
    "categories": "news, release notes",
    "image": "https://blog.example/hello.png",
    "id": "urn:item:1",
    "handle": "",
    "display_name": "",
}
POST_RENDERED = ITEM_RENDERED | {
    "title": "",
    "link": "https://bsky.app/profile/alice/post/1",
    "summary": "Hello from the sky",
    "author": "Alice A.",
    "published": "",
    "categories": "",
    "image": "https://cdn.example/1.jpg",
    "id": "at://did:plc:alice/post/1",
    "handle": "@alice.bsky.social",
    "display_name": "Alice A.",
}


@pytest.mark.parametrize("name", sorted(ITEM_NAMES))
def test_every_placeholder_renders_from_an_item(name: str) -> None:
    template = compile_template(f"<{{{name}}}>")
    assert template.render(item_values(ITEM, FEED)) == f"<{ITEM_RENDERED[name]}>"
    assert template.render(item_values(POST, FEED)) == f"<{POST_RENDERED[name]}>"


def test_social_post_template() -> None:
    template = compile_template("**{display_name}** ({handle}): {summary}\n{link}")
    assert template.render(item_values(POST, FEED)) == (
        "**Alice A.** (@alice.bsky.social): Hello from the sky\n"
        "https://bsky.app/profile/alice/post/1"
    )


# -- syntax --------------------------------------------------------------------------


def test_literal_text_and_escaped_braces() -> None:
    template = compile_template("{{title}} is {title}}}")
    assert template.render({"title": "T"}) == "{title} is T}"
    assert compile_template("{{}}").render({}) == "{}"


def test_names_and_is_constant() -> None:
    template = compile_template("{title|link} {published:R} {title}")
    assert template.names == {"title", "link", "published"}
    assert not template.is_constant
    constant = compile_template("just {{text}}")
    assert constant.is_constant
    assert constant.names == frozenset()
    assert constant.source == "just {{text}}"
    assert compile_template("").render({}) == ""


def test_compiled_form_is_literals_and_placeholders() -> None:
    template = compile_template("a{{b{title}c")
    assert template.parts == ("a{b", Placeholder(("title",), None, 5), "c")


def test_missing_and_blank_values_render_empty() -> None:
    template = compile_template("[{title}]")
    assert template.render({}) == "[]"
    assert template.render({"title": None}) == "[]"
    assert template.render({"title": "   "}) == "[]"


def test_fallbacks_take_the_first_non_blank_value() -> None:
    template = compile_template("{ title | summary |link }")
    assert template.render({"title": "T", "summary": "S"}) == "T"
    assert template.render({"title": " \n", "summary": "S", "link": "L"}) == "S"
    assert template.render({"link": "L"}) == "L"
    assert template.render({}) == ""


def test_format_applies_to_the_winning_fallback() -> None:
    template = compile_template("{summary|published:D}")
    assert template.render({"summary": "", "published": WHEN}) == f"<t:{UNIX}:D>"
    assert template.render({"summary": "S", "published": WHEN}) == "S"  # text ignores it


# -- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["t", "T", "d", "D", "f", "F", "R"])
def test_discord_styles(style: str) -> None:
    assert render(f"{{published:{style}}}", published=WHEN) == f"<t:{UNIX}:{style}>"


def test_date_without_format_is_a_full_discord_timestamp() -> None:
    assert render("{published}", published=WHEN) == f"<t:{UNIX}:f>"


def test_naive_date_is_utc() -> None:
    naive = WHEN.replace(tzinfo=None)
    assert render("{published}", published=naive) == f"<t:{UNIX}:f>"
    assert render("{published:%H:%M}", published=naive) == "14:07"


def test_strftime_format_with_colons_in_utc() -> None:
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    assert render("{published:%Y-%m-%d %H:%M:%S %Z}", published=paris) == (
        "2024-03-05 14:07:09 UTC"
    )


def test_bad_strftime_format_renders_empty() -> None:
    # CPython's strftime refuses a lone surrogate; that is the portable refusal.
    assert render("[{published:%H\ud800}]", published=WHEN) == "[]"


def test_date_at_the_edge_of_the_calendar_renders_empty() -> None:
    edge = datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
    assert render("[{published:%Y}]", published=edge) == "[]"


def test_string_value_ignores_the_format() -> None:
    assert render("{published:R}", published="yesterday") == "yesterday"


# -- errors --------------------------------------------------------------------------


def test_unclosed_brace() -> None:
    message = error("Read it: {title")
    assert message == 'unclosed "{" at position 10: write "{{" for a literal brace'


def test_single_closing_brace() -> None:
    message = error("abcd} {title}")
    assert message == 'single "}" at position 5: write "}}" for a literal brace'


def test_empty_placeholder() -> None:
    assert error("ab{}") == 'empty placeholder "{}" at position 3'
    assert "position 1" in error("{ :R}")


def test_brace_inside_a_placeholder() -> None:
    message = error("{title {link}")
    assert "position 8" in message
    assert "position 1" in message


@pytest.mark.parametrize(
    ("text", "position", "shown"),
    [
        ("{ti tle}", 4, "a space"),
        ("{title()}", 7, '"("'),
        ("x {a[0]}", 5, '"["'),
        ("{'title'}", 2, '"\'"'),
        ('{"title"}', 2, "a double quote"),
        ("{title.__class__ x}", 17, "a space"),
    ],
)
def test_characters_not_allowed_in_names(text: str, position: int, shown: str) -> None:
    message = error(text, names=lambda _: True)
    assert f"at position {position}:" in message
    assert message.startswith(f"{shown} is not allowed")


def test_empty_fallback_name() -> None:
    message = error("{title||link}")
    assert "position 1" in message
    assert "{title||link}" in message


def test_unknown_placeholder_suggests_the_close_one() -> None:
    message = error("{titel}")
    assert message.startswith(
        "unknown placeholder {titel} at position 1; did you mean {title}? Known: {title}, {link}"
    )
    assert "{display_name}" in message


def test_unknown_placeholder_in_a_fallback() -> None:
    message = error("News: {title|lnk}")
    assert "unknown placeholder {lnk} at position 7; did you mean {link}?" in message


def test_unknown_placeholder_without_a_close_match() -> None:
    message = error("{xyzzy}")
    assert message.startswith("unknown placeholder {xyzzy} at position 1; known: {title}")
    assert "did you mean" not in message


def test_position_in_a_template_of_several_lines() -> None:
    message = error("first line\n  {nope}")
    assert "unknown placeholder {nope} at position 14 (line 2, column 3)" in message


def test_format_on_a_name_that_takes_none() -> None:
    message = error("{title:%H}")
    assert "{title} takes no format (only {published} does)" in message
    assert "position 1" in message
    assert "{link} takes no format" in error("x {link:R}")


def test_empty_format() -> None:
    message = error("{published:}")
    assert "empty format" in message
    assert "{published:}" in message


def test_long_template_is_rejected() -> None:
    compile_template("x" * TEMPLATE_MAX)
    message = error("x" * (TEMPLATE_MAX + 1))
    assert str(TEMPLATE_MAX) in message


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unclosed"):
        compile_template("{")


# -- names as a predicate ------------------------------------------------------------


def webhook_name(name: str) -> bool:
    return name.startswith(("body.", "headers."))


def test_predicate_allows_dotted_names() -> None:
    template = compile_template(
        "{headers.x-github-event} on {body.repository.full_name}", names=webhook_name
    )
    assert template.names == {"headers.x-github-event", "body.repository.full_name"}
    values = {"headers.x-github-event": "push", "body.repository.full_name": "a/b"}
    assert template.render(values) == "push on a/b"


def test_predicate_rejects_names_without_suggestion() -> None:
    assert error("{body.x y}", names=webhook_name).startswith("a space is not allowed")
    message = error("{title}", names=webhook_name)
    assert message == "unknown placeholder {title} at position 1"


def test_custom_date_names() -> None:
    template = compile_template(
        "{body.created_at:R}", names=webhook_name, date_names={"body.created_at"}
    )
    assert template.render({"body.created_at": WHEN}) == f"<t:{UNIX}:R>"
    message = error("{body.x:R}", names=webhook_name, date_names=())
    assert "no placeholder does" in message


# -- properties ----------------------------------------------------------------------

# Pieces of template syntax with random text between, so that a good share of the
# examples compiles with placeholders and the rest fails in every way there is.
template_text = st.lists(
    st.one_of(
        st.sampled_from(
            ["{", "}", "{{", "}}", "|", ":", " ", "\n", "title", "published", "%H:%M", "R"]
        ),
        st.sampled_from(
            ["{title}", "{published:R}", "{ title | link }", "{published:%Q%}", "{body.x-y}"]
        ),
        st.text(max_size=3),
    ),
    max_size=30,
).map("".join)
values = st.dictionaries(
    st.sampled_from(["title", "link", "published", "body.x-y"]) | st.text(max_size=12),
    st.one_of(st.none(), st.text(), st.datetimes(timezones=st.none() | st.timezones())),
)


def compile_or_message(text: str, names: Callable[[str], bool] | Collection[str]) -> Template | str:
    try:
        return compile_template(text, names=names, date_names=ITEM_NAMES)
    except TemplateError as caught:  # any other exception fails the test
        return str(caught)


@given(template_text, values)
def test_compiles_or_raises_template_error_and_renders(
    text: str, given_values: dict[str, str | datetime | None]
) -> None:
    for names in (ITEM_NAMES, lambda _: True):
        result = compile_or_message(text, names)
        if isinstance(result, str):
            assert result
            assert "\n" not in result  # one sentence, on one line
            continue
        assert isinstance(result.render(given_values), str)
        assert isinstance(result.render(dict.fromkeys(result.names, "x")), str)


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=TEMPLATE_MAX))
def test_text_without_braces_renders_to_itself(text: str) -> None:
    template = compile_template(text)
    assert template.is_constant
    assert template.render({}) == text


@given(st.text(max_size=TEMPLATE_MAX // 2))
def test_doubled_braces_render_the_original_text(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")  # at most TEMPLATE_MAX long
    assert compile_template(escaped).render({"title": "T"}) == text
