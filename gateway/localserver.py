"""A small local HTTP server, shared by the gateway's HTTP source and the dock's
form: stdlib only, bounded in concurrency, time and body size."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provenance.core.errors import ProvenanceError

from .linestream import POLL_S

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0  # a slow client cannot hold a request thread longer
HTTP_MAX_CONCURRENT = 16
HTTP_BUSY_WAIT_S = 1.0  # when all request threads are busy, a new connection waits this long

App = Callable[[str, str, bytes, Mapping[str, str]], tuple[HTTPStatus, str, bytes]]


class LocalServer:
    """A stdlib HTTP server for one `App`, bound at construction (so a busy port
    fails at start, and port 0 picks a free one). Bounded: at most
    `HTTP_MAX_CONCURRENT` requests at once, `HTTP_TIMEOUT_S` per request, bodies
    up to *max_body* bytes with a Content-Length."""

    def __init__(self, host: str, port: int, app: App, *, name: str, max_body: int):
        self.name = name
        self.app = app
        self.max_body = max_body
        self._slots = threading.BoundedSemaphore(HTTP_MAX_CONCURRENT)
        try:
            self.server = _Server((host, port), _handler_class(self))
        except OSError as exc:
            raise ProvenanceError(f"{name}: cannot listen on {host}:{port} ({exc})") from None
        self.server.slots = self._slots
        self.server.timeout = POLL_S
        address = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self, stop: threading.Event) -> None:
        log.info("%s: listening on %s", self.name, self.url)
        while not stop.is_set():
            self.server.handle_request()  # returns after POLL_S without a request

    def close(self) -> None:
        self.server.server_close()  # joins request threads (each bounded by HTTP_TIMEOUT_S)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=HTTP_BUSY_WAIT_S):
            log.warning("too many concurrent requests; dropping one from %s", client_address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _handler_class(owner: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = HTTP_TIMEOUT_S
        server_version = "provenance-gateway"
        sys_version = ""

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            body = b""
            if method == "POST":
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    self._send(HTTPStatus.LENGTH_REQUIRED, _json_error("send a Content-Length"))
                    return
                if int(length) > owner.max_body:
                    self._send(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        _json_error(f"body larger than {owner.max_body} bytes"),
                    )
                    self.close_connection = True
                    return
                try:
                    body = self.rfile.read(int(length))
                except (OSError, TimeoutError):
                    self.close_connection = True
                    return
            try:
                status, content_type, payload = owner.app(
                    method, self.path, body, {k.lower(): v for k, v in self.headers.items()}
                )
            except Exception:
                log.exception("%s: request %s %s failed", owner.name, method, self.path)
                status, content_type, payload = (
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "application/json",
                    json.dumps({"error": "internal error; see the gateway log"}).encode(),
                )
            self._send(status, payload, content_type)

        def _send(
            self, status: HTTPStatus, payload: bytes, content_type: str = "application/json"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s: %s " + format, owner.name, self.address_string(), *args)

    return Handler


def _json_error(message: str, **extra: Any) -> bytes:
    return json.dumps({"error": message, **extra}, ensure_ascii=False).encode()
