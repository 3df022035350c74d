"""The gateway's TOML configuration, read strictly into frozen dataclasses.

Every error names the key that is wrong (``sources.http.port: must be an
integer from 1 to 65535``) and the file it is in. Unknown keys are refused, so a
typo never silently falls back to a default. Relative paths are taken from the
directory of the configuration file. `gateway/example.toml` documents every key.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from provenance.core import kinds
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.identity import is_did_key
from provenance.core.topics import events_topic
from provenance.infra.broker_url import BrokerURL

SOURCE_TYPES = ("ds18b20", "csv", "http", "dock")
CSV_FORMATS = ("csv", "envelopes", "auto")
DEFAULT_SYSFS = "/sys/bus/w1/devices"
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # kinds.DEVICE_NAME


class ConfigError(ProvenanceError, ValueError):
    """The configuration is wrong. `key` is the dotted TOML key, e.g. ``broker.url``."""

    def __init__(self, key: str, rule: str, path: Path | None = None):
        self.key = key
        self.rule = rule
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {rule}" if key else f"{where}{rule}")


# --- the configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    max_inflight: int = 64
    batch_max: int = 100
    batch_bytes: int = 262_144
    backoff_min: float = 0.5
    backoff_max: float = 30.0


@dataclass(frozen=True)
class DS18B20Config:
    name: str
    root: Path = Path(DEFAULT_SYSFS)
    interval_s: float = 30.0
    sensors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    only_named: bool = False


@dataclass(frozen=True)
class CsvConfig:
    name: str
    path: Path
    format: str = "csv"
    baud: int | None = None
    follow: bool = True


@dataclass(frozen=True)
class HttpConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 8470
    token: str | None = field(default=None, repr=False)
    max_body: int = 1_048_576
    accept_envelopes: bool = True


@dataclass(frozen=True)
class DockConfig:
    name: str
    input: Path | None = None  # a file, fifo, serial device, or "-" for stdin
    baud: int | None = None
    form_host: str = "127.0.0.1"
    form_port: int | None = None
    session_timeout_s: float = 300.0


@dataclass(frozen=True)
class GatewayConfig:
    id: str
    key_file: Path
    site_party: str
    site_key_file: Path
    state_dir: Path
    outbox: Path
    broker: BrokerConfig
    site_location: Mapping[str, Any] | None = None
    site_location_private: bool = False  # dock events keep it private (docs/protocol.md §14)
    status_interval_s: float = 60.0
    drain_timeout_s: float = 10.0
    parties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    devices: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ds18b20: tuple[DS18B20Config, ...] = ()
    csv: tuple[CsvConfig, ...] = ()
    http: tuple[HttpConfig, ...] = ()
    dock: tuple[DockConfig, ...] = ()
    path: Path | None = None

    @property
    def topic(self) -> str:
        """Where this gateway publishes: ``provenance/v1/gateways/{id}/events``."""
        return events_topic("gateways", self.id)

    @property
    def sources(self) -> tuple[Any, ...]:
        return (*self.ds18b20, *self.csv, *self.http, *self.dock)


# --- reading -----------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str],
    *,
    broker_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Read and check a configuration file. *broker_url* overrides ``broker.url``
    (the CLI's ``--broker``); *environ* is where ``password_env`` is looked up."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read the configuration ({exc.strerror})", path) from None
    try:
        text = raw.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError("", "is not UTF-8 text", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"is not valid TOML: {exc}", path) from None
    try:
        return parse_config(
            document,
            base=path.resolve().parent,
            broker_url=broker_url,
            environ=os.environ if environ is None else environ,
            path=path,
        )
    except ConfigError as exc:
        if exc.path is None:
            raise ConfigError(exc.key, exc.rule, path) from None
        raise


def parse_config(
    document: Mapping[str, Any],
    *,
    base: Path,
    broker_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> GatewayConfig:
    """Check an already-parsed TOML document (see `load_config`)."""
    environ = os.environ if environ is None else environ
    top = _Table(document, "", base, environ)
    top.only("gateway", "site", "broker", "parties", "devices", "sources")

    gw = top.table("gateway", required=True)
    gw.only("id", "key_file", "state_dir", "outbox", "status_interval_s", "drain_timeout_s")
    gateway_id = gw.get("id", str, required=True)
    try:
        events_topic("gateways", gateway_id)
        kinds.DEVICE_NAME(gateway_id, "id")
    except ValidationError as exc:
        raise ConfigError("gateway.id", exc.rule) from None
    key_file = gw.path("key_file", required=True)
    state_dir = gw.path("state_dir", default=base / "state")
    outbox = gw.path("outbox", default=state_dir / "outbox.db")
    status_interval = gw.number("status_interval_s", 60.0, low=0.1, high=86_400)
    drain_timeout = gw.number("drain_timeout_s", 10.0, low=0, high=3_600)

    site = top.table("site", required=True)
    site.only("party", "key_file", "location", "location_private")
    site_party = site.get("party", str, required=True)
    if not site_party.strip():
        raise ConfigError("site.party", "must be the site party's enrolled name")
    site_key = site.path("key_file", required=True)
    location = site.get("location", dict)
    if location is not None:
        try:
            kinds.LOCATION(location, "site.location")
        except ValidationError as exc:
            raise ConfigError(exc.field, exc.rule) from None
        location = MappingProxyType(dict(location))
    location_private = site.get("location_private", bool, default=False)
    if location_private and location is None:
        raise ConfigError(
            "site.location_private", "keeps site.location private: give a site.location"
        )

    broker = _broker(top.table("broker", required=True), gateway_id, broker_url, environ)
    parties = _did_map(top.table("parties"))
    devices = _did_map(top.table("devices"))

    sources = top.table("sources")
    sources.only(*SOURCE_TYPES)
    names: set[str] = set()
    built: dict[str, tuple[Any, ...]] = {}
    ports: dict[tuple[str, int], str] = {}
    inputs: dict[Path, str] = {}
    for kind, builder in _SOURCE_BUILDERS.items():
        items = []
        for index, table in enumerate(sources.tables(kind)):
            default_name = kind if index == 0 else f"{kind}-{index + 1}"
            name = table.get("name", str, default=default_name)
            if not _SOURCE_NAME.fullmatch(name):
                raise ConfigError(table.key("name"), "letters, digits and . _ - only (max 64)")
            if name in names:
                raise ConfigError(table.key("name"), f"another source is already named {name!r}")
            names.add(name)
            item = builder(table, name)
            _check_port(item, table, ports)
            _check_input(item, table, inputs)
            items.append(item)
        built[kind] = tuple(items)
    return GatewayConfig(
        id=gateway_id,
        key_file=key_file,
        site_party=site_party,
        site_key_file=site_key,
        state_dir=state_dir,
        outbox=outbox,
        broker=broker,
        site_location=location,
        site_location_private=location_private,
        status_interval_s=status_interval,
        drain_timeout_s=drain_timeout,
        parties=parties,
        devices=devices,
        ds18b20=built["ds18b20"],
        csv=built["csv"],
        http=built["http"],
        dock=built["dock"],
        path=path,
    )


def _broker(
    table: _Table, gateway_id: str, override: str | None, environ: Mapping[str, str]
) -> BrokerConfig:
    table.only(
        "url",
        "client_id",
        "username",
        "password",
        "password_env",
        "tls_ca",
        "max_inflight",
        "batch_max",
        "batch_bytes",
        "backoff_min",
        "backoff_max",
    )
    url = override if override is not None else table.get("url", str, required=True)
    key = "--broker" if override is not None else "broker.url"
    check_broker_url(url, key)
    password = table.get("password", str)
    password_env = table.get("password_env", str)
    if password is not None and password_env is not None:
        raise ConfigError("broker.password_env", "give password or password_env, not both")
    if password_env is not None:
        if password_env not in environ:
            raise ConfigError(
                "broker.password_env", f"the environment variable {password_env} is not set"
            )
        password = environ[password_env]
    username = table.get("username", str)
    if password is not None and username is None:
        raise ConfigError("broker.username", "is required when a password is given")
    backoff_min = table.number("backoff_min", 0.5, low=0.01, high=3_600)
    backoff_max = table.number("backoff_max", 30.0, low=0.01, high=86_400)
    if backoff_max < backoff_min:
        raise ConfigError("broker.backoff_max", "must be at least backoff_min")
    client_id = table.get("client_id", str, default=f"provenance-gateway-{gateway_id}")
    if not 1 <= len(client_id) <= 128:
        raise ConfigError("broker.client_id", "must have 1 to 128 characters")
    return BrokerConfig(
        url=url,
        client_id=client_id,
        username=username,
        password=password,
        tls_ca=table.path("tls_ca"),
        max_inflight=table.integer("max_inflight", 64, low=1, high=65_535),
        batch_max=table.integer("batch_max", 100, low=1, high=10_000),
        batch_bytes=table.integer("batch_bytes", 262_144, low=1_024, high=256 * 1024 * 1024),
        backoff_min=backoff_min,
        backoff_max=backoff_max,
    )


def check_broker_url(url: str, key: str = "broker.url") -> None:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``, nothing else
    (`BrokerURL.parse`, the one broker-URL parser), as a ConfigError naming *key*."""
    try:
        BrokerURL.parse(url)
    except ValidationError as exc:
        raise ConfigError(key, exc.rule) from None


