from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import Config, ConfigError, load_config, parse_duration
from bot.webhooks import WebhookURLError, execute_url, parse_webhook_url

ROOT = Path(__file__).resolve().parent.parent
HOOK = "https://discord.com/api/webhooks/123456789012345678/s3cr3t-T0ken_x"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        (" 2 h ", 7200.0),
        ("45", 45.0),
        ("1d", 86400.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["abc", "10 minutes", "", "-5s", 0, True, "1w", None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config == Config()
    assert config.polling.interval == 600
    assert config.polling.max_new_per_poll == 25
    assert config.discord.api_base == "https://discord.com/api/v10"
    assert config.database.url == "sqlite:///feedhook.db"


def test_config_toml_in_the_working_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[polling]\ninterval = "2m"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).polling.interval == 120


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[discord]
token = "abc"
guild_ids = [1, 2]
[database]
url = "postgresql://feedhook@db:5432/feedhook"
[polling]
interval = "15m"
allowed_hosts = ["Nitter.LAN", "[fd00::1]"]
per_host_concurrency = 4
[logging]
level = "debug"
format = "json"
[[feeds]]
url = "https://example.com/feed.xml"
webhook = "{HOOK}?thread_id=42"
backfill = 3
""",
    )
    config = load_config(path, environ={})
    assert config.discord.guild_ids == (1, 2)
    assert config.polling.interval == 900
    assert config.polling.allowed_hosts == ("nitter.lan", "fd00::1")
    assert config.logging.level == "DEBUG"
    (feed,) = config.feeds
    assert feed.target.webhook_id == 123456789012345678
    assert feed.target.thread_id == 42
    assert feed.backfill == 3


def test_env_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, '[discord]\ntoken = "from-file"\n')
    config = load_config(
        path,
        environ={"FEEDHOOK_DISCORD_TOKEN": "from-env", "FEEDHOOK_DATABASE_URL": "sqlite:///x.db"},
    )
    assert config.discord.token == "from-env"
    assert config.database.url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[polling]\nintervall = "10m"\n', "unknown key 'polling.intervall'"),
        ("[pollng]\n", "unknown key 'pollng'"),
        ('[polling]\ninterval = "soon"\n', "polling.interval: expected a duration"),
        ("[polling]\nper_host_concurrency = 0\n", "polling.per_host_concurrency: expected"),
        ('[logging]\nformat = "xml"\n', "logging.format: expected 'text' or 'json'"),
        ('[database]\nurl = "mysql://x"\n', "database.url: expected sqlite:///PATH"),
        ('[[feeds]]\nurl = "ftp://x"\nwebhook = "' + HOOK + '"\n', "feeds[0].url"),
        ('[[feeds]]\nurl = "https://x.org/f"\n', "feeds[0].webhook: required"),
        ("polling = [", "is not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"^config error|not valid TOML") as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_webhook_never_echoes_its_token(tmp_path: Path) -> None:
    bad = "https://evil.example/api/webhooks/1/s3cr3t-T0ken_x"
    text = f'[[feeds]]\nurl = "https://x.org/f"\nwebhook = "{bad}"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "feeds[0].webhook: expected a Discord webhook URL like" in str(info.value)
    assert "expected expected" not in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[polling]\nintervall = "10m"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "status", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"feedhook: config error in {path}: unknown key 'polling.intervall'; "
        "did you mean 'interval'?"
    ]


ISSUE_17_FEED = f"""
[[feeds]]
url = "https://example.com/feed.xml"
webhok = "{HOOK}"
"""
ISSUE_17_LINE = (
    "unknown key 'feeds[0].webhok' in the [[feeds]] entry with url "
    "\"https://example.com/feed.xml\"; did you mean 'webhook'? (and 1 more problem)"
)


def test_a_misspelt_feed_key_is_reported_before_the_missing_one(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_17_FEED)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"config error in {path}: {ISSUE_17_LINE}"
    assert "required but missing" not in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_the_cli_names_a_misspelt_feed_key_its_entry_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_17_FEED)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--config", str(path), "https://example.com/f"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"feedhook: config error in {path}: {ISSUE_17_LINE}"]
    assert "s3cr3t" not in proc.stderr
    assert "123456789012345678" not in proc.stderr


def test_cli_main_reports_the_unknown_key_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two problems in the entry and one elsewhere: the unknown key still comes first.
    path = write(tmp_path, '[polling]\ninterval = "soon"\n' + ISSUE_17_FEED)
    assert main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"feedhook: config error in {path}: unknown key 'feeds[0].webhok' ")
    assert "did you mean 'webhook'?" in err
    assert err.endswith("(and 2 more problems)\n")
    assert "s3cr3t" not in err


@pytest.mark.parametrize(
    ("text", "key", "closest"),
    [
        ('[polling]\nintervall = "5m"\n', "polling.intervall", "interval"),
        ("[pollng]\n", "pollng", "polling"),
        ('[polling2]\ninterval = "5m"\n', "polling2", "polling"),
        ('[logging]\nLevel = "debug"\n', "logging.Level", "level"),
        ("[delivery]\nglobal_rat = 10\n", "delivery.global_rat", "global_rate"),
        ("[sources.x]\nbrigdes = []\n", "sources.x.brigdes", "bridges"),
        (
            '[sources.bluesky]\napi_bse = "https://b.example"\n',
            "sources.bluesky.api_bse",
            "api_base",
        ),
        ("[sourcs.x]\n", "sourcs", "sources"),
    ],
)
def test_an_unknown_key_names_the_closest_key_of_its_table(
    tmp_path: Path, text: str, key: str, closest: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert str(info.value).endswith(f"unknown key {key!r}; did you mean {closest!r}?")


@pytest.mark.parametrize(
    "text",
    [
        "[delivery]\nzzqx = 1\n",
        "[zzqx]\n",
        # the close key is set already: renaming the typo would not fix anything
        f'[[feeds]]\nurl = "https://example.com/f"\nwebhook = "{HOOK}"\nwebhok = "x"\n',
    ],
)
def test_an_unknown_key_without_a_close_match_keeps_the_advice(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = str(info.value)
    assert message.endswith("; check the spelling against config.example.toml")
    assert "did you mean" not in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (f'webhook = "{HOOK}"\nbackfill = 99', "feeds[1].backfill: expected less than or equal"),
        (f'webhook = "{HOOK}"\nstyle = "fancy"', "feeds[1].style: expected 'embed' or 'text'"),
        ('webhook = "https://evil.example/api/webhooks/1/s3cr3t"', "feeds[1].webhook: expected"),
        ("", "feeds[1].webhook: required but missing, "),
    ],
)
def test_an_error_in_a_feed_entry_names_it_by_index_and_url(
    tmp_path: Path, entry: str, expected: str
) -> None:
    text = (
        f'[[feeds]]\nurl = "https://example.com/a"\nwebhook = "{HOOK}"\n'
        f'[[feeds]]\nurl = "https://example.com/b"\n{entry}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = str(info.value)
    assert expected in message
    assert message.endswith(', in the [[feeds]] entry with url "https://example.com/b"')
    assert "s3cr3t" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        HOOK,  # url and webhook swapped: the url is a webhook, its token stays hidden
        "",
    ],
)
def test_a_feed_entry_whose_url_cannot_be_shown_is_named_by_index(tmp_path: Path, url: str) -> None:
    text = f'[[feeds]]\nurl = "{url}"\nwebhok = "https://example.com/feed.xml"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = str(info.value)
    assert ": unknown key 'feeds[0].webhok'; did you mean 'webhook'?" in message
    assert "in the [[feeds]] entry" not in message
    assert "s3cr3t" not in message


def test_a_feed_url_password_is_not_shown(tmp_path: Path) -> None:
    text = '[[feeds]]\nurl = "https://me:hunter2@example.com/private.xml"\nwebhok = "x"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert 'with url "https://me:***@example.com/private.xml"' in str(info.value)
    assert "hunter2" not in str(info.value)


def test_example_config_is_valid_and_lists_every_key(tmp_path: Path) -> None:
    example = ROOT / "config.example.toml"
    config = load_config(example, environ={})
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    for section in ("discord", "database", "polling", "delivery", "logging", "retention", "http"):
        model = getattr(Config(), section)
        assert set(data[section]) == set(type(model).model_fields), section
    assert set(data["sources"]) == set(type(config.sources).model_fields)
    for section, model in config.sources:
        assert set(data["sources"][section]) == set(type(model).model_fields), section
        assert model == getattr(Config().sources, section), f"sources.{section} defaults"
    assert config.feeds
    # style and embed cannot share an entry: together the entries name every key
    keys = {key for entry in data["feeds"] for key in entry}
    assert keys == set(type(config.feeds[0]).model_fields)


@pytest.mark.parametrize(
    "url",
    [
        HOOK,
        HOOK.replace("discord.com/api", "discord.com/api/v10"),
        HOOK.replace("discord.com", "discordapp.com"),
        HOOK.replace("discord.com", "canary.discord.com"),
        HOOK.replace("discord.com", "ptb.discord.com"),
    ],
)
def test_webhook_url_forms(url: str) -> None:
    target = parse_webhook_url(url)
    assert (target.webhook_id, target.token, target.thread_id) == (
        123456789012345678,
        "s3cr3t-T0ken_x",
        None,
    )
    assert "s3cr3t" not in repr(target)
    assert execute_url("http://127.0.0.1:9/api/v10", target) == (
        "http://127.0.0.1:9/api/v10/webhooks/123456789012345678/s3cr3t-T0ken_x?wait=true"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://discord.com/api/webhooks/1/t",
        "https://discord.com/api/webhooks/x/t",
        "https://discord.com.evil.org/api/webhooks/1/t",
        "https://discord.com/api/channels/1",
        "https://discord.com/api/webhooks/1/t?thread_id=abc",
    ],
)
def test_bad_webhook_urls(url: str) -> None:
    with pytest.raises(WebhookURLError):
        parse_webhook_url(url)


def test_a_webhook_url_given_as_the_source_is_refused_without_its_token(tmp_path: Path) -> None:
    hook = "https://discord.com/api/webhooks/123456/SECRETtokenvalue"
    path = tmp_path / "swapped.toml"
    path.write_text(f'[[feeds]]\nurl = "{hook}"\nwebhook = "{hook}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert "feeds[0].url: That is a Discord webhook URL, where feedhook posts" in message
    assert "SECRETtokenvalue" not in message


def test_a_webhook_inside_a_malformed_feeds_value_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "list.toml"
    path.write_text(
        'feeds = [["https://blog.example/feed", '
        '"https://discord.com/api/webhooks/1/SECRETtokenvalue"]]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert "SECRETtokenvalue" not in str(refused.value)
    assert "feeds[0]" in str(refused.value)
