"""Load and validate the configuration once, at start.

A bad file, value or unknown key raises :class:`ConfigError` whose message is one
line naming the key and what was expected; the CLI prints it and exits 2.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from bot.hooks import DEFAULT_TEMPLATE as DEFAULT_HOOK_TEMPLATE
from bot.hooks import MIN_CONFIG_TOKEN, compile_hook_template
from bot.http import parse_listen
from bot.models import WebhookTarget
from bot.shaping import MAX_FORUM_TAGS, SettingError, Shape, parse_settings
from bot.sources.forms import SourceFormError, SourceSettings, ensure_usable, parse_source
from bot.templates import TemplateError
from bot.webhooks import WebhookURLError, parse_webhook_url

DEFAULT_CONFIG_PATH = Path("config.toml")
ENV_OVERRIDES = {
    "FEEDHOOK_DISCORD_TOKEN": ("discord", "token"),
    "FEEDHOOK_DATABASE_URL": ("database", "url"),
    "FEEDHOOK_HTTP_LISTEN": ("http", "listen"),
}


class ConfigError(Exception):
    """The configuration is unusable; ``str(e)`` is the one line to show."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = 'a duration such as 90, "30s", "10m" or "1h"'


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "30s", "10m", "1h"."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(_DURATION_HINT)
    if seconds <= 0:
        raise ValueError(f"{_DURATION_HINT}, greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DiscordConfig(_Section):
    token: str = Field(default="", repr=False)
    api_base: str = "https://discord.com/api/v10"
    gateway_url: str = ""
    guild_ids: tuple[int, ...] = ()
    max_subscriptions_per_guild: int = Field(default=100, ge=1, le=10000)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("an http(s) URL such as https://discord.com/api/v10")
        return value.rstrip("/")


class DatabaseConfig(_Section):
    url: str = "sqlite:///feedhook.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql://")):
            raise ValueError("sqlite:///PATH or postgresql://user@host:port/db")
        return value


class PollingConfig(_Section):
    interval: Duration = 600.0
    min_interval: Duration = 300.0
    max_interval: Duration = 6 * 3600.0
    timeout: Duration = 30.0
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    allow_private_addresses: bool = False
    allowed_hosts: tuple[str, ...] = ()
    per_host_concurrency: int = Field(default=2, ge=1, le=100)
    concurrency: int = Field(default=64, ge=1, le=1000)
    max_new_per_poll: int = Field(default=25, ge=1, le=1000)
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    # A source failing for longer than this gets a notice in its subscriptions' channels.
    notify_after: Duration = 86400.0
    # A source a WebSub hub pushes is still polled this often (missed pushes).
    push_safety_interval: Duration = 3600.0

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(host.strip().lower().strip("[]") for host in value if host.strip())


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class DeliveryConfig(_Section):
    max_age: Duration = 24 * 3600.0
    global_rate: float = Field(default=45.0, gt=0, le=50)
    batch_threshold: int = Field(default=3, ge=1, le=100)
    concurrency: int = Field(default=32, ge=1, le=500)
    timeout: Duration = 15.0
    lease: Duration = 60.0
    error_budget: int = Field(default=2000, ge=10, le=9000)


MIN_RETENTION = 7 * 86400.0


class HttpConfig(_Section):
    # "HOST:PORT" of the operator endpoints (/metrics, /healthz, /readyz); "" = off.
    # Several processes sharing one config need a port each: `run --listen`.
    listen: str = ""
    # The base URL at which WebSub hubs and hook senders reach this server (a reverse
    # proxy in front of `listen`); "" = push off: every source is polled.
    public_url: str = ""
    # Requests per minute each inbound hook token may make; more get 429.
    hook_rate_per_minute: int = Field(default=30, ge=1, le=100_000)

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an http(s) URL such as https://feedhook.example.org")
        if parts.query or parts.fragment:
            raise ValueError(
                "a base URL without ?query or #fragment, such as https://feedhook.example.org"
            )
        return value.rstrip("/")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_listen(value)  # its ValueError says what is wrong
        return value


