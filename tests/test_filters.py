"""bot.filters: splitting, parsing, matching and the time bound of item filters."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import filters
from bot.filters import (
    FIELDS,
    MAX_FIELD_CHARS,
    FilterError,
    ItemFilter,
    Term,
    format_terms,
    matches_any,
    parse_terms,
    split_terms,
)
from bot.models import Item, SocialPost


def item(
    title: str = "",
    summary: str = "",
    *,
    author: str | None = None,
    categories: Sequence[str] = (),
    link: str | None = None,
    social: SocialPost | None = None,
) -> Item:
    return Item(
        key="k",
        title=title,
        link=link,
        summary=summary,
        author=author,
        published=None,
        image=None,
        categories=tuple(categories),
        social=social,
    )


def one(text: str) -> Term:
    (term,) = parse_terms(text)
    return term


def hits(text: str, it: Item) -> bool:
    return one(text).matches(it)


@pytest.fixture
def fresh_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which patterns timed out before, so 'logged once' starts afresh."""
    monkeypatch.setattr(filters, "_timed_out", set())


# -- splitting --------------------------------------------------------------------------


def test_split_plain_terms_strips_and_drops_empty_pieces() -> None:
    assert split_terms(" release ,  , beta,") == ["release", "beta"]
    assert split_terms("") == []
    assert split_terms(" , ,") == []


def test_split_the_discord_example() -> None:
    assert split_terms(r'release, title:"breaking news", /v\d+\.\d+/i, -') == [
        "release",
        'title:"breaking news"',
        r"/v\d+\.\d+/i",
        "-",
    ]


def test_split_keeps_commas_inside_a_regex() -> None:
    assert split_terms("/a,b/, c") == ["/a,b/", "c"]
    assert split_terms("title:/a,b/i, c") == ["title:/a,b/i", "c"]
    assert split_terms("Summary: /x{1,3}/, c") == ["Summary: /x{1,3}/", "c"]


def test_split_an_escaped_slash_does_not_close_the_regex() -> None:
    assert split_terms(r"/a\/,b/, c") == [r"/a\/,b/", "c"]


def test_split_an_unclosed_regex_splits_at_commas() -> None:
    assert split_terms("/abc, def") == ["/abc", "def"]


def test_split_quoted_phrases() -> None:
    assert split_terms('"breaking news", x') == ['"breaking news"', "x"]
    assert split_terms('"hello, world", title:"a, b", c') == ['"hello, world"', 'title:"a, b"', "c"]
    assert split_terms('"say "hi"", x') == ['"say "hi""', "x"]


def test_split_a_slash_inside_a_phrase_is_plain() -> None:
    assert split_terms("and/or, x") == ["and/or", "x"]


# -- parsing ----------------------------------------------------------------------------


def test_prefixes_are_case_insensitive_and_normalised() -> None:
    for name in FIELDS:
        term = one(f"{name.upper()}:  some   thing")
        assert term.field == name
        assert term.text == f"{name}:some thing"


def test_unknown_prefix_is_part_of_the_phrase() -> None:
    term = one("re:invent")
    assert term.field is None
    assert term.text == "re:invent"
    assert term.matches(item("AWS re:Invent keynote"))
    assert not term.matches(item("reinvent"))


def test_quotes_are_optional_and_kept_in_the_text() -> None:
    quoted, bare = parse_terms('"breaking news", breaking news')
    assert quoted.text == '"breaking news"'
    assert bare.text == "breaking news"
    it = item("BREAKING  NEWS: x")
    assert quoted.matches(it)
    assert bare.matches(it)


def test_a_quoted_prefix_is_a_phrase() -> None:
    term = one('"title:foo"')
    assert term.field is None
    assert term.matches(item("the title:foo here"))


def test_a_phrase_with_a_comma_from_a_list_is_quoted() -> None:
    (term,) = parse_terms(["hello, world"])
    assert term.text == '"hello, world"'
    assert term.matches(item("Hello, World!"))


def test_duplicates_are_dropped() -> None:
    assert format_terms(parse_terms("a, A, title:x, Title: x, a")) == "a, A, title:x"


def test_a_sequence_holds_one_term_per_element() -> None:
    terms = parse_terms(["title:/a,b/", "beta", "  ", "/x/i"])
    assert [t.text for t in terms] == ["title:/a,b/", "beta", "/x/i"]
    assert [t.is_regex for t in terms] == [True, False, True]


