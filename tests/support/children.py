"""Helpers for tests that run child processes: read what one prints; see
every process it started (/proc) and check that none is left behind."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def read_lines(proc: subprocess.Popen[bytes], want: int, timeout: float) -> list[bytes]:
    """Complete lines a child printed: at least *want* of them, or all of them
    when it exits first. Fails at the deadline."""
    lines: list[bytes] = []
    partial = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while len(lines) < want:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"child printed {len(lines)} of {want} lines in {timeout}s"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *complete, partial = (partial + chunk).split(b"\n")
        lines.extend(complete)
    return lines


# --- process trees: what a process started, and whether any of it is left


@dataclass(frozen=True)
class Proc:
    """One process as /proc showed it: the start time tells a pid reused later apart."""

    pid: int
    started: int  # clock ticks after boot (/proc/PID/stat field 22)
    command: str

    def alive(self) -> bool:
        """Still there: the same process (not a pid reused since) and no zombie."""
        stat = _stat(self.pid)
        return stat is not None and stat[2] == self.started and stat[1] != "Z"


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of *pid*, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": the name may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[Proc]:
    """Every live process below *pid* (children, theirs, …) now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] != "Z":
                children.setdefault(stat[0], []).append(int(entry.name))
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            stat = _stat(child)
            if stat is not None:
                found.append(Proc(child, stat[2], _command(child)))
                todo.append(child)
    return found


def holders(path: Path) -> list[int]:
    """Pids of the other processes (ours to see) that hold *path* open, or
    its SQLite companions (*path*-wal, *path*-shm)."""
    target = str(path.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue  # gone, or not ours
        if any(link == target or link.startswith(target + "-") for link in links):
            found.append(int(entry.name))
    return found


class Family:
    """The processes a process started, collected while it runs (`look`) so
    that a child that came and went between two looks is still checked."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seen: dict[tuple[int, int], Proc] = {}

    def look(self) -> list[Proc]:
        now = descendants(self.pid)
        for proc in now:
            self.seen[(proc.pid, proc.started)] = proc
        return now

    def left(self) -> list[Proc]:
        return [proc for proc in self.seen.values() if proc.alive()]


def assert_nothing_left(family: Family, timeout: float, ledger: Path | None = None) -> None:
    """Within *timeout*, every process of *family* is gone and (given a
    ledger) nothing holds its database open. Leftovers are killed, then the
    assertion fails naming them."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: its wait is the polling interval
    while True:
        left = family.left()
        held = holders(ledger) if ledger is not None else []
        if not left and not held:
            return
        if time.monotonic() > deadline:
            break
        tick.wait(0.05)
    for proc in left:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
    described = [f"{p.pid} {p.command}" for p in left]
    raise AssertionError(
        f"left behind after {timeout:g}s: {described or 'none of its tree'}"
        + (f"; {ledger.name} held open by {held}" if held else "")
    )
