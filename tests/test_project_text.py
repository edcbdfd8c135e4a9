"""The project's text describes the system as it is: no history of development sessions or experiments,
no bare "issue N" references, no paths of a development machine, in README.md, docs/, include/, dags/
and plugins/ (prose, docstrings, comments, templates and SQL alike)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["README.md", "docs", "include", "dags", "plugins"]
# Applied migrations cannot change: migrate.py records each one's SHA-256 and refuses a file that differs
# from what a database has applied, so their comments stay as they were written.
APPLIED_MIGRATIONS = {
    f"include/dijlepost/db/migrations/{name}.sql"
    for name in (
        "0003_ebox_read_status",
        "0004_print_acknowledgements",
        "0005_audit_chain",
        "0006_rollout_admin",
    )
}
TEXT_SUFFIXES = {
    ".md",
    ".py",
    ".sql",
    ".yaml",
    ".yml",
    ".json",
    ".html",
    ".j2",
    ".jinja",
    ".txt",
    ".toml",
    ".cfg",
    ".ini",
    ".css",
    ".js",
    ".csv",
}

_ORDINALS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\\d+(?:st|nd|rd|th)|"
    "last|previous|earlier|later|next|this|that|work|working|development|coding|agent's|agent"
)
RULES: dict[str, re.Pattern] = {
    # A work session, not an SFTP, database or browser session: "this session", "the sixth session's",
    # "earlier sessions", "(second session)".
    "a development session": re.compile(rf"\b(?:{_ORDINALS})\s+sessions?\b", re.IGNORECASE),
    "a development session (the session before/after)": re.compile(
        r"\bthe session (?:before|after)\b", re.IGNORECASE
    ),
    "experiments of the author": re.compile(
        r"\bmy\s+(?:own\s+)?(?:earlier\s+|first\s+|last\s+|previous\s+)?(?:experiments?|runs?|measurements?|tests?)\b",
        re.IGNORECASE,
    ),
    "an 'issue N' reference": re.compile(r"\bissues?[ -]?#?\d+\b", re.IGNORECASE),
    "a development machine's path": re.compile(r"(?<![\w.~-])/(?:work|root)/"),
}


def offending_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, rule, matched text) for every rule broken in `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for rule, pattern in RULES.items():
            for match in pattern.finditer(line):
                found.append((number, rule, match.group(0)))
    return found


def text_files(entry: str) -> list[Path]:
    path = ROOT / entry
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix in TEXT_SUFFIXES
        and "__pycache__" not in p.parts
        and str(p.relative_to(ROOT)) not in APPLIED_MIGRATIONS
    )


@pytest.mark.parametrize("entry", SCANNED)
def test_the_text_speaks_of_the_system_not_of_its_development(entry):
    problems = []
    for path in text_files(entry):
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += [
            f"{path.relative_to(ROOT)}:{n}: {rule}: {found!r}" for n, rule, found in offending_lines(text)
        ]
    assert not problems, f"{len(problems)} line(s) in {entry}:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "text",
    [
        "Measured in the sixth session of 29 Nov.",
        "before this session's changes",
        "(fifth session, two clean clones)",
        "figures from earlier sessions",
        "than the 250 of the session before",
        "my own earlier experiments showed",
        "my experiments",
        "see issue 7",
        "the issue-6 files",
        "Issue #12 asks for it",
        "in /work/shared/contracts/ebox",
        "kept in /root/.cache",
    ],
)
def test_each_kind_of_development_text_is_found(text):
    assert offending_lines(text), text


@pytest.mark.parametrize(
    "text",
    [
        "one SFTP session to the print house at a time",
        "a session-level advisory lock: it dies with the session",
        "the UI's session cookie",
        "unless the session sets dijlepost.audit_break_glass",
        "with create_session() as session:",
        "the issues of a letter",
        "var/work/letters and ./work/out",
        "docs/rollout-admin.md",
    ],
)
def test_the_system_s_own_words_pass(text):
    assert offending_lines(text) == [], text


def test_the_applied_migrations_left_out_are_there():
    """The exception is for files that exist; a renamed one would be checked again."""
    assert all((ROOT / name).is_file() for name in APPLIED_MIGRATIONS)
