"""The broker address every MQTT user of ours takes: `mqtt://HOST[:PORT]` or
`mqtts://HOST[:PORT]`, checked with reasons that say what to write instead."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provenance.core.errors import ValidationError


@dataclass(frozen=True)
class BrokerURL:
    """`mqtt://HOST[:PORT]` (TCP, port 1883) or `mqtts://HOST[:PORT]` (TLS, 8883)."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValidationError("broker", f"{url!r} is not a broker URL: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValidationError(
                "broker", f"{url!r}: use mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS"
            )
        if not parts.hostname:
            raise ValidationError("broker", f"{url!r} names no host")
        if parts.username or parts.password:
            raise ValidationError("broker", "give credentials as --username/--password, not in URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValidationError("broker", f"{url!r}: a broker URL has no path or query")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
