"""`provenance demo`: the main job, a narrated end-to-end walkthrough of the real CLI.

It runs the story's steps (provenance.cli.demo_story: every step the actual
`provenance` command in a subprocess against a fresh ledger in the demo
folder, tampering with copies of the database caught by `provenance verify`),
then starts the live system and the web app (provenance.cli.demo_stack) and
*is* the running system: this module is the click command, the flow from one
to the other, the closing summary with the scan pages' URLs (a lot that is
simply fine among them) and a QR code, each printed only once it answers, and
a clean stop of everything on SIGTERM or SIGINT (Ctrl-C), with or without a
terminal.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from provenance.cli.demo_stack import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Listener,
    Running,
    live,
    scan,
    url_host,
)
from provenance.cli.demo_story import FINE_URI, LOT_URI, SALAD_URI, Demo, narrate

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """SIGTERM or SIGINT: shut everything down cleanly (not an Exception, so
    that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    for each in STOP_SIGNALS:  # once: a second signal must not cut the shutdown short
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


def run(
    directory: Path,
    seconds: float = 20.0,
    serve: float | None = None,
    host: str = DEFAULT_HOST,
    port: int | None = None,
) -> int:
    """The whole demo; with *serve* None (the default) it keeps serving until
    SIGTERM or SIGINT, then stops everything it started and returns 0."""
    previous = {each: signal.signal(each, _raise_stopped) for each in STOP_SIGNALS}
    running = Running()
    try:
        with running:
            return _run(directory, seconds, serve, Listener(host, port), running)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        print(f"\n== Stopped ({name}): web app, ingest, broker and witnesses shut down", flush=True)
        return 0 if running.serving else 1
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _run(
    directory: Path, seconds: float, serve: float | None, place: Listener, running: Running
) -> int:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    demo = Demo(directory)
    narrate(demo, directory, place.base)
    broker_url = live(demo, directory, seconds, running)
    server = scan(demo, directory, place, running)
    return serving(directory, place, broker_url, server, serve, running)


def serving(
    directory: Path,
    place: Listener,
    broker_url: str,
    server: subprocess.Popen[bytes],
    serve: float | None,
    running: Running,
) -> int:
    """The closing summary; then keep everything up for *serve* seconds
    (None: until stopped). A URL is printed only while it is served."""
    demo_dir = directory
    print(f"\n== Done: the ledger, keys, bundle and tampered copies are in {demo_dir}")
    if serve is not None and serve <= 0:
        print(
            "  Not serving (--serve 0): everything is stopped now. To serve the scan pages "
            f"again: provenance --db {demo_dir / 'provenance.db'} serve",
            flush=True,
        )
        return 0
    print(
        f"  Running: the web app at {place.base} (listening on "
        f"{url_host(place.host)}:{place.port}), the ingest service on {broker_url}, "
        "two witnesses"
    )
    print("  Scan pages:")
    for what, uri in (
        ("a lot that is simply fine", FINE_URI),
        ("the recalled kale", LOT_URI),
        ("the salad made from it, recalled too", SALAD_URI),
    ):
        print(f"    {what + ':':<38} {place.scan_url(uri)}")
    if place.everywhere:
        print("\n  Scan with a phone on this network, or open:")
    else:
        print(
            f"\n  Open it on this machine (a phone cannot reach {place.host}; "
            "`--host 0.0.0.0` serves the network):"
        )
    print(f"  {place.scan_url(SALAD_URI)}\n")
    _print_qr(place.scan_url(SALAD_URI))
    forever = serve is None
    how = "Ctrl-C" if sys.stdin.isatty() else "SIGTERM"
    print(
        f"  Serving until stopped ({how})" if forever else f"  Serving for {serve:.0f} s",
        flush=True,
    )
    running.serving = True
    deadline = None if forever else time.monotonic() + serve
    while deadline is None or time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = server.wait(timeout=1.0)
            print(f"  the web app stopped by itself (exit {code}); see {directory / 'serve.log'}")
            return 1
    print("  Done serving; stopping", flush=True)
    return 0


def _print_qr(url: str) -> None:
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(url)
    code.print_ascii(out=sys.stdout, invert=True)
    sys.stdout.flush()


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="demo",
    show_default=True,
    help="Where the demo ledger and keys go (replaced each run).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=2),
    default=20.0,
    show_default=True,
    help="How long the simulated fleet runs in the live part.",
)
@click.option(
    "--serve",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to keep the system up at the end (default: until stopped with "
    "Ctrl-C or SIGTERM, with or without a terminal; 0: stop at once, print no URL).",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="The interface the web app listens on: 0.0.0.0 for every interface (a phone on "
    "the same network then opens the printed LAN URL).",
)
@click.option(
    "--port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help=f"The web app's port (default: {DEFAULT_PORT} when free, else any free port).",
)
def command(
    directory: str, seconds: float, serve: float | None, host: str, port: int | None
) -> None:
    """The main job: a narrated walkthrough (parties, lots, a journey, a
    checkpoint, tampering caught by `verify`, a recall), then the running
    system: two witnesses, a local broker, the ingest service fed by a
    simulated fleet, and the web app. It prints the scan pages' URLs (a lot
    that is simply fine among them) and a QR code once they answer, and keeps
    everything up until stopped.

    Example: provenance demo --host 0.0.0.0   (then open the printed URL on a phone)
    """
    sys.exit(run(Path(directory), seconds, serve, host, port))
