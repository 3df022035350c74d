"""A lean MQTT 5 publisher and subscriber for the benchmarks' baselines: raw
sockets, packets encoded once, PUBACKs read in bulk — the least a client can
spend per QoS 1 message in Python, so that the broker pass-through measured
with them is the broker's, not a client library's (docs/performance.md,
"Ingest"). Bench code only: no reconnects, no TLS, no session state; a
protocol error raises.

The ingest's own MQTT client (provenance/infra/mqtt.py, paho) is what is being
measured against this; a baseline built on the same paho code would flatter
every ratio by the client's own cost.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

CONNECT_TIMEOUT = 30.0


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id: str, receive_maximum: int = 65535, clean: bool = True) -> bytes:
    properties = b"\x21" + struct.pack("!H", receive_maximum)  # Receive Maximum
    header = _string("MQTT") + bytes([5, 0x02 if clean else 0]) + struct.pack("!H", 60)
    return _packet(0x10, header + varint(len(properties)) + properties + _string(client_id))


def publish_packet(topic: str, packet_id: int, payload: bytes, sent_at: str | None) -> bytes:
    properties = b"" if sent_at is None else b"\x26" + _string("sent_at") + _string(sent_at)
    body = _string(topic) + struct.pack("!H", packet_id) + varint(len(properties)) + properties
    return _packet(0x32, body + payload)


def subscribe_packet(packet_id: int, topic_filter: str) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + b"\x00" + _string(topic_filter) + b"\x01")


class Connection:
    """One TCP connection to the broker with TCP_NODELAY, CONNECT sent and
    CONNACK checked."""

    def __init__(self, host: str, port: int, client_id: str):
        self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        self.buffer = b""
        first, body = self.read_packet()
        if first >> 4 != 2 or body[1] != 0:
            raise RuntimeError(f"CONNACK refused: {body!r}")
        self.sock.settimeout(None)

    def read_packet(self) -> tuple[int, bytes]:
        while True:
            parsed = parse(self.buffer, 0)
            if parsed is not None:
                first, start, end = parsed
                body, self.buffer = self.buffer[start:end], self.buffer[end:]
                return first, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


def parse(buffer: bytes, offset: int) -> tuple[int, int, int] | None:
    """(first byte, body start, body end) of the packet at *offset*, or None
    if it is not all in *buffer* yet."""
    if len(buffer) - offset < 2:
        return None
    length, multiplier, index = 0, 1, offset + 1
    while True:
        if index >= len(buffer):
            return None
        byte = buffer[index]
        length += (byte & 0x7F) * multiplier
        index += 1
        if not byte & 0x80:
            break
        multiplier *= 128
    end = index + length
    return (buffer[offset], index, end) if end <= len(buffer) else None


def publish_all(
    host: str,
    port: int,
    client_id: str,
    topic: str,
    payloads: Iterable[bytes],
    *,
    window: int,
    rate: float = 0.0,
    sent_at: Callable[[], str] | None = None,
    started: Callable[[], None] | None = None,
) -> int:
    """Publish every payload QoS 1 with at most *window* unacknowledged (paced
    to *rate* a second if given); return once every PUBACK is in. The packet
    ids cycle through 1..65535."""
    connection = Connection(host, port, client_id)
    slots = threading.Semaphore(window)
    acked = [0]
    failure: list[BaseException] = []

    def read_acks() -> None:
        buffer = b""
        try:
            while True:
                chunk = connection.sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                offset, count = 0, 0
                while (parsed := parse(buffer, offset)) is not None:
                    first, _start, end = parsed
                    if first >> 4 == 4:  # PUBACK
                        count += 1
                    offset = end
                buffer = buffer[offset:]
                acked[0] += count
                for _ in range(count):
                    slots.release()
        except OSError as exc:
            failure.append(exc)

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    if started is not None:
        started()
    sent, start = 0, time.perf_counter()
    interval = 1 / rate if rate else 0.0
    for payload in payloads:
        if interval:
            lag = start + sent * interval - time.perf_counter()
            if lag > 0:
                time.sleep(lag)  # pacing to a fixed rate, not synchronisation
        slots.acquire()
        packet_id = sent % 65535 + 1
        stamp = sent_at() if sent_at is not None else None
        connection.sock.sendall(publish_packet(topic, packet_id, payload, stamp))
        sent += 1
    deadline = time.monotonic() + 600
    while acked[0] < sent and not failure and time.monotonic() < deadline:
        time.sleep(0.01)  # the reader thread counts the last PUBACKs; bounded
    connection.close()
    if failure or acked[0] < sent:
        raise RuntimeError(f"{acked[0]} of {sent} acknowledged ({failure})")
    return sent


def receive(
    host: str,
    port: int,
    client_id: str,
    topic_filter: str,
    expected: int,
    *,
    subscribed: Callable[[], None] | None = None,
    on_message: Callable[[bytes, bytes], None] | None = None,
    deadline_s: float = 600.0,
) -> int:
    """Subscribe QoS 1 and acknowledge every PUBLISH (the PUBACKs of one read
    sent together) until *expected* have come; *on_message(properties,
    payload)* for each. Returns the count received."""
    connection = Connection(host, port, client_id)
    connection.sock.sendall(subscribe_packet(1, topic_filter))
    first, _body = connection.read_packet()
    if first >> 4 != 9:
        raise RuntimeError("no SUBACK")
    if subscribed is not None:
        subscribed()
    connection.sock.settimeout(1.0)
    buffer, received = connection.buffer, 0
    deadline = time.monotonic() + deadline_s
    while received < expected and time.monotonic() < deadline:
        try:
            chunk = connection.sock.recv(262144)
        except TimeoutError:
            continue
        if not chunk:
            break
        buffer += chunk
        offset, acks = 0, bytearray()
        while (parsed := parse(buffer, offset)) is not None:
            first, start, end = parsed
            if first >> 4 == 3:
                topic_length = struct.unpack_from("!H", buffer, start)[0]
                at = start + 2 + topic_length
                if first & 0x06:  # QoS 1 or 2: a packet id to acknowledge
                    acks += b"\x40\x02" + buffer[at : at + 2]
                    at += 2
                properties_length, at = _read_varint(buffer, at)
                if on_message is not None:
                    payload_at = at + properties_length
                    on_message(buffer[at:payload_at], buffer[payload_at:end])
                received += 1
            offset = end
        buffer = buffer[offset:]
        if acks:
            connection.sock.sendall(acks)
    connection.close()
    return received


def _read_varint(buffer: bytes, at: int) -> tuple[int, int]:
    value, multiplier = 0, 1
    while True:
        byte = buffer[at]
        at += 1
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, at
        multiplier *= 128


def sent_at_of(properties: bytes) -> str | None:
    """The `sent_at` user property among PUBLISH *properties*, if there."""
    at = 0
    while at < len(properties):
        identifier = properties[at]
        at += 1
        if identifier != 0x26:
            return None  # the lean publisher sends nothing else
        for field in range(2):
            length = struct.unpack_from("!H", properties, at)[0]
            value = properties[at + 2 : at + 2 + length]
            at += 2 + length
            if field == 0:
                name = value
        if name == b"sent_at":
            return value.decode()
    return None
