"""What the command line writes is shown, never obeyed, by the terminal.

The protocol refuses control and bidirectional-override characters in free text
(`provenance.core.fields.refuse_controls`), but a ledger written before that rule, an
accounts database, a rule file or an error message quoting input may still hold
them: ``ESC [ 2 J`` in a product name would clear the screen of whoever runs
``provenance trace``, U+202E would reverse the rest of the line. So every text
the CLI writes to standard output and standard error passes through
`safe_text`, which writes each such character as ``\\uXXXX``; tab and line feed
stay. The escape is JSON's own, so ``--json`` output stays valid JSON with the
same values. Bytes (a label PNG, an XLSX) and export files are written as they
are: they are data, not terminal text. The web pages show ledger text through
the same function (`provenance.web.security`).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from provenance.core.fields import REFUSED_IN_NOTE

# What free text may not hold (C0 controls but tab and line feed, DEL, C1 controls,
# the line and paragraph separators, the bidirectional embeddings, overrides and
# isolates) is what a terminal or a page would act on.
_UNSAFE = REFUSED_IN_NOTE


def safe_text(text: str) -> str:
    """*text* with every character a terminal would act on written as ``\\uXXXX``."""
    return _UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class EscapingStream:
    """A text stream that writes through `safe_text`; everything else (its
    encoding, ``isatty``, its binary ``buffer``) is the wrapped stream's."""

    def __init__(self, stream: TextIO):
        self.wrapped = stream

    def write(self, text: str) -> int:
        if isinstance(text, str):
            self.wrapped.write(safe_text(text))
            return len(text)
        return self.wrapped.write(text)  # not text: let the stream refuse it as it would

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def escape_standard_streams() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through `EscapingStream` (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, EscapingStream):
            setattr(sys, name, EscapingStream(stream))
