"""Parse only the entries of a changed feed that were not there, byte for byte, last time.

The poller remembers, per source, a fingerprint of each entry element it has
handled (and the key and normalised link feedparser gave it). On the next
changed body it hands feedparser a copy of the document without those
entries, then rebuilds what a full parse would have told it: the candidate
entries in document order with duplicate keys dropped, and how often each link
occurs in the whole document (the link guard only trusts unique links).

Correctness rests on two facts. An entry is skipped only when its exact bytes
were parsed, under the same URL and headers, in a poll whose outcome this
process committed, so its key is already stored. And any doubt (a document
:func:`split_entries` cannot split, feedparser finding a different number of
entries than the split did, a parse error in the reduced copy) falls back to
parsing the whole document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.sources.feed import (
    DocumentParser,
    EntryRef,
    ParsedEntry,
    ParsedFeed,
    ParseError,
    _header,
    parse_feed,
)
from bot.sources.split import split_entries

Context = tuple[str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class SeenEntries:
    """The entries of a source's last handled document, by fingerprint."""

    context: Context  # document URL, Content-Location, Content-Type: what parsing depends on
    refs: Mapping[bytes, EntryRef]


@dataclass(frozen=True, slots=True)
class ChangedDocument:
    # None: every entry was seen before, nothing needed parsing
    parsed: ParsedFeed | None
    # entries to check against storage, document order, first of each key only
    candidates: tuple[ParsedEntry, ...]
    # occurrences of each normalised link in the whole document, one per key
    link_counts: dict[str, int]
    # what to remember for the next poll, once this one's outcome is committed
    seen: SeenEntries | None
    # feedparser parsed only the unseen entries
    reduced: bool
    # every entry's key, document order, once each (empty when nothing was parsed):
    # what retention must keep, as the source still shows it
    keys: tuple[str, ...] = ()


def _link_counts(refs: list[EntryRef]) -> tuple[dict[str, int], list[int]]:
    """Link counts over the first occurrence of each key, and those occurrences' indexes."""
    counts: dict[str, int] = {}
    firsts: list[int] = []
    keys: set[str] = set()
    for index, (key, link_norm) in enumerate(refs):
        if key in keys:
            continue
        keys.add(key)
        firsts.append(index)
        if link_norm:
            counts[link_norm] = counts.get(link_norm, 0) + 1
    return counts, firsts


def parse_changed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    previous: SeenEntries | None,
    parse: DocumentParser | None = None,
) -> ChangedDocument:
    """Parse a changed feed body, skipping entries ``previous`` vouches for.

    ``parse`` is the source's parser (``FetchedSource.parse``): None for
    :func:`parse_feed` (RSS / Atom / JSON Feed), the bridge parser for X, a JSON
    API's parser for Bluesky and Mastodon. JSON documents cannot be split into
    entries, so they are always parsed whole. CPU-bound: run it in a worker
    thread. Raises :class:`ParseError` as ``parse`` does (always from a parse of
    the whole document).
    """
    parse = parse or parse_feed
    context: Context = (url, _header(headers, "content-location"), _header(headers, "content-type"))
    # JSON (JSON Feed, social APIs) has no entry elements to split: always parsed whole.
    is_json = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
    split = None if is_json else split_entries(body)
    fingerprints = split.fingerprints() if split is not None else []
    if split is not None and previous is not None and previous.context == context:
        fresh = [i for i, fp in enumerate(fingerprints) if fp not in previous.refs]
        if not fresh:
            kept = {fp: previous.refs[fp] for fp in fingerprints}
            return ChangedDocument(None, (), {}, SeenEntries(context, kept), reduced=True)
        try:
            parsed: ParsedFeed | None = parse(split.keeping(set(fresh)), url=url, headers=headers)
        except ParseError:
            parsed = None  # let the whole document's parse say what is wrong
        if parsed is not None and len(parsed.raw_refs) == len(fresh):
            position = {index: j for j, index in enumerate(fresh)}
            refs = [
                parsed.raw_refs[position[i]] if i in position else previous.refs[fp]
                for i, fp in enumerate(fingerprints)
            ]
            counts, firsts = _link_counts(refs)
            new_keys = {refs[i][0] for i in firsts if i in position}
            candidates = tuple(e for e in parsed.entries if e.key in new_keys)
            remembered = SeenEntries(context, dict(zip(fingerprints, refs, strict=True)))
            keys = tuple(dict.fromkeys(key for key, _ in refs))
            return ChangedDocument(parsed, candidates, counts, remembered, reduced=True, keys=keys)

    parsed = parse(body, url=url, headers=headers)
    counts, _ = _link_counts(list(parsed.raw_refs))
    seen: SeenEntries | None = None
    if split is not None and len(fingerprints) == len(parsed.raw_refs):
        seen = SeenEntries(context, dict(zip(fingerprints, parsed.raw_refs, strict=True)))
    keys = tuple(dict.fromkeys(key for key, _ in parsed.raw_refs))
    return ChangedDocument(parsed, parsed.entries, counts, seen, reduced=False, keys=keys)
