"""Tests write only in their temporary folders, never in the checkout.

A test that runs a command with a relative or derived path (an accounts
folder beside a PostgreSQL URL, a cursor named after a database) lands in the
working directory, which is the checkout; such files were once committed by
mistake. At the end of a run, the files that appeared in the checkout and git
does not ignore fail the run, named. Outside a git checkout: nothing to check.
"""

from __future__ import annotations

import subprocess

from support.paths import ROOT

_before: set[str] | None = None


def _untracked() -> set[str] | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return set(done.stdout.splitlines())


def _controller(config) -> bool:
    return not hasattr(config, "workerinput")  # pytest-xdist: the workers skip it


def pytest_sessionstart(session):
    global _before
    if _controller(session.config):
        _before = _untracked()


def pytest_sessionfinish(session, exitstatus):
    if _before is None or not _controller(session.config):
        return
    after = _untracked()
    if after is None:
        return
    new = sorted(after - _before)
    if new:
        shown = "\n  ".join(new[:20])
        print(f"\nError: the tests wrote into the checkout ({len(new)} files):\n  {shown}")
        session.exitstatus = 1
