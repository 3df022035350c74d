"""Witness processes for the witnessing tests, each on a loopback port.

`ProvenanceWitness`: the real one, `provenance witness init|add-log|serve` in its
own folder with its own key. `WitnessProcess`: a small C2SP tlog-witness of
this file's own (`python tests/witness_process.py …`) that can lie: with
``--bad`` it answers a cosignature over a different message, which the real
witness never does. Otherwise it does what the spec says a witness must
(403, 404, 409 with a `text/x.tlog.size` body, 422, persisted under one lock).
Both: start, `vkey`, `url`, `cosigned_size`, stop, start again on the same port.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent


def vkey_of(name: str, public_key: bytes) -> str:
    from provenance.core.cosignature import format_cosigner_key

    return format_cosigner_key(name, public_key)


def cosignature_line(name: str, private_key, body: str, timestamp: int) -> str:
    """The line without its newline; *body* need not be a valid checkpoint (a liar's)."""
    from provenance.core.cosignature import Cosignature, cosigned_message, cosigner_key_id

    public = private_key.public_key().public_bytes_raw()
    if timestamp:
        signature = private_key.sign(cosigned_message(body, timestamp))
    else:  # cosigned_message refuses 0; sign what a careless witness would
        signature = private_key.sign(f"cosignature/v1\ntime 0\n{body}".encode())
    line = Cosignature(name, cosigner_key_id(name, public), timestamp, signature).to_line()
    return line[:-1]


def serve(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provenance.core.checkpoint import Checkpoint, open_note, parse_verifier_key
    from provenance.core.errors import ProofError, VerificationError
    from provenance.core.merkle import verify_consistency

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(args.key.read_text().strip()))
    log_name, log_public = parse_verifier_key(args.log_vkey)
    state_path: Path = args.state
    lock = threading.Lock()

    def load() -> dict:
        return json.loads(state_path.read_text()) if state_path.exists() else {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):  # quiet
            pass

        def answer(self, status: int, text: str, ctype: str = "text/plain") -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            request = self.rfile.read(length).decode()
            if self.path != "/add-checkpoint":
                return self.answer(404, "not found\n")
            head, _, note = request.partition("\n\n")
            lines = head.split("\n")
            if not lines[0].startswith("old "):
                return self.answer(400, "no old line\n")
            old = int(lines[0][4:])
            proof = [base64.b64decode(x) for x in lines[1:]]
            body = note[: note.index("\n\n") + 1]
            cp = Checkpoint.from_text(body)
            if cp.origin != log_name:
                return self.answer(404, "unknown log\n")
            try:
                open_note(note, log_name, log_public)
            except VerificationError:
                return self.answer(403, "not signed by the log\n")
            if old > cp.size:
                return self.answer(400, "old size beyond the checkpoint\n")
            with lock:
                state = load()
                size = state.get("size", 0)
                if old != size:
                    return self.answer(409, f"{size}\n", "text/x.tlog.size")
                if old == cp.size:
                    if base64.b64decode(state["root"]) != cp.root_hash:
                        return self.answer(422, "same size, another root\n")
                elif old > 0:
                    try:
                        verify_consistency(
                            old, cp.size, proof, base64.b64decode(state["root"]), cp.root_hash
                        )
                    except ProofError as exc:
                        return self.answer(422, f"inconsistent: {exc}\n")
                elif proof:
                    return self.answer(422, "a proof from size 0\n")
                tmp = state_path.with_suffix(".tmp")
                tmp.write_text(
                    json.dumps({"size": cp.size, "root": base64.b64encode(cp.root_hash).decode()})
                )
                os.replace(tmp, state_path)
            timestamp = int(time.time())
            signed = body if not args.bad else body.replace("\n", "\n\n", 1)
            return self.answer(200, cosignature_line(args.name, key, signed, timestamp) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    args.port_file.write_text(str(server.server_address[1]))
    server.serve_forever(poll_interval=0.2)


class WitnessProcess:
    """A witness process in *directory* with its own key, following one log."""

    def __init__(self, directory: Path, name: str, log_vkey: str, *, bad: bool = False):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_vkey = log_vkey
        self.bad = bad
        key = Ed25519PrivateKey.generate()
        (directory / "witness.key").write_text(key.private_bytes_raw().hex())
        self.vkey = vkey_of(name, key.public_key().public_bytes_raw())
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cosigned_size(self) -> int:
        state = self.directory / "state.json"
        return json.loads(state.read_text())["size"] if state.exists() else 0

    def start(self, timeout: float = 20.0) -> WitnessProcess:
        port_file = self.directory / "port"
        port_file.unlink(missing_ok=True)
        command = [
            sys.executable, str(Path(__file__).resolve()), "--name", self.name,
            "--key", str(self.directory / "witness.key"), "--log-vkey", self.log_vkey,
            "--state", str(self.directory / "state.json"), "--port", str(self.port),
            "--port-file", str(port_file),
        ]  # fmt: skip
        if self.bad:
            command.append("--bad")
        self.process = subprocess.Popen(command, cwd=HERE.parent)
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"witness {self.name} did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def witness_option(self, display: str) -> str:
        return f"{display}={self.url}={self.vkey}"


class ProvenanceWitness:
    """`provenance witness serve` in *directory*, made with `witness init` and
    following one log (`witness add-log`)."""

    def __init__(self, directory: Path, name: str, log_vkey: str):
        self.directory = directory
        self.name = name
        self.log_vkey = log_vkey
        self.origin = log_vkey.split("+", 1)[0]
        self.vkey = self._cli("init", "--dir", str(directory), "--name", name).strip()
        self._cli("add-log", "--dir", str(directory), "--key", log_vkey)
        from provenance.infra.localbroker import free_port

        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @staticmethod
    def _cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "provenance", "witness", *args],
            capture_output=True, text=True, timeout=60, check=False, cwd=HERE.parent,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cosigned_size(self) -> int:
        """The size it last cosigned for the log, from its monitoring endpoint."""
        import urllib.error
        import urllib.request

        origin_hash = hashlib.sha256(self.origin.encode()).hexdigest()
        try:
            with urllib.request.urlopen(f"{self.url}/{origin_hash}/checkpoint", timeout=10) as r:
                return int(r.read().decode().split("\n")[1])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    def start(self, timeout: float = 30.0) -> ProvenanceWitness:
        import socket

        log = self.directory.parent / f"{self.directory.name}.log"
        with log.open("ab") as output:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "provenance", "witness", "serve", "--dir",
                 str(self.directory), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=output, stderr=output, cwd=HERE.parent,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"witness {self.name} did not start; see {log}")
            time.sleep(0.05)  # still starting; bounded by the deadline

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def witness_option(self, display: str) -> str:
        return f"{display}={self.url}={self.vkey}"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--log-vkey", required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--bad", action="store_true")
    serve(parser.parse_args())
