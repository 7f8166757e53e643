"""The exception tree. Everything the service raises on purpose is an `EmailLogError`.

    EmailLogError
    ├── ConfigError           invalid settings; one message per problem, raised at start
    ├── InputError            bad user input: a CSV row, an unreadable .eml (names file and line)
    ├── Retryable             worth trying again later (the runner retries with back-off)
    │   ├── Throttled         the server asked us to wait: carries `retry_after` seconds
    │   ├── SourceUnavailable the mail server is unreachable, the stream dropped
    │   ├── DatabaseUnavailable  PostgreSQL is unreachable or restarting
    │   └── SetupIncomplete   the directory lacks what logging needs (the e-mail template)
    └── Permanent             retrying cannot help (a poison message, a missing folder)
        ├── ItemGone          the queue item no longer exists (someone else handled it)
        └── FolderNotFound    a configured folder path does not exist

Stages raise these; the runner decides what to do with them. Nothing else decides.
"""

from __future__ import annotations


class EmailLogError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(EmailLogError):
    """Invalid configuration. `problems` lists every problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class InputError(EmailLogError):
    """Bad user input; the message names the file and line where it can."""


class Retryable(EmailLogError):
    """A transient failure: try again later."""


class Throttled(Retryable):
    """The server asked us to back off for `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class SourceUnavailable(Retryable):
    """The mail server cannot be reached, or a stream dropped."""


class DatabaseUnavailable(Retryable):
    """PostgreSQL cannot be reached."""


class SetupIncomplete(Retryable):
    """The directory lacks what logging needs (EMAILLOG_EMAIL_TEMPLATE_CODE names no
    template): wait until it is imported; no message is at fault."""


class Permanent(EmailLogError):
    """Retrying will not help."""


class ItemGone(Permanent):
    """The queue item no longer exists."""


class FolderNotFound(Permanent):
    """A configured folder path does not exist in the mailbox or public folders."""


def describe(exc: BaseException | None) -> str:
    """One line naming an exception for logs and records: `TypeName: message` (500 chars)."""
    if exc is None:
        return ""
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]
