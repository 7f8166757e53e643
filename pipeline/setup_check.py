"""Is the setup complete enough to take mail? Today: the e-mail interaction template.

NAV fails the whole run when Interaction Template Setup "E-Mails" names no Interaction
Template (codeunit 5064 `CheckSetup`, text "The interaction template ... is not set up").
Here the service keeps running but takes no mail while EMAILLOG_EMAIL_TEMPLATE_CODE names no
template in the directory, and says why where an operator looks:

- `/readyz` answers 503 with the reason in `problems` (check `email_template`);
- one ERROR log line at start, and again on every directory reload that still lacks it;
- the gauge `emaillog_config_problems` (alert `EmailLogConfigProblem`).

Importing the template (`emaillog directory import --templates T.csv`) reloads the
directory (LISTEN/NOTIFY), the gate opens and intake resumes by itself. Messages stay in the
queue meanwhile: nothing is lost, nothing is logged with a made-up template.
"""

from __future__ import annotations

import asyncio

from pipeline.directory import Directory, Template
from pipeline.errors import SetupIncomplete
from pipeline.logs import get_logger
from pipeline.metrics import Metrics

log = get_logger(__name__)


def setup_problems(directory: Directory, template_code: str) -> list[str]:
    """What keeps the service from taking mail with this directory, one sentence each."""
    if directory.template(template_code) is None:
        return [
            f"EMAILLOG_EMAIL_TEMPLATE_CODE={template_code!r} names no interaction template "
            "in the directory: no mail is taken until it is imported "
            "(emaillog directory import --templates FILE.csv)"
        ]
    return []


def email_template(directory: Directory, template_code: str) -> Template:
    """The e-mail interaction template, or `SetupIncomplete` (the runner waits for it)."""
    found = directory.template(template_code)
    if found is None:
        raise SetupIncomplete(setup_problems(directory, template_code)[0])
    return found


class SetupGate:
    """Open while the loaded directory has no setup problem; see the module docstring.

    `on_reload` is the directory watcher's hook: it runs after each (re)load."""

    def __init__(self, template_code: str, metrics: Metrics) -> None:
        self.template_code = template_code
        self.problems: list[str] = []
        self.open = asyncio.Event()
        self._metrics = metrics

    def on_reload(self, directory: Directory) -> None:
        problems = setup_problems(directory, self.template_code)
        self._metrics.config_problems.set(len(problems))
        if problems:
            self.open.clear()
            log.error(
                "not taking mail: " + "; ".join(problems),
                extra={"fields": {"config_problems": len(problems)}},
            )
        elif self.problems:
            log.info(
                "setup complete: taking mail again",
                extra={"fields": {"email_template_code": self.template_code}},
            )
        if not problems:
            self.open.set()
        self.problems = problems