def test_term_built_directly_compiles_its_pattern() -> None:
    term = Term("title:release", "title")
    assert term == one("title:release")
    assert term.matches(item("New release"))
    with pytest.raises(FilterError):
        Term("title:release", None)


def test_terms_are_hashable_and_compare_by_text_and_field() -> None:
    assert hash(one("/a/i")) == hash(one("/a/i"))
    assert len({one("x"), one("x"), one("title:x")}) == 2
    assert "pattern" not in repr(one("x"))


# -- phrases ----------------------------------------------------------------------------


def test_phrase_matches_whole_words_only() -> None:
    assert hits("release", item("New release!"))
    assert not hits("release", item("prereleased"))
    assert not hits("release", item("releases"))
    assert not hits("release", item("re_release"))


def test_phrase_ignores_case() -> None:
    assert hits("Release", item("NEW RELEASE"))
    assert hits("ÉTÉ", item("un été chaud"))


def test_phrase_inner_whitespace_matches_any_whitespace() -> None:
    assert hits("breaking news", item("breaking\n\tnews"))
    assert not hits("breaking news", item("breakingnews"))


def test_phrase_bounds_only_word_character_sides() -> None:
    assert hits("c++", item("Modern C++ tips"))
    assert hits("c++", item("c++20 is out"))
    assert not hits("c++", item("objc++"))
    assert hits(".net", item("ASP.NET core"))
    assert not hits(".net", item("ASP.NETwork"))
    assert hits("-", item("a - b"))


def test_unprefixed_term_looks_at_title_summary_author_and_categories_not_link() -> None:
    assert hits("rust", item("Rust 2.0"))
    assert hits("rust", item(summary="about rust"))
    assert hits("rust", item(author="Rust Team"))
    assert hits("rust", item(categories=["Rust"]))
    assert not hits("rust", item(link="https://rust.example/"))


def test_prefixed_term_looks_at_its_field_only() -> None:
    it = item("alpha", "beta", author="gamma", categories=["delta"], link="https://x.test/eps")
    assert hits("title:alpha", it)
    assert not hits("title:beta", it)
    assert hits("summary:beta", it)
    assert not hits("summary:alpha", it)
    assert hits("author:gamma", it)
    assert not hits("author:alpha", it)
    assert hits("category:delta", it)
    assert not hits("category:alpha", it)
    assert hits("link:eps", it)
    assert not hits("link:alpha", it)


def test_missing_author_and_link_match_nothing() -> None:
    assert not hits("author:/.*/", item("t"))
    assert not hits("link:/.*/", item("t"))


def test_category_matches_each_category_separately() -> None:
    it = item(categories=["Web Dev", "Security"])
    assert hits("category:security", it)
    assert hits("category:dev", it)
    assert not hits("category:dev security", it)  # would span two categories if joined
    assert hits("category:/^security$/i", it)
    assert not hits("category:/^web dev security$/i", it)


def test_link_prefix() -> None:
    it = item(link="https://www.example.com/posts/42")
    assert hits("link:example.com", it)
    assert hits("link:/\\/posts\\/\\d+$/", it)
    assert not hits("link:example", item(link="https://examples.org/"))


def test_author_looks_at_a_social_posts_handle() -> None:
    social = SocialPost(author_name="Alice", author_handle="@alice.bsky.social")
    it = item(author="Alice", social=social)
    assert hits("author:@alice.bsky.social", it)
    assert hits("alice.bsky.social", it)
    assert not hits("author:bob", it)


