"""Partial parsing of changed feeds: the split, its equivalence with a full parse, and
the poller using it (fewer entries parsed, same items posted)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.poller import Poller
from bot.sources import incremental
from bot.sources.feed import ParsedFeed, parse_feed
from bot.sources.incremental import SeenEntries, parse_changed
from bot.sources.split import split_entries
from bot.storage.store import Store
from tests.conftest import Clock, Doc, FeedServer, Subscribe
from tests.test_poller import rss

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
URL = "https://example.com/feed.xml"


def test_split_finds_rss_and_prefixed_atom_entries() -> None:
    body = rss([("b", "B"), ("a", "A")])
    split = split_entries(body)
    assert split is not None
    assert [body[s:e][:6] for s, e in split.spans] == [b"<item>", b"<item>"]
    atom = (
        b'<a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:title>t</a:title>'
        b"<a:entry><a:id>1</a:id></a:entry><a:entry><a:id>2</a:id></a:entry></a:feed>"
    )
    split = split_entries(atom)
    assert split is not None
    assert [atom[s:e] for s, e in split.spans] == [
        b"<a:entry><a:id>1</a:id></a:entry>",
        b"<a:entry><a:id>2</a:id></a:entry>",
    ]


def test_split_ignores_tags_in_cdata_and_comments_and_look_alikes() -> None:
    body = (
        b"<rss><channel><!-- <item> --><items/><item-list/>"
        b"<item><description><![CDATA[a </item> b <item>]]></description></item>"
        b"</channel></rss>"
    )
    split = split_entries(body)
    assert split is not None
    assert len(split.spans) == 1
    assert body[split.spans[0][0] :].startswith(b"<item><description>")


@pytest.mark.parametrize(
    "body",
    [
        "<rss><channel><item><title>x</title></item></channel></rss>".encode("utf-16"),
        b"<rss><channel><item><item></item></item></channel></rss>",  # nested
        b"<rss><channel><item><title>x</title></channel></rss>",  # unclosed
        b"<rss><channel></item></channel></rss>",  # close without open
        b"<rss><channel><title>no entries</title></channel></rss>",
        b'<?xml version="1.0" encoding="iso-2022-jp"?><rss>\x1b$B<item></item></rss>',
    ],
)
def test_split_refuses_what_it_cannot_vouch_for(body: bytes) -> None:
    assert split_entries(body) is None


def test_keeping_drops_only_entry_bytes() -> None:
    body = b"<feed><entry>1</entry><x/><entry>2</entry><entry>3</entry></feed>"
    split = split_entries(body)
    assert split is not None
    assert split.keeping({1}) == b"<feed><x/><entry>2</entry></feed>"


def _full(body: bytes) -> ParsedFeed:
    return parse_feed(body, url=URL, headers={})


def _seen_after(body: bytes) -> SeenEntries:
    first = parse_changed(body, url=URL, headers={}, previous=None)
    assert first.seen is not None
    assert not first.reduced
    return first.seen


def _link_counts(parsed: ParsedFeed) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in parsed.entries:
        if entry.link_norm:
            counts[entry.link_norm] = counts.get(entry.link_norm, 0) + 1
    return counts


@pytest.mark.parametrize(
    "name", ["rss20.xml", "atom10.xml", "atom03.xml", "rss10.rdf", "rss091.xml", "keys.xml"]
)
def test_reduced_parse_tells_what_a_full_parse_would(name: str) -> None:
    """Drop some entries (they "arrive" later) and change one: the reduced parse of the
    later document gives the full parse's candidates and link counts."""
    later = (FIXTURES / name).read_bytes()
    split = split_entries(later)
    assert split is not None, name
    rng = random.Random(name)
    n = len(split.spans)
    assert n >= 2, name
    arriving = set(rng.sample(range(n), k=max(1, n // 3)))
    earlier = split.keeping(set(range(n)) - arriving)
    seen = _seen_after(earlier)

    document = parse_changed(later, url=URL, headers={}, previous=seen)
    full = _full(later)
    assert document.reduced
    assert document.link_counts == _link_counts(full)
    by_key = {e.key: e for e in full.entries}
    for candidate in document.candidates:
        assert candidate == by_key[candidate.key]
    earlier_keys = {key for key, _ in seen.refs.values()}
    skipped = set(by_key) - {c.key for c in document.candidates}
    assert skipped <= earlier_keys
    assert document.parsed is not None
    assert document.parsed.info == full.info


def test_unchanged_entries_need_no_parse() -> None:
    body = rss([("b", "B"), ("a", "A")])
    seen = _seen_after(body)
    retitled = body.replace(b"<title>Test feed</title>", b"<title>Renamed</title>")
    document = parse_changed(retitled, url=URL, headers={}, previous=seen)
    assert document.parsed is None
    assert document.candidates == ()
    assert document.seen == seen


def test_a_different_url_or_content_type_parses_everything() -> None:
    body = rss([("b", "B"), ("a", "A")])
    seen = _seen_after(body)
    moved = parse_changed(body, url="https://elsewhere.example/feed", headers={}, previous=seen)
    assert not moved.reduced
    assert len(moved.candidates) == 2
    recoded = parse_changed(
        body, url=URL, headers={"Content-Type": "text/xml; charset=latin-1"}, previous=seen
    )
    assert not recoded.reduced


def test_shared_links_are_counted_over_the_whole_document() -> None:
    """The link guard trusts only links unique in the document; entries skipped by the
    partial parse still count."""

    def doc(guids: list[str]) -> bytes:
        items = "".join(
            f"<item><guid>{g}</guid><title>{g}</title><link>https://example.com/</link></item>"
            for g in guids
        )
        return f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()

    seen = _seen_after(doc(["one"]))
    document = parse_changed(doc(["two", "one"]), url=URL, headers={}, previous=seen)
    assert document.reduced
    assert [c.key for c in document.candidates] == ["two"]
    assert document.link_counts == {"https://example.com/": 2}


# -- through the poller -------------------------------------------------------------


def stable_rss(guids: str, *, title: str = "Test feed") -> bytes:
    """RSS whose entries keep their bytes from one version to the next, as real feeds'
    do (tests.test_poller.rss dates entries by position)."""
    items = "".join(
        f"<item><guid>{g}</guid><title>{g.upper()}</title><link>https://example.com/{g}</link>"
        f"<pubDate>Fri, 27 Nov 2026 0{ord(g) - ord('a')}:00:00 GMT</pubDate></item>"
        for g in guids
    )
    return f'<rss version="2.0"><channel><title>{title}</title>{items}</channel></rss>'.encode()


@pytest.fixture
def parsed_entries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many entries feedparser was given on each parse."""
    counts: list[int] = []
    real = incremental.parse_feed

    def counting(body: bytes, **kwargs: object) -> ParsedFeed:
        parsed = real(body, **kwargs)  # type: ignore[arg-type]
        counts.append(len(parsed.raw_refs))
        return parsed

    monkeypatch.setattr(incremental, "parse_feed", counting)
    return counts


async def test_poller_parses_only_new_entries_and_posts_the_same(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
    parsed_entries: list[int],
) -> None:
    feed_server.docs["/feed.xml"] = Doc(stable_rss("cba"))
    await subscribe(feed_server.url("/feed.xml"))
    poller = make_poller()
    await poller.poll_due()
    assert parsed_entries == [3]

    feed_server.docs["/feed.xml"] = Doc(stable_rss("edcb"))
    clock.advance(601)
    (second,) = await poller.poll_due()
    assert (second.status, second.new_items, second.queued) == ("new", 2, 2)
    assert parsed_entries == [3, 2]
    assert [key for _, key, _ in await store.outbox_items()] == ["d", "e"]

    # A restarted process remembers nothing and parses the whole document again,
    # finding nothing new.
    fresh = make_poller()
    feed_server.docs["/feed.xml"] = Doc(stable_rss("edc", title="T2"))
    clock.advance(601)
    (third,) = await fresh.poll_due()
    assert (third.status, third.new_items) == ("unchanged", 0)
    assert parsed_entries == [3, 2, 3]
    assert len(await store.outbox_items()) == 2


async def test_group_commit_keeps_good_polls_when_one_write_fails(
    store: Store,
    feed_server: FeedServer,
    make_poller: Callable[..., Poller],
    clock: Clock,
    subscribe: Subscribe,
) -> None:
    """Changed sources are written together; one failing write is retried alone and
    the others still land."""
    for name in ("good", "bad"):
        feed_server.docs[f"/{name}.xml"] = Doc(rss([("a", "A")]))
        await subscribe(feed_server.url(f"/{name}.xml"), hook=len(name))
    await make_poller().poll_due()

    real = store.record_polls

    sizes: list[int] = []

    async def failing_for_bad(records: list[object]) -> object:
        sizes.append(len(records))
        if any(r.outcome.source_id == bad_id for r in records):  # type: ignore[attr-defined]
            if len(records) == 1:
                raise RuntimeError("disk full")
            raise RuntimeError("batch failed")
        return await real(records)  # type: ignore[arg-type]

    health = {h.url.rsplit("/", 1)[1]: h.source_id for h in await store.source_health()}
    bad_id = health["bad.xml"]
    store.record_polls = failing_for_bad  # type: ignore[method-assign]
    for name in ("good", "bad"):
        feed_server.docs[f"/{name}.xml"] = Doc(rss([("b", "B"), ("a", "A")]))
    clock.advance(601)
    poller = make_poller(record_batch=10, record_delay=0.5)
    results = {r.url.rsplit("/", 1)[1]: r for r in await poller.poll_due()}
    assert (results["good.xml"].status, results["good.xml"].queued) == ("new", 1)
    assert results["bad.xml"].status == "failed"
    assert "internal error" in (results["bad.xml"].error or "")
    assert [key for _, key, _ in await store.outbox_items()] == ["b"]
    assert sorted(sizes) == [1, 1, 2]  # the group, then each on its own
