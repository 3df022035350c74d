"""Files a command reads, read one careful way: capped, UTF-8, with errors that say what to do.

:func:`read_input` reads a file (or standard input for ``-``) up to its cap — every input has
one (``MAX_*_INPUT``, docs/cli.md "Input limits") and a bigger one is refused, naming the
cap, before it is parsed — and turns a missing file, a folder, an unreadable file or text
that is not UTF-8 into a ``click.ClickException`` naming the file.
:func:`check_cursor_file` and :func:`check_tls_ca` check a service's cursor file and a
--tls-ca PEM file that way before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

KiB, MiB = 1024, 1024 * 1024
# Every file a command reads has a cap (docs/cli.md, "Input limits"); a bigger
# input is refused, naming the cap, before it is parsed.
MAX_EVENTS_INPUT = 16 * MiB  # event append
MAX_CHECKPOINT_INPUT = 64 * KiB  # verify --checkpoint, export proof --since
MAX_BUNDLE_INPUT = 128 * MiB  # verify --bundle: ~100,000 events of one lot
MAX_EPCIS_INPUT = 64 * MiB  # import epcis
MAX_SCHEMA_INPUT = 4 * MiB  # import epcis --schema
MAX_CONFIG_INPUT = 1 * MiB  # rules check/run --config
MAX_CA_INPUT = 1 * MiB  # --tls-ca: a PEM bundle of CA certificates
MAX_CURSOR_INPUT = 64  # a service's --cursor file: one log index


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit // KiB} KiB"


def read_input(name: str, *, what: str, limit: int, text: bool = True) -> Any:
    """The contents of file *name* ('-': standard input), at most *limit* bytes,
    as UTF-8 text (or bytes). Every failure is a ClickException naming the file
    and saying what to do: missing, a folder, unreadable, too big, not UTF-8."""
    label = "standard input" if name == "-" else name
    try:
        if name == "-":
            with click.open_file("-", "rb") as stream:
                data = stream.read(limit + 1)
        else:
            with open(name, "rb") as stream:
                data = stream.read(limit + 1)
    except FileNotFoundError:
        raise click.ClickException(f"cannot read {label}: no such file (the {what})") from None
    except IsADirectoryError:
        raise click.ClickException(f"{label} is a folder: give the {what} file") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {label} ({what}): {exc.strerror or exc}") from None
    if len(data) > limit:
        raise click.ClickException(
            f"{label} is larger than {_size(limit)}, the limit for the {what} "
            "(docs/cli.md, Input limits)"
        )
    if not text:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{label} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            f"save the {what} as UTF-8"
        ) from None


def check_cursor_file(path: Path) -> None:
    """A service's cursor file, when there is one, must be a small file holding a
    log index (the service reads and replaces it)."""
    if not path.exists() and not path.is_symlink():
        return
    text = read_input(str(path), what="cursor file", limit=MAX_CURSOR_INPUT).strip()
    if text and not (text.isascii() and text.isdigit()):
        raise click.ClickException(
            f"{path} holds {text[:40]!r}, not a log index: fix it (the next log index to look "
            "at) or give another --cursor"
        )


def check_tls_ca(path: str | None) -> None:
    """--tls-ca must be a readable PEM certificate file under the cap, checked before
    anything connects (the TLS library would read any file it is given)."""
    if path is None:
        return
    text = read_input(path, what="CA certificate", limit=MAX_CA_INPUT)
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise click.ClickException(
            f"--tls-ca {path} is not a PEM certificate file (no BEGIN CERTIFICATE line)"
        )
