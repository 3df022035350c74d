"""Children that die with their parent, whatever kills it (docs/ingest.md,
"Process lifecycle").

A process we start must not outlive the process that started it: a kill -9,
the OOM killer or a crash of the parent gives it no chance to stop its
children, and an orphan holding the ledger, a port or a session is exactly
what a restarted service must never have to reason about. Two lines of
defence, both used by every process that starts children:

1. Pipes only the parent holds. A child learns that its parent is gone from
   EOF on its pipe from the parent, which only comes once *every* copy of the
   pipe's write end is closed: start children with `close_fds` (subprocess's
   default) or the "spawn" method — never "fork", which copies every
   descriptor — and keep the pipes off the descriptors (0, 1, 2) that a
   child's own children inherit.
2. A parent-death signal. `hold(parent)`, called by the child first thing at
   start-up, asks Linux (`prctl(PR_SET_PDEATHSIG)`) to signal it when its
   parent goes. The kernel sends that signal when the parent *thread* that
   started the child exits, not only the whole process, so the handler
   checks `getppid()`: still our parent (another of its threads took over)
   means carry on; anything else means the parent is gone and the child
   exits at once. A parent that died before `prctl` was called is caught by
   the same check right after it. Elsewhere (no prctl), a watchdog thread
   polls `getppid()` instead.

The parent side: `child_env(env)` tells a Python child started with
subprocess who its parent is (the child calls `hold_from_env()`); a
multiprocessing child is given `os.getpid()` and calls `hold(parent)`;
another program is started through `command(argv)`, which arms the signal
and then execs it (the signal survives exec; that program then gets the
plain signal, so the thread that starts it must outlive it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

PARENT_ENV = "PROVENANCE_LIFELINE_PARENT"  # a Python child's parent pid, set by child_env
PARENT_DEATH_SIGNAL = signal.SIGUSR1  # what a Python child is sent when its parent goes
EXEC_DEATH_SIGNAL = signal.SIGTERM  # what another program (command) is sent: its clean stop
WATCH_S = 0.5  # without prctl: how often the watchdog looks at getppid()
ORPHANED_EXIT = 1

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send *signum* when our parent (thread) exits; False where
    that cannot be done."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return False
    prctl.restype = ctypes.c_int
    done = prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(int(signum)), 0, 0, 0)
    return done == 0


def _orphaned(parent: int) -> None:
    """The parent is gone: leave now, without clean-up that could block (a
    child's own children get their parent-death signal in turn)."""
    message = f"{os.path.basename(sys.argv[0] or 'python')}[{os.getpid()}]: "
    message += f"parent process {parent} is gone; exiting\n"
    with contextlib.suppress(OSError):  # no stderr left: leave all the same
        os.write(2, message.encode())
    os._exit(ORPHANED_EXIT)


def hold(parent: int) -> None:
    """In a child, first thing at start-up: exit as soon as *parent* (the pid
    of the process that started us) is gone. Exits at once if it is already."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(PARENT_DEATH_SIGNAL, lambda *_: _check(parent))
        armed = _set_parent_death_signal(PARENT_DEATH_SIGNAL)
    else:
        armed = False  # only the main thread can take a signal: watch instead
    _check(parent)  # it died before the signal was armed: nobody will send it
    if not armed:
        watchdog = threading.Thread(target=_watch, args=(parent,), name="lifeline", daemon=True)
        watchdog.start()


def _check(parent: int) -> None:
    if os.getppid() != parent:
        _orphaned(parent)


def _watch(parent: int) -> None:
    never = threading.Event()
    while not never.wait(WATCH_S):
        _check(parent)


def hold_from_env() -> None:
    """`hold` the parent named by `child_env`, if one started us that way;
    the variable is removed so that our own children do not take it for
    theirs."""
    value = os.environ.pop(PARENT_ENV, None)
    if value is not None and value.isdigit():
        hold(int(value))


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a Python child that calls `hold_from_env`: *env*
    (default: ours) naming this process as its parent."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def command(argv: list[str], signum: int = EXEC_DEATH_SIGNAL) -> list[str]:
    """*argv* started so that it gets *signum* when this process (strictly:
    the thread that starts it) goes. On Linux through this file run as a
    script (stdlib only, isolated mode), which arms the signal, checks that
    we are still there and execs *argv* in its place (same pid); elsewhere
    *argv* unchanged."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    here = os.path.abspath(__file__)
    return [sys.executable, "-I", here, str(os.getpid()), str(int(signum)), "--", *argv]


def _exec_main(args: list[str]) -> None:
    parent, signum, separator, *argv = args
    if separator != "--" or not argv:
        sys.exit("usage: lifeline.py PARENT_PID SIGNAL -- PROGRAM [ARGS...]")
    _set_parent_death_signal(int(signum))
    if os.getppid() != int(parent):
        sys.exit(ORPHANED_EXIT)  # the parent went before the signal was armed
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.exit(f"lifeline: cannot run {argv[0]}: {exc}")


if __name__ == "__main__":  # command(): arm, then exec the program
    _exec_main(sys.argv[1:])
