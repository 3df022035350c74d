"""`provenance up`, `status` and `down`: one site's whole stack, started,
supervised and stopped together (docs/deploy.md, "One site").

`up` makes what a first start needs (the ledger and its keys, the rules key,
a rule file) and then runs, each as its own process with its log in the state
folder: the MQTT broker (Mosquitto, persistent, on a fixed port; or none with
--broker), the ingest service (with its Prometheus metrics), the web app, the
rules service, the recall notifier and, given witnesses, the witnessing
service. Each starts once the one before it is ready; one that exits is
started again with a growing back-off; one that keeps failing stops the
stack. Ctrl-C or SIGTERM stops everything in reverse order, each process
committing what it holds. Every process dies with `up`, however `up` ends.

`status` reads the state folder's status.json and asks the web app's
/readyz; `down` stops an `up` running elsewhere (its pid is in status.json).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from provenance.cli.context import Context
from provenance.cli.errors import friendly
from provenance.infra.supervisor import Service, Supervisor, SupervisorError

DEFAULT_BROKER_PORT = 1883
DEFAULT_WEB_PORT = 8080
DEFAULT_METRICS_PORT = 9108
STATUS = "status.json"
EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "rules.example.toml"


def _state_dir(ctx: Context, given: str | None) -> Path:
    return Path(given) if given else ctx.db_path.resolve().parent / "stack"


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Logs, broker data, cursors and status.json (default: stack/ beside --db).",
)


@click.command("up")
@state_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the web app listens.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_WEB_PORT,
    show_default=True,
    help="The web app's port.",
)
@click.option("--base-url", metavar="URL", help="The resolver's public origin (see `serve`).")
@click.option(
    "--broker",
    "broker_url",
    metavar="mqtt://HOST:PORT",
    help="Use this broker (a cluster, say) instead of starting Mosquitto here.",
)
@click.option(
    "--broker-host",
    default="127.0.0.1",
    show_default=True,
    help="Where the started broker listens (0.0.0.0 for gateways on the network).",
)
@click.option(
    "--broker-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_BROKER_PORT,
    show_default=True,
    help="The started broker's port.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="The ingest service's Prometheus metrics (http://127.0.0.1:N/metrics).",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The rule file (default: rules.toml in the state folder, made from the example).",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="NAME=URL=VKEY",
    help="An outside witness to cosign the log (repeatable; see `log witness`).",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="Exits of one service within 5 minutes before the stack stops.",
)
@click.pass_obj
@friendly
def up(
    ctx: Context,
    state_dir: str | None,
    host: str,
    port: int,
    base_url: str | None,
    broker_url: str | None,
    broker_host: str,
    broker_port: int,
    metrics_port: int,
    rules_file: str | None,
    witnesses: tuple[str, ...],
    max_restarts: int,
) -> None:
    """Run this site's whole stack until Ctrl-C or SIGTERM: broker, ingest, web
    app, rules, notifier and (with --witness) witnessing, each restarted if it
    exits. Makes the ledger and keys on the first start.

    Example: provenance up --host 0.0.0.0 --broker-host 0.0.0.0
    """
    state = _state_dir(ctx, state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _refuse_second_up(state)
    base = [
        sys.executable,
        "-m",
        "provenance",
        "--db",
        str(ctx.db_path),
        "--keys",
        str(ctx.keys_dir),
    ]
    _first_start(ctx, base, state)
    rules = Path(rules_file) if rules_file else _default_rules(state)
    services: list[Service] = []
    if broker_url is None:
        from provenance.infra.localbroker import Broker

        broker = Broker(state / "broker", durable=True, host=broker_host, port=broker_port)
        _check_port_free(broker_host, broker_port, "--broker-port")
        services.append(
            Service(
                "broker",
                broker.command(),
                state / "broker" / "broker.log",
                ready=_listening(broker_host, broker_port),
                python=broker.kind == "amqtt",
            )
        )
        broker_url = (
            broker.url
            if broker_host not in ("0.0.0.0", "::")
            else (f"mqtt://127.0.0.1:{broker_port}")
        )
    _check_port_free(host, port, "--port")
    ready_file = state / "ingest.ready"
    services.append(
        Service(
            "ingest",
            [*base, "ingest", "--broker", broker_url, "--ready-file", str(ready_file),
             "--metrics-port", str(metrics_port)],
            state / "ingest.log",
            ready=_ready_file(ready_file),
        )
    )  # fmt: skip
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    serve = [*base, "serve", "--host", host, "--port", str(port)]
    services.append(
        Service(
            "serve",
            serve + (["--base-url", base_url] if base_url else []),
            state / "serve.log",
            ready=_answers(local + "/readyz"),
        )
    )
    if rules is not None:
        services.append(
            Service(
                "rules",
                [*base, "rules", "run", "--config", str(rules), "--broker", broker_url,
                 "--cursor", str(state / "rules.cursor")],
                state / "rules.log",
            )
        )  # fmt: skip
    services.append(
        Service(
            "notify",
            [*base, "notify", "--broker", broker_url, "--cursor", str(state / "notify.cursor")],
            state / "notify.log",
        )
    )
    if witnesses:
        options = [item for witness in witnesses for item in ("--witness", witness)]
        services.append(
            Service("witnessing", [*base, "log", "witness", *options], state / "witnessing.log")
        )
    extra = {
        "web": local,
        "broker": broker_url,
        "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
    }
    supervisor = Supervisor(
        services, state / STATUS, max_restarts=max_restarts, extra_status=lambda: extra
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"starting {', '.join(s.name for s in services)} (logs in {state})", err=True)
    try:
        supervisor.start()
    except SupervisorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"up: web {local}  broker {broker_url}  metrics {extra['metrics']}\n"
        f"    `provenance status` shows each service; Ctrl-C stops them all",
        err=True,
    )
    code = supervisor.run(stop)
    if code:
        raise click.ClickException(supervisor.failure or "a service kept failing")
    click.echo("stopped: every service committed what it held and left", err=True)


def _refuse_second_up(state: Path) -> None:
    """One `up` per state folder: a second would fight over ports and cursors."""
    running = _read_status(state)
    if running is not None and _alive(running.get("supervisor")):
        raise click.ClickException(
            f"provenance up is already running here (pid {running['supervisor']}); "
            "`provenance status` shows it, `provenance down` stops it"
        )


def _first_start(ctx: Context, base: list[str], state: Path) -> None:
    """The ledger with its keys, and the rules key: made once, by the
    commands an operator would run (`init`, `rules init`)."""
    import subprocess

    steps = []
    if not ctx.db_path.exists():
        steps.append(["init"])
    if not (ctx.keys_dir / "rules.pem").exists():
        steps.append(["rules", "init"])
    for step in steps:
        done = subprocess.run([*base, *step], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise click.ClickException(f"`provenance {' '.join(step)}` failed: {said}")
        click.echo(f"first start: provenance {' '.join(step)}", err=True)


def _default_rules(state: Path) -> Path | None:
    """rules.toml in the state folder, copied from the example the first time;
    None (and a warning) when there is neither."""
    rules = state / "rules.toml"
    if not rules.exists():
        if not EXAMPLE_RULES.is_file():
            click.echo(
                f"warning: no rule file: the rules service is not started (give --rules FILE "
                f"or write {rules})",
                err=True,
            )
            return None
        rules.write_bytes(EXAMPLE_RULES.read_bytes())
        click.echo(f"first start: rules from {EXAMPLE_RULES.name} in {rules}", err=True)
    return rules


def _check_port_free(host: str, port: int, option: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror}): something else uses it; "
                f"stop it or choose another {option}"
            ) from None


def _listening(host: str, port: int):
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)

    def ready(_process: Any) -> bool:
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return True
        except OSError:
            return False

    return ready


def _ready_file(path: Path):
    """The ingest service writes its ready file (naming its pid) once it holds
    its subscriptions (docs/ingest.md)."""

    def ready(process: Any) -> bool:
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("pid") == process.pid
        except (OSError, ValueError, AttributeError):
            return False

    return ready


def _answers(url: str):
    def ready(_process: Any) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return ready


def _read_status(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid: Any) -> bool:
    """Whether process *pid* runs (a zombie, gone but not yet reaped, does not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""  # no /proc here: ask the kernel instead
    if stat:
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@click.command("status")
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print status.json with the readiness.")
@click.pass_obj
def status(ctx: Context, state_dir: str | None, as_json: bool) -> None:
    """What `provenance up` runs here: each service's state, pid and restarts,
    and whether the web app is ready. Exit status 0 when everything runs, 1
    otherwise (for monitoring scripts).

    Example: provenance status
    """
    state = _state_dir(ctx, state_dir)
    current = _read_status(state)
    if current is None:
        raise click.ClickException(
            f"no stack here ({state / STATUS} is missing): run `provenance up`"
        )
    running = _alive(current.get("supervisor"))
    ready = _readiness(current.get("web")) if running else "not running"
    current["running"], current["ready"] = running, ready
    if as_json:
        click.echo(json.dumps(current, indent=2))
    else:
        pid = current["supervisor"]
        click.echo(f"provenance up: {f'running, pid {pid}' if running else 'not running'}")
        for service in current.get("services", []):
            pid = f"pid {service['pid']}" if service.get("pid") else ""
            restarts = f"{service['restarts']} restarts" if service.get("restarts") else ""
            detail = ", ".join(part for part in (pid, restarts) if part)
            click.echo(f"  {service['name']:<11} {service['state']:<10} {detail}")
        if current.get("failure"):
            click.echo(f"  stopped because: {current['failure']}")
        click.echo(f"  web: {current.get('web')} ({ready})")
    healthy = (
        running
        and ready == "ready"
        and all(s.get("state") == "running" for s in current.get("services", []))
    )
    sys.exit(0 if healthy else 1)


def _readiness(web: str | None) -> str:
    if not web:
        return "unknown"
    try:
        with urllib.request.urlopen(web + "/readyz", timeout=5) as response:  # loopback only
            return "ready" if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"not ready: HTTP {exc.code}"
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return f"not answering ({getattr(exc, 'reason', exc)})"


@click.command("down")
@state_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=120,
    show_default=True,
    help="Seconds to wait for every service to stop.",
)
@click.pass_obj
def down(ctx: Context, state_dir: str | None, timeout: float) -> None:
    """Stop the `provenance up` running here (SIGTERM: each service commits
    what it holds), and wait until it has.

    Example: provenance down
    """
    state = _state_dir(ctx, state_dir)
    current = _read_status(state)
    pid = None if current is None else current.get("supervisor")
    if not _alive(pid):
        click.echo("nothing to stop: provenance up is not running here")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"provenance up (pid {pid}) did not stop within {timeout:.0f} s; "
                f"see the logs in {state}"
            )
        time.sleep(0.2)  # bounded by the deadline
    click.echo(f"stopped provenance up (pid {pid})")
