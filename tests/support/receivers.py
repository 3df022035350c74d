"""Local receivers for the notifier's webhooks and e-mails: an HTTP server and
an SMTP server (aiosmtpd), both on loopback, on free ports, bounded, stopped
by the fixtures. Nothing here reaches any other address."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

MAX_BODY = 1_000_000
MAX_KEPT = 200


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Answers each POST with the next status of `statuses` (then 200), keeps
    what it got, and sets `arrived` after each request."""

    server: ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/recalls?token=hidden"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} webhook requests, not {count}")
            return list(self.requests)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            body = self.rfile.read(length)
            with receiver.arrived:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if len(receiver.requests) < MAX_KEPT:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                receiver.arrived.notify_all()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    receiver = WebhookReceiver(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class MailReceiver:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Message]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} e-mails, not {count}")
            return list(self.messages)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mail_receiver() -> Iterator[MailReceiver]:
    from aiosmtpd.controller import Controller  # a test requirement (aiosmtpd)

    receiver = MailReceiver("127.0.0.1", _free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with receiver.arrived:
                if len(receiver.messages) < MAX_KEPT:
                    receiver.messages.append(
                        message_from_bytes(envelope.content, policy=policy.default)
                    )
                    receiver.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                receiver.arrived.notify_all()
            return "250 OK"

    controller = Controller(Handler(), hostname=receiver.host, port=receiver.port, ready_timeout=10)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
