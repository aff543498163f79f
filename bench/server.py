"""The bench's feed server: many sources on 127.0.0.1, run in a process of its own.

Source ``i`` is served at ``/s/{i}.xml``. Its class is fixed by ``i % 10``:

* ``A`` (60%): never changes, sends ``ETag`` and ``Last-Modified`` and answers 304 when asked
  with either validator;
* ``B`` (20%): the same body every cycle, without validators;
* ``C`` (20%): gains 1-3 new items every cycle (per-cycle ``ETag``/``Last-Modified``).

The cycle is global and set by the client with ``POST /cycle/{k}``: the document of every
source is a pure function of ``(i, cycle)``, so each measured pass can replay cycles 0..N
against exactly the same documents. ``GET /stats`` counts responses by class and status.

Bodies are synthetic RSS 2.0 by default (20 items with ~500-byte HTML descriptions). With a
corpus directory, the classes in ``corpus_classes`` (by default only C, the changing one) serve
real documents instead, read once at startup and never copied anywhere: class C serves a
document with its first (newest) entries cut out, and each cycle puts 1-3 of them back, so each
cycle "reveals" real entries the source had not shown before. Real A/B sources serve their
document unchanged.
"""

from __future__ import annotations

import asyncio
import html
import random
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

CLASSES = ("A", "B", "C")
SYNTHETIC_ITEMS = 20
BASE_DATE = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
# One opening tag of an RSS/RDF item or Atom entry through its closing tag (items never nest).
_ENTRY = re.compile(rb"<(?:[\w.-]+:)?(item|entry)\b[^>]*>.*?</(?:[\w.-]+:)?\1\s*>", re.S)

_WORDS = (
    "feed",
    "relay",
    "webhook",
    "channel",
    "server",
    "python",
    "release",
    "update",
    "patch",
    "notes",
    "community",
    "weekly",
    "digest",
    "design",
    "system",
    "performance",
    "latency",
    "cache",
    "database",
    "index",
    "query",
    "migration",
    "async",
    "event",
    "loop",
    "thread",
    "worker",
    "queue",
    "retry",
    "backoff",
    "schedule",
    "poll",
    "parser",
    "markup",
    "render",
    "discord",
    "message",
    "embed",
    "author",
    "summary",
    "archive",
    "podcast",
    "episode",
    "video",
    "stream",
    "article",
    "review",
    "opinion",
    "tutorial",
    "guide",
    "deep",
    "dive",
    "analysis",
    "benchmark",
    "report",
    "survey",
    "research",
)


def source_class(i: int) -> str:
    r = i % 10
    return "A" if r < 6 else "B" if r < 8 else "C"


def source_path(i: int) -> str:
    return f"/s/{i}.xml"


@dataclass(frozen=True)
class ServerSpec:
    sources: int
    cycles: int  # the highest cycle class C must be able to reveal new items for
    corpus: str | None = None
    corpus_classes: str = "C"  # which classes serve real documents when there is a corpus
    seed: int = 1


# ---------------------------------------------------------------------------- synthetic


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize()


def _synthetic_item(i: int, j: int) -> str:
    rng = random.Random(i * 1_000_003 + j)
    link = f"https://site{i}.example.com/posts/{j}-{rng.choice(_WORDS)}-{rng.choice(_WORDS)}"
    paragraphs = "".join(
        f'<p>{_sentence(rng, 9)}, <a href="https://site{i}.example.com/tags/{rng.choice(_WORDS)}">'
        f"{rng.choice(_WORDS)}</a> and <em>{_sentence(rng, 3)}</em>. {_sentence(rng, 6)}.</p>"
        for _ in range(2)
    )
    description = (
        f'<img src="https://cdn.example.com/site{i}/{j}.jpg" alt=""/>{paragraphs}'
        f"<p><strong>{_sentence(rng, 4)}</strong></p>"
    )
    pub = format_datetime(BASE_DATE + timedelta(hours=j))
    return (
        "    <item>\n"
        f"      <title>{html.escape(_sentence(rng, 7))} #{j}</title>\n"
        f"      <link>{link}</link>\n"
        f'      <guid isPermaLink="true">{link}</guid>\n'
        f"      <pubDate>{pub}</pubDate>\n"
        f"      <dc:creator>{_sentence(rng, 2)}</dc:creator>\n"
        f"      <category>{rng.choice(_WORDS)}</category>\n"
        f"      <category>{rng.choice(_WORDS)}</category>\n"
        f"      <description>{html.escape(description)}</description>\n"
        "    </item>\n"
    )


