"""``feedhook check [SOURCE] --as-feed N [--json]``: a source rendered with the settings of
the config's [[feeds]] entry N, as a person trying a format would run it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Doc, FeedServer
from tests.test_cli import HOOK, feedhook, write_config
from tests.test_poller import rss

SETTINGS = [
    # 0: the default look
    "",
    # 1: a compact line, sponsored items left out, a ping for releases
    'embed = false\ncontent = "**{title}** <{link}>"\nexclude = ["title:sponsored"]\n'
    'mention_roles = ["4242"]\nmention_when = ["release"]',
]


def config_with(tmp_path: Path, feed_server: FeedServer, settings: list[str]) -> Path:
    path = write_config(tmp_path)
    tables = [
        f'[[feeds]]\nurl = "{feed_server.url("/f.xml")}"\nwebhook = "{HOOK.format(id=n + 1)}"\n'
        f"{extra}\n"
        for n, extra in enumerate(settings)
    ]
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(tables), encoding="utf-8")
    return path


async def test_as_feed_renders_with_the_entry_settings(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = rss_doc()
    config = config_with(tmp_path, feed_server, SETTINGS)
    code, out, err = await feedhook("check", "--config", str(config), "--as-feed", "1", "--json")
    assert code == 0, err
    bodies = json.loads(out)  # stdout holds only the bodies of the entries that pass
    assert [b["content"] for b in bodies] == [
        "**Weekly notes** <https://example.com/c>",
        "<@&4242>\n**Version 2 release** <https://example.com/a>",
    ]
    assert bodies[1]["allowed_mentions"] == {"parse": [], "roles": ["4242"]}
    assert all("embeds" not in b for b in bodies)
    assert err.strip().splitlines() == ["filtered out: Sponsored: buy a boat"]

    # without --json: the same entries for a person; SOURCE given explicitly works too
    code, out, err = await feedhook(
        "check", "--config", str(config), feed_server.url("/f.xml"), "--as-feed", "1"
    )
    assert code == 0, err
    assert "2 of 3 entries pass the filters" in out
    assert "<@&4242>\n**Version 2 release**" in out
    assert "Sponsored" not in out

    # entry 0 is today's look, the same as check without --as-feed
    _, with_entry, _ = await feedhook("check", "--config", str(config), "--as-feed", "0", "--json")
    _, plain, _ = await feedhook(
        "check", "--config", str(config), feed_server.url("/f.xml"), "--json"
    )
    assert json.loads(with_entry) == json.loads(plain)


async def test_as_feed_out_of_range_or_a_bad_setting_is_one_line(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = rss_doc()
    config = config_with(tmp_path, feed_server, SETTINGS)
    code, out, err = await feedhook("check", "--config", str(config), "--as-feed", "2")
    assert code == 2
    assert out == ""
    assert err.strip() == "feedhook: --as-feed 2: the config has 2 [[feeds]] entries; give 0 to 1"
    code, _, err = await feedhook("check", "--config", str(config))
    assert code == 2
    assert "check needs a SOURCE (or --as-feed N)" in err

    bad = config_with(tmp_path, feed_server, ["", 'content = "{titel} <{link}>"'])
    code, out, err = await feedhook("check", "--config", str(bad), "--as-feed", "0")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert (
        "feeds[1].content: unknown placeholder {titel} at position 1; did you mean {title}?" in line
    )

    both = config_with(tmp_path, feed_server, ['style = "text"\nembed = false'])
    code, _, err = await feedhook("check", "--config", str(both), "--as-feed", "0")
    assert code == 2
    assert "feeds[0].style: set either style or embed, not both" in err


def rss_doc() -> Doc:
    return Doc(
        rss(
            [
                ("c", "Weekly notes"),
                ("b", "Sponsored: buy a boat"),
                ("a", "Version 2 release"),
            ],
            title="Harbour News",
        )
    )
