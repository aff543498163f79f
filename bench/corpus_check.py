"""What ``feedhook check --json`` prints for every feed of a corpus, one file per feed.

    python -m bench.corpus_check --corpus ../shared/corpus/feeds --out /tmp/before
    (change the parser or the renderer)
    python -m bench.corpus_check --corpus ../shared/corpus/feeds --out /tmp/after
    diff -r /tmp/before /tmp/after

The documents are served by an aiohttp server on 127.0.0.1 and read through the same
``check_source`` the CLI runs (fetcher, SSRF guard allowed for loopback, parser, renderer),
so a parser or renderer change shows up as a per-feed difference. A feed ``check`` refuses
gets its one-line error in ``NAME.error`` instead of ``NAME.json``. Nothing from the corpus
is copied into the project.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

from aiohttp import web

from bot.cli import CommandError, check_source
from bot.config import Config, PollingConfig


async def _serve(corpus: Path) -> tuple[web.AppRunner, int]:
    async def document(request: web.Request) -> web.Response:
        path = corpus / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        # No Content-Type hint: feedhook sniffs, as it must for misconfigured servers.
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", document)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, int(port)


def _documents(corpus: Path) -> list[Path]:
    return sorted(
        p
        for p in corpus.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".md"
    )


async def snapshot(corpus: Path, out: Path) -> tuple[int, int]:
    documents = _documents(corpus)
    config = Config(polling=PollingConfig(allow_private_addresses=True))
    runner, port = await _serve(corpus)
    ok = failed = 0
    try:
        for path in documents:
            buffer = io.StringIO()
            try:
                await check_source(
                    config, f"http://127.0.0.1:{port}/{path.name}", as_json=True, out=buffer
                )
            except CommandError as exc:
                # The port changes each run; keep the error comparable.
                text = str(exc).replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
                (out / f"{path.name}.error").write_text(text + "\n", encoding="utf-8")
                failed += 1
                continue
            # Relative links resolve against the served URL, whose port changes each run.
            text = buffer.getvalue().replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
            (out / f"{path.name}.json").write_text(text, encoding="utf-8")
            ok += 1
    finally:
        await runner.cleanup()
    return ok, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, metavar="DIR")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        parser.error(f"--corpus {args.corpus}: not a directory")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ok, failed = asyncio.run(snapshot(args.corpus, args.out))
    print(
        f"{ok} feeds rendered, {failed} refused, in {time.perf_counter() - started:.1f} s "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