def _did_map(table: _Table) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for name, value in table.data.items():
        if not isinstance(value, str) or not is_did_key(value):
            raise ConfigError(table.key(name), "must be an Ed25519 did:key (did:key:z6Mk…)")
        if not name.strip():
            raise ConfigError(table.key(name), "a name must not be empty")
        out[name] = value
    return MappingProxyType(out)


def _ds18b20(table: _Table, name: str) -> DS18B20Config:
    table.only("name", "root", "interval_s", "sensors", "only_named")
    sensors = table.table("sensors")
    mapping: dict[str, str] = {}
    for sensor_id, probe in sensors.data.items():
        if not isinstance(probe, str) or not _NAME.fullmatch(probe):
            raise ConfigError(
                sensors.key(sensor_id),
                "must be a probe name: letters, digits and . _ : - (max 64)",
            )
        mapping[sensor_id] = probe
    return DS18B20Config(
        name=name,
        root=table.path("root", default=Path(DEFAULT_SYSFS)),
        interval_s=table.number("interval_s", 30.0, low=0.05, high=86_400),
        sensors=MappingProxyType(mapping),
        only_named=table.get("only_named", bool, default=False),
    )


def _csv(table: _Table, name: str) -> CsvConfig:
    table.only("name", "path", "format", "baud", "follow")
    fmt = table.get("format", str, default="csv")
    if fmt not in CSV_FORMATS:
        raise ConfigError(table.key("format"), f"must be one of {', '.join(CSV_FORMATS)}")
    return CsvConfig(
        name=name,
        path=table.path("path", required=True),
        format=fmt,
        baud=_baud(table),
        follow=table.get("follow", bool, default=True),
    )


