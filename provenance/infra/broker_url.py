"""The broker address every MQTT user of ours takes: `mqtt://HOST[:PORT]` or
`mqtts://HOST[:PORT]`, checked with reasons that say what to write instead.

This is the only broker-URL parser: the device uplink, the gateway's
configuration, the ingest service, the notifier and the CLI all call
`BrokerURL.parse`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provenance.core.errors import ValidationError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerURL:
    """`mqtt://HOST[:PORT]` (TCP, port 1883) or `mqtts://HOST[:PORT]` (TLS, 8883)."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        """The broker at *url*; ValidationError (field ``broker``) saying what is wrong."""
        if not isinstance(url, str):
            raise ValidationError("broker", "must be a URL like mqtt://127.0.0.1:1883")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValidationError("broker", f"{url!r} is not a valid URL: {exc}") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise ValidationError(
                "broker",
                f"{url!r}: the scheme must be mqtt:// (plain TCP) or mqtts:// (TLS), "
                f"not {parts.scheme + '://' if parts.scheme else 'missing'}: "
                "use mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS",
            )
        if not parts.hostname:
            raise ValidationError("broker", f"{url!r} has no host (mqtt://HOST:PORT)")
        if parts.username is not None or parts.password is not None:
            raise ValidationError(
                "broker",
                "put no credentials in the URL; give the user name and password as their "
                "own options (--username/--password, broker.username/broker.password_env)",
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValidationError("broker", f"{url!r}: a broker URL has no path, query or fragment")
        return cls(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")

    @property
    def url(self) -> str:
        """The URL again, with the port spelt out (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url