def synthetic_feed(i: int, newest: int, count: int = SYNTHETIC_ITEMS) -> bytes:
    """RSS 2.0 with items ``newest`` down to ``newest - count + 1`` (newest first)."""
    items = "".join(_synthetic_item(i, j) for j in range(newest, max(-1, newest - count), -1))
    built = format_datetime(BASE_DATE + timedelta(hours=newest))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom">\n'
        "  <channel>\n"
        f"    <title>Synthetic feed {i}</title>\n"
        f"    <link>https://site{i}.example.com/</link>\n"
        f"    <description>Posts from synthetic site number {i}</description>\n"
        "    <language>en-us</language>\n"
        f"    <lastBuildDate>{built}</lastBuildDate>\n"
        f'    <atom:link href="https://site{i}.example.com/feed.xml" rel="self" '
        'type="application/rss+xml"/>\n'
        f"{items}"
        "  </channel>\n"
        "</rss>\n"
    ).encode()


# ---------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusDoc:
    name: str
    body: bytes
    starts: tuple[int, ...]  # byte offset of each entry's opening tag, in document order

    def without_first(self, hidden: int) -> bytes:
        """The document with its first ``hidden`` entries cut out."""
        if hidden <= 0:
            return self.body
        return self.body[: self.starts[0]] + self.body[self.starts[hidden] :]


def load_corpus(folder: str) -> list[CorpusDoc]:
    docs = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        starts = tuple(m.start() for m in _ENTRY.finditer(body))
        docs.append(CorpusDoc(path.name, body, starts))
    return docs


# ---------------------------------------------------------------------------- the bank


