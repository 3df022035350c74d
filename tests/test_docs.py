"""The docs must keep up with the code (a newcomer reads them first)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from click import Context, Group
from conftest import ROOT

from provenance.cli.main import main
from provenance.core.kinds import KIND_CODES
from provenance.ledger import reasons as reject_reasons


def commands(group: Group, path: tuple[str, ...] = ()):
    context = Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name))


@pytest.mark.parametrize("command", sorted(commands(main)))
def test_every_command_is_in_docs_cli(command):
    assert f"`provenance {command}" in (ROOT / "docs" / "cli.md").read_text()


def test_every_reject_reason_and_kind_is_in_the_protocol():
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    reasons = [
        v
        for k, v in vars(reject_reasons).items()
        if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z]+(-[a-z]+)*", v)
    ]
    assert len(reasons) >= 14
    for reason in [*reasons, "aborted"]:
        assert f"`{reason}`" in protocol, reason
    for kind in KIND_CODES:
        assert f"`{kind}`" in protocol, kind


def test_readme_quick_start_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert [line.split()[0:2] for line in lines] == [["./run", "demo"], ["./run", "tests"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run tests" in ci


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (ROOT / ".venv/bin/ruff").exists(),
    reason="ruff is not installed",
)
@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
    ruff = str(ROOT / ".venv/bin/ruff") if (ROOT / ".venv/bin/ruff").exists() else "ruff"
    done = subprocess.run(
        [ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
