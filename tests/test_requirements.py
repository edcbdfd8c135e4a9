"""The two dependency sets: what production imports is named in requirements.in (and so pinned in
requirements.txt); what tests, the demo, the sandboxes and the benchmarks import is named in one of
the two .in files; the development lock pins every production package at its production version."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("include", "dags", "plugins")
DEVELOPMENT = ("tests", "benchmarks", "sandboxes", "demo")
OWN = set(PRODUCTION + DEVELOPMENT) | {"__future__"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def requirement_names(path: Path) -> set[str]:
    """The distributions a .in file names directly (extras and version specifiers dropped)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(_name(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return names


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if m:
            out[_name(m.group(1))] = m.group(2)
    return out


def third_party_imports(folders) -> dict[str, set[str]]:
    """{top-level module: files importing it} for every import outside the standard library and the
    project, at module level or inside a function."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def unnamed(imports: dict[str, set[str]], named: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, files in sorted(imports.items()):
        candidates = {_name(d) for d in distributions.get(module, [module])}
        if not candidates & named:
            missing.append(
                f"{module} ({', '.join(sorted(candidates))}) imported by {', '.join(sorted(files)[:3])}"
            )
    return missing


def test_production_imports_only_what_requirements_in_names():
    named = requirement_names(ROOT / "requirements.in")
    assert unnamed(third_party_imports(PRODUCTION), named) == []


def test_tests_demo_sandboxes_and_benchmarks_import_only_what_the_two_sets_name():
    named = requirement_names(ROOT / "requirements.in") | requirement_names(ROOT / "requirements-dev.in")
    assert unnamed(third_party_imports(DEVELOPMENT), named) == []


@pytest.mark.parametrize(
    "tool",
    [
        "pytest",
        "pytest-timeout",
        "trustme",
        "playwright",
        "pgserver",
        "pypdf",
        "pypdfium2",
        "zxing-cpp",
        "uvicorn",
        "schemathesis",
    ],
)
def test_test_and_demo_tools_stay_out_of_production(tool):
    assert tool not in requirement_names(ROOT / "requirements.in")
    assert tool in requirement_names(ROOT / "requirements-dev.in")


def test_both_locks_pin_everything_they_name_and_agree_on_production_versions():
    production, development = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert requirement_names(ROOT / "requirements.in") <= set(production)
    assert requirement_names(ROOT / "requirements-dev.in") <= set(development)
    assert {n: v for n, v in development.items() if n in production} == production
    assert "-c requirements.txt" in (ROOT / "requirements-dev.in").read_text().splitlines()