def _http(table: _Table, name: str) -> HttpConfig:
    table.only("name", "host", "port", "token", "token_env", "max_body", "accept_envelopes")
    token = table.get("token", str)
    token_env = table.get("token_env", str)
    if token is not None and token_env is not None:
        raise ConfigError(table.key("token_env"), "give token or token_env, not both")
    if token_env is not None:
        token = table.environ.get(token_env)
        if token is None:
            raise ConfigError(
                table.key("token_env"), f"the environment variable {token_env} is not set"
            )
    return HttpConfig(
        name=name,
        host=table.get("host", str, default="127.0.0.1"),
        port=table.integer("port", 8470, low=0, high=65_535),
        token=token,
        max_body=table.integer("max_body", 1_048_576, low=1_024, high=64 * 1024 * 1024),
        accept_envelopes=table.get("accept_envelopes", bool, default=True),
    )


def _dock(table: _Table, name: str) -> DockConfig:
    table.only("name", "input", "baud", "form_host", "form_port", "session_timeout_s")
    form_port = table.get("form_port", int)
    if form_port is not None:
        form_port = table.integer("form_port", 0, low=0, high=65_535)
    dock = DockConfig(
        name=name,
        input=table.path("input"),
        baud=_baud(table),
        form_host=table.get("form_host", str, default="127.0.0.1"),
        form_port=form_port,
        session_timeout_s=table.number("session_timeout_s", 300.0, low=1, high=86_400),
    )
    if dock.input is None and dock.form_port is None:
        raise ConfigError(
            table.key("input"), "a dock needs an input (scanner), a form_port, or both"
        )
    return dock


