"""``feedhook import FILE.opml --webhook URL [--dry-run]`` and ``feedhook export`` as a
person runs them: real subprocesses, feeds on loopback, a fresh database each."""

from __future__ import annotations

from pathlib import Path

from bot.opml import parse_opml
from tests.conftest import Doc, FeedServer
from tests.test_cli import HOOK, feedhook
from tests.test_poller import rss

FIXTURES = Path(__file__).parent / "fixtures" / "opml"


def config_at(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / name}.db"\n'
        '[polling]\nallowed_hosts = ["127.0.0.1"]\ntimeout = "5s"\n',
        encoding="utf-8",
    )
    return path


def served_opml(tmp_path: Path, feed_server: FeedServer) -> tuple[Path, list[str]]:
    """The Feedly-shaped fixture with its feeds served on loopback (one left missing)."""
    text = (FIXTURES / "feedly.opml").read_text(encoding="utf-8")
    urls = sorted({o.url for o in parse_opml(text.encode())})
    for n, url in enumerate(urls):
        path = f"/feed{n}.xml"
        text = text.replace(f'"{url}"', f'"{feed_server.url(path)}"')
        if n:  # the first one is gone
            feed_server.docs[path] = Doc(rss([(f"e{n}", f"Entry {n}")], title=f"Feed {n}"))
    opml = tmp_path / "feedly.opml"
    opml.write_text(text, encoding="utf-8")
    return opml, [feed_server.url(f"/feed{n}.xml") for n in range(1, len(urls))]


async def test_import_export_round_trip(tmp_path: Path, feed_server: FeedServer) -> None:
    opml, served = served_opml(tmp_path, feed_server)
    first = config_at(tmp_path, "first")
    hook = HOOK.format(id=7)
    code, out, err = await feedhook(
        "import", str(opml), "--webhook", hook, "--config", str(first), "--dry-run"
    )
    assert code == 1, err  # one outline's feed is gone
    assert out.splitlines()[0].startswith(f"dry run, nothing was added: would add {len(served)},")
    code, out, err = await feedhook("export", "--config", str(first))
    assert code == 0, err
    assert [o.url for o in parse_opml(out.encode())] == []  # the dry run stored nothing

    code, out, err = await feedhook("import", str(opml), "--webhook", hook, "--config", str(first))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"added {len(served)}, already there 0, failed 1"
    assert lines[1].startswith(f"  {feed_server.url('/feed0.xml')}: ")
    assert "404" in lines[1]
    code, out, _ = await feedhook("import", str(opml), "--webhook", hook, "--config", str(first))
    assert out.splitlines()[0] == f"added 0, already there {len(served)}, failed 1"

    code, exported, err = await feedhook("export", "--config", str(first))
    assert code == 0, err
    assert hook.rsplit("/", 1)[1] not in exported  # never the webhook's token
    assert sorted(o.url for o in parse_opml(exported.encode())) == sorted(served)

    # into an empty database, then out again: the same feeds
    again = tmp_path / "exported.opml"
    again.write_text(exported, encoding="utf-8")
    second = config_at(tmp_path, "second")
    code, out, err = await feedhook(
        "import", str(again), "--webhook", hook, "--config", str(second)
    )
    assert code == 0, err
    code, round_trip, _ = await feedhook("export", "--config", str(second))
    assert sorted(o.url for o in parse_opml(round_trip.encode())) == sorted(served)

    # [[feeds]]-less restarts keep them: they are not config subscriptions
    code, out, _ = await feedhook("status", "--config", str(second))
    assert "DISABLED" not in out


async def test_malformed_opml_is_one_line_and_adds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.opml"
    bad.write_text("<opml><body><outline", encoding="utf-8")
    config = config_at(tmp_path, "db")
    code, out, err = await feedhook(
        "import", str(bad), "--webhook", HOOK.format(id=1), "--config", str(config)
    )
    assert code == 1
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"feedhook: {bad}: not valid XML:")
    assert line.endswith("nothing was added")
    code, _, err = await feedhook(
        "import", str(tmp_path / "missing.opml"), "--webhook", HOOK.format(id=1)
    )
    assert code == 1
    assert "cannot read" in err
    code, _, err = await feedhook("import", str(bad), "--webhook", "https://example.com/x")
    assert code == 1
    assert err.startswith("feedhook: --webhook: ")
