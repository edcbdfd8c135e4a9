"""The shape the code keeps: one writer of letter status, no private names across modules, no fakes
or Airflow in the domain modules. These read the source, so a change that breaks the shape fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from include.dijlepost.states import BatchStatus, EboxState, PrintStatus, Status

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "include" / "dijlepost"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))
# A status change: an UPDATE of letters whose SET list assigns `status` (not print_status, ebox_state).
STATUS_WRITE = re.compile(
    r"UPDATE\s+letters\b(?:(?!\bWHERE\b).)*?\bSET\b(?:(?!\bWHERE\b).)*?(?<![\w.])status\s*=",
    re.IGNORECASE | re.DOTALL,
)


def sql_text(path: Path) -> str:
    """Every string literal of the module, adjacent literals joined, as the database would see them."""
    tree = ast.parse(path.read_text())
    return "\n".join(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def test_the_status_pattern_finds_a_status_write_and_nothing_else():
    assert STATUS_WRITE.search("UPDATE letters SET status = 'quarantined' WHERE letter_id = %s")
    assert STATUS_WRITE.search("UPDATE letters l SET channel = 'paper', status='pending' FROM x WHERE")
    assert not STATUS_WRITE.search(
        "UPDATE letters SET print_status = 'posted' WHERE status = 'handed_to_print'"
    )
    assert not STATUS_WRITE.search("UPDATE letters SET ebox_read_at = now() WHERE status = 'delivered_ebox'")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_outbox_writes_letter_status(path):
    if path.name == "outbox.py" and path.parent == PACKAGE:
        assert STATUS_WRITE.search(sql_text(path))
        return
    found = STATUS_WRITE.search(sql_text(path))
    assert found is None, (
        f"{path.name} changes letters.status itself: {found.group(0)[:120]!r}; use outbox.py"
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_from_another_module(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("include."):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports {private} from {node.module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_imports_no_fake_demo_or_test_code(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            assert name.split(".")[0] not in {"sandboxes", "demo", "tests", "benchmarks"}, (path.name, name)


# Airflow is imported only by the hooks (they are Airflow hooks), the shared Airflow layer, the wave
# DAG factory and the admin plugin's app; the domain modules are tested without Airflow.
AIRFLOW_ALLOWED = {"airflow_support.py", "dag_factory.py", "hook.py", "app.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_modules_do_not_import_airflow(path):
    if path.name in AIRFLOW_ALLOWED:
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        assert not any(n == "airflow" or n.startswith("airflow.") for n in names), (path.name, names)


def test_dag_files_import_the_public_airflow_layer_only():
    for path in sorted((ROOT / "dags").glob("*.py")):
        text = path.read_text()
        assert "dag_factory import _" not in text and "airflow_support import _" not in text, path.name


# Every value of a state column, as an SQL literal: written only through states.py (`Status.X.sql`).
STATE_VALUES = sorted(
    {m.value for enum in (Status, EboxState, PrintStatus, BatchStatus) for m in enum}, key=len, reverse=True
)
STATE_LITERAL = re.compile(r"'(" + "|".join(STATE_VALUES) + r")'")
STATE_SOURCES = sorted(
    p
    for p in [*SOURCES, *(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]
    if p.name != "states.py"
)


def test_the_state_literal_pattern_finds_a_state_and_nothing_else():
    assert STATE_LITERAL.search("WHERE status = 'processing'")
    assert STATE_LITERAL.search("status IN ('uploaded', 'uploading')")
    assert not STATE_LITERAL.search("WHERE status = {Status.PROCESSING.sql} AND channel = 'paper'")
    assert not STATE_LITERAL.search("event = 'claimed'")


@pytest.mark.parametrize("path", STATE_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_state_literal_outside_the_states_module(path):
    found = STATE_LITERAL.search(sql_text(path))
    assert found is None, (
        f"{path.name} writes the state {found.group(0)} itself; use states.py (e.g. Status.X.sql)"
    )
