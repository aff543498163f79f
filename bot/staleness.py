"""Staleness: a source that answers fine but has stopped bringing new items.

Bridges (Nitter-style X front-ends, RSS generators) fail this way: they keep serving
a cached page, so polls succeed and nothing new ever arrives. The rule is relative to
the source's own rhythm, so a daily blog and a busy account are judged fairly:

    stale  <=>  newest item older than BOTH ``MIN_AGE`` (2 days)
                and ``GAP_FACTOR`` (10) x the median gap between its last ``WINDOW`` (20) items

Item times are their published time, else when feedhook first saw them.

Small samples: fewer than ``MIN_TIMES`` (3) distinct times is never stale. One gap
says nothing about a rhythm (two posts an hour apart, then a monthly schedule, would
raise the alarm after two days), and a source with no or one item has no rhythm at
all. Identical times are counted once: items first seen in the same poll (no dates
in the feed) arrived together, and zero gaps would make the median meaningless.

Pure apart from :class:`StaleWatch`, which logs a warning once when a source turns
stale (and again only after it has recovered and turned stale anew).
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from bot.hooks import is_hook
from bot.models import SourceHealth
from bot.sources.forms import kind_of

log = logging.getLogger(__name__)

MIN_AGE: Final = timedelta(days=2)
GAP_FACTOR: Final = 10
WINDOW: Final = 20
MIN_TIMES: Final = 3

# What to do, by the source's kind: only an X account is read through a bridge that
# may serve a cached page; a plain feed going quiet is its site's doing.
_ADVICE: Final = {
    "x": "its bridge may be serving old content; try another bridge or check the account",
    "bluesky": "the account may have stopped posting or moved; check its profile",
    "mastodon": "the account may have stopped posting or moved; check its profile",
    "youtube": "the channel may have stopped publishing; check it on YouTube",
}
_FEED_ADVICE: Final = "the site may have stopped publishing or moved its feed; check the site"


def stale_advice(source_url: str) -> str:
    """What to do about a stale source, for its kind (read from its canonical URL)."""
    return _ADVICE.get(kind_of(source_url).kind, _FEED_ADVICE)


def stale_threshold(times: Sequence[datetime]) -> timedelta | None:
    """How old the newest item may get before the source is stale; None when the
    sample is too small to tell (see the module docstring)."""
    distinct = sorted(set(times), reverse=True)[:WINDOW]
    if len(distinct) < MIN_TIMES:
        return None
    gaps = [(newer - older).total_seconds() for newer, older in itertools.pairwise(distinct)]
    median = timedelta(seconds=statistics.median(gaps))
    return max(MIN_AGE, median * GAP_FACTOR)


def is_stale(times: Sequence[datetime], now: datetime) -> bool:
    """Whether the newest of ``times`` (aware datetimes, any order) is older than both
    two days and ten times the median gap between the newest twenty."""
    threshold = stale_threshold(times)
    if threshold is None:
        return False
    return now - max(times) > threshold


def stale_message(label: str, source_url: str, newest: datetime | None, now: datetime) -> str:
    """One sentence for operators and admins: what is wrong and what to do."""
    age = ""
    if newest is not None:
        days = max(0, (now - newest).days)
        age = f" (newest item {days} day{'s' if days != 1 else ''} old)"
    return (
        f"{label} has brought nothing new for much longer than usual{age}: "
        f"{stale_advice(source_url)}."
    )


def with_stale(
    health: Sequence[SourceHealth], times: Mapping[int, Sequence[datetime]], now: datetime
) -> list[SourceHealth]:
    """``health`` with ``stale`` set. A failing source is reported as failing, not stale;
    an inbound hook (``hook:N``) never is: it posts when its sender has something."""
    return [
        replace(
            h,
            stale=h.consecutive_failures == 0
            and not is_hook(h.url)
            and is_stale(times.get(h.source_id, ()), now),
        )
        for h in health
    ]


class StaleWatch:
    """Logs ``source turned stale`` once per turn (the poll loop's process keeps it)."""

    def __init__(self) -> None:
        self.stale: set[int] = set()

    def update(
        self,
        health: Sequence[SourceHealth],
        times: Mapping[int, Sequence[datetime]],
        now: datetime,
    ) -> set[int]:
        """Record which sources are stale now; returns those that turned stale just now
        (each logged once as a warning). A source that recovers and goes stale again is
        logged again."""
        marked = with_stale(health, times, now)
        stale = {h.source_id for h in marked if h.stale}
        turned = stale - self.stale
        self.stale = stale
        for source in marked:
            if source.source_id in turned:
                newest = max(times[source.source_id])
                log.warning(
                    "source turned stale source=%d url=%s: %s",
                    source.source_id,
                    source.url,
                    stale_message(source.title or source.url, source.url, newest, now),
                )
        return turned
