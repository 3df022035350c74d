"""Who gets recall notices by webhook and e-mail, as the operator configured
it: one JSON file (default `DB.notify-subscriptions.json`, mode 0600: it holds
each subscriber's webhook secret), written by `provenance notify subscribe` or
by hand (docs/lineage.md, "Webhooks and e-mail").

    {"smtp": {"host": "127.0.0.1", "port": 25, "starttls": false,
              "username": "…", "from": "recalls@operator.example"},
     "subscribers": [{"party": "did:key:z…", "name": "Corner Shop",
                      "webhook": "https://shop.example/recalls", "secret": "whsec_…",
                      "email": "manager@shop.example", "language": "zh"}]}

A subscriber is a party: it gets the notice of every lot a recall reached
that it holds, held, or has on its way to it. The SMTP password, if any, is
read from the environment (`PROVENANCE_SMTP_PASSWORD`), never from the file.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provenance.core.webhook import SECRET_BYTES, make_secret, secret_bytes

LANGUAGES = ("en", "zh")
MAX_FILE_BYTES = 1_000_000
MAX_SUBSCRIBERS = 10_000
SMTP_PASSWORD_ENV = "PROVENANCE_SMTP_PASSWORD"
_EMAIL = re.compile(
    r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}|[^@\s<>,;\"]{1,64}@localhost"
)


class SubscriptionError(ValueError):
    """The subscriptions file or a subscription is not usable; says what to fix."""


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host and no user name or password in it; anything
    else (file:, ftp:, javascript:, a bare path…) is refused."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SubscriptionError(
            f"webhook {url[:80]!r}: only http:// and https:// URLs are sent to, "
            f"not {parts.scheme + ':' if parts.scheme else 'a URL without a scheme'}"
        )
    if not parts.hostname:
        raise SubscriptionError(f"webhook {url[:80]!r} names no host")
    if parts.username or parts.password:
        raise SubscriptionError(
            f"webhook {url[:80]!r}: no user name or password in the URL (the request is "
            "signed with the subscriber's secret instead)"
        )
    if any(ord(c) < 33 for c in url):
        raise SubscriptionError(f"webhook {url[:80]!r} has spaces or control characters")
    return url


def check_email(address: str) -> str:
    if not _EMAIL.fullmatch(address):
        raise SubscriptionError(f"{address[:80]!r} is not an e-mail address")
    return address


@dataclass(frozen=True)
class Subscriber:
    party: str  # the party's did
    name: str
    webhook: str | None = None
    secret: str | None = None
    email: str | None = None
    language: str = "en"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"party": self.party, "name": self.name}
        for key in ("webhook", "secret", "email"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["language"] = self.language
        return out


@dataclass(frozen=True)
class SMTP:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    sender: str = "recalls@localhost"
    password: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "port": self.port, "starttls": self.starttls}
        if self.username:
            out["username"] = self.username
        out["from"] = self.sender
        return out


@dataclass(frozen=True)
class Subscriptions:
    subscribers: tuple[Subscriber, ...] = ()
    smtp: SMTP | None = None

    def of(self, dids: set[str]) -> list[Subscriber]:
        return [s for s in self.subscribers if s.party in dids]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subscribers": [s.to_json() for s in self.subscribers]}
        if self.smtp is not None:
            out["smtp"] = self.smtp.to_json()
        return out


def _subscriber(item: Any, where: str) -> Subscriber:
    if not isinstance(item, dict):
        raise SubscriptionError(f"{where} is not an object")
    unknown = set(item) - {"party", "name", "webhook", "secret", "email", "language"}
    if unknown:
        raise SubscriptionError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    party, name = item.get("party"), item.get("name", item.get("party"))
    if not isinstance(party, str) or not party.startswith("did:key:"):
        raise SubscriptionError(f"{where}.party must be the party's did (did:key:…)")
    if not isinstance(name, str) or not name:
        raise SubscriptionError(f"{where}.name must be text")
    webhook, secret, email = item.get("webhook"), item.get("secret"), item.get("email")
    if webhook is None and email is None:
        raise SubscriptionError(f"{where}: give a webhook, an email, or both")
    if webhook is not None:
        if not isinstance(webhook, str):
            raise SubscriptionError(f"{where}.webhook must be a URL")
        check_webhook_url(webhook)
        if not isinstance(secret, str):
            raise SubscriptionError(f"{where}.secret is required with a webhook (whsec_…)")
        try:
            secret_bytes(secret)
        except ValueError as exc:
            raise SubscriptionError(f"{where}.secret: {exc}") from None
    if email is not None:
        if not isinstance(email, str):
            raise SubscriptionError(f"{where}.email must be an e-mail address")
        check_email(email)
    language = item.get("language", "en")
    if language not in LANGUAGES:
        raise SubscriptionError(f"{where}.language must be one of {', '.join(LANGUAGES)}")
    return Subscriber(party, name, webhook, secret, email, language)


def _smtp(item: Any) -> SMTP:
    if not isinstance(item, dict):
        raise SubscriptionError("smtp is not an object")
    unknown = set(item) - {"host", "port", "starttls", "username", "from"}
    if unknown:
        raise SubscriptionError(
            f"smtp: unknown field {sorted(unknown)[0]!r} (the password "
            f"comes from {SMTP_PASSWORD_ENV})"
        )
    host, port = item.get("host"), item.get("port", 25)
    if not isinstance(host, str) or not host:
        raise SubscriptionError("smtp.host must be a host name")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SubscriptionError("smtp.port must be a port number")
    starttls = item.get("starttls", False)
    if not isinstance(starttls, bool):
        raise SubscriptionError("smtp.starttls must be true or false")
    username = item.get("username")
    if username is not None and not isinstance(username, str):
        raise SubscriptionError("smtp.username must be text")
    sender = item.get("from", "recalls@localhost")
    if not isinstance(sender, str):
        raise SubscriptionError("smtp.from must be an e-mail address")
    check_email(sender)
    return SMTP(host, port, starttls, username, sender, os.environ.get(SMTP_PASSWORD_ENV))


def parse_subscriptions(text: str) -> Subscriptions:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SubscriptionError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SubscriptionError("the file holds one JSON object")
    unknown = set(document) - {"subscribers", "smtp"}
    if unknown:
        raise SubscriptionError(f"unknown field {sorted(unknown)[0]!r}")
    items = document.get("subscribers", [])
    if not isinstance(items, list) or len(items) > MAX_SUBSCRIBERS:
        raise SubscriptionError(f"subscribers must be a list of at most {MAX_SUBSCRIBERS}")
    subscribers = tuple(_subscriber(item, f"subscribers[{i}]") for i, item in enumerate(items))
    smtp = _smtp(document["smtp"]) if document.get("smtp") is not None else None
    if smtp is None and any(s.email for s in subscribers):
        raise SubscriptionError("subscribers have e-mail addresses but there is no smtp host")
    return Subscriptions(subscribers, smtp)


def load_subscriptions(path: Path) -> Subscriptions:
    """The file at *path*; an empty set when it does not exist. Raises
    SubscriptionError (or OSError) for one that cannot be used."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return Subscriptions()
    if len(raw) > MAX_FILE_BYTES:
        raise SubscriptionError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return parse_subscriptions(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubscriptionError(f"{path}: not UTF-8 text") from None
    except SubscriptionError as exc:
        raise SubscriptionError(f"{path}: {exc}") from None


def save_subscriptions(path: Path, subscriptions: Subscriptions) -> None:
    """Write atomically, readable by the owner only (it holds webhook secrets)."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(subscriptions.to_json(), handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)


def subscribe(
    subscriptions: Subscriptions,
    party: str,
    name: str,
    *,
    webhook: str | None = None,
    email: str | None = None,
    language: str = "en",
) -> tuple[Subscriptions, str | None]:
    """*subscriptions* with the party's subscription set (replacing its old
    one); a webhook gets a new secret, returned to be given to the subscriber."""
    secret = make_secret(os.urandom(SECRET_BYTES)) if webhook else None
    item: dict[str, Any] = {"party": party, "name": name, "language": language}
    if webhook:
        item |= {"webhook": webhook, "secret": secret}
    if email:
        item["email"] = email
    new = _subscriber(item, "subscription")
    others = tuple(s for s in subscriptions.subscribers if s.party != party)
    if new.email and subscriptions.smtp is None:
        raise SubscriptionError("set the smtp host first: --smtp-host HOST (and --smtp-port)")
    return Subscriptions((*others, new), subscriptions.smtp), secret


def default_subscriptions_path(db_path: str | os.PathLike[str]) -> Path:
    return Path(str(db_path) + ".notify-subscriptions.json")
