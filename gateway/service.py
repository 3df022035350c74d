"""The gateway process: sources → Intake → Outbox → Uplink → broker.

    gateway = Gateway(load_config("gateway.toml"))
    gateway.run(stop)          # until stop is set (SIGTERM), then drain and return

Every source runs in its own thread and is restarted with a capped backoff if
it fails (a serial port unplugged, a FIFO removed). The uplink is the only
thing that talks to the broker; the outbox is the only hand-over between the
two, so collecting never waits for the network and nothing waits in memory.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.outbox import Outbox
from devices.sdk import SeqCounter
from devices.uplink import Uplink
from provenance.core.errors import KeyFileError, ProvenanceError
from provenance.core.signing import did_of
from provenance.core.timefmt import now_micros
from provenance.infra.keystore import KeyStore, load_private_key

from .config import GatewayConfig
from .dock import DockForm, DockSession
from .intake import GatewaySigner, Intake
from .sources import (
    DockFormSource,
    DockScannerSource,
    DS18B20Source,
    HttpSource,
    LineSource,
    Source,
)

log = logging.getLogger(__name__)

SOURCE_JOIN_S = 5.0  # per source, at shutdown
RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0


def _load_key(path: Path, key: str) -> Ed25519PrivateKey:
    try:
        return load_private_key(path)
    except FileNotFoundError:
        raise KeyFileError(
            f"{key}: no key file at {path} (for the gateway's own key, run "
            "`provenance gateway --config FILE --identity` to create it)"
        ) from None
    except KeyFileError as exc:
        raise KeyFileError(f"{key}: {exc}") from None


def identities(config: GatewayConfig, *, create: bool = False) -> list[tuple[str, str]]:
    """[(label, did:key)] of the gateway key (created with mode 0600 if missing and
    *create*) and of the site party's key, if present."""
    path = config.key_file
    if create and not path.exists():
        if path.suffix != ".pem":
            raise KeyFileError(f"gateway.key_file: {path} must end in .pem to be created")
        KeyStore(path.parent).create(path.stem)
        log.info("created the gateway key %s", path)
    out = [(f"gateway {config.id}", did_of(_load_key(path, "gateway.key_file")))]
    if config.site_key_file.exists():
        out.append((f"site {config.site_party}", did_of(_load_key(config.site_key_file, "site"))))
    return out


def seq_counter(state_dir: Path, did: str, clock: Callable[[], int]) -> SeqCounter:
    """One persistent seq counter per key, named after the key's did.

    A new counter starts at the current time in microseconds, not at 0: if the
    state folder is lost (a new SD card) while the key is kept, or the key
    signed elsewhere before, the new seqs are still above the old ones and the
    ledger does not refuse them as replays (seq may have gaps; it must be new)."""
    digest = hashlib.sha256(did.encode()).hexdigest()[:16]
    counter = SeqCounter(state_dir / f"seq-{digest}")
    if counter.peek() == 0:
        floor = max(0, clock())
        if floor:
            counter.take(floor)  # reserves (skips) 0 … floor-1 with one durable write
        log.info("new seq counter for %s starts at %d", did, counter.peek())
    return counter


