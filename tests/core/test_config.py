"""Settings: parsed once into typed groups, every problem reported at once, secrets kept out
of the start-up log, and the environment they came from reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import DisposalSetting, EwsAuth, FolderPath, Settings
from pipeline.errors import ConfigError
from pipeline.model import Disposal


def test_defaults_are_typed() -> None:
    s = Settings.from_env({})
    assert s.source.disposal == DisposalSetting(Disposal.HARD_DELETE)
    assert s.source.queue_folder == FolderPath(False, ("Email Logging", "Queue"))
    assert s.source.ews.auth is EwsAuth.NTLM
    assert s.limits.max_in_flight_messages == 500 and s.http.port == 8080


def test_values_are_parsed_into_their_types_once() -> None:
    s = Settings.from_env(
        {
            "EMAILLOG_DISPOSAL": "move:public:/Audit/Old",
            "EMAILLOG_QUEUE_FOLDER": "public:/Email Logging/Queue",
            "EMAILLOG_EWS_AUTH": "OAuth2",
            "EMAILLOG_NEVER_LOG": " a.example , @b.example ,",
            "EMAILLOG_LOG_LEVEL": "debug",
        }
    )
    assert s.source.disposal == DisposalSetting(Disposal.MOVE, FolderPath(True, ("Audit", "Old")))
    assert s.source.queue_folder.public and s.source.queue_folder.parts[-1] == "Queue"
    assert s.source.ews.auth is EwsAuth.OAUTH2
    assert s.rules.never_log == ("a.example", "@b.example")
    assert s.log.level == "DEBUG"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "EMAILLOG_DISPOSAL": "shred",
                "EMAILLOG_STREAM_TIMEOUT_MINUTES": "31",
                "EMAILLOG_QUEUE_FOLDER": "public:/",
                "EMAILLOG_BATCH_WAIT_MS": "-1",
            }
        )
    variables = [problem.split(":")[0] for problem in caught.value.problems]
    assert variables == [
        "EMAILLOG_QUEUE_FOLDER",
        "EMAILLOG_DISPOSAL",
        "EMAILLOG_STREAM_TIMEOUT_MINUTES",
        "EMAILLOG_BATCH_WAIT_MS",
    ]


def test_the_service_checks_what_it_needs() -> None:
    s = Settings.from_env({"EMAILLOG_DISPOSAL": "trash", "EMAILLOG_QUEUE_FOLDER": "public:/Q"})
    with pytest.raises(ConfigError) as caught:
        s.check_service()
    text = "\n".join(caught.value.problems)
    assert "EMAILLOG_EWS_URL" in text and "trash is not possible" in text


def test_secrets_from_files_and_redacted(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = Settings.from_env({"EMAILLOG_EWS_PASSWORD_FILE": str(secret)})
    assert s.source.ews.password == "s3cret"
    redacted = s.redacted()
    assert redacted["EMAILLOG_EWS_PASSWORD"] == "***"
    assert "s3cret" not in repr(redacted)
    assert redacted["EMAILLOG_NEVER_LOG"] == ()
    assert redacted["EMAILLOG_QUEUE_FOLDER"] == "Email Logging/Queue"


def test_the_environment_reproduces_the_settings() -> None:
    s = Settings.from_env(
        {
            "EMAILLOG_DISPOSAL": "move:Email Logging/Audit",
            "EMAILLOG_NEVER_LOG": "a.example,b@c.example",
            "EMAILLOG_INCLUDE_CC": "yes",
            "EMAILLOG_EWS_AUTH": "basic",
            "EMAILLOG_DATA_DIR": "/var/lib/emaillog",
        }
    )
    assert Settings.from_env(s.environment()) == s
    assert set(s.environment()) == set(Settings.variables())
