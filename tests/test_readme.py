"""The README is the operator's reference: every variable the code reads must be in it,
and CI must run exactly the README's test command."""

from __future__ import annotations

import re

from pipeline.config import SECRET_FIELDS, Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
VARIABLE = re.compile(r"\bEMAILLOG_[A-Z0-9_]+\b")


def variables_in_code() -> set[str]:
    found = set(Settings.variables())
    found |= {f"EMAILLOG_{name.upper()}_FILE" for name in SECRET_FIELDS}
    for path in (REPO / "pipeline").rglob("*.py"):
        found |= set(VARIABLE.findall(path.read_text()))
    # Prefixes built in code (e.g. "EMAILLOG_" itself) are not variables.
    return {name for name in found if not name.endswith("_")}


def test_every_configuration_variable_is_documented() -> None:
    missing = sorted(name for name in variables_in_code() if name not in README)
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)


def test_quick_start_is_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)", quick_start, re.MULTILINE)
    assert commands[:2] == ["make demo", "make test"]