class Gateway:
    """One gateway built from its configuration. Opening it takes the outbox
    lock and binds the HTTP ports, so a misconfiguration fails here, not later."""

    def __init__(self, config: GatewayConfig, *, clock: Callable[[], int] = now_micros):
        self.config = config
        gateway_key = _load_key(config.key_file, "gateway.key_file")
        site_key = _load_key(config.site_key_file, "site.key_file")
        if did_of(gateway_key) == did_of(site_key):
            raise KeyFileError(
                "gateway.key_file and site.key_file hold the same key: the gateway signs "
                "readings as a device, the site signs dock events as a party"
            )
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.outbox = Outbox(config.outbox)
        self.sources: list[Source] = []
        self.rejected = 0
        try:
            self.gateway = GatewaySigner(
                gateway_key, seq_counter(config.state_dir, did_of(gateway_key), clock)
            )
            self.site = GatewaySigner(
                site_key, seq_counter(config.state_dir, did_of(site_key), clock)
            )
            self.intake = Intake(self.outbox, config.topic, self.gateway, clock=clock)
            self._build_sources()
            broker = config.broker
            self.uplink = Uplink(
                self.outbox,
                broker.url,
                broker.client_id,
                username=broker.username,
                password=broker.password,
                tls_ca=str(broker.tls_ca) if broker.tls_ca else None,
                max_inflight=broker.max_inflight,
                batch_max=broker.batch_max,
                batch_bytes=broker.batch_bytes,
                backoff_min=broker.backoff_min,
                backoff_max=broker.backoff_max,
                on_reject=self._on_reject,
                events_topics=[config.topic],
            )
        except BaseException:
            self.close()
            raise
        self._initial_queued = len(self.outbox)
        self.started = threading.Event()
        self._stop_sources = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- building

    def _build_sources(self) -> None:
        config = self.config
        for item in config.ds18b20:
            self.sources.append(DS18B20Source(item, self.intake))
        for item in config.csv:
            self.sources.append(LineSource(item, self.intake, config.state_dir))
        for item in config.http:
            self.sources.append(HttpSource(item, self.intake))
        for item in config.dock:

            def make_session(item: Any = item) -> DockSession:
                return DockSession(
                    self._emit_dock,
                    parties=config.parties,
                    devices=config.devices,
                    gateway_did=self.gateway.did,
                    location=config.site_location,
                    timeout_s=item.session_timeout_s,
                    name=item.name,
                )

            if item.input is not None:
                self.sources.append(DockScannerSource(item, make_session(), config.state_dir))
            if item.form_port is not None:
                form = DockForm(make_session, config.site_party, item.name)
                self.sources.append(DockFormSource(item, form))

    def _emit_dock(self, kind: str, lots: list[str], data: dict[str, Any]) -> Any:
        private = ("location",) if self.config.site_location_private and "location" in data else ()
        return self.intake.signed(self.site, kind, lots, data, private)

    def _on_reject(self, topic: str, notice: dict[str, Any]) -> None:
        self.rejected += 1
        log.warning(
            "the ledger refused event %s from this gateway: %s: %s",
            notice.get("event_id", "?"),
            notice.get("reason", "?"),
            str(notice.get("message", ""))[:500],
        )

    # --- status

    @property
    def urls(self) -> dict[str, str]:
        """Local HTTP endpoints by source name (ports are known once constructed)."""
        return {source.name: source.url for source in self.sources if hasattr(source, "url")}

    def status(self) -> dict[str, Any]:
        counters = self.intake.counters
        return {
            "queued": len(self.outbox),
            "delivered": self.uplink.acked,
            "signed": counters.signed,
            "passed_through": counters.passed_through,
            "refused": counters.refused,
            "rejected_by_ledger": self.rejected,
            "connected": self.uplink.connected.is_set(),
            "error": self.uplink.error,
        }

    def _log_status(self) -> None:
        status = self.status()
        log.info(
            "status: queued %(queued)d, delivered %(delivered)d, connected %(connected)s, "
            "signed %(signed)d, passed through %(passed_through)d, refused %(refused)d, "
            "rejected by the ledger %(rejected_by_ledger)d",
            status,
        )
        if status["error"]:
            log.error("uplink: %s (collecting into the outbox meanwhile)", status["error"])

    # --- running

    def run(self, stop: threading.Event) -> None:
        """Run until *stop* is set, then stop the sources, drain for at most
        `drain_timeout_s`, and close. Undelivered envelopes stay in the outbox."""
        config = self.config
        log.info(
            "gateway %s: publishing to %s as %s; %d waiting in the outbox %s",
            config.id,
            config.broker.url,
            config.topic,
            self._initial_queued,
            config.outbox,
        )
        try:
            self.uplink.start()
            for source in self.sources:
                thread = threading.Thread(
                    target=self._supervise,
                    args=(source,),
                    name=f"gateway-{source.name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            self.started.set()
            while not stop.wait(config.status_interval_s):
                self._log_status()
        finally:
            self._shutdown()

    def _supervise(self, source: Source) -> None:
        """Run a source; restart it with a capped backoff if it fails."""
        delay = RESTART_MIN_S
        while not self._stop_sources.is_set():
            began = time.monotonic()
            try:
                source.run(self._stop_sources)
                return  # finished (its input ended) or told to stop
            except Exception as exc:
                if time.monotonic() - began > RESTART_MAX_S:
                    delay = RESTART_MIN_S
                log.error("source %s failed: %s; restarting in %.0f s", source.name, exc, delay)
                log.debug("source %s failure", source.name, exc_info=True)
            self._stop_sources.wait(delay)
            delay = min(delay * 2, RESTART_MAX_S)

    def _shutdown(self) -> None:
        self._stop_sources.set()
        for thread in self._threads:
            thread.join(SOURCE_JOIN_S)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, SOURCE_JOIN_S)
        for source in self.sources:
            source.close()
        try:
            # Delivers what it can within the drain time if connected, then disconnects.
            if not self.uplink.stop(timeout=self.config.drain_timeout_s):
                log.warning(
                    "%d envelopes not delivered yet; they stay in %s for the next start",
                    len(self.outbox),
                    self.config.outbox,
                )
        finally:
            self._log_status()
            self.gateway.counter.close()
            self.site.counter.close()
            self.outbox.close()
        log.info("gateway %s stopped", self.config.id)

    def close(self) -> None:
        """Release what the constructor took without running (tests, errors)."""
        uplink = getattr(self, "uplink", None)
        if uplink is not None and uplink.stopped.is_set():
            uplink.stop(timeout=0)  # never started: just closes its wake-up sockets
        for source in self.sources:
            try:
                source.close()
            except (OSError, ProvenanceError):
                log.exception("closing %s", source.name)
        for signer in (getattr(self, "gateway", None), getattr(self, "site", None)):
            if signer is not None:
                signer.counter.close()
        self.outbox.close()