class RetentionConfig(_Section):
    max_age: Duration = 30 * 86400.0

    @field_validator("max_age")
    @classmethod
    def _at_least_a_week(cls, value: float) -> float:
        if value < MIN_RETENTION:
            raise ValueError('a duration of at least "7d"')
        return value


def _service_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^/\s?#]+", value):
        raise ValueError("an http(s) base URL such as https://service.example")
    return value.rstrip("/")


# A service's base URL (bridge, AppView, site): http(s), no trailing slash.
ServiceURL = Annotated[str, AfterValidator(_service_url)]


class XSourceConfig(_Section):
    bridges: tuple[str, ...] = ()

    @field_validator("bridges")
    @classmethod
    def _bridge_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # the list as a whole, so an error names sources.x.bridges
        return tuple(_service_url(bridge) for bridge in value)


class BlueskySourceConfig(_Section):
    api_base: ServiceURL = "https://public.api.bsky.app"
    include_reposts: bool = True
    include_replies: bool = False


class YouTubeSourceConfig(_Section):
    base_url: ServiceURL = "https://www.youtube.com"


class RedditSourceConfig(_Section):
    base_url: ServiceURL = "https://www.reddit.com"


class SourcesConfig(_Section):
    x: XSourceConfig = XSourceConfig()
    bluesky: BlueskySourceConfig = BlueskySourceConfig()
    youtube: YouTubeSourceConfig = YouTubeSourceConfig()
    reddit: RedditSourceConfig = RedditSourceConfig()

    def settings(self) -> SourceSettings:
        return SourceSettings(
            x_bridges=self.x.bridges,
            bluesky_api_base=self.bluesky.api_base,
            bluesky_include_reposts=self.bluesky.include_reposts,
            bluesky_include_replies=self.bluesky.include_replies,
            youtube_base=self.youtube.base_url,
            reddit_base=self.reddit.base_url,
        )

    def bridge_hosts(self) -> frozenset[str]:
        """Hosts of the X bridges: fetched even when private, like polling.allowed_hosts."""
        return frozenset(
            (urlsplit(bridge).hostname or "").lower().strip("[]") for bridge in self.x.bridges
        )


def _checked_webhook(value: str) -> str:
    """A webhook URL as typed, checked (its ValueError says what is wrong)."""
    try:
        parse_webhook_url(value)
    except WebhookURLError as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


class FeedEntry(_Section):
    # A feed URL or any source form (x:handle, bsky:handle, @user@instance...); Config
    # replaces it by the source's canonical URL, checked against [sources.*].
    url: str
    webhook: str = Field(repr=False)
    backfill: int = Field(default=0, ge=0, le=10)
    style: Literal["embed", "text"] | None = None
    batch: bool = True
    # How items look, which are posted and whom they ping (bot.shaping checks them all
    # in Config, where the entry's index is known).
    content: str | None = None
    embed: bool | dict[str, str | int] | None = None
    username: str | None = None
    avatar_url: str | None = None
    include: list[str] | str | None = None
    exclude: list[str] | str | None = None
    mention_roles: list[int | str] | None = None
    mention_when: list[str] | str | None = None
    forum: bool = False
    thread_title: str | None = None
    forum_tags: list[int | str] | None = None
    follow_edits: bool = False

    def settings(self) -> dict[str, object]:
        """The entry's message settings as :func:`bot.shaping.parse_settings` reads them."""
        keys = (
            "style", "batch", "content", "embed", "username", "avatar_url", "include",
            "exclude", "mention_roles", "mention_when", "forum", "thread_title",
            "forum_tags", "follow_edits",
        )  # fmt: skip
        return {k: v for k in keys if (v := getattr(self, k)) is not None}

    def forum_tag_names(self) -> list[str]:
        """The forum_tags given by name (not id): read from Discord at start."""
        return [
            str(t).strip()
            for t in self.forum_tags or ()
            if isinstance(t, str) and not t.strip().isdigit()
        ]

    def shape(self, tag_ids: Sequence[int] | None = None) -> Shape:
        """The entry's settings; ``tag_ids`` replaces forum_tags (names resolved to ids)."""
        settings = self.settings()
        if tag_ids is not None:
            settings["forum_tags"] = list(tag_ids)
        elif self.forum_tag_names():
            # the ids among them; the names are checked against the forum at start
            settings["forum_tags"] = [t for t in self.forum_tags or () if str(t).strip().isdigit()]
        return parse_settings(settings)

    @field_validator("url")
    @classmethod
    def _source_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a feed URL or a source such as x:handle or bsky:handle")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        return _checked_webhook(value)

    @property
    def target(self) -> WebhookTarget:
        return parse_webhook_url(self.webhook)