def test_text_beyond_the_field_cap_is_not_searched() -> None:
    padding = "a " * (MAX_FIELD_CHARS // 2)
    assert hits("needle", item(summary="needle " + padding))
    assert not hits("needle", item(summary=padding + "needle"))


# -- regexes ----------------------------------------------------------------------------


def test_regex_is_case_sensitive_unless_flagged() -> None:
    assert hits(r"/v\d+\.\d+/", item("ships v1.2"))
    assert not hits("/Beta/", item("beta"))
    assert hits("/Beta/i", item("beta"))


def test_regex_flags_m_s_x() -> None:
    text = item(summary="first\nsecond")
    assert not hits("summary:/^second/", text)
    assert hits("summary:/^second/m", text)
    assert not hits("summary:/first.second/", text)
    assert hits("summary:/first.second/s", text)
    assert hits("summary:/ first \\s second # comment/x", text)
    assert hits("summary:/FIRST.SECOND/is", text)


def test_regex_with_escaped_slash() -> None:
    assert hits(r"/and\/or/", item("this and/or that"))


def test_regex_terms_are_flagged() -> None:
    f = ItemFilter(include=parse_terms("a, /b/"))
    assert f.has_regex
    assert not ItemFilter(include=parse_terms("a"), exclude=parse_terms("b")).has_regex


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("/(/", "not a valid regex"),
        ("title:/[a-/", "not a valid regex"),
        ("/a/q", "unknown regex flag"),
        ("/a/I", "unknown regex flag"),
        ("/a/ i", "text after the regex"),
        ("/abc", "no closing /"),
        ("//", "empty regex"),
        ('"abc', "does not close"),
        ('""', "nothing to match"),
        ("title:", "nothing to match"),
        ("/(?:a{100}){100}/", "repeats too much"),
    ],
)
def test_errors_name_the_term(text: str, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_terms(f"ok, {text}")
    message = str(caught.value)
    assert repr(text) in message
    assert words in message
    assert message.endswith(".")
    assert "\n" not in message


def test_bad_regex_error_includes_the_regex_error() -> None:
    with pytest.raises(FilterError, match="missing \\)"):
        parse_terms("/(/")


def test_too_long_term() -> None:
    long = "x" * 301
    with pytest.raises(FilterError, match="at most 300") as caught:
        parse_terms(["ok", long])
    assert "x" * 40 in str(caught.value)
    assert len(parse_terms(["x" * 300])) == 1


def test_too_long_regex() -> None:
    with pytest.raises(FilterError, match="at most 300"):
        parse_terms("title:/" + "a" * 300 + "/")


def test_too_many_terms_names_the_first_extra_one() -> None:
    assert len(parse_terms([f"t{i}" for i in range(50)])) == 50
    with pytest.raises(FilterError, match="at most 50") as caught:
        parse_terms(", ".join(f"t{i}" for i in range(51)))
    assert "'t50'" in str(caught.value)
    with pytest.raises(FilterError, match="at most 50"):
        parse_terms([f"t{i}" for i in range(60)])


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


# -- include and exclude ----------------------------------------------------------------


def test_empty_filter_passes_everything() -> None:
    f = ItemFilter()
    assert f.empty
    assert f.passes(item("anything"))


def test_include_needs_one_match() -> None:
    f = ItemFilter(include=parse_terms("rust, go"))
    assert not f.empty
    assert f.passes(item("Go 1.23"))
    assert f.passes(item("Rust news"))
    assert not f.passes(item("Python news"))


def test_exclude_wins_over_include() -> None:
    f = ItemFilter(include=parse_terms("release"), exclude=parse_terms("title:/\\brc\\d/i, beta"))
    assert f.passes(item("Release 2.0"))
    assert not f.passes(item("Release 2.0-RC1"))
    assert not f.passes(item("Release", "beta testers wanted"))
    assert not f.passes(item("Nightly"))


def test_exclude_only() -> None:
    f = ItemFilter(exclude=parse_terms("category:sponsored"))
    assert f.passes(item("News"))
    assert not f.passes(item("News", categories=["Sponsored"]))


def test_matches_any() -> None:
    terms = parse_terms("a, b")
    assert matches_any(terms, item("b"))
    assert not matches_any(terms, item("c"))
    assert not matches_any((), item("c"))


# -- formatting -------------------------------------------------------------------------


def test_format_terms_round_trip() -> None:
    typed = r'release,  TITLE: "breaking   news", /v\d+\.\d+/i, category:/a,b/, -, c++'
    terms = parse_terms(typed)
    text = format_terms(terms)
    assert text == r'release, title:"breaking news", /v\d+\.\d+/i, category:/a,b/, -, c++'
    assert parse_terms(text) == terms


def test_format_terms_round_trip_from_a_list() -> None:
    terms = parse_terms(["hello, world", 'say "hi"', 'it\'s, "fine"', "/a,b/", "and/or"])
    assert parse_terms(format_terms(terms)) == terms


def test_a_phrase_that_cannot_be_joined_is_refused() -> None:
    with pytest.raises(FilterError, match="several terms"):
        parse_terms(['"a", b"'])
    with pytest.raises(FilterError, match="several terms"):
        parse_terms(['say "hi", ok'])  # would be quoted as "say "hi", ok"


# -- the time bound ---------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_timeouts")
def test_pathological_regex_times_out_as_no_match_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    term = one("/(x+x+)+y/")
    it = item("x" * 5000)
    with caplog.at_level(logging.WARNING, logger="bot.filters"):
        assert not term.matches(it, timeout=0.01)
        assert not term.matches(it, timeout=0.01)
        assert not one("/(x+x+)+y/").matches(it, timeout=0.01)  # same pattern, new term
    warnings = [r for r in caplog.records if r.name == "bot.filters"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "(x+x+)+y" in warnings[0].getMessage()


@pytest.mark.usefixtures("fresh_timeouts")
def test_each_timed_out_pattern_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.filters"):
        for _ in range(2):
            assert not hits_timeout("/(x+x+)+y/", item("x" * 5000))
            # the 'b' of "a" * 50_000 + "b" is past the 20,000 characters searched, where
            # (a|aa)+$ would match at once: the explosion must happen within the cap
            assert not hits_timeout("/(a|aa)+$/", item("a" * 5000 + "b"))
    assert len([r for r in caplog.records if r.name == "bot.filters"]) == 2


def hits_timeout(text: str, it: Item) -> bool:
    return one(text).matches(it, timeout=0.01)


@pytest.mark.usefixtures("fresh_timeouts")
def test_timed_out_exclude_does_not_exclude() -> None:
    f = ItemFilter(exclude=parse_terms("/(x+x+)+y/"))
    assert f.passes(item("x" * 5000), timeout=0.01)
    g = ItemFilter(include=parse_terms("/(x+x+)+y/"))
    assert not g.passes(item("x" * 5000), timeout=0.01)


def test_match_timeout_is_a_module_constant() -> None:
    assert filters.MATCH_TIMEOUT == 0.05


# -- properties -------------------------------------------------------------------------

_ALPHABET = st.sampled_from(list("abcxyz AZ09_-.,:;/\\\"'()[]{}|*+?^$#!@\n\té€ß"))
_SNIPPET = st.text(_ALPHABET, max_size=40)
_TERM_TEXT = st.one_of(
    _SNIPPET,
    st.builds(
        lambda prefix, body, flags: f"{prefix}/{body}/{flags}",
        st.sampled_from(["", "title:", "Summary: ", "category:", "link:", "x:"]),
        _SNIPPET,
        st.text(st.sampled_from(list("imsxq ")), max_size=3),
    ),
    st.builds(
        lambda prefix, body: f'{prefix}"{body}"',
        st.sampled_from(["", "author:", "LINK:"]),
        _SNIPPET,
    ),
)
_TYPED = st.lists(_TERM_TEXT, max_size=6).map(", ".join)
_ITEMS = st.builds(
    item,
    _SNIPPET,
    _SNIPPET,
    author=st.none() | _SNIPPET,
    categories=st.lists(_SNIPPET, max_size=3),
    link=st.none() | _SNIPPET,
)
_PROPERTY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_none(value: str | list[str]) -> tuple[Term, ...] | None:
    try:
        return parse_terms(value)
    except FilterError:
        return None


@_PROPERTY
@given(st.one_of(_TYPED, st.text(max_size=200)))
def test_parse_any_text_returns_terms_or_raises_filter_error(text: str) -> None:
    terms = _parse_or_none(text)
    if terms is not None:
        assert all(isinstance(t, Term) for t in terms)
        assert parse_terms(format_terms(terms)) == terms


@_PROPERTY
@given(st.lists(st.one_of(_TERM_TEXT, st.text(max_size=50)), max_size=6))
def test_parse_any_list_returns_terms_or_raises_filter_error(values: list[str]) -> None:
    terms = _parse_or_none(values)
    if terms is not None:
        assert parse_terms(format_terms(terms)) == terms


@_PROPERTY
@given(st.lists(_TERM_TEXT, max_size=6), _ITEMS)
def test_matching_parsed_terms_never_raises(values: list[str], it: Item) -> None:
    terms = tuple(t for v in values for t in (_parse_or_none([v]) or ()))
    for term in terms:
        assert isinstance(term.matches(it, timeout=0.01), bool)
    f = ItemFilter(include=terms[:3], exclude=terms[3:])
    assert isinstance(f.passes(it, timeout=0.01), bool)
