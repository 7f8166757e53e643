"""The `emaillog` command line: help, errors as one line, explain over the whole corpus."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from pipeline.cli import main
from pipeline.model import Outcome
from tests.conftest import CORPUS

CORPUS_FILES = sorted(CORPUS.glob("*.eml"))
VALID_OUTCOMES = {o.value for o in Outcome} - {Outcome.FAILED.value}
ENTRY_KEYS = {
    "contact_no",
    "contact_company_no",
    "contact_alt_address_code",
    "salesperson_code",
    "information_flow",
    "initiated_by",
    "description",
    # Issue 16: explain --json shows every field the service writes.
    "interaction_at",
    "subject",
    "interaction_template_code",
    "interaction_group_code",
    "cost_lcy",
    "duration_min",
    "correspondence_type",
    "email_logged",
}


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in list(os.environ):
        if name.startswith("EMAILLOG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EMAILLOG_DATABASE_URL", database_url)
    return database_url


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize(
    "argv",
    [[], ["migrate"], ["directory"], ["directory", "import"], ["directory", "export"], ["explain"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    assert "usage: emaillog" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_corpus_has_messages() -> None:
    assert len(CORPUS_FILES) > 100


def test_explain_json_decides_every_corpus_message(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--json", *map(str, CORPUS_FILES)]) == 0
    lines = json_lines(capsys.readouterr().out)
    assert [line["file"] for line in lines] == [str(p) for p in CORPUS_FILES]
    for line in lines:
        assert set(line) == {"file", "outcome", "rule", "direction", "entries"}
        assert line["outcome"] in VALID_OUTCOMES
        assert line["rule"]


def test_console_script_explains_the_corpus(env: str) -> None:
    script = Path(sys.executable).parent / "emaillog"
    done = subprocess.run(
        [str(script), "explain", "--json", *map(str, CORPUS_FILES)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert len(lines) == len(CORPUS_FILES)
    assert {line["outcome"] for line in lines} <= VALID_OUTCOMES
    assert "Traceback" not in done.stderr


def test_import_then_explain_logs_with_entries(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = write(tmp_path, "sp.csv", "code,name,email\nSP1,Sam,sam@us.example\n")
    ct = write(
        tmp_path, "ct.csv", "no,name,type,company_no,email\nC1,Ann,person,C0,ann@them.example\n"
    )
    assert main(["directory", "import", "--salespersons", str(sp), "--contacts", str(ct)]) == 0
    eml = write(
        tmp_path,
        "m.eml",
        "From: Sam <sam@us.example>\nTo: ANN@them.example\nSubject: Offer\n"
        "Message-ID: <m1@us.example>\n\nbody\n",
    )
    capsys.readouterr()
    assert main(["explain", "--json", str(eml)]) == 0
    [line] = json_lines(capsys.readouterr().out)
    assert line["outcome"] == "logged" and line["direction"] == "outbound"
    [entry] = line["entries"]  # type: ignore[misc]
    assert set(entry) == ENTRY_KEYS
    assert (entry["contact_no"], entry["contact_company_no"], entry["salesperson_code"]) == (
        "C1",
        "C0",
        "SP1",
    )
    assert (entry["information_flow"], entry["initiated_by"], entry["description"]) == (
        "outbound",
        "us",
        "Offer",
    )

    assert main(["explain", str(eml)]) == 0  # the text form names the rule and the entry
    text = capsys.readouterr().out
    assert "logged (outbound)" in text and "Rule 4" in text and "contact C1" in text


async def _insert_stored_message(url: str, message_key: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO stored_message (mailbox, message_key, content_hash) "
            "VALUES ('queue@us.example', $1, 'h')",
            message_key,
        )
    finally:
        await conn.close()


# Sync on purpose: main() runs its own event loop, which cannot nest in the test's.
def test_explain_reports_duplicate_when_already_in_the_journal(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = write(tmp_path, "m.eml", "From: a@x.example\nTo: b@y.example\nMessage-ID: <dup@x>\n\n")
    assert main(["migrate"]) == 0
    asyncio.run(_insert_stored_message(env, "<dup@x>"))
    capsys.readouterr()
    assert main(["explain", "--json", str(eml)]) == 0
    assert json_lines(capsys.readouterr().out)[0]["outcome"] == "duplicate"


def test_explain_applies_the_policy_settings(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = write(tmp_path, "m.eml", "From: a@x.example\nTo: b@lawyer.example\n\n")
    monkeypatch.setenv("EMAILLOG_NEVER_LOG", "lawyer.example")
    assert main(["explain", "--json", str(eml)]) == 0
    assert json_lines(capsys.readouterr().out)[0]["outcome"] == "excluded"


def test_explain_unreadable_file_is_one_line_and_others_still_explained(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "empty.eml", "")
    assert main(["explain", "--json", str(tmp_path / "missing.eml"), str(good)]) == 1
    out, err = capsys.readouterr()
    assert json_lines(out)[0]["outcome"] == "no_parties"
    assert (
        err.strip()
        == f"emaillog: error: {tmp_path / 'missing.eml'}: cannot read: No such file or directory"
    )


def test_bad_csv_row_is_reported_with_file_and_line(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = write(
        tmp_path, "sp.csv", "code,name,email\nSP1,Sam,sam@us.example\nSP1,Sue,sue@us.example\n"
    )
    assert main(["directory", "import", "--salespersons", str(sp)]) == 1
    err = capsys.readouterr().err
    assert f"emaillog: error: {sp}:3: duplicate key SP1 (first on line 2)" in err
    assert "Traceback" not in err


def test_directory_import_without_files_is_a_usage_error(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["directory", "import"]) == 2
    assert "nothing to import" in capsys.readouterr().err


def test_directory_export_writes_four_files(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["directory", "export", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["alt-addresses.csv", "contacts.csv", "salespersons.csv", "templates.csv"]


def test_wrong_database_url_is_one_line_and_nonzero(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMAILLOG_DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/x")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emaillog: error: cannot connect to PostgreSQL")


def test_invalid_setting_is_exit_2(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMAILLOG_INCLUDE_CC", "perhaps")
    assert main(["migrate"]) == 2
    assert "EMAILLOG_INCLUDE_CC" in capsys.readouterr().err


def test_python_dash_m_pipeline_works() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "usage: emaillog" in done.stdout
