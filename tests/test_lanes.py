"""The suite's own layout (tests/README.md): test modules share code only
through tests/support/, never by importing one another, and the fast lane
(`./run tests --fast`, `-m "not slow and not external"`) cannot quietly start
a broker.

The import rule reads the source with `ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.broker import Broker
from support.lanes import EXTERNAL_MODULES, require_external

TESTS = Path(__file__).resolve().parent
SUPPORT = "support"


def _modules_beside_the_tests() -> set[str]:
    """What `import X` could find in tests/ itself (pytest puts it on sys.path),
    except the support package: test modules and conftest."""
    names = {path.stem for path in TESTS.glob("*.py")}
    names |= {path.name for path in TESTS.iterdir() if (path / "__init__.py").exists()}
    return (names - {SUPPORT}) | {"tests"}


def _statements(body: list[ast.stmt]):
    """Every statement, nested ones too (imports are statements: no need to
    visit the expressions, which are most of a module)."""
    for node in body:
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, name, None)
            if isinstance(inner, list):
                yield from _statements(inner)


def borrowed_imports(source: str, forbidden: set[str]) -> list[str]:
    """The imports in *source* (at any depth, and `pytest_plugins` entries) of a
    module whose top-level name is in *forbidden*, as "line: module"."""
    found = []
    for node in _statements(ast.parse(source).body):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.ImportFrom):  # relative: only support/ may, within itself
            modules = [] if node.level == 1 else ["." * node.level + (node.module or "")]
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytest_plugins"
            for target in node.targets
        ):
            modules = [
                item.value
                for item in ast.walk(node.value)
                if isinstance(item, ast.Constant) and isinstance(item.value, str)
            ]
        for module in modules:
            top = module.partition(".")[0]
            if top in forbidden or module.startswith(".."):
                found.append(f"{node.lineno}: {module}")
    return found


def test_no_test_module_imports_another():
    forbidden = _modules_beside_the_tests()
    sources = sorted(TESTS.glob("*.py")) + sorted((TESTS / SUPPORT).rglob("*.py"))
    borrowed = {
        str(path.relative_to(TESTS)): found
        for path in sources
        if (found := borrowed_imports(path.read_text(encoding="utf-8"), forbidden))
    }
    assert not borrowed, (
        f"move what test modules share into tests/support/ and import it from there: {borrowed}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from test_ingest import wire",
        "import test_gateway",
        "from conftest import ROOT",
        "import conftest as c",
        "from tests.test_lineage import lot",
        "def f():\n    from test_portal_support import Portal\n",
        'pytest_plugins = ["test_portal_support"]',
        "pytest_plugins = ('support.ingest', 'test_ingest')",
    ],
)
def test_the_import_rule_sees_every_way_of_borrowing(source):
    forbidden = {"test_ingest", "test_gateway", "test_lineage", "test_portal_support"}
    assert borrowed_imports(source, forbidden | {"conftest", "tests"})


def test_the_import_rule_lets_support_through():
    forbidden = _modules_beside_the_tests()
    assert "test_ingest" in forbidden and "conftest" in forbidden
    source = "from support.world import World\nimport support.broker\nfrom provenance import x\n"
    assert borrowed_imports(source, forbidden) == []
    assert borrowed_imports('pytest_plugins = ["support.portal"]', forbidden) == []


def test_shared_helpers_live_in_support_not_beside_the_tests():
    """A helper module beside the test modules is one they would import: it
    belongs in tests/support/."""
    beside = sorted(
        path.name
        for path in TESTS.glob("*.py")
        if not path.name.startswith("test_") and path.name != "conftest.py"
    )
    assert beside == []


def test_the_modules_marked_external_exist():
    missing = sorted(name for name in EXTERNAL_MODULES if not (TESTS / f"{name}.py").exists())
    assert missing == []


def test_a_broker_started_outside_the_external_lane_fails_the_test(tmp_path):
    """This test is not `external`: starting a broker fails it before any
    process starts, saying how to mark it."""
    with pytest.raises(pytest.fail.Exception, match="starts a broker but is not marked external"):
        Broker(tmp_path / "broker").start()


@pytest.mark.external
def test_an_external_test_may_start_what_it_needs():
    require_external("starts a broker")  # does not fail
