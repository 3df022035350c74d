"""Helpers for tests that run a child process and read what it prints."""

from __future__ import annotations

import os
import select
import subprocess
import time


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
