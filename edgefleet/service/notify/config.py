"""Notification config: channels (webhook, email) and routes, from a TOML file.

Checked when `edgefleet serve` starts: every problem is one line naming the file, the channel or
route and what is wrong. Secrets come from the environment (`secret_env`, `password_env`) or,
for a quick try, from the file itself (`secret`, `password`); they are never logged or shown
(`repr` hides them). Format: docs/notifications.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgefleet.errors import ConfigError
from edgefleet.service.store.base import SEVERITIES
from edgefleet.service.store.outbox import ALARM_KINDS

CHANNEL_TYPES = ("webhook", "email")
WEBHOOK_FORMATS = ("json", "slack", "teams")  # json: edgefleet's signed body; slack/teams: their incoming-webhook payloads
HEALTH_EVENTS = ("raised", "reopened", "severity", "cleared")
EVENTS = HEALTH_EVENTS  # data-loss alarms have raised and cleared only
SECURITY = ("starttls", "tls", "none")


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: str = field(repr=False)
    timeout_s: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()
    type: str = "webhook"
    format: str = "json"  # WEBHOOK_FORMATS

    @property
    def where(self) -> str:
        """The URL as it may be logged: scheme, host and port (a path can carry a token)."""
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}"


@dataclass(frozen=True)
class Email:
    name: str
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""  # trust this CA (a private mail relay); default: the system's
    timeout_s: float = 10.0
    type: str = "email"

    @property
    def where(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    name: str
    channels: tuple[str, ...]
    sites: tuple[str, ...] = ()  # empty: any
    lines: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # the device has at least one of them
    kinds: tuple[str, ...] = ALARM_KINDS
    events: tuple[str, ...] = EVENTS
    min_severity: str = "warning"  # health alarms; data-loss alarms have no severity
    escalate_after_min: float = 0.0  # 0: no escalation
    escalate_to: tuple[str, ...] = ()  # channels of the escalation
    digest_utc: str = ""  # "HH:MM": a daily digest of the route's alarms at this UTC time; empty: none


@dataclass(frozen=True)
class NotifyConfig:
    channels: dict[str, Webhook | Email] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    reopen_every_min: float = 30.0  # a flapping alarm's reopen is notified at most once per this
    give_up_h: float = 24.0  # a notification its channel refused this long is marked failed
    retry_min_s: float = 5.0  # backoff: retry_min_s, doubling, up to retry_max_s
    retry_max_s: float = 300.0
    poll_s: float = 1.0
    dashboard_url: str = ""  # put into messages as a link to the Alarms page when set
    source: str = ""  # the file it came from

    @property
    def enabled(self) -> bool:
        return bool(self.channels and self.routes)


def _strs(where: str, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a string or a list of strings")
    return tuple(value)


def _num(where: str, key: str, value: object, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo:
        raise ConfigError(f"{where}: {key} must be a number >= {lo:g}, got {value!r}")
    return float(value)


def _secret(where: str, spec: Mapping, key: str, env: Mapping[str, str], required: bool) -> str:
    if f"{key}_env" in spec:
        var = spec[f"{key}_env"]
        value = env.get(str(var), "")
        if not value and required:
            raise ConfigError(f"{where}: {key}_env names ${var}, which is not set or empty")
        return value
    value = spec.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"{where}: missing {key} (set {key}_env = \"VAR\" to read it from the environment)")
    return value


def _check_keys(where: str, spec: Mapping, allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")


def _channel(name: str, spec: object, env: Mapping[str, str], src: str) -> Webhook | Email:
    where = f"{src}: channel {name!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        raise ConfigError(f"{where}: unknown channel type {kind!r} (one of {', '.join(CHANNEL_TYPES)})")
    if kind == "webhook":
        _check_keys(where, spec, {"type", "url", "secret", "secret_env", "timeout_s", "headers", "format"})
        fmt = spec.get("format", "json")
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(f"{where}: format must be one of {', '.join(WEBHOOK_FORMATS)}, got {fmt!r}")
        url = spec.get("url")
        u = urlsplit(url) if isinstance(url, str) else None
        try:
            ok = u is not None and u.scheme in ("http", "https") and bool(u.hostname) and (u.port or 1) > 0
        except ValueError:
            ok = False
        if not ok:  # the URL itself is not echoed: a webhook URL's path often is its token
            got = "no url" if not isinstance(url, str) else f"scheme {u.scheme!r}, host {u.hostname!r}"
            raise ConfigError(f"{where}: url must be an http:// or https:// URL with a host, got {got}")
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError(f"{where}: headers must be a table of strings")
        # Slack and Teams incoming webhooks carry their token in the URL and ignore a signature: optional there
        return Webhook(name, url, _secret(where, spec, "secret", env, fmt == "json"),
                       _num(where, "timeout_s", spec.get("timeout_s", 5.0), 0.1), tuple(headers.items()), format=fmt)
    _check_keys(where, spec, {"type", "host", "port", "security", "from", "to", "username", "password",
                              "password_env", "cafile", "timeout_s"})
    host, sender = spec.get("host"), spec.get("from")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: missing host (the SMTP server)")
    if not isinstance(sender, str) or "@" not in sender:
        raise ConfigError(f"{where}: from must be an e-mail address, got {sender!r}")
    to = _strs(where, "to", spec.get("to", []))
    if not to or not all("@" in a for a in to):
        raise ConfigError(f"{where}: to must name at least one e-mail address")
    security = spec.get("security", "starttls")
    if security not in SECURITY:
        raise ConfigError(f"{where}: security must be one of {', '.join(SECURITY)}, got {security!r}")
    port = spec.get("port", 465 if security == "tls" else 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: port must be 1..65535, got {port!r}")
    username = spec.get("username", "")
    password = _secret(where, spec, "password", env, bool(username))
    cafile = spec.get("cafile", "")
    if cafile and not Path(cafile).is_file():
        raise ConfigError(f"{where}: cafile {cafile} does not exist")
    return Email(name, host, sender, to, port, security, str(username), password, str(cafile),
                 _num(where, "timeout_s", spec.get("timeout_s", 10.0), 0.1))


def _route(i: int, spec: object, channels: Mapping[str, object], src: str) -> Route:
    where = f"{src}: route {i + 1}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table ([[routes]])")
    name = spec.get("name", f"route-{i + 1}")
    if not isinstance(name, str) or not name or any(c in name for c in ":/ "):
        raise ConfigError(f"{where}: name must be a non-empty string without ':', '/' or spaces")
    where = f"{src}: route {name!r}"
    _check_keys(where, spec, {"name", "channels", "sites", "lines", "tags", "kinds", "events", "min_severity",
                              "escalate_after_min", "escalate_to", "digest_utc"})
    digest = spec.get("digest_utc", "")
    if digest != "" and not (isinstance(digest, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", digest)):
        raise ConfigError(f"{where}: digest_utc must be a UTC time \"HH:MM\" (e.g. \"07:00\"), got {digest!r}")
    chans = _strs(where, "channels", spec.get("channels", []))
    if not chans:
        raise ConfigError(f"{where}: channels must name at least one channel")
    esc = _strs(where, "escalate_to", spec.get("escalate_to", []))
    for c in chans + esc:
        if c not in channels:
            raise ConfigError(f"{where}: unknown channel {c!r} (defined: {', '.join(sorted(channels)) or 'none'})")
    kinds = _strs(where, "kinds", spec.get("kinds", list(ALARM_KINDS)))
    for k in kinds:
        if k not in ALARM_KINDS:
            raise ConfigError(f"{where}: unknown kind {k!r} (one of {', '.join(ALARM_KINDS)})")
    events = _strs(where, "events", spec.get("events", list(EVENTS)))
    for e in events:
        if e not in EVENTS:
            raise ConfigError(f"{where}: unknown event {e!r} (one of {', '.join(EVENTS)})")
    sev = spec.get("min_severity", "warning")
    if sev not in SEVERITIES:
        raise ConfigError(f"{where}: min_severity must be one of {', '.join(SEVERITIES)}, got {sev!r}")
    after = _num(where, "escalate_after_min", spec.get("escalate_after_min", 0.0))
    if bool(after) != bool(esc):
        raise ConfigError(f"{where}: escalate_after_min and escalate_to go together")
    return Route(name, chans, _strs(where, "sites", spec.get("sites", [])), _strs(where, "lines", spec.get("lines", [])),
                 _strs(where, "tags", spec.get("tags", [])), kinds, events, sev, after, esc, digest)


def parse_notify_config(data: Mapping, env: Mapping[str, str] | None = None, source: str = "notify config"
                        ) -> NotifyConfig:
    env = os.environ if env is None else env
    _check_keys(source, data, {"notify", "channels", "routes"})
    opts = data.get("notify", {})
    if not isinstance(opts, dict):
        raise ConfigError(f"{source}: [notify] must be a table")
    _check_keys(f"{source}: [notify]", opts, {"reopen_every_min", "give_up_h", "retry_min_s", "retry_max_s",
                                              "poll_s", "dashboard_url"})
    chans = data.get("channels", {})
    if not isinstance(chans, dict):
        raise ConfigError(f"{source}: [channels] must be a table of channels")
    channels = {name: _channel(name, spec, env, source) for name, spec in chans.items()}
    routes_spec = data.get("routes", [])
    if not isinstance(routes_spec, list):
        raise ConfigError(f"{source}: routes must be an array of tables ([[routes]])")
    routes = tuple(_route(i, r, channels, source) for i, r in enumerate(routes_spec))
    names = [r.name for r in routes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: route names must be unique, {', '.join(dup)} repeats")
    o = "[notify]"
    cfg = NotifyConfig(channels, routes,
                       _num(f"{source}: {o}", "reopen_every_min", opts.get("reopen_every_min", 30.0)),
                       _num(f"{source}: {o}", "give_up_h", opts.get("give_up_h", 24.0), 0.001),
                       _num(f"{source}: {o}", "retry_min_s", opts.get("retry_min_s", 5.0), 0.01),
                       _num(f"{source}: {o}", "retry_max_s", opts.get("retry_max_s", 300.0), 0.01),
                       _num(f"{source}: {o}", "poll_s", opts.get("poll_s", 1.0), 0.01),
                       str(opts.get("dashboard_url", "")), source)
    if cfg.retry_max_s < cfg.retry_min_s:
        raise ConfigError(f"{source}: {o} retry_max_s must be >= retry_min_s")
    return cfg


def load_notify_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """The config at `path` (TOML); no path: notifications off (an empty config)."""
    if not path:
        return NotifyConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"notify config {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"notify config {p}: not valid TOML: {exc}") from None
    return parse_notify_config(data, env, str(p))


__all__ = ["CHANNEL_TYPES", "EVENTS", "WEBHOOK_FORMATS", "Email", "NotifyConfig", "Route", "Webhook", "load_notify_config",
           "parse_notify_config"]
