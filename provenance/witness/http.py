"""The witness over HTTP: a small WSGI app (served with waitress).

Routes (c2sp.org/tlog-witness; submission and monitoring prefix are both ``/``):

- ``POST /add-checkpoint``: see :mod:`provenance.witness.service`;
- ``GET /<lowercase hex SHA-256 of the origin>/checkpoint``: the last cosigned
  checkpoint of that log, with the log's signature and ours (404 if none);
- anything else: 404; a known path with another method: 405.

Bodies are bounded (``MAX_REQUEST``: 413 beyond); bad input is always a 4xx with
a reason. Only a failure of the witness itself (its disk) is a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from provenance.core.errors import ProvenanceError
from provenance.witness.service import MAX_REQUEST, TEXT, Reply, Witness

log = logging.getLogger(__name__)

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def create_app(witness: Witness) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application of ``witness``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            reply = route(witness, environ)
        except ProvenanceError as exc:  # the witness's own state failed, not the input
            log.error("witness failure: %s", exc)
            reply = Reply.refuse(503, f"the witness cannot answer now: {exc}")
        body = reply.body.encode("utf-8")
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(body)))]
        if reply.status == 405:
            headers.append(
                ("Allow", "POST" if environ.get("PATH_INFO") == "/add-checkpoint" else "GET")
            )
        start_response(f"{reply.status} {REASONS.get(reply.status, '')}".rstrip(), headers)
        return [body]

    return app


def route(witness: Witness, environ: dict[str, Any]) -> Reply:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    if path == "/add-checkpoint":
        if method != "POST":
            return Reply.refuse(405, "add-checkpoint takes a POST")
        body = _read_body(environ)
        if isinstance(body, Reply):
            return body
        return witness.add_checkpoint(body)
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "" and parts[2] in ("checkpoint", "evidence"):
        if method not in ("GET", "HEAD"):
            return Reply.refuse(405, f"the {parts[2]} is read with GET")
        if parts[2] == "evidence":
            return witness.evidence(parts[1])
        return witness.checkpoint(parts[1])
    return Reply.refuse(
        404,
        "no such path: POST /add-checkpoint, GET /<origin hash>/checkpoint, "
        "GET /<origin hash>/evidence",
    )


def _read_body(environ: dict[str, Any]) -> bytes | Reply:
    length_text = environ.get("CONTENT_LENGTH") or ""
    if not length_text:
        return Reply.refuse(411, "the request needs a Content-Length")
    if not length_text.isascii() or not length_text.isdigit():
        return Reply.refuse(400, "Content-Length is not a number")
    length = int(length_text)
    if length > MAX_REQUEST:
        return Reply.refuse(413, f"the request body is larger than {MAX_REQUEST} bytes")
    body = environ["wsgi.input"].read(length)
    if len(body) != length:
        return Reply.refuse(400, "the request body is shorter than its Content-Length")
    return body


__all__ = ["TEXT", "create_app", "route"]
