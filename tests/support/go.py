"""Go's reference programs (tests/go/), built offline: the environment every
build uses. x/mod comes from Debian's golang-golang-x-mod-dev, never the network."""

from __future__ import annotations

import os
from pathlib import Path

from support.paths import ROOT

X_MOD = Path("/usr/share/gocode/src/golang.org/x/mod")  # golang-golang-x-mod-dev
ARTIFACTS = ROOT / ".artifacts" / "go"


def go_env() -> dict[str, str]:
    """Offline, reproducible, and everything cached under .artifacts/go."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GOPROXY="off",  # never the network: x/mod comes from the Debian package
        GOSUMDB="off",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=readonly -buildvcs=false",
        GOWORK="off",
        GOENV="off",
        GOTELEMETRY="off",
        CGO_ENABLED="0",
        GOCACHE=str(ARTIFACTS / "cache"),
        GOPATH=str(ARTIFACTS / "path"),
    )
    return env
