"""The Dockerfile's structure (there is no Docker engine to build it here).

A tiny parser turns the Dockerfile into (INSTRUCTION, arguments) pairs; the checks are the
ones a reviewer would make: two stages on a slim base, a non-root user, exec-form
ENTRYPOINT and CMD, a curl-free HEALTHCHECK on /livez, and a build context that holds
everything COPY names and everything pyproject.toml needs.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

import yaml

from tests.ops import OPS, REPO

Instruction = tuple[str, str]


def parse(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comments, also between continuation lines
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, arguments = (current + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends in a line continuation"
    return instructions


INSTRUCTIONS = parse((REPO / "Dockerfile").read_text())


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in INSTRUCTIONS:
        if instruction[0] == "FROM":
            result.append([])
        assert result, "the Dockerfile must start with FROM"
        result[-1].append(instruction)
    return result


FINAL = stages()[-1]


def only(keyword: str, stage: list[Instruction] = FINAL) -> str:
    found = [arguments for kw, arguments in stage if kw == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, got {found}"
    return found[0]


def test_multi_stage_on_a_slim_python_base() -> None:
    assert len(stages()) >= 2
    for stage in stages():
        image = stage[0][1].split()[0]
        assert image.startswith("python:3.11-slim"), image


def test_runtime_copies_only_from_the_builder() -> None:
    for keyword, arguments in FINAL:
        if keyword in ("COPY", "ADD"):
            assert arguments.startswith("--from="), arguments


def test_runs_as_a_numeric_non_root_user_that_kubernetes_can_verify() -> None:
    keywords = [keyword for keyword, _ in FINAL]
    user = only("USER").split(":")[0]
    assert user.isdigit() and user != "0", "USER must be a numeric uid other than 0"
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    deployment = yaml.safe_load((OPS / "k8s" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)


def test_exec_form_entrypoint_is_the_console_script_and_cmd_is_run() -> None:
    assert json.loads(only("ENTRYPOINT")) == ["emaillog"]
    assert json.loads(only("CMD")) == ["run"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "emaillog" in scripts


def test_healthcheck_calls_livez_with_python_not_curl() -> None:
    options, _, command = only("HEALTHCHECK").partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)  # exec form
    assert argv[:2] == ["python", "-c"]
    assert "/livez" in argv[2] and "urllib.request" in argv[2]
    assert "curl" not in command and "wget" not in command


def test_port_signal_and_python_environment() -> None:
    assert only("EXPOSE") == "8080 8081"  # /metrics etc.; the web UI and REST API
    assert only("STOPSIGNAL") == "SIGTERM"
    env = " ".join(arguments for keyword, arguments in FINAL if keyword == "ENV")
    for setting in (
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "EMAILLOG_HTTP_PORT=8080",
        "EMAILLOG_UI_PORT=8081",
    ):
        assert setting in env


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes, and a matching
    directory excludes everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            result = not negated
    return result


def test_dockerignore_matcher() -> None:
    patterns = [".venv", "**/__pycache__", "tests", "!tests/keep.py"]
    assert ignored(".venv/bin/python", patterns)
    assert ignored("pipeline/store/__pycache__/x.pyc", patterns)
    assert ignored("tests/ops/test_x.py", patterns)
    assert not ignored("tests/keep.py", patterns)
    assert not ignored("pipeline/cli.py", patterns)


def copied_sources() -> list[str]:
    """Sources of every COPY/ADD from the build context (not from another stage)."""
    sources: list[str] = []
    for keyword, arguments in INSTRUCTIONS:
        if keyword not in ("COPY", "ADD") or "--from=" in arguments:
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_every_copied_path_exists_and_is_not_dockerignored() -> None:
    patterns = dockerignore_patterns()
    assert copied_sources()
    for source in copied_sources():
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
        files = [path] if path.is_file() else [*path.rglob("*.py"), *path.rglob("*.sql")]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" not in relative:
                assert not ignored(relative, patterns), f"{relative}: excluded by .dockerignore"


def test_build_context_holds_what_pyproject_needs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {name.rstrip("*") for name in packages}
    assert needed <= {Path(source).as_posix().strip("/") for source in copied_sources()}


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git/HEAD", ".venv/bin/python", ".emaillog/pg/PG_VERSION", "tests/conftest.py"):
        assert ignored(path, patterns), path
    assert ignored("emaillog.egg-info/PKG-INFO", patterns)
    assert ignored("pipeline/__pycache__/cli.cpython-311.pyc", patterns)
