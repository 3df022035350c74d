"""Several long-running processes started, watched and stopped together: the
one-site stack of `provenance up` (docs/deploy.md).

A `Service` is a command with a log file and a readiness check. `Supervisor`
starts the services in order, each only once the one before is ready (the
ingest service must hold its subscriptions before anything publishes), and
then watches them from the thread that started them: a service that exits is
started again after a back-off that doubles up to a ceiling, and one that
keeps failing (more than `max_restarts` exits within `window_s`) stops the
whole stack with a pointer to its log, rather than flapping for ever. Stopping
goes in reverse order, SIGTERM first (each service commits what it holds and
leaves), SIGKILL only after a grace period.

Every child dies with the supervisor, however the supervisor ends
(provenance.infra.lifeline): a stack never leaves an orphan holding the
ledger, the broker's port or a session. What runs, with its pid, state and
restarts, is kept in a JSON status file (written whole, by rename), which
`provenance status` reads.

Nothing here knows what the services are; that is the caller's business.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provenance.infra import lifeline

START_DEADLINE_S = 60.0  # the longest a service may take to become ready
STARTED_GRACE_S = 1.0  # a service without a readiness check: still running after this
STOP_GRACE_S = 30.0  # SIGTERM, then SIGKILL after this
POLL_S = 0.25  # how often the running services are looked at
BACKOFF_FIRST_S = 1.0
BACKOFF_CEILING_S = 30.0


class SupervisorError(RuntimeError):
    """A service did not start, or kept failing; the message names its log."""


Ready = Callable[["subprocess.Popen[bytes]"], bool]


@dataclass
class Service:
    """One process of the stack. *ready* is asked (repeatedly, bounded by
    START_DEADLINE_S) whether the running process is ready (None: still
    running after STARTED_GRACE_S).
    *python*: a `python -m provenance` child that holds its lifeline from the
    environment; otherwise another program, started through
    `lifeline.command`."""

    name: str
    argv: list[str]
    log: Path
    ready: Ready | None = None
    python: bool = True
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0
    state: str = "stopped"  # stopped, starting, running, restarting, failed
    exits: deque[float] = field(default_factory=deque, repr=False)
    restart_at: float | None = None
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid if self.state in ("starting", "running") else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "log": str(self.log),
            "command": self.argv,
        }


class Supervisor:
    """Starts *services* in order, keeps them running, stops them in reverse."""

    def __init__(
        self,
        services: Sequence[Service],
        status_file: Path,
        *,
        max_restarts: int = 5,
        window_s: float = 300.0,
        extra_status: Callable[[], dict[str, Any]] | None = None,
    ):
        names = [service.name for service in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be distinct: {names}")
        self.services = list(services)
        self.status_file = status_file
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.extra_status = extra_status or dict
        self.started_at = time.time()
        self.failure: str | None = None

    # --- starting -------------------------------------------------------------------------

    def start(self) -> None:
        """Start every service in order, each once the one before is ready.
        A service that does not come up stops those already started and raises
        `SupervisorError` naming its log."""
        for service in self.services:
            try:
                self._launch(service)
                self._wait_ready(service)
            except SupervisorError:
                self.stop()
                raise
            service.state = "running"
            self.write_status()

    def _launch(self, service: Service) -> None:
        service.log.parent.mkdir(parents=True, exist_ok=True)
        argv = service.argv if service.python else lifeline.command(service.argv)
        env = lifeline.child_env(service.env) if service.python else service.env
        with service.log.open("ab") as handle:  # the child keeps its own descriptor
            handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting\n".encode())
            handle.flush()
            service.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            )
        service.state = "starting"
        service.restart_at = None
        self.write_status()

    def _wait_ready(self, service: Service) -> None:
        process = service.process
        assert process is not None
        began = time.monotonic()
        deadline = began + START_DEADLINE_S
        while True:
            code = process.poll()
            if code is not None:
                service.state, service.last_exit = "failed", code
                raise SupervisorError(
                    f"{service.name} exited at start (exit {code}); see {service.log}"
                    + _tail(service.log)
                )
            if service.ready is None:
                if time.monotonic() - began >= STARTED_GRACE_S:
                    return  # did not fall over on its configuration: running
            elif service.ready(process):
                return
            if time.monotonic() > deadline:
                service.state = "failed"
                raise SupervisorError(
                    f"{service.name} was not ready within {START_DEADLINE_S:.0f} s; "
                    f"see {service.log}" + _tail(service.log)
                )
            time.sleep(0.1)  # still starting; bounded by the deadline

    # --- watching -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Keep the stack running until *stop* is set (then 0) or a service keeps
        failing (then 1, with `failure` saying which). Call from the thread that
        called `start`: children die with that thread (lifeline)."""
        try:
            while not stop.wait(POLL_S):
                if not self._tend():
                    return 1
            return 0
        finally:
            self.stop()

    def _tend(self) -> bool:
        """One look at every service; False when the stack must stop."""
        now = time.monotonic()
        for service in self.services:
            if service.state == "restarting":
                if service.restart_at is not None and now >= service.restart_at:
                    self._restart(service)
                if service.state == "failed":
                    return False
                continue
            process = service.process
            if process is None or service.state != "running":
                continue
            code = process.poll()
            if code is not None and not self._exited(service, code):
                return False
        return True

    def _exited(self, service: Service, code: int | None) -> bool:
        """*service* went (exit *code*; None: it did not become ready): schedule
        its restart after a back-off, or give up (False) when it keeps failing."""
        now = time.monotonic()
        service.last_exit = code
        service.exits.append(now)
        while service.exits and now - service.exits[0] > self.window_s:
            service.exits.popleft()
        if len(service.exits) > self.max_restarts:
            service.state = "failed"
            self.failure = (
                f"{service.name} exited {len(service.exits)} times within "
                f"{self.window_s:.0f} s (last exit {code}); stopping the stack; "
                f"see {service.log}" + _tail(service.log)
            )
            self.write_status()
            return False
        delay = min(BACKOFF_CEILING_S, BACKOFF_FIRST_S * 2 ** (len(service.exits) - 1))
        service.state, service.restart_at = "restarting", now + delay
        _note(service.log, f"exited {code}; starting again in {delay:g} s")
        self.write_status()
        return True

    def _restart(self, service: Service) -> None:
        service.restarts += 1
        try:
            self._launch(service)
            self._wait_ready(service)
        except SupervisorError as exc:
            _note(service.log, str(exc).splitlines()[0])
            if service.process is not None and service.process.poll() is None:
                service.process.kill()  # not ready in time: counts as another exit
                service.process.wait(timeout=10)
            self._exited(service, service.last_exit)
            return
        service.state = "running"
        self.write_status()

    # --- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM every running service, last started first; SIGKILL what has
        not gone after STOP_GRACE_S. Safe to call more than once."""
        for service in reversed(self.services):
            process = service.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _note(service.log, f"did not stop within {STOP_GRACE_S:.0f} s; killed")
                    process.kill()
                    process.wait(timeout=10)
            if process is not None:
                service.last_exit = process.returncode
            if service.state != "failed":
                service.state = "stopped"
        self.write_status()

    # --- the status file ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "supervisor": os.getpid(),
            "started": self.started_at,
            "failure": self.failure,
            "services": [service.describe() for service in self.services],
            **self.extra_status(),
        }

    def write_status(self) -> None:
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.status_file.with_name(self.status_file.name + ".partial")
        partial.write_text(json.dumps(self.status(), indent=2) + "\n", encoding="utf-8")
        os.replace(partial, self.status_file)


def _note(log: Path, line: str) -> None:
    with contextlib.suppress(OSError), log.open("ab") as handle:
        handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n".encode())


def _tail(log: Path, lines: int = 5) -> str:
    """The last lines of *log*, indented, for an error message."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line}" for line in text if line.strip())
