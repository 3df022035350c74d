"""Prometheus metrics of the ingest service, on a registry of their own.

Each `IngestMetrics` owns a fresh `CollectorRegistry`, so two services (or two
tests) in one process never share counters; `serve()` exposes one registry
over HTTP on loopback unless told otherwise. docs/ingest.md lists the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

PREFIX = "provenance_ingest"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Publish→commit spans milliseconds (live traffic) to days (a truck that was
# offline), hence the long tail of buckets.
LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05),
    *(0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0, 86400.0),
)
# Which clock a publish→commit observation used (docs/ingest.md, "Latency").
CLOCK_SENT_AT = "sent_at"
CLOCK_EVENT_TIME = "event_time"


class IngestMetrics:
    """Counters, gauges and histograms of one ingest service."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            f"{PREFIX}_messages_received", "MQTT messages received on the events topics", registry=r
        )
        self.envelopes_received = Counter(
            f"{PREFIX}_envelopes_received",
            "Envelopes received (a message holds one, or an array of several)",
            registry=r,
        )
        self.accepted = Counter(
            f"{PREFIX}_envelopes_accepted", "Envelopes committed to the ledger", registry=r
        )
        self.duplicates = Counter(
            f"{PREFIX}_envelopes_duplicate",
            "Envelopes already in the ledger (redeliveries, repeats): nothing changed",
            registry=r,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected",
            "Envelopes (or whole messages) refused, by reject reason",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_envelopes",
            "Envelopes per Ledger.append call (group commit)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds",
            "Duration of one group commit (Ledger.append)",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_publish_to_commit_seconds",
            "From publication (MQTT 5 user property sent_at, else the envelope's time) to commit",
            ["clock"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_messages",
            "Messages received but not yet committed and acknowledged",
            registry=r,
        )
        self.connected = Gauge(
            f"{PREFIX}_connected", "1 while connected to the broker, else 0", registry=r
        )
        self.connections = Counter(
            f"{PREFIX}_connections", "Successful connections to the broker", registry=r
        )
        self.notices_dropped = Counter(
            f"{PREFIX}_reject_notices_dropped",
            "Reject notices not published (client queue full or disconnected)",
            registry=r,
        )
        self.retained_ignored = Counter(
            f"{PREFIX}_retained_ignored",
            "Retained messages on an events topic, acknowledged and ignored (not ingested)",
            registry=r,
        )
        self.waited = Counter(
            f"{PREFIX}_waited",
            "Messages refused for want of an earlier event and tried again (shared subscriptions)",
            registry=r,
        )
        self.checkpoints_published = Counter(
            f"{PREFIX}_checkpoints_published",
            "Signed checkpoint notes published (retained) on provenance/v1/checkpoint",
            registry=r,
        )
        self.checkpoint_size = Gauge(
            f"{PREFIX}_checkpoint_size",
            "Log size signed by the last checkpoint note published",
            registry=r,
        )


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `close()` stops it."""

    server: Any
    thread: Any
    address: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(metrics: IngestMetrics, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve *metrics* at http://addr:port/metrics (port 0: any free port).
    Loopback by default: put a proxy or an agent in front to expose it."""
    server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    running = MetricsServer(server, thread, addr)
    log.info("metrics on http://%s:%d/metrics", addr, running.port)
    return running