def _baud(table: _Table) -> int | None:
    baud = table.get("baud", int)
    if baud is not None and baud not in _BAUD_RATES:
        raise ConfigError(
            table.key("baud"), f"must be one of {', '.join(map(str, sorted(_BAUD_RATES)))}"
        )
    return baud


def _check_port(item: Any, table: _Table, seen: dict[tuple[str, int], str]) -> None:
    """Two listeners on one port would fail at start; say so now (0 = any free port)."""
    if isinstance(item, HttpConfig):
        attr, host, port = "port", item.host, item.port
    elif isinstance(item, DockConfig):
        attr, host, port = "form_port", item.form_host, item.form_port
    else:
        return
    if not port:
        return
    key = table.key(attr)
    if (host, port) in seen:
        raise ConfigError(key, f"port {port} is also used by {seen[host, port]}")
    seen[host, port] = key


def _check_input(item: Any, table: _Table, seen: dict[Path, str]) -> None:
    """Two readers of one file, port or stdin would each get half of the lines."""
    attr = "path" if isinstance(item, CsvConfig) else "input"
    path = getattr(item, attr, None)
    if path is None:
        return
    key = table.key(attr)
    if path in seen:
        raise ConfigError(key, f"{path} is also read by {seen[path]}")
    seen[path] = key


_BAUD_RATES = frozenset(
    {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}
)
_SOURCE_BUILDERS: dict[str, Callable[[_Table, str], Any]] = {
    "ds18b20": _ds18b20,
    "csv": _csv,
    "http": _http,
    "dock": _dock,
}


class _Table:
    """One TOML table and its dotted key, with typed getters that name the key."""

    def __init__(
        self, data: Mapping[str, Any], prefix: str, base: Path, environ: Mapping[str, str]
    ):
        self.data = data
        self.prefix = prefix
        self.base = base
        self.environ = environ

    def key(self, name: str) -> str:
        shown = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'
        return f"{self.prefix}.{shown}" if self.prefix else shown

    def only(self, *allowed: str) -> None:
        for name in self.data:
            if name not in allowed:
                raise ConfigError(
                    self.key(name), f"unknown key (allowed here: {', '.join(allowed)})"
                )

    def get(self, name: str, type_: type, *, required: bool = False, default: Any = None) -> Any:
        if name not in self.data:
            if required:
                raise ConfigError(self.key(name), "is required")
            return default
        value = self.data[name]
        ok = isinstance(value, type_) and not (type_ is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(self.key(name), f"must be {_TYPE_NAMES[type_]}")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self.get(name, int, default=default)
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"must be an integer from {low} to {high}")
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), "must be a number")
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigError(self.key(name), f"must be a number from {low} to {high}")
        return float(value)

    def path(self, name: str, *, required: bool = False, default: Path | None = None) -> Any:
        value = self.get(name, str, required=required)
        if value is None:
            return default
        if not value:
            raise ConfigError(self.key(name), "must not be empty")
        if value == "-":
            return Path("-")
        return (self.base / Path(value).expanduser()).resolve()

    def table(self, name: str, *, required: bool = False) -> _Table:
        value = self.get(name, dict, required=required, default={})
        return _Table(value, self.key(name), self.base, self.environ)

    def tables(self, name: str) -> list[_Table]:
        """``[sources.x]`` (one) or ``[[sources.x]]`` (several)."""
        if name not in self.data:
            return []
        value = self.data[name]
        if isinstance(value, dict):
            return [_Table(value, self.key(name), self.base, self.environ)]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return [
                _Table(item, f"{self.key(name)}[{index}]", self.base, self.environ)
                for index, item in enumerate(value)
            ]
        raise ConfigError(self.key(name), "must be a table [..] or an array of tables [[..]]")


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    dict: "a table",
    float: "a number",
}
