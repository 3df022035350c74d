"""Reasons that a page can say in its reader's language (pure).

A `Reason` *is* its English sentence (a `str`: logs, the JSON twin and the CLI
keep reading it as before) and also carries a stable ``code`` and the
``params`` the sentence was made from, so that the web layer can word it again
in another language (`provenance.web.reasons`) instead of showing English on a
Chinese page. Codes are kebab-case and never change meaning; docs/scan.md lists
those the scan page words.
"""

from __future__ import annotations

from typing import Any


class Reason(str):
    """An English sentence with the code and parameters it was made from."""

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, text: str, **params: Any) -> Reason:
        reason = super().__new__(cls, text)
        reason.code = code
        reason.params = params
        return reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.code, str(self), self.params))


def _rebuild(code: str, text: str, params: dict[str, Any]) -> Reason:
    return Reason(code, text, **params)


def code_of(text: str) -> str | None:
    """The code of a Reason, None for plain text (e.g. typed by a person)."""
    return text.code if isinstance(text, Reason) else None
