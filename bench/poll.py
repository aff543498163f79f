"""Poll-cycle benchmark: feedhook against its floors and a peer, in one run.

    python -m bench.poll [--corpus DIR] [--sources N] [--cycles N] [--concurrency N]
                         [--skip-reader] [--tracemalloc]

A local server (its own process) serves ``--sources`` feeds: 60% answer 304 to their
validators (class A), 20% send the same body without validators (B), 20% gain 1-3 new items
every cycle (C). See ``bench/server.py``. Then, each in a fresh process so CPU time and peak
memory are its own:

1. the fetch floor: plain aiohttp conditional GETs of the same URLs, same concurrency;
2. feedhook: first poll, then ``--cycles`` cycles of ``Poller.poll_due()`` with jitter off,
   an injected clock and a temporary SQLite database;
3. feedhook with only class A, only B, only C subscribed (snapshots of 2. after its first
   poll), so each class is measured in a pass of its own (A and B every cycle, C cycle 1);
4. the parse floor: ``feedparser.parse(body)`` (default options) of cycle 1's class C
   bodies alone, plus, for information, the options feedhook uses and its ``parse_feed``;
5. the stack floor (synthetic bodies): the same cycles done by the libraries alone, no
   feedhook code: the conditional GETs, ``feedparser.parse`` of each changed body reduced to
   its new entries, markdownify of each new entry, one POST per entry to a fake Discord;
6. the peer: the ``reader`` library updating the same feeds.

Each pass notes how much CPU other processes used meanwhile: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, TypeVar

from bench.passes import (
    CycleStats,
    FeedhookParams,
    ParseParams,
    PassResult,
    RawParams,
    ReaderParams,
    StackParams,
    feedhook_pass,
    parse_floor_pass,
    raw_fetch_pass,
    reader_pass,
    snapshot_path,
    stack_floor_pass,
)
from bench.server import ServerSpec, serve, source_class

INTERVAL = 600.0
# CPU of one raw aiohttp conditional GET on the machine issue 2 quotes (its "for orientation").
REFERENCE_RAW_GET_MS = 0.08
P = TypeVar("P")


_server_pid: int | None = None


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _machine_busy() -> float | None:
    """CPU-seconds all processes on the machine have used since boot (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / _ticks()


def _pid_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / _ticks()  # utime, stime


def _own_cpu() -> float:
    """CPU-seconds of this process, its finished children (the passes) and the server."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = _pid_cpu(_server_pid) if _server_pid else 0.0
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime + server


def run_isolated(fn: Callable[[P], PassResult], params: P) -> PassResult:
    """Run one pass in a fresh (spawned) process and return its result.

    Also notes how much CPU other processes on the machine used meanwhile: the bench needs
    the machine to itself for its wall times (and, less so, CPU times) to mean anything.
    """
    busy, own, started = _machine_busy(), _own_cpu(), time.perf_counter()
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        result = pool.submit(fn, params).result()
    busy_after = _machine_busy()
    if busy is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy) - (_own_cpu() - own))
        share = others / max(1e-9, time.perf_counter() - started)
        result.notes.append(
            f"other processes on this machine used {others:.1f} CPU-s during this pass "
            f"(on average {share:.2f} of its {os.cpu_count()} CPUs)"
            + (
                "  <- CONTENDED: numbers are inflated, rerun on an idle machine"
                if share > 0.2
                else ""
            )
        )
    return result


# ---------------------------------------------------------------------------- output


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    """The 1-minute load average, with a warning when something else is using the CPUs."""
    load = os.getloadavg()[0]
    return f"{load:.2f}" + (" (the machine is busy: expect inflated numbers)" if load > 0.5 else "")


def _fmt_statuses(statuses: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))


HEADER = (
    f"  {'':<44}{'wall s':>8}{'CPU s':>8}{'CPU/src ms':>11}{'peak RSS MB':>12}"
    f"{'new':>7}{'queued':>7}  statuses"
)


def _row(stats: CycleStats) -> str:
    queued = "" if stats.outbox_delta is None else str(stats.outbox_delta)
    new = str(stats.new_items) if stats.new_items or stats.outbox_delta is not None else ""
    traced = (
        f" (traced peak {stats.traced_peak_mb:.1f} MB)" if stats.traced_peak_mb is not None else ""
    )
    delivered = ""
    if stats.sent_messages is not None and stats.poll_wall is not None:
        delivered = (
            f"; sent {stats.sent_messages} messages; polling alone {stats.poll_wall:.3f} s wall, "
            f"{1000 * (stats.poll_cpu or 0) / max(1, stats.n):.3f} ms CPU/src"
        )
    return (
        f"  {stats.label + f' [{stats.n}]':<44}{stats.wall:>8.3f}{stats.cpu:>8.3f}"
        f"{stats.cpu_per_source_ms:>11.3f}{stats.maxrss_mb:>12.1f}{new:>7}{queued:>7}  "
        f"{_fmt_statuses(stats.statuses)}{traced}{delivered}"
    )


def print_pass(result: PassResult) -> None:
    print(f"\n== {result.name}" + (f"  (setup {result.setup_s:.1f} s)" if result.setup_s else ""))
    print(HEADER)
    if result.warmup is not None:
        print(_row(result.warmup) + "   <- warm-up, not in the summary")
    for stats in result.cycles:
        print(_row(stats))
    if len(result.cycles) > 1:
        print(_row(_mean(result.cycles)))
    for stats in result.extra:
        print(_row(stats) + "   <- informational")
    for note in result.notes:
        print(f"  note: {note}")
    sys.stdout.flush()


def _mean(cycles: Sequence[CycleStats]) -> CycleStats:
    return CycleStats(
        label="mean of cycles",
        wall=statistics.fmean(c.wall for c in cycles),
        cpu=statistics.fmean(c.cpu for c in cycles),
        n=round(statistics.fmean(c.n for c in cycles)),
        maxrss_mb=max(c.maxrss_mb for c in cycles),
    )


def cpu_per_source_ms(result: PassResult) -> float:
    """Mean over the measured cycles of CPU per source (total CPU / total sources)."""
    return 1000.0 * sum(c.cpu for c in result.cycles) / sum(c.n for c in result.cycles)


def mean_wall(result: PassResult) -> float:
    return statistics.fmean(c.wall for c in result.cycles)


def mean_poll_wall(result: PassResult) -> float:
    """Wall time of the polling part of the cycles (without the deliveries)."""
    return statistics.fmean(
        c.poll_wall if c.poll_wall is not None else c.wall for c in result.cycles
    )


def poll_cpu_per_source_ms(result: PassResult) -> float:
    cpu = sum(c.poll_cpu if c.poll_cpu is not None else c.cpu for c in result.cycles)
    return 1000.0 * cpu / sum(c.n for c in result.cycles)


def mean_cpu(result: PassResult) -> float:
    return statistics.fmean(c.cpu for c in result.cycles)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.poll",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpus", metavar="DIR", help="serve real feed documents from DIR")
    parser.add_argument(
        "--corpus-classes",
        default="C",
        metavar="ABC",
        help="with --corpus, which classes serve real documents (default: C, the changing one; "
        "the others stay synthetic)",
    )
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-reader", action="store_true", help="do not run the reader peer")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also report tracemalloc peaks (slows every pass down)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.sources < 10 or args.cycles < 1 or args.concurrency < 1:
        parser.error("need --sources >= 10, --cycles >= 1, --concurrency >= 1")
    if not args.corpus_classes or set(args.corpus_classes) - set("ABC"):
        parser.error("--corpus-classes takes letters from ABC")
    if args.corpus and not os.path.isdir(args.corpus):
        parser.error(f"--corpus {args.corpus}: not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    spec = ServerSpec(args.sources, args.cycles, args.corpus, args.corpus_classes, args.seed)
    server = ctx.Process(target=serve, args=(spec, child), daemon=True, name="bench-server")
    server.start()
    global _server_pid
    _server_pid = server.pid
    try:
        if not parent.poll(120):
            raise SystemExit("the feed server did not start")
        port = parent.recv()
        with tempfile.TemporaryDirectory(prefix="feedhook-bench-") as workdir:
            run(args, f"http://127.0.0.1:{port}", workdir)
    finally:
        server.terminate()
        server.join(10)
    return 0


def run(args: argparse.Namespace, base_url: str, workdir: str) -> None:
    with urllib.request.urlopen(base_url + "/info", timeout=60) as resp:
        info: dict[str, Any] = json.load(resp)
    indexes = list(range(args.sources))
    by_class = {cls: [i for i in indexes if source_class(i) == cls] for cls in "ABC"}
    expected_new = {int(k): v for k, v in info["new_items"].items()}

    print("feedhook poll-cycle benchmark")
    print(
        f"  python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"feedhook {_version('feedhook')}, aiohttp {_version('aiohttp')}, "
        f"feedparser {_version('feedparser')}, SQLAlchemy {_version('SQLAlchemy')}, "
        f"reader {_version('reader')}"
    )
    print(
        f"  {args.sources} sources on {base_url} (server in its own process, not measured): "
        f"A={len(by_class['A'])} answer 304 to their validators, "
        f"B={len(by_class['B'])} same body without validators, "
        f"C={len(by_class['C'])} gain 1-3 items per cycle"
    )
    if args.corpus:
        real = "".join(c for c in "ABC" if c in args.corpus_classes)
        synthetic = "".join(c for c in "ABC" if c not in args.corpus_classes)
        print(
            f"  bodies: REAL documents from {args.corpus} for class {'/'.join(real)}"
            + (f", SYNTHETIC RSS 2.0 for class {'/'.join(synthetic)}" if synthetic else "")
            + f" ({info['corpus_files']} files; {info['corpus_pool_c']} with enough entries "
            f"for C, {info['corpus_pool_ab']} usable for A/B; skipped, no <item>/<entry>: "
            f"{', '.join(info['corpus_skipped']) or 'none'}); class C serves each document "
            "with its newest entries cut out and puts 1-3 of them back per cycle"
        )
    else:
        print("  bodies: SYNTHETIC RSS 2.0, 20 items with ~500-byte HTML descriptions")
    sizes = ", ".join(f"{k}={v / 1024:.1f} KB" for k, v in info["mean_body_bytes"].items())
    print(f"  mean body size by class (sample): {sizes}")
    print(
        f"  concurrency {args.concurrency} (feedhook: PollSettings.concurrency and "
        f"NetSettings.per_host_concurrency; floor: asyncio.Semaphore; reader: workers=); "
        f"jitter 0; {args.cycles} measured cycles after a warm-up (first poll)"
    )
    print(
        f"  new items the server adds per cycle: "
        f"{', '.join(f'cycle {k}: {v}' for k, v in expected_new.items())}"
    )
    print(
        "  CPU = time.process_time() of the pass's own process (all its threads: feedhook "
        "parses in its parser thread, SQLite runs in its database thread); peak RSS = ru_maxrss "
        "of that process (high-water mark since it started, includes imports); every pass runs "
        "with the garbage collector settings of `feedhook run` (bot.app.settle_heap)"
        + ("; traced peak = tracemalloc peak within the cycle" if args.tracemalloc else "")
    )
    print(
        "  feedhook's cycles include delivering what they queue: its own Deliverer posts every "
        "new item to a fake Discord (bench/deliver_fake.py, its own process, Discord's rate "
        "limits: 5/2 s per webhook, 50/s global; feedhook paces itself at 45/s, so wall time "
        "includes that pacing). The per-class passes and the reader comparison are polling only."
    )
    sys.stdout.flush()

    print(f"  load average at start: {_load()}")
    t0 = datetime.now(UTC).replace(microsecond=0)
    trace = args.tracemalloc

    raw = run_isolated(
        raw_fetch_pass, RawParams(base_url, indexes, args.cycles, args.concurrency, trace)
    )
    print_pass(raw)

    main_name = "feedhook"
    fh = run_isolated(
        feedhook_pass,
        FeedhookParams(
            f"{main_name} (all {args.sources} sources)",
            base_url,
            indexes,
            args.cycles,
            args.concurrency,
            INTERVAL,
            workdir,
            t0,
            trace,
            snapshot_classes=True,
            deliver=True,
        ),
    )
    print_pass(fh)

    per_class: dict[str, PassResult] = {}
    for cls, label in (("A", "304"), ("B", "unchanged, no validators"), ("C", "changed")):
        # A and B are cheap, so all cycles. C (the costly one) gets cycle 2, the cycle whose
        # bodies the parse floor below parses; its cycle 1 is a new process's first look
        # (nothing remembered, every changed document parsed whole), shown apart.
        cycles = 2 if cls == "C" else args.cycles
        res = run_isolated(
            feedhook_pass,
            FeedhookParams(
                f"feedhook, only class {cls} due ({label})",
                base_url,
                by_class[cls],
                cycles,
                args.concurrency,
                INTERVAL,
                workdir,
                t0,
                trace,
                db_file=snapshot_path(workdir, fh.name, cls),
                warm_cycles=1 if cls == "C" else 0,
            ),
        )
        res.notes.append(
            "starts from a copy of the database above after its first poll, "
            "with the other classes' subscriptions disabled"
        )
        per_class[cls] = res
        print_pass(res)

    # One cycle's changed bodies (cycle 2), the same documents the class C pass measured.
    floor = run_isolated(parse_floor_pass, ParseParams(base_url, by_class["C"], 2, trace))
    print_pass(floor)

    stack: PassResult | None = None
    if not args.corpus:
        stack = run_isolated(
            stack_floor_pass, StackParams(base_url, indexes, args.cycles, args.concurrency, trace)
        )
        stack.notes.append(
            "no feedhook code: what any relay built on aiohttp, feedparser and markdownify "
            "spends on this cycle's GETs, new entries and posts"
        )
        print_pass(stack)

    peer: PassResult | None = None
    if not args.skip_reader:
        peer = run_isolated(
            reader_pass,
            ReaderParams(base_url, indexes, args.cycles, args.concurrency, workdir, trace),
        )
        peer.notes.append(
            "run in its own process like the others; its HTTP fetches use "
            "worker threads, its parsing runs in the calling thread"
        )
        print_pass(peer)

    summary(args, raw, fh, per_class, floor, stack, peer, expected_new)


def summary(
    args: argparse.Namespace,
    raw: PassResult,
    fh: PassResult,
    per_class: dict[str, PassResult],
    floor: PassResult,
    stack: PassResult | None,
    peer: PassResult | None,
    expected_new: dict[int, int],
) -> None:
    bodies = "real corpus" if args.corpus else "synthetic"
    raw_cpu = cpu_per_source_ms(raw)
    fh_cpu = cpu_per_source_ms(fh)
    fh_wall = mean_poll_wall(fh)
    print(f"\n== summary ({bodies} bodies; means over cycles 1..{args.cycles})")
    print(
        f"  fetch floor: {mean_wall(raw):.3f} s wall per cycle, "
        f"{raw_cpu:.3f} ms CPU per conditional GET"
    )
    print(
        f"  feedhook:    {mean_cpu(fh):.3f} s CPU per cycle with its deliveries, "
        f"{fh_cpu:.3f} ms CPU per source "
        f"(worst cycle {max(c.cpu_per_source_ms for c in fh.cycles):.3f} ms); "
        f"polling alone {fh_wall:.3f} s wall, {poll_cpu_per_source_ms(fh):.3f} ms CPU per source; "
        f"with the deliveries paced at 45/s {mean_wall(fh):.1f} s wall"
    )
    if args.sources < 1000:
        print(
            f"  (only {args.sources} sources: per-source figures carry each cycle's fixed costs, "
            "like claiming and connection set-up; use the default 2000 for the targets)"
        )
    got_new = [c.new_items for c in fh.cycles]
    want_new = [expected_new.get(k, 0) for k in range(1, args.cycles + 1)]
    queued = [c.outbox_delta or 0 for c in fh.cycles]
    print(
        f"  new items per cycle: feedhook {got_new}, server added {want_new}; "
        f"outbox rows queued {queued} (one subscription per source)"
    )
    if args.corpus and "C" in args.corpus_classes:
        print(
            "  (real feeds can repeat an entry's id, which feedhook rightly counts once, and a "
            "failed poll's items show up at the next good one: counts may differ a little)"
        )
    elif got_new != want_new:
        print("  WARNING: feedhook did not find exactly the items the server added")

    rows: list[tuple[str, str, bool | None]] = []
    rows.append(
        (
            "CPU per source over a whole cycle, deliveries included <= 1 ms",
            f"{fh_cpu:.3f} ms",
            fh_cpu <= 1.0,
        )
    )
    if raw_cpu:
        # The issue quotes ~0.08 ms CPU per raw GET on its reference machine; machines
        # here have measured 0.15-0.35 ms. Scaling by the floor of the same run says
        # what the absolute target means on a machine of the reference's speed.
        scaled = fh_cpu * REFERENCE_RAW_GET_MS / raw_cpu
        rows.append(
            (
                f"  (the same, scaled to a raw GET of {REFERENCE_RAW_GET_MS} ms, an estimate)",
                f"{fh_cpu:.3f} x {REFERENCE_RAW_GET_MS} / {raw_cpu:.3f} = {scaled:.3f} ms",
                None,
            )
        )
    if stack is None:
        stack_value = "measured with synthetic bodies only (run without --corpus)"
    else:
        stack_cpu = cpu_per_source_ms(stack)
        stack_value = f"{stack_cpu:.3f} ms per source; feedhook = {fh_cpu / stack_cpu:.2f}x that"
        if stack_cpu > 1.0:
            stack_value += "; above 1 ms, so no relay on this stack meets 1 ms on this machine"
    rows.append(("  (the libraries' own work, no feedhook code: stack floor)", stack_value, None))
    ratio = fh_cpu / raw_cpu if raw_cpu else float("inf")
    rows.append(
        (
            "CPU per source <= 10x raw client's CPU per GET",
            f"{fh_cpu:.3f} / {raw_cpu:.3f} ms = {ratio:.1f}x",
            ratio <= 10.0,
        )
    )
    for cls, what in (("A", "304 source"), ("B", "unchanged source")):
        per = cpu_per_source_ms(per_class[cls])
        rows.append((f"{what} (class {cls} alone) <= 1 ms CPU each", f"{per:.3f} ms", per <= 1.0))
    if peer is not None:
        speedup = mean_wall(peer) / fh_wall if fh_wall else float("inf")
        applies = not args.corpus
        rows.append(
            (
                "cycle (polling) vs reader, synthetic bodies >= 10x faster"
                + ("" if applies else " (target is for synthetic bodies)"),
                f"reader {mean_wall(peer):.2f} s / feedhook {fh_wall:.3f} s = {speedup:.1f}x",
                speedup >= 10.0 if applies else None,
            )
        )
        rows.append(
            (
                "  (CPU per cycle, for reference)",
                f"reader {mean_cpu(peer):.2f} s vs feedhook {mean_cpu(fh):.3f} s "
                f"= {mean_cpu(peer) / mean_cpu(fh):.1f}x",
                None,
            )
        )
    else:
        rows.append(("cycle vs reader >= 10x faster", "skipped (--skip-reader)", None))
    # Same documents: the class C pass's cycle 2 against feedparser.parse of cycle 2's bodies.
    c_first = per_class["C"].cycles[0]
    floor_first = floor.cycles[-1]
    c_ms = c_first.cpu_per_source_ms
    floor_ms = floor_first.cpu_per_source_ms
    rows.append(
        (
            "changed class CPU <= parse floor (real bodies)"
            + ("" if args.corpus else " (target is for real bodies)"),
            f"cycle 2: feedhook {c_ms:.2f} ms vs feedparser.parse {floor_ms:.2f} ms per source "
            f"= {c_ms / floor_ms:.2f}x",
            c_ms <= floor_ms if args.corpus else None,
        )
    )
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, ok in rows:
        mark = "info" if ok is None else verdict(ok)
        print(f"  [{mark:>4}] {name:<{width}}  {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
