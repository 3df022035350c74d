"""Line input for the gateway's sources: files (followed, with a position that
survives restarts), FIFOs, serial ports (raw 8N1) and stdin, read without ever
blocking longer than `POLL_S`."""

from __future__ import annotations

import logging
import os
import select
import stat
import termios
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a blocked reader (or source) looks at its stop event
READ_CHUNK = 65_536


class LineStream:
    """A ``readline``-able byte stream over a regular file, a FIFO, a serial
    device (raw 8N1 at *baud*) or stdin (``-``) that never blocks longer than
    `POLL_S`: like a serial port opened with a read timeout, it returns ``b""``
    when no complete line is there yet. It hands out only complete lines (the
    last, unterminated line of an input that ended gets a newline added), so
    `consumed` is always a line boundary.

    Regular files are followed as they grow (with *follow*), and with an
    *offset_file* the position survives restarts: after `commit()` a restarted
    gateway resumes there instead of sending the file again. A replaced or
    truncated file is read from its start."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        follow: bool = True,
        baud: int | None = None,
        offset_file: Path | None = None,
    ):
        self.path = path
        self.name = name
        self.follow = follow
        self.offset_file = offset_file
        self.regular = False
        self.ended = False  # the input is finished for good (EOF of stdin, a file without follow)
        self.consumed = 0  # bytes of whole lines handed out, from the start of the file
        self._buffer = b""
        self._identity: tuple[int, int] | None = None
        self.fd = self._open(baud)

    def _open(self, baud: int | None) -> int:
        if str(self.path) == "-":
            return os.dup(0)
        st = os.stat(self.path)
        if stat.S_ISFIFO(st.st_mode):
            # Read-write: we count as a writer, so the FIFO never reports EOF when
            # the real writer goes away and select() waits instead of spinning.
            return os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        if stat.S_ISREG(st.st_mode):
            self.regular = True
            self._identity = (st.st_dev, st.st_ino)
            self.consumed = self._saved_offset(st)
            os.lseek(fd, self.consumed, os.SEEK_SET)
        elif stat.S_ISCHR(st.st_mode) and baud:
            _serial_raw(fd, baud)
        return fd

    def _saved_offset(self, st: os.stat_result) -> int:
        if self.offset_file is None or not self.offset_file.exists():
            return 0
        try:
            device, inode, offset = (int(x) for x in self.offset_file.read_text().split())
        except (OSError, ValueError):
            log.warning("%s: unreadable %s; reading from the start", self.name, self.offset_file)
            return 0
        if (device, inode) != (st.st_dev, st.st_ino) or offset > st.st_size:
            log.info(
                "%s: %s was replaced or truncated; reading from the start", self.name, self.path
            )
            return 0
        if offset:
            log.info("%s: resuming %s at byte %d", self.name, self.path, offset)
        return offset

    def commit(self) -> None:
        """Record that every line handed out so far is safely queued."""
        if not (self.regular and self.offset_file and self._identity):
            return
        device, inode = self._identity
        temporary = self.offset_file.with_name(self.offset_file.name + ".tmp")
        temporary.write_text(f"{device} {inode} {self.consumed}\n")
        os.replace(temporary, self.offset_file)

    def readline(self, limit: int = -1) -> bytes:
        """One complete line, or ``b""`` if none arrived within `POLL_S`. A line
        longer than *limit* comes out in pieces of *limit* bytes."""
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0 and 0 < limit <= len(self._buffer):
                cut = limit - 1
            if cut >= 0:
                line, self._buffer = self._buffer[: cut + 1], self._buffer[cut + 1 :]
                self.consumed += len(line)
                return line
            if self.ended:
                return self._rest()
            if not self._fill():
                return b""

    def _rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        self.consumed += len(rest)
        return rest + b"\n" if rest else b""

    def _fill(self) -> bool:
        """Read what is there (waiting at most POLL_S); False if nothing came."""
        if not self.regular:
            ready, _, _ = select.select([self.fd], [], [], POLL_S)
            if not ready:
                return False
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if chunk:
            self._buffer += chunk
            return True
        if self.regular and self.follow:
            self._check_replaced()
            return False
        self.ended = True  # stdin or a device closed, or a whole file read without follow
        return True

    def _check_replaced(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        position = self.consumed + len(self._buffer)
        if self._identity != (st.st_dev, st.st_ino) or st.st_size < position:
            log.info(
                "%s: %s was rotated or truncated; reading it from the start", self.name, self.path
            )
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._identity = (st.st_dev, st.st_ino)
            self._buffer = b""
            self.consumed = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _serial_raw(fd: int, baud: int) -> None:
    """Raw 8N1 at *baud*: no echo, no line editing, no CR/LF translation."""
    speed = getattr(termios, f"B{baud}")
    attrs = termios.tcgetattr(fd)
    attrs[0] = termios.IGNPAR  # iflag
    attrs[1] = 0  # oflag
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
    attrs[3] = 0  # lflag
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