class HookEntry(_Section):
    """``[[hooks]]``: POST {http.public_url}/hooks/{token} posts to ``webhook``."""

    webhook: str = Field(repr=False)
    # chosen by the operator; only its hash is stored
    token: str = Field(repr=False)
    template: str = DEFAULT_HOOK_TEMPLATE
    # true for a forum channel's webhook: each request opens a post (titled by its event)
    forum: bool = False

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        return _checked_webhook(value)

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: str) -> str:
        if len(value) < MIN_CONFIG_TOKEN:
            raise ValueError(
                f"at least {MIN_CONFIG_TOKEN} characters (this one has {len(value)}); make "
                'one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        if not all(c.isalnum() or c in "-_.~" for c in value):
            raise ValueError(
                "letters, digits and - _ . ~ only: the token is the last part of a URL"
            )
        return value

    @field_validator("template")
    @classmethod
    def _hook_template(cls, value: str) -> str:
        try:
            compile_hook_template(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def target(self) -> WebhookTarget:
        return parse_webhook_url(self.webhook)


class Config(_Section):
    discord: DiscordConfig = DiscordConfig()
    database: DatabaseConfig = DatabaseConfig()
    polling: PollingConfig = PollingConfig()
    logging: LoggingConfig = LoggingConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    retention: RetentionConfig = RetentionConfig()
    http: HttpConfig = HttpConfig()
    sources: SourcesConfig = SourcesConfig()
    # After sources: its validator reads them.
    feeds: tuple[FeedEntry, ...] = ()
    hooks: tuple[HookEntry, ...] = ()

    @field_validator("hooks")
    @classmethod
    def _distinct_tokens(cls, hooks: tuple[HookEntry, ...]) -> tuple[HookEntry, ...]:
        seen: dict[str, int] = {}
        for index, hook in enumerate(hooks):
            if hook.token in seen:
                raise FeedSourceError(
                    f"hooks[{index}].token: the same token as hooks[{seen[hook.token]}]; "
                    "each hook needs its own"
                )
            seen[hook.token] = index
        return hooks

    @field_validator("feeds")
    @classmethod
    def _canonical_sources(
        cls, feeds: tuple[FeedEntry, ...], info: ValidationInfo
    ) -> tuple[FeedEntry, ...]:
        """Each [[feeds]] url as its source's canonical URL (one source, however typed)."""
        sources = info.data.get("sources")
        if not isinstance(sources, SourcesConfig):
            return feeds  # [sources] is invalid itself: that is the error to report
        settings = sources.settings()
        out = []
        for index, feed in enumerate(feeds):
            try:
                ref = parse_source(feed.url, settings)
                ensure_usable(ref, settings)
            except SourceFormError as exc:
                # Not a ValueError to pydantic: it would lose the index. load_config
                # adds the file name.
                raise FeedSourceError(f"feeds[{index}].url: {exc}") from None
            try:
                feed.shape()
            except SettingError as exc:
                raise FeedSourceError(f"feeds[{index}].{exc.key}: {exc.problem}") from None
            if len(feed.forum_tags or ()) > MAX_FORUM_TAGS:
                raise FeedSourceError(
                    f"feeds[{index}].forum_tags: at most {MAX_FORUM_TAGS} tags (Discord's "
                    "limit on a forum post)"
                )
            discord = info.data.get("discord")
            if feed.forum_tag_names() and not (
                isinstance(discord, DiscordConfig) and discord.token
            ):
                raise FeedSourceError(
                    f"feeds[{index}].forum_tags: tag names need discord.token (feedhook reads "
                    "the forum's tags with it); without a bot, give the tag ids"
                )
            out.append(feed.model_copy(update={"url": ref.url}))
        return tuple(out)


class FeedSourceError(ConfigError):
    """A [[feeds]] url that is no source feedhook can use; names the key."""


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: itself, or the item of a tuple/list/union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _model_in(arg)) is not None:
            return model
    return None


def _table_at(
    loc: tuple[int | str, ...], data: Any
) -> tuple[type[BaseModel] | None, Mapping[str, Any]]:
    """The model and the raw table at ``loc``, both walked from :class:`Config`."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            # An item of tuple[FeedEntry, ...]: the field's step already found its model.
            in_range = isinstance(data, list | tuple) and 0 <= part < len(data)
            data = data[part] if in_range else None
        else:
            field = model.model_fields.get(part) if model is not None else None
            model = _model_in(field.annotation) if field is not None else None
            data = data.get(part) if isinstance(data, Mapping) else None
    return model, data if isinstance(data, Mapping) else {}


def _closest_key(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str | None:
    """The known key of the same table nearest to the unknown ``loc[-1]``, if one is near."""
    if not loc or not isinstance(loc[-1], str):
        return None
    model, table = _table_at(loc[:-1], data)
    if model is None:
        return None
    # A key the table already sets is no fix for a typo: renaming would duplicate it.
    known = {name.lower(): name for name in model.model_fields if name not in table}
    matches = difflib.get_close_matches(loc[-1].lower(), list(known), n=1, cutoff=0.6)
    return known[matches[0]] if matches else None


_WEBHOOK_PATH = re.compile(r"/webhooks?/", re.IGNORECASE)


def _looks_like_webhook(value: object) -> bool:
    return isinstance(value, str) and bool(_WEBHOOK_PATH.search(value))


def _shown_url(url: str) -> str | None:
    """A [[feeds]] url fit to print: no password, never a webhook (its token), not huge."""
    url = url.strip()
    if not url or _looks_like_webhook(url):
        return None
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            url = parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
    except ValueError:
        pass
    if len(url) > 200:
        url = url[:197] + "..."
    return json.dumps(url, ensure_ascii=False)


def _feed_entry(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """', in the [[feeds]] entry with url "..."' for an error inside one, else ''."""
    if len(loc) < 2 or loc[0] != "feeds" or not isinstance(loc[1], int):
        return ""
    _, entry = _table_at(loc[:2], data)
    url = entry.get("url")
    shown = _shown_url(url) if isinstance(url, str) else None
    return f" in the [[feeds]] entry with url {shown}" if shown else ""


def _describe(error: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> str:
    """One error as a clause naming its key; ``data`` (the raw input) adds hints."""
    data = {} if data is None else data
    loc = tuple(error["loc"])
    key = _format_location(loc) or "(top level)"
    entry = _feed_entry(loc, data)
    kind = error["type"]
    if kind == "extra_forbidden":
        closest = _closest_key(loc, data)
        advice = (
            f"did you mean {closest!r}?"
            if closest
            else "check the spelling against config.example.toml"
        )
        return f"unknown key {key!r}{entry}; {advice}"
    if kind == "missing":
        return f"{key}: required but missing{entry and ','}{entry}"
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be ", "", 1)
    got = error.get("input")
    hidden = (
        key.endswith(("token", "webhook"))
        or isinstance(got, dict)
        or _looks_like_webhook(repr(got))
    )
    shown = "" if hidden else f" (got {got!r})"
    if not message.startswith("expected "):  # validators that say it themselves
        message = f"expected {message}"
    return f"{key}: {message}{shown}{entry and ','}{entry}"


def _first_problem(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The error to show: an unknown key first, as it is often the cause of the others
    (a misspelt required key is also a missing one)."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, (section, key) in ENV_OVERRIDES.items():
        value = environ.get(name)
        if value:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{section}: expected a table")
            table[key] = value


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ./config.toml when present, else built-in defaults)."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found; pass --config PATH") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    _apply_env(data, environ)
    try:
        return Config.model_validate(data)
    except FeedSourceError as exc:
        raise ConfigError(f"config error in {source}: {exc}") from None
    except ValidationError as exc:
        errors = exc.errors()
        more = len(errors) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        shown = _describe(_first_problem(errors), data)
        raise ConfigError(f"config error in {source}: {shown}{suffix}") from None
