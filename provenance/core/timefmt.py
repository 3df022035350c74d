"""RFC 3339 UTC timestamps as the wire protocol writes them.

Protocol v1 accepts only the UTC form ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` (1–9
fraction digits): one spelling per instant class keeps signed bytes
unambiguous. Internally times are integer microseconds since the Unix epoch.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache

from provenance.core.errors import ValidationError

_RFC3339_UTC = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z\Z"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: object, field: str = "time") -> int:
    """Microseconds since the epoch, or ValidationError naming *field*."""
    if not isinstance(text, str):
        raise ValidationError(field, "must be an RFC 3339 UTC string like 2026-11-22T10:15:00.123Z")
    match = _RFC3339_UTC.match(text)
    if not match:
        raise ValidationError(
            field, f"{text!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z, ending in Z)"
        )
    _, _, _, hour, minute, second, fraction = match.groups()
    days = _epoch_day(text[:10], field)
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 59:  # no leap seconds: UTC as POSIX counts it
        raise ValidationError(field, f"{text!r} is not a real time of day")
    micros = int((fraction or "0").ljust(9, "0")[:6])
    return ((days * 24 + hours) * 60 + minutes) * 60_000_000 + seconds * 1_000_000 + micros


@lru_cache(maxsize=4096)
def _epoch_day(day: str, field: str) -> int:
    try:
        return (date.fromisoformat(day) - _EPOCH.date()).days
    except ValueError as exc:
        raise ValidationError(field, f"{day!r} is not a real date: {exc}") from None


def format_time(micros: int) -> str:
    """Millisecond-precision RFC 3339 UTC text for *micros* (truncating)."""
    seconds, rest = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:03d}Z"


def parse_date(text: object, field: str) -> date:
    if not isinstance(text, str) or not _DATE.match(text):
        raise ValidationError(field, "must be a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(field, f"{text!r} is not a real date: {exc}") from None


def parse_date_or_time(text: object, field: str) -> int:
    """Microseconds of an RFC 3339 UTC time, or of 00:00:00Z on a date
    (YYYY-MM-DD): the earliest moment it can mean, e.g. for `data.produced`."""
    if isinstance(text, str) and "T" not in text:
        day = parse_date(text, field)
        return (day - _EPOCH.date()).days * 86_400_000_000
    return parse_time(text, field)


def now_micros() -> int:
    """The wall clock, for adapters to inject; the core never calls it itself."""
    return int(datetime.now(UTC).timestamp() * 1_000_000)