class FeedBank:
    """Every source's document at every cycle, built lazily."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.cycle = 0
        self._static: dict[int, bytes] = {}
        self._changing: dict[int, bytes] = {}  # class C bodies of the current cycle
        self.docs: list[CorpusDoc] = []
        self.pool_ab: list[CorpusDoc] = []
        self.pool_c: list[CorpusDoc] = []
        self.skipped: list[str] = []
        if spec.corpus:
            self.docs = load_corpus(spec.corpus)
            # JSON Feed (and anything else without <item>/<entry>) cannot be cut into entries.
            self.pool_ab = [d for d in self.docs if d.starts]
            self.pool_c = [d for d in self.docs if len(d.starts) >= spec.cycles + 1]
            self.skipped = [d.name for d in self.docs if not d.starts]
            needs_ab = bool(set(spec.corpus_classes) & {"A", "B"})
            if not self.pool_c or (needs_ab and not self.pool_ab):
                raise SystemExit(f"no usable feed documents in {spec.corpus}")
        self._reveals = {
            i: self._reveal_plan(i) for i in range(spec.sources) if source_class(i) == "C"
        }

    def _ordinal(self, i: int) -> int:
        """Index of source ``i`` among the sources of its class."""
        r = i % 10
        per_ten = {"A": 6, "B": 2, "C": 2}[source_class(i)]
        offset = {"A": 0, "B": 6, "C": 8}[source_class(i)]
        return (i // 10) * per_ten + (r - offset)

    def is_real(self, i: int) -> bool:
        return bool(self.spec.corpus) and source_class(i) in self.spec.corpus_classes

    def corpus_doc(self, i: int) -> CorpusDoc:
        pool = self.pool_c if source_class(i) == "C" else self.pool_ab
        return pool[self._ordinal(i) % len(pool)]

    def _reveal_plan(self, i: int) -> list[int]:
        """New entries source ``i`` gains at cycles 1..N (1-3 each)."""
        rng = random.Random(self.spec.seed * 7919 + i)
        cycles = self.spec.cycles
        capacity = len(self.corpus_doc(i).starts) - 1 if self.is_real(i) else 10**9
        plan: list[int] = []
        for k in range(1, cycles + 1):
            room = capacity - sum(plan) - (cycles - k)  # keep >= 1 for every later cycle
            plan.append(max(1, min(rng.randint(1, 3), room)))
        return plan

    def new_items_at(self, i: int, cycle: int) -> int:
        plan = self._reveals.get(i)
        if plan is None or not 1 <= cycle <= len(plan):
            return 0
        return plan[cycle - 1]

    def set_cycle(self, cycle: int) -> None:
        if cycle != self.cycle:
            self._changing.clear()
        self.cycle = cycle

    def body(self, i: int) -> bytes:
        if source_class(i) != "C":
            body = self._static.get(i)
            if body is None:
                body = self._static[i] = (
                    self.corpus_doc(i).body
                    if self.is_real(i)
                    else synthetic_feed(i, SYNTHETIC_ITEMS - 1)
                )
            return body
        body = self._changing.get(i)
        if body is None:
            plan = self._reveals[i]
            cycle = min(self.cycle, len(plan))
            if self.is_real(i):
                hidden = sum(plan[cycle:])
                body = self.corpus_doc(i).without_first(hidden)
            else:
                newest = SYNTHETIC_ITEMS - 1 + sum(plan[:cycle])
                body = synthetic_feed(i, newest)
            self._changing[i] = body
        return body


# ---------------------------------------------------------------------------- HTTP


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _not_modified_since(header: str | None, last_modified: datetime) -> bool:
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return since is not None and since >= last_modified


def make_app(bank: FeedBank) -> web.Application:
    stats: Counter[str] = Counter()
    static_lm = BASE_DATE + timedelta(days=1)

    async def feed(request: web.Request) -> web.Response:
        try:
            i = int(request.match_info["i"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= i < bank.spec.sources:
            raise web.HTTPNotFound()
        cls = source_class(i)
        headers: dict[str, str] = {}
        if cls != "B":
            if cls == "A":
                etag, modified = f'"a{i}-1"', static_lm
            else:
                etag = f'"c{i}-{bank.cycle}"'
                modified = static_lm + timedelta(hours=bank.cycle)
            headers = {"ETag": etag, "Last-Modified": format_datetime(modified, usegmt=True)}
            inm = request.headers.get("If-None-Match")
            if _etag_matches(inm, etag) or (
                inm is None
                and _not_modified_since(request.headers.get("If-Modified-Since"), modified)
            ):
                stats[f"{cls} 304"] += 1
                return web.Response(status=304, headers=headers)
        stats[f"{cls} 200"] += 1
        if bank.is_real(i):
            # The real documents carry their encoding in the XML declaration.
            return web.Response(body=bank.body(i), headers=headers, content_type="application/xml")
        return web.Response(
            body=bank.body(i),
            headers=headers,
            content_type="application/rss+xml",
            charset="utf-8",
        )

    async def set_cycle(request: web.Request) -> web.Response:
        bank.set_cycle(int(request.match_info["k"]))
        return web.Response(text=str(bank.cycle))

    async def advance(_request: web.Request) -> web.Response:
        bank.set_cycle(bank.cycle + 1)
        return web.Response(text=str(bank.cycle))

    async def get_stats(request: web.Request) -> web.Response:
        out = dict(stats)
        if request.query.get("reset"):
            stats.clear()
        return web.json_response(out)

    async def info(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sources": bank.spec.sources,
                "cycle": bank.cycle,
                "corpus_files": len(bank.docs),
                "corpus_pool_ab": len(bank.pool_ab),
                "corpus_pool_c": len(bank.pool_c),
                "corpus_skipped": bank.skipped,
                "mean_body_bytes": {
                    cls: statistics.fmean(
                        len(bank.body(i))
                        for i in range(bank.spec.sources)[:200]
                        if source_class(i) == cls
                    )
                    for cls in CLASSES
                },
                "new_items": {
                    str(k): sum(bank.new_items_at(i, k) for i in range(bank.spec.sources))
                    for k in range(1, bank.spec.cycles + 1)
                },
            }
        )

    app = web.Application()
    app.router.add_get("/s/{i}.xml", feed)
    app.router.add_post("/cycle/{k}", set_cycle)
    app.router.add_post("/advance", advance)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/info", info)
    return app


def serve(spec: ServerSpec, conn: Connection) -> None:
    """Process entry point: serve on 127.0.0.1 (free port), send the port, run until killed."""

    async def main() -> None:
        bank = FeedBank(spec)
        runner = web.AppRunner(make_app(bank), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        conn.send(port)
        conn.close()
        await asyncio.Event().wait()

    asyncio.run(main())
